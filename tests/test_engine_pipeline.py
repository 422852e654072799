"""The whole engine at tiny sizes (32–64 px) on random weights: fast, and real."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("tensorflow")

from engine import color
from engine.api import Progress, stylize
from engine.errors import Cancelled, ImageError
from engine.objective import get_objective
from engine.optimize import run_adam, run_lbfgs
from engine.params import CONTENT_LAYERS, STYLE_LAYERS, ParamsError, StyleParams
from tests.engine_helpers import decode, synthetic_photo, synthetic_style

TINY = StyleParams(size=64, scales=2, steps=(4, 4), min_scale_side=32)


@pytest.fixture(scope="module")
def weights() -> str:
    from tests.conftest import RANDOM_WEIGHTS

    return str(RANDOM_WEIGHTS) if RANDOM_WEIGHTS.exists() else "random"


def _problem(weights: str) -> tuple[object, np.ndarray]:
    objective = get_objective(weights, STYLE_LAYERS, CONTENT_LAYERS)
    content = decode(synthetic_photo(48, 40))
    style = decode(synthetic_style(48, 48))
    targets = objective.targets(content, [style], (1.0,))

    def evaluate(image: np.ndarray):  # type: ignore[no-untyped-def]
        return objective.evaluate(image, targets, 1e3, 1e-2, 0.0)

    return evaluate, content


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_optimizer_lowers_the_objective(weights: str, optimizer: str) -> None:
    evaluate, content = _problem(weights)
    start, _ = evaluate(content)  # type: ignore[operator]
    run = run_lbfgs if optimizer == "lbfgs" else run_adam
    best = run(evaluate, content, 10)  # type: ignore[arg-type]
    assert best.parts.total < 0.7 * start.total
    assert best.image.min() >= 0.0 and best.image.max() <= 255.0


def test_result_has_the_requested_size_and_aspect_ratio(weights: str) -> None:
    result = stylize(synthetic_photo(90, 60), [synthetic_style()], TINY, weights=weights)
    assert (result.width, result.height) == (64, 43)
    with Image.open(io.BytesIO(result.image)) as image:
        assert image.format == "JPEG" and image.size == (64, 43)
    assert set(result.losses) == {"total", "style", "content", "tv"}
    assert result.timings["total"] > 0


def test_portrait_content_keeps_portrait_orientation(weights: str) -> None:
    result = stylize(synthetic_photo(40, 80), [synthetic_style()], TINY, weights=weights)
    assert (result.width, result.height) == (32, 64)


def test_progress_is_ordered_with_eta_and_a_preview_after_the_coarse_scale(weights: str) -> None:
    reports: list[Progress] = []
    stylize(
        synthetic_photo(), [synthetic_style()], TINY, on_progress=reports.append, weights=weights
    )
    steps = [r.step for r in reports]
    assert steps == sorted(steps) and steps[-1] == 8 and reports[-1].total_steps == 8
    previews = [r for r in reports if r.preview is not None]
    assert len(previews) == 1 and previews[0].scale == 0
    assert previews[0].preview is not None and previews[0].preview[:2] == b"\xff\xd8"
    assert all(r.eta >= 0 and r.elapsed > 0 for r in reports)


def test_a_single_scale_without_a_quick_pass_sends_one_preview_a_quarter_of_the_way(
    weights: str,
) -> None:
    reports: list[Progress] = []
    params = TINY.replace(steps=(8,), quick_pass_steps=0)
    stylize(
        synthetic_photo(), [synthetic_style()], params, on_progress=reports.append, weights=weights
    )
    previews = [r for r in reports if r.preview is not None]
    assert [r.step for r in previews] == [2]
    assert reports[-1].step == reports[-1].total_steps == 8


def test_cancellation_stops_within_one_step(weights: str) -> None:
    evaluations = 0

    def should_cancel() -> bool:
        nonlocal evaluations
        evaluations += 1
        return evaluations > 3

    reports: list[Progress] = []
    with pytest.raises(Cancelled):
        stylize(
            synthetic_photo(),
            [synthetic_style()],
            TINY.replace(steps=(50, 50)),
            on_progress=reports.append,
            should_cancel=should_cancel,
            weights=weights,
        )
    # The check runs before every step: at most the steps before the 4th check ran.
    assert max((r.step for r in reports), default=0) <= 3


def test_preserve_colors_keeps_the_content_chroma(weights: str) -> None:
    content_bytes = synthetic_photo(64, 48)
    params = TINY.replace(preserve_colors=True, output_format="png")
    plain = stylize(
        content_bytes, [synthetic_style()], TINY.replace(output_format="png"), weights=weights
    )
    kept = stylize(content_bytes, [synthetic_style()], params, weights=weights)
    content = decode(content_bytes)

    def chroma_error(result_bytes: bytes) -> float:
        return float(
            np.abs(
                color.rgb_to_yiq(decode(result_bytes))[..., 1:] - color.rgb_to_yiq(content)[..., 1:]
            ).mean()
        )

    kept_error, plain_error = chroma_error(kept.image), chroma_error(plain.image)
    assert kept_error < 3.0  # only 8-bit rounding and clipping
    assert kept_error < plain_error / 2


def test_same_seed_same_picture(weights: str) -> None:
    params = TINY.replace(init="noise", seed=7, output_format="png")
    first = stylize(synthetic_photo(), [synthetic_style()], params, weights=weights)
    second = stylize(synthetic_photo(), [synthetic_style()], params, weights=weights)
    assert first.image == second.image


def test_several_styles_blend_and_blend_must_match(weights: str) -> None:
    styles = [synthetic_style(seed=1), synthetic_style(seed=2)]
    result = stylize(
        synthetic_photo(), styles, TINY.replace(style_blend=(1.0, 3.0)), weights=weights
    )
    assert result.width == 64
    with pytest.raises(ParamsError):
        stylize(synthetic_photo(), styles, TINY.replace(style_blend=(1.0,)), weights=weights)


def test_warm_start_runs_half_the_final_scale(weights: str) -> None:
    first = stylize(synthetic_photo(), [synthetic_style()], TINY, weights=weights)
    reports: list[Progress] = []
    stylize(
        synthetic_photo(),
        [synthetic_style()],
        TINY.replace(strength=4),
        init=first.image,
        on_progress=reports.append,
        weights=weights,
    )
    assert reports[-1].total_steps == TINY.steps_per_scale[-1] // 2


def test_bad_input_raises_image_error(weights: str) -> None:
    with pytest.raises(ImageError):
        stylize(b"not an image at all", [synthetic_style()], TINY, weights=weights)
    with pytest.raises(ParamsError):
        stylize(synthetic_photo(), [], TINY, weights=weights)


def test_shared_photo_and_painting_at_64_px(weights: str, content_path, style_path) -> None:  # type: ignore[no-untyped-def]
    result = stylize(content_path.read_bytes(), [style_path.read_bytes()], TINY, weights=weights)
    assert (result.width, result.height) == (64, 48)


def test_total_variation_counts_only_when_weighted(weights: str) -> None:
    """The objective skips the TV term at weight 0 and adds weight·TV (and its gradient) else."""
    import tensorflow as tf

    from engine import losses

    objective = get_objective(weights, STYLE_LAYERS, CONTENT_LAYERS)
    content = decode(synthetic_photo(48, 40))
    targets = objective.targets(content, [decode(synthetic_style(48, 48))], (1.0,))
    picture = np.clip(content + np.random.default_rng(0).normal(0, 20, content.shape), 0, 255)
    picture = picture.astype(np.float32)
    plain, plain_gradient = objective.evaluate(picture, targets, 1e3, 1e-2, 0.0)
    smooth, smooth_gradient = objective.evaluate(picture, targets, 1e3, 1e-2, 2.0)
    rgb = tf.constant(picture[None])
    with tf.GradientTape() as tape:
        tape.watch(rgb)
        tv = losses.total_variation(rgb)
    tv_gradient = tape.gradient(tv, rgb).numpy()[0]
    assert plain.tv == 0.0
    assert smooth.tv == pytest.approx(2.0 * float(tv), rel=1e-5)
    assert smooth.total == pytest.approx(plain.total + smooth.tv, rel=1e-5)
    np.testing.assert_allclose(smooth_gradient - plain_gradient, 2.0 * tv_gradient, atol=1e-3)
