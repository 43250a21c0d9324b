"""One AMI client connection, and what the action handler needs of the server holding them.

Its own module so that :mod:`~telephony.simulator.actions` (which the server builds) can name
both without importing :mod:`~telephony.simulator.server` back.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Protocol

from telephony.simulator.wire import Fields


@dataclass(eq=False)
class Session:
    """One AMI client connection."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    session_id: str
    started: float
    logged_in: bool = False
    username: str = ""
    pending: list[Fields] = field(default_factory=list)

    @property
    def remote(self) -> str:
        """``IPV4/TCP/host/port`` of the client."""
        peer = self.writer.get_extra_info("peername") or ("127.0.0.1", 0)
        return f"IPV4/TCP/{peer[0]}/{peer[1]}"

    @property
    def local(self) -> str:
        """``IPV4/TCP/host/port`` of the server side."""
        sock = self.writer.get_extra_info("sockname") or ("127.0.0.1", 0)
        return f"IPV4/TCP/{sock[0]}/{sock[1]}"


class SessionHost(Protocol):
    """The AMI server side of a session: credentials, uptime, output
    (:class:`~telephony.simulator.server.PbxSimulator`)."""

    @property
    def username(self) -> str:
        """The one AMI account's user name."""
        ...

    @property
    def secret(self) -> str:
        """The one AMI account's secret."""
        ...

    @property
    def uptime(self) -> int:
        """Seconds since (simulated) boot."""
        ...

    def send(self, session: Session, msg: Fields) -> None:
        """Queue a response for one client."""
        ...

    def end_session(self, session: Session) -> None:
        """Flush what is pending for ``session`` and close it."""
        ...
