"""units.yaml: the shipped city loads, and every cross-check names the key at fault."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from config.schema import CROSS_CHECK
from config.units import UnitsConfig, normalize_place

DEFAULT_UNITS = Path(__file__).resolve().parents[2] / "config" / "defaults" / "units.yaml"
# The ids the classifier's labelled sample uses (issue 4): they must stay in the default file.
CLASSIFIER_UNITS = (
    "city.housing", "city.water", "city.power", "city.gas", "city.hrss", "city.market",
    "city.urban", "city.transport", "city.education", "city.health", "city.ecology",
    "city.public_security", "city.housing_fund")


def default_data() -> dict[str, Any]:
    data = yaml.safe_load(DEFAULT_UNITS.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def small_city(**changes: Any) -> dict[str, Any]:
    """A minimal valid units.yaml as data; ``changes`` replace top-level keys."""
    data: dict[str, Any] = {
        "competences": {"noise": {"name": "噪音扰民", "keywords": ["噪音"]},
                        "water_supply": {"name": "供水", "keywords": ["停水"]},
                        "supervision": {"name": "督办协调"}},
        "level_competences": {"street": ["noise"]},
        "units": [
            {"id": "city", "name": "临江市", "level": "city", "competences": ["supervision"]},
            {"id": "city.urban", "name": "城市管理局", "level": "department", "parent": "city",
             "competences": ["noise"], "local": ["noise"]},
            {"id": "city.water", "name": "水务集团", "level": "department", "parent": "city",
             "competences": ["water_supply"]},
            {"id": "d.xihu", "name": "西湖区", "level": "district", "parent": "city",
             "competences": ["noise"]},
            {"id": "s.xihu.wenxin", "name": "文新街道", "level": "street", "parent": "d.xihu"},
        ],
        "gazetteer": {"文三路": "s.xihu.wenxin"},
    }
    data.update(changes)
    return data


def problems(data: dict[str, Any]) -> list[tuple[str, str]]:
    """The ``(key path, reason)`` pairs UnitsConfig reports for ``data`` (pydantic's own
    field errors as ``loc: msg``)."""
    with pytest.raises(ValidationError) as caught:
        UnitsConfig.model_validate(data)
    found: list[tuple[str, str]] = []
    for error in caught.value.errors():
        if error["type"] == CROSS_CHECK:
            found.extend((error.get("ctx") or {})["issues"])
        else:
            found.append((".".join(str(p) for p in error["loc"]), error["msg"]))
    return found


def test_the_shipped_city_loads_with_every_classifier_unit() -> None:
    units = UnitsConfig.model_validate(default_data())
    for unit_id in CLASSIFIER_UNITS:
        unit = units.unit(unit_id)
        assert unit is not None and unit.level == "department", unit_id
    assert units.unit("city.health") is not None
    assert units.by_id["city.health"].name == "卫生健康委员会（含医保）"
    assert units.territorial_label == "territorial"
    levels = [u.level for u in units.units]
    assert levels.count("district") == 3
    streets = [u for u in units.units if u.level == "street"]
    assert all(sum(1 for c in units.units if c.parent == s.id) == 2 for s in streets)
    wenxin = units.by_id["s.xihu.wenxin"]
    assert "noise" in units.competences_of(wenxin)
    assert [u.id for u in units.ancestors(units.by_id["c.xihu.wenxin.dongyuan"])] == [
        "c.xihu.wenxin.dongyuan", "s.xihu.wenxin", "d.xihu", "city"]
    assert "noise" in units.local_competences()
    assert [u.id for u in units.departments_holding("water_supply")] == ["city.water"]


def test_the_small_city_is_valid() -> None:
    units = UnitsConfig.model_validate(small_city())
    assert units.competences_of(units.by_id["s.xihu.wenxin"]) == ("noise",)


def test_a_unit_without_competence_is_named() -> None:
    data = small_city()
    data["units"][2]["competences"] = []
    found = problems(data)
    assert ("units[2].competences",
            "unit 'city.water' (水务集团) has no competence: list what it handles") in found
    # water_supply is now held by nobody: reported too, in the same pass.
    assert ("competences.water_supply", "no unit holds competence 'water_supply'") in found


def test_unknown_parent_with_a_suggestion() -> None:
    data = small_city()
    data["units"][4]["parent"] = "d.xihuu"
    assert ("units[4].parent", "unknown parent 'd.xihuu'; did you mean 'd.xihu'?") \
        in problems(data)


def test_duplicate_ids_are_named() -> None:
    data = small_city()
    data["units"].append(dict(data["units"][1]))
    assert ("units[5].id", "duplicate unit 'city.urban' (also units[1])") in problems(data)


def test_a_cycle_is_reported_not_looped() -> None:
    data = small_city()
    data["units"] += [
        {"id": "s.a", "name": "甲街道", "level": "street", "parent": "s.b"},
        {"id": "s.b", "name": "乙街道", "level": "street", "parent": "s.a"},
    ]
    found = problems(data)
    assert ("units[5].parent", "cycle: s.a → s.b → s.a") in found
    assert ("units[5].parent", "the parent of a street must be a district, 's.b' is a street") \
        in found


def test_levels_must_nest() -> None:
    data = small_city()
    data["units"][4]["parent"] = "city"
    data["units"][0]["parent"] = "d.xihu"
    found = problems(data)
    assert ("units[4].parent", "the parent of a street must be a district, 'city' is a city") \
        in found
    assert ("units[0].parent", "the city unit has no parent") in found


def test_unknown_competence_with_a_suggestion() -> None:
    data = small_city()
    data["units"][1]["competences"] = ["noise", "nosie"]
    data["level_competences"] = {"street": ["noise", "watter_supply"]}
    found = problems(data)
    assert ("units[1].competences[1]",
            "unknown competence 'nosie' (not in competences); did you mean 'noise'?") in found
    assert ("level_competences.street[1]", ("unknown competence 'watter_supply' (not in "
                                            "competences); did you mean 'water_supply'?")) in found


def test_a_competence_nobody_holds() -> None:
    data = small_city()
    data["competences"]["gas_supply"] = {"name": "燃气"}
    assert problems(data) == [("competences.gas_supply", "no unit holds competence 'gas_supply'")]


def test_local_competence_needs_a_territorial_holder() -> None:
    data = small_city(level_competences={})
    data["units"][3]["competences"] = ["supervision"]
    found = problems(data)
    assert ("units[1].local[0]", ("no district, street or community holds 'noise', so it "
                                  "cannot be handled locally (属地管理)")) in found
    # The street no longer holds anything either.
    assert any(path == "units[4].competences" for path, _ in found)


def test_local_must_be_a_competence_of_the_department_and_only_departments() -> None:
    data = small_city()
    data["units"][2]["local"] = ["noise"]
    data["units"][3]["local"] = ["noise"]
    found = problems(data)
    assert ("units[2].local[0]", "'noise' is not among the competences of 'city.water'") in found
    assert ("units[3].local", "only departments mark competences local") in found


def test_gazetteer_targets_must_be_known_places() -> None:
    data = small_city(gazetteer={"文三路": "s.xihu.wenxn", "市政大楼": "city.water"})
    found = problems(data)
    assert ("gazetteer.文三路", "unknown unit 's.xihu.wenxn'; did you mean 's.xihu.wenxin'?") \
        in found
    assert ("gazetteer.市政大楼", "'city.water' is a department, not a place") in found


def test_field_errors_name_the_key() -> None:
    data = small_city()
    data["units"][1]["level"] = "ministry"
    data["units"][2]["id"] = "City Water"
    data["units"][3]["colour"] = "red"
    paths = {path for path, _ in problems(data)}
    assert {"units.1.level", "units.2.id", "units.3.colour"} <= paths


def test_the_territorial_label_is_not_a_unit_id() -> None:
    data = small_city(territorial_label="d.xihu")
    assert ("units[3].id", "'d.xihu' is the territorial_label, not a unit id") in problems(data)


def test_normalize_place_folds_full_width_and_spaces() -> None:
    assert normalize_place("文三路 １８ 号（东）") == "文三路18号(东)"
    assert normalize_place(" \u3000 ") == ""
