"""Redirect (single: trace 05, dual into a ConfBridge: trace 07), Atxfer (trace 06) and
BlindTransfer (measured on the real Asterisk 22.5, see :meth:`Transfers.blind_transfer`)."""

from __future__ import annotations

from telephony.simulator.core import Bridge, Channel
from telephony.simulator.dialplan import CONTEXTS, Dialplan


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
            self._department(ch)
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

    def _department(self, ch: Channel) -> None:
        """``ch`` runs the recorded ``[departments]``: Wait(DEPT_TALK), Hangup (trace 05)."""
        talk = ch.variables.get("DEPT_TALK") or "4"
        self.e.newexten(ch, "Wait", talk, 2)
        if ch.task is not None:
            ch.task.cancel()
        self.e.spawn(self._wait_hangup(ch, float(talk)), owner=ch)

    def transferable(self, seat: Channel) -> Bridge | None:
        """The two-party bridge a ``BlindTransfer`` of ``seat`` moves the other party out of;
        ``None`` when ``seat`` is in no bridge (Asterisk: "Transfer invalid"). A seat in a
        ConfBridge room is not modelled and refused the same way."""
        bridge = seat.bridge
        if bridge is None or bridge.kind != "basic" or len(bridge.members) != 2:
            return None
        return bridge

    def blind_transfer_invalid(self, seat: Channel, context: str, exten: str) -> None:
        """The event after "Transfer invalid": the transferer only, no transferee, no bridge."""
        self.e.emit("BlindTransfer", "call,all", [("Result", "Invalid")]
                    + seat.snapshot("Transferer")
                    + [("IsExternal", "Yes"), ("Context", context), ("Extension", exten)])

    def blind_transfer(self, seat: Channel, bridge: Bridge, context: str, exten: str) -> None:
        """AMI ``BlindTransfer`` of ``seat`` (the desk's 转接): the caller bridged with it goes
        to ``context,exten,1``, the seat's leg hangs up.

        Measured on the real Asterisk 22.5 (queue ``12345`` with option ``t``, Local seat and
        caller, six runs); the response "Transfer succeeded" comes before every event, then:

        1. ``Unhold`` of the seat's leg;
        2. ``VarSet BLINDTRANSFER`` on the seat's leg (= caller) and on the caller (= seat);
        3. ``VarSet BRIDGEPEER`` "" on the seat's leg;
        4. ``BlindTransfer``: ``Result: Success``, Transferer* (seat leg), Transferee*
           (caller), the queue bridge (2 channels), ``IsExternal: Yes``, ``Context``,
           ``Extension``;
        5. ``VarSet BRIDGEPEER`` "" on the caller;
        6. ``AgentComplete`` with the caller's Uniqueid and ``Reason: transfer``;
        7. ``BridgeLeave`` of the seat's leg; ``Newexten`` of the caller at
           ``context,exten,1`` still naming ``Queue`` (as after a Redirect);
        8. ``HangupRequest`` of the seat's ``;2``, ``Hangup`` of its ``;1``, ``BridgeLeave`` of
           the caller, ``SoftHangupRequest`` and ``Hangup`` of the ``;2``, ``BridgeDestroy``;
        9. ``DeviceStateChange`` NOT_INUSE of the seat (twice), ``QueueMemberStatus`` (free);
        10. the caller runs ``context``: here the recorded ``[departments]`` (the project's
            dials the department); a context the simulator does not have hangs the caller up
            at once, as Asterisk did for a context that does not exist.

        Steps 5–9 interleave differently from run to run (threads race; in one run both
        ``BridgeLeave`` came before ``BlindTransfer``); this is the order of one run, and in
        all six the seat's leg hung up after ``BlindTransfer``. queue_log:
        ``BLINDTRANSFER|<exten>|<context>|<hold>|<talk>|<pos>``.
        """
        e = self.e
        caller = next(m for m in bridge.members if m is not seat)
        call = self.d.q.calls.get(seat.name)
        two = seat.peer
        e.chan_event("Unhold", seat)
        e.varset(seat, "BLINDTRANSFER", caller.name)
        e.varset(caller, "BLINDTRANSFER", seat.name)
        e.varset(seat, "BRIDGEPEER", "")
        e.emit("BlindTransfer", "call,all", [("Result", "Success")]
               + seat.snapshot("Transferer") + caller.snapshot("Transferee") + bridge.snapshot()
               + [("IsExternal", "Yes"), ("Context", context), ("Extension", exten)])
        e.varset(caller, "BRIDGEPEER", "")
        if call is not None:
            self.d.q.agent_complete(call, "transfer")
        e.bridge_leave(bridge, seat)
        caller.context, caller.exten = context, exten
        e.newexten(caller, caller.app, caller.appdata, 1)
        if two is not None:
            e.hangup_request(two)
        e.hangup(seat)
        e.bridge_leave(bridge, caller)
        if two is not None:
            e.soft_hangup_request(two)
            e.hangup(two)
        e.bridge_destroy(bridge)
        e.dsc(seat.device, "NOT_INUSE")
        e.dsc(seat.device, "NOT_INUSE")
        if call is not None:
            self.d.q.release_member(call)
        if context == "departments":
            self._department(caller)
        elif context not in CONTEXTS:
            self.d.hangup_from_one(caller)

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
