"""Scale out: jobs go to Celery workers (``celery --app engine.tasks worker``) through Redis.

The bot never blocks on Redis: every call runs in a thread (`asyncio.to_thread`), and a job
is awaited by polling its task state with `asyncio.sleep` in between. `PROGRESS` states come
back as `Progress` events (in order; intermediate ones may be skipped, previews are not).

`run()` is idempotent for a job id (the Celery task id is the job id): it first looks at the
task's state, returns a stored success, attaches to a job that is running, and only submits
otherwise. So when the bot restarts and the job manager submits again a job that was
running, no second copy is painted (and the worker side returns a stored outcome if a
duplicate message ever arrives).

Errors: Redis unreachable at submit, or for `unavailable_after` seconds while waiting →
`ExecutorUnavailable` (the job stays queued and is submitted again later, which attaches to
it). A job not finished after `await_limit` seconds (default: two time limits plus the
visibility timeout, so a job redelivered after its worker died still fits) → `JobTimedOut`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from typing import Any

import redis
from celery import states

from bot.executors.base import (
    Executor,
    ExecutorUnavailable,
    JobCancelled,
    JobFailed,
    JobTimedOut,
    ProgressHandler,
    result_or_raise,
)
from engine.job import (
    DEFAULT_JOB_TIMEOUT_S,
    DecodeError,
    JobOutcome,
    JobSpec,
    Progress,
    Result,
    decode,
    encode,
    longest_time_limit,
    time_limit,
)
from engine.tasks import CANCEL_KEY, PROGRESS_STATE, TASK_NAME, make_app

log = logging.getLogger(__name__)

CANCEL_TTL_S = 24 * 3600


class CeleryExecutor(Executor):
    name = "celery"

    def __init__(
        self,
        redis_url: str,
        *,
        job_timeout: float = DEFAULT_JOB_TIMEOUT_S,
        capacity: int = 2,
        poll_interval: float = 0.25,
        visibility_timeout: float | None = None,
        unavailable_after: float = 30.0,
        await_limit: float | None = None,
    ) -> None:
        self._redis_url = redis_url
        self._job_timeout = job_timeout
        self._capacity = capacity
        self._poll_interval = poll_interval
        longest = longest_time_limit(job_timeout)
        self._visibility_timeout = (
            visibility_timeout if visibility_timeout is not None else longest + 120.0
        )
        self._unavailable_after = unavailable_after
        self._await_limit = (
            await_limit if await_limit is not None else 2 * longest + self._visibility_timeout
        )
        self._app: Any = None
        self._redis: Any = None
        self._cancelled: set[str] = set()

    @property
    def capacity(self) -> int:
        return self._capacity

    async def start(self) -> None:
        if self._app is not None:
            return
        self._app = make_app(self._redis_url, self._job_timeout, self._visibility_timeout)
        self._redis = redis.Redis.from_url(
            self._redis_url, socket_connect_timeout=3, socket_timeout=10
        )

    async def close(self) -> None:
        if self._app is None:
            return
        app, client = self._app, self._redis
        self._app = self._redis = None
        await asyncio.to_thread(client.close)
        await asyncio.to_thread(app.close)

    async def check_available(self) -> None:
        await self._call(lambda client: client.ping())

    async def cancel(self, job_id: str) -> None:

        self._cancelled.add(job_id)
        key = CANCEL_KEY.format(job_id=job_id)
        try:
            await self._call(lambda client: client.set(key, b"1", ex=CANCEL_TTL_S))
            # A job still waiting in the queue is dropped by the workers without starting.
            await asyncio.to_thread(self._app.control.revoke, job_id)
        except Exception:
            log.warning("could not cancel job %s", job_id, exc_info=True)

    async def run(self, spec: JobSpec, on_progress: ProgressHandler | None = None) -> Result:
        if self._app is None:
            await self.start()
        job_id = spec.job_id
        meta = await self._meta(job_id)
        state = meta.get("status")
        if state == states.SUCCESS:
            return self._finish(meta)
        if state not in (states.STARTED, PROGRESS_STATE):
            await self._submit(spec, forget=state not in (None, states.PENDING))
        return await self._await(job_id, on_progress)

    # -- helpers ------------------------------------------------------------------------------
    async def _call(self, function: Any) -> Any:
        """Run a Redis call in a thread; connection trouble becomes `ExecutorUnavailable`."""

        if self._redis is None:
            raise ExecutorUnavailable("The painting service is not started.")
        try:
            return await asyncio.to_thread(function, self._redis)
        except (redis.ConnectionError, redis.TimeoutError, OSError) as error:
            raise ExecutorUnavailable("The painting service is unreachable right now.") from error

    async def _meta(self, job_id: str) -> dict[str, Any]:

        app = self._app
        try:
            return dict(await asyncio.to_thread(app.backend.get_task_meta, job_id))
        except (redis.ConnectionError, redis.TimeoutError, OSError) as error:
            raise ExecutorUnavailable("The painting service is unreachable right now.") from error

    async def _submit(self, spec: JobSpec, forget: bool) -> None:

        payload = encode(spec)
        app = self._app

        def send() -> None:
            if forget:  # an earlier attempt failed: clear its state before the new one
                app.backend.forget(spec.job_id)
            limit = time_limit(spec, self._job_timeout)  # per job: bigger pictures get longer
            app.send_task(
                TASK_NAME,
                args=[payload],
                task_id=spec.job_id,
                retry=False,
                time_limit=limit,
                soft_time_limit=max(1.0, limit * 0.9),
            )

        await self.check_available()
        try:
            await asyncio.to_thread(send)
        except Exception as error:  # kombu's OperationalError, redis errors, socket errors
            log.warning("could not submit job %s: %s", spec.job_id, error)
            raise ExecutorUnavailable("The painting service is unreachable right now.") from error

    async def _await(self, job_id: str, on_progress: ProgressHandler | None) -> Result:
        started = time.monotonic()
        failing_since: float | None = None
        last_key: tuple[Any, ...] | None = None
        last_preview: Any = 0
        while True:
            await asyncio.sleep(self._poll_interval)
            try:
                meta = await self._meta(job_id)
                failing_since = None
            except ExecutorUnavailable:
                now = time.monotonic()
                failing_since = failing_since or now
                if now - failing_since > self._unavailable_after:
                    raise
                continue
            state = meta.get("status")
            if state == states.SUCCESS:
                return self._finish(meta)
            if state == states.FAILURE:
                error = meta.get("result")
                name = type(error).__name__
                if name in ("TimeLimitExceeded", "SoftTimeLimitExceeded"):
                    raise JobTimedOut(f"Celery: {name}")
                log.error("job %s failed in a Celery worker: %s: %s", job_id, name, error)
                raise JobFailed(f"{name}: {error}")
            if state == states.REVOKED:
                raise JobCancelled()
            if state == PROGRESS_STATE and isinstance(meta.get("result"), dict):
                info = meta["result"]
                index = info.get("preview_index")
                try:
                    progress = decode(Progress, info.get("progress"))
                except DecodeError:
                    log.warning("job %s: unreadable progress report", job_id)
                    continue
                key = (progress.scale, progress.step, index)
                if key != last_key:
                    last_key = key
                    if progress.preview is not None and index == last_preview:
                        progress = replace(progress, preview=None)  # already delivered
                    last_preview = index
                    if on_progress is not None:
                        try:
                            on_progress(progress)
                        except Exception:
                            log.exception("progress handler of job %s failed", job_id)
            if time.monotonic() - started > self._await_limit:
                raise JobTimedOut(f"not finished after {self._await_limit:g} s")

    @staticmethod
    def _finish(meta: dict[str, Any]) -> Result:
        try:
            outcome = decode(JobOutcome, meta.get("result"))
        except DecodeError as error:
            raise JobFailed(f"unreadable outcome: {error}") from error
        return result_or_raise(outcome)
