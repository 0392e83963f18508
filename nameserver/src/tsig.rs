//! TSIG (RFC 8945): keys from BIND-format key files, request verification and response
//! signing, including the chained MACs of a multi-message zone transfer.
//!
//! hickory-proto has the HMAC and wire pieces (`TSigner`); hickory-server verifies TSIG only
//! inside its SQLite handler, so the server side is here. A key file is what `tsig-keygen`
//! prints and what `nsupdate -k` and BIND's `include` read:
//!
//! ```text
//! key "heimdall-update" {
//!     algorithm hmac-sha256;
//!     secret "base64...";
//! };
//! ```

use std::path::{Path, PathBuf};

use hickory_proto::op::{Metadata, ResponseCode};
use hickory_proto::rr::rdata::tsig::{TSIG, TsigAlgorithm, TsigError, make_tsig_record};
use hickory_proto::rr::{Name, Record, TSigResponseContext, TSigner};

/// Allowed clock difference between signer and verifier, as BIND's default.
pub const FUDGE: u16 = 300;
/// Keys per file; a key file is configuration, not data.
const MAX_KEYS: usize = 256;

/// Why a key file was refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read TSIG key file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("TSIG key file {path}, line {line}: {reason}")]
    Syntax {
        path: PathBuf,
        line: usize,
        reason: String,
    },
}

/// The configured TSIG keys.
#[derive(Clone, Default)]
pub struct Keys {
    signers: Vec<TSigner>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets: names only.
        f.debug_list()
            .entries(self.signers.iter().map(|s| s.signer_name().to_ascii()))
            .finish()
    }
}

impl Keys {
    /// Reads every `key "name" { algorithm …; secret "…"; };` clause of `path`.
    pub fn from_file(path: &Path) -> Result<Self, KeyFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|(line, reason)| KeyFileError::Syntax {
            path: path.to_owned(),
            line,
            reason,
        })
    }

    /// Parses key-file text; errors carry the line number.
    pub fn parse(text: &str) -> Result<Self, (usize, String)> {
        let tokens = tokenize(text)?;
        let mut signers = Vec::new();
        let mut it = tokens.into_iter().peekable();
        while let Some((line, tok)) = it.next() {
            if tok != "key" {
                return Err((line, format!("expected `key`, found {tok:?}")));
            }
            let mut next = |what: &str| {
                it.next()
                    .ok_or_else(|| (line, format!("unexpected end of file, expected {what}")))
            };
            let (_, name) = next("a key name")?;
            let (l, brace) = next("`{`")?;
            if brace != "{" {
                return Err((l, format!("expected `{{`, found {brace:?}")));
            }
            let (mut algorithm, mut secret) = (None, None);
            loop {
                let (l, field) = next("`algorithm`, `secret` or `}`")?;
                match field.as_str() {
                    "}" => break,
                    "algorithm" | "secret" => {
                        let (_, value) = next("a value")?;
                        let (l2, semi) = next("`;`")?;
                        if semi != ";" {
                            return Err((l2, format!("expected `;`, found {semi:?}")));
                        }
                        if field == "algorithm" {
                            algorithm = Some((l, value));
                        } else {
                            secret = Some((l, value));
                        }
                    }
                    other => return Err((l, format!("unknown key field {other:?}"))),
                }
            }
            if let Some((_, semi)) = it.peek()
                && semi == ";"
            {
                it.next();
            }
            let (al, algorithm) =
                algorithm.ok_or_else(|| (line, format!("key {name:?} has no algorithm")))?;
            let algorithm = match algorithm.to_ascii_lowercase().as_str() {
                "hmac-sha256" => TsigAlgorithm::HmacSha256,
                "hmac-sha384" => TsigAlgorithm::HmacSha384,
                "hmac-sha512" => TsigAlgorithm::HmacSha512,
                other => {
                    return Err((
                        al,
                        format!(
                            "algorithm {other:?} is not supported (use hmac-sha256, hmac-sha384 or hmac-sha512)"
                        ),
                    ));
                }
            };
            let (sl, secret) =
                secret.ok_or_else(|| (line, format!("key {name:?} has no secret")))?;
            let key = data_encoding::BASE64
                .decode(secret.as_bytes())
                .map_err(|e| (sl, format!("secret is not base64: {e}")))?;
            if key.len() < 16 {
                return Err((sl, "secret is shorter than 16 bytes".into()));
            }
            let mut key_name =
                Name::from_ascii(&name).map_err(|e| (line, format!("bad key name: {e}")))?;
            key_name.set_fqdn(true);
            let signer = TSigner::new(key, algorithm, key_name.to_lowercase(), FUDGE)
                .map_err(|e| (line, e.to_string()))?;
            if signers.len() >= MAX_KEYS {
                return Err((line, format!("more than {MAX_KEYS} keys")));
            }
            signers.push(signer);
        }
        Ok(Self { signers })
    }

    pub fn is_empty(&self) -> bool {
        self.signers.is_empty()
    }

    /// The key called `name`.
    pub fn get(&self, name: &Name) -> Option<&TSigner> {
        let mut name = name.to_lowercase();
        name.set_fqdn(true);
        self.signers.iter().find(|s| *s.signer_name() == name)
    }

    /// Verifies the TSIG of a request (`raw` as received) signed with `tsig`, at `now`
    /// (seconds since the epoch).
    pub fn verify(&self, raw: &[u8], tsig: &Record<TSIG>, now: u64) -> Verified {
        let id = tsig.data.oid;
        let Some(signer) = self.get(&tsig.name) else {
            return Verified::Failed(Failure {
                code: ResponseCode::NotAuth,
                context: TSigResponseContext::unknown_key(id, now, tsig.name.clone()),
                reason: "unknown TSIG key",
            });
        };
        let Ok((mac, _, range)) = signer.verify_message_byte(raw, None, true) else {
            return Verified::Failed(Failure {
                code: ResponseCode::NotAuth,
                context: TSigResponseContext::bad_signature(id, now, signer.clone()),
                reason: "bad TSIG signature",
            });
        };
        if !range.contains(&now) {
            // RFC 8945 §5.2.3: BADTIME is signed with the request's key.
            return Verified::Failed(Failure {
                code: ResponseCode::NotAuth,
                context: TSigResponseContext::new(
                    id,
                    now,
                    signer.clone(),
                    mac,
                    Some(TsigError::BadTime),
                ),
                reason: "TSIG time outside the fudge window",
            });
        }
        Verified::Ok(Session {
            signer: signer.clone(),
            previous_mac: mac,
            time: now,
            first: true,
        })
    }
}

