"""Seconds per step and peak memory of a painting at large sizes, each in a fresh process.

    .venv/bin/python benchmarks/bench_sizes.py [--sizes 512 1024 1536 2048] [--evaluations 5]
        [--input-side 0] [--weights PATH] [--out benchmarks/results/sizes_DATE.json]

For each size, a child process (this file with ``--child``) runs the engine as a worker does
(`engine.pipeline.run_pipeline`, default settings: quick pass, then the full-size scale) on
tubingen + starry_night with the trained-feature weights, but with only `--evaluations` L-BFGS
evaluations at full size. Reported per size:
- seconds per full-size evaluation: the median gap between successive progress reports of the
  full-size scale (the first evaluation, which traces the model for the new shape, is left out);
- seconds per megapixel-step: that over the picture's megapixels. The bot estimates a size's time
  as its planned megapixel-steps times one measured speed, so this should be about constant;
  the JSON has each size's ratio to the smallest size's;
- peak RSS of the child (``ru_maxrss`` from wait4; the child's VmHWM agrees), against issue 14's
  limits (2 GB at 512 px, 4 GB at 1024 px) and 8 GB at 2048 px;
- the child's own timings (decode, model, optimise).
`--input-side N` first resizes both pictures to a long side of N px (e.g. 4032 for a phone photo
sent as a file), to see what decoding large pictures costs.

A benchmark, not a test: prints a markdown table, writes JSON, asserts nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_DIR))
SHARED = REPO_DIR.parent / "shared"
TRAINED_WEIGHTS = SHARED / "models" / "vgg19_vgg16features_notop.weights.h5"
CONTENT = SHARED / "images" / "content" / "tubingen.jpg"
STYLE = SHARED / "images" / "styles" / "starry_night.jpg"
PROTOCOL = "@@sizes "
# Issue 14's limits, and issue 11's aim at 2048 px (MB).
RSS_LIMIT_MB = {512: 2048, 1024: 4096, 2048: 8192}


def vm_hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def child(size: int, evaluations: int, weights: str, content: Path, style: Path) -> None:
    from engine.job import Progress
    from engine.params import StyleParams
    from engine.pipeline import run_pipeline

    params = StyleParams(size=size, steps=(evaluations,))
    full_size_reports: list[float] = []

    def on_progress(progress: Progress) -> None:
        if progress.scale == progress.scales - 1:  # the full-size scale
            full_size_reports.append(time.perf_counter())

    result = run_pipeline(
        content.read_bytes(), [style.read_bytes()], params, on_progress=on_progress, weights=weights
    )
    gaps = [b - a for a, b in itertools.pairwise(full_size_reports)]
    report = {
        "size": [result.width, result.height],
        "seconds_per_evaluation": statistics.median(gaps) if gaps else None,
        "evaluation_gaps": gaps,
        "timings": result.timings,
        "megapixel_steps": result.megapixel_steps,
        "device": result.device,
        "vm_hwm_mb": vm_hwm_mb(),
    }
    print(PROTOCOL + json.dumps(report), flush=True)


def run_child(
    size: int, evaluations: int, weights: str, content: Path, style: Path
) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", str(size), str(evaluations), weights]
    cmd += [str(content), str(style)]
    started = time.perf_counter()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    # Files, not pipes: a child blocked on a full pipe would never exit for wait4.
    with tempfile.TemporaryFile("w+") as out_file, tempfile.TemporaryFile("w+") as err_file:
        proc = subprocess.Popen(cmd, stdout=out_file, stderr=err_file, text=True, env=env)
        # wait4, not wait: ru_maxrss of this child alone (RUSAGE_CHILDREN keeps the largest).
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out_file.seek(0)
        err_file.seek(0)
        out, err = out_file.read(), err_file.read()
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        return {"side": size, "error": f"exit {proc.returncode}: {err[-1500:]}", "wall_s": wall}
    line = next(x for x in out.splitlines() if x.startswith(PROTOCOL))
    report = json.loads(line[len(PROTOCOL) :])
    width, height = report["size"]
    megapixels = width * height / 1e6
    per_eval = report["seconds_per_evaluation"]
    peak_mb = usage.ru_maxrss / 1024
    limit = RSS_LIMIT_MB.get(size)
    return {
        "side": size,
        **report,
        "megapixels": round(megapixels, 3),
        "seconds_per_megapixel_step": per_eval / megapixels if per_eval else None,
        "peak_rss_mb": round(peak_mb, 1),
        "rss_limit_mb": limit,
        "within_limit": None if limit is None else peak_mb <= limit,
        "wall_s": round(wall, 1),
    }


def resized_copy(path: Path, side: int, folder: Path) -> Path:
    from PIL import Image

    with Image.open(path) as image:
        rgb = image.convert("RGB")
    scale = side / max(rgb.size)
    big = rgb.resize(
        (round(rgb.width * scale), round(rgb.height * scale)), Image.Resampling.LANCZOS
    )
    buffer = io.BytesIO()
    big.save(buffer, "JPEG", quality=92)
    out = folder / f"{path.stem}_{side}.jpg"
    out.write_bytes(buffer.getvalue())
    return out


def cpu_flags() -> list[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags = line.split(":", 1)[1].split()
            return sorted(f for f in flags if f.startswith(("avx", "amx", "fma", "sse4")))
    return []


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        size_arg, evaluations_arg, weights_arg, content_arg, style_arg = sys.argv[2:7]
        child(int(size_arg), int(evaluations_arg), weights_arg, Path(content_arg), Path(style_arg))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 1536, 2048])
    parser.add_argument("--evaluations", type=int, default=5, help="full-size evaluations (5)")
    parser.add_argument("--input-side", type=int, default=0, help="resize inputs to this first")
    parser.add_argument("--weights", default=str(TRAINED_WEIGHTS))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    out_path = args.out or REPO_DIR / "benchmarks" / "results" / (
        f"sizes_{dt.date.today().isoformat()}.json"
    )
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        content, style = CONTENT, STYLE
        if args.input_side:
            content = resized_copy(CONTENT, args.input_side, Path(tmp))
            style = resized_copy(STYLE, args.input_side, Path(tmp))
        for size in args.sizes:
            row = run_child(size, args.evaluations, args.weights, content, style)
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "evaluation_gaps"}), flush=True)

    measured = [r for r in rows if r.get("seconds_per_megapixel_step")]
    base = measured[0]["seconds_per_megapixel_step"] if measured else None
    for row in measured:
        row["speed_ratio_to_smallest"] = round(row["seconds_per_megapixel_step"] / base, 3)

    print(
        "\n| size | pixels | s per evaluation | s per megapixel-step | ratio to smallest "
        "| peak RSS MB | limit MB |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|")
    for row in rows:
        if "error" in row:
            print(f"| {row['side']} | error: {row['error'][-200:]!r} | | | | | |")
            continue
        per_eval = row["seconds_per_evaluation"]
        per_mp = row["seconds_per_megapixel_step"]
        print(
            f"| {row['side']} | {row['size'][0]}×{row['size'][1]} "
            f"| {per_eval:.2f} | {per_mp:.2f} | {row.get('speed_ratio_to_smallest', '-')} "
            f"| {row['peak_rss_mb']:,.0f} | {row['rss_limit_mb'] or '-'} |"
        )
    report = {
        "machine": {
            "cpu_flags": cpu_flags(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "loadavg_end": list(os.getloadavg()),
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        },
        "setup": {
            "content": CONTENT.name,
            "style": STYLE.name,
            "input_side": args.input_side or "as stored",
            "weights": Path(args.weights).name,
            "evaluations": args.evaluations,
        },
        "results": rows,
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {out_path}")


if __name__ == "__main__":
    main()
