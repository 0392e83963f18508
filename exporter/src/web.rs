//! Web security: exporter-toolkit's `--web.config.file` YAML (TLS and bcrypt basic auth), bearer
//! API keys, and a per-client limit on failed authentication attempts.
//!
//! Secrets are never logged: keys are kept only as SHA-256 digests and compared in constant
//! time; a bcrypt verification (≈70 ms at cost 10) runs on the blocking pool and a successful
//! one is cached by the digest of (user, password, hash), as exporter-toolkit does.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// exporter-toolkit's web configuration file. Keys exporter-toolkit knows but Heimdall does not
/// act on are accepted with a warning; unknown keys are an error, as in exporter-toolkit.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebConfigFile {
    #[serde(default)]
    pub tls_server_config: Option<TlsServerConfig>,
    #[serde(default)]
    pub http_server_config: Option<HttpServerConfig>,
    /// user → bcrypt hash (`$2a$`, `$2b$`, `$2y$`).
    #[serde(default)]
    pub basic_auth_users: HashMap<String, String>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsServerConfig {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Only `NoClientCert` (the default) is supported; client certificates are refused at start.
    pub client_auth_type: Option<String>,
    pub client_ca_file: Option<PathBuf>,
    pub min_version: Option<String>,
    pub max_version: Option<String>,
    pub cipher_suites: Option<Vec<String>>,
    pub curve_preferences: Option<Vec<String>>,
    pub prefer_server_cipher_suites: Option<bool>,
    pub client_allowed_sans: Option<Vec<String>>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpServerConfig {
    pub http2: Option<bool>,
    /// Extra response headers.
    #[serde(default)]
    pub headers: HashMap<String, String>,
}

/// Why the web configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    #[error("web config {path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// The validated web settings the server runs with.
#[derive(Debug, Default)]
pub struct WebSettings {
    pub tls: Option<(PathBuf, PathBuf)>,
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    pub auth: Authenticator,
}

impl WebSettings {
    /// Loads `--web.config.file` and `--web.bearer-token-file` (either may be absent).
    pub fn load(
        web_config: Option<&Path>,
        bearer_file: Option<&Path>,
    ) -> Result<Self, WebConfigError> {
        let mut settings = WebSettings::default();
        if let Some(path) = web_config {
            let invalid = |reason: String| WebConfigError::Invalid {
                path: path.to_owned(),
                reason,
            };
            let text = std::fs::read_to_string(path).map_err(|e| invalid(e.to_string()))?;
            let file: WebConfigFile = if text.trim().is_empty() {
                WebConfigFile::default()
            } else {
                serde_yaml_ng::from_str(&text).map_err(|e| invalid(e.to_string()))?
            };
            let base = path.parent().unwrap_or(Path::new("."));
            if let Some(tls) = file.tls_server_config {
                match tls.client_auth_type.as_deref() {
                    None | Some("") | Some("NoClientCert") => {}
                    Some(other) => {
                        return Err(invalid(format!(
                            "tls_server_config.client_auth_type {other:?} is not supported (only NoClientCert)"
                        )));
                    }
                }
                if tls.client_ca_file.is_some() || tls.client_allowed_sans.is_some() {
                    return Err(invalid(
                        "tls_server_config.client_ca_file/client_allowed_sans: client certificates are not supported".into(),
                    ));
                }
                if tls.cipher_suites.is_some()
                    || tls.curve_preferences.is_some()
                    || tls.min_version.is_some()
                    || tls.max_version.is_some()
                    || tls.prefer_server_cipher_suites.is_some()
                {
                    tracing::warn!(
                        "web config: cipher_suites, curve_preferences, min/max_version and prefer_server_cipher_suites are ignored; rustls' safe defaults (TLS 1.2+) apply"
                    );
                }
                match (tls.cert_file, tls.key_file) {
                    (Some(c), Some(k)) => {
                        let (c, k) = (base.join(c), base.join(k));
                        for f in [&c, &k] {
                            std::fs::metadata(f).map_err(|e| {
                                invalid(format!("tls_server_config: {}: {e}", f.display()))
                            })?;
                        }
                        settings.tls = Some((c, k));
                    }
                    (None, None) => {}
                    _ => {
                        return Err(invalid(
                            "tls_server_config needs both cert_file and key_file".into(),
                        ));
                    }
                }
            }
            if let Some(h) = file.http_server_config {
                for (k, v) in h.headers {
                    let name = http::HeaderName::try_from(k.as_str())
                        .map_err(|e| invalid(format!("http_server_config.headers {k:?}: {e}")))?;
                    let value = http::HeaderValue::try_from(v.as_str())
                        .map_err(|e| invalid(format!("http_server_config.headers {k:?}: {e}")))?;
                    settings.headers.push((name, value));
                }
            }
            for (user, hash) in &file.basic_auth_users {
                if !(hash.starts_with("$2a$")
                    || hash.starts_with("$2b$")
                    || hash.starts_with("$2x$")
                    || hash.starts_with("$2y$"))
                {
                    return Err(invalid(format!(
                        "basic_auth_users.{user}: not a bcrypt hash (expected $2a$/$2b$/$2y$...)"
                    )));
                }
            }
            settings.auth.users = file.basic_auth_users;
        }
        if let Some(path) = bearer_file {
            let text = std::fs::read_to_string(path).map_err(|e| WebConfigError::Invalid {
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
            for line in text.lines().map(str::trim) {
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                settings
                    .auth
                    .bearer_digests
                    .push(digest(&[line.as_bytes()]));
            }
            if settings.auth.bearer_digests.is_empty() {
                return Err(WebConfigError::Invalid {
                    path: path.to_owned(),
                    reason: "no keys in bearer token file".into(),
                });
            }
        }
        Ok(settings)
    }
}

fn digest(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h.finalize().into()
}

/// At most this many successful basic-auth verifications are cached; the cache is cleared
/// when full (the cost is one bcrypt verification per user afterwards).
const MAX_CACHED_LOGINS: usize = 1024;

/// Checks credentials. With no users and no keys configured, every request is allowed.
#[derive(Debug, Default)]
pub struct Authenticator {
    users: HashMap<String, String>,
    bearer_digests: Vec<[u8; 32]>,
    verified: Mutex<std::collections::HashSet<[u8; 32]>>,
}

/// Outcome of [`Authenticator::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthOutcome {
    Allowed,
    /// No credentials were sent.
    Missing,
    /// Credentials were sent and are wrong.
    Denied,
}

impl Authenticator {
    pub fn enabled(&self) -> bool {
        !self.users.is_empty() || !self.bearer_digests.is_empty()
    }

    /// Checks an `Authorization` header value.
    pub async fn check(&self, authorization: Option<&str>) -> AuthOutcome {
        if !self.enabled() {
            return AuthOutcome::Allowed;
        }
        let Some(value) = authorization else {
            return AuthOutcome::Missing;
        };
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        if scheme.eq_ignore_ascii_case("bearer") && !self.bearer_digests.is_empty() {
            let d = digest(&[rest.trim().as_bytes()]);
            // Compare against every key so timing does not reveal which (if any) matched.
            let mut ok = subtle::Choice::from(0);
            for k in &self.bearer_digests {
                ok |= k.ct_eq(&d);
            }
            return if bool::from(ok) {
                AuthOutcome::Allowed
            } else {
                AuthOutcome::Denied
            };
        }
        if scheme.eq_ignore_ascii_case("basic") && !self.users.is_empty() {
            return self.check_basic(rest.trim()).await;
        }
        AuthOutcome::Denied
    }

    async fn check_basic(&self, b64: &str) -> AuthOutcome {
        let Some(decoded) = base64_decode(b64) else {
            return AuthOutcome::Denied;
        };
        let Ok(decoded) = String::from_utf8(decoded) else {
            return AuthOutcome::Denied;
        };
        let Some((user, password)) = decoded.split_once(':') else {
            return AuthOutcome::Denied;
        };
        // An unknown user still costs a bcrypt verification, so timing does not tell users apart.
        static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let known = self.users.get(user).cloned();
        if let Some(hash) = &known {
            let key = digest(&[user.as_bytes(), password.as_bytes(), hash.as_bytes()]);
            if lock(&self.verified).contains(&key) {
                return AuthOutcome::Allowed;
            }
        }
        let pw = password.to_owned();
        let h = known.clone();
        let ok = tokio::task::spawn_blocking(move || {
            let hash = match &h {
                Some(h) => h.as_str(),
                None => DUMMY.get_or_init(|| {
                    bcrypt::hash("heimdall-unknown-user", bcrypt::DEFAULT_COST).unwrap_or_default()
                }),
            };
            bcrypt::verify(pw, hash).unwrap_or(false) && h.is_some()
        })
        .await
        .unwrap_or(false);
        let key = digest(&[
            user.as_bytes(),
            password.as_bytes(),
            known.as_deref().unwrap_or("").as_bytes(),
        ]);
        if ok {
            let mut cache = lock(&self.verified);
            if cache.len() >= MAX_CACHED_LOGINS {
                cache.clear();
            }
            cache.insert(key);
            AuthOutcome::Allowed
        } else {
            AuthOutcome::Denied
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Standard base64 with padding (RFC 4648), as HTTP basic auth uses it.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.as_bytes();
    if !s.len().is_multiple_of(4) || s.len() > 8192 {
        return None;
    }
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    for (i, chunk) in s.chunks(4).enumerate() {
        let last = i == s.len() / 4 - 1;
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut n = 0u32;
        for &c in &chunk[..4 - pad] {
            n = (n << 6) | val(c)?;
        }
        n <<= 6 * pad as u32;
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Some(out)
}

/// After `MAX_FAILURES` failed attempts within `WINDOW`, a client gets 429 until the window
/// ends. The table is bounded: when full, expired entries are dropped, then the oldest.
#[derive(Debug)]
pub struct FailureLimiter {
    clients: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

const MAX_FAILURES: u32 = 5;
const WINDOW: Duration = Duration::from_secs(60);
const MAX_TRACKED_CLIENTS: usize = 10_000;

impl Default for FailureLimiter {
    fn default() -> Self {
        Self {
            clients: Mutex::new(HashMap::new()),
        }
    }
}

impl FailureLimiter {
    /// Seconds the client must wait, if it is blocked.
    pub fn blocked_for(&self, ip: IpAddr) -> Option<u64> {
        let map = lock(&self.clients);
        let (count, since) = map.get(&ip)?;
        let elapsed = since.elapsed();
        (*count >= MAX_FAILURES && elapsed < WINDOW).then(|| (WINDOW - elapsed).as_secs().max(1))
    }

    pub fn record_failure(&self, ip: IpAddr) {
        let mut map = lock(&self.clients);
        if map.len() >= MAX_TRACKED_CLIENTS && !map.contains_key(&ip) {
            map.retain(|_, (_, since)| since.elapsed() < WINDOW);
            if map.len() >= MAX_TRACKED_CLIENTS
                && let Some(oldest) = map.iter().min_by_key(|(_, (_, s))| *s).map(|(k, _)| *k)
            {
                map.remove(&oldest);
            }
        }
        let entry = map.entry(ip).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= WINDOW {
            *entry = (0, Instant::now());
        }
        entry.0 += 1;
    }

    pub fn record_success(&self, ip: IpAddr) {
        lock(&self.clients).remove(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64() {
        assert_eq!(base64_decode("dXNlcjpwYXNz").unwrap(), b"user:pass");
        assert_eq!(base64_decode("YQ==").unwrap(), b"a");
        assert_eq!(base64_decode("YWI=").unwrap(), b"ab");
        assert!(base64_decode("YQ=").is_none());
        assert!(base64_decode("Y===").is_none());
        assert!(base64_decode("YQ==YQ==").is_none());
        assert!(base64_decode("!!!!").is_none());
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[tokio::test]
    async fn basic_and_bearer() {
        let dir = tempfile::tempdir().unwrap();
        let hash = bcrypt::hash("secret", 4).unwrap();
        let cfg = write(
            dir.path(),
            "web.yml",
            &format!("basic_auth_users:\n  alice: '{hash}'\n"),
        );
        let keys = write(dir.path(), "keys", "# comment\nk-123\n");
        let s = WebSettings::load(Some(&cfg), Some(&keys)).unwrap();
        let a = &s.auth;
        assert_eq!(a.check(None).await, AuthOutcome::Missing);
        assert_eq!(a.check(Some("Bearer k-123")).await, AuthOutcome::Allowed);
        assert_eq!(a.check(Some("Bearer k-124")).await, AuthOutcome::Denied);
        // alice:secret
        assert_eq!(
            a.check(Some("Basic YWxpY2U6c2VjcmV0")).await,
            AuthOutcome::Allowed
        );
        assert_eq!(
            a.check(Some("Basic YWxpY2U6c2VjcmV0")).await,
            AuthOutcome::Allowed
        );
        // alice:wrong, bob:secret
        assert_eq!(
            a.check(Some("Basic YWxpY2U6d3Jvbmc=")).await,
            AuthOutcome::Denied
        );
        assert_eq!(
            a.check(Some("Basic Ym9iOnNlY3JldA==")).await,
            AuthOutcome::Denied
        );
        assert_eq!(a.check(Some("Digest foo")).await, AuthOutcome::Denied);
    }

    #[test]
    fn rejects_bad_files_with_reasons() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            (
                "tls_server_config:\n  cert_file: c.pem\n",
                "both cert_file and key_file",
            ),
            ("basic_auth_users:\n  bob: plain\n", "not a bcrypt hash"),
            ("unknown_key: 1\n", "unknown field"),
            (
                "tls_server_config:\n  cert_file: nope.pem\n  key_file: nope.key\n",
                "nope.pem",
            ),
            (
                "tls_server_config:\n  client_auth_type: RequireAndVerifyClientCert\n",
                "not supported",
            ),
        ];
        for (text, want) in cases {
            let p = write(dir.path(), "w.yml", text);
            let e = WebSettings::load(Some(&p), None).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
        let empty = write(dir.path(), "k", "\n# only comments\n");
        assert!(WebSettings::load(None, Some(&empty)).is_err());
    }

    #[test]
    fn limiter_blocks_after_repeated_failures() {
        let l = FailureLimiter::default();
        let ip: IpAddr = "127.0.0.2".parse().unwrap();
        for _ in 0..MAX_FAILURES - 1 {
            l.record_failure(ip);
        }
        assert!(l.blocked_for(ip).is_none());
        l.record_failure(ip);
        assert!(l.blocked_for(ip).is_some());
        l.record_success(ip);
        assert!(l.blocked_for(ip).is_none());
    }
}
