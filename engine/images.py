"""Safe decoding and encoding of pictures received as bytes (Pillow + numpy, no TensorFlow).

Everything a person can send is untrusted: the bot calls `probe_image` to refuse an upload
cheaply from its header, and the engine calls `decode_image` for the full, checked decode.
Every refusal is an `ImageError` subclass whose `str()` is a sentence fit to show the sender.

Limits (from the header, before any pixel is decoded):
- at most `MAX_BYTES` of file and `MAX_PIXELS` decoded pixels. A JPEG decoded with `max_side`
  is reduced by libjpeg while decoding (`draft`, 1/2, 1/4 or 1/8 scale), so the pixel limit
  applies to the reduced size: a 54 MP phone photo is accepted when a working size is given.
- at least `MIN_SIDE` pixels on each side and an aspect ratio of at most `MAX_ASPECT`:1.

Never set `ImageFile.LOAD_TRUNCATED_IMAGES` or `Image.MAX_IMAGE_PIXELS = None`: the first
hides damaged files, the second removes Pillow's own bomb guard.
"""

from __future__ import annotations

import io
import logging
import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageFile, UnidentifiedImageError, features

from engine.errors import ImageError

log = logging.getLogger(__name__)

MAX_BYTES = 20 * 1024 * 1024
"""Largest file accepted (Telegram's bot download limit is 20 MB)."""
MAX_PIXELS = 40_000_000
"""Largest number of pixels decoded (40 MP; about 480 MB as float32 RGB)."""
MIN_SIDE = 32
"""Smallest side accepted (VGG19's pooling needs a few pixels left at block5)."""
MAX_ASPECT = 10.0
"""Longest side over shortest side."""
ALLOWED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF", "MPO")
"""Pillow format names accepted (MPO is what phones write: JPEG with extra frames)."""

ImageFormat = Literal["jpeg", "png"]

_MIME_TYPES: dict[str, str] = {"jpeg": "image/jpeg", "png": "image/png"}
_JPEG_FORMATS = ("JPEG", "MPO")
_WHITE = (255, 255, 255, 255)
_ORIENTATION_TAG = 0x0112
_TRANSPOSE_FOR_ORIENTATION: dict[int, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1")
_AVIF_BRANDS = (b"avif", b"avis")
_JPEG_QUALITIES = (92, 85, 75, 65, 50, 35)


# -- refusals ---------------------------------------------------------------------------------
class _Refusal(ImageError):
    """An `ImageError` with a default sentence; a more precise one may be given."""

    default_message = "This picture cannot be used, please send another photo."

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.default_message)


class EmptyImage(_Refusal):
    code = "empty_file"
    default_message = "The file is empty, please send a photo."


class NotAnImage(_Refusal):
    code = "not_an_image"
    default_message = "This file is not an image, please send a photo (JPEG, PNG or WebP)."


class UnsupportedFormat(_Refusal):
    code = "unsupported_format"
    default_message = "This image format is not supported, please send a JPEG, PNG or WebP photo."


class CorruptImage(_Refusal):
    code = "corrupt_image"
    default_message = "The file is damaged or incomplete, please send it again."


class ImageTooLarge(_Refusal):
    code = "image_too_large"
    default_message = (
        f"The image is too large (maximum {MAX_PIXELS // 1_000_000} megapixels), "
        "please send a smaller one."
    )


class ImageTooSmall(_Refusal):
    code = "image_too_small"
    default_message = f"The image is too small (minimum {MIN_SIDE} px on each side)."


class ExtremeAspect(_Refusal):
    code = "extreme_aspect"
    default_message = f"The aspect ratio is too extreme (max {MAX_ASPECT:g}:1)."


_SVG_MESSAGE = "Vector images (SVG) are not supported, please send a photo."
_BYTES_MESSAGE = f"The file is too large (maximum {MAX_BYTES // (1024 * 1024)} MB)."


def supported_formats() -> tuple[str, ...]:
    """`ALLOWED_FORMATS` that this Pillow can actually decode (WebP needs libwebp)."""
    if features.check("webp"):
        return ALLOWED_FORMATS
    return tuple(f for f in ALLOWED_FORMATS if f != "WEBP")


# -- public API -------------------------------------------------------------------------------
def probe_image(data: bytes, *, max_side: int | None = None) -> tuple[int, int]:
    """Every refusal that needs no decode; returns the displayed (width, height).

    The size is after EXIF orientation (a 768x512 photo tagged "rotate 90°" gives (512, 768)).
    Pass the same `max_side` as the later `decode_image` call to get the same verdict on very
    large JPEGs (they are accepted when they can be decoded at a reduced scale).
    """
    _check_max_side(max_side)
    with _pillow_guard(), _open(data) as im:
        width, height = im.size
        _check_header(im, max_side)
        orientation = _orientation(im)
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return width, height


