"""The fake Telegram server, checked with real python-telegram-bot calls, and the bot harness."""

from __future__ import annotations

import asyncio
import datetime as dtm
import io
import itertools
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageOps
from telegram import (
    Bot,
    BotCommand,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputMediaDocument,
    InputMediaPhoto,
    Message,
    Update,
)
from telegram.constants import ChatAction, ParseMode
from telegram.error import (
    BadRequest,
    Conflict,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TimedOut,
)
from telegram.ext import (
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bot.settings import TOKEN_PATTERN
from tests import fake_telegram as ft
from tests.bot_harness import (
    AnyApplication,
    bot_env,
    bot_settings,
    fake_telegram_fixture,  # noqa: F401  (the fixture)
    process_log,
    running_application,
    start_process,
    stop_process,
)
from tests.fake_telegram import FakeTelegram

USER_ID = 1001


def image_bytes(width: int = 120, height: int = 80, fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (30, 140, 200)).save(out, fmt)
    return out.getvalue()


def ptb_text(description: str) -> str:
    """How python-telegram-bot words Telegram's description in its exception message."""
    return description.removeprefix("Bad Request: ").capitalize()


def msg(update: Update) -> Message:
    assert update.message is not None
    return update.message


def keyboard(*data: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup([[InlineKeyboardButton(d, callback_data=d) for d in data]])


@pytest.fixture
async def bot(fake_telegram: FakeTelegram) -> AsyncIterator[Bot]:
    async with Bot(
        fake_telegram.token,
        base_url=fake_telegram.base_url,
        base_file_url=fake_telegram.base_file_url,
    ) as client:
        yield client


@pytest.fixture
def fake(fake_telegram: FakeTelegram) -> FakeTelegram:
    fake_telegram.user(USER_ID, "Ada")
    return fake_telegram


# --- basics ----------------------------------------------------------------------------------
async def test_get_me_and_token(fake: FakeTelegram, bot: Bot) -> None:
    me = await bot.get_me()
    assert (me.id, me.username, me.is_bot) == (fake.bot_id, fake.bot_username, True)
    assert TOKEN_PATTERN.match(fake.token)
    assert fake.api_url.startswith("http://127.0.0.1:")
    assert fake.calls("getMe")[0].status == 200


@pytest.mark.parametrize("token", ["123456789:" + "A" * 35, "not-a-token"])
async def test_wrong_token_is_invalid_token(fake: FakeTelegram, token: str) -> None:
    other = Bot(token, base_url=fake.base_url)
    try:
        with pytest.raises(InvalidToken):
            await other.initialize()  # opens the HTTP clients, then getMe fails
        with pytest.raises(InvalidToken):
            await other.get_me()
    finally:
        await other.shutdown()
    assert fake.calls("getMe")[-1].status in (401, 404)


async def test_send_message_is_stored(fake: FakeTelegram, bot: Bot) -> None:
    first = await bot.send_message(USER_ID, "Hello", reply_markup=keyboard("a:1"))
    second = await bot.send_message(USER_ID, "<b>Bold</b> &amp; co", parse_mode=ParseMode.HTML)
    assert second.message_id == first.message_id + 1
    assert second.text == "Bold & co"
    messages = fake.messages(USER_ID)
    assert [m.text for m in messages] == ["Hello", "Bold & co"]
    assert messages[0].reply_markup == {
        "inline_keyboard": [[{"text": "a:1", "callback_data": "a:1"}]]
    }
    assert messages[0].callback_data == ["a:1"]
    assert fake.last_message(USER_ID) is messages[1]
    call = fake.calls("sendMessage")[0]
    assert call.params["chat_id"] == USER_ID and call.params["text"] == "Hello"
    assert call.ok and call.result["message_id"] == first.message_id


async def test_unknown_chat_and_blocked_user(fake: FakeTelegram, bot: Bot) -> None:
    with pytest.raises(BadRequest, match="Chat not found"):
        await bot.send_message(999, "hi")
    fake.user(USER_ID).block()
    with pytest.raises(Forbidden, match="bot was blocked by the user"):
        await bot.send_message(USER_ID, "hi")
    fake.user(USER_ID).unblock()
    await bot.send_message(USER_ID, "hi again")


# --- long polling ----------------------------------------------------------------------------
async def test_long_poll_returns_when_an_update_arrives(fake: FakeTelegram, bot: Bot) -> None:
    user = fake.user(USER_ID)
    poll = asyncio.create_task(bot.get_updates(timeout=120))
    await asyncio.sleep(0.3)
    assert not poll.done()
    sent = await user.send_text("/start now")
    # a poll that ignored the arrival would hold on for its 120 s: waiting 60 s tells them apart
    updates = await asyncio.wait_for(poll, 60)
    assert len(updates) == 1
    message = updates[0].message
    assert message is not None and message.text == "/start now"
    assert message.message_id == sent["message_id"] and message.chat.id == USER_ID
    assert message.from_user is not None and message.from_user.first_name == "Ada"
    assert message.entities[0].type == "bot_command" and message.entities[0].length == 6


async def test_long_poll_waits_for_its_timeout(fake: FakeTelegram, bot: Bot) -> None:
    started = time.monotonic()
    assert await asyncio.wait_for(bot.get_updates(timeout=1), 60) == ()
    assert time.monotonic() - started >= 0.9  # it waited (a lower bound: a slow machine passes)


async def test_offset_limit_and_confirmation(fake: FakeTelegram, bot: Bot) -> None:
    user = fake.user(USER_ID)
    for i in range(5):
        await user.send_text(f"m{i}")
    first = await bot.get_updates(limit=2)
    assert [msg(u).text for u in first] == ["m0", "m1"]
    again = await bot.get_updates(limit=2)  # not confirmed yet: the same again
    assert [u.update_id for u in again] == [u.update_id for u in first]
    rest = await bot.get_updates(offset=first[-1].update_id + 1)
    assert [msg(u).text for u in rest] == ["m2", "m3", "m4"]
    assert all(b.update_id > a.update_id for a, b in itertools.pairwise(rest))
    assert await bot.get_updates(offset=rest[-1].update_id + 1) == ()
    assert fake.pending_updates() == []
    await user.send_text("m5")
    await user.send_text("m6")
    assert [msg(u).text for u in await bot.get_updates(offset=-1)] == ["m6"]
    assert [u["message"]["text"] for u in fake.pending_updates()] == ["m6"]


async def test_second_poller_terminates_the_first(fake: FakeTelegram) -> None:
    async with (
        Bot(fake.token, base_url=fake.base_url) as one,
        Bot(fake.token, base_url=fake.base_url) as two,
    ):
        first = asyncio.create_task(one.get_updates(timeout=5))
        for _ in range(6000):  # until the first poll waits on the server (not a fixed sleep)
            if fake._poller is not None:
                break
            await asyncio.sleep(0.01)
        assert fake._poller is not None, "the first poll never reached the server"
        assert await two.get_updates(timeout=0) == ()
        with pytest.raises(Conflict, match="terminated by other getUpdates"):
            await first


# --- callback queries ------------------------------------------------------------------------
async def test_callback_round_trip(fake: FakeTelegram, bot: Bot) -> None:
    user = fake.user(USER_ID)
    sent = await bot.send_message(USER_ID, "Pick", reply_markup=keyboard("style:1", "style:2"))
    message = fake.last_message(USER_ID)
    assert message is not None
    with pytest.raises(AssertionError, match="no button"):
        await user.press(message, "style:3")
    query_id = await user.press(message, "style:2")
    (update,) = await bot.get_updates()
    query = update.callback_query
    assert query is not None and query.id == query_id and query.data == "style:2"
    assert query.from_user.id == USER_ID
    assert query.message is not None and query.message.message_id == sent.message_id
    assert isinstance(query.message, Message) and query.message.reply_markup == sent.reply_markup
    assert await bot.answer_callback_query(query_id, text="Chosen", show_alert=True)
    assert fake.callback_answers(query_id) == [{"text": "Chosen", "show_alert": True}]
    with pytest.raises(BadRequest, match="Query is too old"):
        await bot.answer_callback_query(query_id)  # only one answer per query
    with pytest.raises(BadRequest, match="Query is too old"):
        await bot.answer_callback_query("12345")
    fake.callback_query_ttl = 0
    late = await user.press(sent, "style:1")
    with pytest.raises(BadRequest) as info:
        await bot.answer_callback_query(late)
    assert info.value.message == ptb_text(ft.QUERY_TOO_OLD)
    assert fake.calls("answerCallbackQuery")[-1].description == ft.QUERY_TOO_OLD


# --- edits -----------------------------------------------------------------------------------
async def test_edits_keep_versions(fake: FakeTelegram, bot: Bot) -> None:
    sent = await bot.send_message(USER_ID, "Queued", reply_markup=keyboard("cancel"))
    first = await fake.wait_for_message(USER_ID)
    assert (first.text, first.is_edit, first.callback_data) == ("Queued", False, ["cancel"])
    await bot.edit_message_text(
        "Working 50%", USER_ID, sent.message_id, reply_markup=keyboard("cancel")
    )
    with pytest.raises(BadRequest) as info:
        await bot.edit_message_text(
            "Working 50%", USER_ID, sent.message_id, reply_markup=keyboard("cancel")
        )
    assert info.value.message == ptb_text(ft.NOT_MODIFIED)
    # the same text without the keyboard is a change: Telegram removes the keyboard
    await bot.edit_message_text("Working 50%", USER_ID, sent.message_id)
    await bot.edit_message_reply_markup(USER_ID, sent.message_id, reply_markup=keyboard("again"))
    with pytest.raises(BadRequest, match="Message is not modified"):
        await bot.edit_message_reply_markup(
            USER_ID, sent.message_id, reply_markup=keyboard("again")
        )
    edit = await fake.wait_for_message(
        USER_ID, lambda m: m.is_edit and m.callback_data == ["again"]
    )
    assert edit.text == "Working 50%" and edit.version == 3
    message = fake.message(USER_ID, sent.message_id)
    assert [v.text for v in message.versions] == [
        "Queued",
        "Working 50%",
        "Working 50%",
        "Working 50%",
    ]
    assert [v.reply_markup is None for v in message.versions] == [False, False, True, False]
    with pytest.raises(BadRequest) as info:
        await bot.edit_message_text("x", USER_ID, 999)
    assert info.value.message == ptb_text(ft.MESSAGE_TO_EDIT_NOT_FOUND)
    assert await bot.delete_message(USER_ID, sent.message_id)
    assert fake.messages(USER_ID) == [] and message.deleted
    with pytest.raises(BadRequest, match="Message to edit not found"):
        await bot.edit_message_text("gone", USER_ID, sent.message_id)
    with pytest.raises(BadRequest, match="Message to delete not found"):
        await bot.delete_message(USER_ID, sent.message_id)


async def test_photo_caption_media_and_album(fake: FakeTelegram, bot: Bot) -> None:
    png = image_bytes(300, 200)
    sent = await bot.send_photo(USER_ID, png, caption="Result", reply_markup=keyboard("more"))
    assert [p.width for p in sent.photo] == [90, 300] and sent.caption == "Result"
    message = fake.last_message(USER_ID)
    assert message is not None and message.photo == png and message.kind == "photo"
    # resending by file_id is accepted and costs no upload
    again = await bot.send_photo(USER_ID, sent.photo[-1].file_id)
    assert fake.messages(USER_ID)[-1].photo == png
    assert again.photo[-1].file_id == sent.photo[-1].file_id
    await bot.edit_message_caption(USER_ID, sent.message_id, caption="Result (v2)")
    with pytest.raises(BadRequest, match="Message is not modified"):
        await bot.edit_message_caption(USER_ID, sent.message_id, caption="Result (v2)")
    other = image_bytes(64, 64, "JPEG")
    await bot.edit_message_media(InputMediaPhoto(other, caption="Redone"), USER_ID, sent.message_id)
    versions = fake.message(USER_ID, sent.message_id).versions
    assert [v.caption for v in versions] == ["Result", "Result (v2)", "Redone"]
    assert versions[1].photo == png and versions[2].photo == other
    await bot.edit_message_media(
        InputMediaDocument(b"raw", filename="result.bin"), USER_ID, sent.message_id
    )
    assert versions[-1].kind == "document" and versions[-1].file_name == "result.bin"
    album = await bot.send_media_group(USER_ID, [InputMediaPhoto(png), InputMediaPhoto(other)])
    assert len({m.media_group_id for m in album}) == 1 and album[0].media_group_id
    assert [m.photo for m in fake.messages(USER_ID)[-2:]] == [png, other]
    with pytest.raises(BadRequest, match="There is no text"):
        await bot.edit_message_text("x", USER_ID, sent.message_id)


async def test_document_and_chat_action(fake: FakeTelegram, bot: Bot) -> None:
    sent = await bot.send_document(USER_ID, b"\x89PNG data", filename="painting.png", caption="HQ")
    assert sent.document is not None and sent.document.file_name == "painting.png"
    message = fake.last_message(USER_ID)
    assert message is not None
    assert (message.document, message.file_name, message.caption) == (
        b"\x89PNG data",
        "painting.png",
        "HQ",
    )
    assert await bot.send_chat_action(USER_ID, ChatAction.UPLOAD_PHOTO)
    assert fake.chat_actions(USER_ID) == ["upload_photo"]
    with pytest.raises(BadRequest, match="Wrong parameter action"):
        await bot.send_chat_action(USER_ID, "dancing")


async def test_commands(fake: FakeTelegram, bot: Bot) -> None:
    commands = [BotCommand("start", "Start"), BotCommand("style", "Stylize a photo")]
    assert await bot.set_my_commands(commands)
    assert await bot.get_my_commands() == tuple(commands)
    assert fake.my_commands() == [c.to_dict() for c in commands]
    with pytest.raises(BadRequest, match="Bot_command_invalid"):
        await bot.set_my_commands([BotCommand("Bad-Name", "x")])
    assert await bot.delete_my_commands()
    assert await bot.get_my_commands() == ()


# --- Telegram's errors -----------------------------------------------------------------------
async def test_length_limits(fake: FakeTelegram, bot: Bot) -> None:
    await bot.send_message(USER_ID, "x" * 4096)
    with pytest.raises(BadRequest) as info:
        await bot.send_message(USER_ID, "x" * 4097)
    assert info.value.message == ptb_text(ft.MESSAGE_TOO_LONG)
    # the limit counts the text after parse_mode, and in UTF-16 code units
    await bot.send_message(USER_ID, "<b>" + "x" * 4096 + "</b>", parse_mode=ParseMode.HTML)
    with pytest.raises(BadRequest, match="Message is too long"):
        await bot.send_message(USER_ID, "🎨" * 2049)
    with pytest.raises(BadRequest) as info:
        await bot.send_photo(USER_ID, image_bytes(), caption="c" * 1025)
    assert info.value.message == ptb_text(ft.CAPTION_TOO_LONG)
    assert fake.calls("sendPhoto")[-1].description == ft.CAPTION_TOO_LONG
    assert fake.calls("sendMessage")[-1].description == ft.MESSAGE_TOO_LONG


async def test_button_data_invalid(fake: FakeTelegram, bot: Bot) -> None:
    ok = "d" * 64
    await bot.send_message(USER_ID, "ok", reply_markup=keyboard(ok))
    too_long = InlineKeyboardMarkup(
        [
            [InlineKeyboardButton("fine", callback_data="x")],
            [InlineKeyboardButton("bad", callback_data="é" * 33)],
        ]
    )
    for call in (
        bot.send_message(USER_ID, "bad", reply_markup=too_long),
        bot.send_photo(USER_ID, image_bytes(), reply_markup=too_long),
        bot.edit_message_reply_markup(USER_ID, 1, reply_markup=too_long),
    ):
        with pytest.raises(BadRequest) as info:
            await call
        assert info.value.message == ptb_text(ft.BUTTON_DATA_INVALID)
    assert [c.description for c in fake.failed_calls()] == [ft.BUTTON_DATA_INVALID] * 3


async def test_photo_limits(fake: FakeTelegram, bot: Bot) -> None:
    for width, height in ((9000, 1200), (2100, 100)):  # sum over 10000; ratio over 20
        with pytest.raises(BadRequest) as info:
            await bot.send_photo(USER_ID, image_bytes(width, height))
        assert info.value.message == ptb_text(ft.PHOTO_INVALID_DIMENSIONS)
    big = image_bytes(100, 100) + b"\0" * (10 * 1024 * 1024)
    with pytest.raises(NetworkError, match="Request Entity Too Large"):
        await bot.send_photo(USER_ID, big)
    assert fake.calls("sendPhoto")[-1].status == 413
    with pytest.raises(BadRequest, match="Image_process_failed"):
        await bot.send_photo(USER_ID, b"not an image")
    assert fake.messages(USER_ID) == []


async def test_html_and_markdown_errors(fake: FakeTelegram, bot: Bot) -> None:
    with pytest.raises(BadRequest, match="Can't parse entities"):
        await bot.send_message(USER_ID, "<blink>hi</blink>", parse_mode=ParseMode.HTML)
    with pytest.raises(BadRequest, match="Can't parse entities"):
        await bot.send_message(USER_ID, "<b>open", parse_mode=ParseMode.HTML)
    with pytest.raises(BadRequest, match="reserved"):
        await bot.send_message(USER_ID, "Done. 100%!", parse_mode=ParseMode.MARKDOWN_V2)
    ok = await bot.send_message(USER_ID, r"*Done*\. 100%\!", parse_mode=ParseMode.MARKDOWN_V2)
    assert ok.text == "Done. 100%!"


# --- files -----------------------------------------------------------------------------------
async def test_user_photo_upload_and_download(fake: FakeTelegram, bot: Bot) -> None:
    user = fake.user(USER_ID)
    original = image_bytes(640, 480, "JPEG")
    await user.send_photo(original, caption="/style starry")
    (update,) = await bot.get_updates()
    message = update.message
    assert message is not None and message.caption == "/style starry"
    assert message.caption_entities[0].type == "bot_command"
    sizes = message.photo
    assert [(p.width, p.height) for p in sizes] == [(90, 68), (320, 240), (640, 480)]
    assert len({p.file_id for p in sizes}) == 3
    file = await bot.get_file(sizes[-1].file_id)
    assert file.file_size == len(original) and file.file_path
    assert file.file_path.startswith(fake.base_file_url)
    assert bytes(await file.download_as_bytearray()) == original
    thumb = await (await bot.get_file(sizes[0].file_id)).download_as_bytearray()
    assert Image.open(io.BytesIO(thumb)).size == (90, 68)
    assert fake.calls("download")[-1].ok


async def test_documents_album_and_other_media(fake: FakeTelegram, bot: Bot) -> None:
    user = fake.user(USER_ID)
    await user.send_document(b"%PDF-1.4", "scan.pdf", "application/pdf", caption="/style")
    await user.send_sticker()
    await user.send_voice()
    await user.send_video()
    await user.send_album([image_bytes(), image_bytes(50, 50)], caption="two")
    big = await user.send_document(b"\0" * (20 * 1024 * 1024 + 1), "huge.png", "image/png")
    updates = await bot.get_updates()
    messages = [msg(u) for u in updates]
    document = messages[0].document
    assert document is not None and document.file_name == "scan.pdf"
    assert messages[0].caption_entities[0].type == "bot_command"
    assert messages[1].sticker is not None and messages[2].voice is not None
    assert messages[3].video is not None
    album = messages[4:6]
    assert album[0].media_group_id == album[1].media_group_id is not None
    assert [m.caption for m in album] == ["two", None]
    doc = await bot.get_file(document.file_id)
    assert bytes(await doc.download_as_bytearray()) == b"%PDF-1.4"
    with pytest.raises(BadRequest) as info:
        await bot.get_file(big["document"]["file_id"])
    assert info.value.message == ptb_text(ft.FILE_TOO_BIG)
    with pytest.raises(BadRequest, match="Invalid file_id"):
        await bot.get_file("nope")


# --- fault injection -------------------------------------------------------------------------
async def test_fail_429_500_502(
    fake: FakeTelegram, bot: Bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "true")
    fake.fail("sendMessage", 429, retry_after=3)
    with pytest.raises(RetryAfter) as info:
        await bot.send_message(USER_ID, "hi")
    assert info.value.retry_after == dtm.timedelta(seconds=3)
    call = fake.calls("sendMessage")[-1]
    assert (call.status, call.description) == (429, "Too Many Requests: retry after 3")
    await bot.send_message(USER_ID, "hi")  # times=1: the next one goes through
    fake.fail("sendMessage", 500, times=2)
    for _ in range(2):
        with pytest.raises(NetworkError, match="Internal Server Error"):
            await bot.send_message(USER_ID, "hi")
    fake.fail("sendPhoto", 502)
    with pytest.raises(NetworkError, match="Bad Gateway"):
        await bot.send_photo(USER_ID, image_bytes())
    fake.fail("*", 500, times=None)
    with pytest.raises(NetworkError):
        await bot.get_me()
    fake.clear_faults()
    await bot.get_me()
    assert [m.text for m in fake.messages(USER_ID)] == ["hi"]


async def test_drop_and_delay(fake: FakeTelegram, bot: Bot) -> None:
    fake.drop("sendMessage")
    with pytest.raises(NetworkError):
        await bot.send_message(USER_ID, "lost")
    assert fake.calls("sendMessage")[-1].status == 0
    assert fake.messages(USER_ID) == []
    fake.delay("sendMessage", 0.5)
    started = time.monotonic()
    await bot.send_message(USER_ID, "slow")
    assert time.monotonic() - started >= 0.5
    fake.delay("sendMessage", 2)
    with pytest.raises(TimedOut):
        await bot.send_message(USER_ID, "too slow", read_timeout=0.3)
    # as with Telegram, a request that timed out on the client may still have been carried out
    late = await fake.wait_for_message(USER_ID, lambda m: m.text == "too slow", timeout=60)
    assert late.text == "too slow"


async def test_call_log_and_wait_for_call(fake: FakeTelegram, bot: Bot) -> None:
    waiter = asyncio.create_task(
        fake.wait_for_call("sendMessage", lambda c: c.params["text"] == "b")
    )
    await bot.send_message(USER_ID, "a")
    await bot.send_message(USER_ID, "b")
    call = await asyncio.wait_for(waiter, 60)
    assert call.params["text"] == "b" and call.status == 200 and call.time > 0
    with pytest.raises(TimeoutError):
        await fake.wait_for_call("sendMessage", timeout=0.2)
    with pytest.raises(TimeoutError, match="messages so far"):
        await fake.wait_for_message(USER_ID, lambda m: m.text == "never", timeout=0.2)


# --- the harness -----------------------------------------------------------------------------
def mirrored(data: bytes) -> bytes:
    out = io.BytesIO()
    ImageOps.mirror(Image.open(io.BytesIO(data)).convert("RGB")).save(out, "PNG")
    return out.getvalue()


def build_echo_app(fake: FakeTelegram, hooks: list[str]) -> AnyApplication:
    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message and update.effective_user
        await update.effective_message.reply_text(
            f"Hello, {update.effective_user.first_name}!", reply_markup=keyboard("ping")
        )

    async def button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        assert query is not None
        await query.answer("pong")
        await query.edit_message_text("Pong!")

    async def photo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        assert message is not None
        await message.reply_chat_action(ChatAction.UPLOAD_PHOTO)
        file = await message.photo[-1].get_file()
        data = bytes(await file.download_as_bytearray())
        await message.reply_photo(mirrored(data), caption="mirrored")

    async def echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message and update.effective_message.text
        await update.effective_message.reply_text(update.effective_message.text)

    def hook(name: str) -> Any:
        async def record(app: AnyApplication) -> None:
            hooks.append(name)

        return record

    app = (
        ApplicationBuilder()
        .token(fake.token)
        .base_url(fake.base_url)
        .base_file_url(fake.base_file_url)
        .post_init(hook("post_init"))
        .post_stop(hook("post_stop"))
        .post_shutdown(hook("post_shutdown"))
        .build()
    )
    app.add_handler(CommandHandler("start", start))
    app.add_handler(CallbackQueryHandler(button))
    app.add_handler(MessageHandler(filters.PHOTO, photo))
    app.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, echo))
    return app


