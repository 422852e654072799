"""The loss functions against values computed by hand on tiny tensors."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from engine import losses  # noqa: E402


def test_gram_matrix_divides_by_positions() -> None:
    # 2x1 positions, 2 channels: F = [[1, 2], [3, 4]]; FᵀF = [[10, 14], [14, 20]]; / (H·W = 2)
    features = tf.constant([[[[1.0, 2.0]], [[3.0, 4.0]]]])
    gram = losses.gram_matrix(features).numpy()
    np.testing.assert_allclose(gram, [[5.0, 7.0], [7.0, 10.0]])


def test_gram_matrix_accepts_unbatched_features() -> None:
    features = tf.constant([[[1.0, 2.0]], [[3.0, 4.0]]])
    np.testing.assert_allclose(losses.gram_matrix(features).numpy(), [[5.0, 7.0], [7.0, 10.0]])


def test_style_loss_is_mean_squared_gram_difference_averaged_over_layers() -> None:
    grams = [tf.constant([[1.0, 2.0], [3.0, 4.0]]), tf.constant([[0.0]])]
    targets = [tf.constant([[1.0, 0.0], [3.0, 0.0]]), tf.constant([[3.0]])]
    # layer 1: (0 + 4 + 0 + 16) / 4 = 5; layer 2: 9; equal weights: (5 + 9) / 2 = 7
    assert float(losses.style_loss(grams, targets)) == pytest.approx(7.0)
    assert float(losses.style_loss(grams, targets, [1.0, 0.0])) == pytest.approx(5.0)


def test_content_loss_is_mean_squared_difference() -> None:
    features = [tf.constant([[[[1.0, 2.0], [3.0, 4.0]]]])]
    targets = [tf.constant([[[[1.0, 0.0], [0.0, 4.0]]]])]
    # (0 + 4 + 9 + 0) / 4
    assert float(losses.content_loss(features, targets)) == pytest.approx(3.25)


def test_total_variation_is_mean_absolute_neighbour_difference() -> None:
    image = tf.constant([[[[0.0], [2.0]], [[4.0], [8.0]]]])  # 2x2, one channel
    # vertical: |4-0|, |8-2| -> mean 5; horizontal: |2-0|, |8-4| -> mean 3
    assert float(losses.total_variation(image)) == pytest.approx(8.0)
    flat = tf.ones([1, 4, 4, 3]) * 7.0
    assert float(losses.total_variation(flat)) == 0.0


def test_losses_match_the_reference_formulas_on_random_features() -> None:
    rng = np.random.default_rng(0)
    features = rng.standard_normal((1, 3, 5, 4)).astype("float32")
    flat = features.reshape(-1, 4)
    expected = flat.T @ flat / 15.0
    np.testing.assert_allclose(
        losses.gram_matrix(tf.constant(features)).numpy(), expected, rtol=1e-5
    )


def test_gram_gradient_matches_automatic_differentiation() -> None:
    rng = np.random.default_rng(1)
    features = tf.constant(rng.standard_normal((1, 4, 5, 3)).astype("float32"))
    upstream = tf.constant(rng.standard_normal((3, 3)).astype("float32"))

    def plain(f):  # type: ignore[no-untyped-def]
        flat = tf.reshape(f, [-1, 3])
        return tf.matmul(flat, flat, transpose_a=True) / 20.0

    for fn in (losses.gram_matrix, plain):
        with tf.GradientTape() as tape:
            tape.watch(features)
            value = tf.reduce_sum(fn(features) * upstream)
        if fn is plain:
            expected = tape.gradient(value, features).numpy()
        else:
            got = tape.gradient(value, features).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_gram_of_bfloat16_features_is_float32_with_a_bfloat16_gradient() -> None:
    """The Gram matrix is summed in float32; its gradient is taken in the features' dtype."""
    rng = np.random.default_rng(2)
    exact = rng.standard_normal((1, 8, 8, 4)).astype("float32")
    features = tf.cast(tf.constant(exact), tf.bfloat16)
    upstream = tf.constant(rng.standard_normal((4, 4)).astype("float32"))
    with tf.GradientTape() as tape:
        tape.watch(features)
        gram = losses.gram_matrix(features)
        value = tf.reduce_sum(gram * upstream)
    gradient = tape.gradient(value, features)
    assert gram.dtype == tf.float32 and gradient.dtype == tf.bfloat16
    rounded = tf.cast(features, tf.float32).numpy().reshape(-1, 4)
    np.testing.assert_allclose(gram.numpy(), rounded.T @ rounded / 64.0, rtol=1e-5, atol=1e-6)
    symmetric = (upstream.numpy() + upstream.numpy().T) / 64.0
    expected = (rounded @ symmetric).reshape(exact.shape)
    np.testing.assert_allclose(
        tf.cast(gradient, tf.float32).numpy(), expected, rtol=2e-2, atol=2e-3
    )
