"""Webhook mode (issue 12, part 4): settings, redaction of the secret, and the real
``python -m bot`` serving python-telegram-bot's webhook, with updates posted to it as Telegram
would (with and without the secret header)."""

from __future__ import annotations

import asyncio
import io
import logging
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot import texts
from bot.logs import setup_logging
from bot.settings import Settings, SettingsError, load_settings
from tests.bot_harness import (
    bot_env,
    fake_telegram_fixture,  # noqa: F401
    process_log,
    run_bot_to_exit,
    start_bot_process,
    stop_process,
)
from tests.conftest import REPO_DIR
from tests.fake_telegram import CallRecord, FakeTelegram
from tests.redis_server import free_port

TOKEN = "123456789:" + "A" * 35
SECRET = "webhook-Secret_0123456789abcdefXYZ"
URL = "https://bot.example.com/telegram"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
# Generous deadlines to wait for what must happen (never a bound the test asserts).
START_WAIT_S = 120.0
ANSWER_WAIT_S = 60.0


def settings_from(**env: str) -> Settings:
    return load_settings({"TELEGRAM_BOT_TOKEN": TOKEN, **env})


def refusal(**env: str) -> str:
    with pytest.raises(SettingsError) as caught:
        settings_from(**env)
    message = str(caught.value)
    assert "\n" not in message and TOKEN not in message
    return message


# --- settings --------------------------------------------------------------------------------
def test_no_url_means_long_polling_with_the_defaults() -> None:
    settings = settings_from()
    assert settings.webhook_url == Settings.webhook_url == ""
    assert settings.webhook_listen == "127.0.0.1"
    assert settings.webhook_port == 8443
    assert settings.webhook_secret == ""


def test_webhook_settings_are_read() -> None:
    settings = settings_from(
        STYLEBOT_WEBHOOK_URL=URL + "/",
        STYLEBOT_WEBHOOK_LISTEN="0.0.0.0",
        STYLEBOT_WEBHOOK_PORT="9000",
        STYLEBOT_WEBHOOK_SECRET=SECRET,
    )
    assert settings.webhook_url == URL + "/"
    assert settings.webhook_path == "telegram"
    assert (settings.webhook_listen, settings.webhook_port) == ("0.0.0.0", 9000)
    assert settings.webhook_secret == SECRET
    assert SECRET not in repr(settings)


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("https://bot.example.com", ""),
        ("https://bot.example.com/", ""),
        ("https://bot.example.com:8443/hooks/style-bot.v1", "hooks/style-bot.v1"),
        ("https://bot.example.com:443/telegram", "telegram"),
    ],
)
def test_url_path_is_the_urls_own(url: str, path: str) -> None:
    assert settings_from(STYLEBOT_WEBHOOK_URL=url, STYLEBOT_WEBHOOK_SECRET="s").webhook_path == path


@pytest.mark.parametrize("secret", ["a", "Z" * 256, "A-z_0-9"])
def test_secrets_telegram_accepts(secret: str) -> None:
    settings = settings_from(STYLEBOT_WEBHOOK_URL=URL, STYLEBOT_WEBHOOK_SECRET=secret)
    assert settings.webhook_secret == secret


def test_url_without_a_secret_is_refused() -> None:
    message = refusal(STYLEBOT_WEBHOOK_URL=URL)
    assert message.startswith("STYLEBOT_WEBHOOK_SECRET is not set")


@pytest.mark.parametrize(
    "secret", ["with space", "Z" * 257, "sécret", "semi;colon", "slash/ed", "dollar$sign"]
)
def test_bad_secrets_are_refused_and_never_echoed(secret: str) -> None:
    message = refusal(STYLEBOT_WEBHOOK_URL=URL, STYLEBOT_WEBHOOK_SECRET=secret)
    assert message.startswith("STYLEBOT_WEBHOOK_SECRET must be 1-256 characters")
    assert secret not in message


