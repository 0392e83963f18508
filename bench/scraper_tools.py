#!/usr/bin/env python3
"""Helpers of bench/scraper.sh (one subcommand each; every HTTP call has a timeout).

  config OUT PORT TARGETS INTERVAL_S         prometheus.yml for the fleet job (both scrapers)
  bfconfig OUT PORT TARGETS TAG INTERVAL      prometheus.yml for the backfill job
  metrics URL NAME...                         sum of each metric's samples in URL/metrics
  window URL T0 T1 INTERVAL_S TARGETS         missed / late / failed scrapes in (T0, T1] from
                                              the raw `up` and `scrape_duration_seconds` samples
  value URL QUERY TIME                        an instant query's single value (or "none")
  recover URL QUERY TIME WANT T_START LIMIT   seconds from T_START until /-/ready, then until
                                              QUERY at TIME equals WANT
  chunks ours|prom DIR EVERY                  encoded chunk bytes, samples, chunks and bytes per
                                              sample by part (decoded from every EVERY-th chunk) of
                                              our newest snapshot in DIR, or of a Prometheus
                                              snapshot's blocks in DIR
  rangebench URL QUERY START END STEP RUNS OUT   latency of a range query (median of RUNS)
  compare A B                                 max relative difference of two saved results
"""
import glob
import http.client
import json
import math
import os
import re
import struct
import sys
import time
import urllib.parse

TIMEOUT = 120


def get(url, params=None, timeout=TIMEOUT):
    u = urllib.parse.urlsplit(url)
    path = u.path or "/"
    if params:
        path += "?" + urllib.parse.urlencode(params)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def api(url, path, params):
    st, body = get(url + path, params)
    d = json.loads(body)
    if st != 200 or d.get("status") != "success":
        raise RuntimeError(f"{path} {params}: {st} {body[:300]!r}")
    return d["data"]


# --- configs -----------------------------------------------------------------------------------

def config(out, port, targets, interval):
    interval = int(interval)
    timeout = min(10, interval)
    lines = [
        "global:",
        f"  scrape_interval: {interval}s",
        f"  scrape_timeout: {timeout}s",
        "scrape_configs:",
        "  - job_name: fleet",
        "    static_configs:",
    ]
    for n in range(int(targets)):
        lines.append(f"      - targets: ['127.0.0.1:{port}']")
        lines.append(f"        labels: {{instance: 't{n}', __metrics_path__: '/t/{n}/metrics'}}")
    open(out, "w").write("\n".join(lines) + "\n")


def bfconfig(out, port, targets, tag, interval):
    lines = [
        "global:",
        f"  scrape_interval: {interval}",
        f"  scrape_timeout: {interval}",
        "scrape_configs:",
        "  - job_name: backfill",
        "    honor_timestamps: true",
        "    static_configs:",
    ]
    for n in range(int(targets)):
        lines.append(f"      - targets: ['127.0.0.1:{port}']")
        lines.append(f"        labels: {{instance: 'b{n}', __metrics_path__: '/bf/{tag}/{n}/metrics'}}")
    open(out, "w").write("\n".join(lines) + "\n")


# --- /metrics ----------------------------------------------------------------------------------

def metrics(url, names):
    st, body = get(url + "/metrics")
    sums = {n: None for n in names}
    for line in body.decode(errors="replace").splitlines():
        if not line or line[0] == "#":
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", line)
        if m and m.group(1) in sums:
            sums[m.group(1)] = (sums[m.group(1)] or 0.0) + float(m.group(3))
    print(" ".join("nan" if sums[n] is None else repr(sums[n]) for n in names))


# --- scrape regularity -------------------------------------------------------------------------

def raw(url, expr, t):
    return api(url, "/api/v1/query", {"query": expr, "time": f"{t:.3f}"})["result"]


