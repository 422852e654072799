"""VGG19's 3×3 convolutions by Winograd's F(m×m, 3×3) in bfloat16, for CPUs with native bfloat16.

oneDNN's direct bfloat16 convolutions already run at this CPU's bfloat16 matrix-product rate,
so a faster step needs fewer multiplications: F(3×3, 3×3) computes each 3×3 output tile with 25
instead of 81, F(2×2, 3×3) each 2×2 tile with 16 instead of 36, as (m+2)² matrix products
[tiles × C]·[C × K] that TensorFlow runs at that same rate. F(3×3) runs for pictures from
LARGE_TILE_MIN_SIDE px, F(2×2) below (see `tile_for`). The tile transforms around the products
are four small C++ ops (engine/native/winograd_ops.cc), compiled on first use with g++ and the
flags TensorFlow reports, and cached; the same library holds the style loss's bfloat16 Gram
matrix (engine/native/gram_op.cc, see `gram_product`). Measured at 512×384 on a Zen 4 CPU: one
loss+gradient evaluation takes 0.45 s with F(3×3), 0.53 s with F(2×2) and 0.76 s with direct
convolutions; 0.41 s with F(3×3) and the Gram op (docs/ARCHITECTURE.md, "Winograd
convolutions").

Without a compiler, or if the build fails, `load_ops` returns None and the engine keeps the
direct convolutions and float32 Gram matrices (same objective, slower step).
STYLEBOT_WINOGRAD=0 turns both off.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

log = logging.getLogger(__name__)

ENV_SWITCH = "STYLEBOT_WINOGRAD"
# The engine's native ops, built into one library: the Winograd transforms, and the bfloat16
# Gram matrix (only where the compiler targets AVX512-BF16; see `gram_product`).
SOURCES = tuple(Path(__file__).with_name("native") / n for n in ("winograd_ops.cc", "gram_op.cc"))
# G of F(m, 3) (Lavin & Gray, 2016) by output tile size m: the filter transform U = G·g·Gᵀ, done
# once per layer. F(3, 3) interpolates at 0, 1, −1, −2 (and ∞), as winograd_ops.cc's Bᵀ and Aᵀ.
FILTER_TRANSFORMS = {
    2: np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]]),
    3: np.array(
        [
            [-1 / 2, 0, 0],
            [1 / 6, 1 / 6, 1 / 6],
            [1 / 2, -1 / 2, 1 / 2],
            [-1 / 6, 1 / 3, -2 / 3],
            [0, 0, 1],
        ]
    ),
}
# The tile for a picture: F(3×3, 3×3) needs 0.69 of F(2×2, 3×3)'s products, but its error in
# bfloat16 is ~1.5× F(2×2)'s (gradient cosine to float32 0.998 against 0.9987). At 512 px that
# costs ~5 % more evaluations to the recipe's loss for ~13 % faster ones, so F(3×3) from
# LARGE_TILE_MIN_SIDE px on; at 256 px, where a painting runs longer into convergence, it cost
# far more (251 steps with it ended 2.3 % above the recipe's loss; 226 steps with F(2×2) end
# 0.1–0.6 % under), so F(2×2) below (docs/ARCHITECTURE.md, "Winograd convolutions").
TILES = (2, 3)
LARGE_TILE_MIN_SIDE = 512


def tile_for(height: int, width: int) -> int:
    """The Winograd tile for a picture of this size."""
    return 3 if max(height, width) >= LARGE_TILE_MIN_SIDE else 2


# A layer whose transformed tiles ((m + 2)² per m×m output tile, bfloat16, the wider of its
# input and output channels) would take more than this runs direct instead: the tiles are ~3×
# the activations, and at 1024–2048 px the first blocks' would add gigabytes to a job's peak
# memory for a few percent of its speed. At 512 px every layer is under it.
TILE_BUDGET_BYTES = 128 * 2**20

_lock = threading.Lock()
_ops: dict[str, Any] = {}


def enabled() -> bool:
    """False when STYLEBOT_WINOGRAD is 0/false/no/off."""
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "no", "off")


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "stylebot"


def _cpu_signature() -> str:
    """The machine type and its CPU's feature flags (Linux), which -march=native builds for."""
    flags = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                flags = line
                break
    return f"{os.uname().machine} {flags}"


