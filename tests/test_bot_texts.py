"""User-facing sentences, the rate limiter and the token-redacting log filter."""

from __future__ import annotations

import asyncio
import io
import logging

import pytest

from bot import texts
from bot.logs import RedactTokenFilter, setup_logging
from bot.ratelimit import RateLimiter

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawq"


def test_progress_bar_and_eta() -> None:
    assert texts.progress_bar(0) == "▱" * 10
    assert texts.progress_bar(1) == "▰" * 10
    assert texts.progress_bar(2) == "▰" * 10
    line = texts.progress(0.42, 12.4)
    assert "42%" in line and "ETA 12 s" in line and "▰▰▰▰▱" in line
    assert "ETA" not in texts.progress(0.5, None)
    assert texts.format_seconds(75) == "1 min 15 s"


def test_start_says_what_to_do() -> None:
    assert "Send me a photo, then a style picture — or pick a style below" in texts.START


def test_help_lists_every_command_with_an_example() -> None:
    text = texts.help_text(["starry_night"])
    for command, _what, example in texts.HELP_COMMANDS:
        assert f"/{command} —" in text
        assert example in text
    assert "/starry_night" in text


def test_result_caption() -> None:
    caption = texts.result_caption(
        style="starry_night", strength=4, colors=True, seconds=14.2, width=512, height=384
    )
    assert caption == "🎨 starry_night · strength 4/5 · colours kept · 512×384 · 14 s"


def test_rate_limiter_notifies_once_per_window() -> None:
    now = [0.0]
    limiter = RateLimiter(3, clock=lambda: now[0])
    decisions = [limiter.check(1) for _ in range(6)]
    assert [d.allowed for d in decisions] == [True, True, True, False, False, False]
    assert [d.notify for d in decisions] == [False, False, False, True, False, False]
    assert limiter.check(2).allowed  # other users are not affected
    now[0] = 61.0
    assert limiter.check(1).allowed  # a new window


def _record(msg: str, *args: object, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc else None
    return logging.LogRecord("x", logging.ERROR, __file__, 1, msg, args, exc_info)


def test_redaction_covers_message_args_and_tracebacks() -> None:
    flt = RedactTokenFilter([TOKEN])
    try:
        raise RuntimeError(f"POST https://api.telegram.org/bot{TOKEN}/sendPhoto failed")
    except RuntimeError as exc:
        record = _record("calling %s", f"/bot{TOKEN}/getMe", exc=exc)
    assert flt.filter(record)
    formatted = logging.Formatter().format(record)
    assert TOKEN not in formatted
    assert "<token>" in formatted
    assert "sendPhoto failed" in formatted
    # token-shaped strings are redacted even when they are not the configured token
    other = "987654321:" + "B" * 35
    record = _record("x %s", other)
    flt.filter(record)
    assert other not in record.getMessage()


def test_setup_logging_redacts_and_quiets_http_loggers() -> None:
    stream = io.StringIO()
    handler = setup_logging("INFO", [TOKEN], stream=stream)
    try:
        logging.getLogger("bot.test").warning("token is %s", TOKEN)
        try:
            raise ValueError(TOKEN)
        except ValueError:
            logging.getLogger("bot.test").exception("boom")
        assert logging.getLogger("httpx").level == logging.WARNING
        assert logging.getLogger("httpcore").level == logging.WARNING
    finally:
        logging.getLogger().removeHandler(handler)
    out = stream.getvalue()
    assert TOKEN not in out
    assert out.count("<token>") >= 2


# -- Telegram call retries ----------------------------------------------------------------------
async def test_with_retries_retries_network_errors_but_never_400_nor_flood_control(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from telegram.error import BadRequest, NetworkError, RetryAfter, TimedOut

    from bot import telegram_io

    sleeps: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)

    errors: list[Exception] = [TimedOut(), NetworkError("reset")]

    async def flaky() -> str:
        if errors:
            raise errors.pop(0)
        return "ok"

    assert await telegram_io.with_retries(flaky) == "ok"
    assert len(sleeps) == 2

    calls = 0

    async def refused(error: Exception) -> None:
        nonlocal calls
        calls += 1
        raise error

    # 400 is final; flood control was already waited out and retried by AIORateLimiter
    for error in (BadRequest("Bad Request: chat not found"), RetryAfter(2)):
        calls = 0
        with pytest.raises(type(error)):
            await telegram_io.with_retries(lambda error=error: refused(error))
        assert calls == 1

    async def not_modified(**_: object) -> None:
        raise BadRequest("Bad Request: message is not modified: same content")

    class FakeBot:
        edit_message_text = staticmethod(not_modified)

    assert await telegram_io.safe_edit_text(FakeBot(), 1, 2, "x") is True  # type: ignore[arg-type]
