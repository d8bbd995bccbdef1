"""Segue: a message-driven workflow orchestrator."""

__version__ = "0.1.0"
