"""`python -m bot` and `python -m bot.presets` as real processes, and import hygiene."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bot.__main__ import check_data_dir
from tests.bot_harness import (
    bot_env,
    fake_telegram_fixture,  # noqa: F401
    process_log,
    start_bot_process,
    stop_process,
)
from tests.conftest import REPO_DIR, STYLES_DIR
from tests.fake_telegram import FakeTelegram

BOT_MODULES = [
    "bot",
    "bot.app",
    "bot.__main__",
    "bot.handlers",
    "bot.handlers.intake",
    "bot.handlers.callbacks",
    "bot.handlers.status",
    "bot.keyboards",
    "bot.texts",
    "bot.presets",
    "bot.logs",
    "bot.ratelimit",
    "bot.jobs",
    "bot.storage",
    "bot.executors",
]


def _run(
    args: list[str], env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "STYLEBOT_"))}
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO_DIR,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_importing_the_bot_does_not_import_tensorflow() -> None:
    code = (
        "import importlib, sys\n"
        f"for name in {BOT_MODULES!r}:\n"
        "    importlib.import_module(name)\n"
        "from bot.app import build_application\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras'))\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    proc = _run(["-c", code], {})
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_no_token_exits_2_with_one_line(tmp_path: Path) -> None:
    proc = _run(["-m", "bot"], {"STYLEBOT_DATA_DIR": str(tmp_path / "data")})
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("stylebot: ") and "TELEGRAM_BOT_TOKEN" in lines[0]
    assert "Traceback" not in proc.stderr


def test_malformed_token_is_not_echoed(tmp_path: Path) -> None:
    secret = "not-a-token-but-secret-looking-AAAA"
    proc = _run(["-m", "bot"], {"TELEGRAM_BOT_TOKEN": secret})
    assert proc.returncode == 2
    assert secret not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_unusable_data_dir_exits_1(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    env = {"TELEGRAM_BOT_TOKEN": "123456789:" + "A" * 35, "STYLEBOT_DATA_DIR": str(blocker / "d")}
    proc = _run(["-m", "bot"], env)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("stylebot: the data directory"), proc.stderr


@pytest.mark.parametrize(
    ("code", "words"),
    [(errno.ENOSPC, "disk full"), (errno.EACCES, "not writable"), (errno.EROFS, "not writable")],
)
def test_check_data_dir_names_the_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, words: str
) -> None:
    def failing_write(fd: int, data: Any) -> int:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "write", failing_write)
    problem = check_data_dir(tmp_path / "data")
    assert problem is not None and words in problem


def test_check_data_dir_ok(tmp_path: Path) -> None:
    assert check_data_dir(tmp_path / "a" / "b") is None
    assert list((tmp_path / "a" / "b").iterdir()) == []  # the probe file is gone


@pytest.mark.slow
async def test_python_m_bot_answers_start(tmp_path: Path, fake_telegram: FakeTelegram) -> None:
    env = bot_env(tmp_path, fake_telegram)
    proc = await start_bot_process(env)
    try:
        user = fake_telegram.user(2001)
        await user.send_text("/start")
        reply = await user.wait_for_message(timeout=90)
        assert reply.text is not None and reply.text.startswith("Hi!")
        assert any(c["command"] == "help" for c in fake_telegram.my_commands())
    finally:
        code = await stop_process(proc)
    log = process_log(proc)
    assert fake_telegram.token not in log
    assert code == 0, log


def test_presets_cli_imports_without_a_token(tmp_path: Path) -> None:
    if not STYLES_DIR.exists():
        pytest.skip("needs ../shared/images/styles")
    env = {"STYLEBOT_DATA_DIR": str(tmp_path / "data")}
    one = _run(
        ["-m", "bot.presets", "import", "starry_night", str(STYLES_DIR / "starry_night.jpg")], env
    )
    assert one.returncode == 0, one.stderr
    again = _run(
        ["-m", "bot.presets", "import", "starry_night", str(STYLES_DIR / "starry_night.jpg")], env
    )
    assert again.returncode == 1 and "--replace" in again.stderr
    many = _run(["-m", "bot.presets", "import-dir", str(STYLES_DIR), "--replace"], env)
    assert many.returncode == 0, many.stderr
    listing = _run(["-m", "bot.presets", "list"], env)
    names = [line.split("\t")[0] for line in listing.stdout.splitlines()]
    assert len(names) == 8 and "great_wave" in names
    assert "The Starry Night — Vincent van Gogh, 1889" in listing.stdout
    bad = _run(["-m", "bot.presets", "import", "x", str(tmp_path / "missing.jpg")], env)
    assert bad.returncode == 2 and "missing.jpg" in bad.stderr


def test_presets_download_fails_politely() -> None:
    from bot.presets import PresetImportError, download

    with pytest.raises(PresetImportError, match="cannot connect"):
        download("http://127.0.0.1:9/nothing.jpg")  # refused at once; no short timeout to race


def test_catalog_is_complete_and_public_domain() -> None:
    from bot.presets import load_catalog

    catalog = load_catalog()
    assert [e.name for e in catalog] == [
        "starry_night",
        "great_wave",
        "the_scream",
        "shipwreck_of_the_minotaur",
        "composition_vii",
        "water_lilies",
        "sunday_on_la_grande_jatte",
        "adele_bloch_bauer_i",
    ]
    for entry in catalog:
        assert entry.licence == "Public domain"
        assert entry.source_url.startswith("https://commons.wikimedia.org/wiki/File:")
        assert entry.title and entry.artist and entry.year
