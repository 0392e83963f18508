//! `scrape_configs`: one entry per job, with its targets (static, file or DNS discovery), how
//! to fetch them, limits, and relabeling.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::LazyLock;
use std::time::Duration;

use regex::Regex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::http::{self, Authorization, BasicAuth, TlsConfig};
use super::units::{ByteSize, duration};
use super::{ConfigError, GlobalConfig, invalid, label_set, unique_map, validate_relabel_configs};
use crate::model::Labels;
use crate::relabel::RelabelConfig;

/// A scrape job (`scrape_configs[]`). Zero intervals and limits mean "as in `global`" and are
/// filled in when the file is loaded, so after [`super::Config::load`] every field holds the
/// value in force.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScrapeConfig {
    /// The job name, the `job` label of every series from it; unique and non-empty.
    #[serde(default)]
    pub job_name: String,
    /// On a clash between a scraped label and a target label, keep the scraped one (else the
    /// scraped one is renamed `exported_<name>`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub honor_labels: bool,
    /// Keep timestamps the target exposes (else the scrape time is used).
    #[serde(default = "yes")]
    pub honor_timestamps: bool,
    /// URL query parameters sent with each scrape (`module: [http_2xx]`).
    #[serde(
        default,
        deserialize_with = "unique_map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub params: BTreeMap<String, Vec<String>>,
    /// How often to scrape; `global.scrape_interval` when unset.
    #[serde(default, with = "duration")]
    pub scrape_interval: Duration,
    /// Per-scrape timeout, at most `scrape_interval`; `global.scrape_timeout` (capped at the
    /// interval) when unset.
    #[serde(default, with = "duration")]
    pub scrape_timeout: Duration,
    /// Exposition formats to ask for, most wanted first (the `Accept` header);
    /// `global.scrape_protocols`, else Prometheus' default order, when unset.
    #[serde(
        default,
        deserialize_with = "protocol_list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub scrape_protocols: Vec<ScrapeProtocol>,
    /// HTTP path of the metrics on each target.
    #[serde(default = "default_metrics_path")]
    pub metrics_path: String,
    /// `http` or `https`.
    #[serde(default)]
    pub scheme: Scheme,
    /// Ask targets for a gzip-compressed body.
    #[serde(default = "yes")]
    pub enable_compression: bool,
    /// A larger (uncompressed) body fails the scrape; 0 = `global.body_size_limit` (0 = none).
    #[serde(default, skip_serializing_if = "ByteSize::is_zero")]
    pub body_size_limit: ByteSize,
    /// More samples after metric relabeling fail the scrape; 0 = global (0 = none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub sample_limit: u64,
    /// More labels on a series fail the scrape; 0 = global (0 = none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub label_limit: u64,
    /// A longer label name fails the scrape; 0 = global (0 = none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub label_name_length_limit: u64,
    /// A longer label value fails the scrape; 0 = global (0 = none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub label_value_length_limit: u64,
    /// HTTP Basic authentication for every target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuth>,
    /// An `Authorization` header (bearer token) for every target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<Authorization>,
    /// TLS settings for `https` targets.
    #[serde(default)]
    pub tls_config: TlsConfig,
    /// DNS discovery: SRV (or A/AAAA) names resolved every `refresh_interval`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_sd_configs: Vec<DnsSdConfig>,
    /// File discovery: JSON/YAML target lists, re-read on change and every `refresh_interval`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub file_sd_configs: Vec<FileSdConfig>,
    /// Fixed targets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub static_configs: Vec<StaticConfig>,
    /// Target relabeling, run on each discovered target before it is scraped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub relabel_configs: Vec<RelabelConfig>,
    /// Series relabeling, run on each new series of a scrape before it is stored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metric_relabel_configs: Vec<RelabelConfig>,
}

