//! Sections read now and used by later work: `remote_write` (shipping samples to another
//! Prometheus-compatible store) and `alerting` (where alerts go). They are parsed and
//! validated at start like the rest, so a typo fails now rather than when the feature lands.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::http::{self, Authorization, BasicAuth, TlsConfig};
use super::scrape::{DnsSdConfig, FileSdConfig, Scheme, StaticConfig, validate_service_discovery};
use super::units::duration;
use super::{ConfigError, invalid, unique_map, validate_relabel_configs};
use crate::relabel::RelabelConfig;

/// Headers a `remote_write` section may not set: the client owns them (Prometheus' list;
/// `authorization` goes through `basic_auth` / `authorization`).
const RESERVED_HEADERS: [&str; 13] = [
    "host",
    "content-encoding",
    "content-length",
    "content-type",
    "user-agent",
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "www-authenticate",
    "accept-encoding",
    "x-prometheus-remote-write-version",
    "x-prometheus-remote-read-version",
];

/// `remote_write[]`: a Prometheus remote-write receiver to send samples to.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteWriteConfig {
    /// The receiver's endpoint, an absolute `http://` or `https://` URL.
    #[serde(default)]
    pub url: String,
    /// Timeout of one send request.
    #[serde(default = "thirty_seconds", with = "duration")]
    pub remote_timeout: Duration,
    /// Extra HTTP headers sent with each request (not the reserved ones).
    #[serde(
        default,
        deserialize_with = "unique_map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub headers: BTreeMap<String, String>,
    /// A name for metrics and logs; unique among `remote_write` entries when set.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// HTTP Basic authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuth>,
    /// An `Authorization` header (bearer token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<Authorization>,
    /// TLS settings for an `https` URL.
    #[serde(default)]
    pub tls_config: TlsConfig,
    /// Relabeling of each series before it is sent; a dropped series is not sent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub write_relabel_configs: Vec<RelabelConfig>,
    /// Sending queue sizes.
    #[serde(default)]
    pub queue_config: QueueConfig,
}

fn thirty_seconds() -> Duration {
    Duration::from_secs(30)
}

impl RemoteWriteConfig {
    pub(super) fn validate(&self, path: &str) -> Result<(), ConfigError> {
        if self.url.is_empty() {
            return Err(invalid(
                format!("{path}.url"),
                "url for remote_write is empty",
            ));
        }
        if !is_http_url(&self.url) {
            return Err(invalid(
                format!("{path}.url"),
                format!("{:?} is not an absolute http or https URL", self.url),
            ));
        }
        for name in self.headers.keys() {
            let lower = name.to_ascii_lowercase();
            if lower == "authorization" {
                return Err(invalid(
                    format!("{path}.headers.{name}"),
                    "authorization header must be changed via the basic_auth or authorization parameter",
                ));
            }
            if RESERVED_HEADERS.contains(&lower.as_str()) {
                return Err(invalid(
                    format!("{path}.headers.{name}"),
                    format!("{name} is a reserved header. It must not be changed"),
                ));
            }
        }
        if self.remote_timeout.is_zero() {
            return Err(invalid(
                format!("{path}.remote_timeout"),
                "remote_timeout must be greater than 0",
            ));
        }
        http::validate(
            path,
            self.basic_auth.as_ref(),
            self.authorization.as_ref(),
            &self.tls_config,
        )?;
        validate_relabel_configs(
            &format!("{path}.write_relabel_configs"),
            &self.write_relabel_configs,
        )?;
        self.queue_config.validate(&format!("{path}.queue_config"))
    }

    pub(super) fn set_directory(&mut self, dir: &Path) {
        http::set_directory(
            dir,
            self.basic_auth.as_mut(),
            self.authorization.as_mut(),
            &mut self.tls_config,
        );
    }
}

/// `scheme://host…` with an http(s) scheme and a non-empty host.
fn is_http_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    rest.is_some_and(|r| {
        let authority = r.split(['/', '?', '#']).next().unwrap_or("");
        !authority.is_empty() && !authority.contains(char::is_whitespace)
    })
}

/// `remote_write[].queue_config`: how many samples wait and how they are batched.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// Samples buffered per shard before reading the WAL pauses.
    #[serde(default = "default_capacity")]
    pub capacity: u64,
    /// Most concurrent senders.
    #[serde(default = "default_max_shards")]
    pub max_shards: u64,
    /// Most samples in one request.
    #[serde(default = "default_max_samples_per_send")]
    pub max_samples_per_send: u64,
    /// Longest a sample waits for its batch to fill.
    #[serde(default = "five_seconds", with = "duration")]
    pub batch_send_deadline: Duration,
}

