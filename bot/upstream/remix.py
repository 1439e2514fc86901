"""How a remix goes to the gateway, decided once per job (and kept with it, so a resumed job sends the same).

- history: the chat format gets the earlier turns verbatim (each assistant answer names its video), then the
  change — the gateway's own "continuous modification".
- remix: the videos format's remix endpoint, given the parent's video id.
- combined: every other case — one prompt made of the whole chain, and the member is told so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from bot.upstream.base import UpstreamClient
from bot.upstream.types import ChatTurn, VideoRequest


class RemixStrategy(StrEnum):
    HISTORY = "history"
    REMIX = "remix"
    COMBINED = "combined"


@dataclass(frozen=True, slots=True)
class RemixTurn:
    """One earlier video of the chain, as the gateway knew it."""

    prompt: str
    assistant_text: str | None
    task_id: str | None
    api_format: str | None


def choose_remix_strategy(client: UpstreamClient, chain: Sequence[RemixTurn]) -> RemixStrategy:
    """`chain` runs root → parent (the video being remixed is last)."""
    parent = chain[-1]
    if client.api_format == "chat" and all(turn.assistant_text for turn in chain):
        return RemixStrategy.HISTORY
    if client.supports_remix and parent.task_id and parent.api_format == client.api_format:
        return RemixStrategy.REMIX
    return RemixStrategy.COMBINED


def remix_request(request: VideoRequest, strategy: RemixStrategy, chain: Sequence[RemixTurn]) -> VideoRequest:
    """The request of a remix whose change is `request.prompt`."""
    match strategy:
        case RemixStrategy.HISTORY:
            return replace(request, history=tuple(ChatTurn(turn.prompt, turn.assistant_text or "") for turn in chain))
        case RemixStrategy.REMIX:
            return replace(request, remix_of=chain[-1].task_id)
        case RemixStrategy.COMBINED:
            return replace(request, prompt="\n".join([*(turn.prompt for turn in chain), request.prompt]))


__all__ = ["RemixStrategy", "RemixTurn", "choose_remix_strategy", "remix_request"]