fn yes() -> bool {
    true
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn default_metrics_path() -> String {
    "/metrics".into()
}

impl ScrapeConfig {
    /// A job with Prometheus' defaults and nothing inherited yet (zero interval and timeout).
    pub fn new(job_name: impl Into<String>) -> Self {
        Self {
            job_name: job_name.into(),
            honor_labels: false,
            honor_timestamps: true,
            params: BTreeMap::new(),
            scrape_interval: Duration::ZERO,
            scrape_timeout: Duration::ZERO,
            scrape_protocols: Vec::new(),
            metrics_path: default_metrics_path(),
            scheme: Scheme::Http,
            enable_compression: true,
            body_size_limit: ByteSize(0),
            sample_limit: 0,
            label_limit: 0,
            label_name_length_limit: 0,
            label_value_length_limit: 0,
            basic_auth: None,
            authorization: None,
            tls_config: TlsConfig::default(),
            dns_sd_configs: Vec::new(),
            file_sd_configs: Vec::new(),
            static_configs: Vec::new(),
            relabel_configs: Vec::new(),
            metric_relabel_configs: Vec::new(),
        }
    }

    /// Fills what is inherited from `global` and checks the job (`ScrapeConfig.Validate`);
    /// `path` is `scrape_configs[i]`. Running it twice changes nothing.
    pub(super) fn resolve(&mut self, path: &str, global: &GlobalConfig) -> Result<(), ConfigError> {
        if self.job_name.is_empty() {
            return Err(invalid(format!("{path}.job_name"), "job_name is empty"));
        }
        if self.scrape_interval.is_zero() {
            self.scrape_interval = global.scrape_interval;
        }
        if self.scrape_timeout > self.scrape_interval {
            return Err(invalid(
                format!("{path}.scrape_timeout"),
                format!(
                    "scrape timeout greater than scrape interval for scrape config with job name {:?}",
                    self.job_name
                ),
            ));
        }
        if self.scrape_timeout.is_zero() {
            self.scrape_timeout = global.scrape_timeout.min(self.scrape_interval);
        }
        if self.body_size_limit.is_zero() {
            self.body_size_limit = global.body_size_limit;
        }
        for (mine, theirs) in [
            (&mut self.sample_limit, global.sample_limit),
            (&mut self.label_limit, global.label_limit),
            (
                &mut self.label_name_length_limit,
                global.label_name_length_limit,
            ),
            (
                &mut self.label_value_length_limit,
                global.label_value_length_limit,
            ),
        ] {
            if *mine == 0 {
                *mine = theirs;
            }
        }
        if self.scrape_protocols.is_empty() {
            self.scrape_protocols = match &global.scrape_protocols {
                Some(p) => p.clone(),
                None => ScrapeProtocol::DEFAULT.to_vec(),
            };
        }
        check_protocols(&format!("{path}.scrape_protocols"), &self.scrape_protocols)?;
        if !self.metrics_path.starts_with('/') {
            return Err(invalid(
                format!("{path}.metrics_path"),
                format!("metrics_path {:?} must start with \"/\"", self.metrics_path),
            ));
        }
        http::validate(
            path,
            self.basic_auth.as_ref(),
            self.authorization.as_ref(),
            &self.tls_config,
        )?;
        validate_service_discovery(
            path,
            &self.static_configs,
            &self.file_sd_configs,
            &self.dns_sd_configs,
            self.relabel_configs.is_empty(),
        )?;
        validate_relabel_configs(&format!("{path}.relabel_configs"), &self.relabel_configs)?;
        validate_relabel_configs(
            &format!("{path}.metric_relabel_configs"),
            &self.metric_relabel_configs,
        )
    }

    pub(super) fn set_directory(&mut self, dir: &Path) {
        http::set_directory(
            dir,
            self.basic_auth.as_mut(),
            self.authorization.as_mut(),
            &mut self.tls_config,
        );
        for f in &mut self.file_sd_configs {
            f.set_directory(dir);
        }
    }
}

/// Checks the discovery sections of a scrape job or an Alertmanager set; `path` holds them.
pub(super) fn validate_service_discovery(
    path: &str,
    static_configs: &[StaticConfig],
    file_sd_configs: &[FileSdConfig],
    dns_sd_configs: &[DnsSdConfig],
    check_addresses: bool,
) -> Result<(), ConfigError> {
    // A URL as a target is a common mistake; relabeling could still turn it into an
    // address, so Prometheus only checks when there is none.
    if check_addresses {
        for (i, sc) in static_configs.iter().enumerate() {
            for (j, t) in sc.targets.iter().enumerate() {
                if t.contains('/') {
                    return Err(invalid(
                        format!("{path}.static_configs[{i}].targets[{j}]"),
                        format!("{t:?} is not a valid hostname"),
                    ));
                }
            }
        }
    }
    for (i, f) in file_sd_configs.iter().enumerate() {
        f.validate(&format!("{path}.file_sd_configs[{i}]"))?;
    }
    for (i, d) in dns_sd_configs.iter().enumerate() {
        d.validate(&format!("{path}.dns_sd_configs[{i}]"))?;
    }
    Ok(())
}

/// The URL scheme used to scrape.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// Plain HTTP.
    #[default]
    Http,
    /// HTTP over TLS (see `tls_config`).
    Https,
}

