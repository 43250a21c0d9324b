"""The composition root: builds every resource once, in order, and tears it down in stages.

    database engine (+ migrations) → call store → seat board, stats, tracker → AMI link
    → intake gateway (Redis client, spool, forwarder) → HTTP server (desk API, citizen
    channels, OpenAPI) → background tasks (call writer, 1 s ticker, mailbox and voicemail
    pollers)

Shutdown (SIGTERM/SIGINT, or ``stop`` set): stop the HTTP server (no new agent actions, no new
citizen submissions), stop the pollers, log off the AMI link (no new events), stop the
background tasks, write the last call records (shielded, within ``shutdown_grace_seconds``),
close the intake gateway (spooled intakes stay on disk), dispose the engine.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from channels.durable import DurableGateway, open_gateway
from channels.http_deps import IntakeHttpDeps
from channels.keys import StreamKeys
from channels.mailbox import MailboxPoller
from channels.nonces import RedisNonceStore
from channels.phone import PhoneIntake, TrackerCalls
from channels.tasks import cancel_and_wait
from channels.voicemail import VoicemailPoller
from channels.web import add_intake_routes
from config.loader import load_config
from config.schema import HotlineConfig
from db.engine import migrate, open_engine
from hotline.http_api import ApiDeps, build_app
from hotline.intake_metrics import IntakeCollector
from hotline.metrics import MetricSources, build_registry
from hotline.openapi import add_openapi_route
from hotline.calendar_metrics import CalendarCollector
from hotline.routing import (
    RouterParts, build_router, open_outbox, open_router_consumer, order_status_lookup,
)
from hotline.asr_wiring import AsrService, AsrStatus, AsrStatusCollector, open_asr
from router.kb_http import KbApiDeps, add_kb_routes
from router.ticket_http import TicketApiDeps, add_ticket_routes
from httpkit.server import HotlineRunner, ReadDeadlines
from asr.calls import AsrCallDirectory
from asr.voicemail import make_transcriber
from asr.metrics import TranscriptSinkCollector
from asr.sink import CallTranscripts
from router.kb_store import KbSync
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


@dataclass
class Hotline:
    """The running service's parts (tests and the demo look at them)."""

    config: HotlineConfig
    config_dir: Path | None
    board: SeatBoard
    stats: QueueStats
    tracker: CallTracker
    dispatcher: EventDispatcher
    store: CallStore
    writer: CallWriter
    link: AmiLink
    gateway: DurableGateway
    tickets: TicketStore | None = None
    kb: KbSync | None = None
    routing: RouterParts | None = None
    asr: AsrService | None = None
    transcripts: CallTranscripts | None = None
    clock: Callable[[], datetime] = utc_now
    http_port: int = 0
    env: Mapping[str, str] | None = None       # what the config was loaded with (reload too)
    pauses: PauseBook | None = None
    reconciler: QueueLogReconciler | None = None

    def seat_actions(self) -> SeatActions:
        q = self.config.queues
        return SeatActions(self.link, self.tracker, self.board, self.dispatcher,
                           pause_reasons=frozenset(q.pause_reasons),
                           departments={d.number: d.name for d in q.departments},
                           transfer_timeout=q.attended_transfer_timeout_seconds)

    async def on_ami_ready(self) -> None:
        """After every login: resync board and calls, settle from the queue_log the calls we
        could not see, then apply queue membership (with each seat's pause)."""
        report = await resync(self.link, self.tracker, self.clock)
        if self.pauses is not None:
            self.pauses.adopt(report.members)
        if self.reconciler is not None:
            try:
                await self.reconciler.reconcile()
            except (OSError, SQLAlchemyError) as exc:
                # Not fatal for the link: the unread rows stay for the next reconnect.
                log.error("queue_log reconcile failed (%s: %s); retried after the next "
                          "reconnect", type(exc).__name__, exc)
        await self._apply_memberships(list(report.members))

    async def _apply_memberships(self, actual: list[Any]) -> queue_admin.ApplyReport:
        plan = queue_admin.plan(desired_memberships(self.config, self.pauses),
                                actual, [q.name for q in self.config.queues.queues])
        result = await queue_admin.apply(self.link, plan)
        if plan:
            log.info("queue membership applied: +%d -%d penalty %d, %d error(s)",
                     result.added, result.removed, result.penalised, len(result.errors))
        return result

    async def reload_config(self) -> dict[str, Any]:
        """Re-read the config files; on success apply the membership diff (SIGHUP, admin)."""
        # File I/O off the loop; a ConfigError propagates and the old config stays in force.
        new = await asyncio.to_thread(load_config, self.config_dir, self.env)
        self.config = new
        self.board.add_specs(seat_specs(new), self.clock())
        recount: dict[str, Any] = {}
        if self.routing is not None:
            # A year entered in sla.yaml: the provisional deadlines are counted again.
            done = await self.routing.apply_sla(new)
            recount = {"deadlines_recounted": None if done is None
                       else done.changed + done.confirmed}
        if self.link.state is not LinkState.READY:
            return {"reloaded": True, "applied": False, "reason": "ami_not_ready", **recount}
        members, _ = await fetch_status(self.link)
        result = await self._apply_memberships(members)
        return {**recount, "reloaded": True, "applied": True, "added": result.added,
                "removed": result.removed, "penalised": result.penalised,
                "errors": result.errors}


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


