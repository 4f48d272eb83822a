"""CR, LF and other control characters in every API field that reaches the
wire, through every adapter: each is a LocalProtocolError (or its subclass
AddressError) raised before a byte is written.

RFC 5321 §2.3.8: CR and LF appear on the wire only together, as the line
end; §4.1.1: a command is one line.  A CR or LF in a field would end the
command early and let the rest of the field be read as a command of the
attacker's (the client side), or a reply (the server side); a NUL cuts a
field short in C peers.

Client side, the fields go through each adapter's connect() to our server
behind a transparent :class:`~smtp_rtls.testing.mitm.MitmProxy` that
records every command line: after each refusal the client sends NOOP, so
the proxy's record proves that nothing was written between the two (what
the client wrote before the NOOP would arrive before it).  Server side:
the hostname given to serve(), the texts and keywords of ServerConfig, and
the replies a handler builds.  And the command-line tool's options.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from attack_helpers import TIMEOUT, RawClient, Watching, connect, deliver, run

from adapters import KINDS, running
from smtp_rtls import (
    Auth,
    Expn,
    Helo,
    Help,
    LocalProtocolError,
    MailFrom,
    Noop,
    RcptTo,
    Reply,
    ServerConfig,
    ServerConnection,
    Vrfy,
)
from smtp_rtls.cli import main
from smtp_rtls.io import asyncio as aio
from smtp_rtls.io import sync
from smtp_rtls.io import trio as trio_io
from smtp_rtls.session.server import SessionInfo
from smtp_rtls.testing.mitm import MitmProxy
from smtp_rtls.testing.peers import loopback_dns
from smtp_rtls.testing.server import LoopbackServer

# bare and paired line ends, NUL, another C0 control and DEL
CONTROLS = {"CRLF": "\r\n", "LF": "\n", "CR": "\r", "NUL": "\x00", "ESC": "\x1b", "DEL": "\x7f"}
OK = "alice@sender.example"
TO = "bob@example.org"
MESSAGE = b"Subject: x\r\n\r\nx\r\n"


def client_fields(c: str) -> dict[str, Callable[[Any], Any]]:
    """Every way the client API takes text that becomes a command, each with
    ``c`` in it, followed by a forged command."""
    forged = f"{c}RSET"
    return {
        "EHLO name": lambda cl: cl.ehlo(f"client.example{forged}"),
        "HELO name": lambda cl: cl.command(Helo(f"client.example{forged}")),
        "MAIL address": lambda cl: cl.send(f"alice{forged}@sender.example", [TO], MESSAGE),
        "MAIL address, quoted": lambda cl: cl.send(
            f'"al{forged}ice"@sender.example', [TO], MESSAGE
        ),
        "MAIL address literal": lambda cl: cl.send(f"a@[127.0.0.1{forged}]", [TO], MESSAGE),
        "MAIL domain": lambda cl: cl.send(f"alice@sender.example{forged}", [TO], MESSAGE),
        "MAIL ENVID": lambda cl: cl.send(MailFrom(OK, envid=f"id{forged}"), [TO], MESSAGE),
        "MAIL AUTH": lambda cl: cl.send(MailFrom(OK, auth=f"id{forged}"), [TO], MESSAGE),
        "MAIL parameter": lambda cl: cl.send(
            MailFrom(OK, extra=[("X-P", f"v{forged}")]), [TO], MESSAGE
        ),
        "MAIL parameter keyword": lambda cl: cl.send(
            MailFrom(OK, extra=[(f"X-P{forged}", None)]), [TO], MESSAGE
        ),
        "RCPT address": lambda cl: cl.send(OK, [f"bob{forged}@example.org"], MESSAGE),
        "RCPT ORCPT": lambda cl: cl.send(
            OK, [RcptTo(TO, orcpt=("rfc822", f"b{forged}@x.example"))], MESSAGE
        ),
        "RCPT NOTIFY": lambda cl: cl.send(OK, [RcptTo(TO, notify=f"SUCCESS{forged}")], MESSAGE),
        "RCPT parameter": lambda cl: cl.send(
            OK, [RcptTo(TO, extra=[("X-P", f"v{forged}")])], MESSAGE
        ),
        "NOOP text": lambda cl: cl.command(Noop(f"n{forged}")),
        "VRFY text": lambda cl: cl.command(Vrfy(f"bob{forged}")),
        "EXPN text": lambda cl: cl.command(Expn(f"list{forged}")),
        "HELP topic": lambda cl: cl.command(Help(f"topic{forged}")),
        "AUTH mechanism": lambda cl: cl.command(Auth(f"PLAIN{forged}")),
        "AUTH initial response": lambda cl: cl.command(Auth("PLAIN", f"AGE{forged}")),
    }


@pytest.fixture(scope="module")
def target() -> Iterator[LoopbackServer]:
    with LoopbackServer(read_timeout=TIMEOUT) as server:
        yield server


@pytest.mark.parametrize("control", CONTROLS)
@pytest.mark.parametrize("kind", KINDS)
def test_client_fields_refuse_control_characters_before_writing_rfc5321_2_3_8(
    kind: str, control: str, target: LoopbackServer
) -> None:
    fields = client_fields(CONTROLS[control])
    refused: dict[str, str] = {}
    with MitmProxy(target.port, timeout=TIMEOUT) as proxy:

        async def scenario() -> None:
            client = await connect(kind, proxy.port)
            try:
                for name, field in fields.items():
                    with pytest.raises(LocalProtocolError) as error:
                        await field(client)
                    refused[name] = str(error.value)
                    assert (await client.command(Noop())).code == 250
            finally:
                await client.quit()

        run(kind, scenario)
    [conn] = proxy.connections
    # EHLO, then one NOOP per refused field and QUIT: nothing in between
    assert conn.commands == [b"EHLO client.sender.example"] + [b"NOOP"] * len(fields) + [b"QUIT"]
    assert b"RSET" not in conn.to_server
    assert set(refused) == set(fields)


@pytest.mark.parametrize("control", ["CRLF", "NUL"])
@pytest.mark.parametrize("kind", KINDS)
def test_connect_refuses_a_local_hostname_with_control_characters_rfc5321_4_1_1_1(
    kind: str, control: str, target: LoopbackServer
) -> None:
    with MitmProxy(target.port, timeout=TIMEOUT) as proxy:

        async def scenario() -> None:
            with pytest.raises(LocalProtocolError):
                await connect(kind, proxy.port, local_hostname=f"c.example{CONTROLS[control]}RSET")

        run(kind, scenario)
    for conn in proxy.connections:
        assert conn.from_client == b""  # the greeting was read; nothing was written


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "field",
    ["local_hostname", "mail_from", "recipient", "domain"],
)
def test_deliver_refuses_control_characters_before_connecting_rfc5321_2_3_8(
    kind: str, field: str, target: LoopbackServer
) -> None:
    bad = "\r\nRSET"
    args: dict[str, Any] = {
        "mail_from": f"alice{bad}@sender.example" if field == "mail_from" else OK,
        "recipients": [f"bob@example.org{bad}" if field == "recipient" else TO],
        "content": MESSAGE,
        "domain": f"example.org{bad}" if field == "domain" else "example.org",
        "local_hostname": f"c.example{bad}" if field == "local_hostname" else "c.example",
    }
    with (
        MitmProxy(target.port, timeout=TIMEOUT) as proxy,
        pytest.raises((LocalProtocolError, ValueError)),
    ):
        deliver(
            kind, **args, fulfil=loopback_dns("example.org"), port=proxy.port,
            cafile=target.cafile, timeouts={"CONNECT": TIMEOUT},
        )  # fmt: skip
    assert proxy.connections == []


@pytest.mark.parametrize("control", ["CRLF", "NUL"])
def test_auth_plain_refuses_a_nul_in_credentials_rfc4616_2(control: str) -> None:
    """RFC 4616 §2: NUL separates authzid, authcid and password; one inside
    a credential would move the boundary.  (A CR or LF is legal in PLAIN
    credentials and travels base64-encoded, inside one line.)"""
    config = ServerConfig(starttls=True, auth_mechanisms=("PLAIN",), auth_requires_tls=False)
    with (
        LoopbackServer(config=config, read_timeout=TIMEOUT) as server,
        MitmProxy(server.port, timeout=TIMEOUT) as proxy,
        sync.connect("127.0.0.1", proxy.port, local_hostname="c.example", timeout=5) as client,
    ):
        if control == "NUL":
            with pytest.raises(ValueError, match="NUL"):
                client.login("bob\x00admin", "secret")
            with pytest.raises(ValueError, match="NUL"):
                client.login("bob", "secret\x00admin")
        else:
            client.login("bob\r\nRSET", "pw")  # refused by the server: no handler
        client.quit()
    [conn] = proxy.connections
    if control == "NUL":
        assert conn.commands == [b"EHLO c.example", b"QUIT"]
    else:
        assert conn.commands[1].startswith(b"AUTH PLAIN ") and b"RSET" not in conn.to_server


# -- the server side -----------------------------------------------------------------------


def serve(kind: str, hostname: str) -> None:
    """serve() of ``kind`` with ``hostname``, stopped at once if it starts."""
    if kind == "sync":
        sync.serve(Watching(), "127.0.0.1", 0, hostname=hostname).shutdown(1)
    elif kind == "trio":

        async def main_trio() -> None:
            async with trio.open_nursery() as nursery:
                server = await nursery.start(
                    lambda task_status: trio_io.serve(
                        Watching(), "127.0.0.1", 0, hostname=hostname, task_status=task_status
                    )
                )
                await server.shutdown(1)
                nursery.cancel_scope.cancel()

        try:
            trio.run(main_trio)
        except BaseExceptionGroup as group:  # the nursery's: one error inside
            [error] = group.exceptions
            raise error from None
    else:

        async def main_asyncio() -> None:
            server = await aio.serve(Watching(), "127.0.0.1", 0, hostname=hostname)
            await server.shutdown(1)

        run(kind, main_asyncio)


@pytest.mark.parametrize("control", CONTROLS)
@pytest.mark.parametrize("kind", KINDS)
def test_serve_refuses_a_hostname_with_control_characters_rfc5321_4_1_1_1(
    kind: str, control: str
) -> None:
    """The name goes into every greeting and EHLO reply: refused before
    listening (it used to fail every session, after accepting it)."""
    with pytest.raises(LocalProtocolError):
        serve(kind, f"mx.example{CONTROLS[control]}250 forged")
    serve(kind, "mx.example")  # the control: a good name serves


@pytest.mark.parametrize("control", ["CRLF", "CR", "NUL", "ESC", "DEL"])
@pytest.mark.parametrize(
    "option",
    ["help_text", "auth_mechanisms", "extension keyword", "extension parameter", "hostname"],
)
def test_server_texts_and_keywords_refuse_control_characters_rfc5321_4_2(
    option: str, control: str
) -> None:
    """Refused when configured, not when a session first sends them (the
    HELP text and the AUTH mechanisms used to be checked only then, and the
    session died).  LF alone is not here: a text with LF is a multi-line
    reply by design (every line carries the code, see the handler test)."""
    bad = f"X{CONTROLS[control]}250 forged"
    with pytest.raises(LocalProtocolError):
        if option == "help_text":
            ServerConfig(help_text=bad)
        elif option == "auth_mechanisms":
            ServerConfig(auth_mechanisms=("PLAIN", bad))
        elif option == "extension keyword":
            ServerConfig(extra_extensions=[(bad, ())])
        elif option == "extension parameter":
            ServerConfig(extra_extensions=[("X-EXT", (bad,))])
        else:
            ServerConnection(bad)


class Forging(Watching):
    """Answers MAIL with a reply whose text holds ``control`` and a forged
    reply; greets likewise when ``greeting``."""

    def __init__(self, control: str, *, greeting: bool = False) -> None:
        super().__init__()
        self.control = control
        self.greeting = greeting

    def on_connect(self, session: SessionInfo) -> Reply:
        text = f"hi{self.control}250 forged" if self.greeting else "hi"
        return Reply(220, text)

    def on_mail(self, session: SessionInfo, event: MailFrom) -> Reply:
        return Reply(250, f"OK{self.control}250 forged")


@pytest.mark.parametrize("control", CONTROLS)
@pytest.mark.parametrize("kind", KINDS)
def test_a_handler_reply_never_forges_a_second_reply_rfc5321_4_2(kind: str, control: str) -> None:
    c = CONTROLS[control]
    with running(kind, Forging(c), read_timeout=TIMEOUT) as srv, RawClient(srv.port) as client:
        assert client.reply().code == 220
        assert client.command(b"EHLO client.example").code == 250
        mail = client.command(b"MAIL FROM:<alice@sender.example>")
        if c == "\n":
            # a multi-line reply by design: every line carries the code, so
            # it is one reply (RFC 5321 §4.2.1) and forges nothing
            assert mail.code == 250 and mail.lines == ("OK", "250 forged")
        else:
            # Reply() refused the text in the handler: the server's error
            assert (mail.code, str(mail.enhanced)) == (451, "4.3.0")
        # the next command gets its own reply: nothing was left to misread
        assert client.command(b"RSET").code == 250
        assert client.command(b"QUIT").code == 221
        assert client.closed_by_peer() and client.buffer == b""
        assert b"\r\n250 forged" not in client.received


@pytest.mark.parametrize("kind", KINDS)
def test_a_greeting_with_a_crlf_refuses_the_session_rfc5321_3_1(kind: str) -> None:
    forging = Forging("\r\n", greeting=True)
    with running(kind, forging, read_timeout=TIMEOUT) as srv, RawClient(srv.port) as client:
        greeting = client.reply()
        assert greeting.code == 554  # the handler's greeting could not be made
        assert client.received == greeting.format()


# -- the command-line tool -------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["send", "--from", "a\r\nRSET@b.example", "--to", TO],
        ["send", "--from", OK, "--to", "b@example.org\r\nRSET"],
        ["send", "--from", OK, "--to", "b@exa\x00mple.org"],
        ["serve", "--hostname", "mx.example\r\n250 forged", "--sink"],
    ],
    ids=["send --from", "send --to", "send --to NUL", "serve --hostname"],
)
def test_cli_options_with_control_characters_are_usage_errors(
    argv: list[str],
    target: LoopbackServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)  # serve would make its state folder here
    with MitmProxy(target.port, timeout=TIMEOUT) as proxy:
        if argv[0] == "send":
            argv = [*argv, "--server", f"127.0.0.1:{proxy.port}"]
        else:
            argv = [*argv, "--listen", "127.0.0.1:0", "--state-dir", str(tmp_path / "state")]
        assert main(argv) == 64  # EX_USAGE
    assert proxy.connections == []
    assert "internal error" not in capsys.readouterr().err
    assert not (tmp_path / "state").exists() and os.listdir(tmp_path) == []
