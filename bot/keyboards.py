"""Inline keyboards and their callback data.

Callback data is compact, versioned text: ``"1" + action + ":" + fields``, for example
``1r:3f2a…:w`` (result of job 3f2a…, make it weaker). Telegram allows at most 64 bytes; every
encoder checks that (`CallbackDataTooLong`) before anything is sent. `parse` never raises: it
returns `None` for anything it does not understand (old versions, garbage, tampering).

Buttons reference ids stored in SQLite or on disk (job ids, preset ids, picture-pair ids), never
in-memory state, so old messages keep working after a restart.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot import texts

VERSION = "1"
MAX_CALLBACK_BYTES = 64
PAGE_SIZE = 10
"""Styles a page: one gallery contact sheet (`bot.gallery`)."""

# actions
STYLE = "p"  # pick a style for the photo of a pair: pair, preset_id
STYLE_PAGE = "g"  # page through the style buttons: pair ("-" for none), page
APPLY = "a"  # make a preset the active style: preset_id
DELETE = "d"  # delete one of your presets: preset_id
LIST_PAGE = "l"  # page through /presets: page
RESULT = "r"  # a button under a result: job_id, op
CANCEL = "x"  # cancel a job: job_id
SIZE = "z"  # choose a size: size
MIX_PICK = "k"  # mix the style of a result with a preset, painting warm from it: job_id, preset_id
MIX_PAGE = "q"  # page through the mix choices: job_id, page
BRUSH = "b"  # choose a brush size: level index

# result operations
WEAKER = "w"
STRONGER = "s"
COLORS = "c"
SAVE_STYLE = "v"
NEW_STYLE = "n"
FULL_RES = "f"
MIX = "m"
FINER = "i"
BIGGER = "o"
RESULT_OPS = frozenset(
    {WEAKER, STRONGER, COLORS, SAVE_STYLE, NEW_STYLE, FULL_RES, MIX, FINER, BIGGER}
)

# Brush sizes (the engine's style_scale), finest first: /brush small|medium|large are the middle
# three; the buttons under a painting step one level along the whole ladder.
BRUSH_LEVELS: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)
BRUSH_NAMES: dict[float, str] = {0.5: "small", 1.0: "medium", 2.0: "large"}
"""/brush's words for the middle three levels."""

NO_PAIR = "-"
_ID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
_PAIR = re.compile(r"^[0-9a-f]{12}$")
_INT = re.compile(r"^[0-9]{1,9}$")


class CallbackDataTooLong(ValueError):
    """Callback data over Telegram's 64-byte limit (a programming error, caught before sending)."""


