"""Summaries of py-spy's raw (collapsed) stack samples: where the time goes.

Each line of ``py-spy record --format raw`` is ``frame;frame;...;frame count``
(outermost first) with frames like ``function (path/to/file.py:123)``. Idle
samples (threads waiting in the event loop's ``select``) are not recorded by
py-spy by default, so percentages are of the time the process was busy.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

FRAME = re.compile(r"^(?P<function>.*) \((?P<path>.*?)(?::(?P<line>\d+))?\)$")
PACKAGE_ROOTS = ("site-packages/", "/src/", "/lib/python3.")


@dataclass(frozen=True)
class Summary:
    """Sample counts by function, self and inclusive, and self by package."""

    total: int
    own: Counter[str]
    inclusive: Counter[str]
    packages: Counter[str]
    callers: dict[str, Counter[str]]
    """Leaf function -> the nearest ``segue`` frame above it (who caused the time)."""


def short_path(path: str) -> str:
    """The path from its package root on (``segue/service/handlers.py``)."""
    for root in PACKAGE_ROOTS:
        if root in path:
            tail = path.split(root, 1)[1]
            return tail.split("/", 1)[1] if root == "/lib/python3." else tail
    return path


def frame_name(frame: str) -> str:
    """``function (package/module.py)``: one name per function, whatever the line."""
    match = FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    return f"{match['function']} ({short_path(match['path'])})"


def package_of(name: str) -> str:
    """The top-level package of a frame name (``stdlib:asyncio`` for the standard library)."""
    inside = name.rsplit("(", 1)[-1].rstrip(")")
    top = inside.split("/", 1)[0]
    if top.endswith(".py") or "/" not in inside:
        return f"stdlib:{top.removesuffix('.py')}"
    return top


def summarise(raw: str) -> Summary:
    """Count the samples of a raw py-spy profile."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    callers: dict[str, Counter[str]] = {}
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [frame_name(f) for f in stack.split(";") if FRAME.match(f.strip())]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        packages[package_of(frames[-1])] += count
        for name in set(frames):
            inclusive[name] += count
        ours = [f for f in frames[:-1] if "(segue/" in f]
        callers.setdefault(frames[-1], Counter())[ours[-1] if ours else "(no segue frame)"] += count
    return Summary(total, own, inclusive, packages, callers)


def render(summary: Summary, top: int, header: str) -> str:
    """A plain-text report of the ``top`` entries of each view."""
    lines = [header, f"samples (busy): {summary.total}", ""]
    views: list[tuple[str, Counter[str]]] = [
        ("self time by package (leaf frame)", summary.packages),
        ("self time by function", summary.own),
        ("inclusive time by function (on the stack)", summary.inclusive),
    ]
    for title, counter in views:
        lines.append(f"== top {top}: {title}")
        lines.append(f"{'%':>6} {'samples':>8}  name")
        for name, count in counter.most_common(top):
            share = 100 * count / summary.total if summary.total else 0.0
            lines.append(f"{share:6.1f} {count:8d}  {name}")
        lines.append("")
    lines.append("== where the top 5 self-time functions are called from (nearest segue frame)")
    for name, _ in summary.own.most_common(5):
        lines.append(name)
        for caller, count in summary.callers.get(name, Counter()).most_common(5):
            lines.append(f"  {count:8d}  {caller}")
    lines.append("")
    return "\n".join(lines)


def summarise_file(path: Path, top: int, header: str) -> str:
    """Read a raw profile and render its summary."""
    return render(summarise(path.read_text(errors="replace")), top, header)
