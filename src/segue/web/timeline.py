"""A job's history told as a timeline: one line per entry, in words.

Pure functions of the history (``job_events``) rows. Progress entries are left
to the charts (:mod:`segue.web.progress`) and only counted here; every other
entry is shown, with a tone (``ok``, ``warn``, ``bad``, ``info``) that says
whether it is good news. Entry types this version does not know are shown by
name with their data, so a newer orchestrator's history still reads.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from segue.web.reader import HistoryRow

MAX_DATA_CHARS = 300
"""Longest raw data shown for an entry type without a description."""

Data = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One line of the timeline: when (and how long after submission), what, where."""

    seq: int
    at: datetime
    offset_s: float
    kind: str
    step: str
    attempt: str
    text: str
    tone: str


@dataclass(frozen=True, slots=True)
class Tally:
    """What went wrong along the way: retries, lost workers, redeliveries, ignored events."""

    progress: int = 0
    retries: int = 0
    lost: int = 0
    redelivered: int = 0
    ignored: int = 0


TONES = {
    "step_succeeded": "ok",
    "map_item_succeeded": "ok",
    "branch_succeeded": "ok",
    "job_succeeded": "ok",
    "step_failed": "bad",
    "map_item_failed": "bad",
    "branch_failed": "bad",
    "job_failed": "bad",
    "job_timed_out": "bad",
    "engine_error": "bad",
    "step_lost": "warn",
    "step_redelivered": "warn",
    "step_taken_back": "warn",
    "step_retry_scheduled": "warn",
    "job_cancelled": "warn",
    "event_ignored": "warn",
    "cancel_ignored": "warn",
    "submission_ignored": "warn",
    "rerun_refused": "warn",
}


def timeline(events: Sequence[HistoryRow], created_at: datetime) -> list[TimelineEntry]:
    """Every history entry but progress reports, oldest first."""
    return [
        TimelineEntry(
            seq=event.seq,
            at=event.at,
            offset_s=(event.at - created_at).total_seconds(),
            kind=event.type,
            step=str(event.data.get("step") or ""),
            attempt=attempt_label(event.data),
            text=describe(event.type, event.data),
            tone=TONES.get(event.type, "info"),
        )
        for event in events
        if event.type != "step_progress"
    ]


def tally(events: Sequence[HistoryRow]) -> Tally:
    """How many progress reports, retries, lost workers… the history holds."""
    kinds = [event.type for event in events]
    return Tally(
        progress=kinds.count("step_progress"),
        retries=kinds.count("step_retry_scheduled"),
        lost=kinds.count("step_lost"),
        redelivered=kinds.count("step_redelivered"),
        ignored=kinds.count("event_ignored"),
    )


def attempt_label(data: Data) -> str:
    """``attempt 2``, ``item 3, attempt 1``, ``attempt 1, iteration 2`` or nothing."""
    parts = []
    if data.get("item_index") is not None:
        parts.append(f"item {data['item_index']}")
    if data.get("attempt") is not None:
        parts.append(f"attempt {data['attempt']}")
    if data.get("iteration") not in (None, 1) and "attempt" in data:
        parts.append(f"iteration {data['iteration']}")
    return ", ".join(parts)


def describe(kind: str, data: Data) -> str:
    """The entry in words (its step and attempt are shown apart)."""
    describer = _DESCRIBERS.get(kind)
    if describer is not None:
        return describer(data)
    raw = json.dumps(dict(data), default=str, sort_keys=True)
    shown = raw if len(raw) <= MAX_DATA_CHARS else raw[: MAX_DATA_CHARS - 1] + "…"
    return f"{kind.replace('_', ' ')}: {shown}"


def error_text(value: Any) -> str:
    """``kind: message`` of a stored error (empty when there is none)."""
    if not isinstance(value, Mapping):
        return ""
    return f"{value.get('kind', '')}: {value.get('message', '')}"


def _submitted(data: Data) -> str:
    text = f"submitted: {data.get('workflow')} v{data.get('version')}"
    text += f", priority {data.get('priority')}"
    if data.get("owner"):
        text += f", by {data['owner']}"
    return text


def _started(data: Data) -> str:
    text = f"started on worker {data.get('worker_id') or '?'}"
    if data.get("event") and data.get("event") != "step_started":
        text += f" (first heard of by {str(data['event']).replace('_', ' ')})"
    return text


def _succeeded(data: Data) -> str:
    target = data.get("next")
    if data.get("until_met") is False and target == data.get("step"):
        return "succeeded; repeating (until not met)"
    return f"succeeded; next: {target}" if target else "succeeded; last step"


def _retry(data: Data) -> str:
    delay = data.get("delay_s")
    wait = f" in {float(delay):.1f} s" if isinstance(delay, int | float) else ""
    return f"retry scheduled{wait} after {error_text(data.get('error'))}"


def _lost(data: Data) -> str:
    return (
        f"worker {data.get('worker_id') or '?'} lost: {data.get('reason', '')}"
        f" (crash {data.get('crashes', '?')} of this step)"
    )


def _redelivered(data: Data) -> str:
    return (
        f"task redelivered to worker {data.get('worker_id') or '?'}; worker"
        f" {data.get('previous_worker_id') or '?'} went away (crash {data.get('crashes', '?')})"
    )


def _taken_back(data: Data) -> str:
    return (
        f"worker {data.get('worker_id') or '?'} had not gone away: its result counts;"
        f" worker {data.get('previous_worker_id') or '?'} told to stop"
    )


def _job_ended(outcome: str) -> Callable[[Data], str]:
    def told(data: Data) -> str:
        error = error_text(data.get("error"))
        return f"job {outcome}: {error}" if error else f"job {outcome}"

    return told


def _rerun(data: Data) -> str:
    return (
        f"run {data.get('run')} from step {data.get('from_step')}"
        f" (was {data.get('previous_status')}): {data.get('reason', '')}"
    )


_DESCRIBERS: dict[str, Callable[[Data], str]] = {
    "job_submitted": _submitted,
    "step_dispatched": lambda data: f"dispatched to queue {data.get('queue')}",
    "step_started": _started,
    "step_succeeded": _succeeded,
    "step_failed": lambda data: f"failed: {error_text(data.get('error'))}",
    "step_retry_scheduled": _retry,
    "step_lost": _lost,
    "step_redelivered": _redelivered,
    "step_taken_back": _taken_back,
    "step_repeated": lambda data: f"runs again: iteration {data.get('iteration')}",
    "map_item_succeeded": lambda data: f"item {data.get('item_index')} succeeded",
    "map_item_failed": lambda data: (
        f"item {data.get('item_index')} failed: {error_text(data.get('error'))}"
    ),
    "branch_succeeded": lambda data: "branch succeeded",
    "branch_failed": lambda data: f"branch failed: {error_text(data.get('error'))}",
    "job_succeeded": _job_ended("succeeded"),
    "job_failed": _job_ended("failed"),
    "job_cancelled": _job_ended("cancelled"),
    "job_timed_out": _job_ended("timed out"),
    "job_rerun": _rerun,
}
