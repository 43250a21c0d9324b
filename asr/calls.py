"""Which call an AudioSocket stream belongs to, learnt from the AMI side.

The IVR dialplan (``docker/asterisk/extensions-asr.conf``, ``[incoming-asr]``) runs
``Set(ASR_UUID=${UUID()})`` before ``AudioSocket(${ASR_UUID},host:port)``: the ``VarSet`` event
names the caller channel's ``Uniqueid``/``Linkedid`` and the UUID (trace 11). The tracker's
call record learns ``asr_uuid`` only when the caller joins the queue, *after* the IVR stream
(trace 11: VarSet at 1.005 s, QueueCallerJoin at 10.351 s), so this directory listens to the
typed events themselves: hook :meth:`AsrCallDirectory.on_event` to
``EventDispatcher.subscribe``.

For the conversation tap the service makes the UUID itself and calls :meth:`note` with
``purpose="conversation"`` *before* it sends the Originate (:mod:`telephony.asr_tap`); the tap
channel's own ``VarSet ASR_UUID`` then finds the UUID known and changes nothing (first note
wins), so the stream is filed under the caller's call, not the tap's Local channel.
"""

from __future__ import annotations

import asyncio
import logging
import uuid as uuidlib
from collections import OrderedDict

from asr.server import CallRef
from telephony.events import AmiEvent, VariableSet

log = logging.getLogger(__name__)

ASR_VARIABLE = "ASR_UUID"
# Channels of the conversation tap: Local/<uuid>@asr-tap-XXXXXXXX;1/;2 (telephony.asr_tap).
TAP_CHANNEL_MARK = "@asr-tap-"


def canonical(stream_uuid: str) -> str | None:
    """Lower-case canonical form (what :func:`asr.audiosocket.parse_uuid` gives), or ``None``."""
    try:
        return str(uuidlib.UUID(stream_uuid))
    except ValueError:
        return None


class AsrCallDirectory:
    """UUID → :class:`CallRef`, with waiters for a stream that connects before the event.

    Bounded: the oldest ``keep`` UUIDs are forgotten first (a stream connects within
    milliseconds of its VarSet; nothing needs a UUID hours later).
    """

    def __init__(self, *, keep: int = 10_000) -> None:
        self._keep = keep
        self._known: OrderedDict[str, CallRef] = OrderedDict()
        self._waiters: dict[str, list[asyncio.Future[CallRef]]] = {}

    def __len__(self) -> int:
        return len(self._known)

    def note(self, stream_uuid: str, call: CallRef) -> None:
        """Announce that ``stream_uuid`` will carry ``call``'s audio. The first note wins."""
        key = canonical(stream_uuid)
        if key is None:
            log.warning("忽略无效的 ASR_UUID %r / ignoring an ASR_UUID that is no UUID",
                        stream_uuid)
            return
        if key in self._known:
            return
        self._known[key] = call
        while len(self._known) > self._keep:
            self._known.popitem(last=False)
        for fut in self._waiters.pop(key, []):
            if not fut.done():
                fut.set_result(call)

    def forget(self, stream_uuid: str) -> None:
        """Drop a UUID (its call ended)."""
        key = canonical(stream_uuid)
        if key is not None:
            self._known.pop(key, None)

    def get(self, stream_uuid: str) -> CallRef | None:
        """The call of ``stream_uuid`` if already announced."""
        key = canonical(stream_uuid)
        return None if key is None else self._known.get(key)

    async def wait_for(self, uuid: str, timeout: float) -> CallRef | None:
        """The call of ``uuid``, waiting up to ``timeout`` s for its announcement."""
        key = canonical(uuid)
        if key is None:
            return None
        known = self._known.get(key)
        if known is not None:
            return known
        fut: asyncio.Future[CallRef] = asyncio.get_running_loop().create_future()
        waiters = self._waiters.setdefault(key, [])
        waiters.append(fut)
        try:
            async with asyncio.timeout(timeout):
                return await fut
        except TimeoutError:
            return None
        finally:
            if fut in waiters:
                waiters.remove(fut)
            if not waiters:
                self._waiters.pop(key, None)

    def on_event(self, event: AmiEvent) -> None:
        """Event listener (``EventDispatcher.subscribe``): ``VarSet ASR_UUID`` of an IVR."""
        if isinstance(event, VariableSet) and event.variable == ASR_VARIABLE and event.value:
            if TAP_CHANNEL_MARK in event.channel:
                return   # a tap's ids are the Local channel's: only the service's note counts
            self.note(event.value, CallRef(linkedid=event.linkedid or event.uniqueid,
                                           uniqueid=event.uniqueid, purpose="ivr"))
