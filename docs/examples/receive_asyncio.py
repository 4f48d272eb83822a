"""Receive mail with the asyncio adapter and a handler of your own.

Run:  python receive_asyncio.py [PORT]
It refuses one recipient, counts the messages it accepts, and stops after one.
"""

import asyncio
import sys

from smtp_rtls import Reply
from smtp_rtls.handlers import Sink
from smtp_rtls.io import asyncio as smtp_asyncio


class Handler(Sink):
    """Accept mail for example.net only; coroutine methods are fine here."""

    async def on_rcpt(self, session, event, envelope):
        if event.forward_path.domain != "example.net":
            return Reply(550, "No such domain here", "5.1.2")
        return Reply(250, "OK", "2.1.5")


async def main(port: int) -> None:
    handler = Handler()
    server = await smtp_asyncio.serve(handler, "127.0.0.1", port, hostname="mx.example.test")
    print(f"listening on {server.address[0]}:{server.port}", flush=True)
    async with server:  # shuts down gracefully on the way out
        for _ in range(600):
            if handler.messages:
                break
            await asyncio.sleep(0.05)
    envelope = handler.envelopes[0]
    print(
        "accepted:",
        envelope.mail_from.reverse_path,
        "->",
        *(r.forward_path for r in envelope.recipients),
    )
    print("tag:", envelope.tag.name)


asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 2525))
