//! `os`: node_os_info, node_os_version and node_os_support_end_timestamp_seconds from
//! os-release (`/etc/os-release`, falling back to `/usr/lib/os-release`), as node_exporter's
//! `os_release.go`.

use std::collections::HashMap;

use super::{BuildError, CollectError, Collector, CollectorOptions, Paths, read_file};
use crate::exposition::Sink;

const OS_RELEASE_FILES: &[&str] = &["/etc/os-release", "/usr/lib/os-release"];

const INFO_HELP: &str = "A metric with a constant '1' value labeled by build_id, id, id_like, image_id, image_version, name, pretty_name, variant, variant_id, version, version_codename, version_id.";

#[derive(Debug)]
struct Os;

pub fn build(_: &CollectorOptions) -> Result<Box<dyn Collector>, BuildError> {
    Ok(Box::new(Os))
}

impl Collector for Os {
    fn collect(&self, paths: &Paths, out: &mut Sink) -> Result<(), CollectError> {
        let mut text = None;
        for file in OS_RELEASE_FILES {
            match read_file(&paths.root(file)) {
                Ok(t) => {
                    text = Some((file, t));
                    break;
                }
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e),
            }
        }
        let Some((file, text)) = text else {
            return Err(CollectError::NoData);
        };
        let env = parse_os_release(&text).map_err(|e| CollectError::parse(*file, e))?;
        let get = |k: &str| env.get(k).map(String::as_str).unwrap_or("");

        out.gauge(
            "node_os_info",
            INFO_HELP,
            &[
                ("build_id", get("BUILD_ID")),
                ("id", get("ID")),
                ("id_like", get("ID_LIKE")),
                ("image_id", get("IMAGE_ID")),
                ("image_version", get("IMAGE_VERSION")),
                ("name", get("NAME")),
                ("pretty_name", get("PRETTY_NAME")),
                ("variant", get("VARIANT")),
                ("variant_id", get("VARIANT_ID")),
                ("version", get("VERSION")),
                ("version_codename", get("VERSION_CODENAME")),
                ("version_id", get("VERSION_ID")),
            ],
            1.0,
        );
        let version = major_minor(get("VERSION_ID"));
        if version > 0.0 {
            out.gauge(
                "node_os_version",
                "Metric containing the major.minor part of the OS version.",
                &[
                    ("id", get("ID")),
                    ("id_like", get("ID_LIKE")),
                    ("name", get("NAME")),
                ],
                version,
            );
        }
        let support_end = get("SUPPORT_END");
        if !support_end.is_empty() {
            let ts = parse_date(support_end).ok_or_else(|| {
                CollectError::parse(
                    *file,
                    format!("SUPPORT_END {support_end:?} is not YYYY-MM-DD"),
                )
            })?;
            out.gauge(
                "node_os_support_end_timestamp_seconds",
                "Metric containing the end-of-life date timestamp of the OS.",
                &[],
                ts as f64,
            );
        }
        Ok(())
    }
}

/// The leading `^[0-9]+\.?[0-9]*` of VERSION_ID as a number; 0 when there is none.
fn major_minor(version_id: &str) -> f64 {
    let int_len = version_id.bytes().take_while(u8::is_ascii_digit).count();
    if int_len == 0 {
        return 0.0;
    }
    let mut end = int_len;
    if version_id[end..].starts_with('.') {
        end += 1;
        end += version_id[end..]
            .bytes()
            .take_while(u8::is_ascii_digit)
            .count();
    }
    version_id[..end].parse().unwrap_or(0.0)
}

/// `YYYY-MM-DD` as the Unix time of that day's midnight UTC.
fn parse_date(s: &str) -> Option<i64> {
    let mut it = s.splitn(3, '-');
    let (y, m, d) = (it.next()?, it.next()?, it.next()?);
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if !(all_digits(y) && all_digits(m) && all_digits(d)) {
        return None;
    }
    let (y, m, d): (i64, u32, u32) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days_in = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if d == 0 || d > days_in {
        return None;
    }
    Some(days_from_civil(y, m, d) * 86_400)
}

pub(crate) use heimdall_common::time::days_from_civil;

