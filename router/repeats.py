"""Repeats and duplicates (重复投诉): is a new intake the same matter as an earlier order?

* **Repeat**: the same citizen (phone, e-mail or app user, in any channel) with similar content
  within ``window_days`` while the earlier order is still open → linked to it and flagged as a
  repeat (it counts against the unit: 001 annex, "no repeated complaints").
* **Related**: different citizens about the same place and problem → linked as related, the
  raw material of hot-spot detection (热点).

Similarity is the cosine of character-bigram counts (:func:`router.kb.terms`), which works for
Chinese without a segmenter and is robust to re-phrasing ("还是没人管" vs "至今无人处理").
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt
from sklearn.feature_extraction.text import HashingVectorizer  # type: ignore[import-untyped]

from channels.intake import Contact, Intake, Location
from config.routing import RepeatConfig
from router.kb import terms

_DIGITS = re.compile(r"\D")


@dataclass(frozen=True, slots=True)
class Earlier:
    """An earlier order as the repeat check needs it."""

    number: str
    contact: Contact
    title: str
    text: str
    location: Location
    created_at: datetime
    open: bool


@dataclass(frozen=True, slots=True)
class RepeatFinding:
    """What the check found; ``explain`` is for the dispatcher (Chinese)."""

    repeat_of: str | None = None
    related: tuple[str, ...] = ()
    explain: tuple[str, ...] = field(default=())


def citizen_keys(contact: Contact) -> set[str]:
    """Ways to recognise a citizen across channels: the last 11 digits of a phone (so +86 and
    a leading 0 do not matter), an e-mail in lower case, an app user id."""
    keys = set()
    if contact.phone:
        digits = _DIGITS.sub("", contact.phone)
        if len(digits) >= 7:
            keys.add("tel:" + digits[-11:])
    if contact.email:
        keys.add("mail:" + contact.email.strip().lower())
    if contact.app_user_id:
        keys.add("app:" + contact.app_user_id)
    return keys


def _vector(title: str, text: str) -> Counter[str]:
    return Counter(terms(f"{title} {text}"))


def similarity(a: Counter[str], b: Counter[str]) -> float:
    """Cosine similarity of two bigram count vectors (0 when either is empty)."""
    if not a or not b:
        return 0.0
    dot = sum(v * b.get(k, 0) for k, v in a.items())
    return dot / (math.sqrt(sum(v * v for v in a.values()))
                  * math.sqrt(sum(v * v for v in b.values())))


def _same_place(a: Location, b: Location) -> str | None:
    if a.address and b.address and a.address.strip() == b.address.strip():
        return a.address.strip()
    if a.street and b.street and a.street == b.street:
        return a.street
    return None


def similarity_matrix(a: Sequence[tuple[str, str]],
                      b: Sequence[tuple[str, str]]) -> npt.NDArray[np.float64]:
    """Cosine similarities of every (title, text) in ``a`` with every one in ``b``, as
    :func:`similarity` computes them one pair at a time, for a whole batch in one sparse
    product (hashed bigram counts; 2**20 buckets make collisions negligible). CPU work: call
    it in a worker thread."""
    vectorizer = HashingVectorizer(analyzer=_joined_terms, n_features=2**20,
                                   alternate_sign=False, norm="l2")
    left = vectorizer.transform([f"{title} {text}" for title, text in a])
    right = vectorizer.transform([f"{title} {text}" for title, text in b])
    return np.asarray((left @ right.T).toarray(), dtype=np.float64)


def _joined_terms(doc: str) -> list[str]:
    return terms(doc)


class EarlierIndex:
    """Earlier orders by citizen key, street and address: the candidates of one intake
    without comparing it with every order the batch look-up returned."""

    def __init__(self, earlier: Sequence[Earlier]) -> None:
        self.earlier = list(earlier)
        self._by: dict[str, list[int]] = {}
        for i, order in enumerate(self.earlier):
            for key in _place_keys(order.location) | citizen_keys(order.contact):
                self._by.setdefault(key, []).append(i)

    def candidates(self, intake: Intake) -> list[int]:
        """Indexes of the orders sharing a citizen key or a place with ``intake``."""
        found: set[int] = set()
        for key in _place_keys(intake.location) | citizen_keys(intake.contact):
            found.update(self._by.get(key, ()))
        return sorted(found)


def _place_keys(location: Location) -> set[str]:
    keys = set()
    if location.street and location.street.strip():
        keys.add("street:" + location.street.strip())
    if location.address and location.address.strip():
        keys.add("address:" + location.address.strip())
    return keys


def check(intake: Intake, earlier: Iterable[Earlier], now: datetime,
          cfg: RepeatConfig, scores: Sequence[float] | None = None) -> RepeatFinding:
    """Compare ``intake`` with ``earlier`` orders (the store hands in recent ones);
    ``scores``, when given, are the precomputed similarities (aligned with ``earlier``)."""
    since = now - timedelta(days=cfg.window_days)
    mine = citizen_keys(intake.contact)
    vector = _vector(intake.title, intake.text) if scores is None else Counter[str]()
    best: tuple[float, Earlier] | None = None
    related: list[tuple[float, Earlier, str]] = []
    for i, order in enumerate(earlier):
        if order.created_at < since:
            continue
        score = (similarity(vector, _vector(order.title, order.text)) if scores is None
                 else float(scores[i]))
        same_citizen = bool(mine & citizen_keys(order.contact))
        if same_citizen:
            if order.open and score >= cfg.same_citizen_similarity and (
                    best is None or score > best[0]):
                best = (score, order)
            continue
        place = _same_place(intake.location, order.location)
        if place is not None and score >= cfg.related_similarity:
            related.append((score, order, place))
    explain: list[str] = []
    repeat_of = None
    if best is not None:
        repeat_of = best[1].number
        explain.append(f"重复诉求：同一来电人/用户 {cfg.window_days} 天内就相似问题再次反映，"
                       f"关联未办结工单 {repeat_of}（相似度 {best[0]:.2f}）")
    related.sort(key=lambda r: -r[0])
    chosen = related[:cfg.max_related]
    for score, order, place in chosen:
        explain.append(f"相关诉求：不同市民反映同一地点“{place}”的相似问题，关联 {order.number}"
                       f"（相似度 {score:.2f}）")
    return RepeatFinding(repeat_of, tuple(o.number for _, o, _ in chosen), tuple(explain))
