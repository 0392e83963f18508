#!/usr/bin/env bash
# shellcheck disable=SC2317 # functions run through check() look unreachable to shellcheck
# Our nameserver against a real DNS client: Debian's dig (bind9-dnsutils).
#
# Starts heimdall-nameserver on free loopback ports with a registration token, registers
# instances over its HTTP API with curl, then asks dig for every record type we serve, over UDP
# and TCP: SRV (targets, ports, glue), A, AAAA, TXT labels, SOA/NS at the apex, NXDOMAIN and
# NODATA with the SOA in the authority section, case-insensitive names, serial bumps, deletion,
# the token check, and REFUSED for a zone we do not serve.
#
# Then a second nameserver with storage, a TSIG key (tsig-keygen) and a transfer ACL:
# - DNS UPDATE with nsupdate: a signed add (A + SRV) and delete work and bump the serial; an
#   unsigned update is REFUSED and a wrong-secret one NOTAUTH, both changing nothing;
# - AXFR with dig: SOA first and last and dig's record count; REFUSED ("Transfer failed") from
#   a source outside the ACL (127.0.0.2) unless TSIG-signed with the key, never with a wrong one;
# - 3,000 instances in one nsupdate batch: AXFR carries every record (several messages), the
#   shards (_shards PTR, _s<k> SRV over TCP) add up to exactly the 3,000 targets, the plain SRV
#   set over TCP is all of them or says TC (never cut silently), EDNS bufsize 1232 over UDP
#   gives TC where TCP does not; CHAOS version.bind is REFUSED;
# - a restart with the same --storage.path keeps every instance;
# - replication: Knot (knotd, when installed) and our own --role secondary transfer the zone,
#   answer the same SRV set, pick up a new registration within 10 s (NOTIFY), keep answering
#   when the primary is gone (killed; ours also after its own restart, from its copy on disk),
#   our secondary refuses HTTP writes with 421 and UPDATE with REFUSED; the killed primary
#   restarts with everything (its journal) and both secondaries get its next change.
# Needs dig, nsupdate (bind9-dnsutils), tsig-keygen (bind9; a key is written by hand without
# it), knotd (knot; the Knot checks are skipped without it), curl, python3.
# Env: HEIMDALL_BIN_DIR (our binaries), KEEP_WORK=1.
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

need dig curl python3
NS_BIN="$HEIMDALL_BIN_DIR/heimdall-nameserver"
if [[ ! -x "$NS_BIN" ]]; then
    fail "our binary exists: $NS_BIN" "build it with 'cargo build --workspace --bins', or set HEIMDALL_BIN_DIR"
    finish
fi

ZONE=heimdall.internal.
TOKEN=compat-token-$RANDOM
echo "$TOKEN" >"$WORK/token"
DNS_PORT="$(free_port)"
HTTP_PORT="$(free_port)"
start_bg nameserver "$NS_BIN" --dns.listen-address="127.0.0.1:$DNS_PORT" \
    --http.listen-address="127.0.0.1:$HTTP_PORT" --registry.token-file="$WORK/token" \
    --storage.path="$WORK/first-store" --log.level=warn
NS_PID=$LAST_PID
API="http://127.0.0.1:$HTTP_PORT"
if ! WAIT_PID=$NS_PID wait_http "$API/health" 20; then
    fail "nameserver starts" "$(cat "$WORK/nameserver.log")"
    finish
fi

# q ARGS... : dig at our server, short timeouts, no recursion.
q() { dig @127.0.0.1 -p "$DNS_PORT" +norec +time=2 +tries=1 "$@"; }

register() { # SERVICE INSTANCE JSON
    http -o /dev/null -w '%{http_code}' -X PUT -H "Authorization: Bearer $TOKEN" \
        -H 'Content-Type: application/json' -d "$3" "$API/v1/services/$1/instances/$2"
}

serial() { q +short SOA "$ZONE" | awk '{print $3}'; }

SERIAL0="$(serial)"
check "register web-1 (201)" test "$(register exporter web-1 '{"address":"10.1.0.11","port":9090,"labels":{"rack":"r1","env":"prod"}}')" = 201
check "register web-2 (201)" test "$(register exporter web-2 '{"address":"10.1.0.12","port":9100}')" = 201
check "register db-6 over IPv6 (201)" test "$(register exporter db-6 '{"address":"fd00::6","port":9090}')" = 201
check "register a scraper (201)" test "$(register scraper scr-1 '{"address":"10.1.0.50","port":9190}')" = 201

