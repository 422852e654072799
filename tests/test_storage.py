"""bot/storage.py against real SQLite files (WAL) in tmp_path."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import re
import sqlite3
import statistics
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import bot.storage as storage_module
from bot.jobmeta import JobMeta
from bot.storage import (
    JOB_STATES,
    MAX_IMAGE_BYTES,
    SCHEMA_VERSION,
    DuplicateJob,
    DuplicateName,
    ImageTooLarge,
    InvalidName,
    InvalidValue,
    JobNotFound,
    JobStateError,
    PendingPicture,
    PresetNotFound,
    SchemaTooNew,
    Storage,
    StorageError,
    TooManyPresets,
    UserNotFound,
    preset_name_key,
    validate_preset_name,
)
from engine.job import JobState
from engine.params import StyleParams

REPO_DIR = Path(__file__).resolve().parent.parent
TABLES = {
    "users",
    "presets",
    "pending",
    "jobs",
    "telegram_files",
    "worker_speeds",
    "sqlite_sequence",
}
IMG = b"\x89PNG fake image bytes"


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "stylebot.sqlite3"


@pytest.fixture
async def store(db_path: Path, clock: Clock) -> AsyncIterator[Storage]:
    storage = Storage(db_path, clock=clock)
    await storage.open()
    yield storage
    await storage.close()


def raw(path: Path, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """A plain sqlite3 look at the file, independent of the code under test."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def tables(path: Path) -> set[str]:
    rows = raw(path, "SELECT name FROM sqlite_master WHERE type = 'table'")
    # sqlite_stat1 appears when PRAGMA optimize (run on close) decides to ANALYZE.
    return {str(r[0]) for r in rows} - {"sqlite_stat1"}


# --- opening, pragmas, migrations --------------------------------------------------------------