/// The result of checking a request's TSIG.
#[derive(Debug)]
pub enum Verified {
    Ok(Session),
    Failed(Failure),
}

/// A refused request: the rcode, the (unsigned or BADTIME-signed) TSIG to put in the answer,
/// and why, for the log.
pub struct Failure {
    pub code: ResponseCode,
    pub context: TSigResponseContext,
    pub reason: &'static str,
}

impl std::fmt::Debug for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Failure")
            .field("code", &self.code)
            .field("reason", &self.reason)
            .finish_non_exhaustive()
    }
}

/// A verified request's signing state: each response message is signed over the previous
/// MAC, so the messages of one transfer form a chain (RFC 8945 §5.3.1).
#[derive(Clone)]
pub struct Session {
    signer: TSigner,
    previous_mac: Vec<u8>,
    time: u64,
    first: bool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("key", &self.signer.signer_name().to_ascii())
            .finish_non_exhaustive()
    }
}

impl Session {
    pub fn key_name(&self) -> &Name {
        self.signer.signer_name()
    }

    /// The TSIG record for the next response message, whose encoding without TSIG is
    /// `message`, sent for request `id`.
    pub fn sign(&mut self, id: u16, message: &[u8]) -> Result<Box<Record<TSIG>>, String> {
        // The TSIG without its MAC: what the MAC is computed over (RFC 8945 §4.3.3).
        let unsigned = TSIG::new(
            self.signer.algorithm().clone(),
            self.time,
            self.signer.fudge(),
            Vec::new(),
            id,
            None,
            Vec::new(),
        );
        let tbs = if self.first {
            self.signer
                .encode_response_tbs(&self.previous_mac, message, &unsigned)
                .map_err(|e| e.to_string())?
        } else {
            // Subsequent messages: prior MAC, the message, and only the timers.
            let mut tbs = Vec::with_capacity(self.previous_mac.len() + message.len() + 10);
            tbs.extend_from_slice(&(self.previous_mac.len() as u16).to_be_bytes());
            tbs.extend_from_slice(&self.previous_mac);
            tbs.extend_from_slice(message);
            tbs.extend_from_slice(&self.time.to_be_bytes()[2..]);
            tbs.extend_from_slice(&self.signer.fudge().to_be_bytes());
            tbs
        };
        let mac = self.signer.sign(&tbs).map_err(|e| e.to_string())?;
        self.previous_mac = mac.clone();
        self.first = false;
        Ok(Box::new(make_tsig_record(
            self.signer.signer_name().clone(),
            unsigned.set_mac(mac),
        )))
    }
}

