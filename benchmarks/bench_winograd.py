#!/usr/bin/env python3
"""Would Winograd convolutions, written in TensorFlow ops, beat oneDNN's direct ones? Not a test.

Winograd's F(m×m, 3×3) computes an m×m output tile of a 3×3 convolution with (m+2)² instead
of 9·m² multiplications (2.25× fewer for m = 2, 4× for m = 4), as (m+2)² independent matrix
products [tiles × C]·[C × K] between transformed input tiles and transformed filters. For each
VGG19 layer shape of a 512×384 step, this times forward + backward-to-input (what one
evaluation of the objective runs per layer) of:
- tf.nn.conv2d in bfloat16 (what the engine runs: oneDNN's direct convolution);
- Winograd F(2,3) and F(4,3), the products in bfloat16, the tile transforms in float32, built
  either from TensorFlow graph ops (strided slices + one Kronecker-matrix product) or compiled
  with XLA (explicit separable transforms);
and the relative error of both against a float32 direct convolution.

`--products-only` bounds what a fused Winograd kernel could give: for every 3×3 convolution of
a 512×384 step, the direct convolution against Winograd's matrix products alone (forward and
backward to the input), as if the tile transforms cost nothing. `--engine` times the engine's
own F(2,3) and F(3,3) (engine/winograd.py: the transforms as C++ ops) against the direct
convolution and against their matrix products alone.

    .venv/bin/python benchmarks/bench_winograd.py [--products-only | --engine]
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from bench_engine_profile import best_time  # the benchmarks folder is on the path when run

REPO = Path(__file__).resolve().parent.parent
# (height, width, channels in, channels out) of the 3x3 convolutions at 512x384, by block
SHAPES = [(384, 512, 64, 64), (192, 256, 128, 128), (96, 128, 256, 256), (48, 64, 512, 512),
          (24, 32, 512, 512)]  # fmt: skip


def winograd_matrices(m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bᵀ (input), G (filter), Aᵀ (output) transforms of F(m, 3) (Lavin & Gray, 2016)."""
    if m == 2:
        bt = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]
        g = [[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]]
        at = [[1, 1, 1, 0], [0, 1, -1, -1]]
    else:
        bt = [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
              [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]]  # fmt: skip
        g = [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
             [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]]  # fmt: skip
        at = [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]]
    return np.array(bt, float), np.array(g, float), np.array(at, float)


def winograd_conv(tf: Any, m: int, kernel: np.ndarray, xla: bool) -> Callable[[Any], Any]:
    """A 'SAME' 3x3 convolution of an [H, W, C] float32 tensor by Winograd F(m, 3)."""
    bt, g, at = winograd_matrices(m)
    a = m + 2
    filters = np.einsum("ai,ijck,bj->abck", g, kernel.astype(float), g)
    u = tf.cast(tf.constant(filters.reshape(a * a, *kernel.shape[2:]), tf.float32), tf.bfloat16)

    def tiles(x: Any) -> tuple[Any, Any, Any]:
        height, width = tf.shape(x)[0], tf.shape(x)[1]
        th, tw = (height + m - 1) // m, (width + m - 1) // m
        padded = tf.pad(x, [[1, th * m + 1 - height], [1, tw * m + 1 - width], [0, 0]])
        return padded, th, tw

    def combine(rows: list[Any], matrix: np.ndarray) -> list[Any]:
        out = []
        for r in range(matrix.shape[0]):
            terms = [rows[i] * float(c) for i, c in enumerate(matrix[r]) if c != 0]
            out.append(tf.add_n(terms))
        return out

    if xla:

        @tf.function(jit_compile=True, autograph=False)
        def transform_in(x: Any) -> Any:
            padded, th, tw = tiles(x)
            rows = combine([padded[i : i + m * th : m] for i in range(a)], bt)
            out = []
            for row in rows:
                out += combine([row[:, j : j + m * tw : m] for j in range(a)], bt)
            return tf.cast(tf.reshape(tf.stack(out), [a * a, -1, x.shape[-1]]), tf.bfloat16)

    else:
        kron_in = tf.constant(np.kron(bt, bt), tf.float32)

        def transform_in(x: Any) -> Any:
            padded, th, tw = tiles(x)
            d = tf.stack(
                [padded[i : i + m * th : m, j : j + m * tw : m] for i in range(a) for j in range(a)]
            )
            v = tf.matmul(kron_in, tf.reshape(d, [a * a, -1]))
            return tf.cast(tf.reshape(v, [a * a, -1, x.shape[-1]]), tf.bfloat16)

    kron_out = tf.constant(np.kron(at, at), tf.float32)

    def transform_out(products: Any, height: Any, width: Any) -> Any:
        th, tw = (height + m - 1) // m, (width + m - 1) // m
        k = products.shape[-1]
        y = tf.matmul(kron_out, tf.reshape(tf.cast(products, tf.float32), [a * a, -1]))
        y = tf.transpose(tf.reshape(y, [m, m, th, tw, k]), [2, 0, 3, 1, 4])
        return tf.reshape(y, [th * m, tw * m, k])[:height, :width]

    def conv(x: Any) -> Any:
        return transform_out(tf.matmul(transform_in(x), u), tf.shape(x)[0], tf.shape(x)[1])

    return conv


