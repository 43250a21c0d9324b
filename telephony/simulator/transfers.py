"""Redirect (single: trace 05, dual into a ConfBridge: trace 07), Atxfer (trace 06; its
completion by the seat and a busy department measured on the real Asterisk 22.5, see
:meth:`Transfers.complete_attended` and :meth:`Transfers._busy`) and BlindTransfer (measured
on the real Asterisk 22.5, see :meth:`Transfers.blind_transfer`)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from telephony.simulator.core import Bridge, Channel
from telephony.simulator.dialplan import CONTEXTS, Dialplan
from telephony.simulator.wire import Fields


@dataclass(eq=False)
class _Consult:
    """An answered consultation (Atxfer): the seat's queue bridge and the consult bridge."""

    home: Bridge
    consult: Bridge
    d1: Channel
    d2: Channel
    transferred: asyncio.Event = field(default_factory=asyncio.Event)


def _prefixed(prefix: str, bridge: Bridge) -> Fields:
    """A bridge snapshot with keys ``<prefix>Bridge...`` (AttendedTransfer, BridgeMerge)."""
    return [(prefix + k, v) for k, v in bridge.snapshot()]


def _caller_of(home: Bridge, other: Channel) -> Channel:
    """The member of the queue bridge ``home`` that is not ``other``."""
    return next(m for m in home.members if m is not other)