srv_ok() {
    local out
    out="$(q +short SRV "_exporter._tcp.$ZONE" | sort)"
    printf '%s\n' "$out"
    [[ "$(wc -l <<<"$out")" == 3 ]] &&
        grep -qx "0 0 9090 web-1.$ZONE" <<<"$out" &&
        grep -qx "0 0 9100 web-2.$ZONE" <<<"$out" &&
        grep -qx "0 0 9090 db-6.$ZONE" <<<"$out"
}
check "SRV _exporter._tcp lists the three exporters with their ports (UDP)" srv_ok
check "SRV over TCP answers the same" bash -c "[[ \"\$(dig @127.0.0.1 -p $DNS_PORT +tcp +norec +short SRV _exporter._tcp.$ZONE | sort)\" == \"\$(dig @127.0.0.1 -p $DNS_PORT +norec +short SRV _exporter._tcp.$ZONE | sort)\" ]]"
check "SRV answer is authoritative" bash -c "dig @127.0.0.1 -p $DNS_PORT +norec SRV _exporter._tcp.$ZONE | grep -q 'flags: qr aa'"
check "SRV answer carries glue A/AAAA in the additional section" bash -c \
    "dig @127.0.0.1 -p $DNS_PORT +norec SRV _exporter._tcp.$ZONE | sed -n '/ADDITIONAL SECTION/,\$p' | grep -qE 'IN[[:space:]]+(A|AAAA)[[:space:]]'"
check "SRV _scraper._tcp lists the scraper" test "$(q +short SRV "_scraper._tcp.$ZONE")" = "0 0 9190 scr-1.$ZONE"
check "A web-1" test "$(q +short A "web-1.$ZONE")" = 10.1.0.11
check "A over TCP" test "$(q +tcp +short A "web-2.$ZONE")" = 10.1.0.12
check "AAAA db-6" test "$(q +short AAAA "db-6.$ZONE")" = fd00::6
check "names are case-insensitive" test "$(q +short A "WEB-1.Heimdall.Internal.")" = 10.1.0.11
txt_ok() {
    local out
    out="$(q +short TXT "web-1.$ZONE")"
    printf '%s\n' "$out"
    grep -q '"rack=r1"' <<<"$out" && grep -q '"env=prod"' <<<"$out"
}
check "TXT web-1 carries its labels as key=value" txt_ok
check "SOA at the apex" bash -c "[[ -n \"\$(dig @127.0.0.1 -p $DNS_PORT +norec +short SOA $ZONE)\" ]]"
check "NS at the apex" test "$(q +short NS "$ZONE")" = "ns.$ZONE"

nx_ok() {
    local out
    out="$(q A "nosuch.$ZONE")"
    printf '%s\n' "$out"
    grep -q 'status: NXDOMAIN' <<<"$out" && sed -n '/AUTHORITY SECTION/,$p' <<<"$out" | grep -q 'IN[[:space:]]*SOA'
}
check "NXDOMAIN for an unknown name, SOA in authority" nx_ok
nodata_ok() {
    local out
    out="$(q MX "web-1.$ZONE")"
    printf '%s\n' "$out"
    grep -q 'status: NOERROR' <<<"$out" && grep -q 'ANSWER: 0' <<<"$out" &&
        sed -n '/AUTHORITY SECTION/,$p' <<<"$out" | grep -q 'IN[[:space:]]*SOA'
}
check "NODATA (MX of an instance): NOERROR, no answer, SOA in authority" nodata_ok
check "REFUSED for a zone we do not serve" bash -c "dig @127.0.0.1 -p $DNS_PORT +norec A example.com. | grep -q 'status: REFUSED'"

SERIAL1="$(serial)"
check "every change bumped the SOA serial ($SERIAL0 -> $SERIAL1)" test "$SERIAL1" -gt "$SERIAL0"
check "a write without the token is refused (401)" test "$(http -o /dev/null -w '%{http_code}' -X PUT \
    -H 'Content-Type: application/json' -d '{"address":"10.1.0.99","port":1}' "$API/v1/services/exporter/instances/evil")" = 401
check "a refused write changes nothing" test -z "$(q +short A "evil.$ZONE")"
check "a bad name gets 400" test "$(register exporter 'bad_name' '{"address":"10.1.0.9","port":1}')" = 400
check "deregister web-2 (204)" test "$(http -o /dev/null -w '%{http_code}' -X DELETE \
    -H "Authorization: Bearer $TOKEN" "$API/v1/services/exporter/instances/web-2")" = 204
check "web-2 left the SRV set" bash -c "! dig @127.0.0.1 -p $DNS_PORT +norec +short SRV _exporter._tcp.$ZONE | grep -q web-2"
check "web-2's A record is gone (NXDOMAIN)" bash -c "dig @127.0.0.1 -p $DNS_PORT +norec A web-2.$ZONE | grep -q 'status: NXDOMAIN'"
check "the serial moved again" test "$(serial)" -gt "$SERIAL1"
sd_ok() {
    local out
    out="$(http "$API/v1/sd?service=exporter")"
    printf '%s\n' "$out"
    python3 -c '
import json, sys
groups = json.loads(sys.argv[1])
targets = sorted(t for g in groups for t in g["targets"])
assert targets == ["10.1.0.11:9090", "[fd00::6]:9090"], targets
web1 = [g for g in groups if g["targets"] == ["10.1.0.11:9090"]][0]["labels"]
assert web1["__meta_heimdall_label_rack"] == "r1", web1
' "$out"
}
check "http_sd lists the same targets as SRV" sd_ok

