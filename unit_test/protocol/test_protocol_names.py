"""Every broker name derives from the namespace, and bad namespaces are refused."""

from __future__ import annotations

from uuid import UUID

import pytest

from segue.protocol.names import Names, attempt_control_key, update_routing_key
from segue.protocol.topology import orchestrator_queues, task_queue


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
