"""Every sentence the bot says, in one place, in the language of the person it answers.

Plain text (no Markdown/HTML parse mode), so user-chosen names never need escaping.
Functions build sentences that carry values; constants are fixed sentences.

The English sentences here are gettext msgids; their translations are in
`bot/locale/<lang>/LC_MESSAGES/stylebot.po` (see README, "Languages"). Everything is translated
when it is read, into `bot.i18n.current_language()`: functions call `_()` as they run, and the
constants (`texts.START`, …) are msgids in `_CONSTANTS`, translated by the module's
`__getattr__` on each access. `pybabel extract` finds every msgid through `_`, `N_`,
`ngettext` and `pgettext`. Placeholders are named (`{limit}`) and filled with `.format`
after translation, so translators can move them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from bot.i18n import N_, ngettext, pgettext
from bot.i18n import gettext as _
from bot.storage import PRESET_NAME_MAX
from engine.images import MAX_ASPECT, MAX_BYTES, MAX_PIXELS, MIN_SIDE
from engine.job import FailureCode

# Fixed sentences, by name: `texts.START` is `_(_CONSTANTS["START"])` (see `__getattr__`).
_CONSTANTS: dict[str, str] = {
    # -- greeting and help
    "START": N_(
        "Hi! I turn photos into paintings.\n\n"
        "Send me a photo, then a style picture — or pick a style below.\n"
        "A painting takes a minute or two; I show the progress as I go."
    ),
    # -- intake
    "NEED_PHOTO_FIRST": N_("Send me a photo first, then pick a style."),
    "ALBUM_EXTRA_IGNORED": N_("I used the first two pictures of the album (photo, then style)."),
    "DOWNLOADING_FAILED": N_("I couldn't download that file from Telegram. Please send it again."),
    "NOT_AN_IMAGE_FILE": N_(
        "That file isn't a picture I can read. Please send a photo (JPEG, PNG or WebP)."
    ),
    "ANIMATED_STICKER": N_(
        "Animated and video stickers can't be painted. Send a photo, or a static sticker."
    ),
    "ANIMATION_HINT": N_(
        "Animations can't be painted. Send a still picture (a photo or an image file)."
    ),
    "MEDIA_HINT": N_("I only work with pictures: send me a photo, then a style picture."),
    "TEXT_HINT": N_("Send me a photo to paint, or /help to see what I can do."),
    "UNKNOWN_COMMAND": N_("I don't know that command. /help lists what I can do."),
    # -- presets
    "NAME_RULES": N_("Names are 1–32 characters: letters, digits, spaces, - and _."),
    "SAVE_USAGE": N_("Give it a name: /save NAME (for example /save my sunset)."),
    "SAVE_NOTHING": N_("There's no style picture to save yet: send a photo, then a style picture."),
    "DELETE_USAGE": N_("Which one? /delete NAME — /presets lists your styles."),
    "NO_PRESETS": N_(
        "There are no styles yet. Send a picture as a style, then /save NAME to keep it."
    ),
    "STYLE_OFF": N_("No active style any more: send a photo, then a style picture."),
    "ADDPRESET_USAGE": N_("Send a picture with the caption /addpreset NAME."),
    # -- settings
    "STRENGTH_USAGE": N_(
        "Use a level from 1 (a hint) to 5 (style everywhere); 3 is classic. Example: /strength 4"
    ),
    "COLORS_USAGE": N_(
        "Use /colors on to keep your photo's colours, /colors off to take the style's."
    ),
    "SIZE_PROMPT": N_(
        "Pick the size of your paintings (long side, in pixels). Bigger takes longer."
    ),
    # -- jobs
    "STARTING": N_("🎨 Starting…"),
    "CANCELLED": N_("✖ Cancelled."),
    "PREVIEW_CAPTION": N_("Preview — still working…"),
    "RESULT_EXPIRED": N_("This result has expired, send the photos again."),
    "NOT_YOUR_BUTTON": N_("This button belongs to someone else."),
    "BAD_BUTTON": N_("Sorry, I don't understand that button any more. Send the photos again."),
    "ALREADY_FINISHED": N_("That painting has already finished."),
    "CANCEL_REQUESTED": N_("Cancelling…"),
    "NOTHING_TO_CANCEL": N_("Nothing to stop. I forgot any photos you had sent."),
    "CANCELLED_ALL": N_("Stopped. I also forgot the photos you had sent."),
    "WEAKEST": N_("That's already the weakest level."),
    "STRONGEST": N_("That's already the strongest level."),
    "INPUT_GONE": N_("I no longer have the pictures for that painting. Please send them again."),
    "NEW_STYLE_PROMPT": N_("Send me a new style picture for this photo — or pick a style below."),
    "FULL_RES_CAPTION": N_("Full resolution"),
    "JOB_RESTARTED_LOST": N_(
        "I restarted and lost the pictures of one painting. Please send them again."
    ),
    # -- errors and limits
    "SLOW_DOWN": N_("Too many taps at once — give me a moment, then try again."),
    # -- /language
    "LANGUAGE_USAGE": N_(
        "Choose a language: /language en (English), /language ru (Russian), "
        "or /language auto to follow your Telegram app."
    ),
    # -- keyboard labels
    "BTN_CANCEL": N_("✖ Cancel"),
    "BTN_WEAKER": N_("− Weaker"),
    "BTN_STRONGER": N_("Stronger +"),
    "BTN_SAVE_STYLE": N_("💾 Save style"),
    "BTN_NEW_STYLE": N_("🆕 New style"),
    "BTN_FULL_RES": N_("⬇ Full resolution"),
    "BTN_APPLY": N_("Apply"),
    "BTN_DELETE": N_("🗑 Delete"),
    "BTN_MIX": N_("🎭 Mix with…"),
    "BTN_FINER": N_("🖌 Finer strokes"),
    "BTN_BIGGER": N_("Bigger strokes 🖌"),
    # -- mixing and brush size
    "MIX_PROMPT": N_(
        "Mix this painting's style with which one? Tap a style: I paint it again from this "
        "result with both styles, half and half."
    ),
    "MIX_NO_STYLES": N_("There are no other styles to mix with yet."),
    "MIX_TOO_MANY": N_("I can mix two styles, not more: a saved mix already has two."),
    "FINEST": N_("These are already the finest strokes."),
    "BIGGEST": N_("These are already the biggest strokes."),
    "BRUSH_USAGE": N_(
        "Brush size: /brush small, medium or large. A bigger brush paints bigger strokes. "
        "The buttons under a painting paint it again one step finer or bigger."
    ),
    # -- the bot's profile (setMyDescription, setMyShortDescription): at most 512 and 120
    "BOT_DESCRIPTION": N_(
        "I repaint your photos in the style of a painting: Van Gogh, Hokusai, Monet, or any "
        "picture you send me. Send a photo, then a style picture (or pick a built-in style), "
        "and I paint it in a minute or two with neural style transfer."
    ),
    "BOT_SHORT_DESCRIPTION": N_("I turn your photos into paintings in the style you choose."),
}

# Symbols, the same in every language (not in the catalog).
BTN_PREV = "◀"
BTN_NEXT = "▶"

_HELP_COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("start", N_("greeting and popular styles"), "/start"),
    ("help", N_("this list"), "/help"),
    ("presets", N_("your styles and the built-in ones"), "/presets"),
    ("style", N_("use a style for every new photo (off to stop)"), "/style starry_night"),
    ("brush", N_("size of the brush strokes: small, medium or large"), "/brush large"),
    ("save", N_("save the last style picture as your style"), N_("/save my sunset")),
    ("delete", N_("delete one of your styles"), N_("/delete my sunset")),
    ("strength", N_("how strong the style is, 1–5 (3 is classic)"), "/strength 4"),
    ("colors", N_("keep the photo's own colours"), "/colors on"),
    ("size", N_("size of the painting"), "/size"),
    ("language", N_("the language I speak: en, ru or auto"), "/language ru"),
    ("cancel", N_("stop the running painting and forget sent photos"), "/cancel"),
    ("status", N_("queue position and your settings"), "/status"),
)

if TYPE_CHECKING:
    HELP_COMMANDS: tuple[tuple[str, str, str], ...]
    """(command, what it does, example) for /help and the command menu, translated."""


def __getattr__(name: str) -> str:
    """`texts.START` and the other constants, in the current language."""
    if name == "HELP_COMMANDS":
        return help_commands()  # type: ignore[return-value]
    try:
        msgid = _CONSTANTS[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    return _(msgid)


def __dir__() -> list[str]:
    return sorted([*globals(), *_CONSTANTS, "HELP_COMMANDS"])


def help_commands() -> tuple[tuple[str, str, str], ...]:
    """(command, what it does, example) for /help and the command menu, translated."""
    return tuple((command, _(what), _(example)) for command, what, example in _HELP_COMMANDS)


def _on_off(on: bool) -> str:
    return pgettext("switch", "on") if on else pgettext("switch", "off")


# -- greeting and help ------------------------------------------------------------------------
def help_text(preset_commands: Sequence[str]) -> str:
    lines = [
        _("How it works: send a photo, then a second picture for the style (or tap a style)."),
        "",
    ]
    for command, what, example in help_commands():
        lines.append(
            _("/{command} — {what}. Example: {example}").format(
                command=command, what=what, example=example
            )
        )
    if preset_commands:
        lines.append("")
        lines.append(
            _("Built-in styles answer to their own command too: {commands}").format(
                commands=", ".join(f"/{name}" for name in preset_commands)
            )
        )
    lines.append("")
    lines.append(
        _(
            "Tips: send an album of two pictures (photo, then style) to start at once; "
            "a photo with the caption /style NAME is painted with that style; "
            "static stickers work as pictures; send as a file to skip Telegram's compression "
            "(up to 20 MB)."
        )
    )
    return "\n".join(lines)


# -- intake -----------------------------------------------------------------------------------
def start_text(in_group: bool) -> str:
    """The greeting; in a group it also says how to send photos there."""
    start = _(_CONSTANTS["START"])
    if not in_group:
        return start
    how = _(
        "In a group, send your photo as a reply to one of my messages, "
        "or with /style and a style name in its caption."
    )
    return f"{start}\n\n{how}"


def content_received(has_styles: bool, in_group: bool = False) -> str:
    if in_group and has_styles:
        return _(
            "Got your photo. Now reply to this message with a style picture — "
            "or pick a style below."
        )
    if in_group:
        return _("Got your photo. Now reply to this message with a style picture.")
    if has_styles:
        return _(
            "Got your photo. Now send a second picture to use as the style — or pick a style below."
        )
    return _("Got your photo. Now send a second picture to use as the style.")


def file_too_big(limit_mb: int) -> str:
    return _(
        "That file is too big: I can take files up to {limit_mb} MB. Please send a smaller one."
    ).format(limit_mb=limit_mb)


IMAGE_REFUSAL_CODES = frozenset(
    {
        "bad_image",
        "empty_file",
        "not_an_image",
        "unsupported_format",
        "corrupt_image",
        "image_too_large",
        "image_too_small",
        "extreme_aspect",
    }
)
"""The `ImageError.code`s of `engine/images.py` that `image_refused` has a sentence for."""

_FORMAT_REFUSED = re.compile(
    r"^(?:Vector images \((?P<vector>\w+)\)|(?P<name>[\w.-]+) (?:images|photos)) "
    r"(?:are|is) not supported"
)


def image_refused(code: str, detail: str | None = None) -> str:
    """Why a picture was refused, by the engine's `ImageError.code` (`engine/images.py`);
    `detail` is the engine's own English sentence, shown as it is for a code not known here."""
    if code == "empty_file":
        return _("The file is empty, please send a photo.")
    if code == "not_an_image":
        return _("This file is not an image, please send a photo (JPEG, PNG or WebP).")
    if code == "unsupported_format":
        match = _FORMAT_REFUSED.match(detail or "")
        if match:
            return _(
                "{format} images are not supported, please send a JPEG, PNG or WebP photo."
            ).format(format=match.group("vector") or match.group("name"))
        return _("This image format is not supported, please send a JPEG, PNG or WebP photo.")
    if code == "corrupt_image":
        return _("The file is damaged or incomplete, please send it again.")
    if code == "image_too_large":
        if detail and "MB" in detail:  # the file, not its pixels
            return _("The file is too large (maximum {limit_mb} MB).").format(
                limit_mb=MAX_BYTES // (1024 * 1024)
            )
        return _(
            "The image is too large (maximum {megapixels} megapixels), please send a smaller one."
        ).format(megapixels=MAX_PIXELS // 1_000_000)
    if code == "image_too_small":
        return _("The image is too small (minimum {min_side} px on each side).").format(
            min_side=MIN_SIDE
        )
    if code == "extreme_aspect":
        return _("The aspect ratio is too extreme (max {ratio}:1).").format(ratio=f"{MAX_ASPECT:g}")
    if code == "bad_image" or not detail:
        return _("This picture cannot be used, please send another photo.")
    return detail


# -- presets ----------------------------------------------------------------------------------
def bad_preset_name(name: str) -> str:
    return _("“{name}” can't be a style name. {rules}").format(
        name=name[:40], rules=_(_CONSTANTS["NAME_RULES"])
    )


_CHARACTER_CODE = re.compile(r"U\+[0-9A-F]{4,6}")
_NAME_REFUSALS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^a preset name must be text$"), "text"),
    (re.compile(r"^a preset needs a name"), "empty"),
    (re.compile(r"^that name is too long \((?P<length>\d+) characters\)"), "long"),
    (re.compile(r"^preset names can use .* only; (?P<char>.+) is not allowed$"), "char"),
    (re.compile(r"^a preset name must start with a letter or a digit$"), "start"),
    (
        re.compile(
            r"^that picture is too large to keep \((?P<size>[\d.]+) MB; "
            r"the limit is (?P<limit>[\d.]+) MB\)$"
        ),
        "picture",
    ),
)


