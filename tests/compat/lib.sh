# shellcheck shell=bash
# Shared helpers for the compatibility suites in tests/compat/*.sh.
#
# Source it from a suite (`. "$(dirname "$0")/lib.sh"`). It gives:
#   check NAME CMD...      run CMD; count a pass or a failure (output shown on failure)
#   pass NAME / fail NAME [DETAIL]   count by hand
#   finish                 print "N passed, M failed" and exit 1 if anything failed
#   skip_suite REASON      print the reason and "0 passed, 0 failed", exit 0
#   free_port              a free TCP port on 127.0.0.1
#   start_bg NAME CMD...   start CMD in the background (log in $WORK/NAME.log); killed on exit
#   wait_http URL [SECONDS] [CURL ARGS...]   wait until URL answers 2xx
#   http ARGS...           curl with --max-time and no proxy
#   require_heimdall_bin   sets BIN to our exporter binary (or fails the suite)
#
# Everything binds 127.0.0.1 and is cleaned up by an EXIT trap: background processes are
# killed (TERM, then KILL) and the scratch directory $WORK is removed (kept when
# KEEP_WORK=1, for debugging).

set -eEuo pipefail

COMPAT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$COMPAT_DIR/../.." && pwd)"
# Peer data lives beside the clone (../shared); HEIMDALL_SHARED_DIR overrides.
# shellcheck disable=SC2034 # used by the suites
SHARED_DIR="${HEIMDALL_SHARED_DIR:-$REPO_ROOT/../shared}"
SUITE="$(basename "$0" .sh)"

# Our binaries: $HEIMDALL_BIN_DIR, else the first of these that has heimdall-exporter.
if [[ -z "${HEIMDALL_BIN_DIR:-}" ]]; then
    for d in "${CARGO_TARGET_DIR:+$CARGO_TARGET_DIR/debug}" "$HOME/.cache/heimdall-target/debug" \
        "$REPO_ROOT/target/debug"; do
        if [[ -n "$d" && -x "$d/heimdall-exporter" ]]; then
            HEIMDALL_BIN_DIR="$d"
            break
        fi
    done
fi
HEIMDALL_BIN_DIR="${HEIMDALL_BIN_DIR:-${CARGO_TARGET_DIR:-$HOME/.cache/heimdall-target}/debug}"
export HEIMDALL_BIN_DIR

# Never go through a proxy to reach loopback.
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY
export no_proxy='*' NO_PROXY='*'

PASSED=0
FAILED=0
FAILED_NAMES=()
BG_PIDS=()
BG_NAMES=()
WORK="$(mktemp -d "${TMPDIR:-/tmp}/heimdall-compat-$SUITE.XXXXXX")"

