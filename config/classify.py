"""The ``classify`` section of ``routing.yaml``: the rules an admin reads and edits.

How rules and the learned model decide together is described in :mod:`router.classify`, which
applies these rules; they are here so the config loads without the router (and its numpy and
scikit-learn).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from config.kinds import DemandType, Urgency

_WHITESPACE = re.compile(r"\s+")


def fold(text: str) -> str:
    """The text as rules match it: NFKC (full-width → half-width), lower case, single spaces.

    Keywords are folded here at load time and messages by :mod:`router.classify` before
    matching, so both sides are folded by this one function.
    """
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFKC", text)).strip().lower()


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_UNIT_ID = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$")


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
