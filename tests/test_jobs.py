"""JobManager with the real SQLite storage and a real local process pool (no mocks).

Workers run `sleepy_job` from tests/test_executor_local.py (no TensorFlow): pool and queue
mechanics are what is tested here; the real engine runs in test_executor_local.py.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from bot.executors.local import LocalExecutor
from bot.jobevents import JobEvent
from bot.jobmeta import JobMeta
from bot.jobs import JobManager, QueueFull, UserQueueFull
from bot.spool import JobInputs
from bot.storage import Storage
from engine.job import FailureCode
from engine.params import StyleParams

SLEEPY = "tests.test_executor_local:sleepy_job"
NO_INIT = "tests.test_executor_local:no_init"

pytestmark = pytest.mark.asyncio(loop_scope="module")


def make_pool(workers: int = 1) -> LocalExecutor:
    return LocalExecutor(workers=workers, job_function=SLEEPY, job_timeout=60, initializer=NO_INIT)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def pool() -> AsyncIterator[LocalExecutor]:
    executor = make_pool(1)
    await executor.start()
    await executor.wait_ready(60)
    yield executor
    await executor.close()


@pytest_asyncio.fixture(loop_scope="module")
async def storage(tmp_path: Path) -> AsyncIterator[Storage]:
    store = Storage(tmp_path / "stylebot.sqlite3")
    await store.open()
    yield store
    await store.close()


class Recorder:
    """on_event that records events and lets a test wait for a job's end."""

    def __init__(self) -> None:
        self.events: list[JobEvent] = []
        self.changed = asyncio.Event()

    async def __call__(self, event: JobEvent) -> None:
        self.events.append(event)
        self.changed.set()

    def kinds(self, job_id: str) -> list[str]:
        return [e.kind for e in self.events if e.job.id == job_id]

    def ended(self, job_id: str) -> JobEvent | None:
        for event in self.events:
            if event.job.id == job_id and event.kind in ("done", "failed", "cancelled"):
                return event
        return None

    async def wait_end(self, *job_ids: str, within: float = 30.0) -> list[JobEvent]:
        async def wait() -> None:
            while not all(self.ended(j) for j in job_ids):
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(wait(), within)
        return [e for j in job_ids if (e := self.ended(j)) is not None]

    def start_order(self) -> list[str]:
        return [e.job.id for e in self.events if e.kind == "started"]


