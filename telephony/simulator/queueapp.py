"""app_queue behaviour: join, ring members by strategy, ring-no-answer, connect, complete,
abandon, wrap-up. Event order follows traces 01 (answered), 02 (abandoned), 04 (ring no
answer) and 08 (callers waiting)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from telephony.simulator.core import Bridge, Channel
from telephony.simulator.engine import Engine
from telephony.simulator.queues import (
    DEVICE_INUSE, DEVICE_NOT_INUSE, Caller, Member, QueueState,
)


@dataclass
class QueueCall:
    """A caller connected to a member: what AgentComplete needs later."""

    queue: QueueState
    member: Member
    caller: Channel
    seat: Channel
    bridge: Bridge
    hold: int
    connected: int
    done: bool = False
    released: bool = False


@dataclass
class Ring:
    """One member being rung for one caller."""

    caller: Caller
    member: Member
    seat: Channel
    started: int
    timer: asyncio.Task[None] | None = None


class QueueApp:
    """The Queue() application of every queue, driven by one dispatcher."""

    def __init__(self, engine: Engine) -> None:
        self.e = engine
        self.rings: dict[str, Ring] = {}  # by seat ;1 name
        self.calls: dict[str, QueueCall] = {}  # by caller ;1 name and seat ;1 name
        self.wake = asyncio.Event()
        # Seats that should not answer (traffic's ring-no-answer), by interface.
        self.no_answer: set[str] = set()
        self.talk_time: dict[str, float] = {}  # per-seat talk time for the next call

    # ------------------------------------------------------------ join / leave
    def join(self, q: QueueState, ch: Channel) -> Caller:
        """QueueCallerJoin, then try to ring a member at once (as app_queue does)."""
        e = self.e
        if not q.callers:
            e.dsc(f"Queue:{q.name}", "RINGING")
        caller = Caller(ch, e.clock.isec(), len(q.callers) + 1)
        q.callers.append(caller)
        e.chan_event("QueueCallerJoin", ch, [("Queue", q.name),
                                             ("Position", str(len(q.callers))),
                                             ("Count", str(len(q.callers)))], "agent,all")
        self.dispatch()
        return caller

    def _leave(self, q: QueueState, caller: Caller) -> int:
        e = self.e
        pos = q.callers.index(caller) + 1
        q.callers.remove(caller)
        if not q.callers:
            e.dsc(f"Queue:{q.name}", "NOT_INUSE")
        e.chan_event("QueueCallerLeave", caller.channel, [("Queue", q.name),
                                                          ("Position", str(pos)),
                                                          ("Count", str(len(q.callers)))],
                     "agent,all")
        e.varset(caller.channel, "QUEUEPOSITION", str(pos))
        return pos

    def abandon(self, q: QueueState, caller: Caller) -> None:
        """The caller hung up while waiting (trace 02)."""
        e = self.e
        for ring in [r for r in self.rings.values() if r.caller is caller]:
            self._cancel_ring(ring, noanswer=False)
        e.varset(caller.channel, "ABANDONED", "TRUE")
        pos = q.callers.index(caller) + 1
        e.chan_event("QueueCallerAbandon", caller.channel, [
            ("Queue", q.name), ("Position", str(pos)),
            ("OriginalPosition", str(caller.original_position)),
            ("HoldTime", str(e.clock.isec() - caller.joined))], "agent,all")
        q.abandoned += 1
        self._leave(q, caller)

    # ------------------------------------------------------------ members
    def member_status(self, m: Member) -> None:
        """QueueMemberStatus."""
        self.e.emit("QueueMemberStatus", "agent,all", m.event_fields())

    def avail_changed(self, q: QueueState, before: bool, may_rise: bool = True) -> None:
        """DeviceStateChange ``Queue:<q>_avail`` when "any member free" flips.

        The recordings show it turning NOT_INUSE only on QueueAdd/unpause, never when a
        member's call ends (traces 01, 08): ``may_rise=False`` keeps that quirk.
        """
        device = f"Queue:{q.name}_avail"
        now_avail = self.any_available(q)
        state = "NOT_INUSE" if now_avail else "INUSE"
        if self.e.device_states.get(device) == state or (now_avail and not may_rise):
            return
        self.e.dsc(device, state)

    def any_available(self, q: QueueState) -> bool:
        """Is any member unpaused with device NOT_INUSE (a ringing Local seat still is)?"""
        return any(not m.paused and m.status == DEVICE_NOT_INUSE for m in q.members.values())

    # ------------------------------------------------------------ members
    def add_seat(self, interface: str, name: str, queue: str = "12345") -> None:
        """Add a member as QueueAdd would (the standalone CLI's ``--seats``)."""
        e = self.e
        q = e.queues[queue]
        if interface in q.members:
            return
        before = self.any_available(q)
        m = Member(q.name, interface, name, interface.rsplit("/", 1)[0],
                   login_time=e.clock.isec())
        q.members[interface] = m
        e.dsc(f"Queue:{q.name}_pause_{interface}", "NOT_INUSE")
        e.emit("QueueMemberAdded", "agent,all", m.event_fields())
        self.avail_changed(q, before)
        self.dispatch()

    def set_paused(self, member: Member, paused: bool, reason: str = "") -> None:
        """Pause/unpause a member as QueuePause does (also the traffic generator's pauses)."""
        e = self.e
        q = e.queues[member.queue]
        before = self.any_available(q)
        member.paused = paused
        member.reason = reason if paused else ""
        if paused:
            member.last_pause = e.clock.isec()
        e.dsc(f"Queue:{q.name}_pause_{member.interface}", "INUSE" if paused else "NOT_INUSE")
        self.avail_changed(q, before)
        e.emit("QueueMemberPause", "agent,all", member.event_fields())
        if not paused:
            self.dispatch()

    # ------------------------------------------------------------ dispatch
    def dispatch(self) -> None:
        """Ring free members for waiting callers, in position order."""
        now = self.e.clock.now()
        for q in self.e.queues.values():
            for caller in list(q.callers):
                if caller.ringing or caller.answered or now < caller.next_try:
                    continue
                for m in q.pick(now, set()):
                    if caller.answered:  # ringall: an earlier member already answered
                        break
                    self._ring(q, caller, m)
        self.wake.set()

    def next_wake(self) -> float | None:
        """Simulated epoch of the next retry or wrap-up end, if any caller waits."""
        times: list[float] = []
        now = self.e.clock.now()
        for q in self.e.queues.values():
            if not q.callers:
                continue
            times += [c.next_try for c in q.callers if c.next_try > now]
            times += [m.wrapup_until for m in q.members.values() if m.wrapup_until > now]
        return min(times) if times else None

    async def run(self) -> None:
        """Dispatcher loop: wakes on changes and on retry/wrap-up deadlines."""
        while True:
            self.wake.clear()
            wake_at = self.next_wake()
            timeout = None if wake_at is None else max(
                0.0, (wake_at - self.e.clock.now()) / self.e.clock.time_scale) + 0.001
            try:
                await asyncio.wait_for(self.wake.wait(), timeout)
            except TimeoutError:
                pass
            self.dispatch()

    def _ring(self, q: QueueState, caller: Caller, m: Member) -> None:
        e = self.e
        ch = caller.channel
        s1, s2 = e.local_pair(m.exten, m.context, linkedid=ch.linkedid)
        s1.cid_num, s1.cid_name = ch.cid_num, ch.cid_name
        e.newexten(s1, "AppQueue", "(Outgoing Line)")
        e.new_callerid(s1)
        dialed = m.interface.split("/", 1)[1]
        e.varset(s1, "DIALEDPEERNUMBER", dialed)
        e.varset(s2, "DIALEDPEERNUMBER", dialed)
        s2.cid_num, s2.cid_name = ch.cid_num, ch.cid_name
        s2.conn_num, s2.conn_name = ch.cid_num, ch.cid_name
        e.new_callerid(s2)
        e.new_connected(s2)
        e.local_bridge(s1, s2, optimized=False)
        before = self.any_available(q)
        m.ringing = True
        caller.ringing.append(m)
        ring = Ring(caller, m, s1, e.clock.isec())
        self.rings[s1.name] = ring
        fields = [("Queue", q.name), ("Interface", m.interface), ("MemberName", m.name)]
        # AgentCalled carries the seat leg's snapshot as updated by the dial (exten and
        # connected line of the caller) while DialBegin, published before, still has the
        # original one (trace 01): emit them with the two snapshots.
        s1.exten, s1.conn_num, s1.conn_name = ch.exten, ch.cid_num, ch.cid_name
        e.dial_event("AgentCalled", ch, s1, fields)
        s1.exten, s1.conn_num, s1.conn_name = m.exten, "<unknown>", "<unknown>"
        e.dial_event("DialBegin", ch, s1, [("DialString", m.interface)])
        s1.exten, s1.conn_num, s1.conn_name = ch.exten, ch.cid_num, ch.cid_name
        if m.context == "seats-noanswer" or m.interface in self.no_answer:
            e.newexten(s2, "Wait", "60", 1)
            ring.timer = asyncio.get_running_loop().create_task(self._ring_timeout(q, ring))
            e.spawn(self._keep(ring.timer))
            return
        e.newexten(s2, "Answer", "", 1)
        e.newstate(s2, 6)
        self._answer(q, ring, before)

    async def _keep(self, task: asyncio.Task[None]) -> None:
        await task

    async def _ring_timeout(self, q: QueueState, ring: Ring) -> None:
        await self.e.clock.sleep(q.timeout)
        e = self.e
        e.dial_event("AgentRingNoAnswer", ring.caller.channel, ring.seat, [
            ("Queue", q.name), ("Interface", ring.member.interface),
            ("MemberName", ring.member.name), ("RingTime", str(int(q.timeout * 1000)))])
        e.dial_event("DialEnd", ring.caller.channel, ring.seat, [("DialStatus", "NOANSWER")])
        ring.caller.next_try = e.clock.now() + q.retry
        self._cancel_ring(ring, noanswer=True)

    def _cancel_ring(self, ring: Ring, noanswer: bool) -> None:
        """DialEnd CANCEL and hang up the seat's Local pair (trace 04)."""
        e = self.e
        if ring.timer is not None and ring.timer is not asyncio.current_task():
            ring.timer.cancel()
        s1 = ring.seat
        s2 = s1.peer
        assert s2 is not None
        e.dial_event("DialEnd", ring.caller.channel, s1, [("DialStatus", "CANCEL")])
        e.hangup_request(s2, 0)
        e.hangup(s1, 0)
        e.new_connected(s1)
        e.soft_hangup_request(s2, 16)
        e.hangup(s2, 0)
        e.dsc(s1.device, "NOT_INUSE")
        e.dsc(s1.device, "NOT_INUSE")
        self.rings.pop(s1.name, None)
        ring.member.ringing = False
        if ring.member in ring.caller.ringing:
            ring.caller.ringing.remove(ring.member)
        self.wake.set()

    def _answer(self, q: QueueState, ring: Ring, before: bool) -> None:
        """The seat answered: connect caller and seat (trace 01 order)."""
        e = self.e
        m, caller, s1 = ring.member, ring.caller, ring.seat
        ch = caller.channel
        self.rings.pop(s1.name, None)
        m.ringing = False
        caller.ringing.remove(m)
        for other in [r for r in self.rings.values() if r.caller is caller]:
            self._cancel_ring(other, noanswer=False)
        m.status = DEVICE_INUSE
        self.member_status(m)
        self.avail_changed(q, before or True)
        e.dsc(s1.device, "INUSE")
        e.newstate(s1, 6)
        e.newexten(s1, "AppQueue", "(Outgoing Line)")
        e.new_connected(s1)
        e.dsc(s1.device, "INUSE")
        e.dial_event("DialEnd", ch, s1, [("DialStatus", "ANSWER")])
        caller.answered = True
        self._leave(q, caller)
        now = e.clock.isec()
        hold = now - caller.joined
        e.dial_event("AgentConnect", ch, s1, [
            ("Queue", q.name), ("Interface", m.interface), ("MemberName", m.name),
            ("HoldTime", str(hold)), ("RingTime", str(now - ring.started))])
        q.record_connect(hold)
        m.in_call = True
        bridge = e.bridge_create()
        e.bridge_enter(bridge, s1)
        e.bridge_enter(bridge, ch)
        e.varset(s1, "BRIDGEPEER", ch.name)
        e.varset(ch, "BRIDGEPEER", s1.name)
        call = QueueCall(q, m, ch, s1, bridge, hold, now)
        self.calls[ch.name] = call
        self.calls[s1.name] = call
        talk = self.talk_time.pop(m.interface, None)
        e.dialplan.start_seat(s1.peer, talk)

    # ------------------------------------------------------------ completion
    def agent_complete(self, call: QueueCall, reason: str, with_channels: bool = True) -> None:
        """AgentComplete; without channel fields when both sides are gone (trace 05)."""
        if call.done:
            return
        call.done = True
        e = self.e
        talk = e.clock.isec() - call.connected
        tail = [("Queue", call.queue.name), ("Interface", call.member.interface),
                ("MemberName", call.member.name), ("HoldTime", str(call.hold)),
                ("TalkTime", str(talk)), ("Reason", reason)]
        if with_channels:
            e.dial_event("AgentComplete", call.caller, call.seat, tail)
        else:
            e.emit("AgentComplete", "agent,all", tail)
        call.queue.record_complete(talk)
        self.calls.pop(call.caller.name, None)

    def release_member(self, call: QueueCall) -> None:
        """The seat's leg is gone: count the call, start wrap-up, QueueMemberStatus."""
        if call.released:
            return
        call.released = True
        e = self.e
        m = call.member
        before = self.any_available(call.queue)
        m.calls_taken += 1
        m.last_call = e.clock.isec()
        m.in_call = False
        m.status = DEVICE_NOT_INUSE
        m.wrapup_until = e.clock.now() + call.queue.wrapuptime
        self.member_status(m)
        self.avail_changed(call.queue, before, may_rise=False)
        self.calls.pop(call.seat.name, None)
        self.wake.set()
