"""Admin-only commands. For anyone else they behave exactly like unknown commands."""

from __future__ import annotations

from telegram import Update

from bot import speed, texts
from bot.handlers.jobflow import Recipe, job_params
from bot.handlers.styles import on_unknown_command
from bot.services import Context, get_services
from bot.telegram_io import reply
from engine.job import JobState
from engine.params import REFERENCE_STRENGTH


def _is_admin(update: Update, context: Context) -> bool:
    user = update.effective_user
    return get_services(context).is_admin(user.id if user else None)


async def cmd_stats(update: Update, context: Context) -> None:
    if not _is_admin(update, context):
        await on_unknown_command(update, context)
        return
    services = get_services(context)
    stats = await services.storage.stats()
    by_state = stats.get("jobs")
    queued = int(by_state.get(JobState.QUEUED, 0)) if isinstance(by_state, dict) else 0
    capacity = services.executor.capacity if services.executor else 0
    size = services.settings.default_size
    params = job_params(services, Recipe(int(REFERENCE_STRENGTH), colors=False, size=size))
    devices = [
        (worker.device, size, speed.estimate_seconds(worker, params), worker.jobs)
        for worker in await services.storage.worker_speeds()
    ]
    await reply(update, texts.stats_text(stats, queued, capacity, devices))


async def cmd_addpreset(update: Update, context: Context) -> None:
    """/addpreset typed as text (the picture form is handled with the picture)."""
    if not _is_admin(update, context):
        await on_unknown_command(update, context)
        return
    await reply(update, texts.ADDPRESET_USAGE)