# --- DNS UPDATE with TSIG, zone transfers, a fleet of 3,000, persistence ----------------------
stop_bg "$NS_PID"
need nsupdate
KEY="$WORK/update.key"
BADKEY="$WORK/wrong-secret.key"
# make_key FILE : a BIND key file named heimdall-update with a new random secret.
make_key() {
    if command -v tsig-keygen >/dev/null 2>&1; then
        tsig-keygen -a hmac-sha256 heimdall-update >"$1"
    else
        python3 -c 'import base64, os
print("key \"heimdall-update\" {\n\talgorithm hmac-sha256;\n\tsecret \"%s\";\n};" % base64.b64encode(os.urandom(32)).decode())' >"$1"
    fi
}
command -v tsig-keygen >/dev/null 2>&1 || log "tsig-keygen not found (package bind9): writing the key files by hand"
make_key "$KEY"
make_key "$BADKEY"
check "the wrong-secret key has the same name and another secret" bash -c \
    "grep -q '\"heimdall-update\"' '$BADKEY' && ! cmp -s '$KEY' '$BADKEY'"

STORE="$WORK/primary-store"
# Ports of the secondaries, known before the (restarted) primary that NOTIFYs them starts.
KNOT_PORT="$(free_port)"
SEC_DNS="$(free_port)"
SEC_HTTP="$(free_port)"
# start_primary NAME [FLAGS...] : our primary on new free ports (P_DNS, P_HTTP, PRIMARY_PID),
# or on the same ones again with REUSE_PORTS=1.
start_primary() {
    local name="$1"
    shift
    if [[ "${REUSE_PORTS:-0}" != 1 ]]; then
        P_DNS="$(free_port)"
        P_HTTP="$(free_port)"
    fi
    start_bg "$name" "$NS_BIN" --dns.listen-address="127.0.0.1:$P_DNS" \
        --http.listen-address="127.0.0.1:$P_HTTP" --registry.token-file="$WORK/token" \
        --health.interval=0s --storage.path="$STORE" --dns.tsig-key-file "$KEY" \
        --dns.allow-transfer 127.0.0.1 --log.level=info "$@"
    PRIMARY_PID=$LAST_PID
    WAIT_PID=$PRIMARY_PID wait_http "http://127.0.0.1:$P_HTTP/health" 30
}
if ! start_primary primary; then
    fail "nameserver with --dns.tsig-key-file, --dns.allow-transfer and --storage.path starts" "$(show_log primary)"
    finish
fi
PAPI="http://127.0.0.1:$P_HTTP"

p() { dig @127.0.0.1 -p "$P_DNS" +norec +time=3 +tries=1 "$@"; }
pserial() { p +short SOA "$ZONE" | awk '{print $3}'; }
pregister() { # SERVICE INSTANCE JSON (at the primary)
    http -o /dev/null -w '%{http_code}' -X PUT -H "Authorization: Bearer $TOKEN" \
        -H 'Content-Type: application/json' -d "$3" "$PAPI/v1/services/$1/instances/$2"
}
check "register web-1 at the primary over HTTP (201)" test "$(pregister exporter web-1 '{"address":"10.1.0.11","port":9090}')" = 201
check "register scr-1 at the primary over HTTP (201)" test "$(pregister scraper scr-1 '{"address":"10.1.0.50","port":9190}')" = 201

# upd FILE LINES... : an nsupdate script for our primary: LINES, then send and show the answer.
upd() {
    local f="$1"
    shift
    {
        echo "server 127.0.0.1 $P_DNS"
        echo "zone $ZONE"
        printf '%s\n' "$@"
        echo send
        echo answer
    } >"$f"
}
# nsup KEYFILE|none FILE : nsupdate over TCP with FILE's commands, bounded; prints its output.
nsup() {
    local key=()
    [[ "$1" == none ]] || key=(-k "$1")
    timeout 120 nsupdate -v -t 30 "${key[@]}" "$2" 2>&1
}
update_ok() { # KEYFILE FILE : nsupdate exits 0 and every answer is NOERROR
    local out rc=0
    out="$(nsup "$1" "$2")" || rc=$?
    printf '%s\nnsupdate exit %s\n' "$out" "$rc"
    ((rc == 0)) && grep -q 'status: NOERROR' <<<"$out" && ! grep -qE 'status: [A-Z]' <<<"$(grep -v 'status: NOERROR' <<<"$out")"
}
update_refused() { # KEYFILE FILE REGEX : nsupdate exits non-zero and its output matches REGEX
    local out rc=0
    out="$(nsup "$1" "$2")" || rc=$?
    printf '%s\nnsupdate exit %s\n' "$out" "$rc"
    ((rc != 0)) && grep -qE "$3" <<<"$out"
}
# state : what a refused update must not change (serial, the exporter SRV set, web-10).
state() {
    echo "serial $(pserial)"
    p +tcp +short SRV "_exporter._tcp.$ZONE" | sort
    echo "web-10: $(p A "web-10.$ZONE" | grep -o 'status: [A-Z]*')"
}
unchanged() { # BEFORE
    local now
    now="$(state)"
    [[ "$now" == "$1" ]] && return 0
    diff <(printf '%s\n' "$1") <(printf '%s\n' "$now")
    return 1
}

