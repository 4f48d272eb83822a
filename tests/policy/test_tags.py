"""TLS-Required header parsing and message tags (RFC 8689 §3, §4.1, §4.3, §6)."""

from __future__ import annotations

import logging
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtp_rtls.policy.tags import (
    TagConflictError,
    TLSTag,
    expand,
    header_section,
    message_tag,
    originate,
    parse_tls_required,
    remove_tls_required,
    reoriginate,
    set_tls_required_no,
)

BODY = b"Hello.\r\n"


def msg(*fields: bytes, body: bytes = BODY) -> bytes:
    return b"".join(f + b"\r\n" for f in fields) + b"\r\n" + body


@pytest.mark.parametrize(
    "field",
    [
        b"TLS-Required: No",
        b"TLS-Required:No",
        b"tls-required: no",
        b"TLS-REQUIRED: NO",
        b"TLS-Required:\r\n No",  # RFC 5322 §2.2.3 folding
        b"TLS-Required:\r\n\t  No  ",
        b"TLS-Required :  No",  # obs-optional, RFC 5322 §4.5.8
        b"TLS-Required: No\t ",
    ],
)
def test_rfc8689_s3_tls_required_no_is_recognised(field: bytes) -> None:
    message = msg(b"From: a@example.org", field, b"Subject: hi")
    assert parse_tls_required(message).tls_optional
    assert message_tag(False, message) is TLSTag.TLS_OPTIONAL


