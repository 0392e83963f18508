//! `file_sd_configs`: targets from JSON or YAML files, the format Prometheus reads:
//!
//! ```json
//! [ { "targets": ["10.0.0.1:9090", "web-2:9090"], "labels": { "env": "prod" } } ]
//! ```
//!
//! Paths may hold `*` and `?` in their last element (`/etc/heimdall/targets/*.json`). Files are
//! checked every [`POLL`] (modification time and size) and re-read when they change, and all are
//! re-read every `refresh_interval`. A file that cannot be read or parsed keeps its last good
//! groups (the error is logged with the file and the reason); a deleted file's groups go.
//! Each target gets `__meta_filepath`. Files over [`MAX_FILE_BYTES`] are refused.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::{ADDRESS_LABEL, Sink, TargetGroup};
use crate::model::{Labels, is_valid_label_name};

/// How often file metadata is checked for changes.
pub const POLL: Duration = Duration::from_secs(5);
/// Larger files are refused (a target list of that size is a mistake).
pub const MAX_FILE_BYTES: u64 = 32 * 1024 * 1024;

/// One `file_sd_config`.
#[derive(Debug, Clone, PartialEq)]
pub struct FileSdOptions {
    pub files: Vec<String>,
    pub refresh_interval: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileGroup {
    #[serde(default)]
    targets: Vec<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// Parses one file's text (JSON for `.json`, else YAML) into groups.
pub fn parse(path: &Path, text: &str) -> Result<Vec<TargetGroup>, String> {
    let groups: Vec<FileGroup> = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(text).map_err(|e| e.to_string())?
    } else {
        serde_yaml_ng::from_str::<Option<Vec<FileGroup>>>(text)
            .map_err(|e| e.to_string())?
            .unwrap_or_default()
    };
    let filepath = path.display().to_string();
    let mut out = Vec::with_capacity(groups.len());
    for (i, g) in groups.into_iter().enumerate() {
        for name in g.labels.keys() {
            if !is_valid_label_name(name) {
                return Err(format!("group {i}: invalid label name {name:?}"));
            }
        }
        let mut targets = Vec::with_capacity(g.targets.len());
        for t in g.targets {
            if t.is_empty() || t.contains('/') {
                return Err(format!("group {i}: invalid target {t:?} (want host:port)"));
            }
            targets.push(Labels::from_pairs([
                (ADDRESS_LABEL, t),
                ("__meta_filepath", filepath.clone()),
            ]));
        }
        out.push(TargetGroup {
            source: format!("{filepath}:{i}"),
            targets,
            labels: Labels::from_pairs(g.labels),
        });
    }
    Ok(out)
}

/// Whether `name` matches `pattern` (`*` any run, `?` one character).
fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// The files a configured path stands for now.
fn expand(pattern: &str) -> Vec<PathBuf> {
    let path = Path::new(pattern);
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return Vec::new();
    };
    if !name.contains(['*', '?']) {
        return vec![path.to_owned()];
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_str().is_some_and(|n| glob_match(name, n)))
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

/// A file discoverer.
#[derive(Debug)]
pub struct FileSd {
    opts: FileSdOptions,
}

impl FileSd {
    pub fn new(opts: FileSdOptions) -> Self {
        Self { opts }
    }

