"""How long a painting takes on this service's workers: for /size, "Full resolution" and /stats.

Every result says what painted it and how much work it was (`Result.device`,
`Result.megapixel_steps`, `Result.timings`). The job manager folds each finished job into its
device's `WorkerSpeed`, a moving average kept in SQLite (a restart does not forget it). A
painting's time is then its planned work (`StyleParams.planned_megapixel_steps`) at that speed,
plus the fixed part of a job (decoding, model, encoding).

Until a job has been measured, `FALLBACK` stands in: the speed measured for this project on a
2-core server (README, "Benchmarks").
"""

from __future__ import annotations

from bot.storage import Storage, WorkerSpeed
from engine.job import Result
from engine.params import StyleParams

SMOOTHING = 0.3
"""Weight of the newest job in the moving average (older ones fade, a changed machine shows)."""

# Measured for this project on a 2-core AMD EPYC (AVX512-BF16), bfloat16, trained-feature
# weights: 4.14 s per megapixel-step at 512x384 and within 3 % of it up to 2048 px
# (benchmarks/results/sizes_2026-11-29.json); decoding, model and encoding took ~0.4 s there,
# rounded up for the bot's own share of a job.
FALLBACK = WorkerSpeed(device="", seconds_per_megapixel_step=4.14, overhead_s=2.0, jobs=0)


def _mix(old: float, new: float) -> float:
    return (1.0 - SMOOTHING) * old + SMOOTHING * new


def updated_speed(previous: WorkerSpeed | None, result: Result) -> WorkerSpeed | None:
    """`previous` with `result`'s measurement folded in; None when the result carries none
    (an older worker, or a job that did no optimisation)."""
    optimize = float(result.timings.get("optimize", 0.0))
    if not result.device or result.megapixel_steps <= 0 or optimize <= 0:
        return None
    rate = optimize / result.megapixel_steps
    overhead = max(0.0, float(result.timings.get("total", optimize)) - optimize)
    if previous is None or previous.device != result.device:
        return WorkerSpeed(result.device, rate, overhead, jobs=1)
    return WorkerSpeed(
        result.device,
        _mix(previous.seconds_per_megapixel_step, rate),
        _mix(previous.overhead_s, overhead),
        jobs=previous.jobs + 1,
    )


async def record(storage: Storage, result: Result) -> WorkerSpeed | None:
    """Fold a finished job's measurement into its device's stored speed."""
    speeds = {speed.device: speed for speed in await storage.worker_speeds()}
    speed = updated_speed(speeds.get(result.device), result)
    if speed is None:
        return None
    return await storage.save_worker_speed(speed)


async def current(storage: Storage) -> WorkerSpeed:
    """The speed of the device that painted last (`FALLBACK` before any was measured)."""
    speeds = await storage.worker_speeds()
    return speeds[0] if speeds else FALLBACK


def estimate_seconds(speed: WorkerSpeed, params: StyleParams, *, warm_start: bool = False) -> float:
    """Seconds a painting with `params` takes on a worker of `speed` (queueing not included)."""
    work = params.planned_megapixel_steps(warm_start=warm_start)
    return speed.overhead_s + speed.seconds_per_megapixel_step * work
