"""Engine effects as the messages that carry them out.

Tasks, stops and results are *durable*: written to the outbox in the same
transaction as the state they follow from, and published after the commit
(again by the relay, should the process die first). Status and progress
updates are *notices*: published after the commit but never stored, since a
follower that misses one loses nothing (the job's state can always be
queried, and its result is durable); within one batch only the newest notice
of each kind per job is sent, and none for a job whose result is in the batch.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime
from uuid import UUID, uuid4

from segue.engine.effects import (
    DispatchStep,
    Effect,
    NotifyProgress,
    NotifyResult,
    NotifyStatus,
    StopAttempt,
)
from segue.protocol.codec import encode
from segue.protocol.envelope import Outgoing
from segue.protocol.messages import (
    CancelAttempt,
    JobFinished,
    JobProgressed,
    JobStatusChanged,
    StepTask,
)
from segue.protocol.names import CC_HEADER, Names, attempt_control_key, update_routing_key

Notice = NotifyStatus | NotifyProgress


def is_durable(effect: Effect) -> bool:
    """Whether the effect must survive a crash (outbox) rather than be a notice."""
    return not isinstance(effect, NotifyStatus | NotifyProgress)


def latest_notices(effects: Iterable[Effect]) -> list[Notice]:
    """The notices worth sending of a batch's effects (see the module docstring)."""
    latest: dict[tuple[UUID, type[Notice]], Notice] = {}
    finished: set[UUID] = set()
    for effect in effects:
        if isinstance(effect, NotifyResult):
            finished.add(effect.job_id)
        elif isinstance(effect, NotifyStatus | NotifyProgress):
            key = (effect.job_id, type(effect))
            latest.pop(key, None)  # keep the order of the newest ones
            latest[key] = effect
    return [notice for (job_id, _), notice in latest.items() if job_id not in finished]


def to_outbox(
    effect: Effect,
    names: Names,
    now: datetime,
    updates_key: str | None = None,
    owner: str | None = None,
) -> Outgoing:
    """The message that carries out ``effect``.

    Updates are routed by the job and its ``owner`` (see
    :func:`~segue.protocol.names.update_routing_key`), and to the submitter's
    ``updates_key`` too, if it gave one.
    """
    match effect:
        case DispatchStep():
            return _task(effect, names)
        case StopAttempt():
            body = CancelAttempt(
                job_id=effect.job_id,
                attempt_id=effect.attempt_id,
                reason=effect.reason,
                worker_id=effect.worker_id,
                token_digest=effect.token_digest,
                run_id=effect.run_id,
            )
            return _message(names.control_exchange, attempt_control_key(effect.attempt_id), body)
        case NotifyStatus():
            status = JobStatusChanged(
                job_id=effect.job_id, status=effect.status, step=effect.step, at=now, seq=effect.seq
            )
            return _update(names, "status", status, updates_key, owner)
        case NotifyProgress():
            progress = JobProgressed(
                job_id=effect.job_id,
                step=effect.step,
                fraction=effect.fraction,
                message=effect.message,
                at=now,
                seq=effect.seq,
            )
            return _update(names, "progress", progress, updates_key, owner)
        case NotifyResult():
            result = JobFinished(
                job_id=effect.job_id,
                status=effect.status,
                output=effect.output,
                error=effect.error,
                at=now,
                seq=effect.seq,
            )
            return _update(names, "result", result, updates_key, owner)


def _task(effect: DispatchStep, names: Names) -> Outgoing:
    task = StepTask(
        job_id=effect.job_id,
        workflow=effect.workflow,
        step=effect.step,
        queue=effect.queue,
        attempt=effect.attempt,
        attempt_id=effect.attempt_id,
        params=effect.params,
        inputs=effect.inputs,
        heartbeat_s=effect.heartbeat_s,
        timeout_s=effect.timeout_s,
        item=effect.item,
        item_index=effect.item_index,
        iteration=effect.iteration,
        token=effect.token,
    )
    return Outgoing(
        exchange=names.tasks_exchange,
        routing_key=effect.queue,
        body=encode(task),
        message_id=f"task-{effect.attempt_id}",
        priority=effect.priority,
        # A task no queue takes is returned (and stays in the outbox) instead of dropped.
        mandatory=True,
    )


def _update(
    names: Names,
    kind: str,
    body: JobStatusChanged | JobProgressed | JobFinished,
    updates_key: str | None,
    owner: str | None,
) -> Outgoing:
    routing_key = update_routing_key(body.job_id, kind, owner)
    message = _message(names.updates_exchange, routing_key, body)
    headers: dict[str, str | list[str]] = {} if updates_key is None else {CC_HEADER: [updates_key]}
    # A notice is lost with a broker restart anyway (it is published once, never
    # relayed), so the broker need not write it to disk.
    return replace(message, headers=headers, persistent=kind == "result")


def _message(
    exchange: str,
    routing_key: str,
    body: CancelAttempt | JobStatusChanged | JobProgressed | JobFinished,
) -> Outgoing:
    return Outgoing(
        exchange=exchange,
        routing_key=routing_key,
        body=encode(body),
        message_id=str(uuid4()),
    )
