"""The scenarios, each measuring one system (no asserts: a figure is what it is).

A *round* of a system runs, on a fresh database and broker names:
(a) drain, (b) burst, (c) one job at a time, and (d) the orchestrator's CPU per
step and peak RSS. :func:`in_flight` is (e); (f) is (a) on a database
preloaded by :mod:`bench.preload`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from bench.processes import Child, Children, cpu_seconds, memory_kib
from bench.services import BrokerProbe, Services
from bench.systems import BenchClient, Shape, System, cleanup

SUBMIT_CONCURRENCY = 64
"""Submissions in flight at once from the client (each waits for its confirm)."""
RESULT_TIMEOUT_S = 1800.0
WATCH_S = 1.0
"""How often a waiting scenario checks that the processes it needs are still alive."""
SETTLE_S = 2.0
"""Pause before reading memory, so the orchestrator is done with what it just got."""

Figures = dict[str, float]


@dataclass(frozen=True)
class Sizes:
    """How big each scenario is."""

    drain: int
    burst: int
    latency: int
    in_flight: tuple[int, int]
    preload: int
    workers: int


@dataclass(frozen=True)
class Options:
    """What a round runs."""

    sizes: Sizes
    drain_only: bool = False
    profile: Path | None = None


async def submit_all(client: BenchClient, shape: Shape, count: int) -> list[asyncio.Future[bool]]:
    """Submit ``count`` jobs, ``SUBMIT_CONCURRENCY`` at a time; the futures of their ends."""
    gate = asyncio.Semaphore(SUBMIT_CONCURRENCY)

    async def one() -> asyncio.Future[bool]:
        async with gate:
            return await client.submit(shape)

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def finished(futures: list[asyncio.Future[bool]], children: Children) -> int:
    """Wait for every job; how many failed. Raises if one of ``children`` died meanwhile."""
    every = asyncio.gather(*futures)
    async with asyncio.timeout(RESULT_TIMEOUT_S):
        while not every.done():
            children.check_alive()
            await asyncio.wait([every], timeout=WATCH_S)
    return sum(not ok for ok in every.result())


async def run_round(services: Services, system: System, options: Options) -> Figures:
    """One round of ``system``: every scenario but (e) and (f), or only the drain."""
    await system.prepare()
    try:
        async with Children() as children:
            client = await system.client()
            try:
                await system.start_workers(children, options.sizes.workers)
                figures, orchestrator = await drain(client, system, children, options)
                if not options.drain_only:
                    figures |= await burst(client, orchestrator, children, options.sizes.burst)
                    figures |= await latency(client, options.sizes.latency)
                figures["peak_rss_mib"] = memory_kib(orchestrator.target_pid(), "VmHWM") / 1024
                if options.profile is not None:
                    await stop_profiled(orchestrator)
            finally:
                await client.close()
    finally:
        await cleanup(system)
    return figures


async def drain(
    client: BenchClient, system: System, children: Children, options: Options
) -> tuple[Figures, Child]:
    """(a): submissions wait in the queue, then the orchestrator starts and drains them."""
    count = options.sizes.drain
    futures = await submit_all(client, Shape.ONE, count)
    started = time.perf_counter()
    orchestrator, consuming = await system.start_orchestrator(children, options.profile)
    pid = orchestrator.target_pid()
    cpu_before = cpu_seconds(pid)
    failed = await finished(futures, children)
    elapsed = time.perf_counter() - consuming
    cpu = cpu_seconds(pid) - cpu_before
    return {
        "drain_jobs_per_s": count / elapsed,
        "drain_cpu_ms_per_step": cpu * 1000 / count,
        "drain_failed": failed,
        "startup_s": consuming - started,
    }, orchestrator


async def burst(
    client: BenchClient, orchestrator: Child, children: Children, count: int
) -> Figures:
    """(b): ``count`` three-step jobs submitted at once; steps/s until the last result."""
    pid = orchestrator.target_pid()
    cpu_before = cpu_seconds(pid)
    start = time.perf_counter()
    failed = await finished(await submit_all(client, Shape.THREE, count), children)
    elapsed = time.perf_counter() - start
    steps = count * Shape.THREE.steps
    return {
        "burst_steps_per_s": steps / elapsed,
        "burst_cpu_ms_per_step": (cpu_seconds(pid) - cpu_before) * 1000 / steps,
        "burst_failed": failed,
    }


async def latency(client: BenchClient, count: int) -> Figures:
    """(c): one job at a time, submit to result, for a one-step and a three-step job."""
    figures: Figures = {}
    for shape in (Shape.ONE, Shape.THREE):
        samples: list[float] = []
        failed = 0
        for _ in range(count):
            start = time.perf_counter()
            failed += not await client.run_one(shape)
            samples.append((time.perf_counter() - start) * 1000)
        figures[f"latency_{shape}_p50_ms"] = statistics.median(samples)
        figures[f"latency_{shape}_p95_ms"] = percentile(samples, 0.95)
        figures[f"latency_{shape}_failed"] = failed
    return figures


def percentile(samples: list[float], fraction: float) -> float:
    """The nearest-rank percentile of ``samples``."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


async def stop_profiled(profiler: Child) -> None:
    """Stop the profiled orchestrator and give the profiler time to write its output."""
    target = profiler.target_pid()
    if target != profiler.pid:
        os.kill(target, signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(profiler.process.wait(), 60)
    await profiler.stop()


async def in_flight(services: Services, system: System, levels: tuple[int, int]) -> Figures:
    """(e): RSS of the orchestrator with ``levels`` jobs dispatched to a queue nobody serves."""
    await system.prepare()
    queue = system.parked_queue()
    if queue is None:
        await system.cleanup()
        return {}
    figures: Figures = {}
    try:
        async with Children() as children:
            client = await system.client()
            probe = await BrokerProbe.connect(services.amqp_url)
            try:
                orchestrator, _ = await system.start_orchestrator(children)
                submitted: list[asyncio.Future[bool]] = []
                for level in levels:
                    submitted += await submit_all(client, Shape.PARKED, level - len(submitted))
                    await probe.wait_messages(queue, level, RESULT_TIMEOUT_S)
                    await asyncio.sleep(SETTLE_S)
                    rss = memory_kib(orchestrator.target_pid(), "VmRSS") / 1024
                    figures[f"in_flight_{level}_rss_mib"] = rss
                low, high = levels
                figures["in_flight_rss_growth"] = (
                    figures[f"in_flight_{high}_rss_mib"] / figures[f"in_flight_{low}_rss_mib"]
                )
                for future in submitted:
                    future.cancel()
            finally:
                await probe.close()
                await client.close()
    finally:
        await cleanup(system)
    return figures
