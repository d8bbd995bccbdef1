"""The Grafana dashboard (deploy/grafana/segue-dashboard.json) queries only series
Segue's metrics registry exposes, and covers what an operator must see: it cannot
rot when a metric is renamed."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from segue.service.metrics import Metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "segue-dashboard.json"

PROMQL_WORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}
    | {"and", "or", "unless", "inf", "nan"}
)
"""Words of PromQL that are not metric names (functions are told by the '(' after them)."""

SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
REQUIRED = {
    "segue_jobs",
    "segue_jobs_finished_total",
    "segue_step_duration_seconds_bucket",
    "segue_task_queue_depth",
    "segue_task_queue_oldest_age_seconds",
    "segue_steps_lost_total",
    "segue_dead_letters_total",
    "segue_outbox_rows",
    "segue_schedules_fired_total",
}


def exposed_names() -> set[str]:
    """Every series name the registry of a fresh service exposes (children or not)."""
    names: set[str] = set()
    for family in Metrics().registry.collect():
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
    return names


def expressions(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(panel title, PromQL) of every target of every panel, rows included."""
    for panel in dashboard["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            for target in inner.get("targets", []):
                yield inner["title"], target["expr"]


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # label values
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    text = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", text)  # grouping labels
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        followed_by_call = text[match.end() :].lstrip().startswith("(")
        if not followed_by_call and match.group() not in PROMQL_WORDS:
            names.add(match.group())
    return names


def test_the_name_extraction_sees_metrics_and_skips_functions_and_labels() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, step) (rate(a_bucket{status="x"}[5m]))) '
        "/ on (step) max(b) * 60"
    )
    assert metric_names(expr) == {"a_bucket", "b"}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def test_every_expression_reads_only_exposed_series(dashboard: dict[str, Any]) -> None:
    exposed = exposed_names()
    unknown = {
        (title, name)
        for title, expr in expressions(dashboard)
        for name in metric_names(expr)
        if name not in exposed
    }
    assert unknown == set()


def test_every_panel_queries_something(dashboard: dict[str, Any]) -> None:
    for title, expr in expressions(dashboard):
        assert metric_names(expr), f"panel {title!r} reads no metric: {expr}"


def test_the_dashboard_covers_what_operators_watch(dashboard: dict[str, Any]) -> None:
    used = {name for _, expr in expressions(dashboard) for name in metric_names(expr)}
    assert REQUIRED - used == set()
