"""A fake Telegram Bot API server for end-to-end tests.

`FakeTelegram` serves the Bot API over real HTTP on 127.0.0.1 (random port) with aiohttp, so the
real bot (python-telegram-bot with ``base_url=f"{api_url}/bot"`` and
``base_file_url=f"{api_url}/file/bot"``) talks to it exactly as it would to Telegram:

- requests are ``POST {api_url}/bot{token}/{method}`` with JSON, url-encoded or multipart bodies
  (python-telegram-bot sends url-encoded forms whose values are JSON-encoded, and multipart for
  uploads; files may also be given as file_id strings or ``attach://name`` references);
- answers are ``{"ok": true, "result": ...}`` or ``{"ok": false, "error_code": N,
  "description": "...", "parameters": {...}}`` with Telegram's own error texts and HTTP codes;
- ``getUpdates`` is a real long poll (offset, limit, timeout, allowed_updates; a newer poll
  terminates an older one with 409 Conflict, as Telegram does);
- files are downloaded from ``GET {api_url}/file/bot{token}/{file_path}``.

The test side: `FakeTelegram.user()` returns a `FakeUser` whose methods enqueue updates shaped
like Telegram's; every message the bot sends is kept as a `BotMessage` with a list of versions
(`MessageVersion`: the original and each edit); `wait_for_message` / `wait_for_call` wait for what
the bot does; `fail` / `drop` / `delay` inject faults per method; `calls` is the log of every
request. Everything runs on the test's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import itertools
import json
import secrets
import string
import time
import urllib.parse
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from http import HTTPStatus
from typing import Any

from aiohttp import web
from PIL import Image

# --- Telegram limits -------------------------------------------------------------------------
MAX_TEXT_LENGTH = 4096
MAX_CAPTION_LENGTH = 1024
MAX_CALLBACK_DATA_BYTES = 64
MAX_PHOTO_UPLOAD = 10 * 1024 * 1024
MAX_UPLOAD = 50 * 1024 * 1024
MAX_DOWNLOAD = 20 * 1024 * 1024
MAX_PHOTO_DIMENSIONS_SUM = 10_000
MAX_PHOTO_RATIO = 20
MAX_POLL_TIMEOUT = 50.0

# --- Telegram's error texts ------------------------------------------------------------------
UNAUTHORIZED = "Unauthorized"
NOT_FOUND = "Not Found"
MESSAGE_TOO_LONG = "Bad Request: message is too long"
CAPTION_TOO_LONG = "Bad Request: message caption is too long"
MESSAGE_TEXT_EMPTY = "Bad Request: message text is empty"
NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are "
    "exactly the same as a current content and reply markup of the message"
)
BUTTON_DATA_INVALID = "Bad Request: BUTTON_DATA_INVALID"
BUTTON_URL_INVALID = "Bad Request: BUTTON_URL_INVALID"
TEXT_BUTTONS_UNALLOWED = "Bad Request: text buttons are unallowed in the inline keyboard"
MARKUP_UNPARSABLE = "Bad Request: can't parse reply keyboard markup JSON object"
MESSAGE_TO_EDIT_NOT_FOUND = "Bad Request: message to edit not found"
MESSAGE_TO_DELETE_NOT_FOUND = "Bad Request: message to delete not found"
MESSAGE_CANT_BE_EDITED = "Bad Request: message can't be edited"
NO_TEXT_TO_EDIT = "Bad Request: there is no text in the message to edit"
NO_CAPTION_TO_EDIT = "Bad Request: there is no caption in the message to edit"
PHOTO_INVALID_DIMENSIONS = "Bad Request: PHOTO_INVALID_DIMENSIONS"
IMAGE_PROCESS_FAILED = "Bad Request: IMAGE_PROCESS_FAILED"
ENTITY_TOO_LARGE = "Request Entity Too Large"
FILE_TOO_BIG = "Bad Request: file is too big"
INVALID_FILE_ID = "Bad Request: invalid file_id"
WRONG_FILE_ID = "Bad Request: wrong file identifier/HTTP URL specified"
QUERY_TOO_OLD = "Bad Request: query is too old and response timeout expired or query ID is invalid"
CHAT_NOT_FOUND = "Bad Request: chat not found"
BOT_BLOCKED = "Forbidden: bot was blocked by the user"
CONFLICT = (
    "Conflict: terminated by other getUpdates request; make sure that only one bot instance "
    "is running"
)
BAD_CHAT_ACTION = "Bad Request: wrong parameter action in request"
MEDIA_GROUP_SIZE = "Bad Request: wrong number of media in the album: must be 2-10"
BOT_COMMAND_INVALID = "Bad Request: BOT_COMMAND_INVALID"
BOT_COMMAND_DESCRIPTION_INVALID = "Bad Request: BOT_COMMAND_DESCRIPTION_INVALID"
WEBHOOK_NOT_HTTPS = "Bad Request: bad webhook: An HTTPS URL must be provided for webhook"
WEBHOOK_BAD_PORT = (
    "Bad Request: bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443"
)
WEBHOOK_ACTIVE = (
    "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete "
    "the webhook first"
)

CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
INLINE_BUTTON_ACTIONS = (
    "callback_data",
    "url",
    "web_app",
    "login_url",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "copy_text",
    "callback_game",
    "pay",
)
JSON_FIELDS = frozenset(
    {
        "reply_markup",
        "entities",
        "caption_entities",
        "media",
        "commands",
        "scope",
        "allowed_updates",
        "reply_parameters",
        "link_preview_options",
    }
)
INT_FIELDS = frozenset(
    {
        "message_id",
        "offset",
        "limit",
        "timeout",
        "reply_to_message_id",
        "cache_time",
        "message_thread_id",
    }
)
_TOKEN_CHARS = string.ascii_letters + string.digits + "-_"


def make_token(bot_id: int) -> str:
    """A valid-looking token: the bot id, a colon, "AA" and 33 url-safe characters."""
    return f"{bot_id}:AA" + "".join(secrets.choice(_TOKEN_CHARS) for _ in range(33))


def utf16_len(text: str) -> int:
    """Telegram counts lengths and entity offsets in UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


class TelegramAPIError(Exception):
    """Raised inside a method handler: becomes a Bot API error answer."""

    def __init__(self, status: int, description: str, parameters: dict[str, Any] | None = None):
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters


def _bad(description: str) -> TelegramAPIError:
    return TelegramAPIError(400, description)


# --- formatted text --------------------------------------------------------------------------
_HTML_TAGS = frozenset(
    {
        "b",
        "strong",
        "i",
        "em",
        "u",
        "ins",
        "s",
        "strike",
        "del",
        "a",
        "code",
        "pre",
        "span",
        "tg-spoiler",
        "tg-emoji",
        "blockquote",
    }
)


class _TelegramHTML(HTMLParser):
    """Telegram's HTML parse mode: a few tags, everything else is an error."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.stack: list[str] = []
        self.error: str | None = None

    def _offset(self) -> int:
        return self.getpos()[1]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.error:
            return
        if tag not in _HTML_TAGS:
            self.error = f'Unsupported start tag "{tag}" at byte offset {self._offset()}'
            return
        self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if not self.error and tag != "br":
            self.error = f'Unsupported start tag "{tag}" at byte offset {self._offset()}'

    def handle_endtag(self, tag: str) -> None:
        if self.error:
            return
        if not self.stack or self.stack[-1] != tag:
            self.error = f'Unmatched end tag at byte offset {self._offset()}, expected "</{tag}>"'
            if self.stack:
                self.error = (
                    f"Unmatched end tag at byte offset {self._offset()}, expected "
                    f'"</{self.stack[-1]}>", found "</{tag}>"'
                )
            return
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def parse_html(source: str) -> str:
    """The plain text of an HTML-formatted message, or TelegramAPIError like Telegram's."""
    parser = _TelegramHTML()
    parser.feed(source)
    parser.close()
    if parser.error is None and parser.stack:
        parser.error = f'Can\'t find end tag corresponding to start tag "{parser.stack[-1]}"'
    if parser.error:
        raise _bad(f"Bad Request: can't parse entities: {parser.error}")
    return "".join(parser.parts)


_MDV2_RESERVED = frozenset("_*[]()~`>#+-=|{}.!")
_MDV2_ENTITY_NAMES = {
    "*": "Bold",
    "_": "Italic",
    "__": "Underline",
    "~": "Strikethrough",
    "||": "Spoiler",
    "[": "TextUrl",
}


