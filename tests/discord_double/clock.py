"""The double's notion of time: a tiny protocol any clock can satisfy (``bot.clock.FakeClock`` does)."""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """Epoch seconds (`time`) and a never-decreasing counter (`monotonic`), both in seconds."""

    def time(self) -> float: ...

    def monotonic(self) -> float: ...


@runtime_checkable
class AdvanceableClock(Clock, Protocol):
    def advance(self, seconds: float) -> None: ...


class ManualClock:
    """Real time plus an offset moved forward with `advance()`; the default clock of a standalone double."""

    def __init__(self) -> None:
        self._offset = 0.0

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("time only moves forward")
        self._offset += seconds

    def time(self) -> float:
        return time.time() + self._offset

    def monotonic(self) -> float:
        return time.monotonic() + self._offset


__all__ = ["AdvanceableClock", "Clock", "ManualClock"]
