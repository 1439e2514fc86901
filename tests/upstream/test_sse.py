"""The SSE decoder gives the same events whatever the chunking, line endings, comments and BOMs."""

from __future__ import annotations

import json
import random

import pytest
from openai._streaming import SSEDecoder as OpenAISSEDecoder

from bot.fake_upstream.chat import seed_001_chunks, seed_001_stream
from bot.upstream.sse import SSEDecoder, SSEEvent, decode_all

SEED_STREAM = seed_001_stream()
SEED_EVENTS = decode_all([SEED_STREAM])


def random_split(data: bytes, rng: random.Random, max_size: int = 40) -> list[bytes]:
    pieces, position = [], 0
    while position < len(data):
        size = rng.choice((1, 1, 2, 3, rng.randint(1, max_size)))
        pieces.append(data[position : position + size])
        position += size
    return pieces


def test_seed_001_stream_decodes_to_its_chunks() -> None:
    chunks = seed_001_chunks()
    assert len(SEED_EVENTS) == len(chunks) + 1
    assert [event.json() for event in SEED_EVENTS[:-1]] == chunks
    assert SEED_EVENTS[-1].is_done
    assert not any(event.is_done for event in SEED_EVENTS[:-1])
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert "> ID: `task_01k7e5w9z5f2d91pekrqy59rwc`" in text and "进度 36..44..61..69..81.." in text


def test_seed_001_stream_split_at_every_byte() -> None:
    for cut in range(len(SEED_STREAM) + 1):
        assert decode_all([SEED_STREAM[:cut], SEED_STREAM[cut:]]) == SEED_EVENTS, cut


@pytest.mark.parametrize("newline", [b"\r\n", b"\r"])
def test_seed_001_stream_with_other_line_endings_split_everywhere_that_matters(newline: bytes) -> None:
    stream = seed_001_stream(newline=newline)
    # Every byte of the first events, and both sides of every line break in the rest.
    cuts = set(range(3000))
    for index, byte in enumerate(stream):
        if byte in b"\r\n":
            cuts.update((index - 1, index, index + 1, index + 2))
    for cut in sorted(c for c in cuts if 0 <= c <= len(stream)):
        assert decode_all([stream[:cut], stream[cut:]]) == SEED_EVENTS, cut


def test_random_multi_splits() -> None:
    rng = random.Random(20261124)
    crlf = seed_001_stream(newline=b"\r\n")
    for _ in range(60):
        assert decode_all(random_split(SEED_STREAM, rng)) == SEED_EVENTS
        assert decode_all(random_split(crlf, rng)) == SEED_EVENTS


def test_one_byte_at_a_time() -> None:
    assert decode_all([bytes([b]) for b in SEED_STREAM]) == SEED_EVENTS


def test_split_inside_a_utf8_character() -> None:
    stream = 'data: {"content":"祥云🏃"}\n\n'.encode()
    index = stream.index("云".encode()) + 1
    decoder = SSEDecoder()
    assert decoder.feed(stream[:index]) == []
    assert decoder.feed(stream[index:]) == [SSEEvent('{"content":"祥云🏃"}')]


def test_mixed_line_endings_and_a_cr_lf_pair_split_across_chunks() -> None:
    stream = b"data: a\r\n\r\ndata: b\r\rdata: c\n\ndata: d\r\n\n"
    expected = [SSEEvent("a"), SSEEvent("b"), SSEEvent("c"), SSEEvent("d")]
    assert decode_all([stream]) == expected
    assert decode_all([b"data: a\r", b"\n\r", b"\ndata: b\r", b"\r", b"data: c\n\ndata: d\r\n\n"]) == expected


def test_lone_cr_then_cr_is_two_line_breaks() -> None:
    assert decode_all([b"data: x\r", b"\r", b"data: y\r", b"\r"]) == [SSEEvent("x"), SSEEvent("y")]


def test_comments_and_keepalives_are_ignored() -> None:
    stream = b": ping\n\n:keep-alive\n\ndata: one\n: ping in the middle\ndata: two\n\n: ping\n\n"
    assert decode_all([stream]) == [SSEEvent("one\ntwo")]
    assert decode_all([b": ping\n\n" * 50]) == []


def test_multi_line_data_joins_with_newlines_and_parses_as_json() -> None:
    pretty = json.dumps(seed_001_chunks()[10], indent=2, ensure_ascii=False)
    stream = "".join(f"data: {line}\n" for line in pretty.splitlines()) + "\n"
    (event,) = decode_all([stream.encode()])
    assert event.data == pretty
    assert event.json() == seed_001_chunks()[10]


