//! The exposition parser against outside data: the OpenMetrics parser test suite (every case
//! accepted or rejected as upstream says), Prometheus' own textparse fixtures and
//! node_exporter's golden output in both formats, and a seeded mutation loop over all of
//! them (no panic, errors placed on a real line).
//!
//! The data is read in place from `../shared/peer` (beside the clone); tests that need it say
//! so and pass when it is absent.

use std::path::{Path, PathBuf};

use heimdall_scraper::model::LabelsBuilder;
use heimdall_scraper::textparse::{Entry, Format, ParseError, Parser, Rules};

#[path = "../../benches/support/openmetrics.rs"]
mod openmetrics;
use openmetrics::to_openmetrics;

/// `../shared/peer/<rel>` beside the clone, if present.
fn peer(rel: &str) -> Option<PathBuf> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    ["../../shared/peer", "../../../shared/peer"]
        .iter()
        .map(|base| manifest.join(base).join(rel))
        .find(|p| p.exists())
}

fn skip(what: &str) {
    eprintln!("skipped: {what} not found under ../shared/peer (peer data absent)");
}

/// Parses everything, building every sample's and exemplar's labels as the scrape loop would
/// for new series. Returns the number of samples.
fn parse_all(input: &[u8], format: Format) -> Result<usize, ParseError> {
    let mut p = Parser::new(input, format);
    let mut samples = 0;
    while let Some(entry) = p.next()? {
        if let Entry::Sample(s) = entry {
            samples += 1;
            let mut b = LabelsBuilder::default();
            s.labels(&mut b);
            let labels = b.build();
            assert_eq!(labels.metric_name(), Some(s.name));
            if let Some(ex) = s.exemplar {
                ex.labels(&mut LabelsBuilder::default());
            }
        }
    }
    Ok(samples)
}

