"""Faults: Telegram misbehaving (429, 500, dropped connections, slow answers), the bot killed
with kill -9 mid-job and mid-save, a full or read-only disk at start, a worker that hangs.

Each test says what must hold and would fail if it did not: no update lost or handled twice,
results delivered, SQLite intact, no half-written preset, a clear one-line refusal to start, the
user told when a job cannot finish.
"""

from __future__ import annotations

import asyncio
import ctypes
import io
import os
import resource
import signal
import sqlite3
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from telegram import Update
from telegram.ext import TypeHandler

from bot import texts
from bot.app import build_application
from bot.executors.local import LocalExecutor
from bot.services import get_services
from engine.job import FailureCode
from tests.bot_harness import (
    bot_env,
    bot_settings,
    fake_telegram_fixture,  # noqa: F401
    process_log,
    run_bot_to_exit,
    running_application,
    start_bot_process,
    stop_process,
)
from tests.fake_telegram import FakeTelegram, FakeUser
from tests.hardening_helpers import peak_rss_bytes, report
from tests.test_bot_e2e import PHOTO, STYLE, QuickExecutor, is_result

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

FAULTY_METHODS = ("getUpdates", "getFile", "sendPhoto", "editMessageText")


def _inject_faults(fake: FakeTelegram) -> None:
    """For each method, in order: a 429, 500s, a dropped connection, a 2 s delay (one 500 for
    getUpdates: python-telegram-bot's polling backs off longer after each error)."""
    for method in FAULTY_METHODS:
        fake.fail(method, 429, retry_after=1, times=1)
        fake.fail(method, 500, times=1 if method == "getUpdates" else 2)
        fake.drop(method, times=1)
        fake.delay(method, 2.0, times=1)


# -- Telegram faults ------------------------------------------------------------------------------
@pytest.mark.slow
async def test_telegram_faults_lose_nothing_and_double_nothing(
    tmp_path: Path, fake_telegram: FakeTelegram
) -> None:
    settings = bot_settings(tmp_path, fake_telegram)
    app = build_application(
        settings, executor=QuickExecutor(steps=6, delay=0.3, capacity=2), status_interval=0.2
    )
    handled: list[int] = []

    async def record(update: Update, _: Any) -> None:
        handled.append(update.update_id)

    app.add_handler(TypeHandler(Update, record), group=-2)
    users = [fake_telegram.user(5000 + i, f"F{i}") for i in range(4)]
    sent: list[int] = []
    _inject_faults(fake_telegram)
    async with running_application(app):

        def last_update_id() -> int:
            return fake_telegram.pending_updates()[-1]["update_id"]

        async def conversation(user: FakeUser) -> None:
            await user.send_text("/status")
            sent.append(last_update_id())
            await user.wait_for_message(lambda v: "Strength:" in (v.text or ""), timeout=60)
            await user.send_photo(PHOTO)
            sent.append(last_update_id())
            await user.wait_for_message(lambda v: "style" in v.content, timeout=60)
            await user.send_photo(STYLE)
            sent.append(last_update_id())
            await user.wait_for_message(is_result, timeout=90)
            await user.send_text("/help")
            sent.append(last_update_id())
            await user.wait_for_message(lambda v: (v.text or "").startswith("How"), timeout=60)

        await asyncio.gather(*(conversation(u) for u in users))
        await fake_telegram.wait_until_confirmed()  # fetched (none can come back: confirmed)...
        await asyncio.wait_for(app.update_queue.join(), 120)  # ...and handled: no time guess
    outcomes = Counter(
        (c.method, c.status) for c in fake_telegram.calls() if c.method in FAULTY_METHODS
    )
    report(
        "telegram_faults",
        updates_sent=len(sent),
        updates_handled=len(handled),
        **{f"{m}_{s}": n for (m, s), n in sorted(outcomes.items())},
    )
    # every fault was met, and nothing was lost or handled twice
    for method in FAULTY_METHODS:
        for status in (429, 500, 0):
            assert outcomes[(method, status)] >= 1, (method, status, outcomes)
    assert sorted(handled) == sorted(sent), (sorted(handled), sorted(sent))
    for user in users:
        messages = user.messages()
        assert sum(is_result(m.latest) for m in messages) == 1
        assert sum("Strength:" in (m.text or "") for m in messages) == 1
        assert sum((m.text or "").startswith("How it works") for m in messages) == 1
        assert sum(m.content == texts.content_received(False) for m in messages) == 1
        status = [m for m in messages if (m.versions[0].text or "").startswith("⏳")]
        assert len(status) == 1 and (status[0].text or "").startswith("✅"), [
            [v.text for v in m.versions] for m in messages
        ]