impl Scheme {
    /// `http` or `https`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// An exposition format a scrape may ask for (`scrape_protocols`), with Prometheus' names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScrapeProtocol {
    /// `PrometheusProto`: delimited protobuf `MetricFamily` messages.
    PrometheusProto,
    /// `PrometheusText0.0.4`: the classic text format.
    PrometheusText0_0_4,
    /// `PrometheusText1.0.0`: the text format with UTF-8 names.
    PrometheusText1_0_0,
    /// `OpenMetricsText0.0.1`.
    OpenMetricsText0_0_1,
    /// `OpenMetricsText1.0.0`.
    OpenMetricsText1_0_0,
}

impl ScrapeProtocol {
    /// Every protocol, in Prometheus' sorted order (for error messages).
    pub const ALL: [ScrapeProtocol; 5] = [
        ScrapeProtocol::OpenMetricsText0_0_1,
        ScrapeProtocol::OpenMetricsText1_0_0,
        ScrapeProtocol::PrometheusProto,
        ScrapeProtocol::PrometheusText0_0_4,
        ScrapeProtocol::PrometheusText1_0_0,
    ];

    /// What Prometheus asks for when nothing is configured, most wanted first.
    pub const DEFAULT: [ScrapeProtocol; 4] = [
        ScrapeProtocol::OpenMetricsText1_0_0,
        ScrapeProtocol::OpenMetricsText0_0_1,
        ScrapeProtocol::PrometheusText1_0_0,
        ScrapeProtocol::PrometheusText0_0_4,
    ];

    /// The configuration name (case-sensitive, as in Prometheus).
    pub fn as_str(self) -> &'static str {
        match self {
            ScrapeProtocol::PrometheusProto => "PrometheusProto",
            ScrapeProtocol::PrometheusText0_0_4 => "PrometheusText0.0.4",
            ScrapeProtocol::PrometheusText1_0_0 => "PrometheusText1.0.0",
            ScrapeProtocol::OpenMetricsText0_0_1 => "OpenMetricsText0.0.1",
            ScrapeProtocol::OpenMetricsText1_0_0 => "OpenMetricsText1.0.0",
        }
    }

    /// The media type with parameters, for the `Accept` header.
    pub fn media_type(self) -> &'static str {
        match self {
            ScrapeProtocol::PrometheusProto => {
                "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited"
            }
            ScrapeProtocol::PrometheusText0_0_4 => "text/plain;version=0.0.4",
            ScrapeProtocol::PrometheusText1_0_0 => "text/plain;version=1.0.0",
            ScrapeProtocol::OpenMetricsText0_0_1 => "application/openmetrics-text;version=0.0.1",
            ScrapeProtocol::OpenMetricsText1_0_0 => "application/openmetrics-text;version=1.0.0",
        }
    }
}

