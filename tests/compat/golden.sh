#!/usr/bin/env bash
# shellcheck disable=SC2317 # functions run through check() look unreachable to shellcheck
# node_exporter's own end-to-end fixtures against our exporter, family by family.
#
# Unpacks ../shared/peer/node-exporter/fixtures (sys.ttar, udev.ttar, proc/, usr/) into a temp
# dir, runs our exporter on it with upstream's e2e flags for the collectors we have, and compares
# /metrics with fixtures/e2e-output.txt (compare_families.py golden): one check per collector.
# filesystem, uname and tcpstat are off, as upstream's e2e run has them off. netdev reads the live
# host's lo, as node_exporter's (netlink) does in upstream's e2e run (see below).
# Env: HEIMDALL_BIN_DIR (our binaries), HEIMDALL_SHARED_DIR (default ../shared), KEEP_WORK=1.
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

FIX="$SHARED_DIR/peer/node-exporter/fixtures"
if [[ ! -d "$SHARED_DIR" ]]; then
    skip_suite "../shared absent ($SHARED_DIR)"
fi
if [[ ! -f "$FIX/e2e-output.txt" ]]; then
    skip_suite "../shared absent: no $FIX/e2e-output.txt"
fi
UNTTAR="$SHARED_DIR/tools/unttar.py"
need python3 curl "$UNTTAR"
require_heimdall_bin

# Our collectors that upstream's e2e run enables (node_exporter has tcpstat off by default and
# the e2e script disables filesystem and uname).
GOLDEN_COLLECTORS=(cpu diskstats entropy filefd hwmon loadavg meminfo netclass netdev netstat os
    pressure processes sockstat stat thermal_zone time vmstat)

ROOT="$WORK/fixtures"
mkdir -p "$ROOT"
log "unpacking fixtures into $ROOT"
python3 "$UNTTAR" "$FIX/sys.ttar" "$ROOT"
python3 "$UNTTAR" "$FIX/udev.ttar" "$ROOT"
cp -a "$FIX/proc" "$FIX/usr" "$ROOT/"

args=(
    --web.listen-address="127.0.0.1:$(free_port)"
    --path.rootfs="$ROOT"
    --path.procfs="$ROOT/proc"
    --path.sysfs="$ROOT/sys"
    --path.udev.data="$ROOT/udev/data"
    --collector.disable-defaults
)
for c in "${GOLDEN_COLLECTORS[@]}"; do
    [[ $c == netdev ]] || args+=("--collector.$c")
done
for c in filesystem uname tcpstat netdev; do args+=("--no-collector.$c"); done
args+=(
    --collector.cpu.info
    '--collector.cpu.info.bugs-include=^(cpu_meltdown|spectre_.*|mds)$'
    '--collector.cpu.info.flags-include=^(aes|avx.?|constant_tsc)$'
    '--collector.hwmon.chip-include=(applesmc|asus_nb_wmi|coretemp|hwmon4|ieee80211|nct6779)'
    --collector.netclass.ignore-invalid-speed
    '--collector.netclass.ignored-devices=(dmz|int)'
    --collector.netdev.device-include=lo
    --collector.stat.softirq
)
ADDR="${args[0]#--web.listen-address=}"

log "starting $BIN ${args[*]}"
start_bg exporter "$BIN" "${args[@]}"
EXPORTER_PID=$LAST_PID
if ! WAIT_PID=$EXPORTER_PID wait_http "http://$ADDR/metrics" 30; then
    fail "exporter starts on the fixture tree" "$(show_log exporter)"
    finish
fi
pass "exporter starts on the fixture tree"

OURS="$WORK/ours.txt"
if ! http -f -o "$OURS" "http://$ADDR/metrics"; then
    fail "GET /metrics" "$(show_log exporter)"
    finish
fi
pass "GET /metrics"

# netdev: upstream's e2e run does not read the fixtures for it. node_exporter's netdev reads the
# live host's interfaces over netlink (the fixtures have no proc/net/dev), keeps lo
# (--collector.netdev.device-include=lo), and the script strips lo's bytes and packets, which
# vary; lo's other counters are 0 on any host. So ours reads the live host for netdev too, in a
# second run, and its netdev families join the fixture run's output.
cp "$OURS" "$WORK/ours-fixtures.txt"
NETDEV_PORT="$(free_port)"
start_bg exporter-netdev "$BIN" --web.listen-address="127.0.0.1:$NETDEV_PORT" \
    --collector.disable-defaults --collector.netdev --collector.netdev.device-include=lo
if WAIT_PID=$LAST_PID wait_http "http://127.0.0.1:$NETDEV_PORT/metrics" 30 &&
    http -f -o "$WORK/netdev.txt" "http://127.0.0.1:$NETDEV_PORT/metrics"; then
    pass "netdev run on the live host (as upstream's e2e run has it)"
    grep -E '^(# (HELP|TYPE) )?node_network_|^node_scrape_collector_success\{collector="netdev"\}' \
        "$WORK/netdev.txt" >>"$OURS" || true
else
    fail "netdev run on the live host (as upstream's e2e run has it)" "$(show_log exporter-netdev)"
fi
stop_bg "$LAST_PID"
if [[ -n "${GOLDEN_SAVE:-}" ]]; then cp "$OURS" "$GOLDEN_SAVE"; fi

# Every collector is one check.
collectors_csv="$(IFS=,; echo "${GOLDEN_COLLECTORS[*]}")"
run_compare golden python3 "$COMPAT_DIR/compare_families.py" golden \
    --expected "$FIX/e2e-output.txt" --actual "$OURS" --collectors "$collectors_csv"

# Stricter: the text itself (family and sample order, number formatting, escaping) is
# node_exporter's, line for line. netdev is left out: its output comes from a second run.
text_csv="${collectors_csv//,netdev/}"
check "text identical to the golden, line for line (all but netdev)" \
    python3 "$COMPAT_DIR/compare_families.py" text --expected "$FIX/e2e-output.txt" \
    --actual "$WORK/ours-fixtures.txt" --collectors "$text_csv"

# The all-in-one CLI's `heimdall exporter` takes the same flags and serves the same families.
cli_same() {
    local cli="$HEIMDALL_BIN_DIR/heimdall" port
    [[ -x "$cli" ]] || { echo "no $cli"; return 1; }
    port="$(free_port)"
    start_bg heimdall-cli "$cli" exporter "--web.listen-address=127.0.0.1:$port" "${args[@]:1}"
    WAIT_PID=$LAST_PID wait_http "http://127.0.0.1:$port/metrics" 30 || { show_log heimdall-cli; return 1; }
    http -f -o "$WORK/cli.txt" "http://127.0.0.1:$port/metrics"
    stop_bg "$LAST_PID"
    local rc=0
    python3 "$COMPAT_DIR/compare_families.py" golden --expected "$WORK/ours-fixtures.txt" --expected-name heimdall-exporter \
        --actual "$WORK/cli.txt" --collectors "$collectors_csv" --allow-empty >"$WORK/cli.cmp" || rc=$?
    grep -v '^ok ' "$WORK/cli.cmp" # only what differs
    return "$rc"
}
check "'heimdall exporter' serves what heimdall-exporter serves" cli_same

if ! kill -0 "$EXPORTER_PID" 2>/dev/null; then
    fail "exporter still running after the scrape" "$(show_log exporter)"
fi
finish
