"""Harness ``mtasts_record``: TXT records into the MTA-STS record parser
(smtp_rtls.policy.mtasts, RFC 8461 §3.1).

Input: the text of one or more TXT records (NUL-separated), as DNS
gives it (octets, read as Latin-1 so that every octet is kept).

ORACLE:

* ``STSRecord.parse`` and ``select_record`` raise nothing but STSError
  (a ValueError);
* a parsed record has an ``id`` of 1 to 32 letters and digits (§3.1
  sts-id), and formatting it back as ``v=STSv1; id=...; ext=value``
  parses to the same record;
* ``select_record`` succeeds only when exactly one record starts with
  ``v=STSv1;`` (§3.1: otherwise "no policy").
"""

from __future__ import annotations

import contextlib
import sys

import atheris
from fuzz_common import main

with atheris.instrument_imports(include=["smtp_rtls"]):
    from smtp_rtls.policy.mtasts import STSError, STSRecord, select_record


def _format(record: STSRecord) -> str:
    fields = [f"id={record.id}", *(f"{k}={v}" for k, v in record.extensions)]
    return "v=STSv1; " + "; ".join(fields) + ";"


def TestOneInput(data: bytes) -> None:
    texts = data.decode("latin-1").split("\x00")
    for text in texts:
        try:
            record = STSRecord.parse(text)
        except STSError:
            continue
        assert 1 <= len(record.id) <= 32 and record.id.isascii() and record.id.isalnum()
        assert STSRecord.parse(_format(record)) == record, (text, record)
    try:
        chosen = select_record(texts)
    except STSError:
        return
    parsed = []
    for text in texts:
        with contextlib.suppress(STSError):
            parsed.append(STSRecord.parse(text))
    assert chosen in parsed, (texts, chosen)


if __name__ == "__main__":
    main(TestOneInput, sys.argv)