S0="$(pserial)"
upd "$WORK/add.txt" "update add web-9.$ZONE 60 A 10.0.0.9" "update add _exporter._tcp.$ZONE 60 SRV 0 0 9090 web-9.$ZONE"
check "nsupdate -k: add web-9 (A + SRV) in one update, NOERROR" update_ok "$KEY" "$WORK/add.txt"
check "SRV _exporter._tcp now lists web-9 (port 9090)" bash -c \
    "dig @127.0.0.1 -p $P_DNS +norec +time=3 +tries=1 +short SRV _exporter._tcp.$ZONE | grep -qx '0 0 9090 web-9.$ZONE'"
check "A web-9 is 10.0.0.9" test "$(p +short A "web-9.$ZONE")" = 10.0.0.9
check "DNS-SD SRV web-9._exporter._tcp answers" test "$(p +short SRV "web-9._exporter._tcp.$ZONE")" = "0 0 9090 web-9.$ZONE"
S1="$(pserial)"
check "the update bumped the SOA serial ($S0 -> $S1)" test "${S1:-0}" -gt "${S0:-0}"
upd "$WORK/delete.txt" "update delete web-9.$ZONE"
check "nsupdate -k: delete web-9, NOERROR" update_ok "$KEY" "$WORK/delete.txt"
check "web-9 left the SRV set" bash -c "! dig @127.0.0.1 -p $P_DNS +norec +time=3 +tries=1 +short SRV _exporter._tcp.$ZONE | grep -q web-9"
check "web-9's A record is gone (NXDOMAIN)" bash -c "dig @127.0.0.1 -p $P_DNS +norec +time=3 +tries=1 A web-9.$ZONE | grep -q 'status: NXDOMAIN'"
S2="$(pserial)"
check "the delete bumped the serial ($S1 -> $S2)" test "${S2:-0}" -gt "${S1:-0}"

BEFORE="$(state)"
log "zone state before the refused updates: $(tr '\n' ' ' <<<"$BEFORE")"
upd "$WORK/add10.txt" "update add web-10.$ZONE 60 A 10.0.0.10" "update add _exporter._tcp.$ZONE 60 SRV 0 0 9090 web-10.$ZONE"
check "nsupdate without a key: REFUSED, non-zero exit" update_refused none "$WORK/add10.txt" 'REFUSED'
check "the unsigned add changed nothing" unchanged "$BEFORE"
upd "$WORK/delete1.txt" "update delete web-1.$ZONE"
check "nsupdate without a key cannot delete web-1 either (REFUSED)" update_refused none "$WORK/delete1.txt" 'REFUSED'
check "the unsigned delete changed nothing" unchanged "$BEFORE"
check "nsupdate with a wrong-secret key: NOTAUTH/BADSIG, non-zero exit" update_refused "$BADKEY" "$WORK/add10.txt" 'NOTAUTH|BADSIG|tsig verify failure'
check "the wrongly signed add changed nothing" unchanged "$BEFORE"

# axfr_ok FILE DIG-ARGS... : a full transfer: SOA first and last, as many records as dig
# counted, more than the apex. Keeps the transfer in FILE.
axfr_ok() {
    local f="$1"
    shift
    timeout 60 dig "$@" @127.0.0.1 -p "$P_DNS" +time=10 +tries=1 AXFR "$ZONE" >"$f" 2>&1 || true
    local first last n size tsig
    # The records, less the TSIG that closes each signed message.
    awk '!/^;/ && NF && $4 != "TSIG"' "$f" >"$f.records"
    first="$(head -n 1 "$f.records" | awk '{print $4}')"
    last="$(tail -n 1 "$f.records" | awk '{print $4}')"
    n="$(wc -l <"$f.records")"
    tsig="$(awk '!/^;/ && $4 == "TSIG"' "$f" | wc -l)"
    size="$(sed -n 's/^;; XFR size: \([0-9]*\) records.*/\1/p' "$f")"
    echo "first $first, last $last, $n records, dig's XFR size: ${size:-none}, TSIG records: $tsig"
    grep -E '^;; XFR size|Transfer failed|communications error' "$f" || true
    [[ "$first" == SOA && "$last" == SOA && "$n" == "$size" && "$n" -gt 3 ]]
}
axfr_refused() { # DIG-ARGS... : the transfer fails
    local out
    out="$(timeout 60 dig "$@" @127.0.0.1 -p "$P_DNS" +time=10 +tries=1 AXFR "$ZONE" 2>&1 || true)"
    printf '%s\n' "$out"
    grep -qE 'Transfer failed|REFUSED|NOTAUTH|BADSIG|tsig verify failure' <<<"$out" && ! grep -qE '^;; XFR size' <<<"$out"
}
check "AXFR from 127.0.0.1 (in --dns.allow-transfer): SOA first and last, count matches" axfr_ok "$WORK/axfr0.txt"
axfr_has() { # FILE OWNER TYPE RDATA : the transfer in FILE has that record
    awk -v o="$2" -v t="$3" -v r="$4" '$1 == o && $4 == t {d = $5; for (i = 6; i <= NF; i++) d = d " " $i; if (d == r) f = 1} END {exit !f}' "$1"
}
check "AXFR carries web-1 A 10.1.0.11" axfr_has "$WORK/axfr0.txt" "web-1.$ZONE" A 10.1.0.11
check "AXFR carries the _scraper._tcp SRV" axfr_has "$WORK/axfr0.txt" "_scraper._tcp.$ZONE" SRV "0 0 9190 scr-1.$ZONE"
check "AXFR from 127.0.0.2 (not in the ACL, unsigned): Transfer failed / REFUSED" axfr_refused -b 127.0.0.2
check "AXFR from 127.0.0.2 signed with the TSIG key: works" axfr_ok "$WORK/axfr-tsig.txt" -b 127.0.0.2 -k "$KEY"
check "the TSIG transfer has the same records as the unsigned one" bash -c \
    "diff <(sort '$WORK/axfr0.txt.records') <(sort '$WORK/axfr-tsig.txt.records')"
