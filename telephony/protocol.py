"""AMI framing and one TCP connection to Asterisk, over panoramisk's protocol and parser.

panoramisk 1.4's ``AMIProtocol`` is the base class and its ``Message.from_line`` parses every
message, but each method of the base is replaced, because each one carries a pitfall measured
in ``shared/library-notes.md``:

* ``data_received`` decodes every TCP chunk on its own with ``errors='ignore'``: a multi-byte
  character split across two reads (午 in ``PausedReason: 午休``) silently disappears. Here the
  stream is framed on **bytes** first (CR and LF never occur inside a multi-byte UTF-8
  sequence, so a frame boundary is never inside a character) and each complete message is
  decoded once; invalid bytes are replaced (U+FFFD), counted and logged, never dropped silently.
* its buffer grows without bound on a line that never ends; here a message is capped at
  ``max_message_bytes`` and the rest of it is skipped up to the next blank line.
* an exception from an event callback escapes ``data_received`` and the rest of the chunk is
  lost; here the handler is the link's, which isolates each event.
* ``close`` queues unanswered actions to be re-sent after ``FullyBooted`` (a second
  ``Originate`` dials the citizen twice); here unanswered actions fail when the connection
  drops: :class:`~telephony.errors.AmiActionLost` for non-idempotent ones.
* ``send`` formats ``'%s: %s' % (key, value)`` unescaped; here only an
  :class:`~telephony.actions.AmiAction` (checked, immutable) can reach the socket.

Both CRLF and bare LF line ends are accepted (panoramisk's comment: "sometimes we receive only
one EOL from Asterisk").
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Final

from panoramisk.ami_protocol import AMIProtocol  # type: ignore[import-untyped]
from panoramisk.message import Message  # type: ignore[import-untyped]

from telephony.actions import AmiAction
from telephony.errors import AmiActionFailed, AmiActionLost, AmiNotConnected

log = logging.getLogger(__name__)

BANNER_PREFIX: Final = b"Asterisk Call Manager/"
# A message ends at an empty line; accept CRLF and bare LF in any mix.
_TERMINATOR: Final = re.compile(rb"\r?\n\r?\n")
_EVENT_NAME: Final = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,79}$")
# Runs of 7+ digits are phone numbers as far as logs are concerned (over-masks Uniqueids:
# harmless).
_DIGITS: Final = re.compile(r"\d{7,}")
PREVIEW_CHARS: Final = 160
# Asterisk answers "Error"; "Fail"/"Failure" are what panoramisk also treats as failed.
_FAILED: Final = frozenset({"error", "fail", "failure"})


def mask_digits(text: str) -> str:
    """Mask every run of 7+ digits (``13800138004`` → ``138****8004``) for logs."""
    return _DIGITS.sub(lambda m: m[0][:3] + "****" + m[0][-4:], text)


def preview(raw: bytes | str) -> str:
    """A short, phone-masked, single-line excerpt of a message for a log line."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    short = text[:PREVIEW_CHARS] + ("…" if len(text) > PREVIEW_CHARS else "")
    return mask_digits(short).encode("unicode_escape").decode("ascii")


class AmiConnectionDropped(AmiNotConnected):
    """The connection dropped after an idempotent action was sent and before its response.

    Nothing changed on Asterisk's side that a repeat could double, so the link may retry it
    once after the next login (see :meth:`telephony.link.AmiLink.send`).
    """


@dataclass
class LinkCounters:
    """Monotonic counters of the AMI link, shared by every connection of one link.

    Plain ints so that a Prometheus collector can read them without locking (one thread).
    """

    events_received: int = 0       # events parsed (dispatched or part of a list response)
    parse_errors: int = 0          # messages without Event/Response, or a malformed event name
    decode_errors: int = 0         # messages with invalid UTF-8 (kept, with U+FFFD)
    oversize_messages: int = 0     # messages over max_message_bytes (skipped)
    truncated_messages: int = 0    # the peer closed the connection in the middle of a message
    unknown_responses: int = 0     # responses whose ActionID no pending action has
    handler_errors: int = 0        # exceptions raised by on_event / on_state_change
    reconnects: int = 0            # connection attempts after the first one
    watchdog_timeouts: int = 0     # Pings without a Pong in time (half-open connections)
    actions_sent: int = 0
    actions_lost: int = 0          # non-idempotent actions failed with AmiActionLost

    def snapshot(self) -> dict[str, int]:
        """All counters as a plain dict (for metrics and tests)."""
        return asdict(self)


