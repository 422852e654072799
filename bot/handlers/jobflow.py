"""Starting a painting: pictures from the pair store or a preset, parameters from the user's
settings, submission to the JobManager, and the first status message."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from telegram import Bot

from bot import texts
from bot.i18n import current_language
from bot.jobmeta import JobMeta
from bot.jobs import QueueFull, UserQueueFull
from bot.services import Services
from bot.spool import JobInputs
from bot.storage import Preset, PresetNotFound, User
from bot.telegram_io import send_text
from engine.params import MAX_STRENGTH, MIN_STRENGTH, StyleParams

log = logging.getLogger(__name__)


MAX_MIXED_STYLES = 2
"""Style pictures one painting mixes at most (equal weights)."""


class TooManyStyles(Exception):
    """A mix would paint more than `MAX_MIXED_STYLES` pictures (a saved mix mixed again)."""


@dataclass(frozen=True)
class StyleRef:
    """Where the style pictures of a job come from: a preset (a saved mix has two pictures), or
    a file of the pair; for a mix, also a second preset painted with it, half and half."""

    name: str
    preset_id: int | None = None
    file: str | None = None
    mix_preset_id: int | None = None

    @classmethod
    def of_job(cls, meta: JobMeta) -> StyleRef:
        return cls(
            meta.style_name,
            preset_id=meta.preset_id,
            file=meta.style_file,
            mix_preset_id=meta.mix_preset_id,
        )

    def mixed_with(self, preset: Preset) -> StyleRef:
        """This style and `preset`'s, half and half."""
        return StyleRef(
            texts.mix_name(self.name, preset.name),
            preset_id=self.preset_id,
            file=self.file,
            mix_preset_id=preset.id,
        )


@dataclass(frozen=True)
class Recipe:
    strength: int
    colors: bool
    size: int
    brush: float = 1.0

    @classmethod
    def of_job(cls, meta: JobMeta, default_size: int) -> Recipe:
        """The choices a job was painted with (the buttons under its result start from them)."""
        return cls(
            strength=meta.strength,
            colors=meta.colors,
            size=meta.size or default_size,
            brush=meta.brush,
        )


def user_recipe(services: Services, user: User) -> Recipe:
    sizes = services.settings.sizes
    size = user.size if user.size in sizes else services.settings.default_size
    strength = int(min(MAX_STRENGTH, max(MIN_STRENGTH, user.strength)))
    return Recipe(
        strength=strength, colors=bool(user.preserve_colors), size=size, brush=float(user.brush)
    )


async def style_pictures(
    services: Services, pair: str | None, style: StyleRef
) -> tuple[bytes, ...]:
    """The style pictures of `style`, in order (empty when a file of the pair is gone).
    Raises `PresetNotFound` for a preset that is gone, `TooManyStyles`."""
    pictures: tuple[bytes, ...] = ()
    if style.preset_id is not None:
        pictures = await services.storage.preset_images(style.preset_id)
    elif style.file is not None and pair is not None:
        data = await asyncio.to_thread(services.pairs.style, pair, style.file)
        if data is None:
            return ()
        pictures = (data,)
    else:
        return ()
    if style.mix_preset_id is not None:
        pictures += await services.storage.preset_images(style.mix_preset_id)
    if len(pictures) > MAX_MIXED_STYLES:
        raise TooManyStyles()
    return pictures


def job_params(services: Services, recipe: Recipe) -> StyleParams:
    params = StyleParams(
        size=recipe.size,
        strength=float(recipe.strength),
        preserve_colors=recipe.colors,
        style_scale=recipe.brush,
    )
    if services.job_params_override:
        params = params.replace(**services.job_params_override)
    return params


async def paint_with_preset(
    services: Services,
    bot: Bot,
    *,
    user_id: int,
    chat_id: int,
    photo: bytes,
    photo_message: int | None,
    preset: Preset,
    recipe: Recipe,
    mix: Preset | None = None,
) -> str | None:
    """Keep `photo` as a new pair (for the result's buttons) and paint it in `preset`'s style
    (mixed half and half with `mix`'s, when given)."""
    pair = await asyncio.to_thread(services.pairs.create, user_id, chat_id, photo, photo_message)
    style = StyleRef(preset.name, preset_id=preset.id)
    return await start_job(
        services,
        bot,
        user_id=user_id,
        chat_id=chat_id,
        pair=pair,
        style=style.mixed_with(mix) if mix is not None else style,
        recipe=recipe,
    )


async def start_job(
    services: Services,
    bot: Bot,
    *,
    user_id: int,
    chat_id: int,
    pair: str,
    style: StyleRef,
    recipe: Recipe,
    init_job: str | None = None,
    full_res: bool = False,
) -> str | None:
    """Submit a painting of `pair`'s photo in `style`; returns the job id, or None after
    telling the user why not (pictures gone, queue full...). Everything about the job replies
    to the message that brought the photo. `full_res`: the result goes out as a file."""
    jobs = services.jobs
    owner = await asyncio.to_thread(services.pairs.owner, pair)
    reply_to = owner.message_id if owner is not None else None
    try:
        jobs.check_room(user_id)  # before reading any picture: under load most are refused here
        content = await asyncio.to_thread(services.pairs.content, pair)
        styles = await style_pictures(services, pair, style)
        if content is None or not styles:
            await send_text(bot, chat_id, texts.RESULT_EXPIRED, reply_to=reply_to)
            return None
        init = None
        if init_job is not None:
            init = await asyncio.to_thread(services.pairs.result, pair, init_job)
        meta = JobMeta(
            pair=pair,
            style_name=style.name,
            preset_id=style.preset_id,
            style_file=style.file,
            strength=recipe.strength,
            colors=recipe.colors,
            size=recipe.size,
            init_job=init_job if init is not None else None,
            language=current_language(),
            reply_to=reply_to,
            mix_preset_id=style.mix_preset_id,
            brush=recipe.brush,
            full_res=full_res,
        )
        job_id = await jobs.submit(
            user_id,
            chat_id,
            JobInputs(content, styles, init),
            job_params(services, recipe),
            meta,
        )
    except PresetNotFound:
        await send_text(bot, chat_id, texts.preset_not_found(style.name), reply_to=reply_to)
        return None
    except TooManyStyles:
        await send_text(bot, chat_id, texts.MIX_TOO_MANY, reply_to=reply_to)
        return None
    except UserQueueFull as exc:
        await send_text(bot, chat_id, texts.user_queue_full(exc.limit), reply_to=reply_to)
        return None
    except QueueFull as exc:
        await send_text(bot, chat_id, texts.queue_busy(exc.retry_after_s), reply_to=reply_to)
        return None
    position = jobs.position(job_id)
    await services.status.job_submitted(job_id, chat_id, max(1, position or 1), reply_to)
    log.info("job %s submitted for user %s (%s)", job_id, user_id, style.name)
    return job_id
