"""Token buckets per client and which address a request counts against."""

from __future__ import annotations

import pytest

from channels.ratelimit import RateLimits, TokenBucketLimiter, client_ip, retry_after_header


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_burst_then_refill_at_the_rate() -> None:
    clock = Clock()
    limiter = TokenBucketLimiter(per_minute=30, burst=3, clock=clock)   # one token per 2 s
    assert [limiter.take("a") for _ in range(3)] == [None, None, None]
    wait = limiter.take("a")
    assert wait == pytest.approx(2.0)
    clock.t += 1.0
    assert limiter.take("a") == pytest.approx(1.0)           # refused takes nothing
    clock.t += 1.0
    assert limiter.take("a") is None
    assert limiter.take("a") is not None
    assert limiter.take("b") is None                           # another client: own bucket


def test_a_long_pause_refills_only_up_to_the_burst() -> None:
    clock = Clock()
    limiter = TokenBucketLimiter(per_minute=60, burst=2, clock=clock)
    limiter.take("a")
    clock.t += 3600
    assert [limiter.take("a") is None for _ in range(3)] == [True, True, False]


def test_zero_per_minute_is_off() -> None:
    limiter = TokenBucketLimiter(per_minute=0, burst=1)
    assert not limiter.enabled
    assert all(limiter.take("a") is None for _ in range(1000))
    assert len(limiter) == 0


def test_memory_is_bounded_and_idle_buckets_go_first() -> None:
    clock = Clock()
    limiter = TokenBucketLimiter(per_minute=60, burst=5, max_buckets=100, clock=clock)
    for i in range(10_000):
        limiter.take(f"10.0.{i // 256}.{i % 256}")
    assert len(limiter) == 100
    # A busy client keeps its (empty) bucket while many others come and go.
    for _ in range(5):
        limiter.take("busy")
    for i in range(99):
        limiter.take(f"new-{i}")
    assert limiter.take("busy") is not None
    # Buckets idle long enough to be full again carry nothing: dropped on the next insert.
    clock.t += 10
    limiter.take("late")
    assert len(limiter) == 1


def test_rate_limits_follow_a_config_change() -> None:
    limits = RateLimits(clock=Clock())
    first = limits.limiter("web", 30, 10)
    assert limits.limiter("web", 30, 10) is first
    assert limits.limiter("web", 60, 10) is not first
    assert limits.limiter("status", 60, 10) is not limits.limiter("web", 60, 10)


@pytest.mark.parametrize(("peer", "xff", "trusted", "expected"), [
    ("203.0.113.9", "1.2.3.4", (), "203.0.113.9"),
    ("203.0.113.9", "1.2.3.4", ("10.0.0.1",), "203.0.113.9"),          # peer not trusted
    ("10.0.0.1", "1.2.3.4", ("10.0.0.1",), "1.2.3.4"),
    ("10.0.0.1", "6.6.6.6, 1.2.3.4", ("10.0.0.0/8",), "1.2.3.4"),       # left part is forged
    ("10.0.0.1", "1.2.3.4, 10.0.0.7", ("10.0.0.0/8",), "1.2.3.4"),      # two proxies
    ("10.0.0.1", "10.0.0.9", ("10.0.0.0/8",), "10.0.0.9"),              # all trusted
    ("10.0.0.1", "not-an-ip", ("10.0.0.0/8",), "10.0.0.1"),
    ("10.0.0.1", None, ("10.0.0.0/8",), "10.0.0.1"),
    ("::1", "2001:db8::5", ("::1",), "2001:db8::5"),
    (None, None, (), "unknown"),
    ("10.0.0.1", "1.2.3.4", ("garbage",), "10.0.0.1"),
])
def test_client_ip(peer: str | None, xff: str | None, trusted: tuple[str, ...],
                   expected: str) -> None:
    assert client_ip(peer, xff, trusted) == expected


def test_retry_after_is_whole_seconds_at_least_one() -> None:
    assert [retry_after_header(s) for s in (0.01, 1.0, 1.2, 59.9)] == ["1", "1", "2", "60"]
