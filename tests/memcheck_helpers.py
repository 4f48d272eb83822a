"""Running a Python driver under valgrind's memcheck, for the tests of the C
modules of the compiled build (``tests/test_speedups_memcheck.py``,
``tests/test_fill.py``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path


def memcheck(tmp_path: Path, driver: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the Python source ``driver`` with ``args`` under memcheck.

    With ``PYTHONMALLOC=malloc`` every Python object (and any buffer of
    more than a few octets) is a malloc block of its own, so memcheck sees
    a read or write one octet outside it; the exit status is 99 when it
    saw one.  Without valgrind (Debian package ``valgrind``) the test
    fails, never skips."""
    valgrind = shutil.which("valgrind")
    assert valgrind, "valgrind is not installed (tests/lab/install.sh installs it)"
    script = tmp_path / "driver.py"
    script.write_text(driver)
    return subprocess.run(
        [
            valgrind,
            "--tool=memcheck",
            "--error-exitcode=99",
            "--leak-check=no",
            # addresses only: the interpreter itself uses values memcheck
            # cannot prove initialised (CPython's Misc/README.valgrind)
            "--undef-value-errors=no",
            "--quiet",
            sys.executable,
            str(script),
            *args,
        ],
        env={**os.environ, "PYTHONMALLOC": "malloc"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
