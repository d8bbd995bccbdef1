"""Bounding free text (error messages, reasons, tracebacks) without hiding the cut.

A cut text says how much was left out and is never longer than its limit, so
bounding it again (a stored error read back and validated once more) changes
nothing.
"""

from __future__ import annotations


def shorten(text: str, limit: int) -> str:
    """``text`` if it fits in ``limit`` characters, else its start and how much was left out."""
    if len(text) <= limit:
        return text
    keep = limit - len(_more(len(text)))  # room beside the longest note there can be
    if keep <= 0:
        return text[:limit]  # no room to say so
    return f"{text[:keep]}{_more(len(text) - keep)}"


def shorten_start(text: str, limit: int) -> str:
    """Like :func:`shorten`, but keeping the end (the end of a traceback says the most)."""
    if len(text) <= limit:
        return text
    keep = limit - len(_earlier(len(text)))
    if keep <= 0:
        return text[len(text) - limit :]
    return f"{_earlier(len(text) - keep)}{text[len(text) - keep :]}"


def _more(left_out: int) -> str:
    return f"… ({left_out} more characters)"


def _earlier(left_out: int) -> str:
    return f"({left_out} earlier characters) …"
