#!/usr/bin/env python3
"""Engine benchmark: speed, memory and quality against the reference recipe. Not a test.

Prints a table and writes benchmarks/results/engine_<date>.json. Needs ../shared (images,
the VGG19 weights with trained VGG16 features, and the reference script with its scorer).

    .venv/bin/python benchmarks/bench_engine.py                 # 256 and 512 px, tubingen + starry night
    .venv/bin/python benchmarks/bench_engine.py --sizes 512 --pairs tubingen:starry_night macaws:great_wave
    .venv/bin/python benchmarks/bench_engine.py --reference-steps 1000   # re-run the whole reference (slow)

What it measures:
- the reference recipe (shared/reference/seed_reference.py): seconds per eager step, measured here
  for a few steps; its 1000-step loss is taken from the recorded run in shared/reference/results
  (or re-run with --reference-steps 1000);
- the engine with its default settings, end to end from the command line (process start to file
  written, model build included), and the optimisation alone; the saved image scored by the
  reference `score` command (image files against image files: 8-bit rounding counts);
- seconds per forward+backward step of the engine's compiled objective, the GFLOP/s it reaches,
  and the machine's fp32 matmul peak measured in the same run;
- cold and warm job times in one process (a warm worker: second job of another size and aspect);
- peak resident memory of a job at 512 and 1024 px (a fresh process each).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("STYLEBOT_SHARED_DIR", REPO.parent / "shared"))
REFERENCE = SHARED / "reference" / "seed_reference.py"
RECORDED = SHARED / "reference" / "results" / "tubingen_starry_night_512_vgg16features.json"
WEIGHTS = SHARED / "models" / "vgg19_vgg16features_notop.weights.h5"
PYTHON = sys.executable
ENV = {
    **os.environ,
    "TF_CPP_MIN_LOG_LEVEL": "3",
    "VGG19_WEIGHTS": str(WEIGHTS),
    "STYLEBOT_WEIGHTS": str(WEIGHTS),
}


def content(name: str) -> Path:
    return SHARED / "images" / "content" / f"{name}.jpg"


def style(name: str) -> Path:
    return SHARED / "images" / "styles" / f"{name}.jpg"


def run(cmd: list[str]) -> tuple[float, str, int]:
    """Wall time, stdout and peak RSS (MiB) of one child process (its own rusage, via wait4)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        child = subprocess.Popen(cmd, env=ENV, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if child.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{err.read()[-2000:]}")
        return wall, out.read(), usage.ru_maxrss // 1024


def score(content_path: Path, style_path: Path, image: Path, size: int) -> dict[str, float]:
    _, out, _ = run(
        [
            PYTHON,
            str(REFERENCE),
            "score",
            str(content_path),
            str(style_path),
            str(image),
            "--max-dim",
            str(size),
        ]
    )
    return json.loads(out.strip().splitlines()[-1])


def reference_step_time(
    content_path: Path, style_path: Path, size: int, steps: int
) -> dict[str, Any]:
    """Run the reference recipe eagerly for `steps` steps; seconds per step from its own log."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ref.png"
        log = Path(tmp) / "log.json"
        wall, _, _ = run(
            [
                PYTHON,
                str(REFERENCE),
                "run",
                str(content_path),
                str(style_path),
                str(out),
                "--iters",
                str(steps),
                "--max-dim",
                str(size),
                "--log",
                str(log),
            ]
        )
        entries = json.loads(log.read_text())
        result: dict[str, Any] = {"steps": steps, "wall_s": wall}
        if len(entries) >= 2:
            # The first step includes tracing; time the rest.
            result["s_per_step"] = (entries[-1]["t"] - entries[0]["t"]) / max(
                1, entries[-1]["iter"] - entries[0]["iter"]
            )
        else:
            result["s_per_step"] = entries[-1]["t"] / steps
        result["best_loss_logged"] = min(e["loss"] for e in entries)
        if steps >= 100:
            result["score"] = score(content_path, style_path, out, size)
        return result


def engine_cli(content_path: Path, style_path: Path, size: int, extra: list[str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.png"
        report = Path(tmp) / "report.json"
        wall, _, peak = run(
            [
                PYTHON,
                "-m",
                "engine",
                str(content_path),
                str(style_path),
                "-o",
                str(out),
                "--size",
                str(size),
                "--quiet",
                "--weights",
                str(WEIGHTS),
                "--report",
                str(report),
                *extra,
            ]
        )
        data = json.loads(report.read_text())
        scored = score(content_path, style_path, out, size)
        keep = (
            REPO
            / "benchmarks"
            / "results"
            / f"engine_{content_path.stem}_{style_path.stem}_{size}.png"
        )
        keep.write_bytes(out.read_bytes())
    return {
        "wall_s": wall,
        "optimize_s": data["timings"]["optimize"],
        "timings": data["timings"],
        "engine_losses": data["losses"],
        "score": scored,
        "peak_rss_mib": peak,
        "size": data["size"],
        "device": data.get("device", ""),
    }


def in_process_measurements(content_path: Path, style_path: Path) -> dict[str, Any]:
    """Step time, GFLOP/s, matmul peak and cold/warm jobs, all in one fresh process."""
    code = f"""
import json, time, numpy as np, tensorflow as tf
from engine.api import stylize, warm_up
from engine.objective import get_objective
from engine.params import StyleParams, STYLE_LAYERS, CONTENT_LAYERS
from engine.hardware import gpu_has_bf16, setup_device
device = setup_device()  # before the first op: memory growth on a GPU
W = {str(WEIGHTS)!r}
out = {{}}
# fp32 matmul peak of this machine's device (TensorFlow: all cores, or the GPU)
a = tf.random.normal([4096, 4096]); b = tf.random.normal([4096, 4096])
tf.matmul(a, b).numpy()
t = time.perf_counter(); n = 5
for _ in range(n): tf.matmul(a, b).numpy()
out["matmul_fp32_gflops"] = 2 * 4096**3 * n / (time.perf_counter() - t) / 1e9
def conv_flops(h, w):
    # forward FLOPs of VGG19 up to block5_conv2 (the deepest layer used)
    cfg = [(3,64),(64,64),'P',(64,128),(128,128),'P',(128,256),(256,256),(256,256),(256,256),'P',
           (256,512),(512,512),(512,512),(512,512),'P',(512,512),(512,512)]
    total = 0
    for c in cfg:
        if c == 'P': h, w = h // 2, w // 2; continue
        total += 2 * h * w * 9 * c[0] * c[1]
    return total
# bfloat16 is timed on every CPU (emulated where it is not native) but not on a GPU without it
precisions = (False,) if device.kind == "GPU" and not gpu_has_bf16(device.compute_capability) else (False, True)
for precision in precisions:
    obj = get_objective(W, STYLE_LAYERS, CONTENT_LAYERS, mixed_precision=precision)
    for (h, w) in ((384, 512), (192, 256)):
        img = np.random.default_rng(0).uniform(0, 255, (h, w, 3)).astype("float32")
        tg = obj.targets(img, [img], (1.0,))
        obj.evaluate(img, tg, 1e3, 1e-2, 0.0)
        t = time.perf_counter(); k = 5
        for _ in range(k): obj.evaluate(img, tg, 1e3, 1e-2, 0.0)
        s = (time.perf_counter() - t) / k
        # forward + backward to the input: about twice the forward convolutions
        out[f"step_{{'bf16' if precision else 'fp32'}}_{{w}}x{{h}}"] = {{"s_per_step": s, "gflops": 2 * conv_flops(h, w) / s / 1e9}}
content = open({str(content_path)!r}, 'rb').read(); style = open({str(style_path)!r}, 'rb').read()
t = time.perf_counter(); warm_up(W); out["warm_up_s"] = time.perf_counter() - t
t = time.perf_counter(); r = stylize(content, [style], StyleParams(size=512), weights=W); out["job1_512_s"] = time.perf_counter() - t
out["job1_losses"] = r.losses
import io
from PIL import Image
Image.open(io.BytesIO(content)).rotate(90, expand=True).save("/tmp/_bench_portrait.jpg")
portrait = open("/tmp/_bench_portrait.jpg", "rb").read()
t = time.perf_counter(); r = stylize(portrait, [style], StyleParams(size=384), weights=W); out["job2_384_portrait_s"] = time.perf_counter() - t
out["job2_timings"] = r.timings
print(json.dumps(out))
"""
    _, stdout, _ = run([PYTHON, "-c", code])
    return json.loads(stdout.strip().splitlines()[-1])


def machine() -> dict[str, Any]:
    cpu = "unknown"
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu == "unknown":
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    import numpy

    # TensorFlow's version and the device the engine paints on (its first GPU, else the CPU),
    # with the precision it chooses there by default.
    probe = (
        "import tensorflow as tf; from engine.hardware import setup_device, describe_device; "
        "from engine.params import StyleParams; setup_device(); print(tf.__version__); "
        "print(describe_device(StyleParams().use_mixed_precision))"
    )
    lines = subprocess.run(
        [PYTHON, "-c", probe], env=ENV, capture_output=True, text=True, check=False, cwd=REPO
    ).stdout.splitlines()
    tf_version, device = lines[-2:] if len(lines) >= 2 else ("", "")
    return {
        "device": device,
        "cpu": cpu,
        "cores": os.cpu_count(),
        "avx512_bf16": "avx512_bf16" in flags,
        "amx_bf16": "amx_bf16" in flags,
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "tensorflow": tf_version,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="*", default=[256, 512])
    parser.add_argument(
        "--pairs",
        nargs="+",
        default=["tubingen:starry_night"],
        help="content:style names from ../shared/images",
    )
    parser.add_argument(
        "--reference-steps",
        type=int,
        default=5,
        help="eager reference steps to time (1000 = the whole recipe)",
    )
    parser.add_argument("--memory-sizes", type=int, nargs="*", default=[512, 1024])
    parser.add_argument("--memory-steps", default="10,20", help="schedule of the memory runs")
    parser.add_argument(
        "--engine-args", nargs=argparse.REMAINDER, default=[], help="extra engine CLI flags"
    )
    parser.add_argument("--skip-inprocess", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if not (REFERENCE.exists() and WEIGHTS.exists()):
        print(f"needs {REFERENCE} and {WEIGHTS} (the shared material)", file=sys.stderr)
        return 2
    (REPO / "benchmarks" / "results").mkdir(parents=True, exist_ok=True)
    recorded = json.loads(RECORDED.read_text()) if RECORDED.exists() else None
    report: dict[str, Any] = {
        "machine": machine(),
        "runs": [],
        "memory": {},
        "engine_args": args.engine_args,
    }
    if recorded:
        report["recorded_reference_512"] = {
            "best_loss": recorded["best_loss"],
            "saved_image_score": recorded["saved_image_score"],
            "compiled_wall_s_1000_steps": recorded["log50"][-1]["t"],
            "eager_s_per_step": recorded["eager_s_per_step_512"],
        }
    rows = []
    for pair in args.pairs:
        c_name, s_name = pair.split(":")
        c_path, s_path = content(c_name), style(s_name)
        for size in args.sizes:
            ref = reference_step_time(c_path, s_path, size, args.reference_steps)
            eng = engine_cli(c_path, s_path, size, args.engine_args)
            if args.reference_steps < 100:
                # The machine may be shared: time the recipe's step again after the engine
                # and use the mean of both, so a load change biases neither side.
                after = reference_step_time(c_path, s_path, size, args.reference_steps)
                ref["s_per_step_before"] = ref["s_per_step"]
                ref["s_per_step_after"] = after["s_per_step"]
                ref["s_per_step"] = (ref["s_per_step"] + after["s_per_step"]) / 2
            ref["eager_1000_steps_s"] = ref["s_per_step"] * 1000
            target = None
            if recorded and (c_name, s_name, size) == ("tubingen", "starry_night", 512):
                target = recorded["saved_image_score"]["total"]
            ours = REPO / "benchmarks" / "results" / f"reference_{c_name}_{s_name}_{size}.json"
            if target is None and ours.exists():
                # A 1000-step reference run recorded by this project (see its JSON).
                target = json.loads(ours.read_text())["saved_image_score"]["total"]
            if ref.get("score"):
                target = ref["score"]["total"]
            entry = {
                "pair": pair,
                "size": size,
                "reference": ref,
                "engine": eng,
                "reference_score_to_beat": target,
            }
            report["runs"].append(entry)
            speedup = ref["eager_1000_steps_s"] / eng["wall_s"]
            rows.append(
                (pair, size, f"{ref['s_per_step']:.2f}", f"{ref['eager_1000_steps_s']:.0f}", f"{eng['wall_s']:.1f}", f"{eng['optimize_s']:.1f}", f"{speedup:.0f}x",
                 f"{eng['score']['total']:,.0f}", f"{target:,.0f}" if target else "n/a", f"{eng['peak_rss_mib']}")
            )  # fmt: skip
            print(f"done {pair} {size}: {rows[-1]}", file=sys.stderr, flush=True)
    c_path, s_path = content("tubingen"), style("starry_night")
    for size in args.memory_sizes:
        # Peak memory is reached within the first steps of the final scale: a short schedule
        # measures it without a long run.
        eng = engine_cli(c_path, s_path, size, [*args.engine_args, "--steps", args.memory_steps])
        report["memory"][str(size)] = {
            "peak_rss_mib": eng["peak_rss_mib"],
            "wall_s": eng["wall_s"],
            "steps": args.memory_steps,
        }
    if not args.skip_inprocess:
        report["in_process"] = in_process_measurements(c_path, s_path)

    header = (
        "pair",
        "px",
        "ref s/step",
        "ref 1000 steps s",
        "engine wall s",
        "engine optimise s",
        "speed-up",
        "engine score",
        "reference score",
        "peak RSS MiB",
    )
    print(f"device: {report['machine']['device']}")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(v) for v in row) + " |")
    for size, mem in report["memory"].items():
        print(
            f"memory {size} px: peak RSS {mem['peak_rss_mib']} MiB (schedule {mem['steps']}, wall {mem['wall_s']:.1f} s)"
        )
    if "in_process" in report:
        ip = report["in_process"]
        print(f"fp32 matmul peak: {ip['matmul_fp32_gflops']:.0f} GFLOP/s")
        for key, value in ip.items():
            if key.startswith("step_"):
                print(f"{key}: {value['s_per_step']:.3f} s/step, {value['gflops']:.0f} GFLOP/s")
        print(
            f"warm-up {ip['warm_up_s']:.1f} s; job 1 (512, landscape) {ip['job1_512_s']:.1f} s; job 2 (384, portrait, warm) {ip['job2_384_portrait_s']:.1f} s"
        )
    out = args.out or REPO / "benchmarks" / "results" / f"engine_{dt.date.today().isoformat()}.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
