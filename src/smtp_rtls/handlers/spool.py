"""A mail queue: each accepted message kept durably until it is delivered or bounced.

RFC 5321 §6.1: once a server answers the end of data with ``250`` it is
responsible for the message, "it MUST NOT lose the message for frivolous
reasons".  So a relay stores the message before that reply, and keeps it
until every recipient is either delivered or reported (RFC 5321 §4.5.4,
§4.5.5).  :class:`Spool` is the interface a relay needs (so the queue can be
a database or a broker); :class:`FileSpool` keeps it in a directory:

``queue/<id>.msg``
    The content, byte for byte as it will be sent.
``queue/<id>.json``
    The envelope (:class:`QueuedMessage`): the reverse path and its
    parameters, the recipients grouped by domain with their state, attempts
    and next attempt time, the RFC 8689 tag, when and how the message came.
``tmp/``
    Files being written; nothing there was ever acknowledged.
``damaged/``
    Entries that could not be read, set aside with a warning, never deleted.

Every file is written in ``tmp/``, fsync'ed, then renamed into ``queue/``
and the directory fsync'ed (the Maildir protocol): a reader never sees half
a file.  The envelope is renamed last, so its presence is what makes an
entry; an update replaces it by the same rename.  A crash at any step
leaves either the previous state or the next one, and :class:`FileSpool`
sorts out what it finds when it opens the directory.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

import attrs

from .._events import MailFrom, RcptTo
from .._reply import Reply
from ..policy.tags import TLSTag

__all__ = [
    "FileSpool",
    "QueuedMessage",
    "QueuedRecipient",
    "ReceivedInfo",
    "RecipientState",
    "Spool",
    "SpoolWriter",
]

logger = logging.getLogger(__name__)

#: The envelope format; a file with another version is set aside, not guessed at.
FORMAT_VERSION = 1
_READ_SIZE = 65536


class RecipientState(enum.Enum):
    """Where one recipient stands."""

    #: Not delivered yet: due at ``next_attempt``.
    PENDING = "pending"
    #: A server took responsibility for it (a 2xx after the content).
    DELIVERED = "delivered"
    #: Given up (a 5xx, or too long deferred); its report was queued, if one was due.
    FAILED = "failed"


def _reply_to_json(reply: Reply | None) -> dict[str, Any] | None:
    if reply is None:
        return None
    enhanced = str(reply.enhanced) if reply.enhanced is not None else None
    return {"code": reply.code, "enhanced": enhanced, "lines": list(reply.lines)}


def _reply_from_json(data: dict[str, Any] | None) -> Reply | None:
    if data is None:
        return None
    return Reply(int(data["code"]), tuple(data["lines"]), data["enhanced"])


@attrs.frozen(slots=True)
class QueuedRecipient:
    """One recipient of a queued message, with its DSN parameters (RFC 3461)
    and its delivery state."""

    forward_path: str
    notify: tuple[str, ...] | None = None
    orcpt: tuple[str, str] | None = None
    state: RecipientState = RecipientState.PENDING
    #: Delivery attempts that ended in a deferral so far.
    attempts: int = 0
    #: Seconds since the epoch when the next attempt is due.
    next_attempt: float = 0.0
    #: The reply of the last attempt (the one a report quotes).
    last_reply: Reply | None = None

    @property
    def domain(self) -> str:
        """The recipient's domain, lower-cased: deliveries go one domain at a time."""
        return self.forward_path.rpartition("@")[2].lower().rstrip(".")

    def rcpt_to(self) -> RcptTo:
        """The RCPT command for the next hop, NOTIFY and ORCPT kept (RFC 3461 §5.2)."""
        return RcptTo(self.forward_path, notify=self.notify, orcpt=self.orcpt)

    def due(self, now: float) -> bool:
        """Pending, and its next attempt is not in the future."""
        return self.state is RecipientState.PENDING and self.next_attempt <= now

    def to_json(self) -> dict[str, Any]:
        """The JSON form (see :meth:`QueuedMessage.to_json`)."""
        return {
            "forward_path": self.forward_path,
            "notify": list(self.notify) if self.notify is not None else None,
            "orcpt": list(self.orcpt) if self.orcpt is not None else None,
            "state": self.state.value,
            "attempts": self.attempts,
            "next_attempt": self.next_attempt,
            "last_reply": _reply_to_json(self.last_reply),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> QueuedRecipient:
        """Read what :meth:`to_json` wrote."""
        orcpt = data.get("orcpt")
        notify = data.get("notify")
        return cls(
            str(data["forward_path"]),
            tuple(notify) if notify is not None else None,
            (str(orcpt[0]), str(orcpt[1])) if orcpt is not None else None,
            RecipientState(data["state"]),
            int(data["attempts"]),
            float(data["next_attempt"]),
            _reply_from_json(data.get("last_reply")),
        )


@attrs.frozen(slots=True)
class ReceivedInfo:
    """How the message came to us (for logs and reports): the server name,
    the client, and the TLS session it came over, if any."""

    hostname: str
    peer: str | None = None
    client_name: str | None = None
    authenticated: str | None = None
    tls_version: str | None = None
    tls_cipher: str | None = None
    tls_bits: int | None = None


@attrs.frozen(slots=True)
class QueuedMessage:
    """A queued message's envelope: everything but the content.

    ``mail_from`` keeps the parameters that travel on (SIZE, BODY, SMTPUTF8,
    RET, ENVID); ``tag`` is the RFC 8689 §4.1 tag, which every onward hop
    gets.  ``arrival`` (seconds since the epoch) starts the give-up clock of
    RFC 5321 §4.5.4.1.  ``id`` is the spool's name for it, "" until stored.
    """

    mail_from: MailFrom
    recipients: tuple[QueuedRecipient, ...]
    tag: TLSTag
    arrival: float
    received: ReceivedInfo | None = None
    id: str = ""

    @property
    def pending(self) -> tuple[QueuedRecipient, ...]:
        """The recipients still to deliver."""
        return tuple(r for r in self.recipients if r.state is RecipientState.PENDING)

    @property
    def finished(self) -> bool:
        """Every recipient delivered or given up: the entry can go."""
        return not self.pending

    def due(self, now: float) -> bool:
        """At least one recipient is due at ``now``."""
        return any(r.due(now) for r in self.recipients)

    def by_domain(self) -> dict[str, list[QueuedRecipient]]:
        """The recipients grouped by domain, in order of first appearance."""
        groups: dict[str, list[QueuedRecipient]] = {}
        for r in self.recipients:
            groups.setdefault(r.domain, []).append(r)
        return groups

    def to_json(self) -> dict[str, Any]:
        """The envelope as JSON-ready data (recipients grouped by domain)."""
        mail = self.mail_from
        return {
            "version": FORMAT_VERSION,
            "id": self.id,
            "mail_from": {
                "reverse_path": str(mail.reverse_path),
                "size": mail.size,
                "body": mail.body,
                "smtputf8": mail.smtputf8,
                "ret": mail.ret,
                "envid": mail.envid,
            },
            "tag": self.tag.value,
            "arrival": self.arrival,
            "received": attrs.asdict(self.received) if self.received is not None else None,
            "domains": {
                domain: [r.to_json() for r in rcpts] for domain, rcpts in self.by_domain().items()
            },
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> QueuedMessage:
        """Read what :meth:`to_json` wrote; raises ValueError (or KeyError,
        TypeError) on anything else."""
        if data.get("version") != FORMAT_VERSION:
            raise ValueError(f"unknown spool format version {data.get('version')!r}")
        mail = data["mail_from"]
        mail_from = MailFrom(
            mail["reverse_path"],
            size=mail["size"],
            body=mail["body"],
            smtputf8=bool(mail["smtputf8"]),
            ret=mail["ret"],
            envid=mail["envid"],
        )
        recipients = tuple(
            QueuedRecipient.from_json(r) for group in data["domains"].values() for r in group
        )
        received = data.get("received")
        return cls(
            mail_from,
            recipients,
            TLSTag(data["tag"]),
            float(data["arrival"]),
            ReceivedInfo(**received) if received is not None else None,
            str(data["id"]),
        )


class SpoolWriter(Protocol):
    """One message being stored: its content arrives in pieces."""

    def write(self, data: bytes) -> None:
        """Take one piece of the content."""

    def commit(self) -> QueuedMessage:
        """Make the message durable and return it with its ``id``; raise
        (OSError) when it could not be, leaving nothing behind."""
        ...

    def abort(self) -> None:
        """Drop what was written; no trace is left."""


class Spool(Protocol):
    """What a relay needs of its queue.  Implement it to put the queue elsewhere.

    Every method may be called from several threads (``begin`` from the
    server's sessions, the rest from the delivery worker).
    """

    def begin(self, message: QueuedMessage) -> SpoolWriter:
        """Start storing ``message``; its content goes to the writer."""
        ...

    def due(self, now: float) -> list[QueuedMessage]:
        """The entries with a recipient due at ``now`` (seconds since the epoch)."""
        ...

    def content(self, message_id: str) -> Callable[[], Iterable[bytes]]:
        """The content of an entry, as a callable that gives a fresh pass each call."""
        ...

    def update(self, message: QueuedMessage) -> None:
        """Record ``message``'s new state durably (same ``id``)."""

    def remove(self, message_id: str) -> None:
        """Forget a finished entry."""


# -- the directory spool --------------------------------------------------------------


def _new_id() -> str:
    # Sortable by time, unique across threads and processes without a lock.
    return f"{time.time_ns():x}-{os.getpid():x}-{secrets.token_hex(6)}"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_durably(path: Path, tmp: Path, data: bytes) -> None:
    """Write ``data`` to ``tmp``, fsync it, rename it to ``path``, fsync the directory."""
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


class FileSpool:
    """A :class:`Spool` in the directory ``path`` (created when missing).

    One :class:`FileSpool` per directory at a time: opening it sorts out what
    a crash left (files in ``tmp/`` were never acknowledged and are removed;
    content without an envelope is set aside in ``damaged/``).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.tmp = self.path / "tmp"
        self.queue = self.path / "queue"
        self.damaged = self.path / "damaged"
        for folder in (self.tmp, self.queue, self.damaged):
            folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._recover()

    # -- writing -----------------------------------------------------------------

    def begin(self, message: QueuedMessage) -> SpoolWriter:
        """A writer into ``tmp/``; its commit moves the entry into ``queue/``."""
        return _FileWriter(self, attrs.evolve(message, id=_new_id()))

    def add(self, message: QueuedMessage, content: bytes) -> QueuedMessage:
        """Store a whole message at once (a report, say); returns it with its id."""
        writer = self.begin(message)
        try:
            writer.write(content)
        except BaseException:
            writer.abort()
            raise
        return writer.commit()

    def update(self, message: QueuedMessage) -> None:
        """Replace the entry's envelope by one rename: the old state or the new, never half."""
        if not message.id:
            raise ValueError("the message has no id: it was never stored")
        data = json.dumps(message.to_json(), indent=1).encode()
        with self._lock:
            if not self._envelope(message.id).exists():
                raise KeyError(f"no entry {message.id!r} in the spool")
            _write_durably(
                self._envelope(message.id), self.tmp / f"{message.id}.json.{_new_id()}", data
            )

    def remove(self, message_id: str) -> None:
        """Delete the content, then the envelope (a crash between is sorted out on opening)."""
        with self._lock:
            self._content(message_id).unlink(missing_ok=True)
            self._envelope(message_id).unlink(missing_ok=True)
            _fsync_dir(self.queue)

    # -- reading -----------------------------------------------------------------

    def entries(self) -> list[QueuedMessage]:
        """Every readable entry, oldest first; damaged ones are set aside on the way."""
        found = []
        for path in sorted(self.queue.glob("*.json")):
            message = self._load(path)
            if message is not None:
                found.append(message)
        return found

    def due(self, now: float) -> list[QueuedMessage]:
        """The entries with a recipient due at ``now``, oldest first."""
        return [m for m in self.entries() if m.due(now)]

    def get(self, message_id: str) -> QueuedMessage | None:
        """One entry, or None when it is not (or no longer) there."""
        path = self._envelope(message_id)
        return self._load(path) if path.exists() else None

    def content(self, message_id: str) -> Callable[[], Iterable[bytes]]:
        """The entry's content, read from disk afresh on each call (never held whole)."""
        path = self._content(message_id)

        def chunks() -> Iterator[bytes]:
            with path.open("rb") as f:
                while chunk := f.read(_READ_SIZE):
                    yield chunk

        return chunks

    # -- internals ---------------------------------------------------------------

    def _envelope(self, message_id: str) -> Path:
        return self.queue / f"{message_id}.json"

    def _content(self, message_id: str) -> Path:
        return self.queue / f"{message_id}.msg"

    def _load(self, path: Path) -> QueuedMessage | None:
        message_id = path.name.removesuffix(".json")
        try:
            message = QueuedMessage.from_json(json.loads(path.read_bytes()))
            if message.id != message_id:
                raise ValueError(f"the envelope names {message.id!r}")
        except FileNotFoundError:
            return None  # removed meanwhile
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            self._set_aside(message_id, f"unreadable envelope: {exc!r}")
            return None
        if not self._content(message_id).exists():
            if message.finished:
                # A crash in remove() between its two unlinks: finish it.
                self._envelope(message_id).unlink(missing_ok=True)
                return None
            self._set_aside(message_id, "content missing")
            return None
        return message

    def _set_aside(self, message_id: str, why: str) -> None:
        """Move an entry's files to ``damaged/``: never delete what may be mail."""
        logger.warning("spool entry %s set aside in %s: %s", message_id, self.damaged, why)
        with self._lock:
            for path in (self._envelope(message_id), self._content(message_id)):
                if path.exists():
                    os.replace(path, self.damaged / path.name)
            _fsync_dir(self.damaged)
            _fsync_dir(self.queue)

    def _recover(self) -> None:
        """Sort out what a crash left behind."""
        for path in self.tmp.iterdir():
            # Content or an envelope not yet renamed into queue/: the 250 was
            # never sent (RFC 5321 §6.1), so the client still has the message.
            logger.info("removing unfinished spool file %s", path.name)
            path.unlink(missing_ok=True)
        for path in self.queue.glob("*.msg"):
            message_id = path.name.removesuffix(".msg")
            if not self._envelope(message_id).exists():
                # A crash between the two renames of a commit (no 250 was sent
                # either), but keep it: a human may want to look.
                self._set_aside(message_id, "content without an envelope")


class _FileWriter:
    def __init__(self, spool: FileSpool, message: QueuedMessage) -> None:
        self.spool = spool
        self.message = message
        self.tmp = spool.tmp / f"{message.id}.msg"
        # O_EXCL: never write over a file another transaction owns
        fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self.file = os.fdopen(fd, "wb")
        self.done = False

    def write(self, data: bytes) -> None:
        self.file.write(data)

    def commit(self) -> QueuedMessage:
        spool, message = self.spool, self.message
        content = spool._content(message.id)
        envelope = spool._envelope(message.id)
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            # Content first, envelope last: the envelope's rename commits.
            os.rename(self.tmp, content)
            data = json.dumps(message.to_json(), indent=1).encode()
            _write_durably(envelope, spool.tmp / f"{message.id}.json", data)
        except OSError:
            self.abort()
            content.unlink(missing_ok=True)
            envelope.unlink(missing_ok=True)
            raise
        self.done = True
        return message

    def abort(self) -> None:
        if self.done:
            return
        if not self.file.closed:
            self.file.close()
        self.tmp.unlink(missing_ok=True)
