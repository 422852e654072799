"""engine.images: safe decoding of untrusted picture bytes, encoding, resizing, arrays."""

from __future__ import annotations

import io
import json
import pickle
import random
import struct
import subprocess
import sys
import tracemalloc
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile, features

from engine.errors import ImageError
from engine.images import (
    ALLOWED_FORMATS,
    MAX_ASPECT,
    MAX_BYTES,
    MAX_PIXELS,
    MIN_SIDE,
    CorruptImage,
    EmptyImage,
    ExtremeAspect,
    ImageTooLarge,
    ImageTooSmall,
    NotAnImage,
    UnsupportedFormat,
    decode_image,
    encode_image,
    from_array,
    mime_type,
    probe_image,
    reencode_for_storage,
    resize_long_side,
    resize_to,
    to_array,
)
from tests.conftest import REPO_DIR, shared_file

MAGENTA = (255, 0, 255)


# -- helpers ----------------------------------------------------------------------------------
def encode(img: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **options)
    return buffer.getvalue()


def gradient(width: int, height: int) -> Image.Image:
    """An RGB picture with distinct, smooth colours (compresses well, easy to compare)."""
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    rgb = np.stack(
        [np.broadcast_to(x, (height, width)), np.broadcast_to(y, (height, width)), (x + y) / 2],
        axis=-1,
    )
    return Image.fromarray(rgb.astype(np.uint8))


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def png_claiming(width: int, height: int) -> bytes:
    """A valid-looking greyscale PNG whose header declares width x height (data: a few rows)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" + b"\x00" * width)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", rows)
        + png_chunk(b"IEND", b"")
    )


def rgb(img: Image.Image, xy: tuple[int, int]) -> tuple[int, int, int]:
    r, g, b = img.convert("RGB").getpixel(xy)  # type: ignore[misc]
    return int(r), int(g), int(b)


def mean_abs_diff(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(to_array(a) - to_array(b)).mean())


def forbid_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any pixel decode fail the test: refusals must come from the header alone."""

    def no_load(self: ImageFile.ImageFile) -> None:
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_load)


# -- the shared bad/ set (expected outcomes from ../shared/images/SOURCES.md) -----------------
REFUSED = {
    "not_an_image.jpg": NotAnImage,
    "truncated.jpg": CorruptImage,
    "zero_bytes.jpg": EmptyImage,
    "bomb.png": ImageTooLarge,
    "tiny.png": ImageTooSmall,
    "extreme_aspect.jpg": ExtremeAspect,
    "svg.svg": UnsupportedFormat,
}
HANDLED = {
    "cmyk.jpg": (384, 256),
    "rgba.png": (256, 256),
    "grayscale.jpg": (768, 512),
    "animated.gif": (160, 120),
    "exif_rotated.jpg": (512, 768),
    "huge_dims.jpg": (1024, 683),  # with max_side=1024
    "webp.webp": (512, 341),
}


def bad(name: str) -> bytes:
    return shared_file("images", "bad", name).read_bytes()


def test_every_bad_file_has_an_expected_outcome(bad_dir: Path) -> None:
    assert {p.name for p in bad_dir.iterdir()} == set(REFUSED) | set(HANDLED)


@pytest.mark.parametrize(("name", "error"), sorted(REFUSED.items()))
def test_bad_file_is_refused(name: str, error: type[ImageError]) -> None:
    data = bad(name)
    with pytest.raises(error) as info:
        decode_image(data, max_side=1024)
    message = str(info.value)
    assert message and message[0].isupper() and message.endswith(".")
    assert info.value.code == error.code


@pytest.mark.parametrize(("name", "size"), sorted(HANDLED.items()))
def test_bad_file_is_handled(name: str, size: tuple[int, int]) -> None:
    img = decode_image(bad(name), max_side=1024)
    assert img.mode == "RGB"
    assert img.size == size
    assert to_array(img).shape == (size[1], size[0], 3)
    assert "exif" not in img.info


