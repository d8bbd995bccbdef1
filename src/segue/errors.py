"""The error hierarchy shared by every Segue module."""


class SegueError(Exception):
    """Base of every error Segue raises on purpose."""


class ConfigurationError(SegueError):
    """A setting or file is invalid; the message names it and says what is wrong."""


def describe(exc: BaseException) -> str:
    """An exception as one line for a log or a reason: ``Type: message``."""
    return f"{type(exc).__name__}: {exc}"
