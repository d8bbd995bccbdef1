"""Batches that share a job take turns in the order they claimed; others do not wait."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from segue.service.turns import Turns


async def _batch(
    turns: Turns[str], keys: list[str], log: list[tuple[str, int]], index: int, pause: float
) -> None:
    turn = turns.claim(keys)
    try:
        await turn.ready()
        await asyncio.sleep(pause)
        log.extend((key, index) for key in keys)
    finally:
        turn.done()


async def test_a_later_batch_about_the_same_job_waits_for_the_earlier_one() -> None:
    turns: Turns[str] = Turns()
    log: list[tuple[str, int]] = []
    slow = asyncio.create_task(_batch(turns, ["job-a"], log, 0, 0.05))
    await asyncio.sleep(0)  # the slow batch claimed first
    fast = asyncio.create_task(_batch(turns, ["job-a"], log, 1, 0.0))
    await asyncio.gather(slow, fast)
    assert log == [("job-a", 0), ("job-a", 1)]
    assert len(turns) == 0, "finished claims are forgotten"


async def test_batches_about_other_jobs_do_not_wait() -> None:
    turns: Turns[str] = Turns()
    log: list[tuple[str, int]] = []
    slow = asyncio.create_task(_batch(turns, ["job-a"], log, 0, 0.05))
    await asyncio.sleep(0)
    fast = asyncio.create_task(_batch(turns, ["job-b"], log, 1, 0.0))
    await asyncio.gather(slow, fast)
    assert log == [("job-b", 1), ("job-a", 0)]


async def test_a_failed_batch_lets_the_next_one_go_on() -> None:
    turns: Turns[str] = Turns()
    first = turns.claim(["job-a"])
    second = turns.claim(["job-a"])
    waiting = asyncio.create_task(second.ready())
    await asyncio.sleep(0.01)
    assert not waiting.done()
    first.done()  # what a handler's ``finally`` does when its batch raised
    await asyncio.wait_for(waiting, 1)
    second.done()
    first.done()  # done twice does no harm
    assert len(turns) == 0


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.lists(st.sampled_from("abcd"), min_size=1, max_size=3),
            st.sampled_from([0.0, 0.001, 0.003]),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_along_every_job_batches_run_in_the_order_they_claimed(
    batches: list[tuple[list[str], float]],
) -> None:
    async def run() -> list[tuple[str, int]]:
        turns: Turns[str] = Turns()
        log: list[tuple[str, int]] = []
        tasks = []
        for index, (keys, pause) in enumerate(batches):
            tasks.append(asyncio.create_task(_batch(turns, keys, log, index, pause)))
            await asyncio.sleep(0)  # each batch claims before the next is taken
        await asyncio.gather(*tasks)
        return log

    log = asyncio.run(run())
    for key in "abcd":
        order = [index for logged, index in log if logged == key]
        assert order == sorted(order), key