def _build(target: Path) -> None:
    """Compile SOURCES into `target` (written to a temporary name, then renamed: another
    process building at the same time never loads half a file)."""
    compiler = os.environ.get("CXX") or "g++"
    if shutil.which(compiler) is None:
        raise RuntimeError(f"no C++ compiler ({compiler})")
    flags = tf.sysconfig.get_compile_flags() + tf.sysconfig.get_link_flags()
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    command = [compiler, "-shared", "-fPIC", "-O3", "-w", *map(str, SOURCES), "-o", temporary]
    command += ["-march=native", *flags]  # AVX-512 where this CPU has it
    try:
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=600)
        os.replace(temporary, target)
    except subprocess.CalledProcessError as error:
        raise RuntimeError(f"compiling the native ops failed: {error.stderr[-2000:]}") from error
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def load_ops() -> Any | None:
    """The compiled transform ops (built once per machine and TensorFlow version), or None."""
    with _lock:
        if "ops" in _ops:
            return _ops["ops"]
        ops = None
        if enabled():
            # -march=native: a library is only loaded on the kind of CPU it was built for.
            key = hashlib.sha256(
                b"".join(source.read_bytes() for source in SOURCES)
                + tf.__version__.encode()
                + _cpu_signature().encode()
            ).hexdigest()[:16]
            target = _cache_dir() / f"winograd_ops-{key}.so"
            try:
                if not target.exists():
                    _build(target)
                ops = tf.load_op_library(str(target))
            except Exception as error:  # no compiler, no headers, a read-only home...
                log.warning("Winograd convolutions unavailable, using direct ones: %s", error)
        _ops["ops"] = ops
        return ops


def gram_product(ops: Any) -> Callable[[Any], Any] | None:
    """FᵀF / N in float32 of [N, C] bfloat16 features (C a multiple of 64) by the native op,
    or None where it was not built (a compiler that does not target AVX512-BF16)."""
    return getattr(ops, "gram_bf16", None)


def filters(kernel: np.ndarray, tile: int) -> Any:
    """[3, 3, C, K] kernel → [n², C, K] bfloat16 transformed filters of F(tile, 3), n = tile + 2
    (computed in float64: in float32, or by TensorFlow's einsum, the random-weights objective
    measured 4.6 % and 6.8 % off float32 instead of 2.2 %)."""
    g = FILTER_TRANSFORMS[tile]
    transformed = np.einsum("ai,ijck,bj->abck", g, kernel.astype(np.float64), g)
    return tf.constant(transformed.reshape(len(g) ** 2, *kernel.shape[2:]), tf.bfloat16)


def conv3x3_relu(
    ops: Any, x: Any, transformed: Any, bias: Any, kernel: Any, direct_bias: Any, tile: int
) -> Any:
    """ReLU(3×3 'SAME' convolution of [H, W, C] bfloat16 + bias): by Winograd's F(tile, 3), the
    [n², C, K] `transformed` filters (see `filters`) and float32 `bias` fused into the output
    transform; or, when the
    picture's tiles exceed TILE_BUDGET_BYTES, by oneDNN's direct convolution with the
    [3, 3, C, K] `kernel` and `direct_bias` (bfloat16). Decided in the graph, since the
    objective is traced once for every size. The gradient goes to x only."""

    @tf.custom_gradient  # type: ignore[untyped-decorator]
    def convolve(x: Any) -> tuple[Any, Any]:
        size = tf.shape(x)[:2]
        use_winograd = _tile_bytes(x, transformed, tile) <= TILE_BUDGET_BYTES
        y = tf.cond(
            use_winograd,
            lambda: ops.winograd_output(
                tf.matmul(ops.winograd_input(x, tile=tile), transformed), bias, size, tile=tile
            ),
            lambda: _direct_relu(x, kernel, direct_bias),
        )

        def gradient(upstream: Any) -> Any:
            dy = tf.cast(upstream, tf.bfloat16)

            def winograd_backward() -> Any:
                tiles = ops.winograd_output_adjoint(dy, y, tile=tile)
                back = tf.matmul(tiles, transformed, transpose_b=True)
                return ops.winograd_input_adjoint(back, size, tile=tile)

            def direct_backward() -> Any:
                masked = tf.where(y > 0, dy, tf.zeros_like(dy))  # the ReLU's gradient
                back = tf.raw_ops.Conv2DBackpropInput(
                    input_sizes=tf.shape(tf.expand_dims(x, 0)),
                    filter=kernel,
                    out_backprop=tf.expand_dims(masked, 0),
                    strides=[1, 1, 1, 1],
                    padding="SAME",
                )
                return tf.squeeze(back, 0)

            return tf.cond(use_winograd, winograd_backward, direct_backward)

        return y, gradient

    return convolve(x)


