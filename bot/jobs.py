"""The job manager: a durable, fair queue in front of an executor.

Durable: every job is recorded in SQLite (through `bot.storage`) with its input pictures
spooled under ``spool_dir/<job_id>/`` *before* it is queued, and every change of state is
written there (queued → running → done | failed | cancelled, with timestamps, attempts and
the error). On `start()` the jobs left queued or running by a previous process are queued
again; one whose spooled inputs are gone is failed and its owner told (a 'failed' event).

Fair: jobs are taken round-robin between users (one user with three queued jobs does not
make the next user wait for all three); at most `executor.capacity` jobs run at once.

Back-pressure: `submit` refuses with `UserQueueFull(limit)` when the user already has
`max_per_user` jobs queued or running, and with `QueueFull(retry_after_s)` when
`max_queue` jobs are waiting (running ones not counted).

Failures: a lost worker (crash, OOM, kill -9) is retried once (attempts ≤ 2 in SQLite), then
the job fails; a job over its time limit fails ("took too long"); an unavailable executor
(Redis down) leaves the job queued and dispatching pauses with a growing backoff
(`retry_delays`). Interrupted runs resumed after a restart count as attempts too.

Results: the picture is written to ``results_dir/<job_id>.jpg`` (``.png`` for PNG output;
`results_dir` defaults to ``spool_dir/../results``) and its path stored as `result_path`, so
the bot can re-send it or warm-start a later run from it. Results older than
`results_max_age_s` (default 7 days) are deleted at start and at most hourly after that: a
`result_path` may point to a file that is gone, so check that it exists.

Events: `on_event(JobEvent)` is awaited for every event, one at a time, in order, from one
delivery task; an exception in it is logged and changes nothing. When the handler is slower
than the progress reports, a waiting progress event of a job is updated in place (the
newest numbers win) unless it carries a preview.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import shutil
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.executors.base import (
    Executor,
    ExecutorUnavailable,
    JobCancelled,
    JobFailed,
    JobRejected,
    JobSpec,
    JobTimedOut,
    WorkerLost,
)
from bot.storage import Job, JobNotFound, JobStateError, Storage
from engine.api import Progress, Result

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 2
"""A job whose worker died is tried at most this many times in all."""

LOST_MESSAGE = (
    "The painter stopped unexpectedly twice on this picture, so I gave up. "
    "Try a smaller size or another picture."
)
TIMEOUT_MESSAGE = "This picture took too long, so I stopped it. Try a smaller size."
INPUTS_LOST_MESSAGE = "I lost the pictures of this job during a restart. Please send them again."
FAILED_MESSAGE = "Something went wrong while painting. Please try again."

CONTENT_FILE = "content.bin"
INIT_FILE = "init.bin"
STYLE_PREFIX = "style-"


class QueueFull(Exception):
    """Too many jobs are waiting; try again in about `retry_after_s` seconds."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"the queue is full; try again in about {retry_after_s:.0f} s")
        self.retry_after_s = retry_after_s


