"""Unit tests of the orchestrator service, with fakes."""
