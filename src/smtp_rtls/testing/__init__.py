"""smtp_rtls.testing: the kit the project tests itself with, for testing your MTA.

Install it with the ``testing`` extra (``pip install smtp_rtls[testing]``):
it brings hypothesis, pytest and trustme, which the rest of smtp_rtls never
imports.  Each part is a module of its own, so that importing one does not
import the others' dependencies:

* :mod:`smtp_rtls.testing.strategies`: hypothesis strategies for addresses,
  commands, command lines (well-formed and malformed), replies, message
  contents (with the SMTP smuggling look-alikes), splits into network reads,
  and whole client sessions (the only part that imports hypothesis);
* :mod:`smtp_rtls.testing.pair`: a client and a server connected in memory,
  checking that what one side sends is what the other reads;
* :mod:`smtp_rtls.testing.server`: smtp_rtls's own server on loopback, with
  STARTTLS from a test CA, recording every message;
* :mod:`smtp_rtls.testing.peers`: scripted servers and clients on loopback
  that misbehave in named ways (STARTTLS stripped, a bad certificate,
  injected replies, smuggled messages, ...) and record what they received;
* :mod:`smtp_rtls.testing.plugin`: the pytest plugin (fixtures
  ``smtp_pair``, ``smtp_server``, ``misbehaving_server``,
  ``make_misbehaving_server`` and ``smtp_test_ca``), registered through the
  ``pytest11`` entry point.

This module itself holds only data shared by the others, and imports
nothing but the standard library.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

__all__ = ["END_OF_DATA_LOOKALIKES"]

#: The end-of-data look-alikes of "SMTP smuggling" (December 2023), by name:
#: octet sequences that some server on a path may take for the end of the
#: mail data, although RFC 5321 §4.1.1.4 ends it only at CRLF "." CRLF.
#: Each is what a smuggler puts where the real end would be, followed by a
#: second transaction.  The names say which octets surround the dot
#: (``"LF.LF"`` is ``b"\n.\n"``).  A server that honours the RFC ends the
#: data at none of them; :func:`smtp_rtls.testing.strategies.message_contents`
#: draws them inside content and :class:`smtp_rtls.testing.peers.SmugglingClient`
#: sends them.
END_OF_DATA_LOOKALIKES: Mapping[str, bytes] = MappingProxyType(
    {
        "LF.LF": b"\n.\n",
        "CR.CR": b"\r.\r",
        "LF.CRLF": b"\n.\r\n",
        "CRLF.LF": b"\r\n.\n",
        "CR.CRLF": b"\r.\r\n",
        "CRLF.CR": b"\r\n.\r",
        "LF.CR": b"\n.\r",
        "CR.LF": b"\r.\n",
        "CRLF.CRCRLF": b"\r\n.\r\r\n",
        "CRLF.LFCRLF": b"\r\n.\n\r\n",
        "CRLFCR.CRLF": b"\r\n\r.\r\n",
        "NUL before dot": b"\r\n\x00.\r\n",
        "space before dot": b"\r\n .\r\n",
        "dot space": b"\r\n. \r\n",
        "dot tab": b"\r\n.\t\r\n",
        "dot NUL": b"\r\n.\x00\r\n",
    }
)
