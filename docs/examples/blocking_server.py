"""A minimal blocking SMTP server on a socket: STARTTLS, REQUIRETLS, DATA, BDAT.

Run it with a certificate and its key::

    python docs/examples/blocking_server.py --cert cert.pem --key key.pem --port 2525

It serves one connection at a time and prints the events of each session and
every message it accepts.  The wire core does the protocol; this file only
moves bytes, does the TLS handshake and makes the application's decisions.
"""

from __future__ import annotations

import argparse
import socket
import ssl

from smtp_rtls import (
    NEED_DATA,
    PAUSED,
    Bdat,
    ConnectionClosed,
    Data,
    Ehlo,
    EndOfMessage,
    Event,
    Helo,
    MailFrom,
    MessageData,
    RcptTo,
    RemoteProtocolError,
    Reply,
    ServerConfig,
    ServerConnection,
    StartTLS,
    TLSInfo,
)


def log(text: str) -> None:
    print(text, flush=True)


def tls_info(sock: ssl.SSLSocket) -> TLSInfo:
    """What the handshake established, for ``start_tls()``."""
    cipher = sock.cipher()
    version = sock.version()
    assert cipher is not None and version is not None  # the handshake is done
    name, _protocol, bits = cipher
    der = sock.getpeercert(binary_form=True)  # a client certificate, rarely sent
    return TLSInfo(version=version, cipher=name, bits=bits, peer_chain=[der] if der else [])


def decide(event: Event) -> Reply:
    """The application's decisions: here, accept every sender and recipient."""
    if isinstance(event, Ehlo | Helo):
        return Reply(250, "Hello")
    if isinstance(event, StartTLS):
        return Reply(220, "Ready to start TLS", enhanced="2.0.0")
    if isinstance(event, MailFrom):
        return Reply(250, "Sender OK", enhanced="2.1.0")
    if isinstance(event, RcptTo):
        return Reply(250, "Recipient OK", enhanced="2.1.5")
    if isinstance(event, Data):
        return Reply(354, "End data with <CR><LF>.<CR><LF>")
    if isinstance(event, Bdat):
        return Reply(250, f"{event.size} octets received", enhanced="2.0.0")
    if isinstance(event, EndOfMessage):
        return Reply(250, "Queued", enhanced="2.0.0")
    return Reply(502, "Not implemented", enhanced="5.5.1")


def serve_connection(sock: socket.socket, context: ssl.SSLContext, hostname: str) -> None:
    """Run one SMTP session on a connected socket until QUIT or the peer
    leaves, then close the socket (after STARTTLS, the TLS one)."""
    conn = ServerConnection(hostname, ServerConfig(starttls=True))
    message = bytearray()  # a real server streams to a spool file instead
    try:
        sock.sendall(conn.send(Reply(220, f"{hostname} ESMTP")))
        while True:
            event = conn.next_event()  # raises only RemoteProtocolError
            if event is NEED_DATA:
                # RFC 2920 §3.2: replies go out before the server waits for input
                sock.sendall(conn.data_to_send())
                conn.receive_data(sock.recv(65536))
            elif event is PAUSED:
                pending = conn.pending
                assert pending is not None
                reply = decide(pending)
                sock.sendall(conn.send(reply))
                if isinstance(pending, EndOfMessage):
                    report(pending, bytes(message))
                    message.clear()
                if isinstance(pending, StartTLS) and reply.code == 220:
                    # Plaintext the client sent after STARTTLS is an injection:
                    # next_event() raises before any handshake is attempted.
                    conn.next_event()
                    sock = context.wrap_socket(sock, server_side=True)
                    conn.start_tls(tls_info(sock))
                    log(f"TLS: {sock.version()}")
            else:
                log(f"event {event!r}")
                if isinstance(event, MessageData):
                    message += event.data
                elif isinstance(event, ConnectionClosed):
                    sock.sendall(conn.data_to_send())
                    return
    except RemoteProtocolError as exc:
        # No reply can repair this (plaintext injected after STARTTLS, input
        # past the backlog limit).  The error may suggest a last reply (421).
        log(f"protocol error: {exc}; closing")
        if exc.reply is not None:
            sock.sendall(exc.reply.format())
    finally:
        sock.close()


def report(end: EndOfMessage, content: bytes) -> None:
    """What a real server would queue: the envelope, its REQUIRETLS tag and
    the content (RFC 8689 §4.1: the tag travels with the message)."""
    assert end.envelope is not None
    envelope = end.envelope
    recipients = ", ".join(f"<{r.forward_path}>" for r in envelope.recipients)
    log(f"message from <{envelope.mail_from.reverse_path}> to {recipients}")
    log(f"  requiretls={envelope.requiretls}, {len(content)} octets: {content!r}")


def main(argv: list[str] | None = None) -> None:
    """Listen and serve connections one after the other."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cert", required=True, help="PEM certificate chain")
    parser.add_argument("--key", required=True, help="PEM private key")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2525, help="0 picks a free port")
    parser.add_argument("--hostname", default="mx.example.org", help="name in the greeting")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per read")
    parser.add_argument("--connections", type=int, default=0, help="stop after N (0: never)")
    args = parser.parse_args(argv)

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    with socket.create_server((args.host, args.port)) as listener:
        host, port = listener.getsockname()[:2]
        log(f"listening on {host} {port}")
        served = 0
        while args.connections == 0 or served < args.connections:
            sock, peer = listener.accept()
            served += 1
            log(f"connection from {peer[0]}")
            # RFC 5321 §4.5.3.2.7: a server waits 5 minutes for the next command
            sock.settimeout(args.timeout)
            try:
                serve_connection(sock, context, args.hostname)
            except OSError as exc:  # a timeout, a reset, a failed handshake
                log(f"connection error: {exc!r}")
            log("connection closed")


if __name__ == "__main__":
    main()