async def serve(cfg: HotlineConfig, stop: asyncio.Event, *, config_dir: Path | None = None,
                env: Mapping[str, str] | None = None,
                started: Callable[[Hotline], None] | None = None) -> None:
    """Run the service until ``stop`` is set. ``config_dir`` and ``env`` are what ``cfg`` was
    loaded from; a reload reads them again. A reload applies queues, seats, pause reasons,
    departments and tokens; AMI, HTTP and database settings need a restart."""
    svc = cfg.service
    now = utc_now()
    async with AsyncExitStack() as stack:
        engine = await stack.enter_async_context(open_engine(svc.database_url.get_secret_value()))
        await migrate(engine)
        store = CallStore(engine)
        board = SeatBoard(seat_specs(cfg), wrapup_seconds=cfg.queues.wrapup_seconds, now=now)
        # ZoneInfo reads the tz database from disk: not on the loop.
        timezone = await asyncio.to_thread(ZoneInfo, svc.timezone)
        stats = QueueStats(service_level_seconds=cfg.stats.service_level_seconds,
                           interval_minutes=cfg.stats.interval_minutes, timezone=timezone)
        holder: dict[str, Hotline] = {}
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
        gateway = await stack.enter_async_context(open_gateway(cfg.channels, timezone=timezone))
        transcripts = CallTranscripts(engine, gateway.stream.redis,
                                      StreamKeys.from_config(cfg.channels).prefix)
        ami = cfg.ami
        secret = ami.secret.get_secret_value() if ami.secret else ""
        link = AmiLink(host=ami.host, port=ami.port, username=ami.username, secret=secret,
                       on_event=dispatcher, on_ready=lambda: holder["svc"].on_ami_ready(),
                       connect_timeout=ami.connect_timeout, action_timeout=ami.action_timeout,
                       ping_interval=ami.ping_interval, ping_timeout=ami.ping_timeout,
                       backoff_initial=ami.backoff_initial, backoff_max=ami.backoff_max,
                       backoff_jitter=ami.backoff_jitter,
                       max_message_bytes=ami.max_message_bytes)
        hot = Hotline(cfg, config_dir, board, stats, tracker, dispatcher, store, writer, link,
                      gateway, env=env, pauses=pauses)
        if ami.queue_log_path:
            members = seat_by_member_name(cfg)
            hot.reconciler = QueueLogReconciler(
                QueueLogReader(Path(ami.queue_log_path)), tracker, store,
                seat_of=lambda name: members.get(name, name), clock=utc_now,
                # Intervals before this were not restored: the reconciler must not count there.
                counted_since=now - RESTORED + timedelta(hours=1))

        async def stored_call(call_id: str) -> CallRecord | None:
            try:
                return await store.get(call_id)
            except (SQLAlchemyError, OSError):
                log.warning("call store unavailable looking up call %s", call_id)
                return None

        def interface_of(seat_id: str) -> str | None:
            seat = board.by_seat_id(seat_id)
            return seat.interface if seat is not None else None

        phone_intake = PhoneIntake(TrackerCalls(tracker, interface_of), gateway, utc_now,
                                   stored_call=stored_call,
                                   transcript_of=transcripts.text_of)
        # Before the AMI link starts, so every answered call is remembered.
        tracker.subscribe(phone_intake.remember)
        relay = await stack.enter_async_context(
            open_outbox(cfg, engine, gateway.stream.redis))
        parts = await build_router(cfg, engine, timezone,
                                   on_outbox=relay.wake if relay else None)
        router = parts.router
        hot.tickets = parts.tickets
        hot.kb = parts.kb
        hot.routing = parts
        consumer = await stack.enter_async_context(open_router_consumer(cfg, router))
        holder["svc"] = hot
        asr_status = AsrStatus()
        asr = await stack.enter_async_context(open_asr(
            cfg.asr, calls=asr_calls, transcripts=transcripts, tracker=tracker, link=link,
            status=asr_status))
        hot.asr = asr
        hot.transcripts = transcripts
        await stack.enter_async_context(link)

        mailbox = MailboxPoller(lambda: hot.config.channels.mail, gateway,
                                Path(cfg.channels.web.attachments_dir))
        phone_cfg = cfg.channels.phone
        voicemail = VoicemailPoller(lambda: hot.config.channels.phone, gateway,
                                    Path(cfg.channels.web.attachments_dir),
                                    max_audio_bytes=phone_cfg.voicemail_max_audio_bytes,
                                    settle_seconds=phone_cfg.voicemail_settle_seconds,
                                    orphan_seconds=phone_cfg.voicemail_orphan_seconds,
                                    transcribe=(make_transcriber(asr.recognizer,
                                                                 cfg.asr.sample_rate)
                                                if asr is not None else None))
        registry = build_registry(MetricSources(
            board, tracker, stats, dispatcher, link,
            queues=tuple(q.name for q in cfg.queues.queues), clock=utc_now,
            persist_backlog=lambda: writer.backlog), IntakeCollector(gateway, mailbox),
            AsrStatusCollector(asr_status), CalendarCollector(parts, utc_now),
            TranscriptSinkCollector(transcripts.stats),
            *(asr.collectors() if asr is not None else ()))
        app = build_app(ApiDeps(
            board=board, tracker=tracker, stats=stats, link=link,
            seat_actions=hot.seat_actions, registry=registry,
            queues=lambda: tuple(q.name for q in hot.config.queues.queues),
            admin_token=lambda: _secret(hot.config.service.admin_token),
            agent_tokens=lambda: {k: v.get_secret_value()
                                  for k, v in hot.config.service.agent_tokens.items()},
            reload_config=hot.reload_config, clock=utc_now, phone_intake=phone_intake,
            transcript_of=transcripts.segments_of,
            warnings=lambda: _calendar_warnings(parts, utc_now())))
        nonces = RedisNonceStore(gateway.stream.redis, StreamKeys.from_config(cfg.channels).prefix,
                                 retry_seconds=cfg.channels.redis.retry_seconds)
        add_intake_routes(app, IntakeHttpDeps(gateway=gateway,
                                              config=lambda: hot.config.channels,
                                              nonces=nonces, clock=utc_now,
                                              order_status=order_status_lookup(parts.tickets)))
        add_ticket_routes(app, TicketApiDeps(
            store=lambda: hot.tickets,
            admin_token=lambda: _secret(hot.config.service.admin_token),
            unit_tokens=lambda: {k: v.get_secret_value()
                                 for k, v in hot.config.routing.unit_tokens.items()},
            known_units=lambda: {u.id for u in hot.config.units.units}))
        add_kb_routes(app, KbApiDeps(
            sync=lambda: hot.kb,
            admin_token=lambda: _secret(hot.config.service.admin_token),
            unit_tokens=lambda: {k: v.get_secret_value()
                                 for k, v in hot.config.routing.unit_tokens.items()},
            agent_tokens=lambda: {k: v.get_secret_value()
                                  for k, v in hot.config.service.agent_tokens.items()},
            known_units=lambda: {u.id for u in hot.config.units.units}))
        add_openapi_route(app)
        runner = HotlineRunner(app, deadlines=ReadDeadlines(
            svc.http_header_timeout_seconds, svc.http_body_timeout_seconds))
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        site = web.TCPSite(runner, svc.http_host, svc.http_port)
        await site.start()
        hot.http_port = _bound_port(runner, svc.http_port)
        log.info("HTTP on http://%s:%d (healthz, readyz, metrics, api/stats)",
                 svc.http_host, hot.http_port)

        async with asyncio.TaskGroup() as tasks:
            writing = tasks.create_task(writer.run(), name="call-writer")
            ticking = tasks.create_task(_tick(board), name="seat-ticker")
            # Always running: each round reads channels.mail and idles while it is disabled,
            # so a reload can switch the mailbox on.
            mailing = tasks.create_task(mailbox.run(), name="mailbox-poller")
            voicing = tasks.create_task(voicemail.run(), name="voicemail-poller")
            routing = (tasks.create_task(consumer.run(), name="intake-router")
                       if cfg.routing.enabled else None)
            outboxing = (tasks.create_task(relay.run(), name="ticket-outbox")
                         if relay is not None else None)
            kb_refreshing = tasks.create_task(parts.kb.run(), name="kb-refresh")
            if started is not None:
                started(hot)
            await stop.wait()
            log.info("shutting down: HTTP, pollers, AMI link, then last call records")
            await site.stop()
            # IMAP commands run under wait_for: a plain cancel can be swallowed on 3.11.
            await cancel_and_wait(mailing, "shutdown")
            await cancel_and_wait(voicing, "shutdown")
            if routing is not None:
                # Redis commands run under wait_for too; the last XACK is shielded.
                await cancel_and_wait(routing, "shutdown")
            if outboxing is not None:
                outboxing.cancel("shutdown")
            kb_refreshing.cancel("shutdown")
            await link.aclose()
            ticking.cancel("shutdown")
            writing.cancel("shutdown")
        await writer.drain(svc.shutdown_grace_seconds)


def _calendar_warnings(parts: RouterParts, now: datetime) -> list[dict[str, Any]]:
    warning = parts.calendar_warning(now)
    return [] if warning is None else [warning.as_json()]


def _secret(value: Any) -> str | None:
    return None if value is None else str(value.get_secret_value())


def _bound_port(runner: web.AppRunner, configured: int) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return configured


async def _tick(board: SeatBoard) -> None:
    while True:
        await asyncio.sleep(1.0)
        board.tick(datetime.now(UTC))