/// Whether a response with `metadata` must be signed (everything but BADSIG/BADKEY answers,
/// which are handled by [`Failure`]).
pub fn signs(metadata: &Metadata) -> bool {
    metadata.response_code != ResponseCode::NotAuth
}

/// Splits key-file text into tokens with their line numbers: words, quoted strings, `{`, `}`,
/// `;`; skips `#`, `//` and `/* */` comments.
fn tokenize(text: &str) -> Result<Vec<(usize, String)>, (usize, String)> {
    let mut out = Vec::new();
    let mut line = 1;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' => line += 1,
            c if c.is_whitespace() => {}
            '#' => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        line += 1;
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        line += 1;
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let start = line;
                let mut prev = ' ';
                loop {
                    match chars.next() {
                        Some('/') if prev == '*' => break,
                        Some(c) => {
                            if c == '\n' {
                                line += 1;
                            }
                            prev = c;
                        }
                        None => return Err((start, "unterminated /* comment".into())),
                    }
                }
            }
            '{' | '}' | ';' => out.push((line, c.to_string())),
            '"' => {
                let start = line;
                let mut s = String::new();
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\n') | None => return Err((start, "unterminated string".into())),
                        Some(c) => s.push(c),
                    }
                }
                out.push((start, s));
            }
            c => {
                let mut s = String::from(c);
                while let Some(&n) = chars.peek() {
                    if n.is_whitespace() || matches!(n, '{' | '}' | ';' | '"') {
                        break;
                    }
                    s.push(n);
                    chars.next();
                }
                out.push((line, s));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
# made by tsig-keygen
key "heimdall-update" {
	algorithm hmac-sha256;
	secret "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0IQ==";
};
/* a second
   key */ key xfr. { algorithm HMAC-SHA512; secret "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0IQ=="; };
"#;

    #[test]
    fn parses_bind_key_files() {
        let keys = Keys::parse(FILE).unwrap();
        assert_eq!(keys.signers.len(), 2);
        let k = keys
            .get(&Name::from_ascii("Heimdall-Update.").unwrap())
            .unwrap();
        assert_eq!(k.algorithm(), &TsigAlgorithm::HmacSha256);
        assert!(keys.get(&Name::from_ascii("xfr").unwrap()).is_some());
        assert!(
            !format!("{keys:?}").contains("c2Vj"),
            "secrets never printed"
        );
    }

    #[test]
    fn bad_key_files_name_the_line() {
        let cases = [
            (
                "key \"a\" { algorithm hmac-md5; secret \"c2VjcmV0LXNlY3JldC1zZWNyZXQ=\"; };",
                1,
                "not supported",
            ),
            (
                "key \"a\" {\n algorithm hmac-sha256;\n secret \"!!\"; };",
                3,
                "base64",
            ),
            ("key \"a\" { algorithm hmac-sha256; };", 1, "no secret"),
            ("zone \"x\" { };", 1, "expected `key`"),
            ("key \"a\" {\n algorithm hmac-sha256", 1, "end of file"),
            ("key \"a\" { secret \"unterminated };", 1, "unterminated"),
            (
                "key \"a\" { algorithm hmac-sha256; secret \"c2hvcnQ=\"; };",
                1,
                "shorter",
            ),
        ];
        for (text, line, what) in cases {
            let Err((l, reason)) = Keys::parse(text) else {
                panic!("{text:?} parsed")
            };
            assert_eq!(l, line, "{text:?}: {reason}");
            assert!(reason.contains(what), "{text:?}: {reason}");
        }
    }
}
