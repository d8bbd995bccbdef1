"""Celery's wire formats, built by hand: the task message and remote-control commands.

Celery is not a dependency of Segue: the OMOTES Celery workers only need the
messages, which Celery documents.

- **Task message**, protocol version 2 (Celery's "Message Protocol" page,
  ``docs/internals/protocol.rst``; what ``Celery.send_task`` makes with
  ``as_task_v2``): the routing data in AMQP headers, the arguments in a JSON
  body ``[args, kwargs, embed]``, ``correlation_id`` = the task id.
- **Remote control** (kombu's ``Mailbox``/``Node`` in ``kombu/pidbox.py``,
  what ``app.control.revoke`` and ``app.control.inspect().active()`` send): a
  JSON command on the fanout exchange ``celery.pidbox``, which every worker's
  own mailbox queue is bound to; a command that wants an answer names a
  ``ticket`` and a ``reply_to`` (exchange ``reply.celery.pidbox``, a routing
  key of the caller's), and each worker answers ``{hostname: result}`` there
  with the ticket in its headers.

The shapes were checked against Celery/kombu 5.7 (the version the OMOTES SDK
4.3.7 installs): the integration tests in ``integration_test/omotes`` run the
unmodified SDK worker on what these functions make.

Pure functions: no I/O, no clock (times and counters are passed in).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from segue.errors import SegueError
from segue.protocol.text import shorten

CONTENT_TYPE = "application/json"
CONTENT_ENCODING = "utf-8"
PIDBOX_EXCHANGE = "celery.pidbox"
"""Fanout exchange (not durable) of Celery's remote-control commands."""
REPLY_EXCHANGE = "reply.celery.pidbox"
"""Direct exchange (not durable) that workers answer remote-control commands on."""
TASK_QUEUE_ARGUMENTS: Mapping[str, Any] = {"x-max-priority": 10}
"""The arguments OMOTES workers declare their task queues with
(``omotes_sdk/internal/worker/worker.py``); a queue declared otherwise is refused."""
MAX_CELERY_PRIORITY = 9
"""Celery priorities run from 0 to 9; higher goes first on RabbitMQ."""
MAX_ARGS_REPR_CHARS = 1024
"""Celery's ``argsrepr_maxsize``: how much of the arguments logs and ``inspect`` show."""
MAX_SHOWN_STRING_CHARS = 100
"""A longer string argument (an ESDL) is shown cut to this in ``argsrepr``."""
REVOKE_SIGNAL = "SIGTERM"
"""The signal OMOTES terminates revoked tasks with (``celery_interface.py``)."""


class CeleryWireError(SegueError):
    """A Celery message could not be read."""


@dataclass(frozen=True)
class AmqpMessage:
    """A message for Celery: body, headers and the properties Celery reads."""

    body: bytes
    headers: dict[str, Any] = field(default_factory=dict)
    correlation_id: str | None = None
    priority: int | None = None
    persistent: bool = True
    content_type: str = CONTENT_TYPE
    content_encoding: str = CONTENT_ENCODING


def celery_priority(priority: int) -> int:
    """The Celery priority of a Segue job priority: the same number, within 0..9.

    OMOTES gives Celery 2 / 4 / 6 for LOW / MEDIUM / HIGH, and the gateway
    submits OMOTES jobs with those Segue priorities, so they reach the worker
    unchanged.
    """
    return max(0, min(MAX_CELERY_PRIORITY, priority))


