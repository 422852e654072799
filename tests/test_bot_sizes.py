"""Painting sizes: STYLEBOT_DEFAULT_SIZE / STYLEBOT_MAX_SIDE, /size with each size's time on
this server's workers, "⬇ Full resolution" as a real repaint at the photo's size, and the
worker speeds those times come from (`bot.speed`)."""

from __future__ import annotations

import asyncio
import dataclasses
import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bot import speed, texts
from bot.executors.base import ProgressHandler
from bot.settings import Settings, SettingsError, load_settings
from bot.storage import WorkerSpeed
from engine.job import JobSpec, Result
from engine.params import StyleParams
from tests.bot_harness import bot_settings, fake_telegram_fixture, running_bot  # noqa: F401
from tests.fake_telegram import FakeTelegram, FakeUser, MessageVersion
from tests.test_bot_e2e import STYLE, QuickExecutor, _jpeg, is_result

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

TOKEN = "123456789:" + "A" * 35
BIG_PHOTO = _jpeg((200, 60, 40), (160, 120))
DEVICE = "CPU (test, float32)"


class MeasuredExecutor(QuickExecutor):
    """A QuickExecutor whose results carry a device and their work, as real workers' do."""

    async def run(self, spec: JobSpec, on_progress: ProgressHandler | None = None) -> Result:
        result = await super().run(spec, on_progress)
        work = spec.params.planned_megapixel_steps(warm_start=spec.init is not None)
        return dataclasses.replace(
            result,
            device=DEVICE,
            megapixel_steps=work,
            timings={"total": 3.0 + 2.0 * work, "optimize": 2.0 * work},
        )


def _measured(rate: float) -> Result:
    """A result that took `rate` seconds per megapixel-step, plus 5 s of decoding etc."""
    return Result(
        b"img", 4, 3, timings={"total": 105.0, "optimize": 100.0}, device=DEVICE,
        megapixel_steps=100.0 / rate,
    )  # fmt: skip


# -- settings --------------------------------------------------------------------------------
def test_default_size_and_max_side() -> None:
    defaults = load_settings({"TELEGRAM_BOT_TOKEN": TOKEN})
    assert (defaults.default_size, defaults.max_side) == (512, 1024)
    assert defaults.sizes == (256, 384, 512, 768, 1024)

    big = load_settings({"TELEGRAM_BOT_TOKEN": TOKEN, "STYLEBOT_MAX_SIDE": "2048"})
    assert big.sizes == (256, 384, 512, 768, 1024, 1536, 2048) and big.default_size == 512

    odd = load_settings(
        {"TELEGRAM_BOT_TOKEN": TOKEN, "STYLEBOT_MAX_SIDE": "900", "STYLEBOT_DEFAULT_SIZE": "600"}
    )
    assert odd.sizes == (256, 384, 512, 600, 768, 900) and odd.default_size == 600

    # only the maximum lowered: the default follows it
    small = load_settings({"TELEGRAM_BOT_TOKEN": TOKEN, "STYLEBOT_MAX_SIDE": "384"})
    assert (small.default_size, small.sizes) == (384, (256, 384))

    with pytest.raises(SettingsError, match=r"STYLEBOT_DEFAULT_SIZE .* must not be larger"):
        load_settings(
            {
                "TELEGRAM_BOT_TOKEN": TOKEN,
                "STYLEBOT_MAX_SIDE": "512",
                "STYLEBOT_DEFAULT_SIZE": "1024",
            }
        )
    with pytest.raises(SettingsError, match="STYLEBOT_MAX_SIDE must be between 64 and 2048"):
        load_settings({"TELEGRAM_BOT_TOKEN": TOKEN, "STYLEBOT_MAX_SIDE": "4096"})


# -- speeds and estimates ------------------------------------------------------------------------
def test_speed_is_a_moving_average_per_device() -> None:
    first = speed.updated_speed(None, _measured(2.0))
    assert first is not None
    assert (first.device, first.seconds_per_megapixel_step, first.overhead_s, first.jobs) == (
        DEVICE, 2.0, 5.0, 1,
    )  # fmt: skip
    second = speed.updated_speed(first, _measured(4.0))
    assert second is not None and second.jobs == 2
    assert second.seconds_per_megapixel_step == pytest.approx(2.0 + speed.SMOOTHING * 2.0)
    # a result without a measurement (an older worker, a fake) changes nothing
    assert speed.updated_speed(first, Result(b"img", 4, 3, timings={"total": 1.0})) is None


