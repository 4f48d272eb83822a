"""MTA-STS (RFC 8461): TXT record, policy file, mx matching, fetch and cache."""

from __future__ import annotations

from typing import Literal

import attrs

from .requests import Lookup

__all__ = ["STSCache", "STSError", "STSOutcome", "STSPolicy", "STSRecord", "fetch_policy"]


class STSError(ValueError):
    """A TXT record or policy file that does not follow RFC 8461 §3."""


@attrs.frozen(slots=True)
class STSRecord:
    """The ``_mta-sts`` TXT record (RFC 8461 §3.1)."""

    id: str
    extensions: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, text: str) -> STSRecord:
        """Parse one TXT record's text."""
        raise NotImplementedError


@attrs.frozen(slots=True)
class STSPolicy:
    """A policy file (RFC 8461 §3.2); ``policy_id`` is the TXT id it was fetched for."""

    mode: Literal["enforce", "testing", "none"]
    mx: tuple[str, ...]
    max_age: int
    policy_id: str = ""

    @classmethod
    def parse(cls, text: str, policy_id: str = "") -> STSPolicy:
        """Parse a policy body."""
        raise NotImplementedError

    def matches(self, host: str) -> bool:
        """True when ``host`` matches one of the mx patterns (RFC 8461 §4.1)."""
        raise NotImplementedError


@attrs.frozen(slots=True)
class STSOutcome:
    """What discovery found for ``domain``: a policy, or why not."""

    domain: str
    record: STSRecord | None
    policy: STSPolicy | None
    error: str = ""
    temporary_failure: bool = False
    from_cache: bool = False


def fetch_policy(domain: str) -> Lookup[STSOutcome]:
    """TXT ``_mta-sts.<domain>`` then ``https://mta-sts.<domain>/.well-known/mta-sts.txt``."""
    raise NotImplementedError
    yield


class STSCache:
    """Policies by domain, honouring max_age and the TXT id (RFC 8461 §5.1)."""
