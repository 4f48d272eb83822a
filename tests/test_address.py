"""Address: the path grammar of RFC 5321 §4.1.2 / §4.1.3, its limits (§4.5.3.1)
and the UTF-8 forms of RFC 6531 §3.3."""

from __future__ import annotations

import pytest
from hypothesis import given

from smtp_rtls import Address, AddressError, LocalProtocolError, MailFrom, RcptTo
from smtp_rtls._address import check_domain
from smtp_rtls._commands import CommandSyntaxError, parse_command
from smtp_rtls.testing import strategies as sst

# -- round trip ------------------------------------------------------------------


@given(sst.addresses(utf8=True))
def test_path_round_trip_utf8(address: Address) -> None:
    assert Address.parse(address.path()) == address
    assert Address.parse(str(address)) == address


@given(sst.addresses())
def test_path_round_trip_ascii_without_smtputf8(address: Address) -> None:
    assert address.is_ascii
    assert Address.parse(address.path(), utf8=False) == address


@given(sst.reverse_paths(), sst.forward_paths())
def test_null_and_postmaster_round_trip(reverse: Address, forward: Address) -> None:
    assert Address.parse(reverse.path()) == reverse
    assert Address.parse(forward.path()) == forward


# -- grammar -------------------------------------------------------------------------


def test_source_route_is_accepted_and_dropped_rfc5321_4_1_2_appendix_c() -> None:
    address = Address.parse("<@relay1.example,@relay2.example:user@final.example>")
    assert address == Address("user", "final.example")
    assert address.path() == "<user@final.example>"


def test_source_route_dropped_in_mail_and_rcpt_commands_rfc5321_appendix_c() -> None:
    mail = parse_command("MAIL FROM:<@a.example:joe@b.example>")
    rcpt = parse_command("RCPT TO:<@a.example,@c.example:ann@d.example>")
    assert mail == MailFrom(Address("joe", "b.example"))
    assert rcpt == RcptTo(Address("ann", "d.example"))


def test_local_part_case_is_preserved_rfc5321_2_4() -> None:
    address = Address.parse("<John.Smith@Example.COM>")
    assert address.local_part == "John.Smith"
    assert address.path() == "<John.Smith@Example.COM>"
    # "smith" and "Smith" may be different mailboxes: they must not compare equal
    assert address != Address.parse("<john.smith@example.com>")


def test_quoted_local_part_is_stored_unquoted_and_quoted_again_rfc5321_4_1_2() -> None:
    address = Address.parse('<"John Doe"@example.com>')
    assert address.local_part == "John Doe"
    assert address.path() == '<"John Doe"@example.com>'


def test_quoted_pair_unescapes_and_escapes_rfc5321_4_1_2() -> None:
    address = Address.parse(r'<"a\"b\\c"@example.com>')
    assert address.local_part == 'a"b\\c'
    assert address.path() == r'<"a\"b\\c"@example.com>'


def test_needless_quotes_are_dropped_on_output() -> None:
    address = Address.parse('<"abc"@example.com>')
    assert address == Address("abc", "example.com")
    assert address.path() == "<abc@example.com>"


def test_an_empty_quoted_local_part_is_valid_rfc5321_4_1_2() -> None:
    # Quoted-string = DQUOTE *QcontentSMTP DQUOTE: no Qcontent at all is one
    address = Address.parse('<""@example.com>')
    assert (address.local_part, address.domain) == ("", "example.com")
    assert not address.is_null and not address.is_postmaster
    assert address.path() == '<""@example.com>'
    assert Address("", "example.com") == address
    event = parse_command('RCPT TO:<""@example.com>')
    assert isinstance(event, RcptTo) and event.forward_path == address
    # and an empty Dot-string is still no local part
    with pytest.raises(AddressError):
        Address.parse("<@example.com>")


def test_quoted_local_part_may_hold_at_and_angle_brackets() -> None:
    # qtextSMTP admits ">" and "@": the command parser must not cut the path there
    event = parse_command('MAIL FROM:<"a>b@c"@example.com> SIZE=10')
    assert isinstance(event, MailFrom)
    assert event.reverse_path == Address("a>b@c", "example.com")
    assert event.size == 10


