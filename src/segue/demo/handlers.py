"""Demo step handlers for ``config/workflow_config.json``.

Each handler works for ``params["step_seconds"]`` (default 1 s) in ten
increments, reporting progress; raises :class:`DemoFailure` halfway through
when ``params["fail_at"]`` names its step (and kills the whole worker process
when ``params["crash_at"]`` does: a poison job); and returns a small, plausible
result computed deterministically from the parameters and earlier outputs.
``prepare``, ``optimise`` and ``quick_check`` are async; ``simulate`` and
``report`` are plain blocking functions (run in a thread) that stop early when
the attempt is cancelled.

Workflow ``scenario_study`` uses the same queues: ``optimise`` hands on the
job's ``scenarios``; ``simulate`` runs one scenario per map item (``ctx.item``),
failing the first attempt of ``params["fail_item"]``; ``report`` serves the
steps ``costs``, ``emissions``, ``compare`` (repeated: it refines its previous
output), ``review``, ``report`` and ``cleanup`` (which reads ``_failure``).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable

from segue.protocol.messages import JsonObject
from segue.worker import StepContext, step_handler

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
SCENARIO_DEMAND = {"low": 0.8, "mid": 1.0, "high": 1.25}
"""Demand of a scenario relative to the plan's; other scenario names keep it."""
LOST_LOAD_EUR_PER_MWH = 3000.0
REFINEMENT = 0.99
"""Each comparison round takes 1% off the best cost: two rounds agree within 2%."""
CONVERGED_WITHIN = 0.02


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
    output: JsonObject = {
        "capacity_mw": capacity_mw,
        "cost_eur": round(cost_eur, 2),
        "emissions_t_per_year": round(emissions_t),
    }
    if "scenarios" in ctx.params:  # scenario_study: the list its map step runs over
        output["scenarios"] = list(ctx.params["scenarios"])
    return output


@step_handler("simulate")
def simulate(ctx: StepContext) -> JsonObject | None:
    """Simulate the optimised system hour by hour (a blocking handler); in a map
    step, under the demand scenario ``ctx.item``."""
    if ctx.item is not None:
        return simulate_scenario(ctx)
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


def simulate_scenario(ctx: StepContext) -> JsonObject | None:
    """One item of ``scenario_study``'s map: the plan under demand scenario ``ctx.item``.

    The first attempt at the scenario named by ``params["fail_item"]`` fails, so
    its retry shows in the job's attempts.
    """
    scenario = str(ctx.item)
    if ctx.params.get("fail_item") == scenario and ctx.attempt == 1:
        raise DemoFailure(f"scenario {scenario!r} failed on purpose (params.fail_item)")
    if not _work_blocking(ctx):
        return None
    plan = ctx.inputs.get("plan", {})
    supplied_twh = int(plan.get("capacity_mw", 0)) * HOURS_PER_YEAR * CAPACITY_FACTOR / 1e6
    demand = supplied_twh * SCENARIO_DEMAND.get(scenario, 1.0)
    unserved_mwh = max(0.0, demand - supplied_twh) * 1e6
    cost = float(plan.get("cost_eur", 0.0)) + unserved_mwh * LOST_LOAD_EUR_PER_MWH
    emissions = float(plan.get("emissions_t_per_year", 0)) * SCENARIO_DEMAND.get(scenario, 1.0)
    return {
        "scenario": scenario,
        "index": ctx.item_index,
        "demand_twh": round(demand, 1),
        "unserved_mwh": round(unserved_mwh, 1),
        "cost_eur": round(cost, 2),
        "emissions_t_per_year": round(emissions),
    }


@step_handler("report")
def report(ctx: StepContext) -> JsonObject | None:
    """Summarise what the earlier steps produced (a blocking handler); serves the
    report-queue steps of ``scenario_study`` too."""
    if not _work_blocking(ctx):
        return None
    if ctx.workflow == "scenario_study":
        return STUDY_STEPS[ctx.step](ctx)
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


