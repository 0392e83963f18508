//! Golden test: every collector over the fixture tree in `tests/fixtures` (a small host
//! written for these tests), rendered and compared with `tests/fixtures/golden.txt`.
//!
//! Values that come from the machine running the test, not from the fixture files, are
//! masked: see [`mask`]. After a deliberate change of the output, refresh the file with
//! `UPDATE_GOLDEN=1 cargo test -p heimdall-exporter --test it golden` and review its diff.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use heimdall_exporter::collector::COLLECTORS;
use heimdall_exporter::exposition::Format;
use heimdall_exporter::scrape::Scraper;

use crate::harness;

const GOLDEN: &str = "fixtures/golden.txt";

/// Families whose samples depend on the host (clock, time zone, uname, build, timing):
/// dropped; their HELP/TYPE lines stay.
const DROPPED: &[&str] = &[
    "heimdall_exporter_build_info",
    "node_scrape_collector_duration_seconds",
    "node_time_seconds",
    "node_time_zone_offset_seconds",
    "node_uname_info",
];

/// Families whose values come from statvfs of the (fixture) mount points on the host's
/// filesystem: labels kept, value replaced.
const STATVFS: &[&str] = &[
    "node_filesystem_avail_bytes",
    "node_filesystem_files",
    "node_filesystem_files_free",
    "node_filesystem_free_bytes",
    "node_filesystem_size_bytes",
];

const STATVFS_TOKEN: &str = "<statvfs>";
/// `node_sockstat_*_mem_bytes` is `mem` (pages, from the fixture) × the host's page size.
const PAGE_TOKEN: &str = "<mem*pagesize>";

/// Command-line flags of the golden scrape: every path into the fixture tree, every
/// collector on, and the optional families of `cpu` and `stat`.
fn args() -> Vec<String> {
    let root = harness::data("fixtures");
    let mut args = vec![
        "heimdall-exporter".to_owned(),
        format!("--path.procfs={}", root.join("proc").display()),
        format!("--path.sysfs={}", root.join("sys").display()),
        format!("--path.rootfs={}", root.join("root").display()),
        format!("--path.udev.data={}", root.join("udev/data").display()),
        "--collector.cpu.info".to_owned(),
        "--collector.cpu.info.flags-include=^(aes|rdrand|sse4_2)$".to_owned(),
        "--collector.cpu.info.bugs-include=^(cpu_meltdown|mds|spectre_v2)$".to_owned(),
        "--collector.stat.softirq".to_owned(),
    ];
    for reg in COLLECTORS.iter().filter(|r| !r.enabled_by_default) {
        args.push(format!("--collector.{}", reg.name));
    }
    args
}

/// The exposition of one scrape of the fixture tree, and why collectors failed.
async fn render(format: Format) -> (String, Vec<(&'static str, String)>) {
    let config = heimdall_exporter::config::parse_from(args()).expect("config");
    let scraper = Scraper::new(
        &config.enabled,
        &config.cli.collectors,
        config.paths(),
        config.cli.collector_timeout,
    )
    .expect("scraper");
    let all = scraper.select(&[], &[]).expect("all collectors");
    let mut out = Vec::new();
    scraper.scrape(&all, format, &mut out).await;
    let errors = scraper
        .statuses()
        .into_iter()
        .filter_map(|(name, st)| st.error.map(|e| (name, e)))
        .collect();
    (String::from_utf8(out).expect("UTF-8 exposition"), errors)
}

/// The metric name of a sample line.
fn sample_name(line: &str) -> &str {
    let end = line.find(['{', ' ']).unwrap_or(line.len());
    &line[..end]
}

/// Splits a sample line into everything before the value and the value (the text format
/// has no timestamps here).
fn split_value(line: &str) -> (&str, &str) {
    let at = line.rfind(' ').expect("sample line has a value");
    (&line[..at], &line[at + 1..])
}

fn is_page_scaled(name: &str) -> bool {
    name.starts_with("node_sockstat_") && name.ends_with("_mem_bytes")
}

/// Removes or masks what depends on the host rather than on the fixture files.
fn mask(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if !line.starts_with('#') {
            let name = sample_name(line);
            if DROPPED.contains(&name) {
                continue;
            }
            let token = if STATVFS.contains(&name) {
                Some(STATVFS_TOKEN)
            } else if is_page_scaled(name) {
                Some(PAGE_TOKEN)
            } else {
                None
            };
            if let Some(token) = token {
                let (head, _) = split_value(line);
                let _ = writeln!(out, "{head} {token}");
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// A line diff (longest common subsequence) of `want` → `got`, with 2 lines of context.
fn diff(want: &str, got: &str) -> String {
    let a: Vec<&str> = want.lines().collect();
    let b: Vec<&str> = got.lines().collect();
    let (n, m) = (a.len(), b.len());
    // lcs[i][j]: length of the LCS of a[i..] and b[j..].
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut ops: Vec<(char, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            ops.push((' ', a[i]));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            ops.push(('-', a[i]));
            i += 1;
        } else {
            ops.push(('+', b[j]));
            j += 1;
        }
    }
    let changed: Vec<usize> = (0..ops.len()).filter(|&k| ops[k].0 != ' ').collect();
    let mut out = String::new();
    let mut last_shown: Option<usize> = None;
    for (k, (sign, line)) in ops.iter().enumerate() {
        let near = changed.iter().any(|&c| c.abs_diff(k) <= 2);
        if !near {
            continue;
        }
        if last_shown.is_some_and(|l| l + 1 != k) {
            out.push_str("   ...\n");
        }
        let _ = writeln!(out, "{sign} {line}");
        last_shown = Some(k);
    }
    out
}

#[tokio::test]
async fn golden_metrics_of_the_fixture_tree() {
    let (text, _) = render(Format::Text).await;
    let got = mask(&text);
    let path = harness::data(GOLDEN);
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::write(&path, &got).expect("write golden file");
        eprintln!("rewrote {}", path.display());
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "reading {}: {e}; create it with UPDATE_GOLDEN=1",
            path.display()
        )
    });
    if want != got {
        panic!(
            "/metrics of the fixture tree differs from {GOLDEN} (- expected, + actual); if the \
             change is intended, rerun with UPDATE_GOLDEN=1 and review the diff:\n{}",
            diff(&want, &got)
        );
    }
}

