"""The one interface between the bot and whatever runs the engine.

The bot never knows which executor runs a job: it hands over an `engine.job.JobSpec` and
awaits a `Result`, or one of the typed errors below. Each error carries a stable `code` (an
`engine.job.FailureCode`, or the engine's `ImageError.code` for a refused picture) from which
the bot picks the sentence a user reads; `str(error)` is for logs.
"""

from __future__ import annotations

import abc
from collections.abc import Callable

from engine.job import FailureCode, JobOutcome, JobSpec, OutcomeStatus, Progress, Result

PreviewHandler = Callable[[bytes], None]
ProgressHandler = Callable[[Progress], None]
"""Called on the event loop's thread, in order, for every progress report of a job."""


class ExecutorError(Exception):
    """Base of the typed errors."""

    code: str = FailureCode.FAILED

    def __init__(self, message: str = "", code: str | None = None) -> None:
        super().__init__(message or type(self).__doc__ or type(self).__name__)
        if code is not None:
            self.code = code


class JobRejected(ExecutorError):
    """The engine refused the input (bad picture, bad parameters). Never retried."""

    code = FailureCode.BAD_PARAMS


class JobCancelled(ExecutorError):
    """The job was cancelled on request."""


class JobTimedOut(ExecutorError):
    """The job ran past its time limit and was stopped."""

    code = FailureCode.TIMED_OUT


class WorkerLost(ExecutorError):
    """The process running the job died (crash, OOM, kill -9). The job may be retried."""

    code = FailureCode.WORKER_LOST


class ExecutorUnavailable(ExecutorError):
    """The executor cannot take jobs now (e.g. Redis is down). The job stays queued."""

    code = FailureCode.ENGINE_DOWN


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

    @property
    def paints_first_looks(self) -> bool:
        """Whether `request_preview` can ever say yes (the job manager asks only then)."""
        return False

    def request_preview(self, spec: JobSpec, on_preview: PreviewHandler) -> bool:
        """Ask for a first look at a job that waits because every worker is busy: the quick
        pass alone, painted between the steps of a running job; `on_preview` gets the JPEG
        (on the event loop) if it comes. True when asked. The default cannot (Celery: a
        worker runs one task at a time), and the job's own quick pass shows it when it runs."""
        return False


def result_or_raise(outcome: JobOutcome) -> Result:
    """The outcome's `Result`, or the typed error its status stands for."""
    status = outcome.status
    if status is OutcomeStatus.DONE and outcome.result is not None:
        return outcome.result
    if status is OutcomeStatus.REJECTED:
        raise JobRejected(outcome.message, outcome.code or None)
    if status is OutcomeStatus.CANCELLED:
        raise JobCancelled(outcome.message)
    if status is OutcomeStatus.TIMED_OUT:
        raise JobTimedOut(outcome.message)
    raise JobFailed(outcome.message, outcome.code or None)
