"""Telegram calls that retry what is worth retrying, and nothing else.

Flood control (429 RetryAfter) is handled in one place: python-telegram-bot's
`AIORateLimiter` (see `bot.app`), which pauses every request for the asked time and retries.
Here only network hiccups are retried, with backoff; 400 Bad Request and 403 never are.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from telegram import Bot, Chat, Message, ReplyParameters, Update
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TimedOut

log = logging.getLogger(__name__)
T = TypeVar("T")


def is_not_modified(exc: BaseException) -> bool:
    return isinstance(exc, BadRequest) and "not modified" in str(exc).lower()


async def with_retries(
    call: Callable[[], Awaitable[T]], *, attempts: int = 4, what: str = "telegram call"
) -> T:
    """Run `call`, retrying network errors with backoff. RetryAfter (already retried by the
    rate limiter), 400 Bad Request (a subclass of NetworkError) and 403 are raised at once."""
    delay = 0.5
    for attempt in range(1, attempts + 1):
        try:
            return await call()
        except (RetryAfter, BadRequest, Forbidden):
            raise
        except (TimedOut, NetworkError) as exc:
            if attempt == attempts:
                raise
            log.info("%s: %s, retrying in %.1f s", what, exc, delay)
            await asyncio.sleep(delay + random.uniform(0, delay / 2))
            delay = min(delay * 2, 8.0)
    raise AssertionError("unreachable")


def replying_to(message_id: int | None) -> ReplyParameters | None:
    """Reply parameters for `message_id`; the message may have been deleted meanwhile."""
    if message_id is None:
        return None
    return ReplyParameters(message_id=message_id, allow_sending_without_reply=True)


async def send_text(
    bot: Bot, chat_id: int, text: str, *, reply_to: int | None = None, **kwargs: Any
) -> Message:
    """Send `text`, as a reply to the message `reply_to` when given."""
    return await with_retries(
        lambda: bot.send_message(
            chat_id=chat_id, text=text, reply_parameters=replying_to(reply_to), **kwargs
        ),
        what="send",
    )


async def safe_edit_text(
    bot: Bot, chat_id: int, message_id: int, text: str, reply_markup: Any = None
) -> bool:
    """Edit a message's text; "message is not modified" counts as success. False on 400/403."""
    try:
        await with_retries(
            lambda: bot.edit_message_text(
                text=text, chat_id=chat_id, message_id=message_id, reply_markup=reply_markup
            ),
            what="edit",
        )
        return True
    except BadRequest as exc:
        if is_not_modified(exc):
            return True
        log.info("edit of message %s in chat %s refused: %s", message_id, chat_id, exc)
        return False
    except Forbidden as exc:
        log.info("chat %s blocked the bot: %s", chat_id, exc)
        return False


async def reply(update: Update, text: str, **kwargs: Any) -> Message | None:
    """Answer the update's message in its chat, with retries. In a group the answer replies to
    the person's message, so that everyone sees whom it is for; in a private chat it does not
    quote."""
    chat = update.effective_chat
    if chat is None:
        return None
    message = update.effective_message
    quote = message is not None and chat.type != Chat.PRIVATE and update.callback_query is None
    try:
        return await send_text(
            update.get_bot(),
            chat.id,
            text,
            reply_to=message.message_id if quote and message is not None else None,
            **kwargs,
        )
    except Forbidden:
        return None


async def answer_query(update: Update, text: str | None = None, alert: bool = False) -> None:
    query = update.callback_query
    if query is None:
        return
    with contextlib.suppress(BadRequest):  # too old to answer: nothing to do
        await with_retries(lambda: query.answer(text=text, show_alert=alert), what="answer")
