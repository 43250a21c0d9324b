"""The knowledge base over HTTP: units keep their own articles current, agents search.

    GET    /api/kb/search?q=&unit=&limit=   agents, units, office: answers valid today
    GET    /api/kb/articles?unit=           office: all (or one unit's); a unit: its own
    PUT    /api/kb/articles/{id}            create or replace (a unit: only its own articles)
    DELETE /api/kb/articles/{id}            remove (a unit: only its own articles)

A unit never learns of another unit's article (404, as for tickets). Every change rebuilds the
router's index at once on this instance (:class:`router.kb_store.KbSync`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from channels.intake import utc_now
from config.textcheck import has_control
from httpkit.auth import Staff, identify
from httpkit.bodies import parse_json_object, read_body
from httpkit.errors import ApiError
from httpkit.responses import NO_STORE, json_response
from router.kb import Article
from router.kb_store import KbSync
from router.tickets import BEIJING

MAX_BODY = 64 * 1024
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def beijing_today(clock: Callable[[], datetime] = utc_now) -> date:
    """Today's date in Beijing: articles are valid from and to Beijing dates (at 00:30 on
    January 1 it is January 1, while the UTC date is still December 31)."""
    return clock().astimezone(BEIJING).date()


@dataclass(frozen=True)
class KbApiDeps:
    """Handed in by the composition root (getters: a config reload changes tokens)."""

    sync: Callable[[], KbSync | None]
    admin_token: Callable[[], str | None]
    unit_tokens: Callable[[], dict[str, str]]
    agent_tokens: Callable[[], dict[str, str]]
    known_units: Callable[[], set[str]]
    today: Callable[[], date] = beijing_today


KB_API = web.AppKey("kb_api", KbApiDeps)


def _who(request: web.Request, *, agents: bool = False) -> Staff:
    deps = request.app[KB_API]
    return identify(request, deps.admin_token(), deps.unit_tokens(),
                    deps.agent_tokens() if agents else None)


def _sync(request: web.Request) -> KbSync:
    sync = request.app[KB_API].sync()
    if sync is None:
        raise ApiError(503, "kb_unavailable", "知识库未启用")
    return sync


def _article_id(request: web.Request) -> str:
    article_id = request.match_info["article_id"]
    if not _ID.fullmatch(article_id):
        raise ApiError(404, "article_not_found", "知识条目不存在")
    return article_id


def _unit_query(request: web.Request) -> str | None:
    """``?unit=``: a unit id (at most 64 characters, no unsafe characters) or ``None``."""
    unit = request.query.get("unit") or None
    if unit is not None and (len(unit) > 64 or has_control(unit)):
        raise ApiError(422, "invalid_field", "unit 须为单位编号", {"fields": ["unit"]})
    return unit


def _unsafe_fields(body: dict[str, Any]) -> list[str]:
    """Fields holding unsafe text, in a string or in a list of strings (``keywords``): NUL
    and lone surrogates would reach PostgreSQL, which refuses them (a 500 before)."""
    def unsafe(value: Any) -> bool:
        if isinstance(value, str):
            return has_control(value)
        return isinstance(value, list) and any(unsafe(item) for item in value)
    return sorted(k for k, v in body.items() if unsafe(v))


def article_json(article: Article) -> dict[str, Any]:
    """An article as the API shows it."""
    return article.model_dump(mode="json")


async def search(request: web.Request) -> web.Response:
    _who(request, agents=True)
    sync = _sync(request)
    question = request.query.get("q", "")
    if not question.strip() or len(question) > 2000 or has_control(question):
        raise ApiError(422, "invalid_field", "q 须为 1–2000 字的问题", {"fields": ["q"]})
    try:
        limit = int(request.query.get("limit", "5"))
    except ValueError:
        limit = 0
    if not 1 <= limit <= 20:
        raise ApiError(422, "invalid_field", "limit 须在 1 到 20 之间", {"fields": ["limit"]})
    kb = sync.kb or await sync.refresh()
    hits = kb.search(question, on=request.app[KB_API].today(), unit=_unit_query(request),
                     limit=limit)
    return json_response({"hits": [{"article": article_json(h.article), "score": h.score,
                                    "matched": list(h.matched)} for h in hits]},
                         headers=NO_STORE)


async def list_articles(request: web.Request) -> web.Response:
    who = _who(request)
    unit = who.name if who.role == "unit" else _unit_query(request)
    articles = await _sync(request).store.all(unit)
    return json_response({"articles": [article_json(a) for a in articles]}, headers=NO_STORE)


async def put_article(request: web.Request) -> web.Response:
    who = _who(request)
    sync = _sync(request)
    article_id = _article_id(request)
    body = parse_json_object(await read_body(request, MAX_BODY))
    existing = await sync.store.get(article_id)
    if who.role == "unit":
        if existing is not None and existing.unit != who.name:
            raise ApiError(404, "article_not_found", "知识条目不存在")
        if body.get("unit", who.name) != who.name:
            raise ApiError(403, "forbidden", "只能维护本单位的知识条目")
        body["unit"] = who.name
    elif not isinstance(unit := body.get("unit"), str) \
            or unit not in request.app[KB_API].known_units():
        # isinstance first: a list or an object is not hashable (a TypeError, a 500 before).
        raise ApiError(422, "invalid_field", "unit 须为 units.yaml 中的单位", {"fields": ["unit"]})
    bad = _unsafe_fields(body)
    if bad:
        raise ApiError(422, "invalid_field", "字段含有控制字符", {"fields": bad})
    try:
        article = Article.model_validate(body | {"id": article_id})
    except ValidationError as exc:
        fields = sorted({".".join(str(p) for p in e["loc"]) or "body" for e in exc.errors()})
        raise ApiError(422, "invalid_field", "知识条目字段无效：" + "、".join(fields),
                       {"fields": fields}) from None
    created = await sync.store.put(article, str(who))
    await sync.refresh()
    return json_response({"article": article_json(article)}, 201 if created else 200, NO_STORE)


async def delete_article(request: web.Request) -> web.Response:
    who = _who(request)
    sync = _sync(request)
    article_id = _article_id(request)
    existing = await sync.store.get(article_id)
    if existing is None or (who.role == "unit" and existing.unit != who.name):
        raise ApiError(404, "article_not_found", "知识条目不存在")
    await sync.store.delete(article_id)
    await sync.refresh()
    return json_response({"deleted": article_id}, headers=NO_STORE)


def add_kb_routes(app: web.Application, deps: KbApiDeps) -> None:
    """Register the knowledge-base endpoints on ``app``."""
    app[KB_API] = deps
    app.router.add_get("/api/kb/search", search)
    app.router.add_get("/api/kb/articles", list_articles)
    app.router.add_put("/api/kb/articles/{article_id}", put_article)
    app.router.add_delete("/api/kb/articles/{article_id}", delete_article)


__all__ = ["KbApiDeps", "add_kb_routes", "article_json"]
