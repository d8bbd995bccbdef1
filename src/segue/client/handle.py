"""A handle on one submitted (or followed) job: its updates, its result, cancel."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING
from uuid import UUID

from segue.client.errors import JobRejectedError, UpdateTimeoutError
from segue.client.feed import JobFeed
from segue.protocol.kinds import is_rejection
from segue.protocol.messages import (
    JobFinished,
    JobStatus,
    JobView,
    Update,
)

if TYPE_CHECKING:
    from segue.client.client import SegueClient


class JobHandle:
    """What :meth:`SegueClient.submit` and :meth:`SegueClient.follow` return.

    The client listens to the job's updates from before the submission was
    sent, so none is missed and waiting for the result costs no query. The
    orchestrator is asked for the job's state only when an update may have
    been missed: for a job taken up with :meth:`SegueClient.follow` (it may
    have finished before), after a reconnect (every followed job), and once
    before :meth:`result` gives up on a timeout.
    """

    def __init__(
        self,
        job_id: UUID,
        feed: JobFeed,
        client: SegueClient,
        catch_up: Callable[[], Awaitable[None]],
        *,
        query_first: bool = True,
        final_check_s: float = 5.0,
    ) -> None:
        self._job_id = job_id
        self._feed = feed
        self._client = client
        self._catch_up = catch_up
        self._query_first = query_first
        self._final_check_s = final_check_s

    @property
    def job_id(self) -> UUID:
        """The job's id."""
        return self._job_id

    def __repr__(self) -> str:
        return f"JobHandle({self._job_id})"

    async def accepted(self, timeout: float | None = None) -> Update:  # noqa: ASYNC109 - API
        """The first update about the job, once the orchestrator handled the submission.

        Raises :class:`JobRejectedError` if the submission was refused (unknown
        workflow, invalid parameters, ...), :class:`UpdateTimeoutError` if no
        update arrived within ``timeout`` seconds.
        """
        try:
            first = await asyncio.wait_for(self._feed.wait_first(), timeout)
        except TimeoutError as exc:
            raise UpdateTimeoutError(
                f"no update about job {self._job_id} within {timeout} s; "
                "is an orchestrator running?"
            ) from exc
        if (
            isinstance(first, JobFinished)
            and first.status is JobStatus.FAILED
            and first.error is not None
            and is_rejection(first.error.kind)
        ):
            raise JobRejectedError(self._job_id, first.error.kind, first.error.message)
        return first

    async def updates(self) -> AsyncIterator[Update]:
        """Status changes, progress and finally the result, as they arrive.

        The first call also yields what arrived since the handle was created;
        iteration ends after the result (:class:`JobFinished`).
        """
        reader = self._feed.reader()
        try:
            while True:
                update = await reader.get()
                yield update
                if isinstance(update, JobFinished):
                    return
        finally:
            self._feed.release(reader)

    async def result(self, timeout: float | None = None) -> JobFinished:  # noqa: ASYNC109 - API
        """The job's result, waiting for it if it is not finished yet.

        Waits for the result update; a handle from :meth:`SegueClient.follow`
        asks the orchestrator first (the job may have finished already). After
        ``timeout`` seconds it asks the orchestrator once more (for at most a
        few seconds), and raises :class:`UpdateTimeoutError` if the job has
        not finished. Raises :class:`ForbiddenError` if the orchestrator refuses
        to tell this user about the job (it is another user's).
        """
        try:
            async with asyncio.timeout(timeout):
                if self._feed.result is None and self._query_first:
                    self._query_first = False
                    await self._catch_up()
                return await self._feed.wait_result()
        except TimeoutError as exc:
            if isinstance(exc, UpdateTimeoutError):
                raise
            if await self._final_check():
                return await self._feed.wait_result()
            raise UpdateTimeoutError(
                f"job {self._job_id} did not finish within {timeout} s"
            ) from exc

    async def _final_check(self) -> bool:
        """Ask the orchestrator once whether the job finished; True if it did."""
        if self._feed.result is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._catch_up(), self._final_check_s)
        return self._feed.result is not None

    async def cancel(self, reason: str = "cancelled by client") -> None:
        """Ask the orchestrator to cancel the job."""
        await self._client.cancel(self._job_id, reason)

    async def get(
        self, include_history: bool = True, include_queue: bool = False
    ) -> JobView | None:
        """The job's stored state, as the orchestrator has it now (with ``include_queue``:
        where its waiting step stands in its queue, see :meth:`SegueClient.get`)."""
        return await self._client.get(
            self._job_id, include_history=include_history, include_queue=include_queue
        )
