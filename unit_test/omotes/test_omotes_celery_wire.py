"""Celery's wire formats as the bridge builds them: the protocol-2 task message and the
remote-control commands, in the shapes a Celery 5 worker reads (checked against a
real one in integration_test/omotes)."""

from __future__ import annotations

import json

import pytest

from segue.omotes.celery_wire import (
    MAX_ARGS_REPR_CHARS,
    PIDBOX_EXCHANGE,
    REPLY_EXCHANGE,
    TASK_QUEUE_ARGUMENTS,
    CeleryWireError,
    active_command,
    active_task_ids,
    args_repr,
    celery_priority,
    revoke_command,
    task_message,
)

TASK_ID = "0b0e7f3c-5a55-4c1e-9a1f-1a4ddc0d2a71"
JOB_ID = "5f0c9a2e-0d6e-4e25-8c89-2f4c3d0c2b11"
ARGS = (JOB_ID, "ref", "<esdl/>", {"factor": 2.0})


def test_a_task_message_is_protocol_2_with_the_task_id_as_root_and_correlation_id() -> None:
    message = task_message("simulator", TASK_ID, ARGS, 4, "segue1@host")

    assert json.loads(message.body) == [
        [JOB_ID, "ref", "<esdl/>", {"factor": 2.0}],
        {},
        {"callbacks": None, "errbacks": None, "chain": None, "chord": None},
    ]
    headers = message.headers
    assert headers["lang"] == "py"
    assert (headers["task"], headers["id"], headers["root_id"]) == ("simulator", TASK_ID, TASK_ID)
    assert headers["parent_id"] is None
    assert headers["group"] is None
    assert headers["retries"] == 0
    assert (headers["eta"], headers["expires"]) == (None, None)
    assert headers["timelimit"] == [None, None]
    assert headers["kwargsrepr"] == "{}"
    assert headers["origin"] == "segue1@host"
    assert headers["ignore_result"] is False
    assert headers["argsrepr"].startswith(f"('{JOB_ID}', 'ref', '<esdl/>'")
    assert message.correlation_id == TASK_ID
    assert message.priority == 4
    assert message.persistent
    assert (message.content_type, message.content_encoding) == ("application/json", "utf-8")


def test_a_task_message_of_a_job_without_reference_sends_null() -> None:
    message = task_message("simulator", TASK_ID, (JOB_ID, None, "", {}), 4, "o")

    assert json.loads(message.body)[0] == [JOB_ID, None, "", {}]


def test_arguments_json_cannot_carry_are_refused() -> None:
    with pytest.raises(CeleryWireError):
        task_message("simulator", TASK_ID, (JOB_ID, None, "", {"x": float("nan")}), 4, "o")


@pytest.mark.parametrize(
    ("segue", "celery"), [(-3, 0), (0, 0), (2, 2), (4, 4), (6, 6), (9, 9), (12, 9)]
)
def test_the_celery_priority_is_the_job_priority_within_0_to_9(segue: int, celery: int) -> None:
    assert celery_priority(segue) == celery
    assert task_message("t", TASK_ID, ARGS, segue, "o").priority == celery


def test_task_queues_are_declared_as_omotes_workers_declare_them() -> None:
    assert dict(TASK_QUEUE_ARGUMENTS) == {"x-max-priority": 10}


def test_args_repr_cuts_a_long_esdl_and_stays_within_celerys_limit() -> None:
    shown = args_repr((JOB_ID, None, "x" * 1_000_000, {"k": "v" * 5000}))

    assert len(shown) <= MAX_ARGS_REPR_CHARS
    assert "more characters" in shown
    assert shown.startswith(f"('{JOB_ID}', None, 'xxx")


def test_a_revoke_terminates_with_sigterm_on_every_worker() -> None:
    message = revoke_command(TASK_ID, clock=7, expires=1_800_000_010)

    assert json.loads(message.body) == {
        "method": "revoke",
        "arguments": {"task_id": TASK_ID, "terminate": True, "signal": "SIGTERM"},
        "destination": None,
        "pattern": None,
        "matcher": None,
    }
    assert message.headers == {"clock": 7, "expires": 1_800_000_010}
    assert "ticket" not in json.loads(message.body)  # nobody answers a revoke
    assert PIDBOX_EXCHANGE == "celery.pidbox"


def test_inspect_active_asks_for_short_arguments_and_an_answer_on_the_reply_exchange() -> None:
    message = active_command("ticket-1", "reply-key", clock=3, expires=1_800_000_010)

    body = json.loads(message.body)
    assert body["method"] == "active"
    assert body["arguments"] == {"safe": True}
    assert (body["destination"], body["pattern"], body["matcher"]) == (None, None, None)
    assert body["ticket"] == "ticket-1"
    assert body["reply_to"] == {"exchange": REPLY_EXCHANGE, "routing_key": "reply-key"}
    assert message.headers == {"clock": 3, "expires": 1_800_000_010}


def test_the_ids_of_active_tasks_are_read_from_a_workers_answer() -> None:
    answer = {
        "worker-a@host": [
            {"id": TASK_ID, "name": "simulator", "args": "(...)", "hostname": "worker-a@host"},
            {"id": "other", "name": "optimizer"},
            "not a task",
        ],
        "worker-b@host": {"error": "KeyError('x')"},
    }

    assert active_task_ids(json.dumps(answer).encode()) == {TASK_ID, "other"}
    assert active_task_ids(b'{"worker-c@host": []}') == set()


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]"])
def test_an_answer_that_is_not_an_object_of_workers_is_refused(body: bytes) -> None:
    with pytest.raises(CeleryWireError):
        active_task_ids(body)