impl fmt::Display for ScrapeProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ScrapeProtocol {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ScrapeProtocol::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                let known: Vec<&str> = ScrapeProtocol::ALL.iter().map(|p| p.as_str()).collect();
                serde::de::Error::custom(format!(
                    "unknown scrape protocol {s}, supported: [{}]",
                    known.join(" ")
                ))
            })
    }
}

impl Serialize for ScrapeProtocol {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A `scrape_protocols` list as written: an explicit empty list is an error, not "unset".
pub(super) fn protocol_list<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Vec<ScrapeProtocol>, D::Error> {
    let list = Vec::<ScrapeProtocol>::deserialize(d)?;
    if list.is_empty() {
        return Err(serde::de::Error::custom("scrape_protocols cannot be empty"));
    }
    Ok(list)
}

/// `global.scrape_protocols`: like [`protocol_list`], `None` when absent.
pub(super) fn optional_protocol_list<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<ScrapeProtocol>>, D::Error> {
    protocol_list(d).map(Some)
}

/// No protocol twice.
pub(super) fn check_protocols(path: &str, list: &[ScrapeProtocol]) -> Result<(), ConfigError> {
    for (i, p) in list.iter().enumerate() {
        if list.get(..i).is_some_and(|before| before.contains(p)) {
            return Err(invalid(
                format!("{path}[{i}]"),
                format!("duplicated protocol {p} in scrape_protocols"),
            ));
        }
    }
    Ok(())
}

/// `static_configs[]`: fixed targets sharing a set of labels.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StaticConfig {
    /// `host:port` addresses (the `__address__` of each target).
    #[serde(default)]
    pub targets: Vec<String>,
    /// Labels given to every target of the group.
    #[serde(default, with = "label_set", skip_serializing_if = "Labels::is_empty")]
    pub labels: Labels,
}

/// `file_sd_configs[]`: targets listed in JSON or YAML files (Prometheus' file_sd format).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileSdConfig {
    /// Files to read; the last path element may hold one `*` (`targets/*.json`). Relative to
    /// the config file's directory.
    #[serde(default)]
    pub files: Vec<String>,
    /// How often to re-read the files besides reacting to changes.
    #[serde(default = "five_minutes", with = "duration")]
    pub refresh_interval: Duration,
}

fn five_minutes() -> Duration {
    Duration::from_secs(300)
}

/// What a `file_sd_configs` file name must look like: Prometheus' `patFileSDName`.
static FILE_SD_NAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[^*]*(\*[^/]*)?\.(json|yml|yaml|JSON|YML|YAML)$")
        .expect("constant regex compiles")
});

impl FileSdConfig {
    fn validate(&self, path: &str) -> Result<(), ConfigError> {
        if self.files.is_empty() {
            return Err(invalid(
                format!("{path}.files"),
                "file service discovery config must contain at least one path name",
            ));
        }
        for (i, f) in self.files.iter().enumerate() {
            if !FILE_SD_NAME.is_match(f) {
                return Err(invalid(
                    format!("{path}.files[{i}]"),
                    format!("path name {f:?} is not valid for file discovery"),
                ));
            }
        }
        if self.refresh_interval.is_zero() {
            return Err(invalid(
                format!("{path}.refresh_interval"),
                "refresh_interval must be greater than 0",
            ));
        }
        Ok(())
    }

    pub(super) fn set_directory(&mut self, dir: &Path) {
        for f in &mut self.files {
            if !Path::new(f.as_str()).is_absolute() {
                *f = dir.join(f.as_str()).to_string_lossy().into_owned();
            }
        }
    }
}