class AmiFramer:
    """Splits an AMI byte stream into messages (raw bytes, without the blank line).

    Memory stays bounded by ``max_message_bytes`` plus one TCP chunk whatever the peer sends.
    """

    def __init__(self, max_message_bytes: int, on_oversize: Callable[[int, bytes], None]) -> None:
        self.max_message_bytes = max_message_bytes
        self.banner: str | None = None
        self._on_oversize = on_oversize
        self._buf = bytearray()
        self._scan_from = 0
        self._skipping = False    # inside an oversize message: discard up to its blank line
        self._expect_banner = True

    @property
    def buffered(self) -> int:
        """Bytes held right now (bounded by ``max_message_bytes`` + 3 between feeds)."""
        return len(self._buf)

    @property
    def pending_bytes(self) -> int:
        """Bytes of an incomplete message held (0 between messages)."""
        return 0 if self._skipping else len(self._buf.strip())

    def feed(self, data: bytes) -> list[bytes]:
        """Add a chunk; return the messages it completed, in order."""
        buf = self._buf
        buf += data
        if self._expect_banner and not self._take_banner():
            return []
        out: list[bytes] = []
        pos = 0
        while (m := _TERMINATOR.search(buf, self._scan_from)) is not None:
            if self._skipping:
                self._skipping = False
            else:
                raw = bytes(buf[pos:m.start()]).strip(b"\r\n")
                if len(raw) > self.max_message_bytes:
                    self._on_oversize(len(raw), raw[:PREVIEW_CHARS])
                elif raw:
                    out.append(raw)
            pos = self._scan_from = m.end()
        del buf[:pos]
        if len(buf) > self.max_message_bytes:
            if not self._skipping:
                self._skipping = True
                self._on_oversize(len(buf), bytes(buf[:PREVIEW_CHARS]))
            # Keep 3 bytes: a terminator may straddle this chunk and the next.
            del buf[:-3]
        # The next terminator may start in the last 3 bytes already held.
        self._scan_from = max(0, len(buf) - 3)
        return out

    def _take_banner(self) -> bool:
        """Consume the banner line (the one line not ended by a blank line); False: wait."""
        newline = self._buf.find(b"\n")
        if newline < 0 and len(self._buf) <= self.max_message_bytes:
            return False
        self._expect_banner = False
        if newline >= 0 and self._buf.startswith(BANNER_PREFIX):
            self.banner = self._buf[:newline].rstrip(b"\r").decode("utf-8", "replace")
            del self._buf[:newline + 1]
        return True


@dataclass
class _Pending:
    action: AmiAction
    future: asyncio.Future[AmiResponse]
    response: Message | None = None
    events: list[Message] = field(default_factory=list)


@dataclass(frozen=True)
class AmiResponse:
    """Asterisk's answer to one action: the ``Response`` message and, for list actions
    (``AmiAction.list_complete``), the events up to and including the closing one."""

    response: Message
    events: tuple[Message, ...] = ()