/// Parses an os-release(5) file: `KEY=value` lines with shell-style quoting (double quotes
/// with backslash escapes, single quotes literal), `#` comments and blank lines.
pub fn parse_os_release(s: &str) -> Result<HashMap<String, String>, String> {
    let mut env = HashMap::new();
    for (n, raw) in s.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("line {}: missing '=' in {raw:?}", n + 1));
        };
        let valid_key = key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_key {
            return Err(format!("line {}: invalid key {key:?}", n + 1));
        }
        let value = parse_value(value).map_err(|e| format!("line {}: {e}", n + 1))?;
        env.insert(key.to_string(), value);
    }
    Ok(env)
}

fn parse_value(s: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => loop {
                match chars.next() {
                    None => return Err(format!("unterminated double quote in {s:?}")),
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some(e @ ('"' | '\\' | '$' | '`')) => out.push(e),
                        Some('\n') => {}
                        Some(other) => {
                            out.push('\\');
                            out.push(other);
                        }
                        None => return Err(format!("unterminated double quote in {s:?}")),
                    },
                    Some(other) => out.push(other),
                }
            },
            '\'' => loop {
                match chars.next() {
                    None => return Err(format!("unterminated single quote in {s:?}")),
                    Some('\'') => break,
                    Some(other) => out.push(other),
                }
            },
            '\\' => match chars.next() {
                Some(e) => out.push(e),
                None => return Err(format!("trailing backslash in {s:?}")),
            },
            c if c.is_whitespace() => {
                // Only a comment may follow an unquoted space.
                let rest: String = chars.collect();
                let rest = rest.trim_start();
                if rest.is_empty() || rest.starts_with('#') {
                    break;
                }
                return Err(format!("unexpected text after value in {s:?}"));
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::{Format, encode};

    #[test]
    fn parses_quoting() {
        let env = parse_os_release(
            "# comment\n\nNAME=\"Ubuntu\"\nVERSION=\"20.04.2 LTS (Focal Fossa)\"\nID=ubuntu\n\
             ID_LIKE='debian'\nPRETTY_NAME=\"A \\\"q\\\" \\$x\"\nX=a\\ b # trailing\nexport Y=1\n",
        )
        .unwrap();
        assert_eq!(env["NAME"], "Ubuntu");
        assert_eq!(env["VERSION"], "20.04.2 LTS (Focal Fossa)");
        assert_eq!(env["ID"], "ubuntu");
        assert_eq!(env["ID_LIKE"], "debian");
        assert_eq!(env["PRETTY_NAME"], "A \"q\" $x");
        assert_eq!(env["X"], "a b");
        assert_eq!(env["Y"], "1");
    }

    #[test]
    fn rejects_malformed() {
        assert!(parse_os_release("NAME=\"open").is_err());
        assert!(parse_os_release("NAME='open").is_err());
        assert!(parse_os_release("just words").is_err());
        assert!(parse_os_release("1KEY=x").is_err());
        assert!(parse_os_release("K=a b").is_err());
    }

    #[test]
    fn versions_and_dates() {
        assert_eq!(major_minor("20.04"), 20.04);
        assert_eq!(major_minor("12"), 12.0);
        assert_eq!(major_minor("7.9.2009"), 7.9);
        assert_eq!(major_minor("rolling"), 0.0);
        assert_eq!(major_minor(""), 0.0);
        assert_eq!(parse_date("2029-05-31"), Some(1_874_880_000));
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("2023-02-29"), None);
        assert_eq!(parse_date("2024-2-1"), None);
    }

    #[test]
    fn collects_with_fallback() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("usr/lib")).unwrap();
        std::fs::write(
            dir.path().join("usr/lib/os-release"),
            "NAME=\"Debian GNU/Linux\"\nID=debian\nVERSION_ID=\"12\"\nSUPPORT_END=2028-06-30\n",
        )
        .unwrap();
        let paths = Paths {
            rootfs: dir.path().into(),
            ..Paths::default()
        };
        let c = build(&CollectorOptions::default()).unwrap();
        let mut sink = Sink::new();
        c.collect(&paths, &mut sink).unwrap();
        let mut out = Vec::new();
        encode(&[&sink], Format::Text, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains(
                "node_os_version{id=\"debian\",id_like=\"\",name=\"Debian GNU/Linux\"} 12\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("node_os_support_end_timestamp_seconds 1.845936e+09\n"),
            "{text}"
        );
        assert!(text.contains("version_id=\"12\"} 1\n"), "{text}");

        let empty = tempfile::tempdir().unwrap();
        let paths = Paths {
            rootfs: empty.path().into(),
            ..Paths::default()
        };
        assert!(matches!(
            c.collect(&paths, &mut Sink::new()),
            Err(CollectError::NoData)
        ));
    }
}
