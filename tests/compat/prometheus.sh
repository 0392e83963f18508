#!/usr/bin/env bash
# shellcheck disable=SC2317 # functions run through check() look unreachable to shellcheck
# Real peers against our exporter on this host (everything on 127.0.0.1, temp dirs only):
#  a. promtool check metrics on our /metrics: it parses, and has no lint problem that
#     node_exporter's own output (live, and upstream's golden file) does not have too.
#  b. TLS + basic auth (exporter-toolkit web config; openssl + htpasswd), with curl:
#     no credentials -> 401, wrong password -> 401, right -> 200, plain HTTP to the TLS port fails.
#  c. Debian's Prometheus scrapes us, plain and over TLS + basic auth (it negotiates OpenMetrics
#     first): up == 1, no scrape error, node_cpu_seconds_total is there, rate() works.
#  d. node-mixin recording rules and alerts, and awesome-prometheus-alerts' host alerts (from
#     ../shared), in the same Prometheus, which scrapes ours and node_exporter as two instances
#     of one job: each recording rule gives node_exporter's series for ours too, and the same
#     alerts are active for both (compare_rules.py).
#  e. collect[]=cpu gives only cpu families; Accept: application/openmetrics-text gives
#     OpenMetrics; no Accept gives text 0.0.4; Accept-Encoding: gzip gives gzip; 4 concurrent
#     clients each get complete responses (as node_exporter gives); /health.
#  f. Live side by side with Debian's prometheus-node-exporter (same collectors, same filters):
#     per collector, the same families, types and label sets (values only for slow-changing
#     families). Families only we have are reported, not failed (Debian's node_exporter is older).
# Env: HEIMDALL_BIN_DIR (our binaries), HEIMDALL_SHARED_DIR, KEEP_WORK=1 keeps the scratch dir.
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

PROMETHEUS="${PROMETHEUS_BIN:-/usr/bin/prometheus}"
NODE_EXPORTER="${NODE_EXPORTER_BIN:-/usr/bin/prometheus-node-exporter}"
need curl python3 promtool openssl htpasswd "$PROMETHEUS" "$NODE_EXPORTER"
require_heimdall_bin
GOLDEN="$SHARED_DIR/peer/node-exporter/fixtures/e2e-output.txt"

# Filters passed to both exporters so that differing defaults (Debian patches its
# node_exporter's, and 1.5 predates some) do not count: these are upstream 1.12's defaults.
FILTERS=(
    '--collector.filesystem.mount-points-exclude=^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)'
    '--collector.filesystem.fs-types-exclude=^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|iso9660|mqueue|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|erofs|sysfs|tracefs)$'
    '--collector.diskstats.device-exclude=^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$'
    '--collector.netstat.fields=^(.*_(InErrors|InErrs)|Ip_Forwarding|Ip(6|Ext)_(InOctets|OutOctets)|Icmp6?_(InMsgs|OutMsgs)|TcpExt_(Listen.*|Syncookies.*|TCPSynRetrans|TCPTimeouts|TCPOFOQueue|TCPRcvQDrop)|Tcp_(ActiveOpens|InSegs|OutSegs|OutRsts|PassiveOpens|RetransSegs|CurrEstab)|Udp6?_(InDatagrams|OutDatagrams|NoPorts|RcvbufErrors|SndbufErrors))$'
    '--collector.vmstat.fields=^(oom_kill|pgpg|pswp|pg.*fault).*'
    '--collector.cpu.info'
    '--collector.stat.softirq'
)
COLLECTOR_FLAGS=(--collector.disable-defaults)
for c in "${OUR_COLLECTORS[@]}"; do COLLECTOR_FLAGS+=("--collector.$c"); done

# ---------------------------------------------------------------------------------------------
# Our exporter (plain HTTP, all collectors, this host) and node_exporter with the same set.
P_OURS="$(free_port)"
start_bg heimdall-plain "$BIN" --web.listen-address="127.0.0.1:$P_OURS" \
    "${COLLECTOR_FLAGS[@]}" "${FILTERS[@]}"
PID_OURS=$LAST_PID
P_NE="$(free_port)"
# node_exporter 1.5's netdev excludes lo by default (Debian); ours and upstream 1.12 do not.
start_bg node-exporter "$NODE_EXPORTER" --web.listen-address="127.0.0.1:$P_NE" \
    "${COLLECTOR_FLAGS[@]}" "${FILTERS[@]}" --collector.netdev.device-exclude=
