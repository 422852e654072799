"""Styles and presets: /presets, /style, /save, /delete, each built-in preset's own command,
and the unknown-command fallback (admin commands answer like it for everyone else)."""

from __future__ import annotations

import logging
import re
from typing import Any

from telegram import Chat, Update
from telegram.error import TelegramError

from bot import gallery, keyboards, texts
from bot.handlers.groups import addressed_explicitly, in_group
from bot.handlers.jobflow import (
    StyleRef,
    TooManyStyles,
    paint_with_preset,
    style_pictures,
    user_recipe,
)
from bot.services import Context, Services, get_services
from bot.storage import (
    DuplicateName,
    InvalidValue,
    Preset,
    PresetNotFound,
    TooManyPresets,
    preset_name_key,
)
from bot.telegram_io import reply

log = logging.getLogger(__name__)
COMMAND_NAME = re.compile(r"^[a-z0-9_]{1,32}$")
OFF_WORDS = frozenset({"off", "none", "no", "stop"})


def _args(context: Context) -> str:
    return " ".join(context.args or []).strip()


async def cmd_presets(update: Update, context: Context) -> None:
    services = get_services(context)
    user = await services.ensure_sender(update)
    await send_presets_list(update, services, user.user_id)


def presets_caption(presets: list[Preset], user_id: int) -> str:
    own = sum(1 for p in presets if p.owner_id == user_id)
    return texts.presets_header(own, len(presets) - own)


async def send_presets_list(update: Update, services: Services, user_id: int) -> None:
    """/presets: the gallery's first page (a contact sheet) with Apply and Delete buttons."""
    presets = await services.storage.list_presets(user_id)
    if not presets:
        await reply(update, texts.NO_PRESETS)
        return
    chat = update.effective_chat
    message = update.effective_message
    assert chat is not None
    caption = presets_caption(presets, user_id)
    markup = keyboards.presets_list_keyboard(presets, user_id=user_id)
    in_a_group = chat.type != Chat.PRIVATE and update.callback_query is None
    _, page = gallery.page_of(presets, 0)
    try:
        await gallery.send_sheet(
            update.get_bot(),
            services.storage,
            chat.id,
            page,
            caption=caption,
            reply_markup=markup,
            reply_to=message.message_id if in_a_group and message is not None else None,
        )
    except TelegramError as exc:  # the buttons alone still work
        log.warning("gallery not sent: %s", exc)
        await reply(update, caption, reply_markup=markup)


async def cmd_style(update: Update, context: Context) -> None:
    services = get_services(context)
    user = await services.ensure_sender(update)
    name = _args(context)
    if not name:
        presets = await services.storage.list_presets(user.user_id)
        active = None
        if user.active_preset_id is not None:
            preset = await services.storage.get_preset(user.active_preset_id)
            active = preset.name if preset else None
        await reply(
            update,
            texts.style_list(
                [p.name for p in presets if p.owner_id is not None],
                [p.name for p in presets if p.owner_id is None],
                active,
            ),
        )
        return
    if name.lower() in OFF_WORDS:
        await services.storage.update_user_settings(
            user.user_id, active_preset_id=None, mix_preset_id=None
        )
        await reply(update, texts.STYLE_OFF)
        return
    if "+" in name:  # /style A + B (preset names never contain "+")
        mix = await find_mix(update, services, name)
        if mix is not None:
            await activate_preset(update, context.bot, services, mix[0], mix=mix[1])
        return
    await activate_preset_by_name(update, context, services, name)


async def find_mix(update: Update, services: Services, text: str) -> tuple[Preset, Preset] | None:
    """The two presets of "A + B", or None after saying what is wrong."""
    user = update.effective_user
    assert user is not None
    names = [part.strip() for part in text.split("+")]
    if len(names) != 2 or not all(names):
        await reply(update, texts.MIX_TOO_MANY if len(names) > 2 else texts.preset_not_found(text))
        return None
    found = []
    for name in names:
        preset = await services.storage.find_preset(name, user.id)
        if preset is None:
            await reply(update, texts.preset_not_found(name))
            return None
        found.append(preset)
    first, second = found
    if first.is_mix or second.is_mix:
        await reply(update, texts.MIX_TOO_MANY)
        return None
    return first, second


async def activate_preset_by_name(
    update: Update, context: Context, services: Services, name: str
) -> bool:
    user = update.effective_user
    assert user is not None
    preset = await services.storage.find_preset(name, user.id)
    if preset is None:
        await reply(update, texts.preset_not_found(name))
        return False
    await activate_preset(update, context.bot, services, preset)
    return True


async def activate_preset(
    update: Update, bot: Any, services: Services, preset: Any, mix: Preset | None = None
) -> None:
    """Make `preset` (mixed half and half with `mix`, when given) the active style; a waiting
    photo is painted with it at once."""
    tg_user = update.effective_user
    chat = update.effective_chat
    assert tg_user is not None and chat is not None
    storage = services.storage
    user = await storage.ensure_user(tg_user.id, chat.id, tg_user.full_name)
    user = await storage.update_user_settings(
        user.user_id, active_preset_id=preset.id, mix_preset_id=mix.id if mix else None
    )
    async with services.person_lock(chat.id, tg_user.id):
        waiting = await storage.get_pending(chat.id, tg_user.id, "content")
        if mix is not None:
            answer = texts.style_mix_activated(preset.name, mix.name, waiting is not None)
        else:
            answer = texts.style_activated(preset.name, waiting is not None)
        await reply(update, answer)
        if waiting is not None:
            await paint_with_preset(
                services,
                bot,
                user_id=tg_user.id,
                chat_id=chat.id,
                photo=waiting.data,
                photo_message=waiting.message_id,
                preset=preset,
                recipe=user_recipe(services, user),
                mix=mix,
            )
            await storage.clear_pending(chat.id, tg_user.id, "content")


