"""The composition root: builds every resource once, in order, and tears it down in stages.

    database engine (+ migrations) → call store → seat board, stats, tracker → AMI link
    → intake gateway (Redis client, spool, forwarder) → HTTP server (desk API, citizen
    channels, OpenAPI) → background tasks (call writer, 1 s ticker, mailbox and voicemail
    pollers)

Shutdown (SIGTERM/SIGINT, or ``stop`` set): stop the HTTP server (no new agent actions, no new
citizen submissions), stop the pollers, log off the AMI link (no new events), stop the
background tasks, write the last call records (shielded, within ``shutdown_grace_seconds``),
close the intake gateway (spooled intakes stay on disk), dispose the engine.

:func:`serve` enters each part (an ``open_*()`` context manager, or a task started by
:func:`open_task`) on one ``AsyncExitStack``, in the order that makes its unwinding this
shutdown order. The config in force lives in one :class:`~hotline.live_config.LiveConfig`;
:class:`Hotline` is built once, when everything is up, and not changed afterwards.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from prometheus_client import CollectorRegistry
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from channels.consumer import IntakeConsumer

from channels.durable import DurableGateway, open_gateway
from channels.http_state import IntakeHttpDeps
from channels.keys import StreamKeys
from channels.mailbox import MailboxPoller
from channels.nonces import RedisNonceStore
from channels.phone import PhoneIntake, TrackerCalls
from channels.tasks import cancel_and_wait
from channels.voicemail import VoicemailPoller
from channels.web import add_intake_routes
from config.schema import AmiConfig, HotlineConfig, ServiceConfig
from db.engine import migrate, open_engine
from hotline.http_api import ApiDeps, build_app
from hotline.intake_metrics import IntakeCollector
from hotline.metrics import MetricSources, build_registry
from hotline.openapi import add_openapi_route
from hotline.calendar_metrics import CalendarCollector
from hotline.router_parts import (
    RouterParts, build_router, open_outbox, open_router_consumer, order_status_lookup,
)
from hotline.asr_parts import AsrService, AsrStatus, AsrStatusCollector, open_asr
from hotline.live_config import LiveConfig
from router.kb_http import KbApiDeps, add_kb_routes
from router.ticket_http import TicketApiDeps, add_ticket_routes
from httpkit.server import HotlineRunner, ReadDeadlines
from asr.calls import AsrCallDirectory
from asr.voicemail import make_transcriber
from asr.metrics import TranscriptSinkCollector
from asr.sink import CallTranscripts
from router.kb_store import KbSync
from router.outbox import OutboxRelay
from router.ticket_store import TicketStore
from telephony import queue_admin
from telephony.calls import CallTracker
from telephony.dispatch import EventDispatcher, utc_now
from telephony.link import AmiLink, LinkState
from telephony.model import CallRecord
from telephony.pauses import PauseBook
from telephony.queue_admin import Membership
from telephony.queue_log import QueueLogReader, QueueLogReconciler
from telephony.resync import fetch_status, resync
from telephony.seat_actions import SeatActions
from telephony.seats import SeatBoard, SeatSpec
from telephony.stats import QueueStats
from telephony.store import CallStore
from telephony.writer import CallWriter

log = logging.getLogger(__name__)

RESTORED = timedelta(days=1)   # statistics intervals read back at start


def seat_specs(cfg: HotlineConfig) -> list[SeatSpec]:
    q = cfg.queues
    return [SeatSpec(s.extension, s.name, q.interface_for(s)) for s in q.all_seats()]


def desired_memberships(cfg: HotlineConfig,
                        pauses: PauseBook | None = None) -> list[Membership]:
    """Config's memberships, each with the pause its seat should have (``pauses``)."""
    q = cfg.queues
    out = []
    for queue in q.queues:
        for s in queue.seats:
            pause = pauses.get(s.extension) if pauses is not None else None
            paused = pause is not None and pause.paused
            out.append(Membership(queue.name, q.interface_for(s), q.member_name_for(s),
                                  q.state_interface_for(s), s.penalty, paused=paused,
                                  reason=pause.reason if pause is not None and paused else ""))
    return out


