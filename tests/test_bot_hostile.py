"""Hostile input: bad files, fuzzed callback data / command arguments / preset names / captions,
SQL that must stay parameterised, ownership of presets, jobs and buttons, admin commands that do
not exist for others, and the bot token that must never be printed.

Property-based tests (hypothesis) drive one live bot (module-scoped, in a background thread with
its own event loop) so that hundreds of examples run in seconds; every example checks that the
bot answered, that no handler crashed (no "something failed on my side") and that every SQL
statement SQLite ran is one of bot/storage.py's literal statements with values bound.
"""

from __future__ import annotations

import ast
import asyncio
import re
import struct
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import bot.handlers.intake as intake
from bot import keyboards as kb
from bot import texts
from bot.executors.base import JobCancelled, ProgressHandler
from bot.services import get_services
from bot.storage import InvalidName, Storage, validate_preset_name
from engine.job import JobSpec, Result
from tests.bot_harness import (
    bot_env,
    bot_settings,
    fake_telegram_fixture,  # noqa: F401
    process_log,
    running_bot,
    start_bot_process,
    stop_process,
)
from tests.conftest import REPO_DIR, shared_file
from tests.fake_telegram import FakeTelegram, FakeUser, MessageVersion, make_token
from tests.hardening_helpers import RssSampler, report
from tests.test_bot_e2e import PHOTO, STYLE, QuickExecutor, is_result, seed_presets

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")
T = TypeVar("T")
STORAGE_SOURCE = REPO_DIR / "bot" / "storage.py"
CRASH = "failed on my side"
ADMIN_ID = 42


# -- the SQL of bot/storage.py ----------------------------------------------------------------------
_LITERAL = r"(?:NULL|-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|'(?:[^']|'')*'|[xX]'[0-9A-Fa-f]*')"


def _storage_sql_templates() -> list[re.Pattern[str]]:
    """Every string literal of bot/storage.py that looks like SQL, as a pattern where each `?`
    matches one bound value as SQLite's expanded SQL prints it."""
    tree = ast.parse(STORAGE_SOURCE.read_text())
    sql = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|BEGIN|COMMIT|ROLLBACK|PRAGMA)\b", re.I)
    templates = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and sql.match(node.value):
            templates.add(node.value.strip())
    return [
        re.compile(re.escape(t).replace(r"\?", _LITERAL), re.DOTALL | re.IGNORECASE)
        for t in templates
    ]


TEMPLATES = _storage_sql_templates()


def unparameterised(statements: list[str]) -> list[str]:
    """The statements that are not a storage.py literal with bound values."""
    return [
        s
        for s in statements
        if not s.startswith("-- ") and not any(t.fullmatch(s.strip()) for t in TEMPLATES)
    ]


class _ExecuteCalls(ast.NodeVisitor):
    """Calls that hand SQL to SQLite: db.execute / execute_fetchall / executemany /
    executescript and the module's helpers _one / _all / _count / _changes (SQL is their 2nd
    argument)."""

    SQL_ARG: ClassVar[dict[str, int]] = {
        "execute": 0,
        "execute_fetchall": 0,
        "executemany": 0,
        "executescript": 0,
    }
    HELPERS: ClassVar[dict[str, int]] = {"_one": 1, "_all": 1, "_count": 1, "_changes": 1}

    def __init__(self, constants: set[str]) -> None:
        self.constants = constants
        self.bad: list[str] = []

    def visit_Call(self, node: ast.Call) -> None:
        name = node.func.attr if isinstance(node.func, ast.Attribute) else None
        index = self.SQL_ARG.get(name or "", self.HELPERS.get(name or ""))
        if index is not None and len(node.args) > index:
            arg = node.args[index]
            if not self._safe(arg):
                self.bad.append(f"line {node.lineno}: {ast.unparse(arg)}")
        self.generic_visit(node)

    def _safe(self, arg: ast.expr) -> bool:
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            return True
        if isinstance(arg, ast.Name) and arg.id in self.constants:
            return True
        if isinstance(arg, ast.IfExp):  # "BEGIN IMMEDIATE" if write else "BEGIN"
            return self._safe(arg.body) and self._safe(arg.orelse)
        # f"PRAGMA user_version = {int(version) + 1}": pragmas take no parameters; ints are safe
        if isinstance(arg, ast.JoinedStr):
            return all(
                isinstance(v, ast.Constant)
                or (isinstance(v, ast.FormattedValue) and _is_int(v.value))
                for v in arg.values
            )
        return False


