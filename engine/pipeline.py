"""A whole job: decode, a quick pass for the first look, optimisation, colour handling, encode.

Quick pass (the default for a first painting): the same objective is first optimised at
`StyleParams.quick_pass` size (~192 px), where a step costs about a tenth of a 512 px one, and
its picture is sent at once as the preview; the full-size scale then starts from the photo.

Coarse-to-fine (when `steps` names several scales): the picture is first optimised at a
fraction of the size, then upsampled to start the next scale. Each scale has its own targets
(content and style resized to that scale), so the last scale optimises exactly the requested
objective.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from engine import color
from engine.errors import Cancelled
from engine.hardware import describe_device
from engine.images import (
    decode_image,
    encode_image,
    from_array,
    mime_type,
    resize_long_side,
    to_array,
)
from engine.job import CancelCheck, Progress, ProgressCallback, Result
from engine.objective import LossParts, Objective, get_objective
from engine.optimize import Best, run_adam, run_lbfgs
from engine.params import ParamsError, StyleParams

PROGRESS_INTERVAL_S = 0.2
DECODE_OVERSAMPLE = 4
# The oversampled decode is capped: at 2048 px, 4x would keep pictures of up to 8192 px (a 40 MP
# file as sent) for a LANCZOS resize that gains nothing over 2x there. Measured at 2048 px with
# 7000 px inputs: peak RSS 5,688 MB uncapped, 5,532 MB capped.
MAX_DECODE_SIDE = 4096
PREVIEW_SIDE = 256
PREVIEW_AT_FRACTION = 4


@dataclass(frozen=True)
class _Scale:
    index: int
    side: int
    steps: int
    count: int
    quick: bool = False
    """The quick pass: its picture is the preview, not the start of the next scale."""


def _resize_array(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Float-exact bicubic resize (no 8-bit rounding between scales)."""
    import tensorflow as tf

    width, height = size
    resized = tf.image.resize(rgb[None], (height, width), method="bicubic")[0].numpy()
    return np.clip(resized, 0.0, 255.0).astype(np.float32)


def _upsample_with_detail(previous: np.ndarray, content: np.ndarray) -> np.ndarray:
    """The previous scale's picture at the content's size, plus the photo's fine detail.

    A coarse scale cannot hold detail finer than its pixels; adding back what the content
    photo has at that octave (a Laplacian-pyramid level) starts the next scale from a
    sharp picture instead of a blurred one.
    """
    import tensorflow as tf

    height, width = content.shape[:2]
    low = tf.image.resize(content[None], previous.shape[:2], method="area")
    detail = content - tf.image.resize(low, (height, width), method="bicubic")[0].numpy()
    return np.clip(_resize_array(previous, (width, height)) + detail, 0.0, 255.0).astype(np.float32)


def _scaled(image: Image.Image, side: int) -> np.ndarray:
    return to_array(resize_long_side(image, side))


def _blend(params: StyleParams, count: int) -> tuple[float, ...]:
    if params.style_blend is None:
        return (1.0,) * count
    if len(params.style_blend) != count:
        raise ParamsError(f"{count} style pictures but {len(params.style_blend)} blend weights")
    return params.style_blend


def preview_jpeg(image: np.ndarray, colours: np.ndarray | None = None) -> bytes:
    """A small JPEG of the picture in progress; `colours` (same size): the photo whose chroma
    it takes (colour preservation paints luminance only)."""
    if colours is not None:
        image = color.recombine(image, colours)
    return encode_image(resize_long_side(from_array(image), PREVIEW_SIDE), "jpeg", quality=80)


