"""Receive mail into a Maildir with the blocking adapter (threads).

Run:  python receive_sync.py MAILDIR [PORT]
It serves on 127.0.0.1 until it has stored one message, then shuts down.
"""

import sys
import time

from smtp_rtls.handlers import Maildir
from smtp_rtls.io import sync

maildir = Maildir(sys.argv[1])
port = int(sys.argv[2]) if len(sys.argv) > 2 else 2525

with sync.serve(maildir, "127.0.0.1", port, hostname="mx.example.test") as server:
    print(f"listening on {server.address[0]}:{server.port}", flush=True)
    deadline = time.monotonic() + 30
    while not maildir.delivered and time.monotonic() < deadline:
        time.sleep(0.05)
# leaving the block stops accepting and lets sessions in flight finish
print("stored:", *(p.name for p in maildir.delivered))