async def eventually(predicate: Any, within: float = 30.0) -> None:
    for _ in range(int(within / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


def manager(
    storage: Storage, executor: Any, tmp_path: Path, recorder: Recorder, **kwargs: Any
) -> JobManager:
    options: dict[str, Any] = {"max_queue": 10, "max_per_user": 5}
    options.update(kwargs)
    return JobManager(storage, executor, tmp_path / "spool", on_event=recorder, **options)


async def submit(jobs: JobManager, user: int, name: str, **options: Any) -> str:
    """A `sleepy_job` (tests/test_executor_local.py) with `options` in `params.extra`."""
    inputs = JobInputs(name.encode(), (b"style",))
    meta = JobMeta(style_name=name)
    return await jobs.submit(user, user * 10, inputs, StyleParams(extra=options), meta)


async def test_a_job_is_recorded_runs_and_leaves_its_result(
    pool: LocalExecutor, storage: Storage, tmp_path: Path
) -> None:
    recorder = Recorder()
    jobs = manager(storage, pool, tmp_path, recorder)
    await jobs.start()
    try:
        job_id = await submit(jobs, 1, "first", steps=5)
        (end,) = await recorder.wait_end(job_id)
        assert end.kind == "done" and end.result is not None
        kinds = recorder.kinds(job_id)
        assert kinds[:2] == ["queued", "started"] and kinds[-1] == "done"
        assert "progress" in kinds
        steps = [e.progress.step for e in recorder.events if e.kind == "progress" and e.progress]
        assert steps == sorted(steps)
        job = await storage.get_job(job_id)
        assert job is not None and job.state == "done" and job.attempts == 1
        assert job.started_at and job.finished_at and job.meta == JobMeta(style_name="first")
        assert job.result_path
        assert await asyncio.to_thread(Path(job.result_path).read_bytes) == b"result:first"
        assert Path(job.result_path).parent == tmp_path / "results"
        assert not (tmp_path / "spool" / job_id).exists()
        assert jobs.position(job_id) is None and jobs.active_jobs(1) == []
    finally:
        await jobs.stop()


async def test_a_killed_worker_is_retried_and_the_job_completes(
    pool: LocalExecutor, storage: Storage, tmp_path: Path
) -> None:
    recorder = Recorder()
    jobs = manager(storage, pool, tmp_path, recorder)
    await jobs.start()
    try:
        job_id = await submit(jobs, 1, "crash", steps=40, delay=0.05)
        await eventually(lambda: pool.worker_pid(job_id) and "progress" in recorder.kinds(job_id))
        os.kill(pool.worker_pid(job_id) or 0, signal.SIGKILL)
        (end,) = await recorder.wait_end(job_id, within=60)
        assert end.kind == "done"
        job = await storage.get_job(job_id)
        assert job is not None and job.state == "done" and job.attempts == 2
        assert recorder.kinds(job_id).count("started") == 2
    finally:
        await jobs.stop()


async def test_users_take_turns(pool: LocalExecutor, storage: Storage, tmp_path: Path) -> None:
    recorder = Recorder()
    jobs = manager(storage, pool, tmp_path, recorder)
    await jobs.start()
    try:
        a1 = await submit(jobs, 1, "a1", steps=10, delay=0.03)
        a2 = await submit(jobs, 1, "a2", steps=1)
        a3 = await submit(jobs, 1, "a3", steps=1)
        b1 = await submit(jobs, 2, "b1", steps=1)
        b2 = await submit(jobs, 2, "b2", steps=1)
        c1 = await submit(jobs, 3, "c1", steps=1)
        assert jobs.position(a1) == 0
        assert [jobs.position(j) for j in (a2, b1, c1, a3, b2)] == [1, 2, 3, 4, 5]
        assert jobs.active_jobs(1) == [a1, a2, a3]
        await recorder.wait_end(a1, a2, a3, b1, b2, c1)
        assert recorder.start_order() == [a1, a2, b1, c1, a3, b2]
    finally:
        await jobs.stop()


async def test_queue_limits(pool: LocalExecutor, storage: Storage, tmp_path: Path) -> None:
    recorder = Recorder()
    jobs = manager(storage, pool, tmp_path, recorder, max_queue=2, max_per_user=2)
    await jobs.start()
    try:
        first = await submit(jobs, 1, "long", steps=100, delay=0.05)
        await submit(jobs, 1, "second", steps=1)
        with pytest.raises(UserQueueFull) as per_user:
            await submit(jobs, 1, "third", steps=1)
        assert per_user.value.limit == 2
        # running in SQLite too: the manager records it just before its "started" event
        await eventually(lambda: "started" in recorder.kinds(first))
        await submit(jobs, 2, "other", steps=1)  # two waiting now
        with pytest.raises(QueueFull) as full:
            await submit(jobs, 3, "nope", steps=1)
        assert 5 <= full.value.retry_after_s <= 3600
        assert await storage.job_counts() == {
            "queued": 2,
            "running": 1,
            "done": 0,
            "failed": 0,
            "cancelled": 0,
        }
        # Cancel: the queued one at once, the running one within a step.
        queued = jobs.active_jobs(2)[0]
        assert not await jobs.cancel(queued, user_id=1)  # not the owner
        assert await jobs.cancel(queued, user_id=2)
        assert await jobs.cancel(first, user_id=1)
        ends = await recorder.wait_end(queued, first)
        assert [e.kind for e in ends] == ["cancelled", "cancelled"]
        assert not (tmp_path / "spool" / queued).exists()
    finally:
        await jobs.stop()


async def test_an_event_handler_that_raises_does_not_stop_the_manager(
    pool: LocalExecutor, storage: Storage, tmp_path: Path
) -> None:
    recorder = Recorder()

    async def flaky(event: JobEvent) -> None:
        await recorder(event)
        raise RuntimeError("handler bug")

    jobs = JobManager(
        storage, pool, tmp_path / "spool", on_event=flaky, max_queue=5, max_per_user=5
    )
    await jobs.start()
    try:
        ids = [await submit(jobs, 1, f"j{i}", steps=2) for i in range(2)]
        ends = await recorder.wait_end(*ids)
        assert [e.kind for e in ends] == ["done", "done"]
    finally:
        await jobs.stop()


async def test_an_unavailable_executor_keeps_jobs_queued(storage: Storage, tmp_path: Path) -> None:
    executor = make_pool(1)
    await executor.close()  # closed: check_available raises ExecutorUnavailable
    recorder = Recorder()
    jobs = manager(storage, executor, tmp_path, recorder, retry_delays=(0.05,))
    await jobs.start()
    try:
        job_id = await submit(jobs, 1, "waits", steps=1)
        await asyncio.sleep(0.3)
        job = await storage.get_job(job_id)
        assert job is not None and job.state == "queued" and job.attempts == 0
        assert jobs.position(job_id) == 1
    finally:
        await jobs.stop()


async def test_restart_resumes_queued_and_running_jobs(tmp_path: Path) -> None:
    path = tmp_path / "stylebot.sqlite3"
    first_storage = Storage(path)
    await first_storage.open()
    first_pool = make_pool(1)
    await first_pool.start()
    recorder = Recorder()
    jobs = manager(first_storage, first_pool, tmp_path, recorder)
    await jobs.start()
    ids = [await submit(jobs, user, f"r{user}", steps=20, delay=0.05) for user in (1, 2, 3)]
    lost = await submit(jobs, 4, "lost", steps=1)
    await eventually(lambda: "progress" in recorder.kinds(ids[0]))
    await jobs.stop()
    await first_pool.close()
    await first_storage.close()

    # The process "restarts": one job's spooled inputs did not survive.
    for leftover in (tmp_path / "spool" / lost).iterdir():
        leftover.unlink()
    storage = Storage(path)
    await storage.open()
    try:
        before = {j.id: j.state for j in await storage.list_jobs(["queued", "running"])}
        assert before == {ids[0]: "running", ids[1]: "queued", ids[2]: "queued", lost: "queued"}
        pool = make_pool(1)
        await pool.start()
        recorder = Recorder()
        jobs = manager(storage, pool, tmp_path, recorder)
        await jobs.start()
        try:
            ends = {e.job.id: e for e in await recorder.wait_end(*ids, lost, within=60)}
        finally:
            await jobs.stop()
            await pool.close()
        assert ends[lost].kind == "failed" and ends[lost].code == FailureCode.INPUTS_LOST
        assert all(ends[j].kind == "done" for j in ids)
        rows = {j.id: j for j in await storage.list_jobs(["done", "failed"])}
        assert {rows[j].state for j in ids} == {"done"}
        assert rows[ids[0]].attempts == 2  # interrupted once, then ran again
        assert rows[lost].state == "failed" and rows[lost].error == FailureCode.INPUTS_LOST
        assert await storage.job_counts() == {
            "queued": 0,
            "running": 0,
            "done": 3,
            "failed": 1,
            "cancelled": 0,
        }
        assert not any((tmp_path / "spool").iterdir())
    finally:
        await storage.close()
