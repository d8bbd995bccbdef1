"""Which progress reports of an attempt become history entries: the shape of the
whole run, in a bounded number of rows.

A worker may report progress every second for days. Every report updates the
attempt (``progress``, ``progress_message``) and reaches the job's followers,
but only some are recorded as ``step_progress`` history entries, by a rule that
needs nothing but the report's number (``n``, 1-based, counting the distinct
reports the attempt received): the history is append-only, so a rule that
decides on arrival, without ever deleting an earlier entry, is the only one the
write path can follow without an extra query.

The rule, with ``D`` = :data:`DENSE_PROGRESS_RECORDS`:

- reports 1 .. 2·D are all kept;
- after that the stride doubles each time the count doubles: of reports
  2^j·D + 1 .. 2^(j+1)·D (j ≥ 1), every 2^j-th is kept, so D of each such
  "octave";
- never more than :data:`MAX_PROGRESS_RECORDS` in all.

What that gives, for any number ``n`` of reports (checked by property tests):
the first report is kept; at most ``D·(log2(n/D) + 1)`` entries and never more
than :data:`MAX_PROGRESS_RECORDS`; no gap between kept reports, or between the
last kept one and ``n``, wider than ``n / D`` reports (until the hard bound is
reached, after about 850,000 reports: ten days at one report a second), so a
chart of the whole run has at least ``D`` roughly even points. The latest
report is always in the attempt itself, which is how a chart ends with it.

Early reports are denser than late ones (an hour-long step reporting every
second keeps its first 64 seconds whole, then one report in 2, 4, ... 64);
spacing is even in reports, not in time (a worker that reports irregularly
gets an irregular chart).
"""

from __future__ import annotations

DENSE_PROGRESS_RECORDS = 32
"""``D``: entries kept per doubling of the number of reports (the first 2·D are all kept)."""

MAX_PROGRESS_RECORDS = 500
"""Hard bound on the ``step_progress`` entries of one attempt."""


def report_stride(number: int, dense: int = DENSE_PROGRESS_RECORDS) -> int:
    """Every how many reports one is kept around report ``number`` (1-based): 1 for the
    first ``2 * dense``, then doubling each time the count doubles."""
    octave = (number - 1) // dense
    return 1 << max(0, octave.bit_length() - 1)


def kept_through(number: int, dense: int = DENSE_PROGRESS_RECORDS) -> int:
    """How many of reports 1 .. ``number`` the stride rule keeps (before the hard bound)."""
    if number <= 2 * dense:
        return max(0, number)
    stride = report_stride(number, dense)
    start = stride * dense  # the octave of ``number`` is start + 1 .. 2 * start
    # Reports 1 .. start hold 2 * dense, then dense per octave: (log2(stride) + 1) * dense.
    return stride.bit_length() * dense + (number - start) // stride


def keeps_report(
    number: int, dense: int = DENSE_PROGRESS_RECORDS, bound: int = MAX_PROGRESS_RECORDS
) -> bool:
    """Whether an attempt's ``number``-th distinct progress report (1-based) is recorded."""
    if number < 1 or number % report_stride(number, dense):
        return False
    return kept_through(number, dense) <= bound
