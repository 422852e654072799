"""What every handler shares: the `Services` in `bot_data`, per-chat locks, and Telegram
calls that retry what is worth retrying (flood control, network hiccups) and nothing else."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dtm
import logging
import random
import warnings
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from telegram import Message, Update
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TimedOut
from telegram.ext import Application, CallbackContext, ContextTypes

from bot.ratelimit import RateLimiter
from bot.settings import Settings

if TYPE_CHECKING:
    from bot.executors.base import Executor
    from bot.handlers.pairs import PairStore
    from bot.handlers.status import StatusBoard
    from bot.jobs import JobManager
    from bot.storage import Storage

log = logging.getLogger(__name__)
T = TypeVar("T")
SERVICES_KEY = "stylebot.services"
Context = ContextTypes.DEFAULT_TYPE
AnyApplication = Application[Any, Any, Any, Any, Any, Any]


class NotStarted(RuntimeError):
    """A service was used before post_init created it (or after post_shutdown)."""


@dataclass
class Services:
    """Everything the handlers need, created by `build_application` and `post_init`."""

    settings: Settings
    limiter: RateLimiter
    pairs: PairStore
    status: StatusBoard
    job_params_override: dict[str, Any] = field(default_factory=dict)
    executor: Executor | None = None
    _storage: Storage | None = None
    _jobs: JobManager | None = None
    chat_locks: dict[int, asyncio.Lock] = field(default_factory=dict)
    albums: dict[str, Any] = field(default_factory=dict)
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    preset_commands: list[str] = field(default_factory=list)

    @property
    def storage(self) -> Storage:
        if self._storage is None:
            raise NotStarted("storage is not open")
        return self._storage

    @property
    def jobs(self) -> JobManager:
        if self._jobs is None:
            raise NotStarted("the job manager is not running")
        return self._jobs

    def chat_lock(self, chat_id: int) -> asyncio.Lock:
        """Serialises the intake of one chat (so an album's pictures keep their order)."""
        lock = self.chat_locks.get(chat_id)
        if lock is None:
            if len(self.chat_locks) > 10_000:  # forget idle locks now and then
                for key in [k for k, v in self.chat_locks.items() if not v.locked()]:
                    del self.chat_locks[key]
            lock = self.chat_locks[chat_id] = asyncio.Lock()
        return lock

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str = "stylebot") -> asyncio.Task[Any]:
        """A background task that is kept referenced, logged on failure, cancelled at shutdown."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self.tasks.add(task)

        def _done(t: asyncio.Task[Any]) -> None:
            self.tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("background task %s failed", name, exc_info=t.exception())

        task.add_done_callback(_done)
        return task

    def is_admin(self, user_id: int | None) -> bool:
        return user_id is not None and user_id in self.settings.admins


def get_services(source: CallbackContext[Any, Any, Any, Any] | AnyApplication) -> Services:
    """The `Services` of the application (from a handler's context or the application)."""
    app = source if isinstance(source, Application) else source.application
    services = app.bot_data.get(SERVICES_KEY)
    if not isinstance(services, Services):
        raise NotStarted("the application was not built by bot.app.build_application")
    return services


# -- Telegram calls with retries --------------------------------------------------------------
async def ensure_sender(update: Update, services: Services) -> Any:
    """The stored user who sent `update` (created on first contact)."""
    user = update.effective_user
    chat = update.effective_chat
    assert user is not None and chat is not None
    return await services.storage.ensure_user(user.id, chat.id, user.full_name)


def retry_after_seconds(exc: RetryAfter) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value: Any = exc.retry_after
    if isinstance(value, dtm.timedelta):
        return value.total_seconds()
    return float(value)


def is_not_modified(exc: BaseException) -> bool:
    return isinstance(exc, BadRequest) and "not modified" in str(exc).lower()


async def with_retries(
    call: Callable[[], Awaitable[T]], *, attempts: int = 4, what: str = "telegram call"
) -> T:
    """Run `call`, retrying flood control (after the asked delay) and network errors (with
    backoff). 400 Bad Request (a subclass of NetworkError) and 403 are never retried."""
    delay = 0.5
    for attempt in range(1, attempts + 1):
        try:
            return await call()
        except RetryAfter as exc:
            if attempt == attempts:
                raise
            wait = retry_after_seconds(exc) + 0.1
            log.info("%s: flood control, retrying in %.1f s", what, wait)
            await asyncio.sleep(min(wait, 60.0))
        except (BadRequest, Forbidden):
            raise
        except (TimedOut, NetworkError) as exc:
            if attempt == attempts:
                raise
            log.info("%s: %s, retrying in %.1f s", what, exc, delay)
            await asyncio.sleep(delay + random.uniform(0, delay / 2))
            delay = min(delay * 2, 8.0)
    raise AssertionError("unreachable")


async def safe_edit_text(
    bot: Any, chat_id: int, message_id: int, text: str, reply_markup: Any = None
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
    """Answer the update's message in its chat (no quoting), with retries."""
    chat = update.effective_chat
    if chat is None:
        return None
    bot = update.get_bot()
    try:
        return await with_retries(
            lambda: bot.send_message(chat_id=chat.id, text=text, **kwargs), what="send"
        )
    except Forbidden:
        return None


async def answer_query(update: Update, text: str | None = None, alert: bool = False) -> None:
    query = update.callback_query
    if query is None:
        return
    with contextlib.suppress(BadRequest):  # too old to answer: nothing to do
        await with_retries(lambda: query.answer(text=text, show_alert=alert), what="answer")
