"""Per-user defaults and state: /strength, /colors, /size, /status, /cancel."""

from __future__ import annotations

from dataclasses import replace

from telegram import InlineKeyboardMarkup, Update

from bot import keyboards, speed, texts
from bot.handlers.jobflow import Recipe, job_params, user_recipe
from bot.services import Context, Services, get_services
from bot.telegram_io import reply

ON_WORDS = frozenset({"on", "yes", "true", "1", "keep"})
OFF_WORDS = frozenset({"off", "no", "false", "0"})


def _number(text: str) -> int | None:
    """A small whole number typed in ASCII digits ("²".isdigit() is True, int("²") fails)."""
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 6 else None


async def cmd_strength(update: Update, context: Context) -> None:
    services = get_services(context)
    user = await services.ensure_sender(update)
    args = context.args or []
    level = _number(args[0]) if len(args) == 1 else None
    if level is None or not 1 <= level <= 5:
        await reply(update, texts.strength_usage(user.strength))
        return
    await services.storage.update_user_settings(user.user_id, strength=level)
    await reply(update, texts.strength_set(level))


async def cmd_colors(update: Update, context: Context) -> None:
    services = get_services(context)
    user = await services.ensure_sender(update)
    args = [a.lower() for a in context.args or []]
    if len(args) != 1 or args[0] not in ON_WORDS | OFF_WORDS:
        await reply(update, texts.colors_usage(user.preserve_colors))
        return
    on = args[0] in ON_WORDS
    await services.storage.update_user_settings(user.user_id, preserve_colors=on)
    await reply(update, texts.colors_set(on))


async def cmd_size(update: Update, context: Context) -> None:
    services = get_services(context)
    user = await services.ensure_sender(update)
    sizes = services.settings.sizes
    args = context.args or []
    size = _number(args[0]) if len(args) == 1 else None
    if size is not None:
        if size not in sizes:
            await reply(update, texts.size_invalid(sizes))
            return
        await services.storage.update_user_settings(user.user_id, size=size)
        await reply(update, texts.size_set(size))
        return
    text, markup = await size_menu(services, user_recipe(services, user))
    await reply(update, text, reply_markup=markup)


async def size_menu(services: Services, recipe: Recipe) -> tuple[str, InlineKeyboardMarkup]:
    """/size's text and buttons: every size offered, with the time a painting of it takes on
    this server's workers (`bot.speed`), the user's current size ticked."""
    worker = await speed.current(services.storage)
    seconds = {
        size: speed.estimate_seconds(worker, job_params(services, replace(recipe, size=size)))
        for size in services.settings.sizes
    }
    markup = keyboards.size_keyboard(services.settings.sizes, recipe.size, seconds)
    return texts.size_prompt(measured=worker.jobs > 0), markup


async def cmd_brush(update: Update, context: Context) -> None:
    """/brush small|medium|large: the size of the strokes (the engine's style_scale)."""
    services = get_services(context)
    user = await services.ensure_sender(update)
    args = [a.lower() for a in context.args or []]
    by_name = {name: value for value, name in keyboards.BRUSH_NAMES.items()}
    words = {*by_name, *(texts.brush_name(name).lower() for name in by_name)}
    if len(args) != 1 or args[0] not in words:
        await reply(
            update, texts.BRUSH_USAGE, reply_markup=keyboards.brush_keyboard(float(user.brush))
        )
        return
    name = next(n for n in by_name if args[0] in (n, texts.brush_name(n).lower()))
    await services.storage.update_user_settings(user.user_id, brush=by_name[name])
    await reply(update, texts.brush_set(name))


async def cmd_status(update: Update, context: Context) -> None:
    services = get_services(context)
    user = await services.ensure_sender(update)
    chat = update.effective_chat
    assert chat is not None
    jobs = services.jobs
    positions = []
    for job_id in jobs.active_jobs(user.user_id):
        position = jobs.position(job_id)
        if position is not None:
            positions.append(position)
    active = None
    if user.active_preset_id is not None:
        preset = await services.storage.get_preset(user.active_preset_id)
        active = preset.name if preset else None
        if preset is not None and user.mix_preset_id is not None:
            mix = await services.storage.get_preset(user.mix_preset_id)
            active = texts.mix_name(preset.name, mix.name) if mix else active
    recipe = user_recipe(services, user)
    waiting = await services.storage.get_pending(chat.id, user.user_id, "content")
    await reply(
        update,
        texts.status_text(
            strength=recipe.strength,
            colors=recipe.colors,
            size=recipe.size,
            active_style=active,
            positions=sorted(positions),
            has_pending_content=waiting is not None,
            brush=texts.brush_label(keyboards.BRUSH_NAMES.get(recipe.brush), recipe.brush),
        ),
    )


async def cmd_cancel(update: Update, context: Context) -> None:
    services = get_services(context)
    user = await services.ensure_sender(update)
    chat = update.effective_chat
    assert chat is not None
    jobs = services.jobs
    stopped = 0
    for job_id in list(jobs.active_jobs(user.user_id)):
        if await jobs.cancel(job_id, user.user_id):
            stopped += 1
    await services.storage.clear_pending(chat.id, user.user_id)
    await reply(update, texts.CANCELLED_ALL if stopped else texts.NOTHING_TO_CANCEL)
