"""Bounded growth: the running service deletes finished jobs past retention, and the
dead-letter queue keeps only the newest letters, for a while. A dead-letter queue
declared without bounds by an older version never stops the service or its workers."""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import Callable
from typing import Any
from uuid import UUID

import aio_pika
import pytest
from structlog.testing import capture_logs

from segue.broker.topology import declare_exchanges, declare_orchestrator_topology
from segue.client import JobRejectedError, SegueClient
from segue.protocol.messages import JobStatus
from segue.protocol.names import Names
from segue.protocol.topology import DeadLetterBounds
from segue.settings import Settings
from segue.store.repository import Store
from segue.worker import Worker

from .conftest import running_service

ONE_SECOND_IN_DAYS = 1 / 86_400


def with_changes(settings: Settings, **changes: Any) -> Settings:
    """``settings`` with some values changed."""
    return settings.model_copy(update=changes)


async def wait_until_gone(store: Store, job_id: UUID, timeout_s: float = 20) -> None:
    """Return once the job is no longer stored; fail after ``timeout_s``."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while await store.job_view(job_id, include_history=False) is not None:
        assert asyncio.get_running_loop().time() < deadline, f"job {job_id} was not deleted"
        await asyncio.sleep(0.2)


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


async def publish_dead_letters(amqp_url: str, names: Names, bodies: list[bytes]) -> None:
    """Publish ``bodies`` to the dead-letter exchange, each confirmed by the broker."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(names.dead_exchange)
        for body in bodies:
            await exchange.publish(aio_pika.Message(body), routing_key="x")


async def dead_queue_bodies(amqp_url: str, names: Names) -> list[bytes]:
    """Take every message in the dead-letter queue; their bodies, oldest first."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(names.dead_queue)
        bodies = []
        while (message := await queue.get(fail=False, no_ack=True)) is not None:
            bodies.append(message.body)
        return bodies


async def dead_queue_depth(amqp_url: str, names: Names) -> int:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(names.dead_queue, passive=True)
        return queue.declaration_result.message_count or 0


async def declare_unbounded_dead_queue(amqp_url: str, names: Names) -> None:
    """The dead-letter queue as versions without bounds declared it."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        await declare_exchanges(channel, names)
        queue = await channel.declare_queue(names.dead_queue, durable=True)
        await queue.bind(names.dead_exchange, routing_key="")


# --- retention -------------------------------------------------------------------------


async def test_the_service_deletes_finished_jobs_past_retention_and_keeps_live_ones(
    settings: Settings, client: SegueClient, store: Store
) -> None:
    pruning = with_changes(settings, retention_days=ONE_SECOND_IN_DAYS, retention_interval_s=0.2)
    async with running_service(pruning):
        waiting = await client.submit("quick_check", {"value": 1})  # no worker: stays queued
        await waiting.accepted()
        cancelled = await client.submit("quick_check", {"value": 2})
        await cancelled.accepted()
        await client.cancel(cancelled.job_id)
        assert (await cancelled.result(timeout=20)).status is JobStatus.CANCELLED

        await wait_until_gone(store, cancelled.job_id)

        await asyncio.sleep(1.5)  # the queued job is past retention too, but live
        still = await store.job_view(waiting.job_id)
        assert still is not None
        assert still.status is JobStatus.QUEUED
        metrics = await asyncio.to_thread(scrape, f"http://127.0.0.1:{pruning.http_port}/metrics")
    assert "segue_jobs_pruned_total 1.0" in metrics


async def test_retention_zero_keeps_finished_jobs(
    settings: Settings, client: SegueClient, store: Store
) -> None:
    keeping = with_changes(settings, retention_days=0, retention_interval_s=0.2)
    async with running_service(keeping):
        job = await client.submit("quick_check", {"value": 1})
        await job.accepted()
        await client.cancel(job.job_id)
        assert (await job.result(timeout=20)).status is JobStatus.CANCELLED
        await asyncio.sleep(1.5)
        assert await store.job_view(job.job_id) is not None


# --- the dead-letter queue -------------------------------------------------------------