def _name_refusal(reason: str) -> str:
    """The sentence for one of `bot.storage.validate_preset_name`'s refusals (and the
    storage's "picture too large to keep"), matched on its English words; else `reason`."""
    for pattern, case in _NAME_REFUSALS:
        match = pattern.match(reason)
        if match is None:
            continue
        if case == "text":
            return _("a style name must be text")
        if case == "empty":
            return _("a style needs a name: 1–{max} letters, digits, spaces, - or _").format(
                max=PRESET_NAME_MAX
            )
        if case == "long":
            length = int(match.group("length"))
            return ngettext(
                "that name is too long ({length} character); keep it to {max} or fewer",
                "that name is too long ({length} characters); keep it to {max} or fewer",
                length,
            ).format(length=length, max=PRESET_NAME_MAX)
        if case == "char":
            char = match.group("char")
            if not char.startswith("“"):  # "the control character U+0007", "U+200B (…)"
                code = _CHARACTER_CODE.search(char)
                char = code.group(0) if code else char
            return _(
                "names can use letters, digits, spaces, - and _ only; {char} is not allowed"
            ).format(char=char)
        if case == "start":
            return _("a style name must start with a letter or a digit")
        return _("that picture is too large to keep ({size} MB; the limit is {limit} MB)").format(
            size=match.group("size"), limit=match.group("limit")
        )
    return reason


