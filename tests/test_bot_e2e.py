"""End to end: the real bot (bot.app.build_application) against the fake Telegram server.

Most tests run with `QuickExecutor`, an in-process executor that "paints" instantly (returns
the content picture) and reports progress with a preview, so they exercise every bot path in
a fraction of a second. `test_real_engine_paints_two_photos` runs the real LocalExecutor with
the random test weights at 64 px.
"""

from __future__ import annotations

import asyncio
import io
import itertools
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from bot import keyboards as kb
from bot import texts
from bot.executors.base import Executor, JobCancelled, ProgressHandler
from bot.storage import Storage
from engine.job import JobSpec, Progress, Result
from tests.bot_harness import bot_settings, fake_telegram_fixture, running_bot  # noqa: F401
from tests.conftest import BAD_DIR, CONTENT_DIR, STYLES_DIR
from tests.fake_telegram import FakeTelegram, FakeUser, MessageVersion

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


def _jpeg(color: tuple[int, int, int], size: tuple[int, int] = (96, 72)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "JPEG", quality=90)
    return out.getvalue()


PHOTO = _jpeg((200, 60, 40))
STYLE = _jpeg((20, 60, 220))


class QuickExecutor(Executor):
    """Paints by returning the content picture; `delay` seconds per progress step."""

    name = "quick"

    def __init__(self, *, steps: int = 3, delay: float = 0.0, capacity: int = 1) -> None:
        self.steps = steps
        self.delay = delay
        self._capacity = capacity
        self.specs: list[JobSpec] = []
        self.cancelled: set[str] = set()
        self.started = self.closed = False

    @property
    def capacity(self) -> int:
        return self._capacity

    async def start(self) -> None:
        self.started = True

    async def close(self) -> None:
        self.closed = True

    async def run(self, spec: JobSpec, on_progress: ProgressHandler | None = None) -> Result:
        self.specs.append(spec)
        for step in range(1, self.steps + 1):
            await asyncio.sleep(self.delay)
            if spec.job_id in self.cancelled:
                raise JobCancelled()
            if on_progress is not None:
                on_progress(
                    Progress(
                        scale=0,
                        scales=1,
                        step=step,
                        total_steps=self.steps,
                        loss=1.0,
                        style_loss=1.0,
                        content_loss=1.0,
                        tv_loss=0.0,
                        elapsed=step * self.delay,
                        eta=(self.steps - step) * self.delay,
                        preview=spec.content if step == 1 else None,
                    )
                )
        with Image.open(io.BytesIO(spec.content)) as im:
            width, height = im.size
        return Result(image=spec.content, width=width, height=height, timings={"total": 1.5})

    async def cancel(self, job_id: str) -> None:
        self.cancelled.add(job_id)


async def seed_presets(
    settings: Any, names: tuple[str, ...] = ("starry_night", "great_wave")
) -> None:
    from bot.presets import import_image

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    async with Storage(settings.database_path) as storage:
        for name in names:
            path = STYLES_DIR / f"{name}.jpg"
            data = path.read_bytes() if path.exists() else _jpeg((10 * len(name), 90, 90))
            await import_image(storage, name, data)


def is_result(v: MessageVersion) -> bool:
    return v.kind == "photo" and v.caption is not None and v.caption.startswith("🎨")


def is_status_final(v: MessageVersion) -> bool:
    return v.text is not None and v.text.startswith(("✅", "❌", "✖"))


async def two_photos(user: FakeUser) -> MessageVersion:
    await user.send_photo(PHOTO)
    offer = await user.wait_for_message(lambda v: "style" in v.content)
    assert offer.content in (texts.content_received(True), texts.content_received(False))
    await user.send_photo(STYLE)
    return await user.wait_for_message(is_result)


@pytest.fixture
def settings(tmp_path: Path, fake_telegram: FakeTelegram, test_weights: str) -> Any:
    return bot_settings(tmp_path, fake_telegram, weights=test_weights, STYLEBOT_ADMINS="42")


