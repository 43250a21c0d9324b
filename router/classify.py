"""Classifying a citizen's message: demand type, urgency and the competent unit.

Two sources decide, in this order of precedence:

1. **Rules** an admin reads and edits (:class:`config.classify.ClassifyRules`, the ``classify``
   section of ``routing.yaml``): keywords and regular expressions that set a type, an urgency
   and/or a unit. Rules are tried in the order they are listed; for each of the three axes the
   *first* matching rule that sets it wins, and a rule always wins over the model on the axes it
   sets (an admin's word is law: "燃气泄漏" is an emergency whatever the model thinks). List the
   emergency rules before the basic-living ones.
2. **The learned model** (:class:`TextModel`, trained by :mod:`router.train` from the hotline's
   own history): character n-gram TF-IDF (1–2 by default, see :class:`router.train.TrainSettings`)
   and a linear SVM whose scores are turned into probabilities by a softmax with a scale
   calibrated on cross-validated scores; one head for the unit and one for the type. Urgency is left to the rules (the history rarely labels it
   reliably); without a matching rule it is
   :attr:`~config.classify.ClassifyRules.default_urgency`.

When no rule sets the unit and the model's best probability is below
:attr:`~config.classify.ClassifyRules.confidence_threshold`, the result is ``manual=True``
(人工派单), ``unit`` is None and :attr:`Classification.top` lists the model's suggestions for
the dispatcher.

:meth:`Classifier.classify` is synchronous CPU work (well under a millisecond for a message of a
few hundred characters); async callers run it with ``asyncio.to_thread``.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict

from config.classify import ClassifyRule, ClassifyRules, fold
from config.kinds import DemandType, Urgency
from router.text import char_ngrams, has_content, model_text


class ClassifyError(Exception):
    """Root of this module's errors."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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