async def test_echo_bot_through_the_harness(fake_telegram: FakeTelegram) -> None:
    fake = fake_telegram
    hooks: list[str] = []
    user = fake.user(USER_ID, "Ada")
    await user.send_text("queued before start")  # delivered once polling starts
    app = build_echo_app(fake, hooks)
    async with running_application(app) as running:
        assert running is app and app.running and hooks == ["post_init"]
        assert (await user.wait_for_message()).text == "queued before start"
        await user.send_text("/start")
        hello = await user.wait_for_message()
        assert hello.text == "Hello, Ada!" and hello.callback_data == ["ping"]
        query_id = await user.press(hello, "ping")
        edit = await fake.wait_for_message(USER_ID, lambda m: m.is_edit)
        assert (edit.message_id, edit.text, edit.reply_markup) == (hello.message_id, "Pong!", None)
        assert (await fake.wait_for_callback_answer(query_id))["text"] == "pong"
        picture = image_bytes(200, 100)
        await user.send_photo(picture)
        reply = await fake.wait_for_message(USER_ID, lambda m: m.kind == "photo")
        assert reply.caption == "mirrored" and reply.photo == mirrored(picture)
        assert "upload_photo" in fake.chat_actions(USER_ID)
    assert hooks == ["post_init", "post_stop", "post_shutdown"]
    assert not app.running
    assert fake.pending_updates() == []  # the updater confirmed everything on the way out
    assert [c for c in fake.failed_calls() if c.status != 499] == []