async def test_the_dead_letter_queue_keeps_only_the_newest_letters(
    settings: Settings,
    amqp_url: str,
    names: Names,
    make_worker: Callable[[int], Worker],
    client: SegueClient,
) -> None:
    bounded = with_changes(settings, dead_letter_max_length=3)
    with capture_logs() as logs:
        async with running_service(bounded):
            worker = make_worker(1)  # declares the queue with the default bounds
            async with worker:
                job = await client.submit("quick_check", {"value": 5})
                assert (await job.result(timeout=30)).status is JobStatus.SUCCEEDED
            await publish_dead_letters(amqp_url, names, [b"1", b"2", b"3", b"4", b"5"])

            assert await dead_queue_bodies(amqp_url, names) == [b"3", b"4", b"5"]
    assert not [log for log in logs if log["event"] == "queue_bounds_not_applied"]


async def test_dead_letters_expire(amqp_url: str, names: Names) -> None:
    connection = await aio_pika.connect_robust(amqp_url)
    async with connection:
        channel = await connection.channel()
        bounds = DeadLetterBounds(max_length=0, ttl_days=0.3 * ONE_SECOND_IN_DAYS)
        await declare_orchestrator_topology(channel, names, [], bounds)
    await publish_dead_letters(amqp_url, names, [b"old"])

    for _ in range(50):
        if await dead_queue_depth(amqp_url, names) == 0:
            break
        await asyncio.sleep(0.1)
    assert await dead_queue_depth(amqp_url, names) == 0


async def test_an_unbounded_dead_queue_from_before_does_not_stop_the_service(
    settings: Settings,
    amqp_url: str,
    names: Names,
    make_worker: Callable[[int], Worker],
    client: SegueClient,
) -> None:
    await declare_unbounded_dead_queue(amqp_url, names)

    with capture_logs() as logs:
        async with running_service(settings):
            worker = make_worker(1)
            async with worker:
                job = await client.submit("quick_check", {"value": 5})
                assert (await job.result(timeout=30)).status is JobStatus.SUCCEEDED
            refused = await client.submit("no_such_workflow", {})
            with pytest.raises(JobRejectedError):
                await refused.accepted()
            for _ in range(50):  # the refused submission is dead-lettered there still
                if await dead_queue_depth(amqp_url, names) == 1:
                    break
                await asyncio.sleep(0.1)
            assert await dead_queue_depth(amqp_url, names) == 1

    warnings = [log for log in logs if log["event"] == "queue_bounds_not_applied"]
    assert len(warnings) == 1, "the orchestrator warns once; the worker takes the queue as it is"
    (warning,) = warnings
    assert warning["queue"] == names.dead_queue
    assert warning["wanted"]["x-max-length"] == 100_000
    assert f"rabbitmqctl delete_queue {names.dead_queue}" in warning["fix"]
    assert "rabbitmqctl set_policy" in warning["fix"]


async def test_an_unbounded_dead_queue_is_bounded_once_deleted(
    settings: Settings, amqp_url: str, names: Names
) -> None:
    """Following the warning's advice: delete the queue and restart."""
    await declare_unbounded_dead_queue(amqp_url, names)
    async with running_service(settings):
        pass
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(names.dead_queue)

    bounded = with_changes(settings, dead_letter_max_length=2)
    with capture_logs() as logs:
        async with running_service(bounded):
            await publish_dead_letters(amqp_url, names, [b"1", b"2", b"3"])
            assert await dead_queue_bodies(amqp_url, names) == [b"2", b"3"]
    assert not [log for log in logs if log["event"] == "queue_bounds_not_applied"]


async def test_a_worker_started_first_creates_the_dead_queue_with_the_default_bounds(
    amqp_url: str, names: Names, make_worker: Callable[[int], Worker]
) -> None:
    async with make_worker(1):
        pass

    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        # RabbitMQ refuses a redeclaration whose arguments differ: these are the queue's.
        await channel.declare_queue(
            names.dead_queue, durable=True, arguments=DeadLetterBounds().arguments()
        )
