"""The job manager's parts, each alone: the fair queue, the spool and results, the event pump.
No process pool, no database: these run in milliseconds."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from bot.fairqueue import FairQueue
from bot.jobevents import EventPump, JobEvent
from bot.spool import JobInputs, ResultStore, Spool
from bot.storage import Job
from engine.job import EventKind, JobState, Progress, Result


# -- FairQueue -----------------------------------------------------------------------------------
def test_users_take_turns_in_the_order_they_arrived() -> None:
    queue = FairQueue()
    for user, job in [(1, "a1"), (1, "a2"), (1, "a3"), (2, "b1"), (2, "b2"), (3, "c1")]:
        queue.push(user, job)
    assert queue.order() == ["a1", "b1", "c1", "a2", "b2", "a3"]
    assert [queue.position(j) for j in ("a1", "b1", "c1", "a2")] == [1, 2, 3, 4]
    assert queue.position("nope") is None
    assert [queue.pop() for _ in range(len(queue))] == ["a1", "b1", "c1", "a2", "b2", "a3"]
    assert not queue and len(queue) == 0
    with pytest.raises(IndexError):
        queue.pop()


def test_a_user_who_comes_back_joins_the_end_of_the_round() -> None:
    queue = FairQueue()
    queue.push(1, "a1")
    queue.push(2, "b1")
    assert queue.pop() == "a1"
    queue.push(1, "a2")  # user 1 had no job left: behind user 2 now
    assert queue.order() == ["b1", "a2"]


def test_front_puts_a_retried_job_first() -> None:
    queue = FairQueue()
    queue.push(1, "a1")
    queue.push(2, "b1")
    queue.push(3, "c1", front=True)
    queue.push(1, "a0", front=True)
    assert queue.order() == ["c1", "a0", "b1", "a1"]
    assert queue.queued(1) == ["a0", "a1"]


def test_remove_takes_a_job_out_and_forgets_an_empty_user() -> None:
    queue = FairQueue()
    queue.push(1, "a1")
    queue.push(2, "b1")
    queue.push(2, "b2")
    assert queue.remove(1, "a1") and not queue.remove(1, "a1") and not queue.remove(9, "b1")
    assert queue.order() == ["b1", "b2"] and queue.queued(1) == []
    assert queue.remove(2, "b2") and queue.order() == ["b1"] and len(queue) == 1


# -- Spool and ResultStore -------------------------------------------------------------------------
def test_spool_round_trips_inputs_and_notices_a_missing_one(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    inputs = JobInputs(b"photo", (b"style-a", b"style-b", b"c"), init=b"before")
    paths = spool.write("job1", inputs)
    assert Spool.present(paths) and Spool.read(paths) == inputs
    without_init = spool.write("job2", JobInputs(b"p", (b"s",)))
    assert Spool.read(without_init) == JobInputs(b"p", (b"s",), None)
    Path(paths[0]).unlink()
    assert not Spool.present(paths) and not Spool.present([])
    with pytest.raises(FileNotFoundError):
        Spool.read(paths)
    spool.remove("job1")
    spool.remove("never-there")
    assert not (tmp_path / "spool" / "job1").exists()


def test_results_are_saved_whole_and_old_ones_pruned(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "results", max_age_s=3600)
    jpeg = Path(store.save("j1", Result(b"jpeg", 1, 1)))
    png = Path(store.save("j2", Result(b"png", 1, 1, mime_type="image/png")))
    assert (jpeg.name, jpeg.read_bytes(), png.name) == ("j1.jpg", b"jpeg", "j2.png")
    assert not list(store.root.glob("*.part"))
    old = time.time() - 7200
    os.utime(jpeg, (old, old))
    assert store.prune() == 1 and not jpeg.exists() and png.exists()
    assert ResultStore(tmp_path / "none", 1).prune() == 0


# -- EventPump --------------------------------------------------------------------------------------
def _job(job_id: str = "j") -> Job:
    return Job(job_id, 1, 1, JobState.RUNNING)


def _progress(step: int, preview: bytes | None = None) -> Progress:
    return Progress(0, 1, step, 10, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, preview=preview)


async def test_events_are_delivered_in_order_and_slow_progress_is_coalesced() -> None:
    delivered: list[tuple[EventKind, int | None]] = []
    previews: list[bytes | None] = []
    release = asyncio.Event()

    async def slow_handler(event: JobEvent) -> None:
        await release.wait()
        delivered.append((event.kind, event.progress.step if event.progress else None))
        previews.append(event.progress.preview if event.progress else None)

    pump = EventPump(slow_handler)
    pump.start()
    job = _job()
    pump.emit(JobEvent(EventKind.STARTED, job))
    for step in (1, 2, 3):
        pump.emit(JobEvent(EventKind.PROGRESS, job, progress=_progress(step)))
    pump.emit(JobEvent(EventKind.PROGRESS, job, progress=_progress(4, preview=b"jpeg")))
    pump.emit(JobEvent(EventKind.PROGRESS, job, progress=_progress(5)))
    pump.emit(JobEvent(EventKind.DONE, job))
    await asyncio.sleep(0)
    release.set()
    await pump.stop()
    # steps 1-4 waited as one event and the newest numbers won (step 4, with its preview);
    # once a waiting event carries a preview it is never overwritten, so step 5 queues anew
    assert delivered == [
        (EventKind.STARTED, None),
        (EventKind.PROGRESS, 4),
        (EventKind.PROGRESS, 5),
        (EventKind.DONE, None),
    ]
    assert previews == [None, b"jpeg", None, None]


async def test_a_failing_handler_changes_nothing() -> None:
    seen: list[EventKind] = []

    async def handler(event: JobEvent) -> None:
        seen.append(event.kind)
        raise RuntimeError("handler bug")

    pump = EventPump(handler)
    pump.start()
    pump.emit(JobEvent(EventKind.QUEUED, _job()))
    pump.emit(JobEvent(EventKind.CANCELLED, _job()))
    await pump.stop()
    assert seen == [EventKind.QUEUED, EventKind.CANCELLED]
