"""Fixtures and helpers for end-to-end bot tests against the fake Telegram server.

Fixtures (`fake_telegram`, `stylebot_settings`) are found by pytest once imported into the test
module: ``from tests.bot_harness import fake_telegram_fixture  # noqa: F401`` (or list
"tests.bot_harness" in the root conftest's ``pytest_plugins``)::

    async def test_start(fake_telegram, tmp_path, test_weights):
        settings = bot_settings(tmp_path, fake_telegram, weights=test_weights)
        async with running_bot(settings):
            user = fake_telegram.user(1001, "Ada")
            await user.send_text("/start")
            reply = await fake_telegram.wait_for_message(user.chat_id)

`running_application(app)` runs any python-telegram-bot Application the way `run_polling` does,
but inside the test's event loop; `running_bot(settings)` does it for `bot.app.build_application`.
`start_bot_process(env)` runs the real ``python -m bot`` against the fake server.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from telegram.error import TelegramError
from telegram.ext import Application

from bot.settings import Settings, load_settings
from tests.conftest import RANDOM_WEIGHTS, REPO_DIR
from tests.fake_telegram import FakeTelegram

AnyApplication = Application[Any, Any, Any, Any, Any, Any]

# What the `test_weights` fixture of tests/conftest.py gives, for callers without the fixture.
DEFAULT_TEST_WEIGHTS = str(RANDOM_WEIGHTS) if RANDOM_WEIGHTS.exists() else "random"
POLL_TIMEOUT = 1  # seconds a getUpdates long poll waits: short, so stopping is quick


@pytest.fixture(name="fake_telegram")
async def fake_telegram_fixture() -> AsyncIterator[FakeTelegram]:
    """A started fake Telegram Bot API server, stopped after the test."""
    fake = FakeTelegram()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


def bot_env(
    tmp_path: Path,
    fake: FakeTelegram,
    *,
    weights: str | None = None,
    base: Mapping[str, str] | None = None,
    **overrides: Any,
) -> dict[str, str]:
    """The environment variables of a bot talking to `fake`, data under tmp_path/"data".

    `overrides` are more variables (``STYLEBOT_MAX_QUEUE=2``); values are turned into strings,
    None removes a variable. `base` (default: nothing) is merged underneath.
    """
    env = dict(base or {})
    env.update(
        {
            "TELEGRAM_BOT_TOKEN": fake.token,
            "TELEGRAM_API_URL": fake.api_url,
            "STYLEBOT_DATA_DIR": str(tmp_path / "data"),
            "STYLEBOT_WEIGHTS": weights or DEFAULT_TEST_WEIGHTS,
            "STYLEBOT_MAX_SIDE": "64",
        }
    )
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = str(value)
    return env


def bot_settings(
    tmp_path: Path, fake_telegram: FakeTelegram, *, weights: str | None = None, **overrides: Any
) -> Settings:
    """Settings for a bot talking to the fake server (built by `load_settings` from an env dict).

    Upper-case `overrides` are environment variables (``STYLEBOT_MAX_QUEUE=2``); lower-case ones
    replace Settings fields afterwards (``job_timeout=5.0``). Pass the `test_weights` fixture
    value as `weights` (the default is the same value, computed the same way).
    """
    env_overrides = {k: v for k, v in overrides.items() if k.isupper()}
    fields = {k: v for k, v in overrides.items() if not k.isupper()}
    settings = load_settings(bot_env(tmp_path, fake_telegram, weights=weights, **env_overrides))
    return dataclasses.replace(settings, **fields) if fields else settings


@pytest.fixture(name="stylebot_settings")
def stylebot_settings_fixture(
    tmp_path: Path, fake_telegram: FakeTelegram, test_weights: str
) -> Settings:
    """`bot_settings` with the defaults: the fake server, tmp_path/"data", the test weights."""
    return bot_settings(tmp_path, fake_telegram, weights=test_weights)


@contextlib.asynccontextmanager
async def running_application(
    app: AnyApplication, *, poll_timeout: float = POLL_TIMEOUT, drop_pending_updates: bool = False
) -> AsyncIterator[AnyApplication]:
    """Run `app` as `Application.run_polling` would, in the running event loop.

    The order is run_polling's (python-telegram-bot 22): initialize → post_init →
    updater.start_polling → start → (the test runs) → updater.stop → stop → post_stop →
    shutdown → post_shutdown. As there, the shutdown half runs even when start-up failed,
    post_stop only if the application was started, and polling errors go to the error handlers.
    """
    if app.updater is None:
        raise RuntimeError("running_application needs an Application with an Updater")
    updater = app.updater

    def error_callback(exc: TelegramError) -> None:
        app.create_task(app.process_error(error=exc, update=None))

    try:
        await app.initialize()
        if app.post_init:
            await app.post_init(app)
        await updater.start_polling(
            poll_interval=0,
            timeout=int(poll_timeout),
            bootstrap_retries=0,
            drop_pending_updates=drop_pending_updates,
            error_callback=error_callback,
        )
        await app.start()
        yield app
    finally:
        if updater.running:
            await updater.stop()
        if app.running:
            await app.stop()
            # post_stop only if stop was called, as in run_polling
            if app.post_stop:
                await app.post_stop(app)
        await app.shutdown()
        if app.post_shutdown:
            await app.post_shutdown(app)
        # Not in run_polling: when initialize failed half-way (getMe refused), Application.shutdown
        # returns early and leaves the bot's HTTP clients open; close them (a no-op otherwise).
        await app.bot.shutdown()


@contextlib.asynccontextmanager
async def running_bot(settings: Settings, **kwargs: Any) -> AsyncIterator[AnyApplication]:
    """Build the real bot (`bot.app.build_application(settings, **kwargs)`) and run it."""
    from bot.app import build_application  # the bot's module, imported only when used

    app = build_application(settings, **kwargs)
    async with running_application(app) as running:
        yield running


def _open_log(path: Path) -> Any:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("ab")


async def start_process(
    args: list[str], env: Mapping[str, str], log_path: Path, *, cwd: Path = REPO_DIR
) -> asyncio.subprocess.Process:
    """Start `args` with stdout and stderr both appended to `log_path` (`proc.log_path`)."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
    log = _open_log(log_path)
    try:
        proc = await asyncio.create_subprocess_exec(
            *args,
            cwd=str(cwd),
            env=full_env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
        )
    finally:
        log.close()  # the child has its own copy of the descriptor
    proc.log_path = log_path  # type: ignore[attr-defined]
    return proc


