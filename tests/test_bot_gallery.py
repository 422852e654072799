"""Issue 13 end to end, through the fake Bot API: the style gallery (contact sheets uploaded once,
then reused by file_id), mixing two styles, and the brush size."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from bot import gallery, texts
from bot import keyboards as kb
from bot.storage import Storage
from tests.bot_harness import bot_settings, fake_telegram_fixture, running_bot  # noqa: F401
from tests.fake_telegram import CallRecord, FakeTelegram, MessageVersion, Upload
from tests.test_bot_e2e import PHOTO, STYLE, QuickExecutor, _jpeg, is_result, two_photos

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

NAMES = tuple(f"style_{i:02d}" for i in range(1, 13))  # 12 styles: two pages


@pytest.fixture
def settings(tmp_path: Path, fake_telegram: FakeTelegram, test_weights: str) -> Any:
    return bot_settings(tmp_path, fake_telegram, weights=test_weights)


async def seed(settings: Any, names: tuple[str, ...] = NAMES) -> None:
    from bot.presets import import_image

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    async with Storage(settings.database_path) as storage:
        for i, name in enumerate(names):
            await import_image(storage, name, _jpeg((20 * i % 256, 90, 200 - 10 * i)))


def uploaded(call: CallRecord) -> bool:
    """Whether a sendPhoto / editMessageMedia call uploaded a file (else it sent a file_id)."""
    if call.method == "sendPhoto":
        return isinstance(call.params.get("photo"), Upload)
    media = call.params.get("media") or {}
    reference = media.get("media")
    return isinstance(reference, Upload) or str(reference).startswith("attach://")


def photo_calls(fake: FakeTelegram) -> list[CallRecord]:
    calls = fake.calls("sendPhoto") + fake.calls("editMessageMedia")
    return sorted((c for c in calls if c.ok), key=lambda c: c.time)


async def settle(app: Any, fake: FakeTelegram) -> None:
    """Every update sent so far fetched and handled (so a file_id is kept): a state, not a
    time guess."""
    await fake.wait_until_confirmed()
    await asyncio.wait_for(app.update_queue.join(), 60)


def is_gallery(v: MessageVersion) -> bool:
    return v.kind == "photo" and bool(v.buttons) and not is_result(v)


# -- pictures -----------------------------------------------------------------------------------
def test_thumbnail_and_contact_sheet_are_pictures() -> None:
    thumb = gallery.make_thumbnail(_jpeg((200, 10, 10), (300, 120)))
    mix = gallery.make_thumbnail(_jpeg((200, 10, 10)), _jpeg((10, 10, 200)))
    with Image.open(io.BytesIO(thumb)) as t, Image.open(io.BytesIO(mix)) as m:
        assert t.size == m.size == (gallery.THUMB_SIDE, gallery.THUMB_SIDE)
        corner_a, corner_b = (
            m.convert("RGB").getpixel((5, 5)),
            m.convert("RGB").getpixel((150, 150)),
        )
        assert corner_a[0] > 150 and corner_b[2] > 150  # type: ignore[index]  # both styles show
    sheet = gallery.contact_sheet([(f"name {i} ünïcode кириллица", thumb) for i in range(10)])
    with Image.open(io.BytesIO(sheet)) as s:
        assert s.format == "JPEG" and s.width > s.height  # 5 columns, 2 rows
    with pytest.raises(ValueError):
        gallery.contact_sheet([])


def test_sheet_key_changes_with_the_page() -> None:
    class P:
        def __init__(self, id: int, name: str, is_mix: bool = False) -> None:
            self.id, self.name, self.is_mix = id, name, is_mix

    base = gallery.sheet_key([P(1, "a"), P(2, "b")])
    assert base == gallery.sheet_key([P(1, "a"), P(2, "b")])
    assert base != gallery.sheet_key([P(2, "b"), P(1, "a")])
    assert base != gallery.sheet_key([P(1, "a"), P(2, "c")])
    assert base != gallery.sheet_key([P(1, "a"), P(3, "b")])
    assert base != gallery.sheet_key([P(1, "a")])


# -- the gallery --------------------------------------------------------------------------------
async def test_second_presets_uploads_no_picture(
    settings: Any, fake_telegram: FakeTelegram
) -> None:
    await seed(settings)
    async with running_bot(settings, executor=QuickExecutor()) as app:
        user = fake_telegram.user(1001)
        await user.send_text("/presets")
        first = await user.wait_for_message(is_gallery)
        await settle(app, fake_telegram)
        assert first.caption == texts.presets_header(0, 12)
        labels = [b["text"] for b in first.buttons]
        assert labels[0] == "1. Apply: style_01" and "10. Apply: style_10" in labels
        assert "style_11" not in " ".join(labels) and texts.BTN_NEXT in labels
        assert [uploaded(c) for c in photo_calls(fake_telegram)] == [True]

        await user.send_text("/presets")
        second = await user.wait_for_message(
            lambda v: is_gallery(v) and v.message_id != first.message_id
        )
        calls = photo_calls(fake_telegram)
        assert [uploaded(c) for c in calls] == [True, False]  # the second one: a file_id
        assert calls[1].params["photo"] == first.photo_sizes[-1]["file_id"]
        assert second.photo == first.photo

        # page 2 (uploaded once), back to page 1 (its file_id), page 2 again (its file_id)
        await user.press(second, second.button(texts.BTN_NEXT)["callback_data"])
        page2 = await user.wait_for_message(
            lambda v: v.is_edit and "1. Apply: style_11" in str(v.buttons)
        )
        await settle(app, fake_telegram)
        assert texts.BTN_PREV in [b["text"] for b in page2.buttons]
        await user.press(page2, page2.button(texts.BTN_PREV)["callback_data"])
        await user.wait_for_message(lambda v: v.is_edit and "1. Apply: style_01" in str(v.buttons))
        await settle(app, fake_telegram)
        await user.press(second, second.message.button(texts.BTN_NEXT)["callback_data"])  # type: ignore[union-attr]
        await user.wait_for_message(lambda v: v.version == 3)
        await settle(app, fake_telegram)
        assert [uploaded(c) for c in photo_calls(fake_telegram)] == [
            True,
            False,
            True,
            False,
            False,
        ]

        # the style prompt after a photo shows the same first page: no upload either
        await user.send_photo(PHOTO)
        prompt = await user.wait_for_message(lambda v: v.content == texts.content_received(True))
        assert prompt.kind == "photo" and prompt.photo == first.photo
        assert [b["text"] for b in prompt.buttons][:2] == ["1. style_01", "2. style_02"]
        assert not uploaded(photo_calls(fake_telegram)[-1])
        await user.press(prompt, prompt.button("2. style_02")["callback_data"])
        await user.wait_for_message(is_result)
        await settle(app, fake_telegram)

        # a style of one's own changes the page: its sheet is uploaded once, then reused
        await user.send_photo(PHOTO)
        await user.send_photo(STYLE)
        await user.wait_for_message(is_result)
        await user.send_text("/save mine")
        await user.wait_for_message(lambda v: v.text == texts.preset_saved("mine"))
        await settle(app, fake_telegram)
        before = len(photo_calls(fake_telegram))
        for _ in range(2):
            await user.send_text("/presets")
            await user.wait_for_message(
                lambda v: is_gallery(v) and v.caption == texts.presets_header(1, 12)
            )
            await settle(app, fake_telegram)
        new = [
            uploaded(c)
            for c in photo_calls(fake_telegram)[before:]
            if c.method == "sendPhoto" and c.params.get("reply_markup")
        ]
        assert new == [True, False]

    # every preset has its thumbnail, kept in the database
    async with Storage(settings.database_path) as storage:
        presets = await storage.list_presets(1001)
        thumbs = await storage.preset_thumbnails([p.id for p in presets])
        assert len(thumbs) == 13 and all(thumbs.values())


async def test_old_presets_get_a_thumbnail_once(settings: Any, fake_telegram: FakeTelegram) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    async with Storage(settings.database_path) as storage:
        old = await storage.add_preset(None, "old", _jpeg((1, 2, 3)))  # as before migration 4
        assert await storage.preset_thumbnails([old.id]) == {old.id: None}
    async with running_bot(settings, executor=QuickExecutor()):
        user = fake_telegram.user(1001)
        await user.send_text("/presets")
        await user.wait_for_message(is_gallery)
    async with Storage(settings.database_path) as storage:
        thumb = (await storage.preset_thumbnails([old.id]))[old.id]
        assert thumb is not None and thumb[:2] == b"\xff\xd8"


async def test_a_refused_file_id_is_uploaded_again(
    settings: Any, fake_telegram: FakeTelegram
) -> None:
    await seed(settings, NAMES[:3])
    async with Storage(settings.database_path) as storage:
        presets = await storage.list_global_presets()
        await storage.set_telegram_file(gallery.sheet_key(presets), "AgACnot-a-real-file-id")
    async with running_bot(settings, executor=QuickExecutor()) as app:
        user = fake_telegram.user(1001)
        await user.send_text("/presets")
        await user.wait_for_message(is_gallery)
        await settle(app, fake_telegram)
        calls = fake_telegram.calls("sendPhoto")
        assert [c.ok for c in calls] == [False, True] and uploaded(calls[1])
        await user.send_text("/presets")
        await user.wait_for_message(lambda v: is_gallery(v) and v.message_id > 2)
        assert not uploaded(fake_telegram.calls("sendPhoto")[-1])


# -- mixing -------------------------------------------------------------------------------------
async def test_mix_two_styles_save_it_and_paint_with_it(
    settings: Any, fake_telegram: FakeTelegram
) -> None:
    await seed(settings, ("starry_night", "great_wave"))
    executor = QuickExecutor()
    async with running_bot(settings, executor=executor):
        user = fake_telegram.user(1001)
        await user.send_text("/style starry_night + great_wave")
        await user.wait_for_message(
            lambda v: v.text == texts.style_mix_activated("starry_night", "great_wave", False)
        )
        await user.send_text("/status")
        status = await user.wait_for_message(lambda v: "Strength" in (v.text or ""))
        assert "Active style: starry_night + great_wave" in (status.text or "")
        assert (
            texts.status_text(
                strength=3,
                colors=False,
                size=64,
                active_style="starry_night + great_wave",
                positions=[],
                has_pending_content=False,
                brush="medium",
            )
            == status.text
        )
        await user.send_photo(PHOTO)
        mixed = await user.wait_for_message(is_result)
        assert (mixed.caption or "").startswith("🎨 starry_night + great_wave")
        spec = executor.specs[-1]
        assert len(spec.styles) == 2 and spec.styles[0] != spec.styles[1]
        assert spec.params.style_blend is None  # equal weights
        assert kb.SAVE_STYLE in {kb.parse(d).op for d in mixed.callback_data}  # type: ignore[union-attr]

        await user.send_text("/save duo")
        await user.wait_for_message(lambda v: v.text == texts.preset_saved("duo"))
        await user.send_text("/style duo")
        await user.wait_for_message(lambda v: v.text == texts.style_activated("duo", False))
        await user.send_photo(PHOTO)
        await user.wait_for_message(lambda v: is_result(v) and "duo" in (v.caption or ""))
        assert executor.specs[-1].styles == spec.styles  # the saved mix paints the same mix

        # a saved mix cannot be mixed again
        await user.send_text("/style duo + great_wave")
        await user.wait_for_message(lambda v: v.text == texts.MIX_TOO_MANY)
        await user.send_text("/style nope + great_wave")
        await user.wait_for_message(lambda v: v.text == texts.preset_not_found("nope"))
        await user.send_text("/style off")
        await user.wait_for_message(lambda v: v.text == texts.STYLE_OFF)

    async with Storage(settings.database_path) as storage:
        duo = await storage.find_preset("duo", 1001)
        assert duo is not None and duo.is_mix
        assert await storage.preset_images(duo.id) == spec.styles


async def test_mix_with_button_repaints_warm_from_the_result(
    settings: Any, fake_telegram: FakeTelegram
) -> None:
    await seed(settings, ("starry_night", "great_wave"))
    executor = QuickExecutor()
    async with running_bot(settings, executor=executor):
        user = fake_telegram.user(1001)
        first = await two_photos(user)  # style: the user's own picture
        own_style = executor.specs[-1].styles[0]
        await user.press(first, first.button(texts.BTN_MIX)["callback_data"])
        offer = await user.wait_for_message(lambda v: v.caption == texts.MIX_PROMPT)
        assert offer.kind == "photo"
        assert [b["text"] for b in offer.buttons] == ["1. great_wave", "2. starry_night"]
        await user.press(offer, offer.button("great_wave")["callback_data"])
        mixed = await user.wait_for_message(
            lambda v: is_result(v) and "+ great_wave" in (v.caption or "")
        )
        spec = executor.specs[-1]
        assert spec.init is not None  # warm from the first painting
        assert len(spec.styles) == 2 and spec.styles[0] == own_style

        # the mix can be saved from its button, and with /save
        query = await user.press(mixed, mixed.button(texts.BTN_SAVE_STYLE)["callback_data"])
        answer = await fake_telegram.wait_for_callback_answer(query)
        assert "mix 1" in answer.get("text", "")
        await user.send_text("/save sea and me")
        await user.wait_for_message(lambda v: v.text == texts.preset_saved("sea and me"))
        # a mix is not mixed again
        query = await user.press(mixed, mixed.button(texts.BTN_MIX)["callback_data"])
        answer = await fake_telegram.wait_for_callback_answer(query)
        assert answer.get("text") == texts.MIX_TOO_MANY

    async with Storage(settings.database_path) as storage:
        for name in ("mix 1", "sea and me"):
            preset = await storage.find_preset(name, 1001)
            assert preset is not None and preset.is_mix
            assert await storage.preset_images(preset.id) == spec.styles


# -- brush size ---------------------------------------------------------------------------------
async def test_brush_setting_and_stroke_buttons(settings: Any, fake_telegram: FakeTelegram) -> None:
    executor = QuickExecutor()
    async with running_bot(settings, executor=executor):
        user = fake_telegram.user(1001)
        await user.send_text("/brush")
        usage = await user.wait_for_message(lambda v: v.text == texts.BRUSH_USAGE)
        assert texts.btn_brush("medium", True) in [b["text"] for b in usage.buttons]
        await user.send_text("/brush huge")
        await user.wait_for_message(
            lambda v: v.text == texts.BRUSH_USAGE and v.message_id > usage.message_id
        )
        await user.send_text("/brush large")
        await user.wait_for_message(lambda v: v.text == texts.brush_set("large"))
        await user.send_text("/status")
        status = await user.wait_for_message(lambda v: "Strength" in (v.text or ""))
        assert "Brush: large" in (status.text or "")
        first = await two_photos(user)
        assert executor.specs[-1].params.style_scale == 2.0
        assert texts.result_caption(
            style="your picture",
            strength=3,
            colors=False,
            seconds=1.5,
            width=96,
            height=72,
            brush=2.0,
        ) == first.caption and "brush ×2" in (first.caption or "")

        await user.press(first, first.button(texts.BTN_BIGGER)["callback_data"])
        bigger = await user.wait_for_message(is_result)
        spec = executor.specs[-1]
        assert spec.params.style_scale == 4.0 and spec.init is not None
        labels = [b["text"] for b in bigger.buttons]
        assert texts.BTN_BIGGER not in labels and texts.BTN_FINER in labels  # the largest
        await user.press(first, first.button(texts.BTN_FINER)["callback_data"])
        await user.wait_for_message(lambda v: is_result(v) and v.message_id > bigger.message_id)
        assert executor.specs[-1].params.style_scale == 1.0 and executor.specs[-1].init is not None

        # the /brush buttons
        await user.press(usage, usage.button(texts.btn_brush("small", False))["callback_data"])
        await user.wait_for_message(lambda v: v.is_edit and v.message_id == usage.message_id)
        async with Storage(settings.database_path) as storage:
            db_user = await storage.get_user(1001)
        assert db_user is not None and db_user.brush == 0.5
