#!/usr/bin/env bash
# Run every check of smtp_rtls on this machine: installs what the tests need
# (Debian packages for the real-peer lab, when run as root; a .venv with the
# test and docs extras), then pytest (twice: the pure build, then the compiled
# core), ruff, mypy --strict and sphinx-build -W.
# Exits non-zero on the first failing step.
set -euo pipefail
cd "$(dirname "$0")/.."

PY="${PYTHON:-python3}"
if [ "$(id -u)" = 0 ]; then
    bash tests/lab/install.sh
fi
bash tests/lab/node-peers.sh
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test,docs,trio,dane]'

step() { printf '\n== %s\n' "$*"; }
step "pytest"
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
# The same suite against the compiled core (setup.py: SMTP_RTLS_COMPILE=1
# compiles it with mypyc): built into build/compiled, which goes first on the
# path; the tests refuse to run if a module of the core is not compiled there.
step "pytest, compiled core"
rm -rf build/compiled
SMTP_RTLS_COMPILE=1 .venv/bin/python -m pip install -q --disable-pip-version-check \
    --no-deps --target build/compiled .
SMTP_RTLS_EXPECT_COMPILED=1 PYTHONPATH="$PWD/build/compiled" \
    .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
step "ruff check"
.venv/bin/ruff check src tests bench docs
step "ruff format --check"
.venv/bin/ruff format --check src tests bench docs
step "mypy --strict src"
.venv/bin/mypy --strict src
step "sphinx-build -W"
# -E: a fresh environment each time; an incremental build loses the
# standard-library links docs/_ext/publicnames.py adds while reading
.venv/bin/sphinx-build -E -n -W -q -b html docs docs/_build/html
echo
echo "all checks passed"