def parse_markdown_v2(source: str) -> str:
    """The plain text of a MarkdownV2 message; unescaped reserved characters are errors."""

    def fail(message: str) -> TelegramAPIError:
        return _bad(f"Bad Request: can't parse entities: {message}")

    out: list[str] = []
    stack: list[str] = []
    i = 0
    n = len(source)
    while i < n:
        c = source[i]
        if c == "\\":
            if i + 1 < n:
                out.append(source[i + 1])
            i += 2
            continue
        if c == "`":
            fence = "```" if source.startswith("```", i) else "`"
            end = i + len(fence)
            while True:
                end = source.find(fence, end)
                if end == -1:
                    kind = "Pre" if fence == "```" else "Code"
                    raise fail(f"Can't find end of {kind} entity at byte offset {i}")
                if source[end - 1] != "\\":
                    break
                end += 1
            body = source[i + len(fence) : end]
            if fence == "```" and "\n" in body:
                first, _, rest = body.partition("\n")
                body = rest if first and " " not in first else body
            out.append(body.replace("\\`", "`").replace("\\\\", "\\"))
            i = end + len(fence)
            continue
        marker = None
        for candidate in ("||", "__", "*", "_", "~"):
            if source.startswith(candidate, i):
                marker = candidate
                break
        if marker is not None:
            if stack and stack[-1] == marker:
                stack.pop()
            else:
                stack.append(marker)
            i += len(marker)
            continue
        if c == "[":
            stack.append("[")
            i += 1
            continue
        if c == "]" and stack and stack[-1] == "[":
            stack.pop()
            if not source.startswith("(", i + 1):
                raise fail("Character ']' is reserved and must be escaped with the preceding '\\'")
            close = source.find(")", i + 2)
            if close == -1:
                raise fail(f"Can't find end of a URL at byte offset {i + 1}")
            i = close + 1
            continue
        if c in _MDV2_RESERVED:
            raise fail(f"Character '{c}' is reserved and must be escaped with the preceding '\\'")
        out.append(c)
        i += 1
    if stack:
        raise fail(f"Can't find end of {_MDV2_ENTITY_NAMES[stack[-1]]} entity at byte offset {n}")
    return "".join(out)


def format_text(source: str, parse_mode: str | None) -> str:
    """The text a message shows once Telegram has parsed `parse_mode` markup out of it."""
    mode = (parse_mode or "").lower()
    if mode == "html":
        return parse_html(source)
    if mode == "markdownv2":
        return parse_markdown_v2(source)
    return source


# --- records ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Upload:
    """A file part of a multipart request."""

    data: bytes
    filename: str | None
    content_type: str | None

    def __repr__(self) -> str:
        return f"Upload({self.filename!r}, {len(self.data)} bytes, {self.content_type!r})"


@dataclass
class StoredFile:
    file_id: str
    file_unique_id: str
    data: bytes
    file_path: str
    kind: str  # photo | document | sticker | voice | video | thumbnail
    file_name: str | None = None
    mime_type: str | None = None
    width: int | None = None
    height: int | None = None

    @property
    def size(self) -> int:
        return len(self.data)

    def photo_size(self) -> dict[str, Any]:
        return {
            "file_id": self.file_id,
            "file_unique_id": self.file_unique_id,
            "width": self.width,
            "height": self.height,
            "file_size": self.size,
        }


@dataclass
class CallRecord:
    """One Bot API request as the fake server saw it."""

    method: str
    params: dict[str, Any]
    time: float
    status: int = 0  # HTTP status; 0 = connection dropped, 499 = the client had gone away
    result: Any = None
    description: str | None = None
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@dataclass(frozen=True)
class MessageVersion:
    """One state of a bot message: version 0 as sent, then one per edit."""

    chat_id: int
    message_id: int
    version: int
    method: str
    kind: str  # text | photo | document
    text: str | None = None
    caption: str | None = None
    source: str | None = None  # the text or caption as sent, before parse_mode was applied
    parse_mode: str | None = None
    entities: Any = None
    photo: bytes | None = None
    photo_sizes: tuple[dict[str, Any], ...] = ()
    document: bytes | None = None
    file_name: str | None = None
    mime_type: str | None = None
    file_id: str | None = None
    reply_markup: dict[str, Any] | None = None
    media_group_id: str | None = None
    reply_to_message_id: int | None = None
    date: int = 0
    edit_date: int | None = None
    message: BotMessage | None = field(default=None, compare=False, repr=False)

    @property
    def is_edit(self) -> bool:
        return self.version > 0

    @property
    def content(self) -> str:
        """The text, or the caption, or "" (handy in predicates)."""
        return self.text if self.text is not None else (self.caption or "")

    @property
    def buttons(self) -> list[dict[str, Any]]:
        """The inline keyboard's buttons, row after row."""
        rows = (self.reply_markup or {}).get("inline_keyboard") or []
        return [button for row in rows for button in row]

    @property
    def callback_data(self) -> list[str]:
        return [b["callback_data"] for b in self.buttons if "callback_data" in b]

    def button(self, label: str) -> dict[str, Any]:
        """The first inline button whose text contains `label` (AssertionError if none)."""
        for b in self.buttons:
            if label in b.get("text", ""):
                return b
        labels = [b.get("text") for b in self.buttons]
        raise AssertionError(f"no button with {label!r} in message {self.message_id}: {labels}")


@dataclass
class BotMessage:
    """A message the bot sent, with every version (edits) it went through."""

    chat_id: int
    message_id: int
    versions: list[MessageVersion] = field(default_factory=list)
    deleted: bool = False

    @property
    def latest(self) -> MessageVersion:
        return self.versions[-1]

    @property
    def edits(self) -> list[MessageVersion]:
        return self.versions[1:]

    @property
    def kind(self) -> str:
        return self.latest.kind

    @property
    def text(self) -> str | None:
        return self.latest.text

    @property
    def caption(self) -> str | None:
        return self.latest.caption

    @property
    def content(self) -> str:
        return self.latest.content

    @property
    def photo(self) -> bytes | None:
        return self.latest.photo

    @property
    def document(self) -> bytes | None:
        return self.latest.document

    @property
    def file_name(self) -> str | None:
        return self.latest.file_name

    @property
    def mime_type(self) -> str | None:
        return self.latest.mime_type

    @property
    def reply_markup(self) -> dict[str, Any] | None:
        return self.latest.reply_markup

    @property
    def buttons(self) -> list[dict[str, Any]]:
        return self.latest.buttons

    @property
    def callback_data(self) -> list[str]:
        return self.latest.callback_data

    @property
    def media_group_id(self) -> str | None:
        return self.latest.media_group_id

    def button(self, label: str) -> dict[str, Any]:
        return self.latest.button(label)


@dataclass
class _Fault:
    kind: str  # fail | drop | delay
    remaining: int | None  # None = until cleared
    status: int = 0
    description: str = ""
    parameters: dict[str, Any] | None = None
    seconds: float = 0.0


@dataclass
class _CallbackQuery:
    query_id: str
    user_id: int
    chat_id: int
    message_id: int
    data: str
    created: float
    answers: list[dict[str, Any]] = field(default_factory=list)


class _Poller:
    __slots__ = ("conflict",)

    def __init__(self) -> None:
        self.conflict = False


