"""A real MLLP receiver for the HL7 tests: python-hl7's asyncio MLLP server on 127.0.0.1, parsing every
message it gets and answering as a test tells it (AA, AE/AR with a text, an ACK naming another message
id, no answer until the message comes again, or dropping the connection)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any, Callable

import hl7
import hl7.mllp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Listener:
    """``answer(msg, listener) -> str | None``: the ACK code to send (None: hold the answer until
    ``release`` is set; "DROP": close the connection without answering; "WRONG": an AA naming
    another message id). ``messages``: every message received (duplicates included)."""

    def __init__(self, *, port: int = 0, answer: Callable[[Any, "Listener"], str | None] | str = "AA",
                 text: str = "") -> None:
        self.port = port
        self.answer = answer
        self.text = text
        self.messages: list[Any] = []
        self.got = asyncio.Event()
        self.release = asyncio.Event()
        self.server: Any = None
        self._writers: set[Any] = set()

    async def __aenter__(self) -> "Listener":
        self.server = await hl7.mllp.start_hl7_server(self._serve, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        """Close the server and every open connection (a receiver killed mid-run)."""
        if self.server is None:
            return
        self.server.close()
        for w in list(self._writers):
            w.close()
        await self.server.wait_closed()
        self.server = None

    @property
    def ids(self) -> list[str]:
        return [str(m.segment("MSH")[10]) for m in self.messages]

    async def wait_count(self, n: int, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while len(self.messages) < n:
                self.got.clear()
                await self.got.wait()

    async def wait_ids(self, ids: set[str], timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while not ids <= set(self.ids):
                self.got.clear()
                await self.got.wait()

    async def _serve(self, reader: Any, writer: Any) -> None:
        self._writers.add(writer)
        try:
            while not reader.at_eof():
                msg = await reader.readmessage()
                self.messages.append(msg)
                self.got.set()
                code = self.answer(msg, self) if callable(self.answer) else self.answer
                if code is None:
                    await self.release.wait()
                    code = "AA"
                if code == "DROP":
                    return
                if code == "WRONG":
                    segs = str(msg.create_ack(ack_code="AA", message_id="X")).split("\r")
                    wrong = "not-" + str(msg.segment("MSH")[10])
                    ack = hl7.parse("\r".join(s if not s.startswith("MSA") else f"MSA|AA|{wrong}" for s in segs))
                else:
                    ack = msg.create_ack(ack_code=code, message_id="A" + str(msg.segment("MSH")[10])[:18])
                    if self.text and code != "AA":
                        ack = hl7.parse(str(ack).rstrip("\r") + f"\rERR|||207^Application internal error^HL70357|E||||{self.text}")
                writer.writemessage(ack)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
