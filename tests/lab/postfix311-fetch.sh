#!/usr/bin/env bash
# Postfix >= 3.11 (the first release with RFC 8689 REQUIRETLS) on Debian 12, without
# touching the system's packages:
#   - apt-get download (a private apt state, the mirror the machine already uses,
#     suites $LAB_PF311_SUITE, default "sid forky": the first that works) the postfix .deb
#     and the newer libraries it needs (glibc, OpenSSL 3.x t64, ICU 78, ...)
#   - dpkg-deb -x them into $LAB_PF311_DIR/root
#   - patchelf every Postfix ELF file: interpreter = the unpacked ld.so, DT_RPATH = the
#     unpacked library dirs (DT_RPATH, not RUNPATH, so it also covers indirect dependencies)
# Then: postfix-up.sh --reqtls.  Needs patchelf and dpkg-deb (install.sh), root (apt state).
#
# The unpacked tree is a cache shared by every LAB_DIR: it lives in $LAB_PF311_DIR
# (default ~/.cache/smtp_rtls/postfix311), because its absolute path is baked into the
# patched ELF files (a fresh LAB_DIR per test session would mean a fresh download).
# Idempotent and fast (one postconf run) when the cache is good; a flock keeps two
# concurrent runs (two test sessions) from unpacking over each other.
# Debian's source package cannot be built instead: the mirror serves .debs and
# debian.tar.xz, not the upstream .orig.tar.gz.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

T="${LAB_PF311_DIR:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/smtp_rtls/postfix311}"
R="$T/root"
LDSO="$R/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"

good() {  # the cache holds a runnable postfix >= 3.11
    local v
    [ -x "$R/usr/sbin/postconf" ] && v="$("$R/usr/sbin/postconf" -dh mail_version 2>/dev/null)" \
        || return 1
    case "$v" in 3.1[1-9]*|3.[2-9][0-9]*|[4-9].*) echo "$v" ;; *) return 1 ;; esac
}

mkdir -p "$T"
exec 9> "$T.lock"
flock -w 300 9 || lab_die "another postfix311-fetch.sh holds $T.lock for more than 300 s"
if v="$(good)"; then
    lab_log "postfix $v already unpacked in $R"
    echo "$R"
    exit 0
fi
command -v patchelf >/dev/null || lab_die "patchelf not found: run tests/lab/install.sh as root"
command -v dpkg-deb >/dev/null || lab_die "dpkg-deb not found (a Debian machine is needed)"
[ "$(uname -m)" = x86_64 ] || lab_die "only written for amd64"
[ "$(id -u)" = 0 ] || lab_die "run as root (apt-get needs it for its private state)"
t0=$(date +%s%N)

# the machine's own Debian mirror, as apt already knows it (no host name written here)
MIRROR="$(apt-cache policy | awk '$3 ~ /^[a-z]+\/main$/ {print $2; exit}')"
[ -n "$MIRROR" ] || lab_die "no Debian mirror found in apt-cache policy (run apt-get update)"

# postfix + the shared libraries its binaries need, and theirs (found with ld.so --list)
PKGS="postfix libc6 libcdb1 libcom-err2 libdb5.3t64 libgcc-s1 libgssapi-krb5-2 libicu78
      libk5crypto3 libkeyutils1 libkrb5-3 libkrb5support0 liblmdb0 libnsl3 libsasl2-2
      libsasl2-modules-db libssl3t64 libstdc++6 libtirpc3t64 libtlsrpt0 libzstd1 zlib1g"
A="$T/apt"
fetch_from() {  # SUITE: download and unpack into $R; non-zero if apt-get fails
    rm -rf "$A" "$R" "$T/debs"
    mkdir -p "$A/lists/partial" "$A/cache/archives/partial" "$A/etc/sources.list.d" \
             "$A/etc/preferences.d" "$T/debs" "$R"
    echo "deb $MIRROR $1 main" > "$A/etc/sources.list"
    : > "$A/etc/preferences"
    local opts=(-o "Dir::State::Lists=$A/lists" -o "Dir::Cache=$A/cache"
          -o "Dir::Etc::SourceList=$A/etc/sources.list" -o "Dir::Etc::SourceParts=$A/etc/sources.list.d"
          -o "Dir::Etc::Preferences=$A/etc/preferences" -o "Dir::Etc::PreferencesParts=$A/etc/preferences.d"
          -o "APT::Sandbox::User=root" -o "Acquire::Retries=3")
    apt-get "${opts[@]}" update -qq || return 1
    # shellcheck disable=SC2086  # word splitting of the package list is wanted
    (cd "$T/debs" && apt-get "${opts[@]}" download -qq $PKGS) || return 1
    local d
    for d in "$T"/debs/*.deb; do dpkg-deb -x "$d" "$R"; done
}
# sid moves on (a library soname may change under the list above): forky is the fallback
for SUITE in ${LAB_PF311_SUITE:-sid forky}; do
    fetch_from "$SUITE" && break
    lab_log "fetching postfix 3.11 from $MIRROR $SUITE failed"
    SUITE=""
done
[ -n "$SUITE" ] || lab_die "could not fetch postfix 3.11 (suites: ${LAB_PF311_SUITE:-sid forky})"
[ -x "$LDSO" ] || lab_die "no ld.so in the unpacked libc6"

RPATH="$R/usr/lib/postfix:$R/usr/lib/x86_64-linux-gnu:$R/lib/x86_64-linux-gnu"
n=0
for f in "$R"/usr/sbin/* "$R"/usr/bin/* "$R"/usr/lib/postfix/*.so "$R"/usr/lib/postfix/sbin/*; do
    [ -f "$f" ] && [ ! -L "$f" ] || continue
    [ "$(head -c4 "$f" | tr -d '\0')" = "$(printf '\177ELF')" ] || continue
    if readelf -l "$f" 2>/dev/null | grep -q 'Requesting program interpreter'; then
        patchelf --set-interpreter "$LDSO" "$f"
    fi
    patchelf --force-rpath --set-rpath "$RPATH" "$f"
    n=$((n + 1))
done
# Debian's helper scripts name /usr/lib/postfix/... directly: point them at the unpacked copy
sed -i "s|/usr/lib/postfix/configure-instance.sh|$R/usr/lib/postfix/configure-instance.sh|" \
    "$R/usr/lib/postfix/sbin/post-install"
sed -i "s|/usr/lib/postfix/syncfiles.pl|$R/usr/lib/postfix/syncfiles.pl|g" \
    "$R/usr/lib/postfix/configure-instance.sh"
# every library must now come from the unpacked tree
missing="$("$LDSO" --list "$R/usr/lib/postfix/sbin/smtpd" 2>&1 | grep -E 'not found' || true)"
[ -z "$missing" ] || lab_die "unresolved libraries: $missing"
rm -rf "$T/debs" "$A/cache"   # the .debs are not needed once unpacked
v="$(good)" || lab_die "got postfix $("$R/usr/sbin/postconf" -dh mail_version) from $SUITE, need >= 3.11"
lab_log "postfix $v unpacked in $R ($n ELF files patched) in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
echo "$R"
