//! `heimdall check metrics` as a user runs it: the real binary, an exposition on stdin.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn check(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_heimdall"))
        .args(["check", "metrics"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn heimdall");
    let mut pipe = child.stdin.take().expect("stdin");
    // A rejected input may close stdin early; the exit code is what matters.
    let _ = pipe.write_all(stdin);
    drop(pipe);
    child.wait_with_output().expect("wait")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn valid_text_exposition_passes_with_lint_warnings() {
    let out = check(
        &[],
        b"# HELP up Up.\n# TYPE up gauge\nup 1\n# TYPE requests counter\nrequests{code=\"200\"} 3\n",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "OK: 2 families, 2 samples\n");
    let err = text(&out.stderr);
    assert!(
        err.contains("warning: line 4: requests: no help text"),
        "{err}"
    );
    assert!(
        err.contains("counter metrics should have \"_total\" suffix"),
        "{err}"
    );
}

#[test]
fn invalid_exposition_fails_with_line_column_and_reason() {
    let out = check(&["--format", "text"], b"up 1\nup{job=\"a\" 1\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(
        text(&out.stderr).starts_with("line 2, column 12: expected ',' or '}'"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn format_is_detected_from_eof_and_can_be_forced() {
    let om = b"# TYPE a counter\n# HELP a A.\na_total 1\n# EOF\n";
    let out = check(&[], om);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "OK: 1 families, 1 samples\n");
    // Without `# EOF` the same input is text, unless OpenMetrics is asked for.
    let out = check(&["--format", "openmetrics"], &om[..om.len() - 6]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("missing \"# EOF\""));
    let out = check(&["--format", "yaml"], om);
    assert_ne!(out.status.code(), Some(0));
}

#[test]
fn oversized_input_is_refused() {
    let line = b"m 1\n".repeat(1 << 20);
    let big: Vec<u8> = line.iter().copied().cycle().take((64 << 20) + 8).collect();
    let out = check(&["--format", "text"], &big);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("larger than 64 MiB"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn openmetrics_suite_through_the_binary() {
    let Some(dir) = [
        "../shared/peer/openmetrics-parsers/tests/testdata/parsers",
        "../../shared/peer/openmetrics-parsers/tests/testdata/parsers",
    ]
    .iter()
    .map(|p| Path::new(env!("CARGO_MANIFEST_DIR")).join(p))
    .find(|p| p.exists()) else {
        eprintln!("skipped: ../shared/peer/openmetrics-parsers absent");
        return;
    };
    for (case, code) in [
        ("simple_histogram", 0),
        ("bad_histograms_3", 1),
        ("no_newline_after_eof", 0),
    ] {
        let input = std::fs::read(dir.join(case).join("metrics")).expect("metrics");
        let out = check(&["--format", "openmetrics"], &input);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{case}: {}",
            text(&out.stderr)
        );
    }
}
