"""The conversation tap in the simulator (``docker/asterisk/extensions-asr.conf`` ``[asr-tap]``).

The service originates ``Local/<uuid>@asr-tap/n`` with ``Application: ChanSpy``,
``Data: <caller uniqueid>,qEou`` (:mod:`telephony.asr_tap`). Here:

* ``;1`` runs ChanSpy: ``ChanSpyStart``, then waits for the spied-on channel to hang up
  (option ``E``), ``ChanSpyStop``, and hangs up (taking ``;2`` along, which closes its
  AudioSocket connection: the server sees EOF);
* ``;2`` runs ``[asr-tap]``: ``AudioSocket(${EXTEN},host:port)`` streams the simulator's speech
  (:class:`~telephony.simulator.audiosocket_client.AudioSocketSource`) at once — in Asterisk it
  would be whatever the caller says while spied on — then ``Hangup()`` when the server ends
  the stream.

No recording of a real ChanSpy session exists: the ChanSpyStart/Stop events carry the
``Spyer``/``Spyee`` snapshots Asterisk's manager documentation lists; nothing in the service
relies on them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from telephony.simulator.audiosocket_client import AudioSocketSource, stream_wav
from telephony.simulator.core import Channel
from telephony.simulator.engine import Engine

TAP_CONTEXT = "asr-tap"
POLL_SECONDS = 0.1
MAX_TAP_SECONDS = 4 * 3600.0


def _spyee(e: Engine, target: str) -> Channel | None:
    """ChanSpy's ``u`` option: a uniqueid or a full channel name."""
    for ch in e.channels.values():
        if target in (ch.uniqueid, ch.name):
            return ch
    return None


async def chanspy(e: Engine, one: Channel, data: str,
                  hangup_from_one: Callable[[Channel], None]) -> None:
    """``ChanSpy(<uniqueid>,qEou)`` on the tap's ``;1``; ``hangup_from_one`` is the dialplan's
    hang-up of a ``;1`` (taking ``;2`` along), passed in so this module needs no dialplan."""
    spyee = _spyee(e, data.partition(",")[0])
    if spyee is not None:
        e.emit("ChanSpyStart", "call,all", one.snapshot("Spyer") + spyee.snapshot("Spyee"))
        while not spyee.hungup:
            await e.clock.sleep(POLL_SECONDS)
        e.emit("ChanSpyStop", "call,all", one.snapshot("Spyer") + spyee.snapshot("Spyee"))
    one.task = None
    if not one.hungup:
        hangup_from_one(one)


async def tap_two(e: Engine, two: Channel, source: AudioSocketSource | None) -> bool:
    """``[asr-tap]`` on ``;2`` after its Answer: AudioSocket (streaming ``source``, the
    dialplan's speech if any), then the caller hangs up.
    Returns when ``;2`` should run ``Hangup()``."""
    target = source.target if source else "127.0.0.1:9092"
    e.newexten(two, "AudioSocket", f"{two.exten},{target}", 2)
    if source is None:       # nothing to stream: stay until ChanSpy ends (hangs us up)
        await e.clock.sleep(MAX_TAP_SECONDS)
        return True
    # The spied caller is talking already: no Wait(1) lead-in.
    return await stream_wav(replace(source, lead_in=0.0), e.clock, two.exten, MAX_TAP_SECONDS)
