#!/usr/bin/env bash
# shellcheck disable=SC2317 # functions run indirectly
# Our scraper against Debian's Prometheus, one after the other, on the same fake fleet.
#
# The fleet (bench/fleet, one std-only Rust process, its CPU measured apart) serves
# BENCH_TARGETS targets x BENCH_SERIES moving series on one port (/t/<n>/metrics; counters,
# gauges, constants re-rendered every interval). Each scraper, alone on the machine:
#  1. scrapes the fleet every BENCH_INTERVAL s: after a warm-up, over a window of
#     BENCH_DURATION s: samples appended (its own counter) per CPU second (utime+stime from
#     /proc/PID/stat), RSS (VmRSS at the end, VmHWM) per head series, WAL bytes per sample
#     (growth of <data>/wal over the window / samples appended in it), and missed, failed and
#     late scrapes from the raw `up` samples of the window, queried the same way from both
#     (an interval more than 10 % off the configured one is late; a gap of k intervals is k-1
#     missed; up=0 is failed);
#  2. is killed with SIGKILL and restarted on the same data: seconds until /-/ready and until
#     `sum(count_over_time(bench_requests_0_0_total[window]))` at the window's end is back to
#     its value before the kill;
#  3. bytes per sample in chunks: the encoded XOR chunk bytes over the samples they hold
#     (the 2-byte header counts), read from our snapshot file after a clean stop and from a
#     Prometheus snapshot (admin API: the head written as a block), so the same thing;
#  4. backfill and range queries, on a fresh data directory: BENCH_BF_TARGETS targets x
#     BENCH_BF_SERIES counters exposed with explicit timestamps 15 s apart and scraped every
#     BENCH_BF_INTERVAL, so an hour of data (240 samples per series) goes in in under a
#     minute, the same samples in both; then BENCH_QUERY_RUNS runs (median, p90) of three range
#     queries over that hour at a 15 s step, and the results of both are compared.
# Prints a markdown table and writes it to bench/results/scraper-<date>.md.
#
# usage: bash bench/scraper.sh            (full: 1,000 targets x 1,000 series every 15 s, 5 min)
#        BENCH_QUICK=1 bash bench/scraper.sh   (50 x 200 every 5 s for 60 s: for development)
# env:   BENCH_TARGETS, BENCH_SERIES, BENCH_INTERVAL (s), BENCH_DURATION (s, rounded down to
#        whole intervals), BENCH_WARMUP (s, default 2 intervals + 10), BENCH_BF_TARGETS=10,
#        BENCH_BF_SERIES=100, BENCH_BF_INTERVAL=200ms, BENCH_QUERY_RUNS=20,
#        BENCH_SIDES="heimdall prometheus" (order, or just one),
#        HEIMDALL_SCRAPER=path, HEIMDALL_BENCH_FLEET=path (skip the release builds),
#        PROMETHEUS_BIN=/usr/bin/prometheus, BENCH_OUT=file (default above), KEEP_WORK=1.
# Needs: prometheus (Debian's, apt-get install prometheus), curl, python3, cargo.
# Bounded: every wait has a limit; the fleet and both scrapers are killed on exit. Full mode
# takes about 20 min, quick mode about 6.
# shellcheck source-path=SCRIPTDIR/.. source=tests/compat/lib.sh
. "$(dirname "$0")/../tests/compat/lib.sh"

if [[ "${BENCH_QUICK:-0}" == 1 ]]; then
    D_TARGETS=50 D_SERIES=200 D_INTERVAL=5 D_DURATION=60 MODE=quick
else
    D_TARGETS=1000 D_SERIES=1000 D_INTERVAL=15 D_DURATION=300 MODE=full
