#!/usr/bin/env bash
# shellcheck disable=SC2317 # functions run indirectly
# Our exporter against Debian's node_exporter, side by side on loopback, same collector set.
#
# For each: CPU seconds per scrape (utime+stime of the process over N sequential scrapes / N),
# p50/p99 latency of those scrapes (plain and gzip), throughput under concurrent load
# (wrk -t2 -c16 -d10s), and memory (VmRSS after the load, VmHWM = peak). Prints a markdown table
# and writes it to bench/results/exporter-<date>.md.
#
# usage: bash bench/exporter.sh
# env:   BENCH_N=500 (sequential scrapes), BENCH_WRK_SECS=10, BENCH_WRK_CONNS=16,
#        HEIMDALL_EXPORTER=path (skip the release build and use this binary),
#        NODE_EXPORTER_BIN=/usr/bin/prometheus-node-exporter, BENCH_OUT=file (default above).
# Needs: wrk, curl, python3, prometheus-node-exporter (apt-get install wrk prometheus-node-exporter).
# Bounded: every load step has a time limit; both exporters are killed on exit.
# shellcheck source-path=SCRIPTDIR/.. source=tests/compat/lib.sh
. "$(dirname "$0")/../tests/compat/lib.sh"

N="${BENCH_N:-500}"
WRK_SECS="${BENCH_WRK_SECS:-10}"
WRK_CONNS="${BENCH_WRK_CONNS:-16}"
NODE_EXPORTER="${NODE_EXPORTER_BIN:-/usr/bin/prometheus-node-exporter}"
need wrk curl python3 "$NODE_EXPORTER"

if [[ -n "${HEIMDALL_EXPORTER:-}" ]]; then
    OURS_BIN="$HEIMDALL_EXPORTER"
    BUILD="given binary $OURS_BIN"
else
    log "building: cargo build --release -p heimdall-exporter"
    (cd "$REPO_ROOT" && cargo build --release -p heimdall-exporter)
    OURS_BIN="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release/heimdall-exporter"
    BUILD="release"
fi
[[ -x "$OURS_BIN" ]] || { echo "no binary at $OURS_BIN" >&2; exit 1; }

FLAGS=(--collector.disable-defaults)
for c in "${OUR_COLLECTORS[@]}"; do FLAGS+=("--collector.$c"); done
CLK_TCK="$(getconf CLK_TCK)"
LOADAVG_START="$(cut -d' ' -f1-3 /proc/loadavg)"

P_OURS="$(free_port)"
start_bg heimdall "$OURS_BIN" --web.listen-address="127.0.0.1:$P_OURS" "${FLAGS[@]}" --log.level=warn
PID_OURS=$LAST_PID
P_NE="$(free_port)"
start_bg node_exporter "$NODE_EXPORTER" --web.listen-address="127.0.0.1:$P_NE" "${FLAGS[@]}" --log.level=warn
PID_NE=$LAST_PID
WAIT_PID=$PID_OURS wait_http "http://127.0.0.1:$P_OURS/metrics" 30 || { show_log heimdall; exit 1; }
WAIT_PID=$PID_NE wait_http "http://127.0.0.1:$P_NE/metrics" 30 || { show_log node_exporter; exit 1; }

cpu_ticks() { # utime + stime of PID (fields 14 and 15 of /proc/PID/stat, after the comm)
    local rest
    rest="$(sed 's/^.*) //' "/proc/$1/stat")"
    awk '{print $12 + $13}' <<<"$rest"
}
status_kb() { # PID FIELD -> kB
    awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status"
}

# scrape_loop PORT N GZIP(0|1) [PATH] -> "p50_ms p99_ms mean_ms max_ms bytes samples errors"
scrape_loop() {
    timeout 300 python3 - "$@" <<'EOF'
import http.client, sys, time, gzip
port, n, gz = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
path = sys.argv[4] if len(sys.argv) > 4 else "/metrics"
headers = {"Accept-Encoding": "gzip"} if gz else {}
lat, errors, size, samples = [], 0, 0, 0
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
for i in range(n):
    t0 = time.perf_counter()
    try:
        conn.request("GET", path, headers=headers)
        r = conn.getresponse()
        body = r.read()
        dt = time.perf_counter() - t0
        if r.status != 200:
            errors += 1
            continue
        lat.append(dt)
        size = len(body)
        if i == n - 1:
            text = gzip.decompress(body) if r.getheader("Content-Encoding") == "gzip" else body
            samples = sum(1 for l in text.split(b"\n") if l and not l.startswith(b"#"))
    except Exception:
        errors += 1
        conn.close()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
lat.sort()
def pct(p):
    return lat[min(len(lat) - 1, int(round(p / 100 * (len(lat) - 1))))] * 1000 if lat else float("nan")
mean = sum(lat) / len(lat) * 1000 if lat else float("nan")
print(f"{pct(50):.2f} {pct(99):.2f} {mean:.2f} {(lat[-1] * 1000 if lat else 0):.2f} {size} {samples} {errors}")
EOF
}

