"""Rate limits as Discord applies them: fixed windows per route bucket and top-level resource, plus a global cap.

Windows run on the double's clock, so `advance()` resets them; `Reset-After`/`retry_after` are the remaining
seconds of the window on that clock (which is also what the real client, sleeping in real time, needs to wait).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field, replace

from .clock import Clock


@dataclass(frozen=True)
class BucketRule:
    name: str
    limit: int
    window: float

    @property
    def hash(self) -> str:
        return hashlib.sha1(self.name.encode()).hexdigest()[:32]


# Observed limits (DISCORD.md); Discord says not to hard-code them, so the bot must read the headers.
DEFAULT_RULES: dict[str, BucketRule] = {
    rule.name: rule
    for rule in (
        BucketRule("message_create", 5, 5.0),  # POST/PATCH channel messages, shared per channel
        BucketRule("message_delete", 5, 1.0),
        BucketRule("webhook", 5, 2.0),  # webhooks incl. interaction followups and @original, per id+token
        BucketRule("interaction_callback", 50, 1.0),  # per interaction (id + token), not shared by all of them
        BucketRule("thread_create", 10, 10.0),
        BucketRule("commands", 10, 20.0),  # bulk overwrite; generous but present
        BucketRule("default", 50, 1.0),
    )
}
GLOBAL_LIMIT = 50
GLOBAL_WINDOW = 1.0


@dataclass
class _Window:
    start: float
    count: int = 0


@dataclass
class Injected429:
    method: str
    route: str
    retry_after: float
    times: int
    is_global: bool = False
    scope: str = "user"


@dataclass
class Decision:
    allowed: bool
    headers: dict[str, str] = field(default_factory=dict)
    retry_after: float = 0.0
    is_global: bool = False
    scope: str = "user"
    bucket: str | None = None

    def body(self) -> dict[str, object]:
        return {"message": "You are being rate limited.", "retry_after": self.retry_after, "global": self.is_global}


class RateLimiter:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.rules: dict[str, BucketRule] = dict(DEFAULT_RULES)
        self.global_limit = GLOBAL_LIMIT
        self.global_window = GLOBAL_WINDOW
        self._windows: dict[tuple[str, str], _Window] = {}
        self._global: _Window | None = None
        self._injected: list[Injected429] = []

    def configure(self, name: str, *, limit: int | None = None, window: float | None = None) -> None:
        rule = self.rules[name]
        self.rules[name] = replace(rule, limit=limit or rule.limit, window=window or rule.window)
        for key in [k for k in self._windows if k[0] == name or k[0].startswith(f"{name} ")]:
            del self._windows[key]

    def inject(self, method: str, route: str, *, retry_after: float, times: int, is_global: bool) -> None:
        scope = "global" if is_global else "user"
        self._injected.append(Injected429(method.upper(), route, retry_after, times, is_global, scope))

    def _take_injected(self, method: str, route: str) -> Injected429 | None:
        for entry in self._injected:
            if entry.method == method and entry.route == route and entry.times > 0:
                entry.times -= 1
                return entry
        return None

    def _window(self, key: tuple[str, str], length: float, now: float) -> _Window:
        window = self._windows.get(key)
        if window is None or now >= window.start + length:
            window = self._windows[key] = _Window(start=now)
        return window

    def check(self, method: str, route: str, rule_name: str, major: str, *, counts_global: bool) -> Decision:
        now = self.clock.monotonic()
        rule = self.rules[rule_name]
        if rule.name == "default":  # every other route has its own bucket, like on Discord
            rule = replace(rule, name=f"default {method} {route}")
        injected = self._take_injected(method, route)
        if injected is not None:
            retry = round(injected.retry_after, 3)
            headers = {"Retry-After": str(max(1, math.ceil(retry))), "X-RateLimit-Scope": injected.scope}
            if injected.is_global:
                headers["X-RateLimit-Global"] = "true"
            else:
                headers.update(self._headers(rule, remaining=0, reset_after=retry))
            return Decision(False, headers, retry, injected.is_global, injected.scope, rule.hash)

        if counts_global:
            if self._global is None or now >= self._global.start + self.global_window:
                self._global = _Window(start=now)
            if self._global.count >= self.global_limit:
                retry = _positive(self._global.start + self.global_window - now)
                headers = {
                    "Retry-After": str(max(1, math.ceil(retry))),
                    "X-RateLimit-Global": "true",
                    "X-RateLimit-Scope": "global",
                }
                return Decision(False, headers, retry, True, "global", None)

        window = self._window((rule.name, major), rule.window, now)
        reset_after = _positive(window.start + rule.window - now)
        if window.count >= rule.limit:
            headers = self._headers(rule, remaining=0, reset_after=reset_after)
            headers.update({"Retry-After": str(max(1, math.ceil(reset_after))), "X-RateLimit-Scope": "user"})
            return Decision(False, headers, reset_after, False, "user", rule.hash)
        window.count += 1
        if counts_global and self._global is not None:
            self._global.count += 1
        headers = self._headers(rule, remaining=rule.limit - window.count, reset_after=reset_after)
        return Decision(True, headers, 0.0, False, "user", rule.hash)

    def _headers(self, rule: BucketRule, *, remaining: int, reset_after: float) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(rule.limit),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": f"{self.clock.time() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": rule.hash,
        }


def _positive(seconds: float) -> float:
    return max(0.001, round(seconds, 3))


__all__ = ["DEFAULT_RULES", "BucketRule", "Decision", "RateLimiter"]
