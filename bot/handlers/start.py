"""/start and /help."""

from __future__ import annotations

from telegram import Update

from bot import keyboards, texts
from bot.services import Context, get_services
from bot.telegram_io import reply

POPULAR = 6


async def cmd_start(update: Update, context: Context) -> None:
    services = get_services(context)
    user = update.effective_user
    chat = update.effective_chat
    if user is None or chat is None:
        return
    await services.storage.ensure_user(user.id, chat.id, user.full_name)
    presets = await services.storage.list_global_presets()
    markup = keyboards.style_keyboard(presets, pair=None)
    await reply(update, texts.START, reply_markup=markup)


async def cmd_help(update: Update, context: Context) -> None:
    services = get_services(context)
    await reply(update, texts.help_text(services.preset_commands))
