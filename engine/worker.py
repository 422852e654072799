"""Per-process glue between an executor's worker process and the engine.

Knows nothing of Telegram nor of the executor that runs it: the local process pool
(`bot.executors.local`) and the Celery task (`engine.tasks`) both call `init_worker` once
per process and `run_job` once per job, with the typed shapes of `engine.job`.

`run_job` returns a `JobOutcome`: done with a `Result`, rejected (a refused picture or
parameters; never worth retrying), cancelled, or failed for any other `EngineError` the
engine raised on purpose. Unexpected exceptions propagate: the executor reports them as a
failure.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from typing import Any

from engine.errors import Cancelled, EngineError, ImageError
from engine.job import (
    CancelCheck,
    FailureCode,
    JobOutcome,
    JobSpec,
    Progress,
    ProgressCallback,
)
from engine.params import ParamsError

DEFAULT_JOB_FUNCTION = "engine.worker:run_job"
DEFAULT_INITIALIZER = "engine.worker:init_worker"
DEFAULT_PREVIEW_FUNCTION = "engine.worker:run_preview"

_warmed_up: set[str | None] = set()


def load_callable(path: str) -> Callable[..., Any]:
    """``"package.module:function"`` → the function (job functions are configurable)."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"expected 'module:function', not {path!r}")
    target: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        target = getattr(target, part)
    if not callable(target):
        raise TypeError(f"{path} is not callable")
    return target


def init_worker(weights: str | None = None) -> None:
    """Prepare this process for jobs: remember the weights, set TensorFlow's threads and
    devices up (memory growth on a GPU), and build the model once.

    `weights` is "imagenet", "random" or a weights file; None keeps STYLEBOT_WEIGHTS (else
    "imagenet"). Safe to call more than once: the model is built on the first call only.
    """
    if weights:
        os.environ["STYLEBOT_WEIGHTS"] = weights
    if weights in _warmed_up:
        return
    # Imported here, not at the top: they load TensorFlow, in the worker process only.
    from engine.api import warm_up
    from engine.hardware import configure_threads, setup_device

    # Both before TensorFlow's first op (warm_up runs the first).
    configure_threads()
    setup_device()
    warm_up(weights)
    _warmed_up.add(weights)


def run_job(spec: JobSpec, report: ProgressCallback, should_cancel: CancelCheck) -> JobOutcome:
    """Paint one job. `report` receives progress after optimizer steps; `should_cancel` is
    polled between steps."""
    # Imported here: engine.api pulls in the pipeline and TensorFlow, which only a worker
    # process loads (the bot imports this module for its defaults).
    from engine.api import stylize

    try:
        result = stylize(
            spec.content,
            list(spec.styles),
            spec.params,
            init=spec.init,
            on_progress=report,
            should_cancel=should_cancel,
            weights=os.environ.get("STYLEBOT_WEIGHTS") or None,
        )
    except Cancelled:
        return JobOutcome.cancelled()
    except ImageError as error:
        return JobOutcome.rejected(error.code, str(error))
    except ParamsError as error:
        return JobOutcome.rejected(FailureCode.BAD_PARAMS, str(error))
    except EngineError as error:
        return JobOutcome.failed(str(error))
    return JobOutcome.done(result)


def run_preview(spec: JobSpec) -> bytes | None:
    """The first look of a job that still waits for a worker: its quick pass alone, as the
    preview JPEG the job itself would send first. The local executor paints it between two
    steps of the job a busy worker runs, so a queued user sees a picture within seconds.

    None when the job has no quick pass (a warm start) or the engine refuses its input (the
    job reports that itself when it runs)."""
    from engine.api import stylize

    if spec.params.quick_pass(warm_start=spec.init is not None) is None:
        return None
    previews: list[bytes] = []

    def keep(progress: Progress) -> None:
        if progress.preview is not None:
            previews.append(progress.preview)

    try:
        stylize(
            spec.content,
            list(spec.styles),
            spec.params,
            init=spec.init,
            on_progress=keep,
            should_cancel=lambda: bool(previews),  # stop right after the quick pass
            weights=os.environ.get("STYLEBOT_WEIGHTS") or None,
        )
    except Cancelled:
        pass
    except (EngineError, ParamsError):
        return None
    return previews[0] if previews else None