def name_refused(reason: str) -> str:
    """`reason`: the `str()` of the storage's `InvalidValue` (translated when known)."""
    return _("That name won't work: {reason}.").format(reason=_name_refusal(reason))


def preset_not_found(name: str) -> str:
    return _("I don't know a style called “{name}”. /presets lists them.").format(name=name[:40])


def too_many_presets(limit: int) -> str:
    return ngettext(
        "You already have {limit} style, the most I keep. Delete one first: /delete NAME",
        "You already have {limit} styles, the most I keep. Delete one first: /delete NAME",
        limit,
    ).format(limit=limit)


def duplicate_preset(name: str) -> str:
    return _(
        "You already have a style called “{name}”. Pick another name or /delete it first."
    ).format(name=name)


def preset_saved(name: str) -> str:
    return _("Saved your style “{name}”. Use it with /style {name}").format(name=name)


def preset_deleted(name: str) -> str:
    return _("Deleted your style “{name}”.").format(name=name)


def preset_not_yours(name: str) -> str:
    return _("“{name}” isn't one of your styles, so I can't delete it.").format(name=name)


def presets_header(own: int, builtin: int) -> str:
    return _("Styles: {own} of yours, {builtin} built-in. Tap to apply.").format(
        own=own, builtin=builtin
    )


