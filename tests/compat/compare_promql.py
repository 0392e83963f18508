#!/usr/bin/env python3
"""Runs the same PromQL queries against two Prometheus-API servers and compares the results.

usage: compare_promql.py OURS_URL PROMETHEUS_URL
Instant queries at one time T and range queries over [T-10s, T] (step 2 s), T an odd second
(between two samples) 3 s in the past. Same series (label sets) and values within 1e-9 relative. Prints one
line per query and exits 1 if any differs.
"""
import json
import math
import sys
import time
import urllib.parse
import urllib.request

QUERIES = [
    "demo_requests_total",
    'demo_requests_total{code="200"}',
    'demo_requests_total{code=~"2.."}',
    'demo_requests_total{code!="200"}',
    'demo_requests_total{path!~"/a|/b"}',
    "demo_requests_total offset 4s",
    "demo_temp offset 6s",
    "rate(demo_requests_total[10s])",
    "rate(demo_requests_total[20s])",
    "irate(demo_requests_total[10s])",
    "increase(demo_requests_total[10s])",
    "increase(demo_requests_total[20s] offset 2s)",
    "rate(demo_latency_seconds_bucket[10s])",
    "sum(demo_requests_total)",
    "sum by (code) (rate(demo_requests_total[10s]))",
    "sum without (path) (demo_requests_total)",
    "avg(demo_temp)",
    "avg by (job) (demo_temp)",
    "min by (path) (demo_requests_total)",
    "max(demo_temp)",
    "max without (sensor) (demo_temp)",
    "count(demo_requests_total)",
    "count by (code) (demo_requests_total)",
    "demo_temp * 2 + 1",
    "100 - demo_temp",
    "demo_temp / 4",
    "demo_temp % 3",
    "demo_temp ^ 2",
    "-demo_temp",
    "demo_temp > 21",
    "demo_temp < bool 30",
    "2 * rate(demo_requests_total[10s]) > 5",
    "sum(rate(demo_requests_total[10s])) * 60",
    "demo_latency_seconds_sum / demo_latency_seconds_count",
    'up{job="demo"} == 1',
]


def get(base, path, params):
    url = base + path + "?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=20) as r:
        return json.load(r)


def norm(result, kind):
    out = {}
    for s in result:
        key = tuple(sorted(s["metric"].items()))
        if kind == "vector":
            out[key] = [(float(s["value"][0]), s["value"][1])]
        else:
            out[key] = [(float(t), v) for t, v in s["values"]]
    return out


def close(a, b):
    fa, fb = float(a), float(b)
    if math.isnan(fa) or math.isnan(fb):
        return math.isnan(fa) and math.isnan(fb)
    if fa == fb:
        return True
    return abs(fa - fb) <= 1e-9 * max(abs(fa), abs(fb))


def compare(q, ours, prom):
    if ours.get("status") != "success" or prom.get("status") != "success":
        return f"status ours={ours.get('status')} {ours.get('error', '')} prom={prom.get('status')} {prom.get('error', '')}"
    ko, kp = ours["data"]["resultType"], prom["data"]["resultType"]
    if ko != kp:
        return f"result type ours={ko} prom={kp}"
    if ko == "scalar":
        a, b = ours["data"]["result"], prom["data"]["result"]
        return None if close(a[1], b[1]) else f"scalar ours={a} prom={b}"
    a, b = norm(ours["data"]["result"], ko), norm(prom["data"]["result"], kp)
    if set(a) != set(b):
        return f"series differ: only ours {sorted(set(a) - set(b))[:3]}, only prom {sorted(set(b) - set(a))[:3]}"
    if not a:
        return "empty on both (the query tests nothing)"
    for k in a:
        pa, pb = a[k], b[k]
        if len(pa) != len(pb) or any(ta != tb or not close(va, vb) for (ta, va), (tb, vb) in zip(pa, pb)):
            return f"{dict(k)}: ours={pa[:4]} prom={pb[:4]}"
    return None


def main():
    ours, prom = sys.argv[1], sys.argv[2]
    # Samples sit on even seconds; evaluating at odd seconds keeps every window edge off a
    # sample, so Prometheus 2.x's closed ranges ([t-r, t]) and 3.x's left-open ones (ours,
    # (t-r, t]) select the same samples and the comparison tests evaluation, not the edge rule.
    t = (int(time.time()) - 4) // 2 * 2 + 1
    failed = 0
    for q in QUERIES:
        for kind, path, params in (
            ("instant", "/api/v1/query", {"query": q, "time": t}),
            ("range", "/api/v1/query_range", {"query": q, "start": t - 10, "end": t, "step": 2}),
        ):
            if q.startswith("up") and kind == "range":
                continue
            why = compare(q, get(ours, path, params), get(prom, path, params))
            print(f"{'ok  ' if why is None else 'FAIL'} {kind:7} {q}" + ("" if why is None else f"\n     {why}"))
            failed += why is not None
    print(f"{failed} of {2 * len(QUERIES) - 1} comparisons differ")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