PID_NE=$LAST_PID
OURS="http://127.0.0.1:$P_OURS"
NE="http://127.0.0.1:$P_NE"

if ! WAIT_PID=$PID_OURS wait_http "$OURS/metrics" 30; then
    fail "our exporter starts (plain HTTP)" "$(show_log heimdall-plain)"
    finish
fi
pass "our exporter starts (plain HTTP)"
if ! WAIT_PID=$PID_NE wait_http "$NE/metrics" 30; then
    fail "node_exporter starts" "$(show_log node-exporter)"
    finish
fi
pass "node_exporter starts"

# ---------------------------------------------------------------------------------------------
log "a. promtool check metrics"
http -f -o "$WORK/ours.prom" "$OURS/metrics"
http -f -o "$WORK/ne.prom" "$NE/metrics"
promtool_lint() { # FILE -> lint lines in FILE.lint; returns promtool's exit code
    local rc=0
    promtool check metrics <"$1" >"$1.lint" 2>&1 || rc=$?
    return "$rc"
}
rc=0
promtool_lint "$WORK/ours.prom" || rc=$?
# promtool exits 1 when the exposition does not parse, 3 when it parses with lint problems.
check "promtool parses our /metrics (exit $rc; 0 or 3 = lint only)" test "$rc" -eq 0 -o "$rc" -eq 3
promtool_lint "$WORK/ne.prom" || true
lint_baseline="$WORK/ne.prom.lint"
if [[ -f "$GOLDEN" ]]; then
    promtool check metrics <"$GOLDEN" >"$WORK/golden.lint" 2>&1 || true
    lint_baseline="$WORK/lint-baseline"
    cat "$WORK/ne.prom.lint" "$WORK/golden.lint" >"$lint_baseline"
fi
new_lint="$(grep -v -x -F -f "$lint_baseline" "$WORK/ours.prom.lint" | grep -v '^error while linting' || true)"
check "promtool: no lint problem that node_exporter's output lacks" test -z "$new_lint"
if [[ -n "$new_lint" ]]; then printf '%s\n' "$new_lint" | head -n 20 | sed 's/^/     | /'; fi
log "promtool lint lines: ours $(wc -l <"$WORK/ours.prom.lint"), node_exporter $(wc -l <"$WORK/ne.prom.lint")"

# ---------------------------------------------------------------------------------------------
log "b. TLS + basic auth"
TLS_DIR="$WORK/tls"
mkdir -p "$TLS_DIR"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -keyout "$TLS_DIR/key.pem" -out "$TLS_DIR/cert.pem" -subj /CN=localhost \
    -addext subjectAltName=IP:127.0.0.1,DNS:localhost >"$TLS_DIR/openssl.log" 2>&1
HASH="$(htpasswd -nbBC 10 prom s3cret-pass | cut -d: -f2-)"
cat >"$TLS_DIR/web-config.yml" <<EOF
tls_server_config:
  cert_file: $TLS_DIR/cert.pem
  key_file: $TLS_DIR/key.pem
basic_auth_users:
  prom: '$HASH'
EOF
P_TLS="$(free_port)"
start_bg heimdall-tls "$BIN" --web.listen-address="127.0.0.1:$P_TLS" \
    --web.config.file="$TLS_DIR/web-config.yml"
PID_TLS=$LAST_PID
TLS="https://127.0.0.1:$P_TLS"
if WAIT_PID=$PID_TLS wait_http "$TLS/metrics" 30 --cacert "$TLS_DIR/cert.pem" -u prom:s3cret-pass; then
    pass "our exporter starts with TLS + basic auth"
else
    fail "our exporter starts with TLS + basic auth" "$(show_log heimdall-tls)"
