#!/usr/bin/env python3
"""Compare two Prometheus text expositions (0.0.4) family by family, grouped by collector.

usage:
  compare_families.py golden --expected GOLDEN --actual OURS --collectors cpu,stat,...
  compare_families.py live   --expected PEER   --actual OURS --collectors cpu,stat,...
  compare_families.py text   --expected GOLDEN --actual OURS --collectors cpu,stat,...
  compare_families.py owners --actual OURS      # which collector owns each family (debugging)

golden: node_exporter's fixture output against ours on the same fixture tree. A family
  matches when its TYPE and its set of (labels, value) samples are identical (values compared
  as floats, relative tolerance 1e-12). Sample lines that upstream's e2e script strips
  (--strip-re, default = upstream's list) are dropped from both sides, and those families
  compare by TYPE only. A family only one side has is a mismatch.
live: a running node_exporter (possibly older) against ours on this host. A family matches when
  TYPE and the set of label sets are equal; sample values are compared only for slow-changing
  families (STATIC_RE). A family only we have is reported, not failed (the peer may be older);
  a family the peer has and we lack, or label sets that differ, fail.

text: the exposition lines (HELP, TYPE, samples; upstream's stripped samples left out) of
  the given collectors' families, in order, must be identical: same order, same number
  formatting, same escaping. A unified diff is printed otherwise; exit 1.

HELP mismatches are warnings. Each collector is one check; the last line is
"N passed, M failed" and the exit code is 1 if any collector failed.
"""

import argparse
import math
import re
import sys

# Which collector owns which family (first match wins; full match on the family name).
OWNERS = [
    ("cpu", r"node_cpu_(seconds_total|guest_seconds_total|info|frequency_hertz|flag_info|bug_info"
            r"|core_throttles_total|package_throttles_total|isolated|online)"),
    ("stat", r"node_(boot_time_seconds|context_switches_total|forks_total|intr_total|procs_[a-z_]+"
             r"|softirqs_total)"),
    ("meminfo", r"node_memory_(?!numa_).+"),
    ("netdev", r"node_network_(receive|transmit)_(?!queue_length$).+"),
    ("netclass", r"node_network_.+"),
    ("hwmon", r"node_hwmon_.+"),
    ("thermal_zone", r"node_(thermal_zone|cooling_device)_.+"),
    ("netstat", r"node_netstat_.+"),
    ("sockstat", r"node_sockstat_.+"),
    ("vmstat", r"node_vmstat_.+"),
    ("pressure", r"node_pressure_.+"),
    ("processes", r"node_processes_.+"),
    ("filefd", r"node_filefd_.+"),
    ("entropy", r"node_entropy_.+"),
    ("os", r"node_os_.+"),
    ("time", r"node_time_.+"),
    ("loadavg", r"node_load(1|5|15)"),
    ("diskstats", r"node_disk_.+"),
    ("filesystem", r"node_filesystem_.+"),
    ("uname", r"node_uname_.+"),
    ("tcpstat", r"node_tcp_connection_states"),
]
OWNERS = [(c, re.compile(r)) for c, r in OWNERS]

# Families that belong to no collector we compare: process/runtime metrics, build info, the
# per-scrape meta metrics (node_scrape_collector_success is compared per collector below).
IGNORED_RE = re.compile(
    r"(go_|process_|promhttp_|heimdall_).*|node_exporter_build_info"
    r"|node_scrape_collector_(duration_seconds|success)")

# Sample lines upstream's end-to-end-test.sh removes before diffing (see SOURCE.md).
UPSTREAM_STRIP_RE = (r"(go_|node_exporter_build_info|node_scrape_collector_duration_seconds"
                     r"|process_|node_textfile_mtime_seconds|node_time_(zone|seconds)"
                     r"|node_network_(receive|transmit)_(bytes|packets)_total)")

