"""Small SASL helpers for AUTH (RFC 4954): PLAIN and LOGIN, and the base64
framing any other mechanism needs.

The core only frames the exchange (``AUTH``, ``334`` challenges,
:class:`AuthResponse` lines, ``*`` to cancel); mechanisms are the
application's.  These helpers build the events for the two mechanisms
almost every submission server offers.
"""

from __future__ import annotations

import base64
import binascii

from ._errors import RemoteProtocolError
from ._events import Auth, AuthResponse
from ._reply import Reply

__all__ = [
    "CANCEL",
    "auth_login",
    "auth_plain",
    "decode_challenge",
    "encode_response",
    "login_response",
]

# RFC 4954 §4: "If the client wishes to cancel an authentication exchange, it
# issues a line with a single '*'."
CANCEL = AuthResponse("*")


def _b64(data: bytes) -> str:
    # RFC 4954 §4: an empty initial response is sent as a single "=".
    return base64.b64encode(data).decode("ascii") or "="


def encode_response(data: bytes) -> AuthResponse:
    """The :class:`AuthResponse` carrying ``data`` base64-encoded (RFC 4954 §4).

    An empty response is an empty line (the ``=`` form is only for the
    initial response on the AUTH line).
    """
    return AuthResponse(base64.b64encode(data).decode("ascii"))


def decode_challenge(reply: Reply) -> bytes:
    """The server challenge of a ``334`` reply, base64-decoded (RFC 4954 §4).

    Raises RemoteProtocolError when the text is not base64.
    """
    if reply.code != 334:
        raise ValueError(f"not a 334 challenge: {reply.code}")
    text = reply.text.strip()
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise RemoteProtocolError("334 challenge is not base64 (RFC 4954 §4)") from None


def auth_plain(username: str, password: str, authzid: str = "") -> Auth:
    """``AUTH PLAIN`` with its initial response (RFC 4616 §2):
    ``authzid NUL authcid NUL passwd``, UTF-8, base64."""
    for name, value in (("username", username), ("password", password), ("authzid", authzid)):
        if "\0" in value:
            raise ValueError(f"{name} may not contain NUL (RFC 4616 §2)")
    message = f"{authzid}\0{username}\0{password}".encode()
    return Auth("PLAIN", _b64(message))


def auth_login() -> Auth:
    """``AUTH LOGIN`` (no initial response); answer each 334 with
    :func:`login_response`."""
    return Auth("LOGIN")


def login_response(challenge: Reply, username: str, password: str) -> AuthResponse:
    """The answer to one LOGIN challenge: the username to ``Username:``, the
    password to ``Password:`` (draft-murchison-sasl-login §2.1).

    Servers word the prompts differently; anything that is not a user-name
    prompt is answered with the password.
    """
    prompt = decode_challenge(challenge).strip().lower()
    if prompt.startswith((b"user", b"login")):
        return encode_response(username.encode())
    return encode_response(password.encode())
