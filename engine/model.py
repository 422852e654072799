"""The VGG19 feature extractor: built once per process, cached, truncated after the deepest layer.

Weights: "imagenet" (Keras downloads and caches them once), "random" (a seeded He-normal
initialisation, for tests on machines without the file) or a path to a Keras weights file.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine.errors import EngineError

WEIGHTS_ENV = "STYLEBOT_WEIGHTS"
RANDOM_SEED = 1234

_cache: dict[tuple[str, tuple[str, ...], str], Any] = {}
_lock = threading.Lock()


class WeightsError(EngineError):
    """The VGG19 weights could not be loaded."""


def resolve_weights(weights: str | None = None) -> str:
    """The weights to use: the argument, else $STYLEBOT_WEIGHTS, else "imagenet"."""
    chosen = (weights or os.environ.get(WEIGHTS_ENV, "") or "imagenet").strip()
    if chosen not in ("imagenet", "random") and not Path(chosen).is_file():
        raise WeightsError(f"weights file not found: {chosen}")
    return chosen


def _build_vgg19(weights: str, precision: str) -> Any:
    import keras

    if precision != "float32":
        # Keras builds layers with the global policy; restore it so nothing else is affected.
        previous = keras.config.dtype_policy()
        keras.config.set_dtype_policy(precision)
        try:
            return _build_vgg19(weights, "float32")
        finally:
            keras.config.set_dtype_policy(previous)
    if weights == "random":
        vgg = keras.applications.VGG19(include_top=False, weights=None)
        _seeded_he_init(vgg)
        return vgg
    try:
        return keras.applications.VGG19(include_top=False, weights=weights)
    except Exception as error:  # download failures come as many types (URLError, OSError...)
        if weights == "imagenet":
            raise WeightsError(
                "could not download the ImageNet VGG19 weights (no internet?): set "
                f"{WEIGHTS_ENV} to a local .weights.h5 file, or run once where the internet is reachable"
            ) from error
        raise WeightsError(f"could not load weights from {weights}: {error}") from error


def _seeded_he_init(vgg: Any) -> None:
    """He-normal kernels and zero biases from one seeded stream (same recipe as the shared file)."""
    import numpy as np

    rng = np.random.RandomState(RANDOM_SEED)
    for layer in vgg.layers:
        if layer.__class__.__name__ != "Conv2D":
            continue
        kernel, bias = layer.get_weights()
        fan_in = kernel.shape[0] * kernel.shape[1] * kernel.shape[2]
        kernel = (rng.standard_normal(kernel.shape) * np.sqrt(2.0 / fan_in)).astype("float32")
        layer.set_weights([kernel, np.zeros_like(bias)])


def get_extractor(
    weights: str | None = None, layers: Sequence[str] = (), precision: str = "float32"
) -> Any:
    """A Keras model mapping a preprocessed BGR batch to the outputs of `layers`, in order.

    Layers after the deepest one requested are never computed. Cached per process.
    `precision` "mixed_bfloat16" computes convolutions in bfloat16 (weights stay float32).
    """
    resolved = resolve_weights(weights)
    key = (resolved, tuple(layers), precision)
    with _lock:
        if key not in _cache:
            import keras

            vgg = _build_vgg19(resolved, precision)
            vgg.trainable = False
            outputs = [vgg.get_layer(name).output for name in layers]
            _cache[key] = keras.Model(vgg.input, outputs, name="vgg19_features")
        return _cache[key]
