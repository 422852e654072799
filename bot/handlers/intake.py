"""Pictures in: photos, images sent as files, static stickers and albums; everything else gets
a short hint.

A picture is checked (size before download, then `engine.images` in a thread) and re-encoded
for storage, then, in order of precedence:
1. a caption command (`/style NAME`, `/NAME` of a preset, `/save NAME`, admin `/addpreset NAME`);
2. the user's active style paints it at once;
3. if a photo is waiting, this picture is its style and a painting starts;
4. otherwise it becomes the waiting photo, answered with style buttons.
An album's first picture is the photo and its second the style.
Refused pictures never touch what is already waiting.

Albums: Telegram sends an album as separate messages, so they are collected in memory
(`Services.albums`, message objects only, no picture bytes) for `ALBUM_WAIT_S` (1.5 s) after the
first one, then handled together. A restart inside that window forgets the album (its updates are
already confirmed): the user sends it again. The per-user rate limit bounds how many albums one
user can keep open at once.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from telegram import Bot, Message, Update
from telegram.error import TelegramError

from bot import gallery, keyboards, texts
from bot.handlers.errors import report_error
from bot.handlers.jobflow import StyleRef, paint_with_preset, start_job, user_recipe
from bot.handlers.styles import add_builtin_from_picture, find_mix, save_own_preset
from bot.services import Context, Services, get_services
from bot.storage import PendingPicture, Preset
from bot.telegram_io import reply, send_text, with_retries
from engine.errors import ImageError
from engine.images import probe_image, reencode_for_storage

log = logging.getLogger(__name__)

MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024  # the Bot API's getFile limit
MAX_DOWNLOAD_MB = 20
ALBUM_WAIT_S = 1.5
STORE_MAX_SIDE = 1024


@dataclass
class Picture:
    data: bytes
    message: Message


@dataclass
class _Album:
    chat_id: int
    user: Any
    update: Update
    items: list[Message] = field(default_factory=list)


def _storage_side(services: Services) -> int:
    return max(STORE_MAX_SIDE, services.settings.max_side)


def prepare_picture(data: bytes, max_side: int) -> bytes:
    """Blocking: every cheap check, then a full decode and re-encode (run in a thread)."""
    probe_image(data, max_side=max_side)
    return reencode_for_storage(data, max_side=max_side)


async def fetch_picture(update: Update, context: Context, message: Message) -> bytes | None:
    """The message's picture, validated and re-encoded; None after telling the user why not."""
    services = get_services(context)
    file_id: str | None = None
    size: int | None = None
    if message.photo:
        largest = max(message.photo, key=lambda p: (p.width * p.height, p.file_size or 0))
        file_id, size = largest.file_id, largest.file_size
    elif message.document is not None:
        doc = message.document
        mime = (doc.mime_type or "").lower()
        if mime.startswith(("video/", "audio/")):
            await reply(update, texts.MEDIA_HINT)
            return None
        file_id, size = doc.file_id, doc.file_size
    elif message.sticker is not None:
        sticker = message.sticker
        if sticker.is_animated or sticker.is_video:
            await reply(update, texts.ANIMATED_STICKER)
            return None
        file_id, size = sticker.file_id, sticker.file_size
    if file_id is None:
        await reply(update, texts.MEDIA_HINT)
        return None
    if size is not None and size > MAX_DOWNLOAD_BYTES:
        await reply(update, texts.file_too_big(MAX_DOWNLOAD_MB))
        return None
    try:
        tg_file = await with_retries(lambda: context.bot.get_file(file_id), what="getFile")
        raw = bytes(await with_retries(tg_file.download_as_bytearray, what="download"))
    except TelegramError as exc:
        log.info("download failed: %s", exc)
        await reply(update, texts.DOWNLOADING_FAILED)
        return None
    if len(raw) > MAX_DOWNLOAD_BYTES:
        await reply(update, texts.file_too_big(MAX_DOWNLOAD_MB))
        return None
    try:
        return await asyncio.to_thread(prepare_picture, raw, _storage_side(services))
    except ImageError as exc:
        await reply(update, texts.image_refused(exc.code, str(exc)))
        return None


