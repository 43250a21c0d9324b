"""Find the place of a demand: which district, street or community an address or text names.

:class:`Gazetteer` is built once from :class:`config.units.UnitsConfig` (unit names, their short
forms without 区/县/街道/镇/社区/村, ``aliases`` and the ``gazetteer`` section of road names and
house numbers) and matches leftmost-longest, so ``文三路18号`` beats ``文三路`` and ``西湖区`` beats
``西湖``. Texts are compared in :func:`config.units.normalize_place` form (full-width digits and
brackets folded, spaces dropped).

:meth:`Gazetteer.locate` reads an intake's :class:`channels.intake.Location` fields first (the
citizen or the agent filled them on purpose), then lets the free text make that place more
specific; without them it places the text alone. The answer is the most specific unit the words
agree on, with those words, so a dispatcher sees why.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from channels.intake import Location
from config.units import Unit, UnitsConfig, normalize_place

PlaceField = Literal["district", "street", "address", "text"]
FIELD_NAMES: dict[PlaceField, str] = {
    "district": "区县", "street": "街道", "address": "地址", "text": "诉求内容"}
# A unit named 东园社区 is also called 东园; a shorter remainder (村 of 下村村 → 下村 is fine,
# but 江区 → 江 is not) would match inside ordinary words.
_SUFFIXES = ("街道办事处", "街道", "社区", "区", "县", "镇", "乡", "村")
_MIN_SHORT_FORM = 2


@dataclass(frozen=True, slots=True)
class PlaceHit:
    """One gazetteer word found in one field: ``word`` (normalised) may name several units
    (two villages called 下村 in different towns)."""

    word: str
    field: PlaceField
    unit_ids: tuple[str, ...]
    # The whole field as the citizen wrote it (``文三路 18 号``); None for the free text.
    value: str | None = None


@dataclass(frozen=True, slots=True)
class PlaceMatch:
    """The place a demand is about: the most specific ``unit`` its words agree on, and the
    ``hits`` that support it (the unit or one of its ancestors)."""

    unit: Unit
    hits: tuple[PlaceHit, ...]

    @property
    def words(self) -> tuple[str, ...]:
        """The matched words, in the order found."""
        return tuple(dict.fromkeys(h.word for h in self.hits))


class Gazetteer:
    """Place names of one :class:`UnitsConfig`, ready for matching (build once per config)."""

    def __init__(self, units: UnitsConfig) -> None:
        self.units = units
        names: dict[str, dict[str, None]] = {}

        def add(name: str, unit_id: str) -> None:
            key = normalize_place(name)
            if key:
                names.setdefault(key, {})[unit_id] = None

        for unit in units.units:
            # The city itself says nothing about where in the city: "临江市" places nothing.
            if not unit.territorial or unit.level == "city":
                continue
            for name in (unit.name, *unit.aliases):
                add(name, unit.id)
                short = _short_form(name)
                if short is not None:
                    add(short, unit.id)
        for name, unit_id in units.gazetteer.items():
            add(name, unit_id)
        self._names = {k: tuple(v) for k, v in names.items()}
        # One alternation, longest names first: ``re`` takes the first alternative that
        # matches at the leftmost position, which makes it leftmost-longest, and scans in C
        # (a Python loop over a 2000-character mail cost ~0.6 ms, half the routing budget).
        ordered = sorted(self._names, key=lambda n: (-len(n), n))
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def find(self, text: str, field: PlaceField = "text") -> list[PlaceHit]:
        """Every gazetteer word in ``text``, leftmost-longest, not overlapping."""
        normal = normalize_place(text[: self.units.max_scan_chars])
        if self._pattern is None:
            return []
        value = None if field == "text" else text.strip()
        return [PlaceHit(m.group(), field, self._names[m.group()], value)
                for m in self._pattern.finditer(normal)]

    def locate(self, location: Location | None, text: str = "") -> PlaceMatch | None:
        """The place of a demand: ``location`` fields first, refined by ``text``; ``None`` when
        no place is recognised or the words disagree (two districts)."""
        given: list[PlaceHit] = []
        if location is not None:
            fields: tuple[tuple[PlaceField, str | None], ...] = (
                ("district", location.district), ("street", location.street),
                ("address", location.address))
            for field, value in fields:
                if value:
                    given.extend(self.find(value, field))
        text_hits = self.find(text) if text else []
        if given:
            found = self._resolve(given)
            if found is not None:
                # The text may name the street of a district the form gave; it may not move
                # the place elsewhere (the form is the citizen's deliberate answer).
                inside = [PlaceHit(h.word, h.field, ids, h.value) for h in text_hits
                          if (ids := self._below(found.unit, h.unit_ids))]
                return self._resolve([*given, *inside]) if inside else found
        return self._resolve(text_hits)

    def _below(self, unit: Unit, unit_ids: Iterable[str]) -> tuple[str, ...]:
        """Those of ``unit_ids`` strictly inside ``unit``."""
        inside = []
        for unit_id in unit_ids:
            candidate = self.units.unit(unit_id)
            if candidate is not None and candidate.id != unit.id \
                    and unit in self.units.ancestors(candidate):
                inside.append(unit_id)
        return tuple(inside)

    def _resolve(self, hits: Sequence[PlaceHit]) -> PlaceMatch | None:
        # Each candidate scores (how many hits agree with it, how deep it is): 西湖区 + 文三路
        # gives 文新街道 two agreeing hits; a road alone gives its street.
        scored: dict[str, tuple[int, int, tuple[PlaceHit, ...]]] = {}
        for unit_id in dict.fromkeys(i for h in hits for i in h.unit_ids):
            unit = self.units.unit(unit_id)
            if unit is None:
                continue
            chain = {u.id for u in self.units.ancestors(unit)}
            support = tuple(h for h in hits if chain.intersection(h.unit_ids))
            scored[unit_id] = (len(support), len(chain), support)
        if not scored:
            return None
        best = max(score[:2] for score in scored.values())
        tied = [unit_id for unit_id, score in scored.items() if score[:2] == best]
        if len(tied) == 1:
            unit = self.units.by_id[tied[0]]
            return PlaceMatch(unit, scored[tied[0]][2])
        # Equally good places that disagree (东园 in two districts): only what they share
        # is known, and the city is no place at all.
        common = self._common_ancestor([self.units.by_id[t] for t in tied])
        if common is None or common.level == "city":
            return None
        chain = {u.id for u in self.units.ancestors(common)}
        return PlaceMatch(common, tuple(h for h in hits if chain.intersection(h.unit_ids)
                                        or any(t in h.unit_ids for t in tied)))

    def _common_ancestor(self, units: Sequence[Unit]) -> Unit | None:
        chains = [self.units.ancestors(u) for u in units]
        for candidate in chains[0]:
            if all(candidate in chain for chain in chains[1:]):
                return candidate
        return None


def _short_form(name: str) -> str | None:
    for suffix in _SUFFIXES:
        if name.endswith(suffix) and len(name) - len(suffix) >= _MIN_SHORT_FORM:
            return name[: -len(suffix)]
    return None