/// Each collector must run cleanly on the fixture tree: a collector whose files the tree
/// lacks reports `success 0` (or no data) and fails here, not just in the golden diff.
#[tokio::test]
async fn golden_every_collector_succeeds_on_the_fixture_tree() {
    let (text, errors) = render(Format::Text).await;
    let mut failed = Vec::new();
    for reg in COLLECTORS {
        let want = format!(
            "node_scrape_collector_success{{collector=\"{}\"}} 1\n",
            reg.name
        );
        if !text.contains(&want) {
            failed.push(reg.name);
        }
    }
    assert!(
        failed.is_empty(),
        "collectors without success on tests/fixtures: {failed:?}; errors: {errors:?}"
    );

    // The page-size mask hides a product: check it is mem × a plausible page size.
    let values: BTreeMap<&str, f64> = text
        .lines()
        .filter(|l| l.starts_with("node_sockstat_"))
        .map(|l| {
            let (head, v) = split_value(l);
            (head, v.parse().expect("sockstat value"))
        })
        .collect();
    let mut checked = 0;
    for (name, &bytes) in &values {
        if let Some(proto) = name.strip_suffix("_mem_bytes") {
            let pages = values[format!("{proto}_mem").as_str()];
            let page = bytes / pages;
            assert!(
                page >= 4096.0 && (page as u64).is_power_of_two(),
                "{name} = {bytes} is not {proto}_mem ({pages}) × a page size"
            );
            checked += 1;
        }
    }
    assert!(checked > 0, "no node_sockstat_*_mem_bytes in the output");
}

/// The same tree in OpenMetrics: well-formed families, counters named without `_total` in
/// their metadata and with it on their samples, and a final `# EOF`.
#[tokio::test]
async fn golden_openmetrics_rendering_is_well_formed() {
    let (text, _) = render(Format::OpenMetrics).await;
    assert!(text.ends_with("\n# EOF\n"), "no final # EOF");
    let body = text.strip_suffix("# EOF\n").unwrap();
    assert!(!body.contains("# EOF"), "# EOF before the end");

    let mut family: Option<(String, String)> = None; // (name, type)
    let mut helped: Option<String> = None;
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut samples = 0;
    for (n, line) in body.lines().enumerate() {
        let at = n + 1;
        assert!(!line.is_empty(), "line {at}: empty line");
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            helped = Some(name.to_owned());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let (name, kind) = (parts.next().unwrap(), parts.next().unwrap_or(""));
            assert!(
                ["counter", "gauge", "unknown"].contains(&kind),
                "line {at}: type {kind:?}"
            );
            if let Some(h) = helped.take() {
                assert_eq!(h, name, "line {at}: HELP and TYPE of different families");
            }
            if kind == "counter" {
                assert!(
                    !name.ends_with("_total"),
                    "line {at}: counter family {name} keeps _total in its TYPE line"
                );
            }
            assert!(
                seen.insert(name.to_owned()),
                "line {at}: family {name} appears twice"
            );
            family = Some((name.to_owned(), kind.to_owned()));
            continue;
        }
        assert!(
            !line.starts_with('#'),
            "line {at}: unexpected comment {line:?}"
        );
        let (fam, kind) = family
            .as_ref()
            .unwrap_or_else(|| panic!("line {at}: sample before any TYPE"));
        let name = sample_name(line);
        let want = if kind == "counter" {
            format!("{fam}_total")
        } else {
            fam.clone()
        };
        assert_eq!(name, want, "line {at}: sample outside its family");
        let (head, value) = split_value(line);
        assert!(
            head == name || (head.starts_with(&format!("{name}{{")) && head.ends_with('}')),
            "line {at}: malformed labels in {line:?}"
        );
        assert!(
            value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value),
            "line {at}: bad value {value:?}"
        );
        samples += 1;
    }
    assert!(samples > 100, "only {samples} samples");
    assert!(
        seen.contains("node_cpu_seconds") && seen.contains("node_memory_MemTotal_bytes"),
        "main families missing"
    );
}