@pytest.mark.parametrize(
    "text",
    [
        "<.a@example.com>",  # Dot-string cannot start with "."
        "<a.@example.com>",
        "<a..b@example.com>",
        "<a b@example.com>",
        "<a@-example.com>",  # sub-domain = Let-dig [Ldh-str]
        "<a@example-.com>",
        "<a@example..com>",
        "<a@example.com.>",
        "<a@>",
        "<@example.com>",
        "<a>",
        "<a@example.com",
        '<"unterminated@example.com>',
        "<a@[300.1.1.1]>",  # Snum is 0 through 255
        "<a@[1.2.3]>",  # exactly four Snum
        "<a@[IPv6:1::2::3]>",
        "<a@[IPv6:zz::1]>",
        "<a@[IPv6:fe80::1%eth0]>",  # IPv6-addr has no zone ID
        "<a@[IPv6:1.2.3.4]>",
        "<a@[no-colon]>",  # General-address-literal needs "tag:"
        "<a@[tag:x[y]>",  # dcontent excludes "[", "\\" and "]"
    ],
)
def test_bad_paths_are_refused_rfc5321_4_1_2(text: str) -> None:
    with pytest.raises(AddressError) as info:
        Address.parse(text)
    assert not info.value.too_long


@pytest.mark.parametrize(
    "literal", ["[192.0.2.1]", "[0.0.0.0]", "[IPv6:2001:db8::1]", "[IPv6:::ffff:192.0.2.1]"]
)
def test_ip_address_literals_rfc5321_4_1_3(literal: str) -> None:
    address = Address.parse(f"<postmaster@{literal}>")
    assert address.domain == literal
    assert not address.is_postmaster


def test_general_address_literal_rfc5321_4_1_3() -> None:
    address = Address.parse("<a@[x-tag:some>content]>")
    assert address.domain == "[x-tag:some>content]"
    assert parse_command("RCPT TO:<a@[x-tag:some>content]>") == RcptTo(address)


# -- special paths -------------------------------------------------------------------


def test_null_reverse_path_rfc5321_4_5_5() -> None:
    assert Address.parse("<>") == Address.null()
    assert Address.null().path() == "<>"
    assert parse_command("MAIL FROM:<>") == MailFrom(Address.null())
    with pytest.raises(AddressError):
        Address.parse("<>", null=False)


def test_null_path_is_no_forward_path_rfc5321_4_1_1_3() -> None:
    with pytest.raises(CommandSyntaxError) as info:
        parse_command("RCPT TO:<>")
    assert info.value.reply.code == 501
    with pytest.raises(LocalProtocolError):
        RcptTo(Address.null())


@pytest.mark.parametrize("spelling", ["Postmaster", "postmaster", "POSTMASTER"])
def test_postmaster_recipient_without_domain_rfc5321_4_1_1_3(spelling: str) -> None:
    event = parse_command(f"RCPT TO:<{spelling}>")
    assert isinstance(event, RcptTo)
    assert event.forward_path.is_postmaster
    assert event.forward_path.local_part == spelling
    assert event.forward_path.path() == f"<{spelling}>"


def test_postmaster_is_not_a_reverse_path_rfc5321_4_1_1_3() -> None:
    with pytest.raises(CommandSyntaxError) as info:
        parse_command("MAIL FROM:<Postmaster>")
    assert info.value.reply.code == 501
    with pytest.raises(LocalProtocolError):
        MailFrom(Address("postmaster", ""))


def test_only_postmaster_may_lack_a_domain() -> None:
    with pytest.raises(AddressError):
        Address("root", "")
    with pytest.raises(AddressError):
        Address.parse("<root>")


# -- length limits -------------------------------------------------------------------


def test_local_part_of_64_octets_is_accepted_65_refused_rfc5321_4_5_3_1_1() -> None:
    assert Address.parse(f"<{'a' * 64}@example.com>").local_part == "a" * 64
    with pytest.raises(AddressError) as info:
        Address.parse(f"<{'a' * 65}@example.com>")
    assert info.value.too_long
    with pytest.raises(AddressError) as info:
        Address("a" * 65, "example.com")
    assert info.value.too_long


def test_local_part_limit_counts_octets_and_quotes_rfc5321_4_5_3_1_1() -> None:
    # 62 characters plus the two quotes of the Quoted-string is 64 octets
    assert Address(" " + "a" * 61, "example.com").local_part == " " + "a" * 61
    with pytest.raises(AddressError) as info:
        Address(" " + "a" * 62, "example.com")
    assert info.value.too_long
    # "é" is two octets in UTF-8: 32 of them are 64 octets, 33 are too many
    assert Address("é" * 32, "example.com")
    with pytest.raises(AddressError) as info:
        Address("é" * 33, "example.com")
    assert info.value.too_long


