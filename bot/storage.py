"""All SQL of stylebot: users and their settings, style presets, pending pictures and jobs.

One `Storage` per process, on one SQLite file (WAL, foreign keys on). aiosqlite runs every
query on its own thread, so the event loop never blocks on the disk. Every statement here is a
string literal with `?` parameters: no SQL is ever built from values.

Concurrency: an `asyncio.Lock` serialises every write (and every multi-statement read) on the
main connection, so transactions started by different coroutines never interleave, and no
coroutine reads another's uncommitted writes. Single-statement reads run on a second, read-only
connection with its own lock (WAL lets it read while a write is in progress), so under load a
quick read such as /start's never waits behind a queue of writes. Writes that belong together (a preset and its image, a counted limit and the insert it
guards) run in one `BEGIN IMMEDIATE` transaction: a `kill -9` at any moment leaves either all of
it or none of it.

Schema changes: append a script to `MIGRATIONS`; never edit one that has shipped. `MIGRATIONS[i]`
takes the schema from `PRAGMA user_version` i to i + 1 in its own transaction. (A migration that
rebuilds a table referenced by foreign keys needs `PRAGMA foreign_keys=OFF` around it, which only
works outside a transaction: handle that case in `_migrate` when it first arises.)

Times are Unix timestamps in seconds (`float`, UTC), from the `clock` given to `Storage`.
"""

from __future__ import annotations

import asyncio
import enum
import json
import os
import re
import sqlite3
import time
import unicodedata
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal

import aiosqlite

from bot.jobmeta import JobMeta
from engine.job import FINISHED_STATES, DecodeError, JobState
from engine.params import ParamsError, StyleParams

__all__ = [
    "JOB_STATES",
    "MAX_IMAGE_BYTES",
    "MAX_PENDING_BYTES",
    "MIGRATIONS",
    "PENDING_KINDS",
    "PRESET_NAME_MAX",
    "SCHEMA_VERSION",
    "TERMINAL_JOB_STATES",
    "UNSET",
    "DuplicateJob",
    "DuplicateName",
    "ImageTooLarge",
    "InvalidName",
    "InvalidValue",
    "Job",
    "JobNotFound",
    "JobStateError",
    "NotFound",
    "PendingPicture",
    "Preset",
    "PresetNotFound",
    "SchemaTooNew",
    "Storage",
    "StorageError",
    "TooManyPresets",
    "User",
    "UserNotFound",
    "WorkerSpeed",
    "preset_name_key",
    "validate_preset_name",
]

# ---------------------------------------------------------------------------------------------
# Limits and vocabularies

MAX_IMAGE_BYTES: Final = 2 * 1024 * 1024
"""Largest preset image accepted (the caller re-encodes; storage only refuses oversized blobs)."""
MAX_PENDING_BYTES: Final = 20 * 1024 * 1024
"""Largest pending picture: Telegram's own limit for files a bot may download."""
PRESET_NAME_MAX: Final = 32
MIN_BRUSH: Final = 0.25
MAX_BRUSH: Final = 4.0
"""The brush sizes a user may keep: the engine's `style_scale` range."""
DEFAULT_BUSY_TIMEOUT_MS: Final = 5000

_LANGUAGE: Final = re.compile(r"^[a-z]{2,3}(-[a-z0-9]{2,4})?$")
PendingKind = Literal["content", "style"]
PENDING_KINDS: Final[tuple[str, ...]] = ("content", "style")
JOB_STATES: Final[tuple[JobState, ...]] = tuple(JobState)
TERMINAL_JOB_STATES: Final[tuple[JobState, ...]] = tuple(s for s in JobState if s.finished)

# ---------------------------------------------------------------------------------------------
# Migrations: MIGRATIONS[i] takes the schema from user_version i to i + 1.

