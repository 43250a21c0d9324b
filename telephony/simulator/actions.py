"""AMI actions with Asterisk 22.5's responses (Message texts from traces 01–09)."""

from __future__ import annotations

import asyncio

from telephony.simulator.dialplan import Dialplan
from telephony.simulator.queues import Member
from telephony.simulator.session import Session, SessionHost
from telephony.simulator.transfers import Transfers
from telephony.simulator.wire import Fields, get, get_all, tv


def _resp(ok: bool, aid: str | None, message: str) -> Fields:
    out: Fields = [("Response", "Success" if ok else "Error")]
    if aid is not None:
        out.append(("ActionID", aid))
    return out + [("Message", message)]


class ActionHandler:
    """Dispatches one parsed action for one session."""

    def __init__(self, host: SessionHost, dialplan: Dialplan, transfers: Transfers) -> None:
        self.host = host
        self.d = dialplan
        self.transfers = transfers
        self.e = dialplan.e
        self._atxfers: set[asyncio.Task[None]] = set()

    async def handle(self, sess: Session, f: Fields) -> None:
        """Run the action ``f`` from ``sess`` and send its response(s)."""
        host = self.host
        name = get(f, "Action")
        aid: str | None = get(f, "ActionID") or None
        low = name.lower()
        if low == "login":
            self._login(sess, f, aid)
            return
        if not sess.logged_in:
            host.send(sess, _resp(False, aid, "Permission denied"))
            return
        handler = getattr(self, "_a_" + low, None)
        if handler is None:
            host.send(sess, _resp(False, aid, f"Invalid/unknown command: {name}. "
                                             "Use Action: ListCommands to show available "
                                             "commands."))
            now = self.e.clock.now()
            self.e.emit("RequestBadFormat", "security,all", [
                ("EventTV", tv(now)), ("Severity", "Error"), ("Service", "AMI"),
                ("EventVersion", "1"), ("SessionID", sess.session_id),
                ("LocalAddress", sess.local), ("RemoteAddress", sess.remote),
                ("RequestType", f"Action: {name}"), ("SessionTV", tv(sess.started)),
                ("AccountID", sess.username)])
            return
        handler(sess, f, aid)

    def _login(self, sess: Session, f: Fields, aid: str | None) -> None:
        host = self.host
        if get(f, "Username") != host.username or get(f, "Secret") != host.secret:
            host.send(sess, _resp(False, aid, "Authentication failed"))
            return
        sess.logged_in = True
        sess.username = host.username
        host.send(sess, _resp(True, aid, "Authentication accepted"))
        up = str(host.uptime)
        host.send(sess, [("Event", "FullyBooted"), ("Privilege", "system,all"),
                        ("Uptime", up), ("LastReload", up), ("Status", "Fully Booted")])
        when = tv(self.e.clock.now())
        self.e.emit("SuccessfulAuth", "security,all", [
            ("EventTV", when), ("Severity", "Informational"), ("Service", "AMI"),
            ("EventVersion", "1"), ("AccountID", sess.username),
            ("SessionID", sess.session_id), ("LocalAddress", sess.local),
            ("RemoteAddress", sess.remote), ("UsingPassword", "0"), ("SessionTV", when)])

    def _a_logoff(self, sess: Session, f: Fields, aid: str | None) -> None:
        out: Fields = [("Response", "Goodbye")]
        if aid is not None:
            out.append(("ActionID", aid))
        self.host.send(sess, out + [("Message", "Thanks for all the fish.")])
        self.host.end_session(sess)

    def _a_ping(self, sess: Session, f: Fields, aid: str | None) -> None:
        out: Fields = [("Response", "Success")]
        if aid is not None:
            out.append(("ActionID", aid))
        self.host.send(sess, out + [("Ping", "Pong"),
                                   ("Timestamp", f"{self.e.clock.now():.6f}")])

    # ------------------------------------------------------------ queue members
    def _queue(self, f: Fields):  # type: ignore[no-untyped-def]
        return self.e.queues.get(get(f, "Queue"))

    def _a_queueadd(self, sess: Session, f: Fields, aid: str | None) -> None:
        q = self._queue(f)
        iface = get(f, "Interface")
        if q is None:
            self.host.send(sess, _resp(False, aid, "Unable to add interface to queue: No such queue"))
            return
        if iface in q.members:
            self.host.send(sess, _resp(False, aid, "Unable to add interface: Already there"))
            return
        paused = get(f, "Paused").lower() in ("1", "true", "yes")
        m = Member(q.name, iface, get(f, "MemberName") or iface,
                   get(f, "StateInterface") or iface, int(get(f, "Penalty") or 0),
                   login_time=self.e.clock.isec(), paused=paused,
                   reason=get(f, "Reason") if paused else "",
                   # Asterisk 22.5 stamps LastPause when a member is added paused.
                   last_pause=self.e.clock.isec() if paused else 0)
        qapp = self.d.q
        before = qapp.any_available(q)
        q.members[iface] = m
        self.host.send(sess, _resp(True, aid, "Added interface to queue"))
        self.e.dsc(f"Queue:{q.name}_pause_{iface}", "INUSE" if paused else "NOT_INUSE")
        self.e.emit("QueueMemberAdded", "agent,all", m.event_fields())
        qapp.avail_changed(q, before)
        qapp.dispatch()

    def _a_queueremove(self, sess: Session, f: Fields, aid: str | None) -> None:
        q = self._queue(f)
        if q is None:
            self.host.send(sess, _resp(False, aid, "Unable to remove interface: No such queue"))
            return
        m = q.members.get(get(f, "Interface"))
        if m is None:
            self.host.send(sess, _resp(False, aid, "Unable to remove interface: Not there"))
            return
        qapp = self.d.q
        before = qapp.any_available(q)
        del q.members[m.interface]
        self.host.send(sess, _resp(True, aid, "Removed interface from queue"))
        self.e.emit("QueueMemberRemoved", "agent,all", m.event_fields())
        qapp.avail_changed(q, before)

    def _a_queuepause(self, sess: Session, f: Fields, aid: str | None) -> None:
        paused = get(f, "Paused").lower() in ("1", "true", "yes")
        iface = get(f, "Interface")
        queues = [q for q in self.e.queues.values()
                  if not get(f, "Queue") or q.name == get(f, "Queue")]
        members = [q.members[iface] for q in queues if iface in q.members]
        if not members:
            self.host.send(sess, _resp(False, aid, "Interface not found"))
            return
        self.host.send(sess, _resp(True, aid, "Interface paused successfully" if paused
                                  else "Interface unpaused successfully"))
        for m in members:
            self.d.q.set_paused(m, paused, get(f, "Reason"))

    def _a_queuepenalty(self, sess: Session, f: Fields, aid: str | None) -> None:
        iface = get(f, "Interface")
        members = [q.members[iface] for q in self.e.queues.values()
                   if iface in q.members and (not get(f, "Queue") or q.name == get(f, "Queue"))]
        if not members or not get(f, "Penalty").isdigit():
            self.host.send(sess, _resp(False, aid, "Invalid interface, queuename or penalty"))
            return
        for m in members:
            m.penalty = int(get(f, "Penalty"))
            self.e.emit("QueueMemberPenalty", "agent,all", [
                ("Queue", m.queue), ("Interface", m.interface), ("Penalty", str(m.penalty))])
        self.host.send(sess, _resp(True, aid, "Interface penalty set successfully"))

    # ------------------------------------------------------------ lists
    def _list(self, sess: Session, aid: str | None, message: str, items: list[Fields],
              complete: str) -> None:
        tag: Fields = [("ActionID", aid)] if aid is not None else []
        start: Fields = [("Response", "Success")] + tag + [("EventList", "start"),
                                                         ("Message", message)]
        self.host.send(sess, start)
        for item in items:
            self.host.send(sess, item)
        self.host.send(sess, [("Event", complete)] + tag + [
            ("EventList", "Complete"), ("ListItems", str(len(items)))])

    def _a_queuestatus(self, sess: Session, f: Fields, aid: str | None) -> None:
        tag: Fields = [("ActionID", aid)] if aid is not None else []
        now = self.e.clock.isec()
        items: list[Fields] = []
        for q in self.e.queues.values():
            if get(f, "Queue") and q.name != get(f, "Queue"):
                continue
            total = q.completed + q.abandoned
            perf = 100.0 * q.within_sl / total if total else 0.0
            items.append([("Event", "QueueParams"), ("Queue", q.name), ("Max", "0"),
                          ("Strategy", q.strategy), ("Calls", str(len(q.callers))),
                          ("Holdtime", str(int(q.holdtime_avg))),
                          ("TalkTime", str(int(q.talktime_avg))),
                          ("Completed", str(q.completed)), ("Abandoned", str(q.abandoned)),
                          ("ServiceLevel", str(q.servicelevel)),
                          ("ServicelevelPerf", f"{perf:.1f}"),
                          ("ServicelevelPerf2", f"{perf:.1f}"), ("Weight", "0")] + tag)
            for m in q.members.values():
                items.append([("Event", "QueueMember")] + m.status_fields() + tag)
            for pos, c in enumerate(q.callers, 1):
                ch = c.channel
                items.append([("Event", "QueueEntry"), ("Queue", q.name),
                              ("Position", str(pos)), ("Channel", ch.name),
                              ("Uniqueid", ch.uniqueid), ("CallerIDNum", ch.cid_num),
                              ("CallerIDName", ch.cid_name.replace("<unknown>", "unknown")),
                              ("ConnectedLineNum", ch.conn_num),
                              ("ConnectedLineName", ch.conn_name.replace("<unknown>", "unknown")),
                              ("Wait", str(now - c.joined)), ("Priority", "0")] + tag)
        self._list(sess, aid, "Queue status will follow", items, "QueueStatusComplete")

    def _a_queuesummary(self, sess: Session, f: Fields, aid: str | None) -> None:
        tag: Fields = [("ActionID", aid)] if aid is not None else []
        now = self.e.clock.isec()
        items: list[Fields] = []
        for q in self.e.queues.values():
            if get(f, "Queue") and q.name != get(f, "Queue"):
                continue
            avail = sum(1 for m in q.members.values()
                        if not m.paused and not m.in_call and m.status == 1)
            longest = max((now - c.joined for c in q.callers), default=0)
            items.append([("Event", "QueueSummary"), ("Queue", q.name),
                          ("LoggedIn", str(len(q.members))), ("Available", str(avail)),
                          ("Callers", str(len(q.callers))),
                          ("HoldTime", str(int(q.holdtime_avg))),
                          ("TalkTime", str(int(q.talktime_avg))),
                          ("LongestHoldTime", str(longest))] + tag)
        self._list(sess, aid, "Queue summary will follow", items, "QueueSummaryComplete")

    def _a_coreshowchannels(self, sess: Session, f: Fields, aid: str | None) -> None:
        tag: Fields = [("ActionID", aid)] if aid is not None else []
        now = self.e.clock.now()
        items: list[Fields] = []
        for ch in sorted(self.e.channels.values(), key=lambda c: c.name, reverse=False):
            secs = int(now - ch.created)
            items.append([("Event", "CoreShowChannel")] + tag + ch.snapshot() + [
                ("Application", ch.app), ("ApplicationData", ch.appdata),
                ("Duration", f"{secs // 3600:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}"),
                ("BridgeId", ch.bridge.uid if ch.bridge else "")])
        self._list(sess, aid, "Channels will follow", items, "CoreShowChannelsComplete")

    # ------------------------------------------------------------ calls
    def _a_originate(self, sess: Session, f: Fields, aid: str | None) -> None:
        fields = {k.lower(): v for k, v in f if k.lower() != "variable"}
        variables: list[tuple[str, str]] = []
        for raw in get_all(f, "Variable"):
            for part in raw.split(","):
                k, _, v = part.partition("=")
                variables.append((k, v))
        self.d.originate(fields, variables, aid,
                                    lambda msg: self.host.send(sess, msg))

    def _a_redirect(self, sess: Session, f: Fields, aid: str | None) -> None:
        ch = self.e.find(get(f, "Channel"))
        if ch is None:
            self.host.send(sess, _resp(False, aid, f"Channel does not exist: {get(f, 'Channel')}"))
            return
        extra_name = get(f, "ExtraChannel")
        if extra_name:
            extra = self.e.find(extra_name)
            if extra is None:
                self.host.send(sess, _resp(False, aid,
                                          f"Channel does not exist: {extra_name}"))
                return
            self.host.send(sess, _resp(True, aid, "Dual Redirect successful"))
            self.transfers.dual_redirect_conf(ch, extra, get(f, "Context"), get(f, "Exten"))
            return
        self.host.send(sess, _resp(True, aid, "Redirect successful"))
        self.transfers.redirect(ch, get(f, "Context"), get(f, "Exten"))

    def _a_blindtransfer(self, sess: Session, f: Fields, aid: str | None) -> None:
        """Messages and order as the real Asterisk 22.5 (manager.c): the response first."""
        ch = self.e.find(get(f, "Channel"))
        if ch is None:
            self.host.send(sess, _resp(False, aid, "Channel specified does not exist"))
            return
        # Without Context Asterisk uses the transferer's own (measured).
        context, exten = get(f, "Context") or ch.context, get(f, "Exten")
        transfers = self.transfers
        bridge = transfers.transferable(ch)
        if bridge is None:
            self.host.send(sess, _resp(False, aid, "Transfer invalid"))
            transfers.blind_transfer_invalid(ch, context, exten)
            return
        self.host.send(sess, _resp(True, aid, "Transfer succeeded"))
        transfers.blind_transfer(ch, bridge, context, exten)

    def _a_atxfer(self, sess: Session, f: Fields, aid: str | None) -> None:
        ch = self.e.find(get(f, "Channel"))
        if ch is None:
            self.host.send(sess, _resp(False, aid, "No such channel"))
            return
        self.host.send(sess, _resp(True, aid, "Atxfer successfully queued"))
        self.e.spawn(self.transfers.atxfer(ch, get(f, "Context") or "default",
                                               get(f, "Exten")))

    def _a_hangup(self, sess: Session, f: Fields, aid: str | None) -> None:
        ch = self.e.find(get(f, "Channel"))
        if ch is None:
            self.host.send(sess, _resp(False, aid, "No such channel"))
            return
        self.host.send(sess, _resp(True, aid, "Channel Hungup"))
        d = self.d
        two = ch if ch.name.endswith(";2") else ch.peer
        if two is not None and not two.hungup:
            d.hangup_app(two, newexten=False)
        else:
            self.e.soft_hangup_request(ch)
            self.e.hangup(ch)
