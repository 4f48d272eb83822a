"""Handlers shipped with smtp_rtls: a Maildir store, a discarding sink, a relay
with its spool, and password authentication (SASL PLAIN and LOGIN) to mix
into any of them."""

from .auth import PasswordAuth
from .maildir import Maildir
from .relay import Relay
from .sink import Sink
from .spool import FileSpool, Spool

__all__ = ["FileSpool", "Maildir", "PasswordAuth", "Relay", "Sink", "Spool"]
