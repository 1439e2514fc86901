"""Progress and result messages stay within Discord's limits, say the right things, and show member text exactly
as typed (no markdown, masked links or mentions)."""

from __future__ import annotations

import random
import re
from dataclasses import replace

import pytest

from bot.render import (
    JobView,
    Phase,
    ResultInfo,
    cut,
    failure_sentence,
    literal,
    plain,
    progress_bar,
    progress_payload,
    result_content,
    result_payload,
    thread_name,
)
from bot.upstream.types import FailureKind

HOSTILE = "@everyone <@&123> **bold** \u202e" + "字" * 5000


def view(**changes) -> JobView:
    base = {
        "generation_id": 42,
        "prompt": HOSTILE,
        "model_label": "Sora 2",
        "seconds": 10,
        "size": "1280x720",
        "requester_id": 99,
        "phase": Phase.RUNNING,
        "elapsed": 75.0,
        "percent": 36.0,
    }
    return JobView(**{**base, **changes})


@pytest.mark.parametrize("phase", list(Phase))
@pytest.mark.parametrize("locale", ["en", "zh-CN"])
def test_progress_payload_fits_discord_limits(phase: Phase, locale: str) -> None:
    payload = progress_payload(view(phase=phase, position=3, failure=FailureKind.MODERATION), locale)
    assert payload.content is not None and len(payload.content) <= 2000
    embed = payload.embeds[0]
    assert len(embed.title or "") <= 256
    assert len(embed.description or "") <= 4096
    assert len(embed) <= 6000
    cancellable = payload.view is not None
    assert cancellable == (phase not in (Phase.DONE, Phase.FAILED, Phase.CANCELLED))


def test_progress_shows_bar_state_and_elapsed() -> None:
    payload = progress_payload(view(), "en")
    embed = payload.embeds[0]
    assert "Generating" in (embed.description or "")
    assert "36%" in (embed.description or "")
    assert "1m 15s" in (embed.footer.text or "")
    assert payload.content == "Requested by <@99>"
    assert progress_bar(None).count("▱") == 16


def test_failure_says_what_happened_and_about_the_credit() -> None:
    payload = progress_payload(view(phase=Phase.FAILED, failure=FailureKind.MODERATION, refunded=True), "en")
    description = payload.embeds[0].description or ""
    assert "content policy" in description
    assert "refunded" in description


def test_result_link_when_too_big_and_attached_otherwise() -> None:
    info = ResultInfo(
        generation_id=7,
        prompt=HOSTILE,
        model_label="Veo 3.1",
        seconds=8,
        size="1920x1080",
        requester_id=5,
        elapsed=130,
        video_bytes=120 * 2**20,
        attached=False,
        video_url="https://cdn.example.com/v/7.mp4",
        thumbnail_url="https://cdn.example.com/v/7.png",
        upload_limit=10 * 2**20,
    )
    linked = result_payload(info, "en")
    assert linked.content is not None and len(linked.content) <= 2000
    assert "120.0 MiB" in linked.content and "10.0 MiB" in linked.content
    assert "https://cdn.example.com/v/7.mp4" in linked.content
    assert linked.view is not None
    assert any(getattr(item, "url", None) == info.video_url for item in linked.view.children)
    assert linked.embeds and linked.embeds[0].image.url == info.thumbnail_url
    attached = result_payload(replace(info, attached=True), "en")
    assert "upload limit" not in (attached.content or "")
    assert not attached.embeds
    custom_ids = {getattr(item, "custom_id", None) for item in attached.view.children}  # type: ignore[union-attr]
    assert custom_ids == {"sora:remix:7", "sora:reroll:7"}


# --- member text renders literally ------------------------------------------------------------------------------

# How Discord shows text: a backslash before ASCII punctuation shows only the punctuation; a zero-width space
# is invisible.
DISCORD_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")
INLINE_MARKUP = set("*_~|`[]")
LINE_MARKUP = re.compile(r"^[ \t]*(?:[#>+-]|\d+\.[ \t])")

