"""Which handler failures are transient (requeue and try again) and which are not
(dead-letter the message with the error, instead of retrying it forever).
"""

from __future__ import annotations

import asyncpg

from segue.broker.boundary import is_transient_broker_error

TRANSIENT_SQLSTATE_CLASSES = frozenset({"08", "40", "53", "55", "57"})
"""Connection exceptions, transaction rollbacks (serialisation, deadlock),
insufficient resources, object not in prerequisite state (lock not available)
and operator intervention (shutdown, cannot connect now)."""


def is_transient(exc: BaseException) -> bool:
    """Whether handling the message again later may succeed.

    Data errors (e.g. SQLSTATE class 22, a value PostgreSQL refuses) and bugs
    fail the same way every time: those messages are dead-lettered.
    """
    if is_transient_broker_error(exc):  # OSError and TimeoutError included
        return True
    if isinstance(exc, asyncpg.PostgresError):
        sqlstate = getattr(exc, "sqlstate", None)
        return isinstance(sqlstate, str) and sqlstate[:2] in TRANSIENT_SQLSTATE_CLASSES
    # The connection went away mid-statement, or the pool is closing; asyncpg reports
    # a connection the server cut off mid-operation as an internal state error
    # ("another operation is in progress"). The pool replaces such a connection.
    return isinstance(
        exc,
        asyncpg.InterfaceError
        | asyncpg.exceptions.ConnectionDoesNotExistError
        | asyncpg.exceptions.InternalClientError,
    )
