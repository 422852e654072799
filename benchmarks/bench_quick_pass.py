"""Does the quick pass's picture start the full-size scale better than the photo?

    .venv/bin/python benchmarks/bench_quick_pass.py [--size 512] [--pairs tubingen:starry_night ...]
        [--weights PATH] [--no-score] [--out benchmarks/results/quick_pass_DATE.json]

For each content:style pair, two default first paintings at `--size` (one process, model built
and traced once beforehand): the full-size scale started from the photo (what the engine does),
and started from the quick pass's picture upsampled with the photo's detail
(`run_pipeline(..., start_from_quick_pass=True)`). Reported per run: the engine's final loss, the
reference scorer's total for the saved PNG (`../shared/reference/seed_reference.py score`, same
weights), seconds to the first preview, seconds of the quick pass, and seconds to the painting.

A benchmark, not a test: prints a markdown table, writes JSON, asserts nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
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
REFERENCE = SHARED / "reference" / "seed_reference.py"
DEFAULT_PAIRS = ("tubingen:starry_night", "mountain_stream:great_wave")


def reference_score(content: Path, style: Path, image: Path, size: int, weights: str) -> float:
    cmd = [sys.executable, str(REFERENCE), "score", str(content), str(style), str(image)]
    env = {**os.environ, "VGG19_WEIGHTS": weights, "TF_CPP_MIN_LOG_LEVEL": "2"}
    out = subprocess.run(
        [*cmd, "--max-dim", str(size)], env=env, capture_output=True, text=True, check=True
    ).stdout
    return float(json.loads(out.strip().splitlines()[-1])["total"])


def paint(
    content: Path, style: Path, size: int, weights: str, start_from_quick_pass: bool, out: Path
) -> dict[str, Any]:
    from engine.job import Progress
    from engine.params import StyleParams
    from engine.pipeline import run_pipeline

    params = StyleParams(size=size, output_format="png")
    first_preview: float | None = None
    quick_pass_end: float | None = None
    started = time.perf_counter()

    def on_progress(progress: Progress) -> None:
        nonlocal first_preview, quick_pass_end
        if progress.preview is not None and first_preview is None:
            first_preview = time.perf_counter() - started
        if progress.scale == 0 and progress.scales == 2:
            quick_pass_end = progress.elapsed

    result = run_pipeline(
        content.read_bytes(),
        [style.read_bytes()],
        params,
        on_progress=on_progress,
        weights=weights,
        start_from_quick_pass=start_from_quick_pass,
    )
    out.write_bytes(result.image)
    return {
        "start": "quick pass" if start_from_quick_pass else "photo",
        "loss": result.losses["total"],
        "losses": result.losses,
        "first_preview_s": first_preview,
        "quick_pass_end_s": quick_pass_end,
        "painting_s": result.timings["total"],
        "timings": result.timings,
        "megapixel_steps": result.megapixel_steps,
        "planned_megapixel_steps": params.planned_megapixel_steps(result.height / result.width),
        "size": [result.width, result.height],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--pairs", nargs="+", default=list(DEFAULT_PAIRS))
    parser.add_argument("--weights", default=str(TRAINED_WEIGHTS))
    parser.add_argument("--no-score", action="store_true", help="skip the reference scorer")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    out_path = args.out or REPO_DIR / "benchmarks" / "results" / (
        f"quick_pass_{dt.date.today().isoformat()}.json"
    )

    from engine.params import StyleParams
    from engine.pipeline import run_pipeline

    images = SHARED / "images"
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for pair in args.pairs:
            content_name, style_name = pair.split(":")
            content = images / "content" / f"{content_name}.jpg"
            style = images / "styles" / f"{style_name}.jpg"
            # Build the model and trace both sizes once, so neither run pays for it.
            run_pipeline(
                content.read_bytes(),
                [style.read_bytes()],
                StyleParams(size=args.size, steps=(2,), quick_pass_steps=2),
                weights=args.weights,
            )
            for start_from_quick_pass in (False, True):
                image = Path(tmp) / f"{content_name}_{style_name}_{start_from_quick_pass}.png"
                row = paint(content, style, args.size, args.weights, start_from_quick_pass, image)
                row["pair"] = pair
                if not args.no_score:
                    row["score"] = reference_score(content, style, image, args.size, args.weights)
                rows.append(row)
                print(json.dumps(row), flush=True)

    print(
        "\n| pair | start | engine loss | scorer total | first preview s "
        "| quick pass s | painting s | preview/painting |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        ratio = (row["first_preview_s"] or 0) / row["painting_s"]
        score = f"{row['score']:,.0f}" if "score" in row else "-"
        print(
            f"| {row['pair']} | {row['start']} | {row['loss']:,.0f} | {score} "
            f"| {row['first_preview_s']:.1f} | {row['quick_pass_end_s']:.1f} "
            f"| {row['painting_s']:.1f} | {ratio:.3f} |"
        )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(
        json.dumps(
            {"size": args.size, "weights": Path(args.weights).name, "runs": rows},
            indent=2,
        )
    )
    print(f"\nwrote {out_path}")


if __name__ == "__main__":
    main()