# -- kill -9 ---------------------------------------------------------------------------------------
def _big_style() -> bytes:
    """A detailed 1024 px style picture (a few hundred kB: a preset save takes a while)."""
    image = Image.effect_mandelbrot((1024, 768), (-2.0, -1.2, 1.0, 1.2), 60).convert("RGB")
    out = io.BytesIO()
    image.save(out, "JPEG", quality=95)
    return out.getvalue()


def _check_database(path: Path) -> dict[str, Any]:
    """PRAGMA integrity_check and foreign_key_check pass; every preset image is whole."""
    db = sqlite3.connect(path)
    try:
        integrity = db.execute("PRAGMA integrity_check").fetchall()
        fk = db.execute("PRAGMA foreign_key_check").fetchall()
        presets = db.execute("SELECT name, image FROM presets").fetchall()
        jobs = db.execute("SELECT id, state, attempts, error FROM jobs").fetchall()
    finally:
        db.close()
    assert integrity == [("ok",)], integrity
    assert fk == [], fk
    for _name, image in presets:  # no half-written preset: every image decodes completely
        with Image.open(io.BytesIO(image)) as im:
            im.load()
    return {
        "presets": [name for name, _ in presets],
        "images": {bytes(image) for _, image in presets},
        "jobs": jobs,
    }


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _any_alive(pids: list[int]) -> bool:
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        except OSError:
            continue
        if state != "Z":  # a zombie has exited (its parent, the killed bot, will not reap it)
            return True
    return False


async def _kill9(proc: asyncio.subprocess.Process) -> float:
    """kill -9 the bot; returns how long its worker processes took to exit on their own."""
    children = _children(proc.pid)
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert children, "the bot had no worker process"
    while _any_alive(children):
        # a deadline to wait for the exit, not a speed bound: generous for a loaded machine
        assert loop.time() - started < 180, f"workers {children} outlived the bot"
        await asyncio.sleep(0.1)
    return loop.time() - started


@pytest.mark.slow
async def test_kill_9_during_preset_saves_and_during_a_job(
    tmp_path: Path, fake_telegram: FakeTelegram
) -> None:
    env = bot_env(tmp_path, fake_telegram)
    db_path = tmp_path / "data" / "stylebot.sqlite3"
    user = fake_telegram.user(4242, "Kim")
    style = _big_style()
    figures: dict[str, Any] = {}

    # 1. kill -9 while preset saves stream in (a job is queued or starting meanwhile)
    proc = await start_bot_process(env)
    try:
        await user.send_photo(PHOTO)
        await user.wait_for_message(lambda v: "style" in v.content, timeout=90)
        await user.send_photo(style)
        await user.wait_for_message(lambda v: "queue" in (v.text or ""), timeout=60)
        for n in range(40):
            await user.send_text(f"/save saved {n}")
        for _ in range(5):
            await user.wait_for_message(lambda v: (v.text or "").startswith("Saved"), timeout=60)
        await _kill9(proc)
    finally:
        await stop_process(proc)
    acknowledged = sum((m.text or "").startswith("Saved") for m in user.messages())
    first = _check_database(db_path)
    # every preset is the same re-encoded style picture, byte for byte: none half-written
    assert len(first["images"]) == 1, [len(i) for i in first["images"]]
    assert len(first["presets"]) >= acknowledged  # every acknowledged save survived
    figures.update(saves_acknowledged=acknowledged, presets_after_kill=len(first["presets"]))

    # 2. restart; kill -9 while the resumed job runs
    proc = await start_bot_process(env)
    try:
        await user.wait_for_message(
            lambda v: "▰" in (v.text or "") or v.text == texts.STARTING, timeout=120
        )
        figures["bot_peak_rss_mb"] = peak_rss_bytes(proc.pid) // 2**20
        figures["workers_gone_after_s"] = round(await _kill9(proc), 2)
    finally:
        await stop_process(proc)
    mid = _check_database(db_path)
    assert mid["images"] == first["images"]
    assert [state for _, state, _, _ in mid["jobs"]] == ["running"]

    # 3. restart: the job runs again and the result is delivered
    proc = await start_bot_process(env)
    try:
        result = await user.wait_for_message(is_result, timeout=180)
        assert result.photo is not None
        await user.send_text("/presets")
        listing = await user.wait_for_message(lambda v: bool(v.buttons), timeout=60)
        assert any("saved" in b["text"] for b in listing.buttons)
    finally:
        code = await stop_process(proc)
    assert code == 0, process_log(proc)[-3000:]
    final = _check_database(db_path)
    assert [state for _, state, _, _ in final["jobs"]] == ["done"]
    log = process_log(proc)
    assert fake_telegram.token not in log
    figures.update(job_attempts=final["jobs"][0][2], presets_final=len(final["presets"]))
    report("kill9", **figures)


