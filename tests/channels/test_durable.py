"""The durable gateway against real Redis: idempotent XADD, status, the spool while Redis is
down, in-order forwarding when it returns, and numbering."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from channels.durable import DurableGateway
from channels.errors import IntakeUnavailable
from channels.intake import Contact, Intake, IntakeDraft
from tests.channels.conftest import ConfigFactory, GatewayFactory, free_port
from tests.e2e.conftest import eventually


RECEIVED = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


def draft(n: int, channel: str = "web", phone: str = "13800138000") -> IntakeDraft:
    return IntakeDraft(channel=channel, external_id=f"ext-{n}",  # type: ignore[arg-type]
                       received_at=RECEIVED,
                       contact=Contact(name="张三", phone=phone), title="路灯不亮",
                       text=f"幸福路 {n} 号门口路灯坏了一周")


async def stream_intakes(gw: DurableGateway) -> list[Intake]:
    entries = await gw.stream.redis.xrange(gw.stream.keys.stream)
    return [Intake.from_json(fields[b"intake"]) for _, fields in entries]


async def test_submit_adds_one_entry_with_numbers(channels_config: ConfigFactory,
                                                  gateway_factory: GatewayFactory) -> None:
    # The number carries the day of acceptance on the gateway's clock (injected: the test
    # must not depend on the day it runs).
    async with gateway_factory(channels_config(node_id=7),  # type: ignore[arg-type]
                               clock=lambda: RECEIVED) as gw:
        first = await gw.submit(draft(1))
        second = await gw.submit(draft(2, channel="mail"))
        assert first.where == "redis" and not first.duplicate
        # 受理编号: Beijing date (10:00 local on the 23rd) + node 07 + sequence
        assert re.fullmatch(r"20261123070000\d\d", first.acceptance_no)
        assert int(second.acceptance_no) == int(first.acceptance_no) + 1
        intakes = await stream_intakes(gw)
        assert [i.acceptance_no for i in intakes] == [first.acceptance_no, second.acceptance_no]
        assert intakes[0].text == "幸福路 1 号门口路灯坏了一周"
        status = await gw.status(first.acceptance_no)
        assert status is not None and status.phone == "13800138000"
        assert status.status == "accepted" and status.channel == "web"
        assert await gw.lookup("mail", "ext-2") == second.acceptance_no
        assert await gw.status("2026112307999999") is None


async def test_resubmission_is_one_intake(channels_config: ConfigFactory,
                                          gateway_factory: GatewayFactory) -> None:
    async with gateway_factory(channels_config()) as gw:
        results = await asyncio.gather(*(gw.submit(draft(1)) for _ in range(20)))
        assert len({r.acceptance_no for r in results}) == 1
        assert sum(not r.duplicate for r in results) == 1
        assert len(await stream_intakes(gw)) == 1
        # Same external id on another channel is another intake.
        other = await gw.submit(draft(1, channel="app"))
        assert other.acceptance_no != results[0].acceptance_no
        assert len(await stream_intakes(gw)) == 2


async def test_a_web_id_is_one_intake_per_submitter(channels_config: ConfigFactory,
                                                    gateway_factory: GatewayFactory) -> None:
    """The website's id counts per citizen (the page, so the citizen, chooses it); the app's
    and the mailbox's keys are what they were (``channel:external_id``)."""
    async with gateway_factory(channels_config()) as gw:
        mine = await gw.submit(draft(1))
        again = await gw.submit(draft(1))
        theirs = await gw.submit(draft(1, phone="13900139000"))
        assert again.duplicate and again.acceptance_no == mine.acceptance_no
        assert not theirs.duplicate and theirs.acceptance_no != mine.acceptance_no
        assert len(await stream_intakes(gw)) == 2
        app = await gw.submit(draft(5, channel="app"))
        other_phone = await gw.submit(draft(5, channel="app", phone="13900139000"))
        assert other_phone.duplicate and other_phone.acceptance_no == app.acceptance_no
        assert draft(5, channel="app").idempotency_key == "app:ext-5"
        assert draft(5, channel="mail").idempotency_key == "mail:ext-5"


