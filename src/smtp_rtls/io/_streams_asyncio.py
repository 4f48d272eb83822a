"""asyncio stream pairs whose reads go into one reused buffer.

``asyncio.open_connection`` gives a protocol that asyncio's selector
transport feeds with a fresh bytes of its ``max_size`` (256 KiB) per
``recv()``, shrunk to what came.  glibc serves an allocation that large with
``mmap``, ``mremap`` and ``munmap`` (one of each per read) unless its
dynamic mmap threshold happened to be raised earlier in the process, so a
client paid 40-60 us more per read or not depending on start-up (on the hash
seed, in ``bench/suite``).  A buffered protocol reads into one buffer and
copies out what came: always the cheap case.
"""

from __future__ import annotations

import asyncio
import ssl

__all__ = ["READ_SIZE", "open_connection"]

READ_SIZE = 65536


class _BufferedStreamProtocol(asyncio.StreamReaderProtocol, asyncio.BufferedProtocol):
    """A StreamReaderProtocol fed by buffered reads (TLS too: asyncio's and
    uvloop's SSL protocols fill buffered application protocols)."""

    def __init__(self, reader: asyncio.StreamReader, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(reader, loop=loop)
        self._read_buffer = memoryview(bytearray(READ_SIZE))

    def get_buffer(self, sizehint: int) -> memoryview:
        """The one buffer every read of this connection goes into."""
        return self._read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        """Hand what came to the stream reader, copied out of the buffer."""
        self.data_received(self._read_buffer[:nbytes].tobytes())


async def open_connection(
    host: str,
    port: int,
    *,
    ssl: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """What :func:`asyncio.open_connection` gives, with buffered reads."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(loop=loop)
    protocol = _BufferedStreamProtocol(reader, loop)
    transport, _ = await loop.create_connection(
        lambda: protocol, host, port, ssl=ssl, server_hostname=server_hostname
    )
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)