@pytest.mark.parametrize(
    "field",
    [
        b"TLS-Required: Yes",
        b"TLS-Required: No thanks",
        b"TLS-Required: N\r\n o",  # unfolds to "N o"
        b"TLS-Required:",
        b'TLS-Required: "No"',
    ],
)
def test_rfc8689_s3_other_values_are_no_tag_and_logged(
    field: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    message = msg(b"From: a@example.org", field)
    with caplog.at_level(logging.WARNING, logger="smtp_rtls.policy.tags"):
        result = parse_tls_required(message)
    assert result.present and not result.tls_optional
    assert "not 'No'" in result.problem
    assert any("TLS-Required ignored" in r.getMessage() for r in caplog.records)
    assert message_tag(False, message) is TLSTag.DEFAULT


def test_rfc8689_s3_more_than_one_instance_is_no_tag(caplog: pytest.LogCaptureFixture) -> None:
    """§3: more than one instance MUST NOT appear; our receiver honours none of them."""
    message = msg(b"TLS-Required: No", b"Subject: x", b"TLS-Required: No")
    with caplog.at_level(logging.WARNING, logger="smtp_rtls.policy.tags"):
        result = parse_tls_required(message)
    assert result.values == ("No", "No")
    assert not result.tls_optional
    assert "2 TLS-Required fields" in result.problem
    assert caplog.records
    assert message_tag(False, message) is TLSTag.DEFAULT


def test_rfc8689_s4_1_field_in_body_does_not_count() -> None:
    message = msg(b"From: a@example.org", body=b"TLS-Required: No\r\n")
    assert not parse_tls_required(message).present
    assert message_tag(False, message) is TLSTag.DEFAULT


def test_field_in_body_does_not_make_a_header_duplicate() -> None:
    message = msg(b"TLS-Required: No", body=b"TLS-Required: No\r\n")
    assert message_tag(False, message) is TLSTag.TLS_OPTIONAL


def test_field_name_must_start_a_line() -> None:
    message = msg(
        b"X-TLS-Required: No", b"Subject: TLS-Required: No", b"Comments: a\r\n TLS-Required: No"
    )
    assert not parse_tls_required(message).present


def test_message_without_header_section() -> None:
    assert header_section(b"\r\nTLS-Required: No\r\n") == b""
    assert message_tag(False, b"\r\nTLS-Required: No\r\n") is TLSTag.DEFAULT


def test_header_only_without_empty_line_is_all_header() -> None:
    assert message_tag(False, b"TLS-Required: No\r\n") is TLSTag.TLS_OPTIONAL
    assert message_tag(False, b"TLS-Required: No") is TLSTag.TLS_OPTIONAL


def test_lf_line_ends_are_read_too() -> None:
    assert message_tag(False, b"From: a\nTLS-Required: no\n\nbody\n") is TLSTag.TLS_OPTIONAL
    assert message_tag(False, b"From: a\n\nTLS-Required: no\n") is TLSTag.DEFAULT


def test_rfc8689_s4_1_mail_parameter_wins_over_header() -> None:
    """§4.1 ¶2: with REQUIRETLS on MAIL FROM, the TLS-Required field MUST be ignored."""
    message = msg(b"TLS-Required: No")
    assert message_tag(True, message) is TLSTag.REQUIRETLS
    assert message_tag(True, b"") is TLSTag.REQUIRETLS


def test_big_body_is_not_scanned() -> None:
    """Only the header section is read: a 50 MB body costs (almost) nothing."""
    small = msg(b"From: a@example.org", b"TLS-Required: No", body=b"x\r\n")
    big = msg(
        b"From: a@example.org", b"TLS-Required: No", body=b"TLS-Required: No\r\n" * 3_000_000
    )
    t0 = time.perf_counter()
    for _ in range(20):
        assert message_tag(False, small) is TLSTag.TLS_OPTIONAL
    t_small = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(20):
        assert message_tag(False, big) is TLSTag.TLS_OPTIONAL
    t_big = time.perf_counter() - t0
    # Scanning 50 MB twenty times would take seconds; the header is 40 octets.
    assert t_big < max(0.05, 20 * t_small)


# -- originators (RFC 8689 §4.3) --------------------------------------------


def test_rfc8689_s4_3_set_tls_required_no_adds_exactly_one() -> None:
    message = msg(b"From: a@example.org", b"Subject: hi")
    out = set_tls_required_no(message)
    assert out.startswith(b"TLS-Required: No\r\nFrom: a@example.org\r\n")
    assert out.endswith(b"\r\n\r\n" + BODY)
    again = set_tls_required_no(out)
    assert again == out
    assert parse_tls_required(again).values == ("No",)


def test_rfc8689_s3_set_replaces_duplicates_and_bad_values_keeps_body() -> None:
    body = b"TLS-Required: yes\r\n"
    message = msg(b"TLS-Required: yes", b"From: a", b"tls-required:\r\n no", body=body)
    out = set_tls_required_no(message)
    assert out == b"TLS-Required: No\r\nFrom: a\r\n\r\n" + body


def test_set_on_empty_header_and_lf_message() -> None:
    assert set_tls_required_no(b"\r\nbody") == b"TLS-Required: No\r\n\r\nbody"
    assert set_tls_required_no(b"From: a\n\nbody\n") == b"TLS-Required: No\nFrom: a\n\nbody\n"


def test_rfc8689_s4_3_never_both_tags() -> None:
    with pytest.raises(TagConflictError):
        set_tls_required_no(msg(b"From: a"), requiretls=True)


@pytest.mark.parametrize("tag", list(TLSTag))
def test_originate_gives_exactly_the_requested_tag(tag: TLSTag) -> None:
    message = msg(b"From: a", b"TLS-Required: No", b"TLS-Required: maybe")
    out = originate(message, tag)
    assert out.requiretls is tag.mail_parameter
    assert message_tag(out.requiretls, out.message) is tag
    count = len(parse_tls_required(out.message).values)
    assert count == (1 if tag is TLSTag.TLS_OPTIONAL else 0)


def test_remove_tls_required_leaves_body() -> None:
    message = msg(b"A: 1", b"TLS-Required: No", b"B: 2", body=b"TLS-Required: No\r\n")
    assert remove_tls_required(message) == msg(b"A: 1", b"B: 2", body=b"TLS-Required: No\r\n")


_field_name = st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,15}", fullmatch=True).filter(
    lambda n: n.lower() != "tls-required"
)
_field = st.tuples(_field_name, st.from_regex(r"[ -~]{0,30}", fullmatch=True)).map(
    lambda f: f"{f[0]}: {f[1]}".encode()
)


