"""A raw AMI test client over asyncio streams (the service's link is not used on purpose)."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from collections.abc import AsyncIterator

Msg = dict[str, str]


class RawAmi:
    """Reads whole messages; sends actions built from keyword fields."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._n = 0

    async def read(self) -> Msg:
        """The next message (raises IncompleteReadError at EOF)."""
        block = await self.reader.readuntil(b"\r\n\r\n")
        out: Msg = {}
        for line in block.decode().split("\r\n"):
            if line:
                k, _, v = line.partition(": ")
                out.setdefault(k, v)
        return out

    async def action(self, name: str, **fields: str) -> str:
        """Send an action; returns its ActionID."""
        self._n += 1
        aid = f"t-{self._n}"
        text = f"Action: {name}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items())
        self.writer.write((text + f"ActionID: {aid}\r\n\r\n").encode())
        await self.writer.drain()
        return aid

    async def response(self, aid: str) -> Msg:
        """Skip events until the response to ``aid``."""
        while True:
            msg = await self.read()
            if "Response" in msg and msg.get("ActionID") == aid:
                return msg

    async def login(self, secret: str = "hotline-secret") -> Msg:
        """Log in as ``hotline``."""
        return await self.response(await self.action("Login", Username="hotline", Secret=secret))


@asynccontextmanager
async def ami_client(port: int, login: bool = True) -> AsyncIterator[RawAmi]:
    """Connected (and logged-in) raw client, closed on exit."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        assert await reader.readline() == b"Asterisk Call Manager/11.0.0\r\n"
        client = RawAmi(reader, writer)
        if login:
            assert (await client.login())["Response"] == "Success"
        yield client
    finally:
        writer.close()
