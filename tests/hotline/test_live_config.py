"""The one live-config holder: readers handed out before a reload see the new config."""

from __future__ import annotations

import asyncio
from pathlib import Path

from pydantic import SecretStr

from config.loader import load_config
from hotline.live_config import LiveConfig


def test_readers_bound_before_a_replace_read_the_new_config() -> None:
    old = load_config(None, {})
    live = LiveConfig(old)
    admin, agents, queues, mail = live.admin_token, live.agent_tokens, live.queue_names, live.mail
    assert (admin(), agents()) == (None, {})
    token = "a" * 32
    new = old.model_copy(update={
        "service": old.service.model_copy(update={
            "admin_token": SecretStr(token), "agent_tokens": {"1001": SecretStr(token)}}),
        "queues": old.queues.model_copy(update={"queues": old.queues.queues[:1]}),
        "channels": old.channels.model_copy(update={
            "mail": old.channels.mail.model_copy(update={"enabled": True})})})
    live.replace(new)
    assert live.current is new
    assert (admin(), agents(), queues(), mail().enabled) == (token, {"1001": token},
                                                             ("12345",), True)


async def test_load_reads_the_config_dir_again_without_putting_it_in_force(
        tmp_path: Path) -> None:
    hotline_yaml = tmp_path / "hotline.yaml"
    await asyncio.to_thread(hotline_yaml.write_text, "service:\n  timezone: UTC\n",
                            encoding="utf-8")
    first = await asyncio.to_thread(load_config, tmp_path, {})
    live = LiveConfig(first, tmp_path, {})
    await asyncio.to_thread(hotline_yaml.write_text, "service:\n  timezone: Asia/Urumqi\n",
                            encoding="utf-8")
    loaded = await live.load()
    assert loaded.service.timezone == "Asia/Urumqi"
    assert live.current is first