class AmiProtocol(AMIProtocol):  # type: ignore[misc]  # panoramisk ships no type hints
    """One AMI TCP connection: framing, parsing, ActionID correlation, event hand-off.

    ``on_event`` is called synchronously for every event that is not part of a list response;
    it must not raise (the link's dispatcher guarantees that). ``on_lost`` is called once when
    the connection ends, before unanswered actions fail. Reconnecting, login and the
    watchdog belong to :class:`telephony.link.AmiLink`.
    """

    def __init__(self, *, on_event: Callable[[Message], None], counters: LinkCounters,
                 max_message_bytes: int, on_lost: Callable[[], None] | None = None) -> None:
        self._on_event = on_event
        self._on_lost = on_lost
        self.counters = counters
        self.framer = AmiFramer(max_message_bytes, self._oversize)
        self._pending: dict[str, _Pending] = {}
        self._closed = asyncio.Event()
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.log = log

    # -- asyncio.Protocol ----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        for raw in self.framer.feed(data):
            self._handle_raw(raw)

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed:
            return
        self.closed = True
        left = self.framer.pending_bytes
        if left:
            self.counters.truncated_messages += 1
            log.warning("AMI peer closed the connection mid-message; %d bytes discarded", left)
        if self._on_lost is not None:
            # Before the pending actions fail: whoever they wake must see the link down.
            self._on_lost()
        for action_id, pending in list(self._pending.items()):
            self._fail_dropped(action_id, pending)
        self._pending.clear()
        self._closed.set()

    # -- panoramisk API, disabled --------------------------------------------------------
    def send(self, data: Any, as_list: bool = False) -> Any:
        """Refused: panoramisk's writer does not escape values. Use :meth:`submit`."""
        raise TypeError("AmiProtocol.send is disabled: build an AmiAction and use submit()")

    def close(self) -> None:
        """Close the socket (unanswered actions fail in :meth:`connection_lost`)."""
        if self.transport is not None:
            self.transport.close()

    # -- our API -------------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        """True while actions can be written (connected and not closing)."""
        return (not self.closed and self.transport is not None
                and not self.transport.is_closing())

    def abort(self) -> None:
        """Drop the connection now, without waiting for buffered writes (dead peer)."""
        if self.transport is not None:
            self.transport.abort()

    async def wait_closed(self) -> None:
        """Return once the connection is gone (and its unanswered actions have failed)."""
        await self._closed.wait()

    def submit(self, action: AmiAction, action_id: str) -> asyncio.Future[AmiResponse]:
        """Write ``action`` with ``action_id``; the future gets its :class:`AmiResponse`."""
        if not isinstance(action, AmiAction):
            raise TypeError(f"expected AmiAction, got {type(action).__name__}")
        if not self.is_open or self.transport is None:
            raise AmiNotConnected(f"AMI 连接已断开，未发送 {action.name} (AMI connection closed)")
        wire = action.to_wire(action_id).encode("utf-8")
        future: asyncio.Future[AmiResponse] = asyncio.get_running_loop().create_future()
        self._pending[action_id] = _Pending(action, future)
        self.transport.write(wire)
        self.counters.actions_sent += 1
        return future

    def forget(self, action_id: str) -> None:
        """Stop waiting for ``action_id`` (timed out or cancelled); a late answer is logged."""
        self._pending.pop(action_id, None)

    # -- internals -----------------------------------------------------------------------
    def _oversize(self, size: int, head: bytes) -> None:
        self.counters.oversize_messages += 1
        log.warning("AMI message over %d bytes (%d so far) skipped to its blank line: %s",
                    self.framer.max_message_bytes, size, preview(head))

    def _handle_raw(self, raw: bytes) -> None:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            # Keep the message: dropping a Hangup because a caller name had a stray byte
            # would leave a call on the board forever.
            text = raw.decode("utf-8", "replace")
            self.counters.decode_errors += 1
            log.warning("AMI message with invalid UTF-8 (%s), kept with U+FFFD: %s",
                        exc.reason, preview(text))
        if "\r\n" not in text or text.count("\n") != text.count("\r\n"):
            text = text.replace("\r\n", "\n").replace("\n", "\r\n")
        message = Message.from_line(text)
        if message is None:
            self.counters.parse_errors += 1
            log.warning("AMI message without Event or Response skipped: %s", preview(text))
            return
        if "event" in message:
            self._handle_event(message)
        else:
            self._handle_response(message)

    def _handle_event(self, message: Message) -> None:
        name = message["event"]
        if not isinstance(name, str) or not _EVENT_NAME.match(name):
            self.counters.parse_errors += 1
            log.warning("AMI event with a malformed name skipped: %s", preview(repr(name)))
            return
        self.counters.events_received += 1
        action_id = message.get("actionid")
        pending = self._pending.get(action_id) if isinstance(action_id, str) else None
        if pending is not None and pending.action.list_complete is not None:
            pending.events.append(message)
            if name.lower() == pending.action.list_complete.lower():
                self._resolve(action_id, pending)
            return
        # Includes OriginateResponse: its ActionID's action was answered already.
        self._on_event(message)

    def _handle_response(self, message: Message) -> None:
        action_id = message.get("actionid")
        pending = self._pending.get(action_id) if isinstance(action_id, str) else None
        if pending is None or pending.response is not None:
            self.counters.unknown_responses += 1
            log.warning("AMI response for unknown ActionID %r skipped (late answer to a "
                        "timed-out action?): %s", action_id, preview(repr(dict(message))))
            return
        pending.response = message
        assert isinstance(action_id, str)
        if str(message.get("response", "")).lower() in _FAILED:
            self._pending.pop(action_id, None)
            if not pending.future.done():
                pending.future.set_exception(
                    AmiActionFailed(pending.action.name, str(message.get("message", ""))))
            return
        lists = pending.action.list_complete is not None
        if not lists or str(message.get("eventlist", "")).lower() != "start":
            self._resolve(action_id, pending)

    def _resolve(self, action_id: str, pending: _Pending) -> None:
        self._pending.pop(action_id, None)
        if pending.future.done():
            return
        if pending.response is None:
            # A closing event without a Response first: Asterisk does not do this; be loud.
            pending.future.set_exception(AmiActionFailed(
                pending.action.name, "list completed without a Response message"))
            return
        pending.future.set_result(AmiResponse(pending.response, tuple(pending.events)))

    def _fail_dropped(self, action_id: str, pending: _Pending) -> None:
        if pending.future.done():
            return
        name = pending.action.name
        if pending.action.idempotent:
            pending.future.set_exception(AmiConnectionDropped(
                f"AMI 连接在 {name} 应答前断开 (connection dropped before the response, "
                f"ActionID {action_id})"))
        else:
            self.counters.actions_lost += 1
            log.error("AMI connection dropped with non-idempotent %s (ActionID %s) unanswered: "
                      "it may or may not have executed; not re-sent", name, action_id)
            pending.future.set_exception(AmiActionLost(
                f"AMI 连接在 {name} 应答前断开：该操作可能已执行，也可能未执行，不会自动重发。"
                f" (AMI link dropped before the response to {name}, ActionID {action_id}: it "
                "may or may not have executed; it is never re-sent automatically)"))
