"""``python -m smtp_rtls``: the command line."""

import sys

from .cli import main

sys.exit(main())
