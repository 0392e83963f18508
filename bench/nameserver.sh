#!/usr/bin/env bash
# shellcheck disable=SC2317 # functions run indirectly
# Our nameserver against Knot DNS (knotd), one after the other on loopback, same zone.
#
# Registers BENCH_INSTANCES (1,000) instances in heimdall-nameserver (release build,
# --health.interval=0s --storage.path=''), transfers its zone with `dig AXFR +onesoa` into a
# master file and loads that file into knotd as a primary, so both answer the same records.
# Then, for each server alone (the other one is not running), dnsperf over UDP with EDNS:
#   a      `web-N.Z A`                      (random instances)
#   srv    `web-N._exporter._tcp.Z SRV`     (DNS-SD instance names: SRV + glue A)
#   shard  `_sK._exporter._tcp.Z SRV`       (the shards: ~1000/S SRV records each; over UDP
#                                            they do not fit 1232 bytes, so TC answers)
#   srv-tcp    the srv mix over TCP
# (dnsperf 2.10 loses every TCP query whose answer is as big as a shard's, ~17 KB, against
# either server, so the shards are not measured over TCP.)
# Each throughput run: dnsperf -l BENCH_SECS -c BENCH_CLIENTS -T BENCH_THREADS -Q BENCH_MAX_QPS.
# Latency percentiles come from a second, rate-limited run (dnsperf -v -Q BENCH_LAT_QPS for
# BENCH_LAT_SECS s: one line per query), so they are latencies at that moderate load, not at
# saturation; the saturated runs give dnsperf's own average and max.
# Also: CPU the server used during each throughput run (utime+stime / run time, in cores;
# dnsperf shares the same 2 cores), and memory (VmRSS after the runs, VmHWM = peak).
# Prints a markdown table and writes it to bench/results/nameserver-<date>.md.
#
# usage: bash bench/nameserver.sh
# env:   BENCH_INSTANCES=1000, BENCH_SECS=15, BENCH_CLIENTS=4, BENCH_THREADS=1,
#        BENCH_MAX_QPS=200000, BENCH_LAT_QPS=10000, BENCH_LAT_SECS=4,
#        HEIMDALL_NAMESERVER=path (skip the release build and use this binary),
#        BENCH_OUT=file (default above).
# Needs: dnsperf, knotd (knot), dig (bind9-dnsutils), curl, python3; installs the first three
# with apt-get when missing and run as root.
# Bounded: every dnsperf run has a time limit; both servers are killed on exit. About 3 min.
# shellcheck source-path=SCRIPTDIR/.. source=tests/compat/lib.sh
. "$(dirname "$0")/../tests/compat/lib.sh"

INSTANCES="${BENCH_INSTANCES:-1000}"
SECS="${BENCH_SECS:-15}"
CLIENTS="${BENCH_CLIENTS:-4}"
THREADS="${BENCH_THREADS:-1}"
MAX_QPS="${BENCH_MAX_QPS:-200000}"
LAT_QPS="${BENCH_LAT_QPS:-10000}"
LAT_SECS="${BENCH_LAT_SECS:-4}"
ZONE=heimdall.internal.