/// `dns_sd_configs[]`: targets from DNS, re-resolved every `refresh_interval`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DnsSdConfig {
    /// Names to resolve (`_exporter._tcp.heimdall.internal.`); at least one.
    #[serde(default)]
    pub names: Vec<String>,
    /// How often to resolve again.
    #[serde(default = "thirty_seconds", with = "duration")]
    pub refresh_interval: Duration,
    /// Record type: `SRV` (targets and ports from the records), or `A` / `AAAA` with `port`.
    #[serde(default, rename = "type")]
    pub record_type: DnsRecordType,
    /// Port for `A` / `AAAA` targets; ignored for `SRV`.
    #[serde(default, skip_serializing_if = "is_zero_port")]
    pub port: u16,
    /// Heimdall's extension: nameservers to ask, as `ip:port`, instead of the system's
    /// resolv.conf (e.g. Heimdall's own nameserver on a non-standard port).
    #[serde(
        default,
        deserialize_with = "socket_addrs",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub nameservers: Vec<SocketAddr>,
}

/// `ip:port` entries, with an error that says which form is expected (names would need a
/// resolver to find the resolver).
fn socket_addrs<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SocketAddr>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|s| {
            s.parse().map_err(|_| {
                serde::de::Error::custom(format!(
                    "nameserver {s:?} is not ip:port (e.g. 127.0.0.1:53 or [::1]:53)"
                ))
            })
        })
        .collect()
}

fn thirty_seconds() -> Duration {
    Duration::from_secs(30)
}

fn is_zero_port(p: &u16) -> bool {
    *p == 0
}

impl DnsSdConfig {
    /// SRV discovery of `names`, with the default refresh interval.
    pub fn srv(names: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            names: names.into_iter().map(Into::into).collect(),
            refresh_interval: thirty_seconds(),
            record_type: DnsRecordType::Srv,
            port: 0,
            nameservers: Vec::new(),
        }
    }

    fn validate(&self, path: &str) -> Result<(), ConfigError> {
        if self.names.is_empty() {
            return Err(invalid(
                format!("{path}.names"),
                "DNS-SD config must contain at least one SRV record name",
            ));
        }
        if let Some(i) = self.names.iter().position(|n| n.trim().is_empty()) {
            return Err(invalid(format!("{path}.names[{i}]"), "empty DNS name"));
        }
        if self.record_type != DnsRecordType::Srv && self.port == 0 {
            return Err(invalid(
                format!("{path}.port"),
                "a port is required in DNS-SD configs for all record types except SRV",
            ));
        }
        if self.refresh_interval.is_zero() {
            return Err(invalid(
                format!("{path}.refresh_interval"),
                "refresh_interval must be greater than 0",
            ));
        }
        Ok(())
    }
}

/// The DNS record type `dns_sd_configs` asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum DnsRecordType {
    /// SRV records: each gives a target host and port.
    #[default]
    Srv,
    /// IPv4 addresses, with the config's `port`.
    A,
    /// IPv6 addresses, with the config's `port`.
    Aaaa,
}

impl DnsRecordType {
    /// `SRV`, `A` or `AAAA`.
    pub fn as_str(self) -> &'static str {
        match self {
            DnsRecordType::Srv => "SRV",
            DnsRecordType::A => "A",
            DnsRecordType::Aaaa => "AAAA",
        }
    }
}

impl<'de> Deserialize<'de> for DnsRecordType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        // Case-insensitive, as in Prometheus.
        match s.to_ascii_uppercase().as_str() {
            "SRV" => Ok(DnsRecordType::Srv),
            "A" => Ok(DnsRecordType::A),
            "AAAA" => Ok(DnsRecordType::Aaaa),
            "MX" | "NS" => Err(serde::de::Error::custom(format!(
                "DNS-SD records type {s} is not supported (use SRV, A or AAAA)"
            ))),
            _ => Err(serde::de::Error::custom(format!(
                "invalid DNS-SD records type {s}"
            ))),
        }
    }
}

impl Serialize for DnsRecordType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}