def test_estimates_follow_the_planned_work() -> None:
    worker = WorkerSpeed(DEVICE, seconds_per_megapixel_step=2.0, overhead_s=4.0)
    small, large = StyleParams(size=512), StyleParams(size=2048)

    def estimate(params: StyleParams, warm_start: bool = False) -> float:
        return speed.estimate_seconds(worker, params, warm_start=warm_start)

    assert estimate(small) == pytest.approx(4.0 + 2.0 * small.planned_megapixel_steps())
    assert estimate(large) > 5 * estimate(small)
    assert estimate(large, warm_start=True) < estimate(large)
    # the stand-in before any measurement: the speed measured on a 2-core server
    fallback = speed.estimate_seconds(speed.FALLBACK, small)
    assert fallback == pytest.approx(2.0 + 4.14 * small.planned_megapixel_steps())


# -- the bot -----------------------------------------------------------------------------------
SizedSettings = Callable[..., Settings]


@pytest.fixture
def sized(tmp_path: Path, fake_telegram: FakeTelegram, test_weights: str) -> SizedSettings:
    """Settings offering up to 128 px, painting `default_size` px first (BIG_PHOTO is 160 px)."""

    def make(default_size: int = 64, **env: str) -> Settings:
        return bot_settings(
            tmp_path, fake_telegram, weights=test_weights, STYLEBOT_MAX_SIDE="128",
            STYLEBOT_DEFAULT_SIZE=str(default_size), **env,
        )  # fmt: skip

    return make


async def _paint(user: FakeUser, photo: bytes) -> MessageVersion:
    await user.send_photo(photo)
    await user.wait_for_message(lambda v: "style" in v.content)
    await user.send_photo(STYLE)
    return await user.wait_for_message(is_result)


def _labels(message: MessageVersion) -> list[str]:
    return [b["text"] for b in message.buttons]


async def test_size_shows_each_sizes_time_measured_on_the_workers(
    fake_telegram: FakeTelegram, sized: SizedSettings
) -> None:
    settings = sized(64, STYLEBOT_ADMINS="1001")
    async with running_bot(settings, executor=MeasuredExecutor()) as app:
        user = fake_telegram.user(1001)
        await user.send_text("/size")
        menu = await user.wait_for_message(lambda v: bool(v.buttons))
        assert menu.text == texts.size_prompt(measured=False)
        assert all(" · ~" in label for label in _labels(menu)), _labels(menu)
        await user.send_text("/stats")
        await user.wait_for_message(lambda v: "not measured yet" in (v.text or ""))

        await _paint(user, BIG_PHOTO)
        storage = app.bot_data["stylebot.services"].storage
        for _ in range(100):  # recorded right after the result is stored
            if await storage.worker_speeds():
                break
            await asyncio.sleep(0.05)
        measured = await speed.current(storage)
        assert (measured.device, measured.seconds_per_megapixel_step) == (DEVICE, 2.0)

        await user.send_text("/size")
        menu = await user.wait_for_message(lambda v: v.text == texts.size_prompt(measured=True))
        for size in (64, 128):
            seconds = speed.estimate_seconds(measured, StyleParams(size=size))
            assert texts.btn_size(size, size == 64, seconds) in _labels(menu)
        await user.press(menu, menu.button("128 px")["callback_data"])
        ticked = await user.wait_for_message(
            lambda v: v.message_id == menu.message_id and "✓ 128 px" in " ".join(_labels(v))
        )
        assert any(label.startswith("✓ 128 px · ~") for label in _labels(ticked))

        await user.send_text("/stats")
        stats = await user.wait_for_message(lambda v: DEVICE in (v.text or ""))
        assert "64 px" in (stats.text or "")  # the default size's time on that device


