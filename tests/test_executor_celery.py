"""CeleryExecutor against a real redis-server and real Celery worker subprocesses.

The workers run the light `sleepy_job` of tests/test_executor_local.py (no TensorFlow) so
that the delivery mechanics (kill -9, redelivery, exactly-once) are quick to test.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from bot.executors.base import ExecutorUnavailable, JobCancelled
from bot.executors.celery import CeleryExecutor
from engine.job import JobSpec, Progress
from engine.params import StyleParams
from tests.redis_server import RedisServer, free_port

REPO_DIR = Path(__file__).resolve().parent.parent
SLEEPY = "tests.test_executor_local:sleepy_job"
VISIBILITY_TIMEOUT = 8

pytestmark = [pytest.mark.redis, pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.close()


class Worker:
    """`python -m celery --app engine.tasks worker --concurrency 1 --pool prefork`."""

    def __init__(self, redis_url: str, log_path: Path, engine_weights: str | None = None) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("STYLEBOT_")}
        env.update(
            STYLEBOT_REDIS_URL=redis_url,
            STYLEBOT_JOB_TIMEOUT="60",
            STYLEBOT_CELERY_VISIBILITY_TIMEOUT=str(VISIBILITY_TIMEOUT),
            PYTHONPATH=str(REPO_DIR),
        )
        if engine_weights is None:  # the light test job
            env.update(STYLEBOT_JOB_FUNCTION=SLEEPY, STYLEBOT_WORKER_INIT="none")
        else:  # the real engine: engine.worker:init_worker / run_job
            env.update(STYLEBOT_WEIGHTS=engine_weights)
        self.log = log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "celery", "--app", "engine.tasks", "worker",
                "--concurrency", "1", "--pool", "prefork", "-l", "warning",
                "--hostname", f"test{free_port()}@%h", "--without-gossip", "--without-mingle",
            ],
            cwd=REPO_DIR,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def children(self) -> list[int]:
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            return [int(p) for p in path.read_text().split()]
        except OSError:
            return []

    def kill(self) -> None:
        """kill -9 the pool children and the main process."""
        for pid in [*self.children(), self.process.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(10)
        self.log.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
                return
        self.log.close()


@pytest.fixture
def worker_log(tmp_path: Path) -> Path:
    return tmp_path / "celery-worker.log"


@pytest_asyncio.fixture(loop_scope="module")
async def executor(redis_server: RedisServer) -> Any:
    executor = CeleryExecutor(redis_server.url, job_timeout=60, poll_interval=0.1)
    await executor.start()
    yield executor
    await executor.close()


def completions(redis_url: str, job_id: str) -> int:
    import redis

    from engine.tasks import COMPLETIONS_KEY

    client = redis.Redis.from_url(redis_url)
    try:
        return int(client.get(COMPLETIONS_KEY.format(job_id=job_id)) or 0)
    finally:
        client.close()


def spec(job_id: str, **options: Any) -> JobSpec:
    """A job for `sleepy_job` (tests/test_executor_local.py); `options` go to `params.extra`."""
    return JobSpec(job_id, job_id.encode(), (b"style",), StyleParams(extra=options))


async def test_a_job_completes_through_celery(
    executor: CeleryExecutor, redis_server: RedisServer, worker_log: Path
) -> None:
    worker = Worker(redis_server.url, worker_log)
    try:
        steps: list[int] = []
        result = await asyncio.wait_for(
            executor.run(spec("celery-ok", steps=10, delay=0.1), lambda p: steps.append(p.step)),
            60,
        )
        assert result.image == b"result:celery-ok"
        assert steps and steps == sorted(steps) and steps[-1] <= 10  # polled: some skipped
        assert completions(redis_server.url, "celery-ok") == 1
        # Asking again for a finished job returns the stored result without painting again.
        again = await executor.run(spec("celery-ok", steps=10, delay=0.1))
        assert again.image == result.image
        assert completions(redis_server.url, "celery-ok") == 1

        # Cancellation through the Redis key, within a few steps (polled every 0.2 s).
        cancel_steps: list[int] = []
        started = asyncio.Event()

        def on_progress(progress: Progress) -> None:
            cancel_steps.append(progress.step)
            started.set()

        task = asyncio.ensure_future(
            executor.run(spec("celery-cancel", steps=200, delay=0.1), on_progress)
        )
        await asyncio.wait_for(started.wait(), 30)
        await executor.cancel("celery-cancel")
        with pytest.raises(JobCancelled):
            await asyncio.wait_for(task, 30)
        assert max(cancel_steps) < 200  # stopped, not finished
    finally:
        worker.stop()


async def test_killing_the_pool_child_redelivers_and_completes_once(
    executor: CeleryExecutor, redis_server: RedisServer, worker_log: Path
) -> None:
    worker = Worker(redis_server.url, worker_log)
    try:
        seen: list[Progress] = []
        started = asyncio.Event()

        def on_progress(progress: Progress) -> None:
            seen.append(progress)
            if progress.step >= 5:  # well into the job, so a re-run shows as steps going back
                started.set()

        task = asyncio.ensure_future(
            executor.run(spec("celery-child", steps=30, delay=0.1), on_progress)
        )
        await asyncio.wait_for(started.wait(), 60)
        children = worker.children()
        assert children, "the prefork child is not there"
        for pid in children:
            os.kill(pid, signal.SIGKILL)
        result = await asyncio.wait_for(task, 90)
        assert result.image == b"result:celery-child"
        steps = [p.step for p in seen]
        assert any(b < a for a, b in itertools.pairwise(steps)), steps  # ran again
        assert completions(redis_server.url, "celery-child") == 1
    finally:
        worker.stop()


async def test_killing_the_whole_worker_then_starting_another_completes_once(
    executor: CeleryExecutor, redis_server: RedisServer, worker_log: Path
) -> None:
    worker = Worker(redis_server.url, worker_log)
    replacement: Worker | None = None
    try:
        started = asyncio.Event()
        task = asyncio.ensure_future(
            executor.run(spec("celery-whole", steps=20, delay=0.1), lambda p: started.set())
        )
        await asyncio.wait_for(started.wait(), 60)
        t_kill = time.perf_counter()
        worker.kill()
        replacement = Worker(redis_server.url, worker_log)
        result = await asyncio.wait_for(task, 120)
        print(f"\nredelivered and finished {time.perf_counter() - t_kill:.1f} s after kill -9")
        assert result.image == b"result:celery-whole"
        assert completions(redis_server.url, "celery-whole") == 1
    finally:
        if replacement is not None:
            replacement.stop()
        if worker.process.poll() is None:
            worker.stop()


async def test_redis_down_at_submit_is_executor_unavailable() -> None:
    executor = CeleryExecutor(f"redis://127.0.0.1:{free_port()}/0", job_timeout=60)
    await executor.start()
    try:
        with pytest.raises(ExecutorUnavailable):
            await asyncio.wait_for(executor.check_available(), 60)
        with pytest.raises(ExecutorUnavailable):
            await asyncio.wait_for(executor.run(spec("celery-nowhere", steps=1)), 60)
    finally:
        await executor.close()


async def test_the_real_engine_through_celery(
    executor: CeleryExecutor, redis_server: RedisServer, worker_log: Path, test_weights: str
) -> None:
    from tests.conftest import CONTENT_DIR, STYLES_DIR

    if not CONTENT_DIR.is_dir():
        pytest.skip("needs the shared test pictures")
    photo = await asyncio.to_thread((CONTENT_DIR / "tubingen.jpg").read_bytes)
    style = await asyncio.to_thread((STYLES_DIR / "sunday_on_la_grande_jatte.jpg").read_bytes)
    params = StyleParams(size=64, scales=1, steps=(5,))
    worker = Worker(redis_server.url, worker_log, engine_weights=test_weights)
    try:
        t0 = time.perf_counter()
        result = await asyncio.wait_for(
            executor.run(JobSpec("celery-engine", photo, (style,), params)), 180
        )
        print(f"\nreal engine via Celery, worker start included: {time.perf_counter() - t0:.1f} s")
        assert result.image[:2] == b"\xff\xd8" and max(result.width, result.height) == 64
        assert completions(redis_server.url, "celery-engine") == 1
    finally:
        worker.stop()


async def test_a_job_manager_keeps_the_job_queued_while_redis_is_down(tmp_path: Path) -> None:
    from bot.jobs import JobManager
    from bot.spool import JobInputs
    from bot.storage import Storage

    storage = Storage(tmp_path / "stylebot.sqlite3")
    await storage.open()
    executor = CeleryExecutor(f"redis://127.0.0.1:{free_port()}/0", job_timeout=60)
    await executor.start()
    jobs = JobManager(storage, executor, tmp_path / "spool", retry_delays=(0.2,))
    await jobs.start()
    try:
        inputs = JobInputs(b"photo", (b"style",))
        job_id = await jobs.submit(1, 10, inputs, StyleParams(extra={"steps": 1}))
        await asyncio.sleep(1.0)  # several dispatch attempts, each refused
        job = await storage.get_job(job_id)
        assert job is not None and job.state == "queued" and job.attempts == 0
        assert jobs.position(job_id) == 1
    finally:
        await jobs.stop()
        await executor.close()
        await storage.close()