def window(url, t0, t1, interval, targets):
    t0, t1, iv, targets = float(t0), float(t1), float(interval), int(targets)
    span = int(math.ceil(t1 - t0 + 3 * iv))
    ups = raw(url, f'up{{job="fleet"}}[{span}s]', t1)
    durs = raw(url, f'scrape_duration_seconds{{job="fleet"}}[{span}s]', t1)
    expected = int(round((t1 - t0) / iv)) * targets
    scrapes = failed = missed = late = 0
    seen = set()
    for s in ups:
        inst = s["metric"].get("instance")
        seen.add(inst)
        ts = [(float(t), float(v)) for t, v in s["values"]]
        inside = [x for x in ts if t0 < x[0] <= t1]
        scrapes += len(inside)
        failed += sum(1 for _, v in inside if v != 1)
        if not inside:
            missed += int(round((t1 - t0) / iv))
            continue
        prev = [x for x in ts if x[0] <= t0]
        times = ([prev[-1][0]] if prev else []) + [x[0] for x in inside]
        for a, b in zip(times, times[1:]):
            d = b - a
            if d >= 1.5 * iv:
                missed += int(round(d / iv)) - 1
            elif abs(d - iv) > 0.1 * iv:
                late += 1
        # A scrape due well before T1 that never came.
        tail = t1 - times[-1]
        if tail >= 1.5 * iv:
            missed += int(tail / iv - 0.5)
        if not prev:
            head = times[0] - t0
            if head >= 1.5 * iv:
                missed += int(head / iv - 0.5)
    missed += int(round((t1 - t0) / iv)) * max(0, targets - len(seen))
    d = sorted(float(v) for s in durs for t, v in s["values"] if t0 < float(t) <= t1)

    def pct(p):
        return d[min(len(d) - 1, int(p / 100 * (len(d) - 1) + 0.5))] * 1000 if d else float("nan")

    print(json.dumps({
        "expected": expected, "scrapes": scrapes, "failed": failed, "missed": missed,
        "late": late, "targets_seen": len(seen),
        "dur_p50_ms": round(pct(50), 1), "dur_p99_ms": round(pct(99), 1),
        "dur_max_ms": round(d[-1] * 1000, 1) if d else None,
    }))


def value(url, expr, t):
    try:
        r = api(url, "/api/v1/query", {"query": expr, "time": t})
    except Exception as e:  # noqa: BLE001 - "not yet" while a scraper restarts
        return None, str(e)
    res = r["result"]
    if r["resultType"] == "scalar":
        return res[1], None
    if not res:
        return "none", None
    return res[0]["value"][1], None


def recover(url, expr, t, want, t_start, limit):
    t_start, limit = float(t_start), float(limit)
    ready = data = None
    while time.time() - t_start < limit:
        try:
            st, _ = get(url + "/-/ready", timeout=2)
        except OSError:
            st = 0
        if st == 200:
            ready = time.time() - t_start
            break
        time.sleep(0.05)
    while ready is not None and time.time() - t_start < limit:
        v, _ = value(url, expr, t)
        if v == want:
            data = time.time() - t_start
            break
        time.sleep(0.1)
    f = lambda x: "nan" if x is None else f"{x:.2f}"  # noqa: E731
    print(f"{f(ready)} {f(data)}")


# --- chunks ------------------------------------------------------------------------------------

def uvarint(b, i):
    x = s = 0
    while True:
        c = b[i]
        i += 1
        x |= (c & 0x7F) << s
        if c < 0x80:
            return x, i
        s += 7


def our_chunk_iter(data_dir):
    """Our newest snapshot (tsdb/persist.rs): magic, then frames `u32 len, u32 crc, payload`."""
    snaps = sorted(p for p in glob.glob(os.path.join(data_dir, "snapshot.*")) if not p.endswith(".tmp"))
    if not snaps:
        return
    b = open(snaps[-1], "rb").read()
    assert b[:8] == b"HMDLSNP1", "not a snapshot"
    i = 8
    while i + 8 <= len(b):
        ln = struct.unpack_from("<I", b, i)[0]
        p, i = b[i + 8:i + 8 + ln], i + 8 + ln
        if p[0] != 3:
            continue
        j = 1
        _, j = uvarint(p, j)  # id
        nl, j = uvarint(p, j)
        for _ in range(2 * nl):
            ln2, j = uvarint(p, j)
            j += ln2
        _, j = uvarint(p, j)  # created_t
        _, j = uvarint(p, j)  # last_t
        j += 8  # last_v
        nc, j = uvarint(p, j)
        for _ in range(nc):
            _, j = uvarint(p, j)
            _, j = uvarint(p, j)
            ln2, j = uvarint(p, j)
            yield p[j:j + ln2]
            j += ln2
        if p[j] == 1:
            j += 1
            _, j = uvarint(p, j)
            ln2, j = uvarint(p, j)
            yield p[j:j + ln2]


def prom_chunk_iter(snap_dir):
    """Prometheus block chunk files: 8-byte header, then `uvarint len, u8 encoding, data, u32 crc`."""
    for meta in glob.glob(os.path.join(snap_dir, "*", "meta.json")):
        for f in sorted(glob.glob(os.path.join(os.path.dirname(meta), "chunks", "*"))):
            b = open(f, "rb").read()
            i = 8
            while i < len(b):
                ln, i = uvarint(b, i)
                enc, data = b[i], b[i + 1:i + 1 + ln]
                i += 1 + ln + 4
                if enc == 1:  # XOR
                    yield data


class Bits:
    def __init__(self, b):
        self.b, self.p = b, 16  # after the 2-byte sample count

    def read(self, n):
        v = 0
        for _ in range(n):
            v = (v << 1) | ((self.b[self.p >> 3] >> (7 - (self.p & 7))) & 1)
            self.p += 1
        return v

    def uvarint(self):
        x = s = 0
        while True:
            c = self.read(8)
            x |= (c & 0x7F) << s
            if c < 0x80:
                return x
            s += 7