async def test_full_resolution_repaints_at_the_photos_size_and_sends_a_file(
    fake_telegram: FakeTelegram, sized: SizedSettings
) -> None:
    settings = sized(64)
    executor = QuickExecutor(steps=4, delay=0.02)
    async with running_bot(settings, executor=executor):
        user = fake_telegram.user(1001)
        first = await _paint(user, BIG_PHOTO)  # 160x120: painted at the default 64 px
        assert executor.specs[-1].params.size == 64
        query = await user.press(first, first.button(texts.BTN_FULL_RES)["callback_data"])
        answer = await fake_telegram.wait_for_callback_answer(query)
        assert answer.get("text", "").startswith("Painting it again at 128 px (~")

        document = await user.wait_for_message(lambda v: v.kind == "document")
        spec = executor.specs[-1]
        assert spec.params.size == 128  # the photo's long side, capped at STYLEBOT_MAX_SIDE
        assert spec.init is not None  # warm-started from the painting: the same picture
        assert (document.caption or "").startswith("Full resolution · ")
        assert document.document and document.document[:2] == b"\xff\xd8"
        # it was a job like any other: a status message that ended "done"
        done = [v for v in user.messages() if (v.text or "").startswith("✅")]
        assert len(done) == 2
        # the user already has the picture: no preview photo for the repaint
        previews = [v for v in user.messages() if v.caption == texts.PREVIEW_CAPTION]
        assert len(previews) == 1


async def test_full_resolution_of_a_small_photo_sends_the_painting_itself(
    fake_telegram: FakeTelegram, sized: SizedSettings
) -> None:
    settings = sized(128)
    executor = QuickExecutor()
    async with running_bot(settings, executor=executor):
        user = fake_telegram.user(1001)
        first = await _paint(user, BIG_PHOTO)
        jobs = len(executor.specs)
        await user.press(first, first.button(texts.BTN_FULL_RES)["callback_data"])
        document = await user.wait_for_message(lambda v: v.kind == "document")
        assert document.caption == texts.FULL_RES_CAPTION
        assert len(executor.specs) == jobs  # nothing to repaint: already at the largest size


async def test_full_resolution_is_cancellable(
    fake_telegram: FakeTelegram, sized: SizedSettings
) -> None:
    settings = sized(64)
    executor = QuickExecutor(steps=3, delay=0.02)
    async with running_bot(settings, executor=executor):
        user = fake_telegram.user(1001)
        first = await _paint(user, BIG_PHOTO)
        executor.steps, executor.delay = 400, 0.05  # the repaint takes a while
        await user.press(first, first.button(texts.BTN_FULL_RES)["callback_data"])
        status = await user.wait_for_message(
            lambda v: texts.BTN_CANCEL in _labels(v) and v.message_id != first.message_id
        )
        await user.press(status, status.button(texts.BTN_CANCEL)["callback_data"])
        await user.wait_for_message(
            lambda v: v.message_id == status.message_id and v.text == texts.CANCELLED
        )
        assert not [v for v in user.messages() if v.kind == "document"]


async def test_real_engine_paints_full_resolution_from_its_result(
    fake_telegram: FakeTelegram, sized: SizedSettings
) -> None:
    """The real LocalExecutor and engine: the repaint warm-starts from a 64 px painting and
    comes back as a file at the photo's size (128 px: STYLEBOT_MAX_SIDE)."""
    rng = np.random.default_rng(0)
    photo = _png(np.linspace(0, 255, 160 * 120 * 3).reshape(120, 160, 3))
    style = _png(rng.uniform(0, 255, (96, 96, 3)))
    async with running_bot(sized(64), job_params_override={"steps": [3]}):
        user = fake_telegram.user(1001)
        await user.send_photo(photo)
        await user.wait_for_message(lambda v: "style" in v.content)
        await user.send_photo(style)
        first = await user.wait_for_message(is_result, timeout=240)
        await user.press(first, first.button(texts.BTN_FULL_RES)["callback_data"])
        document = await user.wait_for_message(lambda v: v.kind == "document", timeout=240)
        assert document.document is not None
        with Image.open(io.BytesIO(document.document)) as im:
            assert im.size == (128, 96)


def _png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(out, "PNG")
    return out.getvalue()
