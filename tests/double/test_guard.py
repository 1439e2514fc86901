"""Requests real Discord would refuse, and routes the double does not know, fail the test that made them."""

from __future__ import annotations

import asyncio
import os
import re
import sys
import textwrap
from pathlib import Path
from typing import Any

import discord
import pytest
from discord import app_commands
from discord.ext import commands
from discord.http import Route

from tests.discord_double import DiscordDouble
from tests.fixtures.discord import REPO_ROOT, BotHarness


def channel_of(harness: BotHarness, double: DiscordDouble) -> discord.TextChannel:
    assert harness.bot is not None
    channel = harness.bot.get_channel(double.channel.id)
    assert isinstance(channel, discord.TextChannel)
    return channel


def _raw_send(channel: discord.TextChannel, payload: dict[str, Any]) -> Any:
    route = Route("POST", "/channels/{channel_id}/messages", channel_id=channel.id)
    return channel._state.http.request(route, json=payload)


async def test_unknown_route_is_404_and_recorded(bot_harness: BotHarness, discord_double: DiscordDouble) -> None:
    await bot_harness.start()
    with pytest.raises(discord.NotFound):
        await channel_of(bot_harness, discord_double).webhooks()

    (record,) = discord_double.unknown_requests
    assert (record.method, record.status) == ("GET", 404)
    assert record.path.endswith(f"/channels/{discord_double.channel.id}/webhooks")
    with pytest.raises(AssertionError, match="does not know"):
        discord_double.check_clean()
    discord_double.expect_rejections("unknown_route")
    discord_double.check_clean()


@pytest.mark.parametrize(
    ("send", "path"),
    [
        (lambda ch: ch.send("x" * 2001), "content"),
        (lambda ch: ch.send(embed=discord.Embed(title="t" * 257)), "embeds.0.title"),
        (lambda ch: ch.send(embed=discord.Embed(description="d" * 4097)), "embeds.0.description"),
        (lambda ch: ch.send(embed=discord.Embed().add_field(name="n", value="v" * 1025)), "embeds.0.fields.0.value"),
        (lambda ch: _raw_send(ch, {"embeds": [{"title": str(i)} for i in range(11)]}), "embeds"),  # discord.py checks
        (lambda ch: ch.send(embeds=[discord.Embed(description="d" * 4000) for _ in range(2)]), "embeds"),
    ],
    ids=["content-2001", "embed-title", "embed-description", "field-value", "11-embeds", "embeds-6000"],
)
async def test_payloads_discord_refuses_are_400_50035(
    bot_harness: BotHarness, discord_double: DiscordDouble, send: Any, path: str
) -> None:
    await bot_harness.start()
    with pytest.raises(discord.HTTPException) as refused:
        await send(channel_of(bot_harness, discord_double))

    assert (refused.value.status, refused.value.code) == (400, 50035)
    (record,) = discord_double.invalid_requests
    assert record.kind == "invalid_body" and record.response["message"] == "Invalid Form Body"
    node = record.response["errors"]
    for part in path.split("."):
        node = node[part]
    assert node["_errors"][0]["code"]
    assert f"In {path}" in str(refused.value)  # discord.py flattens the error tree into its message
    with pytest.raises(AssertionError):
        discord_double.check_clean()
    discord_double.expect_rejections(50035)


async def test_component_and_command_limits(bot_harness: BotHarness, discord_double: DiscordDouble) -> None:
    bot = await bot_harness.start()
    discord_double.expect_rejections(50035)
    route = Route("POST", "/channels/{channel_id}/messages", channel_id=discord_double.channel.id)
    row = {"type": 1, "components": [{"type": 2, "style": 1, "label": "b", "custom_id": f"b{i}"} for i in range(6)]}
    with pytest.raises(discord.HTTPException) as wide:
        await bot.http.request(route, json={"content": "x", "components": [row]})
    assert "components.0.components" in str(wide.value)
    rows = [{"type": 1, "components": [{"type": 2, "style": 1, "label": "b", "custom_id": f"r{i}"}]} for i in range(6)]
    with pytest.raises(discord.HTTPException):
        await bot.http.request(route, json={"content": "x", "components": rows})

    command = {
        "name": "pick",
        "type": 1,
        "description": "d" * 101,
        "options": [
            {
                "type": 3,
                "name": "which",
                "description": "Which",
                "choices": [{"name": str(i), "value": str(i)} for i in range(26)],
            }
        ],
    }
    with pytest.raises(discord.HTTPException) as refused:
        await bot.http.bulk_upsert_guild_commands(bot.application_id, discord_double.guild.id, [command])
    errors = discord_double.invalid_requests[-1].response["errors"]["0"]
    assert "description" in errors and "choices" in errors["options"]["0"]
    assert refused.value.code == 50035
    assert discord_double.commands(discord_double.guild) == []


async def test_modal_text_input_limit(bot_harness: BotHarness, discord_double: DiscordDouble) -> None:
    failures: list[discord.HTTPException] = []

    class TooLong(discord.ui.Modal, title="Too long"):
        text: discord.ui.TextInput[TooLong] = discord.ui.TextInput(label="Text", max_length=5000)

    class Cog(commands.Cog):
        @app_commands.command(name="modal", description="Opens a modal Discord refuses")
        async def modal(self, interaction: discord.Interaction) -> None:
            try:
                await interaction.response.send_modal(TooLong())
            except discord.HTTPException as error:
                failures.append(error)

    await bot_harness.start(setup=lambda bot: bot.add_cog(Cog()))
    discord_double.expect_rejections(50035)
    await discord_double.slash("modal", user=discord_double.add_member(name="hal"))
    await discord_double.wait_for(lambda: failures)
    assert failures[0].code == 50035 and "max_length" in str(failures[0])


INNER_TEST = """
import discord


async def test_bot_sends_a_2001_char_message(bot_harness, discord_double):
    bot = await bot_harness.start()
    try:
        await bot.get_channel(discord_double.channel.id).send("x" * 2001)
    except discord.HTTPException:
        pass  # even a bot that swallows the error must not pass


async def test_bot_calls_an_unknown_route(bot_harness, discord_double):
    bot = await bot_harness.start()
    try:
        await bot.get_channel(discord_double.channel.id).webhooks()
    except discord.NotFound:
        pass


async def test_expected_rejection_passes(bot_harness, discord_double):
    bot = await bot_harness.start()
    discord_double.expect_rejections(50035)
    try:
        await bot.get_channel(discord_double.channel.id).send("x" * 2001)
    except discord.HTTPException:
        pass
"""


async def test_the_test_that_produced_it_fails(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(
        'pytest_plugins = ["tests.fixtures.upstream", "tests.fixtures.discord", "tests.fixtures.storage"]\n'
    )
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(INNER_TEST))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-o",
        "asyncio_mode=auto",
        "-o",
        "asyncio_default_fixture_loop_scope=function",
        "test_inner.py",
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output = (await asyncio.wait_for(process.communicate(), 60))[0].decode()
    assert process.returncode == 1, output
    # Each test runs on both storage backends.
    assert re.search(r"6 passed, (\d+ warnings?, )?4 errors", output), output
    assert "ERROR test_inner.py::test_bot_sends_a_2001_char_message[sqlite]" in output
    assert "ERROR test_inner.py::test_bot_calls_an_unknown_route[postgresql]" in output
    assert "Discord double: requests real Discord would refuse" in output
    assert "Invalid Form Body" in output and "404: Not Found" in output
