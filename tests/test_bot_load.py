"""Load: 50 users at once (20 messages each in under 10 s) and one user flooding 200 messages
in 5 s, against the fake Telegram server with the quick in-process executor.

Checks behaviour, never a wall-clock bound: every command answered, every button press answered
exactly once, every /start of the probe users answered (some while jobs were queued or running),
no user over the per-user queue limit and the queue never over its limit, every accepted job
finished and delivered (or cancelled by its owner), memory bounded (RSS sampled), the flooder
told once (per rate-limit window its flood's handling spanned). Waits are for a state (every
update handled, every outcome delivered), with generous deadlines. How fast:
`benchmarks/bench_load.py` runs this same scenario (`run_load`) and reports the /start
latencies, durations and event-loop lag.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from bot import texts
from bot.services import get_services
from bot.settings import Settings
from bot.storage import Storage
from tests.bot_harness import bot_settings, fake_telegram_fixture, running_bot  # noqa: F401
from tests.fake_telegram import FakeTelegram, FakeUser, MessageVersion
from tests.hardening_helpers import RssSampler, report
from tests.test_bot_e2e import PHOTO, STYLE, QuickExecutor, is_result, seed_presets

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

USERS = 50
MESSAGES_PER_USER = 20
USER_WINDOW_S = 9.0  # each user's 20 messages are spread over this (< 10 s)
FLOOD_MESSAGES = 200
FLOOD_WINDOW_S = 5.0
RATE_LIMIT = 30  # updates per user per minute
RATE_WINDOW_S = 60.0  # bot.ratelimit: fixed one-minute windows, the user told once in each
MAX_JOBS_PER_USER = 3
MAX_QUEUE = 20
PROBE_EVERY_S = 0.25
PROBE_USERS = 8  # /start probes rotate between users so none of them is rate-limited

COMMANDS = ("/start", "/help", "/status", "/strength 4", "/presets")


def _is_reply_to(command: str, v: MessageVersion) -> bool:
    text = v.content  # a text, or a picture's caption (/presets sends the gallery)
    if v.is_edit:
        return False
    if command == "/start":
        return text == texts.START
    if command == "/help":
        return text.startswith("How it works")
    if command == "/status":
        return "Strength:" in text
    if command == "/strength 4":
        return text == texts.strength_set(4)
    if command == "/presets":
        return text.startswith("Styles:")
    raise AssertionError(command)


class LoadRun:
    def __init__(self, fake: FakeTelegram, services: Any) -> None:
        self.fake = fake
        self.services = services
        self.commands: dict[int, Counter[str]] = {}
        self.queries: list[str] = []
        self.start_latencies: list[float] = []  # a figure for the benchmark; no test bounds it
        self.probes_sent: Counter[int] = Counter()
        self.probes_while_busy = 0  # /start answered while jobs were queued or running
        self.max_active: dict[int, int] = {}
        self.max_queue = 0
        self.sent = 0
        self.flood_started = self.quiet_at = 0.0

    def busy(self) -> bool:
        jobs = self.services.jobs
        return bool(jobs.queue_length() > 0 or jobs.running_count > 0)

    async def user_script(self, user: FakeUser, seed: int) -> None:
        rng = random.Random(seed)
        sent = self.commands.setdefault(user.id, Counter())
        await user.send_text("/start")
        sent["/start"] += 1
        self.sent += 1
        start_reply = await user.wait_for_message(lambda v: v.text == texts.START, timeout=120)
        plan = ["photo"] * 7 + ["command"] * 7 + ["press"] * 4 + ["text"]
        rng.shuffle(plan)
        assert len(plan) == MESSAGES_PER_USER - 1
        gap = USER_WINDOW_S / len(plan)
        for kind in plan:
            await asyncio.sleep(gap * rng.uniform(0.5, 1.5))
            self.sent += 1
            if kind == "photo":
                await user.send_photo(PHOTO if rng.random() < 0.5 else STYLE)
            elif kind == "command":
                command = rng.choice(COMMANDS)
                sent[command] += 1
                await user.send_text(command)
            elif kind == "text":
                await user.send_text("hello there")
            else:
                target = next(
                    (m for m in reversed(user.messages()) if m.callback_data), start_reply
                )
                data = target.callback_data or start_reply.callback_data
                self.queries.append(await user.press(target, rng.choice(data)))

    async def probe_start(self, users: list[FakeUser], stop: asyncio.Event) -> None:
        i = 0
        while not stop.is_set():
            user = users[i % len(users)]
            i += 1
            await user.send_text("/start")
            self.probes_sent[user.id] += 1
            sent = time.monotonic()
            await user.wait_for_message(lambda v: v.text == texts.START, timeout=120)
            self.start_latencies.append(time.monotonic() - sent)
            if self.busy():
                self.probes_while_busy += 1
            await asyncio.sleep(PROBE_EVERY_S)

    async def watch_queues(self, user_ids: list[int], stop: asyncio.Event) -> None:
        while not stop.is_set():
            jobs = self.services.jobs
            self.max_queue = max(self.max_queue, jobs.queue_length())
            for uid in user_ids:
                n = len(jobs.active_jobs(uid))
                if n > self.max_active.get(uid, 0):
                    self.max_active[uid] = n
            await asyncio.sleep(0.02)

    async def flood(self, user: FakeUser) -> list[str]:
        self.flood_started = time.monotonic()
        await user.send_text("/start")
        start_reply = await user.wait_for_message(lambda v: v.text == texts.START, timeout=120)
        queries = []
        gap = FLOOD_WINDOW_S / (FLOOD_MESSAGES - 1)
        for n in range(FLOOD_MESSAGES - 1):
            if n % 4 == 3:
                queries.append(await user.press(start_reply, start_reply.callback_data[0]))
            else:
                await user.send_text(f"flood {n}")
            await asyncio.sleep(gap)
        return queries


async def _outcomes_delivered(fake: FakeTelegram, storage: Any) -> bool:
    """Every painted job's result and every cancelled job's notice has reached its chat."""
    ended = Counter((j.user_id, j.state) for j in await storage.list_jobs(["done", "cancelled"]))
    for (chat_id, state), n in ended.items():
        messages = fake.messages(chat_id)
        if state == "done":
            seen = sum(is_result(m.latest) for m in messages)
        else:
            seen = sum(m.text == texts.CANCELLED for m in messages)
        if seen < n:
            return False
    return True


async def _wait_for_quiet(
    fake: FakeTelegram, app: Any, services: Any, within: float = 240.0
) -> None:
    """Until the bot has fetched and handled every update, no job is queued or running, no
    status is pending and every ended job's outcome is delivered. Each is a state to reach,
    not a time guess: a bot slowed down by a busy machine is waited for (up to `within` s)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    await fake.wait_until_confirmed(within)  # fetched: in the Application's update queue...
    await asyncio.wait_for(app.update_queue.join(), deadline - loop.time())  # ...and handled
    while loop.time() < deadline:
        jobs = services.jobs
        counts = await services.storage.job_counts()
        if (
            jobs.queue_length() == 0
            and jobs.running_count == 0
            and counts["queued"] == 0
            and counts["running"] == 0
            and not services.status.tracked()
            and await _outcomes_delivered(fake, services.storage)
        ):
            return
        await asyncio.sleep(0.2)
    raise AssertionError("the bot did not finish its work")