@pytest.mark.parametrize(
    "url",
    [
        "http://bot.example.com/telegram",
        "bot.example.com/telegram",
        "ftp://bot.example.com/telegram",
        "https:///telegram",
    ],
)
def test_urls_other_than_https_are_refused(url: str) -> None:
    message = refusal(STYLEBOT_WEBHOOK_URL=url, STYLEBOT_WEBHOOK_SECRET=SECRET)
    assert message.startswith("STYLEBOT_WEBHOOK_URL must be an https:// URL")
    assert SECRET not in message


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("https://bot.example.com:8080/telegram", "port 443, 80, 88 or 8443"),
        ("https://bot.example.com:99999/telegram", "not a valid URL"),
        ("https://bot.example.com/telegram?x=1", "without a user"),
        ("https://user:pw@bot.example.com/telegram", "without a user"),
        ("https://bot.example.com/tele%20gram", "path may hold only"),
    ],
)
def test_urls_telegram_would_not_post_to_are_refused(url: str, words: str) -> None:
    message = refusal(STYLEBOT_WEBHOOK_URL=url, STYLEBOT_WEBHOOK_SECRET=SECRET)
    assert message.startswith("STYLEBOT_WEBHOOK_URL") and words in message
    assert "pw" not in message


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("STYLEBOT_WEBHOOK_PORT", "0"),
        ("STYLEBOT_WEBHOOK_PORT", "65536"),
        ("STYLEBOT_WEBHOOK_PORT", "https"),
        ("STYLEBOT_WEBHOOK_LISTEN", "127.0.0.1 8443"),
        ("STYLEBOT_WEBHOOK_LISTEN", "http://127.0.0.1"),
    ],
)
def test_bad_listen_address_or_port_is_refused(name: str, value: str) -> None:
    message = refusal(STYLEBOT_WEBHOOK_URL=URL, STYLEBOT_WEBHOOK_SECRET=SECRET, **{name: value})
    assert message.startswith(name)


# --- the secret is never logged or printed ---------------------------------------------------
def test_logs_redact_the_secret_and_the_token() -> None:
    stream = io.StringIO()
    handler = setup_logging("DEBUG", [TOKEN], stream, other_secrets=[SECRET])
    try:
        log = logging.getLogger("tests.webhook")
        log.debug("setWebhook with parameters %s", {"secret_token": SECRET, "token": TOKEN})
        try:
            raise RuntimeError(f"refused {SECRET}")
        except RuntimeError:
            log.exception("failed")
    finally:
        logging.getLogger().removeHandler(handler)
    out = stream.getvalue()
    assert SECRET not in out and TOKEN not in out
    assert out.count("<secret>") == 2 and "<token>" in out


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ({}, "STYLEBOT_WEBHOOK_SECRET is not set"),
        ({"STYLEBOT_WEBHOOK_SECRET": SECRET + "!"}, "STYLEBOT_WEBHOOK_SECRET must be"),
        (
            {"STYLEBOT_WEBHOOK_SECRET": SECRET, "STYLEBOT_WEBHOOK_URL": "http://x.example/t"},
            "https://",
        ),
    ],
)
def test_python_m_bot_refuses_a_bad_webhook_setting(
    tmp_path: Path, extra: dict[str, str], words: str
) -> None:
    env = {
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "STYLEBOT_DATA_DIR": str(tmp_path / "data"),
        "STYLEBOT_WEBHOOK_URL": URL,
        **extra,
    }
    proc = run_bot_to_exit(env)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("stylebot: ") and words in lines[0]
    assert SECRET not in proc.stderr + proc.stdout and TOKEN not in proc.stderr


# --- the real bot in webhook mode ------------------------------------------------------------
async def _wait_for_ok_call(
    fake: FakeTelegram, proc: asyncio.subprocess.Process, method: str
) -> CallRecord:
    """The bot's first successful `method` call; fails at once (with the log) if it exits."""
    call = asyncio.ensure_future(fake.wait_for_call(method, lambda c: c.ok, timeout=START_WAIT_S))
    exited = asyncio.ensure_future(proc.wait())
    await asyncio.wait({call, exited}, return_when=asyncio.FIRST_COMPLETED)
    exited.cancel()
    if not call.done():
        call.cancel()
        raise AssertionError(f"the bot exited ({proc.returncode}):\n{process_log(proc)}")
    return call.result()


