"""MTA-STS (RFC 8461) from answer tables: record and policy grammar, fetch rules, cache."""

from __future__ import annotations

import json
import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtp_rtls.policy.mtasts import (
    MAX_MAX_AGE,
    POLICY_PATH,
    STSCache,
    STSError,
    STSPolicy,
    STSRecord,
    fetch_policy,
    select_record,
)
from smtp_rtls.policy.requests import (
    DNSAnswer,
    DNSQuery,
    HTTPSRequest,
    HTTPSResponse,
    Request,
    Result,
    run_lookup,
)

POLICY = (
    "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\n"
    "mx: *.example.net\r\nmax_age: 604800\r\n"
)


# --- TXT record, RFC 8461 §3.1 -------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "record_id"),
    [
        ("v=STSv1; id=20160831085700Z;", "20160831085700Z"),
        ("v=STSv1;id=abc", "abc"),
        ("v=STSv1 ; id=abc ; ext_1=x-y", "abc"),
        ("v=STSv1; ext=1; id=first; id=second", "first"),
    ],
)
def test_record_parses_rfc8461_3_1(text: str, record_id: str) -> None:
    assert STSRecord.parse(text).id == record_id


def test_record_keeps_unknown_fields() -> None:
    assert STSRecord.parse("v=STSv1; id=1; foo=bar").extensions == (("foo", "bar"),)


@pytest.mark.parametrize(
    "text",
    [
        "id=abc; v=STSv1;",  # MUST begin with the version
        "v=STSv2; id=abc",
        "v=STSv1;",  # no id
        "v=STSv1; foo=bar",  # no id
        "v=STSv1; id=" + "a" * 33,  # id is 1*32
        "v=STSv1; id=a-b",  # id is ALPHA / DIGIT
        "v=STSv1; id=abc; bad",  # field without "="
        "v=STSv1; id=abc; x=a b",  # SP not allowed in a value
        "v=STSv1; ; id=abc",
    ],
)
def test_record_rejects_invalid_rfc8461_3_1(text: str) -> None:
    with pytest.raises(STSError):
        STSRecord.parse(text)


def test_more_than_one_stsv1_record_means_no_policy_rfc8461_3_1() -> None:
    with pytest.raises(STSError, match="found 2"):
        select_record(["v=STSv1; id=a", "v=STSv1; id=b"])


def test_non_sts_txt_records_are_discarded_rfc8461_3_1() -> None:
    record = select_record(["v=spf1 -all", "v=STSv1; id=a", "something else"])
    assert record.id == "a"


# --- policy file, RFC 8461 §3.2 ---------------------------------------------------------


def test_policy_parses_crlf_rfc8461_3_2() -> None:
    policy = STSPolicy.parse(POLICY, policy_id="x1")
    assert policy == STSPolicy("enforce", ("mail.example.com", "*.example.net"), 604800, "x1")


def test_policy_accepts_lf_and_unknown_keys_and_first_duplicate_wins() -> None:
    text = (
        "version: STSv1\nmode: testing\nmode: enforce\n"
        "foo: bar baz\nmx: MX.Example.org.\nmax_age:86400"
    )
    policy = STSPolicy.parse(text)
    assert policy.mode == "testing"
    assert policy.mx == ("mx.example.org",)
    assert policy.max_age == 86400


def test_max_age_held_to_maximum_rfc8461_3_2() -> None:
    text = "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 9999999999\n"
    assert STSPolicy.parse(text).max_age == MAX_MAX_AGE


def test_mode_none_needs_no_mx() -> None:
    assert STSPolicy.parse("version: STSv1\nmode: none\nmax_age: 0\n").mx == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("mode: enforce\nmx: a.example\nmax_age: 1\n", "version"),
        ("version: STSv2\nmode: enforce\nmx: a.example\nmax_age: 1\n", "version"),
        ("version: STSv1\nmode: strict\nmx: a.example\nmax_age: 1\n", "mode"),
        ("version: STSv1\nmode: enforce\nmx: a.example\n", "max_age"),
        ("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: -1\n", "max_age"),
        ("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 12345678901\n", "max_age"),
        ("version: STSv1\nmode: enforce\nmax_age: 1\n", "no mx"),
        ("version: STSv1\nmode: enforce\nmx: a.*.example\nmax_age: 1\n", "mx pattern"),
        ("version: STSv1\nmode: enforce\nmx: mail_host.example\nmax_age: 1\n", "mx pattern"),
        ("<html>\n<body>hello</body>\n", "key: value"),
    ],
)
def test_policy_errors_are_clear_rfc8461_3_2(text: str, message: str) -> None:
    with pytest.raises(STSError, match=message):
        STSPolicy.parse(text)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("mail.example.com", True),
        ("MAIL.EXAMPLE.COM.", True),
        ("mx1.example.net", True),
        ("example.net", False),  # RFC 8461 §4.1
        ("a.b.example.net", False),  # RFC 8461 §4.1
        ("other.example.com", False),
    ],
)
def test_mx_matching_rfc8461_4_1(host: str, expected: bool) -> None:
    assert STSPolicy.parse(POLICY).matches(host) is expected


