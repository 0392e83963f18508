//! Configuration.

use std::time::Duration;

/// Parses a Go/Prometheus-style duration: `500ms`, `5s`, `1m30s`, `2h`, `1d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("{s:?}: missing unit (ms, s, m, h, d)"))?;
        if num_end == 0 {
            return Err(format!("{s:?}: expected a number"));
        }
        let n: f64 = rest[..num_end]
            .parse()
            .map_err(|_| format!("{s:?}: bad number {:?}", &rest[..num_end]))?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let secs = match &rest[..unit_end] {
            "ms" => n / 1000.0,
            "s" => n,
            "m" => n * 60.0,
            "h" => n * 3600.0,
            "d" => n * 86400.0,
            "w" => n * 7.0 * 86400.0,
            "y" => n * 365.0 * 86400.0,
            u => return Err(format!("{s:?}: unknown unit {u:?} (use ms, s, m, h, d, w, y)")),
        };
        total += Duration::from_secs_f64(secs);
        rest = &rest[unit_end..];
    }
    Ok(total)
}
