"""The style-transfer objective, compiled once per process and reused for every job.

The optimisation variable is the picture itself in RGB 0–255; VGG preprocessing (RGB→BGR,
ImageNet means) happens inside the graph, so pixel bounds are simply [0, 255] — the same box
as the reference's clipping to the VGG range. The compiled functions take every target as an
argument and have unknown spatial sizes in their signatures: one trace per extractor (with
the Winograd convolutions, one per tile: engine/winograd.py) serves all sizes and aspect
ratios, and a worker's warm-up makes them all, so a warm worker never stalls to recompile.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from engine import losses, winograd
from engine.model import get_extractor

VGG_MEANS_BGR = (103.939, 116.779, 123.68)
Tensor = Any


def preprocess(rgb: Tensor) -> Tensor:
    """[1, H, W, 3] RGB in 0–255 → VGG input (BGR minus the ImageNet means)."""
    return rgb[..., ::-1] - tf.constant(VGG_MEANS_BGR, dtype=rgb.dtype)


@dataclass(frozen=True)
class Targets:
    grams: tuple[Tensor, ...]
    content: tuple[Tensor, ...]


@dataclass(frozen=True)
class LossParts:
    total: float
    style: float
    content: float
    tv: float

    def as_dict(self) -> dict[str, float]:
        return {"total": self.total, "style": self.style, "content": self.content, "tv": self.tv}


class Objective:
    """Loss and gradient of content_weight·content + style_weight·style + tv_weight·tv."""

    def __init__(
        self,
        weights: str | None,
        style_layers: Sequence[str],
        content_layers: Sequence[str],
        *,
        mixed_precision: bool = False,
    ) -> None:
        self.style_layers = tuple(style_layers)
        self.content_layers = tuple(content_layers)
        self.mixed_precision = mixed_precision
        precision = "mixed_bfloat16" if mixed_precision else "float32"
        self._layers = self.style_layers + self.content_layers
        self._keras_model = get_extractor(weights, self._layers, precision)
        # In bfloat16 on a CPU the 3×3 convolutions run by Winograd where its ops build
        # (engine/winograd.py): ~0.6 of the direct convolutions' time, the same objective;
        # the tile depends on the picture's size (winograd.tile_for).
        self.winograd = False
        self._ops: Any = None
        # FᵀF / N of bfloat16 features in float32 at the bfloat16 rate, where the native op built.
        self._gram_product: Callable[[Tensor], Tensor] | None = None
        if mixed_precision and not tf.config.list_physical_devices("GPU"):  # CPU-only ops
            self._ops = winograd.load_ops()
            if self._ops is not None:
                self.winograd = True
                self._gram_product = winograd.gram_product(self._ops)
        # By extractor (a Winograd tile, or 0: the Keras model's direct convolutions): the
        # compiled features and loss-and-gradient functions, made on first use (a worker's
        # warm-up makes them all; a command-line painting only its own size's).
        self._compiled: dict[int, tuple[Any, Any]] = {}

    def _keys(self) -> tuple[int, ...]:
        """Every extractor a picture may need."""
        return winograd.TILES if self.winograd else (0,)

    def _key(self, picture: np.ndarray) -> int:
        """Which extractor computes an (H, W, 3) picture."""
        return winograd.tile_for(picture.shape[0], picture.shape[1]) if self.winograd else 0

    def _functions(self, key: int) -> tuple[Any, Any]:
        """The compiled (features, loss and gradient) functions of one extractor."""
        if key not in self._compiled:
            extractor = self._keras_model
            if key:
                extractor = winograd.WinogradVGG(self._ops, self._keras_model, self._layers, key)
            image = tf.TensorSpec([1, None, None, 3], tf.float32)
            grams = tuple(tf.TensorSpec([None, None], tf.float32) for _ in self.style_layers)
            contents = tuple(
                tf.TensorSpec([1, None, None, None], tf.float32) for _ in self.content_layers
            )
            scalar = tf.TensorSpec([], tf.float32)
            features = tf.function(
                functools.partial(self._features_graph, extractor),
                input_signature=[image],
                autograph=False,
            )
            loss_and_grad = tf.function(
                functools.partial(self._loss_and_grad_graph, extractor),
                input_signature=[image, grams, contents, scalar, scalar, scalar],
                autograph=False,
            )
            self._compiled[key] = (features, loss_and_grad)
        return self._compiled[key]

    # -- graphs ----------------------------------------------------------------------------
    def _features_graph(
        self, extractor: Any, rgb: Tensor
    ) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
        style, content = self._computed_features(extractor, rgb)
        return tuple(tf.cast(f, tf.float32) for f in style), content

    def _computed_features(
        self, extractor: Any, rgb: Tensor
    ) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
        """Style features in the convolutions' dtype (the Gram matrix takes them as they
        are, see losses.gram_matrix) and content features in float32."""
        if self.winograd:
            # VGG's RGB→BGR flip folded into the first layer's kernel (WinogradVGG.rgb_order).
            outputs = extractor.rgb_order(rgb - tf.constant(VGG_MEANS_BGR[::-1], rgb.dtype))
        else:
            outputs = extractor(preprocess(rgb), training=False)
        n = len(self.style_layers)
        content = tuple(tf.cast(o, tf.float32) for o in outputs[n:])
        return tuple(outputs[:n]), content

    def _loss_and_grad_graph(
        self,
        extractor: Any,
        rgb: Tensor,
        gram_targets: tuple[Tensor, ...],
        content_targets: tuple[Tensor, ...],
        content_weight: Tensor,
        style_weight: Tensor,
        tv_weight: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        with tf.GradientTape() as tape:
            tape.watch(rgb)
            style_features, content_features = self._computed_features(extractor, rgb)
            grams = [losses.gram_matrix(f, self._gram_product) for f in style_features]
            style = losses.style_loss(grams, gram_targets)
            content = losses.content_loss(content_features, content_targets)
            # Skipped when unweighted (the default): it costs ~3 % of a 512 px step otherwise.
            tv = tf.cond(
                tv_weight > 0.0,
                lambda: losses.total_variation(rgb),
                lambda: tf.constant(0.0, tf.float32),
            )
            total = content_weight * content + style_weight * style + tv_weight * tv
        gradient = tape.gradient(total, rgb)
        return total, gradient, style_weight * style, content_weight * content, tv_weight * tv

    # -- public ------------------------------------------------------------------------------
    def targets(
        self, content_rgb: np.ndarray, style_rgbs: Sequence[np.ndarray], blend: Sequence[float]
    ) -> Targets:
        """Content features and the blended style Gram matrices (each style at its own size)."""
        features, _ = self._functions(self._key(content_rgb))  # the painting's own extractor
        _, content = features(tf.constant(content_rgb[None], tf.float32))
        total = float(sum(blend))
        grams: list[Tensor] | None = None
        for style_rgb, weight in zip(style_rgbs, blend, strict=True):
            style_features, _ = features(tf.constant(style_rgb[None], tf.float32))
            layer_grams = [losses.gram_matrix(f) * (weight / total) for f in style_features]
            grams = (
                layer_grams
                if grams is None
                else [a + b for a, b in zip(grams, layer_grams, strict=True)]
            )
        assert grams is not None
        return Targets(tuple(grams), tuple(content))

    def warm_up(self) -> None:
        """Trace every compiled function once on a tiny picture (each Winograd tile's too, so
        that neither a small nor a large first job waits for a trace)."""
        tiny = tf.constant(np.full((1, 64, 64, 3), 128.0, np.float32))
        one, zero = tf.constant(1.0, tf.float32), tf.constant(0.0, tf.float32)
        for key in self._keys():
            features, loss_and_grad = self._functions(key)
            style, content = features(tiny)
            grams = tuple(losses.gram_matrix(f) for f in style)
            loss_and_grad(tiny, grams, content, one, one, zero)

    def evaluate(
        self,
        image: np.ndarray,
        targets: Targets,
        content_weight: float,
        style_weight: float,
        tv_weight: float,
    ) -> tuple[LossParts, np.ndarray]:
        """Loss parts and the gradient for an HxWx3 RGB float image."""
        _, loss_and_grad = self._functions(self._key(image))
        total, gradient, style, content, tv = loss_and_grad(
            tf.constant(image[None], tf.float32),
            targets.grams,
            targets.content,
            tf.constant(content_weight, tf.float32),
            tf.constant(style_weight, tf.float32),
            tf.constant(tv_weight, tf.float32),
        )
        parts = LossParts(float(total), float(style), float(content), float(tv))
        return parts, gradient.numpy()[0]


_objectives: dict[tuple[Any, ...], Objective] = {}


def get_objective(
    weights: str | None,
    style_layers: Sequence[str],
    content_layers: Sequence[str],
    *,
    mixed_precision: bool = False,
) -> Objective:
    """One compiled objective per (weights, layers, precision), kept for the life of the process."""
    key = (weights, tuple(style_layers), tuple(content_layers), mixed_precision)
    if key not in _objectives:
        _objectives[key] = Objective(
            weights, style_layers, content_layers, mixed_precision=mixed_precision
        )
    return _objectives[key]
