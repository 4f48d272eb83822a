#!/usr/bin/env bash
# The main job: install smtp_rtls into .venv (only when needed) and run its
# demo: two SMTP servers on 127.0.0.1 with real TLS, a REQUIRETLS message
# delivered to each under the policy, and what happened, printed.
#
# The package is (re)installed only when .venv is missing, when smtp_rtls
# cannot be imported from it, or when pyproject.toml is newer than the stamp
# written after the last successful install; a second run starts at once.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
STAMP=.venv/.smtp_rtls-installed
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
if [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ] \
    || ! .venv/bin/python -c "import smtp_rtls.cli" 2>/dev/null; then
    .venv/bin/python -m pip install -q --disable-pip-version-check -e .
    touch "$STAMP"
fi
exec .venv/bin/python -m smtp_rtls demo "$@"
