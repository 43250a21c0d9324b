"""Simulated PBX core: clock, identifiers, channels, bridges and the event sink.

Asterisk numbers channels ``<epoch>.<seq>`` with one process-wide sequence, names Local
channels ``Local/<exten>@<context>-<8 hex>;1``/``;2`` with one counter per Local pair, and
gives bridges random UUIDs (all seen in ``shared/ami-traces``).
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from telephony.simulator.wire import STATE_DESC, Fields


class SimClock:
    """Simulated wall clock: real elapsed time multiplied by ``time_scale``.

    Reported times (LoginTime, HoldTime, TalkTime, Uniqueid epochs) are in simulated seconds;
    waits are real seconds divided by ``time_scale``.
    """

    def __init__(self, time_scale: float = 1.0, start_epoch: float | None = None) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be > 0")
        self.time_scale = time_scale
        self._loop_start = time.monotonic()
        self._epoch_start = time.time() if start_epoch is None else start_epoch

    def now(self) -> float:
        """Simulated epoch seconds."""
        return self._epoch_start + (time.monotonic() - self._loop_start) * self.time_scale

    def isec(self) -> int:
        """Simulated epoch, whole seconds (Asterisk's ``time(NULL)``)."""
        return int(self.now())

    async def sleep(self, sim_seconds: float) -> None:
        """Wait ``sim_seconds`` of simulated time."""
        await asyncio.sleep(max(0.0, sim_seconds) / self.time_scale)


@dataclass(eq=False)
class Channel:
    """One channel and the fields of its AMI snapshot."""

    name: str
    uniqueid: str
    linkedid: str
    context: str
    exten: str
    priority: int = 1
    state: int = 0
    cid_num: str = "<unknown>"
    cid_name: str = "<unknown>"
    conn_num: str = "<unknown>"
    conn_name: str = "<unknown>"
    app: str = ""
    appdata: str = ""
    created: float = 0.0
    variables: dict[str, str] = field(default_factory=dict)
    peer: Channel | None = None  # the other half of a Local pair
    bridge: Bridge | None = None
    hungup: bool = False
    task: asyncio.Task[None] | None = None
    # Set when something outside the channel's dialplan wants it to stop (hangup, redirect).
    interrupt: asyncio.Event = field(default_factory=asyncio.Event)
    redirect_to: tuple[str, str, int] | None = None
    dtmf: asyncio.Queue[str] = field(default_factory=asyncio.Queue)

    def snapshot(self, prefix: str = "") -> Fields:
        """The channel snapshot, keys prefixed (``Dest``, ``LocalOne`` ...)."""
        return [
            (prefix + "Channel", self.name),
            (prefix + "ChannelState", str(self.state)),
            (prefix + "ChannelStateDesc", STATE_DESC.get(self.state, "Unknown")),
            (prefix + "CallerIDNum", self.cid_num),
            (prefix + "CallerIDName", self.cid_name),
            (prefix + "ConnectedLineNum", self.conn_num),
            (prefix + "ConnectedLineName", self.conn_name),
            (prefix + "Language", "en"),
            (prefix + "AccountCode", ""),
            (prefix + "Context", self.context),
            (prefix + "Exten", self.exten),
            (prefix + "Priority", str(self.priority)),
            (prefix + "Uniqueid", self.uniqueid),
            (prefix + "Linkedid", self.linkedid),
        ]

    @property
    def device(self) -> str:
        """Device name for DeviceStateChange: ``Local/<exten>@<context>``."""
        return self.name.rsplit("-", 1)[0]


@dataclass(eq=False)
class Bridge:
    """A basic two-party bridge or a ConfBridge (softmix) bridge."""

    uid: str
    kind: str = "basic"  # "basic" | "confbridge"
    name: str = "<unknown>"
    members: list[Channel] = field(default_factory=list)

    def snapshot(self) -> Fields:
        """The bridge snapshot as Asterisk prints it."""
        conf = self.kind == "confbridge"
        return [
            ("BridgeUniqueid", self.uid),
            ("BridgeType", "base" if conf else "basic"),
            ("BridgeTechnology", "softmix" if conf else "simple_bridge"),
            ("BridgeCreator", "ConfBridge" if conf else "<unknown>"),
            ("BridgeName", self.name),
            ("BridgeNumChannels", str(len(self.members))),
            ("BridgeVideoSourceMode", "none"),
        ]


class Ids:
    """Identifier allocation with Asterisk's numbering rules."""

    def __init__(self, clock: SimClock, rng: random.Random) -> None:
        self._clock = clock
        self._rng = rng
        self._seq = 0
        self._local = 0

    def uniqueid(self) -> str:
        """Next ``<epoch>.<seq>``."""
        value = f"{self._clock.isec()}.{self._seq}"
        self._seq += 1
        return value

    def local_suffix(self) -> str:
        """Next 8-hex-digit Local pair counter."""
        value = f"{self._local:08x}"
        self._local += 1
        return value

    def bridge_uuid(self) -> str:
        """A random version-4 UUID from the seeded RNG (reproducible runs)."""
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))


EventSink = Callable[[Fields], None]
