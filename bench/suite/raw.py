"""The raw responder: the least an asyncio SMTP server can do, the suite's reference (1.0).

One ``asyncio.BufferedProtocol`` per connection, canned replies, no parsing
beyond the verb, the end of the content found with one ``bytes.find(b"\\r\\n.\\r\\n")``
per read over what arrived (plus the four octets before it, where the end
may have started), the content dropped as it arrives.  Pipelined commands
are answered in one write per read.  STARTTLS goes through
``loop.start_tls``.  It is also the sink the client benchmarks send to;
there it may offer CHUNKING (RFC 3030), as Postfix and Exim do, and then
skips each BDAT chunk by its size.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import cast

from .common import END_OF_DATA, IO_TIMEOUT, SERVER_NAME

_GREETING = f"220 {SERVER_NAME} ESMTP raw\r\n".encode()
_OK = b"250 2.0.0 OK\r\n"
_QUEUED = b"250 2.0.0 queued\r\n"
_GO = b"354 go ahead\r\n"
_BYE = b"221 2.0.0 bye\r\n"
_READY = b"220 2.0.0 ready for TLS\r\n"
_UNKNOWN = b"500 5.5.2 unknown command\r\n"
_TOO_LONG = b"500 5.5.6 line too long\r\n"
_HELO = f"250 {SERVER_NAME}\r\n".encode()
#: A command line longer than this without its CRLF ends the session (bounded memory).
_MAX_LINE = 4096
# Reads go into one buffer per process and are copied out, as smtp_rtls's
# asyncio server does: a plain Protocol gets a fresh 256 KiB bytes per read
# from asyncio, which costs an mmap, mremap and munmap per read in some
# processes and not in others (docs/performance.rst), so the reference's
# own speed was a lottery.  64 KiB copies stay under glibc's mmap threshold.
_READ_SIZE = 64 * 1024
_BUFFER = bytearray(_READ_SIZE)
_VIEW = memoryview(_BUFFER)


def _ehlo_reply(starttls: bool, chunking: bool = False) -> bytes:
    lines = [SERVER_NAME, "PIPELINING", "8BITMIME", "SIZE 67108864"]
    if starttls:
        lines.append("STARTTLS")
    if chunking:
        lines.append("CHUNKING")
    out = [f"250-{line}\r\n" for line in lines[:-1]] + [f"250 {lines[-1]}\r\n"]
    return "".join(out).encode()


_EHLO_PLAIN = _ehlo_reply(False)
_EHLO_TLS = _ehlo_reply(True)
_EHLO_CHUNKING = _ehlo_reply(False, chunking=True)


class Counter:
    """Messages accepted by every connection of this process."""

    def __init__(self) -> None:
        self.messages = 0


class RawResponder(asyncio.BufferedProtocol):
    """One connection of the raw responder."""

    def __init__(
        self, counter: Counter, tls: ssl.SSLContext | None, chunking: bool = False
    ) -> None:
        self.counter = counter
        self.tls = tls
        self.ehlo = _EHLO_CHUNKING if chunking else _EHLO_PLAIN
        # octets of the current BDAT chunk still to skip, and its reply
        self.chunk_left = 0
        self.chunk_reply = _OK
        self.tls_on = False
        # between STARTTLS and the end of the handshake: the TLS layer may
        # hand us the client's EHLO before start_tls() has returned the new
        # transport, and a reply written then would go out in plaintext
        self.upgrading = False
        self.transport: asyncio.Transport | None = None
        self.in_data = False
        # In command mode: a partial command line; in DATA: the last four
        # octets seen, where CRLF "." CRLF may have begun.
        self.pending = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Greet."""
        # uvloop's transports are not asyncio.Transport subclasses: no isinstance()
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(_GREETING)

    def get_buffer(self, sizehint: int) -> memoryview:
        """The process's one read buffer."""
        return _VIEW

    def buffer_updated(self, nbytes: int) -> None:
        """What arrived, copied out of the buffer."""
        self.data_received(_VIEW[:nbytes].tobytes())

    def data_received(self, data: bytes) -> None:
        """Answer every complete command and find the end of the content."""
        transport = self.transport
        assert transport is not None
        if self.upgrading:
            self.pending += data
            return
        buf = self.pending + data if self.pending else data
        pos = 0
        out: list[bytes] = []
        size = len(buf)
        # bounded: every pass consumes a line or the end of the content, or leaves
        while pos < size:
            if self.in_data:
                if self.chunk_left:
                    # a BDAT chunk (looked at only in content: the DATA
                    # path, the servers' reference, pays nothing for it)
                    take = min(self.chunk_left, size - pos)
                    self.chunk_left -= take
                    pos += take
                    if not self.chunk_left:
                        self.in_data = False
                        out.append(self.chunk_reply)
                    continue
                end = buf.find(END_OF_DATA, pos)
                if end < 0:
                    self.pending = buf[max(pos, size - 4) :]
                    break
                self.in_data = False
                self.counter.messages += 1
                out.append(_QUEUED)
                pos = end + 5
                continue
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                self.pending = buf[pos:]
                if len(self.pending) > _MAX_LINE:
                    out.append(_TOO_LONG)
                    transport.write(b"".join(out))
                    transport.close()
                    return
                break
            verb = buf[pos : pos + 4].upper()
            if verb in (b"MAIL", b"RCPT", b"RSET", b"NOOP"):
                out.append(_OK)
                pos = eol + 2
            elif verb == b"DATA":
                out.append(_GO)
                self.in_data = True
                # The content's end may be the CRLF of this very line
                # followed by ".\r\n" (an empty message), so search from it.
                pos = eol
            elif verb == b"BDAT":
                words = buf[pos:eol].split()
                last = len(words) == 3 and words[2].upper() == b"LAST"
                if len(words) != 2 + last or not words[1].isdigit():
                    out.append(_UNKNOWN)
                else:
                    self.chunk_left = int(words[1])
                    self.chunk_reply = _QUEUED if last else _OK
                    if last:
                        self.counter.messages += 1
                    if self.chunk_left:
                        self.in_data = True
                    else:
                        out.append(self.chunk_reply)
                pos = eol + 2
            elif verb == b"EHLO":
                out.append(_EHLO_TLS if self.tls and not self.tls_on else self.ehlo)
                pos = eol + 2
            elif verb == b"HELO":
                out.append(_HELO)
                pos = eol + 2
            elif verb == b"QUIT":
                out.append(_BYE)
                transport.write(b"".join(out))
                transport.close()
                return
            elif verb == b"STAR" and self.tls is not None and not self.tls_on:
                out.append(_READY)
                transport.write(b"".join(out))
                self.pending = b""
                self.upgrading = True
                # The client sends nothing more before its ClientHello.
                asyncio.get_running_loop().create_task(self._upgrade())
                return
            else:
                out.append(_UNKNOWN)
                pos = eol + 2
        else:
            self.pending = b""
        if out:
            transport.write(b"".join(out))

    async def _upgrade(self) -> None:
        """The server side of the handshake, then a fresh session (RFC 3207 §4.2)."""
        transport = self.transport
        assert transport is not None and self.tls is not None
        loop = asyncio.get_running_loop()
        try:
            new = await loop.start_tls(
                transport, self, self.tls, server_side=True, ssl_handshake_timeout=IO_TIMEOUT
            )
        except (OSError, ssl.SSLError, ConnectionError, TimeoutError):
            transport.abort()
            return
        self.transport = cast(asyncio.Transport, new)
        self.tls_on = True
        self.in_data = False
        self.chunk_left = 0
        self.upgrading = False
        if self.pending:
            self.data_received(b"")

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the transport."""
        self.transport = None


async def serve_raw(
    counter: Counter, host: str, port: int, tls: ssl.SSLContext | None, chunking: bool = False
) -> asyncio.Server:
    """Listen on ``host``:``port`` with the raw responder (offering CHUNKING if asked)."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: RawResponder(counter, tls, chunking), host, port)