async def start_bot_process(
    env: Mapping[str, str], log_path: Path | None = None
) -> asyncio.subprocess.Process:
    """Run the real ``python -m bot`` with `env` (see `bot_env`) on top of os.environ.

    Its stdout and stderr go to `log_path` (default: beside the data dir, "bot.log"), kept as
    ``proc.log_path`` for checks such as "the token never appears in the logs". Always end it
    with `stop_process`.
    """
    if log_path is None:
        data_dir = Path(env.get("STYLEBOT_DATA_DIR", "data"))
        log_path = data_dir.parent / "bot.log"
    return await start_process([sys.executable, "-m", "bot"], env, log_path)


async def stop_process(
    proc: asyncio.subprocess.Process,
    timeout: float = 20.0,  # noqa: ASYNC109
    sig: int = signal.SIGTERM,
) -> int:
    """Send `sig` (SIGTERM), wait up to `timeout` s, then kill; returns the exit code."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode


def process_log(proc: asyncio.subprocess.Process) -> str:
    """What the process has written to its log so far."""
    path: Path = proc.log_path  # type: ignore[attr-defined]
    return path.read_text(errors="replace") if path.exists() else ""


def run_bot_to_exit(env: Mapping[str, str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """`python -m bot` with `env` on top of a clean environment (no TELEGRAM_/STYLEBOT_
    variables of the caller), run to its exit (at most 120 s), output captured."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "STYLEBOT_"))}
    return subprocess.run(
        [sys.executable, "-m", "bot"],
        cwd=REPO_DIR,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        **kwargs,
    )
