#!/usr/bin/env python3
"""Where one loss+gradient step goes, part by part, against what this CPU can do. Not a test.

Prints (and writes to benchmarks/results/engine_profile_<date>.json):
- the machine's matmul throughput in float32 and bfloat16 (4096², TensorFlow, all cores);
- every VGG19 convolution the objective runs at 512×384, alone: forward and backward-to-input,
  in float32 and bfloat16, seconds and GFLOP/s;
- one whole step of the compiled objective in TensorFlow's profiler, op time summed by kind
  (convolutions forward, backward to the input, backward to the filters, pooling, Gram
  matrices, casts, the rest), in float32 and bfloat16;
- the work around a step outside TensorFlow: the copy to NumPy, the float64 round trip and
  scipy's L-BFGS-B bookkeeping (the old optimiser), and the float32 L-BFGS (the new one).

    .venv/bin/python benchmarks/bench_engine_profile.py [--height 384 --width 512]
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import glob
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
WEIGHTS = REPO.parent / "shared" / "models" / "vgg19_vgg16features_notop.weights.h5"

# VGG19 up to block5_conv2 (the deepest layer the objective uses): (name, c_in, c_out, pool before)
CONVS = [
    ("block1_conv1", 3, 64, False), ("block1_conv2", 64, 64, False),
    ("block2_conv1", 64, 128, True), ("block2_conv2", 128, 128, False),
    ("block3_conv1", 128, 256, True), ("block3_conv2", 256, 256, False),
    ("block3_conv3", 256, 256, False), ("block3_conv4", 256, 256, False),
    ("block4_conv1", 256, 512, True), ("block4_conv2", 512, 512, False),
    ("block4_conv3", 512, 512, False), ("block4_conv4", 512, 512, False),
    ("block5_conv1", 512, 512, True), ("block5_conv2", 512, 512, False),
]  # fmt: skip


def best_time(fn: Any, repeat: int = 5) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def matmul_peaks(tf: Any) -> dict[str, float]:
    out = {}
    for dtype in (tf.float32, tf.bfloat16):
        a = tf.cast(tf.random.normal([4096, 4096]), dtype)
        b = tf.cast(tf.random.normal([4096, 4096]), dtype)
        s = best_time(lambda a=a, b=b: tf.matmul(a, b).numpy())
        out[dtype.name] = 2 * 4096**3 / s / 1e9
    return out


def conv_table(tf: Any, height: int, width: int) -> list[dict[str, Any]]:
    rows = []
    h, w = height, width
    for name, cin, cout, pool in CONVS:
        if pool:
            h, w = h // 2, w // 2
        flops = 2 * h * w * 9 * cin * cout
        row: dict[str, Any] = {"layer": name, "hw": [h, w], "gflop": flops / 1e9}
        for dtype in (tf.float32, tf.bfloat16):
            x = tf.cast(tf.random.normal([1, h, w, cin]), dtype)
            k = tf.cast(tf.random.normal([3, 3, cin, cout]) * 0.05, dtype)
            dy = tf.cast(tf.random.normal([1, h, w, cout]), dtype)
            fwd = tf.function(lambda x, k: tf.nn.relu(tf.nn.conv2d(x, k, 1, "SAME")))
            bwd = tf.function(
                lambda dy, k, cin=cin, h=h, w=w: tf.raw_ops.Conv2DBackpropInput(
                    input_sizes=[1, h, w, cin], filter=k, out_backprop=dy,
                    strides=[1, 1, 1, 1], padding="SAME",
                )
            )  # fmt: skip
            tf_ = best_time(lambda fwd=fwd, x=x, k=k: fwd(x, k).numpy())
            tb = best_time(lambda bwd=bwd, dy=dy, k=k: bwd(dy, k).numpy())
            key = "fp32" if dtype == tf.float32 else "bf16"
            row[f"{key}_fwd_ms"] = tf_ * 1e3
            row[f"{key}_bwd_input_ms"] = tb * 1e3
            row[f"{key}_fwd_gflops"] = flops / tf_ / 1e9
            row[f"{key}_bwd_input_gflops"] = flops / tb / 1e9
        rows.append(row)
    return rows


def kind(op: str, name: str) -> str:
    if op.endswith("Conv2DBackpropFilter") or "BackpropFilter" in op:
        return "conv backward to filters"
    if "Conv2DBackpropInput" in op:
        return "conv backward to input"
    if "Conv2D" in op:
        return "conv forward (+bias, ReLU)"
    if "ReluGrad" in op:
        return "ReLU backward"
    if "MaxPoolGrad" in op:
        return "max-pool backward"
    if "MaxPool" in op:
        return "max-pool forward"
    if "MatMul" in op:
        return "Gram matrices (fwd + bwd)"
    if op == "Cast":
        return "casts bf16<->fp32"
    if op in ("AddN", "AddV2", "Add"):
        return "adds (gradient sums)"
    return "other elementwise/reductions"


def profile_step(tf: Any, objective: Any, height: int, width: int) -> dict[str, Any]:
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    img = np.random.default_rng(0).uniform(0, 255, (height, width, 3)).astype("float32")
    targets = objective.targets(img, [img], (1.0,))
    step = best_time(lambda: objective.evaluate(img, targets, 1e3, 1e-2, 0.0), repeat=5)
    n = 3
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        for _ in range(n):
            objective.evaluate(img, targets, 1e3, 1e-2, 0.0)
        tf.profiler.experimental.stop()
        path = sorted(glob.glob(logdir + "/**/*.xplane.pb", recursive=True))[-1]
        space = xplane_pb2.XSpace()
        space.ParseFromString(Path(path).read_bytes())
    per_kind: collections.Counter[str] = collections.Counter()
    per_op: collections.Counter[str] = collections.Counter()
    for plane in space.planes:
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                full = plane.event_metadata[event.metadata_id].name
                if ":" not in full or "::" in full:  # executor bookkeeping, not an op
                    continue
                name, op = full.rsplit(":", 1)
                per_kind[kind(op, name)] += event.duration_ps / 1e12 / n
                per_op[full] += event.duration_ps / 1e12 / n
    return {
        "step_s": step,
        "op_seconds_by_kind": dict(per_kind.most_common()),
        "op_seconds_total": sum(per_kind.values()),
        "top_ops": dict(per_op.most_common(25)),
    }


def outside_tf(height: int, width: int) -> dict[str, float]:
    """The work around one step: copies, the float64 round trip, the optimisers' bookkeeping."""
    from scipy.optimize import minimize

    from engine import optimize
    from engine.objective import LossParts

    n = height * width * 3
    rng = np.random.default_rng(0)
    grad32 = rng.standard_normal((height, width, 3)).astype(np.float32)
    out: dict[str, float] = {}
    out["float64_round_trip_s"] = best_time(
        lambda: (grad32.astype(np.float64).ravel(), grad32.ravel().astype(np.float32))
    )
    # A cheap ill-conditioned quadratic of the same size: the optimiser's own time per call.
    scale = rng.uniform(0.1, 10.0, n).astype(np.float32)
    centre = rng.uniform(0, 255, n).astype(np.float32)
    calls = 60

    def quad64(x: np.ndarray) -> tuple[float, np.ndarray]:
        d = x - centre
        return float(np.dot(scale * d, d)), 2 * scale * d

    t = time.perf_counter()
    minimize(
        quad64, np.full(n, 128.0), jac=True, method="L-BFGS-B", bounds=[(0, 255)],
        options={"maxfun": calls, "maxiter": calls, "maxcor": 20, "ftol": 0, "gtol": 0},
    )  # fmt: skip
    quad_only = best_time(lambda: quad64(np.full(n, 128.0)), repeat=3)
    out["scipy_lbfgsb_per_call_s"] = (time.perf_counter() - t) / calls - quad_only

    def quad32(image: np.ndarray) -> tuple[LossParts, np.ndarray]:
        d = image.ravel() - centre
        value = float(np.dot(scale * d, d))
        return LossParts(value, value, 0.0, 0.0), (2 * scale * d).reshape(image.shape)

    start = np.full((height, width, 3), 128.0, np.float32)
    t = time.perf_counter()
    optimize.run_lbfgs(quad32, start, calls)
    out["float32_lbfgs_per_call_s"] = (time.perf_counter() - t) / calls - quad_only
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--height", type=int, default=384)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--skip-convs", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    import tensorflow as tf

    from engine.objective import get_objective
    from engine.params import CONTENT_LAYERS, STYLE_LAYERS

    report: dict[str, Any] = {
        "size": [args.width, args.height],
        "date": dt.date.today().isoformat(),
    }
    report["matmul_gflops"] = matmul_peaks(tf)
    print("matmul 4096² GFLOP/s:", {k: round(v) for k, v in report["matmul_gflops"].items()})
    if not args.skip_convs:
        report["convs"] = conv_table(tf, args.height, args.width)
        print(
            "| layer | GFLOP | fp32 fwd ms (GFLOP/s) | fp32 bwd-input ms (GFLOP/s) | bf16 fwd | bf16 bwd-input |"
        )
        for r in report["convs"]:
            print(
                f"| {r['layer']} | {r['gflop']:.2f} | "
                + " | ".join(
                    f"{r[f'{p}_{d}_ms']:.1f} ({r[f'{p}_{d}_gflops']:.0f})"
                    for p in ("fp32", "bf16")
                    for d in ("fwd", "bwd_input")
                )
                + " |"
            )
    for mixed in (False, True):
        objective = get_objective(str(WEIGHTS), STYLE_LAYERS, CONTENT_LAYERS, mixed_precision=mixed)
        key = "bf16" if mixed else "fp32"
        report[f"step_{key}"] = prof = profile_step(tf, objective, args.height, args.width)
        print(
            f"step {key}: {prof['step_s']:.3f} s; op thread-seconds {prof['op_seconds_total']:.3f}"
        )
        for name, seconds in prof["op_seconds_by_kind"].items():
            print(f"  {name}: {seconds * 1e3:.1f} ms")
    report["outside_tf"] = outside_tf(args.height, args.width)
    for name, seconds in report["outside_tf"].items():
        print(f"{name}: {seconds * 1e3:.1f} ms")
    out = args.out or REPO / "benchmarks" / "results" / f"engine_profile_{report['date']}.json"
    out.write_text(json.dumps(report, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
