"""Receive mail with the trio adapter, in a nursery.

Run:  python receive_trio.py [PORT]
It stores nothing (a counting sink) and stops after one message.
"""

import sys

import trio

from smtp_rtls.handlers import Sink
from smtp_rtls.io import trio as smtp_trio


async def main(port: int) -> None:
    sink = Sink()
    async with trio.open_nursery() as nursery:
        server = await nursery.start(smtp_trio.serve, sink, "127.0.0.1", port)
        print(f"listening on {server.address[0]}:{server.port}", flush=True)
        with trio.move_on_after(30):
            while not sink.messages:
                await trio.sleep(0.05)
        await server.shutdown(deadline=5)  # stop accepting, let sessions finish
        nursery.cancel_scope.cancel()
    print("messages:", sink.messages, "octets:", sink.octets)


trio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 2525)
