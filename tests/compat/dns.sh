#!/usr/bin/env bash
# shellcheck disable=SC2317 # functions run through check() look unreachable to shellcheck
# Our nameserver against a real DNS client: Debian's dig (bind9-dnsutils).
#
# Starts heimdall-nameserver on free loopback ports with a registration token, registers
# instances over its HTTP API with curl, then asks dig for every record type we serve, over UDP
# and TCP: SRV (targets, ports, glue), A, AAAA, TXT labels, SOA/NS at the apex, NXDOMAIN and
# NODATA with the SOA in the authority section, case-insensitive names, serial bumps, deletion,
# the token check, and REFUSED for a zone we do not serve.
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
    --http.listen-address="127.0.0.1:$HTTP_PORT" --registry.token-file="$WORK/token" --log.level=warn
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

finish
