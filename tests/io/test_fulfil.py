"""SyncFulfiller against small real servers on loopback (no lab needed).

A UDP DNS responder built on dnspython answers with chosen flags and rcodes; an
HTTPS server (http.server + ssl, trustme certificates) answers the policy fetch.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
import trustme

from conftest_lab import Lab
from smtp_rtls.io.fulfil import SyncFulfiller
from smtp_rtls.policy.requests import DNSQuery, HTTPSRequest

# --- DNS ---------------------------------------------------------------------------------

Responder = Callable[[dns.message.Message], dns.message.Message | None]


@pytest.fixture
def dns_server() -> Iterator[Callable[[Responder], int]]:
    """Start a one-thread UDP DNS server with a given responder; yields its port."""
    sockets: list[socket.socket] = []
    threads: list[threading.Thread] = []
    stop = threading.Event()

    def start(responder: Responder) -> int:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(0.1)
        sockets.append(sock)

        def loop() -> None:
            while not stop.is_set():
                try:
                    data, peer = sock.recvfrom(4096)
                except TimeoutError:
                    continue
                query = dns.message.from_wire(data)
                reply = responder(query)
                if reply is not None:
                    sock.sendto(reply.to_wire(), peer)

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        threads.append(thread)
        return int(sock.getsockname()[1])

    yield start
    stop.set()
    for thread in threads:
        thread.join(5)
    for sock in sockets:
        sock.close()


def answering(*records: str, ad: bool = True, rcode: int = dns.rcode.NOERROR) -> Responder:
    def respond(query: dns.message.Message) -> dns.message.Message:
        reply = dns.message.make_response(query)
        reply.set_rcode(rcode)
        if ad:
            reply.flags |= dns.flags.AD
        question = query.question[0]
        if records:
            reply.answer.append(
                dns.rrset.from_text(question.name, 60, "IN", question.rdtype, *records)
            )
        return reply

    return respond


def test_query_has_do_bit_edns_1232_and_ad(dns_server: Callable[[Responder], int]) -> None:
    seen: list[dns.message.Message] = []

    def respond(query: dns.message.Message) -> dns.message.Message:
        seen.append(query)
        return answering("10 mx.example.")(query)

    port = dns_server(respond)
    SyncFulfiller(["127.0.0.1"], port=port, trusted=True)(DNSQuery("example", "MX"))
    query = seen[0]
    assert query.ednsflags & dns.flags.DO
    assert query.payload == 1232
    assert query.flags & dns.flags.AD


@pytest.mark.parametrize(("trusted", "ad", "authentic"), [(1, 1, 1), (0, 1, 0), (1, 0, 0)])
def test_authentic_is_trusted_and_ad(
    dns_server: Callable[[Responder], int], trusted: int, ad: int, authentic: int
) -> None:
    port = dns_server(answering("10 mx.example.", ad=bool(ad)))
    answer = SyncFulfiller(["127.0.0.1"], port=port, trusted=bool(trusted))(
        DNSQuery("example", "MX")
    )
    assert answer.rcode == "NOERROR"
    assert answer.records == ("10 mx.example.",)
    assert answer.authentic is bool(authentic)


def test_txt_strings_are_concatenated_rfc8461_3_1(dns_server: Callable[[Responder], int]) -> None:
    port = dns_server(answering('"v=STSv1; " "id=abc"'))
    answer = SyncFulfiller(["127.0.0.1"], port=port)(DNSQuery("_mta-sts.example", "TXT"))
    assert answer.records == ("v=STSv1; id=abc",)


def test_nodata_nxdomain_servfail(dns_server: Callable[[Responder], int]) -> None:
    nodata = SyncFulfiller(["127.0.0.1"], port=dns_server(answering()), trusted=True)
    answer = nodata(DNSQuery("example", "MX"))
    assert (answer.rcode, answer.records, answer.authentic) == ("NOERROR", (), True)
    nx = dns_server(answering(rcode=dns.rcode.NXDOMAIN))
    answer = SyncFulfiller(["127.0.0.1"], port=nx, trusted=True)(DNSQuery("no.example", "MX"))
    assert answer.rcode == "NXDOMAIN" and answer.authentic
    sf = dns_server(answering(rcode=dns.rcode.SERVFAIL, ad=False))
    answer = SyncFulfiller(["127.0.0.1"], port=sf, timeout=2)(DNSQuery("example", "MX"))
    assert answer.rcode == "SERVFAIL" and not answer.authentic


def test_silent_server_is_timeout(dns_server: Callable[[Responder], int]) -> None:
    port = dns_server(lambda query: None)
    start = time.monotonic()
    answer = SyncFulfiller(["127.0.0.1"], port=port, timeout=0.5)(DNSQuery("example", "MX"))
    assert answer.rcode == "TIMEOUT"
    assert time.monotonic() - start < 5


# --- HTTPS -------------------------------------------------------------------------------

HOST = "mta-sts.example.com"


class Site:
    status = 200
    content_type = "text/plain"
    body = b"version: STSv1\n"
    delay = 0.0
    requests: list[tuple[str, str | None]] = []  # noqa: RUF012 - reset per test


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        Site.requests.append((self.path, self.headers.get("Host")))
        time.sleep(Site.delay)
        self.send_response(Site.status)
        self.send_header("Content-Type", Site.content_type)
        self.send_header("Content-Length", str(len(Site.body)))
        if 300 <= Site.status < 400:
            self.send_header("Location", f"https://{HOST}/elsewhere")
        self.end_headers()
        self.wfile.write(Site.body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def https_server(ca: trustme.CA) -> Iterator[int]:
    Site.status, Site.content_type, Site.body, Site.delay = 200, "text/plain", b"ok\n", 0.0
    Site.requests = []
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(HOST).configure_cert(context)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()
    thread.join(5)


def fulfiller(ca: trustme.CA, port: int, tmp_path: Path) -> SyncFulfiller:
    cafile = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
    return SyncFulfiller(
        ["127.0.0.1"], https_port=port, cafile=str(cafile), https_address="127.0.0.1"
    )


def test_https_get_with_sni_and_host(ca: trustme.CA, https_server: int, tmp_path: Path) -> None:
    Site.body = b"version: STSv1\r\nmode: none\r\nmax_age: 1\r\n"
    Site.content_type = "text/plain; charset=utf-8"
    response = fulfiller(ca, https_server, tmp_path)(HTTPSRequest(HOST, "/.well-known/x"))
    assert response.error is None
    assert (response.status, response.content_type) == (200, "text/plain; charset=utf-8")
    assert response.body == Site.body
    assert Site.requests == [("/.well-known/x", HOST)]


def test_redirect_is_reported_not_followed_rfc8461_3_3(
    ca: trustme.CA, https_server: int, tmp_path: Path
) -> None:
    Site.status = 301
    response = fulfiller(ca, https_server, tmp_path)(HTTPSRequest(HOST, "/"))
    assert response.status == 301
    assert len(Site.requests) == 1


def test_body_cap(ca: trustme.CA, https_server: int, tmp_path: Path) -> None:
    Site.body = b"x" * 1001
    fulfil = fulfiller(ca, https_server, tmp_path)
    assert fulfil(HTTPSRequest(HOST, "/", max_bytes=1000)).error == "too large"
    assert fulfil(HTTPSRequest(HOST, "/", max_bytes=1001)).body == Site.body


def test_wrong_name_is_certificate_error(
    ca: trustme.CA, https_server: int, tmp_path: Path
) -> None:
    response = fulfiller(ca, https_server, tmp_path)(HTTPSRequest("mta-sts.other.com", "/"))
    assert response.error == "certificate"


def test_timeout(ca: trustme.CA, https_server: int, tmp_path: Path) -> None:
    Site.delay = 2.0
    start = time.monotonic()
    response = fulfiller(ca, https_server, tmp_path)(HTTPSRequest(HOST, "/", timeout=0.3))
    assert response.error == "timeout"
    assert time.monotonic() - start < 2.0


def test_connection_refused(ca: trustme.CA, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        response = fulfiller(ca, port, tmp_path)(HTTPSRequest(HOST, "/", timeout=2))
    assert response.error is not None and response.error.startswith("connect")


def test_cname_expansion_is_reported_rfc7672_2_2_3(
    dns_server: Callable[[Responder], int],
) -> None:
    def respond(query: dns.message.Message) -> dns.message.Message:
        reply = dns.message.make_response(query)
        reply.flags |= dns.flags.AD
        question = query.question[0]
        # a recursive resolver's answer to an alias: the CNAME, then the target's RRset
        reply.answer.append(
            dns.rrset.from_text(question.name, 60, "IN", "CNAME", "relay.hosting.example.")
        )
        reply.answer.append(
            dns.rrset.from_text("relay.hosting.example.", 60, "IN", "A", "192.0.2.25")
        )
        return reply

    fulfil = SyncFulfiller(["127.0.0.1"], port=dns_server(respond), trusted=True)
    answer = fulfil(DNSQuery("mx.example", "A"))
    assert answer.records == ("192.0.2.25",)
    assert answer.canonical_name == "relay.hosting.example"
    plain = SyncFulfiller(["127.0.0.1"], port=dns_server(answering("192.0.2.1")))
    assert plain(DNSQuery("mx.example", "A")).canonical_name == ""


def test_policy_host_is_resolved_by_the_configured_resolver(
    ca: trustme.CA, https_server: int, dns_server: Callable[[Responder], int], tmp_path: Path
) -> None:
    """No https_address: the host's AAAA and A come from the configured resolver,
    not getaddrinfo.  ::1 refuses (the server is on 127.0.0.1 only), 127.0.0.1 answers."""
    seen: list[tuple[str, str]] = []

    def respond(query: dns.message.Message) -> dns.message.Message:
        question = query.question[0]
        rdtype = dns.rdatatype.to_text(question.rdtype)
        seen.append((question.name.to_text(omit_final_dot=True), rdtype))
        return answering({"AAAA": "::1", "A": "127.0.0.1"}[rdtype])(query)

    cafile = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
    fulfil = SyncFulfiller(
        ["127.0.0.1"], port=dns_server(respond), https_port=https_server, cafile=str(cafile)
    )
    assert fulfil.addresses(HOST) == ["::1", "127.0.0.1"]
    response = fulfil(HTTPSRequest(HOST, "/.well-known/mta-sts.txt", timeout=5))
    assert response.error is None and response.status == 200, response
    assert (HOST, "AAAA") in seen and (HOST, "A") in seen


def test_policy_host_without_address(dns_server: Callable[[Responder], int]) -> None:
    fulfil = SyncFulfiller(["127.0.0.1"], port=dns_server(answering(rcode=dns.rcode.NXDOMAIN)))
    response = fulfil(HTTPSRequest(HOST, "/", timeout=2))
    assert response.error == f"connect: no address for {HOST}"


@pytest.mark.lab
def test_lab_policy_fetched_from_the_address_the_lab_resolver_gives(lab: Lab) -> None:
    """mta-sts.example.test exists only in the lab's DNS: getaddrinfo cannot find it."""
    fulfil = SyncFulfiller(
        ["127.0.0.1"], port=lab.unbound_port, https_port=lab.https_port, cafile=str(lab.ca)
    )
    response = fulfil(HTTPSRequest("mta-sts.example.test", "/.well-known/mta-sts.txt"))
    assert response.error is None and response.status == 200, response
    assert response.body.startswith(b"version: STSv1")
