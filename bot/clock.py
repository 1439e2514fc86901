"""One injectable clock, so tests can jump ahead (quota periods, token expiry, stalls) without waiting."""

from __future__ import annotations

import time
from datetime import UTC, datetime


class Clock:
    """Real time. `time()` is epoch seconds; `monotonic()` never goes backwards."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.time(), UTC)


class FakeClock(Clock):
    """Real time plus an offset that tests move forward with `advance()`."""

    def __init__(self, start: float | None = None) -> None:
        self._shift = 0.0 if start is None else start - time.time()  # moves the wall clock only
        self._advanced = 0.0

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("time only moves forward")
        self._advanced += seconds

    def time(self) -> float:
        return time.time() + self._shift + self._advanced

    def monotonic(self) -> float:
        return time.monotonic() + self._advanced


__all__ = ["Clock", "FakeClock"]
