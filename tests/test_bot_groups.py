"""The bot in a group, end to end against the fake Bot API: what each member has waiting is
theirs, chatter and other bots' commands get no answer, and everything replies to the person's
own message. Also deep links (/start NAME) and the upload chat action."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot import keyboards as kb
from bot import texts
from tests.bot_harness import bot_settings, fake_telegram_fixture, running_bot  # noqa: F401
from tests.fake_telegram import FakeTelegram, GroupMember, MessageVersion
from tests.test_bot_e2e import PHOTO, STYLE, QuickExecutor, is_result, seed_presets

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


@pytest.fixture
def settings(tmp_path: Path, fake_telegram: FakeTelegram, test_weights: str) -> Any:
    return bot_settings(tmp_path, fake_telegram, weights=test_weights)


def is_offer(v: MessageVersion) -> bool:
    return v.content in (texts.content_received(has, in_group=True) for has in (True, False))


async def no_new_messages(member: GroupMember, before: int, executor: QuickExecutor) -> None:
    """Give the bot the time to answer (a later /start@bot is answered), then check it did
    not answer what came before."""
    probe = await member.send_text("/help@stylebot_test_bot")
    await member.wait_for_reply(probe["message_id"])
    assert len(member.group.messages()) == before + 1


async def test_members_keep_their_own_pictures_and_only_what_is_meant_is_answered(
    settings: Any, fake_telegram: FakeTelegram
) -> None:
    await seed_presets(settings)
    executor = QuickExecutor(steps=2)
    async with running_bot(settings, executor=executor):
        group = fake_telegram.group()
        ada = group.member(fake_telegram.user(2001, "Ada"))
        bob = group.member(fake_telegram.user(2002, "Bob"))

        start = await ada.send_text("/start@stylebot_test_bot")
        greeting = await ada.wait_for_reply(start["message_id"])
        assert greeting.text == texts.start_text(in_group=True)

        # chatter, commands for another bot, and a bare unknown command: no answer
        before = len(group.messages())
        await ada.send_text("hello everyone")
        await bob.send_text("/help@otherbot")
        await bob.send_text("/frobnicate")
        await ada.send_photo(PHOTO)  # neither a reply to the bot nor a command caption
        await no_new_messages(bob, before, executor)

        # Ada's photo, then Bob's: each is its owner's photo, not the other's style
        ada_photo = await ada.send_photo(PHOTO, reply_to=greeting.message_id)
        offer_ada = await ada.wait_for_reply(ada_photo["message_id"], is_offer)
        bob_photo = await bob.send_photo(PHOTO, reply_to=greeting.message_id)
        await bob.wait_for_reply(bob_photo["message_id"], is_offer)
        assert executor.specs == []

        # Ada's style picture, as a reply to her prompt: her painting replies to her photo
        await ada.send_photo(STYLE, reply_to=offer_ada.message_id)
        painting = await ada.wait_for_reply(ada_photo["message_id"], is_result)
        assert len(executor.specs) == 1
        assert bob.replies_to(bob_photo["message_id"])  # Bob still has only his prompt
        assert not any(
            is_result(v) for m in bob.replies_to(bob_photo["message_id"]) for v in m.versions
        )

        # buttons under Ada's painting are hers
        query = await bob.press(painting, painting.callback_data[0])
        answer = await fake_telegram.wait_for_callback_answer(query)
        assert answer.get("text") == texts.NOT_YOUR_BUTTON

        # a bare known command is answered, as a reply to the person's message
        status = await bob.send_text("/status")
        assert (await bob.wait_for_reply(status["message_id"])).text

        # a photo with a /style caption needs no reply to the bot
        captioned = await bob.send_photo(PHOTO, caption="/style starry_night")
        await bob.wait_for_reply(captioned["message_id"], is_result)
        assert len(executor.specs) == 2


async def test_the_bot_says_how_it_works_when_added_to_a_group(
    settings: Any, fake_telegram: FakeTelegram
) -> None:
    async with running_bot(settings, executor=QuickExecutor()):
        group = fake_telegram.group()
        fake_telegram.add_bot_to_group(group)
        hello = await group.member(fake_telegram.user(2003, "Cy")).wait_for_message()
        assert hello.text == texts.start_text(in_group=True)


async def test_a_deep_link_chooses_a_built_in_style(
    settings: Any, fake_telegram: FakeTelegram
) -> None:
    await seed_presets(settings)
    executor = QuickExecutor(steps=2)
    async with running_bot(settings, executor=executor):
        user = fake_telegram.user(2004, "Dee")
        await user.send_text("/start starry_night")
        chosen = await user.wait_for_message()
        assert chosen.text == texts.style_activated("starry_night", False)
        photo = await user.send_photo(PHOTO)
        result = await user.wait_for_message(is_result)
        assert result.caption is not None and "starry_night" in result.caption
        # the painting replies to the photo, and its upload was announced
        assert result.reply_to_message_id == photo["message_id"]
        actions = fake_telegram.calls("sendChatAction")
        assert any(c.params.get("action") == "upload_photo" for c in actions)
        ops = {kb.parse(d).op for d in result.callback_data}  # type: ignore[union-attr]
        assert kb.SAVE_STYLE not in ops  # a built-in style needs no saving

        await user.send_text("/start no_such_style")
        unknown = await user.wait_for_message(lambda v: v.text is not None)
        assert unknown.text == texts.preset_not_found("no_such_style")
        assert (await user.wait_for_message()).text == texts.START