check "AXFR from 127.0.0.2 signed with a wrong secret: refused" axfr_refused -b 127.0.0.2 -k "$BADKEY"

# 3,000 instances: web-1 .. web-3000 in _exporter._tcp, 250 a message, in one nsupdate run.
FLEET=3000
{
    echo "server 127.0.0.1 $P_DNS"
    echo "zone $ZONE"
    for ((i = 1; i <= FLEET; i++)); do
        echo "update add web-$i.$ZONE 60 A 10.2.$((i / 256)).$((i % 256))"
        echo "update add _exporter._tcp.$ZONE 60 SRV 0 0 9090 web-$i.$ZONE"
        if ((i % 250 == 0 || i == FLEET)); then
            echo send
            echo answer
        fi
    done
} >"$WORK/fleet.txt"
t0=$SECONDS
check "nsupdate -k: $FLEET instances in $(((FLEET + 249) / 250)) signed updates, all NOERROR" update_ok "$KEY" "$WORK/fleet.txt"
log "registering $FLEET instances took $((SECONDS - t0))s"

fleet_axfr_ok() {
    axfr_ok "$WORK/axfr-fleet.txt" || return 1
    local f="$WORK/axfr-fleet.txt" srv a sd msgs
    srv="$(awk -v n="_exporter._tcp.$ZONE" '$1 == n && $4 == "SRV"' "$f" | wc -l)"
    sd="$(awk -v s="._exporter._tcp.$ZONE" '$4 == "SRV" && $1 ~ /^web-[0-9]+\./ && substr($1, length($1) - length(s) + 1) == s' "$f" | wc -l)"
    a="$(awk '$4 == "A" && $1 ~ /^web-[0-9]+\./' "$f" | wc -l)"
    msgs="$(sed -n 's/^;; XFR size: .*(messages \([0-9]*\),.*/\1/p' "$f")"
    echo "_exporter._tcp SRV: $srv, DNS-SD SRV: $sd, web-N A: $a, messages: $msgs"
    [[ "$srv" == "$FLEET" && "$sd" == "$FLEET" && "$a" == "$FLEET" && "${msgs:-0}" -gt 1 ]]
}
check "AXFR returns all $FLEET SRV, DNS-SD SRV and A records, in several messages" fleet_axfr_ok

# shard_targets PORT : every SRV record of every shard of _exporter._tcp (over TCP), sorted.
shard_targets() {
    local port="$1" shards s
    shards="$(dig @127.0.0.1 -p "$port" +norec +time=3 +tries=1 +short PTR "_shards._exporter._tcp.$ZONE")" || return 1
    if [[ -z "$shards" ]]; then
        echo "no PTR at _shards._exporter._tcp.$ZONE on port $port" >&2
        return 1
    fi
    for s in $shards; do
        dig @127.0.0.1 -p "$port" +norec +tcp +time=5 +tries=1 +short SRV "$s" || return 1
    done | sort
}
shards_ok() {
    local shards txt all n distinct s out big=0 tc=0
    shards="$(p +short PTR "_shards._exporter._tcp.$ZONE")"
    txt="$(p +short TXT "_shards._exporter._tcp.$ZONE")"
    all="$(shard_targets "$P_DNS")" || return 1
    n="$(grep -c . <<<"$all")"
    distinct="$(awk '{print $4}' <<<"$all" | sort -u | grep -c .)"
    for s in $shards; do
        out="$(p +tcp SRV "$s")"
        grep -q 'flags:[^;]* tc' <<<"$out" && tc=$((tc + 1))
        (($(grep -cE '[[:space:]]IN[[:space:]]+SRV[[:space:]]' <<<"$out") <= 256)) || big=$((big + 1))
    done
    echo "$(wc -w <<<"$shards") shards; TXT $txt; $n SRV records, $distinct distinct targets; over 256: $big; TC: $tc"
    [[ "$n" == "$FLEET" && "$distinct" == "$FLEET" && "$big" == 0 && "$tc" == 0 ]] &&
        grep -q "\"count=$FLEET\"" <<<"$txt" && grep -q "\"shards=$(wc -w <<<"$shards")\"" <<<"$txt" &&
        diff <(awk '{print $4}' <<<"$all" | sort) \
            <(awk -v n="_exporter._tcp.$ZONE" '$1 == n && $4 == "SRV" {print $8}' "$WORK/axfr-fleet.txt" | sort)
}
check "the shards of _exporter._tcp add up to exactly the $FLEET targets (TXT count, no shard over 256)" shards_ok