@given(
    fields=st.lists(_field, max_size=8),
    body=st.binary(max_size=200),
    tag=st.sampled_from(list(TLSTag)),
)
def test_originate_round_trips_for_any_header(
    fields: list[bytes], body: bytes, tag: TLSTag
) -> None:
    message = msg(*fields, body=body)
    out = originate(message, tag)
    assert message_tag(out.requiretls, out.message) is tag
    # The body is never touched.
    assert out.message.endswith(b"\r\n\r\n" + body) or (not fields and out.message.endswith(body))


@given(fields=st.lists(_field, max_size=8), body=st.binary(max_size=200))
def test_other_fields_never_make_a_tag(fields: list[bytes], body: bytes) -> None:
    assert message_tag(False, msg(*fields, body=body)) is TLSTag.DEFAULT


# -- where the header section ends (RFC 5322 §2.1, §2.2) -------------------


@pytest.mark.parametrize(
    ("message", "head"),
    [
        # No empty line: the first line of body text ends the header section.
        (b"From: a\r\nSubject: b\r\nHello Bob,\r\nsee you.\r\n", b"From: a\r\nSubject: b\r\n"),
        # A malformed line (no colon, a space in the name, 8-bit name) ends it too.
        (b"From: a\r\nnot a field\r\nTo: b\r\n\r\nbody", b"From: a\r\n"),
        (b"From: a\r\nNot A: field\r\n\r\n", b"From: a\r\n"),
        (b"From: a\r\n\xc3\xa9t\xc3\xa9: x\r\n\r\n", b"From: a\r\n"),
        (b"From: a\r\n: no name\r\n\r\n", b"From: a\r\n"),
        # Folded lines belong to their field (§2.2.3); obs-optional is a field (§4.5.8).
        (
            b"Subject: a\r\n b\r\n\tc\r\nX-Y : z\r\n\r\nbody",
            b"Subject: a\r\n b\r\n\tc\r\nX-Y : z\r\n",
        ),
        # A continuation line with no field above it is not a header.
        (b" folded\r\nFrom: a\r\n\r\n", b""),
        (b"From: a\nbody\n", b"From: a\n"),
        (b"From: a", b"From: a"),
    ],
)
def test_rfc5322_s2_1_header_section_ends_at_the_first_line_that_is_not_a_field(
    message: bytes, head: bytes
) -> None:
    """Body text never counts as header, with or without the empty line (as Postfix)."""
    assert header_section(message) == head


def test_rfc5322_s2_1_tls_required_after_body_text_is_not_a_header_field() -> None:
    message = b"From: a\r\nHello Bob,\r\nTLS-Required: No\r\n"
    assert message_tag(False, message) is TLSTag.DEFAULT
    assert remove_tls_required(message) == message


def test_rfc5322_s2_1_a_long_header_section_ends_where_the_body_starts() -> None:
    """200 000 fields, then body text without an empty line."""
    fields = b"X-A: 1\r\n" * 200_000
    assert header_section(fields + b"body line\r\n" * 10) == fields


# -- bare CR: only CRLF (or LF) ends a line -----------------------------------


def test_bare_cr_ends_no_line_so_two_instances_stay_two() -> None:
    """A field ending in a bare CR is still a field: two instances, no tag (RFC 8689 §3)."""
    message = msg(b"TLS-Required: No\r", b"From: a", b"TLS-Required: No")
    result = parse_tls_required(message)
    assert result.values == ("No\r", "No")
    assert not result.tls_optional
    assert message_tag(False, message) is TLSTag.DEFAULT


