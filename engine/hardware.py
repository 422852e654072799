"""What the CPU can do, for choices that depend on it (bfloat16 convolutions)."""

from __future__ import annotations

import functools
from pathlib import Path

# oneDNN runs bfloat16 convolutions natively with these; elsewhere it emulates them slowly.
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


@functools.cache
def cpu_flags() -> frozenset[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def has_fast_bf16() -> bool:
    return bool(cpu_flags() & BF16_FLAGS)


def describe_device(mixed_precision: bool) -> str:
    """The device that paints, for people (/stats, benchmarks): e.g. "CPU (avx512_bf16,
    bfloat16)"."""
    flags = sorted(cpu_flags() & BF16_FLAGS)
    precision = "bfloat16" if mixed_precision else "float32"
    return f"CPU ({', '.join([*flags, precision])})"


THREADS_ENV = "STYLEBOT_ENGINE_THREADS"


def configure_threads() -> None:
    """Apply $STYLEBOT_ENGINE_THREADS to TensorFlow's op threads (before its first op runs).

    Several workers on one machine should share the cores rather than each use all of them:
    the local executor sets this to cores ÷ workers. Unset or 0: TensorFlow's default.
    """
    import os

    raw = os.environ.get(THREADS_ENV, "").strip()
    if not raw.isdigit() or int(raw) <= 0:
        return
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(int(raw))
    tf.config.threading.set_inter_op_parallelism_threads(min(2, int(raw)))
