"""Read a chat gateway's free-text answer as a sequence of signals: queue, progress, task id, links, outcome.

Chat-format gateways report a video job as prose in the assistant message (seeds 000, 001, 003): a JSON echo of
the prompt, `> ID: \\`task_…\\``, `> 排队中...`, `🏃 进度 36..44..`, `✅ 视频生成成功,[点击这里](….mp4)`, or a
`❌ … Content Policy Violation` with no link at all. No two gateways word it the same, so nothing here trusts
one exact sentence: every line is matched against a table of small patterns (`ROWS`, `LINK_HINTS`), and adding
a gateway's phrasing is one row.

What the text amounts to: the video is the best-scoring link (an `.mp4`, a 视频文件 / download / click-here
label, an HTML `<video src>`; previews, thumbnails and 数据预览 / 原始数据 pages never); a failure (❌, 失败,
"failed", "Content Policy Violation", …) announced after that link, or with no link at all, fails the job with
the gateway's own words as the reason (moderation when they say so). The prompt's JSON echo (a ```json fence)
and any echo of the prompt text are never read as a status.

`ProgressParser` is incremental. Complete lines are scanned once; the unfinished last line (where `36..44..`
and `排队中......` grow) is scanned only around the newly arrived text, so a long stream costs linear time.
The whole text is kept verbatim for the remix history.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum, auto
from typing import Any

from bot.upstream.base import classify_error
from bot.upstream.redact import redact
from bot.upstream.types import Event, Failed, Preview, Progress, Queued, Succeeded, TaskId

FLAGS = re.IGNORECASE


class Signal(Enum):
    QUEUED = auto()
    POSITION = auto()  # group 1: place in the queue
    RUNNING = auto()
    PERCENT = auto()  # group 1: a percentage
    STEP = auto()  # group 1: a bare number in a progress line (`🏃 进度 36..44..`)
    TASK_ID = auto()  # group 1
    SID = auto()  # group 1
    SUCCESS = auto()
    FAILURE = auto()


@dataclass(frozen=True, slots=True)
class Row:
    signal: Signal
    pattern: re.Pattern[str]  # matched against the lowercased text
    partial: bool = False  # also looked for in the unfinished last line, for live updates


UPPER_CASE = re.compile(r"(?<!\\)[A-Z]")


def row(signal: Signal, pattern: str, *, partial: bool = False) -> Row:
    if UPPER_CASE.search(pattern):
        raise ValueError(f"rows are matched against lowercased text: write {pattern!r} in lower case")
    return Row(signal, re.compile(pattern), partial)


# One row per phrasing, the more specific first. Rows are tried on every line that is not part of the prompt's
# JSON echo, lowercased, with its URLs blanked so a link can never look like a status. Every row starts at a
# word boundary (a match starting inside a word or a number is dropped, see `glued`), so patterns begin with
# the literal text they look for: that lets the regex engine skip ahead fast (no leading `\b`, no lookbehind).
ROWS: tuple[Row, ...] = (
    row(Signal.POSITION, r"(?:排队位置|队列位置|当前位置|位置|position(?: in queue)?|place in (?:the )?queue)"
        r"\s*(?:[:：#]|is)?\s*(\d{1,6})(?!\d)", partial=True),
    row(Signal.POSITION, r"第\s*(\d{1,6})\s*位", partial=True),
    row(Signal.QUEUED, r"排队|队列中|等待中|⌛|queued\b|in (?:the )?queue\b|waiting\b|pending\b", partial=True),
    row(Signal.RUNNING, r"生成中|处理中|渲染中|正在生成|generating\b|processing\b|rendering\b|in[ _]progress\b|"
        r"running\b|🏃", partial=True),
    row(Signal.PERCENT, r"(\d{1,3}(?:\.\d+)?)\s*[%％]", partial=True),
    row(Signal.PERCENT, r"(?:进度|progress)\s*[:：]?\s*(\d{1,3}(?:\.\d+)?)(?![\d.%％])", partial=True),
    row(Signal.STEP, r"(\d{1,3})\.{2,}", partial=True),
    row(Signal.TASK_ID, r"id\s*[:：]\s*`([^`\s]{4,})`"),
    row(Signal.TASK_ID, r"task[_ -]?id\b[\"']?\s*[:：=]\s*[`\"']?([\w.:-]{4,})"),
    row(Signal.TASK_ID, r"任务\s*(?:id|编号)\s*[:：]\s*`?([\w.:-]{4,})"),
    row(Signal.TASK_ID, r"(task_[a-z0-9_-]{4,})"),
    row(Signal.SID, r"sid\s*[:：]\s*`?([\w-]{4,})"),
    row(Signal.SUCCESS, r"✅|生成完成|生成成功|任务完成|已完成|generated successfully\b|"
        r"generation (?:is )?complete\b|succeeded\b|completed\b|success(?:fully)?\b"),
    row(Signal.FAILURE, r"❌|失败|failed\b|failure\b|error\s*[:：]|错误\s*[:：]|"
        r"content[ _-]?policy[ _-]?violation|违反.{0,8}(?:政策|规定|规则)|内容违规|审核未通过|"
        r"moderation[_ ]blocked|rejected by (?:the )?safety"),
)  # fmt: skip

# Lines that carry a progress counter; only they may use the bare `36..44..` form.
PROGRESS_LINE = re.compile(r"进度|progress|🏃|percent|完成度")
# Keys of the prompt echo inside a ```json fence: the member's own words, never a status.
ECHO_KEYS = re.compile(r"^\s*\"(?:prompt|text|content|description|input|query|message|messages)\"\s*:", FLAGS)
NUMERIC = frozenset({Signal.POSITION, Signal.PERCENT, Signal.STEP})
COUNTERS = frozenset({Signal.PERCENT, Signal.STEP})


WORD_REST = re.compile(r"[a-z0-9_]+")  # after a glued start the rest of that word (an id, a hash) is skipped


def glued(low: str, at: int) -> bool:
    """A match starting at `at` would start inside a word (`unsuccessful`) or a number (`3.5` read from `5`)."""
    if at == 0:
        return False
    first, before = low[at], low[at - 1]
    if "0" <= first <= "9":
        return "0" <= before <= "9" or (before == "." and at > 1 and "0" <= low[at - 2] <= "9")
    if "a" <= first <= "z":
        return "a" <= before <= "z" or "0" <= before <= "9" or before == "_"
    return False


def lowered(text: str) -> str:
    """`text` in lower case, character for character (the rare characters whose lower case is longer stay)."""
    low = text.lower()
    return low if len(low) == len(text) else text


DIGITS = "0123456789０１２３４５６７８９"  # what `\\d` means in the text gateways send: ASCII and full-width


def first_chars(pattern: str) -> frozenset[str] | None:
    """Every character a match of `pattern` can start with, or None when that is not simple to tell."""
    try:
        from re import _parser as sre_parse  # Python >= 3.11
    except ImportError:  # pragma: no cover
        import sre_parse  # type: ignore[no-redef]
    ops = sre_parse

    def of(items: Any) -> set[str] | None:
        for op, av in items:
            if op is ops.LITERAL:
                return {chr(av)}
            if op is ops.IN:
                chars: set[str] = set()
                for kind, value in av:
                    if kind is ops.LITERAL:
                        chars.add(chr(value))
                    elif kind is ops.RANGE and value[1] - value[0] < 256:
                        chars.update(map(chr, range(value[0], value[1] + 1)))
                    elif kind is ops.CATEGORY and value is ops.CATEGORY_DIGIT:
                        chars.update(DIGITS)
                    else:
                        return None
                return chars
            if op is ops.BRANCH:
                union: set[str] = set()
                for branch in av[1]:
                    found = of(branch)
                    if found is None:
                        return None
                    union |= found
                return union
            if op is ops.SUBPATTERN:
                return of(av[3])
            if op in (ops.MAX_REPEAT, ops.MIN_REPEAT) and av[0] > 0:
                return of(av[2])
            if op in (ops.AT, ops.ASSERT, ops.ASSERT_NOT):
                continue  # takes no characters: the next item starts the match
            return None
        return None

    try:
        found = of(sre_parse.parse(pattern).data)
    except Exception:  # an analysis this small must never break the parser: fall back to no shortcut
        return None
    return frozenset(found) if found else None


class RowTable:
    """Rows searched in one pass over a line.

    Sparse text (most lines): a character class of every row's possible first characters finds the next place
    where a row could match (the regex engine skips to it in C); there, the rows that can start with that
    character are tried in table order, the first match counts, and the search goes on after it. Dense text
    (runs of counters), when every row has one capturing group: one alternation of all the rows, whose
    matched group tells the row. When a row's first characters cannot be worked out, the alternation finds
    the places and the rows are tried there in order (slower, same result)."""

    def __init__(self, rows: tuple[Row, ...], *, dense: bool = False) -> None:
        self.rows = rows
        self.grouped: re.Pattern[str] | None = None
        self.by_char: dict[str, tuple[Row, ...]] = {}
        starts = [first_chars(r.pattern.pattern) for r in rows]
        if dense and all(r.pattern.groups == 1 for r in rows):
            self.grouped = re.compile("|".join(r.pattern.pattern for r in rows))
            self.signals = {index: r.signal for index, r in enumerate(rows, start=1)}
            self.finder = self.grouped
        elif all(chars is not None for chars in starts):
            alphabet = sorted(set().union(*[c for c in starts if c is not None]))
            self.finder = re.compile("[" + "".join(re.escape(c) for c in alphabet) + "]")
            self.by_char = {
                c: tuple(r for r, chars in zip(rows, starts, strict=True) if chars is not None and c in chars)
                for c in alphabet
            }
        else:
            self.finder = re.compile("|".join(r.pattern.pattern for r in rows))

    def matches(self, low: str, pos: int = 0) -> list[tuple[Signal, re.Match[str], int]]:
        """(signal, match, number of the group holding the value or 0) for every row match in `low` from `pos`,
        in text order."""
        found: list[tuple[Signal, re.Match[str], int]] = []
        if self.grouped is not None:
            signals = self.signals
            for match in self.grouped.finditer(low, pos):
                if not glued(low, match.start()):
                    index = match.lastindex or 0
                    found.append((signals[index], match, index))
            return found
        search = self.finder.search
        by_char = self.by_char
        hit = search(low, pos)
        while hit is not None:
            at = hit.start()
            after = at + 1
            if glued(low, at):
                after = WORD_REST.match(low, at).end()  # type: ignore[union-attr]  # skip the rest of that word
            else:
                for rule in by_char.get(low[at], self.rows):
                    match = rule.pattern.match(low, at)
                    if match is not None:
                        found.append((rule.signal, match, 1 if rule.pattern.groups else 0))
                        after = max(after, match.end())
                        break
            hit = search(low, after)
        return found


ALL_ROWS = RowTable(ROWS)
PARTIAL_ROWS = RowTable(tuple(r for r in ROWS if r.partial))
LINE_ONLY_ROWS = RowTable(tuple(r for r in ROWS if not r.partial))
COUNTER_ROWS = RowTable(tuple(r for r in ROWS if r.signal in COUNTERS), dense=True)
NUMBER_ROWS = RowTable(tuple(r for r in ROWS if r.partial and r.signal in NUMERIC), dense=True)
DIGIT_LED_ROWS = RowTable(
    tuple(r for r in ROWS if r.signal in COUNTERS and r.pattern.pattern.startswith("(\\d")), dense=True
)
TASK_ID_ROWS = RowTable(tuple(r for r in ROWS if r.signal is Signal.TASK_ID))
PARTIAL_URL = re.compile(r"(?:https?:)?//[^\s)\]<>\"'`]*")


def _blank(match: re.Match[str]) -> str:
    return " " * (match.end() - match.start())


# New text made only of these cannot end a keyword, only complete a number.
PUNCTUATION = ". \t%％:：,，"
NUMBERISH = "0123456789" + PUNCTUATION
DOTTED = "0123456789."
NO_EVENTS: tuple[Event, ...] = ()

# --- links -----------------------------------------------------------------------------------------------


class LinkKind(Enum):
    DATA = auto()  # 数据预览 / 原始数据: the task's data pages, neither the video nor a picture of it
    PREVIEW = auto()
    VIDEO = auto()


@dataclass(frozen=True, slots=True)
class LinkHint:
    kind: LinkKind
    where: str  # "label" | "url" | "context"
    pattern: re.Pattern[str]
    weight: int = 0


def hint(kind: LinkKind, where: str, pattern: str, weight: int = 0) -> LinkHint:
    return LinkHint(kind, where, re.compile(pattern, FLAGS), weight)


LINK_HINTS: tuple[LinkHint, ...] = (
    hint(LinkKind.DATA, "label", r"数据预览|原始数据|\braw\b|source data|\bjson\b|任务详情|task (?:detail|info|page)"),
    hint(LinkKind.PREVIEW, "label", r"预览|缩略图|封面|thumbnail|\bthumb\b|preview|poster|cover"),
    hint(LinkKind.PREVIEW, "url", r"\.(?:png|jpe?g|webp|gif|avif)(?:$|[?#])"),
    hint(LinkKind.VIDEO, "url", r"\.(?:mp4|webm|mov|m4v)(?:$|[?#])", 4),
    hint(LinkKind.VIDEO, "label", r"视频文件|下载|download|\bmp4\b", 3),
    hint(LinkKind.VIDEO, "label", r"点击这里|点击查看|查看视频|观看|播放|click here|\bwatch\b|view (?:the )?video", 2),
    hint(LinkKind.VIDEO, "label", r"视频|video", 1),
    hint(LinkKind.VIDEO, "context", r"视频|video|点击|click", 1),
)
VIDEO_TAG_WEIGHT = 3  # the src of an HTML <video>/<source>
STRONG_VIDEO = 2  # below this, a link counts as the video only when the text also says it succeeded

MD_LINK = re.compile(r"(!?)\[([^\]\n]*)\]\(\s*<?([^\s)>]+)>?(?:\s+[\"'][^\"'\n]*[\"'])?\s*\)")
HTML_TAG = re.compile(r"<(video|source|a|img)\b([^>]*)>(?:([^<]{0,200})</a>)?", FLAGS)
ATTR = re.compile(r"\b(src|href|poster)\s*=\s*(?:\"([^\"]*)\"|'([^']*)'|([^\s>]+))", FLAGS)
BARE_URL = re.compile(r"https?://[^\s<>\"'`()\[\]]+", FLAGS)
URL_TRAILER = ".,;:!?~，。；：！？、）」】"
CONTEXT_CHARS = 24


@dataclass(frozen=True, slots=True)
class Link:
    url: str
    kind: LinkKind
    score: int
    line: int


def classify_link(url: str, label: str, context: str, *, tag: str = "", attr: str = "") -> tuple[LinkKind, int]:
    """(kind, video score) for one link, from its label, its URL, the words around it and its HTML tag."""
    fields = {"label": label, "url": url, "context": context}
    score = 1
    preview = attr == "poster" or tag == "img"
    for h in LINK_HINTS:
        text = fields[h.where]
        if not text or not h.pattern.search(text):
            continue
        if h.kind is LinkKind.DATA:
            return LinkKind.DATA, 0
        if h.kind is LinkKind.PREVIEW:
            preview = True
        else:
            score += h.weight
    if tag in ("video", "source") and attr == "src":
        score += VIDEO_TAG_WEIGHT
    return (LinkKind.PREVIEW if preview else LinkKind.VIDEO), score


def find_links(line: str) -> list[tuple[int, int, str, str, str, str]]:
    """Every link in one line as (start, end, url, label, tag, attr): markdown, HTML tags, then bare URLs."""
    found: list[tuple[int, int, str, str, str, str]] = []
    if "](" in line:
        for match in MD_LINK.finditer(line):
            label = match.group(2)
            found.append((match.start(), match.end(), match.group(3), label, "img" if match.group(1) else "", ""))
    if "<" in line:
        for match in HTML_TAG.finditer(line):
            tag = match.group(1).lower()
            for attr in ATTR.finditer(match.group(2)):
                url = attr.group(2) or attr.group(3) or attr.group(4) or ""
                found.append((match.start(), match.end(), url, match.group(3) or "", tag, attr.group(1).lower()))
    if line.count("://") > sum("://" in f[2] for f in found):  # a URL that is not inside a link yet
        taken = [(start, end) for start, end, *_ in found]
        for match in BARE_URL.finditer(line):
            if not any(start <= match.start() < end for start, end in taken):
                found.append((match.start(), match.end(), match.group().rstrip(URL_TRAILER), "", "", ""))
    return [f for f in found if f[2].lower().startswith(("http://", "https://", "//", "/"))]


# --- the parser ------------------------------------------------------------------------------------------


class ProgressParser:
    """Feed assistant text as it arrives; get the events it reveals; ask for the outcome at the end.

    `ignore` holds text the gateway may echo back (the prompt), which must never be read as a status nor give
    a link; it is matched line by line, whitespace-insensitively (gateways re-space and re-wrap what they echo).
    `secrets` are redacted from a failure's words before they are cut short.

    The unfinished last line is read live, but only with the rows marked `partial` (queue, running, counters)
    and only around each new piece. When a line ends, what the live reading did not cover is read: the other
    rows over the whole line, the live rows over the part that arrived with the line break, and the counters
    over the whole line unless they were read live (a line without a progress word may be the echoed prompt,
    which is blanked out first).
    """

    OVERLAP = 16  # a keyword split across two arrivals is still found
    NUMBER_LOOKBACK = 8  # the longest number a new `..` or `%` can complete: `100.0 %`
    TAIL = 64

    def __init__(self, *, ignore: tuple[str, ...] | list[str] = (), secrets: tuple[str, ...] = ()) -> None:
        self._parts: list[str] = []
        self.size = 0  # characters fed so far
        self._text: str | None = ""
        self._line_parts: list[str] = []
        self._tail = ""  # the last TAIL characters of the unfinished line
        self._line_no = 0
        self._offset = 0  # where the unfinished line starts in the whole text
        self._live = False  # the unfinished line has been read live (it is not in a code fence)
        self._progress_line = False  # ... and it has a progress word, so its counters were read live too
        self._held = False  # ... but a number at its very end was left for later (`3` may become `36`)
        self._fence: str | None = None  # the open code fence's language ("" for a bare ```)
        self._running = False
        lines = {"".join(s.split()) for text in ignore for s in text.splitlines()}
        longest_first = sorted((line for line in lines if len(line) >= 4), key=len, reverse=True)
        self._ignore = tuple((squeezed, echo_pattern(squeezed)) for squeezed in longest_first)
        self._secrets = secrets
        self.queued = False
        self.position: int | None = None
        self.started = False
        self.percent = -1.0
        self.task_id: str | None = None
        self.sid: str | None = None
        self.previews: list[str] = []
        self.videos: list[Link] = []
        self.success_line: int | None = None
        self.failures: list[tuple[int, int]] = []  # (line, offset of that line in the text)

    # --- feeding -------------------------------------------------------------------------------------------

    @property
    def text(self) -> str:
        """Everything fed so far, verbatim."""
        if self._text is None:
            self._text = "".join(self._parts)
            self._parts = [self._text]
        return self._text

    def feed(self, text: str) -> Sequence[Event]:
        """Take the next piece of assistant text; returns the non-terminal events it completed."""
        if not text:
            return NO_EVENTS
        self.size += len(text)
        self._parts.append(text)
        self._text = None
        if "\n" not in text:
            self._line_parts.append(text)
            if self._fence is not None:
                return NO_EVENTS  # nothing live happens inside a code block (the prompt echo, an HTML tag)
            window = self._tail + text
            self._tail = window[-self.TAIL :]
            return self._scan_partial(window, len(window) - len(text))
        first, *middle, last = text.split("\n")
        self._line_parts.append(first)
        events: list[Event] = []
        self._scan_line("".join(self._line_parts), events, len(first))
        for line in middle:
            self._scan_line(line, events, len(line))
        self._line_parts = [last] if last else []
        self._tail = last[-self.TAIL :]
        if last and self._fence is None:
            events.extend(self._scan_partial(last, 0))
        return events

    def finish(self) -> list[Event]:
        """The text is complete: read its unfinished last line too."""
        events: list[Event] = []
        if self._line_parts:
            self._scan_line("".join(self._line_parts), events, 0)
            self._line_parts = []
            self._tail = ""
        return events

    # --- the outcome ---------------------------------------------------------------------------------------

    @property
    def video(self) -> Link | None:
        """The best video link: the highest score, the later one on a tie; weak links only after a success."""
        floor = 1 if self.success_line is not None else STRONG_VIDEO
        best: Link | None = None
        for link in self.videos:
            if link.score >= floor and (best is None or link.score >= best.score):
                best = link
        return best

    @property
    def thumbnail(self) -> str | None:
        return self.previews[-1] if self.previews else None

    def failure_reason(self) -> str | None:
        """The gateway's words about a failure announced after the video link (or with no link), if any."""
        video = self.video
        for line, offset in self.failures:
            if video is None or line >= video.line:
                return clean_reason(redact(self.text[offset : offset + 2000], self._secrets))
        return None

    def outcome(self) -> Succeeded | Failed | None:
        """What the text says happened, or None when it says neither (the caller picks the reason)."""
        reason = self.failure_reason()
        if reason is not None:
            kind = classify_error(None, reason).kind
            return Failed(kind, reason, task_id=self.task_id or self.sid, assistant_text=self.text)
        video = self.video
        if video is not None:
            return Succeeded(
                video.url, task_id=self.task_id or self.sid, thumbnail_url=self.thumbnail, assistant_text=self.text
            )
        return None

    # --- internals -----------------------------------------------------------------------------------------

    @staticmethod
    def _looks_like_json(line: str) -> bool:
        """A line of a JSON document (the prompt echo), as opposed to prose that follows an unclosed fence."""
        first = line[:1]
        return first in ('{', '}', '"', "]", ",") or (first == "[" and not MD_LINK.match(line))

    def _scan_partial(self, window: str, fresh: int, *, complete: bool = False) -> Sequence[Event]:
        """Read the unfinished line around its new text, which starts at `fresh` (or, `complete`, the last part
        of a line that has just ended)."""
        self._live = True
        text = window[fresh:]
        held = self._held
        # A line that ends in a digit may go on (`3` may become `36`): that number is read later.
        self._held = not complete and text[-1:].isdigit()
        if text.strip(NUMBERISH):  # words: the end of a keyword, maybe
            table, start = PARTIAL_ROWS, fresh - self.OVERLAP
            window = lowered(window)
            if "//" in window:  # a link on its way: its letters and digits are never a status
                window = PARTIAL_URL.sub(_blank, window)
            if not self._progress_line and PROGRESS_LINE.search(window):
                self._progress_line = True
        elif held:
            table, start = NUMBER_ROWS, fresh - self.OVERLAP  # the held number's words are further back
        elif self._progress_line and (
            text.strip(PUNCTUATION)
            or window[max(0, fresh - self.NUMBER_LOOKBACK) : fresh].rstrip(PUNCTUATION)[-1:].isdigit()
        ):
            table, start = DIGIT_LED_ROWS, fresh - self.NUMBER_LOOKBACK  # digits, or the `..`/`%` ending them
        else:
            return NO_EVENTS
        seen = fresh - 1 if held else fresh  # matches that ended before the new text were read last time
        events: list[Event] = []
        end = len(window)
        for signal, match, group in table.matches(window, start if start > 0 else 0):
            if match.end() <= seen:
                continue
            if signal in COUNTERS and not self._progress_line:
                continue  # without a progress word, wait for the line to end (it may be the echoed prompt)
            if match.end() == end and not complete and signal in NUMERIC and window[end - 1].isdigit():
                continue  # held
            self._apply(signal, match.group(group) if group else "", events)
        if self._running:
            self._started_running(events)
        return events

    def _scan_line(self, line: str, events: list[Event], unread: int) -> None:
        """Read one complete line; the live reading has not seen its last `unread` characters."""
        line_no = self._line_no
        offset = self._offset
        self._line_no += 1
        self._offset += len(line) + 1
        live = self._live and unread < len(line)
        if live and (unread or self._held):
            events.extend(self._scan_partial(line, len(line) - unread, complete=True))  # what live reading missed
        progress_line = self._progress_line
        self._live = self._progress_line = self._held = False
        body = line.strip().lstrip(">").strip()
        if not body:
            return
        if body.startswith("```"):
            inner, closed, _ = body[3:].partition("```")
            if not closed:  # a fence opens or closes; a one-line ```html <video …>``` does neither
                self._fence = None if self._fence is not None else inner.strip().lower()
                return
            line, live = inner, False
        if self._fence is not None and self._looks_like_json(body):
            if not ECHO_KEYS.match(body):
                for signal, match, group in TASK_ID_ROWS.matches(lowered(body)):
                    self._apply(signal, body[match.start(group) : match.end(group)], events)
            return
        masked = False
        if self._ignore:
            squeezed_line = "".join(line.split())
            for squeezed, pattern in self._ignore:
                if squeezed in squeezed_line:  # cheap test first; the pattern finds where, whatever the spacing
                    line, found = pattern.subn(" ", line)
                    masked = masked or bool(found)
        scan = self._links(line, line_no, events) if ("//" in line or "](" in line or "src" in line) else line
        if live and not masked:
            if progress_line:  # its counters were read live: the other rows need not wade through them
                tables = [(LINE_ONLY_ROWS, without_counter_run(scan), 0)]
            else:
                tables = [(LINE_ONLY_ROWS, scan, 0), (COUNTER_ROWS, scan, 0)]
        else:
            tables = [(ALL_ROWS, scan, 0)]
        progress: bool | None = progress_line or None  # looked up on the first counter, if needed
        for table, text, start in tables:
            low = lowered(text)
            for signal, match, group in table.matches(low, start):
                if signal is Signal.SUCCESS:
                    self.success_line = line_no
                elif signal is Signal.FAILURE:
                    if not self.failures or self.failures[-1][0] != line_no:
                        self.failures.append((line_no, offset))
                elif signal is Signal.STEP:
                    if progress is None:
                        progress = bool(PROGRESS_LINE.search(low))
                    if progress:
                        self._apply(signal, match.group(group), events)
                else:
                    self._apply(signal, text[match.start(group) : match.end(group)] if group else "", events)
        if self._running:
            self._started_running(events)

    def _links(self, line: str, line_no: int, events: list[Event]) -> str:
        """Collect the line's links (as previews, video candidates or neither); returns it without the URLs."""
        scan = line
        for start, end, url, label, tag, attr in find_links(line):
            context = line[max(0, start - CONTEXT_CHARS) : start] + " " + line[end : end + CONTEXT_CHARS]
            kind, score = classify_link(url, label, context, tag=tag, attr=attr)
            if kind is LinkKind.PREVIEW:
                if url not in self.previews:
                    self.previews.append(url)
                    events.append(Preview(url))
            elif kind is LinkKind.VIDEO:
                self.videos.append(Link(url, kind, score, line_no))
            scan = scan.replace(url, " ")
        return scan

    def _started_running(self, events: list[Event]) -> None:
        self._running = False
        if self.percent < 0:
            self.percent = 0.0
            self.started = True
            events.append(Progress(0.0))

    def _apply(self, signal: Signal, value: str, events: list[Event]) -> None:
        if signal is Signal.PERCENT or signal is Signal.STEP:
            number = float(value)
            if number > self.percent and number <= 100.0:
                self.percent = number
                self.started = True
                events.append(Progress(number))
        elif signal is Signal.QUEUED:
            if not self.queued and not self.started:
                self.queued = True
                events.append(Queued(self.position))
        elif signal is Signal.POSITION:
            position = int(value)
            if position != self.position and not self.started:
                self.position = position
                self.queued = True
                events.append(Queued(position))
        elif signal is Signal.RUNNING:
            self._running = True  # reported by _started_running unless the same text also has a number
        elif signal is Signal.TASK_ID:
            if self.task_id is None:
                self.task_id = value
                events.append(TaskId(self.task_id, resumable=False))
        elif signal is Signal.SID and self.sid is None:
            self.sid = value