def test_event_id_and_retry_fields() -> None:
    stream = (
        b"event: progress\nid: 7\nretry: 1500\ndata: {\"p\": 1}\n\n"
        b"data: second\n\n"
        b"id\ndata: third\n\n"
        b"id: bad\0id\nretry: soon\ndata: fourth\n\n"
    )
    assert decode_all([stream]) == [
        SSEEvent('{"p": 1}', "progress", "7", 1500),
        SSEEvent("second", None, "7", None),  # the last event id is sticky, the type is not
        SSEEvent("third", None, "", None),  # `id` alone resets it
        SSEEvent("fourth", None, "", None),  # an id with NUL and a non-numeric retry are ignored
    ]


def test_field_forms_without_space_or_value_and_unknown_fields() -> None:
    stream = b"data:tight\n\ndata\n\ndata:\ndata:  two spaces\n\nfoo: bar\nnocolon\n\n"
    assert decode_all([stream]) == [SSEEvent("tight"), SSEEvent(""), SSEEvent("\n two spaces")]


def test_event_with_only_a_type_is_not_dispatched() -> None:
    assert decode_all([b"event: ping\n\n"]) == []


@pytest.mark.parametrize("cut", [0, 1, 2, 3, 4])
def test_leading_bom_is_skipped_even_when_split(cut: int) -> None:
    stream = b"\xef\xbb\xbfdata: x\n\n"
    assert decode_all([stream[:cut], stream[cut:]]) == [SSEEvent("x")]
    assert decode_all([bytes([b]) for b in stream]) == [SSEEvent("x")]


def test_a_bom_later_in_the_stream_is_data() -> None:
    assert decode_all([b"data: x\n\n\xef\xbb\xbfdata: y\n\n"]) == [SSEEvent("x")]  # field name "\ufeffdata"


@pytest.mark.parametrize(
    ("stream", "done"),
    [
        (b"data: [DONE]\n\n", True),
        (b"data:[DONE]\n\n", True),
        (b"data: [DONE\n]\n\n", True),  # seed 001's documentation artifact: `]` is an unknown field
        (b"data: [DONE]", True),  # no trailing blank line: finish() still delivers it
        (b'data: {"done": true}\n\n', False),
    ],
)
def test_done_marker_is_recognised(stream: bytes, done: bool) -> None:
    (event,) = decode_all([stream])
    assert event.is_done is done


def test_finish_dispatches_an_unterminated_last_event() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n\ndata: b") == [SSEEvent("a")]
    assert decoder.finish() == [SSEEvent("b")]


def test_invalid_utf8_becomes_replacement_characters() -> None:
    (bad, good) = decode_all([b"data: \xff\xfe junk \xc3\x28\n\ndata: ok\n\n"])
    assert "\ufffd" in bad.data
    assert good == SSEEvent("ok")
    with pytest.raises(ValueError):
        bad.json()


def test_agrees_with_the_openai_sdk_decoder_on_generated_streams() -> None:
    rng = random.Random(7)
    for _ in range(100):
        lines: list[bytes] = []
        for _ in range(rng.randint(1, 12)):
            for _ in range(rng.randint(0, 2)):
                lines.append(rng.choice([b": ping", b"event: e" + str(rng.randint(0, 3)).encode(), b"id: 9"]))
            for _ in range(rng.randint(1, 3)):
                lines.append(b"data: " + json.dumps({"n": rng.random(), "t": "进度"}, ensure_ascii=False).encode())
            lines.append(b"")
        newline = rng.choice([b"\n", b"\r\n", b"\r"])
        stream = newline.join(lines) + newline
        ours = decode_all(random_split(stream, rng))
        theirs = list(OpenAISSEDecoder().iter_bytes(iter(random_split(stream, rng))))
        assert [(e.data, e.event, e.id) for e in ours] == [(e.data, e.event, e.id) for e in theirs]


def test_feed_data_gives_the_same_data_undecoded() -> None:
    rng = random.Random(3)
    stream = seed_001_stream(newline=b"\r\n") + b"event: note\nid: 4\ndata: a\ndata: b\n\n: ping\n\n"
    expected = [event.data.encode() for event in decode_all([stream])]
    for _ in range(20):
        decoder = SSEDecoder()
        data = [item for piece in random_split(stream, rng, 200) for item in decoder.feed_data(piece)]
        assert data == expected
        assert decoder.last_event_id == "4"
