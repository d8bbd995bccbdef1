"""The pure state machine: ``decide(job, event, now) -> Decision``.

No I/O, no clock reads, no randomness: everything it needs comes in as
arguments, so every transition is reproducible and unit-testable.
"""
