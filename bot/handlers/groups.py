"""In groups the bot speaks only when spoken to.

With privacy mode on (Telegram's default for bots) a bot in a group receives only commands and
replies to its own messages; with it off, it receives everything. Either way this gate, which
runs before every other handler, lets through only what is meant for this bot:

- a command addressed to it (``/start@thisbot``) or to no bot in particular (``/start``);
- a message that replies to one of its messages (a photo sent as a reply, say);
- a picture whose caption is such a command (``/style starry_night``).

Everything else in a group (chatter, commands for other bots) is dropped without an answer.
Private chats and button presses are not gated.
"""

from __future__ import annotations

from telegram import Bot, Chat, Message, MessageEntity, Update
from telegram.ext import ApplicationHandlerStop

from bot.services import Context


def in_group(update: Update) -> bool:
    chat = update.effective_chat
    return chat is not None and chat.type in (Chat.GROUP, Chat.SUPERGROUP)


def command_target(message: Message) -> str | None:
    """The bot a leading command names (``/cmd@name`` → "name"), "" for a bare command, None
    when the text or caption does not start with a command."""
    text = message.text or message.caption or ""
    entities = message.entities or message.caption_entities or ()
    if not any(e.type == MessageEntity.BOT_COMMAND and e.offset == 0 for e in entities):
        return None
    _, _, target = text.split(maxsplit=1)[0].partition("@")
    return target


def is_for_bot(message: Message, bot: Bot) -> bool:
    target = command_target(message)
    if target is not None:
        return target == "" or target.lower() == (bot.username or "").lower()
    replied = message.reply_to_message
    return replied is not None and replied.from_user is not None and replied.from_user.id == bot.id


def addressed_explicitly(message: Message, bot: Bot) -> bool:
    """``/cmd@thisbot``: in a group, only such an unknown command gets the "unknown" hint (a
    bare one may be meant for another bot)."""
    target = command_target(message)
    return target is not None and target != "" and target.lower() == (bot.username or "").lower()


async def group_gate(update: Update, context: Context) -> None:
    message = update.message
    if message is None or not in_group(update):
        return
    if not is_for_bot(message, context.bot):
        raise ApplicationHandlerStop
