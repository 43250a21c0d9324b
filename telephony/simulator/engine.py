"""Channel-level primitives: every event helper emits exactly the fields and order of the
recorded Asterisk 22.5 traces. Call flows (dialplan, queue) are in :mod:`dialplan`."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Coroutine
from typing import Any

from telephony.simulator.core import Bridge, Channel, EventSink, Ids, SimClock
from telephony.simulator.queues import QueueState
from telephony.simulator.wire import Fields

CAUSE_TXT = {0: "Unknown", 16: "Normal Clearing", 17: "User busy", 19: "No user responding"}


class Engine:
    """State of one simulated Asterisk: channels, bridges, queues, running dialplans."""

    def __init__(self, clock: SimClock, rng: random.Random, sink: EventSink,
                 queues: dict[str, QueueState]) -> None:
        self.clock = clock
        self.rng = rng
        self.ids = Ids(clock, rng)
        self._sink = sink
        self.queues = queues
        self.channels: dict[str, Channel] = {}
        self.bridges: dict[str, Bridge] = {}
        self.conferences: dict[str, Bridge] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.device_states: dict[str, str] = {}
        # Dialplan globals (``dialplan set global``): department behaviour, see transfers.
        self.globals: dict[str, str] = {}
        self.failures: list[BaseException] = []
        # Set by the owner (see dialplan.Dialplan): the call flows that drive channels.
        self.dialplan: Any = None

    # ---------------------------------------------------------------- tasks
    def spawn(self, coro: Coroutine[Any, Any, None], owner: Channel | None = None) -> None:
        """Run a dialplan step; keep the task so restart/close can cancel it."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        if owner is not None:
            owner.task = task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled():
            exc = task.exception()
            if exc is not None:
                # A crash in a simulated call is a simulator bug: kept for close() to raise.
                self.failures.append(exc)

    async def cancel_all(self) -> None:
        """Cancel every running dialplan (restart, shutdown)."""
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ---------------------------------------------------------------- events
    def emit(self, event: str, privilege: str | None, fields: Fields) -> None:
        """Send one event to every logged-in client."""
        head: Fields = [("Event", event)]
        if privilege:
            head.append(("Privilege", privilege))
        self._sink(head + fields)

    def chan_event(self, event: str, ch: Channel, extra: Fields = (),  # type: ignore[assignment]
                   priv: str = "call,all") -> None:
        """An event carrying one channel snapshot followed by ``extra`` fields."""
        self.emit(event, priv, ch.snapshot() + list(extra))

    def dial_event(self, event: str, caller: Channel | None, dest: Channel,
                   extra: Fields) -> None:
        """DialBegin/DialEnd/Agent*: caller snapshot (if any), Dest snapshot, extra."""
        fields = (caller.snapshot() if caller else []) + dest.snapshot("Dest") + list(extra)
        self.emit(event, "call,all" if event.startswith("Dial") else "agent,all", fields)

    def dsc(self, device: str, state: str) -> None:
        """DeviceStateChange; Asterisk repeats it per channel state change, so do we."""
        self.device_states[device] = state
        self.emit("DeviceStateChange", "call,all", [("Device", device), ("State", state)])

    def newexten(self, ch: Channel, app: str, data: str, priority: int | None = None) -> None:
        """Newexten for the application ``app`` at ``priority``."""
        if priority is not None:
            ch.priority = priority
        ch.app, ch.appdata = app, data
        self.chan_event("Newexten", ch, [("Extension", ch.exten), ("Application", app),
                                         ("AppData", data)], "dialplan,all")

    def varset(self, ch: Channel, name: str, value: str) -> None:
        """VarSet (and remember the variable)."""
        ch.variables[name] = value
        self.chan_event("VarSet", ch, [("Variable", name), ("Value", value)], "dialplan,all")

    def newstate(self, ch: Channel, state: int) -> None:
        """Newstate."""
        ch.state = state
        self.chan_event("Newstate", ch)

    def new_callerid(self, ch: Channel) -> None:
        """NewCallerid with the presentation Asterisk reports for a plain CallerID."""
        self.chan_event("NewCallerid", ch,
                        [("CID-CallingPres", "0 (Presentation Allowed, Not Screened)")])

    def new_connected(self, ch: Channel) -> None:
        """NewConnectedLine."""
        self.chan_event("NewConnectedLine", ch)

    def soft_hangup_request(self, ch: Channel, cause: int = 16) -> None:
        """SoftHangupRequest."""
        self.chan_event("SoftHangupRequest", ch, [("Cause", str(cause))])

    def hangup_request(self, ch: Channel, cause: int = 16) -> None:
        """HangupRequest."""
        self.chan_event("HangupRequest", ch, [("Cause", str(cause))])

    def hangup(self, ch: Channel, cause: int = 16) -> None:
        """Hangup: the channel is gone; its dialplan task is cancelled."""
        if ch.hungup:
            return
        ch.hungup = True
        self.chan_event("Hangup", ch, [("Cause", str(cause)),
                                       ("Cause-txt", CAUSE_TXT.get(cause, "Unknown"))])
        self.channels.pop(ch.name, None)
        ch.interrupt.set()
        task = ch.task
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    # ---------------------------------------------------------------- Local pairs
    def local_pair(self, exten: str, context: str, linkedid: str | None = None
                   ) -> tuple[Channel, Channel]:
        """Create ``Local/exten@context-XXXXXXXX;1/;2`` and emit their Newchannel events."""
        base = f"Local/{exten}@{context}-{self.ids.local_suffix()}"
        now = self.clock.now()
        u1 = self.ids.uniqueid()
        u2 = self.ids.uniqueid()
        link = linkedid or u1
        one = Channel(f"{base};1", u1, link, context, exten, state=0, created=now)
        two = Channel(f"{base};2", u2, link, context, exten, state=4, created=now)
        one.peer, two.peer = two, one
        self.channels[one.name] = one
        self.channels[two.name] = two
        self.chan_event("Newchannel", one)
        self.chan_event("Newchannel", two)
        return one, two

    def local_bridge(self, one: Channel, two: Channel, optimized: bool) -> None:
        """LocalBridge: both halves' snapshots."""
        self.emit("LocalBridge", "call,all", one.snapshot("LocalOne") + two.snapshot("LocalTwo")
                  + [("Context", two.context), ("Exten", two.exten),
                     ("LocalOptimization", "Yes" if optimized else "No")])

    # ---------------------------------------------------------------- bridges
    def bridge_create(self, kind: str = "basic", name: str = "<unknown>") -> Bridge:
        """BridgeCreate (a ConfBridge emits ConfbridgeStart instead, see dialplan)."""
        bridge = Bridge(self.ids.bridge_uuid(), kind, name)
        self.bridges[bridge.uid] = bridge
        if kind == "basic":
            self.emit("BridgeCreate", "call,all", bridge.snapshot())
        return bridge

    def bridge_enter(self, bridge: Bridge, ch: Channel) -> None:
        """BridgeEnter."""
        bridge.members.append(ch)
        ch.bridge = bridge
        self.emit("BridgeEnter", "call,all", bridge.snapshot() + ch.snapshot())

    def bridge_leave(self, bridge: Bridge, ch: Channel) -> None:
        """BridgeLeave."""
        if ch in bridge.members:
            bridge.members.remove(ch)
        ch.bridge = None
        self.emit("BridgeLeave", "call,all", bridge.snapshot() + ch.snapshot())

    def bridge_destroy(self, bridge: Bridge) -> None:
        """BridgeDestroy."""
        self.bridges.pop(bridge.uid, None)
        self.emit("BridgeDestroy", "call,all", bridge.snapshot())

    # ---------------------------------------------------------------- helpers
    def find(self, name: str) -> Channel | None:
        """A live channel by exact name."""
        return self.channels.get(name)

    def restart(self) -> None:
        """Forget every channel, bridge, member and waiting caller (an Asterisk restart)."""
        for ch in self.channels.values():
            ch.hungup = True
        self.channels.clear()
        self.bridges.clear()
        self.conferences.clear()
        for q in self.queues.values():
            q.members.clear()
            q.callers.clear()
            q.rr_next = q.completed = q.abandoned = q.within_sl = 0
            q.holdtime_avg = q.talktime_avg = 0.0
        self.device_states.clear()
        self.globals.clear()