async def _wait_until_listening(port: int, within: float = START_WAIT_S) -> None:
    """python-telegram-bot calls setWebhook, then starts listening: wait for the listening."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        try:
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.1)
            continue
        writer.close()
        await writer.wait_closed()
        return


async def _post(
    session: aiohttp.ClientSession, url: str, update: dict[str, Any], secret: str | None
) -> int:
    headers = {} if secret is None else {SECRET_HEADER: secret}
    async with session.post(url, json=update, headers=headers) as response:
        await response.read()
        return response.status


@pytest.mark.slow
async def test_python_m_bot_serves_the_webhook(tmp_path: Path, fake_telegram: FakeTelegram) -> None:
    port = free_port()
    # A port in the URL, a dash and a dot in the path: served exactly there.
    public_url = "https://bot.example.com:8443/telegram/style-bot.v1"
    env = bot_env(
        tmp_path,
        fake_telegram,
        STYLEBOT_WEBHOOK_URL=public_url,
        STYLEBOT_WEBHOOK_PORT=port,
        STYLEBOT_WEBHOOK_SECRET=SECRET,
        STYLEBOT_LOG_LEVEL="DEBUG",  # python-telegram-bot then logs setWebhook's parameters
    )
    hook = f"http://127.0.0.1:{port}/telegram/style-bot.v1"
    proc = await start_bot_process(env)
    try:
        call = await _wait_for_ok_call(fake_telegram, proc, "setWebhook")
        assert call.params["url"] == public_url
        assert call.params["secret_token"] == SECRET
        assert {"message", "callback_query"} <= set(call.params["allowed_updates"])
        assert fake_telegram.webhook is not None
        await _wait_until_listening(port)

        stranger = fake_telegram.user(3001, "Mallory")
        await stranger.send_text("/start")
        forged = fake_telegram.pending_updates()[-1]
        user = fake_telegram.user(3002, "Ada")
        await user.send_text("/start")
        update = fake_telegram.pending_updates()[-1]
        assert forged["message"]["chat"]["id"] == 3001 and update["message"]["chat"]["id"] == 3002

        async with aiohttp.ClientSession() as session:
            assert await _post(session, hook, forged, None) == 403
            assert await _post(session, hook, forged, "not-the-secret") == 403
            assert await _post(session, hook + "x", forged, SECRET) == 404
            assert await _post(session, hook.replace("-bot.v1", "-botXv1"), forged, SECRET) == 404
            assert await _post(session, hook, update, SECRET) == 200

        reply = await user.wait_for_message(timeout=ANSWER_WAIT_S)
        assert reply.text == texts.START
        # The refused update was never handled: nothing reached the stranger's chat.
        assert fake_telegram.messages(stranger.chat_id) == []
        assert not fake_telegram.calls("getUpdates")  # webhook mode never polls
    finally:
        code = await stop_process(proc)
        print(process_log(proc)[-30_000:])  # shown when the test fails
    log = process_log(proc)
    assert code == 0, log
    assert SECRET not in log and fake_telegram.token not in log
    assert "webhook mode" in log
    assert fake_telegram.messages(stranger.chat_id) == []


@pytest.mark.slow
async def test_python_m_bot_without_a_url_polls(
    tmp_path: Path, fake_telegram: FakeTelegram
) -> None:
    """Back to long polling: the webhook a previous run set is deleted, getUpdates works."""
    fake_telegram.webhook = {"url": URL, "secret_token": SECRET}
    proc = await start_bot_process(bot_env(tmp_path, fake_telegram))
    try:
        await _wait_for_ok_call(fake_telegram, proc, "deleteWebhook")
        assert fake_telegram.webhook is None
        user = fake_telegram.user(3003)
        await user.send_text("/start")
        reply = await user.wait_for_message(timeout=START_WAIT_S)
        assert reply.text == texts.START
        assert not fake_telegram.calls("setWebhook")
    finally:
        code = await stop_process(proc)
        print(process_log(proc)[-30_000:])  # shown when the test fails
    assert code == 0, process_log(proc)


@pytest.mark.parametrize(
    "name",
    [
        "STYLEBOT_WEBHOOK_URL",
        "STYLEBOT_WEBHOOK_LISTEN",
        "STYLEBOT_WEBHOOK_PORT",
        "STYLEBOT_WEBHOOK_SECRET",
    ],
)
def test_webhook_variables_are_documented(name: str) -> None:
    readme = (REPO_DIR / "README.md").read_text()
    assert f"| `{name}` |" in readme  # the configuration table
    assert "## Webhook mode" in readme
    assert f"# {name}=" in (REPO_DIR / ".env.example").read_text()