def seat_by_member_name(cfg: HotlineConfig) -> dict[str, str]:
    """Seat id of each ``MemberName`` (the queue_log names agents by it with
    ``log_membername_as_agent = yes``, by interface without)."""
    q = cfg.queues
    return ({q.interface_for(s): s.extension for s in q.all_seats()}
            | {q.member_name_for(s): s.extension for s in q.all_seats()})


@dataclass(frozen=True)
class Telephony:
    """The call-centre core, restored from the store: seats, statistics, calls, pauses, and
    the writer that records them. Nothing here talks to Asterisk yet."""

    store: CallStore
    board: SeatBoard
    stats: QueueStats
    tracker: CallTracker
    pauses: PauseBook
    writer: CallWriter
    dispatcher: EventDispatcher
    asr_calls: AsrCallDirectory
    reconciler: QueueLogReconciler | None


class ReadyHook:
    """The AMI link's ``on_ready``, bound once to :meth:`Control.on_ami_ready` before the link
    starts: the link is built before the control it serves (the control acts through it)."""

    def __init__(self) -> None:
        self._target: Callable[[], Awaitable[None]] | None = None

    def bind(self, target: Callable[[], Awaitable[None]]) -> None:
        self._target = target

    async def __call__(self) -> None:
        if self._target is None:
            raise RuntimeError("AMI link started before its on_ready was bound")
        await self._target()


@dataclass(frozen=True)
class Control:
    """What an agent, the admin and the AMI link act through: seat actions, the resync after
    every login, and the config reload."""

    live: LiveConfig
    telephony: Telephony
    link: AmiLink
    routing: RouterParts
    clock: Callable[[], datetime]

    def seat_actions(self) -> SeatActions:
        q = self.live.current.queues
        t = self.telephony
        return SeatActions(self.link, t.tracker, t.board, t.dispatcher,
                           pause_reasons=frozenset(q.pause_reasons),
                           departments={d.number: d.name for d in q.departments},
                           transfer_timeout=q.attended_transfer_timeout_seconds)

    async def on_ami_ready(self) -> None:
        """After every login: resync board and calls, settle from the queue_log the calls we
        could not see, then apply queue membership (with each seat's pause)."""
        t = self.telephony
        report = await resync(self.link, t.tracker, self.clock)
        t.pauses.adopt(report.members)
        if t.reconciler is not None:
            try:
                await t.reconciler.reconcile()
            except (OSError, SQLAlchemyError) as exc:
                # Not fatal for the link: the unread rows stay for the next reconnect.
                log.error("queue_log reconcile failed (%s: %s); retried after the next "
                          "reconnect", type(exc).__name__, exc)
        await self._apply_memberships(list(report.members))

    async def _apply_memberships(self, actual: list[Any]) -> queue_admin.ApplyReport:
        cfg = self.live.current
        plan = queue_admin.plan(desired_memberships(cfg, self.telephony.pauses),
                                actual, [q.name for q in cfg.queues.queues])
        result = await queue_admin.apply(self.link, plan)
        if plan:
            log.info("queue membership applied: +%d -%d penalty %d, %d error(s)",
                     result.added, result.removed, result.penalised, len(result.errors))
        return result

    async def reload_config(self) -> dict[str, Any]:
        """Re-read the config files; on success apply the membership diff (SIGHUP, admin)."""
        # A ConfigError propagates and the old config stays in force.
        new = await self.live.load()
        self.live.replace(new)
        self.telephony.board.add_specs(seat_specs(new), self.clock())
        # A year entered in sla.yaml: the provisional deadlines are counted again.
        done = await self.routing.apply_sla(new)
        recount: dict[str, Any] = {"deadlines_recounted": None if done is None
                                   else done.changed + done.confirmed}
        if self.link.state is not LinkState.READY:
            return {"reloaded": True, "applied": False, "reason": "ami_not_ready", **recount}
        members, _ = await fetch_status(self.link)
        result = await self._apply_memberships(members)
        return {**recount, "reloaded": True, "applied": True, "added": result.added,
                "removed": result.removed, "penalised": result.penalised,
                "errors": result.errors}