async def cmd_save(update: Update, context: Context) -> None:
    services = get_services(context)
    chat = update.effective_chat
    assert chat is not None
    user = await services.ensure_sender(update)
    name = _args(context)
    if not name:
        await reply(update, texts.SAVE_USAGE)
        return
    mix = await _last_mix(services, user.user_id)
    if mix is not None:
        await save_own_preset(update, services, name, mix[0], mix_image=mix[1])
        return
    style = await services.storage.get_pending(chat.id, user.user_id, "style")
    if style is None:
        await reply(update, texts.SAVE_NOTHING)
        return
    await save_own_preset(update, services, name, style.data)


async def _last_mix(services: Services, user_id: int) -> tuple[bytes, bytes] | None:
    """The two pictures of the user's latest mix: their latest painting's, if it was a mix,
    else their active one (/style A + B)."""
    job = await services.storage.latest_job(user_id)
    styles: list[tuple[str | None, StyleRef]] = []
    if job is not None and job.meta.mix_preset_id is not None:
        styles.append((job.meta.pair, StyleRef.of_job(job.meta)))
    user = await services.storage.get_user(user_id)
    if user is not None and user.active_preset_id and user.mix_preset_id:
        styles.append(
            (None, StyleRef("", preset_id=user.active_preset_id, mix_preset_id=user.mix_preset_id))
        )
    for pair, style in styles:
        try:
            pictures = await style_pictures(services, pair, style)
        except (PresetNotFound, TooManyStyles):
            continue
        if len(pictures) == 2:
            return pictures[0], pictures[1]
    return None


async def save_own_preset(
    update: Update, services: Services, name: str, image: bytes, *, mix_image: bytes | None = None
) -> Any:
    """Save `image` (with `mix_image`: a mix of the two) as the user's preset `name`,
    answering in every case. Returns the preset."""

    user = update.effective_user
    assert user is not None
    if not name:
        await reply(update, texts.SAVE_USAGE)
        return None
    try:
        preset = await services.storage.add_preset(
            user.id,
            name,
            image,
            max_per_owner=services.settings.max_presets_per_user,
            thumbnail=await gallery.thumbnail_or_none(image, mix_image),
            mix_image=mix_image,
        )
    except DuplicateName:
        await reply(update, texts.duplicate_preset(name.strip()))
        return None
    except TooManyPresets as exc:
        await reply(update, texts.too_many_presets(exc.limit))
        return None
    except InvalidValue as exc:  # InvalidName, ImageTooLarge
        await reply(update, texts.name_refused(str(exc)))
        return None
    await reply(update, texts.preset_saved(preset.name))
    return preset


async def cmd_delete(update: Update, context: Context) -> None:
    services = get_services(context)
    user = await services.ensure_sender(update)
    name = _args(context)
    if not name:
        await reply(update, texts.DELETE_USAGE)
        return
    own = await services.storage.list_presets(user.user_id, include_global=False)

    key = preset_name_key(name)
    match = next((p for p in own if preset_name_key(p.name) == key), None)
    if match is None:
        found = await services.storage.find_preset(name, user.user_id)
        if found is not None:
            await reply(update, texts.preset_not_yours(found.name))
        else:
            await reply(update, texts.preset_not_found(name))
        return
    await services.storage.delete_preset(match.id, user.user_id)
    await reply(update, texts.preset_deleted(match.name))


async def on_unknown_command(update: Update, context: Context) -> None:
    """A command no handler took: a preset's own command (/starry_night), else a hint."""
    message = update.effective_message
    user = update.effective_user
    if message is None or user is None or not message.text:
        return
    services = get_services(context)
    command = message.text.split()[0][1:].split("@", 1)[0].lower()
    if COMMAND_NAME.match(command):
        preset = await services.storage.find_preset(command, user.id)
        if preset is not None:
            await activate_preset(update, context.bot, services, preset)
            return
    if in_group(update) and not addressed_explicitly(message, context.bot):
        return  # a bare command in a group may be meant for another bot
    await reply(update, texts.UNKNOWN_COMMAND)


async def add_builtin_from_picture(
    update: Update, services: Services, name: str, image: bytes
) -> None:
    """Admin: a picture captioned /addpreset NAME becomes a built-in preset."""

    if not name:
        await reply(update, texts.ADDPRESET_USAGE)
        return
    try:
        preset = await services.storage.add_preset(
            None, name, image, thumbnail=await gallery.thumbnail_or_none(image)
        )
    except DuplicateName:
        await reply(update, texts.duplicate_preset(name.strip()))
        return
    except InvalidValue as exc:
        await reply(update, texts.name_refused(str(exc)))
        return
    await reply(update, texts.builtin_added(preset.name))
