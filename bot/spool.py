"""The files of jobs: their input pictures while they wait or run (`Spool`), and their
paintings afterwards (`ResultStore`). Blocking file I/O: callers on the event loop run these
methods with `asyncio.to_thread`."""

from __future__ import annotations

import contextlib
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from engine.job import Result

CONTENT_FILE = "content.bin"
INIT_FILE = "init.bin"
STYLE_PREFIX = "style-"


@dataclass(frozen=True)
class JobInputs:
    content: bytes
    styles: tuple[bytes, ...]
    init: bytes | None = None
    """A previous result to warm-start from."""


class Spool:
    """Each job's pictures under ``root/<job_id>/``, written before the job is queued so that
    a restart finds them."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def write(self, job_id: str, inputs: JobInputs) -> list[str]:
        """Write the job's pictures; returns their paths (stored with the job)."""
        directory = self.root / job_id
        directory.mkdir(parents=True, exist_ok=True)
        files: list[tuple[str, bytes]] = [(CONTENT_FILE, inputs.content)]
        files += [(f"{STYLE_PREFIX}{i}.bin", data) for i, data in enumerate(inputs.styles)]
        if inputs.init is not None:
            files.append((INIT_FILE, inputs.init))
        paths = []
        for name, data in files:
            path = directory / name
            path.write_bytes(data)
            paths.append(str(path))
        return paths

    @staticmethod
    def read(paths: list[str]) -> JobInputs:
        """The pictures at `paths`; FileNotFoundError when one is gone."""
        content: bytes | None = None
        styles: list[tuple[int, bytes]] = []
        init: bytes | None = None
        for raw in paths:
            path = Path(raw)
            data = path.read_bytes()
            if path.name == CONTENT_FILE:
                content = data
            elif path.name == INIT_FILE:
                init = data
            elif path.name.startswith(STYLE_PREFIX):
                styles.append((int(path.stem[len(STYLE_PREFIX) :]), data))
        if content is None or not styles:
            raise FileNotFoundError("the job's spooled content or style is missing")
        return JobInputs(content, tuple(data for _, data in sorted(styles)), init)

    @staticmethod
    def present(paths: list[str]) -> bool:
        return bool(paths) and all(Path(p).is_file() for p in paths)

    def remove(self, job_id: str) -> None:
        shutil.rmtree(self.root / job_id, ignore_errors=True)


class ResultStore:
    """Finished paintings as ``root/<job_id>.jpg`` (``.png`` for PNG output), kept for
    `max_age_s`: the bot re-sends them and warm-starts later runs from them."""

    def __init__(self, root: str | Path, max_age_s: float) -> None:
        self.root = Path(root)
        self.max_age_s = max_age_s

    def save(self, job_id: str, result: Result) -> str:
        """Write atomically (a crash leaves no half file under the final name)."""
        suffix = ".png" if result.mime_type == "image/png" else ".jpg"
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / f"{job_id}{suffix}"
        partial = path.with_suffix(path.suffix + ".part")
        partial.write_bytes(result.image)
        partial.replace(path)
        return str(path)

    def prune(self) -> int:
        """Delete results older than `max_age_s`; returns how many."""
        if not self.root.is_dir():
            return 0
        cutoff = time.time() - self.max_age_s
        removed = 0
        for path in self.root.iterdir():
            with contextlib.suppress(OSError):
                if path.is_file() and path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
        return removed
