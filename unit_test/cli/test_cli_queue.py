"""``segue submit --wait`` asks where a waiting step stands while it waits, and only
then (:class:`segue.cli_queue.QueueWatch`)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from fakes import sample_job_view
from segue.cli_queue import QueueWatch
from segue.client import RequestTimeoutError
from segue.protocol.messages import JobStatus, JobView, QueueEstimate

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
PLACE = QueueEstimate(
    step="optimise", queue="optimise", position=2, waiting=5, busy=1, workers=1, at=T0
)


def view(status: JobStatus, queue: QueueEstimate | None) -> JobView:
    return sample_job_view(status=status, queue=queue)


class FakeJob:
    """Answers ``get`` from a script; an exception in it is raised instead."""

    def __init__(self, *answers: JobView | Exception) -> None:
        self.answers = list(answers)
        self.asked: list[tuple[bool, bool]] = []

    async def get(self, include_history: bool = True, include_queue: bool = True) -> JobView:
        self.asked.append((include_history, include_queue))
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


async def test_it_shows_the_place_until_the_job_ends_and_survives_a_lost_answer() -> None:
    job = FakeJob(
        view(JobStatus.QUEUED, PLACE),
        RequestTimeoutError("no answer"),
        view(JobStatus.QUEUED, PLACE.model_copy(update={"position": 1})),
        view(JobStatus.SUCCEEDED, None),
    )
    shown: list[int] = []
    watch = QueueWatch(job, lambda place: shown.append(place.position), interval_s=0.001)
    await asyncio.wait_for(watch.run(), 5)
    assert shown == [2, 1]
    assert set(job.asked) == {(False, True)}, "no history, with the queue"


async def test_it_does_not_ask_while_the_step_reports_progress() -> None:
    job = FakeJob(view(JobStatus.RUNNING, None))
    async with QueueWatch(job, lambda place: None, interval_s=0.001) as watch:
        await asyncio.sleep(0.05)
        assert job.asked, "asks while nothing was reported"
        watch.step_progressed()
        await asyncio.sleep(0.01)
        asked = len(job.asked)
        await asyncio.sleep(0.05)
        assert len(job.asked) == asked, "quiet once the step reports progress"
        watch.step_entered()
        await asyncio.sleep(0.05)
        assert len(job.asked) > asked, "asks again for the next step"
