"""Benchmark: intakes per second through the intake stream, the Redis path and the spool path.

Redis path (Redis at 127.0.0.1:6379, a throwaway key prefix deleted afterwards)::

    32 submitters ── DurableGateway.submit ── idempotent XADD (Lua) ──▶ stream
    (this process, pinned to CPU 0)                                      │
    IntakeConsumer: XREADGROUP, Intake.from_json, handler, XACK  ◀───────┘
    (a separate process, pinned to CPU 1, so the two do not share one core)

``value`` = N / (first submit → N-th acknowledgement), timed on CLOCK_MONOTONIC, which the
two processes share. Submit-only throughput and per-submit latency (p50/p99, as a channel
adapter awaiting ``submit`` sees it, 32 in flight) come from the same run. Redis itself is
not pinned: it is the machine's server, shared with both processes.

Reference, same run, same payload bytes, same concurrency: bare redis-py asyncio, 32 tasks
doing ``XADD`` of the pre-serialised payload, and a bare consumer process doing
``XREADGROUP COUNT 100`` + one ``XACK`` per batch (no parsing, no per-entry ack). In the
JSON, ``reference`` is that bare end-to-end rate and ``ratio`` = ``value`` / ``reference``;
``submit_*`` and ``consumer_*`` split the two sides.

Spool path (Redis down: the gateway points at a closed port)::

    32 submitters ── DurableGateway.submit ── IntakeSpool.put (SQLite WAL, synchronous=FULL,
    group commit) ── then a private redis-server is started on that port and
    DurableGateway.forward_once is called until the spool is empty (forwarding rate).

Reference for the spool: bare ``sqlite3`` in one thread, the same table, WAL +
``synchronous=FULL``, the same payloads: (a) one ``INSERT`` + ``COMMIT`` per intake, (b)
batches of ``--concurrency`` intakes per commit (what group commit could reach at best).
``spool_reference`` is (b); (a) is printed and in the JSON as ``spool_reference_per_commit``.

The payloads are realistic: ~200 Chinese characters of complaint text, mixed channels (web,
app, mail, phone, voicemail) with contact, location and call details.

Usage: ``python bench/stream.py [--n 20000] [--concurrency 32]``. Needs Redis on
127.0.0.1:6379 and ``redis-server`` (Debian) for the spool forwarding. Last line: JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import shutil
import socket
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Self

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis.asyncio as aioredis

from channels.consumer import IntakeConsumer
from channels.durable import NO_METADATA_LOOKUP, open_gateway, redis_client
from channels.intake import CHANNELS, CallDetails, Contact, Intake, IntakeDraft, Location
from channels.keys import StreamKeys
from channels.stream import IntakeStream
from channels.tasks import cancel_and_wait
from config.channels import ChannelsConfig

SHARED_REDIS = "redis://127.0.0.1:6379/0"
SERVICE_CPU = 0
CONSUMER_CPU = 1
CONSUMER_TIMEOUT = 120.0           # seconds the consumer process waits for all N at most

# The spool's table (channels/spool.py), for the bare SQLite reference.
SPOOL_TABLE = """
CREATE TABLE spool (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    idem TEXT NOT NULL UNIQUE,
    acceptance_no TEXT NOT NULL UNIQUE,
    intake_id TEXT NOT NULL,
    payload TEXT NOT NULL
)
"""

# --- payloads ------------------------------------------------------------------------------

DISTRICTS = ("上城区", "拱墅区", "西湖区", "滨江区", "萧山区", "余杭区", "临平区", "钱塘区")
STREETS = ("湖滨街道", "北山街道", "文新街道", "长河街道", "城厢街道", "五常街道", "南苑街道")
ROADS = ("幸福路", "文一西路", "解放路", "体育场路", "延安路", "莫干山路", "江南大道", "建国北路")
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高"
GIVEN = ("伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "涛")
TOPICS = (
    ("路灯不亮", "小区门口的路灯已经坏了一个多星期，晚上出行很不方便，老人和孩子经过时容易摔倒。"),
    ("夜间施工噪音", "附近工地每天晚上十点以后还在施工，噪音很大，严重影响周边居民休息，孩子第二天还要上学。"),
    ("垃圾清运不及时", "小区垃圾桶已经满了三天没有人清运，天气热，气味很大，还招来了很多苍蝇和老鼠。"),
    ("占道经营", "路口每天早上有流动摊贩占道经营，堵塞人行道，行人只能走机动车道，存在安全隐患。"),
    ("供暖温度不达标", "家里暖气片温度一直上不去，室内温度只有十四度左右，联系物业多次都说在处理。"),
    ("自来水浑浊", "这两天家里自来水发黄浑浊，有明显异味，不敢饮用，周边几栋楼的住户都反映同样问题。"),
    ("违章停车", "消防通道上长期停放私家车，物业劝说无效，一旦发生火情后果不堪设想。"),
    ("井盖缺失", "人行道上有一个井盖缺失，只用几块砖头围着，夜里看不清楚，非常危险。"),
    ("公交线路调整", "公交线路调整以后我们小区附近没有站点了，上班要多走二十分钟，希望恢复原来的站点。"),
    ("物业乱收费", "物业公司今年突然提高停车管理费，没有召开业主大会，也没有公示收费依据。"),
)
TAILS = (
    "希望有关部门尽快派人来看一下，及时处理。",
    "之前已经打过电话反映，但一直没有得到答复，请相关部门重视。",
    "请尽快协调解决，谢谢！",
    "恳请政府部门督促整改，给居民一个满意的答复。",
    "如需了解情况可以随时联系我，我白天一般都在家。",
)


def citizen_text(rng: random.Random, target: int = 200) -> tuple[str, str]:
    """A title and ~``target`` characters of complaint text."""
    title, body = rng.choice(TOPICS)
    road = rng.choice(ROADS)
    parts = [f"您好，我是{road}{rng.randint(1, 400)}号附近的居民。", body]
    while sum(map(len, parts)) < target - 20:
        parts.append(rng.choice(TOPICS)[1] if rng.random() < 0.3 else rng.choice(TAILS))
    parts.append(rng.choice(TAILS))
    return title, "".join(parts)


def make_drafts(n: int, seed: int = 12345) -> list[IntakeDraft]:
    """``n`` distinct drafts, channels mixed as a hotline sees them (validated, as an adapter
    would hand them over)."""
    rng = random.Random(seed)
    run = uuid.uuid4().hex[:8]
    start = datetime.now(UTC)
    weights = {"web": 35, "app": 30, "mail": 10, "phone": 20, "voicemail": 5}
    channels = rng.choices(CHANNELS, weights=[weights[c] for c in CHANNELS], k=n)
    drafts = []
    for i, channel in enumerate(channels):
        title, text = citizen_text(rng)
        name = rng.choice(SURNAMES) + rng.choice(GIVEN) + (rng.choice(GIVEN) if i % 2 else "")
        phone = f"1{rng.choice('3578')}{rng.randint(0, 999_999_999):09d}"
        district = rng.choice(DISTRICTS)
        location = Location(district=district, street=rng.choice(STREETS),
                            address=f"{district}{rng.choice(ROADS)}{rng.randint(1, 400)}号")
        contact: Contact
        call = None
        source = ""
        if channel == "web":
            contact = Contact(name=name, phone=phone)
            source = f"http:web 10.{i % 250}.{i % 199}.{i % 97}"
        elif channel == "app":
            contact = Contact(name=name, phone=phone, app_user_id=f"u{rng.randint(1, 10**9)}")
            source = "app:zhejiangliban"
        elif channel == "mail":
            contact = Contact(name=name, email=f"citizen{i}@example.cn")
            source = f"imap://mail.example.cn/INBOX;UIDVALIDITY=1;UID={i}"
        elif channel == "phone":
            contact = Contact(phone=phone)
            call = CallDetails(call_id=f"1764{i:09d}.{i}", seat_id=f"{1001 + i % 100}",
                               queue="12345", agent_summary=text)
            text = ""
        else:
            contact = Contact(phone=phone)
            call = CallDetails(
                call_id=f"1764{i:09d}.{i}", queue="12345",
                recording=f"/var/spool/asterisk/voicemail/default/12345/INBOX/msg{i:04d}.wav")
        drafts.append(IntakeDraft(
            channel=channel, external_id=f"bench-{run}-{i}",
            received_at=start + timedelta(milliseconds=i), contact=contact, title=title,
            text=text, location=location, source_ref=source, call=call))
    return drafts


def stream_payloads(drafts: Sequence[IntakeDraft]) -> list[Intake]:
    """The intakes as the gateway would build them (other numbers, same sizes)."""
    day = datetime.now(UTC).strftime("%Y%m%d")
    return [Intake.model_construct(**dict(d), intake_id=uuid.uuid4().hex,
                                   acceptance_no=f"{day}99{i % 1_000_000:06d}")
            for i, d in enumerate(drafts)]


# --- helpers -------------------------------------------------------------------------------

def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bench_config(url: str, prefix: str, spool: Path) -> ChannelsConfig:
    return ChannelsConfig.model_validate({
        "redis": {"url": url, "key_prefix": prefix},
        "spool": {"path": str(spool)},
    })


async def delete_prefix(url: str, prefix: str) -> int:
    """Delete every key under ``{prefix}:``; returns how many."""
    client = aioredis.Redis.from_url(url, socket_timeout=10, **NO_METADATA_LOOKUP)
    deleted = 0
    try:
        batch: list[bytes] = []
        async for key in client.scan_iter(match="{" + prefix + "}:*", count=5000):
            batch.append(key)
            if len(batch) >= 5000:
                deleted += int(await client.unlink(*batch))
                batch = []
        if batch:
            deleted += int(await client.unlink(*batch))
    finally:
        await client.aclose()
    return deleted


@dataclass
class Run:
    """Timings of one submission run."""

    started: float = 0.0              # time.monotonic() of the first submit
    finished: float = 0.0             # of the last submit's return
    latencies: list[float] = field(default_factory=list)

    def rate(self, n: int) -> float:
        return n / (self.finished - self.started)


async def drive(items: Sequence[Any], concurrency: int,
                call: Callable[[Any], Awaitable[object]]) -> Run:
    """``call`` every item with ``concurrency`` calls in flight; time each one."""
    run = Run()
    position = 0

    async def worker() -> None:
        nonlocal position
        clock = time.perf_counter
        while position < len(items):
            item = items[position]
            position += 1
            t = clock()
            await call(item)
            run.latencies.append(clock() - t)

    run.started = time.monotonic()
    async with asyncio.TaskGroup() as tg:
        for _ in range(concurrency):
            tg.create_task(worker())
    run.finished = time.monotonic()
    return run


# --- the consumer process ------------------------------------------------------------------

class ConsumerProcess:
    """``bench/stream.py --role consume-ours|consume-bare`` in its own process, pinned to
    ``CONSUMER_CPU``. It prints ``ready`` once its group exists, then one JSON line."""

    def __init__(self, role: str, prefix: str, n: int) -> None:
        self.args = [sys.executable, str(Path(__file__).resolve()), "--role", role,
                     "--prefix", prefix, "--n", str(n)]
        self.proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Self:
        self.proc = await asyncio.create_subprocess_exec(
            *self.args, stdout=asyncio.subprocess.PIPE)
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 30)
        if line.strip() != b"ready":
            raise RuntimeError(f"consumer process did not start: {line!r}")
        return self

    async def result(self) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), CONSUMER_TIMEOUT + 10)
        await self.proc.wait()
        return dict(json.loads(line))

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


async def consume_ours(prefix: str, n: int) -> dict[str, Any]:
    """The service's IntakeConsumer with a handler that only counts."""
    cfg = bench_config(SHARED_REDIS, prefix, Path("unused"))
    keys = StreamKeys.from_config(cfg)
    redis = redis_client(cfg, block_seconds=1)
    seen: set[str] = set()
    acked = 0
    first = last = 0.0
    done = asyncio.Event()

    async def handle(intake: Intake) -> None:
        seen.add(intake.intake_id)

    consumer = IntakeConsumer(redis, keys, "bench-router", handle)
    ack = consumer._ack

    async def timed_ack(entry_ids: list[str]) -> None:   # instrumentation: each XACK batch
        nonlocal acked, first, last
        await ack(entry_ids)
        if not entry_ids:
            return
        acked += len(entry_ids)
        last = time.monotonic()
        if acked == len(entry_ids):
            first = last
        if acked >= n:
            done.set()

    consumer._ack = timed_ack  # type: ignore[method-assign]
    try:
        await IntakeStream(redis, keys, 60).ensure_group()
        print("ready", flush=True)
        task = asyncio.create_task(consumer.run())
        with suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), CONSUMER_TIMEOUT)
        await cancel_and_wait(task)
    finally:
        await redis.aclose()
    return {"acked": acked, "distinct": len(seen), "first_ack": first, "last_ack": last}


