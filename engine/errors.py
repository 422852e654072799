"""Errors the engine raises on purpose. Each carries a sentence fit to show a person."""

from __future__ import annotations


class EngineError(Exception):
    """Base class: `str(error)` is a short, friendly sentence (no traceback needed)."""


class ImageError(EngineError):
    """An input picture was refused (empty, not an image, damaged, too large, too small...).

    Subclasses name the case; `code` is a stable identifier the bot and tests can use.
    """

    code = "bad_image"


class Cancelled(EngineError):
    """The run was cancelled between two optimizer steps."""

    def __init__(self, message: str = "The job was cancelled.") -> None:
        super().__init__(message)