#[test]
fn openmetrics_suite_accepts_valid_and_rejects_invalid_cases() {
    let Some(dir) = peer("openmetrics-parsers/tests/testdata/parsers") else {
        return skip("openmetrics-parsers");
    };
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("read suite dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.join("test.json").exists())
        .collect();
    cases.sort();
    let (mut valid, mut invalid) = ((0, 0), (0, 0));
    let mut failures = Vec::new();
    for case in &cases {
        let name = case
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let json: String = std::fs::read_to_string(case.join("test.json"))
            .expect("test.json")
            .split_whitespace()
            .collect();
        let should_parse = if json.contains(r#""shouldParse":true"#) {
            true
        } else if json.contains(r#""shouldParse":false"#) {
            false
        } else {
            panic!("{name}: no shouldParse in test.json");
        };
        let input = std::fs::read(case.join("metrics")).expect("metrics");
        let result = parse_all(&input, Format::OpenMetrics);
        if let Err(e) = &result {
            assert!(e.line >= 1 && e.column >= 1, "{name}: {e}");
        }
        let tally = if should_parse {
            &mut valid
        } else {
            &mut invalid
        };
        tally.1 += 1;
        if result.is_ok() == should_parse {
            tally.0 += 1;
        } else {
            failures.push(match result {
                Ok(_) => format!("{name}: accepted, should be rejected"),
                Err(e) => format!("{name}: rejected ({e}), should be accepted"),
            });
        }
    }
    eprintln!(
        "OpenMetrics suite: {}/{} valid accepted, {}/{} invalid rejected",
        valid.0, valid.1, invalid.0, invalid.1
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!((valid, invalid), ((44, 44), (167, 167)));
}

/// A few invalid cases with the exact place and reason, so messages stay useful.
#[test]
fn openmetrics_suite_errors_say_where_and_why() {
    let Some(dir) = peer("openmetrics-parsers/tests/testdata/parsers") else {
        return skip("openmetrics-parsers");
    };
    for (case, want) in [
        ("bad_blank_line", "line 2, column 1: empty line"),
        ("bad_no_eof", "line 1, column 1: missing \"# EOF\""),
        ("bad_value_1", "line 1, column 3: expected one space"),
        (
            "bad_clashing_names_2",
            "line 2, column 8: metric family a clashes with the earlier family a_created",
        ),
        (
            "bad_histograms_9",
            "line 3, column 18: histogram buckets must be sorted",
        ),
        (
            "bad_counter_values_1",
            "line 2, column 9: a_total must not be negative",
        ),
        (
            "bad_text_after_eof_0",
            "line 3, column 1: unexpected text after",
        ),
        (
            "bad_histograms_2",
            "line 2, column 1: histogram a: a metric point has a_count and a_sum both or neither",
        ),
    ] {
        let input = std::fs::read(dir.join(case).join("metrics")).expect("metrics");
        let e = parse_all(&input, Format::OpenMetrics)
            .expect_err(case)
            .to_string();
        assert!(e.starts_with(want), "{case}: {e}\nwanted: {want}");
    }
}

#[test]
fn prometheus_textparse_fixtures() {
    let Some(dir) = peer("openmetrics-parsers/prometheus-textparse-testdata") else {
        return skip("prometheus-textparse-testdata");
    };
    let read = |f: &str| std::fs::read(dir.join(f)).expect(f);
    let text = read("alltypes.237mfs.prom.txt");
    let nometa = read("alltypes.237mfs.nometa.prom.txt");
    let n = parse_all(&text, Format::Text).expect("alltypes text");
    assert_eq!(parse_all(&nometa, Format::Text).expect("nometa"), n);
    assert!(n > 1000, "{n} samples");
    // Same samples with and without metadata, in order.
    assert_eq!(samples_of(&text), samples_of(&nometa));
    let types = Parser::new(&text, Format::Text);
    assert_eq!(count_types(types), 237);
    let n = parse_all(&read("1histogram.om.txt"), Format::OpenMetrics).expect("1histogram");
    assert_eq!(n, 42, "every non-# line of 1histogram.om.txt is a sample");
    // client_golang writes `_sum` on a histogram with negative buckets, which OpenMetrics 1.0
    // forbids (suite case bad_histograms_3): strict rules reject it, syntax-only takes it.
    let five = read("alltypes.5mfs.om.txt");
    let e = parse_all(&five, Format::OpenMetrics).expect_err("negative buckets with _sum");
    assert!(e.reason.contains("must not be negative"), "{e}");
    let mut p = Parser::with_rules(&five, Format::OpenMetrics, Rules::SyntaxOnly);
    let mut n = 0;
    while let Some(entry) = p
        .next()
        .unwrap_or_else(|e| panic!("alltypes.5mfs syntax: {e}"))
    {
        n += usize::from(matches!(entry, Entry::Sample(_)));
    }
    assert!(n > 30, "{n}");
    // The text fixture is not OpenMetrics (no `# EOF`, `_total` in counter family names).
    assert!(parse_all(&text, Format::OpenMetrics).is_err());
}

fn samples_of(input: &[u8]) -> Vec<(String, u64, Option<i64>)> {
    let mut p = Parser::new(input, Format::Text);
    let mut out = Vec::new();
    while let Some(e) = p.next().expect("valid") {
        if let Entry::Sample(s) = e {
            out.push((
                String::from_utf8_lossy(s.series).into_owned(),
                s.value.to_bits(),
                s.timestamp,
            ));
        }
    }
    out
}

fn count_types(mut p: Parser<'_>) -> usize {
    let mut n = 0;
    while let Some(e) = p.next().expect("valid") {
        n += usize::from(matches!(e, Entry::Type { .. }));
    }
    n
}

/// node_exporter's golden /metrics: valid text, and valid OpenMetrics once converted as an
/// exposer would write it (counter families without `_total`, `unknown` for `untyped`).
#[test]
fn node_exporter_golden_output_in_both_formats() {
    let Some(path) = peer("node-exporter/fixtures/e2e-output.txt") else {
        return skip("node-exporter/fixtures/e2e-output.txt");
    };
    let text = std::fs::read_to_string(path).expect("e2e-output.txt");
    let n = parse_all(text.as_bytes(), Format::Text).expect("golden text");
    let om = to_openmetrics(&text);
    let n_om = parse_all(om.as_bytes(), Format::OpenMetrics).expect("golden as OpenMetrics");
    assert_eq!(n, n_om);
    assert!(n > 1000, "{n} samples");
}

/// xorshift64*: a fixed seed makes failures reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Bytes the grammar cares about, to make mutations interesting.
const INTERESTING: &[u8] = b"{}\"\\=, #\n\t0123456789.eE+-_:aZ\xff\xc3\x00\rInfNaN";

fn mutate(rng: &mut Rng, input: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(input.len() + 1);
        match rng.below(6) {
            0 if at < input.len() => input[at] = INTERESTING[rng.below(INTERESTING.len())],
            1 => input.insert(at, INTERESTING[rng.below(INTERESTING.len())]),
            2 if at < input.len() => {
                input.remove(at);
            }
            3 if at < input.len() => {
                let end = (at + 1 + rng.below(32)).min(input.len());
                let chunk = input[at..end].to_vec();
                let to = rng.below(input.len() + 1);
                input.splice(to..to, chunk);
            }
            4 => input.truncate(at),
            _ if at < input.len() => input[at] = rng.next() as u8,
            _ => {}
        }
    }
}

#[test]
fn seeded_mutations_never_panic_and_errors_point_at_a_line() {
    let mut corpus: Vec<Vec<u8>> = vec![
        b"# HELP a h\\n\n# TYPE a counter\na_total{x=\"1\"} 1 2 # {t=\"q\"} 1 2\n# EOF\n".to_vec(),
        b"# TYPE h histogram\nh_bucket{le=\"1\"} 0\nh_bucket{le=\"+Inf\"} 1\nh_count 1\nh_sum 1\n# EOF\n".to_vec(),
        b"m{a=\"1\",b=\"\\\"\"} 1 1000\n# comment\n\nn 2\n".to_vec(),
    ];
    if let Some(dir) = peer("openmetrics-parsers/tests/testdata/parsers") {
        let mut cases: Vec<_> = std::fs::read_dir(dir)
            .expect("suite")
            .filter_map(|e| std::fs::read(e.ok()?.path().join("metrics")).ok())
            .collect();
        cases.sort();
        corpus.extend(cases);
    }
    if let Some(dir) = peer("openmetrics-parsers/prometheus-textparse-testdata") {
        for f in [
            "alltypes.237mfs.prom.txt",
            "alltypes.5mfs.om.txt",
            "1histogram.om.txt",
        ] {
            if let Ok(mut bytes) = std::fs::read(dir.join(f)) {
                bytes.truncate(4096);
                corpus.push(bytes);
            }
        }
    }
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut errors = 0;
    const MUTATIONS: usize = 50_000;
    for i in 0..MUTATIONS {
        let mut input = corpus[i % corpus.len()].clone();
        mutate(&mut rng, &mut input);
        let lines = input.split(|b| *b == b'\n').count();
        for format in [Format::Text, Format::OpenMetrics] {
            if let Err(e) = parse_all(&input, format) {
                errors += 1;
                assert!(
                    e.line >= 1 && e.line <= lines + 1 && e.column >= 1 && !e.reason.is_empty(),
                    "{format:?} {e} for {:?}",
                    String::from_utf8_lossy(&input)
                );
            }
        }
    }
    eprintln!("{MUTATIONS} mutations in 2 formats: {errors} rejected, none panicked");
    assert!(errors > 0, "mutations should produce some invalid input");
}