def style_list(names_own: Sequence[str], names_global: Sequence[str], active: str | None) -> str:
    lines = []
    if active:
        lines.append(
            _("Active style: {name} (every new photo gets it; /style off to stop).").format(
                name=active
            )
        )
    else:
        lines.append(_("No active style: use /style NAME to paint every new photo with it."))
    if names_own:
        lines.append(_("Yours: {names}").format(names=", ".join(names_own)))
    if names_global:
        lines.append(_("Built-in: {names}").format(names=", ".join(names_global)))
    return "\n".join(lines)


def style_activated(name: str, will_paint_now: bool) -> str:
    if will_paint_now:
        return _("Style set to {name}. Painting your photo with it now.").format(name=name)
    return _("Style set to {name}. Now send me a photo.").format(name=name)


def style_mix_activated(first: str, second: str, will_paint_now: bool) -> str:
    if will_paint_now:
        return _("Mixing {first} and {second}, half and half. Painting your photo now.").format(
            first=first, second=second
        )
    return _("Mixing {first} and {second}, half and half. Now send me a photo.").format(
        first=first, second=second
    )


def mix_name(first: str, second: str) -> str:
    # two style names, shown as they are
    return f"{first} + {second}"


_BRUSH_NAMES = {"small": N_("small"), "medium": N_("medium"), "large": N_("large")}