MIGRATIONS: Final[tuple[str, ...]] = (
    # 0 -> 1: the first schema.
    """
    CREATE TABLE users (
        user_id          INTEGER PRIMARY KEY,
        chat_id          INTEGER NOT NULL,
        name             TEXT    NOT NULL DEFAULT '',
        strength         INTEGER NOT NULL DEFAULT 3 CHECK (strength BETWEEN 1 AND 5),
        preserve_colors  INTEGER NOT NULL DEFAULT 0 CHECK (preserve_colors IN (0, 1)),
        size             INTEGER CHECK (size IS NULL OR size > 0),
        active_preset_id INTEGER REFERENCES presets (id) ON DELETE SET NULL,
        created_at       REAL    NOT NULL,
        updated_at       REAL    NOT NULL
    );
    CREATE INDEX users_active_preset ON users (active_preset_id);

    CREATE TABLE presets (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        owner_id   INTEGER REFERENCES users (user_id) ON DELETE CASCADE,
        name       TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 32),
        name_key   TEXT NOT NULL CHECK (length(name_key) >= 1),
        title      TEXT NOT NULL DEFAULT '',
        artist     TEXT NOT NULL DEFAULT '',
        year       TEXT NOT NULL DEFAULT '',
        licence    TEXT NOT NULL DEFAULT '',
        source_url TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL,
        image      BLOB NOT NULL CHECK (typeof(image) = 'blob' AND length(image) > 0),
        UNIQUE (owner_id, name_key)
    );
    CREATE UNIQUE INDEX presets_global_name ON presets (name_key) WHERE owner_id IS NULL;

    CREATE TABLE pending (
        chat_id    INTEGER NOT NULL,
        kind       TEXT    NOT NULL CHECK (kind IN ('content', 'style')),
        data       BLOB    NOT NULL CHECK (typeof(data) = 'blob'),
        updated_at REAL    NOT NULL,
        PRIMARY KEY (chat_id, kind)
    );

    CREATE TABLE jobs (
        id          TEXT    PRIMARY KEY NOT NULL,
        user_id     INTEGER NOT NULL,
        chat_id     INTEGER NOT NULL,
        state       TEXT    NOT NULL DEFAULT 'queued'
                    CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled')),
        params      TEXT    NOT NULL DEFAULT '{}' CHECK (json_valid(params)),
        meta        TEXT    NOT NULL DEFAULT '{}' CHECK (json_valid(meta)),
        spool_paths TEXT    NOT NULL DEFAULT '[]' CHECK (json_valid(spool_paths)),
        attempts    INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
        error       TEXT,
        result_path TEXT,
        created_at  REAL    NOT NULL,
        started_at  REAL,
        finished_at REAL
    );
    CREATE INDEX jobs_state ON jobs (state, created_at);
    CREATE INDEX jobs_user ON jobs (user_id, state);
    CREATE INDEX jobs_created ON jobs (created_at);
    """,
    # 1 -> 2: presets without their image, so a preset's columns are listed in one place.
    """
    CREATE VIEW preset_records AS
        SELECT id, owner_id, name, name_key, title, artist, year, licence, source_url,
               created_at
        FROM presets;
    """,
    # 2 -> 3: a waiting picture belongs to a person in a chat (in a group, one member's photo
    # must not become another's style), and a user may choose the bot's language. Old rows
    # were keyed by chat: in a private chat that id is the user's own.
    """
    CREATE TABLE pending_by_user (
        chat_id    INTEGER NOT NULL,
        user_id    INTEGER NOT NULL,
        kind       TEXT    NOT NULL CHECK (kind IN ('content', 'style')),
        data       BLOB    NOT NULL CHECK (typeof(data) = 'blob'),
        message_id INTEGER,
        updated_at REAL    NOT NULL,
        PRIMARY KEY (chat_id, user_id, kind)
    );
    INSERT INTO pending_by_user (chat_id, user_id, kind, data, updated_at)
        SELECT chat_id, chat_id, kind, data, updated_at FROM pending;
    DROP TABLE pending;
    ALTER TABLE pending_by_user RENAME TO pending;
    ALTER TABLE users ADD COLUMN language TEXT
        CHECK (language IS NULL OR length(language) BETWEEN 2 AND 8);
    """,
    # 3 -> 4: the gallery, mixes and brush size. A preset keeps a small thumbnail (made once, at
    # import or save; NULL for older rows until the gallery first needs it) and, for a saved mix
    # of two styles, its second picture. A user may paint with two styles at once (the active
    # preset and `mix_preset_id`) and chooses a brush size (the engine's style_scale). Pictures
    # uploaded to Telegram once are reused through their file_id, by a key that changes when
    # what the picture shows changes.
    """
    ALTER TABLE presets ADD COLUMN thumbnail BLOB
        CHECK (thumbnail IS NULL OR (typeof(thumbnail) = 'blob' AND length(thumbnail) > 0));
    ALTER TABLE presets ADD COLUMN mix_image BLOB
        CHECK (mix_image IS NULL OR (typeof(mix_image) = 'blob' AND length(mix_image) > 0));
    ALTER TABLE users ADD COLUMN mix_preset_id INTEGER
        REFERENCES presets (id) ON DELETE SET NULL;
    ALTER TABLE users ADD COLUMN brush REAL NOT NULL DEFAULT 1.0
        CHECK (brush BETWEEN 0.25 AND 4.0);
    CREATE TABLE telegram_files (
        key        TEXT PRIMARY KEY NOT NULL CHECK (length(key) BETWEEN 1 AND 128),
        file_id    TEXT NOT NULL CHECK (length(file_id) BETWEEN 1 AND 512),
        created_at REAL NOT NULL
    );
    DROP VIEW preset_records;
    CREATE VIEW preset_records AS
        SELECT id, owner_id, name, name_key, title, artist, year, licence, source_url,
               created_at, mix_image IS NOT NULL AS is_mix
        FROM presets;
    """,
    # 4 -> 5: how fast the workers paint, per device, measured on finished jobs: /size shows
    # each size's time from it, /stats names the devices.
    """
    CREATE TABLE worker_speeds (
        device                     TEXT PRIMARY KEY NOT NULL
                                   CHECK (length(device) BETWEEN 1 AND 200),
        seconds_per_megapixel_step REAL NOT NULL CHECK (seconds_per_megapixel_step > 0),
        overhead_s                 REAL NOT NULL CHECK (overhead_s >= 0),
        jobs                       INTEGER NOT NULL CHECK (jobs >= 1),
        updated_at                 REAL NOT NULL
    );
    """,
)
SCHEMA_VERSION: Final = len(MIGRATIONS)

# ---------------------------------------------------------------------------------------------
# Errors


class StorageError(Exception):
    """Base of every error raised by this module. `str()` is safe to show a user."""


class SchemaTooNew(StorageError):
    """The database was written by a newer stylebot; this code refuses to touch it."""

    def __init__(self, found: int, known: int) -> None:
        super().__init__(
            f"the database schema is version {found}, but this stylebot only knows up to "
            f"version {known}: upgrade stylebot (or restore an older backup)"
        )
        self.found = found
        self.known = known


class InvalidValue(StorageError, ValueError):
    """An argument was refused before it reached the database."""


class InvalidName(InvalidValue):
    """A preset name was refused; the message says why, in words for the user."""


class ImageTooLarge(InvalidValue):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"that picture is too large to keep ({size / 1e6:.1f} MB; the limit is "
            f"{limit / 1e6:.1f} MB)"
        )
        self.size = size
        self.limit = limit


class DuplicateName(StorageError):
    def __init__(self, name: str) -> None:
        super().__init__(f"there is already a preset called “{name}”")
        self.name = name


class TooManyPresets(StorageError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"you can keep at most {limit} presets; delete one first")
        self.limit = limit


class NotFound(StorageError, LookupError):
    """Base of the "no such row" errors."""


class UserNotFound(NotFound):
    pass


class PresetNotFound(NotFound):
    pass


class JobNotFound(NotFound):
    pass


class DuplicateJob(StorageError):
    pass


class JobStateError(StorageError):
    """The job is already finished (done, failed or cancelled): terminal states are final."""


# ---------------------------------------------------------------------------------------------
# Records


@dataclass(frozen=True)
class User:
    user_id: int
    chat_id: int
    name: str = ""
    strength: int = 3
    preserve_colors: bool = False
    size: int | None = None
    """None: the bot's default size."""
    active_preset_id: int | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    language: str | None = None
    """Chosen with /language; None follows the user's Telegram language."""
    mix_preset_id: int | None = None
    """With `active_preset_id`: the second style of an active mix (/style A + B)."""
    brush: float = 1.0
    """Brush size: the engine's `style_scale` (/brush)."""


@dataclass(frozen=True)
class WorkerSpeed:
    """How fast one kind of worker device paints, measured on finished jobs (`bot.speed`)."""

    device: str
    """`engine.job.Result.device`, e.g. "CPU (avx512_bf16, bfloat16)"."""
    seconds_per_megapixel_step: float
    """Optimisation seconds per megapixel per evaluation."""
    overhead_s: float
    """The rest of a job: decoding, model, encoding."""
    jobs: int = 1
    """Jobs measured."""
    updated_at: float = 0.0


@dataclass(frozen=True)
class Preset:
    """A style picture with a name. The image itself is loaded only by `preset_image`."""

    id: int
    owner_id: int | None
    """None: a built-in preset everyone sees."""
    name: str
    title: str = ""
    artist: str = ""
    year: str = ""
    licence: str = ""
    source_url: str = ""
    created_at: float = 0.0
    is_mix: bool = False
    """A saved mix of two style pictures (`preset_images` gives both)."""

    @property
    def is_global(self) -> bool:
        return self.owner_id is None


@dataclass(frozen=True)
class Job:
    id: str
    user_id: int
    chat_id: int
    state: JobState
    params: StyleParams = field(default_factory=StyleParams)
    meta: JobMeta = field(default_factory=JobMeta)
    spool_paths: list[str] = field(default_factory=list)
    attempts: int = 0
    error: str | None = None
    result_path: str | None = None
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None

    @property
    def finished(self) -> bool:
        return self.state in FINISHED_STATES


