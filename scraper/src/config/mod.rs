//! The scraper's configuration: a subset of Prometheus' own `prometheus.yml`, so one file
//! serves both. What is read: `global` (intervals, external labels, default limits),
//! `scrape_configs` (static, file and DNS discovery, auth, TLS, limits, relabeling),
//! `remote_write`, `rule_files` and `alerting`. Any other key, anywhere, fails the load.
//!
//! Loading is two steps, as in Prometheus: serde reads the YAML (errors name the YAML path of
//! the offending key, `scrape_configs[1].relabel_configs[0].action: unknown relabel action
//! "foo"`), then [`Config::resolve`] fills what jobs inherit from `global` and checks what
//! serde cannot (duplicate job names, timeout above interval, relabel rules, …), naming paths
//! the same way. After [`Config::load`] every field holds the value in force, and
//! [`Config::to_yaml`] prints it as Prometheus' `/api/v1/status/config` does (defaults
//! filled, secrets as `<secret>`).
//!
//! With no file at all, `heimdall up` uses [`Config::default_local`]: one job scraping every
//! exporter registered in the local nameserver (`_exporter._tcp`) every 5 s.
//!
//! # Layout
//! - this file: [`Config`], [`GlobalConfig`], [`ConfigError`]; loading and validation.
//! - `scrape.rs`: [`ScrapeConfig`] and its discovery sections ([`StaticConfig`],
//!   [`FileSdConfig`], [`DnsSdConfig`]).
//! - `http.rs`: [`BasicAuth`], [`Authorization`], [`TlsConfig`], [`Secret`].
//! - `remote.rs`: [`RemoteWriteConfig`], [`AlertingConfig`].
//! - `units.rs`: Prometheus durations ([`parse_duration`], [`format_duration`]) and [`ByteSize`].
//!
//! Relabel steps are [`crate::relabel::RelabelConfig`], checked here with their path.

mod http;
mod remote;
mod scrape;
mod units;

use std::collections::BTreeMap;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::Duration;

use regex::Regex;
use serde::{Deserialize, Deserializer, Serialize};

pub use http::{Authorization, BasicAuth, Secret, TlsConfig};
pub use remote::{AlertingConfig, AlertmanagerConfig, QueueConfig, RemoteWriteConfig};
pub use scrape::{
    DnsRecordType, DnsSdConfig, FileSdConfig, Scheme, ScrapeConfig, ScrapeProtocol, StaticConfig,
};
pub use units::{ByteSize, format_duration, parse_duration};

use crate::model::{Labels, is_valid_label_name};
use crate::relabel::RelabelConfig;

/// Largest config file read. Real ones are kilobytes; a bigger file is a mistake (wrong
/// path), refused before it is read into memory.
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// The SRV name every Heimdall exporter registers under in the local nameserver.
pub const LOCAL_EXPORTER_SRV: &str = "_exporter._tcp.heimdall.internal.";

