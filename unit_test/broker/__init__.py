"""Unit tests of the broker layer (consume boundary, batching), with fakes."""