# live mode: families whose sample values hardly change, so values are compared too.
STATIC_RE = re.compile(
    r"node_(memory_(MemTotal|SwapTotal|Hugepagesize|HugePages_Total)_bytes"
    r"|filesystem_(size_bytes|files|readonly|device_error)"
    r"|network_(mtu_bytes|up|info|speed_bytes|address_assign_type|carrier|device_id|dormant|flags"
    r"|iface_id|iface_link|iface_link_mode|protocol_type|transmit_queue_length|name_assign_type"
    r"|net_dev_group)"
    r"|uname_info|os_info|os_version|boot_time_seconds|entropy_pool_size_bits|filefd_maximum"
    r"|processes_max_processes|processes_max_threads|time_zone_offset_seconds|time_clocksource_.+"
    r"|cpu_info|cpu_isolated|disk_info|hwmon_chip_names|hwmon_sensor_label)")

# live mode: families whose label *values* come and go from one moment to the next (a process
# state or a TCP state that exists at one scrape and not the next): only label names compare.
VOLATILE_LABELS_RE = re.compile(r"node_(processes_state|processes_threads_state|tcp_connection_states)")

# live mode: labels that node_exporter added after the oldest version we compare with (Debian's
# 1.5), for families the golden file cannot tell about (collectors upstream's e2e run disables).
# When ours has exactly these labels on top of the peer's, the family is compared on the peer's.
KNOWN_ADDED_LABELS = [
    (re.compile(r"node_filesystem_(avail_bytes|device_error|files|files_free|free_bytes|readonly"
                r"|size_bytes)"),
     {"device_error"}, "node_exporter 1.8 (PR #2923) added device_error to every node_filesystem_*"),
]

SUFFIXES = ("_bucket", "_sum", "_count", "_total", "_created", "_info")


class Family:
    def __init__(self, name):
        self.name = name
        self.type = None
        self.help = None
        self.samples = {}  # (sample_name, ((label, value), ...)) -> float

    def label_sets(self):
        return set(self.samples)


def unescape(s, quote):
    out, i = [], 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            n = s[i + 1]
            if n == "n":
                out.append("\n")
            elif n == "\\":
                out.append("\\")
            elif n == '"' and quote:
                out.append('"')
            else:
                out.append("\\" + n)
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def parse_labels(s, lineno):
    """s starts after '{'; returns (labels tuple, rest after '}')."""
    labels, i = [], 0
    while True:
        while i < len(s) and s[i] in " ,":
            i += 1
        if i >= len(s):
            raise ValueError(f"line {lineno}: unterminated label set")
        if s[i] == "}":
            return tuple(sorted(labels)), s[i + 1:]
        m = re.match(r"[a-zA-Z_][a-zA-Z0-9_]*", s[i:])
        if not m:
            raise ValueError(f"line {lineno}: bad label name at {s[i:i + 20]!r}")
        name = m.group(0)
        i += len(name)
        while i < len(s) and s[i] == " ":
            i += 1
        if s[i:i + 2] != '="':
            raise ValueError(f"line {lineno}: expected =\" after label {name}")
        i += 2
        j, raw = i, []
        while j < len(s) and s[j] != '"':
            if s[j] == "\\":
                raw.append(s[j:j + 2])
                j += 2
            else:
                raw.append(s[j])
                j += 1
        if j >= len(s):
            raise ValueError(f"line {lineno}: unterminated label value")
        labels.append((name, unescape("".join(raw), True)))
        i = j + 1


