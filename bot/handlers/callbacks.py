"""Every inline button. Each press is answered exactly once (answerCallbackQuery), also when the
data is garbage, the button belongs to someone else, or what it refers to is gone."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from telegram import Message, Update
from telegram.error import BadRequest, TelegramError

from bot import gallery, keyboards, speed, texts
from bot.handlers.intake import offer_styles
from bot.handlers.jobflow import (
    MAX_MIXED_STYLES,
    Recipe,
    StyleRef,
    TooManyStyles,
    job_params,
    start_job,
    style_pictures,
    user_recipe,
)
from bot.handlers.settings_cmds import size_menu
from bot.handlers.styles import activate_preset, presets_caption
from bot.services import Context, Services, get_services
from bot.storage import DuplicateName, Job, Preset, PresetNotFound, TooManyPresets
from bot.telegram_io import answer_query, is_not_modified, reply, with_retries
from engine.errors import ImageError
from engine.images import probe_image

log = logging.getLogger(__name__)


async def on_callback(update: Update, context: Context) -> None:
    query = update.callback_query
    user = update.effective_user
    if query is None or user is None:
        return
    data = keyboards.parse(query.data)
    if data is None:
        await answer_query(update, texts.BAD_BUTTON)
        return
    services = get_services(context)
    handler = _HANDLERS.get(data.action)
    if handler is None:  # parse only returns known actions; defensive
        await answer_query(update, texts.BAD_BUTTON)
        return
    await handler(update, context, services, data)


async def _edit_markup(update: Update, markup: Any) -> None:
    query = update.callback_query
    assert query is not None
    try:
        await with_retries(lambda: query.edit_message_reply_markup(reply_markup=markup))
    except BadRequest as exc:
        if not is_not_modified(exc):
            log.info("cannot edit buttons: %s", exc)


async def _turn_page(
    update: Update,
    services: Services,
    presets: list[Preset],
    page: int,
    markup: Any,
    caption: str | None = None,
) -> None:
    """Show another page of a gallery: its contact sheet and buttons. A message without a
    picture (/start's buttons, galleries from before the contact sheets) changes its buttons."""
    query = update.callback_query
    assert query is not None
    message = query.message
    if not isinstance(message, Message) or not message.photo or not presets:
        await _edit_markup(update, markup)
        return
    _, chunk = gallery.page_of(presets, page)
    try:
        await gallery.edit_sheet(
            update.get_bot(),
            services.storage,
            message.chat_id,
            message.message_id,
            chunk,
            caption=caption if caption is not None else (message.caption or ""),
            reply_markup=markup,
        )
    except TelegramError as exc:
        log.info("gallery page not shown: %s", exc)
        await _edit_markup(update, markup)


# -- style buttons under a waiting photo -----------------------------------------------------
async def _style(
    update: Update, context: Context, services: Services, cb: keyboards.Callback
) -> None:
    user = update.effective_user
    assert user is not None and cb.pair is not None and cb.preset_id is not None
    owner = await asyncio.to_thread(services.pairs.owner, cb.pair)
    if owner is None:
        await answer_query(update, texts.RESULT_EXPIRED, alert=True)
        return
    if owner.user_id != user.id:
        await answer_query(update, texts.NOT_YOUR_BUTTON)
        return
    preset = await services.storage.get_preset(cb.preset_id)
    if preset is None or (preset.owner_id is not None and preset.owner_id != user.id):
        await answer_query(update, texts.preset_not_found(str(cb.preset_id)))
        return
    await answer_query(update, preset.name)
    storage = services.storage
    db_user = await storage.ensure_user(user.id, owner.chat_id, user.full_name)
    async with services.person_lock(owner.chat_id, user.id):
        await storage.clear_pending(owner.chat_id, user.id, "content")
    await start_job(
        services,
        context.bot,
        user_id=user.id,
        chat_id=owner.chat_id,
        pair=cb.pair,
        style=StyleRef(preset.name, preset_id=preset.id),
        recipe=user_recipe(services, db_user),
    )


async def _style_page(
    update: Update, context: Context, services: Services, cb: keyboards.Callback
) -> None:
    user = update.effective_user
    assert user is not None
    if cb.pair is not None:
        owner = await asyncio.to_thread(services.pairs.owner, cb.pair)
        if owner is None:
            await answer_query(update, texts.RESULT_EXPIRED)
            return
        if owner.user_id != user.id:
            await answer_query(update, texts.NOT_YOUR_BUTTON)
            return
        presets = await services.storage.list_presets(user.id)
    else:
        presets = await services.storage.list_global_presets()
        await answer_query(update)
        await _edit_markup(update, keyboards.style_keyboard(presets, pair=None, page=cb.page))
        return
    await answer_query(update)
    markup = keyboards.style_keyboard(presets, pair=cb.pair, page=cb.page, numbered=True)
    await _turn_page(update, services, presets, cb.page, markup)


# -- /presets and /start buttons -------------------------------------------------------------
async def _apply(
    update: Update, context: Context, services: Services, cb: keyboards.Callback
) -> None:
    user = update.effective_user
    assert user is not None and cb.preset_id is not None
    preset = await services.storage.get_preset(cb.preset_id)
    if preset is None or (preset.owner_id is not None and preset.owner_id != user.id):
        await answer_query(
            update, texts.RESULT_EXPIRED if preset is None else texts.NOT_YOUR_BUTTON
        )
        return
    await answer_query(update, preset.name)
    await activate_preset(update, context.bot, services, preset)


async def _delete(
    update: Update, context: Context, services: Services, cb: keyboards.Callback
) -> None:
    user = update.effective_user
    assert user is not None and cb.preset_id is not None
    preset = await services.storage.get_preset(cb.preset_id)
    if preset is None:
        await answer_query(update, texts.RESULT_EXPIRED)
        return
    if preset.owner_id != user.id:
        await answer_query(update, texts.NOT_YOUR_BUTTON)
        return
    before = await services.storage.list_presets(user.id)
    page = next((i for i, p in enumerate(before) if p.id == preset.id), 0) // keyboards.PAGE_SIZE
    await services.storage.delete_preset(preset.id, user.id)
    await answer_query(update, texts.preset_deleted(preset.name))
    await reply(update, texts.preset_deleted(preset.name))
    presets = await services.storage.list_presets(user.id)
    page = keyboards.clamp_page(page, len(presets))
    markup = keyboards.presets_list_keyboard(presets, user_id=user.id, page=page)
    await _turn_page(update, services, presets, page, markup, presets_caption(presets, user.id))


async def _list_page(
    update: Update, context: Context, services: Services, cb: keyboards.Callback
) -> None:
    user = update.effective_user
    assert user is not None
    presets = await services.storage.list_presets(user.id)
    await answer_query(update)
    markup = keyboards.presets_list_keyboard(presets, user_id=user.id, page=cb.page)
    await _turn_page(update, services, presets, cb.page, markup, presets_caption(presets, user.id))


async def _size(
    update: Update, context: Context, services: Services, cb: keyboards.Callback
) -> None:
    user = update.effective_user
    chat = update.effective_chat
    assert user is not None and cb.size is not None
    sizes = services.settings.sizes
    if cb.size not in sizes:
        await answer_query(update, texts.size_invalid(sizes))
        return
    chat_id = chat.id if chat else user.id
    await services.storage.ensure_user(user.id, chat_id, user.full_name)
    stored = await services.storage.update_user_settings(user.id, size=cb.size)
    await answer_query(update, texts.size_set(cb.size))
    _, markup = await size_menu(services, user_recipe(services, stored))
    await _edit_markup(update, markup)


# -- job buttons ----------------------------------------------------------------------------
ButtonHandler = Callable[[Update, Context, Services, keyboards.Callback], Awaitable[None]]
JobButtonHandler = Callable[[Update, Context, Services, keyboards.Callback, Job], Awaitable[None]]


async def _owned_job(update: Update, services: Services, job_id: str) -> Job | None:
    """The job if it exists and belongs to the presser; otherwise answers and returns None."""
    user = update.effective_user
    assert user is not None
    job = await services.storage.get_job(job_id)
    if job is None:
        await answer_query(update, texts.RESULT_EXPIRED, alert=True)
        return None
    if job.user_id != user.id:
        await answer_query(update, texts.NOT_YOUR_BUTTON)
        return None
    return job


def _job_button(handler: JobButtonHandler) -> ButtonHandler:
    """A button about a job: `handler` runs with the job, only for the job's owner."""

    async def with_owned_job(
        update: Update, context: Context, services: Services, cb: keyboards.Callback
    ) -> None:
        assert cb.job_id is not None
        job = await _owned_job(update, services, cb.job_id)
        if job is not None:
            await handler(update, context, services, cb, job)

    return with_owned_job


async def _repaint(
    update: Update,
    context: Context,
    services: Services,
    job: Job,
    pair: str,
    style: StyleRef,
    recipe: Recipe,
    *,
    answer: str | None = None,
    full_res: bool = False,
) -> None:
    """Paint `job`'s photo again with another setting, warm-started from its result (the
    buttons under a painting); `answer` is what the button press shows."""
    await answer_query(update, answer or texts.STARTING)
    await start_job(
        services,
        context.bot,
        user_id=job.user_id,
        chat_id=job.chat_id,
        pair=pair,
        style=style,
        recipe=recipe,
        init_job=job.id,
        full_res=full_res,
    )


async def _full_resolution(
    update: Update,
    context: Context,
    services: Services,
    job: Job,
    pair: str,
    style: StyleRef,
    recipe: Recipe,
    content: bytes,
    result: bytes,
) -> None:
    """ "⬇ Full resolution": the same painting at the photo's own long side (at most
    STYLEBOT_MAX_SIDE), repainted warm from this result so that it stays the same picture, and
    sent as a file. A job like any other: queued, cancellable, counted in the user's limits.
    When the result is already that large it is sent as a file at once."""
    try:
        width, height = await asyncio.to_thread(probe_image, content)
    except ImageError:  # the stored photo was checked at intake; this is only defensive
        width = height = 0
    target = min(max(width, height), services.settings.max_side)
    if job.meta.full_res or target <= recipe.size:
        await answer_query(update)
        await with_retries(
            lambda: context.bot.send_document(
                chat_id=job.chat_id,
                document=result,
                filename=f"stylebot-{job.id[:8]}.jpg",
                caption=texts.FULL_RES_CAPTION,
            ),
            what="document",
        )
        return
    larger = replace(recipe, size=target)
    worker = await speed.current(services.storage)
    seconds = speed.estimate_seconds(worker, job_params(services, larger), warm_start=True)
    answer = texts.full_res_started(target, seconds)
    await _repaint(
        update, context, services, job, pair, style, larger, answer=answer, full_res=True
    )


@_job_button
async def _cancel(
    update: Update, context: Context, services: Services, cb: keyboards.Callback, job: Job
) -> None:
    if job.finished:
        await answer_query(update, texts.ALREADY_FINISHED)
        return
    cancelled = await services.jobs.cancel(job.id, job.user_id)
    await answer_query(update, texts.CANCEL_REQUESTED if cancelled else texts.ALREADY_FINISHED)


@_job_button
async def _result(
    update: Update, context: Context, services: Services, cb: keyboards.Callback, job: Job
) -> None:
    pair = job.meta.pair
    if pair is None:
        await answer_query(update, texts.RESULT_EXPIRED, alert=True)
        return
    content = await asyncio.to_thread(services.pairs.content, pair)
    # every result button needs the result it sits under: gone (or never made) is "expired"
    result = await asyncio.to_thread(services.pairs.result, pair, job.id)
    if content is None or result is None:
        await answer_query(update, texts.RESULT_EXPIRED, alert=True)
        return
    style = StyleRef.of_job(job.meta)
    recipe = Recipe.of_job(job.meta, services.settings.default_size)
    strength, colors = recipe.strength, recipe.colors
    op = cb.op
    brush = recipe.brush
    if op in (
        keyboards.WEAKER,
        keyboards.STRONGER,
        keyboards.COLORS,
        keyboards.FINER,
        keyboards.BIGGER,
    ):
        if op in (keyboards.FINER, keyboards.BIGGER):
            step = keyboards.brush_step(brush, -1 if op == keyboards.FINER else +1)
            if step is None:
                await answer_query(update, texts.FINEST if op == keyboards.FINER else texts.BIGGEST)
                return
            brush = step
        elif op == keyboards.WEAKER:
            if strength <= 1:
                await answer_query(update, texts.WEAKEST)
                return
            strength -= 1
        elif op == keyboards.STRONGER:
            if strength >= 5:
                await answer_query(update, texts.STRONGEST)
                return
            strength += 1
        else:
            colors = not colors
        await _repaint(
            update,
            context,
            services,
            job,
            pair,
            style,
            replace(recipe, strength=strength, colors=colors, brush=brush),
        )
    elif op == keyboards.FULL_RES:
        await _full_resolution(update, context, services, job, pair, style, recipe, content, result)
    elif op == keyboards.NEW_STYLE:
        await answer_query(update)
        owner = await asyncio.to_thread(services.pairs.owner, pair)
        async with services.person_lock(job.chat_id, job.user_id):
            await services.storage.set_pending(
                job.chat_id, job.user_id, "content", content, owner.message_id if owner else None
            )
        await offer_styles(
            services,
            context.bot,
            user_id=job.user_id,
            chat_id=job.chat_id,
            pair=pair,
            text=texts.NEW_STYLE_PROMPT,
        )
    elif op == keyboards.SAVE_STYLE:
        await _save_style(update, services, job, pair, style)
    elif op == keyboards.MIX:
        await _offer_mix(update, context, services, job, style)


async def _mix_choices(services: Services, user_id: int) -> list[Preset]:
    """What a style can be mixed with: every style the user sees but saved mixes."""
    return [p for p in await services.storage.list_presets(user_id) if not p.is_mix]


async def _offer_mix(
    update: Update, context: Context, services: Services, job: Job, style: StyleRef
) -> None:
    """ "Mix with…": the gallery of the styles to mix this painting's style with."""
    if style.mix_preset_id is not None:
        await answer_query(update, texts.MIX_TOO_MANY, alert=True)
        return
    if style.preset_id is not None:
        base = await services.storage.get_preset(style.preset_id)
        if base is not None and base.is_mix:
            await answer_query(update, texts.MIX_TOO_MANY, alert=True)
            return
    presets = await _mix_choices(services, job.user_id)
    if not presets:
        await answer_query(update, texts.MIX_NO_STYLES, alert=True)
        return
    await answer_query(update)
    markup = keyboards.mix_keyboard(presets, job_id=job.id)
    _, page = gallery.page_of(presets, 0)
    reply_to = job.meta.result_msg
    try:
        await gallery.send_sheet(
            context.bot,
            services.storage,
            job.chat_id,
            page,
            caption=texts.MIX_PROMPT,
            reply_markup=markup,
            reply_to=reply_to,
        )
    except TelegramError as exc:
        log.info("mix gallery not sent: %s", exc)
        await reply(update, texts.MIX_PROMPT, reply_markup=markup)


@_job_button
async def _mix_page(
    update: Update, context: Context, services: Services, cb: keyboards.Callback, job: Job
) -> None:
    await answer_query(update)
    presets = await _mix_choices(services, job.user_id)
    markup = keyboards.mix_keyboard(presets, job_id=job.id, page=cb.page)
    await _turn_page(update, services, presets, cb.page, markup, texts.MIX_PROMPT)


@_job_button
async def _mix_pick(
    update: Update, context: Context, services: Services, cb: keyboards.Callback, job: Job
) -> None:
    """A style picked to mix with a painting's: paint again from that result, half and half."""
    assert cb.preset_id is not None
    pair = job.meta.pair
    result = None
    if pair is not None:
        result = await asyncio.to_thread(services.pairs.result, pair, job.id)
    if pair is None or result is None:
        await answer_query(update, texts.RESULT_EXPIRED, alert=True)
        return
    preset = await services.storage.get_preset(cb.preset_id)
    if preset is None or (preset.owner_id is not None and preset.owner_id != job.user_id):
        await answer_query(update, texts.preset_not_found(str(cb.preset_id)))
        return
    style = StyleRef.of_job(job.meta)
    if style.mix_preset_id is not None or preset.is_mix:
        await answer_query(update, texts.MIX_TOO_MANY, alert=True)
        return
    recipe = Recipe.of_job(job.meta, services.settings.default_size)
    await _repaint(update, context, services, job, pair, style.mixed_with(preset), recipe)


async def _brush(
    update: Update, context: Context, services: Services, cb: keyboards.Callback
) -> None:
    user = update.effective_user
    chat = update.effective_chat
    assert user is not None and cb.level is not None
    brush = keyboards.BRUSH_LEVELS[cb.level]
    name = keyboards.BRUSH_NAMES.get(brush)
    if name is None:
        await answer_query(update, texts.BRUSH_USAGE)
        return
    await services.storage.ensure_user(user.id, chat.id if chat else user.id, user.full_name)
    await services.storage.update_user_settings(user.id, brush=brush)
    await answer_query(update, texts.brush_set(name))
    await _edit_markup(update, keyboards.brush_keyboard(brush))


async def _save_style(
    update: Update, services: Services, job: Job, pair: str, style: StyleRef
) -> None:
    if style.preset_id is not None and style.mix_preset_id is None:
        await answer_query(update, texts.result_style_is_preset(style.name))
        return
    try:
        pictures = await style_pictures(services, pair, style)
    except (PresetNotFound, TooManyStyles):
        pictures = ()
    if not pictures or len(pictures) > MAX_MIXED_STYLES:
        await answer_query(update, texts.RESULT_EXPIRED, alert=True)
        return
    image, mix_image = pictures[0], (pictures[1] if len(pictures) > 1 else None)
    thumbnail = await gallery.thumbnail_or_none(image, mix_image)
    storage = services.storage
    limit = services.settings.max_presets_per_user
    for n in range(1, limit + 2):
        name = f"mix {n}" if mix_image is not None else f"style {n}"
        try:
            preset = await storage.add_preset(
                job.user_id,
                name,
                image,
                max_per_owner=limit,
                thumbnail=thumbnail,
                mix_image=mix_image,
            )
        except DuplicateName:
            continue
        except TooManyPresets as exc:
            await answer_query(update, texts.too_many_presets(exc.limit), alert=True)
            return
        await answer_query(update, texts.result_style_saved(preset.name))
        await reply(update, texts.result_style_saved(preset.name))
        return
    await answer_query(update, texts.too_many_presets(limit), alert=True)


_HANDLERS: dict[str, ButtonHandler] = {
    keyboards.STYLE: _style,
    keyboards.STYLE_PAGE: _style_page,
    keyboards.APPLY: _apply,
    keyboards.DELETE: _delete,
    keyboards.LIST_PAGE: _list_page,
    keyboards.SIZE: _size,
    keyboards.CANCEL: _cancel,
    keyboards.RESULT: _result,
    keyboards.MIX_PICK: _mix_pick,
    keyboards.MIX_PAGE: _mix_page,
    keyboards.BRUSH: _brush,
}
