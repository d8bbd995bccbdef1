"""Where an SDK process (worker, client) connects: explicit values, else ``SEGUE_*`` env vars.

The orchestrator has its own pydantic settings; workers and clients must not
need them (nor their dependencies), so this is the small shared part.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from segue.errors import ConfigurationError
from segue.protocol.names import NAMESPACE_PATTERN

AMQP_URL_ENV = "SEGUE_AMQP_URL"
NAMESPACE_ENV = "SEGUE_NAMESPACE"
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
DEFAULT_NAMESPACE = "segue"
TLS_FILE_OPTIONS = ("cafile", "capath", "certfile", "keyfile")
"""Query options of an ``amqps://`` URL that name files aiormq reads (``capath``: a directory)."""
TLS_OPTIONS = (*TLS_FILE_OPTIONS, "cadata", "no_verify_ssl")


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


def check_tls_options(url: str) -> None:
    """Refuse TLS options in ``url`` that would not do what they say.

    aiormq reads them from the URL query, but ignores them on ``amqp://`` (the
    connection would silently be unencrypted), reports a missing file without
    naming it, drops ``keyfile`` without ``certfile``, and turns certificate
    verification off for any ``no_verify_ssl`` other than ``0``. Raises
    :class:`ConfigurationError` naming the option and the file.
    """
    parts = urlsplit(url)
    options: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        options.setdefault(key, value)  # aiormq reads the first of repeated options
    given = [name for name in TLS_OPTIONS if name in options]
    setting = f"{AMQP_URL_ENV} / amqp_url"
    if given and parts.scheme != "amqps":
        raise ConfigurationError(
            f"{setting} {safe_url(url)!r} sets TLS options ({', '.join(given)}) "
            "but does not start with amqps://, so the connection would not be encrypted"
        )
    if options.get("no_verify_ssl", "0") not in {"0", "1"}:
        raise ConfigurationError(
            f"{setting} option no_verify_ssl must be 0 or 1 (1 turns certificate "
            f"verification off), got {options['no_verify_ssl']!r}"
        )
    if "keyfile" in options and "certfile" not in options:
        raise ConfigurationError(f"{setting} option keyfile needs certfile as well")
    for name in TLS_FILE_OPTIONS:
        if name in options:
            _check_readable(setting, name, Path(options[name]), directory=name == "capath")


def _check_readable(setting: str, option: str, path: Path, *, directory: bool) -> None:
    kind = "directory" if directory else "file"
    exists = path.is_dir() if directory else path.is_file()
    if not exists:
        raise ConfigurationError(f"{setting} option {option}: no such {kind} {str(path)!r}")
    if not os.access(path, os.R_OK):
        raise ConfigurationError(f"{setting} option {option}: {kind} {str(path)!r} is not readable")
