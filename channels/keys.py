"""Redis key names of the intake stream, in one place.

Every key carries the hash tag ``{prefix}`` so that, on a Redis Cluster, the stream, its
idempotency keys and status hashes live in one slot and the add script stays atomic.
"""

from __future__ import annotations

from dataclasses import dataclass

from config.channels import ChannelsConfig


@dataclass(frozen=True, slots=True)
class StreamKeys:
    """Key names derived from ``channels.redis.key_prefix`` and ``channels.stream``."""

    prefix: str
    stream: str
    dead_letter: str
    group: str

    @classmethod
    def from_config(cls, cfg: ChannelsConfig) -> StreamKeys:
        tag = "{" + cfg.redis.key_prefix + "}"
        return cls(prefix=tag, stream=f"{tag}:{cfg.stream.name}",
                   dead_letter=f"{tag}:{cfg.stream.dead_letter}", group=cfg.stream.group)

    def idempotency(self, key: str) -> str:
        """``channel:external_id`` → the key remembering its acceptance number."""
        return f"{self.prefix}:idem:{key}"

    def status(self, acceptance_no: str) -> str:
        """The hash holding an acceptance number's status (for the citizen's query)."""
        return f"{self.prefix}:acceptance:{acceptance_no}"

    @property
    def failures(self) -> str:
        """Hash: stream entry id → the last handler error (kept for the dead letter)."""
        return f"{self.prefix}:intake-failures"
