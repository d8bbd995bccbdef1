"""What every ``segue`` subcommand module shares: settings, errors, running a coroutine."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console

from segue.errors import SegueError
from segue.settings import Settings, load_settings

T = TypeVar("T")


def settings_or_exit() -> Settings:
    """The settings from the environment; exit 1 with the reason if they are invalid."""
    try:
        return load_settings()
    except SegueError as exc:
        fail(str(exc))


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``message`` as an error on stderr and exit with ``code``."""
    Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to its end; a Segue error exits 1 with its message."""
    try:
        return asyncio.run(coro)
    except SegueError as exc:
        fail(str(exc))
