"""Connecting refuses unusable TLS options before it touches the network."""

from __future__ import annotations

import pytest

from segue.broker.connection import connect
from segue.errors import ConfigurationError


async def test_a_missing_ca_file_stops_the_connect_with_its_name() -> None:
    # Port 1 on 127.0.0.1 answers nothing: reaching it would be a BrokerUnavailableError.
    with pytest.raises(ConfigurationError, match=r"cafile: no such file '/no/such/ca\.pem'"):
        await connect("amqps://u:p@127.0.0.1:1/?cafile=/no/such/ca.pem", "unit-test")
