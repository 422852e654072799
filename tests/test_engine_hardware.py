"""The device that paints: precision per device, its description, memory growth on GPUs.

The decisions are pure functions of device facts, tested here with made-up GPUs; the thin layer
that asks TensorFlow is tested against a stand-in `tensorflow` module. Tests that need a real
CUDA GPU skip with a reason where TensorFlow sees none.
"""

from __future__ import annotations

import os
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine import hardware
from engine.hardware import (
    BF16_FLAGS,
    CPU_DEVICE,
    DeviceInfo,
    choose_mixed_precision,
    describe,
    device_from_details,
    gpu_has_bf16,
)
from engine.params import StyleParams

REPO_DIR = Path(__file__).resolve().parent.parent
L4 = DeviceInfo("GPU", "NVIDIA L4", (8, 9))
A100 = DeviceInfo("GPU", "NVIDIA A100-SXM4-40GB", (8, 0))
T4 = DeviceInfo("GPU", "Tesla T4", (7, 5))
NO_FLAGS: frozenset[str] = frozenset({"avx2", "fma"})
BF16_CPU = frozenset({"avx2", "avx512f", "avx512_bf16"})


# -- pure decisions -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("capability", "expected"),
    [((7, 0), False), ((7, 5), False), ((8, 0), True), ((8, 6), True), ((8, 9), True),
     ((9, 0), True), ((10, 0), True), (None, False)],
)  # fmt: skip
def test_bf16_from_compute_capability_8_0_on(
    capability: tuple[int, int] | None, expected: bool
) -> None:
    assert gpu_has_bf16(capability) is expected


@pytest.mark.parametrize("flags", [NO_FLAGS, BF16_CPU])
def test_a_gpu_decides_by_its_compute_capability_whatever_the_cpu(flags: frozenset[str]) -> None:
    assert choose_mixed_precision(L4, flags) is True
    assert choose_mixed_precision(A100, flags) is True
    assert choose_mixed_precision(T4, flags) is False
    assert choose_mixed_precision(DeviceInfo("GPU", "mystery"), flags) is False


def test_the_cpu_keeps_its_flag_rule() -> None:
    assert choose_mixed_precision(CPU_DEVICE, NO_FLAGS) is False
    assert choose_mixed_precision(CPU_DEVICE, BF16_CPU) is True
    assert choose_mixed_precision(CPU_DEVICE, frozenset({"amx_bf16"})) is True
    for flags in (NO_FLAGS, BF16_CPU, frozenset()):
        assert choose_mixed_precision(CPU_DEVICE, flags) == bool(flags & BF16_FLAGS)


def test_descriptions_name_the_device_and_its_precision() -> None:
    assert describe(L4, True, NO_FLAGS) == "GPU NVIDIA L4 (compute 8.9, bfloat16)"
    assert describe(T4, False, BF16_CPU) == "GPU Tesla T4 (compute 7.5, float32)"
    assert describe(DeviceInfo("GPU"), False, NO_FLAGS) == "GPU unknown (float32)"
    # The CPU's description is what it was before GPUs were known.
    assert describe(CPU_DEVICE, True, BF16_CPU) == "CPU (avx512_bf16, bfloat16)"
    assert describe(CPU_DEVICE, False, NO_FLAGS) == "CPU (float32)"
    flags = frozenset({"amx_bf16", "avx512_bf16"})
    assert describe(CPU_DEVICE, True, flags) == "CPU (amx_bf16, avx512_bf16, bfloat16)"


def test_device_details_as_tensorflow_reports_them() -> None:
    assert device_from_details({"device_name": "NVIDIA L4", "compute_capability": (8, 9)}) == L4
    assert device_from_details({}) == DeviceInfo("GPU", "", None)
    assert device_from_details({"device_name": " X ", "compute_capability": "odd"}) == DeviceInfo(
        "GPU", "X", None
    )


def test_device_info_is_frozen() -> None:
    with pytest.raises(AttributeError):
        L4.name = "other"  # type: ignore[misc]


# -- the thin TensorFlow layer, against a stand-in module ------------------------------------------


