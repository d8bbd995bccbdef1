"""Names, messages and table of the baseline, shared by its three programs."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue

PREFETCH = 64
"""Messages each consumer handles at once (each in its own task)."""

STEPS = {"one": 1, "three": 3}
"""The workflow shapes: name -> number of instant steps."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id uuid PRIMARY KEY,
    workflow text NOT NULL,
    steps integer NOT NULL,
    step integer NOT NULL,
    status text NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
)
"""


@dataclass(frozen=True)
class Config:
    """Where the baseline's programs connect, from ``BASELINE_*`` variables."""

    amqp_url: str
    database_url: str
    prefix: str

    @classmethod
    def from_env(cls) -> Config:
        """Read ``BASELINE_AMQP_URL``, ``BASELINE_DATABASE_URL`` and ``BASELINE_PREFIX``."""
        return cls(
            os.environ["BASELINE_AMQP_URL"],
            os.environ.get("BASELINE_DATABASE_URL", ""),
            os.environ["BASELINE_PREFIX"],
        )

    @property
    def submit_queue(self) -> str:
        """Client -> orchestrator."""
        return f"{self.prefix}.submit"

    @property
    def results_queue(self) -> str:
        """Workers -> orchestrator: step results."""
        return f"{self.prefix}.results"

    @property
    def task_queue(self) -> str:
        """Orchestrator -> workers."""
        return f"{self.prefix}.tasks"

    @property
    def updates_exchange(self) -> str:
        """Orchestrator -> clients: ``job.<id>.result``."""
        return f"{self.prefix}.updates"

    def env(self) -> dict[str, str]:
        """The variables that hand this configuration to a child process."""
        return {
            "BASELINE_AMQP_URL": self.amqp_url,
            "BASELINE_DATABASE_URL": self.database_url,
            "BASELINE_PREFIX": self.prefix,
        }


async def declare_queue(channel: AbstractChannel, name: str) -> AbstractQueue:
    """A durable queue."""
    return await channel.declare_queue(name, durable=True)


async def declare_updates(channel: AbstractChannel, config: Config) -> AbstractExchange:
    """The durable topic exchange results are published to."""
    return await channel.declare_exchange(
        config.updates_exchange, aio_pika.ExchangeType.TOPIC, durable=True
    )


def message(body: dict[str, Any]) -> aio_pika.Message:
    """A persistent JSON message."""
    return aio_pika.Message(
        json.dumps(body).encode(),
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        content_type="application/json",
    )
