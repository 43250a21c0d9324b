"""The knowledge-base API's idea of today: the Beijing date, since articles are valid from
and to Beijing dates."""

from __future__ import annotations

from datetime import UTC, date, datetime

from hotline.kb_api import KbApiDeps, beijing_today


def test_today_is_the_beijing_date_not_the_utc_date() -> None:
    # 00:30 on New Year's Day in Beijing; the UTC date is still December 31.
    assert beijing_today(lambda: datetime(2026, 12, 31, 16, 30, tzinfo=UTC)) == date(2027, 1, 1)
    # 23:59:30 on December 31 in Beijing.
    assert beijing_today(lambda: datetime(2026, 12, 31, 15, 59, 30, tzinfo=UTC)) == \
        date(2026, 12, 31)
    assert KbApiDeps.__dataclass_fields__["today"].default is beijing_today