@given(
    mode=st.sampled_from(["enforce", "testing", "none"]),
    mx=st.lists(st.from_regex(r"(\*\.)?[a-z]{1,10}\.[a-z]{2,5}", fullmatch=True), min_size=1),
    max_age=st.integers(0, MAX_MAX_AGE),
    crlf=st.booleans(),
)
def test_policy_round_trip(mode: str, mx: list[str], max_age: int, crlf: bool) -> None:
    eol = "\r\n" if crlf else "\n"
    lines = ["version: STSv1", f"mode: {mode}", *(f"mx: {m}" for m in mx), f"max_age: {max_age}"]
    policy = STSPolicy.parse(eol.join(lines) + eol)
    assert (policy.mode, policy.mx, policy.max_age) == (mode, tuple(mx), max_age)


# --- fetch, RFC 8461 §3.3 ------------------------------------------------------------------


class Peer:
    """Answers DNS and HTTPS requests from settable values and records them."""

    def __init__(self) -> None:
        self.txt: tuple[str, list[str]] = ("NOERROR", ["v=STSv1; id=one"])
        self.http = HTTPSResponse(HTTPSRequest("", ""), 200, "text/plain", POLICY.encode())
        self.requests: list[Request] = []

    def __call__(self, request: Request) -> Result:
        self.requests.append(request)
        if isinstance(request, DNSQuery):
            assert (request.name, request.rdtype) == ("_mta-sts.example.com", "TXT")
            return DNSAnswer(request, self.txt[0], self.txt[1], True)
        return HTTPSResponse(
            request, self.http.status, self.http.content_type, self.http.body, self.http.error
        )

    @property
    def fetches(self) -> int:
        return sum(isinstance(r, HTTPSRequest) for r in self.requests)

    def respond(
        self, status: int = 200, content_type: str = "text/plain", body: str = POLICY
    ) -> None:
        self.http = HTTPSResponse(HTTPSRequest("", ""), status, content_type, body.encode())


def test_fetch_asks_txt_then_the_well_known_url_rfc8461_3_2() -> None:
    peer = Peer()
    outcome = run_lookup(fetch_policy("Example.COM"), peer)
    assert outcome.policy is not None and outcome.policy.policy_id == "one"
    https = peer.requests[1]
    assert isinstance(https, HTTPSRequest)
    assert (https.host, https.path) == ("mta-sts.example.com", POLICY_PATH)
    assert https.max_bytes == 65536 and https.timeout == 60


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirect_is_a_failure_rfc8461_3_3(status: int) -> None:
    peer = Peer()
    peer.respond(status=status)
    outcome = run_lookup(fetch_policy("example.com"), peer)
    assert outcome.policy is None and "redirect" in outcome.error
    assert peer.fetches == 1  # nothing followed


@pytest.mark.parametrize("status", [201, 204, 404, 500])
def test_only_200_is_valid_rfc8461_3_3(status: int) -> None:
    peer = Peer()
    peer.respond(status=status)
    assert run_lookup(fetch_policy("example.com"), peer).policy is None


@pytest.mark.parametrize(
    ("content_type", "accepted"),
    [
        ("text/plain", True),
        ("text/plain; charset=utf-8", True),
        ("TEXT/PLAIN;charset=us-ascii", True),
        ("text/html", False),
        ("image/png", False),
        ("", False),
    ],
)
def test_content_type_must_be_text_plain_rfc8461_3_2(content_type: str, accepted: bool) -> None:
    peer = Peer()
    peer.respond(content_type=content_type)
    outcome = run_lookup(fetch_policy("example.com"), peer)
    assert (outcome.policy is not None) is accepted


def test_driver_errors_and_oversized_bodies_fail() -> None:
    peer = Peer()
    peer.http = HTTPSResponse(HTTPSRequest("", ""), error="certificate")
    assert "certificate" in run_lookup(fetch_policy("example.com"), peer).error
    peer.respond(body=POLICY + "x" * 70000)
    assert "size" in run_lookup(fetch_policy("example.com"), peer).error


