"""The Celery app that runs engine jobs on other machines: ``celery --app engine.tasks worker``.

Start a worker (one job at a time per process; add processes or machines to scale out)::

    STYLEBOT_REDIS_URL=redis://host:6379/0 STYLEBOT_WEIGHTS=imagenet \\
        celery --app engine.tasks worker --concurrency 1 --pool prefork

Redis is the broker and the result backend. Only JSON crosses the wire: the task takes
`encode(JobSpec)` and returns `encode(JobOutcome)` (`engine.job`; pictures are base64).
Delivery is at-least-once and completion exactly-once:

- ``task_acks_late`` + ``task_reject_on_worker_lost``: a message is acknowledged only when the
  job has finished, so a worker that dies mid-job (kill -9, OOM) leaves it to be delivered
  again: at once when only the pool child died (the parent requeues it), or after
  ``visibility_timeout`` when the whole worker died (Redis then restores unacknowledged
  messages). Keep ``visibility_timeout`` above the hard time limit, or a job still running
  would be handed to a second worker;
- the task id is the job id, and a redelivered task whose job already succeeded returns the
  stored outcome instead of painting again.

Progress: the task's state is ``PROGRESS`` with ``{"progress": encode(Progress),
"preview_index": n}`` as meta; the latest preview is repeated with its index until the next
one, so a poller cannot miss it.
Cancellation: a Redis key ``stylebot:cancel:<job_id>``, checked between optimizer steps (a
revoke cannot stop a task that has started).

Environment: STYLEBOT_REDIS_URL, STYLEBOT_WEIGHTS, STYLEBOT_JOB_TIMEOUT (hard limit, seconds;
the soft limit is 90 % of it; a bigger painting gets proportionally more: `engine.job.time_limit`),
STYLEBOT_CELERY_VISIBILITY_TIMEOUT (default: the longest job's limit + 120 s),
STYLEBOT_JOB_FUNCTION / STYLEBOT_WORKER_INIT (dotted paths; tests swap in a light job).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from typing import Any

from celery import Celery, signals
from celery.exceptions import SoftTimeLimitExceeded

from engine.job import (
    DEFAULT_JOB_TIMEOUT_S,
    DEFAULT_REDIS_URL,
    DecodeError,
    FailureCode,
    JobOutcome,
    JobSpec,
    OutcomeStatus,
    Progress,
    decode,
    encode,
    longest_time_limit,
)
from engine.worker import DEFAULT_INITIALIZER, DEFAULT_JOB_FUNCTION, load_callable

log = logging.getLogger(__name__)

TASK_NAME = "stylebot.stylize"
QUEUE = "stylebot"
CANCEL_KEY = "stylebot:cancel:{job_id}"
COMPLETIONS_KEY = "stylebot:completions:{job_id}"
"""Counts successful completions of a job (exactly-once is checked against it)."""
KEY_TTL_S = 7 * 24 * 3600
CANCEL_CHECK_INTERVAL_S = 0.2
PROGRESS_INTERVAL_S = 0.2
PROGRESS_STATE = "PROGRESS"
"""A task state of our own (Celery's are in `celery.states`): meta holds the progress."""


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    return float(raw) if raw else default


def make_app(
    redis_url: str,
    job_timeout: float = DEFAULT_JOB_TIMEOUT_S,
    visibility_timeout: float | None = None,
) -> Celery:
    """A Celery app configured for stylebot (the bot builds its own with its settings)."""
    if visibility_timeout is None:
        # Above the longest job's limit (a full-resolution painting gets more than
        # `job_timeout`: engine.job.time_limit), or Redis would hand a running job out again.
        visibility_timeout = longest_time_limit(job_timeout) + 120.0
    app = Celery("stylebot", broker=redis_url, backend=redis_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_time_limit=job_timeout,
        task_soft_time_limit=max(1.0, job_timeout * 0.9),
        task_default_queue=QUEUE,
        result_expires=KEY_TTL_S,
        result_extended=False,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=3.0,
        redis_socket_connect_timeout=3.0,
        redis_socket_timeout=10.0,
        broker_transport_options={
            "visibility_timeout": visibility_timeout,
            # Look for messages of dead workers every 10 s (not 10 × 10 s).
            "unacked_restore_interval": 10,
            "unacked_restore_throttle": 1,
            "socket_connect_timeout": 3.0,
        },
        worker_hijack_root_logger=False,
        # worker_process_init imports TensorFlow and builds the model: give it time.
        worker_proc_alive_timeout=300.0,
        worker_cancel_long_running_tasks_on_connection_loss=False,
    )
    app.task(bind=True, name=TASK_NAME)(_stylize_task)
    return app


# -- worker side ------------------------------------------------------------------------------

_redis_clients: dict[tuple[int, str], Any] = {}


def _redis(url: str) -> Any:
    """One Redis client per process (prefork children must not share their parent's)."""
    import redis  # the redis client is only needed inside a worker, on its first job

    key = (os.getpid(), url)
    if key not in _redis_clients:
        _redis_clients[key] = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=10)
    return _redis_clients[key]