def decode_image(data: bytes, *, max_side: int | None = None) -> Image.Image:
    """Fully decode untrusted bytes into a loaded RGB image, or raise an `ImageError`.

    Header checks first (no pixel decoded), then a complete decode (a truncated file is
    refused, never padded with grey), first frame only, EXIF orientation applied, transparency
    composited onto white, any colour mode converted to RGB, and, when `max_side` is given and
    the long side is larger, a high-quality downscale to exactly `max_side`. The result's
    `.info` is empty (no EXIF, so nothing rotates it a second time).
    """
    _check_max_side(max_side)
    with _pillow_guard(), _open(data) as im:
        _check_header(im, max_side)
        im.load()
        orientation = _orientation(im)
        rgb = _to_rgb(im)
    transpose = _TRANSPOSE_FOR_ORIENTATION.get(orientation)
    if transpose is not None:
        rgb = rgb.transpose(transpose)
    if max_side is not None and max(rgb.size) > max_side:
        rgb = resize_long_side(rgb, max_side)
    rgb.info = {}
    return rgb


def resize_long_side(img: Image.Image, side: int) -> Image.Image:
    """Scale (up or down, LANCZOS) so the long side is `side`; aspect kept, each side ≥ 1."""
    if side < 1:
        raise ValueError(f"side must be at least 1 px, not {side}")
    width, height = img.size
    if width >= height:
        size = (side, max(1, round(height * side / width)))
    else:
        size = (max(1, round(width * side / height)), side)
    return resize_to(img, size)


def resize_to(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Scale to exactly `size` = (width, height) with LANCZOS (a new image, even if unchanged)."""
    width, height = size
    if width < 1 or height < 1:
        raise ValueError(f"size must be at least 1x1 px, not {width}x{height}")
    if img.size == (width, height):
        return img.copy()
    return img.resize((width, height), Image.Resampling.LANCZOS, reducing_gap=3.0)


def encode_image(img: Image.Image, fmt: ImageFormat = "jpeg", quality: int = 92) -> bytes:
    """RGB JPEG (optimised) or PNG bytes, without EXIF, ICC profile or other metadata."""
    if fmt not in _MIME_TYPES:
        raise ValueError(f"format must be jpeg or png, not {fmt!r}")
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be 1–100, not {quality}")
    rgb = img if img.mode == "RGB" else _to_rgb(img)
    if rgb.info:
        rgb = rgb.copy()
        rgb.info = {}
    buffer = io.BytesIO()
    if fmt == "jpeg":
        rgb.save(buffer, "JPEG", quality=quality, optimize=True)
    else:
        rgb.save(buffer, "PNG")
    return buffer.getvalue()


def mime_type(fmt: str) -> str:
    """The MIME type of an `encode_image` format ("jpeg" → "image/jpeg")."""
    try:
        return _MIME_TYPES[fmt]
    except KeyError:
        raise ValueError(f"format must be jpeg or png, not {fmt!r}") from None


def to_array(img: Image.Image) -> npt.NDArray[np.float32]:
    """A new float32 array, height x width x 3, values 0..255."""
    rgb = img if img.mode == "RGB" else _to_rgb(img)
    return np.array(rgb, dtype=np.float32)


def from_array(arr: npt.ArrayLike) -> Image.Image:
    """An RGB image from H x W x 3 (or 1 x H x W x 3) values in 0..255, clipped and rounded."""
    values = np.asarray(arr, dtype=np.float64)
    if values.ndim == 4 and values.shape[0] == 1:
        values = values[0]
    if values.ndim != 3 or values.shape[2] != 3 or values.shape[0] < 1 or values.shape[1] < 1:
        raise ValueError(f"expected an H x W x 3 array, got shape {values.shape}")
    values = np.nan_to_num(values, nan=0.0, posinf=255.0, neginf=0.0)
    pixels = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(pixels))


def reencode_for_storage(data: bytes, max_side: int = 1024, max_bytes: int = 2_000_000) -> bytes:
    """Decode safely, shrink to at most `max_side` and re-encode as JPEG under `max_bytes`.

    The quality drops step by step while the file is too big; if even the lowest quality is
    too big, the picture shrinks further.
    """
    if max_bytes < 1:
        raise ValueError(f"max_bytes must be positive, not {max_bytes}")
    img = decode_image(data, max_side=max_side)
    while True:
        for quality in _JPEG_QUALITIES:
            encoded = encode_image(img, "jpeg", quality)
            if len(encoded) <= max_bytes:
                return encoded
        width, height = img.size
        if min(width, height) <= MIN_SIDE:
            raise ImageTooLarge(_BYTES_MESSAGE)
        img = resize_long_side(img, max(1, int(max(width, height) * 0.75)))


# -- internals --------------------------------------------------------------------------------
def _check_max_side(max_side: int | None) -> None:
    if max_side is not None and max_side < 1:
        raise ValueError(f"max_side must be at least 1 px, not {max_side}")


@contextmanager
def _pillow_guard() -> Iterator[None]:
    """Pillow's bomb warning becomes a refusal; other Pillow warnings are logged, not raised.

    Any other failure while Pillow reads untrusted bytes means the file is damaged.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            yield
        except ImageError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning, MemoryError):
            raise ImageTooLarge() from None
        except Exception as exc:
            log.info("picture refused as damaged: %r", exc)
            raise CorruptImage() from exc
    for warning in caught:
        log.debug("Pillow: %s", warning.message)


