"""The global error handler and the per-user rate-limit gate."""

from __future__ import annotations

import logging
import secrets

from telegram import Update
from telegram.error import Forbidden, NetworkError, TelegramError
from telegram.ext import ApplicationHandlerStop

from bot import texts
from bot.services import Context, get_services
from bot.telegram_io import answer_query, reply

log = logging.getLogger(__name__)


async def report_error(update: object, context: Context, error: BaseException | None) -> None:
    """Log the traceback with a short reference id (the log filter redacts the token) and
    tell the user, when there is one, that something failed."""
    ref = secrets.token_hex(4)
    if isinstance(error, Forbidden):
        log.info("[%s] the user blocked the bot: %s", ref, error)
        return
    if isinstance(error, NetworkError) and not isinstance(update, Update):
        log.warning("[%s] network trouble talking to Telegram: %s", ref, error)
        return
    log.error(
        "[%s] error while handling an update",
        ref,
        exc_info=(type(error), error, error.__traceback__) if error else None,
    )
    if isinstance(update, Update) and update.effective_chat is not None:
        try:
            await reply(update, texts.internal_error(ref))
        except TelegramError:
            log.info("[%s] could not tell the user", ref)


async def on_error(update: object, context: Context) -> None:
    await report_error(update, context, context.error)


async def rate_limit_gate(update: Update, context: Context) -> None:
    """Runs first for every update: drops a flooding user's updates, telling them once in
    the chat. A dropped button press is still answered (once, as every press must be), or
    the user's button would keep spinning."""
    user = update.effective_user
    if user is None:
        return
    services = get_services(context)
    decision = services.limiter.check(user.id)
    if decision.allowed:
        return
    if update.callback_query is not None:
        await answer_query(update, texts.SLOW_DOWN)
    if decision.notify:
        log.info("user %s rate-limited", user.id)
        await reply(update, texts.rate_limited(decision.retry_after))
    raise ApplicationHandlerStop
