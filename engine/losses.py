"""The objective of Gatys et al., as pure functions of tensors (no state, no model).

Conventions match the reference recipe: Gram = FᵀF / (H·W) per layer; style loss = mean
squared Gram difference, averaged over layers (or weighted); content loss = mean squared
feature difference averaged over content layers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import tensorflow as tf

Tensor = Any


def gram_matrix(features: Tensor, product: Callable[[Tensor], Tensor] | None = None) -> Tensor:
    """[1, H, W, C] or [H, W, C] features → [C, C] float32 Gram matrix divided by H·W.

    `product`, for bfloat16 features: a function of the [N, C] features giving FᵀF / N in
    float32 for C a multiple of 64 (the engine's native op, engine/native/gram_op.cc: the same
    sums at the bfloat16 rate); otherwise a float32 matrix product.
    """
    channels = tf.shape(features)[-1]
    flat = tf.reshape(features, [-1, channels])

    @tf.custom_gradient  # type: ignore[untyped-decorator]
    def gram(flat: Tensor) -> tuple[Tensor, Any]:
        """FᵀF / N in float32 for [N, C] features (float32 or bfloat16), one-matmul gradient.

        Automatic differentiation of FᵀF runs two [N, C]×[C, C] products (one per operand)
        and adds them; since FᵀF is symmetric, d/dF of ⟨U, FᵀF⟩ is F·(U + Uᵀ): one product.
        That product is taken in the features' own dtype: with bfloat16 features it runs at
        twice the float32 rate and needs no cast (~4 % of a 512 px step, the loss after 150
        evaluations unchanged). The Gram matrix itself stays float32: each entry sums H·W
        products, and rounding it to bfloat16 measured 0.5 % worse (docs/ARCHITECTURE.md,
        "Engine choices").
        """
        positions = tf.cast(tf.shape(flat)[0], tf.float32)

        def in_float32() -> Tensor:
            exact = tf.cast(flat, tf.float32)
            return tf.matmul(exact, exact, transpose_a=True) / positions

        if product is None or flat.dtype != tf.bfloat16:
            value = in_float32()
        else:
            value = tf.cond(channels % 64 == 0, lambda: product(flat), in_float32)

        def gradient(upstream: Tensor) -> Tensor:
            symmetric = (upstream + tf.transpose(upstream)) / positions
            return tf.matmul(flat, tf.cast(symmetric, flat.dtype))

        return value, gradient

    return gram(flat)


def style_loss(
    grams: Sequence[Tensor], targets: Sequence[Tensor], layer_weights: Sequence[float] | None = None
) -> Tensor:
    """Weighted sum over layers of the mean squared Gram difference (equal weights: the mean)."""
    weights = layer_weights or [1.0 / len(grams)] * len(grams)
    terms = [
        w * tf.reduce_mean(tf.square(g - t))
        for w, g, t in zip(weights, grams, targets, strict=True)
    ]
    return tf.add_n(terms)


def content_loss(features: Sequence[Tensor], targets: Sequence[Tensor]) -> Tensor:
    """Mean over content layers of the mean squared feature difference."""
    terms = [tf.reduce_mean(tf.square(f - t)) for f, t in zip(features, targets, strict=True)]
    return tf.add_n(terms) / float(len(terms))


def total_variation(image: Tensor) -> Tensor:
    """Mean absolute difference between neighbouring pixels (per pixel and channel, 0–255 scale)."""
    dy = image[:, 1:, :, :] - image[:, :-1, :, :]
    dx = image[:, :, 1:, :] - image[:, :, :-1, :]
    return tf.reduce_mean(tf.abs(dy)) + tf.reduce_mean(tf.abs(dx))
