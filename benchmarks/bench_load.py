"""Load benchmark: the scenario of tests/test_bot_load.py, timed.

    .venv/bin/python benchmarks/bench_load.py [--runs 3] [--users 50]
        [--out benchmarks/results/load_DATE.json]

Each run is `tests.test_bot_load.run_load`, the very scenario the load test checks: the real bot
(`build_application`, run in this process by `tests.bot_harness.running_bot`) with the quick
in-process executor (3 steps of 0.3 s per job, 2 at a time: no painting), against the fake
Telegram Bot API server of `tests/fake_telegram.py` in the same process and event loop. 50 users
send 20 messages each over ~9 s (photos, commands, button presses, text) while a flooder sends
200 messages in 5 s and 8 probe users send /start one after another (every 0.25 s once
answered); then until every update is confirmed and every job has ended. Limits: 30 updates
per user per minute, 3 jobs per user, 20 jobs waiting.

Measured, per run:
- /start latency: from a probe's /start reaching the fake server to the bot's answer reaching
  it (median, p95, p99, worst) — includes the fake server's and the users' own work, all on one
  event loop;
- event-loop lag: lateness of a 10 ms ``asyncio.sleep`` heartbeat on that loop (p50, p99, max);
- durations: sending (first message to the last user's last message) and total (until quiet);
- counts: messages, updates, Bot API calls, jobs done / cancelled by their owner / refused,
  the most jobs one user had at once and the longest queue seen (against their limits), the
  flooder's hints;
- memory: RSS of this process (bot + fake server + users) before, peak, growth.

The load test asserts the behaviour (everything answered, limits kept, nothing lost); this
prints a markdown table and writes JSON, and asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve()
REPO_DIR = SCRIPT.parent.parent
if str(REPO_DIR) not in sys.path:
    sys.path.insert(0, str(REPO_DIR))

from benchmarks.bench_service import machine, percentile  # noqa: E402  (after the path setup)

HEARTBEAT_S = 0.010


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 1)


def _spread_ms(values: list[float]) -> dict[str, float | None]:
    return {
        "median": _ms(statistics.median(values)) if values else None,
        "p95": _ms(percentile(values, 95)),
        "p99": _ms(percentile(values, 99)),
        "max": _ms(max(values, default=None)),
    }


async def one_run(users: int) -> dict[str, Any]:
    """One run of the load scenario with a fresh fake server and data directory."""
    from tests import test_bot_load as scenario
    from tests.fake_telegram import FakeTelegram

    lags: list[float] = []

    async def heartbeat() -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(HEARTBEAT_S)
            lags.append(loop.time() - before - HEARTBEAT_S)

    fake = FakeTelegram()
    await fake.start()
    beat = asyncio.create_task(heartbeat())
    try:
        with tempfile.TemporaryDirectory(prefix="bench_load_") as tmp:
            settings = scenario.scenario_settings(Path(tmp), fake)
            out = await scenario.run_load(settings, fake, users=users)
            counts = scenario.load_counts(out, fake)
    finally:
        beat.cancel()
        await asyncio.gather(beat, return_exceptions=True)
        await fake.stop()
    latencies = out.run.start_latencies
    return {
        **counts,
        "sending_s": round(out.sending_s, 2),
        "total_s": round(out.total_s, 2),
        "updates_per_s_while_sending": round(counts["updates_received"] / out.sending_s, 1),
        "start_latency_ms": _spread_ms(latencies),
        "start_latencies_ms": [_ms(x) for x in latencies],
        "loop_lag_ms": {
            "samples": len(lags),
            "median": _ms(statistics.median(lags)) if lags else None,
            "p99": _ms(percentile(lags, 99)),
            "max": _ms(max(lags, default=None)),
        },
        "limits": {
            "rate_limit_per_minute": scenario.RATE_LIMIT,
            "max_jobs_per_user": scenario.MAX_JOBS_PER_USER,
            "max_queue": scenario.MAX_QUEUE,
        },
    }


def fmt(value: Any) -> str:
    return "–" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def table(runs: list[dict[str, Any]]) -> str:
    limits = runs[0]["limits"]
    head = (
        "| run | updates | API calls | jobs done / cancelled / refused "
        f"| max jobs per user (≤{limits['max_jobs_per_user']}) "
        f"| max queue (≤{limits['max_queue']}) | flood hints | /start probes (while busy) "
        "| /start median ms "
        "| /start p95 ms | /start p99 ms | /start worst ms | loop lag p99 ms | loop lag max ms "
        "| sending s | total s | RSS peak MB | RSS growth MB |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for n, r in enumerate(runs, 1):
        lat, lag = r["start_latency_ms"], r["loop_lag_ms"]
        cells = (
            n,
            r["updates_received"],
            r["bot_api_calls"],
            f"{r['jobs_done']} / {r['jobs_cancelled_by_owner']} / {r['jobs_refused']}",
            r["max_jobs_per_user"],
            r["max_queue_seen"],
            r["flood_hints"],
            f"{r['start_probes']} ({r['start_probes_while_busy']})",
            lat["median"],
            lat["p95"],
            lat["p99"],
            lat["max"],
            lag["p99"],
            lag["max"],
            r["sending_s"],
            r["total_s"],
            r["rss_peak_mb"],
            r["rss_growth_mb"],
        )
        lines.append("| " + " | ".join(fmt(c) for c in cells) + " |")
    return "\n".join(lines)


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    from tests import test_bot_load as scenario

    info = machine()
    info["loadavg_start"] = list(os.getloadavg())
    setup = {
        "users": args.users,
        "messages_per_user": scenario.MESSAGES_PER_USER,
        "user_window_s": scenario.USER_WINDOW_S,
        "flood_messages": scenario.FLOOD_MESSAGES,
        "flood_window_s": scenario.FLOOD_WINDOW_S,
        "probe_users": scenario.PROBE_USERS,
        "probe_every_s": scenario.PROBE_EVERY_S,
        "executor": "QuickExecutor(steps=3, delay=0.3, capacity=2), in process",
        "heartbeat_ms": HEARTBEAT_S * 1000,
        "runs": args.runs,
    }
    runs = []
    for n in range(args.runs):
        print(f"bench_load: run {n + 1}/{args.runs} ({args.users} users + flooder)", flush=True)
        runs.append(await one_run(args.users))
        gc.collect()
    info["loadavg_end"] = list(os.getloadavg())
    worst = [r["start_latency_ms"]["max"] for r in runs]
    medians = [r["start_latency_ms"]["median"] for r in runs]
    summary = {
        "start_latency_worst_ms": max((w for w in worst if w is not None), default=None),
        "start_latency_median_of_medians_ms": statistics.median([m for m in medians if m]),
    }
    return {"machine": info, "setup": setup, "summary": summary, "runs": runs}


def main(argv: list[str] | None = None) -> int:
    today = dt.date.today().isoformat()
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of the scenario (default 3)")
    parser.add_argument("--users", type=int, default=50, help="users besides the flooder (50)")
    parser.add_argument(
        "--out",
        default=str(REPO_DIR / "benchmarks" / "results" / f"load_{today}.json"),
        help="JSON output (default benchmarks/results/load_<date>.json)",
    )
    args = parser.parse_args(argv)
    if args.runs < 1 or args.users < 1:
        parser.error("--runs and --users must be at least 1")
    report = asyncio.run(bench(args))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    m = report["machine"]
    print()
    print(
        f"{m['cpu_model']}, {m['cores']} cores, Python {m['python']}, "
        f"python-telegram-bot {m['python_telegram_bot']}, "
        f"load {m['loadavg_start'][0]:.1f}→{m['loadavg_end'][0]:.1f}"
    )
    print()
    print(table(report["runs"]))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
