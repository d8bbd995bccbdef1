"""Attempt tokens as stops carry them.

Every report about an attempt carries the attempt's secret token, which only
the orchestrator and the worker that got its task know. A stop
(:class:`~segue.protocol.messages.CancelAttempt`) goes to every worker, so it
carries a digest of the token instead: the worker holding the attempt can
check it, the others learn nothing they could report with.
"""

from __future__ import annotations

import hashlib

TOKEN_DIGEST_CHARS = 32


def token_digest(token: str) -> str:
    """What a stop carries instead of ``token``: its SHA-256, hex, first 32 characters."""
    return hashlib.sha256(token.encode()).hexdigest()[:TOKEN_DIGEST_CHARS]