def brush_name(name: str) -> str:
    """small, medium or large, translated."""
    return _(_BRUSH_NAMES[name])


def brush_label(name: str | None, scale: float) -> str:
    """small, medium or large (translated) for /brush's sizes, else the scale (×4)."""
    return brush_name(name) if name is not None else f"×{scale:g}"


def brush_set(name: str) -> str:
    return _("Brush size: {size}. Your next paintings use it.").format(size=brush_name(name))


def btn_brush(name: str, current: bool) -> str:
    label = _("Brush: {size}").format(size=brush_name(name))
    return f"✓ {label}" if current else label


def preset_applied_title(name: str, title: str, artist: str, year: str) -> str:
    # names, titles and artists only: nothing to translate
    if title:
        detail = f"{title} — {artist}, {year}" if artist else title
        return f"{name}: {detail}"
    return name


def builtin_added(name: str) -> str:
    return _("Added the built-in style “{name}” for everyone.").format(name=name)


# -- settings ---------------------------------------------------------------------------------
def strength_usage(now: int) -> str:
    return _("{usage} (now {level})").format(usage=_(_CONSTANTS["STRENGTH_USAGE"]), level=now)


def colors_usage(on: bool) -> str:
    return _("{usage} (now {state})").format(usage=_(_CONSTANTS["COLORS_USAGE"]), state=_on_off(on))


def strength_set(level: int) -> str:
    return _("Strength set to {level} of 5. It applies to your next painting.").format(level=level)


def colors_set(on: bool) -> str:
    if on:
        return _("Your photos keep their own colours now.")
    return _("Paintings take the style's colours now.")


def size_set(size: int) -> str:
    return _("Size set to {size} px.").format(size=size)


def size_invalid(sizes: Iterable[int]) -> str:
    return _("That size isn't offered. Choose one of: {sizes}").format(
        sizes=", ".join(_("{size} px").format(size=s) for s in sizes)
    )


def status_text(
    *,
    strength: int,
    colors: bool,
    size: int,
    active_style: str | None,
    positions: Sequence[int],
    has_pending_content: bool,
    brush: str | None = None,
) -> str:
    """`brush`: the brush's label (`brush_label`), shown when given."""
    lines = []
    if positions:
        for pos in positions:
            lines.append(
                _("Your painting is in progress.")
                if pos == 0
                else _("Your painting is #{position} in the queue.").format(position=pos)
            )
    else:
        lines.append(_("Nothing is being painted for you right now."))
    if has_pending_content:
        lines.append(_("I have your photo and I'm waiting for a style picture."))
    lines.append(
        _("Strength: {strength} of 5 · Keep colours: {colors} · Size: {size} px").format(
            strength=strength, colors=_on_off(colors), size=size
        )
    )
    lines.append(
        _("Active style: {name}").format(name=active_style)
        if active_style
        else _("Active style: none")
    )
    if brush is not None:
        lines.append(_("Brush: {size}").format(size=brush))
    return "\n".join(lines)


