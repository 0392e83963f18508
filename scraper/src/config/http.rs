//! The HTTP client settings shared by scrape jobs, remote write and Alertmanagers
//! (Prometheus' `HTTPClientConfig` subset): `basic_auth`, `authorization`, `tls_config`.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{ConfigError, invalid, join_dir};

/// A password or token from the config file. It prints as `<secret>` everywhere (Debug, the
/// status page's YAML), as Prometheus does, so it never reaches a log.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether no secret was given.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<secret>")
    }
}

/// `basic_auth`: HTTP Basic authentication with a password given inline or in a file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    /// The user name.
    #[serde(default)]
    pub username: String,
    /// The password, inline (exclusive with `password_file`).
    #[serde(default, skip_serializing_if = "Secret::is_empty")]
    pub password: Secret,
    /// A file whose content is the password, read at each request so it can rotate; relative
    /// to the config file's directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
}

/// `authorization`: an `Authorization: <type> <credentials>` header.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Authorization {
    /// The scheme; `Bearer` unless set. `Basic` is refused (use `basic_auth`).
    #[serde(rename = "type", default = "default_auth_type")]
    pub kind: String,
    /// The credentials, inline (exclusive with `credentials_file`).
    #[serde(default, skip_serializing_if = "Secret::is_empty")]
    pub credentials: Secret,
    /// A file whose content is the credentials; relative to the config file's directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_file: Option<PathBuf>,
}

fn default_auth_type() -> String {
    "Bearer".into()
}

impl Default for Authorization {
    fn default() -> Self {
        Self {
            kind: default_auth_type(),
            credentials: Secret::default(),
            credentials_file: None,
        }
    }
}

/// `tls_config`: how to verify the server and which client certificate to show.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// CA certificates (PEM) to verify the server with, instead of the system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS; needs `key_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// Client private key (PEM); needs `cert_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// Name to verify the server certificate against (and send as SNI) instead of the host.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub server_name: String,
    /// Accept any server certificate. For tests only: it makes TLS pointless.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// Checks the combination rules of Prometheus' `HTTPClientConfig.Validate`; `path` is the
/// section holding the three keys (`scrape_configs[0]`).
pub(super) fn validate(
    path: &str,
    basic_auth: Option<&BasicAuth>,
    authorization: Option<&Authorization>,
    tls: &TlsConfig,
) -> Result<(), ConfigError> {
    if basic_auth.is_some() && authorization.is_some() {
        return Err(invalid(
            format!("{path}.authorization"),
            "at most one of basic_auth & authorization must be configured",
        ));
    }
    if let Some(b) = basic_auth
        && !b.password.is_empty()
        && b.password_file.is_some()
    {
        return Err(invalid(
            format!("{path}.basic_auth.password_file"),
            "at most one of basic_auth password & password_file must be configured",
        ));
    }
    if let Some(a) = authorization {
        if a.kind.trim().eq_ignore_ascii_case("basic") {
            return Err(invalid(
                format!("{path}.authorization.type"),
                r#"authorization type cannot be set to "basic", use "basic_auth" instead"#,
            ));
        }
        if a.kind.trim().is_empty() {
            return Err(invalid(
                format!("{path}.authorization.type"),
                "authorization type cannot be empty",
            ));
        }
        if !a.credentials.is_empty() && a.credentials_file.is_some() {
            return Err(invalid(
                format!("{path}.authorization.credentials_file"),
                "at most one of authorization credentials & credentials_file must be configured",
            ));
        }
    }
    match (&tls.cert_file, &tls.key_file) {
        (Some(_), None) => Err(invalid(
            format!("{path}.tls_config.key_file"),
            "key_file must be configured when a client certificate (cert_file) is configured",
        )),
        (None, Some(_)) => Err(invalid(
            format!("{path}.tls_config.cert_file"),
            "cert_file must be configured when a client key (key_file) is configured",
        )),
        _ => Ok(()),
    }
}

/// Makes the file paths of the three sections relative to `dir` (the config file's folder).
pub(super) fn set_directory(
    dir: &Path,
    basic_auth: Option<&mut BasicAuth>,
    authorization: Option<&mut Authorization>,
    tls: &mut TlsConfig,
) {
    if let Some(b) = basic_auth {
        join_dir(dir, &mut b.password_file);
    }
    if let Some(a) = authorization {
        join_dir(dir, &mut a.credentials_file);
    }
    join_dir(dir, &mut tls.ca_file);
    join_dir(dir, &mut tls.cert_file);
    join_dir(dir, &mut tls.key_file);
}
