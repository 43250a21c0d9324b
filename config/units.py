"""``units.yaml``: the units that handle work orders, their competences and the gazetteer.

Units form the four-level hierarchy of the 12345 platform (city → district/county 区/县 →
street/town 街道/镇 → community/village 社区/村) plus the city's departments (住建局, 水务集团, ...).
Each unit holds *competences* (``water_supply``, ``noise``, ...), keys of the ``competences``
catalogue. Two rules route a work order (see :mod:`router.assign`):

- 谁主管谁负责: the department holding a competence is responsible for it;
- 属地管理优先: when the department marks that competence ``local``, a recognised place sends
  the order to the territorial unit (street, community, district) there that holds it.

Territorial units get the competences of their level (``level_competences``) plus their own.
The ``gazetteer`` maps road names, landmarks and house numbers to territorial units so an
address (``文三路 18 号``) can be placed; unit names and ``aliases`` are in it implicitly.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Iterator
from functools import cached_property
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

UnitLevel = Literal["city", "district", "street", "community", "department"]
TerritorialLevel = Literal["city", "district", "street", "community"]
TERRITORIAL_LEVELS: tuple[TerritorialLevel, ...] = ("city", "district", "street", "community")
# The level a unit's parent must have: the hierarchy is strict, so "the street of this
# community" is always one step up and the depth of a unit says how specific it is.
PARENT_LEVEL: dict[UnitLevel, UnitLevel | None] = {
    "city": None, "district": "city", "street": "district", "community": "street",
    "department": "city"}
LEVEL_NAMES: dict[UnitLevel, str] = {
    "city": "市", "district": "区县", "street": "街道乡镇", "community": "社区村",
    "department": "市级部门"}

_UNIT_ID = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$")
_COMPETENCE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def normalize_place(text: str) -> str:
    """The form in which place names are compared: NFKC (full-width ``１８号`` and ``（`` become
    ``18号`` and ``(``), lower case, no white space (``文三路 18 号`` = ``文三路18号``)."""
    return "".join(unicodedata.normalize("NFKC", text).lower().split())


def _unit_id(value: str) -> str:
    if len(value) > 100 or not _UNIT_ID.match(value):
        raise PydanticCustomError(
            "bad_unit_id", "must be dotted lower-case words like d.xihu or city.water")
    return value


def _competence_key(value: str) -> str:
    if not _COMPETENCE.match(value):
        raise PydanticCustomError(
            "bad_competence", "must be 1-64 of a-z 0-9 _ starting with a letter, like noise")
    return value


def _place_name(value: str) -> str:
    if not normalize_place(value):
        raise PydanticCustomError("empty", "must not be empty")
    return value.strip()


UnitId = Annotated[str, AfterValidator(_unit_id)]
CompetenceKey = Annotated[str, AfterValidator(_competence_key)]
PlaceName = Annotated[str, Field(max_length=100), AfterValidator(_place_name)]
ChineseName = Annotated[str, Field(min_length=1, max_length=100)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Competence(_Section):
    """One kind of matter a unit is responsible for: its Chinese name (shown to dispatchers)
    and the words that reveal it in a citizen's text (``噪音``, ``扰民``)."""

    name: ChineseName
    keywords: tuple[Annotated[str, Field(min_length=1, max_length=50)], ...] = ()

    @cached_property
    def normal_keywords(self) -> tuple[tuple[str, str], ...]:
        """``(keyword, its normalize_place form)`` pairs, computed once."""
        return tuple((k, n) for k in self.keywords if (n := normalize_place(k)))


class Unit(_Section):
    """A unit that receives work orders: a territorial unit or a city department."""

    id: UnitId
    name: ChineseName
    level: UnitLevel
    parent: UnitId | None = None
    competences: tuple[CompetenceKey, ...] = ()
    # Department competences handled where the problem is (属地管理优先); the others are
    # handled by the department itself (谁主管谁负责).
    local: tuple[CompetenceKey, ...] = ()
    # Other names the citizens use (西湖 for 西湖区, 文新 for 文新街道); matched like the name.
    aliases: tuple[PlaceName, ...] = ()

    @property
    def territorial(self) -> bool:
        """True for city, district, street and community units (not for departments)."""
        return self.level != "department"


class UnitsConfig(_Section):
    """``units.yaml``: the unit hierarchy, the competence catalogue and the gazetteer."""

    # The classifier's label for "the street or community where it happens" (邻里纠纷, 小区环境):
    # not a unit, the router resolves it from the place.
    territorial_label: Annotated[str, Field(min_length=1, max_length=64)] = "territorial"
    # Only this many characters of a text are searched for places and competence words; an
    # address is at the start of a complaint, and a 200 000-character mail must stay cheap.
    max_scan_chars: Annotated[int, Field(ge=50, le=200_000)] = 2000
    competences: dict[CompetenceKey, Competence] = {}
    level_competences: dict[TerritorialLevel, tuple[CompetenceKey, ...]] = {}
    units: tuple[Unit, ...] = ()
    # Road / landmark / house-number → territorial unit id (文三路: s.xihu.wenxin).
    gazetteer: dict[PlaceName, UnitId] = {}

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        issues = list(self._problems())
        if issues:
            # Imported here: config.schema imports this module for HotlineConfig.
            from config.schema import fail_cross_check
            fail_cross_check(issues)
        return self

    def _problems(self) -> Iterator[tuple[str, str]]:
        index: dict[str, int] = {}
        for i, unit in enumerate(self.units):
            if unit.id in index:
                yield f"units[{i}].id", f"duplicate unit {unit.id!r} (also units[{index[unit.id]}])"
            index.setdefault(unit.id, i)
            if unit.id == self.territorial_label:
                yield f"units[{i}].id", f"{unit.id!r} is the territorial_label, not a unit id"
        known = set(self.competences)
        yield from self._check_hierarchy(index)
        for level, keys in self.level_competences.items():
            for k, key in enumerate(keys):
                if key not in known:
                    yield f"level_competences.{level}[{k}]", self._unknown_competence(key)
        held: dict[str, list[Unit]] = {}
        for i, unit in enumerate(self.units):
            here = f"units[{i}]"
            for k, key in enumerate(unit.competences):
                if key not in known:
                    yield f"{here}.competences[{k}]", self._unknown_competence(key)
            own = self.competences_of(unit)
            if not own:
                yield (f"{here}.competences",
                       f"unit {unit.id!r} ({unit.name}) has no competence: list what it handles")
            for key in own:
                held.setdefault(key, []).append(unit)
            if unit.local and unit.territorial:
                yield f"{here}.local", "only departments mark competences local"
            for k, key in enumerate(unit.local):
                if key not in unit.competences:
                    yield (f"{here}.local[{k}]",
                           f"{key!r} is not among the competences of {unit.id!r}")
        for key in self.competences:
            if key not in held:
                yield f"competences.{key}", f"no unit holds competence {key!r}"
        for i, unit in enumerate(self.units):
            for k, key in enumerate(unit.local):
                if key in known and not any(u.territorial for u in held.get(key, ())):
                    yield (f"units[{i}].local[{k}]",
                           (f"no district, street or community holds {key!r}, so it cannot "
                            "be handled locally (属地管理)"))
        for name, unit_id in self.gazetteer.items():
            target = self.unit(unit_id)
            if target is None:
                yield f"gazetteer.{name}", f"unknown unit {unit_id!r}{self._hint(unit_id)}"
            elif not target.territorial:
                yield f"gazetteer.{name}", f"{unit_id!r} is a department, not a place"

    def _check_hierarchy(self, index: dict[str, int]) -> Iterator[tuple[str, str]]:
        cities = [u for u in self.units if u.level == "city"]
        if self.units and len(cities) != 1:
            yield "units", f"exactly one unit must have level city (found {len(cities)})"
        for i, unit in enumerate(self.units):
            wanted = PARENT_LEVEL[unit.level]
            if unit.parent is None:
                if wanted is not None:
                    yield f"units[{i}].parent", f"a {unit.level} unit needs a {wanted} parent"
                continue
            if unit.parent not in index:
                yield (f"units[{i}].parent",
                       f"unknown parent {unit.parent!r}{self._hint(unit.parent)}")
                continue
            parent = self.units[index[unit.parent]]
            if wanted is None:
                yield f"units[{i}].parent", "the city unit has no parent"
            elif parent.level != wanted:
                yield (f"units[{i}].parent", (f"the parent of a {unit.level} must be a "
                                              f"{wanted}, {unit.parent!r} is a {parent.level}"))
        # Levels already forbid most cycles; a cycle among equal levels is still reported
        # by the walk below, so a hand-edited file never makes ancestors() loop.
        for i, unit in enumerate(self.units):
            path = [unit.id]
            current = unit
            while current.parent is not None and current.parent in index:
                if current.parent in path:
                    cycle = " → ".join([*path[path.index(current.parent):], current.parent])
                    yield f"units[{i}].parent", f"cycle: {cycle}"
                    break
                path.append(current.parent)
                current = self.units[index[current.parent]]

    def _unknown_competence(self, key: str) -> str:
        close = difflib.get_close_matches(key, list(self.competences), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown competence {key!r} (not in competences){hint}"

    def _hint(self, unit_id: str) -> str:
        close = difflib.get_close_matches(unit_id, [u.id for u in self.units], n=1)
        return f"; did you mean {close[0]!r}?" if close else ""

    @cached_property
    def by_id(self) -> dict[str, Unit]:
        """Every unit by id (the first of duplicates; built once, the config is frozen)."""
        index: dict[str, Unit] = {}
        for unit in self.units:
            index.setdefault(unit.id, unit)
        return index

    def unit(self, unit_id: str) -> Unit | None:
        """The unit with this id, or ``None``."""
        return self.by_id.get(unit_id)

    def competences_of(self, unit: Unit) -> tuple[str, ...]:
        """Every competence ``unit`` holds: its level's (territorial units) and its own."""
        inherited: tuple[str, ...] = ()
        if unit.level != "department":
            inherited = self.level_competences.get(unit.level, ())
        return tuple(dict.fromkeys((*inherited, *unit.competences)))

    def ancestors(self, unit: Unit) -> tuple[Unit, ...]:
        """``unit`` itself, then its parent, up to the city (most specific first)."""
        chain = [unit]
        seen = {unit.id}
        while chain[-1].parent is not None:
            parent = self.unit(chain[-1].parent)
            if parent is None or parent.id in seen:
                break
            chain.append(parent)
            seen.add(parent.id)
        return tuple(chain)

    @cached_property
    def territorial_competences(self) -> frozenset[str]:
        """Competences some city, district, street or community holds."""
        return frozenset(k for u in self.units if u.territorial for k in self.competences_of(u))

    def local_competences(self) -> frozenset[str]:
        """Competences some department marks local (属地管理优先)."""
        return frozenset(key for u in self.units for key in u.local)

    def departments_holding(self, competence: str) -> tuple[Unit, ...]:
        """The departments holding ``competence`` (谁主管谁负责), in file order."""
        return tuple(u for u in self.units
                     if u.level == "department" and competence in u.competences)

    def level_name(self, unit: Unit) -> str:
        """``街道乡镇`` etc.: how the explanation names a unit's level."""
        return LEVEL_NAMES[unit.level]
