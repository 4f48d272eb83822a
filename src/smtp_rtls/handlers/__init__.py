"""Handlers shipped with smtp_rtls: a Maildir store, a discarding sink, and
password authentication (SASL PLAIN and LOGIN) to mix into either."""

from .auth import PasswordAuth
from .maildir import Maildir
from .sink import Sink

__all__ = ["Maildir", "PasswordAuth", "Sink"]