async def consume_bare(prefix: str, n: int) -> dict[str, Any]:
    """Bare redis-py: XREADGROUP COUNT 100 BLOCK 1000, one XACK per batch."""
    stream, group = "{" + prefix + "}:bare", "bare"
    redis = aioredis.Redis.from_url(SHARED_REDIS, socket_timeout=5, **NO_METADATA_LOOKUP)
    acked = 0
    first = last = 0.0
    deadline = time.monotonic() + CONSUMER_TIMEOUT
    try:
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
        print("ready", flush=True)
        while acked < n and time.monotonic() < deadline:
            reply: Any = await redis.xreadgroup(group, "bare-1", {stream: ">"}, count=100,
                                                block=1000)
            ids = [entry_id for _, entries in reply or () for entry_id, _ in entries]
            if ids:
                await redis.xack(stream, group, *ids)
                acked += len(ids)
                last = time.monotonic()
                if not first:
                    first = last
    finally:
        await redis.aclose()
    return {"acked": acked, "distinct": acked, "first_ack": first, "last_ack": last}


# --- Redis path ----------------------------------------------------------------------------

async def redis_path(drafts: Sequence[IntakeDraft], concurrency: int,
                     tmp: Path) -> dict[str, Any]:
    """Ours: DurableGateway.submit → IntakeConsumer (other process) acknowledging."""
    prefix = f"benchstream{uuid.uuid4().hex[:10]}"
    cfg = bench_config(SHARED_REDIS, prefix, tmp / "spool-redis-path.db")
    n = len(drafts)
    try:
        async with open_gateway(cfg) as gw:
            if not gw.redis_up:
                raise RuntimeError("Redis at 127.0.0.1:6379 does not answer")
            async with ConsumerProcess("consume-ours", prefix, n) as consumer:
                run = await drive(drafts, concurrency, gw.submit)
                got = await consumer.result()
            counters = gw.counters
            if counters.to_redis != n:
                raise RuntimeError(f"{counters.to_redis} of {n} went to Redis ({counters})")
    finally:
        await delete_prefix(SHARED_REDIS, prefix)
    return outcome(run, got, n)