# --- peers -------------------------------------------------------------------------------------
missing=()
command -v dnsperf >/dev/null 2>&1 || missing+=(dnsperf)
command -v knotd >/dev/null 2>&1 || missing+=(knot)
command -v dig >/dev/null 2>&1 || missing+=(bind9-dnsutils)
if ((${#missing[@]} > 0)); then
    if [[ "$(id -u)" == 0 ]]; then
        log "installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        if ! timeout 600 apt-get install -y -q --no-install-recommends "${missing[@]}"; then
            timeout 300 apt-get update -q
            timeout 600 apt-get install -y -q --no-install-recommends "${missing[@]}"
        fi
    else
        log "not root: cannot apt-get install ${missing[*]}"
    fi
fi
need dnsperf knotd dig curl python3

if [[ -n "${HEIMDALL_NAMESERVER:-}" ]]; then
    OURS_BIN="$HEIMDALL_NAMESERVER"
    BUILD="given binary $OURS_BIN"
else
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/heimdall-target}"
    log "building: cargo build --release -p heimdall-nameserver"
    (cd "$REPO_ROOT" && cargo build --release -j2 -p heimdall-nameserver --bin heimdall-nameserver)
    OURS_BIN="$CARGO_TARGET_DIR/release/heimdall-nameserver"
    BUILD="release"
fi
[[ -x "$OURS_BIN" ]] || { echo "no binary at $OURS_BIN" >&2; exit 1; }

CLK_TCK="$(getconf CLK_TCK)"
LOADAVG_START="$(cut -d' ' -f1-3 /proc/loadavg)"
cpu_ticks() { # utime + stime of PID
    local rest
    rest="$(sed 's/^.*) //' "/proc/$1/stat")"
    awk '{print $12 + $13}' <<<"$rest"
}
status_kb() { # PID FIELD -> kB
    awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status"
}
mb() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }

# --- our nameserver, the fleet, the zone file ----------------------------------------------------
# --storage.path='' keeps nothing on disk; a build whose flag parser refuses the empty value
# gets a scratch directory instead (said in the report).
STORAGE=(--storage.path='')
STORAGE_NOTE="\`--storage.path=''\`"
if ! "$OURS_BIN" --storage.path='' --version >/dev/null 2>&1; then
    log "this build refuses --storage.path='': using a scratch directory"
    STORAGE=(--storage.path="$WORK/storage")
    STORAGE_NOTE="\`--storage.path=<scratch dir>\` (this build refuses \`--storage.path=''\`)"
fi
P_OURS="$(free_port)"
H_OURS="$(free_port)"
start_bg heimdall "$OURS_BIN" --dns.listen-address="127.0.0.1:$P_OURS" \
    --http.listen-address="127.0.0.1:$H_OURS" --health.interval=0s "${STORAGE[@]}" \
    --dns.allow-transfer 127.0.0.1 --log.level=warn
PID_OURS=$LAST_PID
WAIT_PID=$PID_OURS wait_http "http://127.0.0.1:$H_OURS/health" 30 || { show_log heimdall; exit 1; }

log "registering $INSTANCES instances over HTTP (8 connections)"
timeout 300 python3 - "$H_OURS" "$INSTANCES" <<'EOF'
import http.client, json, sys, threading
port, n = int(sys.argv[1]), int(sys.argv[2])
bad, lock = [], threading.Lock()
def worker(k):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for i in range(1 + k, n + 1, 8):
        body = json.dumps({"address": f"10.4.{i // 256}.{i % 256}", "port": 9100,
                           "labels": {"rack": f"r{i % 8}"}, "ttl_seconds": None, "health_path": None})
        conn.request("PUT", f"/v1/services/exporter/instances/web-{i}", body,
                     {"Content-Type": "application/json"})
        r = conn.getresponse()
        r.read()
        if r.status not in (200, 201):
            with lock:
                bad.append((i, r.status))
ts = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
for t in ts: t.start()
for t in ts: t.join()
print(f"{n - len(bad)} of {n} registered" + (f"; failures: {bad[:5]}" if bad else ""))
sys.exit(1 if bad else 0)
EOF

ZONEFILE="$WORK/heimdall.internal.zone"
timeout 60 dig @127.0.0.1 -p "$P_OURS" +time=10 +tries=1 +onesoa AXFR "$ZONE" >"$WORK/axfr.txt"
grep -v -e '^;' -e '^$' "$WORK/axfr.txt" >"$ZONEFILE"
RECORDS="$(wc -l <"$ZONEFILE")"
log "zone: $RECORDS records by AXFR ($(grep -o 'XFR size.*' "$WORK/axfr.txt"))"
((RECORDS > 2 * INSTANCES)) || { echo "the transfer is too small: $RECORDS records" >&2; exit 1; }
SHARDS="$(dig @127.0.0.1 -p "$P_OURS" +short TXT "_shards._exporter._tcp.$ZONE" | grep -o 'shards=[0-9]*' | cut -d= -f2)"
log "$SHARDS shards of _exporter._tcp"

# --- query files -------------------------------------------------------------------------------------
python3 - "$WORK" "$INSTANCES" "${SHARDS:-1}" <<'EOF'
import random, sys
work, n, shards = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rnd = random.Random(42)
with open(f"{work}/q-a.txt", "w") as f:
    for _ in range(20000):
        f.write(f"web-{rnd.randint(1, n)}.heimdall.internal A\n")
with open(f"{work}/q-srv.txt", "w") as f:
    for _ in range(20000):
        f.write(f"web-{rnd.randint(1, n)}._exporter._tcp.heimdall.internal SRV\n")
with open(f"{work}/q-shard.txt", "w") as f:
    for _ in range(20000):
        f.write(f"_s{rnd.randrange(shards)}._exporter._tcp.heimdall.internal SRV\n")
EOF
MIXES=(a srv shard srv-tcp)
declare -A MIX_FILE=([a]=q-a.txt [srv]=q-srv.txt [shard]=q-shard.txt [srv-tcp]=q-srv.txt)
declare -A MIX_MODE=([a]=udp [srv]=udp [shard]=udp [srv-tcp]=tcp)

# What both servers must answer alike (checked before Knot's runs).
SAMPLES=("web-1.$ZONE A" "web-$INSTANCES.$ZONE A" "web-7._exporter._tcp.$ZONE SRV"
    "_s0._exporter._tcp.$ZONE SRV" "web-7.$ZONE TXT" "nosuch.$ZONE A")
answers() { # PORT : sorted answer sections of the sample queries, over TCP
    local s
    for s in "${SAMPLES[@]}"; do
        # shellcheck disable=SC2086 # "name type"
        dig @127.0.0.1 -p "$1" +norec +tcp +time=3 +tries=1 +noall +answer +nottlid $s | sort
        # shellcheck disable=SC2086
        dig @127.0.0.1 -p "$1" +norec +tcp +time=3 +tries=1 $s | grep -o 'status: [A-Z]*'
    done
}
tc_flag() { # PORT : whether a shard over UDP (EDNS 1232) has TC
    dig @127.0.0.1 -p "$1" +norec +bufsize=1232 +ignore +time=3 +tries=1 SRV "_s0._exporter._tcp.$ZONE" |
        grep -q 'flags:[^;]* tc' && echo yes || echo no
}

declare -A R
# perf NAME PORT PID : every mix against one server.
perf() {
    local name="$1" port="$2" pid="$3" mix out t0 t1 lat
    dnsperf -s 127.0.0.1 -p "$port" -d "$WORK/q-a.txt" -l 2 -c "$CLIENTS" -T "$THREADS" -e >/dev/null 2>&1 || true # warm-up
    for mix in "${MIXES[@]}"; do
        log "$name, $mix: dnsperf -m ${MIX_MODE[$mix]} -l $SECS -c $CLIENTS -T $THREADS -Q $MAX_QPS"
        t0="$(cpu_ticks "$pid")"
        out="$(timeout $((SECS + 30)) dnsperf -m "${MIX_MODE[$mix]}" -s 127.0.0.1 -p "$port" \
            -d "$WORK/${MIX_FILE[$mix]}" -l "$SECS" -c "$CLIENTS" -T "$THREADS" -Q "$MAX_QPS" -e 2>&1 || true)"
        t1="$(cpu_ticks "$pid")"
        printf '%s\n' "$out" | sed -n '/^Statistics:/,$p' | grep -v '^$' | sed 's/^/    /'
        R[$name,$mix,qps]="$(awk '/Queries per second:/ {printf "%.0f", $4}' <<<"$out")"
        R[$name,$mix,lost]="$(awk '/Queries lost:/ {print $3 " " $4}' <<<"$out")"
        R[$name,$mix,rcodes]="$(sed -n 's/^ *Response codes: *//p' <<<"$out")"
        # (over TCP a second "Average Latency" line is the connections'.)
        R[$name,$mix,avg]="$(awk '/Average Latency/ {printf "%.3f", $4 * 1000; exit}' <<<"$out")"
        R[$name,$mix,max]="$(awk '/Average Latency/ {gsub(/[()]/, ""); printf "%.2f", $8 * 1000; exit}' <<<"$out")"
        R[$name,$mix,resp]="$(awk '/Average packet size/ {print $NF}' <<<"$out")"
        R[$name,$mix,cpu]="$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v s="$SECS" 'BEGIN {printf "%.2f", d / hz / s}')"
        log "$name, $mix: latency at $LAT_QPS q/s (dnsperf -v, ${LAT_SECS}s)"
        lat="$(timeout $((LAT_SECS + 30)) dnsperf -m "${MIX_MODE[$mix]}" -s 127.0.0.1 -p "$port" \
            -d "$WORK/${MIX_FILE[$mix]}" -l "$LAT_SECS" -c "$CLIENTS" -T "$THREADS" -Q "$LAT_QPS" -e -v 2>/dev/null |
            awk '/^> / {print $NF}' | sort -g | awk '{v[NR] = $1} END {
                if (NR == 0) {print "- -"; exit}
                i50 = int(NR * 0.50); i99 = int(NR * 0.99); if (i50 < 1) i50 = 1; if (i99 < 1) i99 = 1
                printf "%.3f %.3f\n", v[i50] * 1000, v[i99] * 1000}')"
        R[$name,$mix,p50]="${lat% *}"
        R[$name,$mix,p99]="${lat#* }"
    done
    R[$name,rss]="$(status_kb "$pid" VmRSS)"
    R[$name,hwm]="$(status_kb "$pid" VmHWM)"
    R[$name,tc]="$(tc_flag "$port")"
}

