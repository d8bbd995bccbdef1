"""Schedules in the workflow file: loaded with the workflows, and every problem named
by its place in the file (bad cron or time zone, duplicate name, unknown workflow,
params the workflow would refuse)."""

from __future__ import annotations

from typing import Any

import pytest

from segue.workflows.loader import WorkflowConfigError, parse_workflows

WORKFLOWS: list[dict[str, Any]] = [
    {
        "name": "plan",
        "parameters": [{"name": "years", "type": "integer", "minimum": 1, "default": 5}],
        "steps": [{"name": "prepare", "queue": "prepare"}],
    }
]


def file_with(*schedules: dict[str, Any]) -> dict[str, Any]:
    return {"format_version": 1, "workflows": WORKFLOWS, "schedules": list(schedules)}


def nightly(**fields: Any) -> dict[str, Any]:
    return {"name": "nightly", "workflow": "plan", "cron": "0 3 * * *", **fields}


def test_schedules_load_with_their_defaults() -> None:
    catalog = parse_workflows(file_with(nightly(params={"years": 10})))

    (schedule,) = catalog.schedules
    assert (schedule.name, schedule.workflow, schedule.cron) == ("nightly", "plan", "0 3 * * *")
    assert (schedule.timezone, schedule.priority, schedule.enabled) == ("UTC", 5, True)
    assert schedule.params == {"years": 10}


def test_a_schedule_may_name_the_owner_of_its_jobs() -> None:
    owned, unowned, longest = parse_workflows(
        file_with(
            nightly(owner="segue-planner"),
            nightly(name="weekly"),
            nightly(name="hourly", owner="x" * 200),
        )
    ).schedules

    assert (owned.owner, unowned.owner, longest.owner) == ("segue-planner", None, "x" * 200)


def test_a_file_without_schedules_has_none() -> None:
    assert parse_workflows({"workflows": WORKFLOWS}).schedules == ()


@pytest.mark.parametrize(
    ("schedules", "expected"),
    [
        ([nightly(cron="0 3 * *")], "$.schedules[0].cron: a cron expression has 5 fields"),
        ([nightly(timezone="Mars/Base")], "$.schedules[0].timezone: unknown time zone"),
        ([nightly(priority=10)], "$.schedules[0].priority: "),
        ([nightly(workflow="nope")], "$.schedules[0].workflow: unknown workflow 'nope'"),
        ([nightly(params={"years": 0})], "$.schedules[0].params: params.years: 0 is less"),
        ([nightly(params={"colour": "red"})], "$.schedules[0].params: "),
        ([nightly(), nightly()], "$.schedules[1].name: duplicate schedule name 'nightly'"),
        ([nightly(when="daily")], "$.schedules[0].when: unknown key"),
        ([nightly(owner="")], "$.schedules[0].owner: must be a RabbitMQ user name"),
        ([nightly(owner="x" * 201)], "$.schedules[0].owner: must be a RabbitMQ user name"),
        ([nightly(owner="bob\n")], "$.schedules[0].owner: must be a RabbitMQ user name"),
        ([nightly(owner="a\x7fb")], "$.schedules[0].owner: must be a RabbitMQ user name"),
        ([nightly(owner=7)], "$.schedules[0].owner: Input should be a valid string"),
    ],
)
def test_problems_name_the_place_and_the_reason(
    schedules: list[dict[str, Any]], expected: str
) -> None:
    with pytest.raises(WorkflowConfigError) as error:
        parse_workflows(file_with(*schedules), "config.json")

    assert expected in str(error.value)
