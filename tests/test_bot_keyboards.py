"""Callback data: compact, versioned, ≤ 64 bytes, and a parser that never raises."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot import keyboards as kb
from bot import texts

JOB_ID = "0123456789abcdef0123456789abcdef"  # a uuid4 hex, the longest id we expect
LONG_ID = "x" * 40
PAIR = "a1b2c3d4e5f6"


@dataclass(frozen=True)
class P:
    id: int
    name: str
    owner_id: int | None = None


def test_every_encoder_round_trips() -> None:
    cases = [
        (kb.style_data(PAIR, 123456789), kb.Callback(kb.STYLE, pair=PAIR, preset_id=123456789)),
        (kb.style_page_data(PAIR, 3), kb.Callback(kb.STYLE_PAGE, pair=PAIR, page=3)),
        (kb.style_page_data(None, 2), kb.Callback(kb.STYLE_PAGE, pair=None, page=2)),
        (kb.apply_data(7), kb.Callback(kb.APPLY, preset_id=7)),
        (kb.delete_data(8), kb.Callback(kb.DELETE, preset_id=8)),
        (kb.list_page_data(1), kb.Callback(kb.LIST_PAGE, page=1)),
        (kb.cancel_data(JOB_ID), kb.Callback(kb.CANCEL, job_id=JOB_ID)),
        (kb.size_data(512), kb.Callback(kb.SIZE, size=512)),
    ]
    for op in sorted(kb.RESULT_OPS):
        cases.append((kb.result_data(LONG_ID, op), kb.Callback(kb.RESULT, job_id=LONG_ID, op=op)))
    for data, expected in cases:
        assert data.startswith(kb.VERSION)
        assert len(data.encode()) <= kb.MAX_CALLBACK_BYTES
        assert kb.parse(data) == expected


@pytest.mark.parametrize(
    "data",
    [
        None,
        "",
        "1",
        "2r:abc:w",
        "1r:abc:q",
        "1r:abc",
        "1r:ab c:w",
        "1p:XYZ:1",
        "1p:a1b2c3d4e5f6:x",
        "1z:-5",
        "1z:",
        "1a:1:2",
        "1q:1",
        "1r:" + "x" * 41 + ":w",
        "1a:" + "9" * 10,
        "1" * 65,
        b"1a:1",
        "1a1",
        "1g:-:x",
        "1r:abc:w:extra",
        "１a:1",
    ],
)
def test_parse_rejects_garbage(data: object) -> None:
    assert kb.parse(data) is None


@given(st.text(max_size=80))
def test_parse_never_raises(data: str) -> None:
    result = kb.parse(data)
    assert result is None or isinstance(result, kb.Callback)


@given(st.binary(max_size=80))
def test_parse_never_raises_on_decoded_bytes(raw: bytes) -> None:
    assert kb.parse(raw.decode("utf-8", "replace")) is None or True


def test_encoders_refuse_bad_ids() -> None:
    with pytest.raises(ValueError):
        kb.result_data("has space", kb.WEAKER)
    with pytest.raises(ValueError):
        kb.result_data(JOB_ID, "?")
    with pytest.raises(ValueError):
        kb.style_data("not-a-pair", 1)
    with pytest.raises(kb.CallbackDataTooLong):
        kb._pack(kb.APPLY, "9" * 80)


def test_style_keyboard_pages_ten_with_arrows() -> None:
    presets = [P(i, f"style{i}", owner_id=1 if i < 3 else None) for i in range(1, 25)]
    first = kb.style_keyboard(presets, pair=PAIR, page=0)
    assert first is not None
    data = kb.all_callback_data(first)
    assert len([d for d in data if d.startswith("1p")]) == 10 == kb.PAGE_SIZE
    nav = first.inline_keyboard[-1]
    assert [b.text for b in nav] == [texts.BTN_NEXT]
    middle = kb.style_keyboard(presets, pair=PAIR, page=1)
    assert middle is not None
    assert [b.text for b in middle.inline_keyboard[-1]] == [texts.BTN_PREV, texts.BTN_NEXT]
    last = kb.style_keyboard(presets, pair=PAIR, page=99)  # clamped to the last page
    assert last is not None
    assert [b.text for b in last.inline_keyboard[-1]] == [texts.BTN_PREV]
    own = first.inline_keyboard[0][0]
    assert own.text.startswith("★")
    # without a photo the buttons make the preset active instead
    start = kb.style_keyboard(presets, pair=None)
    assert start is not None
    assert all(kb.parse(d).action in (kb.APPLY, kb.STYLE_PAGE) for d in kb.all_callback_data(start))  # type: ignore[union-attr]
    assert kb.style_keyboard([], pair=PAIR) is None


def test_result_keyboard_omits_buttons_at_the_ends() -> None:
    def ops(markup: object) -> set[str]:
        return {kb.parse(d).op for d in kb.all_callback_data(markup)}  # type: ignore[union-attr, arg-type, misc]

    mid = kb.result_keyboard(JOB_ID, strength=3, colors=False)
    assert ops(mid) == set(kb.RESULT_OPS)
    assert kb.WEAKER not in ops(kb.result_keyboard(JOB_ID, strength=1, colors=False))
    assert kb.STRONGER not in ops(kb.result_keyboard(JOB_ID, strength=5, colors=True))
    assert kb.SAVE_STYLE not in ops(
        kb.result_keyboard(JOB_ID, strength=3, colors=True, can_save=False)
    )
    labels = [
        b.text
        for row in kb.result_keyboard(JOB_ID, strength=3, colors=True).inline_keyboard
        for b in row
    ]
    assert texts.btn_colors(True) in labels


def test_presets_list_has_delete_only_for_own() -> None:
    presets = [P(1, "mine", owner_id=42), P(2, "starry_night", owner_id=None)]
    markup = kb.presets_list_keyboard(presets, user_id=42)
    assert markup is not None
    rows = markup.inline_keyboard
    assert len(rows[0]) == 2 and kb.parse(rows[0][1].callback_data) == kb.Callback(
        kb.DELETE, preset_id=1
    )
    assert len(rows[1]) == 1


def test_size_keyboard_marks_current() -> None:
    markup = kb.size_keyboard((256, 384, 512), 384)
    labels = [b.text for row in markup.inline_keyboard for b in row]
    assert labels == ["256 px", "✓ 384 px", "512 px"]
