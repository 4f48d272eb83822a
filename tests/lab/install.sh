#!/usr/bin/env bash
# Install the Debian packages the lab tests need (run as root on Debian 12). Idempotent and
# fast when everything is there already (one dpkg-query per package, no apt-get at all).
#   nsd, unbound, ldnsutils: the signed test zones and the validating resolver (dnssec-up.sh)
#   bind9-dnsutils: dig, for looking at the lab by hand
#   openssl: the lab PKI (pki.sh); iproute2: ss, for the port checks; curl: manual checks
#   postfix: Debian 12's Postfix 3.7 for postfix-up.sh (debconf "No configuration": the system
#            instance is neither configured nor started; the lab runs its own instances)
#   patchelf: postfix311-fetch.sh relocates Postfix 3.11 unpacked from Debian sid
#   graphviz: dot, which draws the session state diagrams of the docs (sphinx-build)
#   gcc, libc6-dev: build the compiled core (setup.py, mypyc), which scripts/test.sh tests too
#   valgrind: callgrind counts the instructions of tests/test_linearity.py (cost linear in input)
#   swaks, libnet-ssleay-perl: an independent SMTP client (STARTTLS, AUTH, pipelining)
#            for the interop tests (Net::SSLeay gives swaks its TLS)
# Add packages to LAB_PACKAGES (one list, so other lab parts can grow it).
# Services are never started by the packages: if the machine has no policy-rc.d, a
# temporary one that denies every start is put in place for the duration of the install.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

LAB_PACKAGES="${LAB_PACKAGES:-nsd unbound ldnsutils bind9-dnsutils openssl iproute2 curl postfix patchelf graphviz swaks libnet-ssleay-perl valgrind gcc libc6-dev}"

missing=""
for p in $LAB_PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed' || missing="$missing $p"
done
if [ -z "$missing" ]; then
    lab_log "Debian packages already installed"
    exit 0
fi
[ "$(id -u)" = 0 ] || lab_die "missing packages:$missing; run this script as root to install them"
t0=$(date +%s%N)
temp_policy=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    temp_policy=1
fi
trap '[ -n "$temp_policy" ] && rm -f /usr/sbin/policy-rc.d' EXIT
export DEBIAN_FRONTEND=noninteractive
# no system mail configuration: postfix-up.sh runs private instances only
echo 'postfix postfix/main_mailer_type select No configuration' | debconf-set-selections
apt-get update -qq
# shellcheck disable=SC2086  # word splitting of the package list is wanted
apt-get install -y -qq --no-install-recommends $missing >/dev/null
lab_log "apt-get installed:$missing in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
