"""The language of each update, and /language.

`set_update_language` runs first for every update (handler group -100, blocking): it sets
`bot.i18n`'s context variable to the sender's choice made with /language (kept in SQLite),
else their Telegram app's language. python-telegram-bot runs all groups of one update in
one coroutine, so every later handler, and the error handler, speaks that language.

Choices are cached in memory (`LanguageCache`, in `bot_data`): a returning user costs no
database read per update. Only /language writes the choice, and it updates the cache too.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from telegram import Update

from bot import texts
from bot.i18n import SUPPORTED_LANGUAGES, language_name, resolve_language, set_language
from bot.services import Context, get_services
from bot.telegram_io import reply

CACHE_KEY = "stylebot_languages"
AUTO = "auto"


class LanguageCache:
    """The /language choice (None: follow Telegram) of recently seen users, at most `size`."""

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._choices: OrderedDict[int, str | None] = OrderedDict()

    def get(self, user_id: int) -> tuple[bool, str | None]:
        """(known, choice)."""
        if user_id not in self._choices:
            return False, None
        self._choices.move_to_end(user_id)
        return True, self._choices[user_id]

    def put(self, user_id: int, choice: str | None) -> None:
        self._choices[user_id] = choice
        self._choices.move_to_end(user_id)
        while len(self._choices) > self.size:
            self._choices.popitem(last=False)


def _cache(context: Context) -> LanguageCache:
    bot_data: dict[str, Any] = context.bot_data
    cache = bot_data.get(CACHE_KEY)
    if not isinstance(cache, LanguageCache):
        cache = bot_data[CACHE_KEY] = LanguageCache()
    return cache


async def chosen_language(context: Context, user_id: int) -> str | None:
    """The user's /language choice, None when they follow Telegram (or are new)."""
    cache = _cache(context)
    known, choice = cache.get(user_id)
    if not known:
        user = await get_services(context).storage.get_user(user_id)
        choice = user.language if user is not None else None
        cache.put(user_id, choice)
    return choice


async def set_update_language(update: Update, context: Context) -> None:
    """Group -100: the language of everything said while handling this update."""
    user = update.effective_user
    if user is None:
        set_language(None)
        return
    set_language(resolve_language(await chosen_language(context, user.id), user.language_code))


async def cmd_language(update: Update, context: Context) -> None:
    """/language en|ru|auto; without an argument, what is spoken now and the choices."""
    tg_user = update.effective_user
    if tg_user is None:
        return
    services = get_services(context)
    user = await services.ensure_sender(update)
    args = [a.lower() for a in context.args or []]
    if not args:
        language = resolve_language(user.language, tg_user.language_code)
        await reply(update, texts.language_status(language_name(language), user.language is None))
        return
    wanted = args[0]
    if len(args) != 1 or (wanted != AUTO and wanted not in SUPPORTED_LANGUAGES):
        await reply(update, texts.language_unknown(" ".join(args)))
        return
    choice = None if wanted == AUTO else wanted
    await services.storage.update_user_settings(user.user_id, language=choice)
    _cache(context).put(user.user_id, choice)
    # the answer, and the rest of this update, in the language just chosen
    language = set_language(resolve_language(choice, tg_user.language_code))
    await reply(update, texts.language_set(language_name(language), choice is None))
