"""The one interface between the bot and whatever runs the engine.

The bot never knows which executor runs a job: it hands over a `JobSpec` and awaits a
`Result` (from `engine.api`) or one of the typed errors below.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engine.api import Progress, Result


@dataclass(frozen=True)
class JobSpec:
    job_id: str
    content: bytes
    styles: list[bytes]
    params: dict[str, Any]
    """`engine.params.StyleParams.to_dict()`: JSON-safe, so any executor can carry it."""
    init: bytes | None = None
    """A previous result to warm-start from (same pair, another setting)."""
    meta: dict[str, Any] = field(default_factory=dict)


ProgressHandler = Callable[[Progress], None]
"""Called on the event loop's thread, in order, for every progress report of a job."""


class ExecutorError(Exception):
    """Base of the typed errors; `str()` is safe to show a user."""


class JobRejected(ExecutorError):
    """The engine refused the input (bad picture, bad parameters). Never retried."""

    def __init__(self, message: str, code: str = "bad_input") -> None:
        super().__init__(message)
        self.code = code


class JobCancelled(ExecutorError):
    """The job was cancelled on request."""


class JobTimedOut(ExecutorError):
    """The job ran past its time limit and was stopped."""


class WorkerLost(ExecutorError):
    """The process running the job died (crash, OOM, kill -9). The job may be retried."""


class ExecutorUnavailable(ExecutorError):
    """The executor cannot take jobs now (e.g. Redis is down). The job stays queued."""


class JobFailed(ExecutorError):
    """Any other failure inside the engine."""


class Executor(abc.ABC):
    """Runs engine jobs away from the event loop."""

    name: str = "abstract"

    @property
    @abc.abstractmethod
    def capacity(self) -> int:
        """How many jobs it runs at once; the job manager never submits more."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Start workers or connect; called once from the application's post_init."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop workers and disconnect; running jobs are abandoned (stay 'running' in SQLite)."""

    @abc.abstractmethod
    async def run(self, spec: JobSpec, on_progress: ProgressHandler | None = None) -> Result:
        """Run one job to its end and return the result, or raise an `ExecutorError`."""

    @abc.abstractmethod
    async def cancel(self, job_id: str) -> None:
        """Ask a running job to stop; `run` then raises `JobCancelled`. Unknown ids are ignored."""

    async def check_available(self) -> None:
        """Raise `ExecutorUnavailable` when a job submitted now could not be accepted.

        The job manager asks before it marks a job running, so an outage (Redis down) keeps
        the job queued without counting an attempt. The default accepts always.
        """
        return None


def spec_to_dict(spec: JobSpec) -> dict[str, Any]:
    """The plain dict `engine.worker.run_job` takes (bytes stay bytes)."""
    return {
        "job_id": spec.job_id,
        "content": spec.content,
        "styles": list(spec.styles),
        "params": dict(spec.params),
        "init": spec.init,
    }


def result_from_outcome(outcome: dict[str, Any]) -> Result:
    """Turn `engine.worker.run_job`'s outcome dict into a `Result`, or raise the typed error."""
    status = outcome.get("status")
    if status == "done":
        return Result(
            image=outcome["image"],
            width=int(outcome["width"]),
            height=int(outcome["height"]),
            losses={k: float(v) for k, v in (outcome.get("losses") or {}).items()},
            timings={k: float(v) for k, v in (outcome.get("timings") or {}).items()},
            mime_type=str(outcome.get("mime_type") or "image/jpeg"),
        )
    message = str(outcome.get("message") or "")
    if status == "rejected":
        raise JobRejected(
            message or "The picture was refused.", str(outcome.get("code") or "bad_input")
        )
    if status == "cancelled":
        raise JobCancelled(message or "The job was cancelled.")
    if status == "timeout":
        raise JobTimedOut(message or "The job took too long and was stopped.")
    raise JobFailed(message or "Something went wrong while painting.")
