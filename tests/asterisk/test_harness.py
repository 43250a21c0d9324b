"""The fixtures themselves: a restart with calls up loses the calls and comes back on the same
port, the proxy really cuts and restores the AMI link, the queue_log parser reads Asterisk's
format, and the service runs through the proxy on PostgreSQL."""

from __future__ import annotations

import asyncio

from telephony.link import LinkState
from tests.asterisk.conftest import ServiceFactory
from tests.asterisk.harness import (
    HARNESS_USER,
    AmiProxy,
    Asterisk,
    HarnessAmi,
    QueueLogRow,
    parse_queue_log,
)
from tests.e2e.conftest import eventually


def test_queue_log_rows_are_parsed() -> None:
    text = ("1796687453|1796687453.0|12345|NONE|ENTERQUEUE||13900139000|1\n"
            "1796687456|1796687453.0|12345|seat-1001|COMPLETECALLER|0|3|1\n"
            "1796687457|1796687453")         # a line still being written is left out
    assert parse_queue_log(text) == [
        QueueLogRow(1796687453.0, "1796687453.0", "12345", "NONE", "ENTERQUEUE",
                    ("", "13900139000", "1")),
        QueueLogRow(1796687456.0, "1796687453.0", "12345", "seat-1001", "COMPLETECALLER",
                    ("0", "3", "1"))]


async def test_restart_with_calls_up_loses_them_and_keeps_the_port(
        asterisk: Asterisk, pbx: HarnessAmi) -> None:
    await pbx.action("QueueAdd", Queue="12345", Interface="Local/1001@test-seats/n",
                     MemberName="seat-1001", StateInterface="Local/1001@test-seats")
    await asterisk.aset_global("SEAT_TALK_1001", "30")
    await pbx.originate_caller("13800138000", talk=60)
    await pbx.wait_event(lambda m: m.get("Event") == "AgentConnect", what="answered")
    assert len(await pbx.channels()) == 4              # caller and seat, two Local halves each
    port, pid = asterisk.ami_port, asterisk.pid
    await asterisk.arestart()
    assert asterisk.ami_port == port and asterisk.pid != pid
    assert await asyncio.to_thread(asterisk.running)
    again = await HarnessAmi.connect(asterisk.ami_port, HARNESS_USER, asterisk.harness_secret)
    try:
        assert await again.channels() == []
        # persistentmembers = no: the member the service (here: the test) added is gone too.
        assert [m for m in await again.queue_status() if m["Event"] == "QueueMember"] == []
    finally:
        await again.close()
    rows = await asterisk.aqueue_log()
    assert rows[-1].event == "QUEUESTART"


async def test_the_proxy_cuts_and_restores_the_link(asterisk: Asterisk,
                                                    ami_proxy: AmiProxy) -> None:
    ami = await HarnessAmi.connect(ami_proxy.port, HARNESS_USER, asterisk.harness_secret)
    try:
        assert (await ami.action("Ping"))["Response"] == "Success"
        async with ami_proxy.down():
            await eventually(lambda: ami._task.done(), timeout=5, what="connection closed")
            try:
                await asyncio.open_connection("127.0.0.1", ami_proxy.port)
            except ConnectionRefusedError:
                pass
            else:
                raise AssertionError("the cut proxy accepted a connection")
    finally:
        await ami.close()
    back = await HarnessAmi.connect(ami_proxy.port, HARNESS_USER, asterisk.harness_secret)
    try:
        assert (await back.action("Ping"))["Response"] == "Success"
    finally:
        await back.close()


async def test_service_through_the_proxy_on_postgresql(ami_proxy: AmiProxy,
                                                       service: ServiceFactory) -> None:
    async with service(ami_port=ami_proxy.port, database="postgresql") as svc:
        assert svc.hot.store is not None
        await ami_proxy.cut()
        await eventually(lambda: svc.hot.link.state is not LinkState.READY, timeout=10,
                         what="link down")
        await ami_proxy.restore()
        await eventually(lambda: svc.hot.link.state is LinkState.READY, timeout=15,
                         what="link back")
        assert ami_proxy.connections >= 2
