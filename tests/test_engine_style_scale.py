"""Brush size (`StyleParams.style_scale`, `--style-scale`): the style picture is resized to X
times the working size before its Gram matrices are taken."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine.cli import build_parser, params_from_args
from engine.params import MIN_STYLE_SIDE, ParamsError, StyleParams
from tests.engine_helpers import synthetic_photo, synthetic_style


def test_style_scale_is_validated() -> None:
    assert StyleParams().style_scale == 1.0
    for good in (0.25, 0.5, 1.0, 2.0, 4.0):
        assert StyleParams(style_scale=good).style_scale == good
    for bad in (0.0, 0.2, 4.5, -1.0):
        with pytest.raises(ParamsError, match="style scale"):
            StyleParams(style_scale=bad)
    assert StyleParams.from_dict(StyleParams(style_scale=2.0).to_dict()).style_scale == 2.0


def test_style_side_follows_the_scale_with_a_floor() -> None:
    assert StyleParams(style_scale=2.0).style_side(64) == 128
    assert StyleParams(style_scale=0.5).style_side(128) == 64
    assert StyleParams(style_scale=0.25).style_side(64) == MIN_STYLE_SIDE


def test_cli_flag() -> None:
    parser = build_parser()
    args = parser.parse_args(["c.jpg", "s.jpg", "-o", "out.jpg", "--style-scale", "2"])
    assert params_from_args(args).style_scale == 2.0
    args = parser.parse_args(["c.jpg", "s.jpg", "-o", "out.jpg"])
    assert params_from_args(args).style_scale == 1.0
    assert params_from_args(args).target_loss is None
    args = parser.parse_args(["c.jpg", "s.jpg", "-o", "out.jpg", "--target-loss", "60120"])
    assert params_from_args(args).target_loss == 60120.0


def test_cli_refuses_a_scale_out_of_range(tmp_path: Path) -> None:
    from engine.cli import main

    content, style = tmp_path / "c.png", tmp_path / "s.png"
    content.write_bytes(synthetic_photo(48, 40))
    style.write_bytes(synthetic_style(48, 48))
    code = main([str(content), str(style), "-o", str(tmp_path / "o.jpg"), "--style-scale", "5"])
    assert code == 2


@pytest.mark.parametrize(("scale", "expected"), [(0.5, 32), (1.0, 64), (2.0, 128)])
def test_gram_targets_come_from_the_scaled_style_picture(
    monkeypatch: pytest.MonkeyPatch, test_weights: str, scale: float, expected: int
) -> None:
    pytest.importorskip("tensorflow")
    from engine import objective as objective_module
    from engine.api import stylize

    seen: list[tuple[int, ...]] = []
    original = objective_module.Objective.targets

    def spy(self: Any, content: np.ndarray, styles: Any, blend: Any) -> Any:
        seen.extend(tuple(s.shape) for s in styles)
        return original(self, content, styles, blend)

    monkeypatch.setattr(objective_module.Objective, "targets", spy)
    params = StyleParams(size=64, steps=(2,), style_scale=scale, preview=False)
    result = stylize(
        synthetic_photo(64, 48), [synthetic_style(96, 96)], params, weights=test_weights
    )
    assert (result.width, result.height) == (64, 48)  # the painting keeps its own size
    assert seen and all(max(shape[:2]) == expected for shape in seen), seen


@pytest.mark.slow
def test_a_bigger_brush_paints_bigger_strokes() -> None:
    """The stroke size (autocorrelation half-width of the band-pass luminance, see
    benchmarks/bench_stroke_size.py) grows with the style scale, on trained weights."""
    pytest.importorskip("tensorflow")
    from benchmarks.bench_stroke_size import autocorrelation_half_width
    from engine.api import stylize
    from tests.conftest import shared_file

    weights = shared_file("models", "vgg19_vgg16features_notop.weights.h5")
    content = shared_file("images", "content", "tubingen.jpg").read_bytes()
    style = shared_file("images", "styles", "starry_night.jpg").read_bytes()
    widths = {}
    for scale in (0.5, 2.0):
        params = StyleParams(size=96, strength=4.0, steps=(150,), style_scale=scale, preview=False)
        result = stylize(content, [style], params, weights=str(weights))
        widths[scale] = autocorrelation_half_width(result.image)
    assert widths[2.0] > 1.1 * widths[0.5], widths
