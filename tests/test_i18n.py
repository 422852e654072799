"""Languages: the gettext catalogs, the sentences in them, and a Russian-speaking user end to end.

- every sentence the bot sends comes from `bot.texts` (an AST scan of bot/), every msgid of
  bot/texts.py is in the template, and the template is what `pybabel extract` finds now;
- every language has every message translated (not fuzzy, same placeholders, every plural
  form), and its compiled `.mo` is up to date (`make locale`);
- a user whose Telegram speaks Russian gets /start, /help and a whole painting in Russian;
  `/language en` switches them to English and survives a restart; the command menu and the
  bot's descriptions are registered in every language.
"""

from __future__ import annotations

import ast
import asyncio
import re
import string
from pathlib import Path
from typing import Any

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from bot import i18n, texts
from bot.i18n import SUPPORTED_LANGUAGES, use_language
from bot.storage import ImageTooLarge, InvalidName, validate_preset_name
from engine import images
from engine.errors import ImageError
from engine.job import FailureCode
from tests.bot_harness import bot_settings, fake_telegram_fixture, running_bot  # noqa: F401
from tests.conftest import REPO_DIR
from tests.fake_telegram import FakeTelegram, FakeUser
from tests.test_bot_e2e import PHOTO, STYLE, QuickExecutor, is_result, seed_presets

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

BOT_DIR = REPO_DIR / "bot"
TEMPLATE = BOT_DIR / "locale" / "stylebot.pot"
TRANSLATED = [code for code in SUPPORTED_LANGUAGES if code != i18n.DEFAULT_LANGUAGE]
CYRILLIC = re.compile("[а-яё]", re.IGNORECASE)
LATIN_WORD = re.compile(r"\b[a-z]{4,}\b")


def _po(language: str) -> Catalog:
    path = BOT_DIR / "locale" / language / "LC_MESSAGES" / "stylebot.po"
    with path.open("rb") as f:
        return read_po(f, locale=language)


def _template() -> Catalog:
    with TEMPLATE.open("rb") as f:
        return read_po(f)


def _key(message: Any) -> tuple[str | None, str]:
    msgid = message.id[0] if isinstance(message.id, tuple) else message.id
    return message.context, msgid


def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


# -- the catalogs -----------------------------------------------------------------------------
def test_russian_is_supported() -> None:
    assert SUPPORTED_LANGUAGES[0] == "en" and "ru" in SUPPORTED_LANGUAGES


def test_template_is_what_extraction_finds_now() -> None:
    """`make messages` was run after the last change of a sentence (README, "Languages")."""
    method_map = [("bot/**.py", "python")]
    found = {
        (context, msgid[0] if isinstance(msgid, tuple) else msgid)
        for _file, _line, msgid, _comments, context in extract_from_dir(
            str(REPO_DIR), method_map=method_map
        )
    }
    template = {_key(m) for m in _template() if m.id}
    assert found - template == set(), "sentences missing from bot/locale/stylebot.pot"
    assert template - found == set(), "sentences in the template that the code no longer has"


def test_every_sentence_of_texts_is_a_msgid() -> None:
    template = {_key(m)[1] for m in _template() if m.id}
    constants = set(texts._CONSTANTS.values())
    failures = set(texts.JOB_FAILURES.values())
    help_words = {w for _c, what, example in texts._HELP_COMMANDS for w in (what, example)}
    assert constants <= template
    assert failures <= template
    # examples that are only a command and ASCII arguments need no translation
    untranslated = {w for w in help_words - template if not re.fullmatch(r"/[a-z_]+( \w+)?", w)}
    assert untranslated == set()
    # a constant not in _CONSTANTS would not be translated: only symbols may be plain
    plain = {
        name: value
        for name, value in vars(texts).items()
        if name.isupper() and isinstance(value, str)
    }
    assert all(not re.search(r"[^\W\d_]", value) for value in plain.values()), plain


