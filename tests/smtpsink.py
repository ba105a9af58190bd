"""A minimal SMTP server on 127.0.0.1 that keeps every message it is given.

It speaks the plain dialogue of RFC 5321 that a client without TLS needs (EHLO/HELO, MAIL,
RCPT, DATA with dot-unstuffing, RSET, NOOP, QUIT) and nothing else. It runs its own event loop
in a thread, so sync and async tests can both use it.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field


@dataclass
class Mail:
    sender: str
    recipients: list[str]
    data: bytes  # the message as sent, line ends CRLF, dots unstuffed


@dataclass
class SmtpSink:
    host: str = "127.0.0.1"
    mails: list[Mail] = field(default_factory=list)
    port: int = 0

    def __post_init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._session, self.host, 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        def say(line: str) -> None:
            writer.write(line.encode("ascii") + b"\r\n")

        sender, recipients = "", []
        try:
            say("220 sink ESMTP")
            while True:
                line = (await asyncio.wait_for(reader.readline(), 10)).rstrip(b"\r\n")
                if not line:
                    break
                verb = line.split(b" ", 1)[0].upper()
                arg = line[len(verb):].strip().decode("utf-8", "replace")
                if verb == b"EHLO":
                    say("250-sink")
                    say("250 8BITMIME")
                elif verb == b"HELO" or verb == b"NOOP":
                    say("250 ok")
                elif verb == b"MAIL":
                    sender, recipients = arg.split(":", 1)[1].strip().split(" ")[0].strip("<>"), []
                    say("250 ok")
                elif verb == b"RCPT":
                    recipients.append(arg.split(":", 1)[1].strip().strip("<>"))
                    say("250 ok")
                elif verb == b"DATA":
                    say("354 end with <CRLF>.<CRLF>")
                    await writer.drain()
                    lines = []
                    while True:
                        got = await asyncio.wait_for(reader.readline(), 10)
                        if got in (b".\r\n", b""):
                            break
                        lines.append(got[1:] if got.startswith(b"..") else got)
                    self.mails.append(Mail(sender, recipients, b"".join(lines)))
                    say("250 queued")
                elif verb == b"RSET":
                    sender, recipients = "", []
                    say("250 ok")
                elif verb == b"QUIT":
                    say("221 bye")
                    await writer.drain()
                    break
                else:
                    say("502 command not implemented")
                await writer.drain()
        except (asyncio.TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def __enter__(self) -> "SmtpSink":
        self._thread.start()
        self._ready.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