class _FakeConfig:
    """What `engine.hardware` uses of `tf.config`, with made-up GPUs."""

    def __init__(self, gpus: list[tuple[str, dict[str, Any]]], started: bool = False) -> None:
        self.gpus = [types.SimpleNamespace(name=name, device_type="GPU") for name, _ in gpus]
        self.details = {name: details for name, details in gpus}
        self.growth: dict[str, bool] = {}
        self.started = started
        self.experimental = types.SimpleNamespace(
            get_device_details=lambda gpu: self.details[gpu.name],
            get_memory_growth=lambda gpu: self.growth.get(gpu.name, False),
            set_memory_growth=self._set_memory_growth,
        )

    def list_physical_devices(self, kind: str) -> list[Any]:
        return list(self.gpus) if kind == "GPU" else []

    def _set_memory_growth(self, gpu: Any, enable: bool) -> None:
        if self.started:
            raise RuntimeError("Physical devices cannot be modified after being initialized")
        self.growth[gpu.name] = enable


@pytest.fixture
def forget_device(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts with no device remembered, and leaves none behind."""
    monkeypatch.setattr(hardware, "_device", None)
    yield


def _fake_tensorflow(monkeypatch: pytest.MonkeyPatch, config: _FakeConfig) -> None:
    monkeypatch.setitem(sys.modules, "tensorflow", types.SimpleNamespace(config=config))


def test_setup_turns_memory_growth_on_for_every_gpu_and_picks_the_first(
    monkeypatch: pytest.MonkeyPatch, forget_device: None
) -> None:
    l4 = {"device_name": "NVIDIA L4", "compute_capability": (8, 9)}
    t4 = {"device_name": "Tesla T4", "compute_capability": (7, 5)}
    config = _FakeConfig([("/physical_device:GPU:0", l4), ("/physical_device:GPU:1", t4)])
    _fake_tensorflow(monkeypatch, config)

    assert hardware.setup_device() == L4
    assert config.growth == {"/physical_device:GPU:0": True, "/physical_device:GPU:1": True}
    assert hardware.current_device() == L4
    assert StyleParams().use_mixed_precision is True
    assert StyleParams(mixed_precision=False).use_mixed_precision is False
    assert hardware.describe_device(True) == "GPU NVIDIA L4 (compute 8.9, bfloat16)"


def test_a_gpu_without_bf16_paints_in_float32(
    monkeypatch: pytest.MonkeyPatch, forget_device: None
) -> None:
    t4 = {"device_name": "Tesla T4", "compute_capability": (7, 5)}
    _fake_tensorflow(monkeypatch, _FakeConfig([("/physical_device:GPU:0", t4)]))
    monkeypatch.setattr(hardware, "cpu_flags", lambda: BF16_CPU)  # the CPU's bf16 does not count

    assert hardware.current_device() == T4  # TensorFlow loaded: it is asked, no setup needed
    assert StyleParams().use_mixed_precision is False
    assert hardware.describe_device(False) == "GPU Tesla T4 (compute 7.5, float32)"


def test_setup_too_late_keeps_going_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, forget_device: None, caplog: pytest.LogCaptureFixture
) -> None:
    a100 = {"device_name": "NVIDIA A100-SXM4-40GB", "compute_capability": (8, 0)}
    _fake_tensorflow(monkeypatch, _FakeConfig([("/physical_device:GPU:0", a100)], started=True))
    assert hardware.setup_device() == A100
    assert "memory growth of /physical_device:GPU:0 not set" in caplog.text


def test_no_gpu_is_the_cpu_with_todays_rule(
    monkeypatch: pytest.MonkeyPatch, forget_device: None
) -> None:
    config = _FakeConfig([])
    _fake_tensorflow(monkeypatch, config)
    assert hardware.setup_device() == CPU_DEVICE
    assert config.growth == {}
    assert StyleParams().use_mixed_precision == hardware.has_fast_bf16()


def test_without_tensorflow_loaded_the_cpu_decides_and_nothing_is_remembered(
    monkeypatch: pytest.MonkeyPatch, forget_device: None
) -> None:
    monkeypatch.delitem(sys.modules, "tensorflow", raising=False)
    assert hardware.current_device() == CPU_DEVICE
    assert StyleParams().use_mixed_precision == hardware.has_fast_bf16()
    assert hardware._device is None  # a worker that loads TensorFlow later still asks it


# -- processes ----------------------------------------------------------------------------------------


def _python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_the_cpu_path_never_imports_tensorflow() -> None:
    """The bot imports engine.params and asks for the precision: TensorFlow stays unloaded."""
    out = _python(
        "import sys\n"
        "from engine.params import StyleParams\n"
        "from engine import hardware\n"
        "p = StyleParams()\n"
        "chosen = p.use_mixed_precision\n"
        "text = hardware.describe_device(chosen)\n"
        "assert chosen == hardware.has_fast_bf16(), chosen\n"
        "assert text.startswith('CPU ('), text\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras'))\n"
        "print(loaded)\n"
    )
    assert out.strip() == "[]"


@pytest.mark.slow
def test_a_worker_on_this_machine_sees_what_tensorflow_sees() -> None:
    """After setup (TensorFlow loaded), the device is TensorFlow's first GPU, else the CPU with
    today's precision rule: the CPU path is unchanged."""
    out = _python(
        "import tensorflow as tf\n"
        "from engine import hardware\n"
        "from engine.params import StyleParams\n"
        "device = hardware.setup_device()\n"
        "gpus = tf.config.list_physical_devices('GPU')\n"
        "assert (device.kind == 'GPU') == bool(gpus), (device, gpus)\n"
        "if not gpus:\n"
        "    assert StyleParams().use_mixed_precision == hardware.has_fast_bf16()\n"
        "print(hardware.describe_device(StyleParams().use_mixed_precision))\n"
    )
    assert out.startswith(("CPU (", "GPU "))


# -- on a real GPU --------------------------------------------------------------------------------------


@pytest.fixture
def cuda_gpu() -> Any:
    """TensorFlow's first GPU (memory growth on), or a skip with the reason."""
    import tensorflow as tf

    if not tf.config.list_physical_devices("GPU"):
        pytest.skip("no CUDA GPU visible to TensorFlow")
    return hardware.setup_device()


def test_convolutions_run_on_the_gpu(cuda_gpu: DeviceInfo, test_weights: str) -> None:
    import tensorflow as tf

    from engine.objective import get_objective

    params = StyleParams()
    objective = get_objective(
        test_weights,
        params.style_layers,
        params.content_layers,
        mixed_precision=params.use_mixed_precision,
    )
    picture = np.random.default_rng(0).uniform(0, 255, (48, 64, 3)).astype(np.float32)
    targets = objective.targets(picture, [picture], (1.0,))
    # Eager tensors say where they were computed: the VGG features, the Gram matrices, the
    # gradient of the whole compiled objective.
    assert "GPU:0" in targets.content[0].device
    assert "GPU:0" in targets.grams[0].device
    parts, gradient = objective.evaluate(picture, targets, 1e3, 1e-2, 0.0)
    assert np.isfinite(parts.total) and gradient.shape == picture.shape
    assert tf.config.experimental.get_memory_info("GPU:0")["peak"] > 0


def test_a_tiny_painting_reports_the_gpu(cuda_gpu: DeviceInfo, test_weights: str) -> None:
    import io

    from PIL import Image

    from engine.api import stylize

    def jpeg(seed: int) -> bytes:
        pixels = np.random.default_rng(seed).integers(0, 255, (48, 64, 3), dtype=np.uint8)
        out = io.BytesIO()
        Image.fromarray(pixels).save(out, "JPEG")
        return out.getvalue()

    params = StyleParams(size=64, steps=(5,), preview=False)
    result = stylize(jpeg(1), [jpeg(2)], params, weights=test_weights)
    precision = "bfloat16" if gpu_has_bf16(cuda_gpu.compute_capability) else "float32"
    assert result.device.startswith(f"GPU {cuda_gpu.name} (")
    assert result.device.endswith(f"{precision})")
    assert (result.width, result.height) == (64, 48)
