"""Harness ``tls_required``: a message into the TLS-Required header parser
(smtp_rtls.policy.tags, RFC 8689 §3, §4.1, §4.3).

Input: the bytes of a message (or of its header section).

ORACLE:

* ``parse_tls_required``, ``header_section``, ``message_tag`` and
  ``remove_tls_required`` never raise; ``set_tls_required_no`` raises only
  ValueError (documented: a message that starts with a continuation line)
  and TagConflictError with ``requiretls=True`` (RFC 8689 §4.3);
* the result is consistent: ``tls_optional`` only for exactly one instance
  whose value is "No" (any case); a problem is named exactly when
  instances were found and ignored;
* only the header section counts (RFC 8689 §4.1 ¶2): parsing the message
  and parsing its header section agree; the header section is a prefix of
  the message and taking it twice changes nothing;
* the REQUIRETLS parameter wins (§4.1 ¶2);
* after ``remove_tls_required`` no instance is left and the body is
  untouched; after ``set_tls_required_no`` the message is TLS-optional;
  ``originate(message, tag)`` gives a message whose tag is ``tag``.
"""

from __future__ import annotations

import sys

import atheris
from fuzz_common import main

with atheris.instrument_imports(include=["smtp_rtls"]):
    from smtp_rtls.policy.tags import (
        TagConflictError,
        TLSTag,
        header_section,
        message_tag,
        originate,
        parse_tls_required,
        remove_tls_required,
        set_tls_required_no,
    )


def TestOneInput(data: bytes) -> None:
    field = parse_tls_required(data)
    assert field.present == bool(field.values)
    if field.tls_optional:
        assert len(field.values) == 1 and field.values[0].lower() == "no", field
    assert bool(field.problem) == (field.present and not field.tls_optional), field
    head = header_section(data)
    assert data.startswith(head) and header_section(head) == head
    assert parse_tls_required(head) == field
    assert message_tag(True, data) is TLSTag.REQUIRETLS
    expected = TLSTag.TLS_OPTIONAL if field.tls_optional else TLSTag.DEFAULT
    assert message_tag(False, data) is expected

    removed = remove_tls_required(data)
    assert not parse_tls_required(removed).present, removed
    assert removed.endswith(data[len(head) :]), (data, removed)
    try:
        set_tls_required_no(data, requiretls=True)
    except TagConflictError:
        pass
    else:
        raise AssertionError("REQUIRETLS and TLS-Required: No together")
    try:
        marked = set_tls_required_no(data)
    except ValueError:
        # documented: only a message that starts with a continuation line
        assert data[len(head) :].startswith((b" ", b"\t")), data
        marked = None
    if marked is not None:
        again = parse_tls_required(marked)
        assert again.tls_optional, (data, marked, again)
    for tag in TLSTag:
        try:
            origination = originate(data, tag)
        except ValueError:
            assert tag is TLSTag.TLS_OPTIONAL and marked is None
            continue
        assert message_tag(origination.requiretls, origination.message) is tag, (tag, data)


if __name__ == "__main__":
    main(TestOneInput, sys.argv)
