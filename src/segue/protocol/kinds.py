"""Names of the error kinds Segue itself puts in :class:`~segue.protocol.messages.ErrorInfo`.

A handler's exception is reported with its class name as ``kind``; the kinds
below are Segue's own reasons. They are part of the wire contract: the client
SDK tells a refused submission from a failed job by :data:`REJECTION_KINDS`.
"""

from __future__ import annotations

# --- a submission was refused (answered with a failed ``job_result``) -------------------

REJECTED = "rejected"
"""The orchestrator refused the submission for a reason not covered below."""

INVALID_MESSAGE = "invalid_message"
"""The submission's body could not be decoded (it named a job id, so it is answered)."""

INVALID_PARAMETERS = "invalid_parameters"
"""The job parameters do not match the workflow's parameter specification."""

UNKNOWN_WORKFLOW = "unknown_workflow"
"""The orchestrator runs no workflow of that name."""

REJECTION_KINDS: frozenset[str] = frozenset(
    {REJECTED, INVALID_MESSAGE, INVALID_PARAMETERS, UNKNOWN_WORKFLOW}
)
"""Kinds meaning "the job was never accepted", as opposed to "the job ran and failed"."""

# --- a step attempt ended without the handler's own exception --------------------------

INVALID_OUTPUT = "invalid_output"
"""The handler returned something that is not a JSON object (or one too large to send)."""

CANCELLED = "cancelled"
"""The attempt was cancelled while it ran."""

WORKER_LOST = "worker_lost"
"""The worker running the attempt stopped heartbeating or crashed."""

INVALID_TASK = "invalid_task"
"""The worker could not read the task (it read the ids it reports this for)."""

# --- a request was refused (answered with an ``error_reply``) ---------------------------

UNKNOWN_JOB = "unknown_job"
"""The orchestrator has no job with that id."""

RETRY_REFUSED = "retry_refused"
"""Only failed or timed-out jobs can be retried."""

FORBIDDEN = "forbidden"
"""The job belongs to another user, and the caller is not an admin."""

INVALID_REPLY_TO = "invalid_reply_to"
"""``reply_to`` names a queue that is not one of the caller's own reply queues."""

# --- a worker report was refused (dead-lettered) ----------------------------------------

WRONG_TOKEN = "wrong_token"  # noqa: S105 - a kind of error, not a secret
"""A report about an attempt did not carry the attempt's token."""

ENGINE_ERROR = "engine_error"
"""The orchestrator failed on the job's timers (a bug); the job was failed with the reason."""

# --- the workflow definition could not be followed --------------------------------------

CONDITION_ERROR = "condition_error"
"""A branch condition could not be evaluated."""

WORKFLOW_ERROR = "workflow_error"
"""The workflow leads somewhere it cannot go, e.g. an unknown step."""


def is_rejection(kind: str) -> bool:
    """Whether an error of ``kind`` means the submission was refused."""
    return kind in REJECTION_KINDS
