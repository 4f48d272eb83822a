"""The SMTP benchmark suite (issue 10): our servers and clients against the raw
asyncio responder, aiosmtpd, smtplib, aiosmtplib and smtpproto, over loopback.

    .venv/bin/python bench/suite.py            # the whole suite, under 10 minutes
    .venv/bin/python bench/suite.py --quick    # fewer scenarios, shorter runs

Prints a markdown table and writes bench/suite-results.md, bench/suite-results.json,
bench/suite-servers.png and bench/suite-clients.png.  See bench/README.md.
"""

from __future__ import annotations

import sys

# bench/suite/ (the package) is found before this file's own name on sys.path[0]
from suite.runner import main

if __name__ == "__main__":
    sys.exit(main())
