"""Executors run engine jobs away from the event loop; `make_executor` picks one from settings.

Importing this package (or any executor module) never imports TensorFlow: only worker
processes do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.executors.base import (
    Executor,
    ExecutorError,
    ExecutorUnavailable,
    JobCancelled,
    JobFailed,
    JobRejected,
    JobTimedOut,
    WorkerLost,
)

if TYPE_CHECKING:
    from bot.settings import Settings

__all__ = [
    "Executor",
    "ExecutorError",
    "ExecutorUnavailable",
    "JobCancelled",
    "JobFailed",
    "JobRejected",
    "JobTimedOut",
    "WorkerLost",
    "make_executor",
]


def make_executor(settings: Settings) -> Executor:
    """The executor `settings.executor` names: "local" (default) or "celery"."""
    if settings.executor == "celery":
        # Imported only when chosen: Celery and redis are an optional extra.
        from bot.executors.celery import CeleryExecutor

        return CeleryExecutor(
            settings.redis_url,
            job_timeout=settings.job_timeout,
            capacity=settings.celery_capacity,
        )
    if settings.executor == "local":
        from bot.executors.local import LocalExecutor  # likewise, for symmetry and start-up

        return LocalExecutor(
            workers=settings.workers, weights=settings.weights, job_timeout=settings.job_timeout
        )
    raise ValueError(f"unknown executor {settings.executor!r}")
