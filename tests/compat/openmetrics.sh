#!/usr/bin/env bash
# shellcheck disable=SC2317 # functions run through check() look unreachable to shellcheck
# The OpenMetrics parser test suite (../shared/peer/openmetrics-parsers, 211 cases) against
# `heimdall check metrics --format openmetrics`, driven as upstream's openmetricstest drives a
# parser: metrics on stdin, exit 0 expected when test.json says shouldParse, non-zero (1: a
# rejection, not a crash) otherwise. One check per case.
# Then Prometheus' text-format fixture and node_exporter's golden output through ours and,
# when installed, through `promtool check metrics` (0, or 3 for lint problems only): both
# accept them.
# Env: HEIMDALL_BIN_DIR (our binaries), HEIMDALL_SHARED_DIR (default ../shared), KEEP_WORK=1.
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

PEER="$SHARED_DIR/peer/openmetrics-parsers"
CASES="$PEER/tests/testdata/parsers"
if [[ ! -d "$SHARED_DIR" ]]; then
    skip_suite "../shared absent ($SHARED_DIR)"
fi
if [[ ! -d "$CASES" ]]; then
    skip_suite "../shared absent: no $CASES"
fi
CLI="$HEIMDALL_BIN_DIR/heimdall"
if [[ ! -x "$CLI" ]]; then
    fail "our binary exists: $CLI" "build it with 'cargo build --workspace --bins', or set HEIMDALL_BIN_DIR"
    finish
fi

valid=0 valid_ok=0 invalid=0 invalid_ok=0
for dir in "$CASES"/*/; do
    name="$(basename "$dir")"
    [[ -f "$dir/test.json" ]] || continue
    if tr -d ' \t\r\n' <"$dir/test.json" | grep -q '"shouldParse":true'; then
        should=1
    else
        should=0
    fi
    rc=0
    out="$("$CLI" check metrics --format openmetrics <"$dir/metrics" 2>&1)" || rc=$?
    if ((should)); then
        valid=$((valid + 1))
        if ((rc == 0)); then
            valid_ok=$((valid_ok + 1))
            pass "accepts $name"
        else
            fail "accepts $name" "exit $rc: $out"
        fi
    else
        invalid=$((invalid + 1))
        if ((rc == 1)); then
            invalid_ok=$((invalid_ok + 1))
            pass "rejects $name: ${out%%$'\n'*}"
        else
            fail "rejects $name" "exit $rc (want 1): $out"
        fi
    fi
done
log "OpenMetrics suite: $valid_ok/$valid valid accepted, $invalid_ok/$invalid invalid rejected"
if ((valid != 44 || invalid != 167)); then
    fail "the suite has 44 valid and 167 invalid cases" "found $valid valid and $invalid invalid in $CASES"
fi

# accepted_by_heimdall FILE : our check passes FILE as text format.
accepted_by_heimdall() {
    "$CLI" check metrics --format text <"$1" 2>"$WORK/heimdall.err" || {
        cat "$WORK/heimdall.err"
        return 1
    }
}

# accepted_by_promtool FILE : promtool check metrics passes FILE (exit 3 = lint problems only).
accepted_by_promtool() {
    local rc=0
    promtool check metrics <"$1" >"$WORK/promtool.out" 2>&1 || rc=$?
    if ((rc == 0 || rc == 3)); then
        echo "promtool exit $rc ($(wc -l <"$WORK/promtool.out") lint lines)"
        return 0
    fi
    tail -n 20 "$WORK/promtool.out"
    return 1
}

TEXT_FIXTURES=(
    "$PEER/prometheus-textparse-testdata/alltypes.237mfs.prom.txt"
    "$SHARED_DIR/peer/node-exporter/fixtures/e2e-output.txt"
)
for f in "${TEXT_FIXTURES[@]}"; do
    [[ -f "$f" ]] || continue
    check "heimdall check metrics accepts $(basename "$f") (text)" accepted_by_heimdall "$f"
    if command -v promtool >/dev/null 2>&1; then
        check "promtool check metrics accepts $(basename "$f") too" accepted_by_promtool "$f"
    else
        log "promtool not installed: not comparing $(basename "$f") with it"
    fi
done

# An invalid text exposition: both reject it.
printf 'a 1\nb{x="1" 2\n' >"$WORK/bad.txt"
rejected_by_both() {
    local rc=0
    "$CLI" check metrics --format text <"$WORK/bad.txt" 2>"$WORK/heimdall.err" || rc=$?
    ((rc == 1)) || { echo "heimdall exit $rc"; return 1; }
    grep -q '^line 2, column 9: ' "$WORK/heimdall.err" || { cat "$WORK/heimdall.err"; return 1; }
    if command -v promtool >/dev/null 2>&1; then
        rc=0
        promtool check metrics <"$WORK/bad.txt" >/dev/null 2>&1 || rc=$?
        ((rc == 1)) || { echo "promtool exit $rc"; return 1; }
    fi
}
check "an invalid text exposition is rejected (line 2, column 9), by promtool too" rejected_by_both
finish
