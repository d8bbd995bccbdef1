"""Free text is bounded without hiding the cut, and bounding twice changes nothing."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from segue.protocol.text import shorten, shorten_start

Cut = Callable[[str, int], str]


def groups(pattern: str, text: str) -> tuple[str, ...]:
    """The groups of ``pattern`` matching all of ``text`` (fails the test otherwise)."""
    found = re.fullmatch(pattern, text, re.DOTALL)
    assert found is not None, text
    return found.groups()


@pytest.mark.parametrize("cut", [shorten, shorten_start])
def test_a_text_that_fits_is_kept_whole(cut: Cut) -> None:
    assert cut("", 10) == ""
    assert cut("x" * 10, 10) == "x" * 10


def test_shorten_keeps_the_start_and_says_how_much_was_left_out() -> None:
    text = "".join(str(i % 10) for i in range(1000))
    cut = shorten(text, 100)
    assert len(cut) <= 100
    kept, left_out = groups(r"(\d+)… \((\d+) more characters\)", cut)
    assert text.startswith(kept)
    assert len(kept) + int(left_out) == len(text)


def test_shorten_start_keeps_the_end_and_says_how_much_was_left_out() -> None:
    text = "Traceback (most recent call last):\n" + "  frame\n" * 500 + "ValueError: bad\n"
    cut = shorten_start(text, 200)
    assert len(cut) <= 200
    left_out, kept = groups(r"\((\d+) earlier characters\) …(.*)", cut)
    assert kept.endswith("ValueError: bad\n")
    assert text.endswith(kept)
    assert len(kept) + int(left_out) == len(text)


def test_a_limit_too_small_for_the_note_just_cuts() -> None:
    assert shorten("abcdefghij" * 10, 5) == "abcde"
    assert shorten_start("abcdefghij" * 10, 5) == "fghij"


@given(st.text(max_size=3000), st.integers(min_value=0, max_value=2000))
def test_a_cut_text_fits_its_limit_and_cutting_again_changes_nothing(text: str, limit: int) -> None:
    for cut in (shorten, shorten_start):
        once = cut(text, limit)
        if len(text) <= limit:
            assert once == text
        else:
            assert len(once) <= limit
        assert cut(once, limit) == once