@pytest.mark.parametrize("language", TRANSLATED)
def test_every_message_is_translated(language: str) -> None:
    catalog = _po(language)
    template = _template()
    assert catalog.num_plurals == (3 if language == "ru" else catalog.num_plurals)
    problems = []
    for message in template:
        if not message.id:
            continue
        translated = catalog.get(message.id, context=message.context)
        if translated is None:
            problems.append(f"missing: {message.id!r}")
            continue
        if translated.fuzzy:
            problems.append(f"fuzzy: {message.id!r}")
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        strings = (
            translated.string if isinstance(translated.string, tuple) else (translated.string,)
        )
        if isinstance(message.id, tuple) and len(strings) != catalog.num_plurals:
            problems.append(f"plural forms: {message.id!r}")
        wanted = set().union(*(_placeholders(i) for i in ids))
        for text in strings:
            if not text or not text.strip():
                problems.append(f"empty: {message.id!r}")
            elif _placeholders(text) != wanted:
                problems.append(f"placeholders {_placeholders(text)} != {wanted}: {text!r}")
    assert problems == []


@pytest.mark.parametrize("language", TRANSLATED)
def test_compiled_catalog_is_up_to_date(language: str) -> None:
    """The `.mo` file (built by `make locale`) says what the `.po` file says."""
    compiled = i18n.translations(language)
    for message in _po(language):
        if not message.id or message.fuzzy:
            continue
        if isinstance(message.id, tuple):
            for n, expected in ((1, message.string[0]), (5, message.string[-1])):
                assert compiled.ngettext(message.id[0], message.id[1], n) == expected
        elif message.context:
            assert compiled.pgettext(message.context, message.id) == message.string
        else:
            assert compiled.gettext(message.id) == message.string


# -- no sentence outside the catalog ----------------------------------------------------------
SENDERS = {
    "reply": ["text"],
    "send_text": ["text"],
    "answer_query": ["text"],
    "safe_edit_text": ["text"],
    "send_message": ["text"],
    "send_photo": ["caption"],
    "send_document": ["caption"],
    "edit_message_text": ["text"],
    "edit_message_caption": ["caption"],
    "answer": ["text"],
    "reply_text": ["text"],
    "edit_text": ["text"],
    "InlineKeyboardButton": ["text"],
    "BotCommand": ["description"],
    "set_my_description": ["description"],
    "set_my_short_description": ["short_description"],
}


def _words(node: ast.AST) -> bool:
    """A string literal (or f-string) with letters in it: a sentence someone wrote here."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return bool(re.search(r"[^\W\d_]", node.value))
    if isinstance(node, ast.JoinedStr):
        return any(_words(v) for v in node.values)
    if isinstance(node, ast.BinOp):
        return _words(node.left) or _words(node.right)
    return False


def test_no_sentence_is_sent_from_outside_texts() -> None:
    found = []
    for path in sorted(BOT_DIR.rglob("*.py")):
        if path.name in ("texts.py", "i18n.py"):
            continue
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name not in SENDERS:
                continue
            args = [*node.args, *(k.value for k in node.keywords if k.arg in SENDERS[name])]
            found += [
                f"{path.relative_to(REPO_DIR)}:{arg.lineno}: {ast.unparse(arg)}"
                for arg in args
                if _words(arg)
            ]
    assert found == [], "put these sentences in bot/texts.py"


def test_every_texts_name_used_by_the_bot_exists() -> None:
    """`texts.X` is looked up when used (module __getattr__), so mypy cannot see a typo."""
    missing = []
    for path in sorted(BOT_DIR.rglob("*.py")):
        tree = ast.parse(path.read_text())
        imports_texts = any(
            isinstance(node, ast.ImportFrom)
            and node.module == "bot"
            and any(alias.name == "texts" and alias.asname is None for alias in node.names)
            for node in ast.walk(tree)
        )
        if not imports_texts:
            continue
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "texts"
                and not hasattr(texts, node.attr)
            ):
                missing.append(f"{path.name}: texts.{node.attr}")
    assert missing == []


# -- translating --------------------------------------------------------------------------------
def test_constants_and_functions_speak_the_current_language() -> None:
    english = texts.START
    with use_language("ru"):
        russian = texts.START
        assert CYRILLIC.search(texts.queued(3)) and "3" in texts.queued(3)
        assert texts.BTN_STRONGER == "Сильнее +"
        assert texts.too_many_presets(2) != texts.too_many_presets(5)  # стиля / стилей
        assert all(CYRILLIC.search(what) for _c, what, _e in texts.HELP_COMMANDS)
    assert CYRILLIC.search(russian) and not CYRILLIC.search(english)
    assert english == texts.START  # the block ended: English again
    with use_language("pt-BR"):  # no catalog: English
        assert english == texts.START
    with use_language("ru-RU"):
        assert russian == texts.START
    with pytest.raises(AttributeError):
        _ = texts.NO_SUCH_SENTENCE


def _refusals() -> list[ImageError]:
    """One of each engine refusal, with the engine's own variants of the sentence."""
    found: list[ImageError] = []
    classes: list[type[ImageError]] = [ImageError]
    while classes:
        cls = classes.pop()
        classes += cls.__subclasses__()
        if cls.__module__ == "engine.images" and not cls.__name__.startswith("_"):
            found.append(cls())
    for data in (
        b"",
        b"hello, not a picture",
        b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>',
        b"\0\0\0\x18ftypheic" + bytes(64),
        b"\0\0\0\x18ftypavif" + bytes(64),
        b"\xff\xd8" + bytes(images.MAX_BYTES + 1),
    ):
        try:
            images.decode_image(data)
        except ImageError as exc:
            found.append(exc)
    return found