def test_messages_name_the_problem() -> None:
    with pytest.raises(NotAnImage, match="not an image"):
        decode_image(bad("not_an_image.jpg"))
    with pytest.raises(CorruptImage, match="damaged or incomplete"):
        decode_image(bad("truncated.jpg"))
    with pytest.raises(EmptyImage, match="empty"):
        decode_image(bad("zero_bytes.jpg"))
    with pytest.raises(UnsupportedFormat, match=r"Vector images \(SVG\) are not supported"):
        decode_image(bad("svg.svg"))
    with pytest.raises(ImageTooSmall, match=f"minimum {MIN_SIDE} px on each side"):
        decode_image(bad("tiny.png"))
    with pytest.raises(ExtremeAspect, match=r"max 10:1"):
        decode_image(bad("extreme_aspect.jpg"))
    with pytest.raises(ImageTooLarge, match="too large"):
        decode_image(bad("bomb.png"))


def test_truncated_jpeg_passes_the_probe_but_not_the_decode() -> None:
    """The header is intact, so only a full decode finds the damage."""
    data = bad("truncated.jpg")
    assert probe_image(data) == (1024, 768)
    with pytest.raises(CorruptImage):
        decode_image(data)


def test_bomb_is_refused_without_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refused from the header: no pixel decoded (forbid_decoding), no large allocation."""
    data = bad("bomb.png")
    forbid_decoding(monkeypatch)
    tracemalloc.start()
    try:
        with pytest.raises(ImageTooLarge):
            decode_image(data)
        with pytest.raises(ImageTooLarge):
            probe_image(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024  # the file itself is 0.9 MB; the pixels would be 900 MB


def test_bomb_does_not_grow_the_process() -> None:
    """Pillow allocates pixels outside tracemalloc's view: measure the peak RSS of a process."""
    script = """
import json, resource, sys
from PIL import ImageFile
from engine.images import ImageTooLarge, decode_image
loads = []
real_load = ImageFile.ImageFile.load
def counting_load(self):
    loads.append(self.size)
    return real_load(self)
ImageFile.ImageFile.load = counting_load
data = open(sys.argv[1], "rb").read()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    decode_image(data)
    outcome = "decoded"
except ImageTooLarge:
    outcome = "refused"
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"outcome": outcome, "grew_kib": after - before, "loads": len(loads)}))
"""
    path = shared_file("images", "bad", "bomb.png")
    done = subprocess.run(
        [sys.executable, "-c", script, str(path)],
        cwd=REPO_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    report = json.loads(done.stdout)
    assert report["outcome"] == "refused"
    assert report["loads"] == 0  # refused from the header: the pixel decoder never ran
    assert report["grew_kib"] < 32 * 1024  # ru_maxrss is in KiB on Linux


def test_cmyk_is_converted_not_inverted() -> None:
    img = decode_image(bad("cmyk.jpg"))
    assert img.mode == "RGB" and img.size == (384, 256)
    with Image.open(shared_file("images", "content", "macaws.jpg")) as ref:
        reference = ref.convert("RGB").resize((384, 256), Image.Resampling.LANCZOS)
    assert mean_abs_diff(img, reference) < 6.0
    inverted = from_array(255.0 - to_array(reference))
    assert mean_abs_diff(img, inverted) > 60.0


def test_rgba_is_composited_on_white() -> None:
    img = decode_image(bad("rgba.png"))
    assert img.getpixel((0, 0)) == (255, 255, 255)
    centre = np.array(img.getpixel((128, 128)), dtype=float)
    assert np.abs(centre - (247, 227, 127)).max() <= 2
    pixels = to_array(img).reshape(-1, 3)
    assert not np.all(pixels == MAGENTA, axis=1).any()
    # Nothing even close to magenta: transparent pixels must not leak their hidden colour.
    magentaish = (pixels[:, 0] > 200) & (pixels[:, 1] < 80) & (pixels[:, 2] > 200)
    assert not magentaish.any()


def test_grayscale_becomes_three_equal_channels() -> None:
    array = to_array(decode_image(bad("grayscale.jpg")))
    assert array.shape == (512, 768, 3)
    assert np.array_equal(array[..., 0], array[..., 1])
    assert np.array_equal(array[..., 1], array[..., 2])


def test_animated_gif_gives_the_first_frame() -> None:
    img = decode_image(bad("animated.gif"))
    pixel = np.array(img.getpixel((5, 5)), dtype=float)
    assert np.abs(pixel - (220, 30, 30)).max() <= 3


def test_exif_orientation_is_applied_once() -> None:
    data = bad("exif_rotated.jpg")
    assert probe_image(data) == (512, 768)
    img = decode_image(data)
    assert img.size == (512, 768)
    assert "exif" not in img.info
    with Image.open(shared_file("images", "content", "portrait_red_hat.jpg")) as ref:
        assert mean_abs_diff(img, ref.convert("RGB")) < 4.0  # SOURCES.md: about 1.5
    # Re-encoding carries no orientation either, so nothing rotates it a second time.
    with Image.open(io.BytesIO(encode_image(img))) as again:
        assert again.size == (512, 768)
        assert again.getexif().get(0x0112) in (None, 1)


def test_huge_jpeg_is_decoded_at_reduced_scale(monkeypatch: pytest.MonkeyPatch) -> None:
    """libjpeg decodes the 9000x6000 photo at 1/8 scale (draft), never at full size."""
    data = bad("huge_dims.jpg")
    decoded: list[tuple[int, int]] = []
    real_load = ImageFile.ImageFile.load

    def recording_load(self: ImageFile.ImageFile) -> Any:
        decoded.append(self.size)  # the size the decoder produces (after draft)
        return real_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", recording_load)
    img = decode_image(data, max_side=1024)
    assert img.size == (1024, 683)
    assert decoded, "no decode happened"
    # a reduced-scale decode is at most twice the working size; full scale would be 9000 px
    assert all(max(size) < 2 * 1024 for size in decoded), decoded
    assert probe_image(data, max_side=1024) == (9000, 6000)


def test_huge_jpeg_without_a_working_size_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """54 MP is over MAX_PIXELS when it would be decoded at full scale."""
    data = bad("huge_dims.jpg")
    forbid_decoding(monkeypatch)
    with pytest.raises(ImageTooLarge):
        probe_image(data)
    with pytest.raises(ImageTooLarge):
        decode_image(data)


def test_webp_is_refused_when_pillow_lacks_it(monkeypatch: pytest.MonkeyPatch) -> None:
    data = bad("webp.webp")
    monkeypatch.setattr(features, "check", lambda name: name != "webp")
    with pytest.raises(UnsupportedFormat, match="WebP"):
        decode_image(data)


@pytest.mark.parametrize(
    "name",
    [
        "tubingen.jpg",
        "michigan_central_station.jpg",
        "paris_rainy_night.jpg",
        "portrait_red_hat.jpg",
        "mountain_stream.jpg",
        "macaws.jpg",
    ],
)
def test_every_content_photo_decodes(name: str) -> None:
    data = shared_file("images", "content", name).read_bytes()
    width, height = probe_image(data)
    img = decode_image(data, max_side=512)
    assert img.mode == "RGB" and max(img.size) == 512
    assert abs(img.size[0] / img.size[1] - width / height) < 0.01


# -- self-contained decoding tests ------------------------------------------------------------
def test_png_round_trip_is_exact() -> None:
    original = gradient(80, 60)
    img = decode_image(encode(original, "PNG"))
    assert img.mode == "RGB" and img.size == (80, 60)
    assert np.array_equal(to_array(img), to_array(original))
    assert np.array_equal(to_array(decode_image(encode_image(img, "png"))), to_array(original))


def test_sixteen_bit_png_is_scaled_not_clipped() -> None:
    values = np.linspace(0, 65535, 64 * 48).reshape(48, 64).astype(np.uint16)
    data = encode(Image.fromarray(values), "PNG")
    array = to_array(decode_image(data))
    expected = np.rint(values / 257.0)
    assert np.abs(array[..., 0] - expected).max() <= 1
    assert np.array_equal(array[..., 0], array[..., 2])
    assert 120 < array.mean() < 135  # a clipping conversion would make it almost all white


def test_rgba_png_is_composited_on_white() -> None:
    rgba = np.zeros((40, 40, 4), dtype=np.uint8)
    rgba[...] = (*MAGENTA, 0)
    rgba[10:30, 10:30] = (0, 0, 255, 255)
    rgba[0, 0] = (0, 0, 0, 128)
    img = decode_image(encode(Image.fromarray(rgba), "PNG"))
    assert img.getpixel((39, 39)) == (255, 255, 255)
    assert img.getpixel((20, 20)) == (0, 0, 255)
    assert all(abs(c - 127) <= 1 for c in rgb(img, (0, 0)))


def test_palette_transparency_is_composited_on_white() -> None:
    palette = Image.new("P", (40, 40), 1)
    palette.putpalette([0, 0, 0, *MAGENTA, 255, 0, 0] + [0] * (256 - 3) * 3)
    palette.paste(2, (0, 0, 20, 40))
    data = encode(palette, "GIF", transparency=1)
    img = decode_image(data)
    assert img.getpixel((30, 5)) == (255, 255, 255)
    assert img.getpixel((5, 5)) == (255, 0, 0)


def test_generated_cmyk_jpeg_becomes_rgb() -> None:
    data = encode(gradient(64, 64).convert("CMYK"), "JPEG", quality=95)
    img = decode_image(data)
    assert img.mode == "RGB"
    assert mean_abs_diff(img, gradient(64, 64)) < 8.0


@pytest.mark.parametrize(
    ("orientation", "displayed"),
    [(1, (64, 48)), (3, (64, 48)), (6, (48, 64)), (8, (48, 64))],
)
def test_exif_orientation(orientation: int, displayed: tuple[int, int]) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(gradient(64, 48), "JPEG", exif=exif, quality=95)
    assert probe_image(data) == displayed
    img = decode_image(data)
    assert img.size == displayed
    assert "exif" not in img.info


def test_orientation_6_means_rotate_clockwise() -> None:
    stored = Image.new("RGB", (64, 48), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 8, 8))  # top-left when stored...
    exif = Image.Exif()
    exif[0x0112] = 6
    img = decode_image(encode(stored, "PNG", exif=exif))
    assert img.size == (48, 64)
    assert img.getpixel((47, 0)) == (255, 0, 0)  # ...top-right once displayed


