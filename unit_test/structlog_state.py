"""A fixture for tests of what the SDKs print: structlog as a program that never
configured it has it (import it into a test module to use it)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog


@pytest.fixture
def unconfigured_structlog() -> Iterator[None]:
    """structlog as a program that never configured it has it."""
    saved, was_configured = structlog.get_config(), structlog.is_configured()
    structlog.reset_defaults()
    try:
        yield
    finally:
        if was_configured:
            structlog.configure(**saved)
        else:
            structlog.reset_defaults()
