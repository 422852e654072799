"""The embedded executor: a small pool of spawned worker processes that it manages itself.

Why not `concurrent.futures.ProcessPoolExecutor`: when one of its workers dies (segfault,
OOM killer, kill -9) the whole pool is broken for good. Here every worker is a
`multiprocessing` "spawn" process with its own two one-way pipes (tasks in, events out) and a
lock-free shared cancel flag, so a worker killed at any instant cannot poison a lock or a
queue another worker shares. A worker that dies is replaced; the job it was running fails
with `WorkerLost` (the job manager retries it once).

Threads and the event loop:

- one daemon reader thread waits (`multiprocessing.connection.wait`) on every worker's event
  pipe and process sentinel, and hands each event to the loop with `call_soon_threadsafe`;
- all state lives on the loop thread; blocking calls (`Process.start`, sending a job's bytes
  down a pipe, `join`) run in the default thread pool with `asyncio.to_thread`.

A worker runs one job at a time. It imports its job function (a dotted path, by default
``engine.worker:run_job``) and calls its initializer (``engine.worker:init_worker``: imports
TensorFlow and builds the model) once, before it says it is ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from multiprocessing.connection import Connection, wait
from typing import Any

from bot.executors.base import (
    Executor,
    ExecutorUnavailable,
    JobCancelled,
    JobFailed,
    JobTimedOut,
    PreviewHandler,
    ProgressHandler,
    WorkerLost,
    result_or_raise,
)
from engine.job import (
    DEFAULT_JOB_TIMEOUT_S,
    FailureCode,
    JobFunction,
    JobOutcome,
    JobSpec,
    Progress,
    Result,
    time_limit,
)
from engine.worker import (
    DEFAULT_INITIALIZER,
    DEFAULT_JOB_FUNCTION,
    DEFAULT_PREVIEW_FUNCTION,
    load_callable,
)

log = logging.getLogger(__name__)

# Workers run at a lower priority than the bot so its event loop answers while they paint.
WORKER_NICENESS = 5


class _Message(StrEnum):
    """What a worker sends up its event pipe: (kind, job id or None, payload)."""

    READY = "ready"  # payload: the worker's pid
    INIT_FAILED = "init_failed"  # payload: the error, as text
    PROGRESS = "progress"  # payload: a `Progress`
    OUTCOME = "outcome"  # payload: a `JobOutcome`
    PREVIEW = "preview"  # a first look at a job that waits (not this worker's); payload: JPEG
    # or None when there is none to show
    ERROR = "error"  # payload: an unexpected exception, as text
    DIED = "died"  # posted by the reader thread; payload: the exit code


@dataclass(frozen=True)
class PreviewRequest:
    """Sent down a busy worker's task pipe: paint `spec`'s first look between two steps."""

    spec: JobSpec


# -- the worker process -------------------------------------------------------------------


def _worker_main(
    tasks: Connection,
    events: Connection,
    cancel_flag: Any,
    weights: str | None,
    initializer: str | None,
    job_function: str,
    parent_pid: int,
    threads: int,
    preview_function: str | None = None,
) -> None:
    """Entry point of a worker process (spawned, so it starts from a clean interpreter)."""
    # Ctrl-C in a terminal reaches the whole process group: the parent decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Workers share the cores instead of each using all of them, and yield to the bot's
    # event loop, which must stay responsive while they paint.
    os.environ.setdefault("STYLEBOT_ENGINE_THREADS", str(threads))
    with contextlib.suppress(OSError):
        os.nice(WORKER_NICENESS)
    try:
        function: JobFunction = load_callable(job_function)
        preview: Callable[[JobSpec], bytes | None] | None = (
            load_callable(preview_function) if preview_function else None
        )
        if initializer:
            load_callable(initializer)(weights)
    except BaseException as error:
        traceback.print_exc()
        with contextlib.suppress(OSError):
            events.send((_Message.INIT_FAILED, None, f"{type(error).__name__}: {error}"))
        return
    events.send((_Message.READY, None, os.getpid()))

    stopping = False
    previews: deque[JobSpec] = deque()
    # The running job's own first look goes first: waiting jobs' are painted after it.
    own_look_shown = True

    def paint_a_preview() -> None:
        """Between two steps of the running job: take what the parent sent meanwhile, and
        paint one waiting job's first look (a few seconds)."""
        nonlocal stopping
        while tasks.poll():
            message = tasks.recv()
            if message is None:
                stopping = True
            elif isinstance(message, PreviewRequest):
                previews.append(message.spec)
        if not previews or preview is None or stopping or not own_look_shown:
            return
        spec = previews.popleft()
        try:
            jpeg = preview(spec)
        except Exception:  # only a first look: the job itself paints as usual
            traceback.print_exc()
            jpeg = None
        events.send((_Message.PREVIEW, spec.job_id, jpeg))  # None: none to show

    def should_cancel() -> bool:
        with contextlib.suppress(EOFError, OSError):  # a closed pipe: the checks below decide
            paint_a_preview()
        # The parent sets the flag; a parent that died (we were re-parented) cancels too.
        return stopping or bool(cancel_flag.value) or os.getppid() != parent_pid

    while not stopping:
        try:
            message = tasks.recv()
        except (EOFError, OSError):
            return  # the parent closed our pipe or died
        if message is None:
            return
        if isinstance(message, PreviewRequest):
            # came as the worker fell idle: the job itself starts in a moment
            events.send((_Message.PREVIEW, message.spec.job_id, None))
            continue
        spec: JobSpec = message

        own_look_shown = spec.params.quick_pass(warm_start=spec.init is not None) is None

        def report(progress: Progress, job_id: str = spec.job_id) -> None:
            nonlocal own_look_shown
            own_look_shown = own_look_shown or progress.preview is not None
            events.send((_Message.PROGRESS, job_id, progress))

        try:
            outcome = function(spec, report, should_cancel)
        except (BrokenPipeError, ConnectionResetError):
            return  # the parent is gone
        except BaseException as error:
            traceback.print_exc()
            reply: tuple[_Message, str, Any] = (
                _Message.ERROR,
                spec.job_id,
                f"{type(error).__name__}: {error}",
            )
        else:
            reply = (_Message.OUTCOME, spec.job_id, outcome)
        try:
            events.send(reply)
            while previews:  # asked too late: those jobs start soon and show their own
                events.send((_Message.PREVIEW, previews.popleft().job_id, None))
        except OSError:
            return


