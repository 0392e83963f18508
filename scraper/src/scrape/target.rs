//! A scrape target: the label set its samples get, the URL it is scraped at, and its health
//! for `/api/v1/targets`. [`populate`] turns a discovered label set into a target exactly as
//! Prometheus' `PopulateLabels` does.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use crate::discovery::{ADDRESS_LABEL, TargetGroup};
use crate::model::{Labels, LabelsBuilder, is_valid_label_name};
use crate::relabel::{RelabelConfig, relabel};

pub const SCHEME_LABEL: &str = "__scheme__";
pub const METRICS_PATH_LABEL: &str = "__metrics_path__";
pub const SCRAPE_INTERVAL_LABEL: &str = "__scrape_interval__";
pub const SCRAPE_TIMEOUT_LABEL: &str = "__scrape_timeout__";
pub const PARAM_LABEL_PREFIX: &str = "__param_";
pub const INSTANCE_LABEL: &str = "instance";
pub const JOB_LABEL: &str = "job";

/// What a job contributes to its targets' labels.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetDefaults {
    pub job: String,
    pub scheme: String,
    pub metrics_path: String,
    pub params: BTreeMap<String, Vec<String>>,
    pub interval: Duration,
    pub timeout: Duration,
    pub relabel: Vec<RelabelConfig>,
}

/// Health as `/api/v1/targets` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Health {
    #[default]
    Unknown,
    Up,
    Down,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Up => "up",
            Health::Down => "down",
        }
    }
}

/// The outcome of the latest scrape.
#[derive(Debug, Clone, Default)]
pub struct ScrapeState {
    pub health: Health,
    pub last_error: String,
    pub last_scrape: Option<SystemTime>,
    pub last_duration: Duration,
    pub last_samples: usize,
}

/// One target of a scrape pool.
#[derive(Debug)]
pub struct Target {
    /// The labels every sample of this target gets (job, instance, group and relabeled labels).
    pub labels: Labels,
    /// The labels as discovered, before relabeling (`discoveredLabels` in the API).
    pub discovered: Labels,
    pub url: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub state: Mutex<ScrapeState>,
}