def test_every_engine_refusal_is_translated() -> None:
    refusals = _refusals()
    assert {e.code for e in refusals} >= {
        "empty_file",
        "not_an_image",
        "unsupported_format",
        "corrupt_image",
        "image_too_large",
        "image_too_small",
        "extreme_aspect",
    }
    assert {e.code for e in refusals} <= texts.IMAGE_REFUSAL_CODES
    for exc in refusals:
        english = texts.image_refused(exc.code, str(exc))
        with use_language("ru"):
            russian = texts.image_refused(exc.code, str(exc))
            failed = texts.job_failed(exc.code, str(exc))
        assert CYRILLIC.search(russian) and not LATIN_WORD.search(russian.replace("WebP", "")), (
            russian
        )
        assert russian in failed
        assert not CYRILLIC.search(english)
    with use_language("ru"):
        heic = texts.image_refused("unsupported_format", "HEIC photos are not supported, ...")
        assert "HEIC" in heic
        # a code the bot does not know yet: the engine's own sentence rather than nothing
        assert texts.image_refused("new_case", "Brand new refusal.") == "Brand new refusal."
        assert texts.job_failed("new_case", "Brand new.") == texts.failed("Brand new.")
        assert texts.job_failed("new_case") == texts.job_failed(FailureCode.FAILED)


def test_every_job_failure_is_translated() -> None:
    for code in FailureCode:
        with use_language("ru"):
            line = texts.job_failed(code)
        assert line.startswith("❌") and CYRILLIC.search(line) and not LATIN_WORD.search(line)


@pytest.mark.parametrize(
    "name",
    [None, "", "   ", "x" * 40, "bad/name", "a\x07b", "zero\u200bwidth", "-dash first"],
)
def test_every_preset_name_refusal_is_translated(name: Any) -> None:
    with pytest.raises(InvalidName) as refused:
        validate_preset_name(name)
    reason = str(refused.value)
    with use_language("ru"):
        sentence = texts.name_refused(reason)
    assert CYRILLIC.search(sentence), sentence
    assert not LATIN_WORD.search(sentence.replace("control", "")), sentence
    assert texts.name_refused(reason).startswith("That name won't work")


def test_picture_too_large_to_keep_is_translated() -> None:
    reason = str(ImageTooLarge(3_100_000, 2_000_000))
    with use_language("ru"):
        sentence = texts.name_refused(reason)
    assert "3.1" in sentence and "2.0" in sentence and not LATIN_WORD.search(sentence)


