"""The envelope of a message ready to publish: where it goes, its body and properties.

One shape from the moment an effect is encoded until it reaches the broker: the
outbox stores it as it is, the publisher sends it as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message ready to publish (an empty ``exchange`` is the default exchange)."""

    exchange: str
    routing_key: str
    body: bytes
    message_id: str | None = None
    priority: int | None = None
    headers: Mapping[str, str | list[str]] = field(default_factory=dict)
    reply_to: str | None = None
    correlation_id: str | None = None
    mandatory: bool = False
    persistent: bool = True
    """False for a message worth nothing after a broker restart (a status notice):
    the broker then keeps it in memory only, which costs it far less."""
    timestamp: datetime | None = None
    """When the message was made (AMQP ``timestamp``, whole seconds): a worker event's
    send time, readable without decoding the body."""