class Transfers:
    """AMI-driven call moves."""

    def __init__(self, dialplan: Dialplan) -> None:
        self.d = dialplan
        self.e = dialplan.e
        dialplan.transfers = self
        # Answered consultations by the seat leg's name (see atxfer).
        self.consults: dict[str, _Consult] = {}
        # Share of completed attended transfers whose AttendedTransfer has no TransferTarget*
        # fields (the real Asterisk 22.5 leaves them out in about half the runs).
        self.target_missing_rate = 0.5
        self._pjsip = 0

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
        """Feature ``*2`` + digits on the seat's leg: a consultation with the department
        ``exten`` while the caller waits on hold, ended by whichever side hangs up first.

        The department's Local pair carries the call's Linkedid (trace 06 and every run on the
        real Asterisk 22.5). Its behaviour comes from the globals (:meth:`PbxSimulator.set_global
        <telephony.simulator.server.PbxSimulator.set_global>`, as the tests/asterisk harness
        sets them): ``DEPT_TALK_<exten>``, else ``DEPT_TALK``, else 4 seconds.

        * The department answers (the recorded ``[departments]``: Answer, Wait, Hangup; trace
          06): its ``;1`` enters the consultation bridge still Down and goes Up
          (``Newstate`` 6) when its ``;2`` has answered, then ``DialEnd ANSWER`` of the ``;1``,
          then the seat's leg moves from the queue bridge into the consultation bridge.
        * The department hangs up first (trace 06): the seat's leg goes back to the caller,
          ``Unhold``; no transfer.
        * The seat's leg hangs up first: the transfer completes, see
          :meth:`complete_attended`.
        * ``DEPT_TALK_<exten>=busy``: the department's line is busy, see :meth:`_busy`.
        """
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
        d1, d2 = e.local_pair(exten, context, linkedid=seat.linkedid)
        e.varset(d1, "TRANSFERERNAME", seat.name)
        e.varset(d1, "ATTENDEDTRANSFER", seat.name)
        consult = e.bridge_create()
        e.varset(d2, "ATTENDEDTRANSFER", seat.name)
        e.varset(d2, "TRANSFERERNAME", seat.name)
        d2.cid_num, d2.cid_name = seat.cid_num, seat.cid_name
        d1.conn_num, d1.conn_name = seat.cid_num, seat.cid_name
        e.local_bridge(d1, d2, optimized=True)
        talk_setting = e.globals.get(f"DEPT_TALK_{exten}") or e.globals.get("DEPT_TALK") or "4"
        if talk_setting == "busy":
            await self._busy(seat, home, consult, d1, d2, exten)
            return
        e.newexten(d2, "Answer", "", 1)
        e.newstate(d2, 6)
        e.bridge_enter(consult, d1)
        e.varset(d1, "ATTENDEDTRANSFER", "")
        e.newstate(d1, 6)
        e.dial_event("DialEnd", None, d1, [("DialStatus", "ANSWER")])
        self._into_consult(seat, home, consult)
        consult_state = _Consult(home, consult, d1, d2) if home is not None else None
        if consult_state is not None:
            self.consults[seat.name] = consult_state
        talk = float(talk_setting)
        started = e.clock.now()
        await e.clock.sleep(0.5)
        e.newexten(d2, "Wait", f"{talk:g}", 2)
        # A seat leg in no bridge (not modelled further) only waits for the department.
        done = consult_state.transferred if consult_state is not None else asyncio.Event()
        transferred = await self._wait(done, talk - (e.clock.now() - started))
        self.consults.pop(seat.name, None)
        if transferred:
            assert home is not None
            caller_gone = await self._wait(
                _caller_of(home, d1).interrupt, talk - (e.clock.now() - started))
            self._department_after_transfer(home, d1, d2, caller_gone)
            return
        self._consultation_ends(seat, home, consult, d1, d2, priority=3, cause=16)

    def _consultation_ends(self, seat: Channel, home: Bridge | None, consult: Bridge,
                           d1: Channel, d2: Channel, *, priority: int, cause: int) -> None:
        """The department's leg hangs up during the consultation (its dialplan's ``Hangup``
        at ``priority``, with ``cause``: 16 after talking, 17 busy) and the seat goes back to
        the caller, off hold (trace 06 from 9.117 s; the busy case measured on 22.5)."""
        e = self.e
        e.newexten(d2, "Hangup", "", priority)
        e.soft_hangup_request(d2)
        e.hangup_request(d1, cause)
        e.hangup(d2, cause)
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
        e.hangup(d1, cause)

    def _into_consult(self, seat: Channel, home: Bridge | None, consult: Bridge) -> None:
        """The seat's leg leaves the queue bridge for the consultation bridge."""
        e = self.e
        d1 = consult.members[0]
        if home is not None:
            e.bridge_leave(home, seat)
        e.bridge_enter(consult, seat)
        e.varset(d1, "BRIDGEPEER", seat.name)
        e.varset(seat, "BRIDGEPEER", d1.name)

    async def _wait(self, event: asyncio.Event, secs: float) -> bool:
        """Wait up to ``secs`` simulated seconds for ``event``; whether it came."""
        if event.is_set():
            return True
        try:
            await asyncio.wait_for(event.wait(), max(0.0, secs) / self.e.clock.time_scale)
        except TimeoutError:
            return False
        return True

    async def _busy(self, seat: Channel, home: Bridge | None, consult: Bridge, d1: Channel,
                    d2: Channel, exten: str) -> None:
        """The department's line is busy: no transfer, the seat back with the caller.

        Measured on the real Asterisk 22.5 (the project's ``[departments]``
        ``Dial(...${EXTEN},60)``; tests/asterisk's busy department answers the Dial with
        ``Hangup(17)``; two runs): ``Newexten Dial`` of the ``;2``, ``BridgeEnter`` of the
        ``;1`` (Down) into the consultation bridge, the callee's ``Newchannel`` and
        ``DialBegin``, the seat's leg into the consultation bridge, the callee's ``Hangup``
        (cause 17), ``DialEnd`` ``DialStatus: BUSY`` (Channel = the ``;2``), ``Newexten
        Hangup`` of the ``;2``, ``SoftHangupRequest`` (16) of the ``;2``,
        ``HangupRequest`` (17) of the ``;1``, ``Hangup`` (17) of the ``;2``, ``BridgeLeave``
        of the ``;1`` and the seat's leg, the seat's leg back in the queue bridge,
        ``Unhold``, ``BridgeDestroy``, ``Hangup`` (17) of the ``;1``. No ``DialEnd`` for the
        ``;1``, no ``AttendedTransfer``. The callee is a ``Local/...@test-departments``
        pair there; here it is the ``PJSIP/<exten>-<n>`` channel the project's dialplan
        dials. (In one run of two the seat's leg entered the consultation bridge only after
        the ``;2`` had hung up: threads race.)
        """
        e = self.e
        e.newexten(d2, "Dial", f"PJSIP/{exten},60", 1)
        e.bridge_enter(consult, d1)
        e.varset(d1, "ATTENDEDTRANSFER", "")
        self._pjsip += 1
        callee = Channel(f"PJSIP/{exten}-{self._pjsip:08x}", e.ids.uniqueid(), d2.linkedid,
                         "departments", exten, state=0, created=e.clock.now())
        e.channels[callee.name] = callee
        e.chan_event("Newchannel", callee)
        e.dial_event("DialBegin", d2, callee, [("DialString", exten)])
        self._into_consult(seat, home, consult)
        await e.clock.sleep(0.01)
        e.hangup(callee, 17)
        e.dial_event("DialEnd", d2, callee, [("DialStatus", "BUSY")])
        self._consultation_ends(seat, home, consult, d1, d2, priority=2, cause=17)

    def complete_attended(self, seat: Channel) -> bool:
        """The seat's leg ``seat`` hangs up while the department it consults is up: Asterisk
        bridges the caller with the department and reports the transfer. ``False`` (nothing
        done) when ``seat`` is in no answered consultation.

        Measured on the real Asterisk 22.5 (AMI ``Hangup`` of the seat's ``;1`` during the
        consultation, tests/asterisk's Local seat and department, four runs); this is the
        order of two of them:

        1. ``VarSet BRIDGEPEER`` "" on the seat's leg; its ``BridgeLeave`` (consultation);
        2. ``HangupRequest``, ``SoftHangupRequest``, ``Hangup`` of the seat's ``;2``;
           ``DeviceStateChange`` NOT_INUSE of the seat;
        3. ``BridgeMerge`` (To = the queue bridge, From = the consultation bridge), the
           department's ``;1`` leaves the consultation bridge and enters the queue bridge;
           ``VarSet BRIDGEPEER`` on the caller (= department) and the department (= caller);
        4. ``QueueMemberStatus`` (the seat free);
        5. ``AttendedTransfer``: ``Result: Success``, ``OrigTransferer*`` (seat leg),
           ``OrigBridge*`` (queue bridge, 2 channels), ``SecondTransferer*`` (seat leg again),
           ``SecondBridge*`` (consultation bridge, 0 channels), ``Transferee*`` (caller),
           ``TransferTarget*`` (the department's ``;1``, ``TransferTargetExten`` = the number),
           ``IsExternal: No``, ``DestType: Bridge``, ``DestBridgeUniqueid`` (queue bridge).
           The ``TransferTarget*`` fields were missing altogether in one run of four here and
           in about half the lead's runs: :attr:`Transfers.target_missing_rate`;
        6. ``AgentComplete`` with the caller's Uniqueid and ``Reason: transfer``;
        7. ``BridgeDestroy`` (consultation), ``Hangup`` of the seat's ``;1``,
           ``DeviceStateChange`` NOT_INUSE.

        Steps 3, 4 and 6–7 interleave differently from run to run (in one run the merge came
        before the seat's ``;2`` hung up, in another ``AgentComplete`` came after the seat's
        ``;1`` hung up, without the Dest* fields); in all four the seat's ``;2`` hung up before
        ``AttendedTransfer``. The caller then talks with the department; whoever of the two
        hangs up ends the call. queue_log: ``ATTENDEDTRANSFER|BRIDGE|<queue bridge>|<hold>|
        <talk>|<pos>``. The seat's ``;2`` ending (its own dialplan) completes the transfer the
        same way (not measured separately).
        """
        c = self.consults.get(seat.name)
        home = c.home if c is not None else None
        if c is None or home is None or c.transferred.is_set() or seat.hungup:
            return False
        e = self.e
        call = self.d.q.calls.get(seat.name)
        caller = _caller_of(home, seat)
        two = seat.peer
        e.varset(seat, "BRIDGEPEER", "")
        e.bridge_leave(c.consult, seat)
        if two is not None and not two.hungup:
            e.hangup_request(two)
            e.soft_hangup_request(two)
            e.hangup(two)
        e.dsc(seat.device, "NOT_INUSE")
        e.emit("BridgeMerge", "call,all", _prefixed("To", home) + _prefixed("From", c.consult))
        e.bridge_leave(c.consult, c.d1)
        e.bridge_enter(home, c.d1)
        e.varset(caller, "BRIDGEPEER", c.d1.name)
        e.varset(c.d1, "BRIDGEPEER", caller.name)
        if call is not None:
            self.d.q.release_member(call)
        target = [] if e.rng.random() < self.target_missing_rate else c.d1.snapshot(
            "TransferTarget")
        e.emit("AttendedTransfer", "call,all", [("Result", "Success")]
               + seat.snapshot("OrigTransferer") + _prefixed("Orig", home)
               + seat.snapshot("SecondTransferer") + _prefixed("Second", c.consult)
               + caller.snapshot("Transferee") + target
               + [("IsExternal", "No"), ("DestType", "Bridge"),
                  ("DestBridgeUniqueid", home.uid)])
        if call is not None:
            self.d.q.agent_complete(call, "transfer")
        e.bridge_destroy(c.consult)
        e.hangup(seat)
        e.dsc(seat.device, "NOT_INUSE")
        c.transferred.set()
        return True

    def _department_after_transfer(self, home: Bridge, d1: Channel, d2: Channel,
                                   caller_gone: bool) -> None:
        """The transferred call ends: the department hangs up, or the caller did."""
        e = self.e
        caller = _caller_of(home, d1)
        if not caller_gone:
            e.newexten(d2, "Hangup", "", 3)
            e.soft_hangup_request(d2)
            e.hangup_request(d1)
            e.hangup(d2)
            e.varset(caller, "BRIDGEPEER", "")
            e.bridge_leave(home, d1)
            e.hangup(d1)
            e.bridge_leave(home, caller)
            e.bridge_destroy(home)
            self.d.hangup_from_one(caller, dsc=False)
            return
        e.varset(d1, "BRIDGEPEER", "")
        if caller in home.members:
            e.bridge_leave(home, caller)
        e.bridge_leave(home, d1)
        e.bridge_destroy(home)
        self.d.hangup_from_one(d1, dsc=False)

    def _dtmf(self, ch: Channel, digit: str) -> None:
        self.e.chan_event("DTMFEnd", ch, [("Digit", digit), ("DurationMs", "0"),
                                          ("Direction", "Received")], "dtmf,all")
