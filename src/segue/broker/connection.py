"""Robust AMQP connections with Segue's defaults."""

from __future__ import annotations

import aio_pika
from aio_pika.abc import AbstractRobustConnection
from aio_pika.exceptions import CONNECTION_EXCEPTIONS

from segue.broker.env import check_tls_options, safe_url
from segue.errors import SegueError


class BrokerUnavailableError(SegueError):
    """RabbitMQ could not be reached when connecting; the message says where and why."""


async def connect(url: str, name: str) -> AbstractRobustConnection:
    """Open a connection that reconnects by itself and redeclares what it declared.

    ``name`` is shown in the RabbitMQ management UI (e.g. ``segue-orchestrator``).
    TLS (``amqps://``) is configured in the URL query: ``cafile``, ``capath``,
    ``certfile``, ``keyfile``, ``no_verify_ssl`` (docs/security.md).
    Raises :class:`ConfigurationError` for TLS options that cannot work (e.g. a
    missing CA file), :class:`BrokerUnavailableError` if the first connection
    fails (a certificate RabbitMQ's CA did not sign included); later losses are
    survived (it reconnects).
    """
    check_tls_options(url)
    try:
        return await aio_pika.connect_robust(
            url,
            client_properties={"connection_name": name},
            reconnect_interval=1.0,
            fail_fast=True,
        )
    except CONNECTION_EXCEPTIONS as exc:
        raise BrokerUnavailableError(
            f"cannot connect to RabbitMQ at {safe_url(url)}: {exc}"
        ) from exc
