"""Telegram handlers, split by job; `register(application)` wires them all.

- start: /start, /help
- intake: photos, images as files, stickers, albums; hints for other media and text
- styles: /presets, /style, /save, /delete, preset commands, unknown commands
- settings_cmds: /strength, /colors, /size, /brush, /status, /cancel
- status + jobflow: starting jobs and the one status message per job, results
- callbacks: every inline button
- admin: /stats, /addpreset (unknown-command behaviour for non-admins)
- errors: the global error handler and the rate-limit gate
- language: the language of each update (first, group -100) and /language
"""

from __future__ import annotations

from typing import Any

from telegram import Update
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    ChatMemberHandler,
    CommandHandler,
    MessageHandler,
    TypeHandler,
    filters,
)

from bot.handlers import (
    admin,
    callbacks,
    errors,
    groups,
    intake,
    language,
    settings_cmds,
    start,
    styles,
)

PICTURES = filters.PHOTO | filters.Document.ALL | filters.Sticker.ALL
OTHER_MEDIA = (
    filters.VOICE
    | filters.VIDEO
    | filters.AUDIO
    | filters.VIDEO_NOTE
    | filters.ANIMATION
    | filters.LOCATION
    | filters.CONTACT
    | filters.POLL
    | filters.Dice.ALL
    | filters.VENUE
)


def register(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
    # First, for every update: the language everything after it speaks (bot.i18n).
    application.add_handler(TypeHandler(Update, language.set_update_language), group=-100)
    # In groups, what is not meant for this bot stops here, before it counts against a limit.
    application.add_handler(TypeHandler(Update, groups.group_gate), group=-50)
    application.add_handler(TypeHandler(Update, errors.rate_limit_gate), group=-1)
    commands = {
        "start": start.cmd_start,
        "help": start.cmd_help,
        "presets": styles.cmd_presets,
        "style": styles.cmd_style,
        "save": styles.cmd_save,
        "delete": styles.cmd_delete,
        "strength": settings_cmds.cmd_strength,
        "colors": settings_cmds.cmd_colors,
        "colours": settings_cmds.cmd_colors,
        "size": settings_cmds.cmd_size,
        "brush": settings_cmds.cmd_brush,
        "status": settings_cmds.cmd_status,
        "cancel": settings_cmds.cmd_cancel,
        "language": language.cmd_language,
        "stats": admin.cmd_stats,
        "addpreset": admin.cmd_addpreset,
    }
    new = filters.UpdateType.MESSAGE  # edits of old messages are ignored
    for name, callback in commands.items():
        application.add_handler(CommandHandler(name, callback, filters=new))
    application.add_handler(MessageHandler(new & filters.COMMAND, styles.on_unknown_command))
    # OTHER_MEDIA before PICTURES: a GIF arrives as an animation *and* a document
    application.add_handler(MessageHandler(new & OTHER_MEDIA, intake.on_other_media))
    application.add_handler(MessageHandler(new & PICTURES, intake.on_picture))
    application.add_handler(MessageHandler(new & filters.TEXT, intake.on_text))
    application.add_handler(CallbackQueryHandler(callbacks.on_callback))
    application.add_handler(
        ChatMemberHandler(start.on_added_to_group, ChatMemberHandler.MY_CHAT_MEMBER)
    )
    application.add_error_handler(errors.on_error)