fi
TARGETS="${BENCH_TARGETS:-$D_TARGETS}"
SERIES="${BENCH_SERIES:-$D_SERIES}"
INTERVAL="${BENCH_INTERVAL:-$D_INTERVAL}"
DURATION="${BENCH_DURATION:-$D_DURATION}"
DURATION=$((DURATION / INTERVAL * INTERVAL))
((DURATION >= 2 * INTERVAL)) || { echo "BENCH_DURATION must cover 2 intervals" >&2; exit 1; }
WARMUP="${BENCH_WARMUP:-$((2 * INTERVAL + 10))}"
BF_TARGETS="${BENCH_BF_TARGETS:-10}"
BF_SERIES="${BENCH_BF_SERIES:-100}"
BF_INTERVAL="${BENCH_BF_INTERVAL:-200ms}"
BF_STEPS=240 # an hour at 15 s
RUNS="${BENCH_QUERY_RUNS:-20}"
read -r -a SIDES <<<"${BENCH_SIDES:-heimdall prometheus}"
PROMETHEUS="${PROMETHEUS_BIN:-/usr/bin/prometheus}"
TOOLS="$REPO_ROOT/bench/scraper_tools.py"
need curl python3 "$PROMETHEUS"
tool() { timeout 900 python3 "$TOOLS" "$@"; }

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/heimdall-target}"
if [[ -n "${HEIMDALL_SCRAPER:-}" ]]; then
    OURS_BIN="$HEIMDALL_SCRAPER"
    BUILD="given binary $OURS_BIN"
else
    log "building: cargo build --release -p heimdall-scraper"
    (cd "$REPO_ROOT" && cargo build --release -j2 -p heimdall-scraper --bin heimdall-scraper)
    OURS_BIN="$CARGO_TARGET_DIR/release/heimdall-scraper"
    BUILD="release"
fi
if [[ -n "${HEIMDALL_BENCH_FLEET:-}" ]]; then
    FLEET_BIN="$HEIMDALL_BENCH_FLEET"
else
    log "building: the fleet (bench/fleet, std only)"
    cargo build --release -j2 --manifest-path "$REPO_ROOT/bench/fleet/Cargo.toml"
    FLEET_BIN="$CARGO_TARGET_DIR/release/heimdall-bench-fleet"
fi
[[ -x "$OURS_BIN" ]] || { echo "no binary at $OURS_BIN" >&2; exit 1; }
[[ -x "$FLEET_BIN" ]] || { echo "no binary at $FLEET_BIN" >&2; exit 1; }

CLK_TCK="$(getconf CLK_TCK)"
LOADAVG_START="$(cut -d' ' -f1-3 /proc/loadavg)"
cpu_ticks() { # utime + stime of PID (fields 14 and 15 of /proc/PID/stat, after the comm)
    local rest
    rest="$(sed 's/^.*) //' "/proc/$1/stat")"
    awk '{print $12 + $13}' <<<"$rest"
}
status_kb() { # PID FIELD -> kB
    awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status"
}
now() { date +%s.%N; }
wal_bytes() { du -sb "$1/wal" 2>/dev/null | cut -f1; }
calc() { awk "BEGIN {printf \"$1\", $2}"; } # FORMAT EXPR
# stop_wait PID SECONDS: SIGTERM and wait (our scraper writes a snapshot on the way out).
stop_wait() {
    local pid="$1" n=0
    kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null && ((n < $2 * 10)); do
        sleep 0.1
        n=$((n + 1))
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    ((n < $2 * 10))
}

# --- the fleet -----------------------------------------------------------------------------------
P_FLEET="$(free_port)"
start_bg fleet "$FLEET_BIN" --listen="127.0.0.1:$P_FLEET" --targets="$TARGETS" --series="$SERIES" \
    --interval-ms=$((INTERVAL * 1000)) --bf-targets="$BF_TARGETS" --bf-series="$BF_SERIES" \
    --bf-steps="$BF_STEPS" --bf-step-ms=15000
PID_FLEET=$LAST_PID
FLEET="http://127.0.0.1:$P_FLEET"
WAIT_PID=$PID_FLEET wait_http "$FLEET/-/healthy" 60 || { show_log fleet; exit 1; }
fleet_stat() { # KEY [TAG] -> a number from /stats
    http "$FLEET/stats" | python3 -c '
import json, sys
d = json.load(sys.stdin)
k = sys.argv[1]
print(d["bf"].get(sys.argv[2], {}).get(k, 0) if len(sys.argv) > 2 else d[k])' "$@"
}
BODY_BYTES="$(fleet_stat body_bytes_target0)"
log "fleet: $TARGETS targets x $SERIES series, $BODY_BYTES bytes per body, render $(fleet_stat render_ms) ms per tick"
tool config "$WORK/fleet.yml" "$P_FLEET" "$TARGETS" "$INTERVAL"

