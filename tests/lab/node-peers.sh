#!/usr/bin/env bash
# Install the npm peers of the interop tests (smtp-server with REQUIRETLS, nodemailer)
# under tests/lab/node/node_modules. Idempotent: nothing is fetched when present.
# Needs Node.js >= 20 and npm (both on this project's machines).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
command -v node >/dev/null || { echo "[lab] ERROR: node not found" >&2; exit 1; }
cd "$here/node"
if [ ! -d node_modules/smtp-server ] || [ ! -d node_modules/nodemailer ]; then
    npm install --no-audit --no-fund --no-package-lock --loglevel=error >/dev/null
fi
for p in smtp-server nodemailer; do
    echo "[lab] $p $(node -p "require('./node_modules/$p/package.json').version")" >&2
done
