"""Turn engine effects into wire messages for the outbox (written in the same
transaction as the state they follow from).
"""

from __future__ import annotations

from datetime import datetime
from uuid import uuid4

from segue.engine.effects import (
    DispatchStep,
    Effect,
    NotifyProgress,
    NotifyResult,
    NotifyStatus,
    StopAttempt,
)
from segue.protocol.codec import encode
from segue.protocol.messages import (
    CancelAttempt,
    JobFinished,
    JobProgressed,
    JobStatusChanged,
    StepTask,
)
from segue.protocol.names import Names, attempt_control_key, update_routing_key
from segue.store.repository import OutboxMessage


def to_outbox(effect: Effect, names: Names, now: datetime) -> OutboxMessage:
    """The outbox row that carries out ``effect``."""
    match effect:
        case DispatchStep():
            return _task(effect, names)
        case StopAttempt():
            body = CancelAttempt(
                job_id=effect.job_id, attempt_id=effect.attempt_id, reason=effect.reason
            )
            return _message(names.control_exchange, attempt_control_key(effect.attempt_id), body)
        case NotifyStatus():
            status = JobStatusChanged(
                job_id=effect.job_id, status=effect.status, step=effect.step, at=now
            )
            return _update(names, "status", status)
        case NotifyProgress():
            progress = JobProgressed(
                job_id=effect.job_id,
                step=effect.step,
                fraction=effect.fraction,
                message=effect.message,
                at=now,
            )
            return _update(names, "progress", progress)
        case NotifyResult():
            result = JobFinished(
                job_id=effect.job_id,
                status=effect.status,
                output=effect.output,
                error=effect.error,
                at=now,
            )
            return _update(names, "result", result)


def _task(effect: DispatchStep, names: Names) -> OutboxMessage:
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
    )
    return OutboxMessage(
        exchange=names.tasks_exchange,
        routing_key=effect.queue,
        body=encode(task),
        message_id=f"task-{effect.attempt_id}",
        priority=effect.priority,
    )


def _update(
    names: Names, kind: str, body: JobStatusChanged | JobProgressed | JobFinished
) -> OutboxMessage:
    return _message(names.updates_exchange, update_routing_key(body.job_id, kind), body)


def _message(
    exchange: str,
    routing_key: str,
    body: CancelAttempt | JobStatusChanged | JobProgressed | JobFinished,
) -> OutboxMessage:
    return OutboxMessage(
        exchange=exchange,
        routing_key=routing_key,
        body=encode(body),
        message_id=str(uuid4()),
    )
