#!/usr/bin/env python3
"""A deterministic scrape target for tests/compat/scraper.sh.

Every value is an exact function of the current 2-second time bucket, exposed with the
bucket's timestamp (ms). Scraped every second, each bucket is read at least once by any
scraper, and a second read of the same bucket repeats the same timestamp and value (a
duplicate both Prometheus and we ignore): two scrapers end up with the same samples.

usage: fake_target.py PORT
"""
import http.server
import sys
import time

BUCKET = 2  # seconds


def body() -> bytes:
    t = int(time.time()) // BUCKET * BUCKET
    ms = t * 1000
    k = t // BUCKET
    lines = [
        "# HELP demo_requests_total Requests served.",
        "# TYPE demo_requests_total counter",
    ]
    for code, path, rate in (("200", "/a", 3), ("200", "/b", 7), ("500", "/a", 1), ("404", "/c", 2)):
        # A counter reset every 50 buckets for one series: rate() must handle it the same way.
        v = rate * k if code != "404" else 2 * (k % 50) + 0.5
        lines.append(f'demo_requests_total{{code="{code}",path="{path}"}} {v} {ms}')
    lines += ["# HELP demo_temp Temperature.", "# TYPE demo_temp gauge"]
    for sensor, base in (("a", 20.0), ("b", 35.5)):
        lines.append(f'demo_temp{{sensor="{sensor}"}} {base + (k % 13) * 0.25} {ms}')
    lines += ["# TYPE demo_latency_seconds histogram"]
    cum = 0
    for le, w in (("0.1", 5), ("0.5", 3), ("1", 1), ("+Inf", 1)):
        cum += w * k
        lines.append(f'demo_latency_seconds_bucket{{le="{le}"}} {cum} {ms}')
    lines.append(f"demo_latency_seconds_sum {k * 3.25} {ms}")
    lines.append(f"demo_latency_seconds_count {cum} {ms}")
    return ("\n".join(lines) + "\n").encode()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path.split("?")[0] != "/metrics":
            self.send_error(404)
            return
        b = body()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