@dataclass(frozen=True)
class Hotline:
    """The running service's parts, built once when everything is up (tests and the demo
    look at them)."""

    live: LiveConfig
    telephony: Telephony
    link: AmiLink
    gateway: DurableGateway
    routing: RouterParts
    asr: AsrService | None
    transcripts: CallTranscripts
    control: Control
    http_port: int
    clock: Callable[[], datetime] = utc_now

    @property
    def config(self) -> HotlineConfig:
        return self.live.current

    @property
    def board(self) -> SeatBoard:
        return self.telephony.board

    @property
    def stats(self) -> QueueStats:
        return self.telephony.stats

    @property
    def tracker(self) -> CallTracker:
        return self.telephony.tracker

    @property
    def dispatcher(self) -> EventDispatcher:
        return self.telephony.dispatcher

    @property
    def store(self) -> CallStore:
        return self.telephony.store

    @property
    def writer(self) -> CallWriter:
        return self.telephony.writer

    @property
    def pauses(self) -> PauseBook:
        return self.telephony.pauses

    @property
    def tickets(self) -> TicketStore:
        return self.routing.tickets

    @property
    def kb(self) -> KbSync:
        return self.routing.kb

    def seat_actions(self) -> SeatActions:
        return self.control.seat_actions()

    async def reload_config(self) -> dict[str, Any]:
        """See :meth:`Control.reload_config`."""
        return await self.control.reload_config()


async def _restore(store: CallStore, stats: QueueStats, tracker: CallTracker,
                   cfg: HotlineConfig, now: datetime, pauses: PauseBook) -> None:
    since = now - RESTORED
    for queue in cfg.queues.queues:
        stats.restore(await store.intervals(queue.name, since))
    pauses.load(await store.pauses())
    open_calls = await store.open_calls()
    tracker.adopt(open_calls)
    if open_calls:
        log.info("adopted %d call(s) left open by the previous run", len(open_calls))


@asynccontextmanager
async def open_database(cfg: HotlineConfig) -> AsyncIterator[AsyncEngine]:
    """The engine, migrated to the latest schema; disposed on exit."""
    async with open_engine(cfg.service.database_url.get_secret_value()) as engine:
        await migrate(engine)
        yield engine


async def build_telephony(cfg: HotlineConfig, engine: AsyncEngine, timezone: tzinfo,
                          now: datetime) -> Telephony:
    """Seat board, statistics, call tracker and pauses restored from the store, the writer
    subscribed to them, and the dispatcher the AMI link will feed."""
    store = CallStore(engine)
    board = SeatBoard(seat_specs(cfg), wrapup_seconds=cfg.queues.wrapup_seconds, now=now)
    stats = QueueStats(service_level_seconds=cfg.stats.service_level_seconds,
                       interval_minutes=cfg.stats.interval_minutes, timezone=timezone)
    tracker = CallTracker(board, stats)
    pauses = PauseBook(board.seat_id_of, utc_now)
    await _restore(store, stats, tracker, cfg, now, pauses)
    writer = CallWriter(store, stats)
    tracker.subscribe(writer.submit)
    pauses.subscribe(writer.submit_pause)
    dispatcher = EventDispatcher(tracker)
    dispatcher.subscribe(pauses.on_event)
    # Stream UUIDs announced on AMI (VarSet ASR_UUID): subscribed before the link starts.
    asr_calls = AsrCallDirectory()
    dispatcher.subscribe(asr_calls.on_event)
    reconciler = None
    if cfg.ami.queue_log_path:
        members = seat_by_member_name(cfg)
        reconciler = QueueLogReconciler(
            QueueLogReader(Path(cfg.ami.queue_log_path)), tracker, store,
            seat_of=lambda name: members.get(name, name), clock=utc_now,
            # Intervals before this were not restored: the reconciler must not count there.
            counted_since=now - RESTORED + timedelta(hours=1))
    return Telephony(store, board, stats, tracker, pauses, writer, dispatcher, asr_calls,
                     reconciler)