# -- the parent side ----------------------------------------------------------------------


@dataclass(eq=False)
class _Job:
    spec: JobSpec
    future: asyncio.Future[JobOutcome]
    on_progress: ProgressHandler | None
    worker: _Worker | None = None
    cancel_requested: bool = False
    timers: list[asyncio.TimerHandle] = field(default_factory=list)


@dataclass(eq=False)
class _Worker:
    slot: int
    process: Any  # multiprocessing.context.SpawnProcess
    tasks: Connection
    events: Connection
    cancel_flag: Any
    ready: bool = False
    doomed: bool = False
    """Killed on purpose (timeout) or being shut down: never given another job."""
    pid: int | None = None
    job: _Job | None = None
    send_lock: threading.Lock = field(default_factory=threading.Lock)
    """One message at a time down `tasks` (a job and a first-look request may be sent from two
    threads; interleaved writes would corrupt the pipe)."""

    def send(self, message: JobSpec | PreviewRequest | None) -> None:
        """Blocking: call from a thread."""
        with self.send_lock:
            self.tasks.send(message)


class LocalExecutor(Executor):
    """Runs jobs in `workers` spawned processes, one job at a time each.

    `job_timeout` (seconds) bounds one job: past it the worker is killed and replaced and
    `run()` raises `JobTimedOut`. `cancel_grace`: a worker whose job ignores a cancel request
    this long is killed (and `run()` raises `JobCancelled`).
    """

    name = "local"

    def __init__(
        self,
        workers: int = 1,
        weights: str | None = None,
        job_function: str = DEFAULT_JOB_FUNCTION,
        job_timeout: float = DEFAULT_JOB_TIMEOUT_S,
        *,
        initializer: str | None = DEFAULT_INITIALIZER,
        cancel_grace: float = 30.0,
        preview_function: str | None = DEFAULT_PREVIEW_FUNCTION,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self._size = workers
        self._weights = weights
        self._job_function = job_function
        self._initializer = initializer
        self._job_timeout = job_timeout
        self._cancel_grace = cancel_grace
        # Only the real engine paints first looks (tests' light job functions do not).
        self._preview_function = preview_function if job_function == DEFAULT_JOB_FUNCTION else None
        self._previews: dict[str, tuple[_Worker, PreviewHandler]] = {}
        self._context = multiprocessing.get_context("spawn")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._workers: dict[int, _Worker] = {}
        self._jobs: dict[str, _Job] = {}
        self._waiting: deque[_Job] = deque()
        self._failures: dict[int, int] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._init_error: str | None = None
        self._started = False
        self._closed = False
        # Shared with the reader thread (guarded by the lock): what it waits on.
        self._lock = threading.Lock()
        self._watched: list[_Worker] = []
        self._wake_r, self._wake_w = multiprocessing.Pipe(duplex=False)
        self._stop_reader = False
        self._reader: threading.Thread | None = None

    # -- Executor interface ---------------------------------------------------------------
    @property
    def capacity(self) -> int:
        return self._size

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        self._loop = asyncio.get_running_loop()
        self._reader = threading.Thread(target=self._read_events, name="local-executor-reader")
        self._reader.daemon = True
        self._reader.start()
        await asyncio.gather(*(self._spawn(slot) for slot in range(self._size)))

    async def wait_ready(self, within: float = 120.0) -> None:
        """Wait until every worker has built its model (tests and benchmarks use this)."""
        deadline = time.monotonic() + within
        while not self._closed:
            if sum(w.ready and not w.doomed for w in self._workers.values()) >= self._size:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"workers not ready after {within:g} s ({self._init_error})")
            await asyncio.sleep(0.05)

    async def check_available(self) -> None:
        if self._closed:
            raise ExecutorUnavailable("The painting service is shutting down.")

    async def run(self, spec: JobSpec, on_progress: ProgressHandler | None = None) -> Result:
        if not self._started:
            await self.start()
        if self._closed:
            raise ExecutorUnavailable("The painting service is shutting down.")
        if spec.job_id in self._jobs:
            raise ValueError(f"job {spec.job_id} is already running")
        loop = asyncio.get_running_loop()
        job = _Job(spec, loop.create_future(), on_progress)
        self._jobs[spec.job_id] = job
        self._waiting.append(job)
        self._dispatch()
        try:
            outcome = await job.future
        except asyncio.CancelledError:
            self._abandon(job)
            raise
        finally:
            self._forget(job)
        return result_or_raise(outcome)

    @property
    def paints_first_looks(self) -> bool:
        return self._preview_function is not None

    def request_preview(self, spec: JobSpec, on_preview: PreviewHandler) -> bool:
        busy = [w for w in self._workers.values() if w.ready and not w.doomed and w.job is not None]
        if self._closed or self._preview_function is None or not busy:
            return False
        # The worker asked least often: first looks of several waiting jobs spread out.
        asked = {w.slot: 0 for w in busy}
        for worker, _ in self._previews.values():
            if worker.slot in asked:
                asked[worker.slot] += 1
        worker = min(busy, key=lambda w: asked[w.slot])
        self._previews[spec.job_id] = (worker, on_preview)
        self._background_task(self._send(worker, PreviewRequest(spec)))
        return True

    async def cancel(self, job_id: str) -> None:
        job = self._jobs.get(job_id)
        if job is None or job.future.done():
            return
        job.cancel_requested = True
        if job in self._waiting:
            self._waiting.remove(job)
            self._resolve(job, error=JobCancelled())
            return
        worker = job.worker
        if worker is not None:
            worker.cancel_flag.value = 1
            assert self._loop is not None
            job.timers.append(
                self._loop.call_later(self._cancel_grace, self._cancel_overdue, worker, job)
            )

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for job in list(self._jobs.values()):
            self._resolve(job, error=ExecutorUnavailable("The painting service is shutting down."))
        self._waiting.clear()
        for task in list(self._background):
            task.cancel()
        workers = list(self._workers.values())
        for worker in workers:
            worker.doomed = True
            worker.cancel_flag.value = 1
        await asyncio.gather(*(self._stop_worker(w) for w in workers), return_exceptions=True)
        self._stop_reader = True
        self._wake()
        if self._reader is not None:
            await asyncio.to_thread(self._reader.join, 5.0)
        for worker in workers:
            self._close_pipes(worker)
        self._wake_r.close()
        self._wake_w.close()

    # -- introspection (tests, admin) -----------------------------------------------------
    @property
    def worker_pids(self) -> list[int]:
        return [w.pid for w in self._workers.values() if w.pid is not None]

    def worker_pid(self, job_id: str) -> int | None:
        """The pid of the process running `job_id`, if it runs now."""
        job = self._jobs.get(job_id)
        if job is None or job.worker is None:
            return None
        return job.worker.pid

    # -- workers ----------------------------------------------------------------------------
    async def _spawn(self, slot: int, delay: float = 0.0) -> None:
        if delay:
            await asyncio.sleep(delay)
        if self._closed:
            return
        tasks_r, tasks_w = self._context.Pipe(duplex=False)
        events_r, events_w = self._context.Pipe(duplex=False)
        cancel_flag = self._context.RawValue(ctypes.c_int, 0)
        process = self._context.Process(
            target=_worker_main,
            args=(
                tasks_r,
                events_w,
                cancel_flag,
                self._weights,
                self._initializer,
                self._job_function,
                os.getpid(),
                max(1, (os.cpu_count() or 1) // self._size),
                self._preview_function,
            ),
            name=f"stylebot-worker-{slot}",
            daemon=True,
        )
        try:
            await asyncio.to_thread(process.start)
        finally:
            # The child has its own copies now; ours would hide its death (no EOF).
            tasks_r.close()
            events_w.close()
        worker = _Worker(slot, process, tasks_w, events_r, cancel_flag)
        if self._closed:
            worker.doomed = True
            await self._stop_worker(worker)
            self._close_pipes(worker)
            return
        self._workers[slot] = worker
        with self._lock:
            self._watched.append(worker)
        self._wake()
        log.info("worker %d started (pid %s)", slot, process.pid)

    def _respawn_later(self, slot: int) -> None:
        failures = self._failures.get(slot, 0)
        delay = 0.0 if failures == 0 else min(30.0, 0.5 * 2 ** (failures - 1))
        self._failures[slot] = failures + 1
        self._background_task(self._spawn(slot, delay))

    async def _stop_worker(self, worker: _Worker, grace: float = 5.0) -> None:
        process = worker.process
        with contextlib.suppress(OSError, ValueError):
            await asyncio.to_thread(worker.send, None)
        await asyncio.to_thread(process.join, grace)
        if process.is_alive():
            process.terminate()
            await asyncio.to_thread(process.join, 2.0)
        if process.is_alive():
            process.kill()
            await asyncio.to_thread(process.join, 2.0)

    def _close_pipes(self, worker: _Worker) -> None:
        for conn in (worker.tasks, worker.events):
            with contextlib.suppress(OSError):
                conn.close()
        with contextlib.suppress(ValueError, OSError):
            worker.process.close()

    # -- jobs -------------------------------------------------------------------------------
    def _dispatch(self) -> None:
        """Give waiting jobs to idle ready workers (loop thread)."""
        while self._waiting:
            worker = next(
                (w for w in self._workers.values() if w.ready and not w.doomed and w.job is None),
                None,
            )
            if worker is None:
                return
            job = self._waiting.popleft()
            if job.future.done():
                continue
            worker.job = job
            job.worker = worker
            worker.cancel_flag.value = 1 if job.cancel_requested else 0
            assert self._loop is not None
            limit = time_limit(job.spec, self._job_timeout)  # bigger pictures get longer
            job.timers.append(self._loop.call_later(limit, self._time_out, worker, job))
            self._background_task(self._send(worker, job.spec))

    async def _send(self, worker: _Worker, message: JobSpec | PreviewRequest) -> None:
        try:
            await asyncio.to_thread(worker.send, message)
        except (OSError, ValueError) as error:
            # The worker died meanwhile: its sentinel will fire and fail the job.
            log.warning("could not send a job to worker %d: %s", worker.slot, error)

    def _time_out(self, worker: _Worker, job: _Job) -> None:
        if worker.job is not job:
            return
        log.warning(
            "job %s ran past %g s: killing worker %d",
            job.spec.job_id,
            time_limit(job.spec, self._job_timeout),
            worker.slot,
        )
        self._resolve(job, error=JobTimedOut())
        self._kill(worker)

    def _cancel_overdue(self, worker: _Worker, job: _Job) -> None:
        if worker.job is not job:
            return
        log.warning(
            "job %s ignored its cancellation: killing worker %d", job.spec.job_id, worker.slot
        )
        self._resolve(job, error=JobCancelled())
        self._kill(worker)

    def _kill(self, worker: _Worker) -> None:
        worker.doomed = True
        with contextlib.suppress(OSError, ValueError, AttributeError):
            worker.process.kill()  # the reader thread sees the sentinel, then we replace it

    def _abandon(self, job: _Job) -> None:
        """`run()` was cancelled by its caller: stop the work it asked for."""
        if job in self._waiting:
            self._waiting.remove(job)
        if job.worker is not None and job.worker.job is job:
            job.cancel_requested = True
            job.worker.cancel_flag.value = 1

    def _forget(self, job: _Job) -> None:
        if self._jobs.get(job.spec.job_id) is job:
            del self._jobs[job.spec.job_id]

    @staticmethod
    def _resolve(
        job: _Job, outcome: JobOutcome | None = None, error: BaseException | None = None
    ) -> None:
        for timer in job.timers:
            timer.cancel()
        job.timers.clear()
        if job.future.done():
            return
        if error is not None:
            job.future.set_exception(error)
        elif outcome is not None:
            job.future.set_result(outcome)

    def _background_task(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- events from workers (loop thread) ----------------------------------------------------
    def _on_event(self, worker: _Worker, kind: _Message, job_id: str | None, payload: Any) -> None:
        if kind is _Message.READY:
            worker.ready = True
            worker.pid = payload
            self._failures[worker.slot] = 0
            self._init_error = None
            self._dispatch()
        elif kind is _Message.INIT_FAILED:
            self._init_error = str(payload)
            log.error("worker %d failed to start: %s", worker.slot, payload)
            if not any(w.ready for w in self._workers.values()):
                # No worker can run them (e.g. the VGG19 weights cannot be downloaded): fail
                # the waiting jobs so their users hear it now, not never.
                for waiting in list(self._waiting):
                    self._waiting.remove(waiting)
                    self._resolve(waiting, error=JobFailed(str(payload), FailureCode.ENGINE_DOWN))
        elif kind is _Message.PROGRESS:
            job = worker.job
            if job is None or job.spec.job_id != job_id or job.future.done():
                return
            if job.on_progress is not None:
                try:
                    job.on_progress(payload)
                except Exception:
                    log.exception("progress handler of job %s failed", job_id)
        elif kind is _Message.PREVIEW:
            asked = self._previews.pop(str(job_id), None)
            if asked is not None and payload is not None:
                try:
                    asked[1](payload)
                except Exception:
                    log.exception("preview handler of job %s failed", job_id)
        elif kind in (_Message.OUTCOME, _Message.ERROR):
            job = worker.job
            if job is None or job.spec.job_id != job_id:
                return
            worker.job = None
            job.worker = None
            worker.cancel_flag.value = 0
            if kind is _Message.OUTCOME:
                self._resolve(job, outcome=payload)
            else:
                log.error("job %s failed in worker %d: %s", job_id, worker.slot, payload)
                self._resolve(job, error=JobFailed(str(payload)))
            self._dispatch()
        elif kind is _Message.DIED:
            self._on_death(worker, payload)

    def _on_death(self, worker: _Worker, exitcode: int | None) -> None:
        for job_id, (asked, _) in list(self._previews.items()):
            if asked is worker:  # that first look never comes; the job shows its own
                del self._previews[job_id]
        job = worker.job
        worker.job = None
        if self._workers.get(worker.slot) is worker:
            del self._workers[worker.slot]
        self._close_pipes(worker)
        if job is not None:
            job.worker = None
            if not job.future.done():
                log.warning(
                    "worker %d (pid %s) died with exit code %s while running job %s",
                    worker.slot,
                    worker.pid,
                    exitcode,
                    job.spec.job_id,
                )
                self._resolve(job, error=WorkerLost(f"worker exit code {exitcode}"))
        elif not worker.doomed:
            log.warning(
                "worker %d (pid %s) died with exit code %s", worker.slot, worker.pid, exitcode
            )
        if not self._closed:
            if worker.ready:
                self._failures[worker.slot] = 0
            self._respawn_later(worker.slot)

    # -- the reader thread --------------------------------------------------------------------
    def _wake(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._wake_w.send_bytes(b"!")

    def _post(self, worker: _Worker, message: tuple[_Message, str | None, Any]) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed under us
            loop.call_soon_threadsafe(self._on_event, worker, *message)

    def _read_events(self) -> None:
        finished: set[int] = set()  # id() of workers whose event pipe reached EOF
        while not self._stop_reader:
            with self._lock:
                workers = list(self._watched)
            by_object: dict[Any, tuple[str, _Worker | None]] = {self._wake_r: ("wake", None)}
            for worker in workers:
                if id(worker) not in finished:
                    by_object[worker.events] = ("events", worker)
                by_object[worker.process.sentinel] = ("sentinel", worker)
            try:
                ready = wait(list(by_object), timeout=1.0)
            except OSError:
                time.sleep(0.05)  # a pipe closed during shutdown
                continue
            for obj in ready:
                what, owner = by_object[obj]
                if owner is None:
                    with contextlib.suppress(OSError, EOFError):
                        while self._wake_r.poll():
                            self._wake_r.recv_bytes()
                elif what == "events":
                    if not self._receive(owner):
                        finished.add(id(owner))
                else:
                    worker = owner
                    # Dead: deliver whatever it managed to send, then report the death.
                    while id(worker) not in finished and self._receive(worker, only_if_ready=True):
                        pass
                    finished.discard(id(worker))
                    with self._lock:
                        if worker in self._watched:
                            self._watched.remove(worker)
                    # The sentinel fires as the process exits, a moment before the kernel
                    # lets its parent collect it: wait for that (here, off the loop), so the
                    # exit code is known and no zombie is left behind.
                    with contextlib.suppress(OSError, ValueError, AssertionError):
                        worker.process.join(5.0)
                    self._post(worker, (_Message.DIED, None, worker.process.exitcode))

    def _receive(self, worker: _Worker, only_if_ready: bool = False) -> bool:
        """Read one message from a worker's event pipe; False at EOF (or nothing, if asked)."""
        try:
            if only_if_ready and not worker.events.poll():
                return False
            message = worker.events.recv()
        except (EOFError, OSError, ValueError):
            return False
        except Exception:
            log.exception("unreadable message from worker %d", worker.slot)
            return False
        self._post(worker, message)
        return True
