"""Small synthetic pictures for engine tests that must run without ../shared."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def synthetic_photo(width: int = 64, height: int = 48, seed: int = 0) -> bytes:
    """A smooth colour gradient with a few blocks: photo-like, deterministic, PNG-encoded."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    rgb = np.stack([255 * x / width, 255 * y / height, 128 + 60 * np.sin(x / 5.0)], axis=-1)
    for _ in range(3):
        x0, y0 = rng.integers(0, width // 2), rng.integers(0, height // 2)
        rgb[y0 : y0 + height // 4, x0 : x0 + width // 4] = rng.uniform(0, 255, 3)
    return png(rgb)


def synthetic_style(width: int = 64, height: int = 64, seed: int = 1) -> bytes:
    """High-frequency stripes and noise: something with texture to transfer."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    stripes = 127 + 127 * np.sin((x + y) / 2.0)
    rgb = np.stack([stripes, 255 - stripes, rng.uniform(0, 255, (height, width))], axis=-1)
    return png(rgb)


def png(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float32)
