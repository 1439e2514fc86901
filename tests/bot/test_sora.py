"""/sora end to end: real discord.py ↔ Discord double, bot ↔ fake gateway, real SQLite."""

from __future__ import annotations

from bot.fake_upstream import FakeUpstream
from storage import Database
from tests.bot.helpers import MP4, start_bot, wait_result
from tests.discord_double import DiscordDouble
from tests.fixtures.discord import BotHarness


async def test_sora_posts_the_video_attached(
    bot_harness: BotHarness, discord_double: DiscordDouble, fake_upstream: FakeUpstream, db: Database
) -> None:
    await start_bot(bot_harness)
    alice = discord_double.add_member(name="alice")

    handle = await discord_double.slash("sora", user=alice, prompt="a red fox in the snow @everyone")
    assert await handle.wait_response() == 5

    result = await wait_result(discord_double)
    (attachment,) = result.attachments
    assert attachment.data == MP4
    assert attachment.filename.endswith(".mp4")
    assert "a red fox in the snow" in result.content
    assert result.mentions == [] and not result.mention_everyone
    progress = await handle.wait_original(lambda m: "Your video is ready" in str(m.embeds))
    assert progress.content.startswith("Requested by")
    (thread,) = discord_double.threads()
    assert thread.id == result.id
    (generation,) = await db.unfinished_generations() or [None]
