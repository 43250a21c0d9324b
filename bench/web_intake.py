"""Benchmark: accepted web-form submissions per second, with p50/p99 latency.

    wrk (own process, CPU 1) ── loopback HTTP ──▶ aiohttp + the intake routes (own process,
    pinned to CPU 0) ──▶ validation ──▶ DurableGateway ──▶ idempotent XADD in Redis

The server under test is the service's HTTP stack for the website form
(``channels.web.add_intake_routes`` behind ``httpkit.errors.error_middleware``) with the
real durable gateway (``channels.durable.open_gateway``); rate limits off. Redis is, by default,
a private ``redis-server`` started for the run with AOF on and ``appendfsync always`` (every
write on disk before Redis answers: "accepted" means durable, as production must run it);
``--redis everysec`` relaxes that to one fsync a second, ``--redis shared`` uses the machine's
Redis at 127.0.0.1:6379 (which keeps nothing on disk). Every request is a valid JSON
form with its own ``submission_id``, so each one is a new intake. ``wrk`` runs a Lua script
(written next to this file at run time) that builds the bodies, counts the answers by status
and collects every acceptance number it was given.

After the run the stream is read back: every acceptance number a 201 carried must be in the
Redis stream (``missing_from_stream`` must be 0), i.e. "accepted" meant durably in Redis. The
key prefix is deleted afterwards.

Latency is wrk's (request written to answer read, per connection, closed loop): the figure a
citizen's browser would see on an idle network, not corrected for coordinated omission.

Usage: ``python bench/web_intake.py [--seconds 20] [--connections 16]``. Needs ``wrk``
(Debian package) and Redis on 127.0.0.1:6379. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TARGET = 2000            # accepted/s
P99_TARGET_MS = 30.0
SERVER_CPU = 0
LOAD_CPU = 1
PATH = "/api/intake/web"

LUA = r"""
-- Load for bench/web_intake.py: one new form per request, answers counted by status.
local run = os.getenv("BENCH_RUN")
local out = os.getenv("BENCH_OUT")
local threads = {}
local next_tid = 0

function setup(thread)
  next_tid = next_tid + 1
  thread:set("tid", next_tid)
  table.insert(threads, thread)
end

function init(args)
  counter = 0
  accepted = 0
  duplicates = 0
  other = 0
  numbers = {}
end

function request()
  counter = counter + 1
  local body = string.format(
    '{"submission_id":"%s-%d-%d","name":"张三","phone":"13800138000","title":"路灯不亮",' ..
    '"content":"幸福路 %d 号门口的路灯坏了一周了，晚上出行很不方便，请尽快修复。",' ..
    '"district":"西湖区","street":"北山街道","address":"幸福路 %d 号"}',
    run, tid, counter, counter, counter)
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end

function response(status, headers, body)
  if status == 201 then
    accepted = accepted + 1
    numbers[accepted] = string.match(body, '"acceptance_no":"(%d+)"') or "?"
  elseif status == 200 then
    duplicates = duplicates + 1
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  local f = assert(io.open(out, "w"))
  local acc, dup, oth = 0, 0, 0
  for _, t in ipairs(threads) do
    acc = acc + t:get("accepted")
    dup = dup + t:get("duplicates")
    oth = oth + t:get("other")
  end
  local e = summary.errors
  f:write(string.format(
    '{"requests":%d,"duration_us":%d,"accepted":%d,"duplicates":%d,"other_status":%d,' ..
    '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"timeouts":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,"numbers":[',
    summary.requests, summary.duration, acc, dup, oth, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max))
  local first = true
  for _, t in ipairs(threads) do
    for _, n in ipairs(t:get("numbers")) do
      if first then first = false else f:write(",") end
      f:write('"', n, '"')
    end
  end
  f:write("]}\n")
  f:close()
