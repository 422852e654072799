"""Admin-only commands. For anyone else they behave exactly like unknown commands."""

from __future__ import annotations

from telegram import Update

from bot import texts
from bot.handlers.styles import on_unknown_command
from bot.services import Context, get_services
from bot.telegram_io import reply
from engine.job import JobState


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
    await reply(update, texts.stats_text(stats, queued, capacity))


async def cmd_addpreset(update: Update, context: Context) -> None:
    """/addpreset typed as text (the picture form is handled with the picture)."""
    if not _is_admin(update, context):
        await on_unknown_command(update, context)
        return
    await reply(update, texts.ADDPRESET_USAGE)
