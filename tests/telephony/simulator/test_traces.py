"""The simulator against the recorded Asterisk 22.5 sessions, field by field.

Each trace's ``sent`` actions are replayed over a real socket at the trace's times (scaled
by ``TIME_SCALE``) and what comes back is compared with the trace's ``received`` messages
after normalising volatile values (Uniqueid epochs, bridge UUIDs, session ids, wall times).

Asterisk publishes events from one thread per channel, so the traces themselves interleave
the same steps differently (01 vs 04: AgentComplete before/after the seat's Hangup; 01 vs 02:
OriginateResponse before/after DialEnd; 01 vs 05: QueueMemberStatus at ring or after
BridgeEnter). The simulator has one order; ``RACES`` lists, per trace, the events whose
*position* is compared as a count only, with the recorded reason.
"""

from __future__ import annotations

from collections import Counter

import pytest

from tests.telephony.simulator.trace_replay import Msg, Normaliser, compare, name, replay

TIME_SCALE = 10.0

# trace → (queue options of the recording's dialplan, events compared by count, not position,
#          whole-message multiset must match exactly)
CASES: dict[str, tuple[str, frozenset[str], bool]] = {
    "01-answered": ("", frozenset(), True),
    "02-abandoned": ("", frozenset({"OriginateResponse"}), True),
    "03-pause-status": ("", frozenset(), True),
    # 04: AgentComplete/Hangup/QueueMemberStatus interleave as in 04, not 01; AgentComplete
    # there lacks the Dest* fields (the seat leg was already gone).
    "04-ring-no-answer": ("", frozenset({"OriginateResponse", "AgentComplete", "Hangup",
                                         "QueueMemberStatus"}), False),
    "05-blind-transfer": ("", frozenset({"OriginateResponse", "QueueMemberStatus"}), False),
    "06-attended-transfer": ("t", frozenset({"OriginateResponse", "QueueMemberStatus", "Hangup",
                                             "BridgeDestroy", "Unhold", "BridgeLeave",
                                             "BridgeEnter", "BridgeCreate"}), False),
    "07-three-way": ("", frozenset({"OriginateResponse", "QueueMemberStatus"}), False),
    "08-status-with-waiting": ("", frozenset({"OriginateResponse", "DialEnd", "QueueCallerJoin",
                                              "QueueMemberStatus", "AgentComplete", "Hangup",
                                              "BridgeLeave", "BridgeDestroy"}), False),
    "09-errors": ("", frozenset(), True),
    "10-survey-dtmf": ("", frozenset(), True),
    "11-audiosocket-ivr": ("t", frozenset({"OriginateResponse", "AgentComplete", "Hangup",
                                           "BridgeDestroy", "BridgeLeave"}), False),
}


# Low-value events the simulator does not produce (yet), per trace: the consult leg's
# device states and caller-id updates during Atxfer (06); ``confbridge:42`` and the
# department's device states (07).
NOT_EMITTED = {
    "06": Counter({"DeviceStateChange": 4, "NewCallerid": 1, "NewConnectedLine": 3}),
    "07": Counter({"DeviceStateChange": 5}),
}


def _names(msgs: list[Msg]) -> Counter[str]:
    return Counter(name(m) for m in msgs)


@pytest.mark.parametrize("trace", sorted(CASES))
async def test_trace_matches_recording(trace: str) -> None:
    options, races, exact = CASES[trace]
    expected, got = await replay(trace, TIME_SCALE, queue_options=options)
    result = compare(expected, got)

    # Every response, with every field, in order.
    ne, ng = Normaliser(), Normaliser()
    resp_e = [ne.msg(m) for m in expected if m[0][0] == "Response"]
    resp_g = [ng.msg(m) for m in got if m[0][0] == "Response"]
    assert resp_g == resp_e

    # The queue/call-relevant events in order, field by field (races compared by count).
    rel_e = [m for m in result["rel_e"] if name(m) not in races]  # type: ignore[attr-defined]
    rel_g = [m for m in result["rel_g"] if name(m) not in races]  # type: ignore[attr-defined]
    if trace.startswith("06"):  # atxfer: consult-leg snapshots differ (see report); names only
        assert [name(m) for m in rel_g] == [name(m) for m in rel_e]
    elif trace.startswith("08"):  # Uniqueid sequence skips 3 numbers in the recording
        assert [_strip_seq(m) for m in rel_g] == [_strip_seq(m) for m in rel_e]
    else:
        assert rel_g == rel_e
    race_e = Counter(name(m) for m in result["rel_e"] if name(m) in races)  # type: ignore[attr-defined]
    race_g = Counter(name(m) for m in result["rel_g"] if name(m) in races)  # type: ignore[attr-defined]
    assert race_g == race_e

    # HoldTime/TalkTime/RingTime/Wait: whole seconds, ±1 for the scaled clock.
    assert result["seconds_ok"], result["secs"]

    # All messages, low-value ones included (DeviceStateChange, VarSet, Newexten ...).
    if exact:
        assert not result["missing"] and not result["extra"]
    else:
        assert _names(got) - _names(expected) == Counter()
        assert _names(expected) - _names(got) == NOT_EMITTED.get(trace[:2], Counter())


def _strip_seq(m: Msg) -> Msg:
    return tuple((k, "E.n" if k.endswith(("Uniqueid", "Linkedid")) else v) for k, v in m)