fn default_capacity() -> u64 {
    10_000
}

fn default_max_shards() -> u64 {
    50
}

fn default_max_samples_per_send() -> u64 {
    2_000
}

fn five_seconds() -> Duration {
    Duration::from_secs(5)
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            capacity: default_capacity(),
            max_shards: default_max_shards(),
            max_samples_per_send: default_max_samples_per_send(),
            batch_send_deadline: five_seconds(),
        }
    }
}

impl QueueConfig {
    fn validate(&self, path: &str) -> Result<(), ConfigError> {
        for (key, value) in [
            ("capacity", self.capacity),
            ("max_shards", self.max_shards),
            ("max_samples_per_send", self.max_samples_per_send),
        ] {
            if value == 0 {
                return Err(invalid(
                    format!("{path}.{key}"),
                    format!("{key} must be greater than 0"),
                ));
            }
        }
        if self.batch_send_deadline.is_zero() {
            return Err(invalid(
                format!("{path}.batch_send_deadline"),
                "batch_send_deadline must be greater than 0",
            ));
        }
        Ok(())
    }
}

/// `alerting`: relabeling of outgoing alerts and the Alertmanagers to send them to.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AlertingConfig {
    /// Relabeling of every alert before it is sent to any Alertmanager.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alert_relabel_configs: Vec<RelabelConfig>,
    /// Alertmanager sets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alertmanagers: Vec<AlertmanagerConfig>,
}

impl AlertingConfig {
    /// Whether the section says nothing (it is then left out of the status YAML).
    pub fn is_empty(&self) -> bool {
        self.alert_relabel_configs.is_empty() && self.alertmanagers.is_empty()
    }

    pub(super) fn validate(&self, path: &str) -> Result<(), ConfigError> {
        validate_relabel_configs(
            &format!("{path}.alert_relabel_configs"),
            &self.alert_relabel_configs,
        )?;
        for (i, am) in self.alertmanagers.iter().enumerate() {
            am.validate(&format!("{path}.alertmanagers[{i}]"))?;
        }
        Ok(())
    }

    pub(super) fn set_directory(&mut self, dir: &Path) {
        for am in &mut self.alertmanagers {
            http::set_directory(
                dir,
                am.basic_auth.as_mut(),
                am.authorization.as_mut(),
                &mut am.tls_config,
            );
            for f in &mut am.file_sd_configs {
                f.set_directory(dir);
            }
        }
    }
}

/// `alerting.alertmanagers[]`: one set of Alertmanagers, found like scrape targets.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerConfig {
    /// `http` or `https`.
    #[serde(default)]
    pub scheme: Scheme,
    /// Path prefix in front of `/api/v2/alerts`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path_prefix: String,
    /// Timeout of one send.
    #[serde(default = "ten_seconds", with = "duration")]
    pub timeout: Duration,
    /// Alertmanager API version; only `v2` exists in Prometheus 3.
    #[serde(default = "default_api_version")]
    pub api_version: String,
    /// HTTP Basic authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuth>,
    /// An `Authorization` header (bearer token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<Authorization>,
    /// TLS settings for `https`.
    #[serde(default)]
    pub tls_config: TlsConfig,
    /// DNS discovery of the Alertmanagers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_sd_configs: Vec<DnsSdConfig>,
    /// File discovery of the Alertmanagers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub file_sd_configs: Vec<FileSdConfig>,
    /// Fixed Alertmanagers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub static_configs: Vec<StaticConfig>,
    /// Relabeling of the discovered Alertmanagers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub relabel_configs: Vec<RelabelConfig>,
    /// Relabeling of alerts sent to this set only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alert_relabel_configs: Vec<RelabelConfig>,
}

fn ten_seconds() -> Duration {
    Duration::from_secs(10)
}

fn default_api_version() -> String {
    "v2".into()
}

impl AlertmanagerConfig {
    fn validate(&self, path: &str) -> Result<(), ConfigError> {
        if self.api_version != "v2" {
            return Err(invalid(
                format!("{path}.api_version"),
                format!(
                    "expected Alertmanager api version to be one of [v2] but got {}",
                    self.api_version
                ),
            ));
        }
        if self.timeout.is_zero() {
            return Err(invalid(
                format!("{path}.timeout"),
                "timeout must be greater than 0",
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
            &format!("{path}.alert_relabel_configs"),
            &self.alert_relabel_configs,
        )
    }
}
