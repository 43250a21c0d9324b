"""Knowledge base: Chinese search without a segmenter, validity windows, imports with errors
naming the row."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from router.kb import KbError, KnowledgeBase, load_articles, terms

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "kb_sample.yaml"
TODAY = date(2026, 11, 23)


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return KnowledgeBase(load_articles(SAMPLE))


def test_terms_are_bigrams_words_and_full_width_folded() -> None:
    assert terms("公积金ＡＰＰ 2026年") == ["公积", "积金", "年", "app", "2026"]


@pytest.mark.parametrize(("question", "expected"), [
    ("我想问一下租房子能不能取公积金，要带什么", "hf-rent"),
    ("请问公积金贷款最多能贷多少", "hf-loan"),
    ("我们小区明天停水吗？哪里能查", "water-outage"),
    ("在外地看病医保怎么报销", "medical-claim"),
])
def test_consultations_find_the_answer(kb: KnowledgeBase, question: str,
                                       expected: str) -> None:
    hits = kb.search(question, on=TODAY)
    assert hits and hits[0].article.id == expected
    assert hits[0].matched                      # the agent sees why it matched


def test_expired_articles_are_never_offered(kb: KnowledgeBase) -> None:
    question = "小学一年级招生报名什么时候开始"
    assert kb.search(question, on=date(2026, 5, 1))[0].article.id == "school-2026"
    assert all(h.article.id != "school-2026" for h in kb.search(question, on=TODAY))


def test_unit_filter_and_nothing_for_unrelated_or_empty(kb: KnowledgeBase) -> None:
    assert {h.article.unit for h in kb.search("公积金", on=TODAY, unit="city.water")} <= {
        "city.water"}
    assert kb.search("", on=TODAY) == []
    assert kb.search("😀😀 hello", on=TODAY) == []


def test_csv_import_and_bad_rows_named(tmp_path: Path) -> None:
    good = tmp_path / "kb.csv"
    good.write_text("id,title,body,unit,keywords,valid_from,valid_to\n"
                    "a1,燃气费缴纳,可通过燃气集团 App 缴费,city.gas,燃气费；缴费,,\n",
                    encoding="utf-8")
    [article] = load_articles(good)
    assert article.keywords == ("燃气费", "缴费") and article.valid_to is None
    bad = tmp_path / "bad.csv"
    bad.write_text("id,title,body,unit,keywords,valid_from,valid_to\n"
                   "a1,标题,正文,city.gas,,,\n"
                   "a2,,正文,city.gas,,,\n"
                   "a3,标题,正文,city.gas,,2026-05-01,2026-01-01\n", encoding="utf-8")
    with pytest.raises(KbError) as caught:
        load_articles(bad)
    message = str(caught.value)
    assert "bad.csv row 3: title" in message and "bad.csv row 4" in message
    assert "row 2" not in message


def test_duplicate_ids_are_refused(tmp_path: Path) -> None:
    articles = load_articles(SAMPLE)
    with pytest.raises(KbError, match="duplicate article id"):
        KnowledgeBase([*articles, articles[0]])
