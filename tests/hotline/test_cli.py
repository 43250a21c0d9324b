"""The ``hotline`` command line: config check and Asterisk rendering."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hotline.cli import config_check, main

REPO = Path(__file__).resolve().parents[2]


def test_config_check_passes_on_the_shipped_configs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check", str(REPO / "config" / "defaults")]) == 0
    assert main(["config", "check", str(REPO / "config" / "demo")]) == 0


def test_config_check_prints_every_error_with_file_key_and_reason(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "queues.yaml").write_text(
        "queues:\n  - name: '12345'\n    strategy: fastest\n    seats:\n"
        "      - {extension: '1001', name: 坐席1001}\n"
        "      - {extension: '1001', name: 坐席1001}\n"
        "pause_reasons: ['午休\\r\\nAction: Originate']\n", encoding="utf-8")
    assert main(["config", "check", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "queues.yaml: queues[0].strategy:" in err
    assert "queues.yaml: pause_reasons[0]:" in err


def test_config_check_warns_until_the_next_years_holidays_are_entered(tmp_path: Path) -> None:
    december = datetime(2026, 12, 7, 2, tzinfo=UTC)
    out = io.StringIO()
    assert config_check(None, {}, out=out, err=io.StringIO(), now=december) == 0
    notes = [line for line in out.getvalue().splitlines() if "calendar.years.2027" in line]
    assert len(notes) == 1 and "2027 年的国务院放假安排尚未录入" in notes[0]
    assert notes[0].startswith("  注意 / note: ") and "临时" in notes[0]
    # Not before October (nothing computed now can reach 2027) ...
    out = io.StringIO()
    assert config_check(None, {}, out=out, err=io.StringIO(),
                        now=datetime(2026, 6, 1, tzinfo=UTC)) == 0
    assert "calendar.years" not in out.getvalue()
    # ... and not once sla.yaml has the year.
    (tmp_path / "sla.yaml").write_text(
        "calendar:\n  years:\n    2027:\n      holidays: [2027-01-01]\n", encoding="utf-8")
    out = io.StringIO()
    assert config_check(tmp_path, {}, out=out, err=io.StringIO(), now=december) == 0
    assert "calendar.years" not in out.getvalue()


def test_asterisk_render_reproduces_the_committed_configs(tmp_path: Path) -> None:
    assert main(["asterisk", "render", "--config", str(REPO / "config" / "defaults"),
                 "--out", str(tmp_path)]) == 0
    for name in ("pjsip.conf", "queues.conf", "extensions_queues.conf"):
        assert (tmp_path / name).read_text() == (REPO / "docker" / "asterisk" / name).read_text()


def test_router_train_reports_accuracy_and_saves_a_checked_model(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sample = Path(__file__).resolve().parents[1] / "data" / "labelled_sample.csv"
    out = tmp_path / "model.joblib"
    assert main(["router", "train", str(sample), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "city.water" in printed and "总体 overall" in printed
    assert out.exists() and (tmp_path / "model.joblib.manifest.json").exists()
    # A unit the config does not know is a bad row, named by its line.
    bad = tmp_path / "history.csv"
    bad.write_text(sample.read_text(encoding="utf-8") + "路灯坏了,city.lights,complaint,general\n",
                   encoding="utf-8")
    main(["router", "train", str(bad), "--out", str(tmp_path / "m2.joblib")])
    captured = capsys.readouterr()
    assert "city.lights" in captured.out + captured.err


def test_run_without_the_required_speech_model_exits_naming_the_path(tmp_path: Path) -> None:
    """asr.enabled, optional: false and no model: a clear start-up error, exit 1, before
    the service talks to Asterisk or opens its HTTP port."""
    import os
    import subprocess
    import sys
    import uuid

    missing = tmp_path / "vosk-model-small-cn-0.22"
    env = os.environ | {
        "HOTLINE_ASR__ENABLED": "true", "HOTLINE_ASR__OPTIONAL": "false",
        "HOTLINE_ASR__MODEL_PATH": str(missing),
        "HOTLINE_SERVICE__DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'h.db'}",
        "HOTLINE_CHANNELS__SPOOL__PATH": str(tmp_path / "spool.db"),
        "HOTLINE_CHANNELS__REDIS__KEY_PREFIX": f"cli{uuid.uuid4().hex[:10]}",
        "HOTLINE_ROUTING__ENABLED": "false"}
    done = subprocess.run([sys.executable, "-m", "hotline.cli", "run"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "语音识别无法启动" in done.stderr and str(missing) in done.stderr