def task_message(
    name: str, task_id: str, args: Sequence[Any], priority: int, origin: str
) -> AmqpMessage:
    """The protocol-2 message that makes a Celery worker run task ``name`` with ``args``.

    What ``app.signature(name, args, queue=name, priority=p).delay()`` sends
    (with no result backend): the task id is also the ``root_id`` and the
    ``correlation_id``; nothing is chained, grouped, delayed or expiring.
    ``origin`` names the sender (Celery writes ``gen<pid>@<host>``).
    Raises :class:`CeleryWireError` for arguments JSON cannot carry.
    """
    headers: dict[str, Any] = {
        "lang": "py",
        "task": name,
        "id": task_id,
        "shadow": None,
        "eta": None,
        "expires": None,
        "group": None,
        "group_index": None,
        "retries": 0,
        "timelimit": [None, None],
        "root_id": task_id,
        "parent_id": None,
        "argsrepr": args_repr(args),
        "kwargsrepr": "{}",
        "origin": origin,
        "ignore_result": False,
        "replaced_task_nesting": 0,
        "stamped_headers": None,
        "stamps": {},
    }
    embed = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
    return AmqpMessage(
        _json([list(args), {}, embed]),
        headers,
        correlation_id=task_id,
        priority=celery_priority(priority),
    )


def args_repr(args: Sequence[Any]) -> str:
    """The arguments as logs show them: long strings cut, the whole at most 1024 characters."""
    shown = tuple(
        shorten(arg, MAX_SHOWN_STRING_CHARS) if isinstance(arg, str) else arg for arg in args
    )
    return shorten(repr(shown), MAX_ARGS_REPR_CHARS)


def revoke_command(
    task_id: str, clock: int, expires: int, signal: str = REVOKE_SIGNAL
) -> AmqpMessage:
    """``app.control.revoke(task_id, terminate=True, signal=signal)``, for every worker.

    A worker running the task kills its process with ``signal`` (it logs
    ``Terminating <id> (<signal number>)``); every worker that hears it also
    discards the task should it receive it later (for as long as it runs).
    ``clock``: the sender's logical clock; ``expires``: POSIX seconds after
    which the command is stale.
    """
    arguments = {"task_id": task_id, "terminate": True, "signal": signal}
    return _command("revoke", arguments, clock, expires)


def inspect_command(
    method: str,
    arguments: Mapping[str, Any],
    ticket: str,
    reply_routing_key: str,
    clock: int,
    expires: int,
) -> AmqpMessage:
    """A remote-control command every worker answers (e.g. ``active``), with ``ticket``,
    to :data:`REPLY_EXCHANGE` with ``reply_routing_key``."""
    reply_to = {"exchange": REPLY_EXCHANGE, "routing_key": reply_routing_key}
    return _command(method, arguments, clock, expires, ticket=ticket, reply_to=reply_to)


def active_command(ticket: str, reply_routing_key: str, clock: int, expires: int) -> AmqpMessage:
    """``app.control.inspect().active(safe=True)``: which tasks each worker runs now.

    ``safe``: arguments come back as their short ``argsrepr``, not as themselves
    (an input ESDL can be megabytes).
    """
    return inspect_command("active", {"safe": True}, ticket, reply_routing_key, clock, expires)


def active_task_ids(body: bytes) -> set[str]:
    """The ids of the tasks in one worker's answer to ``active`` (``{hostname: [task
    info, ...]}``); a worker that answered with an error contributes none."""
    try:
        answer = json.loads(body)
    except ValueError as exc:
        raise CeleryWireError(f"the answer to 'active' is not JSON: {exc}") from exc
    if not isinstance(answer, dict):
        raise CeleryWireError("the answer to 'active' is not an object of workers")
    return {
        task["id"]
        for tasks in answer.values()
        if isinstance(tasks, list)
        for task in tasks
        if isinstance(task, dict) and isinstance(task.get("id"), str)
    }


def _command(
    method: str, arguments: Mapping[str, Any], clock: int, expires: int, **extra: Any
) -> AmqpMessage:
    body = {
        "method": method,
        "arguments": dict(arguments),
        "destination": None,
        "pattern": None,
        "matcher": None,
        **extra,
    }
    # kombu sends ``expires`` as a float; AMQP floats of pamqp are single precision,
    # off by a minute at today's timestamps, so whole seconds are sent instead.
    return AmqpMessage(_json(body), {"clock": clock, "expires": expires}, persistent=False)


def _json(value: Any) -> bytes:
    try:
        return json.dumps(value, allow_nan=False).encode(CONTENT_ENCODING)
    except (TypeError, ValueError) as exc:
        raise CeleryWireError(f"cannot be sent as JSON: {exc}") from exc
