#!/usr/bin/env python3
"""Stroke size against the brush size (`--style-scale`). Not a test: it prints and writes JSON.

Each style is painted on one photo at several style scales (same seed, same steps), and the
painting's stroke size is measured as the **autocorrelation half-width** of its band-pass
luminance: the luminance blurred by a Gaussian of sigma 1 px (pixel noise out) minus the same
blurred by a sigma of 3/8 of the long side (48 px at 128 px: only the overall light out), its
autocorrelation (Wiener–Khinchin, zero-padded) averaged over rings, and the shift in pixels at
which it falls to one half. A painting of bigger strokes stays like itself over a longer shift.
Also reported: the same with a narrow band (sigma 1–12 px: fine texture only, which cannot see
strokes much wider than 12 px, so it saturates at large scales), and the power-weighted mean
wavelength of the luminance spectrum (2–32 px), which reacts less: the photo's own edges weigh
on it.

    .venv/bin/python benchmarks/bench_stroke_size.py --size 128 --scales 0.5 1 2
    .venv/bin/python benchmarks/bench_stroke_size.py --styles starry_night great_wave --steps 300
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared"
WEIGHTS = SHARED / "models" / "vgg19_vgg16features_notop.weights.h5"


WIDE_BAND = 0.375
"""The wide band's upper sigma, as a fraction of the long side."""


def band_pass(luminance: Image.Image, low: float = 1.0, high: float | None = None) -> np.ndarray:
    """Luminance blurred by sigma `low` minus luminance blurred by sigma `high` (default: the
    wide band, WIDE_BAND of the long side)."""
    if high is None:
        high = WIDE_BAND * max(luminance.size)
    fine = np.asarray(luminance.filter(ImageFilter.GaussianBlur(low)), np.float64)
    coarse = np.asarray(luminance.filter(ImageFilter.GaussianBlur(high)), np.float64)
    out = fine - coarse
    return out - out.mean()


def autocorrelation_half_width(
    image: bytes, *, high: float | None = None, max_shift: int = 40
) -> float:
    """Pixels of shift at which the ring-averaged autocorrelation of the band-pass luminance
    falls to 1/2 (linear interpolation between rings). `high`: the band's upper sigma in px
    (default: the wide band)."""
    with Image.open(io.BytesIO(image)) as picture:
        signal = band_pass(picture.convert("L"), high=high)
    height, width = signal.shape
    power = np.abs(np.fft.fft2(signal, s=(2 * height, 2 * width))) ** 2
    acf = np.fft.fftshift(np.real(np.fft.ifft2(power)))
    acf /= acf.max()
    yy, xx = np.mgrid[0 : 2 * height, 0 : 2 * width]
    radius = np.hypot(yy - height, xx - width)
    profile = [
        float(acf[(radius >= k - 0.5) & (radius < k + 0.5)].mean()) for k in range(max_shift)
    ]
    for k in range(1, max_shift):
        if profile[k] < 0.5:
            return k - 1 + (profile[k - 1] - 0.5) / (profile[k - 1] - profile[k])
    return float(max_shift)


def mean_wavelength(image: bytes) -> float:
    """Power-weighted mean wavelength (px) of the luminance spectrum between 2 and 32 px."""
    with Image.open(io.BytesIO(image)) as picture:
        luminance = picture.convert("L").filter(ImageFilter.GaussianBlur(1.0))
    signal = np.asarray(luminance, np.float64)
    signal -= signal.mean()
    height, width = signal.shape
    spectrum = np.abs(np.fft.fft2(signal * np.outer(np.hanning(height), np.hanning(width)))) ** 2
    freq = np.hypot(np.fft.fftfreq(height)[:, None], np.fft.fftfreq(width)[None, :])
    band = (freq >= 1 / 32) & (freq <= 1 / 2)
    return float((spectrum[band] / freq[band]).sum() / spectrum[band].sum())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--content", default=str(SHARED / "images" / "content" / "tubingen.jpg"))
    parser.add_argument("--styles", nargs="+", default=["starry_night", "great_wave"])
    parser.add_argument("--scales", type=float, nargs="+", default=[0.5, 1.0, 2.0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--strength", type=float, default=4.0)
    parser.add_argument("--weights", default=str(WEIGHTS) if WEIGHTS.exists() else "random")
    parser.add_argument("--keep", type=Path, default=None, help="also write the paintings here")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    from engine.api import stylize
    from engine.params import StyleParams

    content = Path(args.content).read_bytes()
    rows: list[dict[str, Any]] = []
    for style_name in args.styles:
        style = (SHARED / "images" / "styles" / f"{style_name}.jpg").read_bytes()
        for scale in args.scales:
            params = StyleParams(
                size=args.size,
                strength=args.strength,
                steps=(args.steps,),
                style_scale=scale,
                preview=False,
            )
            started = time.perf_counter()
            result = stylize(content, [style], params, weights=args.weights)
            row = {
                "style": style_name,
                "style_scale": scale,
                "acf_half_width_px": round(autocorrelation_half_width(result.image), 2),
                "acf_half_width_fine_px": round(
                    autocorrelation_half_width(result.image, high=12.0), 2
                ),
                "mean_wavelength_px": round(mean_wavelength(result.image), 2),
                "seconds": round(time.perf_counter() - started, 1),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
            if args.keep is not None:
                args.keep.mkdir(parents=True, exist_ok=True)
                (args.keep / f"{style_name}_x{scale:g}.jpg").write_bytes(result.image)
    print()
    print("| style | " + " | ".join(f"X={s:g}" for s in args.scales) + " |")
    print("|---|" + "---|" * len(args.scales))
    for style_name in args.styles:
        cells = [f"{r['acf_half_width_px']:.2f} px" for r in rows if r["style"] == style_name]
        print(f"| {style_name} | " + " | ".join(cells) + " |")
    if args.out is not None:
        report = {
            "date": dt.date.today().isoformat(),
            "content": Path(args.content).name,
            "size": args.size,
            "steps": args.steps,
            "strength": args.strength,
            "weights": Path(args.weights).name,
            "measure": (
                "autocorrelation half-width of the band-pass luminance: sigma 1 px minus sigma "
                f"{WIDE_BAND} x long side (acf_half_width_px), sigma 1-12 px (..._fine_px)"
            ),
            "rows": rows,
        }
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
