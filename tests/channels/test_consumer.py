"""The intake consumer against real Redis: handling and acknowledging, retries, the dead
letter with its reason, taking over a dead consumer's entries, safe trimming."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from channels.consumer import IntakeConsumer
from channels.durable import DurableGateway, redis_client
from channels.intake import Intake
from channels.tasks import cancel_and_wait
from config.channels import ChannelsConfig
from tests.channels.conftest import ConfigFactory, GatewayFactory
from tests.channels.test_durable import draft
from tests.e2e.conftest import eventually


@asynccontextmanager
async def consuming(cfg: ChannelsConfig, gw: DurableGateway, name: str,
                    handler: Callable[[Intake], object], **options: float) -> AsyncIterator[
                        IntakeConsumer]:
    redis = redis_client(cfg, block_seconds=1)
    consumer = IntakeConsumer(redis, gw.stream.keys, name, handler,  # type: ignore[arg-type]
                              block_ms=100, **options)  # type: ignore[arg-type]
    task = asyncio.create_task(consumer.run())
    try:
        yield consumer
    finally:
        await cancel_and_wait(task)
        await redis.aclose()


def _none_pending(gw: DurableGateway) -> Callable[[], object]:
    async def check() -> bool:
        return await pending(gw) == 0
    return check


async def pending(gw: DurableGateway) -> int:
    summary = await gw.stream.redis.xpending(gw.stream.keys.stream, gw.stream.keys.group)
    return int(summary["pending"])


async def test_handles_each_intake_once_and_acknowledges(
        channels_config: ConfigFactory, gateway_factory: GatewayFactory) -> None:
    cfg = channels_config()
    seen: list[str] = []

    async def handle(intake: Intake) -> None:
        seen.append(intake.acceptance_no)

    async with gateway_factory(cfg) as gw, consuming(cfg, gw, "r1", handle):
        numbers = [(await gw.submit(draft(n))).acceptance_no for n in range(50)]
        await eventually(lambda: len(seen) == 50, what="50 handled")
        assert seen == numbers
        # Acknowledged once per batch, right after its last handler returned.
        await eventually(_none_pending(gw), what="all acknowledged")


async def test_failing_intake_is_retried_then_dead_lettered_with_reason(
        channels_config: ConfigFactory, gateway_factory: GatewayFactory) -> None:
    cfg = channels_config()
    attempts: dict[str, int] = {}

    async def handle(intake: Intake) -> None:
        attempts[intake.external_id] = attempts.get(intake.external_id, 0) + 1
        if intake.external_id == "ext-1":
            raise ValueError("单位编码不存在: 999")

    async with gateway_factory(cfg) as gw, consuming(cfg, gw, "r1", handle, max_deliveries=3,
                                                     claim_idle_seconds=0.05) as consumer:
        await gw.submit(draft(0))
        await gw.submit(draft(1))
        await gw.submit(draft(2))
        await eventually(lambda: consumer.counters.dead_lettered == 1, what="dead letter")
        assert attempts == {"ext-0": 1, "ext-1": 3, "ext-2": 1}
        dead = await gw.stream.redis.xrange(gw.stream.keys.dead_letter)
        assert len(dead) == 1
        fields = dead[0][1]
        assert fields[b"reason"].decode() == "ValueError: 单位编码不存在: 999"
        assert fields[b"deliveries"] == b"3"
        assert Intake.from_json(fields[b"intake"]).external_id == "ext-1"
        await eventually(_none_pending(gw), what="all acknowledged")
        assert not await gw.stream.redis.hlen(gw.stream.keys.failures)


async def test_unreadable_entry_goes_to_dead_letter_and_the_rest_flows(
        channels_config: ConfigFactory, gateway_factory: GatewayFactory) -> None:
    cfg = channels_config()
    seen: list[str] = []

    async def handle(intake: Intake) -> None:
        seen.append(intake.external_id)

    async with gateway_factory(cfg) as gw, consuming(cfg, gw, "r1", handle) as consumer:
        redis = gw.stream.redis
        await redis.xadd(gw.stream.keys.stream, {"intake": '{"channel": "fax"}'})
        await redis.xadd(gw.stream.keys.stream, {"something": "else"})
        await gw.submit(draft(7))
        await eventually(lambda: seen == ["ext-7"], what="good intake handled")
        await eventually(lambda: consumer.counters.dead_lettered == 2, what="2 dead letters")
        reasons = [f[b"reason"].decode()
                   for _, f in await redis.xrange(gw.stream.keys.dead_letter)]
        assert reasons[0].startswith("bad_payload: ") and "error(s)" in reasons[0]
        assert reasons[1] == "bad_payload: no intake field"


async def test_entries_of_a_dead_consumer_are_claimed(
        channels_config: ConfigFactory, gateway_factory: GatewayFactory) -> None:
    cfg = channels_config()
    seen: list[str] = []
    stuck = asyncio.Event()

    async def hang(intake: Intake) -> None:
        stuck.set()
        await asyncio.sleep(3600)            # dies holding the entry

    async def handle(intake: Intake) -> None:
        seen.append(intake.external_id)

    async with gateway_factory(cfg) as gw:
        for n in range(5):
            await gw.submit(draft(n))
        async with consuming(cfg, gw, "dies", hang, batch=10):
            await stuck.wait()
        # "dies" read a batch and never acknowledged it.
        assert await pending(gw) == 5
        async with consuming(cfg, gw, "lives", handle, claim_idle_seconds=0.2) as consumer:
            await eventually(lambda: len(seen) == 5, what="claimed and handled")
            assert sorted(seen) == [f"ext-{n}" for n in range(5)]
            assert consumer.counters.claimed == 5
        assert await pending(gw) == 0


async def test_group_is_made_again_after_redis_lost_the_stream(
        channels_config: ConfigFactory, gateway_factory: GatewayFactory) -> None:
    cfg = channels_config()
    seen: list[str] = []

    async def handle(intake: Intake) -> None:
        seen.append(intake.external_id)

    async with gateway_factory(cfg) as gw, consuming(cfg, gw, "r1", handle):
        await gw.submit(draft(1))
        await eventually(lambda: seen == ["ext-1"])
        await gw.stream.redis.delete(gw.stream.keys.stream)   # a Redis without persistence
        await gw.submit(draft(2))
        await eventually(lambda: seen == ["ext-1", "ext-2"], what="consumer recovered")


async def test_trim_keeps_every_unacknowledged_entry(
        channels_config: ConfigFactory, gateway_factory: GatewayFactory) -> None:
    cfg = channels_config()
    async with gateway_factory(cfg, background=False) as gw:
        stream = gw.stream
        for n in range(30):
            await gw.submit(draft(n))
        # No consumer has read anything: nothing may go, whatever the length limit.
        assert await stream.trim(max_len=5) == 0
        # A consumer reads 20 and acknowledges only the first 10.
        reply = await stream.redis.xreadgroup(stream.keys.group, "c", {stream.keys.stream: ">"},
                                              count=20)
        ids = [i for i, _ in reply[0][1]]
        await stream.redis.xack(stream.keys.stream, stream.keys.group, *ids[:10])
        removed = await stream.trim(max_len=5)
        assert removed == 10
        left = [i for i, _ in await stream.redis.xrange(stream.keys.stream)]
        assert left[0] == ids[10] and len(left) == 20
        # Everything acknowledged: now the length limit rules.
        await stream.redis.xack(stream.keys.stream, stream.keys.group, *ids[10:])
        rest = await stream.redis.xreadgroup(stream.keys.group, "c", {stream.keys.stream: ">"})
        await stream.redis.xack(stream.keys.stream, stream.keys.group,
                                *[i for i, _ in rest[0][1]])
        await stream.trim(max_len=5)
        assert await stream.redis.xlen(stream.keys.stream) == 5


async def test_trim_works_through_an_excess_larger_than_one_page(
        channels_config: ConfigFactory, gateway_factory: GatewayFactory) -> None:
    async with gateway_factory(channels_config(), background=False) as gw:
        stream = gw.stream
        for n in range(60):
            await gw.submit(draft(n))
        reply = await stream.redis.xreadgroup(stream.keys.group, "c", {stream.keys.stream: ">"})
        await stream.redis.xack(stream.keys.stream, stream.keys.group,
                                *[i for i, _ in reply[0][1]])
        # An excess of 55 read 7 ids at a time.
        assert await stream.trim(max_len=5, page=7) == 55
        assert await stream.redis.xlen(stream.keys.stream) == 5


async def test_batches_go_to_the_batch_handler_and_a_failing_batch_is_retried_one_by_one(
        channels_config: ConfigFactory, gateway_factory: GatewayFactory) -> None:
    cfg = channels_config()
    batches: list[list[str]] = []
    singles: list[str] = []

    async def handle_batch(intakes: list[Intake]) -> None:
        batches.append([i.external_id for i in intakes])
        if any(i.external_id == "ext-13" for i in intakes):
            raise RuntimeError("one bad intake spoils the transaction")

    async def handle_one(intake: Intake) -> None:
        if intake.external_id == "ext-13":
            raise RuntimeError("still bad")
        singles.append(intake.external_id)

    async with gateway_factory(cfg) as gw:
        for n in range(10):
            await gw.submit(draft(n))
        redis = redis_client(cfg, block_seconds=1)
        consumer = IntakeConsumer(redis, gw.stream.keys, "r1", handle_one,
                                  batch_handler=handle_batch, block_ms=100, max_deliveries=1)
        try:
            assert await consumer.read_once() == 10
            assert batches == [[f"ext-{n}" for n in range(10)]] and singles == []
            for n in range(10, 15):
                await gw.submit(draft(n))
            assert await consumer.read_once() == 5
            # The failed batch went one by one: the good four handled, the bad one
            # dead-lettered (max_deliveries=1), nothing left pending.
            assert singles == ["ext-10", "ext-11", "ext-12", "ext-14"]
            assert consumer.counters.dead_lettered == 1
            await eventually(_none_pending(gw), what="all acknowledged")
        finally:
            await redis.aclose()
