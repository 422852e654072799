"""The embedded process pool, with real spawned workers (no mocks).

Most tests run a small job function defined here (`sleepy_job`: sleeps and reports progress,
no TensorFlow) so that pool mechanics are fast to test; the last ones run the real engine
at a tiny size.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from bot.executors.base import (
    JobCancelled,
    JobFailed,
    JobRejected,
    JobTimedOut,
    WorkerLost,
)
from bot.executors.local import LocalExecutor
from engine.job import (
    CancelCheck,
    FailureCode,
    JobOutcome,
    JobSpec,
    Progress,
    ProgressCallback,
    Result,
)
from engine.params import StyleParams

REPO_DIR = Path(__file__).resolve().parent.parent
SLEEPY = "tests.test_executor_local:sleepy_job"

pytestmark = pytest.mark.asyncio(loop_scope="module")


# -- job functions run inside the workers ---------------------------------------------------


def progress_at(step: int, total: int, preview: bytes | None = None) -> Progress:
    return Progress(
        scale=0,
        scales=1,
        step=step,
        total_steps=total,
        loss=1.0 / step,
        style_loss=0.5 / step,
        content_loss=0.5 / step,
        tv_loss=0.0,
        elapsed=0.0,
        eta=0.0,
        preview=preview,
    )


def sleepy_job(spec: JobSpec, report: ProgressCallback, should_cancel: CancelCheck) -> JobOutcome:
    """What it does comes from `params.extra`: steps, delay (s per step), ignore_cancel, fail,
    reject, image_size (bytes)."""
    options = spec.params.extra
    steps = int(options.get("steps", 5))
    for step in range(1, steps + 1):
        if should_cancel() and not options.get("ignore_cancel"):
            return JobOutcome.cancelled()
        time.sleep(float(options.get("delay", 0.02)))
        report(progress_at(step, steps))
    if options.get("fail"):
        raise RuntimeError("boom")
    if options.get("reject"):
        return JobOutcome.rejected("not_image", "That is not a picture.")
    image = b"R" * int(options.get("image_size", 0)) or b"result:" + spec.content
    return JobOutcome.done(
        Result(image, 3, 2, losses={"total": 1.0}, timings={"total": 0.1, "pid": os.getpid()})
    )


def no_init(weights: str | None) -> None:
    """Initializer of the test pools: nothing to build."""


def spec(job_id: str, **options: Any) -> JobSpec:
    """A job for `sleepy_job`; `options` go to `params.extra`."""
    return JobSpec(job_id, job_id.encode(), (b"style",), StyleParams(extra=options))


class Heartbeat:
    """A 10 ms ticker on the loop; `worst` is the longest gap seen between two ticks.

    The tests compare `worst` with the duration of the work measured in the same run: work
    done on the event loop would stall the ticker for about all of it."""

    def __init__(self, period: float = 0.01) -> None:
        self.period = period
        self.worst = 0.0
        self.ticks = 0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(self.period)
            now = time.perf_counter()
            self.worst = max(self.worst, now - last - self.period)
            self.ticks += 1
            last = now

    def __enter__(self) -> Heartbeat:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


# -- fixtures ---------------------------------------------------------------------------------


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def pool() -> Any:
    executor = LocalExecutor(
        workers=2, job_function=SLEEPY, job_timeout=60, initializer=f"{__name__}:no_init"
    )
    await executor.start()
    await executor.wait_ready(60)
    yield executor
    await executor.close()


# -- tests ------------------------------------------------------------------------------------


async def test_importing_the_bot_side_does_not_import_tensorflow() -> None:
    code = (
        "import sys\n"
        "import bot.executors, bot.executors.base, bot.executors.local, bot.executors.celery\n"
        "import bot.jobs, engine.worker, engine.tasks\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras'))\n"
        "assert not heavy, heavy\n"
    )
    await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", code], cwd=REPO_DIR, check=True, timeout=120
    )


async def test_a_job_completes_with_progress_in_order(pool: LocalExecutor) -> None:
    seen: list[int] = []
    thread_ids: set[int] = set()
    loop_thread = __import__("threading").get_ident()

    def on_progress(progress: Progress) -> None:
        seen.append(progress.step)
        thread_ids.add(__import__("threading").get_ident())

    result = await pool.run(spec("job-a", steps=20, delay=0.005), on_progress)
    assert result.image == b"result:job-a"
    assert (result.width, result.height) == (3, 2)
    assert seen == list(range(1, 21))
    assert thread_ids == {loop_thread}


async def test_failures_and_rejections_are_typed(pool: LocalExecutor) -> None:
    with pytest.raises(JobRejected) as rejected:
        await pool.run(spec("job-r", steps=1, reject=True))
    assert rejected.value.code == "not_image"
    with pytest.raises(JobFailed):
        await pool.run(spec("job-f", steps=1, fail=True))
    # The worker survived both and takes the next job.
    assert (await pool.run(spec("job-ok", steps=1))).image == b"result:job-ok"


async def test_cancel_stops_a_job_within_a_step(pool: LocalExecutor) -> None:
    steps: list[int] = []
    started = asyncio.Event()

    def on_progress(progress: Progress) -> None:
        steps.append(progress.step)
        started.set()

    task = asyncio.ensure_future(pool.run(spec("job-c", steps=100, delay=0.1), on_progress))
    await asyncio.wait_for(started.wait(), 10)
    asked_at = len(steps)
    await pool.cancel("job-c")
    with pytest.raises(JobCancelled):
        await task
    # the step under way when the request came may finish; no other one starts
    assert len(steps) <= asked_at + 2, steps
    await pool.cancel("unknown-job")  # ignored


async def test_two_jobs_run_at_once_on_two_workers(pool: LocalExecutor) -> None:
    order: list[str] = []
    results = await asyncio.gather(
        pool.run(spec("job-p1", steps=10, delay=0.05), lambda p: order.append("p1")),
        pool.run(spec("job-p2", steps=10, delay=0.05), lambda p: order.append("p2")),
    )
    # at once: each job reported progress before the other one had finished
    assert order.index("p2") < len(order) - 1 - order[::-1].index("p1")
    assert order.index("p1") < len(order) - 1 - order[::-1].index("p2")
    assert {r.timings["pid"] for r in results} == set(pool.worker_pids)


async def test_a_killed_worker_fails_the_job_and_is_replaced(pool: LocalExecutor) -> None:
    started = asyncio.Event()
    task = asyncio.ensure_future(
        pool.run(spec("job-k", steps=100, delay=0.05), lambda p: started.set())
    )
    await asyncio.wait_for(started.wait(), 10)
    pid = pool.worker_pid("job-k")
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(WorkerLost):
        await asyncio.wait_for(task, 10)
    await pool.wait_ready(30)
    assert pid not in pool.worker_pids and len(pool.worker_pids) == 2
    assert (await pool.run(spec("job-after-kill", steps=2))).image == b"result:job-after-kill"


async def test_the_loop_stays_responsive_during_a_big_job(pool: LocalExecutor) -> None:
    payload = b"x" * 8_000_000  # 8 MB each way through the pipes
    options = {"steps": 50, "delay": 0.01, "image_size": 8_000_000}
    big = JobSpec("job-big", payload, (payload,), StyleParams(extra=options))
    with Heartbeat() as heartbeat:
        t0 = time.perf_counter()
        result = await pool.run(big, lambda p: None)
        elapsed = time.perf_counter() - t0
    assert len(result.image) == 8_000_000
    print(f"\nworst event-loop lag during an 8 MB job: {heartbeat.worst * 1000:.1f} ms")
    assert heartbeat.ticks > 20
    assert heartbeat.worst < elapsed / 2


async def test_a_job_over_its_time_limit_is_killed() -> None:
    executor = LocalExecutor(workers=1, job_function=SLEEPY, job_timeout=1.0, initializer=None)
    await executor.start()
    try:
        await executor.wait_ready(60)
        first_pid = executor.worker_pids[0]
        steps: list[int] = []
        with pytest.raises(JobTimedOut):
            await executor.run(
                spec("job-slow", steps=100, delay=0.1), lambda p: steps.append(p.step)
            )
        assert len(steps) < 100  # stopped, not finished
        result = await executor.run(spec("job-next", steps=1))
        assert result.image == b"result:job-next"
        assert executor.worker_pids != [first_pid]
    finally:
        await executor.close()


async def test_jobs_fail_with_a_message_when_no_worker_can_start(tmp_path: Path) -> None:
    """E.g. offline with weights=imagenet: users hear it at once instead of waiting forever."""
    missing = str(tmp_path / "missing.weights.h5")
    executor = LocalExecutor(workers=1, weights=missing, job_function=SLEEPY, job_timeout=60)
    await executor.start()
    try:
        with pytest.raises(JobFailed) as failed:
            await asyncio.wait_for(executor.run(spec("job-orphan", steps=1)), 60)
        assert failed.value.code == FailureCode.ENGINE_DOWN
    finally:
        await executor.close()


async def test_a_worker_that_ignores_cancel_is_killed_after_the_grace() -> None:
    executor = LocalExecutor(
        workers=1, job_function=SLEEPY, job_timeout=60, initializer=None, cancel_grace=0.5
    )
    await executor.start()
    try:
        started = asyncio.Event()
        task = asyncio.ensure_future(
            executor.run(
                spec("job-stubborn", steps=200, delay=0.05, ignore_cancel=True),
                lambda p: started.set(),
            )
        )
        await asyncio.wait_for(started.wait(), 30)
        await executor.cancel("job-stubborn")
        with pytest.raises(JobCancelled):
            await asyncio.wait_for(task, 5)
        assert (await executor.run(spec("job-after", steps=1))).image == b"result:job-after"
    finally:
        await executor.close()


async def test_close_terminates_workers() -> None:
    executor = LocalExecutor(workers=1, job_function=SLEEPY, job_timeout=60, initializer=None)
    await executor.start()
    await executor.wait_ready(60)
    pid = executor.worker_pids[0]
    await executor.close()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


# -- the real engine, at a tiny size ----------------------------------------------------------


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def engine_pool(test_weights: str) -> Any:
    """One worker running engine.worker:run_job (TensorFlow imported and model built once)."""
    executor = LocalExecutor(workers=1, weights=test_weights, job_timeout=120)
    await executor.start()
    t0 = time.perf_counter()
    await executor.wait_ready(180)
    print(
        f"\nengine worker ready (TensorFlow + model + warm-up) in {time.perf_counter() - t0:.1f} s"
    )
    yield executor
    await executor.close()


def engine_spec(job_id: str, steps: int, content: bytes | None = None) -> JobSpec:
    from engine.params import StyleParams
    from tests.conftest import CONTENT_DIR, STYLES_DIR

    if not CONTENT_DIR.is_dir():
        pytest.skip("needs the shared test pictures")
    photo = (CONTENT_DIR / "tubingen.jpg").read_bytes()
    style = (STYLES_DIR / "sunday_on_la_grande_jatte.jpg").read_bytes()
    params = StyleParams(size=64, scales=1, steps=(steps,))
    return JobSpec(job_id, photo if content is None else content, (style,), params)


async def test_the_real_engine_paints_without_blocking_the_loop(engine_pool: LocalExecutor) -> None:
    seen: list[Progress] = []
    with Heartbeat() as heartbeat:
        t0 = time.perf_counter()
        result = await engine_pool.run(engine_spec("engine-ok", 30), seen.append)
        elapsed = time.perf_counter() - t0
    print(
        f"\nreal job (64 px, 30 steps) in {elapsed:.2f} s; worst loop lag "
        f"{heartbeat.worst * 1000:.1f} ms over {heartbeat.ticks} ticks"
    )
    assert result.mime_type == "image/jpeg" and result.image[:2] == b"\xff\xd8"
    assert max(result.width, result.height) == 64
    assert seen and [p.step for p in seen] == sorted(p.step for p in seen)
    assert heartbeat.worst < elapsed / 2  # painting on the loop would stall it throughout


async def test_the_real_engine_rejects_a_bad_picture(engine_pool: LocalExecutor) -> None:
    with pytest.raises(JobRejected) as rejected:
        await engine_pool.run(engine_spec("engine-bad", 5, content=b"this is not a picture"))
    assert str(rejected.value)


async def test_the_real_engine_cancels_within_a_step(engine_pool: LocalExecutor) -> None:
    steps: list[int] = []
    started = asyncio.Event()

    def on_progress(progress: Progress) -> None:
        steps.append(progress.step)
        started.set()

    task = asyncio.ensure_future(engine_pool.run(engine_spec("engine-cancel", 2000), on_progress))
    await asyncio.wait_for(started.wait(), 60)
    t0 = time.perf_counter()
    asked_at = len(steps)
    await engine_pool.cancel("engine-cancel")
    with pytest.raises(JobCancelled):
        await asyncio.wait_for(task, 60)
    print(f"\nreal engine cancelled {1000 * (time.perf_counter() - t0):.0f} ms after the request")
    # stopped within a few steps: those already in the pipe when the request came, and the
    # one under way (64 px steps take milliseconds, so a busy loop may be a few behind)
    assert len(steps) <= asked_at + 25, (asked_at, len(steps))


async def test_a_waiting_jobs_first_look_is_painted_between_steps_of_the_running_one(
    engine_pool: LocalExecutor,
) -> None:
    waiting = engine_spec("engine-waiting", 10)  # 64 px: a quick pass at 32 px
    assert not engine_pool.request_preview(waiting, lambda _: None)  # idle: it would just run
    started = asyncio.Event()
    running = asyncio.ensure_future(
        engine_pool.run(engine_spec("engine-long", 2000), lambda _: started.set())
    )
    await asyncio.wait_for(started.wait(), 60)
    looks: list[bytes] = []
    shown = asyncio.Event()

    def show(jpeg: bytes) -> None:
        looks.append(jpeg)
        shown.set()

    assert engine_pool.request_preview(waiting, show)
    await asyncio.wait_for(shown.wait(), 60)
    assert not running.done()  # painted while the other job still ran, not after it
    assert looks[0][:2] == b"\xff\xd8"
    await engine_pool.cancel("engine-long")
    with pytest.raises(JobCancelled):
        await asyncio.wait_for(running, 60)
