"""The AMI link: one supervised, logged-in connection to Asterisk with bounded everything.

What it adds to panoramisk's ``Manager`` (which it does not use, see
``shared/library-notes.md`` for each measured pitfall):

* login is awaited (``Manager.connect()`` returns before it), then ``on_ready()`` resyncs the
  service's state, and only then is the link :attr:`LinkState.READY`;
* every action has a timeout (:class:`~telephony.errors.AmiTimeout`);
* reconnect with exponential backoff and jitter, each attempt logged and counted (panoramisk:
  every 2 s forever);
* a Ping watchdog that requires the Pong, so a half-open TCP connection is detected;
* no replay after reconnect: an unanswered non-idempotent action fails with
  :class:`~telephony.errors.AmiActionLost`; an unanswered idempotent one is retried once after
  the next READY, within its original timeout;
* an ``on_event`` that raises is logged and counted per event, never kills the link or the
  rest of the chunk; no coroutine is ever started on the caller's behalf.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import enum
import inspect
import itertools
import logging
import random
import secrets
from collections import deque
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Final

from panoramisk.message import Message  # type: ignore[import-untyped]

from telephony import actions
from telephony.actions import AmiAction
from telephony.errors import AmiActionFailed, AmiNotConnected, AmiTimeout, TelephonyError
from telephony.protocol import (
    AmiConnectionDropped,
    AmiProtocol,
    AmiResponse,
    LinkCounters,
    mask_digits,
)

log = logging.getLogger(__name__)

LOGOFF_TIMEOUT: Final = 1.0


class LinkState(str, enum.Enum):
    """Lifecycle of :class:`AmiLink`; transitions are guarded (:data:`_ALLOWED`)."""

    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"   # TCP connect, Login and on_ready() resync
    READY = "ready"
    CLOSED = "closed"


_ALLOWED: Final = {
    LinkState.DISCONNECTED: {LinkState.CONNECTING, LinkState.CLOSED},
    LinkState.CONNECTING: {LinkState.READY, LinkState.DISCONNECTED, LinkState.CLOSED},
    LinkState.READY: {LinkState.DISCONNECTED, LinkState.CLOSED},
    LinkState.CLOSED: set(),
}


class AmiLoginRejected(TelephonyError):
    """Asterisk answered the Login with an error (wrong user/secret, ACL)."""


class AmiLink:
    """Supervised AMI connection. Use as ``async with AmiLink(...) as link:``.

    ``on_event`` gets every event that is not part of a list response (including
    ``OriginateResponse``); it is called synchronously, in order, and must be quick.
    ``on_ready`` runs after each login, before the link reports READY: it may call
    :meth:`send` (the service resyncs with QueueStatus / CoreShowChannels there). If it raises,
    the connection is closed and retried with backoff.
    """

    def __init__(
        self, *, host: str, port: int, username: str, secret: str,
        on_event: Callable[[Message], None],
        on_ready: Callable[[], Awaitable[None]] | None = None,
        on_state_change: Callable[[LinkState], None] | None = None,
        connect_timeout: float = 5.0, action_timeout: float = 5.0,
        ping_interval: float = 10.0, ping_timeout: float = 5.0,
        backoff_initial: float = 0.5, backoff_max: float = 30.0, backoff_jitter: float = 0.2,
        max_message_bytes: int = 262144, rng: random.Random | None = None,
    ) -> None:
        if not 0 <= backoff_jitter < 1:
            raise ValueError("backoff_jitter must be in [0, 1)")
        if min(connect_timeout, action_timeout, ping_interval, ping_timeout,
               backoff_initial, backoff_max) <= 0:
            raise ValueError("timeouts, intervals and backoff delays must be > 0")
        self._host, self._port = host, port
        self._login = actions.login(username, secret)  # validated here, not at connect time
        self._on_event = on_event
        self._on_ready = on_ready
        self._on_state_change = on_state_change
        self._connect_timeout = connect_timeout
        self._action_timeout = action_timeout
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._backoff_jitter = backoff_jitter
        self._max_message_bytes = max_message_bytes
        self._rng = rng or random.Random()
        self.counters = LinkCounters()
        #: Last backoff delays slept, oldest first (bounded: the link runs for months).
        self.backoff_delays: deque[float] = deque(maxlen=100)
        self._state = LinkState.DISCONNECTED
        self._ready = asyncio.Event()
        self._protocol: AmiProtocol | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._closing = False
        self._ids = itertools.count(1)
        self._id_prefix = f"hl-{secrets.token_hex(3)}"
        # True inside on_ready() (and tasks it starts): send() is allowed before READY there.
        self._in_resync = contextvars.ContextVar(f"ami_resync_{id(self)}", default=False)

    # -- lifecycle -----------------------------------------------------------------------
    async def __aenter__(self) -> AmiLink:
        if self._supervisor is not None:
            raise RuntimeError("AmiLink can be entered once")
        self._supervisor = asyncio.create_task(self._supervise(), name="ami-link-supervisor")
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Logoff if logged in (short timeout), close the socket, stop every task."""
        if self._state is LinkState.CLOSED:
            return
        self._closing = True
        protocol = self._protocol
        if protocol is not None and protocol.is_open and self._state is LinkState.READY:
            try:
                await self._request(protocol, actions.logoff(),
                                    min(LOGOFF_TIMEOUT, self._action_timeout))
            except TelephonyError as exc:  # closing anyway; Asterisk drops the session too
                log.info("AMI Logoff not acknowledged (%s); closing", exc)
        if protocol is not None:
            protocol.close()
        if self._supervisor is not None:
            self._supervisor.cancel()
            try:
                await self._supervisor
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # our caller is being cancelled too: let it through
        if protocol is not None:
            # connection_lost runs on the next loop turns; wait so no socket outlives us.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(protocol.wait_closed(), LOGOFF_TIMEOUT)
        self._set_state(LinkState.CLOSED)

    @property
    def state(self) -> LinkState:
        return self._state

    @property
    def banner(self) -> str | None:
        """``Asterisk Call Manager/x.y.z`` of the current connection, if any."""
        return self._protocol.framer.banner if self._protocol is not None else None

    async def wait_ready(self, timeout: float) -> None:
        """Return when READY; :class:`AmiNotConnected` after ``timeout`` s or if closed."""
        if self._state is LinkState.CLOSED:
            raise AmiNotConnected("AMI 连接已关闭 (AMI link closed)")
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            raise AmiNotConnected(
                f"AMI 连接在 {timeout:g} 秒内未就绪 (AMI link not ready after {timeout:g}s, "
                f"state {self._state.value})") from None

    # -- actions -------------------------------------------------------------------------
    async def send(self, action: AmiAction, timeout: float | None = None) -> AmiResponse:
        """Send ``action`` and return Asterisk's response (with list events if any).

        Raises :class:`AmiNotConnected` if the link is not READY, :class:`AmiTimeout` if no
        response comes within ``timeout`` (default ``action_timeout``),
        :class:`AmiActionFailed` on ``Response: Error``, :class:`AmiActionLost` if the
        connection drops before a non-idempotent action is answered. An idempotent action
        whose connection drops is sent once more after the next READY if its time allows.
        """
        if not isinstance(action, AmiAction):
            raise TypeError(f"expected AmiAction, got {type(action).__name__}")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self._action_timeout if timeout is None else timeout)
        retried = False
        while True:
            protocol = self._usable_protocol(action)
            try:
                return await self._request(protocol, action, deadline - loop.time())
            except AmiConnectionDropped:
                if retried or self._in_resync.get() or self._closing:
                    raise
                retried = True
                log.info("AMI %s unanswered when the connection dropped; idempotent, will "
                         "retry once after reconnect", action.name)
            remaining = deadline - loop.time()
            try:
                await asyncio.wait_for(self._ready.wait(), max(remaining, 0))
            except TimeoutError:
                raise AmiNotConnected(
                    f"AMI 连接断开后未能在时限内恢复，{action.name} 未重试 (link not back in "
                    "time to retry)") from None

    def _usable_protocol(self, action: AmiAction) -> AmiProtocol:
        protocol = self._protocol
        allowed = self._state is LinkState.READY or self._in_resync.get()
        if not allowed or protocol is None or not protocol.is_open:
            raise AmiNotConnected(
                f"AMI 连接未就绪，{action.name} 未发送 (link {self._state.value}, not sent)")
        return protocol

    async def _request(self, protocol: AmiProtocol, action: AmiAction,
                       timeout: float) -> AmiResponse:
        action_id = f"{self._id_prefix}-{next(self._ids)}"
        future = protocol.submit(action, action_id)
        try:
            return await asyncio.wait_for(future, max(timeout, 0))
        except TimeoutError:
            raise AmiTimeout(
                f"Asterisk 未在 {timeout:.1f} 秒内应答 {action.name} (no response within "
                f"{timeout:.1f}s, ActionID {action_id})") from None
        finally:
            protocol.forget(action_id)

    # -- supervisor ----------------------------------------------------------------------
    async def _supervise(self) -> None:
        failures = 0
        first = True
        while not self._closing:
            if not first:
                failures += 1
                delay = self._backoff(failures)
                self.backoff_delays.append(delay)
                self.counters.reconnects += 1
                log.warning("AMI reconnect attempt %d to %s:%d in %.2fs (backoff up to %.1fs, "
                            "no attempt limit)", failures, self._host, self._port, delay,
                            self._backoff_max)
                await asyncio.sleep(delay)
            first = False
            self._set_state(LinkState.CONNECTING)
            try:
                protocol = await self._connect()
            except (OSError, TimeoutError, TelephonyError) as exc:
                log.warning("AMI connect to %s:%d failed: %s", self._host, self._port,
                            mask_digits(str(exc)) or type(exc).__name__)
                self._set_state(LinkState.DISCONNECTED)
                continue
            try:
                if await self._serve(protocol):
                    failures = 0  # a Pong proved the connection: start backoff afresh
            except Exception:
                # The supervisor must outlive any bug of one connection: log it loudly and
                # reconnect rather than leave the service without telephony.
                log.exception("AMI connection supervisor error; reconnecting")
            finally:
                protocol.abort()
                self._ready.clear()
                self._protocol = None
            if not self._closing:
                self._set_state(LinkState.DISCONNECTED)

    def _backoff(self, failures: int) -> float:
        base = min(self._backoff_max, self._backoff_initial * 2.0 ** (failures - 1))
        jitter = self._rng.uniform(-self._backoff_jitter, self._backoff_jitter)
        return min(self._backoff_max, base * (1 + jitter))

    async def _connect(self) -> AmiProtocol:
        """TCP connect and Login within ``connect_timeout``; the protocol is logged in."""
        loop = asyncio.get_running_loop()
        protocol: AmiProtocol | None = None
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, protocol = await loop.create_connection(
                    lambda: AmiProtocol(on_event=self._dispatch, counters=self.counters,
                                        max_message_bytes=self._max_message_bytes,
                                        on_lost=self._connection_lost),
                    self._host, self._port)
                try:
                    await self._request(protocol, self._login, self._connect_timeout)
                except AmiActionFailed as exc:
                    raise AmiLoginRejected(f"AMI 登录被拒绝 (login rejected): {exc.message}") \
                        from None
        except BaseException:
            if protocol is not None:
                protocol.abort()
            raise
        log.info("AMI logged in to %s:%d (%s)", self._host, self._port,
                 protocol.framer.banner or "no banner")
        self._protocol = protocol
        return protocol

    async def _serve(self, protocol: AmiProtocol) -> bool:
        """Resync, then READY until the connection ends. True if a Pong was seen."""
        proven: list[bool] = []
        async with asyncio.TaskGroup() as tg:
            watchdog = tg.create_task(self._watchdog(protocol, proven), name="ami-watchdog")
            resync = tg.create_task(self._resync(protocol), name="ami-resync")
            await protocol.wait_closed()
            # on_ready's work belonged to this connection; the next login resyncs again.
            resync.cancel()
            watchdog.cancel()
        return bool(proven)

    async def _resync(self, protocol: AmiProtocol) -> None:
        if self._on_ready is not None:
            self._in_resync.set(True)  # this task's own context copy: not seen elsewhere
            try:
                await self._on_ready()
            except Exception as exc:
                log.error("AMI on_ready (resync) failed, reconnecting: %s",
                          mask_digits(repr(exc)))
                protocol.abort()
                return
            finally:
                self._in_resync.set(False)
        if protocol.is_open and not self._closing:
            self._set_state(LinkState.READY)
            self._ready.set()

    async def _watchdog(self, protocol: AmiProtocol, proven: list[bool]) -> None:
        """Ping every ``ping_interval``; no Pong within ``ping_timeout`` → the peer is dead."""
        while protocol.is_open:
            try:
                await asyncio.wait_for(protocol.wait_closed(), self._ping_interval)
                return
            except TimeoutError:
                pass
            try:
                await self._request(protocol, actions.ping(), self._ping_timeout)
            except AmiTimeout:
                self.counters.watchdog_timeouts += 1
                log.warning("AMI Pong not received within %.1fs: connection presumed dead "
                            "(half-open TCP); closing it", self._ping_timeout)
                protocol.abort()
                return
            except (AmiNotConnected, AmiActionFailed) as exc:
                log.info("AMI Ping failed: %s", exc)
                return
            if not proven:
                proven.append(True)

    # -- callbacks -----------------------------------------------------------------------
    def _connection_lost(self) -> None:
        """Synchronously, from the protocol: a send woken by the drop must not see READY."""
        self._ready.clear()
        if self._state is LinkState.READY and not self._closing:
            self._set_state(LinkState.DISCONNECTED)

    def _dispatch(self, message: Message) -> None:
        try:
            result = self._on_event(message)
            if inspect.isawaitable(result):
                # Never fire-and-forget: an async handler is a wiring bug, not a task to run.
                if inspect.iscoroutine(result):
                    result.close()
                raise TypeError("on_event must be synchronous; it returned an awaitable")
        except Exception as exc:
            self.counters.handler_errors += 1
            log.error("AMI on_event raised for event %s: %s",
                      message.get("event", "?"), mask_digits(repr(exc)),
                      exc_info=self.counters.handler_errors <= 10)

    def _set_state(self, state: LinkState) -> None:
        if state is self._state:
            return
        if state not in _ALLOWED[self._state]:
            raise RuntimeError(f"illegal AMI link transition {self._state} -> {state}")
        log.info("AMI link %s -> %s", self._state.value, state.value)
        self._state = state
        if self._on_state_change is not None:
            try:
                self._on_state_change(state)
            except Exception as exc:
                self.counters.handler_errors += 1
                log.error("AMI on_state_change raised for %s: %r", state.value, exc)