declare -A R
measure() { # NAME PORT PID
    local name="$1" port="$2" pid="$3" t0 t1 out
    log "$name: warm-up"
    scrape_loop "$port" 20 0 >/dev/null
    for gz in 0 1; do
        log "$name: $N sequential scrapes (gzip=$gz)"
        t0="$(cpu_ticks "$pid")"
        out="$(scrape_loop "$port" "$N" "$gz")"
        t1="$(cpu_ticks "$pid")"
        read -r p50 p99 _ _ bytes samples errors <<<"$out"
        R[$name,cpu$gz]="$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$N" 'BEGIN {printf "%.2f", d / hz / n * 1000}')"
        R[$name,p50_$gz]="$p50"
        R[$name,p99_$gz]="$p99"
        R[$name,bytes$gz]="$bytes"
        R[$name,errors$gz]="$errors"
        if [[ $gz == 0 ]]; then R[$name,samples]="$samples"; fi
    done
    log "$name: wrk -t2 -c$WRK_CONNS -d${WRK_SECS}s"
    local w
    w="$(timeout $((WRK_SECS + 30)) wrk -t2 -c"$WRK_CONNS" -d"${WRK_SECS}s" --timeout 10s \
        "http://127.0.0.1:$port/metrics" 2>&1 || true)"
    printf '%s\n' "$w" | sed 's/^/    /' # wrk's own report
    R[$name,rps]="$(awk '/^Requests\/sec:/ {print $2}' <<<"$w")"
    R[$name,wrk_lat]="$(awk '$1 == "Latency" {print $2; exit}' <<<"$w")"
    local non2xx sockerr
    non2xx="$(awk '/Non-2xx or 3xx responses:/ {print $NF}' <<<"$w")"
    sockerr="$(grep -o 'Socket errors:.*' <<<"$w" || true)"
    R[$name,wrk_err]="${non2xx:-0}${sockerr:+; $sockerr}"
    # wrk counts any 200 as a success; check that concurrent responses are complete.
    local conc
    conc="$(concurrent_complete "http://127.0.0.1:$port/metrics" 4 10 2>&1 || true)"
    R[$name,conc]="$(sed -n 's/^\([0-9]*\) concurrent responses.*; \([0-9]*\) incomplete.*/\2 of \1/p' <<<"$conc" | head -n 1)"
    log "$name, 4 concurrent clients: $(head -n 2 <<<"$conc" | tr '\n' ' ')"
    R[$name,rss]="$(status_kb "$pid" VmRSS)"
    R[$name,hwm]="$(status_kb "$pid" VmHWM)"
}

measure heimdall "$P_OURS" "$PID_OURS"
measure node_exporter "$P_NE" "$PID_NE"

# CPU per scrape of each collector alone (collect[]=NAME), to see where the time goes. Includes
# each exporter's fixed cost per request (HTTP, encoding; node_exporter also adds its go_* and
# process_* metrics).
PER_N="${BENCH_PER_COLLECTOR_N:-100}"
per_collector() { # NAME PORT PID COLLECTOR -> ms
    local t0 t1
    t0="$(cpu_ticks "$3")"
    scrape_loop "$2" "$PER_N" 0 "/metrics?collect%5B%5D=$4" >/dev/null
    t1="$(cpu_ticks "$3")"
    awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$PER_N" 'BEGIN {printf "%.2f", d / hz / n * 1000}'
}
log "CPU per collector ($PER_N scrapes of collect[]=NAME each)"
for c in "${OUR_COLLECTORS[@]}"; do
    R[heimdall,c_$c]="$(per_collector heimdall "$P_OURS" "$PID_OURS" "$c")"
    R[node_exporter,c_$c]="$(per_collector node_exporter "$P_NE" "$PID_NE" "$c")"
done

