"""Repeat detection: same citizen in any channel, similar content, open order, in the window;
different citizens at the same place → related."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from channels.intake import Contact, Intake, Location
from config.routing import RepeatConfig
from router.repeats import Earlier, check, citizen_keys

NOW = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)
CFG = RepeatConfig()
NOISE = "幸福小区 3 栋旁边的工地每天晚上十一点以后还在施工，噪音太大，老人孩子都睡不着。"
NOISE_AGAIN = "上次反映的幸福小区3栋旁工地夜间施工噪音问题还是没人管，晚上十一点后仍在施工，睡不着。"
LAMP = "文三路和学院路交叉口的路灯坏了一个星期了，晚上很黑。"


def intake(text: str, *, phone: str | None = "13912345678", email: str | None = None,
           app: str | None = None, channel: str = "web", street: str | None = "文新街道",
           address: str | None = None) -> Intake:
    return Intake(channel=channel, external_id=f"x-{hash(text)}",  # type: ignore[arg-type]
                  received_at=NOW, contact=Contact(phone=phone, email=email,
                                                   app_user_id=app),
                  title="", text=text, location=Location(street=street, address=address),
                  intake_id="a" * 32, acceptance_no="2026112301000009")


def earlier(number: str, text: str, *, phone: str | None = "13912345678",
            email: str | None = None, days_ago: float = 3, open_: bool = True,
            street: str | None = "文新街道") -> Earlier:
    return Earlier(number, Contact(phone=phone, email=email), "", text,
                   Location(street=street), NOW - timedelta(days=days_ago), open_)


def test_citizen_keys_ignore_country_code_and_case() -> None:
    assert citizen_keys(Contact(phone="+86 139-1234-5678")) == {"tel:13912345678"}
    assert citizen_keys(Contact(email="Li@Example.COM", app_user_id="app:u1")) == {
        "mail:li@example.com", "app:app:u1"}
    assert citizen_keys(Contact(phone="110")) == set()


def test_same_citizen_similar_content_open_order_is_a_repeat() -> None:
    found = check(intake(NOISE_AGAIN, channel="phone", phone="+86 13912345678"),
                  [earlier("GD1", NOISE), earlier("GD2", LAMP)], NOW, CFG)
    assert found.repeat_of == "GD1" and found.related == ()
    assert "重复诉求" in found.explain[0] and "GD1" in found.explain[0]


def test_not_a_repeat_when_closed_old_different_matter_or_another_citizen() -> None:
    assert check(intake(NOISE_AGAIN), [earlier("GD1", NOISE, open_=False)], NOW,
                 CFG).repeat_of is None
    assert check(intake(NOISE_AGAIN), [earlier("GD1", NOISE, days_ago=45)], NOW,
                 CFG).repeat_of is None
    assert check(intake(LAMP), [earlier("GD1", NOISE)], NOW, CFG).repeat_of is None
    other = check(intake(NOISE_AGAIN), [earlier("GD1", NOISE, phone="13800000000")], NOW, CFG)
    assert other.repeat_of is None


def test_same_citizen_recognised_by_email_across_channels() -> None:
    found = check(intake(NOISE_AGAIN, phone=None, email="li@example.com", channel="mail"),
                  [earlier("GD7", NOISE, phone=None, email="LI@example.com")], NOW, CFG)
    assert found.repeat_of == "GD7"


def test_other_citizens_same_place_same_problem_are_related() -> None:
    found = check(intake(NOISE, phone="13700000000"),
                  [earlier("GD1", NOISE_AGAIN, phone="13912345678"),
                   earlier("GD2", NOISE, phone="13600000000"),
                   earlier("GD3", NOISE, phone="13500000000", street="西溪街道")], NOW, CFG)
    assert found.repeat_of is None
    assert found.related[0] == "GD2" and "GD3" not in found.related
    assert all("相关诉求" in line for line in found.explain)


def test_empty_text_and_no_contact_never_match() -> None:
    assert check(intake("", phone=None), [earlier("GD1", NOISE)], NOW, CFG) == check(
        intake("", phone=None), [], NOW, CFG)


def test_the_batch_similarity_matrix_equals_the_pairwise_cosine() -> None:
    """The router scores a whole batch in one sparse product; it must agree with the
    one-pair :func:`similarity` the rules were tuned with."""
    from collections import Counter

    from router.kb import terms
    from router.repeats import similarity, similarity_matrix

    docs = [("噪音扰民", "幸福小区3栋旁边的工地每天晚上十一点以后还在施工"),
            ("", "上次反映的幸福小区3栋旁工地夜间施工噪音还是没人管"),
            ("停水", "和平路8号从昨晚开始停水 ABC 123"), ("", "")]
    matrix = similarity_matrix(docs, docs)
    for i, a in enumerate(docs):
        for j, b in enumerate(docs):
            pair = similarity(Counter(terms(f"{a[0]} {a[1]}")), Counter(terms(f"{b[0]} {b[1]}")))
            assert abs(matrix[i, j] - pair) < 1e-9, (i, j)