# The whole set over TCP: 3,000 SRV records need more than 64 KiB (22 bytes each at the very
# least), so the server answers as many as fit with TC set; it must never cut silently.
tcp_full_ok() {
    local out n size flags
    out="$(p +tcp +time=10 SRV "_exporter._tcp.$ZONE")"
    n="$(awk -v o="_exporter._tcp.$ZONE" '$1 == o && $4 == "SRV"' <<<"$out" | wc -l)"
    size="$(sed -n 's/^;; MSG SIZE  rcvd: //p' <<<"$out")"
    flags="$(grep -o 'flags:[^;]*' <<<"$out" | head -n 1)"
    echo "TCP SRV _exporter._tcp: $n of $FLEET records, message $size bytes, $flags"
    grep -E 'status:|WARNING|error' <<<"$out" || true
    if grep -q ' tc' <<<"$flags"; then
        ((n > 0 && n < FLEET && ${size:-0} <= 65535))
    else
        ((n == FLEET))
    fi
}
check "SRV _exporter._tcp over TCP: all $FLEET, or TC set with what fits in 64 KiB (never cut silently)" tcp_full_ok
p +tcp SRV "_exporter._tcp.$ZONE" 2>&1 | grep -E 'flags:|MSG SIZE' | sed 's/^/# TCP SRV _exporter._tcp: /' || true
udp_tc_ok() { # NAME : over UDP with EDNS bufsize 1232 the answer has TC set and fits 1232 bytes
    local out size
    out="$(p +bufsize=1232 +ignore SRV "$1")"
    size="$(sed -n 's/^;; MSG SIZE  rcvd: //p' <<<"$out")"
    grep -E 'flags:|MSG SIZE|EDNS' <<<"$out"
    grep -q 'flags: qr aa tc' <<<"$out" && ((${size:-9999} <= 1232))
}
check "EDNS bufsize 1232, UDP, SRV of the $FLEET: TC set (flags: qr aa tc), message <= 1232 bytes" udp_tc_ok "_exporter._tcp.$ZONE"
SHARD0="$(p +short PTR "_shards._exporter._tcp.$ZONE" | head -n 1)"
check "EDNS bufsize 1232, UDP, SRV of shard ${SHARD0:-?}: TC set" udp_tc_ok "${SHARD0:-none.$ZONE}"
tcp_shard_ok() {
    local out
    out="$(p +tcp SRV "$1")"
    grep -E 'flags:|MSG SIZE' <<<"$out"
    grep -q 'flags: qr aa;' <<<"$out" && [[ "$(grep -cE '[[:space:]]IN[[:space:]]+SRV[[:space:]]' <<<"$out")" -gt 0 ]]
}
check "the same shard over TCP: complete, no TC" tcp_shard_ok "${SHARD0:-none.$ZONE}"
check "CHAOS version.bind TXT: REFUSED" bash -c "dig @127.0.0.1 -p $P_DNS +norec +time=3 +tries=1 version.bind CH TXT | grep -q 'status: REFUSED'"

# Restart on the same storage: the registry comes back. The new primary also NOTIFYs the
# secondaries below.
FLEET_SET="$(shard_targets "$P_DNS" || true)"
SERIAL_BEFORE="$(pserial)"
stop_bg "$PRIMARY_PID"
if ! start_primary primary-restarted --dns.notify "127.0.0.1:$KNOT_PORT,127.0.0.1:$SEC_DNS"; then
    fail "the primary restarts on the same --storage.path" "$(show_log primary-restarted)"
    finish