OURS_ANSWERS="$(answers "$P_OURS")"
perf heimdall "$P_OURS" "$PID_OURS"
OURS_VERSION="$("$OURS_BIN" --version 2>&1 | head -n 1)"
stop_bg "$PID_OURS"

# --- Knot, alone, on the same zone -------------------------------------------------------------------
KD="$WORK/knot"
mkdir -p "$KD/run" "$KD/db"
cp "$ZONEFILE" "$KD/heimdall.internal.zone"
P_KNOT="$(free_port)"
cat >"$KD/knot.conf" <<EOF
server:
    rundir: "$KD/run"
    listen: 127.0.0.1@$P_KNOT
log:
  - target: stderr
    any: warning
database:
    storage: "$KD/db"
control:
    listen: "$KD/run/knot.sock"
template:
  - id: default
    storage: "$KD"
    zonefile-sync: -1
    journal-content: none
zone:
  - domain: ${ZONE%.}
    file: "$KD/heimdall.internal.zone"
EOF
start_bg knotd knotd -c "$KD/knot.conf"
PID_KNOT=$LAST_PID
deadline=$((SECONDS + 30))
until dig @127.0.0.1 -p "$P_KNOT" +norec +time=1 +tries=1 SOA "$ZONE" 2>/dev/null | grep -q 'status: NOERROR'; do
    if ((SECONDS > deadline)) || ! kill -0 "$PID_KNOT" 2>/dev/null; then
        show_log knotd
        exit 1
    fi
    sleep 0.2