def test_header_claiming_50_megapixels_is_refused_before_decoding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = png_claiming(10_000, 5_000)
    assert MAX_PIXELS < 10_000 * 5_000
    assert len(data) < 1000
    forbid_decoding(monkeypatch)  # refused from the header: any pixel decode fails the test
    with pytest.raises(ImageTooLarge, match="megapixels"):
        probe_image(data)
    with pytest.raises(ImageTooLarge):
        decode_image(data)


def test_pillow_bomb_warning_becomes_a_refusal() -> None:
    """Between 89.5 and 179 MP Pillow only warns; the warning must not leak (nor pass)."""
    data = png_claiming(10_000, 10_000)
    with pytest.raises(ImageTooLarge):
        decode_image(data)


def test_file_over_max_bytes_is_refused() -> None:
    data = encode(gradient(64, 64), "PNG")
    with pytest.raises(ImageTooLarge, match="MB"):
        probe_image(data + b"\x00" * (MAX_BYTES + 1 - len(data)))


def test_random_bytes_are_not_an_image() -> None:
    data = random.Random(1).randbytes(4096)
    with pytest.raises(NotAnImage):
        decode_image(data)
    with pytest.raises(NotAnImage):
        probe_image(b"hello, this is text")


def test_empty_bytes() -> None:
    with pytest.raises(EmptyImage):
        probe_image(b"")
    with pytest.raises(EmptyImage):
        decode_image(b"")


