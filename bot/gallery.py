"""The style gallery: each preset as a small picture with its name, on one contact sheet a page.

- A preset's thumbnail is made once (`make_thumbnail`, Pillow: run it in a thread) when it is
  imported or saved, and stored with it; presets older than thumbnails get theirs the first
  time a gallery shows them (`thumbnails`).
- A page's contact sheet (`contact_sheet`: up to `PAGE_SIZE` numbered tiles with names) is
  uploaded to Telegram once; the `file_id` Telegram gives it is kept in SQLite under the
  page's key (`sheet_key`: which presets, under which names, in which order), so the next
  gallery of the same page sends that id and uploads nothing. When the presets of a page
  change, so does its key, and the new sheet is uploaded once.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import math
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from PIL import Image, ImageDraw, ImageFont, ImageOps
from telegram import Bot, InputMediaPhoto, Message
from telegram.error import BadRequest

from bot import keyboards
from bot.storage import Storage
from bot.telegram_io import is_not_modified, replying_to, with_retries

log = logging.getLogger(__name__)

PAGE_SIZE = keyboards.PAGE_SIZE
"""Styles on one page of the gallery (one contact sheet)."""
THUMB_SIDE = 160
COLUMNS = 5
LABEL_HEIGHT = 30
GAP = 6
BACKGROUND = (246, 243, 236)
INK = (30, 30, 30)
BADGE = (20, 20, 20)
SHEET_VERSION = "1"
"""Part of every sheet key: bump it when the sheet's drawing changes."""
_FONT_FILES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
)