class FakeUser:
    """A Telegram user in a private chat with the bot (chat id == user id)."""

    def __init__(
        self,
        fake: FakeTelegram,
        user_id: int,
        first_name: str,
        *,
        last_name: str | None = None,
        username: str | None = None,
        language_code: str | None = "en",
    ):
        self.fake = fake
        self.id = user_id
        self.first_name = first_name
        self.last_name = last_name
        self.username = username
        self.language_code = language_code
        self.blocked = False

    @property
    def chat_id(self) -> int:
        return self.id

    def as_dict(self) -> dict[str, Any]:
        user: dict[str, Any] = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        if self.last_name:
            user["last_name"] = self.last_name
        if self.username:
            user["username"] = self.username
        if self.language_code:
            user["language_code"] = self.language_code
        return user

    def chat_dict(self) -> dict[str, Any]:
        chat: dict[str, Any] = {"id": self.id, "type": "private", "first_name": self.first_name}
        if self.last_name:
            chat["last_name"] = self.last_name
        if self.username:
            chat["username"] = self.username
        return chat

    def block(self) -> None:
        """The user blocks the bot: sends to them fail with 403."""
        self.blocked = True

    def unblock(self) -> None:
        self.blocked = False

    # --- what the user does --------------------------------------------------------------
    async def send_text(self, text: str, *, reply_to: int | None = None) -> dict[str, Any]:
        content: dict[str, Any] = {"text": text}
        entities = _command_entities(text)
        if entities:
            content["entities"] = entities
        return self.fake._user_message(self, content, reply_to=reply_to)

    async def send_photo(
        self,
        image_bytes: bytes,
        caption: str | None = None,
        *,
        media_group_id: str | None = None,
        reply_to: int | None = None,
    ) -> dict[str, Any]:
        sizes = self.fake._store_photo(image_bytes, for_user=True)
        content: dict[str, Any] = {"photo": sizes}
        if media_group_id is not None:
            content["media_group_id"] = media_group_id
        _add_caption(content, caption)
        return self.fake._user_message(self, content, reply_to=reply_to)

    async def send_document(
        self,
        data: bytes,
        file_name: str,
        mime_type: str,
        caption: str | None = None,
    ) -> dict[str, Any]:
        stored = self.fake.store_file(data, "document", file_name=file_name, mime_type=mime_type)
        document = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_name": file_name,
            "mime_type": mime_type,
            "file_size": stored.size,
        }
        content: dict[str, Any] = {"document": document}
        _add_caption(content, caption)
        return self.fake._user_message(self, content)

    async def send_sticker(self, webp_bytes: bytes | None = None) -> dict[str, Any]:
        data = webp_bytes if webp_bytes is not None else _tiny_image("WEBP", (512, 512))
        stored = self.fake.store_file(data, "sticker", mime_type="image/webp")
        sticker = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
            "emoji": "🙂",
            "file_size": stored.size,
        }
        return self.fake._user_message(self, {"sticker": sticker})

    async def send_voice(self, data: bytes | None = None, duration: int = 1) -> dict[str, Any]:
        stored = self.fake.store_file(data or b"OggS" + bytes(60), "voice", mime_type="audio/ogg")
        voice = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "duration": duration,
            "mime_type": "audio/ogg",
            "file_size": stored.size,
        }
        return self.fake._user_message(self, {"voice": voice})

    async def send_video(
        self,
        data: bytes | None = None,
        *,
        width: int = 640,
        height: int = 360,
        duration: int = 1,
        caption: str | None = None,
    ) -> dict[str, Any]:
        blob = data or bytes(16) + b"ftypisom" + bytes(40)
        stored = self.fake.store_file(blob, "video", mime_type="video/mp4")
        video = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "width": width,
            "height": height,
            "duration": duration,
            "mime_type": "video/mp4",
            "file_size": stored.size,
        }
        content: dict[str, Any] = {"video": video}
        _add_caption(content, caption)
        return self.fake._user_message(self, content)

    async def send_album(
        self, images: Iterable[bytes], caption: str | None = None
    ) -> list[dict[str, Any]]:
        """Photo messages sharing a media_group_id (the caption goes on the first, as in apps)."""
        group_id = str(13_000_000_000_000_000 + next(self.fake._ids))
        messages = []
        for index, image in enumerate(images):
            messages.append(
                await self.send_photo(
                    image, caption if index == 0 else None, media_group_id=group_id
                )
            )
        return messages

    async def press(self, message: Any, callback_data: str, *, check: bool = True) -> str:
        """Press an inline button of a bot message; returns the callback query id.

        `message` is a BotMessage, a MessageVersion, a message_id or a dict with "message_id".
        With `check`, the button must be on the message's current keyboard, as in a real client.
        """
        return self.fake._press(self, message, callback_data, check=check)

    # --- conveniences --------------------------------------------------------------------
    def messages(self) -> list[BotMessage]:
        return self.fake.messages(self.chat_id)

    def last_message(self) -> BotMessage | None:
        return self.fake.last_message(self.chat_id)

    async def wait_for_message(
        self,
        predicate: Callable[[MessageVersion], bool] | None = None,
        timeout: float = 30.0,  # noqa: ASYNC109
    ) -> MessageVersion:
        return await self.fake.wait_for_message(self.chat_id, predicate, timeout)


class FakeGroup:
    """A supergroup with the bot in it. `member(user)` is that user writing in the group."""

    def __init__(self, fake: FakeTelegram, group_id: int, title: str) -> None:
        self.fake = fake
        self.id = group_id
        self.title = title
        self.blocked = False  # the bot was removed from the group: sends fail with 403

    @property
    def chat_id(self) -> int:
        return self.id

    def chat_dict(self) -> dict[str, Any]:
        return {"id": self.id, "type": "supergroup", "title": self.title}

    def member(self, user: FakeUser) -> GroupMember:
        return GroupMember(self, user)

    def messages(self) -> list[BotMessage]:
        return self.fake.messages(self.id)


class GroupMember(FakeUser):
    """A user writing in a group: what they send lands in the group's chat."""

    def __init__(self, group: FakeGroup, user: FakeUser) -> None:
        super().__init__(
            user.fake,
            user.id,
            user.first_name,
            last_name=user.last_name,
            username=user.username,
            language_code=user.language_code,
        )
        self.group = group

    @property
    def chat_id(self) -> int:
        return self.group.id

    def chat_dict(self) -> dict[str, Any]:
        return self.group.chat_dict()

    async def wait_for_reply(
        self,
        to: int,
        predicate: Callable[[MessageVersion], bool] | None = None,
        timeout: float = 60.0,  # noqa: ASYNC109
    ) -> MessageVersion:
        """A version of a bot message in the group that replies to message `to` and matches
        `predicate` (earlier messages included: members share the group's chat)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for message in self.fake.messages(self.chat_id):
                if message.versions[0].reply_to_message_id != to:
                    continue
                for version in message.versions:
                    if predicate is None or predicate(version):
                        return version
            if loop.time() > deadline:
                raise AssertionError(f"no bot reply to message {to} in {timeout:g} s")
            await asyncio.sleep(0.02)

    def replies_to(self, to: int) -> list[BotMessage]:
        """The bot's messages in the group that reply to message `to`."""
        return [
            m for m in self.fake.messages(self.chat_id) if m.versions[0].reply_to_message_id == to
        ]


def _command_entities(text: str | None) -> list[dict[str, Any]]:
    if not text or not text.startswith("/") or len(text) < 2:
        return []
    command = text.split(maxsplit=1)[0]
    return [{"type": "bot_command", "offset": 0, "length": utf16_len(command)}]


def _add_caption(content: dict[str, Any], caption: str | None) -> None:
    if caption is None:
        return
    content["caption"] = caption
    entities = _command_entities(caption)
    if entities:
        content["caption_entities"] = entities


def _tiny_image(fmt: str, size: tuple[int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 120, 40)).save(out, fmt)
    return out.getvalue()


def _open_image(data: bytes) -> Image.Image | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            image = Image.open(io.BytesIO(data))
            image.load()
        except Exception:
            return None
    return image


def _ref(message: Any) -> int:
    if isinstance(message, int):
        return message
    if isinstance(message, dict):
        return int(message["message_id"])
    return int(message.message_id)