done
KNOT_ANSWERS="$(answers "$P_KNOT")"
if [[ "$KNOT_ANSWERS" == "$OURS_ANSWERS" ]]; then
    SAME="yes"
else
    SAME="no (see below)"
    diff <(printf '%s\n' "$OURS_ANSWERS") <(printf '%s\n' "$KNOT_ANSWERS") | head -n 20 || true
fi
log "same answers to ${#SAMPLES[@]} sample queries: $SAME"
perf knotd "$P_KNOT" "$PID_KNOT"
KNOT_VERSION="$(knotd -V 2>&1 | awk '{print $NF}')"
stop_bg "$PID_KNOT"

# --- report ------------------------------------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "-"}'; }
REV="$(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
OUT="${BENCH_OUT:-$REPO_ROOT/bench/results/nameserver-$(date +%F).md}"
mkdir -p "$(dirname "$OUT")"
declare -A MIX_DESC=([a]="A \`web-N.Z\`" [srv]="SRV \`web-N._exporter._tcp.Z\`"
    [shard]="SRV \`_sK._exporter._tcp.Z\` (TC)" [srv-tcp]="SRV \`web-N._exporter._tcp.Z\` over TCP")
{
    echo "# Nameserver benchmark, $(date -u '+%F %H:%M UTC')"
    echo
    echo "heimdall-nameserver ($OURS_VERSION, $BUILD, repo HEAD $REV) vs Knot DNS $KNOT_VERSION (Debian),"
    echo "on $(nproc) cores ($(uname -r)), loopback, each server alone. Zone \`$ZONE\` with $INSTANCES"
    echo "instances in \`exporter\` ($RECORDS records, $SHARDS shards), registered in ours over HTTP"
    echo "(\`--health.interval=0s\`, $STORAGE_NOTE), transferred with \`dig AXFR +onesoa\` and loaded"
    echo "into knotd as a primary (default workers). Same answers to ${#SAMPLES[@]} sample queries: $SAME."
    echo "Load average at the start / end: $LOADAVG_START / $(cut -d' ' -f1-3 /proc/loadavg) (other work"
    echo "on the machine skews every figure; dnsperf itself shares the 2 cores with the server)."
    echo
    echo "Throughput: \`dnsperf -l $SECS -c $CLIENTS -T $THREADS -Q $MAX_QPS -e\` (UDP with EDNS unless"
    echo "noted), 20,000 random queries per mix. Server CPU = its utime+stime / run time, in cores."
    echo "p50/p99: a separate run at $LAT_QPS q/s (\`dnsperf -v\`, ${LAT_SECS}s), one latency per query."
    echo "Shard answers (~$((INSTANCES / ${SHARDS:-1})) SRV) do not fit 1232 bytes: over UDP both servers answer with TC"
    echo "(ours: $(sed 's/yes/TC set/;s/no/no TC/' <<<"${R[heimdall,tc]}"), Knot: $(sed 's/yes/TC set/;s/no/no TC/' <<<"${R[knotd,tc]}"); compare the response sizes: a"
    echo "truncated answer may carry what fits or nothing), and a real client would then ask over TCP,"
    echo "which dnsperf 2.10 cannot measure for answers that big (~17 KB: every query lost)."
    echo
    echo "| query mix | server | queries/s | avg ms | max ms | p50 ms @${LAT_QPS} | p99 ms @${LAT_QPS} | lost | response bytes | server CPU | rcodes |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    for mix in "${MIXES[@]}"; do
        for s in heimdall knotd; do
            echo "| ${MIX_DESC[$mix]} | $s | ${R[$s,$mix,qps]:-} | ${R[$s,$mix,avg]:-} | ${R[$s,$mix,max]:-} | ${R[$s,$mix,p50]:-} | ${R[$s,$mix,p99]:-} | ${R[$s,$mix,lost]:-} | ${R[$s,$mix,resp]:-} | ${R[$s,$mix,cpu]:-} | ${R[$s,$mix,rcodes]:-} |"
        done
    done
    echo
    echo "| query mix | heimdall / knotd queries/s | heimdall >= 50,000 q/s | heimdall >= 0.5x knotd |"
    echo "|---|---:|---|---|"
    for mix in "${MIXES[@]}"; do
        r="$(ratio "${R[heimdall,$mix,qps]:-0}" "${R[knotd,$mix,qps]:-0}")"
        echo "| ${MIX_DESC[$mix]} | $r | $( ((${R[heimdall,$mix,qps]:-0} >= 50000)) && echo yes || echo no) | $(awk -v r="$r" 'BEGIN {print (r + 0 >= 0.5) ? "yes" : "no"}') |"
    done
    echo
    echo "| memory | heimdall-nameserver | knotd |"
    echo "|---|---:|---:|"
    echo "| RSS after the runs (MiB) | $(mb "${R[heimdall,rss]}") | $(mb "${R[knotd,rss]}") |"
    echo "| peak RSS, VmHWM (MiB) | $(mb "${R[heimdall,hwm]}") | $(mb "${R[knotd,hwm]}") |"
} >"$OUT"
echo
cat "$OUT"
echo
echo "written to $OUT"
FINISHED=1 # (lib.sh) a normal end, not an aborted suite