def build_link(ami: AmiConfig, dispatcher: EventDispatcher, on_ready: ReadyHook) -> AmiLink:
    """The AMI link, not started (enter it to log in)."""
    secret = ami.secret.get_secret_value() if ami.secret else ""
    return AmiLink(host=ami.host, port=ami.port, username=ami.username, secret=secret,
                   on_event=dispatcher, on_ready=on_ready,
                   connect_timeout=ami.connect_timeout, action_timeout=ami.action_timeout,
                   ping_interval=ami.ping_interval, ping_timeout=ami.ping_timeout,
                   backoff_initial=ami.backoff_initial, backoff_max=ami.backoff_max,
                   backoff_jitter=ami.backoff_jitter,
                   max_message_bytes=ami.max_message_bytes)


@dataclass(frozen=True)
class Routing:
    """The router's parts with the outbox relay and the intake consumer that feed it."""

    parts: RouterParts
    relay: OutboxRelay | None
    consumer: IntakeConsumer


@asynccontextmanager
async def open_routing(cfg: HotlineConfig, engine: AsyncEngine, gateway: DurableGateway,
                       timezone: tzinfo) -> AsyncIterator[Routing]:
    """Outbox relay, router (ticket store, knowledge base) and intake consumer; the consumer
    and the relay are closed on exit, in that order."""
    async with AsyncExitStack() as stack:
        relay = await stack.enter_async_context(open_outbox(cfg, engine, gateway.stream.redis))
        parts = await build_router(cfg, engine, timezone,
                                   on_outbox=relay.wake if relay else None)
        consumer = await stack.enter_async_context(open_router_consumer(cfg, parts.router))
        yield Routing(parts, relay, consumer)


def build_phone_intake(telephony: Telephony, gateway: DurableGateway,
                       transcripts: CallTranscripts) -> PhoneIntake:
    """Agent-filed phone intakes, remembering every answered call (subscribed to the tracker
    before the AMI link starts)."""
    store, board = telephony.store, telephony.board

    async def stored_call(call_id: str) -> CallRecord | None:
        try:
            return await store.get(call_id)
        except (SQLAlchemyError, OSError):
            log.warning("call store unavailable looking up call %s", call_id)
            return None

    def interface_of(seat_id: str) -> str | None:
        seat = board.by_seat_id(seat_id)
        return seat.interface if seat is not None else None

    phone_intake = PhoneIntake(TrackerCalls(telephony.tracker, interface_of), gateway, utc_now,
                               stored_call=stored_call, transcript_of=transcripts.text_of)
    telephony.tracker.subscribe(phone_intake.remember)
    return phone_intake


@asynccontextmanager
async def open_http(app: web.Application, svc: ServiceConfig) -> AsyncIterator[int]:
    """Serve ``app``; yields the bound port. On exit the site stops taking connections, then
    the runner finishes the requests in flight."""
    runner = HotlineRunner(app, deadlines=ReadDeadlines(
        svc.http_header_timeout_seconds, svc.http_body_timeout_seconds))
    await runner.setup()
    try:
        site = web.TCPSite(runner, svc.http_host, svc.http_port)
        await site.start()
        port = _bound_port(runner, svc.http_port)
        log.info("HTTP on http://%s:%d (healthz, readyz, metrics, api/stats)",
                 svc.http_host, port)
        try:
            yield port
        finally:
            log.info("shutting down: HTTP, pollers, AMI link, then last call records")
            await site.stop()
    finally:
        await runner.cleanup()


@asynccontextmanager
async def open_task(tasks: asyncio.TaskGroup, coro: Coroutine[Any, Any, None], name: str, *,
                    wait: bool = False) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``coro`` in ``tasks`` until exit; then cancel it (``wait``: and wait until it is
    done, cancelling again: IMAP and Redis commands run under ``wait_for``, whose cancel can be
    swallowed on 3.11). Without ``wait`` the task group's exit waits for it."""
    task = tasks.create_task(coro, name=name)
    try:
        yield task
    finally:
        if wait:
            await cancel_and_wait(task, "shutdown")
        else:
            task.cancel("shutdown")