class FakeTelegram:
    """The fake Bot API server plus the test-side view of everything that happened."""

    def __init__(
        self,
        *,
        bot_id: int = 7_000_000_001,
        token: str | None = None,
        bot_username: str = "stylebot_test_bot",
        bot_name: str = "StyleBot",
        host: str = "127.0.0.1",
    ):
        self.bot_id = bot_id
        self.token = token or make_token(bot_id)
        self.bot_username = bot_username
        self.bot_name = bot_name
        self.host = host
        self.port = 0
        self.callback_query_ttl = 60.0
        self._runner: web.AppRunner | None = None
        self._closing = False
        self._event = asyncio.Event()
        self._ids = itertools.count(1)
        self._next_update_id = 100_000_001
        self._updates: list[dict[str, Any]] = []
        self._poller: _Poller | None = None
        self._users: dict[int, FakeUser | FakeGroup] = {}  # chats by id
        self._next_message_id: dict[int, int] = {}
        self._user_messages: dict[tuple[int, int], dict[str, Any]] = {}
        self._messages: dict[tuple[int, int], BotMessage] = {}
        self._message_events: list[MessageVersion] = []
        self._message_cursor: dict[int, int] = {}
        self._calls: list[CallRecord] = []
        self._call_cursor: dict[str, int] = {}
        self._files: dict[str, StoredFile] = {}
        self._files_by_path: dict[str, StoredFile] = {}
        self._queries: dict[str, _CallbackQuery] = {}
        self._faults: dict[str, list[_Fault]] = {}
        self._commands: dict[tuple[str, str], list[dict[str, Any]]] = {}
        # setMyDescription / setMyShortDescription, by (kind, language_code); "" = default
        self._descriptions: dict[tuple[str, str], str] = {}
        self._chat_actions: dict[int, list[str]] = {}
        # The setWebhook parameters in force ("url", "secret_token", ...), None: no webhook.
        self.webhook: dict[str, Any] | None = None
        self._handlers: dict[str, Callable[[dict[str, Any]], Any]] = {
            name.lower(): handler
            for name, handler in {
                "getMe": self._get_me,
                "getUpdates": self._get_updates,
                "deleteWebhook": self._delete_webhook,
                "setWebhook": self._set_webhook,
                "getWebhookInfo": self._get_webhook_info,
                "close": self._true,
                "logOut": self._true,
                "setMyCommands": self._set_my_commands,
                "getMyCommands": self._get_my_commands,
                "deleteMyCommands": self._delete_my_commands,
                "setMyDescription": self._set_my_description,
                "getMyDescription": self._get_my_description,
                "setMyShortDescription": self._set_my_short_description,
                "getMyShortDescription": self._get_my_short_description,
                "setMyName": self._true,
                "setChatMenuButton": self._true,
                "sendMessage": self._send_message,
                "sendPhoto": self._send_photo,
                "sendDocument": self._send_document,
                "sendMediaGroup": self._send_media_group,
                "sendChatAction": self._send_chat_action,
                "editMessageText": self._edit_message_text,
                "editMessageCaption": self._edit_message_caption,
                "editMessageReplyMarkup": self._edit_message_reply_markup,
                "editMessageMedia": self._edit_message_media,
                "answerCallbackQuery": self._answer_callback_query,
                "deleteMessage": self._delete_message,
                "getFile": self._get_file,
            }.items()
        }

    # --- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        app = web.Application(client_max_size=MAX_UPLOAD + 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        """Wake pending long polls and delays, then close the server."""
        self._closing = True
        self._changed()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeTelegram:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def api_url(self) -> str:
        """What the bot gets as TELEGRAM_API_URL."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.api_url}/bot"

    @property
    def base_file_url(self) -> str:
        return f"{self.api_url}/file/bot"

    def bot_user(self) -> dict[str, Any]:
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": self.bot_name,
            "username": self.bot_username,
        }

    # --- test side: users, messages, calls -----------------------------------------------
    def user(self, user_id: int, first_name: str = "Ada", **kwargs: Any) -> FakeUser:
        """The user with this id (created on first use; chat id == user id)."""
        if user_id not in self._users:
            self._users[user_id] = FakeUser(self, user_id, first_name, **kwargs)
        user = self._users[user_id]
        assert isinstance(user, FakeUser)
        return user

    def add_bot_to_group(self, group: FakeGroup, by: FakeUser | None = None) -> dict[str, Any]:
        """A member adds the bot to `group`: a `my_chat_member` update, left → member."""
        adder = by or self.user(1, "Admin")
        return self._enqueue(
            "my_chat_member",
            {
                "chat": group.chat_dict(),
                "from": adder.as_dict(),
                "date": int(time.time()),
                "old_chat_member": {"status": "left", "user": self.bot_user()},
                "new_chat_member": {"status": "member", "user": self.bot_user()},
            },
        )

    def group(self, group_id: int = -1001234567890, title: str = "Painters") -> FakeGroup:
        """A supergroup the bot is a member of (created on first use; ids are negative)."""
        if group_id >= 0:
            raise ValueError("group chat ids are negative")
        if group_id not in self._users:
            self._users[group_id] = FakeGroup(self, group_id, title)
        chat = self._users[group_id]
        assert isinstance(chat, FakeGroup)
        return chat

    def messages(self, chat_id: int, *, include_deleted: bool = False) -> list[BotMessage]:
        """Every message the bot sent to the chat, oldest first."""
        return [
            m
            for (chat, _), m in sorted(self._messages.items())
            if chat == chat_id and (include_deleted or not m.deleted)
        ]

    def last_message(self, chat_id: int) -> BotMessage | None:
        messages = self.messages(chat_id)
        return messages[-1] if messages else None

    def message(self, chat_id: int, message_id: int) -> BotMessage:
        return self._messages[(chat_id, message_id)]

    def message_events(self, chat_id: int | None = None) -> list[MessageVersion]:
        """Every send and edit, in order."""
        return [e for e in self._message_events if chat_id is None or e.chat_id == chat_id]

    async def wait_for_message(
        self,
        chat_id: int,
        predicate: Callable[[MessageVersion], bool] | None = None,
        timeout: float = 30.0,  # noqa: ASYNC109
    ) -> MessageVersion:
        """The next bot message (a new send or an edit) in the chat matching `predicate`.

        "Next" is per chat: each call starts after the message the previous call returned, so
        a message sent before the call is still found. Skipped messages are not revisited.
        """
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            start = self._message_cursor.get(chat_id, 0)
            for index in range(start, len(self._message_events)):
                event = self._message_events[index]
                if event.chat_id == chat_id and (predicate is None or predicate(event)):
                    self._message_cursor[chat_id] = index + 1
                    return event
            await self._wait_change(deadline, f"a bot message in chat {chat_id}", chat_id)

    def calls(self, method: str | None = None) -> list[CallRecord]:
        """The request log (every method, or one), oldest first."""
        if method is None:
            return list(self._calls)
        return [c for c in self._calls if c.method.lower() == method.lower()]

    def failed_calls(self) -> list[CallRecord]:
        return [c for c in self._calls if not c.ok]

    async def wait_for_call(
        self,
        method: str,
        predicate: Callable[[CallRecord], bool] | None = None,
        timeout: float = 30.0,  # noqa: ASYNC109
    ) -> CallRecord:
        """The next completed call of `method` matching `predicate` (per-method cursor)."""
        key = method.lower()
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            for index in range(self._call_cursor.get(key, 0), len(self._calls)):
                call = self._calls[index]
                if call.method.lower() == key and (predicate is None or predicate(call)):
                    self._call_cursor[key] = index + 1
                    return call
            await self._wait_change(deadline, f"a {method} call")

    def callback_answers(self, query_id: str) -> list[dict[str, Any]]:
        """The answerCallbackQuery parameters the bot sent for this query."""
        return list(self._queries[query_id].answers)

    async def wait_for_callback_answer(
        self,
        query_id: str,
        timeout: float = 30.0,  # noqa: ASYNC109
    ) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + timeout
        while not self._queries[query_id].answers:
            await self._wait_change(deadline, f"an answer to callback query {query_id}")
        return self._queries[query_id].answers[0]

    def chat_actions(self, chat_id: int) -> list[str]:
        return list(self._chat_actions.get(chat_id, []))

    def pending_updates(self) -> list[dict[str, Any]]:
        """Updates not yet confirmed by the bot (through getUpdates' offset)."""
        return list(self._updates)

    async def wait_until_confirmed(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        """Wait until the bot has confirmed every update queued so far."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self._updates:
            await self._wait_change(deadline, "the bot to confirm its updates")

    def my_commands(
        self, scope: dict[str, Any] | None = None, language_code: str = ""
    ) -> list[dict[str, Any]]:
        return list(self._commands.get((_scope_key(scope), language_code), []))

    def my_description(self, language_code: str = "", *, short: bool = False) -> str | None:
        """What setMyDescription (or, with `short`, setMyShortDescription) set for a
        language ("" = the default); None if never set."""
        return self._descriptions.get(("short" if short else "long", language_code))

    def file(self, file_id: str) -> StoredFile:
        return self._files[file_id]

    def store_file(
        self,
        data: bytes,
        kind: str,
        *,
        file_name: str | None = None,
        mime_type: str | None = None,
        width: int | None = None,
        height: int | None = None,
    ) -> StoredFile:
        """Keep a file as Telegram would: a unique file_id, a file_path for downloads."""
        n = next(self._ids)
        file_id = f"{_FILE_ID_PREFIX.get(kind, 'BQAC')}AgADBAAD{n:08d}" + secrets.token_urlsafe(24)
        unique = "AQAD" + hashlib.sha256(data).hexdigest()[:12]
        folder, ext = _FOLDERS.get(kind, ("documents", ""))
        if kind == "document" and file_name and "." in file_name:
            ext = "." + file_name.rsplit(".", 1)[1]
        stored = StoredFile(
            file_id=file_id,
            file_unique_id=unique,
            data=data,
            file_path=f"{folder}/file_{n}{ext}",
            kind=kind,
            file_name=file_name,
            mime_type=mime_type,
            width=width,
            height=height,
        )
        self._files[file_id] = stored
        self._files_by_path[stored.file_path] = stored
        return stored

    # --- fault injection -----------------------------------------------------------------
    def fail(
        self,
        method: str,
        status: int = 429,
        retry_after: int = 1,
        times: int | None = 1,
        description: str | None = None,
    ) -> None:
        """The next `times` calls of `method` ("*": any) fail with `status`; None: until cleared."""
        parameters = None
        if status == 429:
            text = f"Too Many Requests: retry after {retry_after}"
            parameters = {"retry_after": retry_after}
        elif description is not None:
            text = description
        else:
            text = {500: "Internal Server Error", 502: "Bad Gateway"}.get(
                status, HTTPStatus(status).phrase
            )
        text = description if description is not None else text
        self._add_fault(method, _Fault("fail", times, status, text, parameters))

    def drop(self, method: str, times: int | None = 1) -> None:
        """The next `times` calls of `method` get their connection closed without an answer."""
        self._add_fault(method, _Fault("drop", times))

    def delay(self, method: str, seconds: float, times: int | None = 1) -> None:
        """The next `times` calls of `method` are answered `seconds` late (handled after it)."""
        self._add_fault(method, _Fault("delay", times, seconds=seconds))

    def clear_faults(self, method: str | None = None) -> None:
        if method is None:
            self._faults.clear()
        else:
            self._faults.pop(method.lower(), None)

    def _add_fault(self, method: str, fault: _Fault) -> None:
        self._faults.setdefault(method.lower(), []).append(fault)

    def _take_fault(self, method: str) -> _Fault | None:
        for key in (method.lower(), "*"):
            queue = self._faults.get(key)
            if queue:
                fault = queue[0]
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        queue.pop(0)
                return fault
        return None

    # --- internals: state changes and waiting --------------------------------------------
    def _changed(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def _wait_change(self, deadline: float, what: str, chat_id: int | None = None) -> None:
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            detail = ""
            if chat_id is not None:
                seen = [
                    (e.message_id, e.version, e.content[:60]) for e in self.message_events(chat_id)
                ]
                detail = f"; messages so far (id, version, content): {seen}"
            raise TimeoutError(f"timed out waiting for {what}{detail}")
        event = self._event
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), remaining)

    def _enqueue(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        update = {"update_id": self._next_update_id, kind: payload}
        self._next_update_id += 1
        self._updates.append(update)
        self._changed()
        return update

    def _new_message_id(self, chat_id: int) -> int:
        mid = self._next_message_id.get(chat_id, 1)
        self._next_message_id[chat_id] = mid + 1
        return mid

    def _user_message(
        self, user: FakeUser, content: dict[str, Any], *, reply_to: int | None = None
    ) -> dict[str, Any]:
        message: dict[str, Any] = {
            "message_id": self._new_message_id(user.chat_id),
            "from": user.as_dict(),
            "chat": user.chat_dict(),
            "date": int(time.time()),
            **content,
        }
        if reply_to is not None:
            replied = self._message_dict(user.chat_id, reply_to)
            if replied is not None:
                message["reply_to_message"] = replied
        self._user_messages[(user.chat_id, message["message_id"])] = message
        self._enqueue("message", message)
        return message

    def _message_dict(self, chat_id: int, message_id: int) -> dict[str, Any] | None:
        if (chat_id, message_id) in self._user_messages:
            return self._user_messages[(chat_id, message_id)]
        bot_message = self._messages.get((chat_id, message_id))
        return None if bot_message is None else self._bot_message_dict(bot_message)

    def _press(self, user: FakeUser, message: Any, data: str, *, check: bool) -> str:
        message_id = _ref(message)
        bot_message = self._messages.get((user.chat_id, message_id))
        if bot_message is None or bot_message.deleted:
            raise AssertionError(f"no bot message {message_id} in chat {user.chat_id} to press")
        if check and data not in bot_message.callback_data:
            raise AssertionError(
                f"message {message_id} has no button with callback_data {data!r}: "
                f"{bot_message.callback_data}"
            )
        query_id = str(4_000_000_000_000_000_000 + next(self._ids))
        self._queries[query_id] = _CallbackQuery(
            query_id, user.id, user.chat_id, message_id, data, time.monotonic()
        )
        self._enqueue(
            "callback_query",
            {
                "id": query_id,
                "from": user.as_dict(),
                "message": self._bot_message_dict(bot_message),
                "chat_instance": str(-(10**18) - user.chat_id),
                "data": data,
            },
        )
        return query_id

    def _store_photo(self, data: bytes, *, for_user: bool) -> list[dict[str, Any]]:
        """PhotoSize list of increasing size: JPEG thumbnails, then the original."""
        image = _open_image(data)
        if image is None:
            if for_user:
                raise ValueError("send_photo needs image bytes Pillow can open (Telegram would)")
            raise _bad(IMAGE_PROCESS_FAILED)
        width, height = image.size
        sizes = []
        for side in (90, 320):
            if max(width, height) > side:
                thumb = image.convert("RGB")
                thumb.thumbnail((side, side))
                out = io.BytesIO()
                thumb.save(out, "JPEG", quality=80)
                stored = self.store_file(
                    out.getvalue(),
                    "photo",
                    mime_type="image/jpeg",
                    width=thumb.width,
                    height=thumb.height,
                )
                sizes.append(stored.photo_size())
        original = self.store_file(data, "photo", width=width, height=height)
        sizes.append(original.photo_size())
        return sizes

    # --- internals: HTTP -----------------------------------------------------------------
    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path.startswith("/file/bot"):
            return await self._download(request, path[len("/file/bot") :])
        if not path.startswith("/bot"):
            return _error_response(404, NOT_FOUND)
        token, _, method = path[len("/bot") :].partition("/")
        started = time.time()
        early_error: TelegramAPIError | None = None
        try:
            params = await _read_params(request)
        except TelegramAPIError as exc:
            params, early_error = {}, exc
        record = CallRecord(method=method, params=params, time=started)
        if token != self.token:
            return self._finish(record, request, TelegramAPIError(*_token_error(token)))
        if early_error is not None:
            return self._finish(record, request, early_error)
        fault = self._take_fault(method)
        if fault is not None and fault.kind == "drop":
            record.status = 0
            record.description = "connection dropped"
            self._log(record)
            if request.transport is not None:
                request.transport.close()
            raise asyncio.CancelledError  # aiohttp: the handler ends without an answer
        if fault is not None and fault.kind == "fail":
            return self._finish(
                record,
                request,
                TelegramAPIError(fault.status, fault.description, fault.parameters),
            )
        if fault is not None and fault.kind == "delay":
            await self._sleep(fault.seconds)
        handler = self._handlers.get(method.lower())
        if handler is None:
            return self._finish(record, request, TelegramAPIError(404, NOT_FOUND))
        try:
            result = handler(params)
            if asyncio.iscoroutine(result):
                result = await result
        except TelegramAPIError as exc:
            return self._finish(record, request, exc)
        return self._finish(record, request, result)

    def _finish(self, record: CallRecord, request: web.Request, outcome: Any) -> web.Response:
        record.duration = time.time() - record.time
        if isinstance(outcome, TelegramAPIError):
            record.status = outcome.status
            record.description = outcome.description
            response = _error_response(outcome.status, outcome.description, outcome.parameters)
        else:
            record.status = 200
            record.result = outcome
            response = web.json_response({"ok": True, "result": outcome})
        if request.transport is None or request.transport.is_closing():
            record.status = 499
        self._log(record)
        return response

    def _log(self, record: CallRecord) -> None:
        self._calls.append(record)
        self._changed()

    async def _sleep(self, seconds: float) -> None:
        deadline = asyncio.get_running_loop().time() + seconds
        while not self._closing:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return
            event = self._event
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except TimeoutError:
                return

    async def _download(self, request: web.Request, rest: str) -> web.StreamResponse:
        token, _, file_path = rest.partition("/")
        record = CallRecord(method="download", params={"file_path": file_path}, time=time.time())
        if token != self.token:
            return self._finish(record, request, TelegramAPIError(*_token_error(token)))
        stored = self._files_by_path.get(file_path)
        if stored is None:
            return self._finish(record, request, TelegramAPIError(404, NOT_FOUND))
        record.status = 200
        record.result = {"file_id": stored.file_id, "file_size": stored.size}
        self._log(record)
        return web.Response(
            body=stored.data, content_type=stored.mime_type or "application/octet-stream"
        )

    # --- internals: Bot API methods ------------------------------------------------------
    def _true(self, params: dict[str, Any]) -> bool:
        return True

    def _get_me(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            **self.bot_user(),
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    def _get_webhook_info(self, params: dict[str, Any]) -> dict[str, Any]:
        info: dict[str, Any] = {
            "url": (self.webhook or {}).get("url", ""),
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates),
        }
        if self.webhook and self.webhook.get("allowed_updates"):
            info["allowed_updates"] = self.webhook["allowed_updates"]
        return info

    def _set_webhook(self, params: dict[str, Any]) -> bool:
        """Telegram's checks of the URL; an empty URL removes the webhook. The fake never posts
        to it (tests post updates themselves) and ignores drop_pending_updates."""
        url = str(params.get("url") or "")
        if not url:
            return self._delete_webhook(params)
        if not url.startswith("https://"):
            raise _bad(WEBHOOK_NOT_HTTPS)
        try:
            port = urllib.parse.urlsplit(url).port or 443
        except ValueError:
            raise _bad(WEBHOOK_BAD_PORT) from None
        if port not in (80, 88, 443, 8443):
            raise _bad(WEBHOOK_BAD_PORT)
        self.webhook = dict(params)
        return True

    def _delete_webhook(self, params: dict[str, Any]) -> bool:
        self.webhook = None
        return True

    async def _get_updates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        offset = params.get("offset") or 0
        limit = min(max(params.get("limit") or 100, 1), 100)
        timeout = min(max(float(params.get("timeout") or 0), 0.0), MAX_POLL_TIMEOUT)
        allowed = params.get("allowed_updates") or None
        if self.webhook is not None:
            raise TelegramAPIError(409, WEBHOOK_ACTIVE)
        if offset > 0:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        elif offset < 0:
            self._updates = self._updates[offset:]
        if self._poller is not None:
            self._poller.conflict = True
        poller = self._poller = _Poller()
        self._changed()
        deadline = asyncio.get_running_loop().time() + timeout
        try:
            while True:
                if poller.conflict:
                    raise TelegramAPIError(409, CONFLICT)
                ready = [u for u in self._updates if _allowed(u, allowed)]
                if ready or self._closing:
                    return ready[:limit]
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    return []
                event = self._event
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), remaining)
        finally:
            if self._poller is poller:
                self._poller = None

    def _set_my_commands(self, params: dict[str, Any]) -> bool:
        commands = params.get("commands")
        if not isinstance(commands, list) or len(commands) > 100:
            raise _bad("Bad Request: can't parse commands JSON object")
        for command in commands:
            name = command.get("command", "") if isinstance(command, dict) else ""
            if not (1 <= len(name) <= 32) or not all(
                c in string.ascii_lowercase + string.digits + "_" for c in name
            ):
                raise _bad(BOT_COMMAND_INVALID)
            if not 1 <= len(command.get("description", "").strip()) <= 256:
                raise _bad(BOT_COMMAND_DESCRIPTION_INVALID)
        key = (_scope_key(params.get("scope")), params.get("language_code") or "")
        self._commands[key] = [
            {"command": c["command"], "description": c["description"]} for c in commands
        ]
        return True

    def _set_description(self, kind: str, params: dict[str, Any], field: str, limit: int) -> bool:
        text = params.get(field) or ""
        if not isinstance(text, str) or len(text) > limit:
            raise _bad(f"Bad Request: {field} is too long")
        language = params.get("language_code") or ""
        if language and not (len(language) == 2 and language.isalpha() and language.islower()):
            raise _bad("Bad Request: invalid language code specified")
        if text:
            self._descriptions[(kind, language)] = text
        else:  # an empty text removes it
            self._descriptions.pop((kind, language), None)
        return True

    def _set_my_description(self, params: dict[str, Any]) -> bool:
        return self._set_description("long", params, "description", 512)

    def _set_my_short_description(self, params: dict[str, Any]) -> bool:
        return self._set_description("short", params, "short_description", 120)

    def _get_my_description(self, params: dict[str, Any]) -> dict[str, str]:
        language = params.get("language_code") or ""
        return {"description": self.my_description(language) or self.my_description() or ""}

    def _get_my_short_description(self, params: dict[str, Any]) -> dict[str, str]:
        language = params.get("language_code") or ""
        short = self.my_description(language, short=True) or self.my_description(short=True)
        return {"short_description": short or ""}

    def _get_my_commands(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        return self.my_commands(params.get("scope"), params.get("language_code") or "")

    def _delete_my_commands(self, params: dict[str, Any]) -> bool:
        key = (_scope_key(params.get("scope")), params.get("language_code") or "")
        self._commands.pop(key, None)
        return True

    def _chat(self, params: dict[str, Any]) -> FakeUser | FakeGroup:
        raw = params.get("chat_id")
        try:
            chat_id = int(raw)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            if raw in (None, ""):
                raise _bad("Bad Request: chat_id is empty") from None
            raise _bad(CHAT_NOT_FOUND) from None
        user = self._users.get(chat_id)
        if user is None:
            raise _bad(CHAT_NOT_FOUND)
        if user.blocked:
            raise TelegramAPIError(403, BOT_BLOCKED)
        return user

    def _text(self, source: Any, parse_mode: Any, *, caption: bool) -> str | None:
        if source is None:
            return None
        text = format_text(str(source), parse_mode)
        if caption and utf16_len(text) > MAX_CAPTION_LENGTH:
            raise _bad(CAPTION_TOO_LONG)
        if not caption and utf16_len(text) > MAX_TEXT_LENGTH:
            raise _bad(MESSAGE_TOO_LONG)
        return text

    def _reply_to(self, chat_id: int, params: dict[str, Any]) -> int | None:
        reply = params.get("reply_parameters")
        message_id = reply.get("message_id") if isinstance(reply, dict) else None
        message_id = message_id or params.get("reply_to_message_id")
        if not message_id:
            return None
        allow = isinstance(reply, dict) and reply.get("allow_sending_without_reply")
        if self._message_dict(chat_id, int(message_id)) is None and not allow:
            raise _bad("Bad Request: message to be replied not found")
        return int(message_id)

    def _record_message(
        self, chat_id: int, message_id: int | None, method: str, **fields: Any
    ) -> BotMessage:
        now = int(time.time())
        if message_id is None:
            message = BotMessage(chat_id, self._new_message_id(chat_id))
            self._messages[(chat_id, message.message_id)] = message
            fields.setdefault("date", now)
        else:
            message = self._messages[(chat_id, message_id)]
            fields = {"date": message.latest.date, **fields, "edit_date": now}
        version = MessageVersion(
            chat_id=chat_id,
            message_id=message.message_id,
            version=len(message.versions),
            method=method,
            message=message,
            **fields,
        )
        message.versions.append(version)
        self._message_events.append(version)
        self._changed()
        return message

    def _bot_message_dict(self, message: BotMessage) -> dict[str, Any]:
        v = message.latest
        result: dict[str, Any] = {
            "message_id": message.message_id,
            "from": self.bot_user(),
            "chat": self._users[message.chat_id].chat_dict(),
            "date": v.date,
        }
        if v.edit_date is not None:
            result["edit_date"] = v.edit_date
        if v.media_group_id is not None:
            result["media_group_id"] = v.media_group_id
        if v.reply_to_message_id is not None:
            replied = self._user_messages.get((message.chat_id, v.reply_to_message_id))
            if replied is not None:
                result["reply_to_message"] = replied
        if v.kind == "text":
            result["text"] = v.text
            if v.entities and not v.parse_mode:
                result["entities"] = v.entities
        elif v.kind == "photo":
            result["photo"] = list(v.photo_sizes)
        elif v.kind == "document":
            stored = self._files[v.file_id] if v.file_id else None
            result["document"] = {
                "file_id": v.file_id,
                "file_unique_id": stored.file_unique_id if stored else "",
                "file_name": v.file_name,
                "mime_type": v.mime_type,
                "file_size": stored.size if stored else 0,
            }
        if v.caption is not None:
            result["caption"] = v.caption
        if v.reply_markup is not None and "inline_keyboard" in v.reply_markup:
            result["reply_markup"] = v.reply_markup
        return result

    def _send_message(self, params: dict[str, Any]) -> dict[str, Any]:
        user = self._chat(params)
        source = params.get("text")
        if source is None or str(source) == "":
            raise _bad(MESSAGE_TEXT_EMPTY)
        text = self._text(source, params.get("parse_mode"), caption=False)
        if not (text or "").strip():
            raise _bad(MESSAGE_TEXT_EMPTY)
        markup = _check_markup(params.get("reply_markup"))
        message = self._record_message(
            user.chat_id,
            None,
            "sendMessage",
            kind="text",
            text=text,
            source=str(source),
            parse_mode=params.get("parse_mode"),
            entities=params.get("entities"),
            reply_markup=markup,
            reply_to_message_id=self._reply_to(user.chat_id, params),
        )
        return self._bot_message_dict(message)

    def _resolve_file(
        self, value: Any, params: dict[str, Any], target: str
    ) -> tuple[bytes, str | None, str | None, StoredFile | None]:
        """(data, filename, content_type, stored-or-None) for an upload or a file_id."""
        if isinstance(value, str) and value.startswith("attach://"):
            value = params.get(value[len("attach://") :])
            if value is None:
                raise _bad(f"Bad Request: can't find attached file for {target}")
        if isinstance(value, Upload):
            return value.data, value.filename, value.content_type, None
        if isinstance(value, str) and value:
            stored = self._files.get(value)
            if stored is None:
                raise _bad(WRONG_FILE_ID)
            wanted = {"photo": ("photo",), "document": ("document", "photo", "thumbnail")}
            if stored.kind not in wanted.get(target, (target,)):
                raise _bad(
                    f"Bad Request: can't use file of type {stored.kind.capitalize()} as "
                    f"{target.capitalize()}"
                )
            return stored.data, stored.file_name, stored.mime_type, stored
        raise _bad(f"Bad Request: there is no {target} in the request")

    def _photo_fields(self, value: Any, params: dict[str, Any]) -> dict[str, Any]:
        data, _, _, stored = self._resolve_file(value, params, "photo")
        if stored is None:
            if len(data) > MAX_PHOTO_UPLOAD:
                raise TelegramAPIError(413, ENTITY_TOO_LARGE)
            image = _open_image(data)
            if image is None:
                raise _bad(IMAGE_PROCESS_FAILED)
            w, h = image.size
            if w + h > MAX_PHOTO_DIMENSIONS_SUM or max(w, h) > MAX_PHOTO_RATIO * min(w, h):
                raise _bad(PHOTO_INVALID_DIMENSIONS)
            sizes = self._store_photo(data, for_user=False)
        else:
            sizes = [stored.photo_size()]
        return {"kind": "photo", "photo": data, "photo_sizes": tuple(sizes)}

    def _document_fields(self, value: Any, params: dict[str, Any]) -> dict[str, Any]:
        data, filename, content_type, stored = self._resolve_file(value, params, "document")
        if stored is None:
            if len(data) > MAX_UPLOAD:
                raise TelegramAPIError(413, ENTITY_TOO_LARGE)
            stored = self.store_file(
                data,
                "document",
                file_name=filename or "document",
                mime_type=content_type or "application/octet-stream",
            )
        return {
            "kind": "document",
            "document": data,
            "file_name": stored.file_name or filename,
            "mime_type": stored.mime_type or content_type,
            "file_id": stored.file_id,
        }

    def _send_media(self, params: dict[str, Any], method: str, target: str) -> dict[str, Any]:
        user = self._chat(params)
        caption = self._text(params.get("caption"), params.get("parse_mode"), caption=True)
        markup = _check_markup(params.get("reply_markup"))
        reply_to = self._reply_to(user.chat_id, params)
        if target == "photo":
            media = self._photo_fields(params.get("photo"), params)
        else:
            media = self._document_fields(params.get("document"), params)
        message = self._record_message(
            user.chat_id,
            None,
            method,
            caption=caption,
            source=params.get("caption"),
            parse_mode=params.get("parse_mode"),
            entities=params.get("caption_entities"),
            reply_markup=markup,
            reply_to_message_id=reply_to,
            **media,
        )
        return self._bot_message_dict(message)

    def _send_photo(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._send_media(params, "sendPhoto", "photo")

    def _send_document(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._send_media(params, "sendDocument", "document")

    def _send_media_group(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        user = self._chat(params)
        items = params.get("media")
        if not isinstance(items, list) or not 2 <= len(items) <= 10:
            raise _bad(MEDIA_GROUP_SIZE)
        reply_to = self._reply_to(user.chat_id, params)
        prepared = []
        for item in items:
            if not isinstance(item, dict) or item.get("type") not in ("photo", "document"):
                raise _bad("Bad Request: unsupported media type in the album")
            caption = self._text(item.get("caption"), item.get("parse_mode"), caption=True)
            if item["type"] == "photo":
                media = self._photo_fields(item.get("media"), params)
            else:
                media = self._document_fields(item.get("media"), params)
            prepared.append((item, caption, media))
        group_id = str(14_000_000_000_000_000 + next(self._ids))
        results = []
        for item, caption, media in prepared:
            message = self._record_message(
                user.chat_id,
                None,
                "sendMediaGroup",
                caption=caption,
                source=item.get("caption"),
                parse_mode=item.get("parse_mode"),
                media_group_id=group_id,
                reply_to_message_id=reply_to,
                **media,
            )
            results.append(self._bot_message_dict(message))
        return results

    def _send_chat_action(self, params: dict[str, Any]) -> bool:
        user = self._chat(params)
        action = params.get("action")
        if action not in CHAT_ACTIONS:
            raise _bad(BAD_CHAT_ACTION)
        self._chat_actions.setdefault(user.chat_id, []).append(action)
        self._changed()
        return True

    def _editable(self, params: dict[str, Any]) -> BotMessage:
        if params.get("inline_message_id"):
            raise _bad("Bad Request: MESSAGE_ID_INVALID")
        user = self._chat(params)
        message_id = params.get("message_id")
        if not message_id:
            raise _bad("Bad Request: message identifier is not specified")
        if (user.chat_id, message_id) in self._user_messages:
            raise _bad(MESSAGE_CANT_BE_EDITED)
        message = self._messages.get((user.chat_id, message_id))
        if message is None or message.deleted:
            raise _bad(MESSAGE_TO_EDIT_NOT_FOUND)
        return message

    def _edit_message_text(self, params: dict[str, Any]) -> dict[str, Any]:
        message = self._editable(params)
        source = params.get("text")
        if source is None or str(source) == "":
            raise _bad(MESSAGE_TEXT_EMPTY)
        text = self._text(source, params.get("parse_mode"), caption=False)
        markup = _check_markup(params.get("reply_markup"))
        current = message.latest
        if current.kind != "text":
            raise _bad(NO_TEXT_TO_EDIT)
        new_format = _format_key(str(source), params.get("parse_mode"), params.get("entities"))
        old_format = _format_key(current.source, current.parse_mode, current.entities)
        if (text, new_format, markup) == (current.text, old_format, current.reply_markup):
            raise _bad(NOT_MODIFIED)
        self._record_message(
            message.chat_id,
            message.message_id,
            "editMessageText",
            kind="text",
            text=text,
            source=str(source),
            parse_mode=params.get("parse_mode"),
            entities=params.get("entities"),
            reply_markup=markup,
            reply_to_message_id=current.reply_to_message_id,
        )
        return self._bot_message_dict(message)

    def _edit_message_caption(self, params: dict[str, Any]) -> dict[str, Any]:
        message = self._editable(params)
        current = message.latest
        if current.kind == "text":
            raise _bad(NO_CAPTION_TO_EDIT)
        caption = self._text(params.get("caption"), params.get("parse_mode"), caption=True)
        markup = _check_markup(params.get("reply_markup"))
        new_format = _format_key(
            params.get("caption"), params.get("parse_mode"), params.get("caption_entities")
        )
        old_format = _format_key(current.source, current.parse_mode, current.entities)
        if (caption, new_format, markup) == (current.caption, old_format, current.reply_markup):
            raise _bad(NOT_MODIFIED)
        self._record_message(
            message.chat_id,
            message.message_id,
            "editMessageCaption",
            **_carry(current),
            caption=caption,
            source=params.get("caption"),
            parse_mode=params.get("parse_mode"),
            entities=params.get("caption_entities"),
            reply_markup=markup,
        )
        return self._bot_message_dict(message)

    def _edit_message_reply_markup(self, params: dict[str, Any]) -> dict[str, Any]:
        message = self._editable(params)
        current = message.latest
        markup = _check_markup(params.get("reply_markup"))
        if markup == current.reply_markup:
            raise _bad(NOT_MODIFIED)
        self._record_message(
            message.chat_id,
            message.message_id,
            "editMessageReplyMarkup",
            **_carry(current),
            text=current.text,
            caption=current.caption,
            source=current.source,
            parse_mode=current.parse_mode,
            entities=current.entities,
            reply_markup=markup,
        )
        return self._bot_message_dict(message)

    def _edit_message_media(self, params: dict[str, Any]) -> dict[str, Any]:
        message = self._editable(params)
        current = message.latest
        media = params.get("media")
        if not isinstance(media, dict) or media.get("type") not in ("photo", "document"):
            raise _bad("Bad Request: can't parse InputMedia JSON object")
        caption = self._text(media.get("caption"), media.get("parse_mode"), caption=True)
        markup = _check_markup(params.get("reply_markup"))
        if media["type"] == "photo":
            fields = self._photo_fields(media.get("media"), params)
        else:
            fields = self._document_fields(media.get("media"), params)
        self._record_message(
            message.chat_id,
            message.message_id,
            "editMessageMedia",
            caption=caption,
            source=media.get("caption"),
            parse_mode=media.get("parse_mode"),
            reply_markup=markup,
            media_group_id=current.media_group_id,
            reply_to_message_id=current.reply_to_message_id,
            **fields,
        )
        return self._bot_message_dict(message)

    def _answer_callback_query(self, params: dict[str, Any]) -> bool:
        query = self._queries.get(str(params.get("callback_query_id", "")))
        if (
            query is None
            or query.answers
            or time.monotonic() - query.created > self.callback_query_ttl
        ):
            raise _bad(QUERY_TOO_OLD)
        if utf16_len(str(params.get("text") or "")) > 200:
            raise _bad("Bad Request: MESSAGE_TOO_LONG")
        query.answers.append({k: v for k, v in params.items() if k != "callback_query_id"})
        self._changed()
        return True

    def _delete_message(self, params: dict[str, Any]) -> bool:
        user = self._chat(params)
        key = (user.chat_id, params.get("message_id"))
        if key in self._user_messages:
            del self._user_messages[key]
            return True
        message = self._messages.get(key)  # type: ignore[arg-type]
        if message is None or message.deleted:
            raise _bad(MESSAGE_TO_DELETE_NOT_FOUND)
        message.deleted = True
        self._changed()
        return True

    def _get_file(self, params: dict[str, Any]) -> dict[str, Any]:
        stored = self._files.get(str(params.get("file_id") or ""))
        if stored is None:
            raise _bad(INVALID_FILE_ID)
        if stored.size > MAX_DOWNLOAD:
            raise _bad(FILE_TOO_BIG)
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": stored.size,
            "file_path": stored.file_path,
        }


_FILE_ID_PREFIX = {
    "photo": "AgAC",
    "thumbnail": "AgAC",
    "document": "BQAC",
    "sticker": "CAAC",
    "voice": "AwAC",
    "video": "BAAC",
}
_FOLDERS = {
    "photo": ("photos", ".jpg"),
    "thumbnail": ("thumbnails", ".jpg"),
    "document": ("documents", ""),
    "sticker": ("stickers", ".webp"),
    "voice": ("voice", ".oga"),
    "video": ("videos", ".mp4"),
}


def _carry(v: MessageVersion) -> dict[str, Any]:
    """The media fields an edit of the caption or keyboard keeps."""
    return {
        "kind": v.kind,
        "photo": v.photo,
        "photo_sizes": v.photo_sizes,
        "document": v.document,
        "file_name": v.file_name,
        "mime_type": v.mime_type,
        "file_id": v.file_id,
        "media_group_id": v.media_group_id,
        "reply_to_message_id": v.reply_to_message_id,
    }


def _format_key(source: str | None, parse_mode: Any, entities: Any) -> Any:
    """What decides a message's formatting (for "message is not modified")."""
    if parse_mode:
        return (str(parse_mode).lower(), source)
    return entities or None


def _scope_key(scope: Any) -> str:
    if not scope:
        return json.dumps({"type": "default"})
    return json.dumps(scope, sort_keys=True)


def _allowed(update: dict[str, Any], allowed: Any) -> bool:
    if not allowed:
        return True
    return any(kind in update for kind in allowed)


def _token_error(token: str) -> tuple[int, str]:
    """Telegram: 404 for a malformed token, 401 for a well-formed but wrong one."""
    bot_id, _, secret = token.partition(":")
    if bot_id.isdigit() and len(secret) >= 30:
        return 401, UNAUTHORIZED
    return 404, NOT_FOUND


def _check_markup(markup: Any) -> dict[str, Any] | None:
    if markup is None:
        return None
    if not isinstance(markup, dict):
        raise _bad(MARKUP_UNPARSABLE)
    if "inline_keyboard" not in markup:
        return markup
    rows = markup["inline_keyboard"]
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise _bad(
            'Bad Request: field "inline_keyboard" of the InlineKeyboardMarkup should be an '
            "Array of Arrays"
        )
    for row in rows:
        for button in row:
            if not isinstance(button, dict) or not button.get("text"):
                raise _bad(TEXT_BUTTONS_UNALLOWED)
            if not any(key in button for key in INLINE_BUTTON_ACTIONS):
                raise _bad(TEXT_BUTTONS_UNALLOWED)
            if "callback_data" in button:
                data = button["callback_data"]
                if not isinstance(data, str) or not 1 <= len(data.encode()) <= 64:
                    raise _bad(BUTTON_DATA_INVALID)
            if "url" in button and not str(button["url"]).startswith(
                ("http://", "https://", "tg://")
            ):
                raise _bad(BUTTON_URL_INVALID)
    return markup


def _coerce(name: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    if name in JSON_FIELDS:
        try:
            return json.loads(value)
        except ValueError:
            if name == "reply_markup":
                raise _bad(MARKUP_UNPARSABLE) from None
            raise _bad(f"Bad Request: can't parse {name} JSON object") from None
    if name in INT_FIELDS:
        try:
            return int(value)
        except ValueError:
            raise _bad(f"Bad Request: wrong parameter {name} in request") from None
    if name in ("chat_id", "user_id") and value.lstrip("-").isdigit():
        return int(value)
    if value in ("true", "false") and name not in ("text", "caption"):
        return value == "true"
    return value


async def _read_params(request: web.Request) -> dict[str, Any]:
    """The request's parameters from the query string and a JSON, form or multipart body."""
    raw: dict[str, Any] = dict(request.query)
    if request.body_exists:
        ctype = request.content_type
        if ctype == "application/json":
            try:
                body = await request.json()
            except ValueError:
                raise _bad("Bad Request: can't parse JSON body") from None
            if isinstance(body, dict):
                raw.update(body)
        elif ctype in ("multipart/form-data", "application/x-www-form-urlencoded"):
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, web.FileField):
                    try:
                        raw[key] = Upload(value.file.read(), value.filename, value.content_type)
                    finally:
                        value.file.close()
                else:
                    raw[key] = value
    return {key: _coerce(key, value) for key, value in raw.items()}


def _error_response(
    status: int, description: str, parameters: dict[str, Any] | None = None
) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if parameters:
        body["parameters"] = parameters
    return web.json_response(body, status=status)
