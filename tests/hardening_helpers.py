"""Helpers of the hardening tests (load, faults, hostile input).

Kept free of heavy imports: `hang_job` is imported by spawned worker processes.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any


def hang_job(spec: Any, report: Any, should_cancel: Any) -> Any:
    """A worker job function that hangs: never reports, never checks for cancellation."""
    while True:
        time.sleep(3600)


def rss_bytes(pid: int | str = "self") -> int:
    """The resident set size of a process now (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def peak_rss_bytes(pid: int | str) -> int:
    """The highest resident set size a process has had (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


class RssSampler:
    """Samples a process's RSS from a thread (every `interval` s) while in a `with` block."""

    def __init__(self, pid: int | str = "self", interval: float = 0.05) -> None:
        self.pid = pid
        self.interval = interval
        self.baseline = 0
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                value = rss_bytes(self.pid)
            except OSError:
                return
            self.peak = max(self.peak, value)
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self.baseline = self.peak = rss_bytes(self.pid)
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)

    @property
    def growth(self) -> int:
        return self.peak - self.baseline


def report(name: str, **figures: Any) -> None:
    """Print the figures a test measured (visible with ``pytest -s``; also appended to
    $STYLEBOT_FIGURES when set, one line per test)."""
    line = f"[figures] {name}: " + ", ".join(f"{k}={v}" for k, v in figures.items())
    print(line)
    target = os.environ.get("STYLEBOT_FIGURES")
    if target:
        with open(target, "a", encoding="utf-8") as out:
            out.write(line + "\n")