# Every 3x3 convolution the objective runs at 512x384 (block1_conv1's 3 input channels run
# direct in any case): (height, width, channels in, channels out, how many).
STEP_LAYERS = [(384, 512, 64, 64, 1), (192, 256, 64, 128, 1), (192, 256, 128, 128, 1),
               (96, 128, 128, 256, 1), (96, 128, 256, 256, 3), (48, 64, 256, 512, 1),
               (48, 64, 512, 512, 3), (24, 32, 512, 512, 2)]  # fmt: skip


def products_only() -> None:
    """Direct convolutions against Winograd's products alone, summed over one step's layers."""
    import tensorflow as tf

    variants = {"F(2,3) bf16": (2, tf.bfloat16), "F(4,3) bf16": (4, tf.bfloat16),
                "F(4,3) fp32": (4, tf.float32)}  # fmt: skip
    totals = dict.fromkeys(["direct bf16", *variants], 0.0)
    rows = []
    for height, width, cin, cout, count in STEP_LAYERS:
        rng = np.random.default_rng(0)
        x = tf.cast(
            tf.constant(rng.standard_normal((1, height, width, cin)), tf.float32), tf.bfloat16
        )
        kernel = tf.cast(
            tf.constant(rng.standard_normal((3, 3, cin, cout)), tf.float32), tf.bfloat16
        )
        upstream = tf.cast(tf.ones((1, height, width, cout)), tf.bfloat16)

        @tf.function(autograph=False)
        def direct(x: Any = x, kernel: Any = kernel, upstream: Any = upstream) -> Any:
            y = tf.nn.conv2d(x, kernel, 1, "SAME")
            dx = tf.raw_ops.Conv2DBackpropInput(
                input_sizes=tf.shape(x), filter=kernel, out_backprop=upstream,
                strides=[1, 1, 1, 1], padding="SAME")  # fmt: skip
            return y, dx

        row: dict[str, Any] = {"shape": [height, width, cin, cout], "count": count}
        row["direct bf16"] = best_time(lambda direct=direct: [t.numpy() for t in direct()]) * 1e3
        for name, (m, dtype) in variants.items():
            tiles = -(-height // m) * -(-width // m)
            a2 = (m + 2) ** 2
            v = tf.cast(tf.random.normal([a2, tiles, cin]), dtype)
            u = tf.cast(tf.random.normal([a2, cin, cout]), dtype)
            g = tf.cast(tf.random.normal([a2, tiles, cout]), dtype)

            @tf.function(autograph=False)
            def products(v: Any = v, u: Any = u, g: Any = g) -> Any:
                return tf.matmul(v, u), tf.matmul(g, u, transpose_b=True)

            row[name] = best_time(lambda p=products: [t.numpy() for t in p()]) * 1e3
        rows.append(row)
        for name in totals:
            totals[name] += count * row[name]
        cells = " ".join(f"{row[n]:10.1f}" for n in totals)
        print(f"{height}x{width} {cin}->{cout} x{count}".ljust(24) + cells, flush=True)
    print("step total (ms)".ljust(24) + " ".join(f"{totals[n]:10.1f}" for n in totals))
    print("columns:", ", ".join(totals))
    date = dt.date.today().isoformat()
    out = REPO / "benchmarks" / "results" / f"winograd_products_{date}.json"
    out.write_text(json.dumps({"date": date, "rows": rows, "totals_ms": totals}, indent=1))
    print(f"written {out.relative_to(REPO)}")


def engine_winograd() -> None:
    """The engine's F(2,3) and F(3,3) against direct convolutions and their products, per layer."""
    import tensorflow as tf

    sys.path.insert(0, str(REPO))
    from engine import winograd

    ops = winograd.load_ops()
    if ops is None:
        raise SystemExit("the Winograd ops could not be built here")
    names = ["direct bf16"]
    for m in (2, 3):
        names += [f"engine F({m},3)", f"F({m},3) products"]
    totals = dict.fromkeys(names, 0.0)
    rows = []
    for height, width, cin, cout, count in STEP_LAYERS:
        rng = np.random.default_rng(0)
        x32 = rng.standard_normal((height, width, cin)).astype(np.float32)
        k32 = (rng.standard_normal((3, 3, cin, cout)) * np.sqrt(2 / (9 * cin))).astype(np.float32)
        dy32 = rng.standard_normal((height, width, cout)).astype(np.float32)
        x, dy = tf.constant(x32, tf.bfloat16), tf.constant(dy32, tf.bfloat16)
        kernel = tf.constant(k32, tf.bfloat16)
        size = tf.constant([height, width])
        bias = tf.zeros([cout])  # ReLU and bias fused into the engine's output transform

        @tf.function(autograph=False)
        def direct(x: Any = x, kernel: Any = kernel, dy: Any = dy) -> Any:
            y = tf.nn.relu(tf.nn.conv2d(x[None], kernel, 1, "SAME")[0])  # oneDNN fuses the ReLU
            dx = tf.raw_ops.Conv2DBackpropInput(
                input_sizes=tf.shape(x[None]), filter=kernel, out_backprop=dy[None],
                strides=[1, 1, 1, 1], padding="SAME")[0]  # fmt: skip
            return y, dx

        runs: dict[str, Callable[[], Any]] = {"direct bf16": direct}
        for m in (2, 3):
            transformed = winograd.filters(k32, m)
            y_engine = ops.winograd_output(
                tf.matmul(ops.winograd_input(x, tile=m), transformed), bias, size, tile=m
            )
            tiles_in = ops.winograd_input(x, tile=m)
            tiles_back = ops.winograd_output_adjoint(dy, y_engine, tile=m)

            @tf.function(autograph=False)
            def fused(
                x: Any = x, u: Any = transformed, b: Any = bias, dy: Any = dy, size: Any = size,
                m: int = m,
            ) -> Any:  # fmt: skip
                y = ops.winograd_output(
                    tf.matmul(ops.winograd_input(x, tile=m), u), b, size, tile=m
                )
                back = tf.matmul(ops.winograd_output_adjoint(dy, y, tile=m), u, transpose_b=True)
                return y, ops.winograd_input_adjoint(back, size, tile=m)

            @tf.function(autograph=False)
            def products(v: Any = tiles_in, u: Any = transformed, g: Any = tiles_back) -> Any:
                return tf.matmul(v, u), tf.matmul(g, u, transpose_b=True)

            runs[f"engine F({m},3)"] = fused
            runs[f"F({m},3) products"] = products

        exact = tf.nn.relu(tf.nn.conv2d(x32[None], k32, 1, "SAME")[0])
        error = {
            name: float(tf.norm(tf.cast(runs[name]()[0], tf.float32) - exact) / tf.norm(exact))
            for name in ("direct bf16", "engine F(2,3)", "engine F(3,3)")
        }
        row: dict[str, Any] = {"shape": [height, width, cin, cout], "count": count, "error": error}
        for name, fn in runs.items():
            row[name] = best_time(lambda fn=fn: [t.numpy() for t in fn()]) * 1e3
            totals[name] += count * row[name]
        rows.append(row)
        cells = " ".join(f"{row[n]:10.1f}" for n in totals)
        print(f"{height}x{width} {cin}->{cout} x{count}".ljust(24) + cells, flush=True)
    print("step total (ms)".ljust(24) + " ".join(f"{totals[n]:10.1f}" for n in totals))
    print("columns:", ", ".join(totals), "| relative error vs float32:", rows[0]["error"])
    date = dt.date.today().isoformat()
    out = REPO / "benchmarks" / "results" / f"winograd_engine_tiles_{date}.json"
    out.write_text(json.dumps({"date": date, "rows": rows, "totals_ms": totals}, indent=1))
    print(f"written {out.relative_to(REPO)}")


def main() -> None:
    if "--products-only" in sys.argv[1:]:
        products_only()
        return
    if "--engine" in sys.argv[1:]:
        engine_winograd()
        return
    import tensorflow as tf

    rows = []
    print(f"{'layer shape':24} {'direct bf16':>12} {'F(2,3) graph':>14} {'F(4,3) graph':>14} "
          f"{'F(2,3) XLA':>12} {'F(4,3) XLA':>12}  (ms, forward + backward to input)")  # fmt: skip
    for height, width, cin, cout in SHAPES:
        rng = np.random.default_rng(0)
        x = tf.constant(rng.standard_normal((height, width, cin)), tf.float32)
        kernel = rng.standard_normal((3, 3, cin, cout)) * np.sqrt(2 / (9 * cin))
        upstream = tf.constant(rng.standard_normal((height, width, cout)), tf.float32)
        exact_y = tf.nn.conv2d(x[None], tf.constant(kernel, tf.float32), 1, "SAME")[0]
        kernel_bf16 = tf.cast(tf.constant(kernel, tf.float32), tf.bfloat16)

        def direct(x: Any, kernel: Any = kernel_bf16) -> Any:
            y = tf.nn.conv2d(tf.cast(x, tf.bfloat16)[None], kernel, 1, "SAME")[0]
            return tf.cast(y, tf.float32)

        variants = {"direct": direct}
        for m in (2, 4):
            for xla in (False, True):
                variants[f"F({m},3) {'XLA' if xla else 'graph'}"] = winograd_conv(
                    tf, m, kernel, xla
                )
        row: dict[str, Any] = {"shape": [height, width, cin, cout]}
        for name, conv in variants.items():

            @tf.function(autograph=False)
            def step(x: Any, conv: Any = conv, upstream: Any = upstream) -> Any:
                with tf.GradientTape() as tape:
                    tape.watch(x)
                    y = conv(x)
                    value = tf.reduce_sum(y * upstream)
                return y, tape.gradient(value, x)

            def run(step: Any = step, x: Any = x) -> list[Any]:
                return [t.numpy() for t in step(x)]

            seconds = best_time(run)
            y, _ = step(x)
            error = float(tf.norm(y - exact_y) / tf.norm(exact_y))
            row[name] = {"ms": seconds * 1e3, "relative_error": error}
        rows.append(row)
        cells = [f"{row[n]['ms']:.1f}" for n in variants]
        print(f"{height}x{width} {cin}->{cout}".ljust(24) + " ".join(c.rjust(13) for c in cells))
    errors = {n: max(r[n]["relative_error"] for r in rows) for n in rows[0] if n != "shape"}
    print("largest relative error vs float32 direct:", {n: f"{e:.1e}" for n, e in errors.items()})
    date = dt.date.today().isoformat()
    out = REPO / "benchmarks" / "results" / f"winograd_{date}.json"
    out.write_text(json.dumps({"date": date, "rows": rows}, indent=1))
    print(f"written {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