# -- the disk at start ------------------------------------------------------------------------------


def _assert_one_clear_line(proc: subprocess.CompletedProcess[str], *words: str) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("stylebot: "), lines
    assert "Traceback" not in proc.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


TOKEN = "123456789:" + "A" * 35


def _no_file_writes() -> None:  # runs in the child before exec: every write past 0 bytes fails
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))


def test_full_disk_at_start_is_one_clear_line(tmp_path: Path) -> None:
    env = {"TELEGRAM_BOT_TOKEN": TOKEN, "STYLEBOT_DATA_DIR": str(tmp_path / "data")}
    proc = run_bot_to_exit(env, preexec_fn=_no_file_writes)
    line = _assert_one_clear_line(proc, "disk full")
    report("disk_full", exit_code=proc.returncode, line=repr(line))


PR_CAPBSET_DROP = 24
CAP_DAC_OVERRIDE = 1


def _without_dac_override() -> None:
    """preexec_fn: root loses the capability to write where permissions say no (it is dropped
    from the bounding set, so it stays dropped across exec)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_CAPBSET_DROP, CAP_DAC_OVERRIDE, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[tuple[Path, Any]]:
    """A directory the bot cannot write into, and the preexec_fn that makes that true for the
    bot (as root: no CAP_DAC_OVERRIDE)."""
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    preexec = _without_dac_override if os.geteuid() == 0 else None
    probe = subprocess.run(
        ["touch", str(locked / "probe")], preexec_fn=preexec, capture_output=True, check=False
    )
    if probe.returncode == 0:
        locked.chmod(0o755)
        pytest.skip("cannot make a directory read-only for a child process here")
    try:
        yield locked, preexec
    finally:
        locked.chmod(0o755)


def test_read_only_data_dir_at_start_is_one_clear_line(
    read_only_dir: tuple[Path, Any],
) -> None:
    locked, demote = read_only_dir
    for data_dir in (locked, locked / "data"):  # exists but read-only / cannot be created
        env = {"TELEGRAM_BOT_TOKEN": TOKEN, "STYLEBOT_DATA_DIR": str(data_dir)}
        proc = run_bot_to_exit(env, preexec_fn=demote)
        line = _assert_one_clear_line(proc, "not writable", str(data_dir))
    report("read_only_data_dir", exit_code=proc.returncode, line=repr(line))


async def test_unopenable_database_at_start_is_one_clear_line(
    tmp_path: Path, fake_telegram: FakeTelegram
) -> None:
    """The data dir is writable but the database cannot be opened (here: it is a directory)."""
    env = bot_env(tmp_path, fake_telegram)
    (tmp_path / "data" / "stylebot.sqlite3").mkdir(parents=True)
    proc = await asyncio.to_thread(run_bot_to_exit, env)
    line = _assert_one_clear_line(proc, "database")
    report("unopenable_database", exit_code=proc.returncode, line=repr(line))
    assert fake_telegram.token not in proc.stderr + proc.stdout


# -- a worker that hangs ---------------------------------------------------------------------------
@pytest.mark.slow
async def test_a_hung_worker_is_stopped_by_the_time_limit_and_the_user_told(
    tmp_path: Path, fake_telegram: FakeTelegram
) -> None:
    settings = bot_settings(tmp_path, fake_telegram, job_timeout=2.0)
    executor = LocalExecutor(
        workers=1,
        job_function="tests.hardening_helpers:hang_job",
        initializer=None,
        job_timeout=settings.job_timeout,
    )
    app = build_application(settings, executor=executor)
    async with running_application(app):
        await executor.wait_ready(60)
        hung_pid = executor.worker_pids[0]
        user = fake_telegram.user(6001)
        await user.send_photo(PHOTO)
        await user.send_photo(STYLE)
        failed = await user.wait_for_message(
            lambda v: v.text == texts.job_failed(FailureCode.TIMED_OUT), timeout=60
        )
        # the hung worker was killed (and reaped) and replaced; the bot still answers
        await executor.wait_ready(60)
        assert executor.worker_pids and hung_pid not in executor.worker_pids
        for _ in range(600):  # reaped: no zombie left (a busy machine may take a moment)
            if not await asyncio.to_thread(Path(f"/proc/{hung_pid}").exists):
                break
            await asyncio.sleep(0.05)
        assert not await asyncio.to_thread(Path(f"/proc/{hung_pid}").exists)
        await user.send_text("/start")
        await user.wait_for_message(lambda v: v.text == texts.START)
        jobs = await get_services(app).storage.list_jobs(["failed"])
        assert [j.error for j in jobs] == [FailureCode.TIMED_OUT]
    report("hung_worker", status=repr(failed.text), old_pid_gone=True)
