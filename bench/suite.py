"""Segue side by side with a bare baseline of its design, on the same services.

    python -m bench.suite            # full: 3 rounds, N=5,000 drain, ...
    python -m bench.suite --quick    # every scenario at a small size, 1 round
    python -m bench.suite --profile  # py-spy profile of `segue serve` draining

Rounds alternate between the two systems (and the order within a round), so
a noisy neighbour hurts both alike; ratios are the figures that count. Writes
``bench/results/latest.md`` and ``latest.json`` (or ``--name``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from uuid import uuid4

import structlog

from bench import report
from bench.preload import preload
from bench.scenarios import Figures, Options, Sizes, in_flight, run_round
from bench.services import (
    BrokerProbe,
    RestartWatch,
    Services,
    drop_database,
    postgres_version,
    wait_ready,
)
from bench.stacks import summarise_file
from bench.systems import (
    BaselineSystem,
    SegueSystem,
    System,
    finish_cleanups,
    upgrade_segue_database,
)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
FULL = Sizes(
    drain=5000, burst=1000, latency=200, in_flight=(1000, 10000), preload=1_000_000, workers=1
)
QUICK = Sizes(drain=300, burst=100, latency=30, in_flight=(200, 1000), preload=50_000, workers=1)
PROFILE_TOP = 30
T = TypeVar("T")
ATTEMPTS = 6
"""A step that fails, or saw a service restart, is run again (at most this many times)."""
RECOVERY_WAIT_S = 900.0
STABLE_S = 15.0
"""Before running a failed step again, the services must have been up this long."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; sizes default to the full or the quick set."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, 1 round")
    parser.add_argument("--profile", action="store_true", help="profile `segue serve` in (a)")
    parser.add_argument("--rounds", type=int, help="rounds per system (full: 3, quick: 1)")
    parser.add_argument("--drain", type=int, help="(a) jobs")
    parser.add_argument("--burst", type=int, help="(b) 3-step jobs")
    parser.add_argument("--latency", type=int, help="(c) jobs of each shape")
    parser.add_argument("--in-flight", help="(e) two levels, e.g. 1000,10000; 0 skips (e)")
    parser.add_argument("--preload", type=int, help="(f) finished jobs; 0 skips (f)")
    parser.add_argument("--workers", type=int, help="worker processes per system (default 1)")
    parser.add_argument("--name", default="latest", help="results file name (without suffix)")
    parser.add_argument(
        "--amqp-url",
        default=os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"),
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "BENCH_POSTGRES_URL",
            # Loopback without TLS, as the figures in docs/performance.md were taken
            # (a server with TLS on would otherwise be used with it: sslmode=prefer).
            "postgresql://postgres@127.0.0.1:5432/postgres?sslmode=disable",
        ),
    )
    return parser.parse_args(argv)


def sizes_from(args: argparse.Namespace) -> Sizes:
    """The sizes of this run: the mode's defaults, overridden by options."""
    base = QUICK if args.quick else FULL
    levels = base.in_flight
    if args.in_flight is not None:
        parts = [int(p) for p in args.in_flight.split(",")]
        levels = (parts[0], parts[-1]) if parts[0] else (0, 0)
    return Sizes(
        drain=args.drain or base.drain,
        burst=args.burst or base.burst,
        latency=args.latency or base.latency,
        in_flight=levels,
        preload=base.preload if args.preload is None else args.preload,
        workers=args.workers or base.workers,
    )


def services_from(args: argparse.Namespace) -> Services:
    """The services, and the programs to start against them."""
    bin_dir = Path(sys.executable).parent
    segue = shutil.which("segue", path=str(bin_dir)) or shutil.which("segue")
    if segue is None:
        raise SystemExit("error: no `segue` command next to this Python; run ci/setup.sh")
    return Services(args.amqp_url, args.postgres_url, ROOT, sys.executable, segue)