def _is_int(node: ast.expr) -> bool:
    """int(...), an int literal, or arithmetic of those."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, int)
    if isinstance(node, ast.Call):
        return isinstance(node.func, ast.Name) and node.func.id == "int"
    if isinstance(node, ast.BinOp):
        return _is_int(node.left) and _is_int(node.right)
    return False


def test_storage_hands_sqlite_only_literal_sql() -> None:
    """Every execute-like call in bot/storage.py gets a literal, a module constant bound to a
    literal, the helpers' own `sql` parameter, a migration statement, or an f-string of int()."""
    tree = ast.parse(STORAGE_SOURCE.read_text())
    constants = {
        target.id
        for node in tree.body
        if isinstance(node, ast.AnnAssign | ast.Assign)
        for target in ([node.target] if isinstance(node, ast.AnnAssign) else node.targets)
        if isinstance(target, ast.Name)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    }
    # the helpers pass their `sql` parameter through (their callers are checked), and
    # migrations run the statements of the literal MIGRATIONS scripts
    constants |= {"sql", "statement"}
    visitor = _ExecuteCalls(constants)
    visitor.visit(tree)
    assert not visitor.bad, visitor.bad
    assert len(TEMPLATES) > 30  # the template list really holds storage.py's SQL


def test_the_sql_checker_catches_interpolation() -> None:
    bad = ast.parse(
        'async def f(db, name):\n    await db.execute(f"SELECT 1 FROM t WHERE n = {name}")\n'
        '    await db.execute("SELECT " + name)\n'
    )
    visitor = _ExecuteCalls(set())
    visitor.visit(bad)
    assert len(visitor.bad) == 2
    assert unparameterised(["SELECT image FROM presets WHERE id = 3"]) == []
    assert unparameterised(["SELECT image FROM presets WHERE id = 3 OR 1=1"]) != []


# -- a live bot for property-based tests -----------------------------------------------------------
class HoldingExecutor(QuickExecutor):
    """Quick, except that jobs of `held` pairs run until cancelled (a job that stays running)."""

    def __init__(self) -> None:
        super().__init__(steps=2, delay=0.0, capacity=4)
        self.held: set[str] = set()
        self.storage: Storage | None = None  # the bot's, to read a job's pair

    async def run(self, spec: JobSpec, on_progress: ProgressHandler | None = None) -> Result:
        assert self.storage is not None
        job = await self.storage.get_job(spec.job_id)
        assert job is not None
        while job.meta.pair in self.held:
            if spec.job_id in self.cancelled:
                raise JobCancelled()
            await asyncio.sleep(0.05)
        return await super().run(spec, on_progress)


