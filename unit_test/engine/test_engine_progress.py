"""The rule that picks which progress reports the history keeps
(:mod:`segue.engine.progress`): bounded, first kept, no wide gaps, for any
number of reports."""

from __future__ import annotations

import itertools
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from segue.engine.progress import (
    MAX_PROGRESS_RECORDS,
    keeps_report,
    kept_through,
    report_stride,
)

DENSE = st.integers(min_value=1, max_value=64)


def kept(reports: int, dense: int) -> list[int]:
    """The numbers of the reports kept out of ``reports`` by the stride rule (no bound)."""
    return [n for n in range(1, reports + 1) if keeps_report(n, dense, bound=reports)]


def widest_gap(numbers: list[int], last: int) -> int:
    """The widest step between kept reports, counting the latest report ``last``
    (always in the attempt itself)."""
    points = [*numbers, last]
    return max(b - a for a, b in itertools.pairwise(points))


@settings(max_examples=50, deadline=None)
@given(reports=st.integers(min_value=1, max_value=5_000), dense=DENSE)
def test_the_first_is_kept_the_count_is_logarithmic_and_no_gap_is_wide(
    reports: int, dense: int
) -> None:
    numbers = kept(reports, dense)
    assert numbers[0] == 1
    assert len(numbers) == kept_through(reports, dense)
    assert len(numbers) <= dense * (math.log2(max(reports / dense, 1)) + 2)
    assert widest_gap(numbers, reports) <= max(1, reports / dense)


@settings(max_examples=200, deadline=None)
@given(reports=st.integers(min_value=1, max_value=10**15))
def test_a_kept_report_is_within_the_bound_however_many_came(reports: int) -> None:
    if keeps_report(reports):
        assert kept_through(reports) <= MAX_PROGRESS_RECORDS
        assert reports % report_stride(reports) == 0


def test_the_bound_is_reached_only_after_hundreds_of_thousands_of_reports() -> None:
    assert kept_through(600_000) < MAX_PROGRESS_RECORDS
    assert sum(keeps_report(n) for n in range(1, 1_000_000)) == MAX_PROGRESS_RECORDS


@given(number=st.integers(min_value=1, max_value=10**12), dense=DENSE)
def test_the_stride_doubles_when_the_count_doubles(number: int, dense: int) -> None:
    stride = report_stride(number, dense)
    assert stride & (stride - 1) == 0, "a power of two"
    assert stride <= max(1, number / dense)
    assert report_stride(2 * number, dense) in (stride, 2 * stride)
