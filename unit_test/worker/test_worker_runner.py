"""Loading a worker from ``MODULE:ATTR`` and resolving where it connects."""

from __future__ import annotations

import itertools

import pytest

from segue.broker.env import ConnectionSettings, safe_url
from segue.errors import ConfigurationError
from segue.worker import Worker, load_worker
from segue.worker.reporter import retry_delays


def test_a_factory_target_is_called() -> None:
    worker = load_worker("segue.demo:worker")
    assert isinstance(worker, Worker)
    assert {h.queue for h in worker.handlers} == {
        "prepare",
        "optimise",
        "simulate",
        "report",
        "quick_check",
    }


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("segue.demo", "MODULE:ATTR"),
        (":worker", "MODULE:ATTR"),
        ("no_such_module_xyz:worker", "cannot import"),
        ("segue.demo:nope", "no attribute 'nope'"),
        ("segue.demo.handlers:INCREMENTS", "neither a Worker nor a factory"),
        ("segue.demo.handlers:demand_twh", "demand_twh"),
    ],
)
def test_bad_targets_say_what_is_wrong(target: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        load_worker(target)


def test_settings_come_from_arguments_then_environment_then_defaults() -> None:
    env = {"SEGUE_AMQP_URL": "amqp://u:p@mq:5672/", "SEGUE_NAMESPACE": "acme"}
    assert ConnectionSettings.resolve(None, None, env) == ConnectionSettings(
        "amqp://u:p@mq:5672/", "acme"
    )
    assert ConnectionSettings.resolve("amqp://x/", "mine", env) == ConnectionSettings(
        "amqp://x/", "mine"
    )
    assert ConnectionSettings.resolve(None, None, {}) == ConnectionSettings(
        "amqp://guest:guest@127.0.0.1:5672/", "segue"
    )


def test_invalid_settings_name_the_variable() -> None:
    with pytest.raises(ConfigurationError, match="SEGUE_NAMESPACE"):
        ConnectionSettings.resolve(None, None, {"SEGUE_NAMESPACE": "Bad Name"})
    with pytest.raises(ConfigurationError, match=r"SEGUE_AMQP_URL.*http://u:\*\*\*@h/"):
        ConnectionSettings.resolve(None, None, {"SEGUE_AMQP_URL": "http://u:secret@h/"})


def test_passwords_are_masked() -> None:
    assert safe_url("amqp://user:secret@mq:5672/vh") == "amqp://user:***@mq:5672/vh"
    assert safe_url("amqp://mq/") == "amqp://mq/"


def test_retry_delays_grow_to_a_cap() -> None:
    delays = list(itertools.islice(retry_delays(0.2, 5.0), 12))
    assert 0.1 <= delays[0] <= 0.2
    assert all(0 < d <= 5.0 for d in delays)
    assert delays[-1] >= 2.5
