"""Errors the worker SDK raises."""

from __future__ import annotations

from segue.errors import SegueError


class InvalidOutputError(SegueError):
    """A handler returned something that cannot be sent as a step output."""
