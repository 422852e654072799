"""Pictures kept on disk for buttons: a "pair" is one content photo with the style pictures
and results made from it, under ``data_dir/pairs/<pair id>/``.

Buttons carry the pair id (style buttons under a photo) or a job id whose meta names the pair
(result buttons), so they work after a restart. Pairs older than `max_age_days` are removed;
a button whose pair is gone answers "This result has expired".

Every method here does blocking file I/O: call them through `asyncio.to_thread`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

_PAIR = re.compile(r"^[0-9a-f]{12}$")
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class PairOwner:
    user_id: int
    chat_id: int
    message_id: int | None = None
    """The message that brought the photo: paintings of the pair reply to it."""


class PairStore:
    def __init__(self, root: Path, *, max_age_days: float = 7.0) -> None:
        self.root = Path(root)
        self.max_age_days = max_age_days

    def _dir(self, pair: str) -> Path | None:
        if not _PAIR.match(pair):
            return None
        return self.root / pair

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    def create(
        self, user_id: int, chat_id: int, content: bytes, message_id: int | None = None
    ) -> str:
        pair = secrets.token_hex(6)
        path = self.root / pair
        path.mkdir(parents=True, exist_ok=False)
        self._write(path / "content.jpg", content)
        owner = {
            "user_id": user_id,
            "chat_id": chat_id,
            "message_id": message_id,
            "created": time.time(),
        }
        self._write(path / "owner.json", json.dumps(owner).encode())
        return pair

    def owner(self, pair: str) -> PairOwner | None:
        path = self._dir(pair)
        if path is None:
            return None
        try:
            data = json.loads((path / "owner.json").read_text())
            message_id = data.get("message_id")
            return PairOwner(
                int(data["user_id"]),
                int(data["chat_id"]),
                int(message_id) if message_id is not None else None,
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def content(self, pair: str) -> bytes | None:
        return self._read(pair, "content.jpg")

    def add_style(self, pair: str, style: bytes) -> str:
        """Keep a style picture; returns its file name (content-addressed)."""
        path = self._dir(pair)
        if path is None:
            raise ValueError(f"bad pair id {pair!r}")
        name = "style_" + hashlib.sha256(style).hexdigest()[:16] + ".jpg"
        if not (path / name).exists():
            self._write(path / name, style)
        return name

    def style(self, pair: str, name: str) -> bytes | None:
        if not name.startswith("style_"):
            return None
        return self._read(pair, name)

    def save_result(self, pair: str, job_id: str, image: bytes) -> None:
        path = self._dir(pair)
        if path is None or not _NAME.match(job_id) or not path.is_dir():
            return
        self._write(path / f"result_{job_id}.jpg", image)

    def result(self, pair: str, job_id: str) -> bytes | None:
        if not _NAME.match(job_id):
            return None
        return self._read(pair, f"result_{job_id}.jpg")

    def _read(self, pair: str, name: str) -> bytes | None:
        path = self._dir(pair)
        if path is None or not _NAME.match(name.removesuffix(".jpg")):
            return None
        try:
            return (path / name).read_bytes()
        except OSError:
            return None

    def prune(self, now: float | None = None) -> int:
        """Remove pairs untouched for `max_age_days`; returns how many."""
        now = time.time() if now is None else now
        cutoff = now - self.max_age_days * 86400.0
        removed = 0
        if not self.root.is_dir():
            return 0
        for path in self.root.iterdir():
            if not _PAIR.match(path.name):
                continue
            try:
                newest = max(p.stat().st_mtime for p in [path, *path.iterdir()])
            except (OSError, ValueError):
                continue
            if newest < cutoff:
                shutil.rmtree(path, ignore_errors=True)
                removed += 1
        return removed