MEMBER_MARKDOWN = {
    "masked link": "[free nitro](https://evil.example)",
    "two masked links": "see [a](https://a.example) and [b](<https://b.example>)",
    "masked link inside a url": "https://a.example/[nitro](https://evil.example)",
    "headers": "# BIG\n## bigger\n### big",
    "subtext": "-# tiny print",
    "bullets": "- one\n* two\n+ three\n  - nested",
    "ordered list": "1. first\n2. second",
    "quotes": "> quoted\n>>> the rest",
    "emphasis": "**bold** *it* _it_ __under__ ~~struck~~ ***all***",
    "spoiler": "||the ending||",
    "code": "`inline` and ```py\nprint('block')\n```",
    "mentions": "@everyone @here <@123> <@!123> <@&456> <#789> </sora:1>",
    "backslashes": "C:\\videos\\*new*\\",
    "everything at once": "> # [**@everyone**](https://evil.example) ||<@&1>||",
}


def shown(rendered: str) -> str:
    """What a member sees of the bot's text (outside links), per Discord's escape rule."""
    return DISCORD_ESCAPE.sub(r"\1", rendered).replace("@\u200b", "@")


def active_markup(rendered: str) -> list[str]:
    """Markdown and mentions Discord would still act on: unescaped markup characters, line-start markers."""
    found: list[str] = []
    without_links = re.sub(r"https?://[^\s<\[\]\\]+", "", rendered)
    plain_chars: list[str] = []
    index = 0
    while index < len(without_links):
        char = without_links[index]
        if char == "\\" and index + 1 < len(without_links):
            plain_chars.append("·")  # an escaped character: shown as itself, no markup
            index += 2
            continue
        if char == "\\" or char in INLINE_MARKUP:
            found.append(char)
        plain_chars.append(char)
        index += 1
    unescaped = "".join(plain_chars)
    found += [line for line in unescaped.split("\n") if LINE_MARKUP.match(line)]
    found += re.findall(r"<[@#/]|@everyone|@here", unescaped)
    return found


@pytest.mark.parametrize("text", MEMBER_MARKDOWN.values(), ids=MEMBER_MARKDOWN.keys())
def test_member_markdown_is_shown_as_typed(text: str) -> None:
    rendered = literal(text)
    assert active_markup(rendered) == [], rendered
    if "https://" not in text:
        assert shown(rendered) == text
    one_line = literal(text, single_line=True)
    assert "\n" not in one_line and active_markup(one_line) == []


def test_links_stay_links_and_bidi_overrides_go() -> None:
    assert literal("see https://a.example/a_b*c_ now") == "see https://a.example/a_b*c_ now"
    assert literal("\u202eevil\u2066 text") == "evil text"
    assert literal("[x](https://evil.example)") == "\\[x\\](https://evil.example)"


def test_random_markup_soup_is_always_inert() -> None:
    pieces = ["*", "_", "~", "|", "`", "[", "]", "(", ")", "<", ">", "@", "#", "-", "+", ".", "\\", " ", "\n"]
    pieces += ["1", "a", "字", "everyone", "here", "<@1>", "</x:2>", "-# ", "> ", "1. "]
    generator = random.Random(20240601)
    for _ in range(2000):
        text = "".join(generator.choice(pieces) for _ in range(generator.randint(0, 40)))
        rendered = literal(text)
        assert active_markup(rendered) == [], (text, rendered)
        assert shown(rendered) == text.replace("\r", ""), (text, rendered)
        limit = generator.randint(1, 60)
        short = literal(text, limit)
        assert len(short) <= limit and active_markup(short) == [], (text, limit, short)


def test_shortening_never_cuts_an_escape_in_half() -> None:
    assert literal("*" * 300, 10) == "\\*\\*\\*\\*…"
    assert literal("a" + "_" * 300, 10) == "a\\_\\_\\_\\_…"
    for limit in range(1, 30):
        short = literal("\\*" * 40, limit)
        assert len(short) <= limit
        trailing = len(short.rstrip("…")) - len(short.rstrip("…").rstrip("\\"))
        assert trailing % 2 == 0, short
    assert cut("short", 10) == "short" and cut("x" * 20, 0) == ""


