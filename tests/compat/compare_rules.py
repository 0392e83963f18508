#!/usr/bin/env python3
"""Compare what recording and alerting rules give for two instances in one Prometheus.

usage: compare_rules.py PROMETHEUS_URL OURS_INSTANCE PEER_INSTANCE

Prometheus scrapes our exporter and node_exporter on the same host as two targets of one job,
told apart by their `instance` label, and evaluates the same rule files. For each recording
rule, the series it yields for our instance (labels minus `instance`) must include every series
it yields for node_exporter's; for each rule file's alerts, the active alerts (pending or
firing; labels minus `instance`) must be the same for both, except for alerts over rates
(rate(), increase(), *_over_time(), ...), whose differences are only reported. Values are not compared (two
scrapes are never at the same instant); a difference must persist over 3 evaluations, 3 s
apart. Recording-rule series only we have are reported, not failed (Debian's node_exporter is
older than the version we follow); an alert active for one side only fails either way.

Prints one line per check ("ok   NAME: ..." / "FAIL NAME: ...") and "N passed, M failed".
"""

import json
import re
import sys
import time
import urllib.parse
import urllib.request


# Alerts over rates and other range functions: the two targets are scraped at different
# instants, so over the few samples a fresh Prometheus has, a threshold on a rate can be crossed
# for one and not the other. A difference there is reported, not failed.
RANGE_FN = re.compile(r"\b(rate|irate|increase|delta|idelta|deriv|predict_linear|changes|resets"
                      r"|[a-z]+_over_time)\s*\(")


def get(url, path, **params):
    q = urllib.parse.urlencode(params)
    with urllib.request.urlopen(f"{url}{path}?{q}" if q else f"{url}{path}", timeout=10) as r:
        d = json.load(r)
    if d.get("status") != "success":
        raise RuntimeError(f"{path}: {d}")
    return d["data"]


def key(labels, drop=("instance", "__name__")):
    return tuple(sorted((k, v) for k, v in labels.items() if k not in drop))


def fmt(k):
    return "{" + ",".join(f'{a}="{b}"' for a, b in k) + "}"


def evaluate(url, ours, peer):
    """One round: returns [(ok, name, summary, lines)]."""
    groups = get(url, "/api/v1/rules")["groups"]
    out = []

    def report(ok, name, summary, lines):
        out.append((ok, name, summary, lines))

    by_file = {}
    for g in groups:
        by_file.setdefault(g["file"].rsplit("/", 1)[-1], []).append(g)

    for fname, gs in sorted(by_file.items()):
        stem = fname.rsplit(".", 1)[0]
        alerts_ours, alerts_peer = set(), set()
        rate_alerts = set()
        n_alert_rules = 0
        for g in gs:
            for r in g["rules"]:
                if r["type"] == "recording":
                    res = get(url, "/api/v1/query", query=r["name"])["result"]
                    o = {key(s["metric"]) for s in res if s["metric"].get("instance") == ours}
                    p = {key(s["metric"]) for s in res if s["metric"].get("instance") == peer}
                    missing, extra = sorted(p - o), sorted(o - p)
                    lines = [f"- {fmt(k)} (node_exporter only)" for k in missing]
                    lines += [f"+ {fmt(k)} (ours only; not failed)" for k in extra]
                    if r.get("health") not in (None, "ok"):
                        lines.insert(0, f"rule health {r.get('health')}: {r.get('lastError')}")
                    report(not missing, f"{stem} record {r['name']}",
                           f"ours {len(o)} series, node_exporter {len(p)}", lines)
                elif r["type"] == "alerting":
                    n_alert_rules += 1
                    if RANGE_FN.search(r.get("query", "")):
                        rate_alerts.add(r["name"])
                    for a in r.get("alerts", []):
                        lab = a["labels"]
                        k = (lab.get("alertname", r["name"]),) + key(lab, ("instance", "alertname", "__name__"))
                        inst = lab.get("instance")
                        if inst == ours:
                            alerts_ours.add(k)
                        elif inst == peer:
                            alerts_peer.add(k)
        if n_alert_rules:
            missing, extra = sorted(alerts_peer - alerts_ours), sorted(alerts_ours - alerts_peer)
            hard = [k for k in missing + extra if k[0] not in rate_alerts]
            lines = [f"- {k[0]}{fmt(k[1:])} (active for node_exporter only)" for k in missing]
            lines += [f"+ {k[0]}{fmt(k[1:])} (active for ours only)" for k in extra]
            lines = [l + ("" if l.split("{")[0][2:] not in rate_alerts else
                          "; rate-based, so not failed: scrapes at other instants see other rates")
                     for l in lines]
            report(not hard, f"{stem} alerts",
                   f"{n_alert_rules} alert rules; active: ours {len(alerts_ours)}, "
                   f"node_exporter {len(alerts_peer)}", lines)
    return out


def main():
    url, ours, peer = sys.argv[1], sys.argv[2], sys.argv[3]
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    # Rates and thresholds are computed from scrapes at different instants: a difference must
    # persist over several rule evaluations to count.
    for i in range(rounds):
        results = evaluate(url, ours, peer)
        if all(ok for ok, *_ in results) or i == rounds - 1:
            break
        time.sleep(3)
    passed = failed = 0
    for ok, name, summary, lines in results:
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {summary}")
        for l in lines[:12]:
            print(f"     | {l}")
        if len(lines) > 12:
            print(f"     | ... {len(lines) - 12} more")
        if ok:
            passed += 1
        else:
            failed += 1
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
