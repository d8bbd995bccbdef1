"""Cancels heard for attempts that do not run here (yet): a bounded memory.

Every worker hears every cancel. One for an attempt whose task is still
queued matters when that task arrives later: the worker that takes it drops
it unrun instead of reporting it started, only to be stopped at once. So each
worker remembers the attempt ids of the cancels meant for it (for whoever
holds the attempt, or for this worker by name), for a day at most and
``capacity`` of them at most, oldest forgotten first.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from uuid import UUID

from segue.protocol.messages import CancelAttempt, StepTask
from segue.protocol.text import shorten
from segue.protocol.tokens import token_digest

MAX_REMEMBERED_CANCELS = 100_000
"""At most this many cancels are remembered (when full: about 40 MB, under 100 MB at worst)."""
MAX_REASON_CHARS = 100
"""A remembered reason is cut to this (it is only logged)."""
MAX_DIGESTS = 4
"""Token digests kept per attempt: a forged cancel heard after the orchestrator's must
not make the worker forget the orchestrator's."""

REMEMBER_CANCELS_S = 24 * 3600.0
"""A cancel is forgotten after a day: a task queued longer than that is long past its
dispatch deadline anyway."""


@dataclass(frozen=True, slots=True)
class HeardCancel:
    """The cancels heard for an attempt: the latest reason, the token digests they
    carried, and when the latest was heard (on ``RecentCancels``' clock)."""

    reason: str
    token_digests: tuple[str | None, ...]
    heard_at: float


class RecentCancels:
    """Attempt ids of recent cancels, oldest first, bounded in number and age."""

    def __init__(
        self,
        capacity: int = MAX_REMEMBERED_CANCELS,
        max_age_s: float = REMEMBER_CANCELS_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._capacity = capacity
        self._max_age_s = max_age_s
        self._clock = clock
        self._heard: OrderedDict[UUID, HeardCancel] = OrderedDict()

    def __len__(self) -> int:
        return len(self._heard)

    def remember(self, command: CancelAttempt) -> None:
        """Keep ``command``; an attempt cancelled again counts as the newest."""
        now = self._clock()
        earlier = self._heard.pop(command.attempt_id, None)
        digests = () if earlier is None else earlier.token_digests
        if command.token_digest not in digests:
            digests = (*digests, command.token_digest)[-MAX_DIGESTS:]
        self._heard[command.attempt_id] = HeardCancel(
            shorten(command.reason, MAX_REASON_CHARS), digests, now
        )
        self._forget_old(now)

    def find(self, task: StepTask) -> HeardCancel | None:
        """The cancel heard for ``task``'s attempt, or None.

        For a task with a token, only a cancel carrying the token's digest
        counts: anyone may publish a cancel, only the orchestrator knows the token.
        """
        self._forget_old(self._clock())
        heard = self._heard.get(task.attempt_id)
        if heard is None:
            return None
        if task.token is not None and token_digest(task.token) not in heard.token_digests:
            return None
        return heard

    def _forget_old(self, now: float) -> None:
        while len(self._heard) > self._capacity:
            self._heard.popitem(last=False)
        oldest_kept = now - self._max_age_s
        while self._heard:
            first = next(iter(self._heard.values()))
            if first.heard_at > oldest_kept:
                return
            self._heard.popitem(last=False)