mb() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }
NE_VERSION="$("$NODE_EXPORTER" --version 2>&1 | head -n 1 | awk '{print $3}')"
OURS_VERSION="$("$OURS_BIN" --version 2>&1 | head -n 1)"
REV="$(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
OUT="${BENCH_OUT:-$REPO_ROOT/bench/results/exporter-$(date +%F).md}"
mkdir -p "$(dirname "$OUT")"
{
    echo "# Exporter benchmark, $(date -u '+%F %H:%M UTC')"
    echo
    echo "heimdall-exporter ($OURS_VERSION, $BUILD, repo HEAD $REV) vs Debian's node_exporter $NE_VERSION,"
    echo "both with \`--collector.disable-defaults\` + our $((${#OUR_COLLECTORS[@]})) collectors"
    echo "(${OUR_COLLECTORS[*]}), on $(nproc) cores ($(uname -r)), loopback; the same set for"
    echo "both, so node_exporter runs processes and tcpstat too, which it has off by default."
    echo "Load average at the start / end: $LOADAVG_START / $(cut -d' ' -f1-3 /proc/loadavg) (other work"
    echo "on the machine, such as compiles, skews the latencies)."
    echo "CPU per scrape = utime+stime of the exporter over $N sequential scrapes / $N."
    echo "Latencies: $N sequential scrapes on one keep-alive connection (python http.client)."
    echo "wrk counts every 200 as done: see the incomplete-responses row before reading requests/s."
    echo
    echo "| metric | heimdall-exporter | node_exporter |"
    echo "|---|---:|---:|"
    echo "| samples per scrape | ${R[heimdall,samples]} | ${R[node_exporter,samples]} |"
    echo "| response bytes (plain / gzip) | ${R[heimdall,bytes0]} / ${R[heimdall,bytes1]} | ${R[node_exporter,bytes0]} / ${R[node_exporter,bytes1]} |"
    echo "| CPU ms per scrape (plain) | ${R[heimdall,cpu0]} | ${R[node_exporter,cpu0]} |"
    echo "| CPU ms per scrape (gzip) | ${R[heimdall,cpu1]} | ${R[node_exporter,cpu1]} |"
    echo "| latency p50 ms (plain) | ${R[heimdall,p50_0]} | ${R[node_exporter,p50_0]} |"
    echo "| latency p99 ms (plain) | ${R[heimdall,p99_0]} | ${R[node_exporter,p99_0]} |"
    echo "| latency p50 ms (gzip) | ${R[heimdall,p50_1]} | ${R[node_exporter,p50_1]} |"
    echo "| latency p99 ms (gzip) | ${R[heimdall,p99_1]} | ${R[node_exporter,p99_1]} |"
    echo "| failed sequential scrapes | $((${R[heimdall,errors0]} + ${R[heimdall,errors1]})) | $((${R[node_exporter,errors0]} + ${R[node_exporter,errors1]})) |"
    echo "| wrk -t2 -c$WRK_CONNS -d${WRK_SECS}s: requests/s | ${R[heimdall,rps]} | ${R[node_exporter,rps]} |"
    echo "| wrk mean latency | ${R[heimdall,wrk_lat]} | ${R[node_exporter,wrk_lat]} |"
    echo "| wrk non-2xx / socket errors | ${R[heimdall,wrk_err]} | ${R[node_exporter,wrk_err]} |"
    echo "| incomplete responses, 4 concurrent clients (a collector skipped) | ${R[heimdall,conc]} | ${R[node_exporter,conc]} |"
    echo "| RSS after load (MiB) | $(mb "${R[heimdall,rss]}") | $(mb "${R[node_exporter,rss]}") |"
    echo "| peak RSS, VmHWM (MiB) | $(mb "${R[heimdall,hwm]}") | $(mb "${R[node_exporter,hwm]}") |"
    echo
    echo "CPU ms per scrape of one collector (\`collect[]=NAME\`, $PER_N scrapes each, fixed cost per"
    echo "request included; with few CLK_TCK ticks per run, small values are coarse):"
    echo
    echo "| collector | heimdall-exporter | node_exporter |"
    echo "|---|---:|---:|"
    for c in "${OUR_COLLECTORS[@]}"; do
        echo "| $c | ${R[heimdall,c_$c]} | ${R[node_exporter,c_$c]} |"
    done
} >"$OUT"
echo
cat "$OUT"
echo
echo "written to $OUT"
FINISHED=1 # (lib.sh) a normal end, not an aborted suite
