"""Service settings from ``SEGUE_*`` environment variables or a ``.env`` file.

Validated at start: a bad value stops the service with a message naming the
setting. Secrets (passwords in URLs) never appear in logs: use :meth:`safe_dict`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

from segue.broker.env import safe_url
from segue.errors import ConfigurationError
from segue.protocol.codec import DEFAULT_MAX_BODY_BYTES
from segue.protocol.names import NAMESPACE_PATTERN
from segue.protocol.topology import (
    DEFAULT_DEAD_LETTER_MAX_LENGTH,
    DEFAULT_DEAD_LETTER_TTL_DAYS,
    DeadLetterBounds,
)

ENV_PREFIX = "SEGUE_"


class Settings(BaseSettings):
    """Everything the orchestrator can be configured with."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_file=".env", extra="ignore")

    amqp_url: str = Field(default="amqp://guest:guest@127.0.0.1:5672/", description="RabbitMQ URL")
    database_url: str = Field(
        default="postgresql://postgres@127.0.0.1:5432/segue",
        description="PostgreSQL URL, e.g. postgresql://user:password@host:5432/segue",
    )
    workflow_config: Path = Field(default=Path("config/workflow_config.json"))
    namespace: str = Field(default="segue", pattern=NAMESPACE_PATTERN.pattern)
    prefetch: int = Field(
        default=256, ge=1, le=5000, description="messages delivered ahead, per queue and replica"
    )
    max_batch: int = Field(
        default=128, ge=1, le=1000, description="most messages handled in one transaction"
    )
    db_pool_size: int = Field(default=10, ge=1, le=200)
    max_message_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, ge=1024)
    sweep_interval_s: float = Field(default=1.0, gt=0)
    relay_interval_s: float = Field(default=2.0, gt=0)
    relay_grace_s: float = Field(
        default=5.0, ge=0, description="outbox rows older than this are left to the relay"
    )
    retention_days: float = Field(
        default=30.0,
        ge=0,
        le=36500,
        description="finished jobs (with their attempts and history) not updated for this "
        "long are deleted; 0: kept forever",
    )
    retention_interval_s: float = Field(
        default=600.0, gt=0, description="how often old finished jobs are looked for"
    )
    schedule_interval_s: float = Field(
        default=5.0, gt=0, le=60, description="how often due schedules are looked for"
    )
    metrics_interval_s: float = Field(
        default=15.0,
        gt=0,
        description="how often the gauges that need a query (jobs by status, queues) are set",
    )
    dead_letter_max_length: int = Field(
        default=DEFAULT_DEAD_LETTER_MAX_LENGTH,
        ge=0,
        description="dead letters kept; past that the oldest are dropped; 0: no limit",
    )
    dead_letter_ttl_days: float = Field(
        default=DEFAULT_DEAD_LETTER_TTL_DAYS,
        ge=0,
        le=3650,  # RabbitMQ's longest message TTL
        description="how long a dead letter is kept; 0: no limit",
    )
    http_host: str = Field(default="0.0.0.0", description="address of /healthz, /readyz, /metrics")  # noqa: S104
    http_port: int = Field(default=8080, ge=0, le=65535, description="0: any free port")
    web_enabled: bool = Field(
        default=False,
        description="serve the read-only jobs web page (/jobs) on the HTTP port (docs/operator.md)",
    )
    migrate_on_start: bool = Field(default=True, description="run `db upgrade` in `serve`")
    admins: str = Field(
        default="",
        description="comma-separated RabbitMQ users that may cancel, retry and read every job",
    )
    max_event_lag_s: float = Field(
        default=600.0,
        gt=0,
        description="longest a backlog of worker events (or a worker clock behind) may hold "
        "deadlines back",
    )
    omotes_enabled: bool = Field(
        default=False,
        description="serve OMOTES 4.x clients and Celery workers too (docs/omotes.md)",
    )
    omotes_amqp_url: str = Field(
        default="amqp://guest:guest@127.0.0.1:5672/omotes",
        description="RabbitMQ vhost of OMOTES clients (omotes-sdk-python OmotesInterface)",
    )
    omotes_celery_amqp_url: str = Field(
        default="amqp://guest:guest@127.0.0.1:5672/omotes_celery",
        description="RabbitMQ vhost of the OMOTES Celery workers",
    )
    omotes_exchange: str = Field(default="omotes_exchange")
    omotes_submissions_queue: str = Field(default="job_submissions")
    omotes_deletions_queue: str = Field(default="job_deletions")
    omotes_workflows_request_queue: str = Field(default="request_available_workflows")
    omotes_workflows_routing_key: str = Field(default="available_workflows")
    omotes_progress_queue: str = Field(default="omotes_task_progress_events")
    omotes_result_queue: str = Field(default="omotes_task_result_events")
    omotes_task_types: str = Field(
        default="",
        description="comma-separated step queues served by OMOTES Celery workers "
        "(empty: every queue of workflows loaded from a legacy OMOTES file)",
    )
    log_level: str = Field(default="info")
    log_format: str = Field(default="auto", pattern="^(auto|json|console)$")

    @field_validator("amqp_url", "omotes_amqp_url", "omotes_celery_amqp_url")
    @classmethod
    def _check_amqp_url(cls, value: str) -> str:
        if not value.startswith(("amqp://", "amqps://")):
            raise ValueError("must start with amqp:// or amqps://")
        return value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        url = make_url(value)
        if not url.drivername.startswith("postgres"):
            raise ValueError("must be a postgresql:// URL")
        if not url.database:
            raise ValueError("must name a database, e.g. postgresql://host/segue")
        return value

    @property
    def admin_users(self) -> frozenset[str]:
        """The users of :attr:`admins`."""
        return frozenset(user.strip() for user in self.admins.split(",") if user.strip())

    @property
    def dead_letter_bounds(self) -> DeadLetterBounds:
        """How much the dead-letter queue keeps."""
        return DeadLetterBounds(self.dead_letter_max_length, self.dead_letter_ttl_days)

    def safe_dict(self) -> dict[str, Any]:
        """The settings with passwords masked, for logging."""
        data = self.model_dump(mode="json")
        for key in ("amqp_url", "omotes_amqp_url", "omotes_celery_amqp_url"):
            data[key] = safe_url(getattr(self, key))
        data["database_url"] = make_url(self.database_url).render_as_string(hide_password=True)
        return data


def load_settings(**overrides: Any) -> Settings:
    """Read settings, turning validation errors into one clear ConfigurationError."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = [
            f"{ENV_PREFIX}{'.'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            for err in exc.errors(include_url=False)
        ]
        raise ConfigurationError("invalid settings:\n  " + "\n  ".join(problems)) from exc