# -- conversation ------------------------------------------------------------------------------
async def test_start_help_and_command_menu(settings: Any, fake_telegram: FakeTelegram) -> None:
    await seed_presets(settings)
    async with running_bot(settings, executor=QuickExecutor()):
        user = fake_telegram.user(1001)
        await user.send_text("/start")
        start = await user.wait_for_message()
        assert start.text == texts.START
        assert "starry_night" in [b["text"] for b in start.buttons]
        assert all(kb.parse(d) is not None for d in start.callback_data)
        await user.send_text("/help")
        help_msg = await user.wait_for_message()
        assert help_msg.text is not None
        assert "/strength" in help_msg.text and "/starry_night" in help_msg.text
        menu = [c["command"] for c in fake_telegram.my_commands()]
        assert "style" in menu and "starry_night" in menu
        assert "stats" not in menu and "addpreset" not in menu


async def test_two_photos_make_a_painting(settings: Any, fake_telegram: FakeTelegram) -> None:
    executor = QuickExecutor(steps=4, delay=0.05)
    async with running_bot(settings, executor=executor):
        user = fake_telegram.user(1001)
        result = await two_photos(user)
        assert result.caption is not None and "strength 3/5" in result.caption
        ops = {kb.parse(d).op for d in result.callback_data}  # type: ignore[union-attr]
        assert ops == set(kb.RESULT_OPS)
        # one status message, ending "done", with a preview sent once
        statuses = [
            m for m in user.messages() if m.versions[0].text and "queue" in m.versions[0].text
        ]
        assert len(statuses) == 1
        assert statuses[0].text is not None and statuses[0].text.startswith("✅")
        previews = [m for m in user.messages() if m.caption == texts.PREVIEW_CAPTION]
        assert len(previews) == 1
        assert len(executor.specs) == 1 and executor.specs[0].params.size == 64
        # the waiting photo was used: a third photo starts over as a new photo
        await user.send_photo(PHOTO)
        offer = await user.wait_for_message(lambda v: "style" in v.content)
        assert offer.content == texts.content_received(False)


async def test_status_edits_are_throttled(settings: Any, fake_telegram: FakeTelegram) -> None:
    executor = QuickExecutor(steps=30, delay=0.2)
    async with running_bot(settings, executor=executor):
        user = fake_telegram.user(1001)
        await user.send_photo(PHOTO)
        await user.send_photo(STYLE)
        await user.wait_for_message(is_result)
        status = next(
            m for m in user.messages() if m.versions[0].text and "queue" in m.versions[0].text
        )
        edits = [
            c.time
            for c in fake_telegram.calls("editMessageText")
            if c.params.get("message_id") == status.message_id and c.ok
        ]
        assert status.text is not None and status.text.startswith("✅")
        assert any("▰" in (v.text or "") for v in status.versions)
        # throttled: at most one progress edit per 3 s (the interval); only the final state may
        # come sooner (1.5 s: half the interval, for requests delayed in transit under load).
        gaps = [later - earlier for earlier, later in itertools.pairwise(edits[:-1])]
        assert edits and all(gap >= 1.5 for gap in gaps), gaps


async def test_album_is_photo_then_style(settings: Any, fake_telegram: FakeTelegram) -> None:
    executor = QuickExecutor()
    async with running_bot(settings, executor=executor):
        user = fake_telegram.user(1001)
        await user.send_album([PHOTO, STYLE])
        await user.wait_for_message(is_result)
        spec = executor.specs[0]
        with Image.open(io.BytesIO(spec.content)) as c, Image.open(io.BytesIO(spec.styles[0])) as s:
            assert c.getpixel((5, 5))[0] > 150 and s.getpixel((5, 5))[2] > 150  # type: ignore[index]