def scenario_settings(tmp_path: Path, fake: FakeTelegram) -> Settings:
    """The bot's settings for the scenario: data under tmp_path, the limits above."""
    return bot_settings(
        tmp_path,
        fake,
        STYLEBOT_RATE_LIMIT=RATE_LIMIT,
        STYLEBOT_MAX_JOBS_PER_USER=MAX_JOBS_PER_USER,
        STYLEBOT_MAX_QUEUE=MAX_QUEUE,
    )


@dataclasses.dataclass
class LoadOutcome:
    """What one run of the scenario left: for the test's checks and the benchmark's figures."""

    run: LoadRun
    users: list[FakeUser]
    probes: list[FakeUser]
    flooder: FakeUser
    flood_queries: list[str]
    jobs: list[Any]  # the users' jobs as SQLite has them after the run
    sending_s: float
    total_s: float
    rss: RssSampler


async def run_load(settings: Settings, fake: FakeTelegram, *, users: int = USERS) -> LoadOutcome:
    """The scenario: the real bot with the QuickExecutor against `fake`; `users` users, the
    flooder and the /start probes at once, then until every update is confirmed and every job
    has ended. benchmarks/bench_load.py runs it too."""
    await seed_presets(settings)
    executor = QuickExecutor(steps=3, delay=0.3, capacity=2)
    with RssSampler() as rss:
        async with running_bot(settings, executor=executor) as app:
            services = get_services(app)
            run = LoadRun(fake, services)
            people = [fake.user(10_000 + i, f"U{i}") for i in range(users)]
            probes = [fake.user(20_000 + i, f"P{i}") for i in range(PROBE_USERS)]
            flooder = fake.user(30_000, "Flood")
            stop = asyncio.Event()
            probe = asyncio.create_task(run.probe_start(probes, stop))
            watch = asyncio.create_task(run.watch_queues([u.id for u in people], stop))
            started = time.monotonic()
            flood = asyncio.create_task(run.flood(flooder))
            await asyncio.gather(*(run.user_script(u, seed=i) for i, u in enumerate(people)))
            flood_queries = await flood
            sending_s = time.monotonic() - started
            await _wait_for_quiet(fake, app, services)
            run.quiet_at = time.monotonic()
            stop.set()
            await asyncio.gather(probe, watch)
            total_s = time.monotonic() - started
    async with Storage(settings.database_path) as storage:
        jobs = [
            j
            for u in people
            for j in await storage.list_jobs(
                ["queued", "running", "done", "failed", "cancelled"], user_id=u.id
            )
        ]
    return LoadOutcome(run, people, probes, flooder, flood_queries, jobs, sending_s, total_s, rss)