def outcome(run: Run, got: dict[str, Any], n: int) -> dict[str, Any]:
    """End-to-end and consumer-side rates of one Redis-path run."""
    if got["acked"] < n:
        raise RuntimeError(f"the consumer acknowledged {got['acked']} of {n} in "
                           f"{CONSUMER_TIMEOUT:.0f} s")
    return {"run": run, "consumer": got, "e2e": n / (got["last_ack"] - run.started),
            "drain": n / (got["last_ack"] - got["first_ack"])}


async def redis_reference(payloads: Sequence[Intake], concurrency: int) -> dict[str, Any]:
    """Bare redis-py XADD of the same payload bytes → bare XREADGROUP + XACK."""
    prefix = f"benchstream{uuid.uuid4().hex[:10]}"
    stream = "{" + prefix + "}:bare"
    n = len(payloads)
    data = [p.to_json().encode() for p in payloads]
    redis = aioredis.Redis.from_url(SHARED_REDIS, socket_timeout=5, **NO_METADATA_LOOKUP)
    try:
        async with ConsumerProcess("consume-bare", prefix, n) as consumer:
            run = await drive(data, concurrency,
                              lambda body: redis.xadd(stream, {"intake": body}))
            got = await consumer.result()
    finally:
        await redis.aclose()
        await delete_prefix(SHARED_REDIS, prefix)
    return outcome(run, got, n)


