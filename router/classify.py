"""Classifying a citizen's message: demand type, urgency and the competent unit.

Two sources decide, in this order of precedence:

1. **Rules** an admin reads and edits (:class:`ClassifyRules`, the ``classify`` section of
   ``routing.yaml``): keywords and regular expressions that set a type, an urgency and/or a
   unit. Rules are tried in the order they are listed; for each of the three axes the *first*
   matching rule that sets it wins, and a rule always wins over the model on the axes it sets
   (an admin's word is law: "燃气泄漏" is an emergency whatever the model thinks). List the
   emergency rules before the basic-living ones.
2. **The learned model** (:class:`TextModel`, trained by :mod:`router.train` from the hotline's
   own history): character n-gram TF-IDF (1–2 by default, see :class:`router.train.TrainSettings`)
   and a linear SVM whose scores are turned into probabilities by a softmax with a scale
   calibrated on cross-validated scores; one head for the unit and one for the type. Urgency is left to the rules (the history rarely labels it
   reliably); without a matching rule it is :attr:`ClassifyRules.default_urgency`.

When no rule sets the unit and the model's best probability is below
:attr:`ClassifyRules.confidence_threshold`, the result is ``manual=True`` (人工派单), ``unit`` is
None and :attr:`Classification.top` lists the model's suggestions for the dispatcher.

:meth:`Classifier.classify` is synchronous CPU work (well under a millisecond for a message of a
few hundred characters); async callers run it with ``asyncio.to_thread``.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Annotated, Self

import numpy as np
import numpy.typing as npt
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from router.kinds import DemandType, Urgency
from router.text import char_ngrams, fold, has_content, model_text

_UNIT_ID = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$")


class ClassifyError(Exception):
    """Root of this module's errors."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _unit_id(value: str) -> str:
    if not _UNIT_ID.match(value) or len(value) > 100:
        raise PydanticCustomError("bad_unit_id", "unit id must look like city.water or territorial")
    return value


def _keyword(value: str) -> str:
    folded = fold(value)
    if not folded:
        raise PydanticCustomError("empty_keyword", "keyword must not be empty")
    # Keywords are compared with the folded message, so fold them the same way.
    return folded