def max_jobs_at_once(jobs: list[Any]) -> int:
    """The most jobs one user had at the same moment, from creation to end (from SQLite)."""
    by_user: dict[int, list[Any]] = {}
    for job in jobs:
        by_user.setdefault(job.user_id, []).append(job)
    overlap_max = 0
    for own in by_user.values():
        for job in own:
            live = sum(
                1
                for other in own
                if other.created_at <= job.created_at < (other.finished_at or float("inf"))
            )
            overlap_max = max(overlap_max, live)
    return overlap_max


def load_counts(out: LoadOutcome, fake: FakeTelegram) -> dict[str, int]:
    """What happened in a run, in counts (no durations): the test's report, the benchmark's."""
    states = Counter(j.state for j in out.jobs)
    flood_texts = [m.text or "" for m in out.flooder.messages()]
    return {
        "users": len(out.users),
        "messages_sent": out.run.sent,
        "flood_messages": FLOOD_MESSAGES,
        "updates_received": fake._next_update_id - 100_000_001,
        "bot_api_calls": len(fake.calls()),
        "presses": len(out.run.queries) + len(out.flood_queries),
        "jobs_done": states["done"],
        "jobs_cancelled_by_owner": states["cancelled"],
        "jobs_other": sum(n for state, n in states.items() if state not in ("done", "cancelled")),
        "jobs_refused": sum(
            (m.text or "") == texts.user_queue_full(MAX_JOBS_PER_USER) or "busy" in (m.text or "")
            for u in out.users
            for m in u.messages()
        ),
        "max_jobs_per_user": max_jobs_at_once(out.jobs),
        "max_jobs_per_user_seen": max(out.run.max_active.values(), default=0),
        "max_queue_seen": out.run.max_queue,
        "flood_told": sum("faster than I can take" in t for t in flood_texts),
        "flood_hints": flood_texts.count(texts.TEXT_HINT),
        "start_probes": sum(out.run.probes_sent.values()),
        "start_probes_while_busy": out.run.probes_while_busy,
        "rss_baseline_mb": out.rss.baseline // 2**20,
        "rss_peak_mb": out.rss.peak // 2**20,
        "rss_growth_mb": out.rss.growth // 2**20,
    }