# --- spool path ----------------------------------------------------------------------------

class PrivateRedis:
    """A throwaway redis-server (no persistence) on ``port``, in ``directory``."""

    def __init__(self, port: int, directory: Path) -> None:
        self.port = port
        self.dir = directory
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        exe = await asyncio.to_thread(shutil.which, "redis-server")
        if exe is None:
            raise RuntimeError("redis-server not found: apt-get install redis-server")
        self.proc = await asyncio.create_subprocess_exec(
            exe, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
            "--save", "", "--appendonly", "no", "--daemonize", "no",
            "--logfile", str(self.dir / "redis.log"))
        client = aioredis.Redis.from_url(f"redis://127.0.0.1:{self.port}/0",
                                         socket_timeout=0.5, **NO_METADATA_LOOKUP)
        try:
            for _ in range(200):
                try:
                    if await client.ping():
                        return
                except (OSError, aioredis.ConnectionError):
                    await asyncio.sleep(0.02)
        finally:
            await client.aclose()
        raise RuntimeError(f"redis-server on port {self.port} did not start")

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        self.proc = None


async def spool_path(drafts: Sequence[IntakeDraft], concurrency: int,
                     tmp: Path) -> dict[str, Any]:
    """Redis down: submit into the spool; then Redis returns and forward_once drains it."""
    port = free_port()                     # nothing listens there yet: Redis is "down"
    prefix = f"benchstream{uuid.uuid4().hex[:10]}"
    cfg = bench_config(f"redis://127.0.0.1:{port}/0", prefix, tmp / "spool.db")
    server = PrivateRedis(port, tmp)
    n = len(drafts)
    try:
        # background=False: no forwarder racing the drain below (it would only retry every
        # retry_seconds while Redis is down anyway).
        async with open_gateway(cfg, background=False) as gw:
            if gw.redis_up:
                raise RuntimeError(f"something answers on port {port}")
            commits: list[int] = []
            write = gw.spool._write

            async def counted(batch: Any) -> None:   # instrumentation: group-commit sizes
                commits.append(len(batch))
                await write(batch)

            gw.spool._write = counted  # type: ignore[method-assign]
            run = await drive(drafts, concurrency, gw.submit)
            if gw.counters.to_spool != n or gw.spool.count != n:
                raise RuntimeError(f"spooled {gw.spool.count} of {n} ({gw.counters})")
            await server.start()            # Redis "returns"
            started = time.monotonic()
            moved = 0
            while (step := await gw.forward_once()) > 0:
                moved += step
            forward_seconds = time.monotonic() - started
            length = int(await gw.stream.redis.xlen(gw.stream.keys.stream))
            if moved != n or length != n or gw.spool.count:
                raise RuntimeError(f"forwarded {moved}, stream holds {length}, "
                                   f"spool keeps {gw.spool.count} of {n}")
    finally:
        await server.stop()
    return {"run": run, "commits": commits, "forward": n / forward_seconds,
            "forward_seconds": forward_seconds}