def test_thread_names_are_one_plain_line() -> None:
    hostile = "# **[free nitro](https://evil.example)**\n> @everyone <@123> <@&4> <#5> </sora:6> ||`x`||"
    name = plain(hostile)
    assert name == "free nitro \uff20everyone @123 @&4 #5 /sora x"
    assert plain("字" * 500) == "字" * 99 + "…" and len(plain("a " * 300)) <= 100
    assert thread_name("-# **a red fox**\nin the snow", "en") == "🎬 a red fox in the snow"
    assert len(thread_name("x" * 500, "zh-CN")) == 100
    assert thread_name("", "en") == "🎬"


def test_progress_and_result_show_the_prompt_literally() -> None:
    prompt = "[free nitro](https://evil.example) # **BIG** @everyone <@&1>"
    embed = progress_payload(view(prompt=prompt), "en").embeds[0]
    assert embed.title == literal(prompt, single_line=True)
    assert active_markup(embed.title or "") == []
    info = ResultInfo(
        generation_id=1,
        prompt=prompt + "\n> quoted",
        model_label="Sora 2",
        seconds=8,
        size="1280x720",
        requester_id=5,
        elapsed=12,
        video_bytes=2**20,
        attached=True,
    )
    content = result_content(info, "en")
    first_line = content.splitlines()[0]
    assert first_line == f"🎬 **{literal(info.prompt, single_line=True)}**"
    assert active_markup(first_line.removeprefix("🎬 **").removesuffix("**")) == []
    failed = failure_sentence(FailureKind.BAD_REQUEST, "prompt '**[x](https://evil.example)**' refused", "en")
    assert "\\*\\*\\[x\\]" in failed


def test_result_keeps_its_link_whole_when_the_prompt_is_long() -> None:
    url = "https://cdn.example.com/" + "v" * 1150
    info = ResultInfo(
        generation_id=7,
        prompt="*_" * 3000,
        model_label="M" * 300,
        seconds=8,
        size="1920x1080",
        requester_id=5,
        elapsed=130,
        video_bytes=120 * 2**20,
        attached=False,
        video_url=url,
        upload_limit=10 * 2**20,
        remix_of_url="https://discord.com/channels/1/2/3",
        combined_prompt=True,
    )
    content = result_content(info, "zh-CN")
    assert len(content) <= 2000
    assert f"<{url}>" in content.splitlines()
    assert content.endswith("服务端链接可能会过期,请尽快下载。")
    heading = content.splitlines()[0]
    assert heading.endswith("…**") and active_markup(heading.removeprefix("🎬 **").removesuffix("**")) == []


@pytest.mark.parametrize("locale", ["en", "zh-CN"])
def test_every_embed_part_fits(locale: str) -> None:
    payload = progress_payload(
        view(prompt="*" * 9000, phase=Phase.FAILED, failure=FailureKind.UPSTREAM, reason="_" * 9000), locale
    )
    embed = payload.embeds[0]
    assert len(embed.title or "") <= 256 and len(embed.description or "") <= 4096
    assert all(len(field.name or "") <= 256 and len(field.value or "") <= 1024 for field in embed.fields)
    assert len(embed.footer.text or "") <= 2048 and len(embed) <= 6000


def test_progress_speaks_the_members_language() -> None:
    embed = progress_payload(view(), "zh-CN").embeds[0]
    assert embed.fields[0].name == "模型"
    assert embed.fields[1].value == "10 秒"
    assert embed.footer.text == "已用时 1 分 15 秒 · #42"
    english = progress_payload(view(elapsed=3725), "en").embeds[0]
    assert english.fields[0].name == "Model" and english.footer.text == "1h 02m elapsed · #42"