/// Why a configuration was refused. Every variant names where: the file, or the YAML path
/// of the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read (or is not UTF-8).
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_CONFIG_BYTES`].
    #[error("config file {} is larger than {MAX_CONFIG_BYTES} bytes", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// Not YAML, a key that does not exist, or a value of the wrong type or format.
    #[error("{path}: {message}")]
    Parse {
        /// YAML path of the key (`scrape_configs[0].scrape_interval`), `.` for the document.
        path: String,
        /// What is wrong, with the line and column when the parser knows them.
        message: String,
    },
    /// Well-formed YAML that breaks a rule (duplicate job name, timeout above interval, …).
    #[error("{path}: {message}")]
    Invalid {
        /// YAML path of the key at fault.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The configuration could not be written back as YAML (a path that is not UTF-8).
    #[error("cannot write the configuration as YAML: {0}")]
    Serialize(String),
}

impl ConfigError {
    /// The YAML path of the key at fault, if the error is about one.
    pub fn key_path(&self) -> Option<&str> {
        match self {
            ConfigError::Parse { path, .. } | ConfigError::Invalid { path, .. } => Some(path),
            _ => None,
        }
    }
}

/// A rule broken at `path`.
pub(crate) fn invalid(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        path: path.into(),
        message: message.into(),
    }
}

/// The whole file.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Defaults for every job, and labels for everything this server sends out.
    #[serde(default, deserialize_with = "null_as_default")]
    pub global: GlobalConfig,
    /// Where alerts go (stored for the alerting work; not used yet).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "AlertingConfig::is_empty"
    )]
    pub alerting: AlertingConfig,
    /// Recording and alerting rule files (globs allowed in the last element), relative to the
    /// config file's directory (stored for the rules work; not used yet).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub rule_files: Vec<String>,
    /// The scrape jobs.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub scrape_configs: Vec<ScrapeConfig>,
    /// Remote-write receivers (stored for the remote-write work; not used yet).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub remote_write: Vec<RemoteWriteConfig>,
}

/// Prometheus' default configuration: global defaults, no job.
impl Default for Config {
    fn default() -> Self {
        Self {
            global: GlobalConfig::default(),
            alerting: AlertingConfig::default(),
            rule_files: Vec::new(),
            scrape_configs: Vec::new(),
            remote_write: Vec::new(),
        }
    }
}

/// `global`: defaults for every job. A zero duration or limit in the file means "default";
/// [`Config::resolve`] fills Prometheus' values.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalConfig {
    /// How often jobs scrape unless they say otherwise (1m).
    #[serde(default, with = "units::duration")]
    pub scrape_interval: Duration,
    /// Scrape timeout unless a job says otherwise: 10s, or the interval if shorter; never
    /// above `scrape_interval`.
    #[serde(default, with = "units::duration")]
    pub scrape_timeout: Duration,
    /// How often rules are evaluated (1m; stored for the rules work).
    #[serde(default, with = "units::duration")]
    pub evaluation_interval: Duration,
    /// Exposition formats jobs ask for unless they say otherwise; unset means Prometheus'
    /// default order ([`ScrapeProtocol::DEFAULT`]).
    #[serde(
        default,
        deserialize_with = "scrape::optional_protocol_list",
        skip_serializing_if = "Option::is_none"
    )]
    pub scrape_protocols: Option<Vec<ScrapeProtocol>>,
    /// Labels added to series and alerts this server sends elsewhere (remote write,
    /// federation, Alertmanager). `$VAR` / `${VAR}` in values are read from the environment
    /// at load, as in Prometheus.
    #[serde(default, with = "label_set", skip_serializing_if = "Labels::is_empty")]
    pub external_labels: Labels,
    /// Default for jobs' `body_size_limit` (0 = none).
    #[serde(default, skip_serializing_if = "ByteSize::is_zero")]
    pub body_size_limit: ByteSize,
    /// Default for jobs' `sample_limit` (0 = none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub sample_limit: u64,
    /// Default for jobs' `label_limit` (0 = none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub label_limit: u64,
    /// Default for jobs' `label_name_length_limit` (0 = none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub label_name_length_limit: u64,
    /// Default for jobs' `label_value_length_limit` (0 = none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub label_value_length_limit: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Prometheus' defaults: scrape every 1m with a 10s timeout, evaluate every 1m.
impl Default for GlobalConfig {
    fn default() -> Self {
        Self {
            scrape_interval: DEFAULT_SCRAPE_INTERVAL,
            scrape_timeout: DEFAULT_SCRAPE_TIMEOUT,
            evaluation_interval: DEFAULT_EVALUATION_INTERVAL,
            scrape_protocols: None,
            external_labels: Labels::empty(),
            body_size_limit: ByteSize(0),
            sample_limit: 0,
            label_limit: 0,
            label_name_length_limit: 0,
            label_value_length_limit: 0,
        }
    }
}

const DEFAULT_SCRAPE_INTERVAL: Duration = Duration::from_secs(60);
const DEFAULT_SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_EVALUATION_INTERVAL: Duration = Duration::from_secs(60);

impl GlobalConfig {
    /// Fills unset values and checks the timeout (`GlobalConfig.UnmarshalYAML`).
    fn resolve(&mut self) -> Result<(), ConfigError> {
        if self.scrape_interval.is_zero() {
            self.scrape_interval = DEFAULT_SCRAPE_INTERVAL;
        }
        if self.scrape_timeout > self.scrape_interval {
            return Err(invalid(
                "global.scrape_timeout",
                "global scrape timeout greater than scrape interval",
            ));
        }
        if self.scrape_timeout.is_zero() {
            self.scrape_timeout = DEFAULT_SCRAPE_TIMEOUT.min(self.scrape_interval);
        }
        if self.evaluation_interval.is_zero() {
            self.evaluation_interval = DEFAULT_EVALUATION_INTERVAL;
        }
        if let Some(p) = &self.scrape_protocols {
            scrape::check_protocols("global.scrape_protocols", p)?;
        }
        Ok(())
    }
}

/// What a `rule_files` entry must look like: Prometheus' `patRulePath` (one `*` at most,
/// in the last path element).
static RULE_PATH: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[^*]*(\*[^/]*)?$").expect("constant regex compiles"));

impl Config {
    /// Reads, parses and validates a `prometheus.yml`; relative file paths in it (password
    /// and TLS files, file_sd files, rule files) are taken relative to its directory.
    pub fn load(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        let path = path.as_ref();
        let read_err = |source| ConfigError::Read {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read_err)?;
        let mut text = String::new();
        file.take(MAX_CONFIG_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(read_err)?;
        if text.len() as u64 > MAX_CONFIG_BYTES {
            return Err(ConfigError::TooLarge {
                path: path.to_owned(),
            });
        }
        let mut config = Config::from_yaml_str(&text)?;
        if let Some(dir) = path.parent() {
            config.set_directory(dir);
        }
        Ok(config)
    }

    /// Parses and validates YAML text (an empty document is Prometheus' default config).
    /// Relative file paths are left as written.
    pub fn from_yaml_str(text: &str) -> Result<Config, ConfigError> {
        let mut config = parse(text)?;
        config.global.external_labels =
            expand_external_labels(&config.global.external_labels, |name| {
                std::env::var(name).ok()
            });
        config.resolve()?;
        Ok(config)
    }

    /// The configuration `heimdall up` runs with when given no file: one job `exporter`
    /// scraping, every 5s, each target of the SRV name [`LOCAL_EXPORTER_SRV`] as answered by
    /// `nameserver` (re-resolved every 30s).
    pub fn default_local(nameserver: SocketAddr) -> Config {
        let interval = Duration::from_secs(5);
        let global = GlobalConfig::default();
        let mut job = ScrapeConfig::new("exporter");
        job.scrape_interval = interval;
        // As `resolve` would: the global timeout capped at the interval.
        job.scrape_timeout = global.scrape_timeout.min(interval);
        job.scrape_protocols = ScrapeProtocol::DEFAULT.to_vec();
        job.dns_sd_configs = vec![DnsSdConfig {
            nameservers: vec![nameserver],
            ..DnsSdConfig::srv([LOCAL_EXPORTER_SRV])
        }];
        Config {
            global,
            scrape_configs: vec![job],
            ..Config::default()
        }
    }

    /// Fills what jobs inherit from `global` and checks every rule serde cannot; both
    /// constructors call it, and calling it again changes nothing. For configurations built
    /// in code.
    pub fn resolve(&mut self) -> Result<(), ConfigError> {
        self.global.resolve()?;
        for (i, f) in self.rule_files.iter().enumerate() {
            if !RULE_PATH.is_match(f) {
                return Err(invalid(
                    format!("rule_files[{i}]"),
                    format!("invalid rule file path {f:?}"),
                ));
            }
        }
        let mut jobs: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, sc) in self.scrape_configs.iter_mut().enumerate() {
            sc.resolve(&format!("scrape_configs[{i}]"), &self.global)?;
        }
        for (i, sc) in self.scrape_configs.iter().enumerate() {
            if let Some(first) = jobs.insert(&sc.job_name, i) {
                return Err(invalid(
                    format!("scrape_configs[{i}].job_name"),
                    format!(
                        "found multiple scrape configs with job name {:?} (first at scrape_configs[{first}])",
                        sc.job_name
                    ),
                ));
            }
        }
        self.alerting.validate("alerting")?;
        let mut names: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, rw) in self.remote_write.iter().enumerate() {
            let path = format!("remote_write[{i}]");
            rw.validate(&path)?;
            if !rw.name.is_empty() && names.insert(&rw.name, i).is_some() {
                return Err(invalid(
                    format!("{path}.name"),
                    format!(
                        "found multiple remote write configs with name {:?}",
                        rw.name
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The configuration as YAML, as Prometheus shows it at `/api/v1/status/config`:
    /// defaults and inherited values filled in, secrets as `<secret>`. Parsing it back gives
    /// an equal [`Config`] except for inline secrets.
    pub fn to_yaml(&self) -> Result<String, ConfigError> {
        serde_yaml_ng::to_string(self).map_err(|e| ConfigError::Serialize(e.to_string()))
    }

    /// The job named `name`.
    pub fn job(&self, name: &str) -> Option<&ScrapeConfig> {
        self.scrape_configs.iter().find(|j| j.job_name == name)
    }

    /// Makes relative file paths relative to `dir` (Prometheus' `SetDirectory`).
    fn set_directory(&mut self, dir: &Path) {
        for f in &mut self.rule_files {
            if !Path::new(f.as_str()).is_absolute() {
                *f = dir.join(f.as_str()).to_string_lossy().into_owned();
            }
        }
        for sc in &mut self.scrape_configs {
            sc.set_directory(dir);
        }
        for rw in &mut self.remote_write {
            rw.set_directory(dir);
        }
        self.alerting.set_directory(dir);
    }
}

/// Reads the YAML into the structs, naming the path of the key at fault on error.
fn parse(text: &str) -> Result<Config, ConfigError> {
    // Prometheus reads an empty file (or one with only comments) as the default config;
    // serde_yaml_ng would see no document at all.
    if text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        return Ok(Config::default());
    }
    let de = serde_yaml_ng::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let mut path = e.path().to_string();
        let message = strip_yaml_path(&path, &e.into_inner().to_string()).to_owned();
        // serde reports an unknown or repeated key at the map holding it; name the key.
        let key = ["unknown field `", "duplicate field `"]
            .iter()
            .find_map(|p| message.strip_prefix(p))
            .and_then(|rest| rest.split('`').next());
        if let Some(key) = key
            && path != key
            && !path.ends_with(&format!(".{key}"))
        {
            path = if path == "." {
                key.to_owned()
            } else {
                format!("{path}.{key}")
            };
        }
        ConfigError::Parse { path, message }
    })
}

