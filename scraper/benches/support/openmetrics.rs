//! Shared by the textparse bench and integration test: a text exposition rewritten as an
//! OpenMetrics exposer would write it, so both formats can be measured and checked on the same
//! real data.

/// Rewrites a text exposition as OpenMetrics: counter families lose `_total` in metadata (or
/// become `unknown` when their samples lack it), `untyped` becomes `unknown`, `# EOF` ends it.
pub fn to_openmetrics(text: &str) -> String {
    let typed: std::collections::HashSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    // Counters whose OpenMetrics family name would be free (not another family's name).
    let counters: std::collections::HashSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .filter(|n| {
            n.strip_suffix("_total")
                .is_some_and(|stem| !typed.contains(stem))
        })
        .collect();
    let mut out = String::with_capacity(text.len() + 16);
    for line in text.lines() {
        let meta = ["# HELP ", "# TYPE "]
            .iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (*p, rest)));
        match meta {
            Some((p, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let counter = counters.contains(name);
                let om_name = match name.strip_suffix("_total") {
                    Some(stem) if counter => stem,
                    _ => name,
                };
                let tail = match tail {
                    "untyped" => "unknown",
                    "counter" if om_name == name => "unknown",
                    t => t,
                };
                out.push_str(&format!("{p}{om_name} {tail}\n"));
            }
            None if line.starts_with('#') || line.trim().is_empty() => {}
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out.push_str("# EOF\n");
    out
}
