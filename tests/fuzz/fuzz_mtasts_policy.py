"""Harness ``mtasts_policy``: policy files into the MTA-STS policy parser
(smtp_rtls.policy.mtasts, RFC 8461 §3.2, §4.1), and the policy cache
document into ``STSCache.from_json``.

Input: byte 0 picks which (bit 0: the cache document); the rest is a
policy body (UTF-8 with replacement, as fetched) or a JSON document; the
mx pattern matching is tried on hosts made from the input.

ORACLE:

* ``STSPolicy.parse`` raises nothing but STSError (a ValueError);
* a parsed policy is within §3.2: mode enforce/testing/none, max_age
  0..31557600, at least one mx unless mode is none; formatting it back
  (``version: STSv1`` CRLF ...) parses to the same policy;
* ``matches`` never raises; a pattern matches its own name (or, for
  ``*.d``, ``x.d`` but never ``d`` nor ``a.b.d``, §4.1), in any case, with
  or without a trailing dot;
* ``STSCache.from_json`` never raises (documented), and its ``to_json``
  reads back to the same document.
"""

from __future__ import annotations

import sys

import atheris
from fuzz_common import main

with atheris.instrument_imports(include=["smtp_rtls"]):
    from smtp_rtls.policy.mtasts import MAX_MAX_AGE, STSCache, STSError, STSPolicy


def _format(policy: STSPolicy) -> str:
    lines = ["version: STSv1", f"mode: {policy.mode}", f"max_age: {policy.max_age}"]
    lines += [f"mx: {mx}" for mx in policy.mx]
    return "\r\n".join(lines) + "\r\n"


def _check_policy(text: str) -> None:
    try:
        policy = STSPolicy.parse(text, "id1")
    except STSError:
        return
    assert policy.mode in ("enforce", "testing", "none"), policy
    assert 0 <= policy.max_age <= MAX_MAX_AGE, policy
    assert policy.mx or policy.mode == "none", policy
    assert STSPolicy.parse(_format(policy), "id1") == policy, (text, policy)
    for pattern in policy.mx:
        if pattern.startswith("*."):
            base = pattern[2:].rstrip(".")
            assert policy.matches("x." + base) and policy.matches("X." + base.upper() + ".")
            # ``d`` itself only matches a pattern naming it, or a wildcard one
            # label up (``*.example`` matches ``d.example``)
            parent = "*." + base.partition(".")[2].lower()
            others = {p.rstrip(".").lower() for p in policy.mx}
            if base.lower() not in others and parent not in others:
                assert not policy.matches(base), (pattern, policy.mx)
        else:
            assert policy.matches(pattern) and policy.matches(pattern.upper().rstrip(".") + ".")
    for word in text.replace("\n", " ").split(" ")[:20]:
        policy.matches(word)  # any host name: never raises


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    if data[0] & 1:
        cache = STSCache.from_json(data[1:])
        document = cache.to_json()
        assert STSCache.from_json(document).to_json() == document
        return
    _check_policy(data[1:].decode("utf-8", "replace"))


if __name__ == "__main__":
    main(TestOneInput, sys.argv)