/// serde_yaml_ng starts its messages with its own, coarser path (the map being read, an
/// ancestor of `path`); drop it so the error names the path once.
fn strip_yaml_path<'m>(path: &str, message: &'m str) -> &'m str {
    let mut prefix = path;
    loop {
        if let Some(rest) = message
            .strip_prefix(prefix)
            .and_then(|r| r.strip_prefix(": "))
        {
            return rest;
        }
        match prefix.rfind(['.', '[']) {
            Some(cut) if cut > 0 => prefix = &prefix[..cut],
            _ => return message,
        }
    }
}

/// Checks each relabel step of a list at `path` (`scrape_configs[0].relabel_configs`).
pub(crate) fn validate_relabel_configs(
    path: &str,
    configs: &[RelabelConfig],
) -> Result<(), ConfigError> {
    for (i, c) in configs.iter().enumerate() {
        c.validate()
            .map_err(|e| invalid(format!("{path}[{i}].{}", e.field), e.message))?;
    }
    Ok(())
}

/// A missing section and an empty one (`global:` with nothing under it) both mean defaults,
/// as in Prometheus.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Makes a relative path in an optional path field relative to `dir`.
pub(crate) fn join_dir(dir: &Path, p: &mut Option<PathBuf>) {
    if let Some(path) = p
        && path.is_relative()
        && !path.as_os_str().is_empty()
    {
        *path = dir.join(&*path);
    }
}

