"""The engine's one entry point: `stylize(content, styles, params) -> Result`.

Inputs and outputs are plain picklable/JSON-able values so that a process pool or a
Celery worker can run it. The engine knows nothing of Telegram.
"""

from __future__ import annotations

from collections.abc import Sequence

from engine.job import CancelCheck, Progress, ProgressCallback, Result
from engine.params import StyleParams

__all__ = ["CancelCheck", "Progress", "ProgressCallback", "Result", "stylize", "warm_up"]


def stylize(
    content: bytes,
    styles: Sequence[bytes],
    params: StyleParams | None = None,
    *,
    init: bytes | None = None,
    on_progress: ProgressCallback | None = None,
    should_cancel: CancelCheck | None = None,
    weights: str | None = None,
) -> Result:
    """Paint `content` in the style of `styles` (blended by `params.style_blend`).

    `init` warm-starts from a previous result of the same pair (e.g. at another strength).
    Raises `engine.errors.ImageError` for refused inputs and `engine.errors.Cancelled`
    when `should_cancel()` turns true. `weights` is "imagenet", "random" or a weights file
    (None: the STYLEBOT_WEIGHTS environment variable, else "imagenet"); the model is built
    once per process and reused.
    """
    # Imported here, not at the top: the pipeline imports TensorFlow, which only worker
    # processes may load (the bot imports this module's types).
    from engine.pipeline import run_pipeline

    return run_pipeline(
        content,
        list(styles),
        params or StyleParams(),
        init=init,
        on_progress=on_progress,
        should_cancel=should_cancel,
        weights=weights,
    )


def warm_up(weights: str | None = None) -> None:
    """Build the model and trace the compiled step once, so a worker's first job starts fast."""
    from engine.pipeline import warm_up as _warm_up  # TensorFlow: see `stylize`

    _warm_up(weights)
