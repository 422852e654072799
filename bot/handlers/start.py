"""/start (with a deep link's style name), /help, and the greeting when added to a group."""

from __future__ import annotations

from telegram import ChatMemberUpdated, Update

from bot import keyboards, texts
from bot.handlers.groups import in_group
from bot.handlers.styles import activate_preset
from bot.services import Context, get_services
from bot.telegram_io import reply, send_text

POPULAR = 6


async def cmd_start(update: Update, context: Context) -> None:
    """``/start``; ``/start NAME`` (what a link ``t.me/<bot>?start=NAME`` sends) also chooses
    the built-in style NAME for the next photo."""
    services = get_services(context)
    user = update.effective_user
    chat = update.effective_chat
    if user is None or chat is None:
        return
    await services.storage.ensure_user(user.id, chat.id, user.full_name)
    name = (context.args or [""])[0]
    if name:
        preset = await services.storage.find_preset(name, None)
        if preset is not None:
            await activate_preset(update, context.bot, services, preset)
            return
        await reply(update, texts.preset_not_found(name))
    presets = await services.storage.list_global_presets()
    markup = keyboards.style_keyboard(presets, pair=None)
    await reply(update, texts.start_text(in_group(update)), reply_markup=markup)


async def cmd_help(update: Update, context: Context) -> None:
    services = get_services(context)
    await reply(update, texts.help_text(services.preset_commands))


async def on_added_to_group(update: Update, context: Context) -> None:
    """The bot was added to a group: say once how it works there."""
    change: ChatMemberUpdated | None = update.my_chat_member
    if change is None or not in_group(update):
        return
    was = change.old_chat_member.status
    now = change.new_chat_member.status
    if was in ("left", "kicked") and now in ("member", "administrator"):
        await send_text(context.bot, change.chat.id, texts.start_text(in_group=True))