def xor_bits(c, st):
    """Adds one XOR chunk's bits by part (first sample, timestamps, values) to `st`."""
    n = struct.unpack_from(">H", c, 0)[0]
    r = Bits(c)
    r.uvarint()
    r.read(64)
    st["first"] += r.p - 16
    lead = trail = None
    for i in range(1, n):
        p = r.p
        if i == 1:
            r.uvarint()
        elif r.read(1) == 0:
            st["dod0"] += 1
        else:
            for width in (14, 17, 20, 64):
                if width == 64 or r.read(1) == 0:
                    r.read(width)
                    break
        st["t"] += r.p - p
        p = r.p
        if r.read(1) == 1:
            if r.read(1) == 0 and lead is not None:
                r.read(64 - lead - trail)
            else:
                lead, sig = r.read(5), r.read(6) or 64
                trail = 64 - lead - sig
                r.read(sig)
        st["v"] += r.p - p
    st["n"] += n
    st["dods"] += max(0, n - 2)


def chunks(kind, where, every):
    """bytes samples chunks, then bits per sample of the first samples, timestamps, values and
    the share of delta-of-delta 0, decoded from every EVERY-th chunk."""
    every = int(every)
    it = our_chunk_iter(where) if kind == "ours" else prom_chunk_iter(where)
    nbytes = nsamples = nchunks = 0
    st = dict(first=0, t=0, v=0, n=0, dod0=0, dods=0)
    for c in it:
        if len(c) < 2:
            continue
        nbytes += len(c)
        nsamples += struct.unpack_from(">H", c, 0)[0]
        if nchunks % every == 0:
            xor_bits(c, st)
        nchunks += 1
    if not nsamples:
        print("nan nan nan nan nan nan nan")
        return
    n = max(st["n"], 1)
    print(f"{nbytes} {nsamples} {nchunks} {st['first'] / n / 8:.3f} {st['t'] / n / 8:.3f} "
          f"{st['v'] / n / 8:.3f} {st['dod0'] / max(st['dods'], 1):.4f}")


# --- range queries -----------------------------------------------------------------------------

def rangebench(url, expr, start, end, step, runs, out):
    u = urllib.parse.urlsplit(url)
    path = "/api/v1/query_range?" + urllib.parse.urlencode(
        {"query": expr, "start": start, "end": end, "step": step})
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=TIMEOUT)
    lat, body = [], b""
    for i in range(int(runs) + 1):
        t = time.perf_counter()
        conn.request("GET", path)
        r = conn.getresponse()
        body = r.read()
        dt = time.perf_counter() - t
        if r.status != 200:
            raise RuntimeError(f"{expr}: {r.status} {body[:300]!r}")
        if i > 0:  # the first run warms caches and is not counted
            lat.append(dt)
    res = json.loads(body)["data"]["result"]
    open(out, "w").write(json.dumps({"start": float(start), "result": res}))
    lat.sort()
    med = lat[len(lat) // 2] if len(lat) % 2 else (lat[len(lat) // 2 - 1] + lat[len(lat) // 2]) / 2
    p90 = lat[min(len(lat) - 1, int(0.9 * (len(lat) - 1) + 0.5))]
    print(f"{med * 1000:.1f} {p90 * 1000:.1f} {len(res)} {sum(len(s['values']) for s in res)} {len(body)}")


def compare(a, b):
    """Both backfills hold the same samples at different absolute times (each anchored when its
    scraper first asked), so points are matched by their offset from the query's start."""
    def load(p):
        d = json.load(open(p))
        return {tuple(sorted(s["metric"].items())):
                {round(float(t) - d["start"], 3): float(v) for t, v in s["values"]}
                for s in d["result"]}
    x, y = load(a), load(b)
    worst, missing = 0.0, 0
    for k in set(x) | set(y):
        if k not in x or k not in y:
            missing += 1
            continue
        for t in set(x[k]) | set(y[k]):
            if t not in x[k] or t not in y[k]:
                missing += 1
                continue
            u, v = x[k][t], y[k][t]
            if u != v:
                worst = max(worst, abs(u - v) / max(abs(u), abs(v), 1e-300))
    print(f"{worst:.2g} {missing}")


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "config":
        config(*args)
    elif cmd == "bfconfig":
        bfconfig(*args)
    elif cmd == "metrics":
        metrics(args[0], args[1:])
    elif cmd == "window":
        window(*args)
    elif cmd == "value":
        v, err = value(*args)
        print(v if v is not None else f"error: {err}")
    elif cmd == "recover":
        recover(*args)
    elif cmd == "chunks":
        chunks(*args)
    elif cmd == "rangebench":
        rangebench(*args)
    elif cmd == "compare":
        compare(*args)
    else:
        sys.exit(f"unknown subcommand {cmd}")


if __name__ == "__main__":
    main()
