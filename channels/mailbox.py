"""The mayor's mailbox (书记市长信箱): an IMAP poller that turns new mail into intakes.

Every ``channels.mail.poll_seconds`` the poller asks the server for the unseen mail
(``UID SEARCH UNSEEN``), fetches each one without marking it (``BODY.PEEK[]``), parses it in a
worker thread (:mod:`channels.mime`), stores its attachments and submits the draft to the
:class:`~channels.gateway.IntakeGateway`. Only when the gateway answers :class:`Accepted` (the
intake is in Redis or the spool) is the mail marked ``\\Seen``: a crash or an outage between
fetch and submit leaves it unseen, and the next round takes it again; the gateway's
idempotency on ``mail:<Message-ID>`` makes that second submission the same intake.

* Automatic mail (auto-replies, bounces, loops, bulk) is marked ``\\Seen $HotlineSkipped`` and
  counted per reason; nothing is submitted.
* A mail the parser could not handle (a bug: :func:`channels.mime.parse_message` never raises on
  input) is logged with its traceback and marked ``$HotlineFailed`` but left unseen, so a
  person sees it unread; the search skips that keyword so one bad mail cannot stall the box.
* :class:`~channels.errors.IntakeUnavailable` ends the round with the mail unseen.
* The connection is kept between rounds; a lost connection (detected at once through
  aioimaplib's ``conn_lost_cb``, not after a command timeout) or a refused login makes
  :meth:`MailboxPoller.run` reconnect with exponential backoff and jitter.

Every intake carries ``source_ref = imap://<host>/<folder>;UIDVALIDITY=<v>;UID=<uid>`` (RFC
5092 style), so an operator can open the original mail.

IDLE is not used: polling is simple to make robust and the mailbox is not latency-critical
(a citizen's mail waits at most ``poll_seconds``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import itertools
import logging
import random
import re
import ssl
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any, Final, NamedTuple

import aioimaplib  # type: ignore[import-untyped]

from channels.attachments import AttachmentStore
from channels.errors import ChannelError, IntakeUnavailable
from channels.gateway import IntakeGateway
from channels.intake import utc_now
from channels.mime import (
    AttachmentPayload,
    MailLimits,
    ParsedMail,
    Skip,
    parse_headers_only,
    parse_message,
)
from config.channels import MailConfig

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

SKIPPED_KEYWORD: Final = "$HotlineSkipped"
FAILED_KEYWORD: Final = "$HotlineFailed"
BATCH: Final = 100                  # mails per round; the rest follow without waiting
HEADER_FETCH_BYTES: Final = 256 * 1024
LOGOUT_TIMEOUT: Final = 2.0



class MailboxError(ChannelError):
    """The IMAP server could not be used: connect, login, select or a command failed, or the
    connection was lost (aioimaplib and socket errors are wrapped in it)."""


class MailboxLoginRejected(MailboxError):
    """The server refused the username / password (``channels.mail``)."""


@dataclass(slots=True)
class PollReport:
    """What one round (or, summed, the poller's life) did with the mail."""

    fetched: int = 0            # mails downloaded and parsed
    accepted: int = 0           # new intakes
    duplicates: int = 0         # already accepted before (re-fetch): marked seen again
    threaded: int = 0           # new intakes that follow up an earlier one
    skipped: dict[str, int] = field(default_factory=dict)   # reason -> count
    failed: int = 0             # parser bug or attachment store error: left unseen
    too_large: int = 0          # over max_message_bytes: intake from the header only
    deferred: int = 0           # left unseen because the gateway was unavailable
    remaining: int = 0          # unseen mail left for the next round (over BATCH)

    def add(self, other: PollReport) -> None:
        """Add ``other``'s counts to this one."""
        for f in fields(self):
            if f.name == "skipped":
                for reason, count in other.skipped.items():
                    self.skipped[reason] = self.skipped.get(reason, 0) + count
            else:
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


class _Reply(NamedTuple):
    result: str
    lines: list[bytes | bytearray]


@dataclass(frozen=True, slots=True)
class _Target:
    """Which mailbox a connection is for; a config change to any of it reconnects."""

    host: str
    port: int
    tls: bool
    username: str
    password: str
    folder: str
    timeout: float
    ca_file: str | None = None

    @classmethod
    def of(cls, cfg: MailConfig) -> _Target:
        if cfg.password is None:
            raise MailboxError("channels.mail.password 未配置 (HOTLINE_CHANNELS__MAIL__PASSWORD)")
        return cls(cfg.host, cfg.port, cfg.tls, cfg.username, cfg.password.get_secret_value(),
                   cfg.folder, cfg.timeout_seconds, cfg.ca_file)


class _Session:
    """One logged-in IMAP connection with the folder selected."""

    def __init__(self, imap: Any, target: _Target, lost: asyncio.Event) -> None:
        self.imap = imap
        self.target = target
        self.lost = lost
        self.uidvalidity = 0

    async def run(self, what: str, command: Coroutine[Any, Any, Any]) -> Any:
        """Await one aioimaplib coroutine; fail at once if the connection drops meanwhile."""
        if self.lost.is_set():
            command.close()
            raise MailboxError(f"IMAP connection lost before {what}")
        task: asyncio.Task[Any] = asyncio.ensure_future(command)
        lost = asyncio.ensure_future(self.lost.wait())
        try:
            await asyncio.wait({task, lost}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:       # we are cancelled: so is the command
            task.cancel()
            raise
        finally:
            lost.cancel()
        if not task.done():
            task.cancel()
            await asyncio.wait({task})     # let it finish cancelling; it never raises here
            raise MailboxError(f"IMAP connection lost during {what}")
        if task.cancelled():
            raise MailboxError(f"IMAP {what} cancelled")
        exc = task.exception()
        if exc is not None:
            raise MailboxError(f"IMAP {what} failed: {type(exc).__name__} {exc}") from exc
        return task.result()

    async def call(self, what: str, command: Coroutine[Any, Any, Any]) -> _Reply:
        """Run one IMAP command and return its reply, whatever its result."""
        response = await self.run(what, command)
        return _Reply(str(response.result), list(response.lines))

    async def ok(self, what: str, command: Coroutine[Any, Any, Any]) -> _Reply:
        reply = await self.call(what, command)
        if reply.result != "OK":
            raise MailboxError(f"IMAP {what}: {reply.result} {_last_text(reply)}")
        return reply

    async def unseen(self) -> list[int]:
        """UIDs of the unseen mail (without the ones flagged failed), oldest first."""
        # A session sees other sessions' changes (new mail delivered, \Seen cleared by a
        # person) only at its next command: dovecot 2.3 answered a SEARCH from the state
        # before it, measured. NOOP first, so the SEARCH sees the mailbox as it is now.
        await self.ok("NOOP", self.imap.noop())
        reply = await self.ok("UID SEARCH", self.imap.uid_search(
            "UNSEEN", "UNKEYWORD", FAILED_KEYWORD, charset=None))
        uids: list[int] = []
        for line in reply.lines[:-1]:
            text = bytes(line).removeprefix(b"SEARCH")
            uids.extend(int(token) for token in text.split() if token.isdigit())
        return sorted(set(uids))

    async def sizes(self, uids: list[int]) -> dict[int, int]:
        reply = await self.ok("UID FETCH RFC822.SIZE", self.imap.uid(
            "fetch", ",".join(map(str, uids)), "(RFC822.SIZE)"))
        found: dict[int, int] = {}
        for line in reply.lines:
            uid, size = _UID.search(line), _SIZE.search(line)
            if uid and size:
                found[int(uid.group(1))] = int(size.group(1))
        return found

    async def body(self, uid: int, section: str) -> bytes | None:
        """The literal of ``section`` for ``uid``; None when the mail is gone (expunged)."""
        reply = await self.ok(f"UID FETCH {section}", self.imap.uid("fetch", str(uid), section))
        literals: list[tuple[bytes, bytes]] = []
        for prefix, item in itertools.pairwise(reply.lines):
            if isinstance(item, bytearray) and not isinstance(prefix, bytearray):
                literals.append((bytes(prefix), bytes(item)))
        # Other sessions' flag changes may arrive as extra untagged FETCH lines: pick ours.
        for prefix, data in literals:
            match = _UID.search(prefix)
            if match is None or int(match.group(1)) == uid:
                return data
        return None

    async def flag(self, uid: int, flags: str) -> None:
        await self.ok("UID STORE", self.imap.uid("store", str(uid), "+FLAGS", f"({flags})"))

    def close(self) -> None:
        transport = getattr(self.imap.protocol, "transport", None)
        if transport is not None:
            transport.close()
        client_task = getattr(self.imap, "_client_task", None)
        if client_task is not None and not client_task.done():
            client_task.cancel()


_UID: Final = re.compile(rb"\bUID (\d+)")
_SIZE: Final = re.compile(rb"\bRFC822\.SIZE (\d+)")
_UIDVALIDITY: Final = re.compile(rb"\[UIDVALIDITY (\d+)\]")


def _last_text(reply: _Reply) -> str:
    return bytes(reply.lines[-1]).decode(errors="replace")[:200] if reply.lines else ""


def imap_folder(name: str) -> str:
    """A folder name as an IMAP quoted string, non-ASCII in modified UTF-7 (RFC 3501 5.1.3),
    so ``INBOX/市长信箱`` works."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            data = "".join(pending).encode("utf-16-be")
            out.append("&" + base64.b64encode(data).decode().rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for ch in name:
        if " " <= ch <= "~":
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    encoded = "".join(out)
    return '"' + encoded.replace("\\", "\\\\").replace('"', '\\"') + '"'


def mask_email(address: str | None) -> str:
    """``li.nvshi@example.com`` -> ``l***@example.com`` (logs need the domain, not the person)."""
    if not address:
        return "-"
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}" if domain else "***"


def store_attachments(directory: Path, payloads: tuple[AttachmentPayload, ...]) -> dict[str, str]:
    """Write the kept attachments where the web form keeps its own (content-addressed,
    :meth:`channels.attachments.AttachmentStore.path_for`, so one directory can serve both),
    fsync'd before the intake that points at them is submitted; returns sha256 -> path.
    Blocking: call it in a thread."""
    store = AttachmentStore(directory)
    stored: dict[str, str] = {}
    for payload in payloads:
        if payload.meta.sha256 is None or payload.data is None:
            continue
        sha, path = store.put_bytes(payload.data)
        stored[sha] = str(path)
    return stored


class MailboxPoller:
    """Polls the mayor's mailbox and submits each citizen mail as one intake.

    ``cfg_getter`` returns the current ``channels.mail`` section (read at every round, so a
    config reload applies; a changed server, account or folder reconnects). ``attachments_dir``
    is where attachment bytes are stored. Run :meth:`run` as a task (it returns only when
    cancelled, after logging out); tests drive :meth:`poll_once` and :meth:`aclose`.
    """

    def __init__(self, cfg_getter: Callable[[], MailConfig], gateway: IntakeGateway,
                 attachments_dir: Path, clock: Clock = utc_now, *,
                 retry_initial: float = 1.0, retry_max: float = 300.0) -> None:
        self._cfg = cfg_getter
        self._gateway = gateway
        self._attachments_dir = attachments_dir
        self._clock = clock
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._session: _Session | None = None
        self._lock = asyncio.Lock()
        self.totals = PollReport()
        self.connects = 0          # successful logins (1 + reconnects)

    async def run(self) -> None:
        """Poll until cancelled; reconnect with backoff when the server is unreachable."""
        delay = self._retry_initial
        try:
            while True:
                try:
                    report = await self.poll_once()
                except MailboxError as exc:
                    wait = min(delay, self._retry_max) * random.uniform(0.8, 1.2)
                    log.warning("mailbox unreachable (%s); retrying in %.1fs", exc, wait,
                                extra={"retry_in": round(wait, 1)})
                    await asyncio.sleep(wait)
                    delay = min(delay * 2, self._retry_max)
                    continue
                delay = self._retry_initial
                if report.remaining and not (report.deferred or report.failed):
                    continue       # more unseen mail than one batch: no need to wait
                await asyncio.sleep(self._cfg().poll_seconds)
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Log out and close the connection (idempotent)."""
        session, self._session = self._session, None
        if session is None:
            return
        try:
            if not session.lost.is_set():
                with contextlib.suppress(MailboxError, TimeoutError):
                    async with asyncio.timeout(LOGOUT_TIMEOUT):
                        await session.call("LOGOUT", session.imap.logout())
        finally:
            session.close()

    async def poll_once(self) -> PollReport:
        """One round: connect if needed, take the unseen mail (at most :data:`BATCH`).

        Raises :class:`MailboxError` when the server cannot be used; the connection is then
        dropped and the next call reconnects."""
        async with self._lock:
            cfg = self._cfg()
            report = PollReport()
            if not cfg.enabled:
                await self.aclose()
                return report
            try:
                session = await self._session_for(cfg)
                await self._round(session, cfg, report)
            except MailboxError:
                self._drop()
                raise
            finally:
                self.totals.add(report)
            return report

    # ------------------------------------------------------------------------ connection

    async def _session_for(self, cfg: MailConfig) -> _Session:
        target = _Target.of(cfg)
        session = self._session
        if session is not None and (session.lost.is_set() or session.target != target):
            await self.aclose()
            session = None
        if session is None:
            session = await self._connect(target)
            self._session = session
        return session

    async def _connect(self, target: _Target) -> _Session:
        context = None
        if target.tls:
            # create_default_context() reads the CA bundle from disk: off the loop.
            context = await asyncio.to_thread(ssl.create_default_context,
                                              cafile=target.ca_file)
        lost = asyncio.Event()
        imap = aioimaplib.IMAP4(target.host, target.port, timeout=target.timeout,
                                conn_lost_cb=lambda _exc: lost.set(), ssl_context=context)
        session = _Session(imap, target, lost)
        try:
            await session.run("connect", imap.wait_hello_from_server())
            login = await session.call("LOGIN", imap.login(target.username, target.password))
            if login.result != "OK":
                raise MailboxLoginRejected(
                    f"IMAP login as {target.username!r} refused: {_last_text(login)}")
            selected = await session.ok("SELECT", imap.select(imap_folder(target.folder)))
        except BaseException:
            session.close()
            raise
        for line in selected.lines:
            match = _UIDVALIDITY.search(bytes(line))
            if match:
                session.uidvalidity = int(match.group(1))
        self.connects += 1
        log.info("mailbox %s@%s:%d/%s selected (UIDVALIDITY %d)", target.username, target.host,
                 target.port, target.folder, session.uidvalidity)
        return session

    def _drop(self) -> None:
        """Forget a broken connection without LOGOUT (it cannot answer)."""
        session, self._session = self._session, None
        if session is not None:
            session.close()

    # ---------------------------------------------------------------------------- a round

    async def _round(self, session: _Session, cfg: MailConfig, report: PollReport) -> None:
        uids = await session.unseen()
        report.remaining = max(0, len(uids) - BATCH)
        uids = uids[:BATCH]
        if not uids:
            return
        sizes = await session.sizes(uids)
        limits = MailLimits.of(cfg)
        for index, uid in enumerate(uids):
            size = sizes.get(uid)
            if size is None:            # expunged since the search
                continue
            try:
                await self._one(session, cfg, limits, uid, size, report)
            except IntakeUnavailable as exc:
                report.deferred = len(uids) - index
                log.warning("intake unavailable (%s): %d mails stay unseen until the next round",
                            exc, report.deferred)
                return

    async def _one(self, session: _Session, cfg: MailConfig, limits: MailLimits, uid: int,
                   size: int, report: PollReport) -> None:
        source_ref = (f"imap://{cfg.host}/{cfg.folder};UIDVALIDITY={session.uidvalidity};"
                      f"UID={uid}")
        fetched_at = self._clock()
        parse: Callable[[], ParsedMail | Skip]
        if size > cfg.max_message_bytes:
            header = await session.body(uid, f"BODY.PEEK[HEADER]<0.{HEADER_FETCH_BYTES}>")
            if header is None:
                return
            report.too_large += 1
            parse = functools.partial(parse_headers_only, header, limits, fetched_at=fetched_at,
                                      size=size, max_size=cfg.max_message_bytes)
        else:
            raw = await session.body(uid, "BODY.PEEK[]")
            if raw is None:
                return
            parse = functools.partial(parse_message, raw, limits, fetched_at=fetched_at)
        report.fetched += 1
        try:
            result = await asyncio.to_thread(parse)
            if isinstance(result, Skip):
                await session.flag(uid, f"\\Seen {SKIPPED_KEYWORD}")
                report.skipped[result.reason] = report.skipped.get(result.reason, 0) + 1
                log.info("mail skipped: %s (%s)", result.reason, result.detail,
                         extra={"message_id": result.message_id, "source_ref": source_ref,
                                "reason": result.reason})
                return
            stored = await asyncio.to_thread(store_attachments, self._attachments_dir,
                                             result.attachments)
            thread_of = await self._thread_of(result)
            draft = result.finish(source_ref=source_ref, thread_of=thread_of,
                                  stored_paths=stored)
        except MailboxError:
            raise
        except OSError as exc:
            # Disk full, permissions: transient or for an operator; the mail stays unseen and
            # the next round tries again.
            report.failed += 1
            log.error("mail %s: attachments not stored (%s); left unseen", source_ref, exc)
            return
        except Exception:
            # parse_message never raises on input, so this is a bug: keep the traceback, flag
            # the mail for a person and go on with the others (see the module docstring).
            report.failed += 1
            log.exception("mail %s could not be processed; flagged %s, left unseen",
                          source_ref, FAILED_KEYWORD)
            await session.flag(uid, FAILED_KEYWORD)
            return
        for note in result.notes:
            log.info("mail %s: %s", draft.external_id, note, extra={"source_ref": source_ref})
        accepted = await self._gateway.submit(draft)
        # Durable now (Redis or spool): only now may the mail be marked seen.
        await session.flag(uid, "\\Seen")
        if accepted.duplicate:
            report.duplicates += 1
        else:
            report.accepted += 1
            if draft.thread_of is not None:
                report.threaded += 1
        log.info("mail accepted as %s%s", accepted.acceptance_no,
                 " (duplicate)" if accepted.duplicate else "",
                 extra={"acceptance_no": accepted.acceptance_no, "message_id": draft.external_id,
                        "sender": mask_email(draft.contact.email), "source_ref": source_ref,
                        "thread_of": draft.thread_of, "attachments": len(draft.attachments)})

    async def _thread_of(self, parsed: ParsedMail) -> str | None:
        """The acceptance number of the earliest known mail this one answers."""
        for ref in parsed.references:
            if ref == parsed.draft.external_id:
                continue
            try:
                number = await self._gateway.lookup("mail", ref)
            except ChannelError as exc:
                # Threading is a convenience; the citizen's mail must still get in.
                log.warning("thread lookup for %s failed (%s); submitting unthreaded", ref, exc)
                return None
            if number is not None:
                return number
        return None

