"""The quick pass: a first look before the full-size scale (tiny sizes, random weights)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from engine.params import QUICK_PASS_SIDE, QUICK_PASS_STEPS, ParamsError, StyleParams

# 64 px paintings with a 32 px quick pass of 3 steps.
FIRST = StyleParams(size=64, steps=(6,), quick_pass_steps=3)


def test_quick_pass_plan() -> None:
    assert StyleParams().quick_pass() == (QUICK_PASS_SIDE, QUICK_PASS_STEPS)
    assert FIRST.quick_pass() == (32, 3)  # never more than half the painting
    assert FIRST.quick_pass(warm_start=True) is None
    assert FIRST.replace(quick_pass_steps=0).quick_pass() is None
    assert FIRST.replace(preview=False).quick_pass() is None
    assert FIRST.replace(optimizer="adam", steps=None).quick_pass() is None
    coarse_to_fine = StyleParams(size=128, steps=(4, 4), min_scale_side=32)
    assert coarse_to_fine.quick_pass() is None  # its coarse scale is the preview
    with pytest.raises(ParamsError):
        StyleParams(quick_pass_steps=-1)
    with pytest.raises(ParamsError):
        StyleParams(quick_pass_side=16)


def test_planned_work_counts_the_quick_pass() -> None:
    params = StyleParams()
    without = params.replace(quick_pass_steps=0).planned_megapixel_steps()
    quick_work = QUICK_PASS_STEPS * QUICK_PASS_SIDE * QUICK_PASS_SIDE * 0.75 / 1e6
    assert params.planned_megapixel_steps() == pytest.approx(without + quick_work)
    assert params.planned_megapixel_steps(warm_start=True) < without


tf = pytest.importorskip("tensorflow")

from engine import color  # noqa: E402
from engine import pipeline as pipeline_module  # noqa: E402
from engine.api import Progress, stylize  # noqa: E402
from engine.errors import Cancelled  # noqa: E402
from engine.job import Result  # noqa: E402
from tests.engine_helpers import decode, synthetic_photo, synthetic_style  # noqa: E402


@pytest.fixture(scope="module")
def weights() -> str:
    from tests.conftest import RANDOM_WEIGHTS

    return str(RANDOM_WEIGHTS) if RANDOM_WEIGHTS.exists() else "random"


def _paint(
    weights: str,
    params: StyleParams = FIRST,
    *,
    content: bytes | None = None,
    styles: list[bytes] | None = None,
    init: bytes | None = None,
) -> tuple[list[Progress], Result]:
    reports: list[Progress] = []
    result = stylize(
        content or synthetic_photo(),
        styles or [synthetic_style()],
        params,
        init=init,
        on_progress=reports.append,
        weights=weights,
    )
    return reports, result


def test_the_first_preview_comes_before_the_first_full_size_step(weights: str) -> None:
    reports, _ = _paint(weights)
    first_preview = next(i for i, r in enumerate(reports) if r.preview is not None)
    first_full_size = next(i for i, r in enumerate(reports) if r.scale == 1)
    assert first_preview < first_full_size
    preview = reports[first_preview]
    assert (preview.scale, preview.scales, preview.step) == (0, 2, 3)
    assert preview.preview is not None and preview.preview[:2] == b"\xff\xd8"
    # The quick pass is the one preview: the quarter-way one adds nothing the bot would show.
    assert sum(r.preview is not None for r in reports) == 1
    # Progress counts the quick pass's steps and the painting's, in order, with an ETA.
    steps = [r.step for r in reports]
    assert steps == sorted(steps) and steps[-1] == reports[-1].total_steps == 3 + 6
    assert all(r.eta >= 0 for r in reports) and reports[first_preview].eta > 0


def test_a_warm_start_has_no_quick_pass(weights: str) -> None:
    _, first = _paint(weights)
    reports, _ = _paint(weights, FIRST.replace(strength=4), init=first.image)
    assert {r.scales for r in reports} == {1}
    assert reports[-1].total_steps == FIRST.warm_steps()
    previews = [r for r in reports if r.preview is not None]
    assert [r.step for r in previews] == [max(1, FIRST.warm_steps() // 4)]


def test_cancellation_during_the_quick_pass_stops_within_one_step(weights: str) -> None:
    checks = 0

    def should_cancel() -> bool:
        nonlocal checks
        checks += 1
        return checks > 2

    reports: list[Progress] = []
    with pytest.raises(Cancelled):
        stylize(
            synthetic_photo(),
            [synthetic_style()],
            FIRST.replace(quick_pass_steps=50),
            on_progress=reports.append,
            should_cancel=should_cancel,
            weights=weights,
        )
    assert all(r.scale == 0 for r in reports)
    assert max((r.step for r in reports), default=0) <= 2


def test_planned_megapixel_steps_match_the_run(weights: str) -> None:
    _, result = _paint(weights, content=synthetic_photo(64, 48))
    planned = FIRST.planned_megapixel_steps(aspect=48 / 64)
    assert planned == pytest.approx(3 * 32 * 24 / 1e6 + 6 * 64 * 48 / 1e6)
    assert result.megapixel_steps == pytest.approx(planned, rel=0.02)


def test_no_quick_pass_without_anyone_to_show_it_to(weights: str) -> None:
    """A run without a progress callback (a benchmark, a script) spends nothing on a preview."""
    result = stylize(synthetic_photo(64, 48), [synthetic_style()], FIRST, weights=weights)
    without_quick = FIRST.replace(preview=False).planned_megapixel_steps(aspect=48 / 64)
    assert result.megapixel_steps == pytest.approx(without_quick, rel=0.02)


def test_the_quick_pass_keeps_the_photos_colours(weights: str) -> None:
    content = synthetic_photo(64, 48)
    reports, _ = _paint(weights, FIRST.replace(preserve_colors=True), content=content)
    preview = next(r.preview for r in reports if r.preview is not None)
    assert preview is not None
    with Image.open(io.BytesIO(preview)) as image:
        small = np.asarray(image.convert("RGB").resize((64, 48)), dtype=np.float32)
    chroma = color.rgb_to_yiq(small)[..., 1:]
    content_chroma = color.rgb_to_yiq(decode(content))[..., 1:]
    assert np.abs(chroma).mean() > 5  # not the grey luminance the optimiser paints
    assert np.abs(chroma - content_chroma).mean() < 6  # JPEG and resizing only


def test_the_quick_pass_uses_brush_size_and_blend(
    weights: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sides: list[int] = []
    original = pipeline_module._scaled

    def recording(image: Image.Image, side: int) -> np.ndarray:
        sides.append(side)
        return original(image, side)

    monkeypatch.setattr(pipeline_module, "_scaled", recording)
    params = FIRST.replace(style_scale=2.0, style_blend=(1.0, 3.0))
    reports, _ = _paint(weights, params, styles=[synthetic_style(seed=1), synthetic_style(seed=2)])
    # Content at 32 px, then both styles at 2 x 32 px, before any full-size work.
    assert sides[1:4] == [32, 64, 64]
    assert any(r.preview is not None for r in reports)
    with pytest.raises(ParamsError):  # a blend that does not match fails before any step
        _paint(weights, FIRST.replace(style_blend=(1.0,)), styles=[synthetic_style()] * 2)


def test_the_quick_pass_can_start_the_full_size_scale(weights: str) -> None:
    from engine.pipeline import run_pipeline

    result = run_pipeline(
        synthetic_photo(), [synthetic_style()], FIRST, weights=weights, start_from_quick_pass=True
    )
    assert (result.width, result.height) == (64, 48)