@pytest.mark.parametrize(
    "data",
    [
        b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>',
        b"\xef\xbb\xbf  <SVG width='10'></SVG>",
        b"<!DOCTYPE svg PUBLIC '-//W3C//DTD SVG 1.1//EN'><svg></svg>",
    ],
)
def test_svg_is_unsupported(data: bytes) -> None:
    with pytest.raises(UnsupportedFormat, match="SVG"):
        decode_image(data)


def test_heic_is_unsupported_with_a_hint() -> None:
    data = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64
    with pytest.raises(UnsupportedFormat, match="HEIC"):
        decode_image(data)


def test_other_pillow_format_is_unsupported_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    data = encode(gradient(64, 64), "PPM")
    forbid_decoding(monkeypatch)
    with pytest.raises(UnsupportedFormat, match="PPM"):
        decode_image(data)


def test_mpo_from_a_phone_gives_the_first_frame() -> None:
    first = Image.new("RGB", (64, 48), (200, 20, 20))
    second = Image.new("RGB", (64, 48), (20, 20, 200))
    data = encode(first, "MPO", save_all=True, append_images=[second])
    with Image.open(io.BytesIO(data)) as check:
        assert check.format == "MPO"
    img = decode_image(data, max_side=32)
    assert img.size == (32, 24)
    assert np.abs(to_array(img) - (200, 20, 20)).mean() < 5


