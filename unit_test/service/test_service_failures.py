"""Transient failures are retried; failures that would repeat forever are not."""

from __future__ import annotations

import asyncpg
import pytest

from segue.broker.publisher import PublishError
from segue.service.failures import is_transient


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (ConnectionRefusedError("refused"), True),
        (TimeoutError(), True),
        (PublishError("connection lost"), True),
        (asyncpg.exceptions.AdminShutdownError("terminating"), True),  # 57P01
        (asyncpg.exceptions.ConnectionFailureError("gone"), True),  # 08006
        (asyncpg.exceptions.DeadlockDetectedError("deadlock"), True),  # 40P01
        (asyncpg.exceptions.CannotConnectNowError("starting up"), True),  # 57P03
        (asyncpg.exceptions.ConnectionDoesNotExistError("closed"), True),
        # seen when PostgreSQL shut down under a running statement
        (asyncpg.exceptions.InternalClientError("another operation is in progress"), True),
        (asyncpg.exceptions.InvalidTextRepresentationError("bad"), False),  # 22P02
        (asyncpg.exceptions.ForeignKeyViolationError("fk"), False),  # 23503
        (ValueError("a bug"), False),
        (KeyError("a bug"), False),
    ],
)
def test_only_transient_failures_are_retried(error: Exception, transient: bool) -> None:
    assert is_transient(error) is transient