class _Reporter:
    """Turns optimiser steps into throttled `Progress` reports with an ETA."""

    def __init__(
        self,
        scales: Sequence[_Scale],
        on_progress: ProgressCallback | None,
        started: float,
        preview: bool,
    ) -> None:
        self.scales = scales
        self.on_progress = on_progress
        self.started = started
        # Several scales (a quick pass, or coarse-to-fine): the preview comes at the end of each
        # but the last (see run_pipeline). One scale (a warm start, or no quick pass): a quarter
        # of the way through, once the style shows.
        self.preview_step = (
            max(1, scales[0].steps // PREVIEW_AT_FRACTION) if preview and len(scales) == 1 else None
        )
        self.total_steps = sum(s.steps for s in scales)
        self.steps_before = 0
        self.last_sent = 0.0
        self.scale_started = started
        self.current: _Scale = scales[0]
        self.colours: np.ndarray | None = None

    def begin_scale(self, scale: _Scale, colours: np.ndarray | None = None) -> None:
        self.current = scale
        self.colours = colours
        self.scale_started = time.perf_counter()

    def _eta(self, done_in_scale: int) -> float:
        if done_in_scale == 0:
            return 0.0
        per_step = (time.perf_counter() - self.scale_started) / done_in_scale
        remaining = (self.current.steps - done_in_scale) * per_step
        for later in self.scales:
            if later.index > self.current.index:
                remaining += later.steps * per_step * (later.side / self.current.side) ** 2
        return remaining

    def step(
        self,
        done_in_scale: int,
        parts: LossParts,
        image: np.ndarray | None = None,
        preview: bytes | None = None,
    ) -> None:
        if self.on_progress is None:
            return
        if preview is None and image is not None and done_in_scale == self.preview_step:
            preview = preview_jpeg(image, self.colours)
        now = time.perf_counter()
        last_of_scale = done_in_scale >= self.current.steps
        if preview is None and not last_of_scale and now - self.last_sent < PROGRESS_INTERVAL_S:
            return
        self.last_sent = now
        self.on_progress(
            Progress(
                scale=self.current.index,
                scales=len(self.scales),
                step=self.steps_before + done_in_scale,
                total_steps=self.total_steps,
                loss=parts.total,
                style_loss=parts.style,
                content_loss=parts.content,
                tv_loss=parts.tv,
                elapsed=now - self.started,
                eta=self._eta(done_in_scale),
                preview=preview,
            )
        )

    def end_scale(self) -> None:
        self.steps_before += self.current.steps


def _optimise_scale(
    objective: Objective,
    params: StyleParams,
    content: np.ndarray,
    styles: Sequence[np.ndarray],
    start: np.ndarray,
    scale: _Scale,
    reporter: _Reporter,
    should_cancel: CancelCheck | None,
) -> Best:
    targets = objective.targets(content, styles, _blend(params, len(styles)))
    content_weight = params.content_weight
    if scale.index < scale.count - 1 and not scale.quick:
        # Coarse scales favour style (their Gram statistics are larger); holding the content
        # tighter there hands the final scale a better balanced start.
        content_weight *= params.coarse_content_boost
    style_weight = params.effective_style_weight
    tv_weight = params.tv_weight

    def evaluate(image: np.ndarray) -> tuple[LossParts, np.ndarray]:
        return objective.evaluate(image, targets, content_weight, style_weight, tv_weight)

    if params.optimizer == "adam":
        return run_adam(
            evaluate, start, scale.steps, learning_rate=params.learning_rate,
            on_step=reporter.step, should_cancel=should_cancel,
        )  # fmt: skip
    last = scale.index == scale.count - 1
    # The quick pass minimises the painting's own objective (no content boost): its picture
    # is a preview of the painting.
    return run_lbfgs(
        evaluate, start, scale.steps, on_step=reporter.step, should_cancel=should_cancel,
        target_loss=params.target_loss if last else None,
    )  # fmt: skip


def _starting_picture(
    params: StyleParams,
    content: np.ndarray,
    previous: np.ndarray | None,
    init_image: Image.Image | None,
) -> np.ndarray:
    """Where a scale starts: the previous scale's picture, a warm start, noise or the photo."""
    height, width = content.shape[:2]
    if previous is not None:
        return _upsample_with_detail(previous, content)
    if init_image is not None:
        # LANCZOS to the scale's long side, then exactly to the content's size (the previous
        # result may differ from the photo's aspect ratio by a pixel of rounding).
        start = _resize_array(_scaled(init_image, max(width, height)), (width, height))
        return color.luminance_as_rgb(start) if params.preserve_colors else start
    if params.init == "noise":
        rng = np.random.default_rng(params.seed)
        return rng.uniform(0, 255, content.shape).astype(np.float32)
    return content.copy()


def run_pipeline(
    content: bytes,
    styles: Sequence[bytes],
    params: StyleParams,
    *,
    init: bytes | None = None,
    on_progress: ProgressCallback | None = None,
    should_cancel: CancelCheck | None = None,
    weights: str | None = None,
    start_from_quick_pass: bool = False,
) -> Result:
    """The whole job. `start_from_quick_pass` starts the full-size scale from the quick pass's
    picture (upsampled, with the photo's detail) instead of the photo: measured not to pay
    reliably (better for 2 of 4 pairs, worse for 2; docs/ARCHITECTURE.md, "First look and
    large sizes"), kept for benchmarks/bench_quick_pass.py.
    """
    started = time.perf_counter()
    if not styles:
        raise ParamsError("at least one style picture is needed")
    # Decode at up to 4x the working size, then resize with LANCZOS: JPEG's fast reduced-size
    # decoding (draft) is a box filter that smooths the fine texture the style loss measures,
    # so it is only used for pictures far larger than needed (e.g. 50-megapixel photos).
    decode_side = min(MAX_DECODE_SIDE, DECODE_OVERSAMPLE * params.size)
    content_image = decode_image(content, max_side=decode_side)
    style_images = [decode_image(s, max_side=decode_side) for s in styles]
    init_image = decode_image(init, max_side=decode_side) if init is not None else None
    decoded = time.perf_counter()

    objective = get_objective(
        weights,
        params.style_layers,
        params.content_layers,
        mixed_precision=params.use_mixed_precision,
    )
    built = time.perf_counter()

    sides = params.scale_sizes()
    steps = params.steps_per_scale[-len(sides) :]
    scales = [
        _Scale(i, side, n, len(sides)) for i, (side, n) in enumerate(zip(sides, steps, strict=True))
    ]
    if init_image is not None:
        scales = [_Scale(0, scales[-1].side, params.warm_steps(), 1)]
    # Nobody to show a preview to (the benchmarks, a script): no quick pass, no time spent on it.
    quick = params.quick_pass(warm_start=init_image is not None) if on_progress else None
    if quick is not None:
        quick_side, quick_steps = quick
        scales = [
            _Scale(0, quick_side, quick_steps, 2, quick=True),
            _Scale(1, scales[-1].side, scales[-1].steps, 2),
        ]
    reporter = _Reporter(scales, on_progress, started, params.preview)

    image: np.ndarray | None = None
    best: Best | None = None
    megapixel_steps = 0.0
    previous_was_quick = False
    content_rgb = _scaled(content_image, params.size)
    for scale in scales:
        if should_cancel is not None and should_cancel():
            raise Cancelled()
        scale_content = _scaled(content_image, scale.side)
        colours: np.ndarray | None = None
        scale_styles = [_scaled(s, params.style_side(scale.side)) for s in style_images]
        if params.preserve_colors:
            colours = scale_content
            scale_styles = [color.matched_luminance_as_rgb(s, scale_content) for s in scale_styles]
            scale_content = color.luminance_as_rgb(scale_content)
        if previous_was_quick and not start_from_quick_pass:
            image = None  # the quick pass was the preview; the painting starts from the photo
        start = _starting_picture(params, scale_content, image, init_image)
        reporter.begin_scale(scale, colours)
        best = _optimise_scale(
            objective, params, scale_content, scale_styles, start, scale, reporter, should_cancel
        )
        image = best.image
        previous_was_quick = scale.quick
        megapixel_steps += best.evaluations * image.shape[0] * image.shape[1] / 1e6
        if params.preview and scale.index < len(scales) - 1 and on_progress is not None:
            reporter.step(scale.steps, best.parts, preview=preview_jpeg(image, colours))
        reporter.end_scale()
    optimised = time.perf_counter()

    assert image is not None and best is not None
    if params.preserve_colors:
        image = color.recombine(image, content_rgb)  # both at the final size
    output = from_array(image)
    data = encode_image(output, params.output_format)
    finished = time.perf_counter()
    return Result(
        image=data,
        width=output.width,
        height=output.height,
        losses=best.parts.as_dict(),
        timings={
            "decode": decoded - started,
            "model": built - decoded,
            "optimize": optimised - built,
            "encode": finished - optimised,
            "total": finished - started,
        },
        mime_type=mime_type(params.output_format),
        device=describe_device(params.use_mixed_precision),
        megapixel_steps=megapixel_steps,
    )


def warm_up(weights: str | None = None, params: StyleParams | None = None) -> None:
    """Build the model and trace the compiled functions once on a tiny picture."""
    params = params or StyleParams()
    objective = get_objective(
        weights,
        params.style_layers,
        params.content_layers,
        mixed_precision=params.use_mixed_precision,
    )
    objective.warm_up()
