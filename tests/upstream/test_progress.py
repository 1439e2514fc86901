"""The chat progress parser reads every phrasing in the seeds and UPSTREAM.md, however the text is chunked."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pytest

from bot.fake_upstream.chat import SEED_001_PIECES
from bot.upstream.progress import (
    DIGITS,
    ROWS,
    ProgressParser,
    Row,
    RowTable,
    Signal,
    clean_reason,
    find_links,
    first_chars,
    row,
)
from bot.upstream.types import Event, Failed, FailureKind, Preview, Progress, Queued, Succeeded, TaskId

# The assistant message of seed 001's request example (the first, finished turn of the remix chain).
SEED_001_HISTORY_TEXT = (
    '```json\n{\n"prompt": "生成一段高清的,牛马跳舞的视频",\n"orientation": "portrait"\n}\n```\n'
    "> ID: `task_01k7dzptgwf2z87wj2c3t36qk0`\n"
    ">[数据预览(示例)](https://example.com/?task-preview=1)\n|\n[原始数据(示例)](https://example.com/?task-source=1)\n"
    "> 排队中......\n> 生成中.\n>🏃 进度 76..\n> 生成完成 ✅\n> sid: s_68ec8accd80c8191ae1fc957af78caaa\n"
    "[预览图(示例)](https://example.com/?video-preview=1)\n[视频文件(示例)](https://example.com/?video-file=1)"
)
SEED_001_STREAM_TEXT = "".join(piece or "" for piece in SEED_001_PIECES)


@dataclass
class Parsed:
    events: list[Event]
    parser: ProgressParser
    outcome: Succeeded | Failed | None = field(default=None)

    @property
    def percents(self) -> list[float]:
        return [e.percent for e in self.events if isinstance(e, Progress)]

    @property
    def numbers(self) -> list[float]:
        """The percentages read, without the 0 % that announces the start (its timing depends on chunking)."""
        percents = self.percents
        assert 0.0 not in percents[1:]
        return [p for p in percents if p > 0]

    @property
    def queued(self) -> list[int | None]:
        return [e.position for e in self.events if isinstance(e, Queued)]

    @property
    def previews(self) -> list[str]:
        return [e.url for e in self.events if isinstance(e, Preview)]


def parse(pieces: str | list[str], *, ignore: tuple[str, ...] = ()) -> Parsed:
    parser = ProgressParser(ignore=ignore)
    events: list[Event] = []
    for piece in [pieces] if isinstance(pieces, str) else pieces:
        events.extend(parser.feed(piece))
    events.extend(parser.finish())
    return Parsed(events, parser, parser.outcome())


def chunkings(text: str) -> list[list[str]]:
    """The same text whole, line by line, one character at a time and in threes."""
    return [[text], text.splitlines(keepends=True), list(text), [text[i : i + 3] for i in range(0, len(text), 3)]]


# --- the seeds -------------------------------------------------------------------------------------------


def test_seed_001_stream_as_streamed() -> None:
    result = parse([piece or "" for piece in SEED_001_PIECES])
    kinds = [type(e).__name__ for e in result.events]
    assert kinds[:3] == ["TaskId", "Queued", "Progress"]  # the id, 排队中, then 生成中 (started: 0 %)
    assert result.events[0] == TaskId("task_01k7e5w9z5f2d91pekrqy59rwc", resumable=False)
    assert result.percents == [0.0, 36.0, 44.0, 61.0, 69.0, 81.0]
    assert result.previews == ["https://example.com/?video-preview=2"]  # not 数据预览, which is a data page
    assert result.parser.sid == "s_68eca3f141808191b1fd30fea1b731bd"  # not the parent's sid echoed in the JSON
    assert result.outcome == Succeeded(
        "https://example.com/?video-file=2",
        task_id="task_01k7e5w9z5f2d91pekrqy59rwc",
        thumbnail_url="https://example.com/?video-preview=2",
        assistant_text=SEED_001_STREAM_TEXT,
    )


@pytest.mark.parametrize("index", range(4))
def test_seed_001_stream_any_chunking_same_result(index: int) -> None:
    reference = parse(SEED_001_STREAM_TEXT)
    result = parse(chunkings(SEED_001_STREAM_TEXT)[index])
    assert result.outcome == reference.outcome
    assert result.percents == reference.percents
    assert result.parser.text == SEED_001_STREAM_TEXT


def test_seed_001_history_text() -> None:
    result = parse(SEED_001_HISTORY_TEXT)
    assert result.parser.task_id == "task_01k7dzptgwf2z87wj2c3t36qk0"
    assert result.parser.sid == "s_68ec8accd80c8191ae1fc957af78caaa"
    assert result.percents[-1] == 76.0
    assert isinstance(result.outcome, Succeeded)
    assert result.outcome.video_url == "https://example.com/?video-file=1"
    assert result.outcome.thumbnail_url == "https://example.com/?video-preview=1"


def test_seed_000_stages() -> None:
    text = (
        "⌛️ 任务正在队列中,请耐心等待...\n🏃 进度:36.0%\n🏃 进度:88.5%\n"
        "✅ 视频生成成功,[点击这里](https://cdn.example.com/v/abc) 查看视频~~~"
    )
    for pieces in chunkings(text):
        result = parse(pieces)
        assert result.queued == [None]
        assert result.numbers == [36.0, 88.5]
        assert isinstance(result.outcome, Succeeded) and result.outcome.video_url == "https://cdn.example.com/v/abc"


def test_seed_003_english_success_line() -> None:
    result = parse("> ✅ Video generated successfully, [click here](https://oss.heyoos.com/sora/XXXXX83.mp4) "
                   "to view video~~~\n\n")  # fmt: skip
    assert isinstance(result.outcome, Succeeded)
    assert result.outcome.video_url == "https://oss.heyoos.com/sora/XXXXX83.mp4"


# --- every form of each signal ---------------------------------------------------------------------------

PROGRESS_FORMS = [
    ("进度:36.0%\n", [36.0]),
    ("进度：36.0%\n", [36.0]),  # full-width colon
    ("进度 ３６％ … 进度：45％\n", [36.0, 45.0]),  # full-width digits and percent sign
    (">🏃 进度 36..44..61..\n", [36.0, 44.0, 61.0]),
    (">🏃 进度 36...44...\n", [36.0, 44.0]),
    ("36%\n", [36.0]),
    ("45% (generating)\n", [45.0]),
    ("Progress: 36%\n", [36.0]),
    ("progress 12.5 %\n", [12.5]),
    ("> 进度 76\n", [76.0]),
    ("Generating video... 12%\n", [12.0]),
    ("进度 50%\n进度 40%\n进度 60%\n", [50.0, 60.0]),  # never backwards
    ("进度 150%\n", []),  # not a percentage
    ("v1.5 release.. 3..\n", []),  # dotted numbers count only on a progress line
]


@pytest.mark.parametrize(("text", "percents"), PROGRESS_FORMS)
def test_progress_forms(text: str, percents: list[float]) -> None:
    for pieces in chunkings(text):
        assert parse(pieces).numbers == percents, pieces


@pytest.mark.parametrize(
    ("pieces", "percents"),
    [
        (["🏃 进度 3", "6..4", "4.."], [36.0, 44.0]),  # no 3 % or 4 % on the way
        (["🏃 进度:3", "6.", "0%"], [36.0]),
        (["🏃 进度:3.", "5%"], [3.5]),
        (["🏃 进度 ", "36..", "44..", "61..", "69..", "81.."], [36.0, 44.0, 61.0, 69.0, 81.0]),
    ],
)
def test_progress_is_live_but_never_from_half_a_number(pieces: list[str], percents: list[float]) -> None:
    parser = ProgressParser()
    seen: list[float] = []
    for piece in pieces:
        seen += [e.percent for e in parser.feed(piece) if isinstance(e, Progress)]
    assert seen == [0.0, *percents]  # 🏃/进度 announces the start; all live: the counter line never ends


@pytest.mark.parametrize(
    ("text", "queued"),
    [
        ("> 排队中......\n", [None]),
        ("⌛️ 任务正在队列中,请耐心等待...\n", [None]),
        ("Your task is queued.\n", [None]),
        ("in queue, please wait\n", [None]),
        ("排队位置: 3\n", [3]),
        ("> 排队中, 排队位置：12\n", [None, 12]),
        ("queued (position 5)\n", [None, 5]),
        ("Position in queue: 2\nposition: 1\n", [2, 1]),
        ("您前面还有人, 当前第 4 位\n", [4]),
        ("> 生成中\n> 排队中\n", []),  # once running, a queue line is stale
    ],
)
def test_queue_forms(text: str, queued: list[int | None]) -> None:
    assert parse(text).queued == queued
    assert parse(list(text)).queued[-1:] == queued[-1:]


def test_queue_is_reported_before_the_line_ends() -> None:
    parser = ProgressParser()
    assert list(parser.feed("> 排队中")) == [Queued(None)]
    assert not parser.feed("...")


@pytest.mark.parametrize("text", ["> 生成中.", "generating", "Processing your video", "status: in_progress", "🏃"])
def test_running_forms_start_at_zero(text: str) -> None:
    assert parse(text).percents == [0.0]


@pytest.mark.parametrize(
    ("text", "task_id"),
    [
        ("> ID: `task_01k7dzptgwf2z87wj2c3t36qk0`", "task_01k7dzptgwf2z87wj2c3t36qk0"),
        ("task_id: abc123def", "abc123def"),
        ('"task_id": "video_42abc"', "video_42abc"),
        ("任务ID：x-123-y", "x-123-y"),
        ("Created `task_abcdef` for you", "task_abcdef"),
        ("job task_01abcdefgh started", "task_01abcdefgh"),
    ],
)
def test_task_id_forms(text: str, task_id: str) -> None:
    result = parse(text)
    assert result.parser.task_id == task_id
    assert TaskId(task_id) in result.events


def test_task_id_in_a_url_is_not_the_task_id() -> None:
    assert parse("[视频文件](https://cdn.example.com/task_abcdef/out.mp4)").parser.task_id is None


# --- links -----------------------------------------------------------------------------------------------

SUCCESS = "> 生成完成 ✅\n"


@pytest.mark.parametrize(
    ("text", "video", "thumbnail"),
    [
        (SUCCESS + "[预览图](https://x.test/t.png)\n[视频文件](https://x.test/v.mp4)", "https://x.test/v.mp4",
         "https://x.test/t.png"),
        (SUCCESS + "[视频文件](https://x.test/v.mp4)\n[预览图](https://x.test/t.png)", "https://x.test/v.mp4",
         "https://x.test/t.png"),
        (SUCCESS + "![thumbnail](https://x.test/a)\n[download](https://x.test/b)", "https://x.test/b",
         "https://x.test/a"),
        (SUCCESS + "[watch](https://x.test/watch/abc) | [download](https://x.test/files/abc.mp4)",
         "https://x.test/files/abc.mp4", None),
        (SUCCESS + "[download](https://x.test/files/abc.mp4) | [watch online](https://x.test/watch/abc)",
         "https://x.test/files/abc.mp4", None),
        ("```html\n<video src='https://x.test/v.mp4' controls></video>\n```", "https://x.test/v.mp4", None),
        ('<video controls src="https://x.test/play?id=1" poster="https://x.test/p.jpg"></video>',
         "https://x.test/play?id=1", "https://x.test/p.jpg"),
        ("```html <video><source src=https://x.test/s.webm type=video/webm></video>```", "https://x.test/s.webm",
         None),
        ('Done: <a href="https://x.test/d/7">下载视频</a>', "https://x.test/d/7", None),
        ("✅ Your video is ready: https://cdn.x.test/v/abc.mp4.", "https://cdn.x.test/v/abc.mp4", None),
        ("✅ https://cdn.x.test/v/abc", "https://cdn.x.test/v/abc", None),  # weak, but the text says success
        (SUCCESS + "[预览图](https://x.test/?video-preview=2)\n[视频文件](https://x.test/?video-file=2)",
         "https://x.test/?video-file=2", "https://x.test/?video-preview=2"),
    ],
)  # fmt: skip
def test_video_link_forms_and_preference(text: str, video: str, thumbnail: str | None) -> None:
    for pieces in chunkings(text):
        result = parse(pieces)
        assert isinstance(result.outcome, Succeeded), pieces
        assert result.outcome.video_url == video
        assert result.outcome.thumbnail_url == thumbnail


@pytest.mark.parametrize(
    "text",
    [
        SUCCESS + "[预览图](https://x.test/t.png)",  # only a picture
        SUCCESS + "[数据预览](https://x.test/?task-preview=2) | [原始数据](https://x.test/?task-source=2)",
        "see https://x.test/docs for details",  # a weak link with no word of success
    ],
)
def test_no_video_link(text: str) -> None:
    assert parse(text).outcome is None


def test_preview_events_once_per_link() -> None:
    result = parse("[预览图](https://x.test/t.png)\n[thumbnail](https://x.test/t.png)\n![](https://x.test/u.webp)")
    assert result.previews == ["https://x.test/t.png", "https://x.test/u.webp"]


def test_find_links_reports_each_form() -> None:
    line = "[a](https://x.test/1) <video src='https://x.test/2'> https://x.test/3, ok"
    assert [link[2] for link in find_links(line)] == ["https://x.test/1", "https://x.test/2", "https://x.test/3"]


# --- failures --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind", "words"),
    [
        ("> ID: `task_abcd`\n> 生成中.\n> ❌ 生成失败: 服务器繁忙, 请稍后重试", FailureKind.UPSTREAM, "服务器繁忙"),
        ("> ❌ 生成失败: Content Policy Violation\n> 您的提示词可能违反了内容政策", FailureKind.MODERATION,
         "Content Policy Violation"),
        ("> 生成失败，提示词包含违规内容", FailureKind.MODERATION, "违规"),
        ("Video generation failed: the request was rejected by the safety system", FailureKind.MODERATION,
         "safety system"),
        ("❌ failed: render node timeout", FailureKind.UPSTREAM, "render node timeout"),
        ("**Error:** upstream quota exhausted", FailureKind.UPSTREAM, "quota exhausted"),
        ("[视频文件](https://x.test/v.mp4)\n❌ 视频已失效", FailureKind.UPSTREAM, "视频已失效"),  # after the link
    ],
)  # fmt: skip
def test_text_only_failures(text: str, kind: FailureKind, words: str) -> None:
    for pieces in chunkings(text):
        result = parse(pieces)
        assert isinstance(result.outcome, Failed), pieces
        assert result.outcome.kind is kind
        assert words in result.outcome.reason
        assert result.outcome.assistant_text == text


def test_failure_then_retry_then_success_is_a_success() -> None:
    text = "> ❌ 生成失败, 正在重试...\n> 生成中\n> 生成完成 ✅\n[视频文件](https://x.test/v.mp4)"
    result = parse(text)
    assert isinstance(result.outcome, Succeeded) and result.outcome.video_url == "https://x.test/v.mp4"


def test_failure_keeps_the_task_id() -> None:
    result = parse("> ID: `task_01abcdef`\n> ❌ 生成失败")
    assert isinstance(result.outcome, Failed) and result.outcome.task_id == "task_01abcdef"


def test_reason_is_short_and_without_markup() -> None:
    assert clean_reason("> **❌ 失败**: [详情](https://x.test/a)\n> `code 7`") == "❌ 失败: 详情 code 7"
    assert len(clean_reason("失败 " + "很长" * 500)) == 300


# --- the prompt is never a status ------------------------------------------------------------------------

TRICKY_PROMPT = "a failed rocket at 50% speed, queued cars, ✅ https://evil.test/x.mp4 task_id: hijack"


def test_prompt_echoed_in_a_json_fence_is_ignored() -> None:
    echo = f'```json\n{{\n  "prompt": "{TRICKY_PROMPT}",\n  "orientation": "portrait"\n}}\n```\n'
    for pieces in chunkings(echo + "> ID: `task_real01`\n> 生成中."):
        result = parse(pieces)
        assert result.outcome is None
        assert result.parser.task_id == "task_real01"
        assert result.queued == []
        assert result.percents == [0.0]


def test_prompt_echoed_as_plain_text_is_ignored_when_known() -> None:
    for pieces in chunkings(f"> 提示词: {TRICKY_PROMPT}\n> 排队中"):
        result = parse(pieces, ignore=(TRICKY_PROMPT,))
        assert result.outcome is None
        assert result.parser.task_id is None
        assert result.percents == []


def test_unclosed_json_fence_does_not_hide_the_result() -> None:
    text = '```json\n{"prompt": "x"}\n> 生成完成 ✅\n[视频文件](https://x.test/v.mp4)'
    result = parse(text)
    assert isinstance(result.outcome, Succeeded) and result.outcome.video_url == "https://x.test/v.mp4"


# --- scale -----------------------------------------------------------------------------------------------


def test_long_single_line_keeps_text_verbatim_and_reads_the_end() -> None:
    pieces = ["> 排队中"] + ["."] * 50_000 + ["\n>🏃 进度 "] + [f"{n}.." for n in range(1, 100)]
    pieces.append("\n> 生成完成 ✅ [视频文件](https://x.test/v.mp4)")
    result = parse(pieces)
    assert result.parser.text == "".join(pieces)
    assert result.percents[-1] == 99.0
    assert isinstance(result.outcome, Succeeded)


# --- the row tables --------------------------------------------------------------------------------------


def test_rows_must_be_written_in_lower_case() -> None:
    with pytest.raises(ValueError, match="lower case"):
        row(Signal.QUEUED, r"Queued\b")
    assert row(Signal.QUEUED, r"\S+ queued").signal is Signal.QUEUED  # escapes are fine


@pytest.mark.parametrize(
    ("pattern", "chars"),
    [
        (r"排队|queued\b", {"排", "q"}),
        (r"(?:进度|progress)\s*(\d+)", {"进", "p"}),
        (r"(\d{1,3})\.{2,}", set(DIGITS)),
        (r"[%％]", {"%", "％"}),
        (r"\s*x", None),  # may start with anything: no shortcut
    ],
)
def test_first_chars(pattern: str, chars: set[str] | None) -> None:
    assert first_chars(pattern) == (frozenset(chars) if chars is not None else None)


LINES = [
    "> ID: `task_01k7dzptgwf2z87wj2c3t36qk0`", "> 排队中, 排队位置: 3......", ">🏃 进度 36..44..61..", "进度：36.0%",
    "> 生成完成 ✅", "> sid: s_68ec8accd80c8191ae1fc957af78caaa", "❌ 生成失败: content policy violation",
    "unsuccessful, 3.5% done, queued (position 5), task_id: abc123, error: boom", "",
]  # fmt: skip


@pytest.mark.parametrize("rows", [ROWS, tuple(r for r in ROWS if r.partial)])
def test_row_table_shortcut_finds_what_a_plain_alternation_finds(rows: tuple[Row, ...]) -> None:
    fast = RowTable(rows)
    plain = RowTable(rows)
    plain.by_char = {}
    plain.finder = re.compile("|".join(r.pattern.pattern for r in rows))
    for line in LINES:
        low = line.lower()
        assert [(s, m.span()) for s, m, _ in fast.matches(low)] == [(s, m.span()) for s, m, _ in plain.matches(low)]
    assert fast.by_char  # the shortcut is really in use
