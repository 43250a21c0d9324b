"""``hotline router train``: history file, bad rows, cross-validation, saved model + manifest."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from config.classify import ClassifyRules
from router.classify import Classifier
from router.train import (
    ModelError,
    TrainError,
    TrainReport,
    TrainSettings,
    load_model,
    main,
    manifest_path,
    read_history,
    train,
)

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "labelled_sample.csv"
UNITS = {
    "city.housing", "city.water", "city.power", "city.gas", "city.hrss", "city.market", "city.urban",
    "city.transport", "city.education", "city.health", "city.ecology", "city.public_security",
    "city.housing_fund", "territorial",
}  # fmt: skip
TYPES = {"consultation", "help", "complaint", "report", "suggestion", "praise"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainReport:
    out = tmp_path_factory.mktemp("model") / "router-model.joblib"
    return train(SAMPLE, out, known_units=UNITS)


def _sample_rows() -> list[list[str]]:
    with SAMPLE.open(encoding="utf-8", newline="") as file:
        return list(csv.reader(file))


def test_the_sample_covers_every_unit_and_type() -> None:
    history = read_history(SAMPLE, UNITS)
    assert history.bad_rows == ()
    assert set(history.units) == UNITS and set(history.types) == TYPES
    assert min(history.units.count(u) for u in UNITS) >= 25


def test_cross_validated_accuracy_is_reported_per_class(trained: TrainReport) -> None:
    """Measured on the sample (5 folds): unit 0.65, type 0.79. The floors are honest, not hopeful."""
    assert trained.folds == 5
    unit, kind = trained.scores["unit"], trained.scores["type"]
    assert {c.label for c in unit.classes} == UNITS
    assert {c.label for c in kind.classes} == TYPES
    assert sum(c.support for c in unit.classes) == trained.rows_used == 359
    assert unit.accuracy >= 0.6 and kind.accuracy >= 0.72, (unit.accuracy, kind.accuracy)
    water = next(c for c in unit.classes if c.label == "city.water")
    assert water.accuracy >= 0.8
    text = trained.format()
    assert "city.public_security" in text and "准确率" in text and "总体 overall" in text


def test_the_saved_model_loads_and_classifies(trained: TrainReport) -> None:
    assert trained.model_path is not None
    manifest = json.loads(manifest_path(trained.model_path).read_text(encoding="utf-8"))
    assert manifest == trained.manifest
    assert set(manifest["classes"]["unit"]) == UNITS and len(manifest["sha256"]) == 64
    model = load_model(trained.model_path)
    result = Classifier(ClassifyRules(), model).classify("小区门口晚上烧烤摊占道经营，油烟大")
    assert result.unit == "city.urban"


def test_bad_rows_are_named_skipped_and_counted(tmp_path: Path) -> None:
    rows = _sample_rows()
    header, body = rows[0], rows[1:]
    path = tmp_path / "history.csv"
    with path.open("w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(body[:100])  # lines 2-101
        writer.writerow(["", "city.water", "complaint", "general"])  # 102
        writer.writerow(["路灯不亮", "city.lights", "complaint", "general"])  # 103
        writer.writerow(["路灯不亮", "city.urban", "grumble", "general"])  # 104
        writer.writerow(["路灯不亮"])  # 105: unit and type missing
        writer.writerow(["😀😀", "city.urban", "complaint", "general"])  # 106
        writer.writerows(body[100:])
    report = train(path, None, known_units=UNITS, settings=TrainSettings(max_folds=2))
    assert [(b.line, b.reason) for b in report.bad_rows] == [
        (102, "text 为空"),
        (103, "未知单位 'city.lights'"),
        (
            104,
            "未知类型 'grumble'（应为 complaint, consultation, help, praise, report, suggestion）",
        ),
        (105, "缺少列 unit, type"),
        (106, "text 为空"),
    ]
    assert report.rows_used == 359
    assert "跳过 第103行：未知单位 'city.lights'" in report.format()
    assert report.model_path is None


def test_a_file_without_a_required_column_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "history.csv"
    path.write_text("内容,unit\n停水,city.water\n", encoding="utf-8")
    with pytest.raises(TrainError, match="缺少列 text, type"):
        train(path, None)


def test_too_few_rows_left_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "history.csv"
    rows = _sample_rows()
    body = [[text, "city.nowhere", kind, u] for text, _, kind, u in rows[1:50]]
    with path.open("w", encoding="utf-8", newline="") as file:
        csv.writer(file).writerows([rows[0], *rows[1:21], *body])
    with pytest.raises(TrainError, match="可用数据只有 20 行（跳过 49 行），至少需要 50 行"):
        train(path, None, known_units=UNITS)


def test_a_class_with_one_example_is_named(tmp_path: Path) -> None:
    path = tmp_path / "history.csv"
    rows = _sample_rows()
    with path.open("w", encoding="utf-8", newline="") as file:
        csv.writer(file).writerows([*rows[:79], ["燃气表坏了", "city.gas", "complaint", "general"]])
    with pytest.raises(TrainError, match="单位 'city.gas' 只有 1 条样本"):
        train(path, None)


def test_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "history.csv"
    path.write_bytes("text,unit,type\n我们小区从早上开始停水,city.water,complaint\n".encode("gbk"))
    with pytest.raises(TrainError, match="不是 UTF-8 编码"):
        train(path, None)


def _copy_model(trained: TrainReport, tmp_path: Path) -> Path:
    assert trained.model_path is not None
    target = tmp_path / "model.joblib"
    target.write_bytes(trained.model_path.read_bytes())
    manifest_path(target).write_bytes(manifest_path(trained.model_path).read_bytes())
    return target


def test_a_model_from_another_scikit_learn_is_refused(trained: TrainReport, tmp_path: Path) -> None:
    path = _copy_model(trained, tmp_path)
    manifest = json.loads(manifest_path(path).read_text(encoding="utf-8"))
    manifest["sklearn_version"] = "1.2.0"
    manifest_path(path).write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(ModelError, match=r"scikit-learn 1\.2\.0 训练.*请重新训练"):
        load_model(path)


def test_an_altered_model_file_is_refused(trained: TrainReport, tmp_path: Path) -> None:
    path = _copy_model(trained, tmp_path)
    with path.open("ab") as file:
        file.write(b"\0")
    with pytest.raises(ModelError, match="sha256"):
        load_model(path)


def test_a_model_without_its_manifest_is_refused(trained: TrainReport, tmp_path: Path) -> None:
    path = _copy_model(trained, tmp_path)
    manifest_path(path).unlink()
    with pytest.raises(ModelError, match="模型清单不存在"):
        load_model(path)
    with pytest.raises(ModelError, match="模型文件不存在"):
        load_model(tmp_path / "missing.joblib")


def test_cli_trains_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "var" / "m.joblib"
    assert (
        main([str(SAMPLE), "--out", str(out), "--folds", "2", "--units", ",".join(sorted(UNITS))])
        == 0
    )
    printed = capsys.readouterr().out
    assert "2 折分层交叉验证" in printed and "模型已保存" in printed
    assert load_model(out).heads["unit"].classes == tuple(sorted(UNITS))


def test_cli_reports_a_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "nope.csv"), "--out", str(tmp_path / "m.joblib")]) == 2
    assert "训练失败" in capsys.readouterr().err
    assert main([str(SAMPLE), "--folds", "1"]) == 2
    assert "参数错误" in capsys.readouterr().err