@pytest.mark.parametrize(
    ("size", "error"),
    [
        ((MIN_SIDE, MIN_SIDE), None),
        ((MIN_SIDE - 1, 100), ImageTooSmall),
        ((100, MIN_SIDE - 1), ImageTooSmall),
        ((int(MIN_SIDE * MAX_ASPECT), MIN_SIDE), None),
        ((int(MIN_SIDE * MAX_ASPECT) + 1, MIN_SIDE), ExtremeAspect),
        ((MIN_SIDE, int(MIN_SIDE * MAX_ASPECT) + 1), ExtremeAspect),
    ],
)
def test_size_limits(size: tuple[int, int], error: type[ImageError] | None) -> None:
    data = encode(gradient(*size), "PNG")
    if error is None:
        assert probe_image(data) == size
        assert decode_image(data).size == size
    else:
        with pytest.raises(error):
            probe_image(data)
        with pytest.raises(error):
            decode_image(data)


@pytest.mark.parametrize(
    ("fmt", "options"),
    [("JPEG", {"quality": 90}), ("PNG", {}), ("BMP", {}), ("TIFF", {}), ("WEBP", {})],
)
def test_max_side_downscales_every_format(fmt: str, options: dict[str, object]) -> None:
    data = encode(gradient(400, 200), fmt, **options)
    img = decode_image(data, max_side=100)
    assert img.size == (100, 50)
    assert decode_image(data, max_side=1000).size == (400, 200)  # never upscaled
    assert mean_abs_diff(img, resize_to(gradient(400, 200), (100, 50))) < 6.0


def test_jpeg_is_decoded_at_reduced_scale(monkeypatch: pytest.MonkeyPatch) -> None:
    """`draft` asks libjpeg for 1/8 scale: the decoder produces far fewer pixels."""
    data = encode(gradient(2048, 1024), "JPEG", quality=90)
    decoded: list[tuple[int, int]] = []
    original_load = ImageFile.ImageFile.load

    def spy(self: ImageFile.ImageFile) -> object:
        result = original_load(self)
        decoded.append(self.size)
        return result

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    assert decode_image(data, max_side=256).size == (256, 128)
    assert decoded and set(decoded) == {(256, 128)}


def test_invalid_max_side() -> None:
    data = encode(gradient(64, 64), "PNG")
    with pytest.raises(ValueError):
        decode_image(data, max_side=0)


# -- resizing, encoding, arrays ---------------------------------------------------------------
def test_resize_long_side_up_and_down() -> None:
    img = gradient(300, 200)
    assert resize_long_side(img, 150).size == (150, 100)
    assert resize_long_side(img, 600).size == (600, 400)
    assert resize_long_side(gradient(200, 300), 150).size == (100, 150)
    assert resize_long_side(gradient(1000, 2), 10).size == (10, 1)  # never 0 px
    assert resize_long_side(img, 300).size == (300, 200)
    with pytest.raises(ValueError):
        resize_long_side(img, 0)


def test_resize_to() -> None:
    img = gradient(300, 200)
    out = resize_to(img, (64, 64))
    assert out.size == (64, 64) and out.mode == "RGB"
    assert resize_to(img, (300, 200)) is not img
    with pytest.raises(ValueError):
        resize_to(img, (0, 10))


def test_encode_jpeg() -> None:
    img = gradient(64, 48)
    img.info["exif"] = b"Exif\x00\x00junk"
    data = encode_image(img)
    assert data[:2] == b"\xff\xd8"
    assert b"Exif" not in data
    with Image.open(io.BytesIO(data)) as back:
        assert back.format == "JPEG" and back.mode == "RGB" and back.size == (64, 48)
    assert len(encode_image(img, "jpeg", 30)) < len(encode_image(img, "jpeg", 95))


def test_encode_png_of_rgba_is_rgb_on_white() -> None:
    rgba = Image.new("RGBA", (40, 40), (*MAGENTA, 0))
    data = encode_image(rgba, "png")
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(io.BytesIO(data)) as back:
        assert back.mode == "RGB"
        assert back.getpixel((0, 0)) == (255, 255, 255)


def test_encode_rejects_bad_arguments() -> None:
    img = gradient(40, 40)
    with pytest.raises(ValueError):
        encode_image(img, "gif")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        encode_image(img, "jpeg", 0)


