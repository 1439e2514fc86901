"""The double's parts on their own: clock-driven rate limits, permissions, spec checks, limits, snowflakes."""

from __future__ import annotations

import aiohttp

from tests.discord_double import DiscordDouble, ManualClock, Overwrite, Permission
from tests.discord_double.models import snowflake_time
from tests.discord_double.permissions import ALL_PERMISSIONS, base_permissions, channel_permissions
from tests.discord_double.ratelimit import RateLimiter
from tests.discord_double.rules import check_commands, check_message, check_modal, issues_to_tree
from tests.discord_double.spec import OpenAPISpec

MESSAGES = "/channels/{channel_id}/messages"


def test_rate_limit_windows_run_on_the_clock() -> None:
    clock = ManualClock()
    limiter = RateLimiter(clock)
    decisions = [limiter.check("POST", MESSAGES, "message_create", "1", counts_global=True) for _ in range(6)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False]
    assert decisions[4].headers["X-RateLimit-Remaining"] == "0"
    assert 4.9 < decisions[5].retry_after <= 5.0
    assert limiter.check("POST", MESSAGES, "message_create", "2", counts_global=True).allowed  # per channel
    clock.advance(5)
    assert limiter.check("POST", MESSAGES, "message_create", "1", counts_global=True).allowed


def test_global_limit_counts_bot_token_requests_only() -> None:
    limiter = RateLimiter(ManualClock())
    for _ in range(50):
        assert limiter.check("GET", "/channels/{channel_id}", "default", str(_), counts_global=True).allowed
    refused = limiter.check("GET", "/channels/{channel_id}", "default", "x", counts_global=True)
    assert not refused.allowed and refused.is_global and refused.body()["global"] is True
    assert limiter.check(
        "POST", "/interactions/{i}/{t}/callback", "interaction_callback", "", counts_global=False
    ).allowed


def test_channel_permissions_follow_discords_order() -> None:
    guild_id, role, member = 1, 2, 3
    base = base_permissions(
        everyone=Permission.VIEW_CHANNEL | Permission.SEND_MESSAGES, role_permissions=[], is_owner=False
    )

    def effective(*overwrites: Overwrite, is_thread: bool = False) -> int:
        return channel_permissions(
            base, guild_id=guild_id, member_id=member, member_roles=[role], overwrites=overwrites, is_thread=is_thread
        )

    denied = effective(Overwrite(guild_id, 0, deny=Permission.SEND_MESSAGES))
    assert not denied & Permission.SEND_MESSAGES
    # A role allow beats the @everyone deny; a member deny beats the role allow.
    assert (
        effective(
            Overwrite(guild_id, 0, deny=Permission.SEND_MESSAGES), Overwrite(role, 0, allow=Permission.SEND_MESSAGES)
        )
        & Permission.SEND_MESSAGES
    )
    assert (
        not effective(
            Overwrite(role, 0, allow=Permission.SEND_MESSAGES), Overwrite(member, 1, deny=Permission.SEND_MESSAGES)
        )
        & Permission.SEND_MESSAGES
    )
    assert effective(Overwrite(guild_id, 0, deny=Permission.VIEW_CHANNEL)) == 0
    # Without Send Messages, Attach Files and Embed Links are implicitly denied.
    granted = base | Permission.ATTACH_FILES
    assert (
        not channel_permissions(
            granted,
            guild_id=guild_id,
            member_id=member,
            member_roles=[],
            overwrites=[Overwrite(guild_id, 0, deny=Permission.SEND_MESSAGES)],
        )
        & Permission.ATTACH_FILES
    )
    assert base_permissions(everyone=Permission.ADMINISTRATOR, role_permissions=[], is_owner=False) == ALL_PERMISSIONS


def test_spec_takes_what_discord_takes() -> None:
    spec = OpenAPISpec.load()
    ok = {"content": "x", "attachments": [{"id": 0, "filename": "a.mp4"}], "allowed_mentions": {"parse": []}}
    assert spec.validate("POST", MESSAGES, ok) == []
    command = {"name": "x", "description": "d", "default_member_permissions": "8", "type": 1}
    assert spec.validate("PUT", "/applications/{application_id}/commands", [command]) == []
    (issue,) = spec.validate("POST", MESSAGES, {"content": "x" * 4001})
    assert issue.path == ("content",) and issue.keyword == "maxLength"
    (issue,) = spec.validate(
        "POST",
        "/interactions/{interaction_id}/{interaction_token}/callback",
        {"type": 4, "data": {"content": "x" * 2001}},
    )
    assert issue.path == ("data", "content")


def test_limits_and_error_tree() -> None:
    issues = check_message(
        {"content": "x" * 2001, "embeds": [{"title": "t" * 257, "fields": [{"name": "n", "value": "v" * 1025}]}]}
    )
    tree = issues_to_tree(issues)
    assert tree["content"]["_errors"][0] == {
        "code": "BASE_TYPE_MAX_LENGTH",
        "message": "Must be 2000 or fewer in length.",
    }
    assert tree["embeds"]["0"]["title"]["_errors"][0]["code"] == "BASE_TYPE_MAX_LENGTH"
    assert "value" in tree["embeds"]["0"]["fields"]["0"]
    v2 = {"flags": 1 << 15, "components": [{"type": 10, "content": "x"}] * 12}
    assert check_message(v2) == []  # Components V2 messages are not bound by 5 action rows
    modal = {
        "title": "t",
        "custom_id": "m",
        "components": [
            {"type": 18, "label": "l", "component": {"type": 4, "custom_id": "a", "style": 1, "max_length": 4001}}
        ],
    }
    assert [i.path for i in check_modal(modal)] == [("data", "components", 0, "component", "max_length")]
    duplicated = check_commands([{"name": "a", "description": "d"}, {"name": "a", "description": "d"}])
    assert duplicated[0].keyword == "APPLICATION_COMMANDS_DUPLICATE_NAME"
    optional_first = check_commands(
        [
            {
                "name": "a",
                "description": "d",
                "options": [
                    {"type": 3, "name": "x", "description": "x"},
                    {"type": 3, "name": "y", "description": "y", "required": True},
                ],
            }
        ]
    )
    assert optional_first[0].path == (0, "options", 1, "required")


async def test_snowflakes_and_tokens_follow_the_clock() -> None:
    clock = ManualClock()
    async with DiscordDouble(clock=clock) as double:
        before = double.world.ids.next()
        double.advance(3600)
        after = double.world.ids.next()
        assert 3599 < snowflake_time(after) - snowflake_time(before) < 3601

        # Raw HTTP, no discord.py: the unauthenticated routes and the token rules.
        user = double.add_member(name="raw")
        interaction = double.world.create_interaction(2, user=user.user, channel=double.channel, data={"name": "x"})
        callback = f"{double.api_base}/interactions/{interaction.id}/{interaction.token}/callback"
        original = f"{double.api_base}/webhooks/{double.application_id}/{interaction.token}/messages/@original"
        async with aiohttp.ClientSession() as session:
            async with session.post(callback, json={"type": 5}) as response:
                assert response.status == 204 and response.headers["Via"]
            double.advance(15 * 60 + 1)
            async with session.patch(original, json={"content": "late"}) as response:
                assert response.status == 401
                assert await response.json() == {"message": "Invalid Webhook Token", "code": 50027}
            async with session.get(f"{double.api_base}/users/@me") as response:
                assert response.status == 401  # no bot token
                assert response.headers["Content-Type"] == "application/json"
