"""`python -m bot` (or the `stylebot` script): check settings and the data dir, then poll
Telegram for updates, or, when STYLEBOT_WEBHOOK_URL is set, serve python-telegram-bot's webhook
(Telegram posts updates to it)."""

from __future__ import annotations

import errno
import logging
import os
import re
import sys
import tempfile
from pathlib import Path


def check_data_dir(path: Path) -> str | None:
    """None if `path` can be created and written, else one line saying why not."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=path)
        try:
            os.write(fd, b"x" * 4096)
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):  # EFBIG: a file size limit
            return f"the data directory {path} is on a full disk (disk full): free some space"
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return f"the data directory {path} is not writable: check its permissions"
        if exc.errno in (errno.ENOTDIR, errno.EEXIST):
            return f"the data directory {path} is not a directory"
        return f"the data directory {path} cannot be used: {exc.strerror or exc}"
    return None


def main() -> int:
    # Imports come step by step, so that a missing token or data directory is reported at
    # once, before python-telegram-bot and the rest of the bot are loaded.
    from bot.settings import SettingsError, load_settings

    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"stylebot: {exc}", file=sys.stderr)
        return 2
    problem = check_data_dir(settings.data_dir)
    if problem is not None:
        print(f"stylebot: {problem}", file=sys.stderr)
        return 1

    from telegram import Update
    from telegram.error import InvalidToken

    from bot.app import build_application
    from bot.logs import RedactTokenFilter, setup_logging

    secrets = [settings.webhook_secret]
    setup_logging(settings.log_level, [settings.token], other_secrets=secrets)
    app = build_application(settings)
    try:
        if settings.webhook_url:
            logging.getLogger("bot").info(
                "webhook mode: Telegram posts to %s, served on http://%s:%d/%s",
                settings.webhook_url,
                settings.webhook_listen,
                settings.webhook_port,
                settings.webhook_path,
            )
            app.run_webhook(
                listen=settings.webhook_listen,
                port=settings.webhook_port,
                # PTB routes on a regular expression: the path's "." must match only itself.
                url_path=re.escape(settings.webhook_path),
                secret_token=settings.webhook_secret,
                webhook_url=settings.webhook_url,
                allowed_updates=Update.ALL_TYPES,
                drop_pending_updates=False,
            )
        else:
            app.run_polling(allowed_updates=Update.ALL_TYPES)
    except InvalidToken:  # its message quotes the token: never print it
        print(
            "stylebot: Telegram refused TELEGRAM_BOT_TOKEN (unauthorized): "
            "check it with @BotFather",
            file=sys.stderr,
        )
        return 1
    except Exception as exc:  # start-up failed (database, executor...): one line, no traceback
        redact = RedactTokenFilter([settings.token], secrets).redact
        reason = redact(str(exc) or type(exc).__name__)
        print(f"stylebot: could not start: {reason}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