@asynccontextmanager
async def open_call_writer(tasks: asyncio.TaskGroup, writer: CallWriter,
                           grace_seconds: float) -> AsyncIterator[None]:
    """The call writer's task; on exit it is stopped and the last records are written
    (shielded, within ``grace_seconds``)."""
    async with open_task(tasks, writer.run(), "call-writer", wait=True):
        yield
    await writer.drain(grace_seconds)


async def serve(cfg: HotlineConfig, stop: asyncio.Event, *, config_dir: Path | None = None,
                env: Mapping[str, str] | None = None,
                started: Callable[[Hotline], None] | None = None) -> None:
    """Run the service until ``stop`` is set. ``config_dir`` and ``env`` are what ``cfg`` was
    loaded from; a reload reads them again. A reload applies queues, seats, pause reasons,
    departments and tokens; AMI, HTTP and database settings need a restart.

    Each part is entered on one stack, so the stack's unwinding is the shutdown order in the
    module docstring."""
    svc = cfg.service
    live = LiveConfig(cfg, config_dir, env)
    # ZoneInfo reads the tz database from disk: not on the loop.
    timezone = await asyncio.to_thread(ZoneInfo, svc.timezone)
    async with AsyncExitStack() as stack:
        engine = await stack.enter_async_context(open_database(cfg))
        telephony = await build_telephony(cfg, engine, timezone, utc_now())
        gateway = await stack.enter_async_context(open_gateway(cfg.channels, timezone=timezone))
        key_prefix = StreamKeys.from_config(cfg.channels).prefix
        transcripts = CallTranscripts(engine, gateway.stream.redis, key_prefix)
        # Before the AMI link starts, so every answered call is remembered.
        phone_intake = build_phone_intake(telephony, gateway, transcripts)
        ready = ReadyHook()
        link = build_link(cfg.ami, telephony.dispatcher, ready)
        routing = await stack.enter_async_context(open_routing(cfg, engine, gateway, timezone))
        parts = routing.parts
        control = Control(live, telephony, link, parts, utc_now)
        ready.bind(control.on_ami_ready)
        asr_status = AsrStatus()
        asr = await stack.enter_async_context(open_asr(
            cfg.asr, calls=telephony.asr_calls, transcripts=transcripts,
            tracker=telephony.tracker, link=link, status=asr_status))
        mailbox = MailboxPoller(live.mail, gateway, Path(cfg.channels.web.attachments_dir))
        voicemail = build_voicemail(cfg, live, gateway, asr)
        registry = build_metrics(cfg, telephony, link, gateway, parts, transcripts, mailbox,
                                 asr, asr_status)
        app = build_http_app(cfg, live, telephony, link, gateway, parts, control, phone_intake,
                             transcripts, registry)

        # From here on each part is stopped, in reverse, by the stack: the HTTP server, the
        # pollers, the AMI link, the ticker and the writer (its last records written), then
        # the task group (waits for the cancelled tasks), ASR, router, gateway and engine.
        tasks = await stack.enter_async_context(asyncio.TaskGroup())
        await stack.enter_async_context(
            open_call_writer(tasks, telephony.writer, svc.shutdown_grace_seconds))
        await stack.enter_async_context(open_task(tasks, _tick(telephony.board), "seat-ticker"))
        await stack.enter_async_context(link)
        await stack.enter_async_context(open_task(tasks, parts.kb.run(), "kb-refresh"))
        if routing.relay is not None:
            await stack.enter_async_context(
                open_task(tasks, routing.relay.run(), "ticket-outbox"))
        if cfg.routing.enabled:
            # Redis commands run under wait_for too; the last XACK is shielded.
            await stack.enter_async_context(
                open_task(tasks, routing.consumer.run(), "intake-router", wait=True))
        await stack.enter_async_context(
            open_task(tasks, voicemail.run(), "voicemail-poller", wait=True))
        # Always running: each round reads channels.mail and idles while it is disabled, so a
        # reload can switch the mailbox on.
        await stack.enter_async_context(
            open_task(tasks, mailbox.run(), "mailbox-poller", wait=True))
        http_port = await stack.enter_async_context(open_http(app, svc))

        hot = Hotline(live, telephony, link, gateway, parts, asr, transcripts, control,
                      http_port)
        if started is not None:
            started(hot)
        await stop.wait()