def _stylize_task(self: Any, payload: dict[str, Any]) -> dict[str, Any]:
    job_id: str = self.request.id
    client = _redis(self.app.conf.broker_url)

    # A redelivered message of a job that already finished: hand back the stored outcome.
    previous = self.app.backend.get_task_meta(job_id)
    if previous.get("status") == "SUCCESS" and isinstance(previous.get("result"), dict):
        log.info("job %s already completed; returning the stored outcome", job_id)
        return dict(previous["result"])

    cancel_key = CANCEL_KEY.format(job_id=job_id)
    last_check = 0.0
    cancelled = False

    def should_cancel() -> bool:
        nonlocal last_check, cancelled
        now = time.monotonic()
        if not cancelled and now - last_check >= CANCEL_CHECK_INTERVAL_S:
            last_check = now
            try:
                cancelled = bool(client.exists(cancel_key))
            except Exception:  # Redis blinked: keep painting, ask again later
                log.warning("job %s: could not check for cancellation", job_id, exc_info=True)
        return cancelled

    last_report = 0.0
    preview: bytes | None = None
    preview_index = 0

    def report(progress: Progress) -> None:
        nonlocal last_report, preview, preview_index
        fresh = progress.preview is not None
        if fresh:
            preview = progress.preview
            preview_index += 1
        now = time.monotonic()
        if not fresh and not progress.is_last and now - last_report < PROGRESS_INTERVAL_S:
            return
        last_report = now
        shown = dataclasses.replace(progress, preview=preview)
        self.update_state(
            state=PROGRESS_STATE, meta={"progress": encode(shown), "preview_index": preview_index}
        )

    if should_cancel():
        return encode(JobOutcome.cancelled())
    try:
        spec = decode(JobSpec, payload)
    except DecodeError as error:
        log.error("job %s: unreadable job message: %s", job_id, error)
        return encode(JobOutcome.rejected(FailureCode.BAD_PARAMS, str(error)))
    function = load_callable(os.environ.get("STYLEBOT_JOB_FUNCTION") or DEFAULT_JOB_FUNCTION)
    try:
        outcome: JobOutcome = function(spec, report, should_cancel)
    except SoftTimeLimitExceeded:
        return encode(JobOutcome.timed_out())
    if outcome.status is OutcomeStatus.DONE:
        completions = COMPLETIONS_KEY.format(job_id=job_id)
        client.incr(completions)
        client.expire(completions, KEY_TTL_S)
    return dict(encode(outcome))


def _init_worker_process(**_: Any) -> None:
    """Build the model once per worker process, before its first job."""
    initializer = os.environ.get("STYLEBOT_WORKER_INIT", DEFAULT_INITIALIZER).strip()
    if initializer.lower() in ("", "none"):
        return
    load_callable(initializer)(os.environ.get("STYLEBOT_WEIGHTS") or None)


signals.worker_process_init.connect(_init_worker_process, weak=False)


app = make_app(
    os.environ.get("STYLEBOT_REDIS_URL", "").strip() or DEFAULT_REDIS_URL,
    _env_float("STYLEBOT_JOB_TIMEOUT", DEFAULT_JOB_TIMEOUT_S),
    _env_float("STYLEBOT_CELERY_VISIBILITY_TIMEOUT", 0.0) or None,
)
