"""The error hierarchy shared by every Segue module."""


class SegueError(Exception):
    """Base of every error Segue raises on purpose."""


class ConfigurationError(SegueError):
    """A setting or file is invalid; the message names it and says what is wrong."""