def parse(text):
    fams = {}
    errors = []

    def fam(name):
        if name not in fams:
            fams[name] = Family(name)
        return fams[name]

    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 3 and parts[1] == "HELP":
                fam(parts[2]).help = unescape(parts[3], False) if len(parts) > 3 else ""
            elif len(parts) >= 4 and parts[1] == "TYPE":
                fam(parts[2]).type = parts[3].strip()
            continue
        try:
            m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)", line)
            if not m:
                raise ValueError(f"line {lineno}: bad sample line {line[:60]!r}")
            name = m.group(1)
            rest = line[len(name):]
            labels = ()
            if rest.startswith("{"):
                labels, rest = parse_labels(rest[1:], lineno)
            fields = rest.split()
            if not fields:
                raise ValueError(f"line {lineno}: no value")
            value = float(fields[0])
        except ValueError as e:
            errors.append(str(e))
            continue
        owner = name
        if name not in fams or fams[name].type is None:
            for suf in SUFFIXES:
                if name.endswith(suf) and name[: -len(suf)] in fams:
                    owner = name[: -len(suf)]
                    break
        f = fam(owner)
        key = (name, labels)
        if key in f.samples:
            errors.append(f"line {lineno}: duplicate sample {fmt_key(key)}")
        f.samples[key] = value
    return fams, errors


def owner_of(name):
    if IGNORED_RE.fullmatch(name):
        return None
    for c, r in OWNERS:
        if r.fullmatch(name):
            return c
    return "?"


def fmt_key(key):
    name, labels = key
    if not labels:
        return name
    return name + "{" + ",".join(f'{k}="{v}"' for k, v in labels) + "}"


def fmt_val(v):
    if v is None:
        return "absent"
    if not math.isfinite(v):
        return repr(v)
    if v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    return repr(v)


def same_value(a, b):
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if a == b:
        return True
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=0.0)


def by_collector(fams):
    out = {}
    for name, f in fams.items():
        c = owner_of(name)
        if c is None:
            continue
        out.setdefault(c, {})[name] = f
    return out


def success_sample(fams, collector):
    f = fams.get("node_scrape_collector_success")
    if not f:
        return None
    return f.samples.get(("node_scrape_collector_success", (("collector", collector),)))


def compare_family_golden(exp, act, stripped, max_lines):
    """Returns (ok, diff lines)."""
    diff = []
    if exp.type != act.type:
        diff.append(f"TYPE: expected {exp.type}, got {act.type}")
    if stripped:
        return not diff, diff
    ek, ak = set(exp.samples), set(act.samples)
    missing = sorted(ek - ak)
    extra = sorted(ak - ek)
    valdiff = sorted(k for k in ek & ak if not same_value(exp.samples[k], act.samples[k]))
    for k in missing:
        diff.append(f"- {fmt_key(k)} {fmt_val(exp.samples[k])}")
    for k in extra:
        diff.append(f"+ {fmt_key(k)} {fmt_val(act.samples[k])}")
    for k in valdiff:
        diff.append(f"~ {fmt_key(k)} expected {fmt_val(exp.samples[k])} got {fmt_val(act.samples[k])}")
    ok = not diff
    if len(diff) > max_lines:
        more = len(diff) - max_lines
        diff = diff[:max_lines] + [f"... {more} more lines ({len(missing)} missing, "
                                   f"{len(extra)} extra, {len(valdiff)} different values)"]
    return ok, diff


def label_names(fam):
    return {tuple(k for k, _ in labels) for _, labels in fam.samples}


