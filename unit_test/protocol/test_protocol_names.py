"""Every broker name derives from the namespace, and bad namespaces are refused."""

from __future__ import annotations

from uuid import UUID

import pytest

from segue.protocol.names import Names, attempt_control_key, update_routing_key
from segue.protocol.topology import DeadLetterBounds, orchestrator_queues, task_queue


def test_names_are_prefixed_by_the_namespace() -> None:
    names = Names("acme")
    assert names.commands_queue == "acme.commands"
    assert names.events_queue == "acme.events"
    assert names.task_queue("optimise") == "acme.task.optimise"
    assert names.dead_queue == "acme.dead"


@pytest.mark.parametrize("namespace", ["", "Upper", "has space", "1digit", "x" * 64])
def test_invalid_namespaces_are_refused(namespace: str) -> None:
    with pytest.raises(ValueError, match="namespace"):
        Names(namespace)


def test_routing_keys() -> None:
    job_id = UUID(int=1)
    assert update_routing_key(job_id, "result") == f"job.{job_id}.result"
    assert attempt_control_key(job_id) == f"attempt.{job_id}"


def test_consumed_and_task_queues_dead_letter_to_the_dead_exchange() -> None:
    names = Names("acme")
    consumed = [q for q in orchestrator_queues(names) if q.name != names.dead_queue]
    for spec in [*consumed, task_queue(names, "optimise")]:
        assert spec.arguments["x-dead-letter-exchange"] == "acme.dead"
    assert task_queue(names, "optimise").arguments["x-max-priority"] == 9


def test_the_dead_letter_queue_keeps_the_newest_letters_for_a_while() -> None:
    names = Names("acme")
    (dead,) = [q for q in orchestrator_queues(names) if q.name == names.dead_queue]
    assert dead.bounds == {
        "x-max-length": 100_000,
        "x-overflow": "drop-head",
        "x-message-ttl": 14 * 86_400_000,
    }
    assert (dead.bind_exchange, dead.arguments) == ("acme.dead", {})


@pytest.mark.parametrize(
    ("bounds", "arguments"),
    [
        (DeadLetterBounds(5, 0), {"x-max-length": 5, "x-overflow": "drop-head"}),
        (DeadLetterBounds(0, 0.5), {"x-message-ttl": 43_200_000}),
        (DeadLetterBounds(0, 0), {}),
    ],
)
def test_dead_letter_bounds_of_zero_are_left_out(
    bounds: DeadLetterBounds, arguments: dict[str, object]
) -> None:
    (dead,) = [q for q in orchestrator_queues(Names(), bounds) if q.name == "segue.dead"]
    assert dead.bounds == arguments