async def run_suite(args: argparse.Namespace) -> dict[str, Any]:
    """Every round of both systems, then (e); returns the JSON document."""
    services = services_from(args)
    sizes = sizes_from(args)
    rounds = args.rounds or (1 if args.quick else 3)
    load_before = os.getloadavg()
    samples: report.Samples = {"segue": defaultdict(list), "baseline": defaultdict(list)}
    await wait_ready(services, RECOVERY_WAIT_S)
    preloaded = None
    if sizes.preload:
        preloaded = await timed(
            services,
            f"load {sizes.preload:,} finished jobs",
            partial(prepare_preloaded, services, sizes.preload),
        )
    try:
        for number in range(rounds):
            print(f"round {number + 1} of {rounds}", flush=True)
            await one_round(services, sizes, number, preloaded, samples)
        if sizes.in_flight[0]:
            figures = await timed(
                services,
                "segue in flight",
                lambda: in_flight(services, SegueSystem(services), sizes.in_flight),
            )
            record(samples, "segue", figures)
    finally:
        await wait_ready(services, RECOVERY_WAIT_S)
        await finish_cleanups()
        if preloaded is not None:
            await drop_database(services, preloaded)
    meta = {
        "config": {
            "mode": "quick" if args.quick else "full",
            "rounds": rounds,
            "sizes": sizes.__dict__ | {"in_flight": list(sizes.in_flight)},
            "submit_concurrency": 64,
            "worker_concurrency_or_prefetch": 64,
        },
        "versions": await versions(services),
        "machine": report.machine(load_before),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    low, high = sizes.in_flight
    return report.build(samples, report.figures(low, high, sizes.preload), meta)


async def one_round(
    services: Services,
    sizes: Sizes,
    number: int,
    preloaded: str | None,
    samples: report.Samples,
) -> None:
    """Both systems (order alternating by round), then Segue on the preloaded database."""
    systems: list[System] = [SegueSystem(services), BaselineSystem(services)]
    if number % 2:
        systems.reverse()
    empty_rate = 0.0
    for system in systems:
        figures = await timed(
            services, system.label, partial(run_round, services, system, Options(sizes))
        )
        record(samples, system.label, figures)
        if system.label == "segue":
            empty_rate = figures["drain_jobs_per_s"]
    if preloaded is not None:
        figures = await timed(
            services,
            "segue, preloaded database",
            lambda: run_round(
                services, SegueSystem(services, preloaded), Options(sizes, drain_only=True)
            ),
        )
        rate = figures["drain_jobs_per_s"]
        record(
            samples,
            "segue",
            {"preloaded_drain_jobs_per_s": rate, "preloaded_drain_ratio": rate / empty_rate},
        )


async def timed(services: Services, label: str, step: Callable[[], Awaitable[T]]) -> T:
    """Run ``step``, printing how long it took.

    A failed step (or one during which a service restarted) is run again once
    the services answer: the
    services are shared, and someone may restart them in the middle of a run.
    """
    for attempt in range(1, ATTEMPTS + 1):
        start = time.perf_counter()
        print(f"  {label} ...", flush=True)
        try:
            watch = await RestartWatch.start(services)
            try:
                figures = await step()
                await watch.check(services)
            finally:
                await watch.close()
        except Exception as exc:
            if attempt == ATTEMPTS:
                raise
            print(f"  {label} failed, running it again: {type(exc).__name__}: {exc}", flush=True)
            await wait_ready(services, RECOVERY_WAIT_S, STABLE_S)
            continue
        print(f"  {label}: {time.perf_counter() - start:.0f} s", flush=True)
        return figures
    raise AssertionError("unreachable")


def record(samples: report.Samples, system: str, figures: Figures) -> None:
    """Add one round's figures."""
    for key, value in figures.items():
        samples[system][key].append(value)


async def prepare_preloaded(services: Services, jobs: int) -> str:
    """A migrated Segue database holding ``jobs`` finished jobs."""
    database = f"segue_bench_preloaded_{uuid4().hex[:10]}"
    try:
        await upgrade_segue_database(services, database)
        await preload(services.database_url(database), jobs)
    except BaseException:
        with contextlib.suppress(Exception):  # a restarting server: left behind, named as such
            await drop_database(services, database)
        raise
    return database


async def versions(services: Services) -> dict[str, str]:
    """Versions of the services and libraries."""
    probe = await BrokerProbe.connect(services.amqp_url)
    try:
        rabbitmq = probe.server_version()
    finally:
        await probe.close()
    return report.versions(rabbitmq, await postgres_version(services))


async def run_profile(args: argparse.Namespace) -> str:
    """Scenario (a) with `segue serve` under py-spy; the summary of its samples."""
    services = services_from(args)
    sizes = sizes_from(args)
    if shutil.which("py-spy") is None:
        raise SystemExit("error: py-spy is not installed (pip install py-spy)")
    raw = RESULTS / "profile.raw.txt"
    raw.unlink(missing_ok=True)
    figures = await timed(
        services,
        "segue drain under py-spy",
        lambda: run_round(
            services, SegueSystem(services), Options(sizes, drain_only=True, profile=raw)
        ),
    )
    if not raw.exists():
        raise SystemExit("error: py-spy wrote no profile")
    header = (
        f"py-spy profile of `segue serve` in scenario (a): drain of {sizes.drain:,} "
        f"1-step jobs, {sizes.workers} worker process(es)\n"
        f"segue {report.git_sha(report.segue_source())}; "
        f"{figures['drain_jobs_per_s']:.0f} jobs/s while sampled at 200 Hz (non-blocking); "
        f"{figures['drain_cpu_ms_per_step']:.2f} ms CPU per step"
    )
    return summarise_file(raw, PROFILE_TOP, header)


def quiet_client_logs() -> None:
    """The SDK logs each submission at info; the suite only wants warnings."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


def main(argv: list[str] | None = None) -> None:
    """Run the suite (or the profile) and write the results."""
    args = parse_args(argv)
    # Ctrl-C and SIGTERM end the run through the same path, which stops every child.
    # (A shell that starts the suite in the background leaves SIGINT ignored.)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    quiet_client_logs()
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.profile:
        summary = asyncio.run(run_profile(args))
        (RESULTS / "profile.txt").write_text(summary + "\n")
        print(summary)
        return
    document = asyncio.run(run_suite(args))
    table = report.markdown(document)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(document, indent=2) + "\n")
    (RESULTS / f"{args.name}.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