fi
PAPI="http://127.0.0.1:$P_HTTP"
same_fleet() { # PORT : the shards at PORT hold the same SRV records as before the restart
    local now
    now="$(shard_targets "$1")" || return 1
    echo "$(grep -c . <<<"$now") records at port $1, $(grep -c . <<<"$FLEET_SET") expected"
    [[ -n "$FLEET_SET" && "$now" == "$FLEET_SET" ]] || { diff <(printf '%s\n' "$FLEET_SET") <(printf '%s\n' "$now") | head; return 1; }
}
check "after a restart on the same --storage.path, all $FLEET instances are back" same_fleet "$P_DNS"
check "... and web-1, scr-1 too" bash -c "[[ \$(dig @127.0.0.1 -p $P_DNS +norec +short A web-1.$ZONE) == 10.2.0.1 && \$(dig @127.0.0.1 -p $P_DNS +norec +short SRV _scraper._tcp.$ZONE) == '0 0 9190 scr-1.$ZONE' ]]"
S3="$(pserial)"
check "the serial did not go back after the restart ($SERIAL_BEFORE -> $S3)" test "${S3:-0}" -ge "${SERIAL_BEFORE:-1}"

# --- replication: Knot and our own secondary ---------------------------------------------------
# wait_serial PORT SECONDS : until the server at PORT serves the primary's current serial.
wait_serial() {
    local port="$1" deadline=$((SECONDS + $2)) want have
    while ((SECONDS < deadline)); do
        want="$(pserial)"
        have="$(dig @127.0.0.1 -p "$port" +norec +time=1 +tries=1 +short SOA "$ZONE" 2>/dev/null | awk '{print $3}')"
        [[ -n "$want" && "$have" == "$want" ]] && return 0
        sleep 0.2
    done
    echo "port $port serves serial '${have:-}', the primary '${want:-}' (waited $2 s)"
    return 1
}
same_srv() { # PORT : the same SRV sets as the primary (all shards of _exporter, _scraper)
    local ours theirs
    ours="$(shard_targets "$P_DNS")" || return 1
    theirs="$(shard_targets "$1")" || return 1
    echo "$(grep -c . <<<"$theirs") _exporter._tcp records at port $1, $(grep -c . <<<"$ours") at the primary"
    [[ "$ours" == "$theirs" ]] || { diff <(printf '%s\n' "$ours") <(printf '%s\n' "$theirs") | head; return 1; }
    [[ "$(p +tcp +short SRV "_scraper._tcp.$ZONE" | sort)" == \
        "$(dig @127.0.0.1 -p "$1" +norec +tcp +time=3 +tries=1 +short SRV "_scraper._tcp.$ZONE" | sort)" ]]
}
# picked_up PORT SECONDS NAME : NAME's DNS-SD SRV shows up at PORT within SECONDS.
picked_up() {
    local port="$1" secs="$2" name="$3" t0 deadline
    t0="$(date +%s.%N)"
    deadline=$((SECONDS + secs))
    while ((SECONDS < deadline)); do
        if [[ -n "$(dig @127.0.0.1 -p "$port" +norec +time=1 +tries=1 +short SRV "$name._exporter._tcp.$ZONE" 2>/dev/null)" ]]; then
            echo "seen after $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}') s"
            return 0
        fi
        sleep 0.1
    done
    echo "$name not seen at port $port within $secs s"
    return 1
}

HAVE_KNOT=0
if command -v knotd >/dev/null 2>&1; then
    HAVE_KNOT=1
    KD="$WORK/knot"
    mkdir -p "$KD/run" "$KD/db" "$KD/zones"
    cat >"$KD/knot.conf" <<EOF
server:
    rundir: "$KD/run"
    listen: 127.0.0.1@$KNOT_PORT
log:
  - target: stderr
    any: info
database:
    storage: "$KD/db"
control:
    listen: "$KD/run/knot.sock"
remote:
  - id: heimdall-primary
    address: 127.0.0.1@$P_DNS
acl:
  - id: notify-from-primary
    address: 127.0.0.1
    action: notify
template:
  - id: default
    storage: "$KD/zones"
    zonefile-sync: -1
    zonefile-load: none
    journal-content: none
zone:
  - domain: ${ZONE%.}
    master: heimdall-primary
    acl: notify-from-primary
EOF
    start_bg knotd knotd -c "$KD/knot.conf"
    log "knotd $(knotd -V 2>&1 | awk '{print $NF}') as a secondary on 127.0.0.1:$KNOT_PORT"
else
    log "skipping the Knot checks: knotd not found (apt-get install knot)"
fi
start_bg secondary "$NS_BIN" --role secondary --primary "127.0.0.1:$P_DNS" \
    --dns.listen-address="127.0.0.1:$SEC_DNS" --http.listen-address="127.0.0.1:$SEC_HTTP" \
    --storage.path="$WORK/secondary-store" --dns.tsig-key-file "$KEY" --primary.tsig-key heimdall-update \
    --health.interval=0s --log.level=info
SEC_PID=$LAST_PID
SEC_API="http://127.0.0.1:$SEC_HTTP"

if ((HAVE_KNOT)); then
    if check "Knot transfers the zone from our primary (same serial within 30 s)" wait_serial "$KNOT_PORT" 30; then
        check "Knot answers the same SRV sets as our primary" same_srv "$KNOT_PORT"
    else
        show_log knotd 30
    fi
