"""Handlers shipped with smtp_rtls: a Maildir store and a discarding sink."""

from .maildir import Maildir
from .sink import Sink

__all__ = ["Maildir", "Sink"]