async def test_harness_runs_shutdown_when_start_up_fails(fake_telegram: FakeTelegram) -> None:
    hooks: list[str] = []
    fake_telegram.fail("getMe", 401, description="Unauthorized")
    app = build_echo_app(fake_telegram, hooks)
    with pytest.raises(InvalidToken):
        async with running_application(app):
            pytest.fail("must not start")
    assert hooks == ["post_shutdown"]


async def test_bot_settings(tmp_path: Path, fake_telegram: FakeTelegram, test_weights: str) -> None:
    settings = bot_settings(
        tmp_path, fake_telegram, weights=test_weights, STYLEBOT_MAX_QUEUE=2, job_timeout=5.0
    )
    assert settings.token == fake_telegram.token
    assert settings.base_url == fake_telegram.base_url
    assert settings.base_file_url == fake_telegram.base_file_url
    assert settings.data_dir == tmp_path / "data"
    assert (settings.weights, settings.max_side, settings.max_queue) == (test_weights, 64, 2)
    assert settings.job_timeout == 5.0
    assert fake_telegram.token not in repr(settings)


CLIENT_SCRIPT = """
import asyncio, os, sys
from telegram import Bot

async def main():
    api = os.environ["TELEGRAM_API_URL"]
    async with Bot(os.environ["TELEGRAM_BOT_TOKEN"], base_url=api + "/bot") as bot:
        me = await bot.get_me()
        await bot.send_message(int(sys.argv[1]), f"hello from {me.username}")
    print("stdout line", flush=True)
    print("stderr line", file=sys.stderr, flush=True)

asyncio.run(main())
"""


async def test_subprocess_talks_to_the_fake(tmp_path: Path, fake_telegram: FakeTelegram) -> None:
    fake_telegram.user(USER_ID)
    env = bot_env(tmp_path, fake_telegram)
    log = tmp_path / "client.log"
    proc = await start_process([sys.executable, "-c", CLIENT_SCRIPT, str(USER_ID)], env, log)
    try:
        message = await fake_telegram.wait_for_message(USER_ID, timeout=60)
        assert message.text == f"hello from {fake_telegram.bot_username}"
        assert await asyncio.wait_for(proc.wait(), 60) == 0
    finally:
        await stop_process(proc)
    output = process_log(proc)
    assert "stdout line" in output and "stderr line" in output