def test_no_txt_record_means_no_fetch() -> None:
    peer = Peer()
    peer.txt = ("NXDOMAIN", [])
    outcome = run_lookup(fetch_policy("example.com"), peer)
    assert outcome.record is None and outcome.policy is None and not outcome.temporary_failure
    assert peer.fetches == 0
    peer.txt = ("SERVFAIL", [])
    assert run_lookup(fetch_policy("example.com"), peer).temporary_failure


# --- cache, RFC 8461 §5.1 ----------------------------------------------------------------


def discover(cache: STSCache, peer: Peer, now: float):  # type: ignore[no-untyped-def]
    return run_lookup(cache.discover("example.com", now), peer)


def test_same_txt_id_uses_cache_without_fetching_rfc8461_3() -> None:
    cache, peer = STSCache(), Peer()
    first = discover(cache, peer, 1000.0)
    assert first.policy is not None and not first.from_cache
    second = discover(cache, peer, 2000.0)
    assert second.from_cache and second.policy == first.policy
    assert peer.fetches == 1


def test_new_txt_id_refetches_rfc8461_3() -> None:
    cache, peer = STSCache(), Peer()
    discover(cache, peer, 1000.0)
    peer.txt = ("NOERROR", ["v=STSv1; id=two"])
    peer.respond(body=POLICY.replace("enforce", "testing"))
    outcome = discover(cache, peer, 1001.0)
    assert peer.fetches == 2 and not outcome.from_cache
    assert outcome.policy is not None and outcome.policy.mode == "testing"
    assert outcome.policy.policy_id == "two"


def test_expired_policy_is_refetched_rfc8461_3_2() -> None:
    cache, peer = STSCache(), Peer()
    discover(cache, peer, 0.0)
    assert cache.get("example.com", 604799.0) is not None
    assert cache.get("example.com", 604800.0) is None
    discover(cache, peer, 604800.0)
    assert peer.fetches == 2


def test_fetch_failure_keeps_unexpired_cached_policy_rfc8461_3_3() -> None:
    cache, peer = STSCache(), Peer()
    good = discover(cache, peer, 0.0).policy
    peer.txt = ("NOERROR", ["v=STSv1; id=two"])
    peer.respond(status=500)
    outcome = discover(cache, peer, 10.0)
    assert outcome.from_cache and outcome.policy == good and "500" in outcome.error


def test_missing_txt_keeps_cached_policy_rfc8461_3_1() -> None:
    cache, peer = STSCache(), Peer()
    good = discover(cache, peer, 0.0).policy
    for txt in [
        ("NXDOMAIN", []),
        ("SERVFAIL", []),
        ("NOERROR", ["v=STSv1; id=a", "v=STSv1; id=b"]),
    ]:
        peer.txt = txt  # type: ignore[assignment]
        outcome = discover(cache, peer, 10.0)
        assert outcome.from_cache and outcome.policy == good
    # ...but only while it is unexpired
    peer.txt = ("NXDOMAIN", [])
    assert discover(cache, peer, 604800.0).policy is None


def test_failed_fetch_not_retried_within_five_minutes_rfc8461_3_3() -> None:
    cache, peer = STSCache(), Peer()
    peer.respond(status=503)
    assert discover(cache, peer, 0.0).policy is None
    assert discover(cache, peer, 299.0).policy is None
    assert peer.fetches == 1
    peer.respond()
    assert discover(cache, peer, 300.0).policy is not None
    assert peer.fetches == 2


def test_store_calls_on_change_and_failures_do_not() -> None:
    changes: list[str] = []
    cache, peer = STSCache(on_change=lambda: changes.append("x")), Peer()
    discover(cache, peer, 0.0)
    assert changes == ["x"]
    discover(cache, peer, 10.0)  # served from the cache: nothing changed
    assert changes == ["x"]
    peer.txt = ("NOERROR", ["v=STSv1; id=two"])
    peer.respond(status=500)
    discover(cache, peer, 20.0)  # a failed fetch is not kept
    assert changes == ["x"]


# --- the cache as JSON text (kept in a file by smtp_rtls.io.stscache) -----------------


