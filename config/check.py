"""``hotline config check [path]``: validate a config directory and say what is wrong.

Only the config itself is checked here, so the check loads none of the service (no scikit-learn,
SQLAlchemy, aiohttp or redis). Notes that need another package's view of the config (the
working-day calendar's missing years: :mod:`router.calendar`) are passed in as ``notes`` by the
command line (:func:`hotline.cli.config_check`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TextIO

from config.errors import ConfigError
from config.loader import config_dir, load_config
from config.schema import HotlineConfig


def check(path: Path | None = None, env: Mapping[str, str] | None = None, *,
          out: TextIO | None = None, err: TextIO | None = None,
          notes: Callable[[HotlineConfig], Iterable[str]] | None = None) -> int:
    """Validate the config in ``path`` (default: :func:`config.loader.config_dir`).

    Prints every problem to ``err`` (stderr) and returns 1, or prints a short summary to
    ``out`` (stdout) and returns 0. ``notes`` gives more notes for the summary about a
    config that loaded.
    """
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    directory = config_dir(env) if path is None else path
    try:
        cfg = load_config(directory, env)
    except ConfigError as exc:
        count = len(exc.issues)
        print(f"配置有 {count} 处错误 / {count} problem(s) in {directory}:", file=err)
        for issue in exc.issues:
            print(f"  {issue}", file=err)
        return 1
    queues = cfg.queues
    seats = len(queues.all_seats())
    members = len(queues.memberships())
    print(f"配置正确 / config OK: {directory}", file=out)
    print(f"  队列 {len(queues.queues)} 个，坐席 {seats} 个，队列成员 {members} 个 / "
          f"{len(queues.queues)} queue(s), {seats} seat(s), {members} membership(s)", file=out)
    for queue in queues.queues:
        print(f"  - {queue.name} ({queue.description}): {queue.strategy}, "
              f"{len(queue.seats)} 坐席/seats", file=out)
    ch = cfg.channels

    def on(flag: bool) -> str:
        return "开/on" if flag else "关/off"

    apps = [a for a, c in ch.app.clients.items() if c.secret is not None]
    print(f"  渠道 channels: 网站 web {on(ch.web.enabled)}, App {on(ch.app.enabled)} "
          f"({len(apps)} 个已配密钥 / with keys), 信箱 mail {on(ch.mail.enabled)}, "
          f"语音留言 voicemail {on(ch.phone.voicemail_dir is not None)}; "
          f"受理编号节点 node {ch.node_id:02d}", file=out)
    missing = [a for a, c in ch.app.clients.items() if c.secret is None]
    if ch.app.enabled and missing:
        print(f"  注意：App {', '.join(missing)} 未设置签名密钥（HOTLINE_APP_KEYS），其请求将被拒绝"
              f" / note: no signing key for {', '.join(missing)}", file=out)
    if cfg.ami.secret is None:
        print("  注意：未设置 AMI 密码（HOTLINE_AMI__SECRET）/ note: no AMI secret set", file=out)
    for note in () if notes is None else notes(cfg):
        print(f"  注意 / note: {note}", file=out)
    return 0
