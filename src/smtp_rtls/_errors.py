"""The exception family of smtp_rtls.

Two sides, as in h11: ``LocalProtocolError`` means *you* asked the connection to
do something the protocol forbids right now (nothing was emitted);
``RemoteProtocolError`` means the *peer* broke the protocol beyond what an SMTP
reply can answer.  ``next_event()`` never raises anything else, whatever bytes
arrive: that is the fuzzing oracle of the test suite.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._reply import Reply

__all__ = [
    "LocalProtocolError",
    "ProtocolError",
    "RemoteProtocolError",
    "RequireTLSError",
]


class ProtocolError(Exception):
    """Base class of every protocol error; never raised itself.

    ``reply`` is the SMTP reply the error suggests sending (or having been
    sent), when one applies; ``None`` otherwise.
    """

    def __init__(self, msg: str, reply: Reply | None = None) -> None:
        if type(self) is ProtocolError:
            raise TypeError("ProtocolError is abstract; raise a subclass")
        super().__init__(msg)
        self.reply = reply


class LocalProtocolError(ProtocolError):
    """The caller tried to send something that is illegal in the current state."""


class RemoteProtocolError(ProtocolError):
    """The peer violated the protocol in a way no SMTP reply can repair."""


class RequireTLSError(LocalProtocolError):
    """A REQUIRETLS transaction was attempted on a session that cannot carry it.

    RFC 8689 §2 and §4.2.1 step 5: the MAIL FROM ... REQUIRETLS command may only
    be sent on a TLS session whose post-TLS EHLO advertised REQUIRETLS.  The
    error carries the reply an MTA should record: 5.7.10 when TLS is not active,
    5.7.30 when REQUIRETLS was not offered after TLS.
    """