def test_domain_of_255_octets_is_accepted_256_refused_rfc5321_4_5_3_1_2() -> None:
    ok = ".".join(["d" * 63] * 4)[:255]
    assert len(ok) == 255 and not ok.endswith(".")
    check_domain(ok)
    too_long = ok + "d"
    with pytest.raises(AddressError) as info:
        check_domain(too_long)
    assert info.value.too_long


def test_path_of_256_octets_is_accepted_257_refused_rfc5321_4_5_3_1_3() -> None:
    local = "a" * 64
    # "<" + 64 + "@" + domain + ">" = 256 when the domain has 189 octets
    domain = "b" * 63 + "." + "c" * 63 + "." + "d" * 61
    assert len(domain) == 189
    address = Address.parse(f"<{local}@{domain}>")
    assert len(address.path()) == 256
    with pytest.raises(AddressError) as info:
        Address.parse(f"<{local}@{domain}e>")
    assert info.value.too_long
    with pytest.raises(AddressError) as info:
        Address(local, domain + "e")
    assert info.value.too_long


def test_too_long_path_in_a_command_gives_501_path_too_long_rfc5321_4_5_3_1_9() -> None:
    with pytest.raises(CommandSyntaxError) as info:
        parse_command(f"MAIL FROM:<{'a' * 65}@example.com>")
    assert (info.value.reply.code, str(info.value.reply.enhanced)) == (501, "5.5.4")
    assert info.value.reply.text == "Path too long"
    with pytest.raises(CommandSyntaxError) as info:
        parse_command(f"RCPT TO:<a@{'b' * 63}.{'c' * 63}.{'d' * 63}.{'e' * 63}>")
    assert info.value.reply.text == "Path too long"


def test_syntax_error_is_not_reported_as_too_long() -> None:
    with pytest.raises(CommandSyntaxError) as info:
        parse_command("MAIL FROM:<a..b@example.com>")
    assert info.value.reply.code == 501
    assert info.value.reply.text != "Path too long"


# -- UTF-8 (RFC 6531) ------------------------------------------------------------------


def test_utf8_address_only_with_smtputf8_rfc6531_3_3() -> None:
    assert Address.parse("<jöran@bücher.example>").local_part == "jöran"
    with pytest.raises(AddressError):
        Address.parse("<jöran@example.com>", utf8=False)
    with pytest.raises(AddressError):
        Address.parse("<joran@bücher.example>", utf8=False)


def test_utf8_mail_from_needs_the_smtputf8_parameter_rfc6531_3_4() -> None:
    with pytest.raises(CommandSyntaxError) as info:
        parse_command("MAIL FROM:<jöran@example.com>")
    assert (info.value.reply.code, str(info.value.reply.enhanced)) == (550, "5.6.7")
    event = parse_command("MAIL FROM:<jöran@example.com> SMTPUTF8")
    assert isinstance(event, MailFrom)
    assert event.smtputf8 and event.reverse_path.local_part == "jöran"


def test_utf8_rcpt_only_in_an_smtputf8_transaction_rfc6531_3_4() -> None:
    with pytest.raises(CommandSyntaxError) as info:
        parse_command("RCPT TO:<用户@例子.广告>")
    # RFC 6531 §3.5: 553 5.6.7, as for MAIL (550 5.6.7)
    assert (info.value.reply.code, str(info.value.reply.enhanced)) == (553, "5.6.7")
    event = parse_command("RCPT TO:<用户@例子.广告>", utf8=True)
    assert event == RcptTo(Address("用户", "例子.广告"))


def test_invalid_utf8_is_refused_even_with_smtputf8_rfc6531_3_3() -> None:
    # the server decodes with surrogateescape: the octet 0xFF arrives as U+DCFF
    with pytest.raises(CommandSyntaxError) as info:
        parse_command("MAIL FROM:<\udcff@example.com> SMTPUTF8")
    assert info.value.reply.code == 501
    with pytest.raises(AddressError):
        Address("\ud800", "example.com")


def test_non_ascii_mail_from_event_needs_smtputf8_rfc6531_3_4() -> None:
    with pytest.raises(LocalProtocolError):
        MailFrom(Address("jöran", "example.com"))
    assert MailFrom(Address("jöran", "example.com"), smtputf8=True).smtputf8


@pytest.mark.parametrize("bad", ["a\r", "a\nb", "a\x00", "\x7f", "a\tb"])
def test_control_characters_are_refused_in_both_parts(bad: str) -> None:
    with pytest.raises(AddressError):
        Address(bad, "example.com")
    with pytest.raises(AddressError):
        Address("a", "example" + bad)
