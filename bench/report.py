"""The suite's results: statistics per figure, the markdown table and the JSON file."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Samples = dict[str, dict[str, list[float]]]
"""system label -> figure key -> one value per round."""


@dataclass(frozen=True)
class Figure:
    """A row of the table."""

    key: str
    label: str
    unit: str
    better: str
    target: str = ""
    ratio_key: str | None = None
    """Segue-only figures whose ratio is another measured figure (e.g. preloaded/empty)."""
    ratio_of: str = "segue / baseline"


def figures(low: int, high: int, preload: int) -> list[Figure]:
    """Every row, in table order (``low``/``high``: in-flight levels, ``preload``: jobs)."""
    return [
        Figure("drain_jobs_per_s", "(a) drain, 1-step jobs", "jobs/s", "higher", "≥1.0x, ≥700/s"),
        Figure("burst_steps_per_s", "(b) burst, 3-step jobs", "steps/s", "higher", "≥1.0x"),
        Figure("latency_one_p50_ms", "(c) 1-step job, p50", "ms", "lower", "≤1.5x, ≤5 ms"),
        Figure("latency_one_p95_ms", "(c) 1-step job, p95", "ms", "lower"),
        Figure("latency_three_p50_ms", "(c) 3-step job, p50", "ms", "lower"),
        Figure("latency_three_p95_ms", "(c) 3-step job, p95", "ms", "lower"),
        Figure("drain_cpu_ms_per_step", "(d) orchestrator CPU per step, drain", "ms", "lower"),
        Figure("burst_cpu_ms_per_step", "(d) orchestrator CPU per step, burst", "ms", "lower"),
        Figure("peak_rss_mib", "(d) orchestrator peak RSS", "MiB", "lower"),
        Figure("startup_s", "orchestrator start until consuming", "s", "lower"),
        Figure(f"in_flight_{low}_rss_mib", f"(e) RSS, {low:,} jobs in flight", "MiB", "lower"),
        Figure(
            f"in_flight_{high}_rss_mib",
            f"(e) RSS, {high:,} jobs in flight",
            "MiB",
            "lower",
            "≤1.2x of the lower level",
            ratio_key="in_flight_rss_growth",
            ratio_of=f"RSS at {high:,} / at {low:,}",
        ),
        Figure(
            "preloaded_drain_jobs_per_s",
            f"(f) drain with {preload:,} finished jobs stored",
            "jobs/s",
            "higher",
            "≥0.9x of empty",
            ratio_key="preloaded_drain_ratio",
            ratio_of="preloaded / empty database (per round)",
        ),
    ]


FAILURE_KEYS = ("drain_failed", "burst_failed", "latency_one_failed", "latency_three_failed")


@dataclass
class Stats:
    """Median, min and max of the rounds."""

    rounds: list[float]
    median: float = field(init=False)
    min: float = field(init=False)
    max: float = field(init=False)

    def __post_init__(self) -> None:
        self.median = statistics.median(self.rounds)
        self.min = min(self.rounds)
        self.max = max(self.rounds)

    def as_json(self) -> dict[str, Any]:
        """The JSON form."""
        return {"median": self.median, "min": self.min, "max": self.max, "rounds": self.rounds}


def _number(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _stats(samples: Samples, system: str, key: str) -> Stats | None:
    values = samples.get(system, {}).get(key)
    return Stats(values) if values else None


def build(samples: Samples, rows: list[Figure], meta: dict[str, Any]) -> dict[str, Any]:
    """The JSON document: every figure with both systems, their ratio, and the context."""
    out: dict[str, Any] = {}
    for row in rows:
        segue = _stats(samples, "segue", row.key)
        baseline = _stats(samples, "baseline", row.key)
        if segue is None and baseline is None:
            continue
        ratio: Stats | None = None
        if row.ratio_key is not None:
            ratio = _stats(samples, "segue", row.ratio_key)
        elif segue is not None and baseline is not None and baseline.median:
            ratio = Stats([segue.median / baseline.median])
        out[row.key] = {
            "label": row.label,
            "unit": row.unit,
            "better": row.better,
            "target": row.target,
            "segue": segue.as_json() if segue else None,
            "baseline": baseline.as_json() if baseline else None,
            "ratio": ratio.median if ratio else None,
            "ratio_stats": ratio.as_json() if ratio else None,
            "ratio_of": row.ratio_of,
        }
    failures = {
        system: {key: sum(values) for key, values in figures_.items() if key in FAILURE_KEYS}
        for system, figures_ in samples.items()
    }
    return {**meta, "figures": out, "jobs_not_succeeded": failures}


def markdown(document: dict[str, Any]) -> str:
    """The table and its context, in markdown."""
    rounds = document["config"]["rounds"]
    lines = [
        f"# Segue benchmark ({document['config']['mode']}, {rounds} round(s), median (min-max))",
        "",
        "| figure | Segue | baseline | ratio | target | better |",
        "|---|---|---|---|---|---|",
    ]
    for figure in document["figures"].values():
        unit = figure["unit"]
        segue = _cell(figure["segue"], unit)
        baseline = _cell(figure["baseline"], unit)
        ratio = figure["ratio"]
        ratio_text = "n/a" if ratio is None else f"{ratio:.2f}x"
        if figure["ratio_of"] != "segue / baseline" and ratio is not None:
            ratio_text += f" ({figure['ratio_of']})"
        lines.append(
            f"| {figure['label']} | {segue} | {baseline} | {ratio_text} | "
            f"{figure['target']} | {figure['better']} |"
        )
    lines += ["", "Ratio: Segue / baseline unless the cell says otherwise.", ""]
    for system, failed in document["jobs_not_succeeded"].items():
        if any(failed.values()):
            lines.append(f"**Jobs that did not succeed ({system}):** {failed}")
    lines += ["## Sizes", "", "```", json.dumps(document["config"], indent=2), "```", ""]
    lines += ["## Versions and machine", "", "```"]
    lines += [
        json.dumps({"versions": document["versions"], "machine": document["machine"]}, indent=2),
        "```",
        "",
    ]
    return "\n".join(lines)


def _cell(stats: dict[str, Any] | None, unit: str) -> str:
    if stats is None:
        return "n/a"
    rounds = stats["rounds"]
    if len(rounds) == 1:
        return f"{_number(stats['median'])} {unit}"
    return f"{_number(stats['median'])} ({_number(stats['min'])}-{_number(stats['max'])}) {unit}"


def package_version(name: str) -> str:
    """An installed distribution's version, or ``unknown``."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def git_sha(source: Path) -> str:
    """``HEAD`` of the checkout holding ``source``, ``-dirty`` if it has uncommitted changes.

    Pass the directory of the ``segue`` package that runs (not of the suite):
    the suite may be run against another checkout's installation.
    """

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(source), *args], capture_output=True, text=True, check=False
        )
        return done.stdout.strip()

    sha = git("rev-parse", "HEAD") or "unknown"
    return f"{sha}-dirty" if git("status", "--porcelain", "--", ".") else sha


def segue_source() -> Path:
    """The directory of the ``segue`` package this Python imports."""
    import segue

    return Path(segue.__file__).resolve().parent


def machine(load_before: tuple[float, float, float]) -> dict[str, Any]:
    """Cores, CPU model, kernel and the load average before and now."""
    model = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "kernel": platform.release(),
        "load_average_before": list(load_before),
        "load_average_after": list(os.getloadavg()),
    }


def versions(rabbitmq: str, postgresql: str) -> dict[str, str]:
    """Versions of everything that shapes the figures."""
    return {
        "python": sys.version.split()[0],
        "segue_git_sha": git_sha(segue_source()),
        "segue_source": str(segue_source()),
        "rabbitmq": rabbitmq,
        "postgresql": postgresql,
        "aio-pika": package_version("aio-pika"),
        "aiormq": package_version("aiormq"),
        "asyncpg": package_version("asyncpg"),
        "sqlalchemy": package_version("sqlalchemy"),
        "pydantic": package_version("pydantic"),
    }
