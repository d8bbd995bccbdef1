"""Robust AMQP connections with Segue's defaults."""

from __future__ import annotations

import aio_pika
from aio_pika.abc import AbstractRobustConnection


async def connect(url: str, name: str) -> AbstractRobustConnection:
    """Open a connection that reconnects by itself and redeclares what it declared.

    ``name`` is shown in the RabbitMQ management UI (e.g. ``segue-orchestrator``).
    """
    return await aio_pika.connect_robust(
        url,
        client_properties={"connection_name": name},
        reconnect_interval=1.0,
        fail_fast=True,
    )
