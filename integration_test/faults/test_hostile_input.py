"""Hostile input: over 200 malformed commands and worker events sent to a running
orchestrator are each parked in the dead-letter queue with a reason naming
the problem, logged once, and answered when they name a job id; no job is
created for any of them, and the orchestrator goes on serving valid jobs.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import aio_pika
import pytest
from aio_pika.abc import DeliveryMode
from sqlalchemy.ext.asyncio import AsyncEngine

from segue.client import SegueClient
from segue.demo import demo_handlers
from segue.protocol.kinds import REJECTION_KINDS
from segue.protocol.messages import JobFinished, JobStatus
from segue.protocol.names import Names
from segue.worker import Worker

from .audit import RawResult
from .conftest import DEMO_CONFIG, tap_queue_name
from .corpus import Hostile, Target, build_corpus
from .plan import WORKFLOW, write_workflow_file
from .processes import ProcessGroup, log_tail, orchestrator_env, segue_argv
from .taps import DeadLetter, dead_letter, drain_queue, drain_results, open_result_tap

MAX_MESSAGE_BYTES = 64 * 1024
DEAD_LETTER_WAIT_S = 90.0
RESULT_WAIT_S = 60.0
VALID_PARAMS = {"step_seconds": 0.05, "horizon_years": 3}


@dataclass(frozen=True)
class Orchestrator:
    """A running ``segue serve`` process of the test and what it was started with."""

    group: ProcessGroup
    names: Names
    amqp_url: str

    @property
    def log(self) -> Path:
        """The log file of the (only) orchestrator process."""
        logs = self.group.logs()
        assert len(logs) == 1, f"the orchestrator was restarted: {logs}"
        return logs[0]


@pytest.fixture
async def orchestrator(
    amqp_url: str, names: Names, database_url: str, tmp_path: Path
) -> AsyncIterator[Orchestrator]:
    """One orchestrator with a 64 KiB message limit, logging JSON at info level."""
    workflows = write_workflow_file(DEMO_CONFIG, tmp_path / "workflows.json")
    env = orchestrator_env(
        amqp_url,
        database_url,
        names,
        workflows,
        SEGUE_LOG_LEVEL="info",
        SEGUE_MAX_MESSAGE_BYTES=str(MAX_MESSAGE_BYTES),
    )
    group = ProcessGroup("orchestrator", segue_argv("serve"), env, 1, tmp_path / "logs")
    await group.start()
    try:
        yield Orchestrator(group, names, amqp_url)
    finally:
        await group.stop()


async def publish_corpus(amqp_url: str, names: Names, corpus: Sequence[Hostile]) -> None:
    """Publish every message of the corpus to its queue, confirmed, ids ``hostile-NNN``."""
    queues = {Target.COMMANDS: names.commands_queue, Target.EVENTS: names.events_queue}
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        for index, item in enumerate(corpus):
            message = aio_pika.Message(
                item.body, message_id=message_id(index), delivery_mode=DeliveryMode.PERSISTENT
            )
            await channel.default_exchange.publish(message, routing_key=queues[item.target])


def message_id(index: int) -> str:
    """The message id of corpus entry ``index``."""
    return f"hostile-{index:03d}"


async def collect_dead_letters(amqp_url: str, names: Names, expected: int) -> list[DeadLetter]:
    """Wait until ``expected`` messages are dead-lettered, then take them all."""
    deadline = time.monotonic() + DEAD_LETTER_WAIT_S
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        while time.monotonic() < deadline:
            queue = await channel.declare_queue(names.dead_queue, passive=True)
            if (queue.declaration_result.message_count or 0) >= expected:
                break
            await asyncio.sleep(0.3)
    await asyncio.sleep(1.0)  # anything beyond the expected ones
    return [dead_letter(message) for message in await drain_queue(amqp_url, names.dead_queue)]


def check_dead_letters(corpus: Sequence[Hostile], dead: Sequence[DeadLetter]) -> list[str]:
    """Each corpus message was dead-lettered once, from its queue, with a fitting reason."""
    problems = []
    by_id = Counter(letter.message_id for letter in dead)
    letters = {letter.message_id: letter for letter in dead}
    for index, item in enumerate(corpus):
        mid = message_id(index)
        letter = letters.get(mid)
        if letter is None:
            problems.append(f"{item.name}: not dead-lettered")
            continue
        if by_id[mid] != 1:
            problems.append(f"{item.name}: dead-lettered {by_id[mid]} times")
        if item.reason.lower() not in letter.reason.lower():
            problems.append(f"{item.name}: reason {letter.reason[:300]!r} lacks {item.reason!r}")
        if not letter.source_queue.endswith(f".{item.target}"):
            problems.append(f"{item.name}: source queue {letter.source_queue!r}")
        if letter.body != item.body:
            problems.append(f"{item.name}: dead-lettered body differs from the one sent")
    known = {message_id(index) for index in range(len(corpus))}
    problems += [f"unexpected dead letter {m}" for m in by_id if m not in known]
    return problems


def check_answers(
    corpus: Sequence[Hostile], raw: dict[UUID, list[RawResult]], valid: set[UUID]
) -> list[str]:
    """Each corpus command naming a job id got one failed result with a rejection kind."""
    problems = []
    answered = {item.answer_job_id: item for item in corpus if item.answer_job_id is not None}
    for job_id, item in answered.items():
        results = {r.message_id: r.result for r in raw.get(job_id, [])}
        if len(results) != 1:
            problems.append(f"{item.name}: {len(results)} results, expected 1")
            continue
        problems += _rejection_problems(item, next(iter(results.values())))
    problems += [
        f"unexpected result for job {job_id} ({_named(corpus, job_id)}): "
        f"{[r.result.status for r in results]}"
        for job_id, results in raw.items()
        if job_id not in answered and job_id not in valid
    ]
    return problems


def _named(corpus: Sequence[Hostile], job_id: UUID) -> str:
    """Names of the corpus messages that mention ``job_id``."""
    return ", ".join(item.name for item in corpus if str(job_id).encode() in item.body) or "?"


def _rejection_problems(item: Hostile, result: JobFinished) -> list[str]:
    error = result.error
    if result.status is not JobStatus.FAILED or error is None:
        return [f"{item.name}: result {result.status} without an error"]
    problems = []
    if error.kind not in REJECTION_KINDS or error.kind != item.answer_kind:
        problems.append(f"{item.name}: error kind {error.kind!r}, expected {item.answer_kind!r}")
    if item.reason.lower() not in error.message.lower():
        problems.append(f"{item.name}: message {error.message[:300]!r} lacks {item.reason!r}")
    return problems


def dead_letter_log_lines(log: Path) -> Counter[str]:
    """``message_dead_lettered`` log lines of the orchestrator, by message id."""
    counts: Counter[str] = Counter()
    for line in log.read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        entry = json.loads(line)
        if entry.get("event") == "message_dead_lettered":
            counts[str(entry.get("message_id"))] += 1
    return counts


def log_events(log: Path) -> Counter[str]:
    """How many log lines of each event the orchestrator wrote."""
    counts: Counter[str] = Counter()
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            counts[str(json.loads(line).get("event"))] += 1
    return counts


async def job_ids_stored(sql_engine: AsyncEngine) -> set[UUID]:
    """Every job id in the database."""
    async with sql_engine.connect() as connection:
        rows = await connection.exec_driver_sql("SELECT job_id FROM jobs")
        return set(rows.scalars().all())


@pytest.mark.timeout(300)
async def test_malformed_messages_are_dead_lettered_with_a_reason_and_the_service_goes_on(
    orchestrator: Orchestrator, amqp_url: str, names: Names, sql_engine: AsyncEngine
) -> None:
    await open_result_tap(amqp_url, names, tap_queue_name(names))
    async with SegueClient(amqp_url, namespace=names.namespace, request_timeout_s=20) as client:
        await asyncio.wait_for(_first_answer(client), 60)
        real = await client.submit(WORKFLOW, VALID_PARAMS)
        await real.accepted(timeout=30)
        corpus = build_corpus(real.job_id, MAX_MESSAGE_BYTES)
        assert len(corpus) >= 200

        await publish_corpus(amqp_url, names, corpus)
        dead = await collect_dead_letters(amqp_url, names, len(corpus))

        worker = Worker(
            handlers=demo_handlers(), amqp_url=amqp_url, namespace=names.namespace, concurrency=2
        )
        async with worker:
            valid = await client.submit(WORKFLOW, VALID_PARAMS)
            results = await asyncio.wait_for(
                asyncio.gather(real.result(), valid.result()), RESULT_WAIT_S
            )
    assert [r.status for r in results] == [JobStatus.SUCCEEDED] * 2, results
    assert not orchestrator.group.unexpected_exits, log_tail(orchestrator.log, 30)

    dead_problems = check_dead_letters(corpus, dead)
    assert not dead_problems, "\n".join(dead_problems[:50])

    raw = await drain_results(amqp_url, tap_queue_name(names))
    answer_problems = check_answers(corpus, raw, {real.job_id, valid.job_id})
    assert not answer_problems, "\n".join(answer_problems[:50])
    assert await job_ids_stored(sql_engine) == {real.job_id, valid.job_id}

    logged = dead_letter_log_lines(orchestrator.log)
    log_problems = [
        f"{item.name}: {logged[message_id(index)]} message_dead_lettered lines"
        for index, item in enumerate(corpus)
        if logged[message_id(index)] != 1
    ]
    assert not log_problems, "\n".join(log_problems[:50])
    events = log_events(orchestrator.log)
    assert events["handler_error"] == 0, "a malformed message made a handler fail"
    print(
        f"\nhostile-input: messages={len(corpus)} dead_lettered={len(dead)} "
        f"answered={sum(item.answer_job_id is not None for item in corpus)} "
        f"commands={sum(item.target is Target.COMMANDS for item in corpus)} "
        f"events={sum(item.target is Target.EVENTS for item in corpus)}"
    )


async def _first_answer(client: SegueClient) -> None:
    """Wait until the orchestrator answers a query (it is consuming)."""
    while True:
        try:
            await client.workflows()
        except Exception:
            await asyncio.sleep(0.5)
        else:
            return