def sqlite_reference(path: Path, rows: Sequence[tuple[str, str, str, str]],
                     batch: int) -> float:
    """Bare sqlite3 (WAL, synchronous=FULL): ``batch`` inserts per commit; rows/s.
    Runs in a thread (it blocks)."""
    db = sqlite3.connect(path, isolation_level="DEFERRED")
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute(SPOOL_TABLE)
        db.commit()
        started = time.perf_counter()
        for i in range(0, len(rows), batch):
            db.executemany("INSERT INTO spool (idem, acceptance_no, intake_id, payload) "
                           "VALUES (?, ?, ?, ?)", rows[i:i + batch])
            db.commit()
        return len(rows) / (time.perf_counter() - started)
    finally:
        db.close()


async def spool_reference(payloads: Sequence[Intake], concurrency: int, tmp: Path,
                          per_commit_n: int) -> tuple[float, float]:
    rows = [(p.idempotency_key, p.acceptance_no, p.intake_id, p.to_json()) for p in payloads]
    batched = await asyncio.to_thread(sqlite_reference, tmp / "ref-batched.db", rows,
                                      concurrency)
    single = await asyncio.to_thread(sqlite_reference, tmp / "ref-single.db",
                                     rows[:per_commit_n], 1)
    return batched, single


# --- main ----------------------------------------------------------------------------------