class LiveBot:
    """The real bot and the fake server on an event loop in a thread; `call` runs a coroutine
    there and waits for it (hypothesis tests are synchronous)."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.stop_event: asyncio.Event | None = None
        self.error: BaseException | None = None
        self.fake: FakeTelegram | None = None
        self.app: Any = None
        self.executor = HoldingExecutor()
        self.statements: list[str] = []
        self._next_user = 100_000
        self.thread = threading.Thread(target=self._main, name="live-bot", daemon=True)

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._serve())
        except BaseException as exc:
            self.error = exc
            self.ready.set()
        finally:
            self.loop.close()

    async def _serve(self) -> None:
        self.stop_event = asyncio.Event()
        async with FakeTelegram() as fake:
            self.fake = fake
            cfg = bot_settings(
                self.tmp_path,
                fake,
                STYLEBOT_ADMINS=str(ADMIN_ID),
                STYLEBOT_RATE_LIMIT=100_000,
                STYLEBOT_MAX_PRESETS_PER_USER=10_000,
                STYLEBOT_MAX_JOBS_PER_USER=100,
                STYLEBOT_MAX_QUEUE=1000,
            )
            await seed_presets(cfg)
            async with running_bot(cfg, executor=self.executor) as app:
                self.app = app
                storage = get_services(app).storage
                self.executor.storage = storage
                for conn in (storage._db, storage._reader):
                    assert conn is not None
                    await conn.set_trace_callback(self.statements.append)
                self.ready.set()
                await self.stop_event.wait()
                self.executor.held.clear()

    def start(self) -> None:
        self.thread.start()
        self.ready.wait(120)
        if self.error is not None:
            raise self.error
        assert self.fake is not None and self.app is not None

    def stop(self) -> None:
        if self.stop_event is not None:
            self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(60)

    def call(self, factory: Callable[[], Coroutine[Any, Any, T]], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(factory(), self.loop).result(timeout)

    @property
    def telegram(self) -> FakeTelegram:
        assert self.fake is not None
        return self.fake

    @property
    def services(self) -> Any:
        return get_services(self.app)

    def new_user(self, name: str = "Eve") -> FakeUser:
        self._next_user += 1
        return self.telegram.user(self._next_user, name)

    def take_statements(self) -> list[str]:
        taken, self.statements[:] = list(self.statements), []
        return taken


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveBot]:
    bot = LiveBot(tmp_path_factory.mktemp("live"))
    bot.start()
    try:
        yield bot
    finally:
        bot.stop()


def _no_crash(user: FakeUser) -> None:
    crashed = [m.text for m in user.messages() if CRASH in (m.text or "")]
    assert not crashed, crashed


def _sql_clean(live: LiveBot) -> None:
    bad = unparameterised(live.take_statements())
    assert not bad, bad


async def _reply(user: FakeUser, send: Awaitable[Any]) -> MessageVersion:
    await send
    return await user.wait_for_message(lambda v: not v.is_edit, timeout=30)


PROPERTY = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
HOSTILE_TEXT = st.one_of(
    st.text(max_size=80),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=40),
    st.sampled_from(
        [
            "'; DROP TABLE presets; --",
            "x' OR '1'='1",
            '" OR ""="',
            "1; DELETE FROM users",
            "Robert'); DROP TABLE jobs;--",
            "\x00\x01\x1b[31m",
            "‮evil‬",
            "ｓｔａｒｒｙ＿ｎｉｇｈｔ",
            "%s %d {0} {name}",
            "../../etc/passwd",
            "²",
            "٣",
            "𝟓",
            "-1",
            "1e3",
            "99999999999999999999",
        ]
    ),
    st.tuples(st.text(min_size=1, max_size=16), st.integers(10_000, 10_240)).map(
        lambda t: ("a" + t[0] * (t[1] // len(t[0]) + 1))[: t[1]]  # 10 kB
    ),
)
COMMANDS = (
    "start",
    "help",
    "presets",
    "style",
    "save",
    "delete",
    "strength",
    "colors",
    "size",
    "status",
    "stats",
    "addpreset",
    "frobnicate",
    "starry_night",
)


# -- property: callback data --------------------------------------------------------------------
CALLBACK_DATA = st.one_of(
    st.binary(min_size=1, max_size=64).map(lambda b: b.decode("utf-8", "replace")),
    st.text(min_size=1, max_size=64),
    st.builds(
        lambda action, fields: "1" + action + ":" + ":".join(fields),
        st.sampled_from([*"pgadlrxz", "", "?"]),
        st.lists(
            st.one_of(
                st.from_regex(r"[0-9]{1,12}", fullmatch=True),
                st.from_regex(r"[0-9a-f]{12}", fullmatch=True),
                st.sampled_from(["-", "w", "s", "c", "v", "n", "f", "", "-1", "9" * 30]),
                st.text(max_size=8),
            ),
            max_size=3,
        ),
    ),
).filter(lambda d: 0 < len(d.encode("utf-8")) <= 64)


@PROPERTY
@given(data=CALLBACK_DATA)
def test_any_callback_data_is_answered_once_without_a_crash(live: LiveBot, data: str) -> None:
    user = live.new_user()

    async def press() -> list[dict[str, Any]]:
        await user.send_text("/start")
        start = await user.wait_for_message(lambda v: v.text == texts.START)
        query = await user.press(start, data, check=False)
        await live.telegram.wait_for_callback_answer(query)
        await asyncio.sleep(0.05)  # a second answer would show now
        return live.telegram.callback_answers(query)

    answers = live.call(press)
    assert len(answers) == 1, answers
    _no_crash(user)
    _sql_clean(live)


# -- property: command arguments and preset names -----------------------------------------------
@PROPERTY
@given(command=st.sampled_from(COMMANDS), argument=HOSTILE_TEXT)
@example(command="strength", argument="²")  # str.isdigit() is True, int() refuses it
@example(command="size", argument="²")
@example(command="strength", argument="٣")
def test_any_command_argument_gets_an_answer_without_a_crash(
    live: LiveBot, command: str, argument: str
) -> None:
    user = live.new_user()
    reply = live.call(lambda: _reply(user, user.send_text(f"/{command} {argument}")))
    assert reply.text or reply.caption
    _no_crash(user)
    _sql_clean(live)


@pytest.fixture(scope="module")
def saver(live: LiveBot) -> FakeUser:
    """A user with a style picture waiting, so that /save NAME really saves."""
    user = live.new_user("Sam")

    async def setup() -> None:
        await user.send_photo(PHOTO)
        await user.wait_for_message(lambda v: "style" in v.content)
        await user.send_photo(STYLE)
        await user.wait_for_message(is_result)

    live.call(setup)
    return user


@PROPERTY
@given(name=HOSTILE_TEXT)
def test_any_preset_name_is_saved_exactly_or_refused_clearly(
    live: LiveBot, saver: FakeUser, name: str
) -> None:
    try:
        valid = validate_preset_name(name)
    except InvalidName:
        valid = None
    reply = live.call(lambda: _reply(saver, saver.send_text(f"/save {name}")))
    text = reply.text or ""
    # what the bot parsed is the text after the command, spaces trimmed (as Telegram splits)
    argument = " ".join(name.split())
    if valid is None or argument != valid:
        try:
            validate_preset_name(argument)
            parsed_valid = True
        except InvalidName:
            parsed_valid = False
    else:
        parsed_valid = True
    if parsed_valid:
        assert text.startswith(("Saved your style", "You already have")), text
        if text.startswith("Saved"):
            stored = live.call(lambda: live.services.storage.find_preset(argument, saver.id))
            assert stored is not None and stored.name == argument.strip()
    else:
        assert text.startswith(("That name won't work", texts.SAVE_USAGE[:10])), text
    assert len(text) <= 4096
    _no_crash(saver)
    _sql_clean(live)


# -- property: captions -----------------------------------------------------------------------------
@PROPERTY
@given(caption=HOSTILE_TEXT.map(lambda s: s[:1024]) | HOSTILE_TEXT.map(lambda s: "/" + s[:1000]))
def test_any_caption_gets_an_answer_without_a_crash(live: LiveBot, caption: str) -> None:
    user = live.new_user()
    reply = live.call(lambda: _reply(user, user.send_photo(PHOTO, caption=caption)))
    assert reply.text or reply.caption
    _no_crash(user)
    _sql_clean(live)


# -- ownership -------------------------------------------------------------------------------------
class Victim:
    """Someone with a preset, a finished job with result buttons, a photo waiting with style
    buttons and a job that stays running."""

    def __init__(self, live: LiveBot) -> None:
        self.user = live.new_user("Victor")
        self.live = live

    async def setup(self) -> None:
        user = self.user
        result = await _two_photos(user)
        self.result = result
        await user.send_text("/save victims secret")
        await user.wait_for_message(lambda v: (v.text or "").startswith("Saved"))
        storage = self.live.services.storage
        own = await storage.list_presets(user.id, include_global=False)
        self.preset_id = own[0].id
        await user.send_text(f"/style {own[0].name}")
        await user.wait_for_message(lambda v: (v.text or "").startswith("Style set"))
        await user.send_text("/style off")
        await user.wait_for_message(lambda v: v.text == texts.STYLE_OFF)
        await user.send_photo(PHOTO)
        offer = await user.wait_for_message(lambda v: bool(v.callback_data))
        self.offer = offer
        parsed = kb.parse(offer.callback_data[0])
        assert parsed is not None and parsed.pair is not None
        self.pair = parsed.pair
        self.live.executor.held.add(self.pair)
        await user.press(offer, offer.callback_data[0])
        status = await user.wait_for_message(
            lambda v: any(kb.parse(d) and kb.parse(d).action == kb.CANCEL for d in v.callback_data)  # type: ignore[union-attr]
        )
        cancel = kb.parse(status.callback_data[0])
        assert cancel is not None and cancel.job_id is not None
        self.running_job = cancel.job_id
        storage = self.live.services.storage
        for _ in range(6000):  # until the job is running (held), not just queued: ≥ 2 min
            job = await storage.get_job(self.running_job)
            if job is not None and job.state == "running":
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError(f"the held job {self.running_job} never started")
        done = kb.parse(result.callback_data[0])
        assert done is not None and done.job_id is not None
        self.done_job = done.job_id

    async def snapshot(self) -> tuple[Any, ...]:
        storage = self.live.services.storage
        user = await storage.get_user(self.user.id)
        presets = await storage.list_presets(self.user.id, include_global=False)
        jobs = await storage.list_jobs(
            ["queued", "running", "done", "failed", "cancelled"], user_id=self.user.id
        )
        return (
            user.active_preset_id if user else None,
            [(p.id, p.name) for p in presets],
            [(j.id, j.state) for j in jobs],
            await storage.get_pending(self.user.chat_id, self.user.id, "content"),
            len(self.user.messages()),
        )


async def _two_photos(user: FakeUser) -> MessageVersion:
    await user.send_photo(PHOTO)
    await user.wait_for_message(lambda v: "style" in v.content)
    await user.send_photo(STYLE)
    return await user.wait_for_message(is_result)


@pytest.fixture(scope="module")
def victim(live: LiveBot) -> Victim:
    v = Victim(live)
    live.call(v.setup)
    return v


FORGED_OK = {
    texts.NOT_YOUR_BUTTON,
    texts.RESULT_EXPIRED,
    texts.BAD_BUTTON,
}


def _forgeries(v: Victim) -> list[str]:
    return [
        kb.apply_data(v.preset_id),
        kb.delete_data(v.preset_id),
        kb.style_data(v.pair, v.preset_id),
        kb.style_data(v.pair, 1),
        kb.style_page_data(v.pair, 0),
        kb.cancel_data(v.running_job),
        *[kb.result_data(v.done_job, op) for op in sorted(kb.RESULT_OPS)],
        *[kb.result_data(v.running_job, op) for op in sorted(kb.RESULT_OPS)],
        kb.mix_pick_data(v.done_job, v.preset_id),
        kb.mix_pick_data(v.done_job, 1),
        kb.mix_page_data(v.done_job, 1),
    ]


def test_forged_buttons_cannot_touch_another_users_things(live: LiveBot, victim: Victim) -> None:
    attacker = live.new_user("Mallory")
    before = live.call(victim.snapshot)

    async def attack() -> list[tuple[str, str | None]]:
        await attacker.send_text("/start")
        start = await attacker.wait_for_message(lambda v: v.text == texts.START)
        seen = []
        for data in _forgeries(victim):
            query = await attacker.press(start, data, check=False)
            answer = await live.telegram.wait_for_callback_answer(query)
            seen.append((data, answer.get("text")))
        # by name, too: commands only ever look at the attacker's own and built-in presets
        for command in ("/style victims secret", "/delete victims secret", "/victims_secret"):
            await attacker.send_text(command)
            await attacker.wait_for_message(lambda v: not v.is_edit)
        await asyncio.sleep(0.3)
        return seen

    answers = live.call(attack)
    after = live.call(victim.snapshot)
    for data, text in answers:
        assert text in FORGED_OK or (text or "").startswith("I don't know a style"), (data, text)
    assert after == before  # nothing of the victim changed, no message sent to them
    # the attacker got no picture and no word of the victim's preset
    for message in attacker.messages():
        assert message.kind == "text", message.kind
        assert "victims secret" not in (message.text or "").replace("“victims secret”", ""), (
            message.text
        )
    listing = [m.text or "" for m in attacker.messages()]
    assert not any("Saved" in t or "Deleted" in t for t in listing)
    _no_crash(attacker)
    report("ownership", forged_presses=len(answers), victim_unchanged=True)


@PROPERTY
@given(
    action=st.sampled_from(["a", "d", "p", "g", "r", "x"]),
    preset=st.integers(min_value=0, max_value=60),
    op=st.sampled_from(sorted(kb.RESULT_OPS)),
    use_victim_ids=st.booleans(),
)
def test_any_forged_id_leaves_the_victim_untouched(
    live: LiveBot, victim: Victim, action: str, preset: int, op: str, use_victim_ids: bool
) -> None:
    attacker = live.new_user("Mallory")
    job = victim.done_job if use_victim_ids else victim.running_job
    data = {
        "a": f"1a:{preset}",
        "d": f"1d:{preset}",
        "p": f"1p:{victim.pair}:{preset}",
        "g": f"1g:{victim.pair}:0",
        "r": f"1r:{job}:{op}",
        "x": f"1x:{job}",
    }[action]
    before = live.call(victim.snapshot)

    async def press() -> str | None:
        await attacker.send_text("/start")
        start = await attacker.wait_for_message(lambda v: v.text == texts.START)
        query = await attacker.press(start, data, check=False)
        answer = await live.telegram.wait_for_callback_answer(query)
        await asyncio.sleep(0.05)
        text: str | None = answer.get("text")
        return text

    live.call(press)
    assert live.call(victim.snapshot) == before
    assert all(m.kind == "text" for m in attacker.messages())
    _no_crash(attacker)


# -- results whose file is gone ---------------------------------------------------------------------
def test_result_buttons_of_a_gone_result_say_expired(live: LiveBot) -> None:
    user = live.new_user("Ruth")
    result = live.call(lambda: _two_photos(user))
    parsed = kb.parse(result.callback_data[0])
    assert parsed is not None and parsed.job_id is not None
    job = live.call(lambda: live.services.storage.get_job(parsed.job_id))
    pair_dir = live.services.pairs.root / job.meta.pair
    (pair_dir / f"result_{job.id}.jpg").unlink()

    async def press_all() -> list[str | None]:
        texts_seen = []
        for data in result.callback_data:
            query = await user.press(result, data)
            texts_seen.append((await live.telegram.wait_for_callback_answer(query)).get("text"))
        return texts_seen

    assert live.call(press_all) == [texts.RESULT_EXPIRED] * len(result.callback_data)


# -- admin commands ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("admin_command", "unknown_command"),
    [
        ("/stats", "/frobnicate"),
        ("/stats now", "/frobnicate now"),
        ("/stats@stylebot_test_bot", "/frobnicate@stylebot_test_bot"),
        ("/addpreset", "/frobnicate"),
        ("/addpreset sneaky", "/frobnicate sneaky"),
    ],
)
def test_admin_commands_look_unknown_to_others(
    live: LiveBot, admin_command: str, unknown_command: str
) -> None:
    one, two = live.new_user(), live.new_user()
    a = live.call(lambda: _reply(one, one.send_text(admin_command)))
    b = live.call(lambda: _reply(two, two.send_text(unknown_command)))
    assert (a.text, a.buttons) == (b.text, b.buttons)


def test_admin_picture_caption_looks_unknown_to_others(live: LiveBot) -> None:
    one, two = live.new_user(), live.new_user()
    a = live.call(lambda: _reply(one, one.send_photo(STYLE, caption="/addpreset sneaky")))
    b = live.call(lambda: _reply(two, two.send_photo(STYLE, caption="/frobnicate sneaky")))
    assert a.text == b.text
    presets = live.call(lambda: live.services.storage.list_global_presets())
    assert "sneaky" not in [p.name for p in presets]
    help_reply = live.call(lambda: _reply(one, one.send_text("/help")))
    assert "/stats" not in (help_reply.text or "") and "/addpreset" not in (help_reply.text or "")
    menu = [c["command"] for c in live.telegram.my_commands()]
    assert "stats" not in menu and "addpreset" not in menu


# -- bad files ----------------------------------------------------------------------------------------
MIME = {".jpg": "image/jpeg", ".png": "image/png", ".gif": "image/gif", ".webp": "image/webp"}


def _send_raw_photo(user: FakeUser, data: bytes) -> None:
    """A photo message carrying any bytes (a hostile client; Telegram re-encodes real photos)."""
    fake = user.fake
    stored = fake.store_file(data, "photo", width=1280, height=960)
    fake._user_message(user, {"photo": [stored.photo_size()]})


def test_every_bad_file_as_photo_and_as_document(
    live: LiveBot, bad_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded: list[int] = []
    original = intake.reencode_for_storage

    def spy(data: bytes, **kwargs: Any) -> bytes:
        decoded.append(len(data))
        return original(data, **kwargs)

    monkeypatch.setattr(intake, "reencode_for_storage", spy)
    bomb = shared_file("images", "bad", "bomb.png").read_bytes()
    assert struct.unpack(">II", bomb[16:24]) == (30000, 30000)  # the PNG header's size
    outcomes: dict[str, str] = {}
    with RssSampler() as rss:
        for path in sorted(bad_dir.iterdir()):
            data = path.read_bytes()
            for how in ("photo", "document"):
                user = live.new_user()

                async def send(
                    user: FakeUser = user, how: str = how, data: bytes = data, path: Path = path
                ) -> Any:
                    if how == "photo":
                        _send_raw_photo(user, data)
                    else:
                        mime = MIME.get(path.suffix, "application/octet-stream")
                        await user.send_document(data, path.name, mime)
                    return await user.wait_for_message(lambda v: not v.is_edit, timeout=60)

                reply = live.call(send)
                text = reply.content
                assert text, (path.name, how, reply)
                assert CRASH not in text, (path.name, how, text)
                accepted = text == texts.content_received(True)
                outcomes[f"{path.name}/{how}"] = "accepted" if accepted else text[:60]
                _no_crash(user)
    # the 30000x30000 PNG is refused from its header: its bytes were never decoded
    assert len(bomb) not in decoded
    assert outcomes["bomb.png/photo"].startswith("The image is too large")
    assert outcomes["bomb.png/document"].startswith("The image is too large")
    for refused in ("not_an_image.jpg", "truncated.jpg", "zero_bytes.jpg", "svg.svg", "tiny.png"):
        for how in ("photo", "document"):
            assert outcomes[f"{refused}/{how}"] != "accepted", refused
    report(
        "bad_files",
        files=len(outcomes) // 2,
        replies=len(outcomes),
        accepted=sum(v == "accepted" for v in outcomes.values()),
        rss_growth_mb=rss.growth // 2**20,
        outcomes=outcomes,
    )
    assert rss.growth < 200 * 2**20
    _sql_clean(live)


def test_sql_trace_sees_user_text_only_as_bound_values(live: LiveBot, saver: FakeUser) -> None:
    """Hostile names reach SQLite, but only inside bound literals of storage.py's statements."""
    marker = "ZQX' OR '1'='1'; DROP TABLE presets; --"
    live.take_statements()
    live.call(lambda: _reply(saver, saver.send_text(f"/style {marker}")))
    live.call(lambda: _reply(saver, saver.send_text("/save ZQX hostile")))
    statements = live.take_statements()
    assert any("ZQX" in s for s in statements)  # the user's text did reach SQLite...
    assert unparameterised(statements) == []  # ...only as a value bound to a literal statement
    with_marker = [s for s in statements if "ZQX" in s]
    assert all(("'ZQX" in s) or ("'zqx" in s) for s in with_marker), with_marker
    assert live.call(lambda: live.services.storage.integrity_check()) == "ok"


