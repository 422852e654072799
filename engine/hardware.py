"""What the device that paints can do, for choices that depend on it (bfloat16, memory growth).

The decisions are pure functions of device facts (`DeviceInfo`, the CPU's flags), so they can
be tested without a GPU. Asking TensorFlow about its devices is the thin part, and it never
imports TensorFlow on its own: in a process that has not loaded TensorFlow (the bot), the CPU's
flags decide; a worker calls `setup_device()` once (it imports TensorFlow, turns on memory
growth and remembers the device), and from then on its GPU, if TensorFlow sees one, decides.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

log = logging.getLogger(__name__)

# oneDNN runs bfloat16 convolutions natively with these; elsewhere it emulates them slowly.
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
# NVIDIA GPUs compute in bfloat16 (tensor cores, cuDNN convolutions) from Ampere on: compute
# capability 8.0 (A100), 8.6 (RTX 30xx, A10), 8.9 (L4, RTX 40xx), 9.0 (H100). Older ones (T4 is
# 7.5, V100 7.0) paint in float32.
GPU_BF16_MIN_COMPUTE_CAPABILITY = (8, 0)


@dataclass(frozen=True)
class DeviceInfo:
    """The device TensorFlow runs the convolutions on: the first GPU it sees, else the CPU."""

    kind: Literal["CPU", "GPU"] = "CPU"
    name: str = ""
    """The GPU's name as its driver reports it, e.g. "NVIDIA L4" ("" for the CPU)."""
    compute_capability: tuple[int, int] | None = None
    """CUDA compute capability (major, minor); None for the CPU or when unknown."""


CPU_DEVICE = DeviceInfo()


# -- the decisions (pure) -----------------------------------------------------------------------


def gpu_has_bf16(compute_capability: tuple[int, int] | None) -> bool:
    """Whether a GPU of this compute capability computes bfloat16 natively (8.0 or newer)."""
    return compute_capability is not None and (
        tuple(compute_capability) >= GPU_BF16_MIN_COMPUTE_CAPABILITY
    )


def choose_mixed_precision(device: DeviceInfo, flags: frozenset[str]) -> bool:
    """bfloat16 convolutions where the device has them natively: on a GPU its compute
    capability decides (the CPU's flags do not matter then), on the CPU its flags."""
    if device.kind == "GPU":
        return gpu_has_bf16(device.compute_capability)
    return bool(flags & BF16_FLAGS)


def describe(device: DeviceInfo, mixed_precision: bool, flags: frozenset[str]) -> str:
    """E.g. "GPU NVIDIA L4 (compute 8.9, bfloat16)" or "CPU (avx512_bf16, bfloat16)"."""
    precision = "bfloat16" if mixed_precision else "float32"
    if device.kind == "GPU":
        details = []
        if device.compute_capability is not None:
            major, minor = device.compute_capability
            details.append(f"compute {major}.{minor}")
        return f"GPU {device.name or 'unknown'} ({', '.join([*details, precision])})"
    return f"CPU ({', '.join([*sorted(flags & BF16_FLAGS), precision])})"


def device_from_details(details: Mapping[str, Any]) -> DeviceInfo:
    """A GPU from `tf.config.experimental.get_device_details` ({"device_name": "NVIDIA L4",
    "compute_capability": (8, 9)}); missing or odd values are left unknown."""
    name = str(details.get("device_name") or "").strip()
    capability: tuple[int, int] | None = None
    raw = details.get("compute_capability")
    try:
        if raw is not None:
            major, minor = raw
            capability = (int(major), int(minor))
    except (TypeError, ValueError):
        capability = None
    return DeviceInfo("GPU", name, capability)


# -- this machine -------------------------------------------------------------------------------


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


_device: DeviceInfo | None = None


def _query_tensorflow() -> DeviceInfo:
    """Ask TensorFlow (already imported) for its first GPU. Listing devices does not start
    TensorFlow's runtime, so memory growth can still be set afterwards."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return CPU_DEVICE
    try:
        details = tf.config.experimental.get_device_details(gpus[0])
    except Exception:  # experimental API: a GPU whose details cannot be read paints in float32
        log.warning("could not read the details of %s", gpus[0].name, exc_info=True)
        details = {}
    return device_from_details(details)


def current_device() -> DeviceInfo:
    """The device this process paints on. Never imports TensorFlow: until it is loaded, the
    CPU (and that answer is not remembered); once loaded, what TensorFlow sees (remembered)."""
    global _device
    if _device is None:
        if "tensorflow" not in sys.modules:
            return CPU_DEVICE
        _device = _query_tensorflow()
    return _device


def setup_device() -> DeviceInfo:
    """Prepare TensorFlow's devices in this process, before its first op: memory growth on
    every GPU it sees (a process takes GPU memory as it needs it instead of all of it, so
    several workers can share a GPU). Imports TensorFlow; returns the device jobs will use.
    Safe to call again; too late (TensorFlow already running) it only logs a warning."""
    global _device
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            if not tf.config.experimental.get_memory_growth(gpu):
                tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError as error:  # TensorFlow's runtime already started in this process
            log.warning("memory growth of %s not set: %s", gpu.name, error)
    _device = _query_tensorflow()
    log.info("engine device: %s", describe_device(default_mixed_precision()))
    return _device


def default_mixed_precision() -> bool:
    """bfloat16 by default? On a GPU iff it has bfloat16; on the CPU iff its flags do."""
    return choose_mixed_precision(current_device(), cpu_flags())


def describe_device(mixed_precision: bool) -> str:
    """The device that paints, for people (/stats, benchmarks): e.g. "GPU NVIDIA L4 (compute
    8.9, bfloat16)" or "CPU (avx512_bf16, bfloat16)"."""
    return describe(current_device(), mixed_precision, cpu_flags())


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