def test_bare_cr_field_is_removed_and_replaced_like_any_other() -> None:
    message = msg(b"From: a", b"TLS-Required: No\r", b"Subject: s")
    assert remove_tls_required(message) == msg(b"From: a", b"Subject: s")
    assert set_tls_required_no(message) == msg(b"TLS-Required: No", b"From: a", b"Subject: s")
    bare_cr_inside = msg(b"From: a", b"TLS-Required: yes\rNo")
    assert parse_tls_required(bare_cr_inside).values == ("yes\rNo",)
    assert remove_tls_required(bare_cr_inside) == msg(b"From: a")


def test_bare_cr_does_not_start_a_field() -> None:
    """A bare CR is a character of its line: what follows it is not a new line."""
    message = msg(b"Subject: a\rTLS-Required: No")
    assert not parse_tls_required(message).present
    assert remove_tls_required(message) == message


# -- the added field is one line, first (RFC 8689 §3) ------------------------


def test_rfc8689_s3_added_field_never_absorbs_a_leading_continuation_line() -> None:
    """A header section starting with a folded line is refused, not silently corrupted."""
    message = b" folded\r\nFrom: a\r\n\r\nbody\r\n"
    with pytest.raises(ValueError, match="continuation line"):
        set_tls_required_no(message)
    with pytest.raises(ValueError, match="continuation line"):
        originate(message, TLSTag.TLS_OPTIONAL)
    # Removing needs no new field: allowed, and there is nothing to remove.
    assert originate(message, TLSTag.DEFAULT).message == message


_line = st.sampled_from(
    [
        b"From: a@example.org",
        b"TLS-Required: No",
        b"tls-required : yes",
        b"TLS-Required: No\r",
        b"TLS-Required:",
        b" folded",
        b"\tNo",
        b"",
        b"body text",
        b"Subject: a\rTLS-Required: No",
        b"\r",
    ]
)
_eol = st.sampled_from([b"\r\n", b"\n", b"\r", b""])


@given(lines=st.lists(st.tuples(_line, _eol), max_size=8))
def test_the_remover_removes_what_the_parser_sees(lines: list[tuple[bytes, bytes]]) -> None:
    message = b"".join(line + eol for line, eol in lines)
    head = header_section(message)
    removed = remove_tls_required(message)
    assert not parse_tls_required(removed).present
    assert removed.endswith(message[len(head) :])  # the body is never touched
    try:
        added = set_tls_required_no(message)
    except ValueError:
        assert message.startswith((b" ", b"\t"))
        return
    assert parse_tls_required(added).values == ("No",)
    first, _, rest = added.partition(b"\n")
    assert first in (b"TLS-Required: No", b"TLS-Required: No\r")
    assert not rest.startswith((b" ", b"\t"))  # one line: nothing folds into it
    assert message_tag(False, added) is TLSTag.TLS_OPTIONAL


# -- expanders and mediators (RFC 8689 §4.1 ¶3, §6) -------------------------


@pytest.mark.parametrize("tag", list(TLSTag))
def test_rfc8689_s4_1_every_copy_tagged_the_same(tag: TLSTag) -> None:
    assert expand(tag, 3) == (tag, tag, tag)
    assert expand(tag, 0) == ()
    with pytest.raises(ValueError):
        expand(tag, -1)


@pytest.mark.parametrize("tag", list(TLSTag))
def test_rfc8689_s6_reorigination_keeps_tags_by_default(tag: TLSTag) -> None:
    assert reoriginate(tag) is tag
    assert reoriginate(tag, drop=True) is TLSTag.DEFAULT


def test_rfc8689_s6_force_requiretls_except_tls_optional() -> None:
    assert reoriginate(TLSTag.DEFAULT, force_requiretls=True) is TLSTag.REQUIRETLS
    assert reoriginate(TLSTag.TLS_OPTIONAL, force_requiretls=True) is TLSTag.TLS_OPTIONAL
    with pytest.raises(ValueError):
        reoriginate(TLSTag.REQUIRETLS, drop=True, force_requiretls=True)