/// Reads a YAML map refusing a key given twice (Prometheus' strict YAML does too; serde
/// would silently keep the last).
pub(crate) fn unique_map<'de, D, V>(d: D) -> Result<BTreeMap<String, V>, D::Error>
where
    D: Deserializer<'de>,
    V: Deserialize<'de>,
{
    struct Visitor<V>(std::marker::PhantomData<V>);

    impl<'de, V: Deserialize<'de>> serde::de::Visitor<'de> for Visitor<V> {
        type Value = BTreeMap<String, V>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a map")
        }

        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(BTreeMap::new())
        }

        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some(key) = map.next_key::<String>()? {
                if out.contains_key(&key) {
                    return Err(serde::de::Error::custom(format!(
                        "mapping key {key:?} already defined"
                    )));
                }
                let value = map.next_value()?;
                out.insert(key, value);
            }
            Ok(out)
        }
    }

    d.deserialize_map(Visitor(std::marker::PhantomData))
}

/// `#[serde(with = "label_set")]`: a label set written as a YAML map, names checked.
pub(crate) mod label_set {
    use super::*;
    use serde::Serializer;

    pub fn serialize<S: Serializer>(labels: &Labels, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(labels.iter().map(|l| (&*l.name, &*l.value)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Labels, D::Error> {
        let map: BTreeMap<String, String> = unique_map(d)?;
        if let Some(bad) = map.keys().find(|n| !is_valid_label_name(n)) {
            return Err(serde::de::Error::custom(format!(
                "{bad:?} is not a valid label name"
            )));
        }
        Ok(Labels::from_pairs(map))
    }
}

/// Expands `$VAR` / `${VAR}` in external label values from `lookup`, with Go's `os.Expand`
/// rules as Prometheus applies them (`$$` is `$`, an unset variable is empty, and a label
/// whose value becomes empty is dropped).
fn expand_external_labels(labels: &Labels, lookup: impl Fn(&str) -> Option<String>) -> Labels {
    if labels.iter().all(|l| !l.value.contains('$')) {
        return labels.clone();
    }
    Labels::from_pairs(
        labels
            .iter()
            .map(|l| (l.name.clone(), expand_env(&l.value, &lookup))),
    )
}

/// Go's `os.Expand` with Prometheus' mapping.
fn expand_env(s: &str, lookup: &impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if after.is_empty() {
            // A trailing `$` stays.
            out.push('$');
            rest = after;
            break;
        }
        let (name, consumed) = shell_name(after);
        rest = after.get(consumed..).unwrap_or("");
        match name {
            // Bad syntax (`${`, `${}`): the characters are eaten.
            None if consumed > 0 => {}
            // `$` followed by no name: kept.
            None => out.push('$'),
            Some("$") => out.push('$'),
            Some(var) => out.push_str(&lookup(var).unwrap_or_default()),
        }
    }
    out.push_str(rest);
    out
}

/// Go's `getShellName`: the variable name after a `$`, and how many bytes it took.
fn shell_name(s: &str) -> (Option<&str>, usize) {
    let special = |b: u8| {
        matches!(
            b,
            b'*' | b'#' | b'$' | b'@' | b'!' | b'?' | b'-' | b'0'..=b'9'
        )
    };
    let bytes = s.as_bytes();
    match bytes.first() {
        Some(b'{') => {
            if bytes.len() > 2
                && bytes.get(1).copied().is_some_and(special)
                && bytes.get(2) == Some(&b'}')
            {
                return (s.get(1..2), 3);
            }
            match s.find('}') {
                Some(1) => (None, 2),
                Some(end) => (s.get(1..end), end + 1),
                None => (None, 1),
            }
        }
        Some(&b) if special(b) => (s.get(0..1), 1),
        _ => {
            let end = s
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(s.len());
            if end == 0 {
                (None, 0)
            } else {
                (s.get(..end), end)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_default_config() {
        for text in ["", "\n", "# nothing\n", "global:\n"] {
            let c = Config::from_yaml_str(text).unwrap();
            assert_eq!(c, Config::default(), "{text:?}");
        }
        let g = &Config::default().global;
        assert_eq!(g.scrape_interval, Duration::from_secs(60));
        assert_eq!(g.scrape_timeout, Duration::from_secs(10));
        assert_eq!(g.evaluation_interval, Duration::from_secs(60));
    }

    #[test]
    fn global_timeout_follows_interval() {
        let c = Config::from_yaml_str("global: {scrape_interval: 5s}").unwrap();
        assert_eq!(c.global.scrape_timeout, Duration::from_secs(5));
        let e =
            Config::from_yaml_str("global: {scrape_interval: 5s, scrape_timeout: 6s}").unwrap_err();
        assert_eq!(e.key_path(), Some("global.scrape_timeout"));
    }

    #[test]
    fn env_expansion_is_go_os_expand() {
        let lookup = |name: &str| match name {
            "HOST" => Some("db1".to_owned()),
            "1" => Some("one".to_owned()),
            _ => None,
        };
        let x = |s: &str| expand_env(s, &lookup);
        assert_eq!(x("$HOST"), "db1");
        assert_eq!(x("${HOST}-a"), "db1-a");
        assert_eq!(x("a$HOST.b"), "adb1.b");
        assert_eq!(x("$$HOST"), "$HOST");
        assert_eq!(x("cost$"), "cost$");
        assert_eq!(x("$UNSET"), "");
        assert_eq!(x("a${"), "a");
        assert_eq!(x("a${}b"), "ab");
        assert_eq!(x("a$-b"), "ab");
        assert_eq!(x("$1x"), "onex");
        assert_eq!(x("a $ b"), "a $ b");
        let labels = Labels::from_pairs([("dc", "$HOST"), ("gone", "$UNSET"), ("k", "v")]);
        assert_eq!(
            expand_external_labels(&labels, lookup),
            Labels::from_pairs([("dc", "db1"), ("k", "v")])
        );
    }

    #[test]
    fn default_local_is_resolved_and_stable() {
        let ns: SocketAddr = "127.0.0.1:5353".parse().unwrap();
        let c = Config::default_local(ns);
        let mut again = c.clone();
        again.resolve().unwrap();
        assert_eq!(again, c);
        let yaml = c.to_yaml().unwrap();
        assert_eq!(Config::from_yaml_str(&yaml).unwrap(), c, "{yaml}");
    }
}
