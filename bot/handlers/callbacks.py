"""Every inline button. Each press is answered exactly once (answerCallbackQuery), also when the
data is garbage, the button belongs to someone else, or what it refers to is gone."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import Any

from telegram import Update
from telegram.error import BadRequest

from bot import keyboards, texts
from bot.handlers.intake import offer_styles
from bot.handlers.jobflow import Recipe, StyleRef, start_job, user_recipe
from bot.handlers.styles import activate_preset
from bot.services import Context, Services, get_services
from bot.storage import DuplicateName, Job, TooManyPresets
from bot.telegram_io import answer_query, is_not_modified, reply, with_retries

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
    await _edit_markup(update, keyboards.style_keyboard(presets, pair=cb.pair, page=cb.page))


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
    await services.storage.delete_preset(preset.id, user.id)
    await answer_query(update, texts.preset_deleted(preset.name))
    await reply(update, texts.preset_deleted(preset.name))
    presets = await services.storage.list_presets(user.id)
    await _edit_markup(update, keyboards.presets_list_keyboard(presets, user_id=user.id))


async def _list_page(
    update: Update, context: Context, services: Services, cb: keyboards.Callback
) -> None:
    user = update.effective_user
    assert user is not None
    presets = await services.storage.list_presets(user.id)
    await answer_query(update)
    await _edit_markup(
        update, keyboards.presets_list_keyboard(presets, user_id=user.id, page=cb.page)
    )


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
    await services.storage.update_user_settings(user.id, size=cb.size)
    await answer_query(update, texts.size_set(cb.size))
    await _edit_markup(update, keyboards.size_keyboard(sizes, cb.size))


# -- job buttons ----------------------------------------------------------------------------
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


async def _cancel(
    update: Update, context: Context, services: Services, cb: keyboards.Callback
) -> None:
    assert cb.job_id is not None
    job = await _owned_job(update, services, cb.job_id)
    if job is None:
        return
    if job.finished:
        await answer_query(update, texts.ALREADY_FINISHED)
        return
    cancelled = await services.jobs.cancel(job.id, job.user_id)
    await answer_query(update, texts.CANCEL_REQUESTED if cancelled else texts.ALREADY_FINISHED)


async def _result(
    update: Update, context: Context, services: Services, cb: keyboards.Callback
) -> None:
    assert cb.job_id is not None
    job = await _owned_job(update, services, cb.job_id)
    if job is None:
        return
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
    if op in (keyboards.WEAKER, keyboards.STRONGER, keyboards.COLORS):
        if op == keyboards.WEAKER:
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
        await answer_query(update, texts.STARTING)
        await start_job(
            services,
            context.bot,
            user_id=job.user_id,
            chat_id=job.chat_id,
            pair=pair,
            style=style,
            recipe=replace(recipe, strength=strength, colors=colors),
            init_job=job.id,
        )
    elif op == keyboards.FULL_RES:
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


async def _save_style(
    update: Update, services: Services, job: Job, pair: str, style: StyleRef
) -> None:
    if style.preset_id is not None:
        await answer_query(update, texts.result_style_is_preset(style.name))
        return
    image = await asyncio.to_thread(services.pairs.style, pair, style.file or "")
    if image is None:
        await answer_query(update, texts.RESULT_EXPIRED, alert=True)
        return
    storage = services.storage
    limit = services.settings.max_presets_per_user
    for n in range(1, limit + 2):
        name = f"style {n}"
        try:
            preset = await storage.add_preset(job.user_id, name, image, max_per_owner=limit)
        except DuplicateName:
            continue
        except TooManyPresets as exc:
            await answer_query(update, texts.too_many_presets(exc.limit), alert=True)
            return
        await answer_query(update, texts.result_style_saved(preset.name))
        await reply(update, texts.result_style_saved(preset.name))
        return
    await answer_query(update, texts.too_many_presets(limit), alert=True)


_HANDLERS = {
    keyboards.STYLE: _style,
    keyboards.STYLE_PAGE: _style_page,
    keyboards.APPLY: _apply,
    keyboards.DELETE: _delete,
    keyboards.LIST_PAGE: _list_page,
    keyboards.SIZE: _size,
    keyboards.CANCEL: _cancel,
    keyboards.RESULT: _result,
}