declare -A R METRIC_APPENDED METRIC_SERIES
METRIC_APPENDED=([heimdall]=heimdall_scraper_tsdb_samples_appended_total
    [prometheus]=prometheus_tsdb_head_samples_appended_total)
METRIC_SERIES=([heimdall]=heimdall_scraper_tsdb_head_series [prometheus]=prometheus_tsdb_head_series)

# start_side SIDE LOGNAME CONFIG DATA PORT : starts a scraper; pid in LAST_PID.
start_side() {
    local side="$1" name="$2" cfg="$3" data="$4" port="$5"
    case "$side" in
        heimdall)
            start_bg "$name" "$OURS_BIN" --config.file="$cfg" --web.listen-address="127.0.0.1:$port" \
                --storage.tsdb.path="$data" --log.level=warn
            ;;
        prometheus)
            start_bg "$name" "$PROMETHEUS" --config.file="$cfg" --web.listen-address="127.0.0.1:$port" \
                --storage.tsdb.path="$data" --web.enable-admin-api --log.level=warn
            ;;
    esac
}

# chunk_stats SIDE PID DATA URL EVERY : stops the scraper, sets CH to "bytes samples chunks
# first_B time_B value_B dod0_share" (scraper_tools.py chunks).
chunk_stats() {
    local side="$1" pid="$2" data="$3" url="$4" every="$5" name
    case "$side" in
        heimdall)
            stop_wait "$pid" 300 || log "$side did not stop within 300 s"
            CH="$(tool chunks ours "$data" "$every")"
            ;;
        prometheus)
            name="$(http --max-time 600 -XPOST "$url/api/v1/admin/tsdb/snapshot" |
                python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["name"])')"
            CH="$(tool chunks prom "$data/snapshots/$name" "$every")"
            stop_wait "$pid" 60 || true
            ;;
    esac
}