@pytest.mark.slow
async def test_fifty_users_and_a_flooder(tmp_path: Path, fake_telegram: FakeTelegram) -> None:
    out = await run_load(scenario_settings(tmp_path, fake_telegram), fake_telegram)
    run, users, flood_queries = out.run, out.users, out.flood_queries
    counts = load_counts(out, fake_telegram)
    report("load", **counts)
    states = Counter(j.state for j in out.jobs)
    by_user: dict[int, list[Any]] = {}
    for job in out.jobs:
        by_user.setdefault(job.user_id, []).append(job)
    # -- every command answered ------------------------------------------------------------
    for user in users:
        versions = fake_telegram.message_events(user.chat_id)
        for command, n in run.commands[user.id].items():
            answered = sum(_is_reply_to(command, v) for v in versions)
            assert answered == n, (user.id, command, n, answered)
        assert not any("failed on my side" in (v.text or "") for v in versions), user.id
        assert not any("faster than I can take" in (v.text or "") for v in versions), user.id
    # -- every press answered exactly once -------------------------------------------------
    for query in run.queries + flood_queries:
        assert len(fake_telegram.callback_answers(query)) == 1, query
    # -- the flooder: told once, only RATE_LIMIT updates handled (per rate-limit window: the
    # bot handled the flood between its first message and quiet, so in at most `windows`) ----
    windows = 1 + int((run.quiet_at - run.flood_started) // RATE_WINDOW_S)
    assert 1 <= counts["flood_told"] <= windows, (counts["flood_told"], windows)
    assert counts["flood_hints"] < RATE_LIMIT * windows
    flood_answers = [fake_telegram.callback_answers(q)[0].get("text") for q in flood_queries]
    assert flood_answers.count(texts.SLOW_DOWN) >= len(flood_queries) - RATE_LIMIT * windows
    # -- queue limits and every accepted job finished and delivered -----------------------
    assert 0 < counts["max_jobs_per_user_seen"] <= MAX_JOBS_PER_USER
    assert counts["max_jobs_per_user"] <= MAX_JOBS_PER_USER
    assert counts["max_queue_seen"] <= MAX_QUEUE
    assert counts["jobs_done"] > 0 and counts["jobs_refused"] > 0  # the limits were reached
    # accepted jobs all ended: painted, or cancelled by their owner (a random press may hit ✖)
    assert set(states) <= {"done", "cancelled"}, states
    for uid, own in by_user.items():
        results_seen = sum(is_result(m.latest) for m in fake_telegram.messages(uid))
        assert results_seen == sum(j.state == "done" for j in own), uid
        assert sum(m.text == texts.CANCELLED for m in fake_telegram.messages(uid)) == sum(
            j.state == "cancelled" for j in own
        ), uid
    # -- /start answered throughout, also while jobs were waiting or painting (no time bound:
    # how fast is a figure of benchmarks/bench_load.py) -----------------------------------
    for probe in out.probes:
        versions = fake_telegram.message_events(probe.chat_id)
        assert sum(_is_reply_to("/start", v) for v in versions) == run.probes_sent[probe.id]
    assert counts["start_probes"] > 0
    assert counts["start_probes_while_busy"] > 0
    # -- memory ----------------------------------------------------------------------------
    assert out.rss.growth < 300 * 2**20
