"""Per-tenant admission limits: requests per minute and tokens per minute (token buckets).

Each tenant has two buckets that refill continuously at `limit / 60` per second and hold at most
one minute's worth, so a tenant may burst up to its per-minute limit and then proceeds at the
steady rate. A refused request gets the number of seconds after which the same request would be
admitted, which becomes the `Retry-After` header. All calls happen on the event-loop thread, so
no locking is needed. State is per task: with N tasks behind the load balancer a tenant's
effective limit is about N times the configured one (documented in app/README.md).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class TokenBucket:
    capacity: float
    refill_per_second: float
    level: float = field(init=False)
    updated: float = field(init=False)
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        self.level = self.capacity
        self.updated = self.clock()

    def try_take(self, amount: float) -> float:
        """Take `amount` if it is there now and return 0; else take nothing and return the seconds
        until it would be. One refill (one clock read) per admission: this runs on every request."""
        now = self.clock()
        level = min(self.capacity, self.level + (now - self.updated) * self.refill_per_second)
        self.updated = now
        missing = amount - level
        if missing <= 0:
            self.level = level - amount
            return 0.0
        self.level = level
        return missing / self.refill_per_second


def retry_after_seconds(wait: float) -> int:
    """Whole seconds for Retry-After, rounded up and never 0 (0 invites an immediate retry storm)."""
    return max(1, math.ceil(wait))


class TenantLimits:
    def __init__(
        self,
        requests_per_minute: int,
        tokens_per_minute: int,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.requests_per_minute = requests_per_minute
        self.tokens_per_minute = tokens_per_minute
        self._clock = clock
        self._requests: dict[str, TokenBucket] = {}
        self._tokens: dict[str, TokenBucket] = {}

    def _bucket(self, table: dict[str, TokenBucket], tenant: str, per_minute: int) -> TokenBucket:
        bucket = table.get(tenant)
        if bucket is None:
            bucket = table[tenant] = TokenBucket(per_minute, per_minute / 60.0, clock=self._clock)
        return bucket

    def admit_request(self, tenant: str) -> float:
        """Count one request; returns 0 if admitted, else seconds to wait (nothing is taken)."""
        return self._bucket(self._requests, tenant, self.requests_per_minute).try_take(1)

    def admit_tokens(self, tenant: str, tokens: int) -> float:
        """Spend `tokens`; returns 0 if admitted, else seconds to wait (nothing is spent).

        Callers must first reject requests larger than `tokens_per_minute`, which no wait admits.
        """
        return self._bucket(self._tokens, tenant, self.tokens_per_minute).try_take(tokens)