run_side() {
    local side="$1" port data url pid t0 t1 c0 c1 f0 f1 s0 s1 a0 a1 w0 w1 out series
    port="$(free_port)"
    data="$WORK/$side-data"
    url="http://127.0.0.1:$port"
    log "$side: scraping $TARGETS targets every ${INTERVAL}s"
    start_side "$side" "$side" "$WORK/fleet.yml" "$data" "$port"
    pid=$LAST_PID
    WAIT_PID=$pid wait_http "$url/-/ready" 120 || { show_log "$side"; exit 1; }
    log "$side: warm-up ${WARMUP}s"
    sleep "$WARMUP"

    t0="$(now)"
    c0="$(cpu_ticks "$pid")"
    f0="$(cpu_ticks "$PID_FLEET")"
    s0="$(fleet_stat main_scrapes)"
    a0="$(tool metrics "$url" "${METRIC_APPENDED[$side]}")"
    w0="$(wal_bytes "$data")"
    log "$side: measuring ${DURATION}s"
    sleep "$DURATION"
    t1="$(now)"
    c1="$(cpu_ticks "$pid")"
    f1="$(cpu_ticks "$PID_FLEET")"
    s1="$(fleet_stat main_scrapes)"
    R[$side,rss]="$(status_kb "$pid" VmRSS)"
    R[$side,hwm]="$(status_kb "$pid" VmHWM)"
    read -r a1 series <<<"$(tool metrics "$url" "${METRIC_APPENDED[$side]}" "${METRIC_SERIES[$side]}")"
    w1="$(wal_bytes "$data")"
    if [[ "$side" == heimdall ]]; then
        R[$side,chunk_mem]="$(calc %.0f "$(tool metrics "$url" heimdall_scraper_tsdb_chunk_bytes)")"
    fi

    local wall cpu appended
    wall="$(calc %.3f "$t1 - $t0")"
    cpu="$(calc %.3f "($c1 - $c0) / $CLK_TCK")"
    appended="$(calc %.0f "$a1 - $a0")"
    R[$side,wall]="$wall"
    R[$side,cores]="$(calc %.3f "$cpu / $wall")"
    R[$side,rate]="$(calc %.0f "$appended / $wall")"
    R[$side,per_cpu]="$(calc %.0f "$appended / ($cpu > 0 ? $cpu : 1e-9)")"
    R[$side,fleet_cores]="$(calc %.3f "($f1 - $f0) / $CLK_TCK / $wall")"
    R[$side,served]="$((s1 - s0))"
    R[$side,series]="$(calc %.0f "$series")"
    R[$side,rss_per]="$(calc %.0f "${R[$side,rss]} * 1024 / $series")"
    R[$side,hwm_per]="$(calc %.0f "${R[$side,hwm]} * 1024 / $series")"
    R[$side,wal_per]="$(calc %.2f "($w1 - $w0) / $appended")"
    R[$side,wal_mb]="$(calc %.1f "$w1 / 1048576")"
    log "$side: $appended samples in ${wall}s, ${cpu} CPU s, ${R[$side,series]} series, RSS ${R[$side,rss]} kB"

    out="$(tool window "$url" "$t0" "$t1" "$INTERVAL" "$TARGETS")"
    log "$side: scrapes in the window: $out"
    R[$side,window]="$out"

    # Restart: the value over the window before and after a SIGKILL.
    local q want restarted
    q="sum(count_over_time(bench_requests_0_0_total[${DURATION}s]))"
    want="$(tool value "$url" "$q" "$t1")"
    log "$side: SIGKILL and restart ($q = $want at the window's end)"
    kill -KILL "$pid"
    wait "$pid" 2>/dev/null || true
    restarted="$(now)"
    start_side "$side" "$side-restart" "$WORK/fleet.yml" "$data" "$port"
    pid=$LAST_PID
    read -r "R[$side,ready]" "R[$side,data]" <<<"$(tool recover "$url" "$q" "$t1" "$want" "$restarted" 900)"
    log "$side: ready after ${R[$side,ready]}s, old data back after ${R[$side,data]}s"
    [[ "${R[$side,data]}" != nan ]] || show_log "$side-restart"

    chunk_stats "$side" "$pid" "$data" "$url" "$(((TARGETS * SERIES + 49999) / 50000))"
    read -r "R[$side,ch_bytes]" "R[$side,ch_samples]" "R[$side,ch_chunks]" "R[$side,ch_first]" \
        "R[$side,ch_t]" "R[$side,ch_v]" "R[$side,ch_dod0]" <<<"$CH"
    log "$side: chunks: $CH (bytes samples chunks, B/sample: first samples, timestamps, values; dod=0 share)"

    # Backfill an hour and time range queries over it.
    local bfdata="$WORK/$side-bf" steps_done start end
    tool bfconfig "$WORK/bf-$side.yml" "$P_FLEET" "$BF_TARGETS" "$side" "$BF_INTERVAL"
    log "$side: backfilling $BF_TARGETS x $BF_SERIES series x $BF_STEPS steps (every $BF_INTERVAL)"
    start_side "$side" "$side-bf" "$WORK/bf-$side.yml" "$bfdata" "$port"
    pid=$LAST_PID
    WAIT_PID=$pid wait_http "$url/-/ready" 120 || { show_log "$side-bf"; exit 1; }
    local deadline=$((SECONDS + 600))
    while steps_done="$(fleet_stat min_served "$side")" && ((steps_done < BF_STEPS)); do
        ((SECONDS < deadline)) || { log "$side: backfill stuck at step $steps_done"; break; }
        sleep 1
    done
    sleep 3 # the last scrapes' commits
    start="$(calc %.3f "$(fleet_stat anchor_ms "$side") / 1000")"
    end="$(calc %.3f "$start + ($BF_STEPS - 1) * 15")"
    R[$side,bf_samples]="$(tool value "$url" "sum(count_over_time(bench_bf_cpu_seconds_total[2h]))" "$end")"
    log "$side: backfilled ${R[$side,bf_samples]} samples; range queries $start..$end step 15s"
    local i qexpr
    for i in 1 2 3; do
        qexpr="${QUERIES[$i]}"
        read -r "R[$side,q$i]" "R[$side,q${i}p90]" "R[$side,q${i}series]" "R[$side,q${i}points]" _ \
            <<<"$(tool rangebench "$url" "$qexpr" "$start" "$end" 15 "$RUNS" "$WORK/result-$side-$i.json")"
        log "$side: $qexpr: median ${R[$side,q$i]} ms, p90 ${R[$side,q${i}p90]} ms, ${R[$side,q${i}series]} series"
    done
    chunk_stats "$side" "$pid" "$bfdata" "$url" 1
    read -r "R[$side,bf_bytes]" "R[$side,bf_chsamples]" "R[$side,bf_chunks]" _ _ "R[$side,bf_v]" _ <<<"$CH"
    log "$side: backfill chunks: $CH"
}

