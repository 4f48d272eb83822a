"""What the suite's parts share: sizes, the messages, the certificate, summaries."""

from __future__ import annotations

import os
import ssl
import statistics
from collections.abc import Sequence
from pathlib import Path

KiB = 1024
MiB = 1024 * KiB

HOST = "127.0.0.1"
#: The name every server gives and the certificate is issued for.
SERVER_NAME = "bench.test"
#: The name every client gives in EHLO (so that no client asks DNS for its own
#: name: smtplib and ours call socket.getfqdn() when given none).
CLIENT_NAME = "client.bench.test"
SENDER = "sender@bench.test"
RECIPIENT = "rcpt@bench.test"

#: The end of the content, as the raw responder and the load generator see it.
END_OF_DATA = b"\r\n.\r\n"

#: Every wait for the peer in the suite is bounded by this (seconds).
IO_TIMEOUT = 30.0


def message(size: int) -> bytes:
    """A message of about ``size`` octets: a header section, then 76-column
    lines of which every tenth starts with a dot (so that dot-stuffing has
    work to do).  CRLF line ends, not dot-stuffed, ends with CRLF."""
    header = (
        f"From: <{SENDER}>\r\nTo: <{RECIPIENT}>\r\nSubject: bench {size}\r\n"
        "Message-ID: <bench@bench.test>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
    ).encode()
    lines = [header]
    total = len(header)
    i = 0
    # bounded: each line adds 78 octets
    while total < size:
        line = (b"." if i % 10 == 0 else b"x") + b"y" * 75 + b"\r\n"
        lines.append(line)
        total += len(line)
        i += 1
    return b"".join(lines)


def wire_content(msg: bytes) -> bytes:
    """``msg`` as it travels after the 354: dot-stuffed (RFC 5321 §4.5.2),
    then the final dot line."""
    stuffed = msg.replace(b"\r\n.", b"\r\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    return stuffed + b".\r\n"


def size_label(size: int) -> str:
    """``1 KiB`` or ``1 MiB``."""
    return f"{size // MiB} MiB" if size >= MiB else f"{size // KiB} KiB"


def make_certificate(directory: Path) -> tuple[str, str, str]:
    """A throwaway CA and a server certificate for :data:`SERVER_NAME` and
    127.0.0.1, written under ``directory``: (chain, key, CA) paths."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert(SERVER_NAME, HOST)
    chain = directory / "server-chain.pem"
    key = directory / "server-key.pem"
    ca_file = directory / "ca.pem"
    cert.private_key_pem.write_to_path(str(key))
    with chain.open("wb") as f:
        for blob in cert.cert_chain_pems:
            f.write(blob.bytes())
    ca.cert_pem.write_to_path(str(ca_file))
    return str(chain), str(key), str(ca_file)


def client_tls_context(ca_file: str) -> ssl.SSLContext:
    """A verifying client context that trusts only the suite's CA."""
    return ssl.create_default_context(cafile=ca_file)


def summary(values: Sequence[float]) -> dict[str, float]:
    """Median, min and max (the suite's way of reporting repetitions)."""
    if not values:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan"), "n": 0}
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def cpus() -> int:
    """The CPUs this process may run on."""
    return len(os.sched_getaffinity(0))