def _open(data: bytes) -> ImageFile.ImageFile:
    """`Image.open` restricted to the allowed formats, with the cheap refusals first."""
    if len(data) == 0:
        raise EmptyImage()
    if len(data) > MAX_BYTES:
        raise ImageTooLarge(_BYTES_MESSAGE)
    _refuse_known_others(data)
    try:
        # MPO has no opener of its own: the JPEG opener returns MPO files.
        openers = tuple(f for f in supported_formats() if f != "MPO")
        return Image.open(io.BytesIO(data), formats=openers)
    except UnidentifiedImageError:
        pass
    # Not an allowed format. Name it when Pillow knows it (header only, never decoded).
    name = None
    try:
        with Image.open(io.BytesIO(data)) as other:
            name = other.format
    except Exception:
        name = None
    if name:
        raise UnsupportedFormat(
            f"{name} images are not supported, please send a JPEG, PNG or WebP photo."
        )
    raise NotAnImage()


def _refuse_known_others(data: bytes) -> None:
    """Friendly refusals for formats people send that Pillow does not read (or must not)."""
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head[:1] == b"<" and b"<svg" in head.lower():
        raise UnsupportedFormat(_SVG_MESSAGE)
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        if brand in _HEIF_BRANDS:
            raise UnsupportedFormat(
                "HEIC photos are not supported, please send it as a photo or as a JPEG."
            )
        if brand in _AVIF_BRANDS:
            raise UnsupportedFormat("AVIF images are not supported, please send a JPEG or PNG.")
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and "WEBP" not in supported_formats():
        raise UnsupportedFormat("WebP images are not supported here, please send a JPEG or PNG.")


def _check_header(im: Image.Image, max_side: int | None) -> None:
    """Size checks from the header; for JPEGs with `max_side`, set up a reduced-scale decode."""
    if im.format not in supported_formats():
        raise UnsupportedFormat()
    width, height = im.size
    if max_side is not None and im.format in _JPEG_FORMATS and max(width, height) > max_side:
        scale = max_side / max(width, height)
        im.draft("RGB", (math.ceil(width * scale), math.ceil(height * scale)))
    decoded_width, decoded_height = im.size
    if decoded_width * decoded_height > MAX_PIXELS:
        raise ImageTooLarge()
    if width < MIN_SIDE or height < MIN_SIDE:
        raise ImageTooSmall()
    if max(width, height) / min(width, height) > MAX_ASPECT:
        raise ExtremeAspect()


def _orientation(im: Image.Image) -> int:
    """The EXIF orientation (1–8), 1 when absent or unreadable."""
    try:
        value = im.getexif().get(_ORIENTATION_TAG, 1)
    except Exception:
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _to_rgb(im: Image.Image) -> Image.Image:
    """A new RGB image: transparency on white, high bit depths scaled, CMYK etc. converted."""
    mode = im.mode
    if mode in _SIXTEEN_BIT_MODES or mode in ("I", "F"):
        return _high_depth_to_rgb(im)
    if mode == "RGB":
        return im.copy()
    try:
        if im.has_transparency_data:
            rgba = im.convert("RGBA")
            background = Image.new("RGBA", rgba.size, _WHITE)
            return Image.alpha_composite(background, rgba).convert("RGB")
        return im.convert("RGB")
    except ValueError:
        raise UnsupportedFormat(
            f"Images in colour mode {mode} are not supported, please send an RGB photo."
        ) from None


def _high_depth_to_rgb(im: Image.Image) -> Image.Image:
    """16-bit, 32-bit integer and float greyscale scaled to 0..255 (Pillow would clip)."""
    values = np.asarray(im).astype(np.float64)
    if im.mode == "F":
        finite = values[np.isfinite(values)]
        top = float(finite.max()) if finite.size else 0.0
        if top <= 1.0:
            values = values * 255.0
        values = np.nan_to_num(values, nan=0.0, posinf=255.0, neginf=0.0)
    elif im.mode in _SIXTEEN_BIT_MODES or values.max() > 255:
        values = values * (255.0 / 65535.0)
    grey = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(grey)).convert("RGB")
