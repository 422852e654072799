#!/usr/bin/env python3
"""Loss after N evaluations for optimiser variants, in one process. Not a test.

Every variant starts from the same picture on the same compiled objective (tubingen +
starry_night, trained-feature weights, the default precision), and is run for a fixed number
of loss+gradient evaluations; the table gives the loss after 50/100/150/210 evaluations and
the evaluations needed to reach the reference recipe's 1000-step level at that size.

    .venv/bin/python benchmarks/bench_engine_optimizers.py --size 256 --evals 210 \
        scipy lbfgs lbfgs:history=10 adam+lbfgs:adam_steps=10

A variant is NAME[:key=value,...]: `scipy` (scipy's L-BFGS-B, float64, the old default),
`lbfgs` (engine.optimize.run_lbfgs; keys: LbfgsSettings fields), `adam+lbfgs` (adam_steps
Adam steps first, then lbfgs), `adam` (the recipe).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared"
WEIGHTS = SHARED / "models" / "vgg19_vgg16features_notop.weights.h5"
# The recipe's 1000-step result by the reference scorer (512: shared/reference/results;
# 256: benchmarks/results/reference_tubingen_starry_night_256.json).
REFERENCE_LOSS = {512: 60120.3, 256: 132862.1}
CHECKPOINTS = (50, 100, 150, 210)


def parse_variant(text: str) -> tuple[str, dict[str, float]]:
    name, _, rest = text.partition(":")
    options = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        options[key] = float(value)
    return name, options


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("variants", nargs="+")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--evals", type=int, default=210)
    parser.add_argument("--content", default="tubingen")
    parser.add_argument("--style", default="starry_night")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    from engine import optimize
    from engine.images import decode_image
    from engine.objective import get_objective
    from engine.params import CONTENT_LAYERS, STYLE_LAYERS, StyleParams
    from engine.pipeline import _scaled

    params = StyleParams(size=args.size)
    mixed = {"auto": params.use_mixed_precision, "fp32": False, "bf16": True}[args.precision]
    objective = get_objective(str(WEIGHTS), STYLE_LAYERS, CONTENT_LAYERS, mixed_precision=mixed)
    content_image = decode_image((SHARED / "images/content" / f"{args.content}.jpg").read_bytes())
    style_image = decode_image((SHARED / "images/styles" / f"{args.style}.jpg").read_bytes())
    content = _scaled(content_image, args.size)
    style = _scaled(style_image, args.size)
    targets = objective.targets(content, [style], (1.0,))
    cw, sw = params.content_weight, params.effective_style_weight
    objective.evaluate(content, targets, cw, sw, 0.0)  # trace once

    results: dict[str, Any] = {}
    for text in args.variants:
        name, options = parse_variant(text)
        trace: list[float] = []
        eval_times: list[float] = []

        def evaluate(
            image: np.ndarray, trace: list[float] = trace, eval_times: list[float] = eval_times
        ) -> tuple[Any, np.ndarray]:
            t = time.perf_counter()
            out = objective.evaluate(image, targets, cw, sw, 0.0)
            eval_times.append(time.perf_counter() - t)
            trace.append(out[0].total)
            return out

        started = time.perf_counter()
        if name == "scipy":
            optimize.run_lbfgs_scipy(evaluate, content, args.evals)
        elif name == "adam":
            optimize.run_adam(evaluate, content, args.evals)
        elif name in ("lbfgs", "adam+lbfgs"):
            start = content
            adam_steps = int(options.pop("adam_steps", 0))
            unbounded = options.pop("unbounded", 0)
            optimize.PIXEL_MIN, optimize.PIXEL_MAX = (-1e9, 1e9) if unbounded else (0.0, 255.0)
            if name == "adam+lbfgs" and adam_steps:
                start = optimize.run_adam(
                    evaluate, content, adam_steps, learning_rate=options.pop("lr", 5.0)
                ).image
            settings = optimize.LbfgsSettings(
                **{k: (int(v) if k == "history" else v) for k, v in options.items()}
            )
            optimize.run_lbfgs(evaluate, start, args.evals - len(trace), settings=settings)
        else:
            raise SystemExit(f"unknown variant {name}")
        wall = time.perf_counter() - started
        best = np.minimum.accumulate(trace)
        reference = REFERENCE_LOSS.get(args.size)
        reach = next((i + 1 for i, v in enumerate(best) if reference and v <= reference), None)
        results[text] = {
            "best_after": {n: float(best[n - 1]) for n in CHECKPOINTS if n <= len(best)},
            "evals_to_reference": reach,
            "trace": [float(v) for v in trace],
            "wall_s": wall,
            "eval_s_median": float(np.median(eval_times)),
            "overhead_s_per_eval": (wall - sum(eval_times)) / len(trace),
        }
        row = results[text]
        cells = " | ".join(f"{row['best_after'].get(n, float('nan')):,.0f}" for n in CHECKPOINTS)
        print(
            f"| {text} | {cells} | {reach} | {row['eval_s_median']:.3f} | "
            f"{row['overhead_s_per_eval'] * 1000:.1f} ms |",
            flush=True,
        )
    out = args.out or REPO / "benchmarks" / "results" / (
        f"engine_optimizers_{args.size}_{dt.date.today().isoformat()}.json"
    )
    existing = json.loads(out.read_text()) if out.exists() else {}
    existing.update(results)
    out.write_text(json.dumps(existing, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
