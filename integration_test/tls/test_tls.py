"""Segue over TLS: amqps:// to RabbitMQ and sslmode=verify-full to PostgreSQL.

The orchestrator, an SDK worker and the client SDK all connect with amqps://
and verify the broker's certificate against the test CA; the orchestrator
creates, migrates (psycopg2) and uses (asyncpg) its database with
``sslmode=verify-full``. The servers are asked whether the connections really
are encrypted. A CA that did not sign the servers' certificates is refused at
once with an error that says so.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from segue.client import BrokerUnavailableError, SegueClient
from segue.demo import demo_handlers
from segue.protocol.messages import JobStatus
from segue.protocol.names import Names
from segue.service.app import run_service
from segue.store.migrate import DatabaseSetupError
from segue.store.urls import parse_url
from segue.worker import Worker

from .conftest import (
    TlsDatabase,
    postgres_sessions,
    rabbitmq_connections,
    running_service,
    service_settings,
)

FAST = {"step_seconds": 0.2}
REFUSAL_TIMEOUT_S = 20


async def test_a_job_runs_with_every_connection_encrypted(
    tls_amqp_url: str, tls_server_url: str, tls_database: TlsDatabase, names: Names
) -> None:
    settings = service_settings(tls_amqp_url, tls_database.url, names)
    worker = Worker(
        handlers=demo_handlers(),
        amqp_url=tls_amqp_url,
        namespace=names.namespace,
        concurrency=2,
        worker_id=f"tls-{names.namespace}",
        progress_interval_s=0.05,
    )
    client_name = f"segue-client {names.namespace}"
    async with (
        running_service(settings),
        worker,
        SegueClient(
            tls_amqp_url, names.namespace, request_timeout_s=20, connection_name=client_name
        ) as client,
    ):
        job = await client.submit("energy_plan", {**FAST, "horizon_years": 10, "region": "de"})
        result = await asyncio.wait_for(job.result(), 60)
        assert result.status is JobStatus.SUCCEEDED, result.error
        view = await client.get(job.job_id)
        assert view is not None
        assert {a.step for a in view.attempts} == {"prepare", "optimise", "simulate", "report"}

        connections = await rabbitmq_connections()
        sessions = await asyncio.to_thread(postgres_sessions, tls_server_url, tls_database.name)

    ours = {
        "segue-orchestrator",
        f"segue-worker {worker.worker_id}",
        client_name,
    }
    seen = {c["connection_name"]: c for c in connections if c["connection_name"] in ours}
    assert set(seen) == ours, f"connections on the TLS node: {connections}"
    assert all(c["ssl"] and c["ssl_protocol"].startswith("tlsv1.") for c in seen.values()), seen
    assert sessions, "the orchestrator held no connection to its database"
    assert all(ssl and (version or "").startswith("TLSv1.") for ssl, version in sessions), sessions


@pytest.mark.parametrize("component", ["client", "worker"])
async def test_a_broker_certificate_from_another_ca_is_refused_at_once(
    tls_amqp_url: str, other_ca: Path, names: Names, component: str
) -> None:
    wrong = tls_amqp_url.split("?", 1)[0] + f"?cafile={other_ca}"

    async def start() -> None:
        if component == "client":
            async with SegueClient(wrong, names.namespace):
                pass
        else:
            await Worker(handlers=demo_handlers(), amqp_url=wrong, namespace=names.namespace).run()

    with pytest.raises(BrokerUnavailableError) as refused:
        await asyncio.wait_for(start(), REFUSAL_TIMEOUT_S)
    assert "CERTIFICATE_VERIFY_FAILED" in str(refused.value)
    assert "guest:guest" not in str(refused.value), "the password is masked"


async def test_a_database_certificate_from_another_ca_stops_the_orchestrator(
    tls_amqp_url: str, tls_database: TlsDatabase, other_ca: Path, names: Names
) -> None:
    wrong = parse_url(tls_database.url).update_query_dict({"sslrootcert": str(other_ca)})
    settings = service_settings(tls_amqp_url, wrong.render_as_string(hide_password=False), names)

    with pytest.raises(DatabaseSetupError) as refused:
        await asyncio.wait_for(
            run_service(settings, asyncio.Event(), asyncio.Event()), REFUSAL_TIMEOUT_S
        )
    assert "certificate verify failed" in str(refused.value)
    assert tls_database.name in str(refused.value)