QUERIES=([1]='sum by (mode) (rate(bench_bf_cpu_seconds_total[5m]))'
    [2]='rate(bench_bf_cpu_seconds_total[5m])'
    [3]='bench_bf_cpu_seconds_total')
for side in "${SIDES[@]}"; do
    run_side "$side"
done

# --- the report ----------------------------------------------------------------------------------
j() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "${R[$1,window]}" "$2" 2>/dev/null || echo "-"; }
val() { echo "${R[$1,$2]:--}"; }
ratio() { # KEY : ours / prometheus
    local a="${R[heimdall,$1]:-}" b="${R[prometheus,$1]:-}"
    if [[ -n "$a" && -n "$b" && "$a" != nan && "$b" != nan ]]; then calc %.2f "$a / ($b == 0 ? 1e-9 : $b)"; else echo "-"; fi
}
for s in heimdall prometheus; do
    if [[ -n "${R[$s,ch_samples]:-}" && "${R[$s,ch_samples]}" != nan && "${R[$s,ch_samples]}" != 0 ]]; then
        R[$s,bps]="$(calc %.3f "${R[$s,ch_bytes]} / ${R[$s,ch_samples]}")"
        R[$s,spc]="$(calc %.1f "${R[$s,ch_samples]} / ${R[$s,ch_chunks]}")"
    fi
    if [[ -n "${R[$s,bf_chsamples]:-}" && "${R[$s,bf_chsamples]}" != nan && "${R[$s,bf_chsamples]}" != 0 ]]; then
        R[$s,bf_bps]="$(calc %.3f "${R[$s,bf_bytes]} / ${R[$s,bf_chsamples]}")"
    fi
    for k in rss hwm; do [[ -n "${R[$s,$k]:-}" ]] && R[$s,${k}_mb]="$(calc %.0f "${R[$s,$k]} / 1024")"; done
    for k in expected scrapes failed missed late dur_p50_ms dur_p99_ms dur_max_ms; do
        [[ -n "${R[$s,window]:-}" ]] && R[$s,$k]="$(j "$s" "$k")"
    done
done
met() { # VALUE OP LIMIT
    [[ "$1" == - || "$1" == nan ]] && { echo "-"; return; }
    awk -v v="$1" -v l="$3" -v op="$2" 'BEGIN {ok = (op == ">=") ? v >= l : v <= l; print ok ? "yes" : "**no**"}'
}
EQUAL=()
if [[ " ${SIDES[*]} " == *" heimdall "* && " ${SIDES[*]} " == *" prometheus "* ]]; then
    for i in 1 2 3; do
        EQUAL+=("$(tool compare "$WORK/result-heimdall-$i.json" "$WORK/result-prometheus-$i.json")")
    done
