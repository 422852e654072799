"""Build the python-telegram-bot Application: services in `bot_data`, handlers, start/stop.

`build_application(settings)` does no I/O. `post_init` opens the database, starts the executor
and the job manager, and registers the command menu; `post_shutdown` stops them in reverse.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from typing import Any

from telegram import BotCommand, Update
from telegram.error import TelegramError
from telegram.ext import AIORateLimiter, Application, ApplicationBuilder

from bot import handlers, texts
from bot.executors import make_executor
from bot.executors.base import Executor
from bot.handlers.pairs import PairStore
from bot.handlers.status import StatusBoard
from bot.i18n import DEFAULT_LANGUAGE, SUPPORTED_LANGUAGES, check_catalogs, use_language
from bot.jobs import JobManager
from bot.ratelimit import RateLimiter
from bot.services import SERVICES_KEY, AnyApplication, Services, get_services
from bot.settings import Settings
from bot.storage import Storage

log = logging.getLogger(__name__)

MAX_RETRIES_ON_FLOOD = 3
# Replies to what a user just sent are not paced by the bot itself: under a burst of users a
# 30/s cap on them makes /start wait tens of seconds. Telegram's own flood control still rules
# (a 429 pauses every request for its retry_after, then retries). What the bot sends on its own
# (job status, previews, results: "bulk notifications") is paced by the StatusBoard.
PAIRS_MAX_AGE_DAYS = 7.0
PRUNE_EVERY_S = 6 * 3600.0
# Finished job rows and forgotten waiting pictures are kept this long, then deleted.
JOBS_MAX_AGE_DAYS = 30.0
PENDING_MAX_AGE_DAYS = 7.0
TELEGRAM_FILES_MAX_AGE_DAYS = 30.0
"""Gallery sheets' file_ids are kept this long, then uploaded once again when shown."""
# The bot touches data/heartbeat this often; the Docker health check reads its age.
HEARTBEAT_EVERY_S = 30.0
HEARTBEAT_FILE = "heartbeat"
COMMAND_NAME = re.compile(r"^[a-z0-9_]{1,32}$")
MAX_MENU_COMMANDS = 100


def build_application(
    settings: Settings,
    *,
    executor: Executor | None = None,
    job_params_override: dict[str, Any] | None = None,
    status_interval: float = 3.0,
) -> AnyApplication:
    """The bot, ready for `run_polling`. `executor` defaults to `make_executor(settings)`
    (created in post_init); `job_params_override` replaces StyleParams fields of every job
    (tests use it for tiny, fast jobs: ``{"steps": [3, 3], "scales": 2}``)."""
    builder = (
        ApplicationBuilder()
        .token(settings.token)
        .base_url(settings.base_url)
        .base_file_url(settings.base_file_url)
        .rate_limiter(AIORateLimiter(overall_max_rate=0, max_retries=MAX_RETRIES_ON_FLOOD))
        .concurrent_updates(True)
        .connect_timeout(10.0)
        .read_timeout(30.0)
        .write_timeout(60.0)
        .media_write_timeout(60.0)
        .pool_timeout(10.0)
        .post_init(post_init)
        .post_stop(post_stop)
        .post_shutdown(post_shutdown)
    )
    app = builder.build()
    services = Services(
        settings=settings,
        limiter=RateLimiter(settings.rate_limit_per_minute),
        pairs=PairStore(settings.data_dir / "pairs", max_age_days=PAIRS_MAX_AGE_DAYS),
        status=StatusBoard(interval=status_interval),
        job_params_override=dict(job_params_override or {}),
        executor=executor,
    )
    app.bot_data[SERVICES_KEY] = services
    handlers.register(app)
    return app


async def post_init(app: AnyApplication) -> None:
    services = get_services(app)
    settings = services.settings
    check_catalogs()  # a translation that was never compiled stops the bot here, saying so
    await asyncio.to_thread(settings.data_dir.mkdir, parents=True, exist_ok=True)
    storage = Storage(settings.database_path)
    await storage.open()
    services._storage = storage
    if services.executor is None:
        services.executor = make_executor(settings)
    await services.executor.start()
    services.status.attach(app, services)
    jobs = JobManager(
        storage,
        services.executor,
        settings.spool_dir,
        max_queue=settings.max_queue,
        max_per_user=settings.max_jobs_per_user,
        on_event=services.status.on_event,
    )
    services._jobs = jobs
    await jobs.start()
    services.spawn(_housekeeping(services), name="stylebot-housekeeping")
    services.spawn(_heartbeat(services), name="stylebot-heartbeat")
    await set_commands(app, services)
    await set_descriptions(app)
    log.info("stylebot is up (executor %s)", type(services.executor).__name__)


