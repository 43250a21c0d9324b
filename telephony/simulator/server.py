"""``PbxSimulator``: an asyncio TCP server speaking AMI like Asterisk 22.5 (see traces)."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Coroutine, Iterable
from types import TracebackType
from typing import Any, Self

from telephony.simulator.actions import ActionHandler
from telephony.simulator.core import SimClock
from telephony.simulator.dialplan import Dialplan
from telephony.simulator.engine import Engine
from telephony.simulator.queues import Member, QueueState, Strategy
from telephony.simulator.session import Session
from telephony.simulator.traffic import Traffic, TrafficConfig
from telephony.simulator.transfers import Transfers
from telephony.simulator.wire import BANNER, Fields, encode, parse_block


class PbxSimulator:
    """Simulated Asterisk: AMI server, dialplan, queue ``12345``, faults.

    Use as ``async with PbxSimulator(port=0) as pbx: ... pbx.port``.
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, username: str = "hotline",
                 secret: str = "hotline-secret", time_scale: float = 1.0,
                 seed: int | None = None, queue_options: str = "t",
                 strategy: Strategy = "rrmemory", ring_timeout: float = 15.0,
                 retry: float = 1.0, wrapuptime: float = 2.0,
                 queues: Iterable[str] = ("12345",), start_epoch: float | None = None,
                 traffic: TrafficConfig | None = None) -> None:
        self.host = host
        self.port = port
        self.username = username
        self.secret = secret
        self.clock = SimClock(time_scale, start_epoch)
        self.rng = random.Random(seed)
        self._queue_cfg = dict(strategy=strategy, timeout=ring_timeout, retry=retry,
                               wrapuptime=wrapuptime)
        self._queue_names = tuple(queues)
        self._queue_options = queue_options
        self._sessions: set[Session] = set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._flush_scheduled = False
        self._silent = False
        self._boot = self.clock.now()
        self._session_seq = 0
        self._new_engine()
        self.traffic = Traffic(self.dialplan, traffic or TrafficConfig())

    def _new_engine(self) -> None:
        queues = {n: QueueState(n, **self._queue_cfg) for n in self._queue_names}  # type: ignore[arg-type]
        self.engine = Engine(self.clock, self.rng, self._broadcast, queues)
        self.dialplan = Dialplan(self.engine, self._queue_options)
        self.transfers = Transfers(self.dialplan)
        self.actions = ActionHandler(self, self.dialplan, self.transfers)

    # ------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> Self:
        await self.start_listening()
        self._spawn(self.dialplan.q.run())
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop listening, drop clients, cancel every simulated call."""
        await self.traffic.stop()
        await self.stop_listening()
        self.drop_connections()
        await self.engine.cancel_all()
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.engine.failures:
            raise RuntimeError("simulated call crashed") from self.engine.failures[0]

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ------------------------------------------------------------ faults
    async def start_listening(self) -> None:
        """Accept connections (again) on ``host``/``port`` (port 0 picks a free one once)."""
        if self._server is not None:
            return
        self._server = await asyncio.start_server(self._client, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop_listening(self) -> None:
        """Refuse new connections; existing ones stay up."""
        if self._server is not None:
            self._server.close()
            self._server = None

    def drop_connections(self) -> None:
        """Abort every client connection (RST where the OS allows)."""
        for s in list(self._sessions):
            s.writer.transport.abort()
        self._sessions.clear()

    def go_silent(self) -> None:
        """Half-open link: keep sockets open, answer nothing, send nothing."""
        self._silent = True
        for s in self._sessions:
            s.pending.clear()

    def resume(self) -> None:
        """Undo :meth:`go_silent` (what was held back is lost, as on a real dead link)."""
        self._silent = False

    async def restart(self) -> None:
        """Like an Asterisk restart: clients dropped, all calls and members lost."""
        self.drop_connections()
        await self.engine.cancel_all()
        self.engine.restart()
        self.dialplan.q.rings.clear()
        self.dialplan.q.calls.clear()
        self._boot = self.clock.now()

    async def core_stop_now(self) -> None:
        """Like ``core stop now``: an orderly stop, then nothing listens until
        :meth:`start_listening` (Asterisk started again: no calls, no members).

        Measured on the real Asterisk 22.5 (one caller bridged with a seat, two waiting):
        ``SoftHangupRequest`` (cause 4) of every channel; each waiting caller's ``;2`` hangs
        up (cause 0), then ``QueueCallerAbandon`` and ``QueueCallerLeave`` of the caller, whose
        ``;1`` hangs up with ``Cause: 0`` (a citizen hanging up gives 16); a bridged call ends
        as when the caller hangs up (``AgentComplete Reason: caller``); last ``Shutdown``
        (``Shutdown: Cleanly``, ``Restart: False``, class system), and the AMI connections
        close. The bridged call's hang-ups here keep the simulator's usual causes (16): the
        real one mixes 0 and 16.
        """
        e = self.engine
        d = self.dialplan
        for ch in list(e.channels.values()):
            e.soft_hangup_request(ch, 4)
        for q in e.queues.values():
            for caller in list(q.callers):
                one, two = caller.channel, caller.channel.peer
                if two is not None and not two.hungup:
                    e.soft_hangup_request(two)
                    e.hangup_request(one, 0)
                    e.hangup(two, 0)
                d.q.abandon(q, caller)
                e.soft_hangup_request(one)
                e.hangup(one, 0)
        for call in {id(c): c for c in d.q.calls.values()}.values():
            two = call.caller.peer
            if not call.done and two is not None and not two.hungup:
                d.hangup_app(two, newexten=False)
        for ch in list(e.channels.values()):
            e.hangup(ch, 0)
        e.emit("Shutdown", "system,all", [("Shutdown", "Cleanly"), ("Restart", "False")])
        self._flush()
        await self.stop_listening()
        for s in list(self._sessions):
            s.writer.close()
        self._sessions.clear()
        await e.cancel_all()
        e.restart()
        d.q.rings.clear()
        d.q.calls.clear()
        self._boot = self.clock.now()

    def set_global(self, name: str, value: str) -> None:
        """``dialplan set global``: ``DEPT_TALK_<number>`` (seconds, or ``busy``) and
        ``DEPT_TALK`` set how a department answers a consultation (see
        :meth:`Transfers.atxfer <telephony.simulator.transfers.Transfers.atxfer>`)."""
        self.engine.globals[name] = value

    @property
    def uptime(self) -> int:
        """Seconds since (simulated) boot, for FullyBooted."""
        return max(1, int(self.clock.now() - self._boot))

    # ------------------------------------------------------------ output
    def _broadcast(self, msg: Fields) -> None:
        if self._silent:
            return
        for s in self._sessions:
            if s.logged_in:
                s.pending.append(msg)
        self._schedule_flush()

    def send(self, session: Session, msg: Fields) -> None:
        """Queue a response for one client (written with the current batch)."""
        if self._silent:
            return
        session.pending.append(msg)
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """One write per client per loop step: a whole call step in one syscall."""
        self._flush_scheduled = False
        for s in list(self._sessions):
            if s.pending:
                data = encode(s.pending)
                s.pending.clear()
                if not s.writer.is_closing():
                    s.writer.write(data)

    # ------------------------------------------------------------ clients
    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._session_seq += 1
        sess = Session(reader, writer, f"0x{0x7f0000001000 + self._session_seq * 0x10:x}",
                      self.clock.now())
        self._sessions.add(sess)
        writer.write(BANNER)
        try:
            while True:
                block = await reader.readuntil(b"\r\n\r\n")
                if self._silent:
                    continue
                fields = parse_block(block)
                if fields:
                    await self.actions.handle(sess, fields)
                if sess not in self._sessions:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            self._sessions.discard(sess)
            with contextlib.suppress(Exception):
                self._flush_pending(sess)
                writer.close()

    def _flush_pending(self, sess: Session) -> None:
        if sess.pending and not sess.writer.is_closing():
            sess.writer.write(encode(sess.pending))
            sess.pending.clear()

    def end_session(self, sess: Session) -> None:
        """Logoff: flush the Goodbye and close."""
        self._flush_pending(sess)
        self._sessions.discard(sess)
        sess.writer.close()

    # ------------------------------------------------------------ Python API
    def add_seat(self, interface: str, name: str, queue: str = "12345") -> None:
        """Add a member as QueueAdd would (for the standalone CLI's ``--seats``)."""
        self.dialplan.q.add_seat(interface, name, queue)

    def set_paused(self, member: Member, paused: bool, reason: str = "") -> None:
        """Pause/unpause a member as QueuePause does."""
        self.dialplan.q.set_paused(member, paused, reason)

    def add_caller(self, number: str, *, talk: float = 60.0, patience: float | None = None,
                   speech: str = "silence/1", context: str = "incoming") -> str:
        """Originate one simulated citizen into ``context`` (no AMI client needed).

        Returns the caller's queue-side channel name. ``patience`` (simulated seconds) makes
        the caller hang up if still waiting in the queue by then.
        """
        return self.dialplan.add_caller(number, talk=talk, patience=patience, speech=speech,
                                        context=context)