def _runs(ctx: StepContext) -> list[JsonObject]:
    """The scenario runs that succeeded (a tolerated failed item is null)."""
    return [run for run in ctx.inputs.get("runs", []) if isinstance(run, dict)]


def _costs(ctx: StepContext) -> JsonObject:
    """Total cost of each scenario and the cheapest (branch ``costs``)."""
    by_scenario = {run["scenario"]: run["cost_eur"] for run in _runs(ctx)}
    cheapest = min(by_scenario, key=by_scenario.__getitem__, default=None)
    return {
        "by_scenario": by_scenario,
        "cheapest": cheapest,
        "best_cost_eur": by_scenario.get(cheapest) if cheapest else None,
    }


def _emissions(ctx: StepContext) -> JsonObject:
    """Yearly emissions of each scenario and the lowest (branch ``emissions``)."""
    by_scenario = {run["scenario"]: run["emissions_t_per_year"] for run in _runs(ctx)}
    return {"by_scenario": by_scenario, "lowest_t": min(by_scenario.values(), default=None)}


def _compare(ctx: StepContext) -> JsonObject:
    """Refine the best cost; converged once two rounds agree (step ``compare``, repeated).

    From its second iteration on, its previous output is ``inputs["compare"]``.
    """
    costs = ctx.inputs.get("assess", {}).get("costs") or {}
    previous = ctx.inputs.get("compare")
    if previous is None:
        best = float(costs.get("best_cost_eur") or 0.0)
        converged = False
    else:
        before = float(previous["best_cost_eur"])
        best = before * REFINEMENT
        converged = abs(before - best) <= CONVERGED_WITHIN * before
    return {
        "iteration": ctx.iteration,
        "best_scenario": costs.get("cheapest"),
        "best_cost_eur": round(best, 2),
        "converged": converged,
    }


def _review(ctx: StepContext) -> JsonObject:
    """Flag an expensive study (step ``review``)."""
    best = ctx.inputs.get("best", {})
    note = f"{ctx.inputs.get('region')}: {best.get('best_scenario')} costs more than 1e11 EUR"
    return {"flagged": True, "note": note}


def _study_report(ctx: StepContext) -> JsonObject:
    """Summarise the study (step ``report``)."""
    compared = ctx.inputs.get("compare", {})
    items = ctx.inputs.get("simulate_scenarios", {}).get("items", [])
    scenarios = [item["scenario"] for item in items if isinstance(item, dict)]
    summary = (
        f"{len(scenarios)} scenarios; best {compared.get('best_scenario')} at "
        f"{compared.get('best_cost_eur')} EUR after {compared.get('iteration')} comparisons"
    )
    return {
        "summary": summary,
        "scenarios": scenarios,
        "best_scenario": compared.get("best_scenario"),
        "best_cost_eur": compared.get("best_cost_eur"),
        "comparisons": compared.get("iteration"),
        "reviewed": "review" in ctx.inputs,
    }


def _cleanup(ctx: StepContext) -> JsonObject:
    """Say what failed (step ``cleanup``, the ``on_failure`` of the study's steps)."""
    failure = ctx.inputs.get("_failure", {})
    error = failure.get("error", {})
    return {
        "cleaned_up": True,
        "failed_step": failure.get("step"),
        "error_kind": error.get("kind"),
        "error_message": error.get("message"),
    }


STUDY_STEPS: dict[str, Callable[[StepContext], JsonObject]] = {
    "costs": _costs,
    "emissions": _emissions,
    "compare": _compare,
    "review": _review,
    "report": _study_report,
    "cleanup": _cleanup,
}
"""The report-queue steps of ``scenario_study``, by step name."""


@step_handler("quick_check")
async def quick_check(ctx: StepContext) -> JsonObject:
    """Echo ``params["value"]`` back after ``step_seconds``."""
    await _work(ctx)
    return {"value": ctx.params.get("value", 1), "attempt": ctx.attempt}


ALL_HANDLERS = (prepare, optimise, simulate, report, quick_check)
"""Every demo handler, in workflow order."""
