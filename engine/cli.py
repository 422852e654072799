"""Command line: `python -m engine CONTENT STYLE [STYLE ...] -o OUT`.

Every default shown by `--help` comes from `StyleParams`. Bad input ends with one line on
stderr and exit code 2; a progress bar shows the loss and the time left.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine.errors import EngineError
from engine.params import (
    DEFAULT_ADAM_STEPS,
    DEFAULT_LBFGS_STEPS,
    MAX_SIZE,
    MAX_STRENGTH,
    MAX_STYLE_SCALE,
    MIN_SIZE,
    MIN_STRENGTH,
    MIN_STYLE_SCALE,
    REFERENCE_SIZE,
    ParamsError,
    StyleParams,
)

DEFAULTS = StyleParams()
EXIT_BAD_INPUT = 2


def _steps(text: str) -> tuple[int, ...]:
    try:
        steps = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"steps must be whole numbers separated by commas, not {text!r}"
        ) from None
    if any(s < 0 for s in steps):
        raise argparse.ArgumentTypeError("steps must not be negative")
    return steps


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m engine",
        description="Paint a photo in the style of one or more pictures (Gatys et al. on VGG19).",
    )
    parser.add_argument("content", type=Path, help="the photo to repaint")
    parser.add_argument("styles", type=Path, nargs="+", metavar="style", help="style picture(s)")
    parser.add_argument(
        "-o", "--output", type=Path, required=True, help="where to write the result (.jpg or .png)"
    )
    parser.add_argument(
        "--strength", type=float, default=DEFAULTS.strength,
        help=f"{MIN_STRENGTH:g} (a hint) to {MAX_STRENGTH:g} (strong); 3 is the reference recipe "
        f"(default {DEFAULTS.strength:g})",
    )  # fmt: skip
    parser.add_argument(
        "--size",
        type=int,
        default=DEFAULTS.size,
        help=f"long side in px, {MIN_SIZE}–{MAX_SIZE} (default %(default)s)",
    )
    parser.add_argument("--preserve-colors", action="store_true", help="keep the photo's colours")
    parser.add_argument(
        "--optimizer",
        choices=("lbfgs", "adam"),
        default=DEFAULTS.optimizer,
        help="default %(default)s",
    )
    parser.add_argument(
        "--steps", type=_steps, default=None,
        help="steps per scale, coarsest first; as many scales run as numbers given, e.g. "
        f"40,{DEFAULT_LBFGS_STEPS[-1]} or 200 (default: {DEFAULT_LBFGS_STEPS[-1]} full-size steps "
        f"at {REFERENCE_SIZE} px, more for smaller pictures; adam: {DEFAULT_ADAM_STEPS[-1]})",
    )  # fmt: skip
    parser.add_argument(
        "--scales",
        type=int,
        default=DEFAULTS.scales,
        help="at most this many coarse-to-fine levels (default %(default)s)",
    )
    parser.add_argument(
        "--weights", default=None,
        help="imagenet, random, or a VGG19 .weights.h5 file (default: $STYLEBOT_WEIGHTS, else imagenet)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=DEFAULTS.seed, help="default %(default)s")
    parser.add_argument(
        "--init", choices=("content", "noise"), default=DEFAULTS.init, help="default %(default)s"
    )
    parser.add_argument(
        "--tv-weight", type=float, default=DEFAULTS.tv_weight, help="default %(default)s"
    )
    parser.add_argument(
        "--content-weight", type=float, default=None, help=f"default {DEFAULTS.content_weight:g}"
    )
    parser.add_argument(
        "--style-weight", type=float, default=None, help="default: derived from --strength"
    )
    parser.add_argument(
        "--style-blend", type=float, nargs="+", default=None, help="relative weight of each style"
    )
    parser.add_argument(
        "--style-scale", type=float, default=DEFAULTS.style_scale, metavar="X",
        help=f"brush size: the style picture at X times the working size before its Gram "
        f"matrices are taken ({MIN_STYLE_SCALE:g}–{MAX_STYLE_SCALE:g}; above 1 bigger strokes; "
        "default %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--target-loss", type=float, default=DEFAULTS.target_loss, metavar="LOSS",
        help="stop as soon as the loss (weighted objective, as reported) reaches LOSS "
        "(L-BFGS; default: run every step)",
    )  # fmt: skip
    parser.add_argument(
        "--init-image", type=Path, default=None, help="warm start from a previous result"
    )
    parser.add_argument(
        "--mixed-precision", action=argparse.BooleanOptionalAction, default=DEFAULTS.mixed_precision,
        help="bfloat16 convolutions (default: on when the device has native bfloat16: a GPU of compute capability 8.0+, or a CPU with AVX512-BF16/AMX)",
    )  # fmt: skip
    parser.add_argument(
        "--reference", action="store_true",
        help="the original objective exactly: content weight 1e3, style weight 1e-2, no TV, colours not kept",
    )  # fmt: skip
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--report", type=Path, default=None,
        help="also write the losses and timings as JSON to this file",
    )  # fmt: skip
    return parser


def params_from_args(args: argparse.Namespace) -> StyleParams:
    values: dict[str, Any] = {
        "size": args.size,
        "strength": args.strength,
        "optimizer": args.optimizer,
        "scales": args.scales,
        "steps": args.steps,
        "seed": args.seed,
        "init": args.init,
        "tv_weight": args.tv_weight,
        "preserve_colors": args.preserve_colors,
        "mixed_precision": args.mixed_precision,
        "style_blend": tuple(args.style_blend) if args.style_blend else None,
        "style_scale": args.style_scale,
        "target_loss": args.target_loss,
        "output_format": "png" if args.output.suffix.lower() == ".png" else "jpeg",
        "preview": False,  # the command line writes the painting only: no quick pass for a preview
    }
    if args.content_weight is not None:
        values["content_weight"] = args.content_weight
    if args.style_weight is not None:
        values["style_weight"] = args.style_weight
    if args.reference:
        return StyleParams.reference(
            **{k: v for k, v in values.items() if k not in ("tv_weight", "preserve_colors")}
        )
    return StyleParams(**values)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise EngineError(f"cannot read {path}: {error.strerror or error}") from None


class _ProgressBar:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar: Any = None

    def __call__(self, progress: Any) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm  # only when a bar is shown (not with --quiet or --json)

            self.bar = tqdm(
                total=progress.total_steps, unit="step", dynamic_ncols=True, file=sys.stderr
            )
        self.bar.n = progress.step
        self.bar.set_postfix_str(
            f"scale {progress.scale + 1}/{progress.scales} loss {progress.loss:,.0f} eta {progress.eta:.0f}s",
            refresh=False,
        )
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    started = time.perf_counter()
    bar = _ProgressBar(not args.quiet and sys.stderr.isatty())
    try:
        params = params_from_args(args)
        content = _read(args.content)
        styles = [_read(p) for p in args.styles]
        init = _read(args.init_image) if args.init_image else None
        # Imported after the arguments are checked: TensorFlow takes seconds to load, and a
        # mistyped flag should be reported at once.
        from engine.api import stylize
        from engine.hardware import setup_device

        setup_device()  # before TensorFlow's first op: memory growth on a GPU
        result = stylize(content, styles, params, init=init, on_progress=bar, weights=args.weights)
        bar.close()
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_bytes(result.image)
        if args.report is not None:
            report = {
                "losses": result.losses,
                "timings": result.timings,
                "size": [result.width, result.height],
                "device": result.device,
                "params": params.to_dict(),
                "process_seconds": time.perf_counter() - started,
            }
            args.report.write_text(json.dumps(report, indent=2))
    except (EngineError, ParamsError) as error:
        bar.close()
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as error:
        bar.close()
        print(f"error: cannot write {args.output}: {error.strerror or error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        bar.close()
        print("error: interrupted", file=sys.stderr)
        return 130
    losses = result.losses
    print(
        f"wrote {args.output} ({result.width}x{result.height}) in {time.perf_counter() - started:.1f} s "
        f"on {result.device}; "
        f"loss {losses['total']:,.0f} (style {losses['style']:,.0f}, content {losses['content']:,.0f})"
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
