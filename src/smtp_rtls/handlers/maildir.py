"""Maildir: store each message durably before answering 250.

RFC 5321 §6.1: once the server has answered the end of data with 250 it is
responsible for the message, so the message must be on disk by then.  The
content is written to ``tmp/`` as it arrives (never held whole), then the
file and the directory are fsync'ed and the file is renamed into ``new/``
(the Maildir delivery protocol: a reader never sees a partial message).  An
aborted transaction leaves no file behind.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

from .._reply import Reply
from ..policy.tags import TLSTag
from ..session.server import Handler, MessageWriter, SessionEnvelope

__all__ = ["Maildir"]

_counter = 0
_counter_lock = threading.Lock()


def _unique() -> str:
    # time.pid_counter.host: unique across processes and within one
    global _counter
    with _counter_lock:
        _counter += 1
        n = _counter
    host = socket.gethostname().replace("/", "\\057").replace(":", "\\072")
    return f"{time.time_ns()}.P{os.getpid()}Q{n}.{host}"


class Maildir(Handler):
    """Deliver every accepted message into the Maildir at ``path`` (created
    with its ``tmp``, ``new`` and ``cur`` folders when missing).

    Each stored message starts with a ``Return-Path`` (RFC 5321 §4.4) and a
    ``Received`` field naming the client, the TLS version and cipher, and
    the RFC 8689 tag (``with ESMTPS ... (REQUIRETLS)``), then the content as
    received.  ``delivered`` lists the paths written, newest last.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        for sub in ("tmp", "new", "cur"):
            (self.path / sub).mkdir(parents=True, exist_ok=True)
        self.delivered: list[Path] = []
        self._lock = threading.Lock()

    def on_message(self, envelope: SessionEnvelope) -> MessageWriter:
        """A writer into ``tmp/`` that moves the file to ``new/`` at the end."""
        return _MaildirWriter(self, envelope)

    def _stored(self, path: Path) -> None:
        with self._lock:
            self.delivered.append(path)


def received_field(envelope: SessionEnvelope, when: datetime | None = None) -> bytes:
    """This hop's Received field (RFC 5321 §4.4): the client, the TLS version
    and cipher, and the RFC 8689 tag (``with ESMTPS ... REQUIRETLS``)."""
    session = envelope.session
    peer = f"[{session.peer[0]}]" if session.peer else "unknown"
    tls = session.tls
    protocol = "ESMTPS" if tls is not None else "ESMTP"
    extra = f" ({tls.version}:{tls.cipher}:{tls.bits})" if tls is not None else ""
    tag = {TLSTag.REQUIRETLS: " REQUIRETLS", TLSTag.TLS_OPTIONAL: " TLS-Required=No"}.get(
        envelope.tag, ""
    )
    recipients = envelope.recipients
    to = f"\r\n\tfor {recipients[0].forward_path.path()}" if len(recipients) == 1 else ""
    date = format_datetime(when if when is not None else datetime.now(UTC))
    return (
        f"Received: from {session.client_name or 'unknown'} ({peer})\r\n"
        f"\tby {session.hostname} with {protocol}{extra}{tag}{to};\r\n"
        f"\t{date}\r\n"
    ).encode()


def trace_fields(envelope: SessionEnvelope) -> bytes:
    """The Return-Path and Received fields for a stored message (RFC 5321 §4.4)."""
    return_path = f"Return-Path: {envelope.mail_from.reverse_path.path()}\r\n"
    return return_path.encode("utf-8") + received_field(envelope)


class _MaildirWriter(MessageWriter):
    def __init__(self, maildir: Maildir, envelope: SessionEnvelope) -> None:
        self.maildir = maildir
        self.name = _unique()
        self.tmp = maildir.path / "tmp" / self.name
        # O_EXCL: never reuse a name another delivery is writing
        fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self.file = os.fdopen(fd, "wb")
        self.file.write(trace_fields(envelope))

    def write(self, data: bytes) -> None:
        self.file.write(data)

    def close(self) -> Reply:
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            final = self.maildir.path / "new" / self.name
            os.rename(self.tmp, final)
            _fsync_dir(self.maildir.path / "new")
        except OSError:
            self.abort()
            # RFC 5321 §4.2.5: a local error after the data: the client keeps
            # the message and tries again later
            return Reply(451, "Local error: the message could not be stored", "4.3.0")
        self.maildir._stored(final)
        return Reply(250, f"Stored as {self.name}", "2.0.0")

    def abort(self) -> None:
        if not self.file.closed:
            self.file.close()
        self.tmp.unlink(missing_ok=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
