"""Rate limits for the hub's HTTP entrances (Open311, webhooks, the admin console).

A thin layer over the ``limits`` library (the engine behind slowapi and Flask-Limiter): a moving
window per key, in this process's memory. Keys are chosen by the caller — the client an API key
belongs to, or the peer address for anonymous reads and failed logins — so one noisy client
cannot starve the others, and guessing keys or passwords is slowed down to a crawl.

In memory is deliberate: each adapter process guards its own door, limits reset on restart, and
nothing personal is stored (keys are client names or addresses, never request content). Behind a
reverse proxy, put the same limits there too: this is the last line, not the only one.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse, storage, strategies


def parse_limit(text: str) -> RateLimitItem:
    """``"60/minute"``, ``"10 per second"``, …; ValueError with the accepted form otherwise."""
    try:
        return parse(text)
    except ValueError:
        raise ValueError(f"rate limit {text!r}: write it as '<count>/<second|minute|hour|day>', e.g. '60/minute'") from None


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    retry_after_s: int
    """Whole seconds until the next request under the limit is allowed (0 when allowed)."""


class RateLimiter:
    """Named limits, each a moving window per key::

        limiter = RateLimiter({"submit": "60/minute", "auth-failure": "20/minute"})
        if not limiter.hit("submit", client).allowed: ...  # answer 429 with Retry-After
    """

    def __init__(self, limits: dict[str, str]) -> None:
        self.limits = {name: parse_limit(text) for name, text in limits.items()}
        self._storage = storage.MemoryStorage()
        self._limiter = strategies.MovingWindowRateLimiter(self._storage)

    def hit(self, name: str, key: str) -> Verdict:
        """Count one request of ``key`` against limit ``name``; refused requests do not count."""
        item = self.limits[name]
        if self._limiter.hit(item, name, key):
            return Verdict(True, 0)
        return Verdict(False, self.retry_after(name, key))

    def test(self, name: str, key: str) -> bool:
        """True when one more request of ``key`` would be allowed (nothing counted)."""
        return self._limiter.test(self.limits[name], name, key)

    def retry_after(self, name: str, key: str) -> int:
        stats = self._limiter.get_window_stats(self.limits[name], name, key)
        return max(1, math.ceil(stats.reset_time - time.time()))