fi
WAIT_PID=$SEC_PID check "our --role secondary starts" wait_http "$SEC_API/health" 30
check "our secondary transfers the zone (same serial within 30 s)" wait_serial "$SEC_DNS" 30
check "our secondary answers the same SRV sets as the primary" same_srv "$SEC_DNS"

check "register late-1 at the primary over HTTP (201)" test "$(pregister exporter late-1 '{"address":"10.3.0.1","port":9091}')" = 201
if ((HAVE_KNOT)); then
    check "Knot picks late-1 up within 10 s (NOTIFY; its SOA refresh is 60 s)" picked_up "$KNOT_PORT" 10 late-1
fi
check "our secondary picks late-1 up within 10 s (NOTIFY)" picked_up "$SEC_DNS" 10 late-1
if ((HAVE_KNOT)); then
    wait_serial "$KNOT_PORT" 10 >/dev/null || true
    check "Knot and the primary agree again ($((FLEET + 1)) targets)" same_srv "$KNOT_PORT"
fi
wait_serial "$SEC_DNS" 10 >/dev/null || true
check "our secondary and the primary agree again ($((FLEET + 1)) targets)" same_srv "$SEC_DNS"

FLEET_SET="$(shard_targets "$P_DNS" || true)"
SCRAPERS="$(p +short SRV "_scraper._tcp.$ZONE")"
kill -KILL "$PRIMARY_PID" 2>/dev/null || true
wait "$PRIMARY_PID" 2>/dev/null || true
log "primary killed (SIGKILL)"
check "the primary is gone (no DNS answer)" bash -c "! dig @127.0.0.1 -p $P_DNS +norec +time=1 +tries=1 +short SOA $ZONE"
if ((HAVE_KNOT)); then
    check "without the primary, Knot still answers the same SRV set" same_fleet "$KNOT_PORT"
fi
check "without the primary, our secondary still answers the same SRV set" same_fleet "$SEC_DNS"
check "our secondary refuses an HTTP registration with 421" test "$(http -o /dev/null -w '%{http_code}' -X PUT \
    -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -d '{"address":"10.3.0.2","port":9091}' "$SEC_API/v1/services/exporter/instances/late-2")" = 421
sed "s/^server .*/server 127.0.0.1 $SEC_DNS/" "$WORK/add10.txt" >"$WORK/add10-secondary.txt"
check "our secondary refuses a signed DNS UPDATE (REFUSED)" update_refused "$KEY" "$WORK/add10-secondary.txt" 'REFUSED'
stop_bg "$SEC_PID"
start_bg secondary-restarted "$NS_BIN" --role secondary --primary "127.0.0.1:$P_DNS" \
    --dns.listen-address="127.0.0.1:$SEC_DNS" --http.listen-address="127.0.0.1:$SEC_HTTP" \
    --storage.path="$WORK/secondary-store" --dns.tsig-key-file "$KEY" --primary.tsig-key heimdall-update \
    --health.interval=0s --log.level=info
SEC_PID=$LAST_PID
if WAIT_PID=$SEC_PID wait_http "$SEC_API/health" 30; then
    check "our secondary, restarted while the primary is down, answers from its copy on disk" same_fleet "$SEC_DNS"
    check "... the scraper too" test "$(dig @127.0.0.1 -p "$SEC_DNS" +norec +time=3 +tries=1 +short SRV "_scraper._tcp.$ZONE")" = "$SCRAPERS"
else
    fail "our secondary restarts while the primary is down" "$(show_log secondary-restarted)"
fi

# The primary was killed (SIGKILL) right after late-1: back on the same ports and storage, it
# has everything, and the secondaries follow it again.
if REUSE_PORTS=1 start_primary primary-after-crash --dns.notify "127.0.0.1:$KNOT_PORT,127.0.0.1:$SEC_DNS"; then
    check "after SIGKILL the primary restarts with all $((FLEET + 1)) instances (late-1 included)" same_fleet "$P_DNS"
    check "our restarted secondary follows the primary again (same serial within 30 s)" wait_serial "$SEC_DNS" 30
    check "... and answers the same SRV sets" same_srv "$SEC_DNS"
    # The restart bumped the serial without changing the records: Knot, which saw no failed
    # refresh, may keep the older serial until its SOA refresh (60 s); a change is NOTIFYed.
    PAPI="http://127.0.0.1:$P_HTTP"
    check "register late-2 at the restarted primary (201)" test "$(pregister exporter late-2 '{"address":"10.3.0.2","port":9091}')" = 201
    check "our secondary picks late-2 up within 10 s" picked_up "$SEC_DNS" 10 late-2
    if ((HAVE_KNOT)); then
        check "Knot picks late-2 up within 10 s (NOTIFY from the restarted primary)" picked_up "$KNOT_PORT" 10 late-2
        wait_serial "$KNOT_PORT" 10 >/dev/null || true
        check "Knot and the restarted primary agree ($((FLEET + 2)) targets)" same_srv "$KNOT_PORT"
    fi
else
    fail "the primary restarts after SIGKILL on the same --storage.path and ports" "$(show_log primary-after-crash)"
fi

finish
