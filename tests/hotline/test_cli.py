"""The ``hotline`` command line: config check and Asterisk rendering."""

from __future__ import annotations

from pathlib import Path

import pytest

from hotline.cli import main

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
