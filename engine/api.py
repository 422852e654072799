"""The engine's one entry point: `stylize(content, styles, params) -> Result`.

Inputs and outputs are plain picklable/JSON-able values so that a process pool or a
Celery worker can run it. The engine knows nothing of Telegram.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from engine.params import StyleParams


@dataclass(frozen=True)
class Progress:
    """One progress report, sent between optimizer steps."""

    scale: int
    """0-based index of the current scale (coarsest is 0)."""
    scales: int
    step: int
    """Steps done so far over all scales."""
    total_steps: int
    loss: float
    style_loss: float
    content_loss: float
    tv_loss: float
    elapsed: float
    """Seconds since the job started (decoding and model build included)."""
    eta: float
    """Estimated seconds left."""
    preview: bytes | None = None
    """A small JPEG of the picture so far; set once at the end of each scale but the last."""

    @property
    def fraction(self) -> float:
        return 0.0 if self.total_steps <= 0 else min(1.0, self.step / self.total_steps)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Result:
    image: bytes
    """The stylized picture, encoded as `params.output_format`."""
    width: int
    height: int
    losses: dict[str, float] = field(default_factory=dict)
    """total, style, content, tv: on the weighted objective of the final scale."""
    timings: dict[str, float] = field(default_factory=dict)
    """decode, model, optimize, encode, total (seconds)."""
    mime_type: str = "image/jpeg"


ProgressCallback = Callable[[Progress], None]
CancelCheck = Callable[[], bool]


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
    from engine.pipeline import run_pipeline  # TensorFlow is imported only when a job runs

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
    from engine.pipeline import warm_up as _warm_up

    _warm_up(weights)