async def test_open_migrates_empty_file_to_latest(db_path: Path) -> None:
    async with Storage(db_path) as storage:
        assert storage.is_open
        assert await storage.integrity_check() == "ok"
    assert raw(db_path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert raw(db_path, "PRAGMA journal_mode") == [("wal",)]
    assert tables(db_path) == TABLES
    indexes = {r[0] for r in raw(db_path, "SELECT name FROM sqlite_master WHERE type='index'")}
    assert {"presets_global_name", "jobs_state"} <= indexes


async def test_reopen_is_idempotent_and_keeps_data(db_path: Path) -> None:
    async with Storage(db_path) as storage:
        await storage.ensure_user(1, 10, "Ann")
    schema = raw(db_path, "SELECT name, sql FROM sqlite_master ORDER BY name")
    for _ in range(2):
        async with Storage(db_path) as storage:
            user = await storage.get_user(1)
            assert user is not None and user.name == "Ann"
    assert raw(db_path, "SELECT name, sql FROM sqlite_master ORDER BY name") == schema
    assert raw(db_path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]


async def test_pragmas_on_the_live_connection(store: Storage) -> None:
    db = store._conn()
    for pragma, expected in [
        ("journal_mode", "wal"),
        ("foreign_keys", 1),
        ("synchronous", 1),  # NORMAL
        ("busy_timeout", 5000),
    ]:
        async with db.execute(f"PRAGMA {pragma}") as cursor:
            row = await cursor.fetchone()
        assert row is not None and row[0] == expected, pragma


async def test_refuses_a_newer_schema(db_path: Path) -> None:
    async with Storage(db_path):
        pass
    conn = sqlite3.connect(db_path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    storage = Storage(db_path)
    with pytest.raises(SchemaTooNew, match="upgrade") as info:
        await storage.open()
    assert (info.value.found, info.value.known) == (SCHEMA_VERSION + 1, SCHEMA_VERSION)
    assert not storage.is_open
    assert raw(db_path, "PRAGMA user_version") == [(SCHEMA_VERSION + 1,)]


async def test_a_failing_migration_is_rolled_back_whole(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with Storage(db_path) as storage:
        await storage.ensure_user(1, 1, "a")
    broken = "CREATE TABLE extra (x INTEGER); INSERT INTO no_such_table VALUES (1);"
    monkeypatch.setattr(storage_module, "MIGRATIONS", (*storage_module.MIGRATIONS, broken))
    monkeypatch.setattr(storage_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with pytest.raises(StorageError, match="no_such_table"):
        await Storage(db_path).open()
    assert raw(db_path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert "extra" not in tables(db_path)

    fixed = "CREATE TABLE extra (x INTEGER); INSERT INTO extra VALUES (1);"
    monkeypatch.setattr(storage_module, "MIGRATIONS", (*storage_module.MIGRATIONS[:-1], fixed))
    async with Storage(db_path) as storage:
        assert await storage.get_user(1) is not None
    assert raw(db_path, "PRAGMA user_version") == [(SCHEMA_VERSION + 1,)]
    assert raw(db_path, "SELECT x FROM extra") == [(1,)]


def test_migration_scripts_split_into_complete_statements() -> None:
    script = storage_module.MIGRATIONS[0]
    statements = storage_module._split_sql(script)
    assert all(sqlite3.complete_statement(s) for s in statements)
    assert sum(s.startswith("CREATE TABLE") for s in statements) == 4


async def test_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.sqlite3"
    path.write_bytes(b"this is not sqlite" * 100)
    storage = Storage(path)
    with pytest.raises(StorageError, match="cannot open"):
        await storage.open()
    assert not storage.is_open


async def test_use_before_open_and_double_close(db_path: Path) -> None:
    storage = Storage(db_path)
    with pytest.raises(StorageError, match="not open"):
        await storage.get_user(1)
    with pytest.raises(StorageError, match="file"):
        await Storage(":memory:").open()
    await storage.open()
    with pytest.raises(StorageError, match="already open"):
        await storage.open()
    await storage.close()
    await storage.close()


# --- users and settings ------------------------------------------------------------------------


async def test_user_settings_round_trip(db_path: Path, clock: Clock) -> None:
    async with Storage(db_path, clock=clock) as storage:
        user = await storage.ensure_user(7, 70, "Zoë")
        assert (user.strength, user.preserve_colors, user.size, user.active_preset_id) == (
            3,
            False,
            None,
            None,
        )
        assert user.created_at == clock.now
        clock.now += 5
        user = await storage.update_user_settings(7, strength=5, preserve_colors=True, size=512)
        assert (user.strength, user.preserve_colors, user.size) == (5, True, 512)
        assert user.updated_at == clock.now
        # Only what is given changes.
        user = await storage.update_user_settings(7, strength=1)
        assert (user.strength, user.preserve_colors, user.size) == (1, True, 512)
    async with Storage(db_path) as storage:
        user2 = await storage.get_user(7)
        assert user2 == user
        # size=None resets to the default size; ensure_user keeps settings, updates chat/name.
        await storage.update_user_settings(7, size=None)
        again = await storage.ensure_user(7, 71, "Zoë B")
        assert (again.chat_id, again.name, again.strength, again.size) == (71, "Zoë B", 1, None)
        assert await storage.get_user(8) is None


async def test_user_settings_are_validated(store: Storage) -> None:
    await store.ensure_user(1, 1, "a")
    for bad in (0, 6, True, 2.5):
        with pytest.raises(InvalidValue):
            await store.update_user_settings(1, strength=bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidValue):
        await store.update_user_settings(1, size=0)
    with pytest.raises(InvalidValue):
        await store.update_user_settings(1, preserve_colors=1)  # type: ignore[arg-type]
    with pytest.raises(UserNotFound):
        await store.update_user_settings(2, strength=2)
    user = await store.get_user(1)
    assert user is not None and user.strength == 3


async def test_active_preset_must_be_visible_and_is_cleared_on_delete(store: Storage) -> None:
    await store.ensure_user(1, 1, "a")
    await store.ensure_user(2, 2, "b")
    mine = await store.add_preset(1, "Mine", IMG)
    theirs = await store.add_preset(2, "Theirs", IMG)
    builtin = await store.add_preset(None, "Starry Night", IMG)
    user = await store.update_user_settings(1, active_preset_id=mine.id)
    assert user.active_preset_id == mine.id
    with pytest.raises(PresetNotFound):
        await store.update_user_settings(1, active_preset_id=theirs.id)
    with pytest.raises(PresetNotFound):
        await store.update_user_settings(1, active_preset_id=999)
    user = await store.update_user_settings(1, active_preset_id=builtin.id)
    assert user.active_preset_id == builtin.id
    await store.update_user_settings(2, active_preset_id=theirs.id)
    assert await store.delete_preset(theirs.id, 2)
    user2 = await store.get_user(2)
    assert user2 is not None and user2.active_preset_id is None  # ON DELETE SET NULL
    user = await store.update_user_settings(1, active_preset_id=None)
    assert user.active_preset_id is None


# --- presets -----------------------------------------------------------------------------------


async def test_presets_add_list_find_get(store: Storage, clock: Clock) -> None:
    await store.ensure_user(1, 1, "a")
    await store.ensure_user(2, 2, "b")
    g_wave = await store.add_preset(
        None,
        "Great Wave",
        b"wave",
        title="The Great Wave off Kanagawa",
        artist="Hokusai",
        year="c. 1831",
        licence="public domain",
        source_url="https://example.org/wave",
    )
    g_scream = await store.add_preset(None, "scream", b"scream")
    own_wave = await store.add_preset(1, "great WAVE", b"my wave")
    own_b = await store.add_preset(1, "Blue", b"blue")
    await store.add_preset(2, "Other", b"other")

    listed = await store.list_presets(1)
    assert [p.id for p in listed] == [own_b.id, own_wave.id, g_wave.id, g_scream.id]
    assert [p.is_global for p in listed] == [False, False, True, True]
    assert [p.id for p in await store.list_presets(1, include_global=False)] == [
        own_b.id,
        own_wave.id,
    ]
    assert [p.id for p in await store.list_global_presets()] == [g_wave.id, g_scream.id]
    assert [p.name for p in await store.list_presets(3)] == ["Great Wave", "scream"]

    # Own shadows global; case-insensitive; other users see the global one.
    found = await store.find_preset("GREAT wave", 1)
    assert found is not None and found.id == own_wave.id
    found = await store.find_preset("  great wave ", 2)
    assert found == g_wave
    assert found.artist == "Hokusai" and found.year == "c. 1831"
    assert found.created_at == clock.now
    assert await store.find_preset("other", 1) is None
    assert await store.find_preset("other", 2) is not None
    assert await store.find_preset("Great Wave", None) == g_wave
    assert await store.find_preset("'; DROP TABLE presets; --", 1) is None

    assert await store.get_preset(own_wave.id) == own_wave
    assert await store.get_preset(12345) is None
    assert await store.preset_image(own_wave.id) == b"my wave"
    with pytest.raises(PresetNotFound):
        await store.preset_image(12345)
    assert await store.count_presets(1) == 2
    assert await store.count_presets(None) == 2


async def test_unicode_case_insensitive_names(store: Storage) -> None:
    await store.ensure_user(1, 1, "a")
    strasse = await store.add_preset(1, "Straße", IMG)
    assert await store.find_preset("STRASSE", 1) == strasse
    with pytest.raises(DuplicateName):
        await store.add_preset(1, "strasse", IMG)
    icon = await store.add_preset(1, "Ікона", IMG)
    assert await store.find_preset("ІКОНА", 1) == icon
    # Composed and decomposed accents are the same name; runs of spaces too.
    cafe = await store.add_preset(1, "Cafe\u0301  Noir", IMG)
    assert await store.find_preset("café noir", 1) == cafe
    assert preset_name_key("CAFÉ   NOIR") == preset_name_key("Cafe\u0301 noir")


async def test_delete_only_by_owner(store: Storage) -> None:
    await store.ensure_user(1, 1, "a")
    await store.ensure_user(2, 2, "b")
    mine = await store.add_preset(1, "Mine", IMG)
    builtin = await store.add_preset(None, "Builtin", IMG)
    assert await store.delete_preset(mine.id, 2) is False
    assert await store.delete_preset(builtin.id, 1) is False
    assert await store.delete_preset(mine.id, None) is False
    assert await store.get_preset(mine.id) == mine
    assert await store.get_preset(builtin.id) == builtin
    assert await store.delete_preset(mine.id, 1) is True
    assert await store.get_preset(mine.id) is None
    assert await store.delete_preset(mine.id, 1) is False
    assert await store.delete_preset(builtin.id, None) is True  # admins remove built-ins
    # Ids are never reused (AUTOINCREMENT): stale buttons cannot point at a new preset.
    again = await store.add_preset(1, "Mine", IMG)
    assert again.id > builtin.id


async def test_limit_per_owner(store: Storage) -> None:
    await store.ensure_user(1, 1, "a")
    await store.ensure_user(2, 2, "b")
    for i in range(3):
        await store.add_preset(1, f"p{i}", IMG, max_per_owner=3)
    with pytest.raises(TooManyPresets) as info:
        await store.add_preset(1, "p3", IMG, max_per_owner=3)
    assert info.value.limit == 3 and "3" in str(info.value)
    assert await store.count_presets(1) == 3
    await store.add_preset(2, "p0", IMG, max_per_owner=3)  # per owner, not global
    await store.add_preset(1, "p3", IMG)  # no limit given: none applies
    assert await store.count_presets(1) == 4


async def test_limit_holds_under_concurrent_adds(store: Storage) -> None:
    await store.ensure_user(1, 1, "a")
    results = await asyncio.gather(
        *(store.add_preset(1, f"c{i}", IMG, max_per_owner=5) for i in range(30)),
        return_exceptions=True,
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 5
    assert all(isinstance(r, TooManyPresets) for r in results if isinstance(r, BaseException))
    assert await store.count_presets(1) == 5
    # Same name raced by many coroutines: exactly one wins.
    results = await asyncio.gather(
        *(store.add_preset(None, "Race", IMG) for _ in range(10)), return_exceptions=True
    )
    assert sum(isinstance(r, DuplicateName) for r in results) == 9


async def test_duplicate_names(store: Storage) -> None:
    await store.ensure_user(1, 1, "a")
    await store.ensure_user(2, 2, "b")
    await store.add_preset(1, "Monet", IMG)
    with pytest.raises(DuplicateName, match="Monet"):
        await store.add_preset(1, " MONET ", IMG)
    await store.add_preset(2, "monet", IMG)  # another owner: fine
    await store.add_preset(None, "Monet", IMG)  # global beside own ones: fine
    with pytest.raises(DuplicateName):
        await store.add_preset(None, "monet", IMG)  # partial unique index on NULL owner
    with pytest.raises(sqlite3.IntegrityError):  # the index itself, not only the check
        raw_conn = sqlite3.connect(store.path)
        try:
            raw_conn.execute(
                "INSERT INTO presets (owner_id, name, name_key, created_at, image) "
                "VALUES (NULL, 'MONET', 'monet', 0, x'00')"
            )
        finally:
            raw_conn.close()
    assert await store.count_presets(None) == 1


async def test_preset_input_checks(store: Storage) -> None:
    await store.ensure_user(1, 1, "a")
    with pytest.raises(ImageTooLarge, match="too large") as info:
        await store.add_preset(1, "big", b"x" * (MAX_IMAGE_BYTES + 1))
    assert info.value.limit == MAX_IMAGE_BYTES
    await store.add_preset(1, "fits", b"x" * MAX_IMAGE_BYTES)
    with pytest.raises(InvalidValue):
        await store.add_preset(1, "empty", b"")
    with pytest.raises(InvalidName):
        await store.add_preset(1, "bad/name", IMG)
    with pytest.raises(UserNotFound):
        await store.add_preset(99, "nobody", IMG)
    with pytest.raises(InvalidValue):
        await store.add_preset(1, "surrogate", IMG, title="\ud800")
    assert await store.count_presets(1) == 1


async def test_custom_image_limit(tmp_path: Path) -> None:
    async with Storage(tmp_path / "s.db", max_image_bytes=10) as storage:
        await storage.ensure_user(1, 1, "a")
        with pytest.raises(ImageTooLarge):
            await storage.add_preset(1, "eleven", b"x" * 11)


@pytest.mark.parametrize(
    "name",
    ["Starry Night", "  padded  ", "a", "x" * 32, "my_style-2", "Кандинский", "夜", "123", "Ép"],
)
def test_valid_names(name: str) -> None:
    assert validate_preset_name(name) == name.strip()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "needs a name"),
        ("   \n\t", "needs a name"),
        ("x" * 33, "too long"),
        ("a/b", "“/”"),
        ("a\nb", "U+000A"),
        ("a\x00b", "U+0000"),
        ("Robert'); DROP TABLE presets;--", "not allowed"),
        ("emoji 😀", "not allowed"),
        ("-lead", "start with"),
        ("\u0301x", "start with"),
        ("a\ud800", "not allowed"),
    ],
)
def test_invalid_names(name: str, message: str) -> None:
    with pytest.raises(InvalidName, match=re.escape(message)):
        validate_preset_name(name)


def test_name_must_be_text() -> None:
    with pytest.raises(InvalidName):
        validate_preset_name(42)
    assert issubclass(InvalidName, ValueError) and issubclass(InvalidName, StorageError)


SQLISH = [
    "'; DROP TABLE presets; --",
    "x' OR '1'='1",
    'Robert"); DELETE FROM users; --',
    "1; PRAGMA user_version = 99",
    "a%_\\",
    "/* comment */ select",
    "NULL",
    " ",
]
FRAGMENTS = [
    "'",
    '"',
    ";",
    "--",
    "/*",
    "%",
    "_",
    "-",
    "\\",
    "\x00",
    "\n",
    "\x1b",
    " ",
    "DROP TABLE presets",
    "ß",
    "İ",
    "ǅ",
    "😀",
    "\u0301",
    "\u200b",
    "a",
    "1",
    "Ω",
]
NAMES = st.one_of(
    st.text(max_size=40),
    st.sampled_from(SQLISH),
    st.lists(st.sampled_from(FRAGMENTS), max_size=12).map("".join),
    st.text(min_size=1, max_size=4).map(lambda s: s * (10_000 // len(s) + 1)),
)


async def _check_names(path: Path, names: list[str]) -> None:
    async with Storage(path) as storage:
        await storage.ensure_user(1, 1, "owner")
        await storage.ensure_user(2, 2, "other")
        kept: dict[str, int] = {}
        for name in names:
            blob = name.encode("utf-8", "surrogatepass")[:1000] + b"!"
            try:
                clean = validate_preset_name(name)
            except InvalidName:
                with pytest.raises(InvalidName):
                    await storage.add_preset(1, name, blob, title=name)
                assert await storage.find_preset(name, 1) is None
                continue
            assert clean == name.strip()
            key = preset_name_key(clean)
            if key in kept:
                with pytest.raises(DuplicateName):
                    await storage.add_preset(1, name, blob, title=name)
                continue
            preset = await storage.add_preset(1, name, blob, title=name)
            kept[key] = preset.id
            assert preset.name == clean
            stored = await storage.get_preset(preset.id)
            assert stored is not None and stored.name == clean and stored.title == name
            found = await storage.find_preset(name, 1)
            assert found is not None and found.id == preset.id
            assert await storage.find_preset(name, 2) is None
            assert await storage.preset_image(preset.id) == blob
        assert await storage.count_presets(1) == len(kept)
        assert sorted(p.id for p in await storage.list_presets(1)) == sorted(kept.values())
        users = [await storage.get_user(1), await storage.get_user(2)]
        assert all(u is not None for u in users)
        assert await storage.integrity_check() == "ok"
    assert tables(path) == TABLES
    assert raw(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(names=st.lists(NAMES, min_size=1, max_size=6))
@example(names=[*SQLISH, "Ok name", "OK NAME"])
@example(names=[" " * 10_000 + "Padded" + "\n" * 5_000, "x" * 10_240, "\x00" * 10_240])
def test_preset_names_either_refused_or_round_trip(
    tmp_path_factory: pytest.TempPathFactory, names: list[str]
) -> None:
    path = tmp_path_factory.mktemp("names") / "db.sqlite3"
    asyncio.run(_check_names(path, names))


# --- pending pictures --------------------------------------------------------------------------


async def test_pending_survives_restart(db_path: Path, clock: Clock) -> None:
    async with Storage(db_path, clock=clock) as storage:
        assert await storage.get_pending(5, 5, "content") is None
        await storage.set_pending(5, 5, "content", b"photo-1", 10)
        await storage.set_pending(5, 5, "content", b"photo-2", 11)  # replaces
        await storage.set_pending(5, 5, "style", b"style-1")
        await storage.set_pending(6, 6, "style", b"other chat")
    async with Storage(db_path, clock=clock) as storage:  # "restart"
        assert await storage.get_pending(5, 5, "content") == PendingPicture(b"photo-2", 11)
        assert await storage.get_pending(5, 5, "style") == PendingPicture(b"style-1", None)
        assert await storage.clear_pending(5, 5, "style") == 1
        assert await storage.get_pending(5, 5, "style") is None
        assert await storage.get_pending(5, 5, "content") == PendingPicture(b"photo-2", 11)
        await storage.set_pending(5, 5, "style", b"style-2")
        assert await storage.clear_pending(5, 5) == 2
        assert await storage.get_pending(5, 5, "content") is None
        assert await storage.get_pending(6, 6, "style") == PendingPicture(b"other chat")
        with pytest.raises(InvalidValue):
            await storage.set_pending(5, 5, "init", b"x")
        with pytest.raises(InvalidValue):
            await storage.get_pending(5, 5, "'; --")
        clock.now += 3 * 86400
        await storage.set_pending(7, 7, "content", b"fresh")
        assert await storage.prune_pending(older_than_days=2) == 1
        assert await storage.get_pending(6, 6, "style") is None
        assert await storage.get_pending(7, 7, "content") == PendingPicture(b"fresh")


async def test_pending_pictures_belong_to_a_person_in_a_chat(store: Storage) -> None:
    group = -100123
    await store.set_pending(group, 1, "content", b"ada's photo", 5)
    await store.set_pending(group, 2, "content", b"bob's photo", 6)
    await store.set_pending(1, 1, "content", b"ada's private photo", 7)
    assert await store.get_pending(group, 1, "content") == PendingPicture(b"ada's photo", 5)
    assert await store.get_pending(group, 2, "content") == PendingPicture(b"bob's photo", 6)
    assert await store.clear_pending(group, 1) == 1
    assert await store.get_pending(group, 2, "content") is not None
    assert await store.get_pending(1, 1, "content") is not None


async def test_migration_3_keeps_private_pending_pictures(db_path: Path) -> None:
    """A database of schema 2 (pending keyed by chat) opens with its waiting photos kept."""
    db_path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(db_path)
    for script in storage_module.MIGRATIONS[:2]:
        conn.executescript(script)
    conn.execute("PRAGMA user_version = 2")
    conn.execute(
        "INSERT INTO pending (chat_id, kind, data, updated_at) VALUES (42, 'content', ?, 1.0)",
        (b"old photo",),
    )
    conn.commit()
    conn.close()
    async with Storage(db_path) as storage:
        assert await storage.get_pending(42, 42, "content") == PendingPicture(b"old photo")
        user = await storage.ensure_user(42, 42, "Old")
        assert user.language is None
        user = await storage.update_user_settings(42, language="ru")
        assert user.language == "ru"
        with pytest.raises(InvalidValue):
            await storage.update_user_settings(42, language="russian; --")
        assert (await storage.update_user_settings(42, language=None)).language is None


async def test_pending_size_limit(tmp_path: Path) -> None:
    async with Storage(tmp_path / "p.db", max_pending_bytes=4) as storage:
        await storage.set_pending(1, 1, "content", b"1234")
        with pytest.raises(ImageTooLarge):
            await storage.set_pending(1, 1, "content", b"12345")
        assert await storage.get_pending(1, 1, "content") == PendingPicture(b"1234")


# --- jobs --------------------------------------------------------------------------------------


async def test_job_lifecycle(store: Storage, clock: Clock) -> None:
    params = StyleParams(size=512, style_weight=1e-2, style_layers=("block1_conv1",))
    meta = JobMeta(pair="p1", style_name="Café 🎨 \"quoted\" 'x'; --", status_msg=42)
    job = await store.create_job(
        "job-1", 1, 10, params, meta, [Path("/spool/job-1/content.jpg"), "/spool/s.jpg"]
    )
    assert (job.state, job.attempts, job.created_at) == ("queued", 0, clock.now)
    assert job.params == params and job.meta == meta
    assert job.spool_paths == ["/spool/job-1/content.jpg", "/spool/s.jpg"]
    assert job.started_at is None and job.finished_at is None and not job.finished

    clock.now += 1
    running = await store.mark_job_running("job-1")
    assert (running.state, running.attempts, running.started_at) == ("running", 1, clock.now)

    clock.now += 1
    assert await store.requeue_job("job-1", "worker lost") is True
    requeued = await store.get_job("job-1")
    assert requeued is not None
    assert (requeued.state, requeued.attempts, requeued.error, requeued.started_at) == (
        "queued",
        1,
        "worker lost",
        None,
    )

    clock.now += 1
    running = await store.mark_job_running("job-1")
    assert (running.attempts, running.started_at) == (2, clock.now)
    updated = await store.update_job_meta("job-1", status_msg=43, result_msg=44)
    assert updated.meta == replace(meta, status_msg=43, result_msg=44)
    with pytest.raises(InvalidValue):
        await store.update_job_meta("job-1", no_such_field=1)

    clock.now += 10
    assert await store.finish_job("job-1", "done", result_path=Path("/out/job-1.jpg")) is True
    done = await store.get_job("job-1")
    assert done is not None and done.finished
    assert (done.state, done.result_path, done.finished_at, done.attempts) == (
        "done",
        "/out/job-1.jpg",
        clock.now,
        2,
    )
    assert done.params == params  # JSON round trip, tuples and None included

    # Terminal states are final: the first end wins.
    assert await store.finish_job("job-1", "cancelled") is False
    assert await store.requeue_job("job-1") is False
    with pytest.raises(JobStateError):
        await store.mark_job_running("job-1")
    final = await store.get_job("job-1")
    assert final is not None and final.state == "done"

    for call in (
        store.mark_job_running("nope"),
        store.finish_job("nope", "failed"),
        store.requeue_job("nope"),
        store.update_job_meta("nope", status_msg=1),
    ):
        with pytest.raises(JobNotFound):
            await call
    with pytest.raises(InvalidValue):
        await store.finish_job("job-1", "running")
    with pytest.raises(DuplicateJob):
        await store.create_job("job-1", 1, 10, StyleParams(), JobMeta(), [])


async def test_list_jobs_by_state_oldest_first(store: Storage, clock: Clock) -> None:
    for i in range(6):
        clock.now += 1
        await store.create_job(f"j{i}", user_id=i % 2, chat_id=100, params=StyleParams(seed=i))
    await store.mark_job_running("j1")
    await store.mark_job_running("j4")
    await store.finish_job("j2", "failed", error="bad picture")
    await store.finish_job("j3", "cancelled")

    def ids(jobs: list[storage_module.Job]) -> list[str]:
        return [j.id for j in jobs]

    assert ids(await store.list_jobs(["queued"])) == ["j0", "j5"]
    assert ids(await store.list_jobs(["queued", "running"])) == ["j0", "j1", "j4", "j5"]
    assert ids(await store.list_jobs(("running", "queued"), user_id=1)) == ["j1", "j5"]
    assert ids(await store.list_jobs(JOB_STATES)) == [f"j{i}" for i in range(6)]
    assert ids(await store.list_jobs("failed")) == ["j2"]
    assert await store.list_jobs([]) == []
    with pytest.raises(InvalidValue):
        await store.list_jobs(["queued", "'; DROP TABLE jobs; --"])
    assert await store.job_counts() == {
        "queued": 2,
        "running": 2,
        "done": 0,
        "failed": 1,
        "cancelled": 1,
    }
    failed = await store.get_job("j2")
    assert failed is not None and failed.error == "bad picture"


async def test_job_records_are_typed_checked_and_round_trip(store: Storage) -> None:
    params = StyleParams(steps=(3, 4), style_blend=(1.0, 2.0), extra={"a": [1, {"ü": "✓"}]})
    meta = JobMeta(pair="'\";--", style_name="ü ✓", preset_id=2**53, size=None)
    job = await store.create_job("json", 1, 1, params, meta, [])
    again = await store.get_job("json")
    assert again is not None and again.params == params and again.meta == meta
    assert again.params.extra == params.extra and again.state is JobState.QUEUED
    assert job == again
    with pytest.raises(InvalidValue):
        await store.create_job("bad1", 1, 1, StyleParams(extra={"x": object()}), JobMeta(), [])
    with pytest.raises(InvalidValue):
        await store.create_job("bad2", 1, 1, StyleParams(extra={"x": float("nan")}), JobMeta())
    with pytest.raises(InvalidValue):
        await store.create_job("bad3", 1, 1, {"size": 64}, JobMeta())  # type: ignore[arg-type]
    with pytest.raises(InvalidValue):
        await store.create_job("bad4", 1, 1, StyleParams(), {"pair": "x"})  # type: ignore[arg-type]
    with pytest.raises(InvalidValue):
        await store.create_job("bad5", 1, 1, StyleParams(), JobMeta(), "/one/path")
    assert await store.get_job("bad1") is None


async def test_job_meta_of_an_older_row_keeps_what_it_knows(store: Storage, db_path: Path) -> None:
    await store.create_job("old", 1, 1, StyleParams(), JobMeta(pair="p"))
    with sqlite3.connect(db_path) as conn:
        conn.execute(
            "UPDATE jobs SET meta = ? WHERE id = 'old'",
            ('{"pair": "p", "strength": 4, "gone_key": 1}',),
        )
    job = await store.get_job("old")
    assert job is not None and job.meta == JobMeta(pair="p", strength=4)


async def test_prune_jobs_and_stats(store: Storage, clock: Clock) -> None:
    await store.ensure_user(1, 1, "a")
    await store.ensure_user(2, 2, "b")
    await store.add_preset(1, "own", IMG)
    await store.add_preset(None, "g1", IMG)
    await store.add_preset(None, "g2", IMG)
    await store.create_job("old-done", 1, 1, StyleParams())
    await store.finish_job("old-done", "done")
    await store.create_job("old-queued", 1, 1, StyleParams())
    clock.now += 10 * 86400
    await store.create_job("new-done", 1, 1, StyleParams())
    await store.finish_job("new-done", "failed")
    stats = await store.stats()
    assert stats == {
        "users": 2,
        "presets_own": 1,
        "presets_global": 2,
        "jobs": {"queued": 1, "running": 0, "done": 1, "failed": 1, "cancelled": 0},
        "jobs_24h": 1,
    }
    assert await store.prune_jobs(older_than_days=7) == 1
    assert await store.get_job("old-done") is None
    assert await store.get_job("old-queued") is not None  # unfinished jobs are never pruned
    assert await store.get_job("new-done") is not None
    with pytest.raises(InvalidValue):
        await store.prune_jobs(-1)


# --- administration ----------------------------------------------------------------------------


async def test_backup_is_a_consistent_standalone_copy(store: Storage, tmp_path: Path) -> None:
    await store.ensure_user(1, 1, "a")
    await store.add_preset(1, "kept", b"image bytes")
    dest = await store.backup(tmp_path / "backups" / "copy.sqlite3")
    assert sorted(p.name for p in dest.parent.iterdir()) == ["copy.sqlite3"]  # no -wal
    assert raw(dest, "PRAGMA integrity_check") == [("ok",)]
    assert raw(dest, "SELECT name, image FROM presets") == [("kept", b"image bytes")]
    async with Storage(dest) as copy:
        assert await copy.preset_image(1) == b"image bytes"
    await store.add_preset(1, "later", IMG)
    await store.backup(dest)  # replaces the old copy
    assert len(raw(dest, "SELECT id FROM presets")) == 2
    with pytest.raises(InvalidValue):
        await store.backup(store.path)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["copy.sqlite3"]


async def test_integrity_check_reports_problems(store: Storage) -> None:
    assert await store.integrity_check() == "ok"
    conn = sqlite3.connect(store.path)  # foreign keys off on this connection
    conn.execute(
        "INSERT INTO presets (owner_id, name, name_key, created_at, image) "
        "VALUES (404, 'orphan', 'orphan', 0, x'00')"
    )
    conn.commit()
    conn.close()
    assert "foreign key" in await store.integrity_check()


# --- crash safety ------------------------------------------------------------------------------

WRITER = r"""
import asyncio, hashlib, os, sys, time
from bot.storage import Storage

async def main(path, tag):
    pool = [os.urandom(1_500_000 + 4096 * k) for k in range(4)]  # big writes: slow to commit
    async with Storage(path) as storage:
        await storage.ensure_user(1, 1, "writer")
        i = 0
        while True:
            blob = pool[i % 4] + i.to_bytes(8, "big")
            title = hashlib.sha256(blob).hexdigest()
            print(f"start {i}", flush=True)
            began = time.perf_counter()
            await storage.add_preset(1, f"{tag} {i}", blob, title=title)
            print(f"done {i} {time.perf_counter() - began:.6f}", flush=True)
            if i >= 6:
                await storage.delete_preset((await storage.find_preset(f"{tag} {i - 6}", 1)).id, 1)
            i += 1

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def _run_and_kill(path: Path, tag: str, rng: random.Random) -> tuple[int, bool]:
    """Start a writer and SIGKILL it at a random moment inside one of its `add_preset` calls
    (timed from the ones before). Returns (last index it saw committed, killed inside a call)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        WRITER,
        str(path),
        tag,
        cwd=REPO_DIR,
        env={**os.environ, "PYTHONPATH": str(REPO_DIR)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    warm_up = rng.randint(3, 8)
    durations: list[float] = []
    last_done = -1
    while True:
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=60)
        if not line:
            _, err = await proc.communicate()
            pytest.fail(f"the writer died on its own: {err.decode()[-2000:]}")
        what, index, *took = line.decode().split()
        if what == "done":
            last_done = int(index)
            durations.append(float(took[0]))
        elif len(durations) >= warm_up:
            await asyncio.sleep(rng.uniform(0.0, 0.9) * statistics.median(durations))
            break
    proc.kill()  # SIGKILL: no cleanup, no atexit, no sqlite3_close
    out, _ = await proc.communicate()
    assert proc.returncode == -9
    # The kill may cut the last line short: keep whole lines only.
    events = [line.split() for line in out.decode().splitlines()]
    events = [e for e in events if len(e) >= 2 and e[1].isdigit()]
    killed_inside = True
    for event in events:
        if event[0] == "done":
            last_done = int(event[1])
        killed_inside = event[0] == "start"
    return last_done, killed_inside


@pytest.mark.slow
async def test_kill_9_during_preset_writes_leaves_no_half_preset(tmp_path: Path) -> None:
    path = tmp_path / "crash.sqlite3"
    rng = random.Random(1234)
    kills_inside = 0
    rounds = 0
    while rounds < 5 or (kills_inside < 2 and rounds < 15):
        tag = f"r{rounds}"
        last_done, killed_inside = await _run_and_kill(path, tag, rng)
        rounds += 1
        kills_inside += killed_inside

        assert raw(path, "PRAGMA integrity_check") == [("ok",)]  # as a plain reader sees it
        async with Storage(path) as storage:
            assert await storage.integrity_check() == "ok"
            presets = await storage.list_presets(1, include_global=False)
            # What the writer saw committed survived (kill -9 loses nothing committed) ...
            assert await storage.find_preset(f"{tag} {last_done}", 1) is not None
            # ... and every preset row has its whole image, never a part or none.
            for preset in presets:
                image = await storage.preset_image(preset.id)
                assert hashlib.sha256(image).hexdigest() == preset.title, preset.name
        lacking = raw(path, "SELECT count(*) FROM presets WHERE image IS NULL OR length(image) = 0")
        assert lacking == [(0,)]
    assert kills_inside >= 2, "the kills did not land inside add_preset; the test proved little"


# --- concurrency -------------------------------------------------------------------------------


async def test_cancelled_calls_leave_no_open_transaction(store: Storage) -> None:
    await store.ensure_user(1, 1, "a")
    for delay_steps in range(12):
        task = asyncio.create_task(store.add_preset(1, f"cancel {delay_steps}", IMG))
        for _ in range(delay_steps):
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises((asyncio.CancelledError, DuplicateName)):
            await task
        # The connection is usable and not stuck inside the cancelled transaction.
        await store.add_preset(1, f"after {delay_steps}", IMG)
        assert not store._conn().in_transaction
    names = {p.name for p in await store.list_presets(1)}
    assert {f"after {i}" for i in range(12)} <= names
    assert await store.integrity_check() == "ok"


async def test_many_coroutines_interleave_safely(store: Storage) -> None:
    async def user_session(uid: int) -> None:
        await store.ensure_user(uid, uid, f"u{uid}")
        await store.set_pending(uid, uid, "content", bytes([uid]) * 100)
        preset = await store.add_preset(uid, "mine", bytes([uid]) * 50)
        await store.update_user_settings(uid, strength=uid % 5 + 1, active_preset_id=preset.id)
        await store.create_job(f"job-{uid}", uid, uid, StyleParams(seed=uid))
        await store.mark_job_running(f"job-{uid}")
        await store.finish_job(f"job-{uid}", "done")

    await asyncio.gather(*(user_session(uid) for uid in range(1, 41)))
    stats = await store.stats()
    assert stats["users"] == 40 and stats["presets_own"] == 40
    assert stats["jobs"]["done"] == 40
    for uid in (1, 17, 40):
        user = await store.get_user(uid)
        assert user is not None and user.strength == uid % 5 + 1
        assert await store.get_pending(uid, uid, "content") == PendingPicture(bytes([uid]) * 100)


# --- migration 4: thumbnails, mixes, brush, Telegram file ids ----------------------------------


async def test_migration_4_keeps_presets_and_users(db_path: Path) -> None:
    """A database of schema 3 opens with its presets (no thumbnail yet) and users kept."""
    db_path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(db_path)
    for script in storage_module.MIGRATIONS[:3]:
        conn.executescript(script)
    conn.execute("PRAGMA user_version = 3")
    conn.execute(
        "INSERT INTO users (user_id, chat_id, created_at, updated_at) VALUES (7, 7, 1.0, 1.0)"
    )
    conn.execute(
        "INSERT INTO presets (owner_id, name, name_key, created_at, image) "
        "VALUES (NULL, 'old', 'old', 1.0, ?)",
        (b"old image",),
    )
    conn.commit()
    conn.close()
    async with Storage(db_path) as storage:
        (old,) = await storage.list_global_presets()
        assert old.name == "old" and not old.is_mix
        assert await storage.preset_thumbnails([old.id]) == {old.id: None}
        assert await storage.set_preset_thumbnail(old.id, b"thumb")
        assert await storage.preset_thumbnails([old.id, 999]) == {old.id: b"thumb"}
        assert not await storage.set_preset_thumbnail(999, b"thumb")
        user = await storage.get_user(7)
        assert user is not None and user.brush == 1.0 and user.mix_preset_id is None


async def test_thumbnail_and_mix_image_are_kept(store: Storage) -> None:
    await store.ensure_user(1, 1, "a")
    plain = await store.add_preset(1, "plain", IMG, thumbnail=b"small")
    mix = await store.add_preset(1, "mix", b"first", mix_image=b"second", thumbnail=b"t")
    assert not plain.is_mix and mix.is_mix
    assert (await store.get_preset(mix.id)) == mix
    assert [p.is_mix for p in await store.list_presets(1)] == [True, False]
    assert await store.preset_images(plain.id) == (IMG,)
    assert await store.preset_images(mix.id) == (b"first", b"second")
    assert await store.preset_thumbnails([plain.id, mix.id]) == {plain.id: b"small", mix.id: b"t"}
    with pytest.raises(PresetNotFound):
        await store.preset_images(999)
    with pytest.raises(InvalidValue):
        await store.add_preset(1, "empty thumb", IMG, thumbnail=b"")


async def test_mix_and_brush_settings(store: Storage) -> None:
    await store.ensure_user(1, 1, "a")
    await store.ensure_user(2, 2, "b")
    a = await store.add_preset(None, "a", IMG)
    theirs = await store.add_preset(2, "theirs", IMG)
    user = await store.update_user_settings(1, active_preset_id=a.id, mix_preset_id=a.id, brush=2)
    assert (user.mix_preset_id, user.brush) == (a.id, 2.0)
    user = await store.update_user_settings(1, strength=4)
    assert (user.mix_preset_id, user.brush) == (a.id, 2.0)  # kept
    with pytest.raises(PresetNotFound):
        await store.update_user_settings(1, mix_preset_id=theirs.id)
    for bad in (0.1, 5.0, True, "2"):
        with pytest.raises(InvalidValue):
            await store.update_user_settings(1, brush=bad)  # type: ignore[arg-type]
    await store.delete_preset(a.id, None)
    user2 = await store.get_user(1)
    assert user2 is not None and user2.mix_preset_id is None  # ON DELETE SET NULL
    assert (await store.update_user_settings(1, brush=0.25)).brush == 0.25


async def test_telegram_file_ids(store: Storage) -> None:
    assert await store.telegram_file("sheet:abc") is None
    await store.set_telegram_file("sheet:abc", "AgAC1")
    assert await store.telegram_file("sheet:abc") == "AgAC1"
    await store.set_telegram_file("sheet:abc", "AgAC2")
    assert await store.telegram_file("sheet:abc") == "AgAC2"
    await store.forget_telegram_file("sheet:abc")
    assert await store.telegram_file("sheet:abc") is None
    with pytest.raises(InvalidValue):
        await store.set_telegram_file("", "x")


async def test_prune_telegram_files(store: Storage, clock: Clock) -> None:
    await store.set_telegram_file("old", "A")
    clock.now += 31 * 86400
    await store.set_telegram_file("new", "B")
    assert await store.prune_telegram_files(30) == 1
    assert await store.telegram_file("old") is None
    assert await store.telegram_file("new") == "B"


async def test_latest_job(store: Storage, clock: Clock) -> None:
    await store.ensure_user(1, 1, "a")
    assert await store.latest_job(1) is None
    await store.create_job("j1", 1, 1, StyleParams())
    clock.now += 1
    await store.create_job("j2", 1, 1, StyleParams())
    await store.create_job("k1", 2, 2, StyleParams())
    latest = await store.latest_job(1)
    assert latest is not None and latest.id == "j2"


async def test_worker_speeds_are_kept_per_device_newest_first(tmp_path: Path) -> None:
    from bot.storage import WorkerSpeed

    clock = iter([100.0, 200.0, 300.0])
    async with Storage(tmp_path / "db.sqlite3", clock=lambda: next(clock)) as storage:
        assert await storage.worker_speeds() == []
        await storage.save_worker_speed(WorkerSpeed("CPU (float32)", 9.0, 3.0, jobs=1))
        await storage.save_worker_speed(WorkerSpeed("GPU X (bfloat16)", 0.2, 1.0, jobs=1))
        await storage.save_worker_speed(WorkerSpeed("CPU (float32)", 8.0, 2.0, jobs=2))
        speeds = await storage.worker_speeds()
        assert [(s.device, s.seconds_per_megapixel_step, s.jobs, s.updated_at) for s in speeds] == [
            ("CPU (float32)", 8.0, 2, 300.0),
            ("GPU X (bfloat16)", 0.2, 1, 200.0),
        ]
        with pytest.raises(InvalidValue):
            await storage.save_worker_speed(WorkerSpeed("", 1.0, 0.0))
        with pytest.raises(InvalidValue):
            await storage.save_worker_speed(WorkerSpeed("CPU", 0.0, 0.0))