async def post_stop(app: AnyApplication) -> None:
    """While the bot can still talk: stop taking jobs and deliver the last status events."""
    await _stop_jobs(get_services(app))


async def _stop_jobs(services: Services) -> None:
    if services._jobs is not None:
        try:
            await services._jobs.stop()
        except Exception:
            log.exception("stopping the job manager failed")
        services._jobs = None
    await services.status.close()


async def post_shutdown(app: AnyApplication) -> None:
    """Stop everything post_init started, in reverse (also when start-up failed half-way)."""
    services = get_services(app)
    was_up = services._storage is not None
    for task in list(services.tasks):
        task.cancel()
    for task in list(services.tasks):
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    await _stop_jobs(services)
    if services.executor is not None:
        try:
            await services.executor.close()
        except Exception:
            log.exception("closing the executor failed")
    if services._storage is not None:
        await services._storage.close()
        services._storage = None
    if was_up:  # a start-up that failed says why in one line (bot.__main__), nothing more
        log.info("stylebot stopped")


async def set_commands(app: AnyApplication, services: Services) -> None:
    """The command menu, in every language (Telegram shows each user the one of their app's
    language, else the default, which is English): every public command, then the built-in
    presets (admin ones never)."""
    presets = await services.storage.list_global_presets()
    services.preset_commands = [p.name for p in presets if COMMAND_NAME.match(p.name)]
    for language in SUPPORTED_LANGUAGES:
        with use_language(language):
            commands = [BotCommand(name, what) for name, what, _example in texts.help_commands()]
        for preset in presets:
            if len(commands) >= MAX_MENU_COMMANDS:
                break
            if COMMAND_NAME.match(preset.name):
                what = f"{preset.title} — {preset.artist}" if preset.title else preset.name
                commands.append(BotCommand(preset.name, what[:256]))
        try:
            await app.bot.set_my_commands(commands, language_code=_language_code(language))
        except TelegramError as exc:  # the bot still works without its menu
            log.warning("could not register the command menu (%s): %s", language, exc)


async def set_descriptions(app: AnyApplication) -> None:
    """The bot's profile texts in every language: the description (on the empty chat screen)
    and the short description (on its profile and in shared links)."""
    for language in SUPPORTED_LANGUAGES:
        with use_language(language):
            description = texts.BOT_DESCRIPTION
            short = texts.BOT_SHORT_DESCRIPTION
        code = _language_code(language)
        try:
            await app.bot.set_my_description(description, language_code=code)
            await app.bot.set_my_short_description(short, language_code=code)
        except TelegramError as exc:  # cosmetic: the bot works without them
            log.warning("could not set the bot's description (%s): %s", language, exc)


def _language_code(language: str) -> str | None:
    """Bot API `language_code`: none for the default (English), which every other
    language falls back to."""
    return None if language == DEFAULT_LANGUAGE else language


async def _housekeeping(services: Services) -> None:
    """Forget old pictures kept for buttons, old job rows, old waiting pictures and old file_ids
    of gallery sheets, now and every few hours."""
    while True:
        try:
            removed = await asyncio.to_thread(services.pairs.prune)
            jobs = await services.storage.prune_jobs(JOBS_MAX_AGE_DAYS)
            pending = await services.storage.prune_pending(PENDING_MAX_AGE_DAYS)
            await services.storage.prune_telegram_files(TELEGRAM_FILES_MAX_AGE_DAYS)
            if removed or jobs or pending:
                log.info(
                    "removed %d expired picture pairs, %d old jobs, %d old waiting pictures",
                    removed,
                    jobs,
                    pending,
                )
        except Exception:
            log.exception("housekeeping failed")
        await asyncio.sleep(PRUNE_EVERY_S)


async def _heartbeat(services: Services) -> None:
    """Touch data/heartbeat while the event loop runs (a hung bot stops touching it)."""
    path = services.settings.data_dir / HEARTBEAT_FILE
    while True:
        try:
            await asyncio.to_thread(path.write_text, f"{time.time():.0f}\n")
        except OSError as exc:
            log.warning("could not write the heartbeat file: %s", exc)
        await asyncio.sleep(HEARTBEAT_EVERY_S)


__all__ = ["Application", "Update", "build_application", "post_init", "post_shutdown", "post_stop"]
