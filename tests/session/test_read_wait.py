"""How long an adapter waits for a read (``Read.wait``, ``_state.read_wait``).

Every adapter asks ``Read.wait``; the asyncio adapter's compiled loop calls
``read_wait`` directly.  The two are one rule: RFC 5321 §4.5.3.2 bounds
each wait (``timeout``, or the adapter's ``read_timeout`` in its place),
and the session's deadline bounds a command or the content as a whole, so
that a peer trickling a byte now and then cannot hold it for ever.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtp_rtls._state import read_wait
from smtp_rtls.session.server import Read

_SECONDS = st.floats(min_value=0.001, max_value=1e6, allow_nan=False)


def test_the_wait_is_the_timeout_while_the_deadline_is_far() -> None:
    assert Read(300.0, 600.0).wait(10.0) == 300.0


def test_the_adapters_read_timeout_replaces_the_timeout() -> None:
    assert Read(300.0, 600.0).wait(10.0, 5.0) == 5.0
    # a cap longer than the RFC's wait replaces it too: it is the operator's
    assert Read(300.0, 600.0).wait(10.0, 400.0) == 400.0


def test_the_wait_is_cut_to_what_is_left_of_the_deadline() -> None:
    assert Read(300.0, 600.0).wait(590.0) == pytest.approx(10.0)
    assert Read(300.0, 600.0).wait(590.0, 60.0) == pytest.approx(10.0)


@pytest.mark.parametrize("since_write", [600.0, 600.5, 1e9])
def test_a_deadline_passed_raises_timeout(since_write: float) -> None:
    with pytest.raises(TimeoutError, match="too long"):
        Read(300.0, 600.0).wait(since_write)
    with pytest.raises(TimeoutError):
        read_wait(300.0, 600.0, since_write, None)


@given(_SECONDS, _SECONDS, _SECONDS, st.none() | _SECONDS)
def test_the_function_and_the_method_agree(
    timeout: float, deadline: float, since_write: float, cap: float | None
) -> None:
    left = deadline - since_write
    if left <= 0:
        with pytest.raises(TimeoutError):
            Read(timeout, deadline).wait(since_write, cap)
        with pytest.raises(TimeoutError):
            read_wait(timeout, deadline, since_write, cap)
        return
    expected = min(timeout if cap is None else cap, left)
    assert Read(timeout, deadline).wait(since_write, cap) == expected
    assert read_wait(timeout, deadline, since_write, cap) == expected
