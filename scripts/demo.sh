#!/usr/bin/env bash
# The main job: install smtp_rtls into .venv and run its demo, a whole
# REQUIRETLS session (STARTTLS, the refused plaintext attempt, the accepted
# transaction) through the Sans-IO core, printing the transcript.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e .
exec .venv/bin/python -m smtp_rtls demo "$@"
