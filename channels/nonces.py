"""Nonces of signed app requests: each may be used once within its time window.

:class:`RedisNonceStore` keeps them in Redis (``SET <prefix>:nonce:<app>:<nonce> 1 NX EX
ttl``), so every instance of the service sees every nonce. When Redis does not answer, the
app must keep working: nonces are then kept in a bounded in-process
:class:`MemoryNonceStore` (a warning is logged), and those stay checked after Redis returns,
until they expire. While Redis is known to be down it is asked again only every
``retry_seconds``, so requests do not each wait for a connect timeout.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from channels.errors import ChannelError

log = logging.getLogger(__name__)


class NonceStoreFull(ChannelError):
    """The in-process fallback is full (Redis down for long under heavy load): refusing is
    safer than forgetting nonces that could then be replayed."""


class NonceStore(Protocol):
    """Where used nonces are remembered."""

    async def claim(self, app_id: str, nonce: str, ttl_seconds: int) -> bool:
        """Record the nonce; True when it was new, False when it was used before."""
        ...


class MemoryNonceStore:
    """Nonces in this process only, at most ``max_entries`` unexpired ones."""

    def __init__(self, *, max_entries: int = 200_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._max = max_entries
        self._clock = clock
        self._expiry: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._expiry)

    def seen(self, app_id: str, nonce: str) -> bool:
        """Whether this nonce is held and has not expired."""
        if not self._expiry:
            return False
        expiry = self._expiry.get(f"{app_id}:{nonce}")
        return expiry is not None and expiry > self._clock()

    def claim_now(self, app_id: str, nonce: str, ttl_seconds: int) -> bool:
        now = self._clock()
        self._purge(now)
        key = f"{app_id}:{nonce}"
        expiry = self._expiry.get(key)
        if expiry is not None and expiry > now:
            return False
        if len(self._expiry) >= self._max:
            raise NonceStoreFull(f"{len(self._expiry)} nonces held in memory")
        self._expiry[key] = now + ttl_seconds
        return True

    async def claim(self, app_id: str, nonce: str, ttl_seconds: int) -> bool:
        return self.claim_now(app_id, nonce, ttl_seconds)

    def _purge(self, now: float) -> None:
        # Insertion order is expiry order while the TTL does not change; after a change a few
        # expired entries may wait behind a live one, which costs memory, never correctness.
        while self._expiry:
            key, expiry = next(iter(self._expiry.items()))
            if expiry > now:
                break
            del self._expiry[key]


class RedisNonceStore:
    """Nonces in Redis, with :class:`MemoryNonceStore` while Redis does not answer."""

    def __init__(self, redis: Redis, key_prefix: str, *,
                 fallback: MemoryNonceStore | None = None, retry_seconds: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._redis = redis
        self._prefix = f"{key_prefix}:nonce:"
        self._memory = fallback or MemoryNonceStore(clock=clock)
        self._retry = retry_seconds
        self._clock = clock
        self._down_until: float | None = None      # None while Redis answers

    @property
    def degraded(self) -> bool:
        """True while nonces go to the in-process fallback."""
        return self._down_until is not None

    async def claim(self, app_id: str, nonce: str, ttl_seconds: int) -> bool:
        # A nonce used while Redis was down is only in memory: check there first.
        if self._memory.seen(app_id, nonce):
            return False
        if self._down_until is not None and self._clock() < self._down_until:
            return self._memory.claim_now(app_id, nonce, ttl_seconds)
        try:
            created = await self._redis.set(f"{self._prefix}{app_id}:{nonce}", b"1",
                                            nx=True, ex=ttl_seconds)
        except (RedisError, OSError, TimeoutError) as exc:
            if self._down_until is None:
                log.warning("Redis not answering (%s): app request nonces kept in this "
                            "process until it is back", type(exc).__name__)
            self._down_until = self._clock() + self._retry
            return self._memory.claim_now(app_id, nonce, ttl_seconds)
        if self._down_until is not None:
            log.info("Redis answers again: app request nonces back in Redis")
            self._down_until = None
        return bool(created)
