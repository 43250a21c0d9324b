"""The knowledge base in the database: units keep their own articles current.

``routing.kb_path`` (YAML/CSV) seeds the table (articles not there yet); after that each unit
edits its own entries through the API (:mod:`router.kb_http`). The router searches an
in-memory :class:`router.kb.KnowledgeBase` that :class:`KbSync` rebuilds, off the event loop,
whenever the table changes (at once on this instance, within ``refresh_seconds`` on others).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from channels.intake import utc_now
from db.engine import dialect_insert
from db.tables.router import KbArticleRow
from router.kb import Article, KnowledgeBase

log = logging.getLogger(__name__)

_FIELDS = ("id", "title", "body", "unit", "keywords", "valid_from", "valid_to")


def _article(row: object) -> Article:
    values = {name: getattr(row, name) for name in _FIELDS}
    values["keywords"] = tuple(values["keywords"] or ())
    return Article.model_validate(values)


class KbStore:
    """Articles in ``kb_articles``."""

    def __init__(self, engine: AsyncEngine, *,
                 clock: Callable[[], datetime] = utc_now) -> None:
        self._engine = engine
        self._clock = clock

    async def all(self, unit: str | None = None) -> list[Article]:
        """Every article (of ``unit``), by id."""
        query = select(KbArticleRow).order_by(KbArticleRow.id)
        if unit is not None:
            query = query.where(KbArticleRow.unit == unit)
        async with self._engine.connect() as conn:
            return [_article(row) for row in (await conn.execute(query)).all()]

    async def get(self, article_id: str) -> Article | None:
        """One article, or ``None``."""
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(KbArticleRow)
                                      .where(KbArticleRow.id == article_id))).one_or_none()
        return None if row is None else _article(row)

    async def put(self, article: Article, by: str) -> bool:
        """Create or replace ``article``; ``True`` if it was new."""
        values = article.model_dump() | {"keywords": list(article.keywords),
                                         "updated_at": self._clock(), "updated_by": by}
        async with self._engine.begin() as conn:
            insert = dialect_insert(conn.dialect.name)(KbArticleRow)
            existed = (await conn.execute(select(KbArticleRow.id)
                                          .where(KbArticleRow.id == article.id))).scalar()
            await conn.execute(insert.values(**values).on_conflict_do_update(
                index_elements=["id"], set_={k: v for k, v in values.items() if k != "id"}))
        return existed is None

    async def delete(self, article_id: str) -> bool:
        """Remove one article; ``True`` if it existed."""
        async with self._engine.begin() as conn:
            done = await conn.execute(delete(KbArticleRow).where(KbArticleRow.id == article_id))
        return bool(done.rowcount)

    async def seed(self, articles: Iterable[Article]) -> int:
        """Insert the articles whose id is not in the table yet (a unit's later edits win over
        the seed file); how many were added."""
        now = self._clock()
        rows = [a.model_dump() | {"keywords": list(a.keywords), "updated_at": now,
                                  "updated_by": "seed"}
                for a in {a.id: a for a in articles}.values()]
        if not rows:
            return 0
        async with self._engine.begin() as conn:
            before = (await conn.execute(select(func.count()).select_from(KbArticleRow))
                      ).scalar_one()
            insert = dialect_insert(conn.dialect.name)(KbArticleRow)
            await conn.execute(insert.on_conflict_do_nothing(index_elements=["id"]), rows)
            after = (await conn.execute(select(func.count()).select_from(KbArticleRow))
                     ).scalar_one()
        return int(after - before)

    async def version(self) -> tuple[int, datetime | None]:
        """(count, last change): changes when any article is added, edited or removed."""
        async with self._engine.connect() as conn:
            count, last = (await conn.execute(
                select(func.count(), func.max(KbArticleRow.updated_at)))).one()
        return int(count), last


class KbSync:
    """Keeps ``apply(knowledge_base)`` fed with the table's current articles."""

    def __init__(self, store: KbStore, apply: Callable[[KnowledgeBase], None], *,
                 refresh_seconds: float = 30.0) -> None:
        self.store = store
        self._apply = apply
        self._refresh = refresh_seconds
        self._seen: tuple[int, datetime | None] | None = None
        self._lock = asyncio.Lock()
        self.kb: KnowledgeBase | None = None

    async def refresh(self) -> KnowledgeBase:
        """Rebuild the index from the table now (the index is built in a worker thread)."""
        async with self._lock:
            version = await self.store.version()
            articles = await self.store.all()
            kb = await asyncio.to_thread(KnowledgeBase, articles)
            self._seen = version
            self.kb = kb
            self._apply(kb)
            return kb

    async def run(self) -> None:
        """Poll for changes made by other instances; runs until cancelled."""
        while True:
            await asyncio.sleep(self._refresh)
            try:
                if await self.store.version() != self._seen:
                    await self.refresh()
            except Exception:
                log.exception("知识库刷新失败，沿用旧索引 / knowledge base refresh failed")