def _caption_command(caption: str | None) -> tuple[str, str] | None:
    if not caption or not caption.startswith("/"):
        return None
    head, _, rest = caption.strip().partition(" ")
    command = head[1:].split("@", 1)[0].lower()
    return (command, rest.strip()) if command else None


async def on_picture(update: Update, context: Context) -> None:
    message = update.effective_message
    chat = update.effective_chat
    user = update.effective_user
    if message is None or chat is None or user is None:
        return
    services = get_services(context)
    if message.media_group_id:
        _collect_album(services, context, update, message)
        return
    data = await fetch_picture(update, context, message)
    if data is None:
        return
    async with services.person_lock(chat.id, user.id):
        await handle_picture(services, context.bot, update, data, message.caption)


async def handle_picture(
    services: Services, bot: Any, update: Update, data: bytes, caption: str | None
) -> None:
    chat = update.effective_chat
    tg_user = update.effective_user
    message = update.effective_message
    assert chat is not None and tg_user is not None
    message_id = message.message_id if message is not None else None
    storage = services.storage
    user = await storage.ensure_user(tg_user.id, chat.id, tg_user.full_name)
    recipe = user_recipe(services, user)

    preset: Preset | None = None
    mix: Preset | None = None
    from_caption = False
    command = _caption_command(caption)
    if command is not None:
        name, arg = command
        if name == "addpreset" and services.is_admin(tg_user.id):
            await add_builtin_from_picture(update, services, arg, data)
            return
        if name == "save":
            await save_own_preset(update, services, arg, data)
            return
        wanted = arg if name == "style" else name
        if name == "style" and "+" in wanted:  # a mix for this photo: /style A + B
            pair_of_presets = await find_mix(update, services, wanted)
            if pair_of_presets is not None:
                preset, mix = pair_of_presets
                from_caption = True
        elif wanted and name not in ("addpreset",):
            preset = await storage.find_preset(wanted, tg_user.id)
            from_caption = preset is not None
            if preset is None and name == "style":
                await reply(update, texts.preset_not_found(wanted))
    if preset is None and user.active_preset_id is not None:
        preset = await storage.get_preset(user.active_preset_id)
        if preset is not None and user.mix_preset_id is not None:
            mix = await storage.get_preset(user.mix_preset_id)
    if preset is not None:
        await paint_with_preset(
            services,
            bot,
            user_id=tg_user.id,
            chat_id=chat.id,
            photo=data,
            photo_message=message_id,
            preset=preset,
            recipe=recipe,
            mix=mix,
        )
        if from_caption:  # a photo with its own style replaces any photo that was waiting
            await storage.clear_pending(chat.id, tg_user.id, "content")
        return

    waiting = await storage.get_pending(chat.id, tg_user.id, "content")
    if waiting is not None:
        await paint_pair(
            services,
            bot,
            user_id=tg_user.id,
            chat_id=chat.id,
            content=PendingPicture(waiting.data, waiting.message_id),
            style=data,
        )
        return
    await set_content(
        services, bot, user_id=tg_user.id, chat_id=chat.id, content=data, message_id=message_id
    )


async def set_content(
    services: Services,
    bot: Bot,
    *,
    user_id: int,
    chat_id: int,
    content: bytes,
    message_id: int | None,
) -> str:
    """Keep `content` as the person's waiting photo and offer style buttons. Returns the pair."""
    await services.storage.set_pending(chat_id, user_id, "content", content, message_id)
    pair = await asyncio.to_thread(services.pairs.create, user_id, chat_id, content, message_id)
    await offer_styles(services, bot, user_id=user_id, chat_id=chat_id, pair=pair)
    return pair