@dataclass(frozen=True)
class PendingPicture:
    """A picture someone sent that waits for its other half (a photo for a style, or back)."""

    data: bytes
    message_id: int | None = None
    """The message that brought it (the painting replies to it)."""


class _Unset(enum.Enum):
    UNSET = enum.auto()


UNSET: Final = _Unset.UNSET
"""Default of the optional arguments of `update_user_settings` where None is a real value."""

# ---------------------------------------------------------------------------------------------
# Preset names


def _describe(ch: str) -> str:
    if ch.isprintable() and not ch.isspace():
        return f"“{ch}”"
    if unicodedata.category(ch) == "Cc":
        return f"the control character U+{ord(ch):04X}"
    name = unicodedata.name(ch, "")
    return f"U+{ord(ch):04X}" + (f" ({name.lower()})" if name else "")


def validate_preset_name(name: object) -> str:
    """The name as it will be stored (stripped), or `InvalidName` saying what is wrong.

    Allowed: 1–32 characters of letters (any script, with their accents), digits, spaces, '-'
    and '_', starting with a letter or a digit.
    """
    if not isinstance(name, str):
        raise InvalidName("a preset name must be text")
    cleaned = name.strip()
    if not cleaned:
        raise InvalidName(
            f"a preset needs a name: 1–{PRESET_NAME_MAX} letters, digits, spaces, '-' or '_'"
        )
    if len(cleaned) > PRESET_NAME_MAX:
        raise InvalidName(
            f"that name is too long ({len(cleaned)} characters); "
            f"keep it to {PRESET_NAME_MAX} or fewer"
        )
    for ch in cleaned:
        category = unicodedata.category(ch)
        if not (ch in " -_" or category[0] in "LM" or category == "Nd"):
            raise InvalidName(
                f"preset names can use letters, digits, spaces, '-' and '_' only; "
                f"{_describe(ch)} is not allowed"
            )
    first = unicodedata.category(cleaned[0])
    if not (first[0] == "L" or first == "Nd"):
        raise InvalidName("a preset name must start with a letter or a digit")
    return cleaned


def preset_name_key(name: str) -> str:
    """What makes two names the same: Unicode caseless (NFKC + casefold), spaces collapsed."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())
    return " ".join(folded.split())


# ---------------------------------------------------------------------------------------------
# SQL (literals only; values always go through `?`)

# Each record's columns are named once: in its table (users, jobs) or in the view
# `preset_records` (a preset without its image), and mapped to the dataclass by field name.
_SELECT_USER: Final = "SELECT * FROM users WHERE user_id = ?"
_SELECT_PRESET: Final = "SELECT * FROM preset_records WHERE id = ?"
_FIND_PRESET: Final = (
    "SELECT * FROM preset_records WHERE name_key = ? AND (owner_id = ? OR owner_id IS NULL) "
    "ORDER BY owner_id IS NULL LIMIT 1"
)
_LIST_PRESETS: Final = (
    "SELECT * FROM preset_records WHERE owner_id = ? OR owner_id IS NULL "
    "ORDER BY owner_id IS NULL, name_key, id"
)
_LIST_OWN_PRESETS: Final = "SELECT * FROM preset_records WHERE owner_id = ? ORDER BY name_key, id"
_LIST_GLOBAL_PRESETS: Final = (
    "SELECT * FROM preset_records WHERE owner_id IS NULL ORDER BY name_key, id"
)
_SELECT_JOB: Final = "SELECT * FROM jobs WHERE id = ?"
# Five slots, one per state; unused ones are bound to NULL (which matches nothing).
_LIST_JOBS: Final = (
    "SELECT * FROM jobs WHERE state IN (?, ?, ?, ?, ?) AND (? IS NULL OR user_id = ?) "
    "ORDER BY created_at, rowid"
)


def _record(kind: type[User | Preset | Job], row: sqlite3.Row) -> dict[str, Any]:
    """The row's values for the fields of `kind`, by name."""
    return {f.name: row[f.name] for f in fields(kind)}


def _user(row: sqlite3.Row) -> User:
    values = _record(User, row)
    values["preserve_colors"] = bool(values["preserve_colors"])
    return User(**values)


def _preset(row: sqlite3.Row) -> Preset:
    values = _record(Preset, row)
    values["is_mix"] = bool(values["is_mix"])
    return Preset(**values)


def _job(row: sqlite3.Row) -> Job:
    values = _record(Job, row)
    try:
        values["state"] = JobState(row["state"])
        values["params"] = StyleParams.from_dict(json.loads(row["params"]))
        values["meta"] = JobMeta.from_dict(json.loads(row["meta"]))
    except (ValueError, TypeError, ParamsError, DecodeError) as exc:
        raise StorageError(f"job {row['id']} has an unreadable record: {exc}") from exc
    values["spool_paths"] = json.loads(row["spool_paths"])
    return Job(**values)


def _to_json(value: object, what: str) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise InvalidValue(f"job {what} must be plain JSON data: {exc}") from None


def _split_sql(script: str) -> list[str]:
    """A migration script as single statements (triggers' inner ';' are understood)."""
    statements: list[str] = []
    buffer = ""
    for piece in script.split(";"):
        buffer += piece + ";"
        if sqlite3.complete_statement(buffer):
            if buffer.strip(" \t\r\n;"):
                statements.append(buffer.strip())
            buffer = ""
    if buffer.strip(" \t\r\n;"):
        raise StorageError(f"incomplete SQL statement in a migration: {buffer.strip()[:80]!r}")
    return statements


def _try_open(path: Path) -> None:
    sqlite3.connect(path).close()