impl Target {
    pub fn state(&self) -> ScrapeState {
        match self.state.lock() {
            Ok(s) => s.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub fn set_state(&self, s: ScrapeState) {
        match self.state.lock() {
            Ok(mut g) => *g = s,
            Err(p) => *p.into_inner() = s,
        }
    }

    /// Identity of the target within its pool: its labels and URL.
    pub fn key(&self) -> (Labels, String) {
        (self.labels.clone(), self.url.clone())
    }
}

/// What became of a discovered label set.
#[derive(Debug)]
pub enum Populated {
    Target(Target),
    /// Relabeling dropped it (kept for `droppedTargets`).
    Dropped(Labels),
}

/// Builds the targets of every group (Prometheus' `TargetsFromGroup`): invalid ones are
/// reported in the error list and left out.
pub fn from_groups(groups: &[TargetGroup], d: &TargetDefaults) -> (Vec<Populated>, Vec<String>) {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for g in groups {
        for t in &g.targets {
            let mut b = g.labels.builder();
            for l in t {
                b.set(l.name.clone(), l.value.clone());
            }
            match populate(b, d) {
                Ok(p) => out.push(p),
                Err(e) => errors.push(format!("{}: {e}", g.source)),
            }
        }
    }
    (out, errors)
}

/// Prometheus' `PopulateLabels`: defaults, relabeling, checks, instance, URL.
pub fn populate(mut b: LabelsBuilder, d: &TargetDefaults) -> Result<Populated, String> {
    let defaults = [
        (JOB_LABEL, d.job.clone()),
        (SCRAPE_INTERVAL_LABEL, format_duration(d.interval)),
        (SCRAPE_TIMEOUT_LABEL, format_duration(d.timeout)),
        (METRICS_PATH_LABEL, d.metrics_path.clone()),
        (SCHEME_LABEL, d.scheme.clone()),
    ];
    for (name, value) in defaults {
        if b.get(name).is_none() {
            b.set(name, value);
        }
    }
    for (name, values) in &d.params {
        let label = format!("{PARAM_LABEL_PREFIX}{name}");
        if b.get(&label).is_none()
            && let Some(first) = values.first()
        {
            b.set(label, first.clone());
        }
    }
    let discovered = b.build();
    let Some(labels) = relabel(&discovered, &d.relabel) else {
        return Ok(Populated::Dropped(discovered));
    };
    let address = labels
        .get(ADDRESS_LABEL)
        .ok_or_else(|| "no address".to_owned())?
        .to_owned();
    if address.contains('/') {
        return Err(format!("{address:?} is not a valid hostname"));
    }
    let interval = labels
        .get(SCRAPE_INTERVAL_LABEL)
        .map(heimdall_common::parse_duration)
        .transpose()
        .map_err(|e| format!("error parsing scrape interval: {e}"))?
        .unwrap_or(d.interval);
    let timeout = labels
        .get(SCRAPE_TIMEOUT_LABEL)
        .map(heimdall_common::parse_duration)
        .transpose()
        .map_err(|e| format!("error parsing scrape timeout: {e}"))?
        .unwrap_or(d.timeout);
    if interval.is_zero() {
        return Err("scrape interval cannot be 0".into());
    }
    if timeout.is_zero() {
        return Err("scrape timeout cannot be 0".into());
    }
    if timeout > interval {
        return Err(format!(
            "scrape timeout cannot be greater than scrape interval ({} > {})",
            format_duration(timeout),
            format_duration(interval)
        ));
    }
    // The URL from the reserved labels, then those labels go.
    let scheme = labels.get(SCHEME_LABEL).unwrap_or("http").to_owned();
    let path = labels
        .get(METRICS_PATH_LABEL)
        .unwrap_or("/metrics")
        .to_owned();
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (name, values) in &d.params {
        let label = format!("{PARAM_LABEL_PREFIX}{name}");
        match labels.get(&label) {
            // A relabeled parameter replaces the first value.
            Some(v) => {
                query.append_pair(name, v);
                for rest in values.iter().skip(1) {
                    query.append_pair(name, rest);
                }
            }
            None => {
                for v in values {
                    query.append_pair(name, v);
                }
            }
        }
    }
    for l in &labels {
        if let Some(name) = l.name.strip_prefix(PARAM_LABEL_PREFIX)
            && !d.params.contains_key(name)
        {
            query.append_pair(name, &l.value);
        }
    }
    let query = query.finish();
    let url = format!(
        "{scheme}://{address}{path}{}{query}",
        if query.is_empty() { "" } else { "?" }
    );
    let mut out = LabelsBuilder::default();
    for l in &labels {
        if l.name.starts_with("__") {
            continue;
        }
        if !is_valid_label_name(&l.name) {
            return Err(format!("invalid label name {:?}", l.name));
        }
        out.set(l.name.clone(), l.value.clone());
    }
    if out.get(INSTANCE_LABEL).is_none() {
        out.set(INSTANCE_LABEL, address);
    }
    Ok(Populated::Target(Target {
        labels: out.build(),
        discovered,
        url,
        interval,
        timeout,
        state: Mutex::new(ScrapeState::default()),
    }))
}

/// A duration as Prometheus prints one: `15s`, `1m30s`, `5m`, `1h`, `1d`, `500ms`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    let units: [(&str, u128); 7] = [
        ("y", 365 * 24 * 3_600_000),
        ("w", 7 * 24 * 3_600_000),
        ("d", 24 * 3_600_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ];
    let mut out = String::new();
    let mut rest = ms;
    for (unit, size) in units {
        if rest >= size {
            out.push_str(&format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> TargetDefaults {
        TargetDefaults {
            job: "node".into(),
            scheme: "http".into(),
            metrics_path: "/metrics".into(),
            params: BTreeMap::new(),
            interval: Duration::from_secs(15),
            timeout: Duration::from_secs(10),
            relabel: Vec::new(),
        }
    }

    fn target(p: Populated) -> Target {
        match p {
            Populated::Target(t) => t,
            Populated::Dropped(l) => panic!("dropped {l}"),
        }
    }

    #[test]
    fn populate_sets_job_instance_url_and_drops_meta_labels() {
        let b = Labels::from_pairs([
            ("__address__", "web-1:9090"),
            ("__meta_dns_name", "x"),
            ("rack", "r1"),
        ])
        .builder();
        let t = target(populate(b, &defaults()).unwrap());
        assert_eq!(
            t.labels,
            Labels::from_pairs([("job", "node"), ("instance", "web-1:9090"), ("rack", "r1")])
        );
        assert_eq!(t.url, "http://web-1:9090/metrics");
        assert_eq!(t.discovered.get("__scrape_interval__"), Some("15s"));
        assert_eq!(t.discovered.get("__meta_dns_name"), Some("x"));
        assert_eq!(t.interval, Duration::from_secs(15));
    }

    #[test]
    fn params_and_reserved_labels_make_the_url() {
        let mut d = defaults();
        d.params
            .insert("module".into(), vec!["a".into(), "b c".into()]);
        d.scheme = "https".into();
        let b = Labels::from_pairs([
            ("__address__", "h:1"),
            ("__param_module", "x"),
            ("__param_extra", "y"),
            ("__metrics_path__", "/probe"),
            ("instance", "custom"),
        ])
        .builder();
        let t = target(populate(b, &d).unwrap());
        assert_eq!(t.url, "https://h:1/probe?module=x&module=b+c&extra=y");
        assert_eq!(t.labels.get("instance"), Some("custom"));
    }

    #[test]
    fn bad_targets_are_errors() {
        let no_addr = Labels::from_pairs([("a", "b")]).builder();
        assert_eq!(populate(no_addr, &defaults()).unwrap_err(), "no address");
        let slow = Labels::from_pairs([("__address__", "h:1"), ("__scrape_timeout__", "1m")]);
        assert!(
            populate(slow.builder(), &defaults())
                .unwrap_err()
                .contains("greater than scrape interval")
        );
        let bad = Labels::from_pairs([("__address__", "h:1"), ("__scrape_interval__", "x")]);
        assert!(populate(bad.builder(), &defaults()).is_err());
    }

    #[test]
    fn durations_print_as_prometheus() {
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(format_duration(Duration::from_secs(86400)), "1d");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }
}
