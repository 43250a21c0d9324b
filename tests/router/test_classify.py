"""Classifier: admin rules, the learned model, manual dispatch and bad text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError
from sklearn.model_selection import (  # type: ignore[import-untyped]
    StratifiedKFold,
    cross_val_predict,
    train_test_split,
)

from config.classify import ClassifyRules
from config.kinds import DemandType, Urgency
from router.classify import Classifier, TextModel
from router.train import TrainSettings, _pipeline, _two_columns, fit_model, read_history

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "labelled_sample.csv"


@pytest.fixture(scope="module")
def model() -> TextModel:
    history = read_history(SAMPLE)
    labels = {"unit": history.units, "type": history.types}
    return fit_model(history.texts, labels, {"unit": 7.0, "type": 3.5}, TrainSettings())


@pytest.fixture
def classifier(model: TextModel) -> Classifier:
    return Classifier(ClassifyRules(), model)


@pytest.mark.parametrize(
    "text",
    [
        "家里闻到很浓的燃气味，怀疑燃气泄漏",
        "楼道里一股煤气味，很危险",
        "ＧＡＳ ＬＥＡＫ!! 在幸福里小区",  # full-width English, folded by NFKC
    ],
)
def test_gas_leak_is_an_emergency_for_the_gas_company(classifier: Classifier, text: str) -> None:
    result = classifier.classify(text)
    assert result.urgency is Urgency.emergency
    assert result.unit == "city.gas"
    assert result.confidence == 1.0
    assert not result.manual
    assert any(line.startswith("规则“燃气泄漏”") for line in result.explain)


@pytest.mark.parametrize(
    ("text", "word"),
    [
        ("建设路88号家属院停水一整天了", "停水"),
        ("我们小区从昨天晚上开始停电", "停电"),
        ("从前天开始停气了，没法做饭", "停气"),
        ("暖气不热，家里才14度", "暖气不热"),
        ("供暖一周了暖气片还是凉的", "暖气片还是凉"),
    ],
)
def test_outages_are_basic_living(classifier: Classifier, text: str, word: str) -> None:
    result = classifier.classify(text)
    assert result.urgency is Urgency.basic_living
    assert any(f"关键词“{word}”→基本生活保障" in line for line in result.explain), result.explain


def test_an_emergency_rule_wins_over_a_basic_living_one(classifier: Classifier) -> None:
    result = classifier.classify("停电了，路边电线被风刮断掉在地上还冒火花")
    assert result.urgency is Urgency.emergency


def test_without_a_rule_urgency_is_general_and_the_model_picks_the_unit(
    classifier: Classifier,
) -> None:
    result = classifier.classify("请问公租房申请需要什么条件？我是外地户口")
    assert result.urgency is Urgency.general
    assert result.type is DemandType.consultation
    assert result.unit == "city.housing"
    assert result.top[0][0] == "city.housing"
    assert any(
        line.startswith("模型：单位 city.housing") and "依据" in line for line in result.explain
    )


def test_rules_from_config_beat_the_model(model: TextModel) -> None:
    rules = ClassifyRules.model_validate(
        {
            "rules": [
                {"name": "业委会", "keywords": ["业委会"], "unit": "city.housing", "type": "help"}
            ]
        }
    )
    result = Classifier(rules, model).classify("业委会选举有人拉票，还在小区里吵架")
    assert (result.unit, result.type, result.manual) == ("city.housing", DemandType.help, False)
    assert "规则“业委会”：关键词“业委会”→求助、单位 city.housing" in result.explain


@pytest.mark.parametrize(
    ("rule", "where"),
    [
        (
            {"name": "坏", "patterns": ["(未闭合"], "urgency": "emergency"},
            ("rules", 0, "patterns", 0),
        ),
        ({"name": "空", "patterns": [".*"], "urgency": "emergency"}, ("rules", 0, "patterns", 0)),
        ({"name": "无效", "keywords": ["停水"]}, ("rules", 0)),
        ({"name": "无词", "urgency": "emergency"}, ("rules", 0)),
        ({"name": "单位", "keywords": ["水"], "unit": "City Water"}, ("rules", 0, "unit")),
        ({"name": "紧", "keywords": ["水"], "urgency": "urgent"}, ("rules", 0, "urgency")),
    ],
)
def test_bad_rules_are_refused_naming_the_key(
    rule: dict[str, object], where: tuple[object, ...]
) -> None:
    with pytest.raises(ValidationError) as info:
        ClassifyRules.model_validate({"rules": [rule]})
    assert info.value.errors()[0]["loc"] == where


def test_below_the_threshold_dispatch_is_manual_with_three_suggestions(model: TextModel) -> None:
    classifier = Classifier(ClassifyRules(confidence_threshold=0.999), model)
    result = classifier.classify("我家门口那个东西坏了好几天了，一直没人来弄")
    assert result.manual
    assert result.unit is None
    assert len(result.top) == 3
    probabilities = [p for _, p in result.top]
    assert probabilities == sorted(probabilities, reverse=True)
    assert result.confidence == pytest.approx(result.top[0][1], abs=1e-3)
    assert "转人工派单" in result.explain[-2] + result.explain[-1]
    assert any(result.top[0][0] in line for line in result.explain)


def test_without_a_model_unruled_text_goes_to_manual_dispatch() -> None:
    result = Classifier(ClassifyRules()).classify("楼上邻居每天半夜跺脚")
    assert result.manual and result.unit is None and result.top == ()
    assert result.type is DemandType.complaint  # the configured default
    assert "无法确定承办单位，转人工派单" in result.explain


@pytest.mark.parametrize("text", ["", "   \n\t", "😀😡🙏", "？？？！！！"])
def test_empty_text_goes_to_manual_dispatch(classifier: Classifier, text: str) -> None:
    result = classifier.classify(text)
    assert result.manual and result.unit is None and result.confidence == 0.0
    assert result.explain == ("内容为空或无可识别文字，转人工派单",)


def test_emoji_english_and_numbers_mixed_in(classifier: Classifier) -> None:
    result = classifier.classify(
        "家里一点水都没有了 start from yesterday night 😡 电话13912345678 滨河小区3号楼"
    )
    assert result.urgency is Urgency.basic_living
    assert result.unit == "city.water"


def test_huge_text_is_cut_and_still_classified(classifier: Classifier) -> None:
    result = classifier.classify("公积金提取需要什么材料？" + "啊" * 200_000)
    assert result.unit == "city.housing_fund"
    assert "文本过长，仅分析前3000字" in result.explain


def test_unknown_words_only(classifier: Classifier) -> None:
    result = classifier.classify("ꙮꙮꙮ")  # letters the model never saw
    assert result.manual
    assert "模型：没有认识的字词" in result.explain


def test_the_fast_model_matches_scikit_learn(model: TextModel) -> None:
    """TextModel re-implements TF-IDF + the linear decision; it must agree with scikit-learn."""
    history = read_history(SAMPLE)
    pipeline = _pipeline(TrainSettings()).fit(history.texts, history.units)
    texts = ["小区停水了", "ＡＢＣ１２３ 公积金 😀 提取提取", "楼上邻居 半夜 吵"]
    expected = _two_columns(pipeline.decision_function(texts)) * 7.0
    for text, scores in zip(texts, expected, strict=True):
        index, weights, _ = model.features(text)
        probs = np.exp(scores - scores.max())
        assert np.allclose(model.probabilities("unit", index, weights), probs / probs.sum())


def test_held_out_accuracy_on_the_team_sample() -> None:
    """Trained on 75% of the sample, judged on the other 25% (same seed every run). Measured:
    unit 0.67, unit in top-3 0.93, type 0.79; the floors leave room for small changes."""
    history = read_history(SAMPLE)
    rows = np.arange(len(history.texts))
    train_rows, test_rows = train_test_split(
        rows, test_size=0.25, stratify=history.units, random_state=0
    )
    labels = {
        "unit": [history.units[i] for i in train_rows],
        "type": [history.types[i] for i in train_rows],
    }
    model = fit_model(
        [history.texts[i] for i in train_rows], labels, {"unit": 7.0, "type": 3.5}, TrainSettings()
    )
    classifier = Classifier(ClassifyRules(confidence_threshold=0.0), model)
    results = [(classifier.classify(history.texts[i]), i) for i in test_rows]
    unit = np.mean([r.unit == history.units[i] for r, i in results])
    top3 = np.mean([history.units[i] in {u for u, _ in r.top} for r, i in results])
    kind = np.mean([r.type == history.types[i] for r, i in results])
    assert unit >= 0.55 and top3 >= 0.8 and kind >= 0.7, (unit, top3, kind)


def test_threshold_splits_confident_from_doubtful(model: TextModel) -> None:
    """Calibrated probabilities: with the default threshold the confidently dispatched messages
    are right more often than all messages together (cross-validated on the sample)."""
    history = read_history(SAMPLE)
    classes = sorted(set(history.units))
    scores = cross_val_predict(
        _pipeline(TrainSettings()),
        history.texts,
        history.units,
        cv=StratifiedKFold(5, shuffle=True, random_state=0),
        method="decision_function",
    )
    z = scores * model.heads["unit"].scale
    probs = np.exp(z - z.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    right = probs.argmax(axis=1) == np.array([classes.index(u) for u in history.units])
    confident = probs.max(axis=1) >= ClassifyRules().confidence_threshold
    assert right[confident].mean() >= right.mean() + 0.1
    assert 0.3 <= confident.mean() <= 0.9
