"""The operator's series count what the applier commits (jobs submitted and finished,
steps ended with their run time, workers lost) and what the boundary dead-letters,
with no query of their own."""

from __future__ import annotations

from uuid import UUID

from fakes import Clock, FakeJobStore, FakeSender
from segue.broker.boundary import Outcome
from segue.engine import events as ev
from segue.service.applier import Applier, Change
from segue.service.failures import is_transient
from segue.service.metrics import Metrics
from segue.workflows.loader import Catalog
from shell_builders import NAMES, catalog, first_attempt, one_step_workflow, submitted

JOB_A = UUID("00000000-0000-4000-8000-00000000000a")
JOB_B = UUID("00000000-0000-4000-8000-00000000000b")


def observed_applier(metrics: Metrics, store: FakeJobStore, clock: Clock) -> Applier:
    return Applier(
        store,
        FakeSender(),
        NAMES,
        clock,
        is_transient,
        on_written=metrics.operator.observe_writes,
    )


def value(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def submission(workflows: Catalog, job_id: UUID, **params: object) -> Change:
    loaded = workflows.get("quick_check")
    assert loaded is not None
    return submitted(loaded, job_id, **params)


async def test_a_job_that_succeeds_counts_submitted_finished_and_its_step_run_time() -> None:
    metrics, store, clock = Metrics(), FakeJobStore(), Clock()
    applier = observed_applier(metrics, store, clock)
    attempt = first_attempt(JOB_A)

    await applier.apply([submission(catalog(), JOB_A)])
    await applier.apply([Change(JOB_A, ev.StepStarted(attempt, "w1"))])
    clock.advance(90)
    await applier.apply([Change(JOB_A, ev.StepSucceeded(attempt, {"ok": True}, "w1"))])

    workflow = {"workflow": "quick_check"}
    assert value(metrics, "segue_jobs_submitted_total", **workflow) == 1
    assert value(metrics, "segue_jobs_finished_total", **workflow, status="succeeded") == 1
    step = {**workflow, "step": "check", "status": "succeeded"}
    assert value(metrics, "segue_step_duration_seconds_count", **step) == 1
    assert value(metrics, "segue_step_duration_seconds_sum", **step) == 90
    assert value(metrics, "segue_step_duration_seconds_bucket", **step, le="60.0") == 0
    assert value(metrics, "segue_step_duration_seconds_bucket", **step, le="120.0") == 1


async def test_a_silent_worker_counts_as_lost_when_the_sweeper_finds_it() -> None:
    check = {"name": "check", "queue": "q", "heartbeat_s": 5}
    workflows = catalog(one_step_workflow(steps=[check]))
    metrics, store, clock = Metrics(), FakeJobStore(), Clock()
    applier = observed_applier(metrics, store, clock)
    await applier.apply([submission(workflows, JOB_A)])
    await applier.apply([Change(JOB_A, ev.StepStarted(first_attempt(JOB_A), "w1"))])

    clock.advance(60)
    await applier.sweep(10)

    labels = {"workflow": "quick_check", "step": "check"}
    assert value(metrics, "segue_steps_lost_total", **labels) == 1
    assert value(metrics, "segue_step_duration_seconds_count", **labels, status="lost") == 1
    assert value(metrics, "segue_jobs_finished_total", workflow="quick_check", status="failed") == 0


async def test_a_refused_or_repeated_submission_counts_nothing_new() -> None:
    metrics, store, clock = Metrics(), FakeJobStore(), Clock()
    applier = observed_applier(metrics, store, clock)

    await applier.apply([submission(catalog(), JOB_A, horizon=0)])  # below its minimum
    await applier.apply([submission(catalog(), JOB_B)])
    await applier.apply([submission(catalog(), JOB_B)])

    assert value(metrics, "segue_jobs_submitted_total", workflow="quick_check") == 1


def test_dead_lettered_messages_are_counted_by_queue() -> None:
    metrics = Metrics()

    metrics.observe("segue.commands", Outcome.dead("invalid command"), 0.01)
    metrics.observe("segue.commands", Outcome.ack(), 0.01)
    metrics.observe("segue.events", Outcome.dead("unknown job"), 0.01)

    assert value(metrics, "segue_dead_letters_total", queue="segue.commands") == 1
    assert value(metrics, "segue_dead_letters_total", queue="segue.events") == 1
