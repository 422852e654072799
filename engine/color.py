"""Colour preservation by luminance-only transfer (Gatys et al. 2016, "Preserving colour").

The style is transferred on luminance alone: content and style pictures become greyscale
(the style's luminance matched to the content's mean and spread), the optimisation runs on
those, and the result's luminance is recombined with the content photo's chroma (YIQ I and Q).
The output therefore has exactly the content's colours, with the style's brush strokes.
"""

from __future__ import annotations

import numpy as np

# NTSC YIQ, as used by the paper; the inverse is computed so the round trip is exact.
RGB_TO_YIQ = np.array(
    [[0.299, 0.587, 0.114], [0.595716, -0.274453, -0.321263], [0.211456, -0.522591, 0.311135]],
    dtype=np.float64,
)
YIQ_TO_RGB = np.linalg.inv(RGB_TO_YIQ)


def rgb_to_yiq(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(rgb, np.float64) @ RGB_TO_YIQ.T


def yiq_to_rgb(yiq: np.ndarray) -> np.ndarray:
    return np.asarray(yiq, np.float64) @ YIQ_TO_RGB.T


def luminance_as_rgb(rgb: np.ndarray) -> np.ndarray:
    """The picture's luminance repeated over three channels (float32, 0–255)."""
    y = rgb_to_yiq(rgb)[..., 0]
    return np.repeat(y[..., None], 3, axis=-1).astype(np.float32)


def matched_luminance_as_rgb(style_rgb: np.ndarray, content_rgb: np.ndarray) -> np.ndarray:
    """The style's luminance shifted and scaled to the content's mean and standard deviation."""
    style_y = rgb_to_yiq(style_rgb)[..., 0]
    content_y = rgb_to_yiq(content_rgb)[..., 0]
    scale = content_y.std() / max(style_y.std(), 1e-6)
    matched = (style_y - style_y.mean()) * scale + content_y.mean()
    matched = np.clip(matched, 0.0, 255.0)
    return np.repeat(matched[..., None], 3, axis=-1).astype(np.float32)


def recombine(result_rgb: np.ndarray, content_rgb: np.ndarray) -> np.ndarray:
    """Luminance of `result_rgb` with the chroma of `content_rgb` (same size), clipped to 0–255."""
    yiq = rgb_to_yiq(content_rgb)
    yiq[..., 0] = rgb_to_yiq(result_rgb)[..., 0]
    return np.clip(yiq_to_rgb(yiq), 0.0, 255.0).astype(np.float32)