async def test_presets_by_button_command_and_caption(
    settings: Any, fake_telegram: FakeTelegram
) -> None:
    await seed_presets(settings)
    executor = QuickExecutor()
    async with running_bot(settings, executor=executor):
        user = fake_telegram.user(1001)
        await user.send_photo(PHOTO)
        offer = await user.wait_for_message(lambda v: bool(v.buttons))
        await user.press(offer, offer.button("starry_night")["callback_data"])
        result = await user.wait_for_message(is_result)
        assert "starry_night" in (result.caption or "")
        # the buttons of the photo keep working for another style
        await user.press(offer, offer.button("great_wave")["callback_data"])
        result = await user.wait_for_message(is_result)
        assert "great_wave" in (result.caption or "")
        # caption /style NAME
        await user.send_photo(PHOTO, caption="/style great_wave")
        result = await user.wait_for_message(is_result)
        assert "great_wave" in (result.caption or "")
        # the preset's own command makes it the active style; photos are painted at once
        await user.send_text("/starry_night")
        await user.wait_for_message(
            lambda v: v.text == texts.style_activated("starry_night", False)
        )
        await user.send_photo(PHOTO)
        result = await user.wait_for_message(is_result)
        assert "starry_night" in (result.caption or "")
        await user.send_text("/style off")
        await user.wait_for_message(lambda v: v.text == texts.STYLE_OFF)
        await user.send_text("/style nope")
        await user.wait_for_message(lambda v: v.text == texts.preset_not_found("nope"))


async def test_result_buttons_rerun_warm_started(
    settings: Any, fake_telegram: FakeTelegram
) -> None:
    executor = QuickExecutor()
    async with running_bot(settings, executor=executor):
        user = fake_telegram.user(1001)
        first = await two_photos(user)
        await user.press(first, first.button(texts.BTN_STRONGER)["callback_data"])
        stronger = await user.wait_for_message(is_result)
        assert "strength 4/5" in (stronger.caption or "")
        assert executor.specs[-1].init is not None  # warm start from the previous result
        assert executor.specs[-1].params.strength == 4.0
        await user.press(first, first.button(texts.BTN_WEAKER)["callback_data"])
        weaker = await user.wait_for_message(is_result)
        assert "strength 2/5" in (weaker.caption or "")
        await user.press(weaker, weaker.button("Keep colours: off")["callback_data"])
        colours = await user.wait_for_message(is_result)
        assert "colours kept" in (colours.caption or "")
        assert executor.specs[-1].params.preserve_colors is True
        assert texts.btn_colors(True) in [b["text"] for b in colours.buttons]
        # down to 1: Weaker disappears
        await user.press(weaker, weaker.button(texts.BTN_WEAKER)["callback_data"])
        weakest = await user.wait_for_message(is_result)
        assert texts.BTN_WEAKER not in [b["text"] for b in weakest.buttons]
        # full resolution as a document
        await user.press(first, first.button(texts.BTN_FULL_RES)["callback_data"])
        doc = await user.wait_for_message(lambda v: v.kind == "document")
        assert doc.document and doc.document[:2] == b"\xff\xd8"
        # save the style picture as a preset
        query = await user.press(first, first.button(texts.BTN_SAVE_STYLE)["callback_data"])
        answer = await fake_telegram.wait_for_callback_answer(query)
        assert "style 1" in answer.get("text", "")
        # new style for the same photo
        await user.press(first, first.button(texts.BTN_NEW_STYLE)["callback_data"])
        await user.wait_for_message(lambda v: v.content == texts.NEW_STYLE_PROMPT)
        await user.send_photo(STYLE)
        await user.wait_for_message(is_result)


async def test_save_list_apply_delete_presets(settings: Any, fake_telegram: FakeTelegram) -> None:
    await seed_presets(settings, ("starry_night",))
    async with running_bot(settings, executor=QuickExecutor()):
        user = fake_telegram.user(1001)
        await user.send_text("/save sunset")
        await user.wait_for_message(lambda v: v.text == texts.SAVE_NOTHING)
        await two_photos(user)
        await user.send_text("/save my sunset")
        await user.wait_for_message(lambda v: v.text == texts.preset_saved("my sunset"))
        await user.send_text("/save My Sunset")
        await user.wait_for_message(lambda v: v.text == texts.duplicate_preset("My Sunset"))
        await user.send_text("/save bad/name!")
        await user.wait_for_message(lambda v: (v.text or "").startswith("That name won't work"))
        await user.send_text("/save " + "x" * 40)
        await user.wait_for_message(lambda v: (v.text or "").startswith("That name won't work"))
        await user.send_text("/presets")
        listing = await user.wait_for_message(lambda v: bool(v.buttons))
        labels = [b["text"] for b in listing.buttons]
        assert labels[0] == "1. Apply: ★ my sunset" and labels[1] == texts.BTN_DELETE
        assert "2. Apply: starry_night" in labels
        await user.press(listing, listing.button("my sunset")["callback_data"])
        await user.wait_for_message(lambda v: v.text == texts.style_activated("my sunset", False))
        await user.send_text("/status")
        status = await user.wait_for_message()
        assert "Active style: my sunset" in (status.text or "")
        await user.send_text("/delete starry_night")
        await user.wait_for_message(lambda v: v.text == texts.preset_not_yours("starry_night"))
        await user.press(listing, listing.button(texts.BTN_DELETE)["callback_data"])
        await user.wait_for_message(lambda v: v.text == texts.preset_deleted("my sunset"))
        await user.send_text("/delete my sunset")
        await user.wait_for_message(lambda v: v.text == texts.preset_not_found("my sunset"))