class GalleryPreset(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def is_mix(self) -> bool: ...


# -- pictures (blocking: call through asyncio.to_thread) -----------------------------------------
def _open(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        image.draft("RGB", (THUMB_SIDE * 2, THUMB_SIDE * 2))
        return ImageOps.exif_transpose(image).convert("RGB")


def make_thumbnail(image: bytes, second: bytes | None = None) -> bytes:
    """A square JPEG of the style picture's centre; a mix shows its two pictures split
    diagonally. Blocking."""
    side = THUMB_SIDE
    thumb = ImageOps.fit(_open(image), (side, side), Image.Resampling.LANCZOS)
    if second is not None:
        other = ImageOps.fit(_open(second), (side, side), Image.Resampling.LANCZOS)
        mask = Image.new("L", (side, side), 0)
        ImageDraw.Draw(mask).polygon([(side, 0), (side, side), (0, side)], fill=255)
        thumb.paste(other, (0, 0), mask)
    out = io.BytesIO()
    thumb.save(out, "JPEG", quality=85)
    return out.getvalue()


async def thumbnail_or_none(image: bytes, second: bytes | None = None) -> bytes | None:
    """`make_thumbnail` in a thread; None if Pillow cannot make one (the gallery then tries
    again the first time it shows the preset)."""
    try:
        return await asyncio.to_thread(make_thumbnail, image, second)
    except Exception as exc:  # a picture Pillow refuses: the preset is still kept
        log.warning("no thumbnail: %s", exc)
        return None


@lru_cache(maxsize=4)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for path in _FONT_FILES:
        if Path(path).exists():
            return ImageFont.truetype(path, size)
    return ImageFont.load_default(size=size)


def _fit_text(draw: ImageDraw.ImageDraw, text: str, font: Any, width: int) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def contact_sheet(tiles: Sequence[tuple[str, bytes]]) -> bytes:
    """One JPEG: the thumbnails in a grid, each numbered (1, 2, …) with its name under it.
    Blocking."""
    if not tiles:
        raise ValueError("a contact sheet needs at least one tile")
    columns = min(COLUMNS, len(tiles))
    rows = math.ceil(len(tiles) / columns)
    cell_w, cell_h = THUMB_SIDE + GAP, THUMB_SIDE + LABEL_HEIGHT + GAP
    sheet = Image.new("RGB", (columns * cell_w + GAP, rows * cell_h + GAP), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    label_font, number_font = _font(15), _font(18)
    for index, (name, thumb) in enumerate(tiles):
        x = GAP + (index % columns) * cell_w
        y = GAP + (index // columns) * cell_h
        with Image.open(io.BytesIO(thumb)) as picture:
            sheet.paste(picture.convert("RGB").resize((THUMB_SIDE, THUMB_SIDE)), (x, y))
        number = str(index + 1)
        badge_w = int(draw.textlength(number, font=number_font)) + 12
        draw.rectangle((x, y, x + badge_w, y + 24), fill=BADGE)
        draw.text((x + 6, y + 2), number, fill=(255, 255, 255), font=number_font)
        label = _fit_text(draw, name, label_font, THUMB_SIDE - 4)
        draw.text((x + 2, y + THUMB_SIDE + 6), label, fill=INK, font=label_font)
    out = io.BytesIO()
    sheet.save(out, "JPEG", quality=88)
    return out.getvalue()


def sheet_key(presets: Sequence[GalleryPreset]) -> str:
    """What a page's sheet shows: its presets (ids, names, kinds) in order."""
    parts = [SHEET_VERSION] + [f"{p.id}:{int(p.is_mix)}:{p.name}" for p in presets]
    digest = hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()
    return f"sheet:{digest[:40]}"


def page_of(presets: Sequence[Any], page: int) -> tuple[int, list[Any]]:
    """The page clamped to what exists, and its presets."""
    pages = max(1, math.ceil(len(presets) / PAGE_SIZE))
    page = min(max(0, page), pages - 1)
    return page, list(presets[page * PAGE_SIZE : (page + 1) * PAGE_SIZE])


# -- on the event loop ------------------------------------------------------------------------------
async def thumbnails(storage: Storage, presets: Sequence[GalleryPreset]) -> list[bytes]:
    """Each preset's stored thumbnail; one missing (a row older than thumbnails) is made in a
    thread and stored, so it is made once."""
    stored = await storage.preset_thumbnails([p.id for p in presets])
    out = []
    for preset in presets:
        thumb = stored.get(preset.id)
        if thumb is None:
            images = await storage.preset_images(preset.id)
            thumb = await asyncio.to_thread(make_thumbnail, *images[:2])
            await storage.set_preset_thumbnail(preset.id, thumb)
        out.append(thumb)
    return out


async def _sheet(storage: Storage, presets: Sequence[GalleryPreset]) -> tuple[str, str | bytes]:
    """The page's key and what to send: the file_id of an earlier upload, else the JPEG."""
    key = sheet_key(presets)
    file_id = await storage.telegram_file(key)
    if file_id is not None:
        return key, file_id
    thumbs = await thumbnails(storage, presets)
    tiles = [(p.name, t) for p, t in zip(presets, thumbs, strict=True)]
    return key, await asyncio.to_thread(contact_sheet, tiles)


async def _remember(storage: Storage, key: str, photo: str | bytes, message: Any) -> None:
    if isinstance(photo, bytes) and isinstance(message, Message) and message.photo:
        await storage.set_telegram_file(key, message.photo[-1].file_id)


async def send_sheet(
    bot: Bot,
    storage: Storage,
    chat_id: int,
    presets: Sequence[GalleryPreset],
    *,
    caption: str,
    reply_markup: Any,
    reply_to: int | None = None,
) -> Message:
    """Send the page's contact sheet with `caption` and buttons: by file_id when it was
    uploaded before, else uploaded (and its file_id kept)."""
    key, photo = await _sheet(storage, presets)

    async def send(what: str | bytes) -> Message:
        return await with_retries(
            lambda: bot.send_photo(
                chat_id=chat_id,
                photo=what,
                caption=caption,
                reply_markup=reply_markup,
                reply_parameters=replying_to(reply_to),
            ),
            what="gallery",
        )

    try:
        message = await send(photo)
    except BadRequest:
        if isinstance(photo, bytes):
            raise
        log.info("gallery file_id of %s refused; uploading it again", key)
        await storage.forget_telegram_file(key)
        key, photo = await _sheet(storage, presets)
        message = await send(photo)
    await _remember(storage, key, photo, message)
    return message


async def edit_sheet(
    bot: Bot,
    storage: Storage,
    chat_id: int,
    message_id: int,
    presets: Sequence[GalleryPreset],
    *,
    caption: str,
    reply_markup: Any,
) -> None:
    """Turn a gallery message to another page (its sheet, caption and buttons)."""
    key, photo = await _sheet(storage, presets)

    async def edit(what: str | bytes) -> Any:
        return await with_retries(
            lambda: bot.edit_message_media(
                chat_id=chat_id,
                message_id=message_id,
                media=InputMediaPhoto(what, caption=caption),
                reply_markup=reply_markup,
            ),
            what="gallery page",
        )

    try:
        message = await edit(photo)
    except BadRequest as exc:
        if is_not_modified(exc):
            return
        if isinstance(photo, bytes):
            raise
        await storage.forget_telegram_file(key)
        key, photo = await _sheet(storage, presets)
        message = await edit(photo)
    await _remember(storage, key, photo, message)
