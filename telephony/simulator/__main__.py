"""``python -m telephony.simulator``: run the PBX simulator standalone (demo, manual tests)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from pathlib import Path

from telephony.simulator.audiosocket_client import DEFAULT_WAV, AudioSocketSource
from telephony.simulator.server import PbxSimulator
from telephony.simulator.traffic import TrafficConfig


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(prog="python -m telephony.simulator",
                                description="模拟 Asterisk AMI 服务器 (PBX simulator)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5038)
    p.add_argument("--username", default="hotline")
    p.add_argument("--secret", default="hotline-secret")
    p.add_argument("--queues", default="12345",
                   help="comma-separated queue names Asterisk has (queues.conf)")
    p.add_argument("--seats", type=int, default=0,
                   help="seats to add by itself (Local/1001@seats/n ...); 0 = the client adds")
    p.add_argument("--calls-per-minute", type=float, default=0.0)
    p.add_argument("--mean-patience", type=float, default=60.0)
    p.add_argument("--mean-talk", type=float, default=120.0)
    p.add_argument("--no-answer", type=float, default=0.05, help="ring-no-answer probability")
    p.add_argument("--pauses-per-minute", type=float, default=1.0)
    p.add_argument("--time-scale", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--strategy", default="rrmemory", choices=["rrmemory", "leastrecent", "ringall"])
    p.add_argument("--asr-share", type=float, default=0.0,
                   help="share of callers through [incoming-asr] (IVR speech over AudioSocket)")
    p.add_argument("--audiosocket-port", type=int, default=0,
                   help="stream --speech-wav to the AudioSocket server on this port (0: off)")
    p.add_argument("--speech-wav", type=Path, default=None,
                   help="8 kHz mono 16-bit WAV a caller says in the IVR")
    return p.parse_args(argv)


async def run(args: argparse.Namespace) -> None:
    """Serve until cancelled."""
    traffic = TrafficConfig(calls_per_minute=args.calls_per_minute,
                            mean_patience=args.mean_patience, mean_talk=args.mean_talk,
                            no_answer_probability=args.no_answer,
                            pauses_per_minute=args.pauses_per_minute,
                            asr_share=args.asr_share)
    source = None
    if args.audiosocket_port:
        source = await asyncio.to_thread(AudioSocketSource.from_wav,
                                         args.speech_wav or DEFAULT_WAV,
                                         port=args.audiosocket_port)
    async with PbxSimulator(host=args.host, port=args.port, username=args.username,
                            secret=args.secret, time_scale=args.time_scale, seed=args.seed,
                            strategy=args.strategy, traffic=traffic,
                            queues=tuple(q for q in args.queues.split(",") if q)) as pbx:
        pbx.dialplan.audiosocket = source
        for i in range(args.seats):
            pbx.add_seat(f"Local/{1001 + i}@seats/n", f"seat-{1001 + i}")
        if args.calls_per_minute > 0:
            pbx.traffic.start()
        print(f"PBX simulator listening on {args.host}:{pbx.port}", flush=True)
        await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    """Entry point."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(parse_args(argv)))


if __name__ == "__main__":
    main()