async def test_redis_down_spools_then_forwards_in_order(
        channels_config: ConfigFactory, gateway_factory: GatewayFactory,
        redis_server_factory) -> None:  # type: ignore[no-untyped-def]
    server = await redis_server_factory()
    async with gateway_factory(channels_config(redis_url=server.url)) as gw:
        before = await gw.submit(draft(0))
        assert before.where == "redis"
        await server.stop()
        accepted = [await gw.submit(draft(n)) for n in range(1, 31)]
        assert {a.where for a in accepted} == {"spool"}
        assert gw.spool.count == 30
        # A re-submission during the outage: one spooled intake, the same number.
        again = await gw.submit(draft(5))
        assert again.duplicate and again.acceptance_no == accepted[4].acceptance_no
        # A double submission gets the same number even now (remembered in memory) ...
        assert (await gw.submit(draft(0))).acceptance_no == before.acceptance_no
        # ... but after a restart (or on another instance) only Redis knew it: a new number
        # for now ...
        gw._recent.clear()
        echo = await gw.submit(draft(0))
        assert echo.where == "spool" and echo.acceptance_no != before.acceptance_no
        # ... the status query still answers from the spool while Redis is away.
        spooled = await gw.status(accepted[0].acceptance_no)
        assert spooled is not None and spooled.phone == "13800138000"

        await server.start()
        await eventually(lambda: gw.spool.count == 0 and gw.redis_up, what="spool drained")
        intakes = await stream_intakes(gw)
        # Every accepted intake exactly once, in acceptance order; the echo is not repeated.
        assert [i.acceptance_no for i in intakes] == (
            [before.acceptance_no] + [a.acceptance_no for a in accepted])
        # The echo's number is an alias of the original.
        aliased = await gw.status(echo.acceptance_no)
        assert aliased is not None and aliased.acceptance_no == before.acceptance_no
        assert gw.counters.aliased == 1
        after = await gw.submit(draft(99))
        assert after.where == "redis"


async def test_spool_survives_a_restart_of_the_service(
        channels_config: ConfigFactory, gateway_factory: GatewayFactory,
        redis_server_factory) -> None:  # type: ignore[no-untyped-def]
    server = await redis_server_factory()
    cfg = channels_config(redis_url=server.url)
    await server.stop()
    async with gateway_factory(cfg) as gw:
        numbers = [(await gw.submit(draft(n))).acceptance_no for n in range(5)]
    # The service stopped with intakes spooled; it starts again, Redis too.
    await server.start()
    async with gateway_factory(cfg) as gw:
        await eventually(lambda: gw.spool.count == 0, what="spool drained after restart")
        assert [i.acceptance_no for i in await stream_intakes(gw)] == numbers
        fresh = await gw.submit(draft(100))
        # Numbers never repeat across restarts (a leased block is skipped, not reused).
        assert fresh.acceptance_no not in numbers and fresh.acceptance_no > numbers[-1]


async def test_redis_and_spool_both_down_refuses(channels_config: ConfigFactory,
                                                 gateway_factory: GatewayFactory,
                                                 tmp_path: Path) -> None:
    cfg = channels_config(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    async with gateway_factory(cfg) as gw:
        assert (await gw.submit(draft(1))).where == "spool"
        await gw.spool.aclose()             # the disk is gone (as good as)
        with pytest.raises(IntakeUnavailable):
            await gw.submit(draft(2))
        assert gw.counters.refused == 1


async def test_a_cancelled_caller_never_turns_the_others_into_false_failures(
        channels_config: ConfigFactory, gateway_factory: GatewayFactory) -> None:
    """Group commit / coalesced adds: the first caller leads the batch; cancelling it (a
    shutdown, a client gone) must not fail the others, whose intakes are durable."""
    cfg = channels_config(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    async with gateway_factory(cfg, background=False) as gw:
        intakes = [Intake(**draft(n).model_dump(), intake_id=f"{n:032x}",
                          acceptance_no=f"2026112301{n:06d}") for n in range(20)]
        first = asyncio.create_task(gw.spool.put(intakes[0]))
        await asyncio.sleep(0)               # first is writing; the others queue behind it
        puts = [asyncio.create_task(gw.spool.put(i)) for i in intakes[1:]]
        await asyncio.sleep(0)
        await first
        await asyncio.sleep(0)               # puts[0] now leads the batch of the other 19
        puts[0].cancel()
        results = await asyncio.gather(*puts, return_exceptions=True)
        assert isinstance(results[0], asyncio.CancelledError)
        assert all(isinstance(r, Intake) for r in results[1:]), results
        assert gw.spool.commits == 2         # 1 + a batch of 19, led by the cancelled one
        assert gw.spool.count == 20          # the leader's own intake was written too


async def test_the_forwarder_survives_any_error_and_goes_on(
        channels_config: ConfigFactory, gateway_factory: GatewayFactory,
        monkeypatch: pytest.MonkeyPatch) -> None:
    async with gateway_factory(channels_config(redis={"retry_seconds": 0.05})) as gw:
        real_head = gw.spool.head
        failures = iter([ValueError("a bug")])

        async def flaky_head(limit: int) -> list[object]:
            for error in failures:
                raise error
            return await real_head(limit)  # type: ignore[return-value]

        monkeypatch.setattr(gw.spool, "head", flaky_head)
        gw.redis_up = False                  # as after an outage: intakes go to the spool
        numbers = [(await gw.submit(draft(n))).acceptance_no for n in range(3)]
        await eventually(lambda: gw.spool.count == 0, what="forwarded after the error")
        assert gw.counters.forward_errors == 1
        assert [i.acceptance_no for i in await stream_intakes(gw)] == numbers