def build_voicemail(cfg: HotlineConfig, live: LiveConfig, gateway: DurableGateway,
                    asr: AsrService | None) -> VoicemailPoller:
    """The voicemail poller (reads ``channels.phone`` every round), transcribing with the
    ASR's recogniser when it runs."""
    phone_cfg = cfg.channels.phone
    return VoicemailPoller(live.phone, gateway, Path(cfg.channels.web.attachments_dir),
                           max_audio_bytes=phone_cfg.voicemail_max_audio_bytes,
                           settle_seconds=phone_cfg.voicemail_settle_seconds,
                           orphan_seconds=phone_cfg.voicemail_orphan_seconds,
                           transcribe=(make_transcriber(asr.recognizer, cfg.asr.sample_rate)
                                       if asr is not None else None))


def build_metrics(cfg: HotlineConfig, telephony: Telephony, link: AmiLink,
                  gateway: DurableGateway, parts: RouterParts, transcripts: CallTranscripts,
                  mailbox: MailboxPoller, asr: AsrService | None,
                  asr_status: AsrStatus) -> CollectorRegistry:
    """The registry ``/metrics`` serves, with every part's collector."""
    t = telephony
    return build_registry(
        MetricSources(t.board, t.tracker, t.stats, t.dispatcher, link,
                      queues=tuple(q.name for q in cfg.queues.queues), clock=utc_now,
                      persist_backlog=lambda: t.writer.backlog),
        IntakeCollector(gateway, mailbox), AsrStatusCollector(asr_status),
        CalendarCollector(parts, utc_now), TranscriptSinkCollector(transcripts.stats),
        *(asr.collectors() if asr is not None else ()))


def build_http_app(cfg: HotlineConfig, live: LiveConfig, telephony: Telephony, link: AmiLink,
                   gateway: DurableGateway, parts: RouterParts, control: Control,
                   phone_intake: PhoneIntake, transcripts: CallTranscripts,
                   registry: CollectorRegistry) -> web.Application:
    """The desk API, the citizen channels, tickets, knowledge base and OpenAPI: every route,
    each reading the live config at the request."""
    app = build_app(ApiDeps(
        board=telephony.board, tracker=telephony.tracker, stats=telephony.stats, link=link,
        seat_actions=control.seat_actions, registry=registry,
        queues=live.queue_names, admin_token=live.admin_token, agent_tokens=live.agent_tokens,
        reload_config=control.reload_config, clock=utc_now, phone_intake=phone_intake,
        transcript_of=transcripts.segments_of,
        warnings=lambda: _calendar_warnings(parts, utc_now())))
    nonces = RedisNonceStore(gateway.stream.redis, StreamKeys.from_config(cfg.channels).prefix,
                             retry_seconds=cfg.channels.redis.retry_seconds)
    add_intake_routes(app, IntakeHttpDeps(gateway=gateway, config=live.channels,
                                          nonces=nonces, clock=utc_now,
                                          order_status=order_status_lookup(parts.tickets)))
    add_ticket_routes(app, TicketApiDeps(
        store=lambda: parts.tickets,
        admin_token=live.admin_token, unit_tokens=live.unit_tokens,
        known_units=live.known_units))
    add_kb_routes(app, KbApiDeps(
        sync=lambda: parts.kb,
        admin_token=live.admin_token, unit_tokens=live.unit_tokens,
        agent_tokens=live.agent_tokens, known_units=live.known_units))
    add_openapi_route(app)
    return app


def _calendar_warnings(parts: RouterParts, now: datetime) -> list[dict[str, Any]]:
    warning = parts.calendar_warning(now)
    return [] if warning is None else [warning.as_json()]


def _bound_port(runner: web.AppRunner, configured: int) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return configured


async def _tick(board: SeatBoard) -> None:
    while True:
        await asyncio.sleep(1.0)
        board.tick(datetime.now(UTC))
