"""The client operations' result and timeout types, apart from the
operations themselves (``smtp_rtls.session.client``) so that a compiled build
(``setup.py``, ``SMTP_RTLS_COMPILE=1``) can compile those: mypyc compiles
neither attrs classes nor subclasses of ``dict``.  :class:`SendResult` is
documented and imported as ``smtp_rtls.session.client``'s own.
"""

from __future__ import annotations

import attrs

from .._events import RcptTo
from .._reply import Reply

__all__ = ["SendResult"]


@attrs.frozen(slots=True)
class SendResult:
    """What the server said to one message: the MAIL reply, each recipient's
    reply, and the reply to the end of the content (None when the content
    went nowhere: MAIL or every RCPT refused, or DATA refused; a BDAT sent
    in the same write as MAIL and RCPT was then refused and dropped)."""

    __module__ = "smtp_rtls.session.client"

    mail: Reply
    recipients: tuple[tuple[RcptTo, Reply], ...]
    data: Reply | None

    @property
    def accepted(self) -> tuple[RcptTo, ...]:
        """The recipients the message was delivered to (LMTP: per recipient)."""
        if self.data is None or not self.data.is_positive:
            return ()
        return tuple(r for r, reply in self.recipients if reply.is_positive)

    @property
    def refused(self) -> dict[str, Reply]:
        """Recipient (as written) -> the reply that refused it."""
        return {
            str(r.forward_path): reply for r, reply in self.recipients if not reply.is_positive
        }


class _Uniform(dict[str, float]):
    """Every wait the same (``timeout=``)."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def get(self, key: str, default: float | None = None) -> float:  # type: ignore[override]
        return self.value

    def __getitem__(self, key: str) -> float:
        return self.value