# -- end to end ---------------------------------------------------------------------------------
@pytest.fixture
def settings(tmp_path: Path, fake_telegram: FakeTelegram, test_weights: str) -> Any:
    return bot_settings(tmp_path, fake_telegram, weights=test_weights)


def in_russian(function: Any, *args: Any, **kwargs: Any) -> Any:
    with use_language("ru"):
        return function(*args, **kwargs)


def russian_constant(name: str) -> str:
    with use_language("ru"):
        return str(getattr(texts, name))


async def test_a_russian_speaking_user_gets_everything_in_russian(
    settings: Any, fake_telegram: FakeTelegram
) -> None:
    await seed_presets(settings, ("starry_night",))
    executor = QuickExecutor(steps=4, delay=0.05)
    async with running_bot(settings, executor=executor):
        user = fake_telegram.user(2001, "Иван", language_code="ru")
        await user.send_text("/start")
        start = await user.wait_for_message()
        assert start.text == russian_constant("START")
        await user.send_text("/help")
        help_msg = await user.wait_for_message()
        assert help_msg.text == in_russian(texts.help_text, ["starry_night"])
        await user.send_text("/frobnicate")
        await user.wait_for_message(lambda v: v.text == russian_constant("UNKNOWN_COMMAND"))

        # a whole painting: prompt, status (queued → progress → done), preview, result, buttons
        await user.send_photo(PHOTO)
        await user.wait_for_message(lambda v: v.content == in_russian(texts.content_received, True))
        await user.send_photo(STYLE)
        result = await user.wait_for_message(is_result)
        caption = result.caption or ""
        assert "сила 3/5" in caption and caption.endswith(in_russian(texts.format_seconds, 1.5))
        labels = [b["text"] for b in result.buttons]
        assert russian_constant("BTN_STRONGER") in labels
        assert in_russian(texts.btn_colors, False) in labels
        status = next(
            m for m in user.messages() if m.versions[0].text and "⏳" in m.versions[0].text
        )
        assert all(CYRILLIC.search(v.text or "") for v in status.versions), status.versions
        assert status.text is not None and status.text.startswith("✅ Готово")
        previews = [m for m in user.messages() if m.caption == russian_constant("PREVIEW_CAPTION")]
        assert len(previews) == 1

        # a refused picture, and a button pressed that has expired
        await user.send_document(b"hello, not a picture", "x.jpg", "image/jpeg")
        refused = await user.wait_for_message()
        assert refused.text == in_russian(texts.image_refused, "not_an_image")
        query = await user.press(result, "garbage", check=False)
        answer = await fake_telegram.wait_for_callback_answer(query)
        assert answer.get("text") == russian_constant("BAD_BUTTON")
        # every message the bot sent this user is Russian
        sent = [m.content for m in user.messages() if m.content and m.kind != "photo"]
        assert sent and all(CYRILLIC.search(t) for t in sent), sent


async def test_language_command_switches_and_survives_a_restart(
    settings: Any, fake_telegram: FakeTelegram
) -> None:
    async with running_bot(settings, executor=QuickExecutor()):
        user = fake_telegram.user(2002, "Мария", language_code="ru")
        await user.send_text("/language")
        shown = await user.wait_for_message()
        assert shown.text == in_russian(texts.language_status, "Русский", True)
        await user.send_text("/language klingon")
        await user.wait_for_message(
            lambda v: v.text == in_russian(texts.language_unknown, "klingon")
        )
        await user.send_text("/language en")
        await user.wait_for_message(lambda v: v.text == texts.language_set("English", False))
        await user.send_text("/start")
        await user.wait_for_message(lambda v: v.text == texts.START)
        await _two_photos_in_english(user)
    async with running_bot(settings, executor=QuickExecutor()):
        await user.send_text("/start")
        await user.wait_for_message(lambda v: v.text == texts.START)
        await user.send_text("/language")
        await user.wait_for_message(lambda v: v.text == texts.language_status("English", False))
        await user.send_text("/language auto")
        await user.wait_for_message(
            lambda v: v.text == in_russian(texts.language_set, "Русский", True)
        )
        await user.send_text("/start")
        await user.wait_for_message(lambda v: v.text == russian_constant("START"))
        # an English speaker may choose Russian
        other = fake_telegram.user(2003, "Ann", language_code="en")
        await other.send_text("/language ru")
        await other.wait_for_message(
            lambda v: v.text == in_russian(texts.language_set, "Русский", False)
        )
        await other.send_text("/help")
        await other.wait_for_message(lambda v: bool(v.text and CYRILLIC.search(v.text)))


