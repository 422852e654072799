"""Every sentence the bot says, in one place.

Plain text (no Markdown/HTML parse mode), so user-chosen names never need escaping.
Functions build sentences that carry values; constants are fixed sentences.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from engine.job import FailureCode

# -- greeting and help ------------------------------------------------------------------------
START = (
    "Hi! I turn photos into paintings.\n\n"
    "Send me a photo, then a style picture — or pick a style below.\n"
    "A painting takes a minute or two; I show the progress as I go."
)

HELP_COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("start", "greeting and popular styles", "/start"),
    ("help", "this list", "/help"),
    ("presets", "your styles and the built-in ones", "/presets"),
    ("style", "use a style for every new photo (off to stop)", "/style starry_night"),
    ("save", "save the last style picture as your style", "/save my sunset"),
    ("delete", "delete one of your styles", "/delete my sunset"),
    ("strength", "how strong the style is, 1–5 (3 is classic)", "/strength 4"),
    ("colors", "keep the photo's own colours", "/colors on"),
    ("size", "size of the painting", "/size"),
    ("cancel", "stop the running painting and forget sent photos", "/cancel"),
    ("status", "queue position and your settings", "/status"),
)
"""(command, what it does, example) for /help and the command menu."""


def help_text(preset_commands: Sequence[str]) -> str:
    lines = [
        "How it works: send a photo, then a second picture for the style (or tap a style).",
        "",
    ]
    for command, what, example in HELP_COMMANDS:
        lines.append(f"/{command} — {what}. Example: {example}")
    if preset_commands:
        lines.append("")
        lines.append(
            "Built-in styles answer to their own command too: "
            + ", ".join(f"/{name}" for name in preset_commands)
        )
    lines.append("")
    lines.append(
        "Tips: send an album of two pictures (photo, then style) to start at once; "
        "a photo with the caption /style NAME is painted with that style; "
        "static stickers work as pictures; send as a file to skip Telegram's compression "
        "(up to 20 MB)."
    )
    return "\n".join(lines)


# -- intake -----------------------------------------------------------------------------------
def content_received(has_styles: bool) -> str:
    if has_styles:
        return (
            "Got your photo. Now send a second picture to use as the style — or pick a style below."
        )
    return "Got your photo. Now send a second picture to use as the style."


NEED_PHOTO_FIRST = "Send me a photo first, then pick a style."
ALBUM_EXTRA_IGNORED = "I used the first two pictures of the album (photo, then style)."
DOWNLOADING_FAILED = "I couldn't download that file from Telegram. Please send it again."


def file_too_big(limit_mb: int) -> str:
    return f"That file is too big: I can take files up to {limit_mb} MB. Please send a smaller one."


NOT_AN_IMAGE_FILE = "That file isn't a picture I can read. Please send a photo (JPEG, PNG or WebP)."
ANIMATED_STICKER = (
    "Animated and video stickers can't be painted. Send a photo, or a static sticker."
)
ANIMATION_HINT = "Animations can't be painted. Send a still picture (a photo or an image file)."
MEDIA_HINT = "I only work with pictures: send me a photo, then a style picture."
TEXT_HINT = "Send me a photo to paint, or /help to see what I can do."
UNKNOWN_COMMAND = "I don't know that command. /help lists what I can do."


def bad_image(reason: str) -> str:
    return f"I can't use that picture: {reason}"


# -- presets ----------------------------------------------------------------------------------
NAME_RULES = "Names are 1–32 characters: letters, digits, spaces, - and _."


def bad_preset_name(name: str) -> str:
    return f"“{name[:40]}” can't be a style name. {NAME_RULES}"


def name_refused(reason: str) -> str:
    return f"That name won't work: {reason}."


def preset_not_found(name: str) -> str:
    return f"I don't know a style called “{name[:40]}”. /presets lists them."


def too_many_presets(limit: int) -> str:
    return f"You already have {limit} styles, the most I keep. Delete one first: /delete NAME"


def duplicate_preset(name: str) -> str:
    return f"You already have a style called “{name}”. Pick another name or /delete it first."


SAVE_USAGE = "Give it a name: /save NAME (for example /save my sunset)."
SAVE_NOTHING = "There's no style picture to save yet: send a photo, then a style picture."
DELETE_USAGE = "Which one? /delete NAME — /presets lists your styles."
NO_PRESETS = "There are no styles yet. Send a picture as a style, then /save NAME to keep it."


def preset_saved(name: str) -> str:
    return f"Saved your style “{name}”. Use it with /style {name}"


def preset_deleted(name: str) -> str:
    return f"Deleted your style “{name}”."


def preset_not_yours(name: str) -> str:
    return f"“{name}” isn't one of your styles, so I can't delete it."


def presets_header(own: int, builtin: int) -> str:
    return f"Styles: {own} of yours, {builtin} built-in. Tap to apply."


def style_list(names_own: Sequence[str], names_global: Sequence[str], active: str | None) -> str:
    lines = []
    if active:
        lines.append(f"Active style: {active} (every new photo gets it; /style off to stop).")
    else:
        lines.append("No active style: use /style NAME to paint every new photo with it.")
    if names_own:
        lines.append("Yours: " + ", ".join(names_own))
    if names_global:
        lines.append("Built-in: " + ", ".join(names_global))
    return "\n".join(lines)


def style_activated(name: str, will_paint_now: bool) -> str:
    if will_paint_now:
        return f"Style set to {name}. Painting your photo with it now."
    return f"Style set to {name}. Now send me a photo."


STYLE_OFF = "No active style any more: send a photo, then a style picture."


def preset_applied_title(name: str, title: str, artist: str, year: str) -> str:
    if title:
        detail = f"{title} — {artist}, {year}" if artist else title
        return f"{name}: {detail}"
    return name


def builtin_added(name: str) -> str:
    return f"Added the built-in style “{name}” for everyone."


ADDPRESET_USAGE = "Send a picture with the caption /addpreset NAME."

# -- settings ---------------------------------------------------------------------------------
STRENGTH_USAGE = (
    "Use a level from 1 (a hint) to 5 (style everywhere); 3 is classic. Example: /strength 4"
)
COLORS_USAGE = "Use /colors on to keep your photo's colours, /colors off to take the style's."


def strength_usage(now: int) -> str:
    return f"{STRENGTH_USAGE} (now {now})"


def colors_usage(on: bool) -> str:
    return f"{COLORS_USAGE} (now {'on' if on else 'off'})"


SIZE_PROMPT = "Pick the size of your paintings (long side, in pixels). Bigger takes longer."


def strength_set(level: int) -> str:
    return f"Strength set to {level} of 5. It applies to your next painting."


def colors_set(on: bool) -> str:
    if on:
        return "Your photos keep their own colours now."
    return "Paintings take the style's colours now."


def size_set(size: int) -> str:
    return f"Size set to {size} px."


def size_invalid(sizes: Iterable[int]) -> str:
    return "That size isn't offered. Choose one of: " + ", ".join(f"{s} px" for s in sizes)


def status_text(
    *,
    strength: int,
    colors: bool,
    size: int,
    active_style: str | None,
    positions: Sequence[int],
    has_pending_content: bool,
) -> str:
    lines = []
    if positions:
        for pos in positions:
            lines.append(
                "Your painting is in progress."
                if pos == 0
                else f"Your painting is #{pos} in the queue."
            )
    else:
        lines.append("Nothing is being painted for you right now.")
    if has_pending_content:
        lines.append("I have your photo and I'm waiting for a style picture.")
    lines.append(
        f"Strength: {strength} of 5 · Keep colours: {'on' if colors else 'off'} · Size: {size} px"
    )
    lines.append(f"Active style: {active_style}" if active_style else "Active style: none")
    return "\n".join(lines)


# -- jobs -------------------------------------------------------------------------------------
def queued(position: int) -> str:
    if position <= 1:
        return "⏳ You're next in the queue."
    return f"⏳ Waiting in the queue — position {position}."


STARTING = "🎨 Starting…"


def progress_bar(fraction: float, width: int = 10) -> str:
    fraction = min(1.0, max(0.0, fraction))
    filled = round(fraction * width)
    return "▰" * filled + "▱" * (width - filled)


def progress(fraction: float, eta: float | None) -> str:
    percent = round(min(1.0, max(0.0, fraction)) * 100)
    text = f"🎨 Painting… {progress_bar(fraction)} {percent}%"
    if eta is not None and eta > 0:
        text += f" · ETA {format_seconds(eta)}"
    return text


def format_seconds(seconds: float) -> str:
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole} s"
    minutes, rest = divmod(whole, 60)
    return f"{minutes} min {rest:02d} s"


def done(seconds: float) -> str:
    return f"✅ Done in {format_seconds(seconds)}."


def failed(reason: str) -> str:
    return f"❌ That didn't work: {reason}"


JOB_FAILURES: dict[str, str] = {
    FailureCode.TIMED_OUT: "This picture took too long, so I stopped it. Try a smaller size.",
    FailureCode.WORKER_LOST: (
        "The painter stopped unexpectedly twice on this picture, so I gave up. "
        "Try a smaller size or another picture."
    ),
    FailureCode.ENGINE_DOWN: "The painting engine could not start; please try again later.",
    FailureCode.INPUTS_LOST: (
        "I lost the pictures of this job during a restart. Please send them again."
    ),
    FailureCode.FAILED: "Something went wrong while painting. Please try again.",
}
"""What a user reads when a job fails, by `engine.job.FailureCode`."""


def job_failed(code: str | None, detail: str | None = None) -> str:
    """A failed job's status line: the sentence for its code, else the engine's own sentence
    (a refused picture), else a general one."""
    reason = JOB_FAILURES.get(code or "") or detail or JOB_FAILURES[FailureCode.FAILED]
    return failed(reason)


CANCELLED = "✖ Cancelled."
PREVIEW_CAPTION = "Preview — still working…"
RESULT_EXPIRED = "This result has expired, send the photos again."
NOT_YOUR_BUTTON = "This button belongs to someone else."
BAD_BUTTON = "Sorry, I don't understand that button any more. Send the photos again."
ALREADY_FINISHED = "That painting has already finished."
CANCEL_REQUESTED = "Cancelling…"
NOTHING_TO_CANCEL = "Nothing to stop. I forgot any photos you had sent."
CANCELLED_ALL = "Stopped. I also forgot the photos you had sent."
WEAKEST = "That's already the weakest level."
STRONGEST = "That's already the strongest level."
INPUT_GONE = "I no longer have the pictures for that painting. Please send them again."


def user_queue_full(limit: int) -> str:
    return (
        f"You already have {limit} paintings waiting, the most I queue per person. "
        "Wait for one to finish, or /cancel."
    )


def queue_busy(retry_after_s: float) -> str:
    return f"I'm busy right now — try again in ~{format_seconds(max(1.0, retry_after_s))}."


NEW_STYLE_PROMPT = "Send me a new style picture for this photo — or pick a style below."
FULL_RES_CAPTION = "Full resolution"
JOB_RESTARTED_LOST = "I restarted and lost the pictures of one painting. Please send them again."


def result_caption(
    *, style: str, strength: int, colors: bool, seconds: float, width: int, height: int
) -> str:
    parts = [f"🎨 {style}", f"strength {strength}/5"]
    if colors:
        parts.append("colours kept")
    parts.append(f"{width}×{height}")
    parts.append(format_seconds(seconds))
    return " · ".join(parts)


def result_style_saved(name: str) -> str:
    return f"Saved this style as “{name}”. Use it with /style {name}"


def result_style_is_preset(name: str) -> str:
    return f"This style is already saved as “{name}”."


# -- errors and limits ------------------------------------------------------------------------
def internal_error(ref: str) -> str:
    return f"Sorry, something failed on my side (reference {ref}). Please try again."


SLOW_DOWN = "Too many taps at once — give me a moment, then try again."


def rate_limited(seconds: float) -> str:
    return (
        f"You're sending messages faster than I can take them. "
        f"I'll listen again in about {format_seconds(seconds)}."
    )


# -- admin ------------------------------------------------------------------------------------
def stats_text(stats: dict[str, object], queue_size: int, capacity: int) -> str:
    lines = ["Stats"]
    for key, value in stats.items():
        if isinstance(value, dict):
            inner = ", ".join(f"{k} {v}" for k, v in value.items()) or "none"
            lines.append(f"{key}: {inner}")
        else:
            lines.append(f"{key}: {value}")
    lines.append(f"queue: {queue_size} · workers: {capacity}")
    return "\n".join(lines)


# -- keyboard labels --------------------------------------------------------------------------
BTN_PREV = "◀"
BTN_NEXT = "▶"
BTN_CANCEL = "✖ Cancel"
BTN_WEAKER = "− Weaker"
BTN_STRONGER = "Stronger +"
BTN_SAVE_STYLE = "💾 Save style"
BTN_NEW_STYLE = "🆕 New style"
BTN_FULL_RES = "⬇ Full resolution"
BTN_APPLY = "Apply"
BTN_DELETE = "🗑 Delete"


def btn_colors(on: bool) -> str:
    return f"🎨 Keep colours: {'on' if on else 'off'}"


def btn_size(size: int, current: bool) -> str:
    return f"✓ {size} px" if current else f"{size} px"


def btn_preset(name: str, own: bool) -> str:
    return f"★ {name}" if own else name
