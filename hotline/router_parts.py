"""Assembles the router for the composition root: classifier (rules + the trained model if
there is one), units and gazetteer, working-day calendar, knowledge base, ticket store, and
the intake-stream consumer that feeds it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from pathlib import Path

import aiohttp
import redis.asyncio as aioredis
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from channels.citizen_status import CitizenStatus, OrderStatusLookup, OrderStatusUnavailable
from channels.consumer import IntakeConsumer
from channels.durable import redis_client
from channels.keys import StreamKeys
from config.schema import HotlineConfig
from router.calendar import CalendarWarning, WorkCalendar, calendar_warning
from router.classify import Classifier, TextModel
from router.gazetteer import Gazetteer
from router.kb import Article, KbError, KnowledgeBase, load_articles
from router.kb_store import KbStore, KbSync
from router.outbound import RedisDeadLetter, TicketSender
from router.outbox import OutboxRelay
from router.provisional import RecountReport, recount_provisional
from router.service import IntakeRouter
from router.ticket_store import TicketStore
from router.train import ModelError, load_model

log = logging.getLogger(__name__)

# Entries read (and tickets committed in one transaction) at a time. bench/router.py: 767/s
# at 100, 880/s at 500 before the insert was made an executemany, 1,693/s after.
ROUTER_BATCH = 500


def _load_model(path: Path) -> TextModel | None:
    if not path.exists():
        log.warning("派单模型 %s 不存在，仅按规则分类 / no routing model at %s: rules only "
                    "(train one with `hotline router train history.csv`)", path, path)
        return None
    try:
        return load_model(path)
    except ModelError as exc:
        log.error("派单模型不可用，仅按规则分类 / routing model refused, rules only: %s", exc)
        return None


def _seed_articles(path: str | None) -> list[Article]:
    if path is None:
        return []
    try:
        return load_articles(Path(path))
    except (OSError, KbError) as exc:
        log.error("知识库种子文件未导入 / knowledge-base seed not imported (%s): %s", path, exc)
        return []


@dataclass
class RouterParts:
    """What :func:`build_router` assembles for the composition root."""

    router: IntakeRouter
    tickets: TicketStore
    kb: KbSync
    timezone: tzinfo
    recounted: RecountReport = field(default_factory=RecountReport)  # totals since start

    async def apply_sla(self, cfg: HotlineConfig) -> RecountReport | None:
        """Take ``sla.yaml`` as (re)loaded: the router counts on its calendar from now on,
        and the open orders with provisional deadlines are counted again on it (those that
        move or become final get an audit event). ``None``: the ticket store did not answer
        (logged); the orders stay as they are until the next reload or start."""
        if cfg.sla != self.router.sla:
            self.router.calendar = WorkCalendar(cfg.sla.calendar, self.timezone)
            self.router.sla = cfg.sla
        try:
            report = await recount_provisional(self.tickets, self.router.calendar,
                                               self.router.sla)
        except (SQLAlchemyError, OSError) as exc:
            log.error("临时期限未能重算（工单库不可用），下次重新加载配置时重试 / provisional "
                      "deadlines not recounted, the ticket store did not answer: %s", exc)
            return None
        for name in ("examined", "changed", "confirmed", "failed"):
            setattr(self.recounted, name,
                    getattr(self.recounted, name) + getattr(report, name))
        return report

    def calendar_warning(self, now: datetime) -> CalendarWarning | None:
        """What the admin is told at ``now`` about years without their arrangement."""
        router = self.router
        return calendar_warning(router.calendar, router.sla.calendar.uncovered_years, now)


async def build_router(cfg: HotlineConfig, engine: AsyncEngine, timezone: tzinfo, *,
                       on_outbox: Callable[[], None] | None = None) -> RouterParts:
    """The router, its ticket store and knowledge base (model and articles read off the
    loop; ``routing.kb_path`` seeds the knowledge-base table, units edit it later). With
    ``routing.outbound.enabled`` every new ticket also gets an outbox row (``on_outbox``: the
    relay's ``wake``)."""
    routing = cfg.routing
    model = await asyncio.to_thread(_load_model, Path(routing.model_path))
    if model is not None and "unit" in model.heads:
        known = {u.id for u in cfg.units.units} | {cfg.units.territorial_label}
        unknown = sorted(set(model.heads["unit"].classes) - known)
        if unknown:
            # route() ignores such a guess (with the reason on the ticket); say it once here.
            log.error("派单模型含有 units.yaml 中没有的单位 %s：这些预测将不被采用，请用当前单位"
                      "重新训练 / routing model predicts units not in units.yaml: %s",
                      "、".join(unknown), ", ".join(unknown))
    store = TicketStore(engine, routing.tickets, outbox=routing.outbound.enabled,
                        on_outbox=on_outbox)
    router = IntakeRouter(
        classifier=Classifier(routing.classify, model), units=cfg.units,
        gazetteer=Gazetteer(cfg.units), calendar=WorkCalendar(cfg.sla.calendar, timezone),
        sla=cfg.sla, create_ticket=store.create, create_tickets=store.create_many,
        earlier_orders=store.earlier_orders, repeats=routing.repeats)
    kb_store = KbStore(engine)
    added = await kb_store.seed(await asyncio.to_thread(_seed_articles, routing.kb_path))
    if added:
        log.info("知识库导入 %d 条 / %d knowledge-base articles seeded from %s", added, added,
                 routing.kb_path)

    def apply(kb: KnowledgeBase) -> None:
        router.kb = kb if kb.articles else None

    sync = KbSync(kb_store, apply, refresh_seconds=routing.kb_refresh_seconds)
    await sync.refresh()
    parts = RouterParts(router, store, sync, timezone)
    # The config just loaded may hold a year that orders were provisionally counted on.
    await parts.apply_sla(cfg)
    return parts


def order_status_lookup(store: TicketStore) -> OrderStatusLookup:
    """The citizen status queries' view of ``store`` (:mod:`channels.citizen_status`): a
    database that does not answer is :class:`OrderStatusUnavailable` (the queries answer 503,
    never a status that may be stale)."""

    async def lookup(acceptance_no: str) -> CitizenStatus | None:
        try:
            return await store.citizen_status(acceptance_no)
        except (SQLAlchemyError, OSError) as exc:
            raise OrderStatusUnavailable(f"{type(exc).__name__}: {exc}") from exc

    return lookup


@asynccontextmanager
async def open_router_consumer(cfg: HotlineConfig,
                               router: IntakeRouter) -> AsyncIterator[IntakeConsumer]:
    """The intake consumer handing each intake to ``router`` (its own Redis connection: it
    blocks in ``XREADGROUP``). Run :meth:`IntakeConsumer.run` as a task."""
    ch = cfg.channels
    redis = redis_client(ch, block_seconds=1.0)
    try:
        yield IntakeConsumer(redis, StreamKeys.from_config(ch), f"router-{ch.node_id:02d}",
                             router.handle, max_deliveries=ch.stream.max_deliveries,
                             claim_idle_seconds=ch.stream.claim_idle_seconds,
                             retry_seconds=ch.redis.retry_seconds,
                             batch_handler=router.handle_many, batch=ROUTER_BATCH)
    finally:
        await redis.aclose()


@asynccontextmanager
async def open_outbox(cfg: HotlineConfig, engine: AsyncEngine,
                      redis: aioredis.Redis) -> AsyncIterator[OutboxRelay | None]:
    """The outbox relay handing tickets to the city's own system (``routing.outbound``), with
    its HTTP session; ``None`` when outbound delivery is off. Run :meth:`OutboxRelay.run` as a
    task. Dead letters go to the ``<prefix>:tickets-outbound-dead`` stream."""
    out = cfg.routing.outbound
    if not out.enabled:
        yield None
        return
    dead = RedisDeadLetter(redis, f"{StreamKeys.from_config(cfg.channels).prefix}"
                                  ":tickets-outbound-dead")
    async with aiohttp.ClientSession() as session:
        yield OutboxRelay(engine, TicketSender(session, out, dead), out, dead)
