"""smtp_rtls: Sans-IO SMTP with RFC 8689 REQUIRETLS on both sides of the wire."""

from ._address import Address, AddressError
from ._capabilities import Capabilities
from ._client import ClientConnection
from ._client_rules import ClientTransaction
from ._config import ServerConfig
from ._errors import LocalProtocolError, ProtocolError, RemoteProtocolError, RequireTLSError
from ._events import (
    Auth,
    AuthResponse,
    Bdat,
    CommandRejected,
    ConnectionClosed,
    Data,
    Ehlo,
    EndOfMessage,
    Envelope,
    Event,
    Expn,
    Helo,
    Help,
    MailFrom,
    MessageData,
    Noop,
    Quit,
    RcptTo,
    Rset,
    StartTLS,
    Vrfy,
)
from ._reply import EnhancedStatus, Reply
from ._sentinels import NEED_DATA, PAUSED
from ._server import ServerConnection
from ._state import REPLY_TIMEOUTS, State
from ._tls import TLSInfo

__version__ = "0.1.0.dev0"

__all__ = [
    "NEED_DATA",
    "PAUSED",
    "REPLY_TIMEOUTS",
    "Address",
    "AddressError",
    "Auth",
    "AuthResponse",
    "Bdat",
    "Capabilities",
    "ClientConnection",
    "ClientTransaction",
    "CommandRejected",
    "ConnectionClosed",
    "Data",
    "Ehlo",
    "EndOfMessage",
    "EnhancedStatus",
    "Envelope",
    "Event",
    "Expn",
    "Helo",
    "Help",
    "LocalProtocolError",
    "MailFrom",
    "MessageData",
    "Noop",
    "ProtocolError",
    "Quit",
    "RcptTo",
    "RemoteProtocolError",
    "Reply",
    "RequireTLSError",
    "Rset",
    "ServerConfig",
    "ServerConnection",
    "StartTLS",
    "State",
    "TLSInfo",
    "Vrfy",
]