async def test_preset_limit(tmp_path: Path, fake_telegram: FakeTelegram) -> None:
    settings = bot_settings(tmp_path, fake_telegram, STYLEBOT_MAX_PRESETS_PER_USER=2)
    async with running_bot(settings, executor=QuickExecutor()):
        user = fake_telegram.user(1001)
        await two_photos(user)
        for name in ("a", "b"):
            await user.send_text(f"/save {name}")
            await user.wait_for_message(lambda v, n=name: v.text == texts.preset_saved(n))
        await user.send_text("/save c")
        await user.wait_for_message(lambda v: v.text == texts.too_many_presets(2))


async def test_settings_commands(settings: Any, fake_telegram: FakeTelegram) -> None:
    executor = QuickExecutor()
    async with running_bot(settings, executor=executor):
        user = fake_telegram.user(1001)
        await user.send_text("/strength 5")
        await user.wait_for_message(lambda v: v.text == texts.strength_set(5))
        await user.send_text("/strength 9")
        await user.wait_for_message(lambda v: (v.text or "").startswith(texts.STRENGTH_USAGE))
        await user.send_text("/colors on")
        await user.wait_for_message(lambda v: v.text == texts.colors_set(True))
        await user.send_text("/size")
        sizes = await user.wait_for_message(lambda v: bool(v.buttons))
        query = await user.press(sizes, sizes.callback_data[0])
        assert "64 px" in (await fake_telegram.wait_for_callback_answer(query)).get("text", "")
        result = await two_photos(user)
        assert "strength 5/5" in (result.caption or "") and "colours kept" in (result.caption or "")
        assert texts.BTN_STRONGER not in [b["text"] for b in result.buttons]


async def test_cancel_mid_job(settings: Any, fake_telegram: FakeTelegram) -> None:
    executor = QuickExecutor(steps=200, delay=0.05)
    async with running_bot(settings, executor=executor):
        user = fake_telegram.user(1001)
        await user.send_photo(PHOTO)
        await user.send_photo(STYLE)
        status = await user.wait_for_message(
            lambda v: bool(v.buttons) and "✖" in v.buttons[0]["text"]
        )
        query = await user.press(status, status.callback_data[0])
        assert (await fake_telegram.wait_for_callback_answer(query)).get(
            "text"
        ) == texts.CANCEL_REQUESTED
        await user.wait_for_message(lambda v: v.text == texts.CANCELLED)
        # /cancel also forgets the waiting photo
        await user.send_photo(PHOTO)
        await user.wait_for_message(lambda v: bool(v.buttons) or "style" in (v.text or ""))
        await user.send_text("/cancel")
        await user.wait_for_message(lambda v: v.text == texts.NOTHING_TO_CANCEL)
        await user.send_text("/status")
        status_text = await user.wait_for_message()
        assert "waiting for a style" not in (status_text.text or "")
        # /cancel stops a running job
        await user.send_photo(PHOTO)
        await user.send_photo(STYLE)
        await user.wait_for_message(lambda v: "▰" in (v.text or "") or "Starting" in (v.text or ""))
        await user.send_text("/cancel")
        await user.wait_for_message(lambda v: v.text == texts.CANCELLED_ALL)
        await user.wait_for_message(lambda v: v.text == texts.CANCELLED)


