"""The language the bot speaks to the person it is answering, and gettext over it.

A context variable holds the language for the update (or job event) being handled, so that
`bot.texts` can translate without every call site passing a language around:

- for an update, the first handler group (`bot.handlers.language.set_update_language`) calls
  `set_language(...)`; python-telegram-bot runs every group of one update in the same
  coroutine, so the value holds for the rest of that update, and each update runs in its own
  task (`concurrent_updates`), so it never leaks into another one;
- outside updates (job status messages), `with use_language(job.meta.language):`.

Catalogs are gettext's: English msgids in `bot/texts.py`, translations in
`bot/locale/<lang>/LC_MESSAGES/stylebot.po`, compiled to `.mo` files by `make locale`
(`pybabel compile`). A language is supported when its `.po` file is there.
"""

from __future__ import annotations

import contextlib
import functools
import gettext as _gettext
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path

DOMAIN = "stylebot"
LOCALE_DIR = Path(__file__).resolve().parent / "locale"
DEFAULT_LANGUAGE = "en"
"""The language of the msgids (and of anyone whose language has no catalog)."""


def _catalog_languages() -> tuple[str, ...]:
    found = sorted(p.parent.parent.name for p in LOCALE_DIR.glob(f"*/LC_MESSAGES/{DOMAIN}.po"))
    return (DEFAULT_LANGUAGE, *(code for code in found if code != DEFAULT_LANGUAGE))


SUPPORTED_LANGUAGES: tuple[str, ...] = _catalog_languages()

_current: ContextVar[str] = ContextVar("stylebot_language", default=DEFAULT_LANGUAGE)


class CatalogMissing(RuntimeError):
    """A language has a `.po` file but no compiled `.mo` file (run `make locale`)."""


def supported(code: str | None) -> str | None:
    """The supported language a language tag means ("ru", "ru-RU", "RU" → "ru"), or None."""
    if not code:
        return None
    base = code.strip().lower().replace("_", "-").split("-", 1)[0]
    return base if base in SUPPORTED_LANGUAGES else None


def resolve_language(chosen: str | None, telegram_code: str | None) -> str:
    """What to speak: the user's /language choice, else their Telegram language, else English."""
    return supported(chosen) or supported(telegram_code) or DEFAULT_LANGUAGE


def current_language() -> str:
    return _current.get()


def set_language(code: str | None) -> str:
    """Speak `code` (a supported one, else the default) from now on in this context.

    For the update being handled; elsewhere prefer `use_language`, which undoes itself."""
    language = supported(code) or DEFAULT_LANGUAGE
    _current.set(language)
    return language


@contextlib.contextmanager
def use_language(code: str | None) -> Iterator[str]:
    """Speak `code` (a supported one, else the default) inside the block."""
    language = supported(code) or DEFAULT_LANGUAGE
    token = _current.set(language)
    try:
        yield language
    finally:
        _current.reset(token)


@functools.cache
def translations(language: str) -> _gettext.NullTranslations:
    """The compiled catalog of `language` (English, the msgids' language, needs none)."""
    if language == DEFAULT_LANGUAGE or language not in SUPPORTED_LANGUAGES:
        return _gettext.NullTranslations()
    try:
        return _gettext.translation(DOMAIN, LOCALE_DIR, languages=[language])
    except FileNotFoundError:
        raise CatalogMissing(
            f"no compiled catalog for {language!r} in {LOCALE_DIR}: run `make locale` "
            f"(pybabel compile -d bot/locale -D {DOMAIN})"
        ) from None


def check_catalogs() -> None:
    """Load every language's catalog now, so that a missing `.mo` stops the bot at start."""
    for language in SUPPORTED_LANGUAGES:
        translations(language)


def language_name(code: str) -> str:
    """A language's own name for itself ("English", "Русский")."""
    from babel import Locale  # only here: the rest of the bot needs no Babel at run time

    name = Locale.parse(code).get_display_name(code) or code
    return name[:1].upper() + name[1:]


# -- what bot.texts calls ---------------------------------------------------------------------
def gettext(message: str) -> str:
    return translations(_current.get()).gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return translations(_current.get()).ngettext(singular, plural, n)


def pgettext(context: str, message: str) -> str:
    return translations(_current.get()).pgettext(context, message)


def N_(message: str) -> str:
    """Marks a msgid for `pybabel extract` without translating it (translated when used)."""
    return message
