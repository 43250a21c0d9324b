"""The config in force: one holder, replaced whole by a reload, read where it is needed.

The HTTP handlers and the mailbox and voicemail pollers are handed its bound readers (each
reads :attr:`LiveConfig.current` at the request or polling round), so a reload reaches them
without any of them holding a reference to the service."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path

from config.channels import ChannelsConfig, MailConfig, PhoneConfig
from config.loader import load_config
from config.schema import HotlineConfig


class LiveConfig:
    """The config the service runs on, and where it was loaded from (a reload reads there)."""

    def __init__(self, cfg: HotlineConfig, config_dir: Path | None = None,
                 env: Mapping[str, str] | None = None) -> None:
        self._current = cfg
        self.config_dir = config_dir
        self.env = env

    @property
    def current(self) -> HotlineConfig:
        return self._current

    def replace(self, new: HotlineConfig) -> None:
        """Put ``new`` in force; every reader sees it from its next read."""
        self._current = new

    async def load(self) -> HotlineConfig:
        """Read the config files again, without putting them in force. File I/O runs off the
        loop; a ``ConfigError`` propagates."""
        return await asyncio.to_thread(load_config, self.config_dir, self.env)

    def admin_token(self) -> str | None:
        token = self._current.service.admin_token
        return None if token is None else token.get_secret_value()

    def agent_tokens(self) -> dict[str, str]:
        return {k: v.get_secret_value() for k, v in self._current.service.agent_tokens.items()}

    def unit_tokens(self) -> dict[str, str]:
        return {k: v.get_secret_value() for k, v in self._current.routing.unit_tokens.items()}

    def known_units(self) -> set[str]:
        return {u.id for u in self._current.units.units}

    def queue_names(self) -> tuple[str, ...]:
        return tuple(q.name for q in self._current.queues.queues)

    def channels(self) -> ChannelsConfig:
        return self._current.channels

    def mail(self) -> MailConfig:
        return self._current.channels.mail

    def phone(self) -> PhoneConfig:
        return self._current.channels.phone