def _same_file(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve()


def _remove_db_files(path: Path) -> None:
    for suffix in ("", "-journal", "-wal", "-shm"):
        with suppress(OSError):
            Path(f"{path}{suffix}").unlink()


def _seal_backup(target: sqlite3.Connection, tmp: Path, dest: Path) -> None:
    """Make the fresh copy one self-contained file, check it, and move it into place."""
    try:
        mode = target.execute("PRAGMA journal_mode = DELETE").fetchone()
        check = target.execute("PRAGMA quick_check").fetchall()
    except sqlite3.Error as exc:
        raise StorageError(f"backup failed: {exc}") from exc
    finally:
        target.close()
    if mode is None or str(mode[0]).lower() != "delete":
        raise StorageError(f"backup failed: cannot leave WAL mode (got {mode!r})")
    if [str(row[0]) for row in check] != ["ok"]:
        raise StorageError(f"backup failed its check: {check[:3]!r}")
    os.replace(tmp, dest)


def _check_int(value: object, what: str, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidValue(f"{what} must be a whole number")
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise InvalidValue(f"{what} must be {bound}, not {value}")
    return value


def _check_kind(kind: str) -> str:
    if kind not in PENDING_KINDS:
        raise InvalidValue(f"pending kind must be one of {PENDING_KINDS}, not {kind!r}")
    return kind


def _check_states(states: Iterable[str]) -> list[str]:
    if isinstance(states, str):
        states = [states]
    wanted = list(dict.fromkeys(states))
    for state in wanted:
        if state not in JOB_STATES:
            raise InvalidValue(f"job state must be one of {JOB_STATES}, not {state!r}")
    return wanted


# ---------------------------------------------------------------------------------------------
# Storage


class Storage:
    """The bot's database. `await open()` (or `async with Storage(path) as storage:`)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
        max_image_bytes: int = MAX_IMAGE_BYTES,
        max_pending_bytes: int = MAX_PENDING_BYTES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.busy_timeout_ms = _check_int(busy_timeout_ms, "busy_timeout_ms", 0)
        self.max_image_bytes = _check_int(max_image_bytes, "max_image_bytes", 1)
        self.max_pending_bytes = _check_int(max_pending_bytes, "max_pending_bytes", 1)
        self._clock = clock
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        self._reader: aiosqlite.Connection | None = None
        self._read_lock = asyncio.Lock()

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._db is not None

    async def open(self) -> None:
        """Connect, set the pragmas, apply pending migrations. Refuses a newer schema."""
        if self._db is not None:
            raise StorageError("storage is already open")
        if str(self.path) in ("", ":memory:") or str(self.path).startswith("file:"):
            raise StorageError("storage needs the path of a database file")
        await asyncio.to_thread(self.path.parent.mkdir, parents=True, exist_ok=True)
        try:
            # Opened once plainly first: when aiosqlite.connect fails, its thread outlives the
            # call and, if the loop closes meanwhile (a bot that cannot start), prints a
            # traceback of its own.
            await asyncio.to_thread(_try_open, self.path)
            db = await aiosqlite.connect(
                self.path, isolation_level=None, timeout=self.busy_timeout_ms / 1000
            )
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open the database {self.path}: {exc}") from exc
        db.row_factory = sqlite3.Row
        reader: aiosqlite.Connection | None = None
        try:
            # Pragmas take no parameters; the one value here is an int we validated.
            await db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            async with db.execute("PRAGMA journal_mode = WAL") as cursor:
                row = await cursor.fetchone()
            if row is None or str(row[0]).lower() != "wal":
                raise StorageError(f"cannot switch {self.path} to WAL mode (got {row!r})")
            await db.execute("PRAGMA synchronous = NORMAL")
            await db.execute("PRAGMA foreign_keys = ON")
            async with db.execute("PRAGMA foreign_keys") as cursor:
                row = await cursor.fetchone()
            if row is None or row[0] != 1:
                raise StorageError("this SQLite build does not enforce foreign keys")
            await self._migrate(db)
            reader = await aiosqlite.connect(
                self.path, isolation_level=None, timeout=self.busy_timeout_ms / 1000
            )
            reader.row_factory = sqlite3.Row
            await reader.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            await reader.execute("PRAGMA query_only = ON")
        except BaseException as exc:
            if reader is not None:
                await reader.close()
            await db.close()
            if isinstance(exc, sqlite3.Error):
                raise StorageError(f"cannot open the database {self.path}: {exc}") from exc
            raise
        self._db = db
        self._reader = reader

    @staticmethod
    async def _user_version(db: aiosqlite.Connection) -> int:
        async with db.execute("PRAGMA user_version") as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row is not None else 0

    async def _migrate(self, db: aiosqlite.Connection) -> None:
        """Apply MIGRATIONS one transaction each; safe against another process doing the same."""
        while True:
            await db.execute("BEGIN IMMEDIATE")
            try:
                version = await self._user_version(db)
                if version > SCHEMA_VERSION:
                    raise SchemaTooNew(version, SCHEMA_VERSION)
                if version == SCHEMA_VERSION:
                    await db.execute("COMMIT")
                    return
                for statement in _split_sql(MIGRATIONS[version]):
                    await db.execute(statement)
                await db.execute(f"PRAGMA user_version = {int(version) + 1}")
                await db.execute("COMMIT")
            except BaseException:
                with suppress(sqlite3.Error):
                    await db.execute("ROLLBACK")
                raise

    async def close(self) -> None:
        """Close the connection (waits for a transaction in flight). Safe to call twice."""
        async with self._read_lock:
            reader, self._reader = self._reader, None
            if reader is not None:
                await reader.close()
        async with self._lock:
            db, self._db = self._db, None
            if db is None:
                return
            try:
                with suppress(sqlite3.Error):
                    await db.execute("PRAGMA optimize")
            finally:
                await db.close()

    async def __aenter__(self) -> Storage:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- plumbing ---------------------------------------------------------------------------

    def _conn(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StorageError("storage is not open")
        return self._db

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[aiosqlite.Connection]:
        """Exclusive use of the read-only connection for statements in autocommit (one
        statement each, each seeing everything committed before it started)."""
        async with self._read_lock:
            db = self._reader
            if db is None:
                raise StorageError("storage is not open")
            try:
                yield db
            except sqlite3.Error as exc:
                raise StorageError(f"database error: {exc}") from exc

    @asynccontextmanager
    async def _tx(self, *, write: bool = True) -> AsyncIterator[aiosqlite.Connection]:
        """One transaction: committed if the block ends normally, rolled back otherwise.

        `write=True` takes the write lock at once (BEGIN IMMEDIATE) so a read-then-write
        cannot fail half-way on a lock upgrade; `write=False` gives a consistent snapshot.
        """
        async with self._lock:
            db = self._conn()
            try:
                await db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                yield db
            except BaseException as exc:
                # aiosqlite queues each call on its thread before awaiting it, so this ROLLBACK
                # runs after whatever was already queued (a BEGIN included) and before anything
                # another coroutine can queue, even when this task is being cancelled. It fails
                # harmlessly when there is no transaction (BEGIN failed, SQLite rolled back).
                with suppress(sqlite3.Error):
                    await db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise StorageError(f"database error: {exc}") from exc
                raise
            try:
                await db.execute("COMMIT")
            except sqlite3.Error as exc:
                with suppress(sqlite3.Error):
                    await db.execute("ROLLBACK")
                raise StorageError(f"database error: {exc}") from exc

    # `execute_fetchall` is one trip to aiosqlite's thread (execute, fetch and close are three):
    # under load every trip waits for a turn of the event loop while holding the lock.
    @staticmethod
    async def _one(
        db: aiosqlite.Connection, sql: str, params: Sequence[object] = ()
    ) -> sqlite3.Row | None:
        rows = list(await db.execute_fetchall(sql, params))
        return rows[0] if rows else None

    @staticmethod
    async def _all(
        db: aiosqlite.Connection, sql: str, params: Sequence[object] = ()
    ) -> list[sqlite3.Row]:
        return list(await db.execute_fetchall(sql, params))

    @classmethod
    async def _count(cls, db: aiosqlite.Connection, sql: str, params: Sequence[object] = ()) -> int:
        row = await cls._one(db, sql, params)
        return int(row[0]) if row is not None else 0

    @staticmethod
    async def _changes(db: aiosqlite.Connection, sql: str, params: Sequence[object] = ()) -> int:
        """Run an UPDATE or DELETE; how many rows it changed."""
        cursor = await db.execute(sql, params)
        changed = cursor.rowcount
        await cursor.close()
        return changed

    # -- users and settings -----------------------------------------------------------------

    async def ensure_user(self, user_id: int, chat_id: int, name: str = "") -> User:
        """The user, created with default settings if new; chat id and name kept current."""
        async with self._read() as db:  # the common case, a known user: one read, no write
            row = await self._one(db, _SELECT_USER, (user_id,))
        if row is not None and row["chat_id"] == chat_id and row["name"] == name:
            return _user(row)
        now = self._clock()
        async with self._tx() as db:
            await db.execute(
                "INSERT INTO users (user_id, chat_id, name, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (user_id) DO UPDATE SET "
                "chat_id = excluded.chat_id, name = excluded.name, "
                "updated_at = excluded.updated_at "
                "WHERE chat_id IS NOT excluded.chat_id OR name IS NOT excluded.name",
                (user_id, chat_id, name, now, now),
            )
            row = await self._one(db, _SELECT_USER, (user_id,))
        assert row is not None
        return _user(row)

    async def get_user(self, user_id: int) -> User | None:
        async with self._read() as db:
            row = await self._one(db, _SELECT_USER, (user_id,))
        return _user(row) if row is not None else None

    async def update_user_settings(
        self,
        user_id: int,
        *,
        strength: int | None = None,
        preserve_colors: bool | None = None,
        size: int | _Unset | None = UNSET,
        active_preset_id: int | _Unset | None = UNSET,
        language: str | _Unset | None = UNSET,
        mix_preset_id: int | _Unset | None = UNSET,
        brush: float | None = None,
    ) -> User:
        """Change the given settings only; returns the user as stored.

        `strength`/`preserve_colors`: None leaves them as they are. `size`,
        `active_preset_id` and `language`: leave out to keep, None to reset (default size / no
        preset / Telegram's language).
        The active preset must be the user's own or a global one (else `PresetNotFound`).
        `mix_preset_id` (the second style of an active mix) likewise; leave out to keep, None
        for no mix. `brush`: None keeps it, else 0.25–4 (the engine's style_scale).
        Raises `UserNotFound`, `InvalidValue`.
        """
        if strength is not None:
            _check_int(strength, "strength", 1, 5)
        if preserve_colors is not None and not isinstance(preserve_colors, bool):
            raise InvalidValue("preserve_colors must be True or False")
        if size is not None and size is not UNSET:
            _check_int(size, "size", 1)
        if active_preset_id is not None and active_preset_id is not UNSET:
            _check_int(active_preset_id, "active_preset_id", 1)
        if mix_preset_id is not None and mix_preset_id is not UNSET:
            _check_int(mix_preset_id, "mix_preset_id", 1)
        if brush is not None and (
            isinstance(brush, bool)
            or not isinstance(brush, int | float)
            or not MIN_BRUSH <= brush <= MAX_BRUSH
        ):
            raise InvalidValue(f"brush must be {MIN_BRUSH:g}–{MAX_BRUSH:g}, not {brush!r}")
        if language is not None and language is not UNSET and not _LANGUAGE.match(language):
            raise InvalidValue(f"language must be a code such as en or pt-br, not {language!r}")
        now = self._clock()
        async with self._tx() as db:
            row = await self._one(db, _SELECT_USER, (user_id,))
            if row is None:
                raise UserNotFound(f"no user {user_id}")
            current = _user(row)
            new_size = current.size if size is UNSET else size
            new_active = current.active_preset_id if active_preset_id is UNSET else active_preset_id
            new_language = current.language if language is UNSET else language
            new_mix = current.mix_preset_id if mix_preset_id is UNSET else mix_preset_id
            for wanted in (active_preset_id, mix_preset_id):
                if wanted is UNSET or wanted is None:
                    continue
                visible = await self._one(
                    db,
                    "SELECT 1 FROM presets WHERE id = ? AND (owner_id = ? OR owner_id IS NULL)",
                    (wanted, user_id),
                )
                if visible is None:
                    raise PresetNotFound(f"no preset {wanted} for this user")
            await db.execute(
                "UPDATE users SET strength = ?, preserve_colors = ?, size = ?, "
                "active_preset_id = ?, language = ?, mix_preset_id = ?, brush = ?, "
                "updated_at = ? WHERE user_id = ?",
                (
                    current.strength if strength is None else strength,
                    int(current.preserve_colors if preserve_colors is None else preserve_colors),
                    new_size,
                    new_active,
                    new_language,
                    new_mix,
                    float(current.brush if brush is None else brush),
                    now,
                    user_id,
                ),
            )
            row = await self._one(db, _SELECT_USER, (user_id,))
        assert row is not None
        return _user(row)

    # -- presets ----------------------------------------------------------------------------

    async def add_preset(
        self,
        owner_id: int | None,
        name: str,
        image: bytes,
        *,
        title: str = "",
        artist: str = "",
        year: str = "",
        licence: str = "",
        source_url: str = "",
        max_per_owner: int | None = None,
        thumbnail: bytes | None = None,
        mix_image: bytes | None = None,
    ) -> Preset:
        """Keep a preset (row and images in one transaction).

        `owner_id=None` adds a global (built-in) preset. `thumbnail`: its small picture for the
        gallery (made by the caller, in a thread). `mix_image`: the second style picture of a
        saved mix (the preset then paints both, at equal weights). Raises `InvalidName`,
        `ImageTooLarge`, `InvalidValue` (empty image), `UserNotFound` (owner never seen),
        `DuplicateName` (same owner, same name ignoring case), `TooManyPresets(max_per_owner)`.
        """
        clean = validate_preset_name(name)
        key = preset_name_key(clean)
        blob = self._image_blob(image, "a preset image")
        thumb = None if thumbnail is None else self._image_blob(thumbnail, "a thumbnail")
        second = None if mix_image is None else self._image_blob(mix_image, "a preset image")
        if max_per_owner is not None:
            _check_int(max_per_owner, "max_per_owner", 0)
        texts = {
            "title": title,
            "artist": artist,
            "year": year,
            "licence": licence,
            "source_url": source_url,
        }
        for what, text in texts.items():
            if not isinstance(text, str):
                raise InvalidValue(f"preset {what} must be text")
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidValue(f"preset {what} is not valid Unicode text") from None
        now = self._clock()
        async with self._tx() as db:
            if owner_id is not None and (
                await self._one(db, "SELECT 1 FROM users WHERE user_id = ?", (owner_id,)) is None
            ):
                raise UserNotFound(f"no user {owner_id}")
            existing = await self._one(
                db, "SELECT name FROM presets WHERE owner_id IS ? AND name_key = ?", (owner_id, key)
            )
            if existing is not None:
                raise DuplicateName(existing["name"])
            if max_per_owner is not None:
                count = await self._count(
                    db, "SELECT count(*) FROM presets WHERE owner_id IS ?", (owner_id,)
                )
                if count >= max_per_owner:
                    raise TooManyPresets(max_per_owner)
            try:
                cursor = await db.execute(
                    "INSERT INTO presets (owner_id, name, name_key, title, artist, year, "
                    "licence, source_url, created_at, image, thumbnail, mix_image) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        owner_id,
                        clean,
                        key,
                        title,
                        artist,
                        year,
                        licence,
                        source_url,
                        now,
                        blob,
                        thumb,
                        second,
                    ),
                )
            except sqlite3.IntegrityError as exc:  # the checks above make this unexpected
                if "UNIQUE" in str(exc):
                    raise DuplicateName(clean) from exc
                raise
            preset_id = cursor.lastrowid
            await cursor.close()
        assert preset_id is not None
        return Preset(
            id=preset_id,
            owner_id=owner_id,
            name=clean,
            title=title,
            artist=artist,
            year=year,
            licence=licence,
            source_url=source_url,
            created_at=now,
            is_mix=second is not None,
        )

    def _image_blob(self, image: object, what: str) -> bytes:
        if not isinstance(image, bytes | bytearray | memoryview):
            raise InvalidValue(f"{what} must be bytes")
        blob = bytes(image)
        if not blob:
            raise InvalidValue(f"{what} cannot be empty")
        if len(blob) > self.max_image_bytes:
            raise ImageTooLarge(len(blob), self.max_image_bytes)
        return blob

    async def get_preset(self, preset_id: int) -> Preset | None:
        async with self._read() as db:
            row = await self._one(db, _SELECT_PRESET, (preset_id,))
        return _preset(row) if row is not None else None

    async def find_preset(self, name: str, user_id: int | None) -> Preset | None:
        """By name, ignoring case: the user's own preset first, then a global one."""
        try:
            key = preset_name_key(validate_preset_name(name))
        except InvalidName:
            return None
        async with self._read() as db:
            row = await self._one(db, _FIND_PRESET, (key, user_id))
        return _preset(row) if row is not None else None

    async def list_presets(
        self, user_id: int | None, *, include_global: bool = True
    ) -> list[Preset]:
        """The user's presets (by name), then the global ones (by name) unless excluded.

        A global preset shadowed by an own one of the same name is still listed.
        """
        async with self._read() as db:
            if include_global:
                rows = await self._all(db, _LIST_PRESETS, (user_id,))
            else:
                rows = await self._all(db, _LIST_OWN_PRESETS, (user_id,))
        return [_preset(row) for row in rows]

    async def list_global_presets(self) -> list[Preset]:
        async with self._read() as db:
            rows = await self._all(db, _LIST_GLOBAL_PRESETS)
        return [_preset(row) for row in rows]

    async def delete_preset(self, preset_id: int, owner_id: int | None) -> bool:
        """Delete if `owner_id` owns it (None: a global preset). False if nothing matched.

        Users whose active preset it was go back to none (ON DELETE SET NULL).
        """
        async with self._tx() as db:
            deleted = await self._changes(
                db, "DELETE FROM presets WHERE id = ? AND owner_id IS ?", (preset_id, owner_id)
            )
        return deleted > 0

    async def count_presets(self, owner_id: int | None) -> int:
        """How many presets `owner_id` has (None: how many global presets there are)."""
        async with self._read() as db:
            return await self._count(
                db, "SELECT count(*) FROM presets WHERE owner_id IS ?", (owner_id,)
            )

    async def preset_image(self, preset_id: int) -> bytes:
        """The image bytes as stored. Raises `PresetNotFound`."""
        async with self._read() as db:
            row = await self._one(db, "SELECT image FROM presets WHERE id = ?", (preset_id,))
        if row is None:
            raise PresetNotFound(f"no preset {preset_id}")
        return bytes(row[0])

    async def preset_images(self, preset_id: int) -> tuple[bytes, ...]:
        """The style pictures a preset paints with: its image, and a saved mix's second one.
        Raises `PresetNotFound`."""
        async with self._read() as db:
            row = await self._one(
                db, "SELECT image, mix_image FROM presets WHERE id = ?", (preset_id,)
            )
        if row is None:
            raise PresetNotFound(f"no preset {preset_id}")
        return tuple(bytes(blob) for blob in row if blob is not None)

    async def preset_thumbnails(self, preset_ids: Sequence[int]) -> dict[int, bytes | None]:
        """Each existing preset's thumbnail (None: not made yet); unknown ids are left out."""
        ids = [_check_int(i, "preset id", 1) for i in preset_ids]
        async with self._read() as db:
            rows = await self._all(
                db,
                "SELECT id, thumbnail FROM presets WHERE id IN (SELECT value FROM json_each(?))",
                (json.dumps(ids),),
            )
        return {int(r[0]): (bytes(r[1]) if r[1] is not None else None) for r in rows}

    async def set_preset_thumbnail(self, preset_id: int, thumbnail: bytes) -> bool:
        """Keep a preset's thumbnail (made lazily for rows older than thumbnails). False if
        the preset is gone."""
        blob = self._image_blob(thumbnail, "a thumbnail")
        async with self._tx() as db:
            changed = await self._changes(
                db, "UPDATE presets SET thumbnail = ? WHERE id = ?", (blob, preset_id)
            )
        return changed > 0

    # -- pictures already uploaded to Telegram ------------------------------------------------

    async def telegram_file(self, key: str) -> str | None:
        """The Telegram file_id of a picture uploaded before under `key`, if any."""
        async with self._read() as db:
            row = await self._one(db, "SELECT file_id FROM telegram_files WHERE key = ?", (key,))
        return str(row[0]) if row is not None else None

    async def set_telegram_file(self, key: str, file_id: str) -> None:
        """Remember the file_id Telegram gave the picture `key` (replaces an older one)."""
        if not (isinstance(key, str) and 1 <= len(key) <= 128):
            raise InvalidValue("a file key must be 1–128 characters")
        if not (isinstance(file_id, str) and 1 <= len(file_id) <= 512):
            raise InvalidValue("a file_id must be 1–512 characters")
        now = self._clock()
        async with self._tx() as db:
            await db.execute(
                "INSERT INTO telegram_files (key, file_id, created_at) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET file_id = excluded.file_id, "
                "created_at = excluded.created_at",
                (key, file_id, now),
            )

    async def prune_telegram_files(self, older_than_days: float) -> int:
        """Forget file_ids kept longer than that (a page still shown is uploaded once again;
        pages of styles long gone stop taking room). Returns how many."""
        cutoff = self._cutoff(older_than_days)
        async with self._tx() as db:
            deleted = await self._changes(
                db, "DELETE FROM telegram_files WHERE created_at < ?", (cutoff,)
            )
        return deleted

    async def forget_telegram_file(self, key: str) -> None:
        """Drop a file_id Telegram no longer accepts: the next use uploads again."""
        async with self._tx() as db:
            await db.execute("DELETE FROM telegram_files WHERE key = ?", (key,))

    # -- worker speeds ------------------------------------------------------------------------

    async def worker_speeds(self) -> list[WorkerSpeed]:
        """Every device measured, the most recently updated first."""
        async with self._read() as db:
            rows = await self._all(
                db,
                "SELECT device, seconds_per_megapixel_step, overhead_s, jobs, updated_at "
                "FROM worker_speeds ORDER BY updated_at DESC, device",
            )
        return [
            WorkerSpeed(str(r[0]), float(r[1]), float(r[2]), int(r[3]), float(r[4])) for r in rows
        ]

    async def save_worker_speed(self, speed: WorkerSpeed) -> WorkerSpeed:
        """Store `speed` for its device (replacing the older figure); returns it as stored."""
        if not (isinstance(speed.device, str) and 1 <= len(speed.device) <= 200):
            raise InvalidValue("a device name must be 1–200 characters")
        if not (speed.seconds_per_megapixel_step > 0 and speed.overhead_s >= 0 and speed.jobs >= 1):
            raise InvalidValue("a worker speed must be positive")
        stored = replace(speed, updated_at=self._clock())
        async with self._tx() as db:
            await db.execute(
                "INSERT INTO worker_speeds "
                "(device, seconds_per_megapixel_step, overhead_s, jobs, updated_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (device) DO UPDATE SET "
                "seconds_per_megapixel_step = excluded.seconds_per_megapixel_step, "
                "overhead_s = excluded.overhead_s, jobs = excluded.jobs, "
                "updated_at = excluded.updated_at",
                (
                    stored.device,
                    stored.seconds_per_megapixel_step,
                    stored.overhead_s,
                    stored.jobs,
                    stored.updated_at,
                ),
            )
        return stored

    # -- pending pictures -------------------------------------------------------------------

    async def set_pending(
        self, chat_id: int, user_id: int, kind: str, data: bytes, message_id: int | None = None
    ) -> None:
        """Remember a person's latest content or style picture in a chat (replaces the
        previous one), with the id of the message that brought it."""
        _check_kind(kind)
        if not isinstance(data, bytes | bytearray | memoryview):
            raise InvalidValue("a pending picture must be bytes")
        blob = bytes(data)
        if len(blob) > self.max_pending_bytes:
            raise ImageTooLarge(len(blob), self.max_pending_bytes)
        now = self._clock()
        async with self._tx() as db:
            await db.execute(
                "INSERT INTO pending (chat_id, user_id, kind, data, message_id, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (chat_id, user_id, kind) DO UPDATE SET "
                "data = excluded.data, message_id = excluded.message_id, "
                "updated_at = excluded.updated_at",
                (chat_id, user_id, kind, blob, message_id, now),
            )

    async def get_pending(self, chat_id: int, user_id: int, kind: str) -> PendingPicture | None:
        _check_kind(kind)
        async with self._read() as db:
            row = await self._one(
                db,
                "SELECT data, message_id FROM pending "
                "WHERE chat_id = ? AND user_id = ? AND kind = ?",
                (chat_id, user_id, kind),
            )
        return PendingPicture(bytes(row[0]), row[1]) if row is not None else None

    async def clear_pending(self, chat_id: int, user_id: int, kind: str | None = None) -> int:
        """Forget one kind (or both when `kind` is None); returns how many were removed."""
        if kind is not None:
            _check_kind(kind)
        async with self._tx() as db:
            deleted = await self._changes(
                db,
                "DELETE FROM pending WHERE chat_id = ? AND user_id = ? AND (? IS NULL OR kind = ?)",
                (chat_id, user_id, kind, kind),
            )
        return deleted

    async def prune_pending(self, older_than_days: float) -> int:
        """Forget pending pictures untouched for that long; returns how many."""
        cutoff = self._cutoff(older_than_days)
        async with self._tx() as db:
            deleted = await self._changes(db, "DELETE FROM pending WHERE updated_at < ?", (cutoff,))
        return deleted

    # -- jobs -------------------------------------------------------------------------------

    async def create_job(
        self,
        job_id: str,
        user_id: int,
        chat_id: int,
        params: StyleParams,
        meta: JobMeta | None = None,
        spool_paths: Sequence[str | os.PathLike[str]] = (),
    ) -> Job:
        """Record a job, state `queued`, attempts 0. Raises `DuplicateJob`, `InvalidValue`."""
        if not isinstance(job_id, str) or not job_id:
            raise InvalidValue("a job id must be non-empty text")
        if not isinstance(params, StyleParams):
            raise InvalidValue("job params must be StyleParams")
        meta = JobMeta() if meta is None else meta
        if not isinstance(meta, JobMeta):
            raise InvalidValue("job meta must be a JobMeta")
        if isinstance(spool_paths, str | bytes):
            raise InvalidValue("spool_paths must be a list of paths")
        paths = [os.fspath(p) for p in spool_paths]
        if not all(isinstance(p, str) for p in paths):
            raise InvalidValue("spool_paths must be text paths")
        params_json = _to_json(params.to_dict(), "params")
        meta_json = _to_json(meta.to_dict(), "meta")
        paths_json = _to_json(paths, "spool_paths")
        now = self._clock()
        async with self._tx() as db:
            try:
                await db.execute(
                    "INSERT INTO jobs (id, user_id, chat_id, state, params, meta, spool_paths, "
                    "attempts, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?)",
                    (
                        job_id,
                        user_id,
                        chat_id,
                        JobState.QUEUED,
                        params_json,
                        meta_json,
                        paths_json,
                        now,
                    ),
                )
            except sqlite3.IntegrityError as exc:
                if "UNIQUE" in str(exc):
                    raise DuplicateJob(f"job {job_id} already exists") from exc
                raise
            row = await self._one(db, _SELECT_JOB, (job_id,))
        assert row is not None
        return _job(row)

    async def get_job(self, job_id: str) -> Job | None:
        async with self._read() as db:
            row = await self._one(db, _SELECT_JOB, (job_id,))
        return _job(row) if row is not None else None

    async def list_jobs(
        self, states: Iterable[JobState], *, user_id: int | None = None
    ) -> list[Job]:
        """Jobs in any of `states` (optionally one user's), oldest first."""
        wanted = _check_states(states)
        if not wanted:
            return []
        slots: list[str | None] = [*wanted, *([None] * (len(JOB_STATES) - len(wanted)))]
        async with self._read() as db:
            rows = await self._all(db, _LIST_JOBS, (*slots, user_id, user_id))
        return [_job(row) for row in rows]

    async def latest_job(self, user_id: int) -> Job | None:
        """The user's most recently created job, whatever its state."""
        async with self._read() as db:
            row = await self._one(
                db,
                "SELECT * FROM jobs WHERE user_id = ? ORDER BY created_at DESC, rowid DESC LIMIT 1",
                (user_id,),
            )
        return _job(row) if row is not None else None

    async def _require_job(self, db: aiosqlite.Connection, job_id: str) -> Job:
        row = await self._one(db, _SELECT_JOB, (job_id,))
        if row is None:
            raise JobNotFound(f"no job {job_id}")
        return _job(row)

    async def mark_job_running(self, job_id: str) -> Job:
        """queued (or running, when resumed after a restart) -> running: attempts + 1,
        started_at now. Raises `JobNotFound`, `JobStateError` if the job is finished."""
        now = self._clock()
        async with self._tx() as db:
            job = await self._require_job(db, job_id)
            if job.finished:
                raise JobStateError(f"job {job_id} is already {job.state}")
            await db.execute(
                "UPDATE jobs SET state = ?, attempts = attempts + 1, started_at = ?, "
                "finished_at = NULL WHERE id = ?",
                (JobState.RUNNING, now, job_id),
            )
            return await self._require_job(db, job_id)

    async def finish_job(
        self,
        job_id: str,
        state: JobState,
        error: str | None = None,
        result_path: str | os.PathLike[str] | None = None,
    ) -> bool:
        """-> done | failed | cancelled, finished_at now. False (and no change) if the job was
        already finished: the first end wins. Raises `JobNotFound`, `InvalidValue`."""
        if state not in TERMINAL_JOB_STATES:
            raise InvalidValue(f"a job can only finish as one of {TERMINAL_JOB_STATES}")
        path = os.fspath(result_path) if result_path is not None else None
        now = self._clock()
        async with self._tx() as db:
            job = await self._require_job(db, job_id)
            if job.finished:
                return False
            await db.execute(
                "UPDATE jobs SET state = ?, error = ?, result_path = ?, finished_at = ? "
                "WHERE id = ?",
                (state, error, path, now, job_id),
            )
        return True

    async def requeue_job(self, job_id: str, error: str | None = None) -> bool:
        """running -> queued (keeps attempts and its place by created_at; records `error`).
        False if the job was already finished. Raises `JobNotFound`."""
        async with self._tx() as db:
            job = await self._require_job(db, job_id)
            if job.finished:
                return False
            await db.execute(
                "UPDATE jobs SET state = ?, error = ?, started_at = NULL WHERE id = ?",
                (JobState.QUEUED, error, job_id),
            )
        return True

    async def update_job_meta(self, job_id: str, **changes: Any) -> Job:
        """Change some fields of the job's `JobMeta`. Raises `JobNotFound`, `InvalidValue`."""
        async with self._tx() as db:
            job = await self._require_job(db, job_id)
            try:
                meta = replace(job.meta, **changes)
            except TypeError as exc:
                raise InvalidValue(f"job meta: {exc}") from None
            await db.execute(
                "UPDATE jobs SET meta = ? WHERE id = ?",
                (_to_json(meta.to_dict(), "meta"), job_id),
            )
            return await self._require_job(db, job_id)

    async def job_counts(self) -> dict[str, int]:
        """Every state with its number of jobs (0 included)."""
        async with self._read() as db:
            rows = await self._all(db, "SELECT state, count(*) FROM jobs GROUP BY state")
        counts: dict[str, int] = dict.fromkeys(JOB_STATES, 0)
        counts.update({row[0]: int(row[1]) for row in rows})
        return counts

    async def prune_jobs(self, older_than_days: float) -> int:
        """Delete finished jobs that ended more than that long ago; returns how many."""
        cutoff = self._cutoff(older_than_days)
        async with self._tx() as db:
            deleted = await self._changes(
                db,
                "DELETE FROM jobs WHERE state IN ('done', 'failed', 'cancelled') "
                "AND coalesce(finished_at, created_at) < ?",
                (cutoff,),
            )
        return deleted

    def _cutoff(self, older_than_days: float) -> float:
        if isinstance(older_than_days, bool) or not isinstance(older_than_days, int | float):
            raise InvalidValue("older_than_days must be a number")
        if not older_than_days >= 0:
            raise InvalidValue("older_than_days cannot be negative")
        return self._clock() - float(older_than_days) * 86400.0

    # -- administration ---------------------------------------------------------------------

    async def stats(self) -> dict[str, Any]:
        """`{"users", "presets_own", "presets_global", "jobs": {state: n}, "jobs_24h"}`,
        read from one consistent snapshot."""
        since = self._clock() - 86400.0
        async with self._tx(write=False) as db:
            users = await self._count(db, "SELECT count(*) FROM users")
            own = await self._count(db, "SELECT count(*) FROM presets WHERE owner_id IS NOT NULL")
            global_ = await self._count(db, "SELECT count(*) FROM presets WHERE owner_id IS NULL")
            rows = await self._all(db, "SELECT state, count(*) FROM jobs GROUP BY state")
            recent = await self._count(
                db, "SELECT count(*) FROM jobs WHERE created_at >= ?", (since,)
            )
        jobs = dict.fromkeys(JOB_STATES, 0)
        jobs.update({row[0]: int(row[1]) for row in rows})
        return {
            "users": users,
            "presets_own": own,
            "presets_global": global_,
            "jobs": jobs,
            "jobs_24h": recent,
        }

    async def integrity_check(self) -> str:
        """ "ok", or SQLite's findings one per line (also runs the foreign key check)."""
        async with self._read() as db:
            rows = await self._all(db, "PRAGMA integrity_check")
            problems = [str(row[0]) for row in rows if str(row[0]) != "ok"]
            fk_rows = await self._all(db, "PRAGMA foreign_key_check")
        problems += [f"foreign key violation in {row[0]} rowid {row[1]}" for row in fk_rows]
        return "\n".join(problems) if problems else "ok"

    async def backup(self, dest_path: str | os.PathLike[str]) -> Path:
        """A consistent copy of the live database (SQLite online backup API), written to a
        temporary file beside `dest_path` and renamed over it: a single self-contained file."""
        dest = Path(dest_path)
        if await asyncio.to_thread(_same_file, dest, self.path):
            raise InvalidValue("a backup cannot overwrite the live database")
        await asyncio.to_thread(dest.parent.mkdir, parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
        await asyncio.to_thread(_remove_db_files, tmp)
        target = await asyncio.to_thread(sqlite3.connect, tmp, check_same_thread=False)
        try:
            async with self._lock:
                db = self._conn()
                try:
                    await db.backup(target)
                except sqlite3.Error as exc:
                    raise StorageError(f"backup failed: {exc}") from exc
            await asyncio.to_thread(_seal_backup, target, tmp, dest)
        except BaseException:
            await asyncio.to_thread(target.close)
            await asyncio.to_thread(_remove_db_files, tmp)
            raise
        return dest
