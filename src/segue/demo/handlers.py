"""Demo step handlers for ``config/workflow_config.json``.

Each handler works for ``params["step_seconds"]`` (default 1 s) in ten
increments, reporting progress; raises :class:`DemoFailure` halfway through
when ``params["fail_at"]`` names its step (and kills the whole worker process
when ``params["crash_at"]`` does: a poison job); and returns a small, plausible
result computed deterministically from the parameters and earlier outputs.
``prepare``, ``optimise`` and ``quick_check`` are async; ``simulate`` and
``report`` are plain blocking functions (run in a thread) that stop early when
the attempt is cancelled.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from segue.worker import StepContext, step_handler

JsonObject = dict[str, Any]

INCREMENTS = 10
CRASH_EXIT_CODE = 137
"""Exit code of a worker killed by ``params["crash_at"]`` (as after SIGKILL)."""
DEFAULT_STEP_SECONDS = 1.0
DEMAND_TWH_BY_REGION = {"nl": 120.0, "de": 500.0, "be": 85.0}
"""Annual electricity demand today, roughly."""

HOURS_PER_YEAR = 8760
DEMAND_GROWTH_PER_YEAR = 0.015
CAPACITY_FACTOR = 0.35
CAPEX_EUR_PER_MW = 1_100_000.0
EMISSIONS_T_PER_MWH = 0.05


class DemoFailure(RuntimeError):  # noqa: N818 - the error kind users see: "DemoFailure"
    """Raised on purpose by a demo handler (``params["fail_at"]`` names its step)."""


def _step_seconds(ctx: StepContext) -> float:
    return max(0.0, float(ctx.params.get("step_seconds", DEFAULT_STEP_SECONDS)))


def _maybe_fail(ctx: StepContext, increment: int) -> None:
    if increment != INCREMENTS // 2:
        return
    if ctx.params.get("fail_at") == ctx.step:
        raise DemoFailure(f"step {ctx.step!r} failed on purpose (params.fail_at)")
    if ctx.params.get("crash_at") == ctx.step:
        # A poison job: the whole worker process dies, as in an out-of-memory kill.
        ctx.log.warning("demo_worker_crashing_on_purpose")
        os._exit(CRASH_EXIT_CODE)


async def _work(ctx: StepContext) -> None:
    """Pretend to work, on the event loop."""
    pause = _step_seconds(ctx) / INCREMENTS
    for increment in range(INCREMENTS):
        _maybe_fail(ctx, increment)
        ctx.progress(increment / INCREMENTS, f"{ctx.step}: part {increment + 1} of {INCREMENTS}")
        await asyncio.sleep(pause)
    ctx.progress(1.0, f"{ctx.step}: done")


def _work_blocking(ctx: StepContext) -> bool:
    """Pretend to work, blocking the thread; False if the attempt was cancelled."""
    pause = _step_seconds(ctx) / INCREMENTS
    for increment in range(INCREMENTS):
        if ctx.cancelled:
            ctx.log.info("demo_step_stopped_early", increment=increment)
            return False
        _maybe_fail(ctx, increment)
        ctx.progress(increment / INCREMENTS, f"{ctx.step}: part {increment + 1} of {INCREMENTS}")
        time.sleep(pause)
    ctx.progress(1.0, f"{ctx.step}: done")
    return True


def _horizon(ctx: StepContext) -> int:
    return int(ctx.params.get("horizon_years", 10))


def demand_twh(region: str, horizon_years: int) -> float:
    """Demand at the end of the horizon, growing steadily from today's."""
    today = DEMAND_TWH_BY_REGION.get(region, 100.0)
    return round(today * (1 + DEMAND_GROWTH_PER_YEAR) ** horizon_years, 1)


@step_handler("prepare")
async def prepare(ctx: StepContext) -> JsonObject:
    """Collect the region's demand data for the horizon."""
    await _work(ctx)
    region = str(ctx.params.get("region", "nl"))
    demand = demand_twh(region, _horizon(ctx))
    return {
        "region": region,
        "horizon_years": _horizon(ctx),
        "demand_twh": demand,
        "peak_mw": round(demand * 1e6 / HOURS_PER_YEAR * 1.6),
    }


@step_handler("optimise")
async def optimise(ctx: StepContext) -> JsonObject:
    """Size the generation capacity and price it, CO2 included."""
    await _work(ctx)
    prepared = ctx.inputs.get("prepare", {})
    demand = float(prepared.get("demand_twh", demand_twh("nl", _horizon(ctx))))
    co2_price = float(ctx.params.get("co2_price_eur", 80.0))
    capacity_mw = round(demand * 1e6 / (HOURS_PER_YEAR * CAPACITY_FACTOR))
    emissions_t = demand * 1e6 * EMISSIONS_T_PER_MWH
    cost_eur = capacity_mw * CAPEX_EUR_PER_MW + emissions_t * co2_price * _horizon(ctx)
    return {
        "capacity_mw": capacity_mw,
        "cost_eur": round(cost_eur, 2),
        "emissions_t_per_year": round(emissions_t),
    }


@step_handler("simulate")
def simulate(ctx: StepContext) -> JsonObject | None:
    """Simulate the optimised system hour by hour (a blocking handler)."""
    if not _work_blocking(ctx):
        return None
    capacity = int(ctx.inputs.get("optimise", {}).get("capacity_mw", 0))
    demand = float(ctx.inputs.get("prepare", {}).get("demand_twh", 0.0))
    supplied_twh = capacity * HOURS_PER_YEAR * CAPACITY_FACTOR / 1e6
    return {
        "hours_simulated": HOURS_PER_YEAR,
        "unserved_mwh": round(max(0.0, demand - supplied_twh) * 1e6, 1),
        "curtailed_mwh": round(max(0.0, supplied_twh - demand) * 1e6, 1),
    }


@step_handler("report")
def report(ctx: StepContext) -> JsonObject | None:
    """Summarise what the earlier steps produced (a blocking handler)."""
    if not _work_blocking(ctx):
        return None
    optimised = ctx.inputs.get("optimise", {})
    simulated = "simulate" in ctx.inputs
    region = ctx.inputs.get("prepare", {}).get("region", ctx.params.get("region", "nl"))
    summary = (
        f"{region}: {optimised.get('capacity_mw', '?')} MW for "
        f"{optimised.get('cost_eur', '?')} EUR over {_horizon(ctx)} years"
        + (", simulated" if simulated else ", not simulated")
    )
    return {
        "summary": summary,
        "steps": sorted(ctx.inputs),
        "cost_eur": optimised.get("cost_eur"),
        "simulated": simulated,
    }


@step_handler("quick_check")
async def quick_check(ctx: StepContext) -> JsonObject:
    """Echo ``params["value"]`` back after ``step_seconds``."""
    await _work(ctx)
    return {"value": ctx.params.get("value", 1), "attempt": ctx.attempt}


ALL_HANDLERS = (prepare, optimise, simulate, report, quick_check)
"""Every demo handler, in workflow order."""