# -- the token ------------------------------------------------------------------------------------------
@pytest.mark.slow
async def test_the_token_never_appears_in_debug_logs(
    tmp_path: Path, fake_telegram: FakeTelegram
) -> None:
    env = bot_env(tmp_path, fake_telegram, STYLEBOT_LOG_LEVEL="DEBUG")
    proc = await start_bot_process(env)
    try:
        user = fake_telegram.user(7001, "Tia")
        for command in ("/start", "/help", "/status", "/size 64", "/presets", "/nonsense"):
            await user.send_text(command)
            await user.wait_for_message(timeout=90)
        fake_telegram.fail("getFile", 500, times=4)  # a download that fails every retry
        await user.send_photo(PHOTO)
        await user.wait_for_message(lambda v: v.text == texts.DOWNLOADING_FAILED, timeout=90)
        fake_telegram.fail("sendMessage", 400, description=f"Bad Request: {fake_telegram.token}")
        await user.send_text("/help")  # a handler error whose text holds the token
        await user.wait_for_message(lambda v: CRASH in (v.text or ""), timeout=60)
        await user.send_photo(PHOTO)
        await user.wait_for_message(lambda v: "style" in v.content, timeout=60)
        await user.send_photo(STYLE)
        result = await user.wait_for_message(is_result, timeout=180)
        await user.press(result, result.button(texts.BTN_FULL_RES)["callback_data"])
        await user.wait_for_message(lambda v: v.kind == "document", timeout=60)
        await user.send_text("/save mine")
        await user.wait_for_message(lambda v: (v.text or "").startswith("Saved"), timeout=60)
    finally:
        code = await stop_process(proc)
    log = process_log(proc)
    assert code == 0, log[-2000:]
    assert "DEBUG" in log and "Traceback" in log  # really DEBUG, and a traceback was logged
    assert fake_telegram.token not in log
    secret = fake_telegram.token.split(":", 1)[1]
    assert secret not in log
    report("token_debug_log", log_lines=len(log.splitlines()), token_found=0)


async def test_a_rejected_token_is_not_printed(tmp_path: Path, fake_telegram: FakeTelegram) -> None:
    wrong = make_token(fake_telegram.bot_id)  # well-formed, not the server's: 401 Unauthorized
    env = bot_env(tmp_path, fake_telegram, TELEGRAM_BOT_TOKEN=wrong, STYLEBOT_LOG_LEVEL="DEBUG")
    proc = await start_bot_process(env)
    code = await asyncio.wait_for(proc.wait(), 60)
    log = process_log(proc)
    assert code == 1, log
    assert wrong not in log and wrong.split(":", 1)[1] not in log
    lines = [line for line in log.splitlines() if line.startswith("stylebot: ")]
    assert lines == [
        "stylebot: Telegram refused TELEGRAM_BOT_TOKEN (unauthorized): check it with @BotFather"
    ], log
    # python-telegram-bot logs the refusal with its traceback; the redaction filter hid the token
    assert "The token `<token>` was rejected" in log
    report("invalid_token", exit_code=code, log_lines=len(log.splitlines()))