class WinogradVGG:
    """The Keras VGG19 extractor's computation with Winograd convolutions, same outputs.

    Runs every 3×3 convolution but the first (3 input channels: nothing to save) by F(tile, 3)
    in bfloat16, bias and ReLU fused; max pooling as Keras does. Outputs are the requested
    layers' activations, [1, h, w, c] bfloat16, as the Keras model gives them under the
    mixed_bfloat16 policy.
    """

    def __init__(self, ops: Any, vgg: Any, layers: tuple[str, ...], tile: int) -> None:
        self.layers = layers
        self.tile = tile
        deepest = max(vgg.layers.index(vgg.get_layer(name)) for name in layers)
        # Each layer as a function of the [H, W, C] activations before it.
        self.plan: list[tuple[str, Callable[[Any], Any]]] = []
        # The first layer again, for pictures in RGB order (see `rgb_order`).
        self.first_rgb: Callable[[Any], Any] | None = None
        for layer in vgg.layers[: deepest + 1]:
            kind = layer.__class__.__name__
            if kind == "Conv2D":
                kernel, bias = (np.asarray(w) for w in layer.get_weights())
                direct = (tf.constant(kernel, tf.bfloat16), tf.constant(bias, tf.bfloat16))
                if kernel.shape[2] < 16:  # the first layer (3 channels) has nothing to save
                    step = functools.partial(_direct_relu, kernel=direct[0], bias=direct[1])
                    if not self.plan:
                        flipped = tf.constant(kernel[:, :, ::-1], tf.bfloat16)  # BGR → RGB
                        self.first_rgb = functools.partial(
                            _direct_relu, kernel=flipped, bias=direct[1]
                        )
                else:
                    step = functools.partial(
                        conv3x3_relu,
                        ops,
                        transformed=filters(kernel, tile),
                        tile=tile,
                        bias=tf.constant(bias, tf.float32),
                        kernel=direct[0],
                        direct_bias=direct[1],
                    )
                self.plan.append((layer.name, step))
            elif kind == "MaxPooling2D":
                self.plan.append((layer.name, _max_pool))

    def __call__(self, preprocessed: Any, training: bool = False) -> list[Any]:
        return self._run(preprocessed, self.plan)

    def rgb_order(self, centred: Any) -> list[Any]:
        """The same outputs for VGG's input with its channels in RGB order (the picture minus
        the ImageNet means, not flipped): the first layer's kernel takes them in that order,
        which spares the flip and its gradient (~1 % of a 512×384 step)."""
        assert self.first_rgb is not None
        return self._run(centred, [(self.plan[0][0], self.first_rgb), *self.plan[1:]])

    def _run(self, x: Any, plan: list[tuple[str, Callable[[Any], Any]]]) -> list[Any]:
        # Batch of one: reshapes, not slices, between [1, H, W, C] and [H, W, C] (a slice's
        # gradient copies the whole tensor: ~35 ms of a 512×384 step).
        x = tf.squeeze(tf.cast(x, tf.bfloat16), 0)
        outputs: dict[str, Any] = {}
        for name, step in plan:
            x = outputs[name] = step(x)
        return [tf.expand_dims(outputs[name], 0) for name in self.layers]


def _max_pool(x: Any) -> Any:
    """VGG's 2×2 max pooling of [H, W, C]."""
    return tf.squeeze(tf.nn.max_pool2d(tf.expand_dims(x, 0), 2, 2, "VALID"), 0)


def _direct_relu(x: Any, kernel: Any, bias: Any) -> Any:
    """ReLU(3×3 'SAME' convolution + bias) of [H, W, C] by oneDNN's direct convolution."""
    convolved = tf.nn.conv2d(tf.expand_dims(x, 0), kernel, 1, "SAME")
    return tf.squeeze(tf.nn.relu(tf.nn.bias_add(convolved, bias)), 0)


def _tile_bytes(x: Any, transformed: Any, tile: int) -> Any:
    """Bytes of the larger of a layer's transformed input and output tiles (bfloat16)."""
    shape = tf.cast(tf.shape(x), tf.int64)
    tiles = ((shape[0] + tile - 1) // tile) * ((shape[1] + tile - 1) // tile)
    channels = tf.cast(tf.reduce_max(tf.shape(transformed)[1:]), tf.int64)
    return (tile + 2) ** 2 * tiles * channels * 2
