# Shared settings for the lab scripts. Sourced, not executed.
# Every daemon binds loopback only; ports stay inside the ranges the project
# reserved: SMTP 2500-2599, DNS 5300-5399, HTTPS 4400-4499.

LAB_HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# All state (keys, zones, configs, logs, pid files) lives here.
# Override with LAB_DIR=... (the pytest fixture passes a fresh temporary folder); the
# default is per user and apart from the shared lab's /tmp/smtp_rtls-lab, so that
# down.sh can find what the *-up.sh scripts started and nobody else's lab is touched.
LAB_DIR="${LAB_DIR:-${TMPDIR:-/tmp}/smtp_rtls-lab-$(id -u)}"

# Defaults differ from the shared lab (5301/5302/4443), which may run on the same machine.
: "${LAB_NSD_PORT:=5311}"        # authoritative (nsd), signed + unsigned + bogus zones
: "${LAB_UNBOUND_PORT:=5312}"    # validating resolver (unbound) -> answers with AD
: "${LAB_HTTPS_PORT:=4453}"      # MTA-STS policy server

LAB_PIDS="$LAB_DIR/pids"          # one "name pid starttime" line per daemon we started

lab_log() { printf '[lab] %s\n' "$*" >&2; }
lab_die() { printf '[lab] ERROR: %s\n' "$*" >&2; exit 1; }

# start time of a process in clock ticks since boot (field 22 of /proc/PID/stat);
# recorded with the pid so that a reused pid is never mistaken for ours
lab_starttime() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $20}'; }

# a zombie (exited, not yet reaped by whoever adopted it) counts as stopped
lab_pid_alive() {
    [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null \
        && [ "$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)" != Z ]
}

# lab_pid_of NAME -> pid recorded for NAME, only if that very process still runs
lab_pid_of() {
    [ -f "$LAB_PIDS" ] || return 0
    local pid start
    read -r pid start < <(awk -v n="$1" '$1==n {p=$2; s=$3} END {if (p) print p, s}' "$LAB_PIDS") || return 0
    [ -n "${pid:-}" ] && lab_pid_alive "$pid" && [ "$(lab_starttime "$pid")" = "$start" ] && echo "$pid"
    return 0
}

lab_record_pid() {  # NAME PID
    mkdir -p "$LAB_DIR"
    touch "$LAB_PIDS"
    grep -v "^$1 " "$LAB_PIDS" > "$LAB_PIDS.tmp" || true
    echo "$1 $2 $(lab_starttime "$2")" >> "$LAB_PIDS.tmp"
    mv "$LAB_PIDS.tmp" "$LAB_PIDS"
}

lab_forget_pid() {  # NAME
    [ -f "$LAB_PIDS" ] || return 0
    grep -v "^$1 " "$LAB_PIDS" > "$LAB_PIDS.tmp" || true
    mv "$LAB_PIDS.tmp" "$LAB_PIDS"
}

# lab_wait_port HOST PORT [tcp|udp] [SECONDS]
lab_wait_port() {
    local host="$1" port="$2" proto="${3:-tcp}" secs="${4:-20}" i
    for i in $(seq 1 $((secs * 10))); do
        if [ "$proto" = tcp ]; then
            ss -Hltn "sport = :$port" | grep -q . && return 0
        else
            ss -Hlun "sport = :$port" | grep -q . && return 0
        fi
        sleep 0.1
    done
    return 1
}

# lab_port_busy PORT -> 0 if something listens on it (tcp or udp)
lab_port_busy() {
    ss -Hltn "sport = :$1" | grep -q . || ss -Hlun "sport = :$1" | grep -q .
}