    /// Reads the files on change and every `refresh_interval` until `shutdown`.
    pub async fn run(self, sink: Sink, shutdown: CancellationToken) {
        let mut groups: BTreeMap<PathBuf, Vec<TargetGroup>> = BTreeMap::new();
        let mut seen: HashMap<PathBuf, (Option<SystemTime>, u64)> = HashMap::new();
        let mut last_full = Instant::now();
        let mut first = true;
        loop {
            let full = first || last_full.elapsed() >= self.opts.refresh_interval;
            if full {
                last_full = Instant::now();
            }
            let files: Vec<PathBuf> = self.opts.files.iter().flat_map(|p| expand(p)).collect();
            groups.retain(|p, _| files.contains(p));
            seen.retain(|p, _| files.contains(p));
            for file in &files {
                let meta = tokio::fs::metadata(file).await;
                let stamp = meta.as_ref().ok().map(|m| (m.modified().ok(), m.len()));
                if !full && stamp.is_some() && stamp == seen.get(file).copied() {
                    continue;
                }
                match read(file, meta).await {
                    Ok(g) => {
                        groups.insert(file.clone(), g);
                    }
                    Err(e) => {
                        tracing::warn!(file = %file.display(), error = %e, "file discovery: keeping the last good targets");
                    }
                }
                if let Some(s) = stamp {
                    seen.insert(file.clone(), s);
                }
            }
            first = false;
            sink.set(groups.values().flatten().cloned().collect());
            tokio::select! {
                () = tokio::time::sleep(POLL.min(self.opts.refresh_interval)) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }
}

async fn read(
    file: &Path,
    meta: std::io::Result<std::fs::Metadata>,
) -> Result<Vec<TargetGroup>, String> {
    let meta = meta.map_err(|e| e.to_string())?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!(
            "{} bytes is over the {MAX_FILE_BYTES}-byte limit",
            meta.len()
        ));
    }
    let text = tokio::fs::read_to_string(file)
        .await
        .map_err(|e| e.to_string())?;
    parse(file, &text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::Discovered;

    #[test]
    fn parses_json_and_yaml_as_prometheus_does() {
        let json = r#"[{"targets": ["a:1", "b:2"], "labels": {"env": "prod"}}, {"targets": []}]"#;
        let g = parse(Path::new("/t/x.json"), json).unwrap();
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].targets.len(), 2);
        assert_eq!(g[0].targets[0].get("__address__"), Some("a:1"));
        assert_eq!(g[0].targets[0].get("__meta_filepath"), Some("/t/x.json"));
        assert_eq!(g[0].labels.get("env"), Some("prod"));
        assert_eq!(g[0].source, "/t/x.json:0");
        let yaml = "- targets: ['c:3']\n  labels:\n    rack: r1\n";
        let g = parse(Path::new("x.yml"), yaml).unwrap();
        assert_eq!(g[0].targets[0].get("__address__"), Some("c:3"));
        assert!(parse(Path::new("x.yml"), "").unwrap().is_empty());
        for bad in [
            r#"[{"targets": ["a:1"], "labelz": {}}]"#,
            r#"[{"targets": ["a:1"], "labels": {"1x": "y"}}]"#,
            r#"[{"targets": [""]}]"#,
            r#"{"targets": []}"#,
        ] {
            assert!(parse(Path::new("x.json"), bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn globs_match_the_last_element() {
        assert!(glob_match("*.json", "a.json"));
        assert!(glob_match("t?.yml", "t1.yml"));
        assert!(!glob_match("*.json", "a.yml"));
        assert!(glob_match("a*b*c", "aXXbYc"));
        assert!(!glob_match("a*b", "a"));
    }

    #[tokio::test]
    async fn files_are_read_and_a_broken_file_keeps_its_targets() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.json");
        std::fs::write(&file, r#"[{"targets": ["a:1"]}]"#).unwrap();
        let d = Discovered::new();
        let stop = CancellationToken::new();
        let sd = FileSd::new(FileSdOptions {
            files: vec![dir.path().join("*.json").display().to_string()],
            refresh_interval: Duration::from_millis(50),
        });
        let task = tokio::spawn(sd.run(d.sink("j", 0), stop.clone()));
        let wait_for = |n: usize| {
            let d = d.clone();
            async move {
                for _ in 0..200 {
                    if d.groups("j").iter().map(|g| g.targets.len()).sum::<usize>() == n {
                        return true;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                false
            }
        };
        assert!(wait_for(1).await);
        std::fs::write(&file, "not json").unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(wait_for(1).await, "a broken file keeps its last targets");
        std::fs::write(&file, r#"[{"targets": ["a:1", "b:2"]}]"#).unwrap();
        assert!(wait_for(2).await);
        std::fs::remove_file(&file).unwrap();
        assert!(wait_for(0).await, "a deleted file's targets go");
        stop.cancel();
        task.await.unwrap();
    }
}