# -- /language --------------------------------------------------------------------------------
def language_status(name: str, automatic: bool) -> str:
    """/language without a choice: what is spoken now, and how to change it."""
    if automatic:
        now = _("I speak {language} with you, as your Telegram app does.").format(language=name)
    else:
        now = _("I speak {language} with you (your choice).").format(language=name)
    return f"{now}\n{_(_CONSTANTS['LANGUAGE_USAGE'])}"


def language_set(name: str, automatic: bool) -> str:
    """The answer to /language, in the language just chosen."""
    if automatic:
        return _("I'll follow your Telegram app's language: {language} for now.").format(
            language=name
        )
    return _("I'll speak {language} with you from now on.").format(language=name)


def language_unknown(choice: str) -> str:
    return _("I don't speak “{choice}”. {usage}").format(
        choice=choice[:20], usage=_(_CONSTANTS["LANGUAGE_USAGE"])
    )


# -- jobs -------------------------------------------------------------------------------------
def queued(position: int) -> str:
    if position <= 1:
        return _("⏳ You're next in the queue.")
    return _("⏳ Waiting in the queue — position {position}.").format(position=position)


def progress_bar(fraction: float, width: int = 10) -> str:
    fraction = min(1.0, max(0.0, fraction))
    filled = round(fraction * width)
    return "▰" * filled + "▱" * (width - filled)


def progress(fraction: float, eta: float | None) -> str:
    percent = round(min(1.0, max(0.0, fraction)) * 100)
    text = _("🎨 Painting… {bar} {percent}%").format(bar=progress_bar(fraction), percent=percent)
    if eta is not None and eta > 0:
        text += _(" · ETA {time}").format(time=format_seconds(eta))
    return text


def format_seconds(seconds: float) -> str:
    whole = max(0, round(seconds))
    if whole < 60:
        return _("{seconds} s").format(seconds=whole)
    minutes, rest = divmod(whole, 60)
    return _("{minutes} min {seconds} s").format(minutes=minutes, seconds=f"{rest:02d}")


def about(seconds: float) -> str:
    """A rough duration for an estimate: "~40 s", "~3 min", "~1 h 5 min"."""
    whole = max(1, round(seconds))
    if whole < 60:
        return _("~{seconds} s").format(seconds=whole)
    minutes = round(whole / 60)
    if minutes < 60:
        return _("~{minutes} min").format(minutes=minutes)
    hours, minutes = divmod(minutes, 60)
    return _("~{hours} h {minutes} min").format(hours=hours, minutes=minutes)


def size_prompt(measured: bool) -> str:
    """/size: the choice, and where the times next to the sizes come from."""
    if measured:
        note = _("Times are for one painting on this server, measured on its recent paintings.")
    else:
        note = _("Times are estimates until this server has finished its first painting.")
    return f"{_(_CONSTANTS['SIZE_PROMPT'])}\n{note}"


def full_res_started(size: int, seconds: float) -> str:
    """The answer to "⬇ Full resolution" when the painting is repainted larger."""
    return _("Painting it again at {size} px ({time}); it comes as a file.").format(
        size=size, time=about(seconds)
    )


def full_res_caption(width: int, height: int) -> str:
    return _("Full resolution · {width}×{height}").format(width=width, height=height)


def done(seconds: float) -> str:
    return _("✅ Done in {time}.").format(time=format_seconds(seconds))


def failed(reason: str) -> str:
    return _("❌ That didn't work: {reason}").format(reason=reason)


JOB_FAILURES: dict[str, str] = {
    FailureCode.TIMED_OUT: N_("This picture took too long, so I stopped it. Try a smaller size."),
    FailureCode.WORKER_LOST: N_(
        "The painter stopped unexpectedly twice on this picture, so I gave up. "
        "Try a smaller size or another picture."
    ),
    FailureCode.ENGINE_DOWN: N_("The painting engine could not start; please try again later."),
    FailureCode.INPUTS_LOST: N_(
        "I lost the pictures of this job during a restart. Please send them again."
    ),
    FailureCode.FAILED: N_("Something went wrong while painting. Please try again."),
}
# Parameters come from the bot, never from a person: a refusal of them is a bot/worker version
# mismatch or a bug, and the engine's English reason (kept in the job's error) helps no user.
JOB_FAILURES[FailureCode.BAD_PARAMS] = JOB_FAILURES[FailureCode.FAILED]
"""What a user reads when a job fails, by `engine.job.FailureCode` (msgids: `job_failed`
translates them)."""