def test_cache_round_trips_through_json() -> None:
    cache, peer = STSCache(), Peer()
    policy = discover(cache, peer, 50.0).policy
    saved = json.loads(cache.to_json())
    assert saved["version"] == 1
    assert saved["policies"]["example.com"]["policy_id"] == "one"
    again = STSCache.from_json(cache.to_json())
    entry = again.get("example.com", 60.0)
    assert entry is not None and entry.policy == policy and entry.fetched_at == 50.0
    assert discover(again, peer, 60.0).from_cache
    assert peer.fetches == 1
    assert STSCache.from_json(cache.to_json().encode()).get("example.com", 60.0) == entry


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "[]",
        '{"policies": {"x": {"mode": "enforce"}}}',
        "\x00\xff",
        "\x00\xff".encode("latin-1"),  # not UTF-8
    ],
)
def test_corrupt_cache_document_is_ignored_with_warning(
    caplog: pytest.LogCaptureFixture, content: str | bytes
) -> None:
    with caplog.at_level(logging.WARNING, logger="smtp_rtls.policy.mtasts"):
        cache = STSCache.from_json(content, source="sts.json")
    assert cache.get("x", 0.0) is None
    assert "ignoring unreadable MTA-STS cache" in caplog.text
    assert "sts.json" in caplog.text
    # and it still takes new policies
    cache.store("example.com", STSPolicy.parse(POLICY, "i"), 0.0)
    assert STSCache.from_json(cache.to_json()).get("example.com", 1.0) is not None


# A damaged cache document: ignored or its bad entries dropped, with a warning, never raised.
_SAVED = {
    "mode": "enforce",
    "mx": ["mail.example.com"],
    "max_age": 604800,
    "policy_id": "one",
    "fetched_at": 50.0,
}


def _entry_text(**changes: str) -> str:
    """A saved entry with some values replaced by raw JSON text."""
    values = {k: json.dumps(v) for k, v in _SAVED.items()} | changes
    return "{" + ", ".join(f'"{k}": {v}' for k, v in values.items()) + "}"


@pytest.mark.parametrize(
    "content",
    [
        "[" * 100_000 + "]" * 100_000,  # nesting deeper than the parser goes
        '{"policies": ' + '{"a": ' * 100_000 + "1" + "}" * 100_001,
        '{"policies": {"x.com": {"max_age": ' + "9" * 5000 + "}}}",  # > 4300 digits
        '{"policies": []}',
        "null",
    ],
    ids=["nested array", "nested object", "huge integer", "policies not an object", "null"],
)
def test_rfc8461_5_1_damaged_cache_document_is_ignored_with_warning(
    caplog: pytest.LogCaptureFixture, content: str
) -> None:
    with caplog.at_level(logging.WARNING, logger="smtp_rtls.policy.mtasts"):
        cache = STSCache.from_json(content)
    assert cache.get("x.com", 0.0) is None
    assert "ignoring unreadable MTA-STS cache" in caplog.text


@pytest.mark.parametrize(
    "change",
    [
        {"max_age": "1e400"},  # a float too large: infinity
        {"max_age": "1" + "0" * 400},  # an int too large for a float
        {"max_age": "NaN"},
        {"max_age": "-1"},
        {"max_age": str(MAX_MAX_AGE + 1)},  # RFC 8461 §3.2: at most one year
        {"max_age": "true"},
        {"max_age": "86400.5"},
        {"fetched_at": "Infinity"},
        {"fetched_at": "-Infinity"},
        {"fetched_at": "NaN"},
        {"fetched_at": '"50"'},
        {"mx": '"mail.example.com"'},  # a string, not a list
        {"mx": '["*"]'},
        {"mx": "[1]"},
        {"mx": "[]"},  # enforce needs an mx pattern (RFC 8461 §3.2)
        {"mode": '"strict"'},
        {"policy_id": "null"},
        {"policy_id": '"not an id!"'},
    ],
    ids=lambda change: "{}={:.12}".format(*next(iter(change.items()))),
)
def test_rfc8461_5_1_cache_entry_with_a_bad_value_is_dropped(
    caplog: pytest.LogCaptureFixture, change: dict[str, str]
) -> None:
    good = _entry_text()
    bad = _entry_text(**change)
    content = f'{{"version": 1, "policies": {{"good.com": {good}, "bad.com": {bad}}}}}'
    with caplog.at_level(logging.WARNING, logger="smtp_rtls.policy.mtasts"):
        cache = STSCache.from_json(content)
    assert cache.get("bad.com", 60.0) is None
    kept = cache.get("good.com", 60.0)
    assert kept is not None and kept.policy.mx == ("mail.example.com",)
    assert "1 dropped ('bad.com'" in caplog.text
    # Nothing kept can raise later either.
    assert not kept.expired(60.0) and kept.expired(1e308)


def test_rfc8461_5_1_cache_document_survives_a_round_trip_through_the_checks() -> None:
    cache = STSCache()
    cache.store("Example.COM", STSPolicy.parse(POLICY, "one"), 1.5)
    cache.store("none.example", STSPolicy.parse("version: STSv1\nmode: none\nmax_age: 9\n"), 2)
    again = STSCache.from_json(cache.to_json())
    for domain in ("example.com", "none.example"):
        entry = again.get(domain, 3.0)
        assert entry is not None and entry == cache.get(domain, 3.0)