class UserQueueFull(Exception):
    """The user already has `limit` jobs queued or running."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"at most {limit} jobs per user at once")
        self.limit = limit


@dataclass
class JobEvent:
    """kind: queued | started | progress | done | failed | cancelled."""

    kind: str
    job: Job
    position: int | None = None
    progress: Progress | None = None
    result: Result | None = None
    error: str | None = None


EventHandler = Callable[[JobEvent], Awaitable[Any]]


def _new_job_id() -> str:
    return uuid.uuid4().hex[:16]


def _write_spool(
    directory: Path, content: bytes, styles: list[bytes], init: bytes | None
) -> list[str]:
    directory.mkdir(parents=True, exist_ok=True)
    files: list[tuple[str, bytes]] = [(CONTENT_FILE, content)]
    files += [(f"{STYLE_PREFIX}{i}.bin", data) for i, data in enumerate(styles)]
    if init is not None:
        files.append((INIT_FILE, init))
    paths = []
    for name, data in files:
        path = directory / name
        path.write_bytes(data)
        paths.append(str(path))
    return paths


def _read_spool(paths: Iterable[str]) -> tuple[bytes, list[bytes], bytes | None]:
    """Raises FileNotFoundError when an input is gone."""
    content: bytes | None = None
    styles: list[tuple[int, bytes]] = []
    init: bytes | None = None
    for raw in paths:
        path = Path(raw)
        data = path.read_bytes()
        if path.name == CONTENT_FILE:
            content = data
        elif path.name == INIT_FILE:
            init = data
        elif path.name.startswith(STYLE_PREFIX):
            styles.append((int(path.stem[len(STYLE_PREFIX) :]), data))
    if content is None or not styles:
        raise FileNotFoundError("the job's spooled content or style is missing")
    return content, [data for _, data in sorted(styles)], init


def _inputs_present(paths: list[str]) -> bool:
    return bool(paths) and all(Path(p).is_file() for p in paths)


def _prune_results(directory: Path, max_age_s: float) -> int:
    if not directory.is_dir():
        return 0
    cutoff = time.time() - max_age_s
    removed = 0
    for path in directory.iterdir():
        with contextlib.suppress(OSError):
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
    return removed


class JobManager:
    def __init__(
        self,
        storage: Storage,
        executor: Executor,
        spool_dir: str | Path,
        *,
        max_queue: int = 20,
        max_per_user: int = 3,
        on_event: EventHandler | None = None,
        job_timeout: float = 600.0,
        results_dir: str | Path | None = None,
        results_max_age_s: float = 7 * 86400.0,
        retry_delays: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0, 30.0),
    ) -> None:
        self._storage = storage
        self._executor = executor
        self._spool_dir = Path(spool_dir)
        self._results_dir = (
            Path(results_dir) if results_dir is not None else self._spool_dir.parent / "results"
        )
        self._results_max_age_s = results_max_age_s
        self._max_queue = max_queue
        self._max_per_user = max_per_user
        self._on_event = on_event
        self._job_timeout = job_timeout
        self._retry_delays = retry_delays or (1.0,)

        self._jobs: dict[str, Job] = {}  # every queued or running job
        self._queues: dict[int, deque[str]] = {}  # user → queued job ids, oldest first
        self._turns: deque[int] = deque()  # users with queued jobs, in round-robin order
        self._running: dict[str, asyncio.Task[None]] = {}
        self._cancel_requested: set[str] = set()
        self._reserved: dict[int, int] = {}  # submits in progress, per user

        self._events: deque[JobEvent] = deque()
        self._events_ready = asyncio.Event()
        self._events_idle = asyncio.Event()  # set while nothing is waiting nor being delivered
        self._events_idle.set()
        self._waiting_progress: dict[str, JobEvent] = {}
        self._wakeup = asyncio.Event()
        self._dispatcher: asyncio.Task[None] | None = None
        self._deliverer: asyncio.Task[None] | None = None
        self._paused_until = 0.0
        self._unavailable_streak = 0
        self._average_duration = min(job_timeout, 60.0)
        self._last_prune = 0.0
        self._started = False
        self._stopping = False

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        """Resume what a previous process left queued or running, then start dispatching."""
        if self._started:
            return
        self._started = True
        self._deliverer = asyncio.create_task(self._deliver_events(), name="jobs-events")
        for job in await self._storage.list_jobs(["queued", "running"]):
            if job.state == "running":
                await self._storage.requeue_job(job.id, "interrupted by a restart")
                job = await self._storage.get_job(job.id) or job
            present = await asyncio.to_thread(_inputs_present, job.spool_paths)
            if not present:
                log.warning("job %s: spooled inputs are gone; failing it", job.id)
                self._jobs[job.id] = job
                await self._end(job, "failed", INPUTS_LOST_MESSAGE)
                continue
            self._jobs[job.id] = job
            self._enqueue(job)
            log.info("job %s resumed (attempts so far: %d)", job.id, job.attempts)
        self._dispatcher = asyncio.create_task(self._dispatch(), name="jobs-dispatch")
        await self._maybe_prune(force=True)
        self._wake()

    async def stop(self) -> None:
        """Stop dispatching; running jobs are abandoned (they stay 'running' and resume on the
        next start). Events already produced are delivered first (for up to 5 s)."""
        if self._stopping:
            return
        self._stopping = True
        if self._dispatcher is not None:
            self._dispatcher.cancel()
        runners = list(self._running.values())
        for task in runners:
            task.cancel()
        await asyncio.gather(*runners, return_exceptions=True)
        if self._dispatcher is not None:
            await asyncio.gather(self._dispatcher, return_exceptions=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._events_idle.wait(), 5.0)
        if self._deliverer is not None:
            self._deliverer.cancel()
            await asyncio.gather(self._deliverer, return_exceptions=True)

    # -- the contract -----------------------------------------------------------------------
    async def submit(
        self,
        user_id: int,
        chat_id: int,
        content: bytes,
        styles: list[bytes],
        params: dict[str, Any],
        meta: dict[str, Any] | None = None,
        init: bytes | None = None,
    ) -> str:
        """Spool the inputs, record the job, queue it; returns the job id."""
        if not styles:
            raise ValueError("a job needs at least one style picture")
        self.check_room(user_id)
        job_id = _new_job_id()
        directory = self._spool_dir / job_id
        self._reserved[user_id] = self._reserved.get(user_id, 0) + 1
        try:
            paths = await asyncio.to_thread(_write_spool, directory, content, list(styles), init)
            job = await self._storage.create_job(
                job_id, user_id, chat_id, dict(params), dict(meta or {}), paths
            )
        except BaseException:
            await asyncio.to_thread(shutil.rmtree, directory, True)
            raise
        finally:
            self._reserved[user_id] -= 1
            if not self._reserved[user_id]:
                del self._reserved[user_id]
        self._jobs[job_id] = job
        self._enqueue(job)
        self._emit(JobEvent("queued", job, position=self.position(job_id)))
        self._wake()
        return job_id

    def check_room(self, user_id: int) -> None:
        """Raise `UserQueueFull` or `QueueFull` if `submit` would refuse a job of `user_id` now
        (callers check before loading a job's pictures; `submit` checks again)."""
        if self._stopping:
            raise QueueFull(self._retry_after())
        if len(self.active_jobs(user_id)) + self._reserved.get(user_id, 0) >= self._max_per_user:
            raise UserQueueFull(self._max_per_user)
        waiting = self.queue_length() + sum(self._reserved.values())
        if waiting >= self._max_queue:
            raise QueueFull(self._retry_after(waiting))

    def position(self, job_id: str) -> int | None:
        """0 = running, 1 = next to run, ...; None when the job is not queued nor running."""
        if job_id in self._running:
            return 0
        try:
            return self._dispatch_order().index(job_id) + 1
        except ValueError:
            return None

    async def cancel(self, job_id: str, user_id: int) -> bool:
        """Cancel a queued or running job of `user_id`; False if it is not theirs or over."""
        job = self._jobs.get(job_id)
        if job is None or job.user_id != user_id:
            return False
        if job_id in self._running:
            self._cancel_requested.add(job_id)
            await self._executor.cancel(job_id)
            return True
        self._dequeue(job)
        await self._end(job, "cancelled", None)
        return True

    def active_jobs(self, user_id: int) -> list[str]:
        """The user's running jobs, then their queued ones in order."""
        # A job stays in `_running` for a moment after it ended (and left `_jobs`).
        running = [
            j for j in self._running if (job := self._jobs.get(j)) and job.user_id == user_id
        ]
        return running + list(self._queues.get(user_id, ()))

    def queue_length(self) -> int:
        """Jobs waiting (not running)."""
        return sum(len(q) for q in self._queues.values())

    @property
    def running_count(self) -> int:
        return len(self._running)

    # -- queue ------------------------------------------------------------------------------
    def _enqueue(self, job: Job, front: bool = False) -> None:
        queue = self._queues.setdefault(job.user_id, deque())
        if front:
            queue.appendleft(job.id)
        else:
            queue.append(job.id)
        if job.user_id not in self._turns:
            if front:
                self._turns.appendleft(job.user_id)
            else:
                self._turns.append(job.user_id)

    def _dequeue(self, job: Job) -> None:
        queue = self._queues.get(job.user_id)
        if queue is not None and job.id in queue:
            queue.remove(job.id)
            if not queue:
                del self._queues[job.user_id]
                with contextlib.suppress(ValueError):
                    self._turns.remove(job.user_id)

    def _pop_next(self) -> str:
        user_id = self._turns.popleft()
        queue = self._queues[user_id]
        job_id = queue.popleft()
        if queue:
            self._turns.append(user_id)
        else:
            del self._queues[user_id]
        return job_id

    def _dispatch_order(self) -> list[str]:
        """Queued jobs in the order they will start (round-robin between users)."""
        queues = [list(self._queues[u]) for u in self._turns]
        order: list[str] = []
        depth = 0
        while True:
            row = [q[depth] for q in queues if depth < len(q)]
            if not row:
                return order
            order += row
            depth += 1

    def _retry_after(self, waiting: int | None = None) -> float:
        waiting = self.queue_length() if waiting is None else waiting
        over = max(1, waiting - self._max_queue + 1)
        estimate = self._average_duration * over / max(1, self._executor.capacity)
        return float(min(3600, max(5, math.ceil(estimate))))

    def _wake(self) -> None:
        self._wakeup.set()

    # -- dispatching ------------------------------------------------------------------------
    async def _dispatch(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping:
            await self._wakeup.wait()
            self._wakeup.clear()
            while (
                not self._stopping and self._turns and len(self._running) < self._executor.capacity
            ):
                delay = self._paused_until - time.monotonic()
                if delay > 0:
                    loop.call_later(delay, self._wake)
                    break
                try:
                    await self._executor.check_available()
                except ExecutorUnavailable as error:
                    self._pause(error)
                    continue
                except Exception:
                    log.exception("executor availability check failed")
                    self._pause(None)
                    continue
                self._unavailable_streak = 0
                if not self._turns or self._stopping:
                    break
                job_id = self._pop_next()
                self._running[job_id] = asyncio.create_task(self._run(job_id), name=f"job-{job_id}")

    def _pause(self, error: BaseException | None) -> None:
        delay = self._retry_delays[min(self._unavailable_streak, len(self._retry_delays) - 1)]
        self._unavailable_streak += 1
        self._paused_until = time.monotonic() + delay
        log.warning("executor unavailable (%s); retrying in %g s", error, delay)

    async def _run(self, job_id: str) -> None:
        requeued = False
        try:
            requeued = await self._run_job(job_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("job %s: unexpected error in the job manager", job_id)
            job = self._jobs.get(job_id)
            if job is not None:
                with contextlib.suppress(Exception):
                    await self._end(job, "failed", FAILED_MESSAGE)
        finally:
            self._running.pop(job_id, None)
            if requeued and job_id in self._jobs and not self._stopping:
                self._enqueue(self._jobs[job_id], front=True)
            self._wake()

    async def _run_job(self, job_id: str) -> bool:
        """Run one job to its end; True when it must go back to the queue."""
        job = self._jobs[job_id]
        try:
            content, styles, init = await asyncio.to_thread(_read_spool, job.spool_paths)
        except (OSError, ValueError):
            await self._end(job, "failed", INPUTS_LOST_MESSAGE)
            return False
        if job_id in self._cancel_requested:
            await self._end(job, "cancelled", None)
            return False
        try:
            job = await self._storage.mark_job_running(job_id)
        except (JobNotFound, JobStateError):
            self._forget(job_id)
            return False
        self._jobs[job_id] = job
        self._emit(JobEvent("started", job, position=0))
        spec = JobSpec(job_id, content, styles, dict(job.params), init, dict(job.meta))

        def on_progress(progress: Progress) -> None:
            self._emit(JobEvent("progress", job, progress=progress))

        started = time.monotonic()
        try:
            if job_id in self._cancel_requested:
                raise JobCancelled("The job was cancelled.")
            result = await self._executor.run(spec, on_progress)
        except JobCancelled:
            await self._end(job, "cancelled", None)
        except JobRejected as error:
            await self._end(job, "failed", str(error))
        except JobTimedOut:
            await self._end(job, "failed", TIMEOUT_MESSAGE)
        except WorkerLost as error:
            if job.attempts < MAX_ATTEMPTS and job_id not in self._cancel_requested:
                log.warning("job %s: worker lost (attempt %d); retrying", job_id, job.attempts)
                return await self._requeue(job, str(error))
            await self._end(job, "failed", LOST_MESSAGE)
        except ExecutorUnavailable as error:
            self._pause(error)
            return await self._requeue(job, str(error))
        except JobFailed as error:
            await self._end(job, "failed", str(error) or FAILED_MESSAGE)
        else:
            elapsed = time.monotonic() - started
            self._average_duration = 0.7 * self._average_duration + 0.3 * elapsed
            path = await asyncio.to_thread(self._save_result, job_id, result)
            await self._end(job, "done", None, result_path=path, result=result)
            await self._maybe_prune()
        return False

    async def _requeue(self, job: Job, error: str) -> bool:
        if not await self._storage.requeue_job(job.id, error):
            self._forget(job.id)
            return False
        self._jobs[job.id] = await self._storage.get_job(job.id) or job
        return True

    def _save_result(self, job_id: str, result: Result) -> str:
        suffix = ".png" if result.mime_type == "image/png" else ".jpg"
        self._results_dir.mkdir(parents=True, exist_ok=True)
        path = self._results_dir / f"{job_id}{suffix}"
        partial = path.with_suffix(path.suffix + ".part")
        partial.write_bytes(result.image)
        partial.replace(path)
        return str(path)

    async def _maybe_prune(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_prune < 3600:
            return
        self._last_prune = now
        removed = await asyncio.to_thread(
            _prune_results, self._results_dir, self._results_max_age_s
        )
        if removed:
            log.info("pruned %d old results", removed)

    async def _end(
        self,
        job: Job,
        state: str,
        error: str | None,
        *,
        result_path: str | None = None,
        result: Result | None = None,
    ) -> None:
        """Record the end of a job, remove its spooled inputs, tell the user."""
        await self._storage.finish_job(job.id, state, error, result_path)
        self._forget(job.id)
        await asyncio.to_thread(shutil.rmtree, self._spool_dir / job.id, True)
        final = await self._storage.get_job(job.id) or job
        self._emit(JobEvent(state, final, result=result, error=error))

    def _forget(self, job_id: str) -> None:
        self._jobs.pop(job_id, None)
        self._cancel_requested.discard(job_id)

    # -- events -----------------------------------------------------------------------------
    def _emit(self, event: JobEvent) -> None:
        if event.kind == "progress":
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
        self._events_idle.clear()
        self._events_ready.set()

    async def _deliver_events(self) -> None:
        while True:
            while not self._events:
                self._events_idle.set()
                self._events_ready.clear()
                await self._events_ready.wait()
            event = self._events.popleft()
            if event.kind == "progress" and self._waiting_progress.get(event.job.id) is event:
                del self._waiting_progress[event.job.id]
            if self._on_event is None:
                continue
            try:
                await self._on_event(event)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("on_event failed for %s of job %s", event.kind, event.job.id)
