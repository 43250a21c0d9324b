"""Trace replay AMI server: plays a recorded Asterisk session back over a real TCP socket.

Each connection walks the trace (``shared/ami-traces/*.jsonl``: ``t``, ``dir``, ``text``) in
order. A ``received`` line (Asterisk → client) is written to the client; a ``sent`` line
(client → Asterisk) waits for the client's next action. The n-th action the client sends is
matched with the n-th recorded one, and every later recorded message carrying that recorded
ActionID (the response, list events, ``OriginateResponse``) gets the client's ActionID
instead. ``Ping`` and ``Logoff`` are answered by the server itself (recorded ones are skipped),
so a link's watchdog and its shutdown work whatever the trace holds.

Faults for tests: :meth:`ReplayServer.inject` (raw bytes), :meth:`ReplayServer.drop`
(optionally after half a message), :meth:`ReplayServer.go_silent` (half-open: the socket stays
open, nothing is answered), :meth:`ReplayServer.refuse` (stop listening: connection refused).
``tail`` streams extra raw chunks after the trace as fast as the client reads (benchmarks).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Protocol

log = logging.getLogger(__name__)

_ACTION_ID = re.compile(r"^(ActionID: *)([^\r\n]*)", re.MULTILINE | re.IGNORECASE)
_ACTION = re.compile(r"^Action: *(.*?)\r?$", re.MULTILINE | re.IGNORECASE)


class TraceEntry(Protocol):
    """One recorded line (``tests/conftest.py``'s ``TraceLine`` fits)."""

    @property
    def t(self) -> float: ...
    @property
    def dir(self) -> str: ...
    @property
    def text(self) -> str: ...


@dataclass(frozen=True)
class RecordedLine:
    """A trace line: seconds since the session start, ``sent``/``received``, raw AMI text."""

    t: float
    dir: str
    text: str


def load_trace(path: str | Path) -> list[RecordedLine]:
    """Read a ``.jsonl`` trace file."""
    with Path(path).open(encoding="utf-8") as fh:
        return [RecordedLine(**json.loads(line)) for line in fh if line.strip()]


def serialise(fields: Iterable[tuple[str, str]]) -> bytes:
    """One AMI message exactly as Asterisk writes it: ``Key: Value`` CRLF lines, blank line."""
    return ("".join(f"{k}: {v}\r\n" for k, v in fields) + "\r\n").encode("utf-8")


def header(text: str, name: str) -> str | None:
    """First value of header ``name`` in raw message ``text`` (case-insensitive)."""
    match = re.search(rf"^{re.escape(name)}: *(.*?)\r?$", text, re.MULTILINE | re.IGNORECASE)
    return match.group(1) if match else None


@dataclass(frozen=True)
class ReceivedAction:
    """An action the server read from a client."""

    connection: int   # 1 for the first connection, 2 after a reconnect ...
    name: str
    action_id: str | None
    text: str


@dataclass
class _Conn:
    number: int
    writer: asyncio.StreamWriter
    actions: asyncio.Queue[ReceivedAction] = field(default_factory=asyncio.Queue)
    silent: bool = False


class ReplayServer:
    """Replays a trace to every client; ``async with ReplayServer(trace) as server:``.

    ``pace``: ``None`` writes as fast as the client reads; a number scales the recorded ``t``
    gaps (``0.1`` = ten times faster). ``tail``: called once per connection after the trace,
    its chunks are written with back-pressure. Assign :attr:`trace` to change what the next
    connection replays.
    """

    def __init__(self, trace: Sequence[TraceEntry], *, host: str = "127.0.0.1", port: int = 0,
                 pace: float | None = None,
                 tail: Callable[[], Iterable[bytes]] | None = None) -> None:
        self.trace = trace
        self.host = host
        self._port = port
        self.pace = pace
        self.tail = tail
        self.received: list[ReceivedAction] = []
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._conns: dict[int, _Conn] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Condition()

    async def __aenter__(self) -> ReplayServer:
        await self._listen()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.refuse()
        for conn in list(self._conns.values()):
            conn.writer.transport.abort()
        # Not task.cancel(): asyncio's stream callback logs a cancelled client task as an
        # error. An aborted socket ends the reader, which ends the task.
        if self._tasks:
            _, stuck = await asyncio.wait(self._tasks, timeout=2.0)
            for task in stuck:
                task.cancel()

    @property
    def port(self) -> int:
        """The listening port (the free one chosen when constructed with ``port=0``)."""
        return self._port

    # -- faults --------------------------------------------------------------------------
    async def refuse(self) -> None:
        """Stop listening: new connections are refused (open ones are kept)."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def accept(self) -> None:
        """Listen again on the same port after :meth:`refuse`."""
        if self._server is None:
            await self._listen()

    def inject(self, data: bytes) -> None:
        """Write raw bytes to every open connection, now, between whole messages."""
        for conn in self._conns.values():
            conn.writer.write(data)

    def drop(self, partial: bytes = b"") -> None:
        """Write ``partial`` (e.g. half a message) then close every open connection."""
        for conn in list(self._conns.values()):
            if partial:
                conn.writer.write(partial)
            conn.writer.close()

    def go_silent(self) -> None:
        """Half-open: open connections stay open but nothing more is written or answered."""
        for conn in self._conns.values():
            conn.silent = True

    async def wait_for(self, predicate: Callable[[ReplayServer], bool],
                       timeout: float = 5.0) -> None:
        """Wait until ``predicate(self)`` holds (checked on each connection or action)."""
        async with asyncio.timeout(timeout):
            async with self._changed:
                await self._changed.wait_for(lambda: predicate(self))

    def actions_named(self, name: str) -> list[ReceivedAction]:
        """Actions received so far with this name (case-insensitive), every connection."""
        return [a for a in self.received if a.name.lower() == name.lower()]

    # -- internals -----------------------------------------------------------------------
    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._on_client, self.host, self._port)
        self._port = self._server.sockets[0].getsockname()[1]

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _on_client(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        conn = _Conn(self.connections, writer)
        self._conns[conn.number] = conn
        await self._notify()
        try:
            async with asyncio.TaskGroup() as tg:
                play = tg.create_task(self._play(conn))
                await self._read(conn, reader)
                play.cancel()
        except* (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._conns.pop(conn.number, None)
            writer.transport.abort()
            self._tasks.discard(task)

    async def _read(self, conn: _Conn, reader: asyncio.StreamReader) -> None:
        """Read actions until EOF; answer Pings; queue the rest for :meth:`_play`."""
        while True:
            try:
                block = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return
            text = block.decode("utf-8", "replace")
            name = (m.group(1) if (m := _ACTION.search(text)) else "").strip()
            action_id = header(text, "ActionID")
            action = ReceivedAction(conn.number, name, action_id, text)
            self.received.append(action)
            await self._notify()
            if conn.silent:
                continue
            if name.lower() == "ping":
                conn.writer.write(serialise([
                    ("Response", "Success"), ("ActionID", action_id or ""), ("Ping", "Pong"),
                    ("Timestamp", f"{time.time():.6f}")]))
            elif name.lower() == "logoff":
                # What Asterisk 22 answers, then it closes the session.
                conn.writer.write(serialise([
                    ("Response", "Goodbye"), ("ActionID", action_id or ""),
                    ("Message", "Thanks for all the fish.")]))
                conn.writer.close()
                return
            else:
                conn.actions.put_nowait(action)

    async def _play(self, conn: _Conn) -> None:
        ids: dict[str, str] = {}
        start = asyncio.get_running_loop().time()
        for line in self.trace:
            if line.dir == "sent":
                recorded = header(line.text, "Action") or ""
                if recorded.lower() in ("ping", "logoff"):
                    continue  # answered by _read, whatever the trace holds
                action = await conn.actions.get()
                if action.name.lower() != recorded.lower():
                    log.warning("replay: client sent %s where the trace has %s",
                                action.name, recorded)
                old = header(line.text, "ActionID")
                if old is not None and action.action_id is not None:
                    ids[old] = action.action_id
                continue
            if self.pace is not None:
                delay = start + line.t * self.pace - asyncio.get_running_loop().time()
                if delay > 0:
                    await asyncio.sleep(delay)
            if conn.silent:
                return
            text = _ACTION_ID.sub(lambda m: m.group(1) + ids.get(m.group(2), m.group(2)),
                                  line.text)
            conn.writer.write(text.encode("utf-8"))
            await conn.writer.drain()
        if self.tail is not None:
            for chunk in self.tail():
                if conn.silent:
                    return
                conn.writer.write(chunk)
                await conn.writer.drain()