def test_mime_type() -> None:
    assert mime_type("jpeg") == "image/jpeg"
    assert mime_type("png") == "image/png"
    with pytest.raises(ValueError):
        mime_type("gif")


def test_to_array_and_back() -> None:
    img = gradient(50, 30)
    array = to_array(img)
    assert array.dtype == np.float32 and array.shape == (30, 50, 3)
    assert array.min() >= 0 and array.max() <= 255
    array[0, 0] = 0  # a writable copy
    assert np.array_equal(to_array(from_array(to_array(img))), to_array(img))


def test_from_array_clips_and_rounds() -> None:
    array = np.array([[[-20.0, 127.6, 300.0], [np.nan, 0.4, 254.5]]], dtype=np.float32)
    img = from_array(array)
    assert img.mode == "RGB" and img.size == (2, 1)
    assert img.getpixel((0, 0)) == (0, 128, 255)
    assert rgb(img, (1, 0))[1] == 0
    assert from_array(array[None]).size == (2, 1)  # a batch of one is accepted
    with pytest.raises(ValueError):
        from_array(np.zeros((4, 4)))
    with pytest.raises(ValueError):
        from_array(np.zeros((4, 4, 4)))


def test_reencode_for_storage_bounds_size_and_bytes() -> None:
    noise = np.random.default_rng(0).integers(0, 256, (1500, 2000, 3), dtype=np.uint8)
    data = encode(Image.fromarray(noise), "PNG")
    assert len(data) > 2_000_000
    out = reencode_for_storage(data)
    assert out[:2] == b"\xff\xd8" and len(out) <= 2_000_000
    with Image.open(io.BytesIO(out)) as back:
        assert back.size == (1024, 768)
    small = reencode_for_storage(data, max_side=512, max_bytes=60_000)
    assert len(small) <= 60_000
    with Image.open(io.BytesIO(small)) as back:
        assert max(back.size) <= 512


def test_reencode_for_storage_refuses_bad_input() -> None:
    with pytest.raises(NotAnImage):
        reencode_for_storage(b"not an image at all")


# -- the refusals themselves ------------------------------------------------------------------
REFUSALS = [
    EmptyImage,
    NotAnImage,
    UnsupportedFormat,
    CorruptImage,
    ImageTooLarge,
    ImageTooSmall,
    ExtremeAspect,
]


def test_refusals_have_stable_distinct_codes_and_friendly_messages() -> None:
    codes = [cls.code for cls in REFUSALS]
    assert len(set(codes)) == len(codes)
    assert "bad_image" not in codes
    for cls in REFUSALS:
        error = cls()
        assert isinstance(error, ImageError)
        message = str(error)
        assert message[0].isupper() and message.endswith(".") and message.count(". ") == 0
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is cls and str(copy) == message


def test_allowed_formats() -> None:
    assert set(ALLOWED_FORMATS) == {"JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF", "MPO"}


# -- never anything but an RGB image or an ImageError -----------------------------------------
def _outcome(data: bytes) -> None:
    try:
        img = decode_image(data, max_side=256)
    except ImageError:
        return
    assert img.mode == "RGB"
    assert MIN_SIDE <= max(img.size) <= 256


VALID = [
    encode(gradient(48, 40), "PNG"),
    encode(gradient(48, 40), "JPEG", quality=80),
    encode(gradient(48, 40), "JPEG", quality=80, progressive=True),
    encode(gradient(48, 40).convert("P"), "GIF"),
    encode(gradient(48, 40), "WEBP"),
    encode(gradient(48, 40), "TIFF"),
    encode(gradient(48, 40), "BMP"),
]

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=2048))
def test_arbitrary_bytes(data: bytes) -> None:
    _outcome(data)


@FUZZ
@given(st.sampled_from(VALID), st.integers(min_value=0, max_value=10_000))
def test_truncated_prefixes(valid: bytes, cut: int) -> None:
    _outcome(valid[: cut % (len(valid) + 1)])


@FUZZ
@given(
    st.sampled_from(VALID),
    st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), max_size=8),
)
def test_corrupted_bytes(valid: bytes, flips: list[tuple[int, int]]) -> None:
    data = bytearray(valid)
    for position, value in flips:
        data[position % len(data)] = value
    _outcome(bytes(data))