FINISHED=0
LAST_ERR=""
_cleanup() {
    local rc=$?
    local pid i
    if ((FINISHED == 0)); then
        # The suite stopped on an unexpected error (set -e): still close with a tally.
        fail "$SUITE aborted (exit $rc)${LAST_ERR:+ at $LAST_ERR}"
        echo "$PASSED passed, $FAILED failed"
        ((rc != 0)) || rc=1
    fi
    for i in "${!BG_PIDS[@]}"; do
        pid="${BG_PIDS[$i]}"
        kill -TERM "$pid" 2>/dev/null || true
    done
    for i in "${!BG_PIDS[@]}"; do
        pid="${BG_PIDS[$i]}"
        # Up to 5 s for a graceful stop, then KILL.
        local n=0
        while kill -0 "$pid" 2>/dev/null && ((n < 50)); do
            sleep 0.1
            n=$((n + 1))
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [[ "${KEEP_WORK:-0}" == 1 ]]; then
        echo "# scratch kept in $WORK" >&2
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap _cleanup EXIT
trap 'LAST_ERR="line $LINENO: $BASH_COMMAND"' ERR
trap 'exit 130' INT
trap 'exit 143' TERM

log() { printf '# %s\n' "$*"; }

pass() {
    PASSED=$((PASSED + 1))
    printf 'ok   %s\n' "$1"
}

fail() {
    FAILED=$((FAILED + 1))
    FAILED_NAMES+=("$1")
    printf 'FAIL %s\n' "$1"
    if [[ $# -gt 1 && -n "$2" ]]; then
        printf '%s\n' "$2" | head -n 40 | sed 's/^/     | /'
    fi
}

# check NAME CMD... : runs CMD (stdout+stderr captured); pass if it exits 0.
check() {
    local name="$1"
    shift
    local out="$WORK/check.out"
    if "$@" >"$out" 2>&1; then
        pass "$name"
    else
        fail "$name" "$(tail -n 40 "$out")"
    fi
}

# Final line, read by CI: "N passed, M failed".
finish() {
    FINISHED=1
    if ((FAILED > 0)); then
        echo "failed checks in $SUITE:"
        printf '  - %s\n' "${FAILED_NAMES[@]}"
    fi
    echo "$PASSED passed, $FAILED failed"
    if ((FAILED > 0)); then exit 1; fi
    exit 0
}

skip_suite() {
    FINISHED=1
    echo "skipped: $*"
    echo "0 passed, 0 failed"
    exit 0
}

need() {
    local c
    for c in "$@"; do
        if [[ "$c" == */* && -e "$c" ]] || command -v "$c" >/dev/null 2>&1; then
            continue
        fi
        echo "error: $SUITE needs '$c' (install the peers: apt-get install prometheus prometheus-node-exporter wrk apache2-utils openssl curl bind9-dnsutils bind9 knot)" >&2
        echo "0 passed, 1 failed"
        FINISHED=1
        exit 1
    done
}

# require_heimdall_bin : sets BIN to our exporter binary, or fails the suite.
require_heimdall_bin() {
    BIN="$HEIMDALL_BIN_DIR/heimdall-exporter"
    if [[ ! -x "$BIN" ]]; then
        fail "our binary exists: $BIN" "build it with 'cargo build --workspace --bins', or set HEIMDALL_BIN_DIR"
        finish
    fi
}

free_port() {
    python3 - <<'EOF'
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
EOF
}

# start_bg NAME CMD... : runs CMD in the background, output in $WORK/NAME.log.
# The pid is left in LAST_PID (and killed on exit).
start_bg() {
    local name="$1"
    shift
    "$@" >"$WORK/$name.log" 2>&1 </dev/null &
    LAST_PID=$!
    BG_PIDS+=("$LAST_PID")
    BG_NAMES+=("$name")
}

# stop_bg PID : stops one background process now.
stop_bg() {
    local pid="$1" n=0
    kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null && ((n < 50)); do
        sleep 0.1
        n=$((n + 1))
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# curl with a time limit, silent, no proxy. Extra args pass through.
http() {
    curl -sS --max-time "${HTTP_TIMEOUT:-10}" --connect-timeout 5 "$@"
}

# wait_http URL [SECONDS] [CURL ARGS...] : 0 when URL answers 2xx within SECONDS (default 20).
# With WAIT_PID set, gives up as soon as that process has died.
wait_http() {
    local url="$1" secs="${2:-20}"
    shift 2 || shift $#
    local deadline=$((SECONDS + secs))
    while ((SECONDS < deadline)); do
        if curl -fsS --max-time 2 -o /dev/null "$@" "$url" 2>/dev/null; then
            return 0
        fi
        if [[ -n "${WAIT_PID:-}" ]] && ! kill -0 "$WAIT_PID" 2>/dev/null; then
            echo "process $WAIT_PID died while waiting for $url" >&2
            return 1
        fi
        sleep 0.2
    done
    echo "timeout after ${secs}s waiting for $url" >&2
    return 1
}

# show_log NAME : last lines of a background process's log (for failure reports).
show_log() {
    local f="$WORK/$1.log"
    if [[ -f "$f" ]]; then
        echo "--- last lines of $1.log ---"
        tail -n "${2:-20}" "$f"
    fi
}

# concurrent_complete URL THREADS SCRAPES_PER_THREAD : scrapes URL from THREADS clients at once;
# fails unless every response is complete, i.e. each collector that succeeds in a lone scrape
# (node_scrape_collector_success 1) succeeds in every concurrent one. Prints a summary.
concurrent_complete() {
    timeout 120 python3 - "$@" <<'EOF'
import http.client, re, sys, threading, urllib.parse
url, threads, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
u = urllib.parse.urlsplit(url)
pat = re.compile(r'^node_scrape_collector_success\{collector="([^"]+)"\} (\S+)$', re.M)
def scrape(conn):
    conn.request("GET", u.path or "/metrics")
    r = conn.getresponse()
    body = r.read().decode()
    return r.status, {c: float(v) for c, v in pat.findall(body)}
status, base = scrape(http.client.HTTPConnection(u.hostname, u.port, timeout=30))
want = {c for c, v in base.items() if v == 1}
bad, total, errors = [], 0, []
lock = threading.Lock()
def worker():
    global total
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    for _ in range(n):
        try:
            st, got = scrape(conn)
        except Exception as e:
            with lock:
                errors.append(repr(e))
            conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
            continue
        missing = sorted(c for c in want if got.get(c) != 1)
        with lock:
            total += 1
            if st != 200 or missing:
                bad.append((st, missing))
ts = [threading.Thread(target=worker) for _ in range(threads)]
for t in ts: t.start()
for t in ts: t.join()
print(f"{total} concurrent responses ({threads} clients x {n}); {len(bad)} incomplete; "
      f"{len(errors)} errors; collectors expected to succeed: {len(want)}")
skipped = {}
for st, missing in bad:
    for c in missing:
        skipped[c] = skipped.get(c, 0) + 1
if skipped:
    print("collectors not successful in concurrent responses (count): " +
          ", ".join(f"{c} {k}" for c, k in sorted(skipped.items(), key=lambda x: -x[1])))
for e in errors[:3]:
    print("error:", e)
sys.exit(1 if bad or errors else 0)
EOF
}
# Our collectors, in node_exporter's names.
# shellcheck disable=SC2034 # used by the suites
OUR_COLLECTORS=(cpu diskstats entropy filefd filesystem hwmon loadavg meminfo netclass netdev
    netstat os pressure processes sockstat stat tcpstat thermal_zone time uname vmstat)

# run_compare LABEL CMD... : runs a compare_families.py command, shows its report (less its own
# tally line) and counts each of its per-collector lines ("ok   NAME: ..." / "FAIL NAME: ...")
# as one check of this suite, named "LABEL NAME".
run_compare() {
    local label="$1"
    shift
    local out="$WORK/compare-$label.txt" rc=0 status rest name
    "$@" >"$out" 2>&1 || rc=$?
    grep -v -E '^[0-9]+ passed, [0-9]+ failed$' "$out" || true
    while read -r status rest; do
        name="${rest%%: *}"
        case "$status" in
            ok) PASSED=$((PASSED + 1)) ;;
            FAIL)
                FAILED=$((FAILED + 1))
                FAILED_NAMES+=("$label $name")
                ;;
        esac
    done < <(grep -E '^(ok  |FAIL) [^ ].*: ' "$out")
    if ((rc > 1)) || ! grep -q -E '^[0-9]+ passed, [0-9]+ failed$' "$out"; then
        fail "$label: compare_families.py ran (exit $rc)" "$(tail -n 20 "$out")"
    fi
}