def _pattern(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise PydanticCustomError(
            "bad_pattern", "not a valid regular expression: {why}", {"why": str(exc)}
        ) from None
    if re.fullmatch(value, ""):
        raise PydanticCustomError("empty_pattern", "pattern must not match the empty text")
    return value


UnitId = Annotated[str, AfterValidator(_unit_id)]
Keyword = Annotated[str, AfterValidator(_keyword)]
Pattern = Annotated[str, AfterValidator(_pattern)]


class ClassifyRule(_Section):
    """One admin rule: if any keyword occurs in the message, or any pattern matches it
    (after NFKC folding and lower-casing), set the given type / urgency / unit.

    ``name`` is what the dispatcher sees in the explanation (规则：燃气泄漏 …).
    """

    name: Annotated[str, Field(min_length=1, max_length=50)]
    keywords: tuple[Keyword, ...] = ()
    patterns: tuple[Pattern, ...] = ()
    type: DemandType | None = None
    urgency: Urgency | None = None
    unit: UnitId | None = None

    @model_validator(mode="after")
    def _useful(self) -> Self:
        if not self.keywords and not self.patterns:
            raise PydanticCustomError("no_match", "a rule needs keywords or patterns")
        if self.type is None and self.urgency is None and self.unit is None:
            raise PydanticCustomError("no_effect", "a rule must set type, urgency or unit")
        return self


def _rule(
    name: str, keywords: tuple[str, ...] = (), patterns: tuple[str, ...] = (), **sets: str
) -> ClassifyRule:
    return ClassifyRule.model_validate(
        {"name": name, "keywords": keywords, "patterns": patterns, **sets}
    )


#: Defaults from the seeds' urgency classes (domain.md): emergencies first, then basic-living
#: outages, then type hints. Deliberately conservative: a false "emergency" costs a unit two
#: hours of hurry, a missed one costs far more, so the emergency words are broad.
DEFAULT_RULES: tuple[ClassifyRule, ...] = (
    _rule(
        "燃气泄漏",
        (
            "燃气泄漏",
            "煤气泄漏",
            "天然气泄漏",
            "燃气味",
            "煤气味",
            "天然气味",
            "液化气漏",
            "gas leak",
        ),
        (r"(燃气|煤气|天然气|液化气).{0,6}漏气", r"漏气.{0,4}(着火|爆)"),
        urgency="emergency",
        unit="city.gas",
    ),
    _rule("起火爆炸", ("起火", "着火", "火灾", "冒烟", "爆炸", "火花"), urgency="emergency"),
    _rule(
        "人身危险",
        ("有人受伤", "受伤了", "被困", "困人", "晕倒", "昏迷", "流血", "生命危险", "掉进去"),
        urgency="emergency",
    ),
    _rule(
        "爆管积水", ("爆管", "水管爆", "管道爆裂", "倒灌"), (r"(进水|淹)了",), urgency="emergency"
    ),
    _rule("电线断落", ("漏电", "触电"), (r"电线.{0,6}(断|掉|落)",), urgency="emergency"),
    _rule("井盖缺失", (), (r"井盖.{0,4}(没了|丢|缺失|被偷)",), urgency="emergency"),
    _rule(
        "停水",
        ("停水", "断水", "没水了", "没有水", "不来水", "没来水"),
        (r"水都没有?了",),
        urgency="basic_living",
    ),
    _rule("停电", ("停电", "断电", "没电了", "没有电"), (r"电都没有?了",), urgency="basic_living"),
    _rule("停气", ("停气", "断气了", "没气了"), urgency="basic_living"),
    _rule(
        "供暖",
        ("暖气不热", "供暖不热", "暖气片还是凉", "不供暖"),
        (r"暖气.{0,8}(凉|不热|达不到)", r"(室温|家里)(才|只有)?\d+度"),
        urgency="basic_living",
    ),
    _rule("举报", ("举报",), type="report"),
    _rule(
        "表扬",
        ("表扬", "点赞", "锦旗"),
        (r"感谢.{0,12}(师傅|民警|医生|护士|老师|工作人员|网格员|司机|书记)",),
        type="praise",
    ),
    _rule(
        "建议", ("提个建议", "提建议"), (r"(^|[，。！？,.!? ])(我|我们)?建议",), type="suggestion"
    ),
    _rule("公积金", ("公积金",), unit="city.housing_fund"),
)


class ClassifyRules(_Section):
    """The ``classify`` section of ``routing.yaml``: rules, threshold and limits."""

    rules: tuple[ClassifyRule, ...] = DEFAULT_RULES
    #: Below this model probability for the best unit (and no unit rule), dispatch is manual.
    #: Measured on the team sample (cross-validated, calibrated): at 0.6 about 54% of messages
    #: are dispatched automatically, 82% of them to the right unit; the rest go to a dispatcher,
    #: whose top-3 suggestions hold the right unit 78% of the time. More history, more automatic.
    confidence_threshold: Annotated[float, Field(ge=0.0, le=1.0)] = 0.6
    #: How many unit suggestions a manual dispatch shows.
    top_k: Annotated[int, Field(ge=1, le=10)] = 3
    #: Only this many leading characters are classified (a pasted novel must not stall routing).
    max_chars: Annotated[int, Field(ge=50, le=100_000)] = 3000
    #: Type when neither a rule nor a model decides it.
    default_type: DemandType = DemandType.complaint
    #: Urgency when no rule sets it.
    default_urgency: Urgency = Urgency.general
    #: How many of the model's strongest n-grams the explanation names.
    explain_features: Annotated[int, Field(ge=0, le=10)] = 3

    @model_validator(mode="after")
    def _unique_names(self) -> Self:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.name in seen:
                raise PydanticCustomError(
                    "duplicate_rule", "two rules are named {name}", {"name": rule.name}
                )
            seen.add(rule.name)
        return self


class Classification(_Section):
    """What the classifier decided and why (shown to the dispatcher on the ticket).

    ``unit`` is None when ``manual`` is set: the dispatcher picks from ``top`` (人工派单).
    ``confidence`` is 1.0 when a rule set the unit, the model's probability otherwise, 0.0
    when nothing could be decided. ``explain`` holds one Chinese line per decision.
    """

    type: DemandType
    urgency: Urgency
    unit: str | None
    confidence: float
    top: tuple[tuple[str, float], ...]
    manual: bool
    explain: tuple[str, ...]


FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class LinearHead:
    """One linear output (``unit`` or ``type``): P(class) = softmax(scale · (coef·x + intercept))."""

    classes: tuple[str, ...]
    coef: FloatArray  # (n_classes, n_features)
    intercept: FloatArray  # (n_classes,)
    #: Softmax temperature⁻¹ fitted on out-of-fold scores (minimum log-loss), so that the
    #: probabilities the confidence threshold is compared with mean what they say.
    scale: float


@dataclass(frozen=True, slots=True)
class TextModel:
    """A trained TF-IDF + logistic-regression model in plain arrays.

    It reproduces ``TfidfVectorizer(sublinear_tf=True)`` over :func:`router.text.char_ngrams`
    and the linear models' ``decision_function`` without scikit-learn's per-call overhead (input
    validation and sparse-matrix construction cost more than the arithmetic for one message).
    """

    vocabulary: dict[str, int]
    idf: FloatArray
    heads: dict[str, LinearHead]
    ngram_range: tuple[int, int]

    def features(self, text: str) -> tuple[npt.NDArray[np.intp], FloatArray, list[str]]:
        """The message's TF-IDF vector as (feature indices, l2-normalised weights, n-grams)."""
        counts = Counter(char_ngrams(model_text(text), *self.ngram_range))
        lookup = self.vocabulary.get
        grams: list[str] = []
        found: list[int] = []
        tf: list[int] = []
        for gram, count in counts.items():
            if (i := lookup(gram)) is not None:
                grams.append(gram)
                found.append(i)
                tf.append(count)
        if not found:
            return np.empty(0, dtype=np.intp), np.empty(0), []
        index = np.array(found, dtype=np.intp)
        weights = (1.0 + np.log(np.array(tf, dtype=np.float64))) * self.idf[index]
        weights /= float(np.sqrt(weights @ weights))
        return index, weights, grams

    def probabilities(
        self, head: str, index: npt.NDArray[np.intp], weights: FloatArray
    ) -> FloatArray:
        """Class probabilities of one head for a feature vector from :meth:`features`."""
        linear = self.heads[head]
        scores = (linear.coef[:, index] @ weights + linear.intercept) * linear.scale
        scores -= scores.max()
        exp = np.exp(scores)
        result: FloatArray = exp / exp.sum()
        return result


@dataclass(frozen=True, slots=True)
class _CompiledRule:
    rule: ClassifyRule
    keywords: re.Pattern[str] | None
    patterns: tuple[re.Pattern[str], ...]

    def match(self, folded: str) -> str | None:
        """The matched words, or None."""
        if self.keywords is not None and (found := self.keywords.search(folded)):
            return found.group(0)
        for pattern in self.patterns:
            if found := pattern.search(folded):
                return found.group(0)
        return None


def _compile(rule: ClassifyRule) -> _CompiledRule:
    # Longest keywords first so the explanation names "燃气泄漏" rather than a shorter overlap.
    words = sorted(rule.keywords, key=len, reverse=True)
    keywords = re.compile("|".join(map(re.escape, words))) if words else None
    return _CompiledRule(rule, keywords, tuple(re.compile(p) for p in rule.patterns))


class Classifier:
    """Rules first, then the model (see the module docstring for the precedence)."""

    def __init__(self, rules: ClassifyRules, model: TextModel | None = None) -> None:
        if model is not None and not {"unit", "type"} <= model.heads.keys():
            raise ClassifyError("模型缺少 unit 或 type 输出 (model lacks the unit or type head)")
        if model is not None:
            unknown = set(model.heads["type"].classes) - {t.value for t in DemandType}
            if unknown:
                raise ClassifyError(f"模型含未知诉求类型 (unknown demand types): {sorted(unknown)}")
        self._rules = rules
        self._model = model
        self._compiled = tuple(_compile(rule) for rule in rules.rules)

    @property
    def model(self) -> TextModel | None:
        """The learned model in use, if any."""
        return self._model

    def classify(self, text: str) -> Classification:
        """Classify one message. Never raises for bad text: an empty message (or one of only
        punctuation or emoji) goes to manual dispatch with the reason in ``explain``."""
        settings = self._rules
        explain: list[str] = []
        if len(text) > settings.max_chars:
            text = text[: settings.max_chars]
            explain.append(f"文本过长，仅分析前{settings.max_chars}字")
        folded = fold(text)
        if not has_content(folded):
            explain.append("内容为空或无可识别文字，转人工派单")
            return Classification(
                type=settings.default_type,
                urgency=settings.default_urgency,
                unit=None,
                confidence=0.0,
                top=(),
                manual=True,
                explain=tuple(explain),
            )

        demand_type: DemandType | None = None
        urgency: Urgency | None = None
        unit: str | None = None
        for compiled in self._compiled:
            rule = compiled.rule
            wants = (
                (rule.type is not None and demand_type is None)
                or (rule.urgency is not None and urgency is None)
                or (rule.unit is not None and unit is None)
            )
            if not wants or (matched := compiled.match(folded)) is None:
                continue
            effects: list[str] = []
            if rule.urgency is not None and urgency is None:
                urgency = rule.urgency
                effects.append(urgency.label)
            if rule.type is not None and demand_type is None:
                demand_type = rule.type
                effects.append(demand_type.label)
            if rule.unit is not None and unit is None:
                unit = rule.unit
                effects.append(f"单位 {unit}")
            explain.append(f"规则“{rule.name}”：关键词“{matched}”→{'、'.join(effects)}")

        top: tuple[tuple[str, float], ...] = ()
        confidence = 1.0 if unit is not None else 0.0
        if self._model is not None:
            index, weights, grams = self._model.features(text)
            if len(index):
                unit_probs = self._model.probabilities("unit", index, weights)
                unit_classes = self._model.heads["unit"].classes
                order = np.argsort(unit_probs)[::-1][: settings.top_k]
                top = tuple((unit_classes[i], round(float(unit_probs[i]), 4)) for i in order)
                if unit is None:
                    best = int(order[0])
                    confidence = float(unit_probs[best])
                    words = self._evidence("unit", best, index, weights, grams)
                    explain.append(
                        f"模型：单位 {unit_classes[best]}（概率{confidence:.2f}）{words}"
                    )
                    if confidence >= settings.confidence_threshold:
                        unit = unit_classes[best]
                if demand_type is None:
                    type_probs = self._model.probabilities("type", index, weights)
                    best = int(np.argmax(type_probs))
                    demand_type = DemandType(self._model.heads["type"].classes[best])
                    words = self._evidence("type", best, index, weights, grams)
                    explain.append(
                        f"模型：类型 {demand_type.label}（概率{float(type_probs[best]):.2f}）{words}"
                    )
            else:
                explain.append("模型：没有认识的字词")

        manual = unit is None
        if manual:
            if top:
                names = "、".join(f"{name}({prob:.2f})" for name, prob in top)
                explain.append(
                    f"置信度低于{settings.confidence_threshold:.2f}，转人工派单；建议：{names}"
                )
            else:
                explain.append("无法确定承办单位，转人工派单")
        if urgency is None:
            urgency = settings.default_urgency
            explain.append(f"紧急程度：未命中规则，按{urgency.label}处理")
        if demand_type is None:
            demand_type = settings.default_type
            explain.append(f"类型：未能判断，按{demand_type.label}处理")
        return Classification(
            type=demand_type,
            urgency=urgency,
            unit=unit,
            confidence=round(confidence, 4),
            top=top,
            manual=manual,
            explain=tuple(explain),
        )

    def _evidence(
        self,
        head: str,
        klass: int,
        index: npt.NDArray[np.intp],
        weights: FloatArray,
        grams: list[str],
    ) -> str:
        """The n-grams that pushed hardest towards ``klass`` (依据：“停水”“供水”)."""
        count = self._rules.explain_features
        if count == 0 or self._model is None:
            return ""
        contribution = self._model.heads[head].coef[klass, index] * weights
        # The strongest few by contribution, then multi-character grams first: "燃气" tells a
        # dispatcher more than "气". numpy picks the candidates; sorting all grams in Python
        # costs more than the rest of the classification.
        strongest = np.argsort(contribution)[-3 * count :]
        ranked = sorted(
            (int(i) for i in strongest if contribution[i] > 0),
            key=lambda i: (len(grams[i]) > 1, float(contribution[i])),
            reverse=True,
        )[:count]
        if not ranked:
            return ""
        return "，依据：" + "".join(f"“{grams[i]}”" for i in ranked)