def job_failed(code: str | None, detail: str | None = None) -> str:
    """A failed job's status line: the sentence for its code; for a refused picture (the
    engine's `ImageError.code`) the refusal, else the engine's own sentence, else a general one."""
    if code in JOB_FAILURES:
        return failed(_(JOB_FAILURES[code]))
    if code in IMAGE_REFUSAL_CODES:
        return failed(image_refused(code, detail))
    return failed(detail or _(JOB_FAILURES[FailureCode.FAILED]))


def user_queue_full(limit: int) -> str:
    return ngettext(
        "You already have {limit} painting waiting, the most I queue per person. "
        "Wait for it to finish, or /cancel.",
        "You already have {limit} paintings waiting, the most I queue per person. "
        "Wait for one to finish, or /cancel.",
        limit,
    ).format(limit=limit)


def queue_busy(retry_after_s: float) -> str:
    return _("I'm busy right now — try again in ~{time}.").format(
        time=format_seconds(max(1.0, retry_after_s))
    )


def result_caption(
    *,
    style: str,
    strength: int,
    colors: bool,
    seconds: float,
    width: int,
    height: int,
    brush: float = 1.0,
) -> str:
    parts = [f"🎨 {style}", _("strength {strength}/5").format(strength=strength)]
    if brush != 1.0:
        parts.append(_("brush ×{scale}").format(scale=f"{brush:g}"))
    if colors:
        parts.append(_("colours kept"))
    parts.append(f"{width}×{height}")
    parts.append(format_seconds(seconds))
    return " · ".join(parts)


def result_style_saved(name: str) -> str:
    return _("Saved this style as “{name}”. Use it with /style {name}").format(name=name)


def result_style_is_preset(name: str) -> str:
    return _("This style is already saved as “{name}”.").format(name=name)


# -- errors and limits ------------------------------------------------------------------------
def internal_error(ref: str) -> str:
    return _("Sorry, something failed on my side (reference {ref}). Please try again.").format(
        ref=ref
    )


def rate_limited(seconds: float) -> str:
    return _(
        "You're sending messages faster than I can take them. I'll listen again in about {time}."
    ).format(time=format_seconds(seconds))


# -- admin ------------------------------------------------------------------------------------
def stats_text(
    stats: dict[str, object],
    queue_size: int,
    capacity: int,
    devices: Sequence[tuple[str, int, float, int]] = (),
) -> str:
    """`devices`: (device, size, seconds a painting of that size takes there, jobs measured)."""
    # the keys are the storage's counter names, shown as they are
    lines = [_("Stats")]
    for key, value in stats.items():
        if isinstance(value, dict):
            inner = ", ".join(f"{k} {v}" for k, v in value.items()) or _("none")
            lines.append(f"{key}: {inner}")
        else:
            lines.append(f"{key}: {value}")
    lines.append(
        _("queue: {queue} · workers: {workers}").format(queue=queue_size, workers=capacity)
    )
    for device, size, seconds, jobs in devices:
        lines.append(
            ngettext(
                "device: {device} · {size} px in {time} (measured on {jobs} painting)",
                "device: {device} · {size} px in {time} (measured on {jobs} paintings)",
                jobs,
            ).format(device=device, size=size, time=about(seconds), jobs=jobs)
        )
    if not devices:
        lines.append(_("device: not measured yet (no painting finished)"))
    return "\n".join(lines)


# -- keyboard labels --------------------------------------------------------------------------
def btn_colors(on: bool) -> str:
    if on:
        return _("🎨 Keep colours: on")
    return _("🎨 Keep colours: off")


def btn_size(size: int, current: bool, seconds: float | None = None) -> str:
    label = _("{size} px").format(size=size)
    if seconds is not None:
        label = _("{size} px · {time}").format(size=size, time=about(seconds))
    return f"✓ {label}" if current else label


def btn_preset(name: str, own: bool) -> str:
    return f"★ {name}" if own else name