def compare_family_live(exp, act, max_lines, golden=None):
    """Returns (ok, diff lines, notes)."""
    diff, notes = [], []
    if exp.type != act.type:
        diff.append(f"TYPE: node_exporter {exp.type}, ours {act.type}")
    if VOLATILE_LABELS_RE.fullmatch(exp.name):
        en, an = label_names(exp), label_names(act)
        if en and an and en != an:
            diff.append(f"label names: node_exporter {sorted(en)}, ours {sorted(an)}")
        return not diff, diff, notes
    act_samples = act.samples
    en, an = label_names(exp), label_names(act)
    if en != an and golden is not None and golden.samples:
        gn = label_names(golden)
        if gn == an and en != gn:
            # The peer is older: node_exporter's current golden output has our label names.
            keep = {k for names in en for k in names}
            notes.append(f"{exp.name}: label names differ as in node_exporter's newer golden "
                         f"output (ours {sorted(an)}, this node_exporter {sorted(en)}); "
                         f"compared on the older label names")
            act_samples = {}
            for (n, labels), v in act.samples.items():
                act_samples[(n, tuple(kv for kv in labels if kv[0] in keep))] = v
    if act_samples is act.samples and en != an:
        for rx, added, why in KNOWN_ADDED_LABELS:
            if rx.fullmatch(exp.name) and {tuple(sorted(set(n) | added)) for n in en} == an:
                notes.append(f"{exp.name}: ours has {sorted(added)} on top ({why}); "
                             f"compared without it")
                act_samples = {(n, tuple(kv for kv in labels if kv[0] not in added)): v
                               for (n, labels), v in act.samples.items()}
                break
    ek, ak = set(exp.samples), set(act_samples)
    missing = sorted(ek - ak)
    extra = sorted(ak - ek)
    for k in missing:
        diff.append(f"- {fmt_key(k)}   (node_exporter only)")
    for k in extra:
        diff.append(f"+ {fmt_key(k)}   (ours only)")
    if STATIC_RE.fullmatch(exp.name):
        for k in sorted(ek & ak):
            if not same_value(exp.samples[k], act_samples[k]):
                diff.append(f"~ {fmt_key(k)} node_exporter {fmt_val(exp.samples[k])} "
                            f"ours {fmt_val(act_samples[k])}")
    ok = not diff
    if len(diff) > max_lines:
        more = len(diff) - max_lines
        diff = diff[:max_lines] + [f"... {more} more lines ({len(missing)} node_exporter only, "
                                   f"{len(extra)} ours only)"]
    return ok, diff, notes


def owned_lines(path, collectors, strip_re):
    out = []
    with open(path, encoding="utf-8") as fh:
        for line in fh.read().split("\n"):
            if not line:
                continue
            if line.startswith("#"):
                parts = line.split(None, 3)
                if len(parts) < 3:
                    continue
                name = parts[2]
            else:
                m = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line)
                name = m.group(0) if m else ""
                if strip_re.match(name):
                    continue
            if owner_of(name) in collectors:
                out.append(line)
    return out


