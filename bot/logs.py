"""Logging setup: one stderr handler, token and other secrets (the webhook's secret token)
redacted everywhere (messages, arguments, exception text and tracebacks), chatty HTTP client
loggers at WARNING."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable
from typing import TextIO

# Anything shaped like a bot token, also inside URLs (".../bot123:ABC.../getUpdates").
TOKEN_SHAPE = re.compile(r"\d{3,20}:[A-Za-z0-9_-]{30,100}")
REDACTED = "<token>"
REDACTED_SECRET = "<secret>"
QUIET_LOGGERS = ("httpx", "httpcore", "aiosqlite", "PIL")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class RedactTokenFilter(logging.Filter):
    """Replaces the bot token (and any token-shaped string) in every part of a record, and
    each of `other_secrets` (e.g. the webhook's secret token) by ``<secret>``.

    The record's message is rendered and redacted once; exception and stack text are
    formatted here and cached on the record (`exc_text`), so formatters print the
    redacted version.
    """

    def __init__(self, secrets: Iterable[str] = (), other_secrets: Iterable[str] = ()) -> None:
        super().__init__()
        labelled = [(s, REDACTED) for s in secrets if s]
        labelled += [(s, REDACTED_SECRET) for s in other_secrets if s]
        # Longest first: a secret inside another one must not leave part of the longer visible.
        self._secrets = sorted(labelled, key=lambda pair: len(pair[0]), reverse=True)
        self._formatter = logging.Formatter()

    def redact(self, text: str) -> str:
        for secret, label in self._secrets:
            text = text.replace(secret, label)
        return TOKEN_SHAPE.sub(REDACTED, text)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the record
            message = f"{record.msg!r} {record.args!r}"
        record.msg = self.redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


def setup_logging(
    level: str = "INFO",
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
    *,
    other_secrets: Iterable[str] = (),
) -> logging.Handler:
    """Configure the root logger once; returns the handler (tests attach to it).
    `secrets` (the token) show as ``<token>``, `other_secrets` as ``<secret>``."""
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_stylebot", False):
            root.removeHandler(old)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler._stylebot = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(RedactTokenFilter(secrets, other_secrets))
    root.addHandler(handler)
    root.setLevel(level)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    return handler
