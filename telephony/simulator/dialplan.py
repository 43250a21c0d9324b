"""The recorded dialplan (``recorded-with/extensions.conf``) as call flows: Originate,
citizen legs, seats, departments, survey, AudioSocket IVR, Redirect, Atxfer, ConfBridge."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

from telephony.simulator.asr_tap import chanspy, tap_two
from telephony.simulator.audiosocket_client import AudioSocketSource, stream_wav
from telephony.simulator.core import Bridge, Channel
from telephony.simulator.engine import Engine
from telephony.simulator.queueapp import QueueApp, QueueCall
from telephony.simulator.wire import Fields

CONTEXTS = frozenset({
    "incoming", "incoming-asr", "citizen", "citizen-impatient", "seats", "seats-noanswer",
    "seats-long", "departments", "threeway", "survey", "citizen-survey", "asr-tap",
})
# Playback durations of the sound files used in the recordings (trace 06: citizen-ko took
# 6.34 s); a missing file (silence/1 in the recording install) fails at once.
PLAYBACK_SECONDS = {"citizen-ko": 6.343}
ANSWER_DELAY = 0.5  # Answer() on a ringing Local ;2 takes 500 ms before the next priority


class Dialplan:
    """Runs channels through the recorded contexts."""

    def __init__(self, engine: Engine, queue_options: str = "t",
                 audiosocket_seconds: float = 9.346) -> None:
        self.e = engine
        self.q = QueueApp(engine)
        self.queue_options = queue_options
        self.audiosocket_seconds = audiosocket_seconds
        # None: AudioSocket() only takes its recorded time (trace replay); set: callers really
        # stream speech to an AudioSocket server (audiosocket_client.py).
        self.audiosocket: AudioSocketSource | None = None
        engine.dialplan = self
        # Simulated callers: patience per caller ;1 name (traffic generator).
        self.patience: dict[str, float] = {}
        # Set by transfers.Transfers: a seat leg hanging up mid-consultation completes it.
        self.transfers: Any = None

    # ------------------------------------------------------------ originate
    def add_caller(self, number: str, *, talk: float = 60.0, patience: float | None = None,
                   speech: str = "silence/1", context: str = "incoming") -> str:
        """Originate one simulated citizen into ``context`` (no AMI client needed).

        Returns the caller's queue-side channel name. ``patience`` (simulated seconds) makes
        the caller hang up if still waiting in the queue by then.
        """
        suffix = self.e.ids._local  # the pair about to be created
        name = f"Local/talk@citizen-{suffix:08x};1"
        if patience is not None:
            self.patience[name] = patience
        self.originate(
            {"channel": "Local/talk@citizen", "context": context, "exten": "12345",
             "callerid": f'"" <{number}>'},
            [("SPEECH", speech), ("TALK", f"{talk:g}")], None, lambda _f: None)
        return name

    def originate(self, fields: dict[str, str], variables: list[tuple[str, str]],
                  action_id: str | None, respond: Callable[[Fields], None]) -> None:
        """Originate Async: a Local pair, the ;2 side runs its context (trace 01, 07, 09)."""
        e = self.e
        target = fields.get("channel", "")
        respond([("Response", "Success")]
                + ([("ActionID", action_id)] if action_id is not None else [])
                + [("Message", "Originate successfully queued")])
        exten, _, context = target.partition("/")[2].partition("@")
        context = context.partition("/")[0]     # Local/x@ctx/n: "/n" is an option
        one, two = e.local_pair(exten, context)
        e.newexten(one, "AppDial2", "(Outgoing Line)")
        app = fields.get("application")
        ctx, ext = fields.get("context", ""), fields.get("exten", "")
        if context not in CONTEXTS:
            e.hangup(two, 0)
            e.hangup(one, 0)
            e.dsc(one.device, "INVALID")
            e.emit("OriginateResponse", "call,all", self._orig_resp(
                action_id, "Failure", target, app, fields, ctx, ext, "0", "<unknown>",
                "<unknown>", "<unknown>"))
            e.dsc(one.device, "INVALID")
            return
        num, name = parse_callerid(fields.get("callerid", ""))
        for k, v in reversed(variables):
            e.varset(one, k, v)
        if num:
            one.cid_num, one.cid_name = num, name
            e.new_callerid(one)
            one.conn_num, one.conn_name = num, name
            e.new_connected(one)
        for k, v in variables:
            e.varset(two, k, v)
        if num:
            two.cid_num, two.cid_name = num, name
            two.conn_num, two.conn_name = num, name
            e.new_callerid(two)
            e.new_connected(two)
        e.local_bridge(one, two, optimized=True)
        e.dial_event("DialBegin", None, one, [("DialString", f"{exten}@{context}")])
        # The ;2 side answers at priority 1 of every originate target context.
        e.newexten(two, "Answer", "", 1)
        e.newstate(two, 6)
        e.newstate(one, 6)
        if app:
            e.emit("OriginateResponse", "call,all", self._orig_resp(
                action_id, "Success", one.name, app, fields, ctx, ext, "4", one.uniqueid,
                one.cid_num, one.cid_name))
            e.dial_event("DialEnd", None, one, [("DialStatus", "ANSWER")])
            if app.lower() == "confbridge":
                self.conf_join(one, fields.get("data", ""))
            elif app.lower() == "chanspy":      # the conversation tap (asr_tap.py)
                e.spawn(chanspy(e, one, fields.get("data", ""), self.hangup_from_one),
                        owner=one)
        else:
            e.dsc(one.device, "INUSE")
            e.dial_event("DialEnd", None, one, [("DialStatus", "ANSWER")])
            e.dsc(one.device, "INUSE")
            one.context, one.exten = ctx, ext
            e.newexten(one, "Answer", "", 1)
            if action_id is not None:  # traffic calls are phones, not Originates
                e.emit("OriginateResponse", "call,all", self._orig_resp(
                    action_id, "Success", one.name, None, fields, ctx, ext, "4",
                    one.uniqueid, one.cid_num, one.cid_name))
            self.run_one(one)
        # A ;2 whose ;1 runs an application directly moved on at once (trace 07: 16 ms).
        e.spawn(self.run_two(two, 0.0 if app else ANSWER_DELAY), owner=two)

    @staticmethod
    def _orig_resp(action_id: str | None, result: str, channel: str, app: str | None,
                   fields: dict[str, str], ctx: str, ext: str, reason: str, uid: str,
                   num: str, name: str) -> Fields:
        out: Fields = [("ActionID", action_id)] if action_id is not None else []
        out += [("Response", result), ("Channel", channel)]
        out += ([("Application", app), ("Data", fields.get("data", ""))] if app
                else [("Context", ctx), ("Exten", ext)])
        return out + [("Reason", reason), ("Uniqueid", uid), ("CallerIDNum", num),
                      ("CallerIDName", name)]

    # ------------------------------------------------------------ ;1 side contexts
    def run_one(self, one: Channel) -> None:
        """``one`` is Up at priority 1 (Answer done) of incoming/incoming-asr/survey."""
        e = self.e
        if one.context == "incoming":
            e.newexten(one, "Queue", f"12345,{self.queue_options},,,120", 2)
            self.queue_join(one)
        elif one.context == "incoming-asr":
            e.spawn(self._asr(one), owner=one)
        elif one.context == "survey":
            e.spawn(self._survey(one), owner=one)
        elif one.context == "departments":
            e.spawn(self._department_one(one), owner=one)

    def queue_join(self, one: Channel) -> None:
        """Queue(12345): join and wait; a traffic caller may give up (patience)."""
        queue = self.e.queues["12345"]
        caller = self.q.join(queue, one)
        patience = self.patience.pop(one.name, None)
        if patience is not None:
            self.e.spawn(self._patience(one, caller, patience))

    async def _patience(self, one: Channel, caller: object, patience: float) -> None:
        await self.e.clock.sleep(patience)
        two = one.peer
        if two is not None and not two.hungup and not getattr(caller, "answered", True):
            self.hangup_app(two)

    async def _asr(self, one: Channel) -> None:
        e = self.e
        asr = str(uuid.UUID(int=e.rng.getrandbits(128), version=4))
        e.newexten(one, "Set", f"ASR_UUID={asr}", 2)
        e.varset(one, "ASR_UUID", asr)
        source = self.audiosocket
        target = source.target if source else "127.0.0.1:9092"
        e.newexten(one, "AudioSocket", f"{asr},{target}", 3)
        if source is None:
            await e.clock.sleep(self.audiosocket_seconds)
        elif not await stream_wav(source, e.clock, asr, self.audiosocket_seconds):
            # app_audiosocket.c returns -1 when it cannot connect: Asterisk hangs up.
            one.task = None
            self.hangup_from_one(one)
            return
        e.newexten(one, "Queue", f"12345,{self.queue_options},,,120", 4)
        one.task = None
        self.queue_join(one)

    async def _survey(self, one: Channel) -> None:
        e = self.e
        e.newexten(one, "Read", "RATING,,1,,1,5", 2)
        e.varset(one, "READSTATUS", "ERROR")
        try:
            digit = await asyncio.wait_for(one.dtmf.get(), 5 / e.clock.time_scale)
            status = "OK"
        except TimeoutError:
            digit, status = "", "TIMEOUT"
        e.varset(one, "RATING", digit)
        e.varset(one, "READSTATUS", status)
        ticket = one.variables.get("TICKET", "")
        e.newexten(one, "UserEvent",
                   f"SurveyResult,Ticket: {ticket},Rating: {digit},ReadStatus: {status}", 3)
        e.chan_event("UserEvent", one, [("UserEvent", "SurveyResult"), ("Ticket", ticket),
                                        ("Rating", digit), ("ReadStatus", status)],
                     "user,all")
        e.newexten(one, "Hangup", "", 4)
        self.hangup_from_one(one)

    async def _department_one(self, one: Channel) -> None:
        """A caller redirected into ``departments`` (trace 05): Wait, then Hangup."""
        e = self.e
        talk = one.variables.get("DEPT_TALK") or "4"
        e.newexten(one, "Wait", talk, 2)
        await e.clock.sleep(float(talk))
        e.newexten(one, "Hangup", "", 3)
        self.hangup_from_one(one)

    # ------------------------------------------------------------ ;2 side contexts
    async def run_two(self, two: Channel, answer_delay: float = ANSWER_DELAY) -> None:
        """The ;2 side of an originated pair, after its Answer at priority 1."""
        e = self.e
        v = two.variables
        await e.clock.sleep(answer_delay)
        if two.context == "asr-tap":
            if await tap_two(e, two, self.audiosocket):
                e.newexten(two, "Hangup", "", 3)
        elif two.context == "citizen":
            e.newexten(two, "Wait", "1", 2)
            await e.clock.sleep(1)
            speech = v.get("SPEECH", "")
            e.newexten(two, "Playback", speech, 3)
            if speech in PLAYBACK_SECONDS:
                await e.clock.sleep(PLAYBACK_SECONDS[speech])
                e.varset(two, "PLAYBACKSTATUS", "SUCCESS")
            else:
                e.varset(two, "PLAYBACKSTATUS", "FAILED")
            talk = v.get("TALK", "")
            e.newexten(two, "Wait", talk, 4)
            await e.clock.sleep(float(talk or 0))
            e.newexten(two, "Hangup", "", 5)
        elif two.context == "citizen-impatient":
            e.newexten(two, "Wait", v.get("PATIENCE", ""), 2)
            await e.clock.sleep(float(v.get("PATIENCE") or 0))
            e.newexten(two, "Hangup", "", 3)
        elif two.context == "citizen-survey":
            e.newexten(two, "Wait", "1.5", 2)
            await e.clock.sleep(1.5)
            e.newexten(two, "SendDTMF", "1", 3)
            await self._send_dtmf(two, "1")
            await e.clock.sleep(2)
            e.newexten(two, "Hangup", "", 4)
        elif two.context == "departments":
            talk = v.get("DEPT_TALK") or "4"
            e.newexten(two, "Wait", talk, 2)
            await e.clock.sleep(float(talk))
            e.newexten(two, "Hangup", "", 3)
        else:  # seats-like contexts originated directly: wait and hang up
            await e.clock.sleep(3)
            e.newexten(two, "Hangup", "", 3)
        two.task = None
        self.hangup_app(two, newexten=False)

    async def _send_dtmf(self, two: Channel, digit: str) -> None:
        e = self.e
        one = two.peer
        assert one is not None
        await e.clock.sleep(0.1)
        e.chan_event("DTMFBegin", one, [("Digit", digit), ("Direction", "Received")],
                     "dtmf,all")
        await e.clock.sleep(0.1)
        e.chan_event("DTMFEnd", one, [("Digit", digit), ("DurationMs", "100"),
                                      ("Direction", "Received")], "dtmf,all")
        one.dtmf.put_nowait(digit)

    def start_seat(self, two: Channel, talk: float | None) -> None:
        """The seat's ;2 after answering: Wait(AGENT_TALK or 3), Hangup (seats, seats-long)."""
        self.e.spawn(self._seat(two, talk), owner=two)

    async def _seat(self, two: Channel, talk: float | None) -> None:
        e = self.e
        await e.clock.sleep(ANSWER_DELAY)
        if two.context == "seats-long":
            arg, secs = "30", 30.0
        else:
            secs = 3.0 if talk is None else talk
            arg = "3" if talk is None else f"{talk:g}"
        e.newexten(two, "Wait", arg, 2)
        await e.clock.sleep(secs)
        e.newexten(two, "Hangup", "", 3)
        two.task = None
        self.hangup_app(two, newexten=False)

    # ------------------------------------------------------------ hangups
    def hangup_app(self, two: Channel, newexten: bool = True) -> None:
        """Hangup() on a ;2 leg: the ;1 side reacts by its role (abandon, complete ...)."""
        e = self.e
        one = two.peer
        assert one is not None
        if self.transfers is not None and self.transfers.complete_attended(one):
            return
        if newexten:
            e.newexten(two, "Hangup", "", two.priority + 1)
        e.soft_hangup_request(two)
        e.hangup_request(one)
        e.hangup(two)
        self.one_gone(one)

    def one_gone(self, one: Channel) -> None:
        """The ;1 side of a pair whose ;2 hung up: act on what it was doing."""
        e = self.e
        call = self.q.calls.get(one.name)
        if call is not None and not call.done:
            if one is call.seat:
                self._seat_left(call)
            else:
                self._caller_left(call)
            return
        for queue in e.queues.values():
            for caller in queue.callers:
                if caller.channel is one:
                    e.dsc(one.device, "NOT_INUSE")
                    self.q.abandon(queue, caller)
                    e.soft_hangup_request(one)
                    e.hangup(one)
                    e.dsc(one.device, "NOT_INUSE")
                    return
        if one.bridge is not None and one.bridge.kind == "confbridge":
            self.conf_leave(one)
            return
        e.soft_hangup_request(one)
        e.hangup(one)

    def _seat_left(self, call: QueueCall) -> None:
        """Seat hung up while bridged with the caller (trace 01): Reason=agent."""
        e = self.e
        s1, c1, br = call.seat, call.caller, call.bridge
        self.q.agent_complete(call, "agent")
        e.varset(s1, "BRIDGEPEER", "")
        e.varset(c1, "BRIDGEPEER", "")
        e.bridge_leave(br, s1)
        e.hangup(s1)
        e.bridge_leave(br, c1)
        e.bridge_destroy(br)
        self.hangup_from_one(c1, dsc=False)
        for dev in (s1.device, s1.device, c1.device, c1.device):
            e.dsc(dev, "NOT_INUSE")
        self.q.release_member(call)

    def _caller_left(self, call: QueueCall) -> None:
        """Caller hung up while bridged (or after a blind transfer, trace 05)."""
        e = self.e
        s1, c1, br = call.seat, call.caller, call.bridge
        if c1.bridge is not br:  # transferred away: the queue bridge is already gone
            e.hangup(c1)
            self.q.agent_complete(call, "caller", with_channels=False)
            return
        self.q.agent_complete(call, "caller")
        e.varset(c1, "BRIDGEPEER", "")
        e.varset(s1, "BRIDGEPEER", "")
        e.bridge_leave(br, c1)
        e.hangup(c1)
        e.bridge_leave(br, s1)
        e.bridge_destroy(br)
        self.hangup_from_one(s1, dsc=False)
        for dev in (c1.device, c1.device, s1.device, s1.device):
            e.dsc(dev, "NOT_INUSE")
        self.q.release_member(call)

    def hangup_from_one(self, one: Channel, dsc: bool = True) -> None:
        """The ;1 side ends (its own Hangup, or its bridge ended): take the ;2 side along.

        Orders differ between recordings (threads race); this follows trace 10 for a plain
        Hangup, trace 05 for a caller still owed an AgentComplete, trace 01 after a bridge.
        """
        e = self.e
        two = one.peer
        assert two is not None
        call = self.q.calls.get(one.name)
        e.soft_hangup_request(one)
        e.hangup_request(two)
        if two.app == "Playback" and two.task is not None:
            e.varset(two, "PLAYBACKSTATUS", "SUCCESS")
        if call is not None and call.caller is one and one.bridge is None:
            e.soft_hangup_request(two)
            e.hangup(one)
            self.q.agent_complete(call, "caller", with_channels=False)
            e.hangup(two)
        elif not dsc:  # after a bridge (trace 01)
            e.soft_hangup_request(two)
            e.hangup(two)
            e.hangup(one)
            return
        else:
            e.hangup(one)
            e.soft_hangup_request(two)
            e.hangup(two)
        e.dsc(one.device, "NOT_INUSE")
        e.dsc(one.device, "NOT_INUSE")

    # ------------------------------------------------------------ conference
    def conf_join(self, ch: Channel, room: str) -> None:
        """ConfBridge(room): create the room on first use (hidden CBAnn announcer leg)."""
        e = self.e
        conf = e.conferences.get(room)
        if conf is None:
            conf = e.bridge_create("confbridge", room)
            ann_suffix = e.ids.local_suffix()
            ann = Channel(f"CBAnn/{room}-{ann_suffix};2", e.ids.uniqueid(), "", "", "")
            e.ids.uniqueid()
            e.conferences[room] = conf
            conf.members.append(ann)
            e.emit("ConfbridgeStart", "call,all", [("Conference", room)] + conf.snapshot())
        e.bridge_enter(conf, ch)
        self.conf_joined(conf, [ch], room)

    def conf_joined(self, conf: Bridge, joined: list[Channel], room: str) -> None:
        """ConfbridgeJoin for ``joined``, and BRIDGEPEER updates."""
        e = self.e
        for ch in joined:
            e.emit("ConfbridgeJoin", "call,all", [("Conference", room)] + conf.snapshot()
                   + ch.snapshot() + [("Admin", "No"), ("Muted", "No")])
        self._conf_peers(conf)

    def _conf_peers(self, conf: Bridge, skip: Channel | None = None) -> None:
        for ch in conf.members[1:]:
            if ch is not skip:
                peers = ",".join(o.name for o in conf.members if o is not ch)
                self.e.varset(ch, "BRIDGEPEER", peers)

    def conf_leave(self, one: Channel) -> None:
        """A conference member's ;2 hung up (trace 07): leave, hang up, ConfbridgeLeave."""
        e = self.e
        conf = one.bridge
        assert conf is not None
        e.varset(one, "BRIDGEPEER", "")
        e.bridge_leave(conf, one)
        self._conf_peers(conf)
        e.varset(one, "CONFBRIDGE_RESULT", "HANGUP")
        e.hangup(one)
        conf.members.append(one)  # Asterisk reports the room's count before the leave
        e.emit("ConfbridgeLeave", "call,all", [("Conference", conf.name)] + conf.snapshot()
               + one.snapshot() + [("Admin", "No")])
        conf.members.remove(one)


def parse_callerid(value: str) -> tuple[str, str]:
    """``"name" <num>`` → (num, name or ``<unknown>``); empty → ("", "")."""
    value = value.strip()
    if not value:
        return "", ""
    if "<" in value and value.endswith(">"):
        name, _, num = value[:-1].rpartition("<")
        name = name.strip().strip('"')
        return num.strip(), name or "<unknown>"
    return value, "<unknown>"