def text_mode(args):
    import difflib
    collectors = set(c for c in args.collectors.split(",") if c)
    strip_re = re.compile(args.strip_re)
    exp = owned_lines(args.expected, collectors, strip_re)
    act = owned_lines(args.actual, collectors, strip_re)
    if exp == act:
        print(f"identical: {len(exp)} lines")
        return 0
    diff = list(difflib.unified_diff(exp, act, "golden", "ours", lineterm="", n=1))
    print(f"{len(exp)} golden lines, {len(act)} ours; diff:")
    for l in diff[: args.max_diff_lines * 3]:
        print(l)
    if len(diff) > args.max_diff_lines * 3:
        print(f"... {len(diff) - args.max_diff_lines * 3} more diff lines")
    return 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["golden", "live", "owners", "text"])
    ap.add_argument("--expected", help="golden file, or the peer's /metrics")
    ap.add_argument("--actual", required=True, help="our /metrics")
    ap.add_argument("--collectors", default=",".join(c for c, _ in OWNERS))
    ap.add_argument("--strip-re", default=UPSTREAM_STRIP_RE,
                    help="golden: sample names dropped on both sides (families compare by TYPE)")
    ap.add_argument("--max-diff-lines", type=int, default=12)
    ap.add_argument("--allow-empty", action="store_true",
                    help="golden: a collector with no families on either side passes")
    ap.add_argument("--expected-name", default=None)
    ap.add_argument("--golden", help="live: node_exporter's golden output, to recognise label "
                    "names that changed since the (older) peer's version")
    args = ap.parse_args()

    with open(args.actual, encoding="utf-8") as fh:
        act_all, act_err = parse(fh.read())
    if args.mode == "owners":
        for name in sorted(act_all):
            print(f"{owner_of(name) or '-'}\t{name}")
        return 0
    if not args.expected:
        ap.error("--expected is required")
    if args.mode == "text":
        return text_mode(args)
    with open(args.expected, encoding="utf-8") as fh:
        exp_all, exp_err = parse(fh.read())
    golden = {}
    if args.golden:
        with open(args.golden, encoding="utf-8") as fh:
            golden, _ = parse(fh.read())
    peer = args.expected_name or ("golden" if args.mode == "golden" else "node_exporter")

    collectors = [c for c in args.collectors.split(",") if c]
    passed = failed = 0
    total_f = total_m = 0
    strip_re = re.compile(args.strip_re) if args.mode == "golden" else None

    for e in act_err:
        print(f"warning: ours: {e}")
    for e in exp_err:
        print(f"warning: {peer}: {e}")

    exp_by = by_collector(exp_all)
    act_by = by_collector(act_all)

    unowned = sorted(act_by.get("?", {}))
    if unowned:
        print(f"warning: families of ours owned by no known collector: {', '.join(unowned)}")

    summary = []
    for c in collectors:
        exp = exp_by.get(c, {})
        act = act_by.get(c, {})
        names = sorted(set(exp) | set(act))
        matched = 0
        problems = []   # failing families: (name, lines)
        notes = []      # reported, not failed
        warnings = []
        for name in names:
            e, a = exp.get(name), act.get(name)
            if e is None:
                if args.mode == "golden":
                    problems.append((name, [f"family only in ours ({a.type}, {len(a.samples)} samples)"]))
                else:
                    notes.append(f"{name}: ours only ({a.type}, {len(a.samples)} samples; "
                                 f"node_exporter may be older)")
                continue
            if a is None:
                problems.append((name, [f"missing in ours ({peer} has {e.type}, "
                                        f"{len(e.samples)} samples)"]))
                continue
            if args.mode == "golden":
                stripped = bool(strip_re.match(name))
                ok, diff = compare_family_golden(e, a, stripped, args.max_diff_lines)
            else:
                ok, diff, n = compare_family_live(e, a, args.max_diff_lines, golden.get(name))
                notes.extend(n)
            if e.help is not None and a.help is not None and e.help != a.help:
                warnings.append(f"HELP {name}: {peer}: {e.help!r} ours: {a.help!r}")
            if ok:
                matched += 1
            else:
                problems.append((name, diff))
        # node_scrape_collector_success{collector=c}
        es, as_ = success_sample(exp_all, c), success_sample(act_all, c)
        if args.mode == "golden":
            if es is not None and as_ != es:
                problems.append((f"node_scrape_collector_success{{collector=\"{c}\"}}",
                                 [f"expected {fmt_val(es)}, got {fmt_val(as_)}"]))
        else:
            if as_ is None:
                problems.append((f"node_scrape_collector_success{{collector=\"{c}\"}}",
                                 ["missing in ours"]))
            elif es is not None and es == 1 and as_ != 1:
                problems.append((f"node_scrape_collector_success{{collector=\"{c}\"}}",
                                 [f"node_exporter 1, ours {fmt_val(as_)}"]))
            elif es is not None and es != as_:
                notes.append(f"node_scrape_collector_success{{collector=\"{c}\"}}: "
                             f"node_exporter {fmt_val(es)}, ours {fmt_val(as_)}")
        total = len(names)
        ok = not problems and (total > 0 or args.mode == "live" or args.allow_empty)
        total_f += total
        total_m += matched
        status = "ok  " if ok else "FAIL"
        print(f"{status} {c}: {matched}/{total} families match")
        if total == 0 and args.mode == "golden" and not args.allow_empty:
            print(f"     | no families for {c} on either side")
        for name, lines in problems:
            print(f"     | {name}:")
            for l in lines:
                print(f"     |     {l}")
        for n in notes:
            print(f"     note: {n}")
        for w in warnings:
            print(f"     warning: {w}")
        if ok:
            passed += 1
        else:
            failed += 1
            summary.append(c)
    print(f"# families: {total_m}/{total_f} match across {len(collectors)} collectors")
    if summary:
        print(f"# collectors with differences: {', '.join(summary)}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
