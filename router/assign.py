"""Which unit handles a demand, and why (001 第九条: 属地管理优先, 谁主管谁负责).

:func:`route` takes the classifier's unit guess (a department id, a territorial unit id or the
``territorial`` label), the competence when known (otherwise found from the text's keywords),
and the intake's place and text. In order:

1. 谁主管谁负责 — the guessed department, or the department holding the competence, is
   responsible;
2. 属地管理优先 — unless that department marks the competence ``local`` and a place is
   recognised: then the most specific territorial unit there holding it (community, street,
   district) gets the order;
3. territorial matters (the ``territorial`` label) go to the recognised place itself;
4. otherwise the district of the recognised place (兜底), and with no usable place or unit,
   manual dispatch (人工派单).

Every step adds a Chinese sentence to :attr:`RoutingDecision.explain`, shown on the ticket so a
dispatcher sees which rule applied and which words decided it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from channels.intake import Intake, Location
from config.units import LEVEL_NAMES, Unit, UnitsConfig, normalize_place
from router.gazetteer import FIELD_NAMES, Gazetteer, PlaceMatch


class RoutingRule(StrEnum):
    """The rule that chose the unit."""

    competent_department = "competent_department"
    territorial = "territorial"
    district_fallback = "district_fallback"
    manual = "manual"

    @property
    def label(self) -> str:
        """The rule's Chinese name, as dispatchers know it."""
        return _RULE_LABELS[self]


_RULE_LABELS = {
    RoutingRule.competent_department: "谁主管谁负责",
    RoutingRule.territorial: "属地管理优先",
    RoutingRule.district_fallback: "区县兜底",
    RoutingRule.manual: "人工派单",
}


@dataclass(frozen=True, slots=True)
class RoutingDecision:
    """Where a work order goes: ``unit_id`` (``None`` for manual dispatch), the ``rule`` that
    decided, and ``explain``, one Chinese sentence per step. ``competence`` and ``place_id``
    are what the decision rested on (``None`` when not recognised)."""

    unit_id: str | None
    rule: RoutingRule
    explain: list[str] = field(default_factory=list)
    competence: str | None = None
    place_id: str | None = None


@dataclass(frozen=True, slots=True)
class CompetenceMatch:
    """A competence found in a text and the keywords that revealed it."""

    key: str
    words: tuple[str, ...]


def detect_competence(text: str, units: UnitsConfig,
                      among: Iterable[str] | None = None) -> CompetenceMatch | None:
    """The competence whose keywords occur most in ``text`` (the first listed on a tie),
    considering only ``among`` when given; ``None`` when no keyword occurs."""
    normal = normalize_place(text[: units.max_scan_chars])
    if not normal:
        return None
    allowed = None if among is None else set(among)
    best: CompetenceMatch | None = None
    for key, competence in units.competences.items():
        if allowed is not None and key not in allowed:
            continue
        words = tuple(w for w, n in competence.normal_keywords if n in normal)
        if words and (best is None or len(words) > len(best.words)):
            best = CompetenceMatch(key, words)
    return best


def route(unit_guess: str | None, competence: str | None = None, *,
          location: Location | None = None, text: str = "", units: UnitsConfig,
          gazetteer: Gazetteer | None = None) -> RoutingDecision:
    """Choose the unit for a demand; never raises on odd input (unknown ids, empty text).

    ``gazetteer`` should be built once per configuration and passed in; without it one is
    built for this call.
    """
    gazetteer = gazetteer if gazetteer is not None else Gazetteer(units)
    explain: list[str] = []
    place = gazetteer.locate(location, text)
    guess = units.unit(unit_guess) if unit_guess else None
    territorial_label = unit_guess == units.territorial_label
    if unit_guess and guess is None and not territorial_label:
        explain.append(f"分类结果“{unit_guess}”不是已配置的单位，不予采用")

    found = _competence(competence, guess, territorial_label, text, units, explain)
    key = found.key if found else None
    department = guess if guess is not None and not guess.territorial else None
    if department is None and guess is None and not territorial_label and key is not None:
        holders = units.departments_holding(key)
        department = holders[0] if holders else None

    if department is not None:
        if key is not None and key in department.local:
            if place is not None:
                target = _holder_in(place, key, units)
                if target is not None:
                    explain.append(_territorial_sentence(place, key, target, units))
                    return RoutingDecision(target.id, RoutingRule.territorial, explain, key,
                                           place.unit.id)
                explain.append(f"{place.unit.name}及其上级均不承担“{_name(key, units)}”，"
                               "由主管部门办理")
            else:
                explain.append(f"“{_name(key, units)}”实行属地管理，但未识别出地点，"
                               "由主管部门办理")
        if key is not None and key in department.competences:
            explain.append(f"谁主管谁负责：“{_name(key, units)}”由{department.name}主管")
        else:
            explain.append(f"谁主管谁负责：分类结果为{department.name}")
        return RoutingDecision(department.id, RoutingRule.competent_department, explain, key,
                               place.unit.id if place else None)

    if place is not None:
        if key is not None:
            target = _holder_in(place, key, units)
            if target is not None:
                explain.append(_territorial_sentence(place, key, target, units))
                return RoutingDecision(target.id, RoutingRule.territorial, explain, key,
                                       place.unit.id)
        elif territorial_label or (guess is not None and guess.territorial):
            explain.append(f"属地管理优先：{_where(place)}匹配{place.unit.name}；"
                           f"属地事项由{place.unit.name}办理")
            return RoutingDecision(place.unit.id, RoutingRule.territorial, explain, None,
                                   place.unit.id)
    if guess is not None and guess.territorial:
        explain.append(f"属地管理优先：分类结果为{guess.name}")
        return RoutingDecision(guess.id, RoutingRule.territorial, explain, key,
                               place.unit.id if place else None)
    if place is not None:
        district = next((u for u in units.ancestors(place.unit) if u.level == "district"),
                        None)
        if district is not None:
            explain.append(f"未能确定主管单位；{_where(place)}位于{district.name}，"
                           f"派至{district.name}兜底")
            return RoutingDecision(district.id, RoutingRule.district_fallback, explain, key,
                                   place.unit.id)
    if place is None:
        explain.append(_no_place(gazetteer, location, text))
    else:
        explain.append(f"{place.unit.name}无法确定承办单位")
    if key is None:
        explain.append("未能确定诉求所属职责")
    explain.append("转人工派单")
    return RoutingDecision(None, RoutingRule.manual, explain, key,
                           place.unit.id if place else None)


