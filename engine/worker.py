"""Per-process glue between an executor's worker process and the engine.

Knows nothing of Telegram nor of the executor that runs it: the local process pool
(`bot.executors.local`) and the Celery task (`engine.tasks`) both call `init_worker` once
per process and `run_job` once per job. Inputs and outputs are plain values (bytes, str,
numbers, lists, dicts) so any transport can carry them.

The outcome of `run_job` is a dict with a `status`:

- ``"done"``: ``image`` (bytes), ``width``, ``height``, ``losses``, ``timings``, ``mime_type``;
- ``"rejected"``: ``message`` (a sentence fit for a user) and ``code`` (``ImageError.code``
  or ``"bad_params"``); never worth retrying;
- ``"cancelled"``: ``message``;
- ``"failed"``: ``message``, for any other `EngineError` the engine raised on purpose.

Unexpected exceptions propagate: the executor reports them as a failure.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from typing import Any

from engine.errors import Cancelled, EngineError, ImageError
from engine.params import ParamsError, StyleParams

ReportFunction = Callable[[dict[str, Any]], None]
CancelFunction = Callable[[], bool]
JobFunction = Callable[[dict[str, Any], ReportFunction, CancelFunction], dict[str, Any]]

DEFAULT_JOB_FUNCTION = "engine.worker:run_job"
DEFAULT_INITIALIZER = "engine.worker:init_worker"

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
    """Prepare this process for jobs: remember the weights and build the model once.

    `weights` is "imagenet", "random" or a weights file; None keeps STYLEBOT_WEIGHTS (else
    "imagenet"). Safe to call more than once: the model is built on the first call only.
    """
    if weights:
        os.environ["STYLEBOT_WEIGHTS"] = weights
    if weights in _warmed_up:
        return
    from engine.api import warm_up  # TensorFlow is imported here, in the worker only
    from engine.hardware import configure_threads

    configure_threads()
    warm_up(weights)
    _warmed_up.add(weights)


def run_job(
    spec: dict[str, Any], report: ReportFunction, should_cancel: CancelFunction
) -> dict[str, Any]:
    """Run one job described by `spec` and return its outcome (see the module docstring).

    `spec` holds ``content`` (bytes), ``styles`` (list of bytes), ``params``
    (`StyleParams.to_dict()`) and optionally ``init`` (bytes or None). `report` receives
    `Progress.to_dict()` after optimizer steps; `should_cancel` is polled between steps.
    """
    from engine.api import Progress, stylize

    try:
        params = StyleParams.from_dict(dict(spec.get("params") or {}))
    except (ParamsError, TypeError) as error:
        return {"status": "rejected", "message": str(error), "code": "bad_params"}

    def on_progress(progress: Progress) -> None:
        report(progress.to_dict())

    try:
        result = stylize(
            spec["content"],
            list(spec["styles"]),
            params,
            init=spec.get("init"),
            on_progress=on_progress,
            should_cancel=should_cancel,
            weights=os.environ.get("STYLEBOT_WEIGHTS") or None,
        )
    except Cancelled as error:
        return {"status": "cancelled", "message": str(error)}
    except ImageError as error:
        return {"status": "rejected", "message": str(error), "code": error.code}
    except ParamsError as error:
        return {"status": "rejected", "message": str(error), "code": "bad_params"}
    except EngineError as error:
        return {"status": "failed", "message": str(error)}
    return {
        "status": "done",
        "image": result.image,
        "width": result.width,
        "height": result.height,
        "losses": dict(result.losses),
        "timings": dict(result.timings),
        "mime_type": result.mime_type,
    }
