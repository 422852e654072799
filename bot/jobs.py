"""The job manager: a durable, fair queue in front of an executor.

Durable: every job is recorded in SQLite (through `bot.storage`) with its input pictures
spooled under ``spool_dir/<job_id>/`` *before* it is queued, and every change of state is
written there (queued → running → done | failed | cancelled, with timestamps, attempts and
the error). On `start()` the jobs left queued or running by a previous process are queued
again; one whose spooled inputs are gone is failed and its owner told (a 'failed' event).

Fair: jobs are taken round-robin between users (`FairQueue`); at most `executor.capacity`
jobs run at once.

Back-pressure: `submit` refuses with `UserQueueFull(limit)` when the user already has
`max_per_user` jobs queued or running, and with `QueueFull(retry_after_s)` when
`max_queue` jobs are waiting (running ones not counted).

Failures: a lost worker (crash, OOM, kill -9) is retried once (attempts ≤ 2 in SQLite), then
the job fails; a job over its time limit fails ("took too long"); an unavailable executor
(Redis down) leaves the job queued and dispatching pauses with a growing backoff
(`retry_delays`). Interrupted runs resumed after a restart count as attempts too.

Results: the picture is kept by a `ResultStore` (``results_dir``, by default
``spool_dir/../results``) and its path stored as `result_path`, so the bot can re-send it or
warm-start a later run from it. Results older than `results_max_age_s` (default 7 days) are
deleted at start and at most hourly after that: a `result_path` may point to a file that is
gone, so check that it exists.

First looks: a job that must wait because every worker is busy gets its first look early
when the executor can paint one between the steps of a running job (the local pool can:
`Executor.request_preview`); a PREVIEW event carries it, and the job later runs without its
own quick pass. Finished jobs feed the workers' measured speed (`bot.speed`).

Events: `on_event(JobEvent)` is awaited for every event through an `EventPump` (one at a
time, in order). A job that fails carries a code (`engine.job.FailureCode`, or the engine's
`ImageError.code` for a refused picture); the bot picks the sentence.

The parts live in their own modules, each tested alone: `bot.fairqueue`, `bot.spool`,
`bot.jobevents`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
import uuid
from pathlib import Path

from bot import speed
from bot.executors.base import (
    Executor,
    ExecutorError,
    ExecutorUnavailable,
    JobCancelled,
    JobRejected,
    JobTimedOut,
    WorkerLost,
)
from bot.fairqueue import FairQueue
from bot.jobevents import EventHandler, EventPump, JobEvent
from bot.jobmeta import JobMeta
from bot.settings import Settings
from bot.spool import JobInputs, ResultStore, Spool
from bot.storage import Job, JobNotFound, JobStateError, Storage
from engine.job import EventKind, FailureCode, JobSpec, JobState, Progress, Result
from engine.params import StyleParams

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 2
"""A job whose worker died is tried at most this many times in all."""
PRUNE_EVERY_S = 3600.0


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


def _new_job_id() -> str:
    return uuid.uuid4().hex[:16]


class JobManager:
    """A durable, fair queue in front of an executor (see the module docstring)."""

    def __init__(
        self,
        storage: Storage,
        executor: Executor,
        spool_dir: str | Path,
        *,
        max_queue: int = Settings.max_queue,
        max_per_user: int = Settings.max_jobs_per_user,
        on_event: EventHandler | None = None,
        results_dir: str | Path | None = None,
        results_max_age_s: float = 7 * 86400.0,
        retry_delays: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0, 30.0),
    ) -> None:
        self._storage = storage
        self._executor = executor
        self._spool = Spool(spool_dir)
        self._results = ResultStore(
            results_dir if results_dir is not None else self._spool.root.parent / "results",
            results_max_age_s,
        )
        self._max_queue = max_queue
        self._max_per_user = max_per_user
        self._retry_delays = retry_delays or (1.0,)

        self._jobs: dict[str, Job] = {}  # every queued or running job
        self._queue = FairQueue()
        self._running: dict[str, asyncio.Task[None]] = {}
        self._cancel_requested: set[str] = set()
        self._asked: set[str] = set()  # waiting jobs whose first look was asked for
        self._previewed: set[str] = set()  # ... and shown
        self._side_tasks: set[asyncio.Task[None]] = set()
        self._reserved: dict[int, int] = {}  # submits in progress, per user
        self._events = EventPump(on_event)

        self._wakeup = asyncio.Event()
        self._dispatcher: asyncio.Task[None] | None = None
        self._paused_until = 0.0
        self._unavailable_streak = 0
        self._average_duration = 60.0  # seconds a job takes; refined as jobs finish
        self._last_prune = 0.0
        self._started = False
        self._stopping = False

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        """Resume what a previous process left queued or running, then start dispatching."""
        if self._started:
            return
        self._started = True
        self._events.start()
        for job in await self._storage.list_jobs([JobState.QUEUED, JobState.RUNNING]):
            if job.state is JobState.RUNNING:
                await self._storage.requeue_job(job.id, "interrupted by a restart")
                job = await self._storage.get_job(job.id) or job
            self._jobs[job.id] = job
            if not await asyncio.to_thread(Spool.present, job.spool_paths):
                log.warning("job %s: spooled inputs are gone; failing it", job.id)
                await self._end(job, JobState.FAILED, FailureCode.INPUTS_LOST)
                continue
            self._queue.push(job.user_id, job.id)
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
        runners = list(self._running.values()) + list(self._side_tasks)
        for task in runners:
            task.cancel()
        await asyncio.gather(*runners, return_exceptions=True)
        if self._dispatcher is not None:
            await asyncio.gather(self._dispatcher, return_exceptions=True)
        await self._events.stop()

    # -- the contract -----------------------------------------------------------------------
    async def submit(
        self,
        user_id: int,
        chat_id: int,
        inputs: JobInputs,
        params: StyleParams,
        meta: JobMeta | None = None,
    ) -> str:
        """Spool the inputs, record the job, queue it; returns the job id."""
        if not inputs.styles:
            raise ValueError("a job needs at least one style picture")
        self.check_room(user_id)
        job_id = _new_job_id()
        self._reserved[user_id] = self._reserved.get(user_id, 0) + 1
        try:
            paths = await asyncio.to_thread(self._spool.write, job_id, inputs)
            job = await self._storage.create_job(job_id, user_id, chat_id, params, meta, paths)
        except BaseException:
            await asyncio.to_thread(self._spool.remove, job_id)
            raise
        finally:
            self._reserved[user_id] -= 1
            if not self._reserved[user_id]:
                del self._reserved[user_id]
        self._jobs[job_id] = job
        self._queue.push(user_id, job_id)
        self._events.emit(JobEvent(EventKind.QUEUED, job, position=self.position(job_id)))
        self._wake()
        await self._ask_for_first_looks()
        return job_id

    async def _ask_for_first_looks(self) -> None:
        """Jobs that wait because every worker is busy: ask the executor for each one's first
        look (its quick pass, painted between the steps of a running job), once. Such a job
        then runs without its own quick pass. Never raises: a first look is only a bonus."""
        try:
            await self._ask_each_waiting_job()
        except Exception:
            log.exception("asking for first looks failed")

    async def _ask_each_waiting_job(self) -> None:
        if not self._executor.paints_first_looks:
            return
        for job_id in self._queue.order():
            if self.running_count < self._executor.capacity:
                return  # the next job starts at once and shows its own quick pass
            job = self._jobs.get(job_id)
            if job is None or job_id in self._asked or job.params.quick_pass() is None:
                continue
            try:
                inputs = await asyncio.to_thread(Spool.read, job.spool_paths)
            except (OSError, ValueError):
                continue  # the job reports its lost pictures when it runs
            if inputs.init is not None:
                continue  # a warm start has no quick pass
            spec = JobSpec(job_id, inputs.content, inputs.styles, job.params)
            if self._executor.request_preview(spec, functools.partial(self._shown, job_id)):
                self._asked.add(job_id)

    def _shown(self, job_id: str, jpeg: bytes) -> None:
        job = self._jobs.get(job_id)
        if job is None or job_id in self._running:
            return  # started meanwhile: its own quick pass shows it
        self._previewed.add(job_id)
        self._events.emit(JobEvent(EventKind.PREVIEW, job, preview=jpeg))

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
        return self._queue.position(job_id)

    async def cancel(self, job_id: str, user_id: int) -> bool:
        """Cancel a queued or running job of `user_id`; False if it is not theirs or over."""
        job = self._jobs.get(job_id)
        if job is None or job.user_id != user_id:
            return False
        if job_id in self._running:
            self._cancel_requested.add(job_id)
            await self._executor.cancel(job_id)
            return True
        self._queue.remove(job.user_id, job_id)
        await self._end(job, JobState.CANCELLED)
        return True

    def active_jobs(self, user_id: int) -> list[str]:
        """The user's running jobs, then their queued ones in order."""
        # A job stays in `_running` for a moment after it ended (and left `_jobs`).
        running = [
            j for j in self._running if (job := self._jobs.get(j)) and job.user_id == user_id
        ]
        return running + self._queue.queued(user_id)

    def queue_length(self) -> int:
        """Jobs waiting (not running)."""
        return len(self._queue)

    @property
    def running_count(self) -> int:
        return len(self._running)

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
                not self._stopping and self._queue and len(self._running) < self._executor.capacity
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
                if not self._queue or self._stopping:
                    break
                job_id = self._queue.pop()
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
                    await self._end(job, JobState.FAILED, FailureCode.FAILED)
        finally:
            self._running.pop(job_id, None)
            if requeued and job_id in self._jobs and not self._stopping:
                job = self._jobs[job_id]
                self._queue.push(job.user_id, job_id, front=True)
            self._wake()

    async def _run_job(self, job_id: str) -> bool:
        """Run one job to its end; True when it must go back to the queue."""
        job = self._jobs[job_id]
        try:
            inputs = await asyncio.to_thread(Spool.read, job.spool_paths)
        except (OSError, ValueError):
            await self._end(job, JobState.FAILED, FailureCode.INPUTS_LOST)
            return False
        if job_id in self._cancel_requested:
            await self._end(job, JobState.CANCELLED)
            return False
        try:
            job = await self._storage.mark_job_running(job_id)
        except (JobNotFound, JobStateError):
            self._forget(job_id)
            return False
        self._jobs[job_id] = job
        self._events.emit(JobEvent(EventKind.STARTED, job, position=0))
        params = job.params
        if job_id in self._previewed:  # its first look was painted while it waited
            params = params.replace(quick_pass_steps=0)
        spec = JobSpec(job_id, inputs.content, inputs.styles, params, inputs.init)

        def on_progress(progress: Progress) -> None:
            self._events.emit(JobEvent(EventKind.PROGRESS, job, progress=progress))

        started = time.monotonic()
        try:
            if job_id in self._cancel_requested:
                raise JobCancelled()
            # runs once `run` below has handed this job to a worker, which is then busy
            task = asyncio.get_running_loop().create_task(
                self._ask_for_first_looks(), name="jobs-first-looks"
            )
            self._side_tasks.add(task)
            task.add_done_callback(self._side_tasks.discard)
            result = await self._executor.run(spec, on_progress)
        except JobCancelled:
            await self._end(job, JobState.CANCELLED)
        except (JobRejected, JobTimedOut) as error:
            await self._end(job, JobState.FAILED, error.code, _detail(error))
        except WorkerLost as error:
            if job.attempts < MAX_ATTEMPTS and job_id not in self._cancel_requested:
                log.warning("job %s: worker lost (attempt %d); retrying", job_id, job.attempts)
                return await self._requeue(job, str(error))
            await self._end(job, JobState.FAILED, error.code)
        except ExecutorUnavailable as error:
            self._pause(error)
            return await self._requeue(job, str(error))
        except ExecutorError as error:
            log.warning("job %s failed: %s", job_id, error)
            await self._end(job, JobState.FAILED, error.code)
        else:
            elapsed = time.monotonic() - started
            self._average_duration = 0.7 * self._average_duration + 0.3 * elapsed
            path = await asyncio.to_thread(self._results.save, job_id, result)
            await self._end(job, JobState.DONE, result_path=path, result=result)
            try:  # only feeds time estimates: a failure here must not touch the job
                await speed.record(self._storage, result)
            except Exception:
                log.exception("could not record the worker's speed")
            await self._maybe_prune()
        return False

    async def _requeue(self, job: Job, error: str) -> bool:
        if not await self._storage.requeue_job(job.id, error):
            self._forget(job.id)
            return False
        self._jobs[job.id] = await self._storage.get_job(job.id) or job
        return True

    async def _maybe_prune(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_prune < PRUNE_EVERY_S:
            return
        self._last_prune = now
        removed = await asyncio.to_thread(self._results.prune)
        if removed:
            log.info("pruned %d old results", removed)

    async def _end(
        self,
        job: Job,
        state: JobState,
        code: str | None = None,
        detail: str | None = None,
        *,
        result_path: str | None = None,
        result: Result | None = None,
    ) -> None:
        """Record the end of a job, remove its spooled inputs, tell the user."""
        error = None if code is None else f"{code}: {detail}" if detail else code
        await self._storage.finish_job(job.id, state, error, result_path)
        self._forget(job.id)
        await asyncio.to_thread(self._spool.remove, job.id)
        final = await self._storage.get_job(job.id) or job
        self._events.emit(
            JobEvent(EventKind(state), final, result=result, code=code, detail=detail)
        )

    def _forget(self, job_id: str) -> None:
        self._jobs.pop(job_id, None)
        self._cancel_requested.discard(job_id)
        self._asked.discard(job_id)
        self._previewed.discard(job_id)


def _detail(error: ExecutorError) -> str | None:
    """The engine's own sentence for a refused picture (shown when the bot has no better)."""
    return str(error) if isinstance(error, JobRejected) else None