async def offer_styles(
    services: Services, bot: Bot, *, user_id: int, chat_id: int, pair: str, text: str | None = None
) -> None:
    """The style gallery for `pair`'s photo (a contact sheet of the first page, with a
    numbered button per style), as a reply to that photo; just the prompt without styles."""
    presets = await services.storage.list_presets(user_id)
    markup = keyboards.style_keyboard(presets, pair=pair, numbered=True)
    owner = await asyncio.to_thread(services.pairs.owner, pair)
    reply_to = owner.message_id if owner else None
    # group and supergroup chat ids are negative, private ones are the user's own id
    prompt = text or texts.content_received(bool(presets), in_group=chat_id < 0)
    if presets:
        _, page = gallery.page_of(presets, 0)
        try:
            await gallery.send_sheet(
                bot,
                services.storage,
                chat_id,
                page,
                caption=prompt,
                reply_markup=markup,
                reply_to=reply_to,
            )
            return
        except TelegramError as exc:  # the buttons alone still work
            log.warning("style gallery not sent: %s", exc)
    await send_text(bot, chat_id, prompt, reply_to=reply_to, reply_markup=markup)


async def paint_pair(
    services: Services,
    bot: Bot,
    *,
    user_id: int,
    chat_id: int,
    content: PendingPicture,
    style: bytes,
) -> str | None:
    """A photo and a style picture: keep both, start a painting, clear the waiting photo."""
    storage = services.storage
    user = await storage.get_user(user_id) or await storage.ensure_user(user_id, chat_id)
    pair = await asyncio.to_thread(
        services.pairs.create, user_id, chat_id, content.data, content.message_id
    )
    style_file = await asyncio.to_thread(services.pairs.add_style, pair, style)
    await storage.set_pending(chat_id, user_id, "style", style)
    await storage.clear_pending(chat_id, user_id, "content")
    return await start_job(
        services,
        bot,
        user_id=user_id,
        chat_id=chat_id,
        pair=pair,
        style=StyleRef("your picture", file=style_file),
        recipe=user_recipe(services, user),
    )


# -- albums -----------------------------------------------------------------------------------
def _collect_album(services: Services, context: Context, update: Update, message: Message) -> None:
    user = update.effective_user
    key = f"{message.chat_id}:{user.id if user else 0}:{message.media_group_id}"
    album = services.albums.get(key)
    if album is None:
        album = services.albums[key] = _Album(
            chat_id=message.chat_id, user=update.effective_user, update=update
        )
        services.spawn(_finish_album(services, context, key), name=f"album-{key}")
    album.items.append(message)
    album.items.sort(key=lambda m: m.message_id)


async def _finish_album(services: Services, context: Context, key: str) -> None:
    await asyncio.sleep(ALBUM_WAIT_S)
    album = services.albums.pop(key, None)
    if album is None:
        return
    update = album.update
    try:
        items = album.items
        pictures: list[bytes] = []
        for msg in items[:2]:
            data = await fetch_picture(update, context, msg)
            if data is not None:
                pictures.append(data)
        async with services.person_lock(album.chat_id, album.user.id):
            await services.storage.ensure_user(album.user.id, album.chat_id, album.user.full_name)
            if len(pictures) == 2:
                if len(items) > 2:
                    await reply(update, texts.ALBUM_EXTRA_IGNORED)
                await paint_pair(
                    services,
                    context.bot,
                    user_id=album.user.id,
                    chat_id=album.chat_id,
                    content=PendingPicture(pictures[0], items[0].message_id),
                    style=pictures[1],
                )
            elif len(pictures) == 1:
                await handle_picture(services, context.bot, update, pictures[0], None)
    except Exception as exc:
        await report_error(update, context, exc)


# -- everything that is not a picture --------------------------------------------------------
async def on_other_media(update: Update, context: Context) -> None:
    message = update.effective_message
    if message is not None and message.animation is not None:
        await reply(update, texts.ANIMATION_HINT)
        return
    await reply(update, texts.MEDIA_HINT)


async def on_text(update: Update, context: Context) -> None:
    await reply(update, texts.TEXT_HINT)