class PresetLike(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def owner_id(self) -> int | None: ...


@dataclass(frozen=True)
class Callback:
    action: str
    pair: str | None = None
    preset_id: int | None = None
    page: int = 0
    job_id: str | None = None
    op: str | None = None
    size: int | None = None
    level: int | None = None


def _pack(action: str, *fields: object) -> str:
    data = VERSION + action + (":" + ":".join(str(f) for f in fields) if fields else "")
    if len(data.encode("utf-8")) > MAX_CALLBACK_BYTES:
        raise CallbackDataTooLong(f"callback data is {len(data.encode())} bytes: {data!r}")
    return data


def _check_id(value: str, pattern: re.Pattern[str], what: str) -> str:
    if not pattern.match(value):
        raise ValueError(f"bad {what} for callback data: {value!r}")
    return value


# -- encoders ---------------------------------------------------------------------------------
def style_data(pair: str, preset_id: int) -> str:
    return _pack(STYLE, _check_id(pair, _PAIR, "pair id"), int(preset_id))


def style_page_data(pair: str | None, page: int) -> str:
    pair_field = NO_PAIR if pair is None else _check_id(pair, _PAIR, "pair id")
    return _pack(STYLE_PAGE, pair_field, max(0, int(page)))


def apply_data(preset_id: int) -> str:
    return _pack(APPLY, int(preset_id))


def delete_data(preset_id: int) -> str:
    return _pack(DELETE, int(preset_id))


def list_page_data(page: int) -> str:
    return _pack(LIST_PAGE, max(0, int(page)))


def result_data(job_id: str, op: str) -> str:
    if op not in RESULT_OPS:
        raise ValueError(f"unknown result operation {op!r}")
    return _pack(RESULT, _check_id(job_id, _ID, "job id"), op)


def cancel_data(job_id: str) -> str:
    return _pack(CANCEL, _check_id(job_id, _ID, "job id"))


def size_data(size: int) -> str:
    return _pack(SIZE, int(size))


def mix_pick_data(job_id: str, preset_id: int) -> str:
    return _pack(MIX_PICK, _check_id(job_id, _ID, "job id"), int(preset_id))


def mix_page_data(job_id: str, page: int) -> str:
    return _pack(MIX_PAGE, _check_id(job_id, _ID, "job id"), max(0, int(page)))


def brush_data(level: int) -> str:
    if not 0 <= level < len(BRUSH_LEVELS):
        raise ValueError(f"no brush level {level}")
    return _pack(BRUSH, int(level))


# -- parser -----------------------------------------------------------------------------------
def parse(data: object) -> Callback | None:
    """The `Callback` that `data` encodes, or None. Never raises."""
    try:
        return _parse(data)
    except Exception:
        return None


def _parse(data: object) -> Callback | None:
    if not isinstance(data, str) or len(data.encode("utf-8")) > MAX_CALLBACK_BYTES:
        return None
    if len(data) < 2 or data[0] != VERSION:
        return None
    action = data[1]
    rest = data[2:]
    fields = rest[1:].split(":") if rest.startswith(":") else ([] if rest == "" else None)
    if fields is None:
        return None

    def integer(text: str) -> int | None:
        return int(text) if _INT.match(text) else None

    if action == STYLE and len(fields) == 2:
        pair, preset = fields
        preset_id = integer(preset)
        if _PAIR.match(pair) and preset_id is not None:
            return Callback(STYLE, pair=pair, preset_id=preset_id)
    elif action == STYLE_PAGE and len(fields) == 2:
        pair, page_text = fields
        page = integer(page_text)
        if page is not None and (pair == NO_PAIR or _PAIR.match(pair)):
            return Callback(STYLE_PAGE, pair=None if pair == NO_PAIR else pair, page=page)
    elif action in (APPLY, DELETE) and len(fields) == 1:
        preset_id = integer(fields[0])
        if preset_id is not None:
            return Callback(action, preset_id=preset_id)
    elif action == LIST_PAGE and len(fields) == 1:
        page = integer(fields[0])
        if page is not None:
            return Callback(LIST_PAGE, page=page)
    elif action == RESULT and len(fields) == 2:
        job_id, op = fields
        if _ID.match(job_id) and op in RESULT_OPS:
            return Callback(RESULT, job_id=job_id, op=op)
    elif action == CANCEL and len(fields) == 1:
        if _ID.match(fields[0]):
            return Callback(CANCEL, job_id=fields[0])
    elif action == SIZE and len(fields) == 1:
        size = integer(fields[0])
        if size is not None:
            return Callback(SIZE, size=size)
    elif action in (MIX_PICK, MIX_PAGE) and len(fields) == 2:
        job_id, number_text = fields
        number = integer(number_text)
        if _ID.match(job_id) and number is not None:
            if action == MIX_PICK:
                return Callback(MIX_PICK, job_id=job_id, preset_id=number)
            return Callback(MIX_PAGE, job_id=job_id, page=number)
    elif action == BRUSH and len(fields) == 1:
        level = integer(fields[0])
        if level is not None and level < len(BRUSH_LEVELS):
            return Callback(BRUSH, level=level)
    return None


# -- keyboards --------------------------------------------------------------------------------
def _button(text: str, data: str) -> InlineKeyboardButton:
    if len(data.encode("utf-8")) > MAX_CALLBACK_BYTES:  # encoders check too; belt and braces
        raise CallbackDataTooLong(data)
    return InlineKeyboardButton(text, callback_data=data)


def page_count(total: int, page_size: int = PAGE_SIZE) -> int:
    return max(1, -(-total // page_size))


def clamp_page(page: int, total: int, page_size: int = PAGE_SIZE) -> int:
    return min(max(0, page), page_count(total, page_size) - 1)


def _numbered(number: int, label: str, numbered: bool) -> str:
    return f"{number}. {label}" if numbered else label


def _page(presets: Sequence[PresetLike], page: int) -> tuple[int, Sequence[PresetLike]]:
    """The page number (clamped) and its presets."""
    page = clamp_page(page, len(presets))
    return page, presets[page * PAGE_SIZE : (page + 1) * PAGE_SIZE]


def _paged(
    rows: list[list[InlineKeyboardButton]],
    page: int,
    count: int,
    page_data: Callable[[int], str],
) -> InlineKeyboardMarkup:
    """`rows`, with ◀ ▶ under them where there is a page before or after this one."""
    nav = []
    if page > 0:
        nav.append(_button(texts.BTN_PREV, page_data(page - 1)))
    if page < page_count(count) - 1:
        nav.append(_button(texts.BTN_NEXT, page_data(page + 1)))
    return InlineKeyboardMarkup([*rows, nav] if nav else rows)


def style_keyboard(
    presets: Sequence[PresetLike], *, pair: str | None, page: int = 0, numbered: bool = False
) -> InlineKeyboardMarkup | None:
    """Style buttons, 10 a page (the user's own first, as given), with ◀ ▶ when needed.

    With a `pair` (a photo is waiting) a button paints that photo; without one (e.g. /start)
    it makes the preset the active style. `numbered`: labels start with the tile's number on
    the page's contact sheet.
    """
    if not presets:
        return None
    page, chunk = _page(presets, page)
    buttons = [
        _button(
            _numbered(i + 1, texts.btn_preset(p.name, p.owner_id is not None), numbered),
            style_data(pair, p.id) if pair else apply_data(p.id),
        )
        for i, p in enumerate(chunk)
    ]
    rows = [buttons[i : i + 2] for i in range(0, len(buttons), 2)]
    return _paged(rows, page, len(presets), lambda n: style_page_data(pair, n))


def presets_list_keyboard(
    presets: Sequence[PresetLike], *, user_id: int, page: int = 0
) -> InlineKeyboardMarkup | None:
    """/presets: one row per preset, numbered as on the contact sheet: Apply, and Delete for
    the user's own."""
    if not presets:
        return None
    page, chunk = _page(presets, page)
    rows = []
    for number, p in enumerate(chunk, start=1):
        own = p.owner_id == user_id
        label = f"{number}. {texts.BTN_APPLY}: {texts.btn_preset(p.name, own)}"
        row = [_button(label, apply_data(p.id))]
        if own:
            row.append(_button(texts.BTN_DELETE, delete_data(p.id)))
        rows.append(row)
    return _paged(rows, page, len(presets), list_page_data)


def mix_keyboard(
    presets: Sequence[PresetLike], *, job_id: str, page: int = 0
) -> InlineKeyboardMarkup | None:
    """ "Mix with…": a button per preset of the page (numbered as on its contact sheet)."""
    if not presets:
        return None
    page, chunk = _page(presets, page)
    buttons = [
        _button(
            _numbered(i + 1, texts.btn_preset(p.name, p.owner_id is not None), True),
            mix_pick_data(job_id, p.id),
        )
        for i, p in enumerate(chunk)
    ]
    rows = [buttons[i : i + 2] for i in range(0, len(buttons), 2)]
    return _paged(rows, page, len(presets), lambda n: mix_page_data(job_id, n))


def brush_keyboard(current: float) -> InlineKeyboardMarkup:
    """/brush: small, medium, large (the middle three levels)."""
    buttons = [
        _button(texts.btn_brush(name, value == current), brush_data(BRUSH_LEVELS.index(value)))
        for value, name in BRUSH_NAMES.items()
    ]
    return InlineKeyboardMarkup([buttons])


def brush_step(current: float, step: int) -> float | None:
    """The brush size one level finer (-1) or bigger (+1), or None at the end of the ladder."""
    level = min(range(len(BRUSH_LEVELS)), key=lambda i: abs(BRUSH_LEVELS[i] - current))
    wanted = level + step
    return BRUSH_LEVELS[wanted] if 0 <= wanted < len(BRUSH_LEVELS) else None


def cancel_keyboard(job_id: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup([[_button(texts.BTN_CANCEL, cancel_data(job_id))]])


def result_keyboard(
    job_id: str, *, strength: int, colors: bool, can_save: bool = True, brush: float = 1.0
) -> InlineKeyboardMarkup:
    """Buttons under a result. Weaker/Stronger are left out at the ends of 1–5, Finer/Bigger
    strokes at the ends of the brush ladder."""
    strength_row = []
    if strength > 1:
        strength_row.append(_button(texts.BTN_WEAKER, result_data(job_id, WEAKER)))
    if strength < 5:
        strength_row.append(_button(texts.BTN_STRONGER, result_data(job_id, STRONGER)))
    rows = []
    if strength_row:
        rows.append(strength_row)
    brush_row = []
    if brush_step(brush, -1) is not None:
        brush_row.append(_button(texts.BTN_FINER, result_data(job_id, FINER)))
    if brush_step(brush, +1) is not None:
        brush_row.append(_button(texts.BTN_BIGGER, result_data(job_id, BIGGER)))
    if brush_row:
        rows.append(brush_row)
    rows.append(
        [
            _button(texts.btn_colors(colors), result_data(job_id, COLORS)),
            _button(texts.BTN_MIX, result_data(job_id, MIX)),
        ]
    )
    last = []
    if can_save:
        last.append(_button(texts.BTN_SAVE_STYLE, result_data(job_id, SAVE_STYLE)))
    last.append(_button(texts.BTN_NEW_STYLE, result_data(job_id, NEW_STYLE)))
    rows.append(last)
    rows.append([_button(texts.BTN_FULL_RES, result_data(job_id, FULL_RES))])
    return InlineKeyboardMarkup(rows)


def size_keyboard(
    sizes: Sequence[int], current: int, seconds: Mapping[int, float] | None = None
) -> InlineKeyboardMarkup:
    """One button per size, with the time a painting of that size takes when known."""
    seconds = seconds or {}
    buttons = [
        _button(texts.btn_size(s, s == current, seconds.get(s)), size_data(s)) for s in sizes
    ]
    per_row = 2 if seconds else 3  # a label with a time is twice as wide
    return InlineKeyboardMarkup([buttons[i : i + per_row] for i in range(0, len(buttons), per_row)])


def all_callback_data(markup: InlineKeyboardMarkup | None) -> list[str]:
    """Every callback_data string in a keyboard (for tests and the pre-send check)."""
    if markup is None:
        return []
    return [
        str(b.callback_data)
        for row in markup.inline_keyboard
        for b in row
        if b.callback_data is not None
    ]