fi
code() { http -o /dev/null -w '%{http_code}' "$@" 2>/dev/null || true; }
c="$(code --cacert "$TLS_DIR/cert.pem" "$TLS/metrics")"
check "TLS: no credentials -> 401 (got $c)" test "$c" = 401
c="$(code --cacert "$TLS_DIR/cert.pem" -u prom:wrong-pass "$TLS/metrics")"
check "TLS: wrong password -> 401 (got $c)" test "$c" = 401
c="$(code --cacert "$TLS_DIR/cert.pem" -u prom:s3cret-pass "$TLS/metrics")"
check "TLS: right password -> 200 (got $c)" test "$c" = 200
c="$(code --cacert "$TLS_DIR/cert.pem" -u nobody:s3cret-pass "$TLS/metrics")"
check "TLS: unknown user -> 401 (got $c)" test "$c" = 401
http_to_tls() { # plain HTTP to the TLS port must not give metrics
    local body rc=0
    body="$(curl -sS --max-time 5 -u prom:s3cret-pass "http://127.0.0.1:$P_TLS/metrics" 2>&1)" || rc=$?
    if [[ $rc -eq 0 ]] && grep -q '^node_' <<<"$body"; then
        echo "plain HTTP got metrics"
        return 1
    fi
    echo "curl exit $rc: $(head -c 200 <<<"$body")"
}
check "TLS: plain HTTP to the TLS port fails" http_to_tls
check "TLS: the certificate is verified (no --cacert -> curl fails)" \
    bash -c "! curl -sS --max-time 5 -o /dev/null -u prom:s3cret-pass '$TLS/metrics'"

# ---------------------------------------------------------------------------------------------
log "c. Prometheus scrapes us (plain, and TLS + basic auth)"
PROM_DIR="$WORK/prometheus"
mkdir -p "$PROM_DIR/data"
printf '%s' 's3cret-pass' >"$PROM_DIR/password"
cat >"$PROM_DIR/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: heimdall
    static_configs:
      - targets: ['127.0.0.1:$P_OURS']
  - job_name: heimdall-tls
    scheme: https
    tls_config:
      ca_file: $TLS_DIR/cert.pem
    basic_auth:
      username: prom
      password_file: $PROM_DIR/password
    static_configs:
      - targets: ['127.0.0.1:$P_TLS']
  # d. rules: ours and node_exporter as two instances of the job the node-mixin rules select.
  - job_name: node-exporter
    static_configs:
      - targets: ['127.0.0.1:$P_OURS']
        labels: {instance: heimdall}
      - targets: ['127.0.0.1:$P_NE']
        labels: {instance: node_exporter}
EOF
RULE_FILES=()
for f in "$SHARED_DIR/peer/node-exporter/node-mixin-rendered-kube-prometheus/node-mixin-rules.yml" \
    "$SHARED_DIR/peer/alerts/host-and-hardware-node-exporter.yml"; do
    if [[ -f "$f" ]] && promtool check rules "$f" >/dev/null 2>&1; then
        cp "$f" "$PROM_DIR/"
        RULE_FILES+=("$PROM_DIR/$(basename "$f")")
    elif [[ -f "$f" ]]; then
        log "skipping rules $f: promtool check rules fails with this Prometheus"
    fi
