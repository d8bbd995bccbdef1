"""structlog setup: JSON lines when not on a terminal, readable output on one.

Processes (``segue serve``, ``segue worker run``) call :func:`configure_logging`
at start. The SDKs (:mod:`segue.worker`, :mod:`segue.client`) are libraries
inside someone else's program, so they log through :func:`library_logger`:
silent until that program configures structlog (itself, or with
:func:`configure_logging`), rather than printing to stdout with structlog's
unconfigured defaults.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog


def configure_logging(level: str = "info", fmt: str = "auto") -> None:
    """Configure structlog and the stdlib root logger once, at process start."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    )
    numeric_level = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=max(numeric_level, logging.WARNING), stream=sys.stderr)


class LibraryLogger:
    """A structlog logger that drops every call while structlog is unconfigured.

    Once the application has called ``structlog.configure`` (directly or via
    :func:`configure_logging`), calls go to ``structlog.get_logger(name)`` with
    the bound values, so they follow the application's processors and level.
    """

    __slots__ = ("_context", "_name", "_proxy")

    def __init__(self, name: str, context: dict[str, Any] | None = None) -> None:
        self._name = name
        self._context = context or {}
        self._proxy: Any = structlog.get_logger(name, **self._context)

    def bind(self, **values: Any) -> LibraryLogger:
        """A logger with ``values`` added to every line."""
        return LibraryLogger(self._name, {**self._context, **values})

    def debug(self, event: str, **values: Any) -> None:
        """Log ``event`` at debug level."""
        if structlog.is_configured():
            self._proxy.debug(event, **values)

    def info(self, event: str, **values: Any) -> None:
        """Log ``event`` at info level."""
        if structlog.is_configured():
            self._proxy.info(event, **values)

    def warning(self, event: str, **values: Any) -> None:
        """Log ``event`` at warning level."""
        if structlog.is_configured():
            self._proxy.warning(event, **values)

    def error(self, event: str, **values: Any) -> None:
        """Log ``event`` at error level."""
        if structlog.is_configured():
            self._proxy.error(event, **values)

    def exception(self, event: str, **values: Any) -> None:
        """Log ``event`` at error level with the exception being handled."""
        if structlog.is_configured():
            self._proxy.exception(event, **values)


def library_logger(name: str, **context: Any) -> LibraryLogger:
    """The logger for library code named ``name`` (e.g. ``segue.worker``)."""
    return LibraryLogger(name, context)
