#!/usr/bin/env bash
# MTA-STS policy host: HTTPS on 127.0.0.1:$LAB_HTTPS_PORT and [::1]:$LAB_HTTPS_PORT with the lab CA's
# server certificate (SANs mta-sts.example.test, mta-sts.unsigned.test, mta-sts.bogus.test, ...).
# Policies come from $LAB_DIR/mta-sts/sites.json (re-read per request; rewrite it in tests).
# The lab DNS (dnssec-up.sh) resolves mta-sts.<zone>.test to 127.0.0.1 / ::1 and serves
# _mta-sts.<zone>.test TXT "v=STSv1; id=...". RFC 8461 says port 443: clients under test
# need a port (or connect-to) override, see README.
# Needs only python3 (stdlib). Idempotent.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

pid="$(lab_pid_of mta-sts)"
if lab_pid_alive "$pid"; then
    echo "mta-sts $pid https://127.0.0.1:$LAB_HTTPS_PORT (sites $LAB_DIR/mta-sts/sites.json)"
    exit 0
fi
lab_forget_pid mta-sts
lab_port_busy "$LAB_HTTPS_PORT" && lab_die "port $LAB_HTTPS_PORT is in use by something this lab did not start"
bash "$LAB_HERE/pki.sh" >/dev/null
M="$LAB_DIR/mta-sts"
mkdir -p "$M"
if [ ! -s "$M/sites.json" ]; then
    python3 - "$M/sites.json" <<'EOF'
import json, sys
pol = lambda mode, mx: f"version: STSv1\r\nmode: {mode}\r\nmx: {mx}\r\nmax_age: 86400\r\n"
sites = {
    "mta-sts.example.test": {"status": 200, "content_type": "text/plain",
                             "body": pol("enforce", "mx.example.test")},
    "mta-sts.unsigned.test": {"status": 200, "content_type": "text/plain",
                              "body": pol("testing", "mx.unsigned.test")},
    # a 3xx must not be followed (RFC 8461 3.3)
    "mta-sts.bogus.test": {"status": 301, "location": "https://mta-sts.example.test/.well-known/mta-sts.txt"},
}
json.dump(sites, open(sys.argv[1], "w"), indent=1)
EOF
fi
PY="${LAB_PYTHON:-python3}"   # stdlib only: any python3 will do
"$PY" "$LAB_HERE/mtasts_server.py" --cert "$LAB_DIR/pki/server.crt" --key "$LAB_DIR/pki/server.key" \
    --sites "$M/sites.json" --port "$LAB_HTTPS_PORT" --host 127.0.0.1 --host ::1 >>"$M/server.log" 2>&1 &
lab_record_pid mta-sts $!
lab_wait_port 127.0.0.1 "$LAB_HTTPS_PORT" tcp 20 || lab_die "mta-sts server did not start, see $M/server.log"
echo "mta-sts $(lab_pid_of mta-sts) https://127.0.0.1:$LAB_HTTPS_PORT (sites $M/sites.json)"