done
if ((${#RULE_FILES[@]} > 0)); then
    echo "rule_files:" >>"$PROM_DIR/prometheus.yml"
    printf '  - %s\n' "${RULE_FILES[@]}" >>"$PROM_DIR/prometheus.yml"
fi
check "promtool check config" promtool check config "$PROM_DIR/prometheus.yml"
P_PROM="$(free_port)"
start_bg prometheus "$PROMETHEUS" --config.file="$PROM_DIR/prometheus.yml" \
    --storage.tsdb.path="$PROM_DIR/data" --web.listen-address="127.0.0.1:$P_PROM" \
    --storage.tsdb.retention.time=1h --log.level=warn
PID_PROM=$LAST_PID
PROM="http://127.0.0.1:$P_PROM"

# prom_query EXPR : the value of the first result (empty if none)
prom_query() {
    http -G --data-urlencode "query=$1" "$PROM/api/v1/query" | python3 -c '
import json, sys
d = json.load(sys.stdin)
r = d.get("data", {}).get("result", [])
print(r[0]["value"][1] if r else "")'
}
# wait_query EXPR WANT SECONDS : until prom_query EXPR == WANT
wait_query() {
    local deadline=$((SECONDS + $3)) v=""
    while ((SECONDS < deadline)); do
        v="$(prom_query "$1" 2>/dev/null || true)"
        if [[ "$v" == "$2" ]]; then return 0; fi
        sleep 0.5
    done
    echo "query $1: got '${v}', want '$2'"
    return 1
}
target_errors() {
    http "$PROM/api/v1/targets" | python3 -c '
import json, sys
for t in json.load(sys.stdin)["data"]["activeTargets"]:
    print(t["labels"].get("job"), t["health"], repr(t.get("lastError", "")))'
}

if WAIT_PID=$PID_PROM wait_http "$PROM/-/ready" 60; then
    pass "Prometheus starts"
    for job in heimdall heimdall-tls; do
        if wait_query "up{job=\"$job\"}" 1 60 >"$WORK/wait.out" 2>&1; then
            pass "Prometheus: up{job=\"$job\"} == 1"
        else
            fail "Prometheus: up{job=\"$job\"} == 1" "$(cat "$WORK/wait.out"; target_errors)"
        fi
        check "Prometheus: node_cpu_seconds_total{job=\"$job\"} series exist" \
            wait_query "count(node_cpu_seconds_total{job=\"$job\"}) > bool 0" 1 30
        check "Prometheus: scrape_samples_scraped{job=\"$job\"} > 100" \
            wait_query "scrape_samples_scraped{job=\"$job\"} > bool 100" 1 30
    done
    # A rate over a few scrapes works (counters really are counters across scrapes).
    check "Prometheus: rate(node_cpu_seconds_total[5s]) has results" \
        wait_query "count(rate(node_cpu_seconds_total{job=\"heimdall\"}[5s])) > bool 0" 1 30
    no_target_errors() {
        local t
        t="$(target_errors)"
        echo "$t"
        [[ -n "$t" ]] && ! grep -q -v -E " up ''$" <<<"$t"
    }
    check "Prometheus: targets report no scrape error" no_target_errors
else
    fail "Prometheus starts" "$(show_log prometheus)"
fi

# ---------------------------------------------------------------------------------------------
if ((${#RULE_FILES[@]} > 0)) && kill -0 "$PID_PROM" 2>/dev/null; then
    log "d. node-mixin recording rules and alerts: ours vs node_exporter in one Prometheus"
    if wait_query 'count(up{job="node-exporter"} == 1)' 2 60 >"$WORK/wait.out" 2>&1; then
        # rate() over [5m] needs two samples, and rules one evaluation after that.
        sleep 4
        run_compare rules python3 "$COMPAT_DIR/compare_rules.py" "$PROM" heimdall node_exporter
    else
        fail "rules: both exporters up in the node-exporter job" "$(cat "$WORK/wait.out"; target_errors)"
    fi
else
    log "d. rules: skipped (no rule files from ../shared, or Prometheus not running)"
fi

# ---------------------------------------------------------------------------------------------
log "e. collect[], OpenMetrics, gzip, /health"
collect_only_cpu() {
    local f="$WORK/collect-cpu.prom"
    http -f -g -o "$f" "$OURS/metrics?collect[]=cpu"
    python3 "$COMPAT_DIR/compare_families.py" owners --actual "$f" >"$f.owners"
    local others
    others="$(awk -F'\t' '$1 != "cpu" && $1 != "-"' "$f.owners")"
    if [[ -n "$others" ]]; then
        echo "families of other collectors:"
        echo "$others"
        return 1
    fi
    grep -q '^node_cpu_seconds_total{' "$f" || { echo "no node_cpu_seconds_total"; return 1; }
    local bad
    bad="$(grep -E '^node_scrape_collector_[a-z_]+\{' "$f" | grep -v 'collector="cpu"' || true)"
    if [[ -n "$bad" ]]; then
        echo "scrape meta metrics of other collectors:"
        echo "$bad"
        return 1
    fi
    grep -q '^node_scrape_collector_success{collector="cpu"} 1' "$f" ||
        { echo "no node_scrape_collector_success{collector=\"cpu\"} 1"; return 1; }
}
check "collect[]=cpu gives only cpu families" collect_only_cpu

openmetrics() {
    local f="$WORK/om.txt" h="$WORK/om.headers"
    http -f -D "$h" -o "$f" -H 'Accept: application/openmetrics-text; version=1.0.0; charset=utf-8' \
        "$OURS/metrics"
    grep -i -q '^content-type: application/openmetrics-text; *version=1.0.0' "$h" ||
        { echo "content type: $(grep -i '^content-type' "$h")"; return 1; }
    [[ "$(tail -n 1 "$f")" == "# EOF" ]] || { echo "last line: $(tail -n 1 "$f")"; return 1; }
    [[ "$(grep -c '^# EOF$' "$f")" -eq 1 ]] || { echo "# EOF more than once"; return 1; }
    ! grep -q '^$' "$f" || { echo "blank line in OpenMetrics"; return 1; }
    # Counters: TYPE names the family without _total, samples keep it.
    grep -q '^# TYPE node_cpu_seconds counter$' "$f" ||
        { echo "no '# TYPE node_cpu_seconds counter'"; grep 'node_cpu_seconds' "$f" | head -3; return 1; }
    grep -q '^node_cpu_seconds_total{' "$f" || { echo "no node_cpu_seconds_total sample"; return 1; }
    # Units: node_exporter declares no UNIT lines for these (client_golang does not); allow them.
    # Every TYPE is one of OpenMetrics' types.
    local badtype
    badtype="$(grep '^# TYPE ' "$f" | awk '$4 !~ /^(counter|gauge|histogram|gaugehistogram|stateset|info|summary|unknown)$/' || true)"
    [[ -z "$badtype" ]] || { echo "bad types: $badtype"; return 1; }
}
check "Accept: application/openmetrics-text gives OpenMetrics 1.0 (# EOF, types, _total)" openmetrics

text_default() {
    local h="$WORK/text.headers"
    http -f -D "$h" -o /dev/null "$OURS/metrics"
    grep -i -q '^content-type: text/plain; *version=0.0.4' "$h" ||
        { echo "content type: $(grep -i '^content-type' "$h")"; return 1; }
}
check "no Accept header: text/plain; version=0.0.4" text_default

gzip_check() {
    local h="$WORK/gz.headers"
    http -f -D "$h" -o "$WORK/gz.raw" -H 'Accept-Encoding: gzip' "$OURS/metrics"
    grep -i -q '^content-encoding: gzip' "$h" || { echo "no Content-Encoding: gzip"; cat "$h"; return 1; }
    gzip -t <"$WORK/gz.raw" || { echo "body is not gzip"; return 1; }
    http -f --compressed -o "$WORK/gz.txt" "$OURS/metrics"
    grep -q '^node_cpu_seconds_total{' "$WORK/gz.txt" || { echo "curl --compressed: no metrics"; return 1; }
}
check "Accept-Encoding: gzip gives gzip (and curl --compressed works)" gzip_check

if concurrent_complete "$NE/metrics" 4 5 >"$WORK/conc-ne.txt" 2>&1; then
    log "node_exporter under 4 concurrent clients: $(head -n 1 "$WORK/conc-ne.txt")"
else
    log "node_exporter under 4 concurrent clients: $(cat "$WORK/conc-ne.txt")"
fi
# Prometheus HA pairs scrape the same target at the same moment.
check "4 concurrent clients get complete responses (as from node_exporter)" \
    concurrent_complete "$OURS/metrics" 4 5

health() {
    local b
    b="$(http -f "$OURS/health")"
    python3 -c 'import json,sys; json.loads(sys.argv[1])' "$b" || { echo "not JSON: ${b:0:200}"; return 1; }
}
check "GET /health is JSON" health
check "GET /health needs no credentials under basic auth" \
    test "$(code --cacert "$TLS_DIR/cert.pem" "$TLS/health")" = 200

# ---------------------------------------------------------------------------------------------
log "f. live side by side with node_exporter $("$NODE_EXPORTER" --version 2>&1 | head -n 1 | awk '{print $3}')"
golden_args=()
if [[ -f "$GOLDEN" ]]; then golden_args=(--golden "$GOLDEN"); fi
collectors_csv="$(IFS=,; echo "${OUR_COLLECTORS[*]}")"
live_compare() { # scrape both back to back, then compare
    http -f -o "$WORK/live-ne.prom" "$NE/metrics"
    http -f -o "$WORK/live-ours.prom" "$OURS/metrics"
    python3 "$COMPAT_DIR/compare_families.py" live --expected "$WORK/live-ne.prom" \
        --actual "$WORK/live-ours.prom" --collectors "$collectors_csv" "${golden_args[@]}" \
        >"$WORK/live.txt" 2>&1
}
# Label sets on a live host can change between the two scrapes: retry once on a difference.
if ! live_compare; then
    log "live comparison differs; scraping both again to rule out a change in between"
    sleep 1
    live_compare || true
fi
run_compare live cat "$WORK/live.txt"

for pid in "$PID_OURS" "$PID_TLS"; do
    if ! kill -0 "$pid" 2>/dev/null; then
        fail "our exporter (pid $pid) still running at the end" "$(show_log heimdall-plain; show_log heimdall-tls)"
    fi
done
finish
