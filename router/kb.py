"""Knowledge base (知识库): answers an agent can give on the spot.

Each unit keeps its own articles current (title, body, unit, keywords, valid from/to),
imported from YAML or CSV. Search works for Chinese without a word segmenter: text is cut into
character bigrams (and whole ASCII words / numbers), ranked with BM25, plus a boost for an
article's own keywords found in the question. Articles outside their validity window are never
returned: a policy that has expired must not be read to a citizen.
"""

from __future__ import annotations

import csv
import io
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_WORD = re.compile(r"[a-z0-9]+")
K1, B = 1.5, 0.75
KEYWORD_BOOST = 3.0


class KbError(ValueError):
    """A knowledge-base file that cannot be used; the message names the file and row."""


class Article(BaseModel):
    """One knowledge-base entry."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[str, Field(min_length=1, max_length=64)]
    title: Annotated[str, Field(min_length=1, max_length=200)]
    body: Annotated[str, Field(min_length=1, max_length=20_000)]
    unit: Annotated[str, Field(min_length=1, max_length=64)]
    keywords: tuple[str, ...] = ()
    valid_from: date | None = None
    valid_to: date | None = None

    @model_validator(mode="after")
    def _window(self) -> Article:
        if self.valid_from and self.valid_to and self.valid_to < self.valid_from:
            raise ValueError("valid_to is before valid_from")
        return self

    def valid_on(self, day: date) -> bool:
        return ((self.valid_from is None or self.valid_from <= day)
                and (self.valid_to is None or day <= self.valid_to))


@dataclass(frozen=True, slots=True)
class Hit:
    """A search result: the article, its score and the words that matched (for the agent)."""

    article: Article
    score: float
    matched: tuple[str, ...]


def terms(text: str) -> list[str]:
    """Character bigrams of Chinese runs (a single character when the run is one long) and
    whole ASCII words / numbers, after NFKC (full-width → half-width) and lower-casing."""
    text = unicodedata.normalize("NFKC", text).lower()
    out: list[str] = []
    for run in _CJK.findall(text):
        if len(run) == 1:
            out.append(run)
        else:
            out.extend(run[i:i + 2] for i in range(len(run) - 1))
    out.extend(_WORD.findall(text))
    return out


class KnowledgeBase:
    """An in-memory BM25 index over the articles (rebuilt on import; a few thousand articles
    index in milliseconds)."""

    def __init__(self, articles: Iterable[Article]) -> None:
        self.articles = list(articles)
        ids = [a.id for a in self.articles]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise KbError(f"duplicate article id(s): {', '.join(duplicates)}")
        self._docs = [Counter(terms(f"{a.title} {a.title} {a.body}")) for a in self.articles]
        self._lengths = [sum(d.values()) for d in self._docs]
        self._avg = (sum(self._lengths) / len(self._lengths)) if self._lengths else 1.0
        df: Counter[str] = Counter()
        for doc in self._docs:
            df.update(doc.keys())
        n = len(self._docs)
        self._idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}
        self._keywords = [tuple(unicodedata.normalize("NFKC", k).lower() for k in a.keywords)
                          for a in self.articles]

    def search(self, question: str, *, on: date, unit: str | None = None,
               limit: int = 3) -> list[Hit]:
        """The best ``limit`` articles valid on ``on`` (of ``unit`` if given)."""
        query = set(terms(question))
        folded = unicodedata.normalize("NFKC", question).lower()
        hits: list[Hit] = []
        for i, article in enumerate(self.articles):
            if not article.valid_on(on) or (unit is not None and article.unit != unit):
                continue
            doc, length = self._docs[i], self._lengths[i]
            score = 0.0
            matched: list[str] = []
            for term in query:
                tf = doc.get(term, 0)
                if tf:
                    norm = tf * (K1 + 1) / (tf + K1 * (1 - B + B * length / self._avg))
                    score += self._idf.get(term, 0.0) * norm
                    matched.append(term)
            for keyword in self._keywords[i]:
                if keyword and keyword in folded:
                    score += KEYWORD_BOOST
                    matched.append(keyword)
            if score > 0:
                hits.append(Hit(article, round(score, 3), tuple(sorted(set(matched)))))
        hits.sort(key=lambda h: (-h.score, h.article.id))
        return hits[:limit]


def load_articles(path: Path) -> list[Article]:
    """Read ``.yaml``/``.yml`` (a list of mappings) or ``.csv`` (columns id, title, body,
    unit, keywords separated by ``;`` or ``；``, valid_from, valid_to). Blocking.
    Raises :class:`KbError` naming the file and the row of every bad entry."""
    text = path.read_text(encoding="utf-8-sig")
    rows: Sequence[Any]
    if path.suffix.lower() in (".yaml", ".yml"):
        loaded = yaml.safe_load(text) or []
        if not isinstance(loaded, list):
            raise KbError(f"{path.name}: must be a list of articles")
        rows = loaded
        first = 1
    elif path.suffix.lower() == ".csv":
        rows = [dict(r) for r in csv.DictReader(io.StringIO(text))]
        for row in rows:
            raw = row.get("keywords") or ""
            row["keywords"] = tuple(k.strip() for k in re.split(r"[;；]", raw) if k.strip())
            for key in ("valid_from", "valid_to"):
                if not row.get(key):
                    row[key] = None
        first = 2                               # row 1 is the header
    else:
        raise KbError(f"{path.name}: use .yaml or .csv")
    articles: list[Article] = []
    problems: list[str] = []
    for number, row in enumerate(rows, start=first):
        try:
            articles.append(Article.model_validate(row))
        except ValidationError as exc:
            where = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'row'}: {e['msg']}"
                              for e in exc.errors())
            problems.append(f"{path.name} row {number}: {where}")
    if problems:
        raise KbError("\n".join(problems))
    return articles