async def test_two_users_at_once_and_foreign_buttons(
    settings: Any, fake_telegram: FakeTelegram
) -> None:
    executor = QuickExecutor(steps=3, delay=0.05, capacity=2)
    async with running_bot(settings, executor=executor):
        ada, bob = fake_telegram.user(1001, "Ada"), fake_telegram.user(1002, "Bob")
        results = await asyncio.gather(two_photos(ada), two_photos(bob))
        assert all(is_result(r) for r in results)
        # Bob presses Ada's button (e.g. a forwarded message in a group)
        data = results[0].button(texts.BTN_STRONGER)["callback_data"]
        query = fake_telegram._press(bob, results[0], data, check=False)
        answer = await fake_telegram.wait_for_callback_answer(query)
        assert answer.get("text") == texts.NOT_YOUR_BUTTON


async def test_bad_buttons_are_answered(settings: Any, fake_telegram: FakeTelegram) -> None:
    async with running_bot(settings, executor=QuickExecutor()):
        user = fake_telegram.user(1001)
        result = await two_photos(user)
        for data, expected in [
            ("garbage", texts.BAD_BUTTON),
            ("9r:abc:w", texts.BAD_BUTTON),
            (kb.result_data("deadbeef", kb.WEAKER), texts.RESULT_EXPIRED),
            (kb.style_data("0123456789ab", 1), texts.RESULT_EXPIRED),
        ]:
            query = await user.press(result, data, check=False)
            assert (await fake_telegram.wait_for_callback_answer(query)).get("text") == expected


async def test_queue_limits(tmp_path: Path, fake_telegram: FakeTelegram) -> None:
    settings = bot_settings(
        tmp_path, fake_telegram, STYLEBOT_MAX_JOBS_PER_USER=1, STYLEBOT_MAX_QUEUE=2
    )
    executor = QuickExecutor(steps=400, delay=0.05)
    async with running_bot(settings, executor=executor):
        ada = fake_telegram.user(1001)
        await ada.send_photo(PHOTO)
        await ada.send_photo(STYLE)
        await ada.wait_for_message(lambda v: bool(v.buttons) and "✖" in v.buttons[0]["text"])
        await ada.send_photo(PHOTO)
        await ada.send_photo(STYLE)
        await ada.wait_for_message(lambda v: v.text == texts.user_queue_full(1))
        for uid in (1002, 1003, 1004):
            other = fake_telegram.user(uid)
            await other.send_photo(PHOTO)
            await other.send_photo(STYLE)
            await other.wait_for_message(
                lambda v: "queue" in (v.text or "") or "busy" in (v.text or "")
            )
        busy = [
            m
            for uid in (1002, 1003, 1004)
            for m in fake_telegram.messages(uid)
            if "busy" in (m.text or "")
        ]
        assert busy, "the full global queue must refuse with 'busy, try again'"
        await ada.send_text("/cancel")
        await ada.wait_for_message(lambda v: v.text == texts.CANCELLED_ALL)


# -- bad input -------------------------------------------------------------------------------
REFUSED = {
    "not_an_image.jpg",
    "truncated.jpg",
    "zero_bytes.jpg",
    "bomb.png",
    "tiny.png",
    "extreme_aspect.jpg",
    "svg.svg",
}


@pytest.mark.skipif(not BAD_DIR.exists(), reason="needs ../shared/images/bad")
async def test_every_bad_file_gets_a_friendly_answer(
    settings: Any, fake_telegram: FakeTelegram
) -> None:
    async with running_bot(settings, executor=QuickExecutor()):
        user = fake_telegram.user(1001)
        await user.send_photo(PHOTO)  # a waiting photo that bad files must not disturb
        await user.wait_for_message(lambda v: "style" in v.content)
        for path in sorted(BAD_DIR.iterdir()):
            if path.name not in REFUSED:
                continue
            await user.send_document(path.read_bytes(), path.name, "image/jpeg")
            reply = await user.wait_for_message(timeout=60)
            assert reply.text and "Traceback" not in reply.text, path.name
            assert reply.text != texts.internal_error("")[:10], path.name
        await user.send_text("/status")
        status = await user.wait_for_message()
        assert "waiting for a style" in (status.text or "")
        # pictures that need care (CMYK, alpha, greyscale, EXIF, WebP, GIF, huge) are accepted
        for name in (
            "cmyk.jpg",
            "rgba.png",
            "grayscale.jpg",
            "exif_rotated.jpg",
            "webp.webp",
            "huge_dims.jpg",
        ):
            await user.send_document((BAD_DIR / name).read_bytes(), name, "image/jpeg")
            await user.wait_for_message(
                lambda v: v.kind == "photo" and (v.caption or "").startswith("🎨"), timeout=60
            )
            await user.send_photo(PHOTO)
            await user.wait_for_message(lambda v: "style" in v.content)


