"""What a due schedule submits and what firing it leaves behind: one job id per due
time, missed runs fired once, refusals recorded, file definitions fingerprinted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from segue.engine.effects import Decision
from segue.service.applier import Applied
from segue.service.recurrence import (
    FiredOutcome,
    definition_hash,
    file_schedules,
    fired,
    outcome,
    scheduled_job_id,
    submission,
)
from segue.store.schedules import ScheduleRow, ScheduleSource
from segue.workflows.model import ScheduleSpec
from shell_builders import catalog

DUE = datetime(2026, 1, 1, 3, 0, tzinfo=UTC)


def row(**fields: Any) -> ScheduleRow:
    values: dict[str, Any] = {
        "name": "nightly",
        "workflow": "quick_check",
        "cron": "0 3 * * *",
        "timezone": "UTC",
        "params": {"horizon": 4},
        "priority": 7,
        "enabled": True,
        "next_due_at": DUE,
        "last_due_at": None,
        "last_fired_at": None,
        "last_job_id": None,
        "last_error": None,
        "source": ScheduleSource.CLI,
        "created_at": DUE,
        "updated_at": DUE,
    }
    return ScheduleRow(**(values | fields))


def accepted() -> Applied:
    return Applied(False, Decision())


def test_the_job_id_depends_on_the_schedule_and_the_due_time_only() -> None:
    same = scheduled_job_id("nightly", DUE)

    assert scheduled_job_id("nightly", DUE.astimezone(UTC)) == same
    assert scheduled_job_id("nightly", DUE + timedelta(days=1)) != same
    assert scheduled_job_id("weekly", DUE) != same


def test_the_submission_is_a_clients_with_the_schedules_params_and_priority() -> None:
    event = submission(row(), catalog(), secret="s3cret")

    assert event.job_id == scheduled_job_id("nightly", DUE)
    assert event.workflow is not None
    assert event.workflow.name == "quick_check"
    assert (event.params, event.priority, event.secret) == ({"horizon": 4}, 7, "s3cret")
    assert event.reference == "schedule:nightly@2026-01-01T03:00:00+00:00"


def test_the_job_belongs_to_the_schedules_owner() -> None:
    owned = submission(row(owner="segue-planner"), catalog(), secret=None)
    unowned = submission(row(), catalog(), secret=None)

    assert owned.owner == "segue-planner"
    assert unowned.owner is None, "a schedule without an owner makes jobs open to all"


def test_an_unknown_workflow_is_left_for_the_engine_to_refuse() -> None:
    event = submission(row(workflow="gone"), catalog(), secret=None)

    assert (event.workflow, event.workflow_name) == (None, "gone")


def test_a_schedule_that_missed_many_runs_fires_once_and_is_due_after_now() -> None:
    now = DUE + timedelta(days=3, hours=5)
    job_id = scheduled_job_id("nightly", DUE)

    result = fired(row(), job_id, accepted(), now)

    assert (result.due_at, result.job_id, result.error) == (DUE, job_id, None)
    assert result.next_due_at == datetime(2026, 1, 5, 3, 0, tzinfo=UTC)


def test_a_refused_submission_records_why_and_still_advances() -> None:
    refused = Applied(False, Decision(rejected="params.horizon: 0 is less than 1"))

    result = fired(row(), scheduled_job_id("nightly", DUE), refused, DUE)

    assert result.job_id is None
    assert result.error == "params.horizon: 0 is less than 1"
    assert result.next_due_at == DUE + timedelta(days=1)
    assert outcome(refused) is FiredOutcome.REFUSED


def test_a_schedule_whose_next_time_cannot_be_computed_is_paused_with_the_reason() -> None:
    result = fired(row(timezone="Mars/Base"), scheduled_job_id("nightly", DUE), accepted(), DUE)

    assert result.next_due_at is None
    assert result.error is not None
    assert "unknown time zone" in result.error


def test_outcomes() -> None:
    assert outcome(accepted()) is FiredOutcome.SUBMITTED
    assert outcome(Applied(True, Decision(ignored="duplicate submission"))) is (
        FiredOutcome.DUPLICATE
    )


def test_file_schedules_are_fingerprinted_by_their_definition() -> None:
    spec = ScheduleSpec(name="nightly", workflow="quick_check", cron="0 3 * * *")
    paused = ScheduleSpec(name="nightly", workflow="quick_check", cron="0 3 * * *", enabled=False)

    (stored,) = file_schedules((spec,), DUE)

    assert stored.definition_hash == definition_hash(spec)
    assert definition_hash(spec) == definition_hash(spec.model_copy())
    assert definition_hash(paused) != definition_hash(spec)
    assert (stored.source, stored.next_due_at) == (ScheduleSource.FILE, DUE + timedelta(days=1))


def test_file_schedules_carry_their_owner_and_an_owner_change_changes_the_fingerprint() -> None:
    spec = ScheduleSpec(name="nightly", workflow="quick_check", cron="0 3 * * *")
    owned = ScheduleSpec(
        name="nightly", workflow="quick_check", cron="0 3 * * *", owner="segue-planner"
    )
    other = owned.model_copy(update={"owner": "segue-ops"})

    stored, stored_owned = file_schedules((spec, owned), DUE)

    assert (stored.owner, stored_owned.owner) == (None, "segue-planner")
    assert len({definition_hash(spec), definition_hash(owned), definition_hash(other)}) == 3
    # The fingerprint a schedule without an owner had before owners existed: keeping
    # it means an upgrade does not store such schedules again (undoing their pauses).
    assert definition_hash(spec) == (
        "da2c3bbfea639033f62689840601744e18ed570ba5145d966b31ab401582d36e"
    )
