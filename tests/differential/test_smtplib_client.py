"""What smtplib writes for a sender or recipient (``SMTP.mail``,
``SMTP.rcpt``: ``quoteaddr``, the stdlib's RFC 5322 address parser) against
what smtp_rtls writes and reads.

For every valid mailbox smtplib writes the very line smtp_rtls's
``format_command`` writes, and smtp_rtls's server reads the mailbox back.
smtplib also takes RFC 5322 header forms (a display name, a comment, a
list) and writes the one addr-spec it finds, where smtp_rtls's Address
refuses the text: the "quoteaddr" class.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings

from smtp_rtls import Address, AddressError, MailFrom, RcptTo
from smtp_rtls._commands import format_command
from smtp_rtls.testing import strategies as sst

from .classes import path_faults
from .peers import OurServer, smtplib_written


@pytest.fixture(scope="module")
def server() -> Iterator[OurServer]:
    yield OurServer()


def same_line(a: bytes, b: bytes) -> bool:
    """The same command line but for the case of the verb (RFC 5321 §2.4)."""
    return a[:4].upper() == b[:4].upper() and a[4:] == b[4:]


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(sst.addresses())
def test_smtplib_writes_our_mail_and_rcpt_lines_rfc5321_4_1_2(
    server: OurServer, address: Address
) -> None:
    # smtplib writes the verbs in lower case (RFC 5321 §2.4: any case)
    mail = smtplib_written("mail", str(address))
    assert same_line(mail, format_command(MailFrom(address)))
    assert server.mail(mail).address == str(address)
    rcpt = smtplib_written("rcpt", str(address))
    assert same_line(rcpt, format_command(RcptTo(address)))
    assert server.rcpt(rcpt).address == str(address)


# (what the application gives, the path smtplib writes for it)
QUOTEADDR_EXAMPLES = [
    # RFC 5322 §3.4 name-addr and CFWS, a list: smtplib writes the first
    # addr-spec; RFC 5321 §4.1.2 has a path there, so smtp_rtls refuses
    ("Alice <a@b.example>", "<a@b.example>"),
    ("a@b.example (Alice)", "<a@b.example>"),
    ("a@b.example, c@d.example", "<a@b.example>"),
    ("<a@b.example> SIZE=1", "<a@b.example>"),
    # what parseaddr cannot read goes out as given: no RFC 5321 path
    ("a b@c.example", "<a b@c.example>"),
]


@pytest.mark.parametrize(("given_text", "written"), QUOTEADDR_EXAMPLES)
def test_smtplib_quoteaddr_examples(server: OurServer, given_text: str, written: str) -> None:
    line = smtplib_written("mail", given_text)
    assert same_line(line, f"MAIL FROM:{written}\r\n".encode())
    with pytest.raises(AddressError):
        Address.parse(given_text)
    if path_faults(written, reverse=True, utf8=False):
        assert not server.mail(line).accepted
    else:
        assert server.mail(line).address == written[1:-1]
