"""Where an SDK process (worker, client) connects: explicit values, else ``SEGUE_*`` env vars.

The orchestrator has its own pydantic settings; workers and clients must not
need them (nor their dependencies), so this is the small shared part.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from segue.errors import ConfigurationError
from segue.protocol.names import NAMESPACE_PATTERN

AMQP_URL_ENV = "SEGUE_AMQP_URL"
NAMESPACE_ENV = "SEGUE_NAMESPACE"
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
DEFAULT_NAMESPACE = "segue"


@dataclass(frozen=True)
class ConnectionSettings:
    """The broker URL and the namespace of the Segue installation to serve."""

    amqp_url: str
    namespace: str

    @classmethod
    def resolve(
        cls,
        amqp_url: str | None,
        namespace: str | None,
        environ: Mapping[str, str] | None = None,
    ) -> ConnectionSettings:
        """Explicit values win; None means the environment variable, then the default.

        Raises :class:`ConfigurationError` naming the setting that is invalid.
        """
        env = os.environ if environ is None else environ
        url = amqp_url if amqp_url is not None else env.get(AMQP_URL_ENV, DEFAULT_AMQP_URL)
        ns = namespace if namespace is not None else env.get(NAMESPACE_ENV, DEFAULT_NAMESPACE)
        if not url.startswith(("amqp://", "amqps://")):
            raise ConfigurationError(
                f"{AMQP_URL_ENV} / amqp_url must start with amqp:// or amqps://, "
                f"got {safe_url(url)!r}"
            )
        if not NAMESPACE_PATTERN.match(ns):
            raise ConfigurationError(
                f"{NAMESPACE_ENV} / namespace {ns!r} must match {NAMESPACE_PATTERN.pattern}"
            )
        return cls(url, ns)


def safe_url(url: str) -> str:
    """``url`` with its password masked, fit for logs and error messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
