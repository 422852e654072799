"""Per-user rate limit: at most N updates a minute; the user is told once per window."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Window:
    start: float
    count: int = 0
    notified: bool = False


@dataclass(frozen=True)
class Decision:
    allowed: bool
    notify: bool = False
    """True once per window, for the first dropped update: tell the user politely."""
    retry_after: float = 0.0


class RateLimiter:
    """Fixed one-minute windows per user (cheap, predictable, easy to explain)."""

    def __init__(
        self,
        per_minute: int,
        *,
        window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        max_users: int = 100_000,
    ) -> None:
        self.per_minute = per_minute
        self.window = window
        self._clock = clock
        self._max_users = max_users
        self._windows: dict[int, _Window] = {}

    def check(self, user_id: int) -> Decision:
        now = self._clock()
        win = self._windows.get(user_id)
        if win is None or now - win.start >= self.window:
            if len(self._windows) >= self._max_users:
                self._prune(now)
            win = self._windows[user_id] = _Window(start=now)
        win.count += 1
        if win.count <= self.per_minute:
            return Decision(True)
        retry = max(0.0, win.start + self.window - now)
        if win.notified:
            return Decision(False, retry_after=retry)
        win.notified = True
        return Decision(False, notify=True, retry_after=retry)

    def _prune(self, now: float) -> None:
        for user_id in [u for u, w in self._windows.items() if now - w.start >= self.window]:
            del self._windows[user_id]
