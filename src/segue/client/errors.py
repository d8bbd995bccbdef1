"""Errors the client SDK raises, one class per way a call can fail.

:class:`BrokerUnavailableError` (connecting) and :class:`PublishError` (the
broker did not confirm a command) are the broker layer's own, named here too.
"""

from __future__ import annotations

from uuid import UUID

from segue.broker.connection import BrokerUnavailableError
from segue.broker.publisher import PublishError
from segue.errors import SegueError
from segue.protocol import kinds
from segue.protocol.messages import ErrorInfo

__all__ = [
    "BrokerUnavailableError",
    "ForbiddenError",
    "JobRejectedError",
    "NotConnectedError",
    "PublishError",
    "RequestFailedError",
    "RequestTimeoutError",
    "UpdateTimeoutError",
]


class NotConnectedError(SegueError):
    """The client is not connected: use ``async with SegueClient(...)`` or ``connect()``."""


class RequestTimeoutError(SegueError, TimeoutError):
    """No orchestrator answered a query in time (is one running on this namespace?)."""


class RequestFailedError(SegueError):
    """The orchestrator answered a query with an error."""

    def __init__(self, error: ErrorInfo) -> None:
        super().__init__(f"{error.kind}: {error.message}")
        self.error = error


class ForbiddenError(RequestFailedError):
    """The orchestrator refused to act on or tell about a job of another user.

    Only a job's owner (the user that submitted it) and the users listed in the
    orchestrator's ``SEGUE_ADMINS`` may retry, read or cancel it.
    """


def request_error(error: ErrorInfo) -> RequestFailedError:
    """The exception for an orchestrator's error answer: :class:`ForbiddenError` for
    a refusal on ownership, else :class:`RequestFailedError`."""
    if error.kind == kinds.FORBIDDEN:
        return ForbiddenError(error)
    return RequestFailedError(error)


class UpdateTimeoutError(SegueError, TimeoutError):
    """A job did not send the awaited update (acceptance or result) in time."""


class JobRejectedError(SegueError):
    """The orchestrator refused the submission; the job does not exist.

    ``kind`` is one of :data:`segue.protocol.kinds.REJECTION_KINDS`; ``reason``
    says precisely what was wrong (e.g. which parameter).
    """

    def __init__(self, job_id: UUID, kind: str, reason: str) -> None:
        super().__init__(f"job {job_id} was rejected ({kind}): {reason}")
        self.job_id = job_id
        self.kind = kind
        self.reason = reason
