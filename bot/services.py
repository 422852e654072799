"""The bot's services: what every handler shares, kept in the application's `bot_data`.

Created by `bot.app.build_application` (settings, limiter, pair store, status board) and
`bot.app.post_init` (storage, executor, job manager). Telegram I/O helpers live in
`bot.telegram_io`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from telegram import Update
from telegram.ext import Application, CallbackContext, ContextTypes

from bot.ratelimit import RateLimiter
from bot.settings import Settings

if TYPE_CHECKING:  # only for annotations: these modules import this one
    from bot.executors.base import Executor
    from bot.handlers.pairs import PairStore
    from bot.handlers.status import StatusBoard
    from bot.jobs import JobManager
    from bot.storage import Storage, User

log = logging.getLogger(__name__)
SERVICES_KEY = "stylebot.services"
Context = ContextTypes.DEFAULT_TYPE
AnyApplication = Application[Any, Any, Any, Any, Any, Any]


class NotStarted(RuntimeError):
    """A service was used before post_init created it (or after post_shutdown)."""


@dataclass
class Services:
    """Everything the handlers need."""

    settings: Settings
    limiter: RateLimiter
    pairs: PairStore
    status: StatusBoard
    job_params_override: dict[str, Any] = field(default_factory=dict)
    executor: Executor | None = None
    _storage: Storage | None = None
    _jobs: JobManager | None = None
    person_locks: dict[tuple[int, int], asyncio.Lock] = field(default_factory=dict)
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

    def person_lock(self, chat_id: int, user_id: int) -> asyncio.Lock:
        """Serialises the intake of one person in one chat (an album's pictures keep their
        order; in a group, members do not wait for each other)."""
        key = (chat_id, user_id)
        lock = self.person_locks.get(key)
        if lock is None:
            if len(self.person_locks) > 10_000:  # forget idle locks now and then
                for old in [k for k, v in self.person_locks.items() if not v.locked()]:
                    del self.person_locks[old]
            lock = self.person_locks[key] = asyncio.Lock()
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

    async def ensure_sender(self, update: Update) -> User:
        """The stored user who sent `update` (created on first contact)."""
        user = update.effective_user
        chat = update.effective_chat
        assert user is not None and chat is not None
        return await self.storage.ensure_user(user.id, chat.id, user.full_name)


def get_services(source: CallbackContext[Any, Any, Any, Any] | AnyApplication) -> Services:
    """The `Services` of the application (from a handler's context or the application)."""
    app = source if isinstance(source, Application) else source.application
    services = app.bot_data.get(SERVICES_KEY)
    if not isinstance(services, Services):
        raise NotStarted("the application was not built by bot.app.build_application")
    return services
