"""Every exchange, queue and routing-key name of the OMOTES drop-in, in one place.

On the OMOTES side (vhost ``omotes``) the names are the OMOTES SDK's own
(``omotes_sdk/queue_names.py``), taken from the settings so that they can be
changed together with a patched client, but never invented here. On the Segue
side the gateway owns one queue, ``<namespace>.omotes.updates``, bound to the
updates exchange with the gateway's updates key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from uuid import UUID

from segue.protocol.names import Names, client_updates_key
from segue.settings import Settings

JobQueueKind = Literal["status", "progress", "result"]

GATEWAY_CLIENT_ID = "omotes"
"""The client id of the gateway's updates key (``client.<user>.omotes``).

The same for every gateway replica and across restarts: the jobs a gateway
submitted keep sending their updates to a queue that outlives it, so a
restart or a rolling deploy of ``segue serve`` loses no OMOTES result."""


@dataclass(frozen=True)
class OmotesNames:
    """The names of one gateway, on both vhosts."""

    exchange: str
    submissions_queue: str
    deletions_queue: str
    workflows_request_key: str
    workflows_key: str
    segue: Names
    gateway_id: str

    @classmethod
    def of(cls, settings: Settings, names: Names, gateway_id: str) -> OmotesNames:
        """The names configured in ``settings`` for the gateway ``gateway_id``."""
        return cls(
            exchange=settings.omotes_exchange,
            submissions_queue=settings.omotes_submissions_queue,
            deletions_queue=settings.omotes_deletions_queue,
            workflows_request_key=settings.omotes_workflows_request_queue,
            workflows_key=settings.omotes_workflows_routing_key,
            segue=names,
            gateway_id=gateway_id,
        )

    @property
    def workflows_request_queue(self) -> str:
        """This gateway's exclusive queue of ``RequestAvailableWorkflows`` (bound to
        :attr:`workflows_request_key`): one per replica, where OMOTES has one for all."""
        return f"{self.workflows_request_key}.{self.gateway_id}"

    @property
    def updates_queue(self) -> str:
        """Durable queue (Segue vhost) of the updates of jobs OMOTES clients submitted."""
        return f"{self.segue.namespace}.omotes.updates"

    def updates_key(self, user: str) -> str:
        """The updates key every submission of the gateway carries (see
        :data:`GATEWAY_CLIENT_ID`)."""
        return client_updates_key(GATEWAY_CLIENT_ID, user)


def job_queue(job_id: UUID | str, kind: JobQueueKind) -> str:
    """The OMOTES client's queue (and routing key) of one job's status, progress or
    result: ``jobs.<uuid>.<kind>``. Declared by the client only; never by Segue."""
    return f"jobs.{job_id}.{kind}"
