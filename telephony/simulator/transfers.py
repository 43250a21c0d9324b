"""Redirect (single: trace 05, dual into a ConfBridge: trace 07) and Atxfer (trace 06)."""

from __future__ import annotations

from telephony.simulator.core import Channel
from telephony.simulator.dialplan import Dialplan


class Transfers:
    """AMI-driven call moves."""

    def __init__(self, dialplan: Dialplan) -> None:
        self.d = dialplan
        self.e = dialplan.e

    def redirect(self, ch: Channel, context: str, exten: str) -> None:
        """Move one channel out of its bridge into ``context``/``exten`` priority 1 (trace 05)."""
        e = self.e
        call = self.d.q.calls.get(ch.name)
        bridge = ch.bridge
        other = next((m for m in bridge.members if m is not ch), None) if bridge else None
        if bridge is not None:
            e.varset(ch, "BRIDGEPEER", "")
        ch.context, ch.exten = context, exten
        # Asterisk's first Newexten after a redirect still names the previous application.
        e.newexten(ch, ch.app, ch.appdata, 1)
        if other is not None:
            e.varset(other, "BRIDGEPEER", "")
        if bridge is not None:
            e.bridge_leave(bridge, ch)
        if context == "departments":
            talk = ch.variables.get("DEPT_TALK") or "4"
            e.newexten(ch, "Wait", talk, 2)
            if ch.task is not None:
                ch.task.cancel()
            e.spawn(self._wait_hangup(ch, float(talk)), owner=ch)
        if bridge is not None and bridge.kind == "basic":
            if other is not None:
                e.bridge_leave(bridge, other)
            e.bridge_destroy(bridge)
            if call is not None and other is call.seat:
                two = other.peer
                assert two is not None
                e.hangup_request(two)
                e.hangup(other)
                self.d.q.release_member(call)
                e.soft_hangup_request(two)
                e.dsc(other.device, "NOT_INUSE")
                e.hangup(two)
                e.dsc(other.device, "NOT_INUSE")

    async def _wait_hangup(self, ch: Channel, secs: float) -> None:
        await self.e.clock.sleep(secs)
        self.e.newexten(ch, "Hangup", "", 3)
        ch.task = None
        self.d.hangup_from_one(ch)

    def dual_redirect_conf(self, a: Channel, b: Channel, context: str, exten: str) -> None:
        """Both parties of a bridge into ``threeway``/``room-N`` (trace 07)."""
        e = self.e
        bridge = a.bridge
        e.varset(a, "BRIDGEPEER", "")
        e.varset(b, "BRIDGEPEER", "")
        for ch in (b, a):
            ch.context, ch.exten = context, exten
            e.newexten(ch, ch.app, ch.appdata, 1)
        room = exten[5:]
        if bridge is not None:
            e.bridge_leave(bridge, b)
            e.bridge_leave(bridge, a)
        conf = e.conferences.get(room)
        if conf is None:
            conf = e.bridge_create("confbridge", room)
            e.emit("BridgeCreate", "call,all", conf.snapshot())
            if bridge is not None:
                e.bridge_destroy(bridge)
            ann = Channel(f"CBAnn/{room}-{e.ids.local_suffix()};2", e.ids.uniqueid(), "", "", "")
            e.ids.uniqueid()
            conf.members.append(ann)
            e.conferences[room] = conf
            e.emit("ConfbridgeStart", "call,all", [("Conference", room)] + conf.snapshot())
        for ch in (b, a):
            conf.members.append(ch)
            ch.bridge = conf
            e.emit("BridgeEnter", "call,all", conf.snapshot() + ch.snapshot())
            if ch is b:
                e.varset(b, "BRIDGEPEER", ",".join(o.name for o in conf.members if o is not b))
        e.varset(b, "BRIDGEPEER", ",".join(o.name for o in conf.members if o is not b))
        e.varset(a, "BRIDGEPEER", ",".join(o.name for o in conf.members if o is not a))
        for ch in (b, a):
            e.emit("ConfbridgeJoin", "call,all", [("Conference", room)] + conf.snapshot()
                   + ch.snapshot() + [("Admin", "No"), ("Muted", "No")])

    async def atxfer(self, seat: Channel, context: str, exten: str) -> None:
        """Feature ``*2`` + digits on the seat's leg, consult call, back on hangup."""
        e = self.e
        e.varset(seat, "TRANSFER_CONTEXT", context)
        self._dtmf(seat, "*")
        await e.clock.sleep(0.161)
        self._dtmf(seat, "2")
        await e.clock.sleep(0.1)
        e.chan_event("Hold", seat)
        for digit in exten:
            await e.clock.sleep(0.061)
            self._dtmf(seat, digit)
        home = seat.bridge
        d1, d2 = e.local_pair(exten, context)
        e.varset(d1, "TRANSFERERNAME", seat.name)
        e.varset(d1, "ATTENDEDTRANSFER", seat.name)
        consult = e.bridge_create()
        e.varset(d2, "ATTENDEDTRANSFER", seat.name)
        e.varset(d2, "TRANSFERERNAME", seat.name)
        d2.cid_num, d2.cid_name = seat.cid_num, seat.cid_name
        d1.conn_num, d1.conn_name = seat.cid_num, seat.cid_name
        e.local_bridge(d1, d2, optimized=True)
        e.newexten(d2, "Answer", "", 1)
        e.newstate(d2, 6)
        e.bridge_enter(consult, d1)
        e.varset(d1, "ATTENDEDTRANSFER", "")
        e.newstate(d1, 6)
        e.dial_event("DialEnd", None, d1, [("DialStatus", "ANSWER")])
        if home is not None:
            e.bridge_leave(home, seat)
        e.bridge_enter(consult, seat)
        e.varset(d1, "BRIDGEPEER", seat.name)
        e.varset(seat, "BRIDGEPEER", d1.name)
        talk = float(d2.variables.get("DEPT_TALK") or 4)
        await e.clock.sleep(0.5)
        e.newexten(d2, "Wait", f"{talk:g}", 2)
        await e.clock.sleep(talk)
        e.newexten(d2, "Hangup", "", 3)
        e.soft_hangup_request(d2)
        e.hangup_request(d1)
        e.hangup(d2)
        e.varset(d1, "BRIDGEPEER", "")
        e.bridge_leave(consult, d1)
        e.bridge_leave(consult, seat)
        if home is not None and not seat.hungup:
            e.bridge_enter(home, seat)
            other = next((m for m in home.members if m is not seat), None)
            if other is not None:
                e.varset(other, "BRIDGEPEER", seat.name)
                e.varset(seat, "BRIDGEPEER", other.name)
        e.chan_event("Unhold", seat)
        e.bridge_destroy(consult)
        e.hangup(d1)

    def _dtmf(self, ch: Channel, digit: str) -> None:
        self.e.chan_event("DTMFEnd", ch, [("Digit", digit), ("DurationMs", "0"),
                                          ("Direction", "Received")], "dtmf,all")