async def test_other_messages_get_hints(settings: Any, fake_telegram: FakeTelegram) -> None:
    async with running_bot(settings, executor=QuickExecutor()):
        user = fake_telegram.user(1001)
        await user.send_voice()
        await user.wait_for_message(lambda v: v.text == texts.MEDIA_HINT)
        await user.send_video()
        await user.wait_for_message(lambda v: v.text == texts.MEDIA_HINT)
        await user.send_text("hello")
        await user.wait_for_message(lambda v: v.text == texts.TEXT_HINT)
        await user.send_text("/frobnicate")
        await user.wait_for_message(lambda v: v.text == texts.UNKNOWN_COMMAND)
        await user.send_text("/stats")  # not an admin: exactly like an unknown command
        await user.wait_for_message(lambda v: v.text == texts.UNKNOWN_COMMAND)
        await user.send_document(b"%PDF-1.4 not a picture", "doc.pdf", "application/pdf")
        reply = await user.wait_for_message()
        assert reply.text and "image" in reply.text.lower()
        big = b"\xff\xd8" + bytes(21 * 1024 * 1024)
        await user.send_document(big, "huge.jpg", "image/jpeg")
        await user.wait_for_message(lambda v: v.text == texts.file_too_big(20))
        # a static sticker is a picture like any other
        await user.send_sticker()
        await user.wait_for_message(lambda v: "style" in v.content)
        admin = fake_telegram.user(42)
        await admin.send_text("/stats")
        stats = await admin.wait_for_message()
        assert (stats.text or "").startswith("Stats")
        await admin.send_photo(STYLE, caption="/addpreset blue")
        await admin.wait_for_message(lambda v: v.text == texts.builtin_added("blue"))
        await user.send_text("/blue")
        await user.wait_for_message(lambda v: v.text == texts.style_activated("blue", True))


async def test_rate_limit_tells_once(tmp_path: Path, fake_telegram: FakeTelegram) -> None:
    settings = bot_settings(tmp_path, fake_telegram, STYLEBOT_RATE_LIMIT=3)
    async with running_bot(settings, executor=QuickExecutor()):
        user = fake_telegram.user(1001)
        for _ in range(8):
            await user.send_text("hi")
        await fake_telegram.wait_until_confirmed()
        await asyncio.sleep(0.5)
        texts_seen = [m.text or "" for m in user.messages()]
        assert texts_seen.count(texts.TEXT_HINT) == 3
        assert sum("faster than I can take" in t for t in texts_seen) == 1


async def test_flood_control_on_send_photo_still_delivers(
    settings: Any, fake_telegram: FakeTelegram
) -> None:
    async with running_bot(settings, executor=QuickExecutor()):
        user = fake_telegram.user(1001)
        fake_telegram.fail("sendPhoto", 429, retry_after=1, times=2)
        result = await two_photos(user)
        assert is_result(result)
        assert any(c.status == 429 for c in fake_telegram.calls("sendPhoto"))


async def test_restart_keeps_presets_settings_and_waiting_photo(
    settings: Any, fake_telegram: FakeTelegram
) -> None:
    async with running_bot(settings, executor=QuickExecutor()):
        user = fake_telegram.user(1001)
        first = await two_photos(user)
        await user.send_text("/save keeper")
        await user.wait_for_message(lambda v: v.text == texts.preset_saved("keeper"))
        await user.send_text("/strength 4")
        await user.wait_for_message(lambda v: v.text == texts.strength_set(4))
        await user.send_photo(PHOTO)
        await user.wait_for_message(lambda v: "style" in v.content)
    executor = QuickExecutor()
    async with running_bot(settings, executor=executor):
        await user.send_text("/status")
        status = await user.wait_for_message(lambda v: "Strength" in (v.text or ""))
        assert "Strength: 4 of 5" in (status.text or "")
        assert "waiting for a style" in (status.text or "")
        await user.send_text("/presets")
        listing = await user.wait_for_message(lambda v: bool(v.buttons))
        assert "1. Apply: ★ keeper" in [b["text"] for b in listing.buttons]
        # the old result's buttons still work after the restart
        await user.press(first, first.button(texts.BTN_STRONGER)["callback_data"])
        again = await user.wait_for_message(is_result)
        assert "strength 4/5" in (again.caption or "")
        # and the waiting photo is still waiting: a picture now is its style
        await user.send_photo(STYLE)
        await user.wait_for_message(is_result)


