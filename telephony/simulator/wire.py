"""AMI wire format as Asterisk 22.5 writes it: ``Key: Value\\r\\n`` lines, a blank line ends
a message. Field orders below are copied from the recorded traces in ``shared/ami-traces``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import Final

Fields = list[tuple[str, str]]

BANNER: Final = b"Asterisk Call Manager/11.0.0\r\n"

# Channel snapshot, in the order every channel event carries it (trace 01 Newchannel).
SNAPSHOT_KEYS: Final = (
    "Channel", "ChannelState", "ChannelStateDesc", "CallerIDNum", "CallerIDName",
    "ConnectedLineNum", "ConnectedLineName", "Language", "AccountCode", "Context", "Exten",
    "Priority", "Uniqueid", "Linkedid",
)
# Bridge snapshot (trace 01 BridgeCreate).
BRIDGE_KEYS: Final = (
    "BridgeUniqueid", "BridgeType", "BridgeTechnology", "BridgeCreator", "BridgeName",
    "BridgeNumChannels", "BridgeVideoSourceMode",
)
STATE_DESC: Final = {0: "Down", 4: "Ring", 5: "Ringing", 6: "Up"}


def encode(messages: Iterable[Sequence[tuple[str, str]]]) -> bytes:
    """Serialise messages into one buffer, so a call step is one ``write`` per client."""
    parts: list[str] = []
    for msg in messages:
        for key, value in msg:
            parts.append(f"{key}: {value}\r\n")
        parts.append("\r\n")
    return "".join(parts).encode("utf-8")


def parse_block(block: bytes) -> Fields:
    """Parse one action block (without the terminating blank line) into ordered fields.

    Asterisk accepts ``Key:Value`` and ``Key: Value``; a repeated key (``Variable``) is kept
    as several entries.
    """
    fields: Fields = []
    for raw in block.decode("utf-8", errors="replace").split("\n"):
        line = raw.rstrip("\r")
        if not line:
            continue
        key, sep, value = line.partition(":")
        if not sep:
            continue
        fields.append((key.strip(), value[1:] if value.startswith(" ") else value))
    return fields


def get(fields: Fields, key: str, default: str = "") -> str:
    """Value of the first ``key`` (case-insensitive, like Asterisk's ``astman_get_header``)."""
    low = key.lower()
    for k, v in fields:
        if k.lower() == low:
            return v
    return default


def get_all(fields: Fields, key: str) -> list[str]:
    """All values of a repeated key (``Variable``)."""
    low = key.lower()
    return [v for k, v in fields if k.lower() == low]


def tv(epoch: float) -> str:
    """Asterisk's EventTV format: ``2026-11-23T01:51:02.537+0000``."""
    dt = datetime.fromtimestamp(epoch, timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}+0000"
