"""What the bot keeps about a job beside the engine's `JobSpec`: where its pictures came from
and what the user chose, so that the buttons under a painting can paint it again, and the ids
of the messages that show it. Stored with the job (`Storage` encodes it as JSON)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.job import decode, encode
from engine.params import REFERENCE_STRENGTH


@dataclass(frozen=True)
class JobMeta:
    pair: str | None = None
    """The `PairStore` id holding the photo, the style file and the results."""
    style_name: str = ""
    preset_id: int | None = None
    """The preset the style came from; None for a picture the user sent."""
    style_file: str | None = None
    """The style picture's file in the pair, when it did not come from a preset."""
    strength: int = int(REFERENCE_STRENGTH)
    colors: bool = False
    """Keep the photo's colours."""
    size: int | None = None
    """Long side asked for; None: the bot's default size."""
    init_job: str | None = None
    """The job whose result this one warm-started from."""
    status_msg: int | None = None
    """The message that shows the job's progress."""
    result_msg: int | None = None
    """The message that carries the painting."""
    language: str = "en"
    """The language the job's owner is spoken to in (`bot.i18n`)."""
    reply_to: int | None = None
    """The owner's message the job answers (their photo): status and painting reply to it."""
    mix_preset_id: int | None = None
    """A mix: the preset whose style is painted together with the first one, half and half."""
    brush: float = 1.0
    """Brush size: the engine's `style_scale`."""
    full_res: bool = False
    """"⬇ Full resolution": painted again at the photo's own size, delivered as a file."""

    def to_dict(self) -> dict[str, Any]:
        return dict(encode(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobMeta:
        """Inverse of `to_dict`; keys it does not know are ignored (rows of older versions)."""
        known = cls.__dataclass_fields__
        return decode(cls, {key: value for key, value in data.items() if key in known})
