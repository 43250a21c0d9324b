"""``asr.model``: a missing model is a clear start-up error naming the path; the shared model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from asr.model import ModelMissing, check_model_dir, korean_test_model_path, load_model
from tests.asr.recog_fixtures import ko_model, ko_model_dir

__all__ = ["ko_model", "ko_model_dir"]   # session fixtures used below


def test_missing_directory_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "vosk-model-small-cn-0.22"
    with pytest.raises(ModelMissing) as info:
        load_model(path)
    message = str(info.value)
    assert message.startswith("语音识别模型不可用")
    assert str(path) in message and "目录不存在" in message
    assert info.value.code == "asr_model_missing"


def test_incomplete_model_says_what_is_missing(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "mfcc.conf").write_text("--use-energy=false\n")
    with pytest.raises(ModelMissing, match="am/final.mdl"):
        check_model_dir(tmp_path)


def test_model_is_loaded_once_and_shared(ko_model: Any, ko_model_dir: Path) -> None:
    assert load_model(ko_model_dir) is ko_model
    assert load_model(str(ko_model_dir) + "/") is ko_model


def test_test_model_dither_off(ko_model_dir: Path) -> None:
    assert (korean_test_model_path() / "am" / "final.mdl").is_file()
    mfcc = (ko_model_dir / "conf" / "mfcc.conf").read_text().split()
    assert mfcc[-1] == "--dither=0" and "--num-ceps=40" in mfcc