async def main(args: argparse.Namespace) -> None:
    if args.role == "consume-ours":
        print(json.dumps(await consume_ours(args.prefix, args.n)), flush=True)
        return
    if args.role == "consume-bare":
        print(json.dumps(await consume_bare(args.prefix, args.n)), flush=True)
        return
    logging.basicConfig(level=logging.ERROR)    # the spool phase warns by design
    n, conc = args.n, args.concurrency
    drafts = await asyncio.to_thread(make_drafts, n)
    payloads = await asyncio.to_thread(stream_payloads, drafts)
    sizes = [len(p.to_json().encode()) for p in payloads]
    chars = [len(d.text or (d.call.agent_summary if d.call else "") or "") for d in drafts]
    print(f"{n:,} intakes, {conc} submitters; payload {statistics.mean(sizes):,.0f} B mean "
          f"(text {statistics.mean(chars):.0f} chars); service on CPU {SERVICE_CPU}, "
          f"consumer process on CPU {CONSUMER_CPU}, Redis unpinned", flush=True)
    tmp = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="bench-stream-"))
    try:
        ref = await redis_reference(payloads, conc)
        ours = await redis_path(drafts, conc, tmp)
        spool_drafts = await asyncio.to_thread(make_drafts, n, 54321)
        spool = await spool_path(spool_drafts, conc, tmp)
        ref_batched, ref_single = await spool_reference(payloads, conc, tmp, args.per_commit_n)
    finally:
        await asyncio.to_thread(shutil.rmtree, tmp, True)

    run, sp = ours["run"], spool["run"]
    p50, p99 = percentile(run.latencies, 50) * 1000, percentile(run.latencies, 99) * 1000
    sp50, sp99 = percentile(sp.latencies, 50) * 1000, percentile(sp.latencies, 99) * 1000
    rp50 = percentile(ref["run"].latencies, 50) * 1000
    rp99 = percentile(ref["run"].latencies, 99) * 1000
    commits = spool["commits"]
    rows = [
        ("redis: submit → XADD (ours)", run.rate(n), f"p50 {p50:.2f} ms, p99 {p99:.2f} ms"),
        ("redis: bare XADD (reference)", ref["run"].rate(n),
         f"p50 {rp50:.2f} ms, p99 {rp99:.2f} ms"),
        ("redis: submit → ack (ours)", ours["e2e"],
         (f"acked {ours['consumer']['acked']:,}, distinct {ours['consumer']['distinct']:,}; "
          f"consumer first→last ack {ours['drain']:,.0f}/s")),
        ("redis: XADD → ack (reference)", ref["e2e"],
         f"acked {ref['consumer']['acked']:,}; consumer first→last ack {ref['drain']:,.0f}/s"),
        ("spool: submit → fsync'd spool (ours)", sp.rate(n),
         (f"p50 {sp50:.2f} ms, p99 {sp99:.2f} ms; {len(commits):,} commits, "
          f"{statistics.mean(commits):.1f}/commit")),
        (f"spool: bare sqlite3, {conc}/commit (ref)", ref_batched, "one thread"),
        ("spool: bare sqlite3, 1/commit", ref_single,
         f"one thread, {min(n, args.per_commit_n):,} rows"),
        ("spool → Redis: forward_once drain", spool["forward"],
         f"{spool['forward_seconds']:.2f} s, batches of 200"),
    ]
    print(f"{'path':44} {'intakes/s':>10}  notes")
    for name, rate, note in rows:
        print(f"{name:44} {rate:>10,.0f}  {note}")
    print(f"ratio ours/reference: redis end-to-end {ours['e2e'] / ref['e2e']:.2f}, "
          f"submit-only {run.rate(n) / ref['run'].rate(n):.2f}; "
          f"spool {sp.rate(n) / ref_batched:.2f}", flush=True)
    print(json.dumps({
        "bench": "stream", "value": round(ours["e2e"]), "unit": "intakes/s",
        "reference": round(ref["e2e"]), "ratio": round(ours["e2e"] / ref["e2e"], 3),
        "submit_value": round(run.rate(n)), "submit_reference": round(ref["run"].rate(n)),
        "submit_ratio": round(run.rate(n) / ref["run"].rate(n), 3),
        "spool_value": round(sp.rate(n)), "spool_reference": round(ref_batched),
        "spool_ratio": round(sp.rate(n) / ref_batched, 3),
        "spool_reference_per_commit": round(ref_single),
        "spool_intakes_per_commit": round(statistics.mean(commits), 1),
        "consumer_value": round(ours["drain"]), "consumer_reference": round(ref["drain"]),
        "forward_value": round(spool["forward"]),
        "submit_p50_ms": round(p50, 3), "submit_p99_ms": round(p99, 3),
        "spool_submit_p50_ms": round(sp50, 3), "spool_submit_p99_ms": round(sp99, 3),
        "n": n, "concurrency": conc, "payload_bytes_mean": round(statistics.mean(sizes)),
    }, ensure_ascii=False))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=20_000, help="intakes per path")
    parser.add_argument("--concurrency", type=int, default=32, help="submitters in flight")
    parser.add_argument("--per-commit-n", type=int, default=5_000,
                        help="rows for the one-commit-per-intake SQLite reference")
    parser.add_argument("--role", default="main", choices=("main", "consume-ours", "consume-bare"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--prefix", default="", help=argparse.SUPPRESS)
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {SERVICE_CPU if arguments.role == "main" else CONSUMER_CPU})
    asyncio.run(main(arguments))