fi
PROM_VERSION="$("$PROMETHEUS" --version 2>&1 | head -n 1 | awk '{print $3}')"
OURS_VERSION="$("$OURS_BIN" --version 2>&1 | head -n 1)"
REV="$(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
SUFFIX=""
[[ "$MODE" == quick ]] && SUFFIX="-quick"
OUT="${BENCH_OUT:-$REPO_ROOT/bench/results/scraper-$(date +%F)$SUFFIX.md}"
mkdir -p "$(dirname "$OUT")"
RATIO_CPU="$(ratio per_cpu)"
RATIO_RSS="$(ratio rss_per)"
{
    echo "# Scraper benchmark ($MODE), $(date -u '+%F %H:%M UTC')"
    echo
    echo "heimdall-scraper ($OURS_VERSION, $BUILD, repo HEAD $REV) vs Debian's Prometheus $PROM_VERSION,"
    echo "one after the other on the same fleet: $TARGETS targets x $SERIES series (${BODY_BYTES} bytes"
    echo "per scrape, uncompressed) every ${INTERVAL}s, measured over ${DURATION}s after a ${WARMUP}s warm-up;"
    echo "$(nproc) cores ($(uname -r)), loopback. Load average at the start / end: $LOADAVG_START /"
    echo "$(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine, such as compiles, takes CPU from both)."
    echo "The fleet is one process (bench/fleet); its CPU is not charged to the scrapers."
    echo
    echo "| metric | heimdall-scraper | Prometheus | ours / Prometheus | goal | met |"
    echo "|---|---:|---:|---:|---|---|"
    echo "| samples appended per second | $(val heimdall rate) | $(val prometheus rate) | $(ratio rate) | | |"
    echo "| scraper CPU (cores) | $(val heimdall cores) | $(val prometheus cores) | $(ratio cores) | | |"
    echo "| **samples per CPU second** | $(val heimdall per_cpu) | $(val prometheus per_cpu) | $RATIO_CPU | ≥ 2× | $(met "$RATIO_CPU" ">=" 2) |"
    echo "| head series | $(val heimdall series) | $(val prometheus series) | | | |"
    echo "| RSS at the end / peak (MiB) | $(val heimdall rss_mb) / $(val heimdall hwm_mb) | $(val prometheus rss_mb) / $(val prometheus hwm_mb) | $(ratio rss) | | |"
    echo "| **RSS per head series (bytes)** | $(val heimdall rss_per) | $(val prometheus rss_per) | $RATIO_RSS | ≤ 0.5× | $(met "$RATIO_RSS" "<=" 0.5) |"
    echo "| peak RSS per head series (bytes) | $(val heimdall hwm_per) | $(val prometheus hwm_per) | $(ratio hwm_per) | | |"
    echo "| **bytes per sample in chunks** (samples per chunk) | $(val heimdall bps) ($(val heimdall spc)) | $(val prometheus bps) ($(val prometheus spc)) | $(ratio bps) | ≤ 1.4 | $(met "$(val heimdall bps)" "<=" 1.4) |"
    echo "| … of which first samples of chunks / timestamps / values | $(val heimdall ch_first) / $(val heimdall ch_t) / $(val heimdall ch_v) | $(val prometheus ch_first) / $(val prometheus ch_t) / $(val prometheus ch_v) | | | |"
    echo "| share of timestamps stored as delta-of-delta 0 | $(val heimdall ch_dod0) | $(val prometheus ch_dod0) | | | |"
    echo "| bytes per sample, backfilled hour (same samples in both; values alone) | $(val heimdall bf_bps) ($(val heimdall bf_v)) | $(val prometheus bf_bps) ($(val prometheus bf_v)) | $(ratio bf_bps) | | |"
    echo "| WAL bytes per sample (growth over the window) | $(val heimdall wal_per) | $(val prometheus wal_per) | $(ratio wal_per) | | |"
    echo "| WAL size at the window's end (MiB) | $(val heimdall wal_mb) | $(val prometheus wal_mb) | | | |"
    echo "| scrapes expected / done in the window | $(val heimdall expected) / $(val heimdall scrapes) | $(val prometheus expected) / $(val prometheus scrapes) | | | |"
    echo "| **missed scrapes** | $(val heimdall missed) | $(val prometheus missed) | | 0 | $(met "$(val heimdall missed)" "<=" 0) |"
    echo "| failed scrapes (up = 0) | $(val heimdall failed) | $(val prometheus failed) | | | |"
    echo "| late scrapes (interval > 10 % off) | $(val heimdall late) | $(val prometheus late) | | | |"
    echo "| requests the fleet served in the window | $(val heimdall served) | $(val prometheus served) | | | |"
    echo "| scrape duration p50 / p99 / max (ms) | $(val heimdall dur_p50_ms) / $(val heimdall dur_p99_ms) / $(val heimdall dur_max_ms) | $(val prometheus dur_p50_ms) / $(val prometheus dur_p99_ms) / $(val prometheus dur_max_ms) | | | |"
    echo "| fleet CPU during the window (cores) | $(val heimdall fleet_cores) | $(val prometheus fleet_cores) | | | |"
    echo "| restart after SIGKILL: /-/ready (s) | $(val heimdall ready) | $(val prometheus ready) | $(ratio ready) | | |"
    echo "| restart after SIGKILL: old data queryable (s) | $(val heimdall data) | $(val prometheus data) | $(ratio data) | | |"
    echo "| backfilled samples found (want $((BF_TARGETS * BF_SERIES * BF_STEPS))) | $(val heimdall bf_samples) | $(val prometheus bf_samples) | | | |"
    for i in 1 2 3; do
        echo "| range query, 1 h at 15 s, median (p90) ms: \`${QUERIES[$i]}\` ($(val heimdall q${i}series) series) | $(val heimdall q$i) ($(val heimdall q${i}p90)) | $(val prometheus q$i) ($(val prometheus q${i}p90)) | $(ratio q$i) | | |"
    done
    echo
    if ((${#EQUAL[@]} > 0)); then
        echo "Range query results, ours vs Prometheus (max relative difference, points missing on one side):"
        for i in 1 2 3; do echo "\`${QUERIES[$i]}\`: ${EQUAL[$((i - 1))]}; "; done
        echo "(Both hold the same samples, 15 s apart on the queries' 15 s grid, so a 5m window's first"
        echo "sample sits exactly on its left edge: Prometheus 2.x ranges are closed, \`[t-5m, t]\`, and"
        echo "Prometheus 3.x and ours left-open, \`(t-5m, t]\`, so \`rate\` sees 21 vs 20 samples there;"
        echo "the raw selector must match exactly.)"
        echo
    fi
    echo "How: samples = each scraper's own counter (\`heimdall_scraper_tsdb_samples_appended_total\`,"
    echo "\`prometheus_tsdb_head_samples_appended_total\`) over the window; CPU = utime+stime of the process"
    echo "over the same window; RSS = VmRSS / VmHWM at its end over the head series then. Bytes per sample ="
    echo "encoded XOR chunk bytes / samples in them, from our snapshot (written at a clean stop after the"
    echo "restart) and from a Prometheus snapshot (\`POST /api/v1/admin/tsdb/snapshot\`, the head as a block,"
    echo "chunk framing left out); the chunks of a short run are short, so the first sample of each chunk"
    echo "weighs more than in a long run (the breakdown row: bits of the first sample of each chunk,"
    echo "of the later timestamps and of the later values, per sample, decoded from a subset of the chunks)."
    echo "Our in-memory accounting (chunk buffers with spare capacity,"
    echo "\`heimdall_scraper_tsdb_chunk_bytes\`) was $(val heimdall chunk_mem) bytes at the window's end."
    echo "Missed/late: the raw \`up{job=\"fleet\"}\` samples of the window, the same query on both."
    echo "Restart: \`kill -9\`, restart on the same data directory (the fleet keeps running), time to"
    echo "\`/-/ready\` and until \`sum(count_over_time(bench_requests_0_0_total[${DURATION}s]))\` at the window's"
    echo "end equals its value before the kill. Range queries: $RUNS runs after one warm-up, one keep-alive"
    echo "connection, time to the last byte of the JSON answer."
} >"$OUT"
echo
cat "$OUT"
echo
echo "written to $OUT"
FINISHED=1 # (lib.sh) a normal end, not an aborted suite
