"""Password authentication for submission servers: SASL PLAIN and LOGIN
(RFC 4954, RFC 4616, draft-murchison-sasl-login), on top of any handler.

Mix :class:`PasswordAuth` into a handler and give ``check_password``; offer
the mechanisms with ``ServerConfig(auth_mechanisms=("PLAIN", "LOGIN"))``
(only after TLS by default, ``auth_requires_tls``: RFC 4954 §4 says a
password mechanism needs the session protected).
"""

from __future__ import annotations

import base64
import binascii
import inspect
from typing import Any

from .._events import Auth, AuthResponse
from .._reply import Reply
from ..session.server import Handler, SessionInfo

__all__ = ["PasswordAuth"]

_OK = Reply(235, "Authentication successful", "2.7.0")
# RFC 4954 §6: 535 5.7.8 Authentication credentials invalid
_INVALID = Reply(535, "Authentication credentials invalid", "5.7.8")
_BAD_BASE64 = Reply(501, "Cannot decode response", "5.5.2")
_USERNAME = Reply(334, base64.b64encode(b"Username:").decode())
_PASSWORD = Reply(334, base64.b64encode(b"Password:").decode())
_KEY = "smtp_rtls.auth"


def _decode(text: str) -> bytes | None:
    try:
        return base64.b64decode(text if text != "=" else "", validate=True)
    except (binascii.Error, ValueError):
        return None


class PasswordAuth(Handler):
    """SASL PLAIN and LOGIN, checked by :meth:`check_password`.

    ``check_password(username, password)`` returns True to accept; it may be
    a coroutine function under the asynchronous adapters.  The identity
    recorded for the session (``SessionInfo.authenticated``) is the username.
    """

    def check_password(self, username: str, password: str) -> Any:
        """True when ``password`` is right for ``username``; override it."""
        return False

    async def _check(self, username: str, password: str) -> bool:
        result = self.check_password(username, password)
        if inspect.isawaitable(result):
            result = await result
        return bool(result)

    def on_auth(self, session: SessionInfo, event: Auth | AuthResponse) -> Any:
        """One step of PLAIN or LOGIN (see the class docstring)."""
        step = self._step(session, event)
        if isinstance(step, Reply):
            return step
        username, password = step
        if inspect.iscoroutinefunction(self.check_password):
            return self._finish_async(username, password)
        return self._finish(username, bool(self.check_password(username, password)))

    async def _finish_async(self, username: str, password: str) -> Any:
        return self._finish(username, await self._check(username, password))

    def _finish(self, username: str, ok: bool) -> Any:
        return (_OK, username) if ok else _INVALID

    def _step(self, session: SessionInfo, event: Auth | AuthResponse) -> Reply | tuple[str, str]:
        state = session.data
        if isinstance(event, Auth):
            state.pop(_KEY, None)
            if event.mechanism == "PLAIN":
                if event.initial_response is None:
                    state[_KEY] = ("PLAIN",)
                    return Reply(334, "")  # RFC 4954 §4: an empty challenge
                return self._plain(event.initial_response)
            if event.mechanism == "LOGIN":
                if event.initial_response is not None:
                    name = _decode(event.initial_response)
                    if name is None:
                        return _BAD_BASE64
                    state[_KEY] = ("LOGIN", name.decode("utf-8", "replace"))
                    return _PASSWORD
                state[_KEY] = ("LOGIN",)
                return _USERNAME
            return Reply(504, "Unrecognized authentication type", "5.5.4")
        pending = state.pop(_KEY, None)
        if pending is None:
            return _INVALID
        if pending[0] == "PLAIN":
            return self._plain(event.data)
        data = _decode(event.data)
        if data is None:
            return _BAD_BASE64
        text = data.decode("utf-8", "replace")
        if len(pending) == 1:
            state[_KEY] = ("LOGIN", text)
            return _PASSWORD
        return (pending[1], text)

    def _plain(self, response: str) -> Reply | tuple[str, str]:
        # RFC 4616 §2: message = [authzid] UTF8NUL authcid UTF8NUL passwd
        data = _decode(response)
        if data is None:
            return _BAD_BASE64
        parts = data.split(b"\0")
        if len(parts) != 3 or not parts[1]:
            return _INVALID
        authzid, username, password = (p.decode("utf-8", "replace") for p in parts)
        if authzid and authzid != username:
            return _INVALID  # acting for another user is not supported
        return (username, password)
