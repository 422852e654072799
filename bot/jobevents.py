"""What the job manager tells the bot about jobs, and the pump that delivers it.

`EventPump` awaits its handler for every event, one at a time, in order, from one task; an
exception in the handler is logged and changes nothing. When the handler is slower than the
progress reports, a waiting progress event of a job is updated in place (the newest numbers
win) unless it carries a preview, so a slow chat never builds up a backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bot.storage import Job
from engine.job import EventKind, Progress, Result

log = logging.getLogger(__name__)


@dataclass
class JobEvent:
    kind: EventKind
    job: Job
    position: int | None = None
    """With QUEUED: 1 = next to run."""
    progress: Progress | None = None
    """With PROGRESS."""
    result: Result | None = None
    """With DONE."""
    code: str | None = None
    """With FAILED: an `engine.job.FailureCode` or the engine's `ImageError.code`."""
    detail: str | None = None
    """With FAILED: the engine's own sentence, when it gave one (a refused picture)."""
    preview: bytes | None = None
    """With PREVIEW: the JPEG of a waiting job's first look."""


EventHandler = Callable[[JobEvent], Awaitable[Any]]


class EventPump:
    def __init__(self, handler: EventHandler | None) -> None:
        self._handler = handler
        self._events: deque[JobEvent] = deque()
        self._ready = asyncio.Event()
        self._idle = asyncio.Event()  # set while nothing is waiting nor being delivered
        self._idle.set()
        self._waiting_progress: dict[str, JobEvent] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._deliver(), name="jobs-events")

    def emit(self, event: JobEvent) -> None:
        if event.kind is EventKind.PROGRESS:
            waiting = self._waiting_progress.get(event.job.id)
            if (
                waiting is not None
                and waiting.progress is not None
                and waiting.progress.preview is None
            ):
                waiting.progress = event.progress  # not delivered yet: newest numbers win
                return
            self._waiting_progress[event.job.id] = event
        self._events.append(event)
        self._idle.clear()
        self._ready.set()

    async def stop(self, drain_for: float = 5.0) -> None:
        """Deliver what is waiting (for up to `drain_for` seconds), then stop."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), drain_for)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _deliver(self) -> None:
        while True:
            while not self._events:
                self._idle.set()
                self._ready.clear()
                await self._ready.wait()
            event = self._events.popleft()
            if self._waiting_progress.get(event.job.id) is event:
                del self._waiting_progress[event.job.id]
            if self._handler is None:
                continue
            try:
                await self._handler(event)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("event handler failed for %s of job %s", event.kind, event.job.id)
