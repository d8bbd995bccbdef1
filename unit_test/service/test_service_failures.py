"""Transient failures are retried; failures that would repeat forever are not."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from segue.broker.publisher import PublishError
from segue.service.failures import is_transient


class PgError(Exception):
    """Stands in for a driver error carrying a SQLSTATE."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (ConnectionRefusedError("refused"), True),
        (TimeoutError(), True),
        (PublishError("connection lost"), True),
        (OperationalError("SELECT 1", {}, PgError("57P01")), True),  # admin shutdown
        (DBAPIError("SELECT 1", {}, PgError("08006")), True),  # connection failure
        (DBAPIError("SELECT 1", {}, PgError("40P01")), True),  # deadlock
        (DBAPIError("INSERT", {}, PgError("22P02")), False),  # invalid text representation
        (IntegrityError("INSERT", {}, PgError("23503")), False),  # foreign key violation
        (ValueError("a bug"), False),
        (KeyError("a bug"), False),
    ],
)
def test_only_transient_failures_are_retried(error: Exception, transient: bool) -> None:
    assert is_transient(error) is transient
