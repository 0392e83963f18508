#!/usr/bin/env bash
# shellcheck disable=SC2317 # functions run through check() look unreachable to shellcheck
# Our scraper against Debian's Prometheus (everything on 127.0.0.1, temp dirs only):
#  a. Both scrape the same deterministic target (tests/compat/fake_target.py: values are exact
#     functions of 2-second time buckets, exposed with those timestamps, so two scrapers that
#     scrape every second store exactly the same samples) with the same prometheus.yml.
#  b. The same PromQL queries (the first evaluator's subset: selectors with every matcher,
#     offset, rate/irate/increase, sum/avg/min/max/count by|without, arithmetic and comparison
#     with scalars, bool) give the same series and values (1e-9 relative) on both, instant
#     and range (compare_promql.py).
#  c. Prometheus federates from our /federate (honor_labels) and gets our series.
#  d. promtool reads our API: `promtool query instant` against us works.
#  e. Errors look the same: a parse error is bad_data (400) on both.
# Env: HEIMDALL_BIN_DIR (our binaries), KEEP_WORK=1 keeps the scratch dir.
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

PROMETHEUS="${PROMETHEUS_BIN:-/usr/bin/prometheus}"
need curl python3 promtool "$PROMETHEUS"
SCRAPER="$HEIMDALL_BIN_DIR/heimdall-scraper"
if [[ ! -x "$SCRAPER" ]]; then
    fail "our binary exists: $SCRAPER" "build it with 'cargo build --workspace --bins', or set HEIMDALL_BIN_DIR"
    finish
fi

P_TARGET="$(free_port)"
start_bg target python3 "$COMPAT_DIR/fake_target.py" "$P_TARGET"
TARGET="127.0.0.1:$P_TARGET"
if ! wait_http "http://$TARGET/metrics" 20; then
    fail "the fake target starts" "$(cat "$WORK/target.log")"
    finish
fi

P_OURS="$(free_port)"
P_PROM="$(free_port)"
cat >"$WORK/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 900ms
scrape_configs:
  - job_name: demo
    static_configs:
      - targets: ['$TARGET']
        labels: {rack: r1}
EOF
# A second Prometheus federates from us (a separate one: the compared one must hold only
# what it scraped itself).
P_FED="$(free_port)"
cat >"$WORK/prometheus-federate.yml" <<EOF
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: federate
    honor_labels: true
    metrics_path: /federate
    params:
      'match[]': ['{job="demo"}']
    static_configs:
      - targets: ['127.0.0.1:$P_OURS']
    metric_relabel_configs:
      - target_label: via
        replacement: heimdall
EOF

start_bg heimdall "$SCRAPER" --config.file="$WORK/prometheus.yml" \
    --web.listen-address="127.0.0.1:$P_OURS" --storage.tsdb.path="$WORK/ours" --log.level=warn
PID_OURS=$LAST_PID
start_bg prometheus "$PROMETHEUS" --config.file="$WORK/prometheus.yml" \
    --web.listen-address="127.0.0.1:$P_PROM" --storage.tsdb.path="$WORK/prom"
OURS="http://127.0.0.1:$P_OURS"
PROM="http://127.0.0.1:$P_PROM"
if ! WAIT_PID=$PID_OURS wait_http "$OURS/-/ready" 30; then
    fail "our scraper starts" "$(cat "$WORK/heimdall.log")"
    finish
fi
check "Prometheus starts" wait_http "$PROM/-/ready" 60

# Both need a history longer than the longest window compared (20 s + 2 s offset, at up to
# 10 s before the evaluation time) after both started, with room for Prometheus' slower start.
log "letting both scrape for 45 s"
sleep 45

check "same results for the first evaluator's queries (instant and range)" \
    python3 "$COMPAT_DIR/compare_promql.py" "$OURS" "$PROM"

start_bg prometheus-federate "$PROMETHEUS" --config.file="$WORK/prometheus-federate.yml" \
    --web.listen-address="127.0.0.1:$P_FED" --storage.tsdb.path="$WORK/prom-federate"
check "the federating Prometheus starts" wait_http "http://127.0.0.1:$P_FED/-/ready" 60
federated() {
    local n i
    for i in $(seq 1 30); do
        n="$(http "http://127.0.0.1:$P_FED/api/v1/query" --data-urlencode 'query=count(demo_temp{via="heimdall",job="demo"})' |
            python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else 0)')"
        [[ "$n" == "2" ]] && { echo "2 federated demo_temp series after ${i}s"; return 0; }
        sleep 1
    done
    echo "Prometheus has $n federated demo_temp series, want 2"
    http "http://127.0.0.1:$P_FED/api/v1/targets"
    return 1
}
check "Prometheus federates from us (honor_labels, our series)" federated

promtool_query() {
    local out
    out="$(promtool query instant "$OURS" 'sum(demo_requests_total)')"
    echo "$out"
    [[ "$out" == *"=>"* ]]
}
check "promtool query instant works against our API" promtool_query

same_error() {
    local ours prom
    ours="$(http -o /dev/null -w '%{http_code}' "$OURS/api/v1/query?query=sum(")"
    prom="$(http -o /dev/null -w '%{http_code}' "$PROM/api/v1/query?query=sum(")"
    echo "ours $ours, prometheus $prom"
    [[ "$ours" == "$prom" && "$ours" == 400 ]]
}
check "a parse error is 400 bad_data on both" same_error

targets_up() {
    http "$OURS/api/v1/targets" | python3 -c '
import json, sys
t = json.load(sys.stdin)["data"]["activeTargets"]
assert len(t) == 1 and t[0]["health"] == "up", t
print(t[0]["scrapeUrl"], t[0]["lastScrapeDuration"])'
}
check "/api/v1/targets: the target is up" targets_up

finish