def echo_pattern(squeezed: str) -> re.Pattern[str]:
    """Matches `squeezed` (text without whitespace) with any whitespace, or none, between its characters."""
    return re.compile(r"\s*".join(re.escape(char) for char in squeezed))


def without_counter_run(line: str) -> str:
    """The line without a trailing run of dotted counters (`36..44..61..`); digits glued to a word stay."""
    head = line.rstrip(DOTTED)
    run = line[len(head) :]
    if ".." not in run:
        return line
    if head[-1:].isalnum():
        head += run[: len(run) - len(run.lstrip("0123456789"))]
    return head


REASON_MARKUP = re.compile(r"^[\s>*#`]+|[*`]+|\[([^\]]*)\]\([^)]*\)", re.MULTILINE)
MAX_REASON = 300


def clean_reason(text: str) -> str:
    """A failure's own words as one short line: quote marks, emphasis and link targets dropped."""
    lines = [REASON_MARKUP.sub(lambda m: m.group(1) or "", line).strip() for line in text.splitlines()]
    reason = " ".join(" ".join(line for line in lines if line).split())
    if len(reason) > MAX_REASON:
        reason = reason[: MAX_REASON - 1].rstrip() + "…"
    return reason or "the gateway reported a failure"


__all__ = [
    "LINK_HINTS",
    "ROWS",
    "Link",
    "LinkHint",
    "LinkKind",
    "ProgressParser",
    "Row",
    "RowTable",
    "Signal",
    "classify_link",
    "clean_reason",
    "find_links",
    "first_chars",
    "row",
]
