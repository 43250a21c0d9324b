"""Per-client rate limits for the public endpoints: a token bucket per client IP.

A bucket holds up to ``burst`` tokens and gains ``per_minute / 60`` tokens a second; each
request takes one. A bucket that has been idle long enough to be full again is the same as no
bucket at all, so buckets are kept in least-recently-used order and the oldest are dropped when
there are more than ``max_buckets`` (memory stays bounded whatever the number of addresses).

:func:`client_ip` decides which address a request counts against: the TCP peer, unless the
peer is one of the trusted reverse proxies, in which case the right-most untrusted address of
``X-Forwarded-For`` (the left part is whatever the client chose to write there).
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class TokenBucketLimiter:
    """Token buckets keyed by client (IP); ``per_minute == 0`` lets everything through."""

    def __init__(self, *, per_minute: int, burst: int, max_buckets: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if per_minute < 0 or burst < 1 or max_buckets < 1:
            raise ValueError("per_minute >= 0, burst >= 1 and max_buckets >= 1 required")
        self.per_minute = per_minute
        self.burst = burst
        self._rate = per_minute / 60.0            # tokens per second
        self._max_buckets = max_buckets
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.per_minute > 0

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str) -> float | None:
        """Take a token for ``key``: None when allowed, else the seconds until one is free
        (for ``Retry-After``)."""
        if not self.enabled:
            return None
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(float(self.burst), now)
            self._buckets[key] = bucket
            self._evict()
        else:
            self._buckets.move_to_end(key)
            bucket.tokens = min(float(self.burst),
                                bucket.tokens + (now - bucket.updated) * self._rate)
            bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return (1.0 - bucket.tokens) / self._rate

    def _evict(self) -> None:
        # Oldest first: the least recently used buckets are the likeliest to be full again,
        # i.e. to carry no information. Also drop any bucket that is provably full.
        full_after = self.burst / self._rate
        now = self._clock()
        while self._buckets:
            key, oldest = next(iter(self._buckets.items()))
            if len(self._buckets) <= self._max_buckets and now - oldest.updated < full_after:
                break
            del self._buckets[key]


class RateLimits:
    """The limiters of one HTTP surface, rebuilt when the configured figures change (a config
    reload applies new limits at once; the buckets start full again)."""

    def __init__(self, *, max_buckets: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._max_buckets = max_buckets
        self._clock = clock
        self._limiters: dict[str, TokenBucketLimiter] = {}

    def limiter(self, name: str, per_minute: int, burst: int) -> TokenBucketLimiter:
        """The limiter called ``name`` with these figures."""
        current = self._limiters.get(name)
        if current is None or (current.per_minute, current.burst) != (per_minute, burst):
            current = TokenBucketLimiter(per_minute=per_minute, burst=burst,
                                         max_buckets=self._max_buckets, clock=self._clock)
            self._limiters[name] = current
        return current


@lru_cache(maxsize=32)
def trusted_networks(proxies: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    """Parse the configured proxies (addresses or CIDR networks); unparsable ones are ignored
    here (config validation is the place to reject them)."""
    networks: list[IPNetwork] = []
    for entry in proxies:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            continue
    return tuple(networks)


def _is_trusted(address: str, networks: Iterable[IPNetwork]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip().strip("[]"))
    except ValueError:
        return False
    return any(ip in net for net in networks)


def client_ip(peer: str | None, forwarded_for: str | None,
              trusted_proxies: tuple[str, ...]) -> str:
    """The address a request counts against (see the module docstring)."""
    address = peer or "unknown"
    if not trusted_proxies or not forwarded_for:
        return address
    networks = trusted_networks(trusted_proxies)
    if not _is_trusted(address, networks):
        return address
    # Walk from the proxy backwards: each trusted hop vouches for the one before it.
    for hop in reversed(forwarded_for.split(",")):
        hop = hop.strip()
        if not hop:
            continue
        if not _is_trusted(hop, networks):
            try:
                return str(ipaddress.ip_address(hop.strip("[]")))
            except ValueError:
                return address          # garbage from a trusted proxy: count the proxy
        address = hop
    return address


def retry_after_header(seconds: float) -> str:
    """``Retry-After`` is whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))
