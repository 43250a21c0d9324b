"""A synthetic, realistic AMI event stream for the ingest benchmark, served from its own
process over a real TCP socket.

Each call is trace 01 (one answered queue call, 80 messages: Newchannel, Newexten, VarSet,
DeviceStateChange, Queue*, Agent*, Bridge*, Hangup ... exactly as Asterisk 22.5 sent them)
with its Uniqueids, Local channel numbers, caller number and seat rewritten, seats rotating over
1001–1100. The server answers Login and Ping like Asterisk and then writes the calls as fast as
the client reads them.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import os
import re
from pathlib import Path

SHARED = Path(os.environ.get("HOTLINE_SHARED_DIR",
                             Path(__file__).resolve().parent.parent.parent / "shared"))
TRACE = SHARED / "ami-traces" / "01-answered.jsonl"
BANNER = b"Asterisk Call Manager/11.0.0\r\n"


def call_template() -> list[str]:
    """The events of trace 01 after login (everything but responses and SuccessfulAuth)."""
    out = []
    for line in TRACE.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        text: str = rec["text"]
        if rec["dir"] != "received" or not text.startswith("Event: "):
            continue
        if text.startswith(("Event: FullyBooted", "Event: SuccessfulAuth",
                            "Event: QueueMemberAdded")):
            continue
        out.append(text.replace("ActionID: a-2\r\n", ""))
    return out


def build_calls(n_calls: int) -> list[bytes]:
    """``n_calls`` distinct calls, each one bytes blob, seats rotating over 100 seats."""
    template = "".join(call_template())
    calls = []
    for i in range(n_calls):
        base = 1_795_400_000 + i
        seat = 1001 + i % 100
        text = re.sub(r"1795398663\.(\d+)", lambda m: f"{base}.{m.group(1)}", template)
        text = text.replace("-00000000;", f"-{2 * i:08x};").replace("-00000001;",
                                                                     f"-{2 * i + 1:08x};")
        text = text.replace("1001", str(seat)).replace("13800138000", f"138{i % 10**8:08d}")
        text = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
                      f"{i:08x}-0000-4000-8000-000000000000", text)
        calls.append(text.encode())
    return calls


def member_events() -> bytes:
    """QueueMemberAdded for seats 1001–1100 (what Asterisk sends after the QueueAdds)."""
    added = next(json.loads(line)["text"] for line in TRACE.read_text(encoding="utf-8")
                 .splitlines() if "Event: QueueMemberAdded" in line)
    return "".join(added.replace("1001", str(seat)) for seat in range(1001, 1101)).encode()


def events_per_call() -> int:
    return len(call_template())


async def _serve(port_q: mp.Queue, n_events: int, n_calls: int,  # type: ignore[type-arg]
                 rate: float | None) -> None:
    calls = build_calls(n_calls)
    per_call = events_per_call()
    members = member_events()

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(BANNER)
        login = await reader.readuntil(b"\r\n\r\n")
        action_id = re.search(rb"ActionID: (\S+)", login)
        aid = action_id.group(1) if action_id else b""
        writer.write(b"Response: Success\r\nActionID: " + aid +
                     b"\r\nMessage: Authentication accepted\r\n\r\n"
                     b"Event: FullyBooted\r\nPrivilege: system,all\r\nUptime: 1\r\n"
                     b"LastReload: 1\r\nStatus: Fully Booted\r\n\r\n")
        writer.write(members)
        pongs = asyncio.create_task(_answer_pings(reader, writer))
        sent = 0
        i = 0
        loop = asyncio.get_running_loop()
        start = loop.time()
        try:
            while sent < n_events:
                writer.write(calls[i % len(calls)])
                sent += per_call
                i += 1
                if rate is not None:
                    # Paced: one call at a time, on schedule for ``rate`` events/s.
                    await writer.drain()
                    ahead = start + sent / rate - loop.time()
                    if ahead > 0:
                        await asyncio.sleep(ahead)
                elif i % 16 == 0:
                    await writer.drain()
            await writer.drain()
            await pongs
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            pongs.cancel()
            writer.close()

    server = await asyncio.start_server(session, "127.0.0.1", 0)
    port_q.put(server.sockets[0].getsockname()[1])
    async with server:
        await server.serve_forever()


async def _answer_pings(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        msg = await reader.readuntil(b"\r\n\r\n")
        aid = re.search(rb"ActionID: (\S+)", msg)
        if msg.startswith(b"Action: Logoff"):
            writer.write(b"Response: Goodbye\r\nActionID: " + (aid.group(1) if aid else b"")
                         + b"\r\nMessage: Thanks for all the fish.\r\n\r\n")
            return
        writer.write(b"Response: Success\r\nActionID: " + (aid.group(1) if aid else b"") +
                     b"\r\nPing: Pong\r\nTimestamp: 1795399238.850309\r\n\r\n")


def _main(port_q: mp.Queue, n_events: int, n_calls: int,  # type: ignore[type-arg]
          cpu: int | None, rate: float | None) -> None:
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})
    asyncio.run(_serve(port_q, n_events, n_calls, rate))


class FeedServer:
    """The feed in a child process (so it does not share the measured core)."""

    def __init__(self, n_events: int, n_calls: int = 2000, cpu: int | None = None,
                 rate: float | None = None) -> None:
        ctx = mp.get_context("spawn")
        self._q: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
        self._proc = ctx.Process(target=_main, args=(self._q, n_events, n_calls, cpu, rate),
                                 daemon=True)
        self.port = 0

    def __enter__(self) -> FeedServer:
        self._proc.start()
        self.port = int(self._q.get(timeout=60))
        return self

    def __exit__(self, *exc: object) -> None:
        self._proc.terminate()
        self._proc.join(5)