end
"""


SHARED_REDIS = "redis://127.0.0.1:6379/0"


def bench_config(prefix: str, workdir: Path, redis_url: str = SHARED_REDIS) -> Any:
    from config.channels import ChannelsConfig

    return ChannelsConfig.model_validate({
        "redis": {"url": redis_url, "key_prefix": prefix},
        "spool": {"path": str(workdir / "spool.db")},
        "web": {"rate_limit_per_minute": 0, "attachments_dir": str(workdir / "attachments")},
    })


# -- the server process -------------------------------------------------------------------
async def serve(port: int, prefix: str, workdir: Path, redis_url: str) -> None:
    """Run the form endpoints over the durable gateway until SIGTERM; print the gateway's
    counters as the last line."""
    from aiohttp import web

    from channels.durable import open_gateway
    from channels.http_state import IntakeHttpDeps
    from channels.nonces import MemoryNonceStore
    from channels.web import add_intake_routes
    from httpkit.errors import error_middleware

    cfg = bench_config(prefix, workdir, redis_url)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with open_gateway(cfg) as gateway:
        # As the service builds it: the one error middleware, a small default body limit.
        app = web.Application(middlewares=[error_middleware], client_max_size=16 * 1024)
        add_intake_routes(app, IntakeHttpDeps(gateway=gateway, config=lambda: cfg,
                                              nonces=MemoryNonceStore()))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port, backlog=1024)
        await site.start()
        print("READY", flush=True)
        await stop.wait()
        await runner.cleanup()
        counters = dict(vars(gateway.counters))
        counters["spooled_left"] = gateway.spooled
    print("COUNTERS " + json.dumps(counters), flush=True)


# -- the orchestrator ---------------------------------------------------------------------
def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_wrk(port: int, script: Path, out: Path, run: str, seconds: int,
            connections: int) -> dict[str, Any]:
    env = {**os.environ, "BENCH_RUN": run, "BENCH_OUT": str(out)}
    cmd = ["taskset", "-c", str(LOAD_CPU), "wrk", "-t1", f"-c{connections}", f"-d{seconds}s",
           "--timeout", "5s", "-s", str(script), f"http://127.0.0.1:{port}{PATH}"]
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def _text(value: bytes | str | None) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def stream_numbers(prefix: str, redis_url: str) -> tuple[set[str], int]:
    """Acceptance numbers of every entry in the intake stream, and the entry count."""
    import redis.asyncio as aioredis

    from channels.durable import NO_METADATA_LOOKUP
    from channels.keys import StreamKeys

    keys = StreamKeys.from_config(bench_config(prefix, Path("/nonexistent"), redis_url))
    client = aioredis.Redis.from_url(redis_url, driver_info=NO_METADATA_LOOKUP["driver_info"])
    numbers: set[str] = set()
    entries = 0
    try:
        start = "-"
        while True:
            batch = await client.xrange(keys.stream, min=start, max="+", count=5000)
            if not batch:
                break
            for _, fields in batch:
                entries += 1
                numbers.add(_text((fields or {})[b"acceptance_no"]))
            start = "(" + _text(batch[-1][0])
        return numbers, entries
    finally:
        await client.aclose()


async def drop_prefix(prefix: str, redis_url: str) -> None:
    import redis.asyncio as aioredis

    from channels.durable import NO_METADATA_LOOKUP

    client = aioredis.Redis.from_url(redis_url, driver_info=NO_METADATA_LOOKUP["driver_info"])
    try:
        batch: list[bytes] = []
        async for key in client.scan_iter(match="{" + prefix + "}*", count=5000):
            batch.append(key)
            if len(batch) >= 5000:
                await client.unlink(*batch)
                batch.clear()
        if batch:
            await client.unlink(*batch)
    finally:
        await client.aclose()


def start_redis(mode: str, workdir: Path) -> tuple[subprocess.Popen[bytes] | None, str]:
    """The Redis to run against: a private AOF server (``always``/``everysec``) or shared."""
    if mode == "shared":
        return None, SHARED_REDIS
    port = free_port()
    data = workdir / "redis"
    data.mkdir()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data),
         "--appendonly", "yes", "--appendfsync", mode, "--save", "",
         "--logfile", str(data / "redis.log")])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
                s.sendall(b"PING\r\n")
                if s.recv(64).startswith(b"+PONG"):
                    return proc, f"redis://127.0.0.1:{port}/0"
        except OSError:
            pass
        time.sleep(0.05)
    proc.kill()
    sys.exit("private redis-server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd")
    server = sub.add_parser("serve")
    server.add_argument("--port", type=int, required=True)
    server.add_argument("--prefix", required=True)
    server.add_argument("--dir", type=Path, required=True)
    server.add_argument("--redis-url", required=True)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--warmup-seconds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--redis", choices=("always", "everysec", "shared"), default="always",
                        help="private redis-server with AOF appendfsync always (default) or "
                             "everysec, or the machine's shared Redis (no persistence)")
    args = parser.parse_args()

    if args.cmd == "serve":
        os.sched_setaffinity(0, {SERVER_CPU})
        logging.basicConfig(level=logging.WARNING)
        asyncio.run(serve(args.port, args.prefix, args.dir, args.redis_url))
        return

    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install wrk")
    import psutil  # type: ignore[import-untyped]

    prefix = f"benchweb{uuid.uuid4().hex[:10]}"
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="web-intake-bench-") as tmp:
        workdir = Path(tmp)
        script = workdir / "load.lua"
        script.write_text(LUA)
        redis_proc, redis_url = start_redis(args.redis, workdir)
        proc = subprocess.Popen(
            [sys.executable, __file__, "serve", "--port", str(port), "--prefix", prefix,
             "--dir", str(workdir), "--redis-url", redis_url], stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "READY":
                sys.exit("server did not start")
            server_ps = psutil.Process(proc.pid)
            warm = run_wrk(port, script, workdir / "warm.json", f"w{prefix}",
                           args.warmup_seconds, args.connections)
            cpu_before = server_ps.cpu_times()
            t0 = time.monotonic()
            main_run = run_wrk(port, script, workdir / "run.json", f"m{prefix}", args.seconds,
                               args.connections)
            wall = time.monotonic() - t0
            cpu_after = server_ps.cpu_times()
        finally:
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=30)
        counters_line = [line for line in out.splitlines() if line.startswith("COUNTERS ")]
        counters = json.loads(counters_line[-1][9:]) if counters_line else {}
        try:
            in_stream, entries = asyncio.run(stream_numbers(prefix, redis_url))
        finally:
            asyncio.run(drop_prefix(prefix, redis_url))
            if redis_proc is not None:
                redis_proc.terminate()
                redis_proc.wait(timeout=30)

    accepted_numbers = warm.pop("numbers") + main_run.pop("numbers")
    missing = sum(1 for n in accepted_numbers if n not in in_stream)
    seconds = main_run["duration_us"] / 1e6
    server_cpu = ((cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system))
    value = main_run["accepted"] / seconds
    p99_ms = main_run["p99_us"] / 1000
    result = {
        "bench": "web_intake", "value": round(value, 1), "unit": "accepted/s",
        "target": TARGET, "p50_ms": round(main_run["p50_us"] / 1000, 2),
        "p90_ms": round(main_run["p90_us"] / 1000, 2), "p99_ms": round(p99_ms, 2),
        "p99_target_ms": P99_TARGET_MS, "p999_ms": round(main_run["p999_us"] / 1000, 2),
        "max_ms": round(main_run["max_us"] / 1000, 2),
        "requests": main_run["requests"], "accepted": main_run["accepted"],
        "duplicates": main_run["duplicates"], "other_status": main_run["other_status"],
        "socket_errors": sum(main_run[k] for k in ("connect_errors", "read_errors",
                                                   "write_errors", "timeouts")),
        "accepted_incl_warmup": len(accepted_numbers), "stream_entries": entries,
        "missing_from_stream": missing, "gateway": counters,
        "seconds": round(seconds, 2), "wall_seconds": round(wall, 2),
        "redis": args.redis, "connections": args.connections, "server_cpu_pct": round(100 * server_cpu / wall, 1),
        "met": value >= TARGET and p99_ms < P99_TARGET_MS and missing == 0
               and main_run["other_status"] == 0,
    }
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
