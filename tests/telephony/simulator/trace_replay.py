"""Replay a recorded trace's ``sent`` actions into the simulator over a real socket and
normalise both sides for comparison (volatile values only: ids' epoch part, UUIDs, times)."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from datetime import datetime

from telephony.simulator import PbxSimulator
from tests.conftest import load_trace
from telephony.simulator.replay import RecordedLine as TraceLine

Msg = tuple[tuple[str, str], ...]

# Events whose order the brief asks to compare exactly.
RELEVANT = re.compile(r"^(Queue|Agent|Bridge|Hangup$|Newchannel|OriginateResponse|Dial|Hold|"
                      r"Unhold|DTMF|Confbridge|UserEvent)")
UID_KEYS = re.compile(r"(Uniqueid|Linkedid)$")
VOLATILE = {"EventTV", "SessionTV", "SessionID", "LoginTime", "Timestamp", "LastCall",
            "LastPause", "Uptime", "LastReload"}
SECONDS = {"HoldTime", "TalkTime", "Wait", "LongestHoldTime", "RingTime", "Holdtime"}


def parse(text: str) -> Msg:
    """Raw AMI text → ordered fields."""
    out = []
    for line in text.split("\r\n"):
        if line:
            k, _, v = line.partition(": ")
            out.append((k, v))
    return tuple(out)


def trace_epoch(lines: list[TraceLine]) -> float:
    """Epoch of the trace's t=0 (from SuccessfulAuth's EventTV)."""
    for line in lines:
        m = re.search(r"EventTV: (\S+)", line.text)
        if m:
            return datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f%z").timestamp() - line.t
    raise AssertionError("no EventTV in trace")


class Normaliser:
    """Maps volatile values to stable tokens, per side (first appearance order)."""

    def __init__(self) -> None:
        self.maps: dict[str, dict[str, str]] = {}

    def token(self, kind: str, value: str) -> str:
        table = self.maps.setdefault(kind, {})
        return table.setdefault(value, f"<{kind}{len(table)}>")

    def msg(self, m: Msg) -> Msg:
        out = []
        for k, v in m:
            if UID_KEYS.search(k) and re.fullmatch(r"\d+\.\d+", v):
                v = "E." + v.split(".")[1]
            elif k == "BridgeUniqueid" or k == "BridgeId" and v:
                v = self.token("bridge", v)
            elif k in VOLATILE:
                v = "*"
            elif k.endswith("Address"):
                v = v.rsplit("/", 1)[0] + "/*"
            elif k == "Duration" and re.fullmatch(r"\d\d:\d\d:\d\d", v):
                v = "*"
            elif k in SECONDS and v.isdigit():
                v = "~"  # real seconds: compared separately with ±1 tolerance
            for u in re.findall(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}",
                                v):
                v = v.replace(u, self.token("uuid", u))
            out.append((k, v))
        return tuple(out)


def seconds(m: Msg) -> list[int]:
    """The whole-second fields of a message, in order."""
    return [int(v) for k, v in m if k in SECONDS and v.isdigit()]


def name(m: Msg) -> str:
    return m[0][1] if m and m[0][0] in ("Event", "Response") else ""


async def replay(trace: str, time_scale: float, **options: object) -> tuple[list[Msg], list[Msg]]:
    """Run the trace's actions against a fresh simulator; return (expected, got) messages."""
    lines = load_trace(trace)
    expected = [parse(l.text) for l in lines if l.dir == "received"][1:]  # drop banner
    end = max(l.t for l in lines)
    async with PbxSimulator(port=0, time_scale=time_scale, seed=1,
                            start_epoch=trace_epoch(lines), **options) as pbx:  # type: ignore[arg-type]
        reader, writer = await asyncio.open_connection("127.0.0.1", pbx.port)
        assert await reader.readline() == b"Asterisk Call Manager/11.0.0\r\n"
        got: list[Msg] = []

        async def collect() -> None:
            buf = b""
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    return
                buf += chunk
                *blocks, buf = buf.split(b"\r\n\r\n")
                got.extend(parse(b.decode()) for b in blocks)

        reader_task = asyncio.create_task(collect())
        loop = asyncio.get_running_loop()
        start = loop.time()
        for line in lines:
            if line.dir != "sent":
                continue
            delay = start + line.t / time_scale - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            writer.write(line.text.encode())
            await writer.drain()
        await asyncio.sleep(max(0.0, start + end / time_scale - loop.time()) + 0.05)
        # On a loaded machine the last events of the recording's window can come a little
        # late: give them up to 0.8 s more, stopping as soon as as many call/queue events
        # as the recording has are in (later steps of the simulated calls are seconds away).
        def relevant(msgs: list[Msg]) -> int:
            return sum(1 for m in msgs if RELEVANT.match(name(m)) or m[0][0] == "Response")

        wanted = relevant(expected)
        deadline = loop.time() + 0.8
        while relevant(got) < wanted and loop.time() < deadline:
            await asyncio.sleep(0.02)
        writer.close()
        reader_task.cancel()
        await asyncio.gather(reader_task, return_exceptions=True)
    return expected, got


def compare(expected: list[Msg], got: list[Msg]) -> dict[str, object]:
    """What differs: relevant-order sequence, multisets, whole seconds (±1 allowed)."""
    ne, ng = Normaliser(), Normaliser()
    exp = [ne.msg(m) for m in expected]
    gt = [ng.msg(m) for m in got]
    rel_e = [m for m in exp if RELEVANT.match(name(m)) or m[0][0] == "Response"]
    rel_g = [m for m in gt if RELEVANT.match(name(m)) or m[0][0] == "Response"]
    missing = Counter(exp) - Counter(gt)
    extra = Counter(gt) - Counter(exp)
    secs_e = [seconds(m) for m in expected if RELEVANT.match(name(m)) and seconds(m)]
    secs_g = [seconds(m) for m in got if RELEVANT.match(name(m)) and seconds(m)]
    return {"relevant_equal": rel_e == rel_g, "rel_e": rel_e, "rel_g": rel_g,
            "missing": missing, "extra": extra,
            "seconds_ok": len(secs_e) == len(secs_g) and all(
                len(a) == len(b) and all(abs(x - y) <= 1 for x, y in zip(a, b))
                for a, b in zip(secs_e, secs_g)), "secs": (secs_e, secs_g)}
