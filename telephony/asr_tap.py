"""The conversation tap: after a seat answers, stream the caller's voice to the ASR server.

One ``Originate`` (``docker/asterisk/extensions-asr.conf`` documents the dialplan):

* ``Channel: Local/<uuid>@asr-tap/n`` — the ``;2`` half runs ``[asr-tap]``:
  ``Answer()``, ``AudioSocket(${EXTEN},host:port)``, ``Hangup()``; the exten *is* the stream
  UUID, so the dialplan needs no variable inheritance;
* ``Application: ChanSpy``, ``Data: <caller uniqueid>,qEou`` — the ``;1`` half spies on the
  caller (``app_chanspy.c`` options: ``q`` no beep or name announcement, ``E`` exit when the
  spied-on channel hangs up, ``o`` only the audio *coming from* that channel — the caller's
  voice, not the seat's, ``u`` the argument is a uniqueid or full channel name, never a prefix
  that could match another call). Never ``B``/``w``/``W``: those talk into the call.
* ``Variable: ASR_UUID=<uuid>`` so the tap shows on AMI like the IVR stream does.

The service makes the UUID itself and announces it to the call directory (``purpose
"conversation"``) *before* sending this action, so the stream is filed under the caller's call.
"""

from __future__ import annotations

import re
import uuid as uuidlib
from typing import Final

from telephony.actions import AmiAction, check_value
from telephony.errors import UnsafeActionValue

TAP_CONTEXT: Final = "asr-tap"
CHANSPY_OPTIONS: Final = "qEou"
_UNIQUEID = re.compile(r"^[0-9]{1,20}\.[0-9]{1,10}$")


def new_tap_uuid() -> str:
    """A fresh stream UUID (lower case, as ``${UUID()}`` prints)."""
    return str(uuidlib.uuid4())


def conversation_tap(caller_uniqueid: str, stream_uuid: str) -> AmiAction:
    """``Originate`` of the tap for the caller channel ``caller_uniqueid``.

    Not idempotent: a second one would stream the caller twice.
    Raises :class:`~telephony.errors.UnsafeActionValue` for a malformed uniqueid or UUID.
    """
    check_value("Uniqueid", caller_uniqueid)
    if not _UNIQUEID.match(caller_uniqueid):
        raise UnsafeActionValue("Data", caller_uniqueid, "not an Asterisk uniqueid")
    try:
        canonical = str(uuidlib.UUID(check_value("ASR_UUID", stream_uuid)))
    except ValueError:
        raise UnsafeActionValue("ASR_UUID", stream_uuid, "not a UUID") from None
    channel = check_value("Channel", f"Local/{canonical}@{TAP_CONTEXT}/n", "interface")
    return AmiAction("Originate", (
        ("Channel", channel),
        ("Application", "ChanSpy"),
        ("Data", f"{caller_uniqueid},{CHANSPY_OPTIONS}"),
        ("Variable", f"ASR_UUID={canonical}"),
        ("Async", "true"),
    ), idempotent=False)
