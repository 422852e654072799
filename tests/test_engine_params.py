"""StyleParams: defaults, validation, the strength scale and JSON round trips."""

from __future__ import annotations

import itertools
import math

import pytest

from engine.params import (
    DEFAULT_LBFGS_STEPS,
    REFERENCE_CONTENT_WEIGHT,
    REFERENCE_STYLE_WEIGHT,
    ParamsError,
    StyleParams,
    style_weight_for_strength,
)


def test_middle_strength_is_exactly_the_reference_recipe() -> None:
    params = StyleParams(strength=3)
    assert params.content_weight == REFERENCE_CONTENT_WEIGHT == 1e3
    assert params.effective_style_weight == REFERENCE_STYLE_WEIGHT == 1e-2


def test_reference_preset_is_the_original_objective() -> None:
    ref = StyleParams.reference()
    assert (ref.content_weight, ref.effective_style_weight, ref.tv_weight, ref.size) == (
        1e3,
        1e-2,
        0.0,
        512,
    )
    assert not ref.preserve_colors


def test_strength_moves_the_ratio_on_a_log_scale() -> None:
    ratios = [style_weight_for_strength(s) / REFERENCE_CONTENT_WEIGHT for s in (1, 2, 3, 4, 5)]
    steps = [math.log10(b / a) for a, b in itertools.pairwise(ratios)]
    assert all(step == pytest.approx(0.5) for step in steps)
    assert ratios[0] == pytest.approx(1e-5 / 10) and ratios[-1] == pytest.approx(1e-5 * 10)


def test_explicit_style_weight_overrides_strength() -> None:
    assert StyleParams(strength=5, style_weight=0.5).effective_style_weight == 0.5


@pytest.mark.parametrize(
    "changes",
    [
        {"size": 10},
        {"size": 100_000},
        {"strength": 0},
        {"strength": 6},
        {"optimizer": "sgd"},
        {"scales": 0},
        {"steps": (-1,)},
        {"content_weight": -1.0},
        {"style_blend": (0.0, 0.0)},
        {"target_loss": -1.0},
    ],
)
def test_bad_values_are_refused_with_a_message(changes: dict[str, object]) -> None:
    with pytest.raises(ParamsError) as error:
        StyleParams(**changes)  # type: ignore[arg-type]
    assert str(error.value)


def test_dict_round_trip_and_unknown_keys() -> None:
    params = StyleParams(
        size=128, steps=(5, 3), style_blend=(1.0, 2.0), preserve_colors=True, target_loss=6e4
    )
    assert StyleParams.from_dict(params.to_dict()) == params
    with pytest.raises(ParamsError, match="unknown"):
        StyleParams.from_dict({"sise": 3})


def test_scale_sizes_and_steps_per_scale() -> None:
    params = StyleParams(size=512, scales=3, steps=(10, 20, 30))
    assert params.scale_sizes() == (128, 256, 512)
    assert params.steps_per_scale == (10, 20, 30)
    # As many scales as step counts, at most `scales`, never under min_scale_side.
    assert StyleParams(size=512, steps=(200,)).scale_sizes() == (512,)
    assert StyleParams(size=512, scales=2, steps=(5, 6, 7)).steps_per_scale == (6, 7)
    assert StyleParams(size=96, scales=3, steps=(1, 2, 3), min_scale_side=48).scale_sizes() == (
        48,
        96,
    )


def test_adam_default_is_the_reference_schedule() -> None:
    adam = StyleParams(optimizer="adam")
    assert adam.steps_per_scale == (1000,) and adam.scale_sizes() == (512,)


def test_default_lbfgs_steps_grow_for_smaller_pictures() -> None:
    assert StyleParams(size=512).steps_per_scale == DEFAULT_LBFGS_STEPS
    assert StyleParams(size=512).scale_sizes() == (512,)
    small, large = StyleParams(size=256).steps_per_scale, StyleParams(size=1024).steps_per_scale
    final = DEFAULT_LBFGS_STEPS[-1]
    assert small[-1] > 1.4 * final and 100 <= large[-1] < final
