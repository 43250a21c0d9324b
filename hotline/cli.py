"""``hotline`` command line: run the service, the demo, check config, render Asterisk configs."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from hotline import asr_cli

if TYPE_CHECKING:
    from config.schema import HotlineConfig

log = logging.getLogger(__name__)


async def _run_until_signal(config_dir: Path | None) -> int:
    from config.errors import ConfigError
    from config.loader import load_config
    from hotline.app import Hotline, serve
    from hotline.asr_parts import AsrStartupError
    from hotline.logs import configure_logging

    try:
        cfg = load_config(config_dir)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    configure_logging(cfg.service.log_level, cfg.service.log_format)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    holder: list[Hotline] = []
    reloads: set[asyncio.Task[object]] = set()

    def on_hup() -> None:
        if not holder:
            return
        task = loop.create_task(_reload(holder[0]))
        reloads.add(task)                 # keep a reference until it finishes
        task.add_done_callback(reloads.discard)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, on_hup)
    try:
        await serve(cfg, stop, config_dir=config_dir, started=holder.append)
    except AsrStartupError as exc:
        # asr.enabled with optional: false and no model: say which path, exit non-zero.
        print(exc, file=sys.stderr)
        return 1
    finally:
        for task in reloads:
            task.cancel()
    return 0


async def _reload(hot: object) -> None:
    from config.errors import ConfigError
    from hotline.app import Hotline
    assert isinstance(hot, Hotline)
    try:
        result = await hot.reload_config()
    except ConfigError as exc:
        log.error("config reload refused, old config kept:\n%s", exc)
        return
    log.info("config reloaded: %s", result)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hotline", description="12345 热线接入服务")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="运行服务 / run the service")
    run.add_argument("--config", type=Path, default=None, help="config directory")
    demo = sub.add_parser("demo", help="模拟交换机 + 服务 / simulator + service demo")
    demo.add_argument("--seconds", type=float, default=0.0, help="stop after N s (0: Ctrl-C)")
    demo.add_argument("--calls-per-minute", type=float, default=60.0)
    demo.add_argument("--mean-talk", type=float, default=80.0, help="mean talk seconds")
    demo.add_argument("--http-port", type=int, default=8080)
    cfg = sub.add_parser("config", help="配置 / configuration")
    cfg_sub = cfg.add_subparsers(dest="config_command", required=True)
    check = cfg_sub.add_parser("check", help="检查配置 / validate config files")
    check.add_argument("path", nargs="?", type=Path, default=None)
    ast = sub.add_parser("asterisk", help="Asterisk 配置 / Asterisk configs")
    ast_sub = ast.add_subparsers(dest="asterisk_command", required=True)
    render = ast_sub.add_parser("render", help="生成 pjsip.conf / queues.conf")
    render.add_argument("--config", type=Path, default=None)
    render.add_argument("--out", type=Path, default=Path("docker/asterisk"))
    rtr = sub.add_parser("router", help="派单路由 / routing")
    rtr_sub = rtr.add_subparsers(dest="router_command", required=True)
    rtrain = rtr_sub.add_parser("train", add_help=False,
                                help="从历史工单训练派单模型 / train the routing model "
                                     "(history.csv [--out PATH]; --help for more)")
    rtrain.add_argument("train_args", nargs=argparse.REMAINDER)
    asr_cli.add_parser(sub)
    args = parser.parse_args(argv)

    if args.command == "run":
        return asyncio.run(_run_until_signal(args.config))
    if args.command == "demo":
        from hotline.demo import run_demo
        return asyncio.run(run_demo(seconds=args.seconds, calls_per_minute=args.calls_per_minute,
                                    mean_talk=args.mean_talk, http_port=args.http_port))
    if args.command == "config":
        return config_check(args.path)
    if args.command == "asterisk":
        from config.errors import ConfigError
        from config.loader import load_config
        from telephony.asterisk_config import render as render_asterisk
        try:
            loaded = load_config(args.config)
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            return 1
        for path in render_asterisk(loaded, args.out):
            print(path)
        return 0
    if args.command == "router":
        return _router_train(args.train_args)
    if args.command == "asr":
        return asr_cli.main(args)
    return 2


def config_check(path: Path | None = None, env: Mapping[str, str] | None = None, *,
                 out: TextIO | None = None, err: TextIO | None = None,
                 now: datetime | None = None) -> int:
    """``hotline config check``: :func:`config.check.check`, plus a note naming the holiday
    years a deadline computed ``now`` (default: the wall clock) may reach that ``sla.yaml``
    lacks (:func:`router.calendar.calendar_warning`, as ``/readyz`` reports it)."""
    from zoneinfo import ZoneInfo

    from config.check import check
    from router.calendar import WorkCalendar, calendar_warning

    def calendar_note(cfg: HotlineConfig) -> list[str]:
        calendar = WorkCalendar(cfg.sla.calendar, ZoneInfo(cfg.service.timezone))
        warning = calendar_warning(calendar, cfg.sla.calendar.uncovered_years,
                                   datetime.now(UTC) if now is None else now)
        return [] if warning is None else [warning.message]

    return check(path, env, out=out, err=err, notes=calendar_note)


def _router_train(train_args: list[str]) -> int:
    """``hotline router train``: rows naming a unit the config does not have are bad rows."""
    from config.errors import ConfigError
    from config.loader import load_config
    from router.train import main as train_main
    try:
        units = load_config().units
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    known = {u.id for u in units.units} | {units.territorial_label}
    return train_main(train_args, known_units=known if units.units else None)


if __name__ == "__main__":
    sys.exit(main())