async def _two_photos_in_english(user: FakeUser) -> None:
    await user.send_photo(PHOTO)
    await user.wait_for_message(lambda v: v.content == texts.content_received(False))
    await user.send_photo(STYLE)
    result = await user.wait_for_message(is_result)
    assert "strength 3/5" in (result.caption or "")
    done = [m for m in user.messages() if (m.text or "").startswith("✅")]
    assert done and done[-1].text == texts.done(1.5)


async def test_languages_do_not_leak_between_concurrent_updates(
    settings: Any, fake_telegram: FakeTelegram
) -> None:
    async with running_bot(settings, executor=QuickExecutor(capacity=2)):
        people = [
            fake_telegram.user(3000 + i, language_code="ru" if i % 2 else "en") for i in range(8)
        ]
        for _ in range(3):
            await asyncio.gather(*(p.send_text("/start") for p in people))
        await fake_telegram.wait_until_confirmed()
        for person in people:
            for _ in range(3):
                await person.wait_for_message()
            expected = russian_constant("START") if person.language_code == "ru" else texts.START
            assert [m.text for m in person.messages()] == [expected] * 3


async def test_menus_and_descriptions_are_registered_in_every_language(
    settings: Any, fake_telegram: FakeTelegram
) -> None:
    await seed_presets(settings, ("starry_night",))
    async with running_bot(settings, executor=QuickExecutor()):
        default = {c["command"]: c["description"] for c in fake_telegram.my_commands()}
        russian = {
            c["command"]: c["description"] for c in fake_telegram.my_commands(language_code="ru")
        }
        assert set(default) == set(russian)
        assert "language" in default and "starry_night" in default
        assert default["language"] == dict((c, w) for c, w, _e in texts.HELP_COMMANDS)["language"]
        assert CYRILLIC.search(russian["help"]) and not CYRILLIC.search(default["help"])
        for short in (False, True):
            english = fake_telegram.my_description(short=short)
            in_ru = fake_telegram.my_description("ru", short=short)
            assert english and not CYRILLIC.search(english)
            assert in_ru and CYRILLIC.search(in_ru)
        assert fake_telegram.my_description() == texts.BOT_DESCRIPTION
        assert fake_telegram.my_description("ru", short=True) == russian_constant(
            "BOT_SHORT_DESCRIPTION"
        )


async def test_the_gate_and_the_error_handler_speak_the_update_language_too(
    tmp_path: Path, fake_telegram: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Group -100 sets the language; the rate-limit gate (group -1) and the error handler run
    later in the same update, and speak it."""
    settings = bot_settings(tmp_path, fake_telegram, STYLEBOT_RATE_LIMIT=3)

    def broken(_: Any) -> str:
        raise RuntimeError("boom")

    monkeypatch.setattr(texts, "help_text", broken)
    async with running_bot(settings, executor=QuickExecutor()):
        user = fake_telegram.user(4001, language_code="ru")
        await user.send_text("/help")
        crash = await user.wait_for_message()
        ref = (crash.text or "").split("(код ")[-1].split(")")[0]
        assert crash.text == in_russian(texts.internal_error, ref)
        for _ in range(6):
            await user.send_text("привет")
        await user.wait_for_message(lambda v: (v.text or "").startswith("Вы пишете быстрее"))
        hints = [m.text for m in user.messages()][1:]
        assert hints.count(russian_constant("TEXT_HINT")) == 2
