"""MX resolution from answer tables: RFC 5321 §5.1, RFC 7505, the AD-bit trust model."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtp_rtls.policy.mx import (
    MXHost,
    PatternSet,
    resolve_addresses,
    resolve_mx,
    wildcard_match,
)
from smtp_rtls.policy.requests import DNSAnswer, DNSQuery, Request, Result, run_lookup


def table(entries: dict[tuple[str, str], tuple[str, list[str], bool]]):  # type: ignore[no-untyped-def]
    """An answer function from (name, rdtype) -> (rcode, records, authentic)."""
    asked: list[DNSQuery] = []

    def answer(request: Request) -> Result:
        assert isinstance(request, DNSQuery)
        asked.append(request)
        rcode, records, authentic = entries[(request.name, request.rdtype)]
        return DNSAnswer(request, rcode, records, authentic)

    answer.asked = asked  # type: ignore[attr-defined]
    return answer


def test_mx_sorted_by_preference_rfc5321_5_1() -> None:
    answer = table(
        {("example.org", "MX"): ("NOERROR", ["20 b.example.org.", "10 A.Example.Org."], True)}
    )
    result = run_lookup(resolve_mx("Example.ORG."), answer)
    assert result.hosts == (MXHost("a.example.org", 10), MXHost("b.example.org", 20))
    assert result.dnssec and not result.implicit and not result.permanent_failure
    assert answer.asked == [DNSQuery("example.org", "MX")]  # type: ignore[attr-defined]


def test_equal_preferences_are_randomised_rfc5321_5_1() -> None:
    """RFC 5321 §5.1: equal-preference MX hosts MUST be randomised."""
    records = ["10 a.example.", "10 b.example.", "10 c.example.", "5 first.example."]
    answer = table({("example", "MX"): ("NOERROR", records, False)})
    firsts = Counter()
    rng = random.Random(7)
    for _ in range(60):
        result = run_lookup(resolve_mx("example", rng=rng), answer)
        assert result.hosts[0] == MXHost("first.example", 5)
        firsts[result.hosts[1].name] += 1
    assert set(firsts) == {"a.example", "b.example", "c.example"}


def test_seeded_rng_gives_repeatable_order() -> None:
    answer = table({("example", "MX"): ("NOERROR", [f"10 h{i}.example." for i in range(8)], True)})
    one = run_lookup(resolve_mx("example", rng=random.Random(1)), answer)
    two = run_lookup(resolve_mx("example", rng=random.Random(1)), answer)
    assert one.hosts == two.hosts


def test_no_mx_records_means_implicit_mx_rfc5321_5_1() -> None:
    answer = table({("example.net", "MX"): ("NOERROR", [], True)})
    result = run_lookup(resolve_mx("example.net"), answer)
    assert result.implicit
    assert result.hosts == (MXHost("example.net", 0),)
    assert result.dnssec


def test_nxdomain_is_permanent_rfc5321_5_1() -> None:
    answer = table({("nope.example", "MX"): ("NXDOMAIN", [], True)})
    result = run_lookup(resolve_mx("nope.example"), answer)
    assert result.hosts == ()
    assert result.permanent_failure and not result.temporary_failure and not result.null_mx
    assert "NXDOMAIN" in result.reason


@pytest.mark.parametrize("rcode", ["SERVFAIL", "TIMEOUT"])
def test_temporary_dns_failure_defers_rfc5321_5_1(rcode: str) -> None:
    answer = table({("example", "MX"): (rcode, [], False)})
    result = run_lookup(resolve_mx("example"), answer)
    assert result.temporary_failure and not result.permanent_failure
    assert result.hosts == () and not result.implicit


def test_null_mx_rfc7505() -> None:
    """RFC 7505 §3/§4.1: "0 ." alone: no delivery, no fall back to addresses."""
    answer = table({("example.com", "MX"): ("NOERROR", ["0 ."], True)})
    result = run_lookup(resolve_mx("example.com"), answer)
    assert result.null_mx and result.permanent_failure
    assert result.hosts == () and not result.implicit


def test_null_mx_mixed_with_real_mx_uses_real_hosts_only() -> None:
    answer = table({("example.com", "MX"): ("NOERROR", ["0 .", "10 mx.example.com."], False)})
    result = run_lookup(resolve_mx("example.com"), answer)
    assert not result.null_mx
    assert result.hosts == (MXHost("mx.example.com", 10),)


def test_dnssec_only_from_authentic_answer() -> None:
    answer = table({("example", "MX"): ("NOERROR", ["10 mx.example."], False)})
    assert not run_lookup(resolve_mx("example"), answer).dnssec


def test_duplicate_mx_names_tried_once() -> None:
    answer = table({("example", "MX"): ("NOERROR", ["10 mx.example.", "20 MX.example."], False)})
    result = run_lookup(resolve_mx("example"), answer)
    assert result.hosts == (MXHost("mx.example", 10),)


def test_addresses_secure_only_if_both_answers_authentic_rfc7672_2_2_2() -> None:
    secure = table(
        {
            ("mx.example", "AAAA"): ("NOERROR", ["::1"], True),
            ("mx.example", "A"): ("NOERROR", ["127.0.0.1"], True),
        }
    )
    result = run_lookup(resolve_addresses("mx.example."), secure)
    assert result.addresses == ("::1", "127.0.0.1") and result.dnssec
    half = table(
        {
            ("mx.example", "AAAA"): ("NOERROR", [], False),
            ("mx.example", "A"): ("NOERROR", ["127.0.0.1"], True),
        }
    )
    assert not run_lookup(resolve_addresses("mx.example"), half).dnssec


def test_address_failure_vs_absence() -> None:
    failing = table(
        {
            ("mx.example", "AAAA"): ("SERVFAIL", [], False),
            ("mx.example", "A"): ("SERVFAIL", [], False),
        }
    )
    result = run_lookup(resolve_addresses("mx.example"), failing)
    assert result.temporary_failure and result.addresses == ()
    absent = table(
        {
            ("mx.example", "AAAA"): ("NXDOMAIN", [], True),
            ("mx.example", "A"): ("NXDOMAIN", [], True),
        }
    )
    result = run_lookup(resolve_addresses("mx.example"), absent)
    assert not result.temporary_failure and result.addresses == () and result.dnssec
    partial = table(
        {
            ("mx.example", "AAAA"): ("SERVFAIL", [], False),
            ("mx.example", "A"): ("NOERROR", ["192.0.2.1"], True),
        }
    )
    result = run_lookup(resolve_addresses("mx.example"), partial)
    # RFC 7672 §2.1.2: one failed family fails the host (no DANE downgrade).
    assert result.temporary_failure and not result.dnssec
    assert result.addresses == () and "192.0.2.1" in result.reason


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("*.example.com", "mail.example.com", True),
        ("*.example.com", "MAIL.Example.COM.", True),
        ("*.example.com", "example.com", False),
        ("*.example.com", "a.b.example.com", False),
        ("mail.example.com", "mail.example.com", True),
        ("mail.example.com", "mx.example.com", False),
        ("m*.example.com", "mail.example.com", False),
        ("*.*.example.com", "a.b.example.com", False),
        ("mail.*.com", "mail.example.com", False),
        ("*.com", "example.com", False),
    ],
)
def test_wildcard_rules_rfc8461_4_1_rfc9525_6_3(pattern: str, name: str, expected: bool) -> None:
    assert wildcard_match(pattern, name) is expected


_labels = st.lists(st.sampled_from(["a", "b", "B", "*", "x*", "", "com"]), min_size=1, max_size=4)
_names = st.tuples(_labels, st.sampled_from(["", ".", " "])).map(lambda t: ".".join(t[0]) + t[1])


@given(patterns=st.lists(_names, max_size=6), name=_names)
def test_pattern_set_matches_exactly_as_wildcard_match_rfc8461_4_1(
    patterns: list[str], name: str
) -> None:
    """The O(1) index behaves as trying every pattern in turn."""
    assert PatternSet(patterns).matches(name) is any(wildcard_match(p, name) for p in patterns)


def test_rfc5321_s5_1_many_preferences_keep_their_order_and_randomisation() -> None:
    """Grouping by preference in one pass orders 3000 hosts of 1000 preferences."""
    texts = [f"{i % 1000} mx{i}.example." for i in range(3000)]
    answer = table({("example", "MX"): ("NOERROR", texts, False)})
    result = run_lookup(resolve_mx("example", rng=random.Random(0)), answer)
    assert [h.preference for h in result.hosts] == sorted(i % 1000 for i in range(3000))
    assert len({h.name for h in result.hosts}) == 3000


@given(st.lists(st.tuples(st.integers(0, 65535), st.from_regex(r"[a-z]{1,8}", fullmatch=True))))
def test_hosts_always_in_preference_order(records: list[tuple[int, str]]) -> None:
    texts = [f"{p} {n}.example." for p, n in records]
    answer = table({("example", "MX"): ("NOERROR", texts, False)})
    result = run_lookup(resolve_mx("example", rng=random.Random(0)), answer)
    preferences = [h.preference for h in result.hosts]
    assert preferences == sorted(preferences)
    if records:
        assert {h.name for h in result.hosts} == {f"{n}.example" for _, n in records}
    else:
        assert result.implicit