def route_intake(intake: Intake, unit_guess: str | None, units: UnitsConfig,
                 gazetteer: Gazetteer | None = None,
                 competence: str | None = None) -> RoutingDecision:
    """:func:`route` for an intake: its location fields, then title and text (an agent's call
    summary when the intake is a call)."""
    parts = [intake.title, intake.text]
    if intake.call is not None and intake.call.agent_summary:
        parts.append(intake.call.agent_summary)
    return route(unit_guess, competence, location=intake.location,
                 text="\n".join(p for p in parts if p), units=units, gazetteer=gazetteer)


def _competence(given: str | None, guess: Unit | None, territorial_label: bool, text: str,
                units: UnitsConfig, explain: list[str]) -> CompetenceMatch | None:
    if given is not None:
        if given in units.competences:
            return CompetenceMatch(given, ())
        explain.append(f"职责“{given}”未在配置中，改按关键词判断")
    among: Iterable[str] | None = None
    if guess is not None:
        among = units.competences_of(guess)
    elif territorial_label:
        among = units.territorial_competences
    found = detect_competence(text, units, among)
    if found is not None:
        explain.append(f"职责判断：关键词“{'、'.join(found.words)}”→"
                       f"{_name(found.key, units)}")
    return found


def _no_place(gazetteer: Gazetteer, location: Location | None, text: str) -> str:
    # Only on this (rare) path: say which words were found but could not be placed, so a
    # dispatcher sees "东园社区 is in two districts" rather than "no place".
    values = [] if location is None else [location.district, location.street, location.address]
    words = dict.fromkeys(h.word for v in (*values, text) if v for h in gazetteer.find(v))
    if words:
        return f"地名“{'、'.join(words)}”对应多处或相互矛盾，无法确定地点"
    return "未识别出地点"


def _holder_in(place: PlaceMatch, key: str, units: UnitsConfig) -> Unit | None:
    """The most specific territorial unit at ``place`` (itself or an ancestor) holding ``key``."""
    return next((u for u in units.ancestors(place.unit)
                 if u.territorial and key in units.competences_of(u)), None)


def _territorial_sentence(place: PlaceMatch, key: str, target: Unit, units: UnitsConfig) -> str:
    return (f"属地管理优先：{_where(place)}匹配{place.unit.name}；{_name(key, units)}属于"
            f"{LEVEL_NAMES[target.level]}职责，由{target.name}办理")


def _where(place: PlaceMatch) -> str:
    # A form field is quoted as the citizen wrote it, with the word that matched when the
    # field holds more than the place name.
    parts = [f"{FIELD_NAMES[h.field]}“{h.word}”" if h.value is None
             else f"{FIELD_NAMES[h.field]}“{h.value}”" if normalize_place(h.value) == h.word
             else f"{FIELD_NAMES[h.field]}“{h.value}”中的“{h.word}”" for h in place.hits]
    return "、".join(dict.fromkeys(parts))


def _name(key: str, units: UnitsConfig) -> str:
    competence = units.competences.get(key)
    return competence.name if competence is not None else key
