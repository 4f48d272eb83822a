"""A throwaway certificate authority for loopback tests, and the bad
certificates the misbehaving peers present.

The CA and its leaves come from trustme; the self-signed leaf, which trustme
does not make, from cryptography.  Everything lives in memory and in one
temporary folder, removed by :meth:`LoopbackCA.close`.
"""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import ssl
import tempfile
from pathlib import Path
from types import TracebackType

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["CERTIFICATE_KINDS", "LoopbackCA"]  # both public through peers

# The kinds of server certificate LoopbackCA.server_context makes (documented
# as smtp_rtls.testing.peers.CERTIFICATE_KINDS).
CERTIFICATE_KINDS = ("valid", "wrong-name", "expired", "self-signed", "untrusted")

_PAST = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)


class LoopbackCA:
    """A certificate authority of its own for tests on 127.0.0.1.

    ``names`` are the names the servers' certificates carry by default:
    host names and IP addresses (default ``mx.test.example``, ``localhost``,
    ``127.0.0.1`` and ``::1``).  :attr:`cafile` is the CA certificate as a
    PEM file, for clients that take a path (:func:`smtp_rtls.io.sync.deliver`'s
    ``cafile``); :meth:`client_context` trusts it.  Close it (or use it as a
    context manager) to remove its folder.
    """

    def __init__(self, names: tuple[str, ...] | None = None) -> None:
        #: The names the server certificates are for, by default.
        self.names = names or ("mx.test.example", "localhost", "127.0.0.1", "::1")
        self._ca = trustme.CA()
        self._rogue: trustme.CA | None = None
        self._folder = Path(tempfile.mkdtemp(prefix="smtp-rtls-ca-"))
        #: The CA certificate, PEM, as a file.
        self.cafile = str(self._folder / "ca.pem")
        self._ca.cert_pem.write_to_path(self.cafile)
        self._contexts: dict[tuple[str, tuple[str, ...]], ssl.SSLContext] = {}
        self._count = 0

    def __enter__(self) -> LoopbackCA:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Remove the folder of PEM files (contexts already made keep working)."""
        shutil.rmtree(self._folder, ignore_errors=True)

    @property
    def cert_pem(self) -> bytes:
        """The CA certificate, PEM."""
        return self._ca.cert_pem.bytes()

    def client_context(self) -> ssl.SSLContext:
        """A client context that verifies servers against this CA only
        (``CERT_REQUIRED``, host name checked)."""
        context = ssl.create_default_context(cafile=self.cafile)
        return context

    def server_context(
        self, kind: str = "valid", names: tuple[str, ...] | None = None
    ) -> ssl.SSLContext:
        """A server context (TLS 1.2 at least) presenting a certificate of
        ``kind`` (one of :data:`~smtp_rtls.testing.peers.CERTIFICATE_KINDS`) for ``names`` (default
        :attr:`names`)."""
        names = names or self.names
        key = (kind, names)
        if key not in self._contexts:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.load_cert_chain(self.certificate_file(kind, names))
            self._contexts[key] = context
        return self._contexts[key]

    def certificate_file(self, kind: str = "valid", names: tuple[str, ...] | None = None) -> str:
        """A PEM file with the private key and certificate chain of a new
        server certificate of ``kind`` for ``names`` (default :attr:`names`)."""
        names = names or self.names
        self._count += 1
        path = self._folder / f"server-{self._count}-{kind}.pem"
        if kind == "valid":
            self._ca.issue_cert(*names).private_key_and_cert_chain_pem.write_to_path(str(path))
        elif kind == "wrong-name":
            leaf = self._ca.issue_cert("wrong-name.invalid")
            leaf.private_key_and_cert_chain_pem.write_to_path(str(path))
        elif kind == "expired":
            leaf = self._ca.issue_cert(*names, not_before=_PAST, not_after=_PAST)
            leaf.private_key_and_cert_chain_pem.write_to_path(str(path))
        elif kind == "untrusted":
            if self._rogue is None:
                self._rogue = trustme.CA()
            leaf = self._rogue.issue_cert(*names)
            leaf.private_key_and_cert_chain_pem.write_to_path(str(path))
        elif kind == "self-signed":
            path.write_bytes(_self_signed(names))
        else:
            raise ValueError(f"unknown certificate kind {kind!r}: one of {CERTIFICATE_KINDS}")
        return str(path)


def _self_signed(names: tuple[str, ...]) -> bytes:
    """The key and a self-signed certificate for ``names``, PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    alt: list[x509.GeneralName] = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ) + cert.public_bytes(serialization.Encoding.PEM)
