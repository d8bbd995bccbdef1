"""An OMOTES worker built with the unmodified OMOTES SDK's Celery worker (omotes-sdk-python 4.3.x,
``omotes_sdk.internal.worker.worker.initialize_worker``), for the worker-side tests.

Run ONLY with the OMOTES venv (``.venv-omotes/bin/python``, made by
``bash ci/setup.sh``): it imports ``omotes_sdk``, which Segue never does (a
GPL-licensed test peer). It is not a test module (pytest does not collect it)
and mypy skips it (pyproject.toml).

Configuration, all from the environment, as OMOTES workers take it:

- the SDK's own: ``RABBITMQ_HOSTNAME``, ``RABBITMQ_PORT``, ``RABBITMQ_USERNAME``,
  ``RABBITMQ_PASSWORD``, ``RABBITMQ_VIRTUALHOST`` (``omotes_sdk/internal/common/
  config.py``), ``TASK_PROGRESS_QUEUE_NAME``, ``TASK_RESULT_QUEUE_NAME``,
  ``LOG_LEVEL`` (``omotes_sdk/internal/worker/configs.py``);
- this module's: ``OMOTES_TEST_TASK_TYPES``, comma-separated task types. What a
  task does is chosen by the last ``_`` part of its name:

  - ``success``: progress 0.3 and 0.7, prints a line (captured into the result's
    logs), returns the input ESDL and one INFO message holding the parameters
    it got as JSON (so tests see their wire form);
  - ``error``: prints a line, returns no ESDL and two ESDL messages (an ERROR
    about object ``asset-1``, a WARNING about nothing): the SDK reports ERROR;
  - ``crash``: progress 0.1, then the process running the task exits at once
    (``os._exit``): Celery's pool loses it, and with the SDK's settings (acks
    late, reject on worker lost) the task goes back to its queue;
  - ``sleep``: progress 0.1, sleeps ``params["seconds"]`` (default 100), then
    returns the input ESDL;
  - ``large``: returns the input ESDL (parsed and written again with pyESDL, as
    the SDK writes the ESDL it sends) with a description of about
    ``params["megabytes"]`` MB (default 4) of text with non-ASCII characters,
    and prints ``output ESDL sha256=<hex> bytes=<n>`` of it (captured into the
    result's logs). Submitted with job reference ``""`` the SDK's renaming keeps
    the input's name, so what the SDK sends is exactly that ESDL.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from typing import Any

from esdl.esdl_handler import EnergySystemHandler
from omotes_sdk.internal.orchestrator_worker_events.esdl_messages import (
    EsdlMessage,
    MessageSeverity,
)
from omotes_sdk.internal.worker.worker import initialize_worker

TASK_TYPES_ENV = "OMOTES_TEST_TASK_TYPES"
CRASH_EXIT_CODE = 13


def success(
    input_esdl: str, params: dict[str, Any], update_progress: Callable[[float, str], None]
) -> tuple[str | None, list[EsdlMessage]]:
    update_progress(0.3, "loading")
    time.sleep(0.2)
    update_progress(0.7, "computing")
    print("the test worker computed a result", flush=True)
    return input_esdl, [EsdlMessage(json.dumps(params, sort_keys=True), MessageSeverity.INFO)]


def error(
    input_esdl: str, params: dict[str, Any], update_progress: Callable[[float, str], None]
) -> tuple[str | None, list[EsdlMessage]]:
    print("computation failed: no feasible solution", flush=True)
    return None, [
        EsdlMessage("asset too small", MessageSeverity.ERROR, esdl_object_id="asset-1"),
        EsdlMessage("check the inputs", MessageSeverity.WARNING),
    ]


def crash(
    input_esdl: str, params: dict[str, Any], update_progress: Callable[[float, str], None]
) -> tuple[str | None, list[EsdlMessage]]:
    update_progress(0.1, "about to crash")
    time.sleep(0.2)
    os._exit(CRASH_EXIT_CODE)


def sleep(
    input_esdl: str, params: dict[str, Any], update_progress: Callable[[float, str], None]
) -> tuple[str | None, list[EsdlMessage]]:
    update_progress(0.1, "sleeping")
    time.sleep(float(params.get("seconds", 100.0)))
    return input_esdl, []


def large(
    input_esdl: str, params: dict[str, Any], update_progress: Callable[[float, str], None]
) -> tuple[str | None, list[EsdlMessage]]:
    handler = EnergySystemHandler()
    handler.load_from_string(input_esdl)
    piece = "asset-{} Zürich ∆ <&> "
    count = int(float(params.get("megabytes", 4.0)) * 1_000_000 / len(piece.format(0).encode()))
    handler.energy_system.description = "".join(piece.format(i) for i in range(count))
    output_esdl: str = handler.to_string()
    data = output_esdl.encode()
    print(f"output ESDL sha256={hashlib.sha256(data).hexdigest()} bytes={len(data)}", flush=True)
    return output_esdl, [EsdlMessage("a large result", MessageSeverity.INFO)]


BEHAVIOURS = {"success": success, "error": error, "crash": crash, "sleep": sleep, "large": large}


def run_task(
    input_esdl: str,
    params: dict[str, Any],
    update_progress: Callable[[float, str], None],
    task_name: str,
) -> tuple[str | None, list[EsdlMessage]]:
    """The task function of every task type (SDK >= 4.3: it is told the task's name)."""
    behaviour = BEHAVIOURS[task_name.rsplit("_", 1)[-1]]
    return behaviour(input_esdl, params, update_progress)


if __name__ == "__main__":
    task_types = [name for name in os.environ[TASK_TYPES_ENV].split(",") if name]
    initialize_worker(task_types, run_task)
