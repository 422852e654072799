"""Winograd F(2×2, 3×3) and F(3×3, 3×3) convolutions (engine/winograd.py) against direct ones."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from engine import losses, winograd  # noqa: E402
from engine import objective as objective_module  # noqa: E402
from engine.model import get_extractor  # noqa: E402
from engine.params import CONTENT_LAYERS, STYLE_LAYERS  # noqa: E402
from tests.conftest import shared_file  # noqa: E402

LAYERS = STYLE_LAYERS + CONTENT_LAYERS


@pytest.fixture(scope="module")
def ops() -> Any:
    built = winograd.load_ops()
    if built is None:
        pytest.skip("the Winograd ops could not be built here (no C++ compiler?)")
    return built


def relative_error(value: Any, reference: Any) -> float:
    value = tf.cast(value, tf.float32)
    return float(tf.norm(value - reference) / tf.norm(reference))


@pytest.mark.parametrize("tile", [2, 3])
@pytest.mark.parametrize("height, width", [(8, 8), (7, 9), (6, 5), (11, 10), (2, 3), (1, 1)])
def test_winograd_convolution_and_its_gradient_match_the_direct_ones(
    ops: Any, height: int, width: int, tile: int
) -> None:
    rng = np.random.default_rng(height * 10 + width)
    x = rng.standard_normal((height, width, 16)).astype(np.float32)
    kernel = rng.standard_normal((3, 3, 16, 8)).astype(np.float32)
    bias = rng.standard_normal(8).astype(np.float32)
    upstream = rng.standard_normal((height, width, 8)).astype(np.float32)

    x_bf16 = tf.constant(x, tf.bfloat16)
    with tf.GradientTape() as tape:
        tape.watch(x_bf16)
        y = winograd.conv3x3_relu(
            ops,
            x_bf16,
            winograd.filters(kernel, tile),
            tf.constant(bias),
            kernel=tf.constant(kernel, tf.bfloat16),
            direct_bias=tf.constant(bias, tf.bfloat16),
            tile=tile,
        )
        value = tf.reduce_sum(tf.cast(y, tf.float32) * upstream)
    gradient = tape.gradient(value, x_bf16)

    # float32 reference; its gradient through the ReLU mask of the Winograd output, since an
    # output within bfloat16's rounding of 0 may land on either side of the ReLU.
    mask = tf.cast(tf.cast(y, tf.float32) > 0, tf.float32)
    x32 = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x32)
        pre_activation = tf.nn.conv2d(x32[None], kernel, 1, "SAME")[0] + bias
        value_exact = tf.reduce_sum(pre_activation * mask * upstream)
    gradient_exact = tape.gradient(value_exact, x32)
    y_exact = tf.nn.relu(pre_activation)

    assert y.shape == y_exact.shape and y.dtype == tf.bfloat16
    assert float(tf.reduce_min(tf.cast(y, tf.float32))) >= 0.0  # the fused ReLU
    # bfloat16 rounding on random data: the direct bfloat16 convolution is off by ~3e-3,
    # F(2×2) by ~5e-3 and F(3×3) by 1.0–2.0e-2 (on VGG's trained features, 1.5× F(2×2)'s
    # error, see the objective tests below); a wrong transform is off by ~1.
    tolerance = {2: 2e-2, 3: 4e-2}[tile]
    assert relative_error(y, y_exact) < tolerance
    assert relative_error(gradient, gradient_exact) < tolerance


@pytest.mark.parametrize("rows, channels", [(1, 64), (7, 128), (2001, 64), (300, 512)])
def test_the_native_gram_matrix_is_the_float32_one(ops: Any, rows: int, channels: int) -> None:
    product = winograd.gram_product(ops)
    if product is None:
        pytest.skip("the bfloat16 Gram op is only built for CPUs with AVX512-BF16")
    rng = np.random.default_rng(rows)
    features = tf.constant(np.maximum(rng.standard_normal((rows, channels)), 0), tf.bfloat16)
    exact = tf.cast(features, tf.float32)
    expected = tf.matmul(exact, exact, transpose_a=True) / rows
    got = product(features)
    assert got.dtype == tf.float32 and got.shape == (channels, channels)
    # The same products summed in float32 in another order; bfloat16 output would be ~2e-3.
    assert relative_error(got, expected) < 1e-5
    np.testing.assert_array_equal(got.numpy(), got.numpy().T)

    # Through the loss's Gram: the same value and the same gradient as without the op.
    nhwc = tf.reshape(features, [1, rows, 1, channels])
    values, gradients = [], []
    for chosen in (product, None):
        with tf.GradientTape() as tape:
            tape.watch(nhwc)
            gram = losses.gram_matrix(nhwc, chosen)
            loss = tf.reduce_sum(tf.square(gram - 0.1))
        values.append(gram)
        gradients.append(tape.gradient(loss, nhwc))
    assert relative_error(values[0], values[1]) < 1e-5
    assert relative_error(gradients[0], tf.cast(gradients[1], tf.float32)) < 1e-2


@pytest.mark.parametrize("tile", winograd.TILES)
def test_the_winograd_vgg_gives_the_keras_extractors_features(
    ops: Any, test_weights: str, tile: int
) -> None:
    keras_model = get_extractor(test_weights, LAYERS, "mixed_bfloat16")
    vgg = winograd.WinogradVGG(ops, keras_model, LAYERS, tile)
    rng = np.random.default_rng(0)
    picture = tf.constant(rng.uniform(-120, 130, (1, 45, 62, 3)), tf.float32)
    expected = keras_model(picture, training=False)
    got = vgg(picture)
    assert [tuple(g.shape) for g in got] == [tuple(e.shape) for e in expected]
    for g, e in zip(got, expected, strict=True):
        assert relative_error(g, tf.cast(e, tf.float32)) < 5e-2
    # The same picture with its channels in RGB order: the flip folded into the first kernel.
    for g, r in zip(got, vgg.rgb_order(picture[..., ::-1]), strict=True):
        assert relative_error(r, tf.cast(g, tf.float32)) < 1e-2


def test_layers_over_the_tile_budget_run_direct_with_the_same_features(
    ops: Any, test_weights: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    keras_model = get_extractor(test_weights, LAYERS, "mixed_bfloat16")
    picture = tf.constant(np.random.default_rng(2).uniform(-120, 130, (1, 37, 50, 3)), tf.float32)
    expected = keras_model(picture, training=False)
    # The budget of block3_conv1's tiles (9×12 px, 128 → 256 channels): blocks 3–5 by Winograd.
    block3 = winograd._tile_bytes(tf.zeros([9, 12, 128]), tf.zeros([1, 128, 256]), 3)
    monkeypatch.setattr(winograd, "TILE_BUDGET_BYTES", int(block3))
    mixed = winograd.WinogradVGG(ops, keras_model, LAYERS, 3)(picture)
    monkeypatch.setattr(winograd, "TILE_BUDGET_BYTES", 0)  # every layer direct
    direct = winograd.WinogradVGG(ops, keras_model, LAYERS, 3)(picture)
    for m, d, e in zip(mixed, direct, expected, strict=True):
        assert relative_error(m, tf.cast(e, tf.float32)) < 5e-2
        assert relative_error(d, tf.cast(e, tf.float32)) < 1e-2  # both oneDNN's, same rounding


def loss_and_gradients(
    weights: str, monkeypatch: pytest.MonkeyPatch, tile: int
) -> dict[str, tuple[float, np.ndarray]]:
    """One evaluation at 40×52 in float32, direct bfloat16 and Winograd bfloat16 by F(tile, 3)."""
    monkeypatch.setattr(winograd, "LARGE_TILE_MIN_SIDE", 0 if tile == 3 else 10**6)
    rng = np.random.default_rng(1)
    content = rng.uniform(0, 255, (40, 52, 3)).astype(np.float32)
    style = rng.uniform(0, 255, (48, 37, 3)).astype(np.float32)
    start = np.clip(content + rng.normal(0, 20, content.shape), 0, 255).astype(np.float32)
    results = {}
    for name, mixed, switch in (
        ("float32", False, "0"),
        ("direct", True, "0"),
        ("winograd", True, "1"),
    ):
        monkeypatch.setenv(winograd.ENV_SWITCH, switch)
        monkeypatch.setattr(winograd, "_ops", {})
        objective = objective_module.Objective(
            weights, STYLE_LAYERS, CONTENT_LAYERS, mixed_precision=mixed
        )
        assert objective.winograd is (name == "winograd")
        targets = objective.targets(content, [style], (1.0,))
        parts, gradient = objective.evaluate(start, targets, 1e3, 1e-2, 0.0)
        results[name] = (parts.total, gradient)
    return results


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sum(a * b) / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.parametrize("tile", winograd.TILES)
def test_the_objective_runs_winograd_in_bfloat16_on_the_same_objective(
    ops: Any, test_weights: str, monkeypatch: pytest.MonkeyPatch, tile: int
) -> None:
    results = loss_and_gradients(test_weights, monkeypatch, tile)
    loss, gradient = results["float32"]
    # Random weights are bfloat16's worst case (measured: direct 0.6 % off in the loss, gradient
    # cosine 0.96; Winograd F(3×3) 2.2 %, 0.86, F(2×2) 2.9 %, 0.93); a wiring mistake would be
    # far off (cosine near 0). F(2×2) keeps the bound it had before F(3×3) came.
    assert results["winograd"][0] == pytest.approx(loss, rel=6e-2)
    assert cosine(results["winograd"][1], gradient) > {2: 0.85, 3: 0.75}[tile]


@pytest.mark.parametrize("tile", winograd.TILES)
def test_with_trained_features_winograd_is_as_close_to_float32_as_direct_bfloat16(
    ops: Any, monkeypatch: pytest.MonkeyPatch, tile: int
) -> None:
    weights = str(shared_file("models", "vgg19_vgg16features_notop.weights.h5"))
    results = loss_and_gradients(weights, monkeypatch, tile)
    loss, gradient = results["float32"]
    # Measured: direct 0.25 % off in the loss and cosine 0.9987, Winograd F(3×3) 0.38 % and
    # 0.9977 (F(2×2): 0.29 %, 0.9986).
    for name in ("direct", "winograd"):
        assert results[name][0] == pytest.approx(loss, rel=1e-2)
        assert cosine(results[name][1], gradient) > 0.995


def test_the_tile_follows_the_pictures_size() -> None:
    assert winograd.tile_for(384, 512) == winograd.tile_for(640, 480) == 3
    assert winograd.tile_for(192, 256) == winograd.tile_for(511, 300) == 2


def test_the_warm_up_traces_each_tiles_functions_once(
    ops: Any, test_weights: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(winograd.ENV_SWITCH, "1")
    objective = objective_module.Objective(
        test_weights, STYLE_LAYERS, CONTENT_LAYERS, mixed_precision=True
    )
    assert objective.winograd
    objective.warm_up()
    assert set(objective._compiled) == set(winograd.TILES)
    compiled = [f for pair in objective._compiled.values() for f in pair]
    assert [f.experimental_get_tracing_count() for f in compiled] == [1] * len(compiled)
    # A job of another size, on either side of the tiles' threshold, traces nothing new.
    monkeypatch.setattr(winograd, "LARGE_TILE_MIN_SIDE", 60)
    for picture in (np.full((40, 52, 3), 90.0, np.float32), np.full((48, 61, 3), 90.0, np.float32)):
        targets = objective.targets(picture, [picture], (1.0,))
        objective.evaluate(picture, targets, 1.0, 1.0, 0.0)
    assert [f.experimental_get_tracing_count() for f in compiled] == [1] * len(compiled)


def test_without_a_compiler_the_engine_keeps_the_direct_convolutions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # nothing built there yet
    monkeypatch.setattr(winograd, "_ops", {})
    assert winograd.load_ops() is None
    assert "direct ones" in caplog.text
    assert not list(tmp_path.rglob("*.so"))


def test_the_switch_turns_winograd_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(winograd, "_ops", {})
    for value in ("0", "off", "false"):
        monkeypatch.setenv(winograd.ENV_SWITCH, value)
        assert not winograd.enabled()
    monkeypatch.setenv(winograd.ENV_SWITCH, "1")
    assert winograd.enabled()


@pytest.fixture(autouse=True)
def _fresh_objectives() -> Iterator[None]:
    """Objectives are cached per process; these tests build their own."""
    yield
    objective_module._objectives.clear()
