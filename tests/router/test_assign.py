"""The gazetteer and the routing rules (属地管理优先, 谁主管谁负责) on the shipped city."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from channels.intake import CallDetails, Intake, Location
from config.units import UnitsConfig
from router.gazetteer import Gazetteer
from router.assign import RoutingRule, detect_competence, route, route_intake
from tests.router.test_units_config import default_data, small_city


@pytest.fixture(scope="module")
def units() -> UnitsConfig:
    return UnitsConfig.model_validate(default_data())


@pytest.fixture(scope="module")
def gazetteer(units: UnitsConfig) -> Gazetteer:
    return Gazetteer(units)


# --- gazetteer ---------------------------------------------------------------------------

@pytest.mark.parametrize(("address", "unit_id", "words"), [
    ("文三路 18 号", "c.xihu.wenxin.dongyuan", ("文三路18号",)),      # house number → community
    ("文三路１８号３单元", "c.xihu.wenxin.dongyuan", ("文三路18号",)),  # full-width digits
    ("文三路 180 号", "s.xihu.wenxin", ("文三路",)),                  # not 18号: the road only
    ("西湖区翠苑一区社区12幢", "c.xihu.cuiyuan.yiqu", ("西湖区", "翠苑一区社区")),
    ("翠苑二区", "c.xihu.cuiyuan.erqu", ("翠苑二区",)),                # alias
    ("文新街道办事处旁边", "s.xihu.wenxin", ("文新街道",)),
    ("文新", "s.xihu.wenxin", ("文新",)),                             # short form
    ("拱墅区东园社区", "c.gongshu.mishiqiao.dongyuan", ("拱墅区", "东园社区")),
    ("湖墅南路 3 号", "s.gongshu.mishiqiao", ("湖墅南路",)),          # not the 湖墅 community
    ("桐溪县白水镇桥头村", "c.tongxi.baishui.qiaotou", ("桐溪县", "白水镇", "桥头村")),
    ("下村", "c.tongxi.fenshui.xiacun", ("下村",)),
])
def test_addresses_are_placed(gazetteer: Gazetteer, address: str, unit_id: str,
                              words: tuple[str, ...]) -> None:
    match = gazetteer.locate(Location(address=address))
    assert match is not None
    assert (match.unit.id, match.words) == (unit_id, words)


def test_a_name_in_two_districts_needs_its_district(gazetteer: Gazetteer) -> None:
    assert gazetteer.locate(None, "东园社区门口") is None
    match = gazetteer.locate(None, "西湖区东园社区门口")
    assert match is not None and match.unit.id == "c.xihu.wenxin.dongyuan"


def test_two_streets_of_one_district_give_the_district(gazetteer: Gazetteer) -> None:
    match = gazetteer.locate(None, "从文三路一直到灵隐路都是这样")
    assert match is not None and match.unit.id == "d.xihu"
    assert match.words == ("文三路", "灵隐路")
    # Two districts share only the city, which is no place.
    assert gazetteer.locate(None, "文三路和大关路") is None


def test_location_fields_come_first_and_the_text_refines(gazetteer: Gazetteer) -> None:
    # The form says 西湖区; the text's 大关路 is in 拱墅区 and must not move it there.
    match = gazetteer.locate(Location(district="西湖区"), "我住在大关路附近，靠近文三路")
    assert match is not None and match.unit.id == "s.xihu.wenxin"
    assert [(h.field, h.word) for h in match.hits] == [("district", "西湖区"), ("text", "文三路")]
    match = gazetteer.locate(Location(district="西湖区"), "大关路")
    assert match is not None and match.unit.id == "d.xihu"
    match = gazetteer.locate(Location(street="米市巷街道"), "")
    assert match is not None and match.unit.id == "s.gongshu.mishiqiao"


def test_nothing_to_place(gazetteer: Gazetteer) -> None:
    assert gazetteer.locate(None, "") is None
    assert gazetteer.locate(Location(), "临江市的天气真好😀 hello") is None
    assert gazetteer.find("") == []


def test_only_the_configured_prefix_is_searched() -> None:
    units = UnitsConfig.model_validate(small_city(max_scan_chars=50))
    gazetteer = Gazetteer(units)
    assert gazetteer.locate(None, "啊" * 49 + "文三路") is None
    assert gazetteer.locate(None, "啊" * 47 + "文三路") is not None


# --- routing -----------------------------------------------------------------------------

def test_local_competence_goes_to_the_street(units: UnitsConfig, gazetteer: Gazetteer) -> None:
    decision = route("city.urban", location=Location(address="文三路 18 号"),
                     text="楼下饭店每晚噪音扰民", units=units, gazetteer=gazetteer)
    assert (decision.unit_id, decision.rule) == ("s.xihu.wenxin", RoutingRule.territorial)
    assert decision.competence == "noise" and decision.place_id == "c.xihu.wenxin.dongyuan"
    assert decision.explain == [
        "职责判断：关键词“噪音、扰民”→噪音扰民",
        "属地管理优先：地址“文三路 18 号”匹配东园社区；噪音扰民属于街道乡镇职责，由文新街道办理"]


def test_central_competence_stays_with_the_department(units: UnitsConfig,
                                                       gazetteer: Gazetteer) -> None:
    decision = route("city.water", location=Location(address="文三路 18 号"),
                     text="家里停水两天了", units=units, gazetteer=gazetteer)
    assert (decision.unit_id, decision.rule) == ("city.water",
                                                RoutingRule.competent_department)
    assert decision.explain[-1] == "谁主管谁负责：“供水”由水务集团主管"


def test_given_competence_wins_over_keywords(units: UnitsConfig, gazetteer: Gazetteer) -> None:
    decision = route("city.hrss", "wage_arrears", location=Location(district="桐溪县"),
                     text="老板跑了", units=units, gazetteer=gazetteer)
    assert (decision.unit_id, decision.rule) == ("d.tongxi", RoutingRule.territorial)
    assert "拖欠工资属于区县职责，由桐溪县办理" in decision.explain[-1]
    unknown = route("city.hrss", "wages", text="拖欠工资三个月", units=units,
                    gazetteer=gazetteer)
    assert unknown.explain[0] == "职责“wages”未在配置中，改按关键词判断"
    assert unknown.competence == "wage_arrears" and unknown.unit_id == "city.hrss"


def test_local_competence_without_a_place_stays_with_the_department(
        units: UnitsConfig, gazetteer: Gazetteer) -> None:
    decision = route("city.urban", text="有人占道摆摊", units=units, gazetteer=gazetteer)
    assert (decision.unit_id, decision.rule) == ("city.urban", RoutingRule.competent_department)
    assert "“占道经营”实行属地管理，但未识别出地点，由主管部门办理" in decision.explain


def test_competence_alone_finds_the_department(units: UnitsConfig,
                                               gazetteer: Gazetteer) -> None:
    decision = route(None, text="公积金提取一直办不下来", units=units, gazetteer=gazetteer)
    assert (decision.unit_id, decision.rule) == ("city.housing_fund",
                                                RoutingRule.competent_department)


def test_territorial_matters_go_to_the_place(units: UnitsConfig, gazetteer: Gazetteer) -> None:
    decision = route("territorial", text="拱墅区东园社区楼道堆满杂物", units=units,
                     gazetteer=gazetteer)
    assert (decision.unit_id, decision.rule) == ("c.gongshu.mishiqiao.dongyuan",
                                                RoutingRule.territorial)
    decision = route("territorial", text="帮忙调解一下", location=Location(address="大关路"),
                     units=units, gazetteer=gazetteer)
    assert decision.unit_id == "s.gongshu.daguan" and decision.competence is None


def test_ambiguous_or_unknown_place_goes_to_manual_dispatch(units: UnitsConfig,
                                                            gazetteer: Gazetteer) -> None:
    decision = route("territorial", text="东园社区邻居装修", units=units, gazetteer=gazetteer)
    assert (decision.unit_id, decision.rule) == (None, RoutingRule.manual)
    assert "地名“东园社区”对应多处或相互矛盾，无法确定地点" in decision.explain
    decision = route("territorial", text="邻居吵架", location=Location(address="火星路 1 号"),
                     units=units, gazetteer=gazetteer)
    assert decision.rule is RoutingRule.manual and "未识别出地点" in decision.explain


def test_unknown_unit_with_a_place_falls_back_to_the_district(units: UnitsConfig,
                                                             gazetteer: Gazetteer) -> None:
    decision = route("city.zoo", location=Location(address="ＸＸ大关路１２号"), text="有事反映",
                     units=units, gazetteer=gazetteer)
    assert (decision.unit_id, decision.rule) == ("d.gongshu", RoutingRule.district_fallback)
    assert decision.explain == ["分类结果“city.zoo”不是已配置的单位，不予采用",
                                "未能确定主管单位；地址“ＸＸ大关路１２号”中的“大关路”位于拱墅区，派至拱墅区兜底"]


def test_empty_input_goes_to_manual_dispatch(units: UnitsConfig) -> None:
    decision = route(None, units=units)
    assert decision.unit_id is None and decision.rule is RoutingRule.manual
    assert decision.explain == ["未识别出地点", "未能确定诉求所属职责", "转人工派单"]
    assert RoutingRule.manual.label == "人工派单"


def test_a_territorial_guess_is_kept_without_a_place(units: UnitsConfig,
                                                      gazetteer: Gazetteer) -> None:
    decision = route("s.xihu.lingyin", text="请帮忙", units=units, gazetteer=gazetteer)
    assert (decision.unit_id, decision.rule) == ("s.xihu.lingyin", RoutingRule.territorial)


def test_local_competence_nobody_holds_at_the_place_stays_central() -> None:
    # In the small city only the street holds noise; a place at the district level has no
    # territorial holder, so 谁主管谁负责 applies.
    data = small_city()
    data["units"][3]["competences"] = ["supervision"]
    units = UnitsConfig.model_validate(data)
    decision = route("city.urban", text="西湖区广场噪音", units=units)
    assert (decision.unit_id, decision.rule) == ("city.urban", RoutingRule.competent_department)
    assert "西湖区及其上级均不承担“噪音扰民”，由主管部门办理" in decision.explain


def test_detect_competence_counts_keywords(units: UnitsConfig) -> None:
    found = detect_competence("小区物业不管电梯，噪音也大", units)
    assert found is not None and found.key == "property_management"
    assert found.words == ("物业", "电梯")
    assert detect_competence("", units) is None
    assert detect_competence("噪音", units, among=["water_supply"]) is None


def test_route_intake_reads_title_text_and_call_summary(units: UnitsConfig,
                                                        gazetteer: Gazetteer) -> None:
    intake = Intake(channel="phone", external_id="call-1", received_at=datetime.now(UTC),
                    intake_id="0" * 32, acceptance_no="2026112301000001",
                    location=Location(district="西湖区"),
                    call=CallDetails(call_id="1.1", agent_summary="市民反映文三路夜间施工噪音"))
    decision = route_intake(intake, "city.urban", units, gazetteer)
    assert (decision.unit_id, decision.rule) == ("s.xihu.wenxin", RoutingRule.territorial)