# -- the real engine ---------------------------------------------------------------------------
@pytest.mark.slow
async def test_real_engine_paints_two_photos(settings: Any, fake_telegram: FakeTelegram) -> None:
    content = CONTENT_DIR / "tubingen.jpg"
    style = STYLES_DIR / "sunday_on_la_grande_jatte.jpg"
    if not content.exists() or not style.exists():
        pytest.skip("needs ../shared/images")
    async with running_bot(settings, job_params_override={"steps": [3]}):
        user = fake_telegram.user(1001)
        await user.send_photo(content.read_bytes())
        await user.wait_for_message(lambda v: "style" in v.content)
        await user.send_photo(style.read_bytes())
        result = await user.wait_for_message(is_result, timeout=240)
        assert result.photo is not None
        with Image.open(io.BytesIO(result.photo)) as im:
            assert max(im.size) == 64


async def test_a_crash_is_logged_and_the_user_gets_a_reference(
    settings: Any, fake_telegram: FakeTelegram, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    def broken(_: Any) -> str:
        raise RuntimeError(f"boom with {settings.token}")

    monkeypatch.setattr(texts, "help_text", broken)
    async with running_bot(settings, executor=QuickExecutor()):
        user = fake_telegram.user(1001)
        await user.send_text("/help")
        reply = await user.wait_for_message()
        assert (reply.text or "").startswith("Sorry, something failed on my side (reference ")
        ref = (reply.text or "").split("reference ")[1].split(")")[0]
        assert any(ref in r.getMessage() and r.exc_info for r in caplog.records)
        # the bot keeps working
        await user.send_text("/start")
        await user.wait_for_message(lambda v: v.text == texts.START)


class FirstLookExecutor(QuickExecutor):
    """A QuickExecutor that, like the local pool, paints a waiting job's first look at once."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.asked: list[str] = []

    @property
    def paints_first_looks(self) -> bool:
        return True

    def request_preview(self, spec: JobSpec, on_preview: Any) -> bool:
        self.asked.append(spec.job_id)
        asyncio.get_running_loop().call_soon(on_preview, spec.content)
        return True


async def test_a_waiting_job_shows_its_first_look_while_it_waits(
    settings: Any, fake_telegram: FakeTelegram
) -> None:
    executor = FirstLookExecutor(steps=400, delay=0.05)  # the first job paints for a while
    async with running_bot(settings, executor=executor):
        first, second = fake_telegram.user(1001), fake_telegram.user(1002)
        await first.send_photo(PHOTO)
        await first.wait_for_message(lambda v: "style" in v.content)
        await first.send_photo(STYLE)
        await first.wait_for_message(lambda v: v.content.startswith("🎨 Painting"))
        assert executor.asked == []  # a free worker: the job shows its own quick pass

        await second.send_photo(PHOTO)
        await second.wait_for_message(lambda v: "style" in v.content)
        await second.send_photo(STYLE)
        look = await second.wait_for_message(lambda v: v.caption == texts.PREVIEW_CAPTION)
        assert len(executor.asked) == 1
        # shown while the first painting still runs, and while the second job still waits
        assert not [v for v in first.messages() if v.kind == "photo" and is_result(v.latest)]
        status = [m for m in second.messages() if m.latest.buttons and m.kind == "text"]
        assert status and status[-1].latest.text.startswith("⏳")
        assert look.photo is not None

        executor.delay = 0.0  # let both paintings finish now
        await second.wait_for_message(is_result, timeout=60)
        # it then ran without its own quick pass, and sent no second preview
        assert executor.specs[-1].params.quick_pass_steps == 0
        assert len([m for m in second.messages() if m.caption == texts.PREVIEW_CAPTION]) == 1
