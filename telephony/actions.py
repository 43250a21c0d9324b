"""Safe AMI action builder.

Every value that reaches Asterisk goes through here. AMI is line based: a bare ``\\n`` ends a
header and a blank line ends an action, so one CR or LF in a caller number or a pause reason
would let a citizen (or a compromised desk) inject headers or a whole new action with the
service's privileges (panoramisk writes ``'%s: %s' % (key, value)`` unescaped). So:

* every value is rejected if it holds CR, LF, NUL or any other C0/C1 control character;
* channel, interface, context, extension, queue and number fields must also match a
  whitelist pattern;
* free-text fields (member names, pause reasons) are limited in length.

The rules themselves (:mod:`config.ami`) are shared with the config schema, which applies them
at load time.

Builders return an immutable :class:`AmiAction`; the link assigns the ``ActionID``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from config.ami import CONTROL, unsafe_reason
from telephony.errors import UnsafeActionValue

_HEADER_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,39}$")


def check_value(field: str, value: str, kind: str | None = None) -> str:
    """Return ``value`` if it is safe for AMI field ``field``; raise :class:`UnsafeActionValue`.

    ``kind`` names a whitelist in :data:`config.ami.PATTERNS`; ``None`` means free text (no
    control characters, at most :data:`config.ami.MAX_TEXT` characters).
    """
    reason = unsafe_reason(value, kind)
    if reason is not None:
        shown = value if isinstance(value, str) else repr(value)
        raise UnsafeActionValue(field, shown, reason)
    return value


@dataclass(frozen=True, slots=True)
class AmiAction:
    """One AMI action: name, ordered header fields, and whether it may be re-sent.

    ``idempotent`` is False for actions whose repetition changes the world (``Originate``
    dials, ``Redirect`` and ``BlindTransfer`` move a call, ``Atxfer`` starts a consultation,
    ``Hangup``...). After
    a reconnect such an action is never replayed (see :class:`telephony.errors.AmiActionLost`).
    ``list_complete`` names the event that closes an event-list response (``QueueStatus`` →
    ``QueueStatusComplete``); ``None`` for single-response actions.
    """

    name: str
    fields: tuple[tuple[str, str], ...] = ()
    idempotent: bool = True
    list_complete: str | None = None

    def __post_init__(self) -> None:
        check_value("Action", self.name, "application")
        for key, value in self.fields:
            if not _HEADER_NAME.match(key):
                raise UnsafeActionValue(key, value, "invalid header name")
            # Builders check each value against its kind; this last line of defence catches
            # an AmiAction built by hand with a line break in it.
            if not isinstance(value, str) or CONTROL.search(value) or len(value) > 1024:
                raise UnsafeActionValue(key, str(value), "control character or too long")

    def to_wire(self, action_id: str) -> str:
        """Serialise as Asterisk expects it: ``Action`` first, ``ActionID`` last, CRLF lines."""
        check_value("ActionID", action_id, "exten")
        lines = [f"Action: {self.name}"]
        lines.extend(f"{k}: {v}" for k, v in self.fields)
        lines.append(f"ActionID: {action_id}")
        return "\r\n".join(lines) + "\r\n\r\n"

    def get(self, key: str) -> str | None:
        """The value of header ``key`` (case-insensitive), or ``None``."""
        low = key.lower()
        return next((v for k, v in self.fields if k.lower() == low), None)


def _bool(value: bool) -> str:
    return "true" if value else "false"


def login(username: str, secret: str) -> AmiAction:
    """``Login``. Which event classes arrive is set by the AMI user's ``read`` in manager.conf
    (the service needs call, agent, user and dialplan)."""
    return AmiAction(
        "Login",
        (("Username", check_value("Username", username, "variable")),
         ("Secret", check_value("Secret", secret))),
    )


def logoff() -> AmiAction:
    return AmiAction("Logoff")


def ping() -> AmiAction:
    return AmiAction("Ping")


def queue_add(queue: str, interface: str, member_name: str, state_interface: str,
              penalty: int = 0, paused: bool = False, reason: str | None = None) -> AmiAction:
    """``QueueAdd`` a seat to a queue (fields in the order Asterisk's trace 01 shows).

    ``paused`` with ``reason`` adds the member already paused (示忙) with that reason:
    Asterisk 22.5 then reports ``Paused: 1``, ``PausedReason: <reason>``."""
    fields = [
        ("Queue", check_value("Queue", queue, "queue")),
        ("Interface", check_value("Interface", interface, "interface")),
        ("MemberName", check_value("MemberName", member_name)),
        ("StateInterface", check_value("StateInterface", state_interface, "interface")),
    ]
    if penalty:
        fields.append(("Penalty", check_value("Penalty", str(int(penalty)), "digits")))
    if paused:
        fields.append(("Paused", "true"))
        if reason:
            fields.append(("Reason", check_value("Reason", reason)))
    return AmiAction("QueueAdd", tuple(fields))


def queue_remove(queue: str, interface: str) -> AmiAction:
    return AmiAction("QueueRemove", (
        ("Queue", check_value("Queue", queue, "queue")),
        ("Interface", check_value("Interface", interface, "interface")),
    ))


def queue_penalty(queue: str, interface: str, penalty: int) -> AmiAction:
    return AmiAction("QueuePenalty", (
        ("Interface", check_value("Interface", interface, "interface")),
        ("Penalty", check_value("Penalty", str(int(penalty)), "digits")),
        ("Queue", check_value("Queue", queue, "queue")),
    ))


def queue_pause(queue: str | None, interface: str, paused: bool,
                reason: str | None = None) -> AmiAction:
    """``QueuePause`` (``queue=None`` pauses the interface in every queue)."""
    fields: list[tuple[str, str]] = []
    if queue is not None:
        fields.append(("Queue", check_value("Queue", queue, "queue")))
    fields.append(("Interface", check_value("Interface", interface, "interface")))
    fields.append(("Paused", _bool(paused)))
    if reason:
        fields.append(("Reason", check_value("Reason", reason)))
    return AmiAction("QueuePause", tuple(fields))


def queue_status(queue: str | None = None) -> AmiAction:
    fields = (("Queue", check_value("Queue", queue, "queue")),) if queue else ()
    return AmiAction("QueueStatus", fields, list_complete="QueueStatusComplete")


def queue_summary(queue: str | None = None) -> AmiAction:
    fields = (("Queue", check_value("Queue", queue, "queue")),) if queue else ()
    return AmiAction("QueueSummary", fields, list_complete="QueueSummaryComplete")


def core_show_channels() -> AmiAction:
    return AmiAction("CoreShowChannels", list_complete="CoreShowChannelsComplete")


def _variables(variables: Mapping[str, str] | None) -> list[tuple[str, str]]:
    if not variables:
        return []
    parts = []
    for name, value in variables.items():
        check_value("Variable", name, "variable")
        check_value(f"Variable {name}", value)
        if "," in value:
            raise UnsafeActionValue(f"Variable {name}", value, "a comma would split the variable")
        parts.append(f"{name}={value}")
    return [("Variable", ",".join(parts))]


def _caller_id(name: str, number: str) -> str:
    check_value("CallerID number", number, "number")
    check_value("CallerID name", name)
    if any(c in name for c in '"<>'):
        raise UnsafeActionValue("CallerID name", name, 'must not contain ", < or >')
    return f'"{name}" <{number}>'


def originate(channel: str, context: str, exten: str, priority: int = 1, *,
              caller_id_name: str = "", caller_id_number: str | None = None,
              variables: Mapping[str, str] | None = None,
              timeout_ms: int | None = None) -> AmiAction:
    """``Originate`` into the dialplan, asynchronously (the result is ``OriginateResponse``).

    Not idempotent: a second one dials the citizen twice.
    """
    fields = [
        ("Channel", check_value("Channel", channel, "interface")),
        ("Context", check_value("Context", context, "context")),
        ("Exten", check_value("Exten", exten, "exten")),
        ("Priority", check_value("Priority", str(int(priority)), "priority")),
    ]
    if timeout_ms is not None:
        fields.append(("Timeout", check_value("Timeout", str(int(timeout_ms)), "digits")))
    if caller_id_number is not None:
        fields.append(("CallerID", _caller_id(caller_id_name, caller_id_number)))
    fields += _variables(variables)
    fields.append(("Async", "true"))
    return AmiAction("Originate", tuple(fields), idempotent=False)


def originate_application(channel: str, application: str, data: str, *,
                          caller_id_name: str = "", caller_id_number: str | None = None,
                          variables: Mapping[str, str] | None = None) -> AmiAction:
    """``Originate`` a channel straight into an application (trace 07: the department into
    ``ConfBridge``)."""
    fields = [
        ("Channel", check_value("Channel", channel, "interface")),
        ("Application", check_value("Application", application, "application")),
        ("Data", check_value("Data", data, "exten")),
    ]
    if caller_id_number is not None:
        fields.append(("CallerID", _caller_id(caller_id_name, caller_id_number)))
    fields += _variables(variables)
    fields.append(("Async", "true"))
    return AmiAction("Originate", tuple(fields), idempotent=False)


def redirect(channel: str, context: str, exten: str, priority: int = 1, *,
             extra_channel: str | None = None, extra_context: str | None = None,
             extra_exten: str | None = None, extra_priority: int | None = None) -> AmiAction:
    """``Redirect`` of a channel to ``context,exten,priority``; with ``extra_*`` a dual redirect
    (trace 07: caller and seat into a three-way room)."""
    fields = [
        ("Channel", check_value("Channel", channel, "channel")),
        ("Context", check_value("Context", context, "context")),
        ("Exten", check_value("Exten", exten, "exten")),
        ("Priority", check_value("Priority", str(int(priority)), "priority")),
    ]
    if extra_channel is not None:
        fields += [
            ("ExtraChannel", check_value("ExtraChannel", extra_channel, "channel")),
            ("ExtraContext", check_value("ExtraContext", extra_context or context, "context")),
            ("ExtraExten", check_value("ExtraExten", extra_exten or exten, "exten")),
            ("ExtraPriority", check_value(
                "ExtraPriority", str(int(extra_priority or priority)), "priority")),
        ]
    return AmiAction("Redirect", tuple(fields), idempotent=False)


def blind_transfer(channel: str, exten: str, context: str) -> AmiAction:
    """``BlindTransfer`` of the seat's leg: Asterisk sends the party bridged with it (the
    caller) to ``exten@context`` and hangs the seat's leg up, and app_queue logs
    ``BLINDTRANSFER`` with the seat's own talk time (a ``Redirect`` of the caller is logged as
    ``COMPLETECALLER`` with the department's talk counted as the seat's; both measured on
    Asterisk 22.5). ``context`` is always sent: without it Asterisk uses the seat leg's own
    context."""
    return AmiAction("BlindTransfer", (
        ("Channel", check_value("Channel", channel, "channel")),
        ("Exten", check_value("Exten", exten, "exten")),
        ("Context", check_value("Context", context, "context")),
    ), idempotent=False)


def atxfer(channel: str, exten: str, context: str) -> AmiAction:
    """``Atxfer``: attended transfer started on the seat's leg (trace 06)."""
    return AmiAction("Atxfer", (
        ("Channel", check_value("Channel", channel, "channel")),
        ("Exten", check_value("Exten", exten, "exten")),
        ("Context", check_value("Context", context, "context")),
    ), idempotent=False)


def hangup(channel: str, cause: int | None = None) -> AmiAction:
    fields = [("Channel", check_value("Channel", channel, "channel"))]
    if cause is not None:
        fields.append(("Cause", check_value("Cause", str(int(cause)), "digits")))
    return AmiAction("Hangup", tuple(fields), idempotent=False)
