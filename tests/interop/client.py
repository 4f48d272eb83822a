"""The smallest blocking client adapter for interop tests: a socket, a
ClientConnection, real TLS after STARTTLS, and a timeout on every wait."""

from __future__ import annotations

import socket
import ssl

from smtp_rtls import (
    NEED_DATA,
    ClientConnection,
    ConnectionClosed,
    Data,
    Ehlo,
    EndOfMessage,
    Event,
    MailFrom,
    MessageData,
    Quit,
    RcptTo,
    Reply,
    StartTLS,
    TLSInfo,
)


class ClientSession:
    """One SMTP session to 127.0.0.1:``port``."""

    def __init__(self, port: int, local_hostname: str = "client.example") -> None:
        self.local_hostname = local_hostname
        self.sock: socket.socket = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.conn = ClientConnection(local_hostname)

    def send(self, *events: Event) -> None:
        for event in events:
            self.sock.sendall(self.conn.send(event))

    def reply(self) -> Reply:
        for _ in range(1000):  # bounded: a reply is a few reads at most
            event = self.conn.next_event()
            if event is NEED_DATA:
                self.conn.receive_data(self.sock.recv(65536))
                continue
            assert isinstance(event, Reply), event
            return event
        raise AssertionError("no reply")

    def ehlo(self) -> frozenset[str]:
        """Send EHLO; return the offered keywords."""
        self.send(Ehlo(self.local_hostname))
        assert self.reply().code == 250
        caps = self.conn.capabilities
        assert caps is not None
        return frozenset(caps)

    def starttls(self, context: ssl.SSLContext, name: str) -> None:
        """STARTTLS, a real handshake verified for ``name``, and start_tls()."""
        self.send(StartTLS())
        assert self.reply().code == 220
        self.sock = context.wrap_socket(self.sock, server_hostname=name)
        cipher = self.sock.cipher()
        assert cipher is not None
        self.conn.start_tls(
            TLSInfo(self.sock.version() or "", cipher[0], cipher[2], verified_name=name)
        )

    def transaction(self, mail: MailFrom, rcpt: str, content: bytes) -> Reply:
        """MAIL, one RCPT, DATA and the content; the reply to the end of data."""
        self.send(mail)
        assert self.reply().code == 250
        self.send(RcptTo(rcpt))
        assert self.reply().code == 250
        self.send(Data())
        assert self.reply().code == 354
        self.send(MessageData(content), EndOfMessage())
        return self.reply()

    def close(self) -> None:
        self.send(Quit())
        assert self.reply().command == "QUIT"
        self.conn.receive_data(self.sock.recv(65536))
        assert isinstance(self.conn.next_event(), ConnectionClosed)
        self.sock.close()
