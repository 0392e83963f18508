//! Relabeling with Prometheus' exact semantics (`model/relabel/relabel.go`), so a
//! `relabel_configs` block copied from a Prometheus config keeps targets, drops series and
//! picks `hashmod` shards exactly as Prometheus does.
//!
//! A [`RelabelConfig`] is one step; [`relabel`] runs a list of them over a label set and
//! returns `None` when a step drops it. [`relabel_in_place`] does the same on a
//! [`LabelsBuilder`] the caller already holds (the scrape loop builds target labels in one).
//!
//! Where Prometheus 3 differs by default, we keep the legacy rules our [`Labels`] model uses:
//! label names are `[a-zA-Z_][a-zA-Z0-9_]*`, so a `replace` or `labelmap` step whose computed
//! name is not a valid legacy name leaves the set unchanged (Prometheus 3 with its default
//! UTF-8 names would accept e.g. `foo-bar`). Regexes run on Rust's `regex` crate, which has
//! RE2 syntax like Go's `regexp` but Unicode-aware `\w`, `\d`, `\s` and `\b`.

use std::fmt;
use std::sync::LazyLock;

use md5::{Digest, Md5};
use regex::{Captures, Regex};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::model::{Labels, LabelsBuilder, is_valid_label_name};

/// The default regex: matches anything and captures all of it as `$1`.
pub const DEFAULT_REGEX: &str = "(.*)";
/// The default separator between joined source label values.
pub const DEFAULT_SEPARATOR: &str = ";";
/// The default replacement: the first capture group.
pub const DEFAULT_REPLACEMENT: &str = "$1";

/// What a `target_label` (replace) or `replacement` (labelmap) with `$` references must look
/// like so that it can expand to a label name: Prometheus' `relabelTarget`, with Go's ASCII `\w`.
static RELABEL_TARGET: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:(?:[a-zA-Z_]|\$(?:\{[0-9A-Za-z_]+\}|[0-9A-Za-z_]+))+[0-9A-Za-z_]*)+$")
        .expect("constant regex compiles")
});

/// [`DEFAULT_REGEX`] compiled once (a `Regex` clone shares it).
static DEFAULT_COMPILED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!("^(?s:{DEFAULT_REGEX})$")).expect("constant regex compiles")
});

/// Whether `s` is a template that can expand to a label name (see [`RELABEL_TARGET`]).
fn is_relabel_target(s: &str) -> bool {
    RELABEL_TARGET.is_match(s)
}

/// What a relabeling step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Action {
    /// Sets `target_label` to `replacement` (with `$n` / `${name}` expanded from `regex`'s
    /// groups) when `regex` matches the joined source values; an empty result deletes it.
    #[default]
    Replace,
    /// Drops the set unless `regex` matches the joined source values.
    Keep,
    /// Drops the set when `regex` matches the joined source values.
    Drop,
    /// Drops the set unless the joined source values equal `target_label`'s value.
    KeepEqual,
    /// Drops the set when the joined source values equal `target_label`'s value.
    DropEqual,
    /// Sets `target_label` to `md5(joined values)` (last 8 bytes, big-endian) mod `modulus`.
    HashMod,
    /// For every label whose *name* matches `regex`, copies its value to the name `replacement`
    /// expands to.
    LabelMap,
    /// Deletes every label whose name matches `regex`.
    LabelDrop,
    /// Deletes every label whose name does not match `regex`.
    LabelKeep,
    /// Sets `target_label` to the joined source values in lower case.
    Lowercase,
    /// Sets `target_label` to the joined source values in upper case.
    Uppercase,
}

impl Action {
    /// Every action, in Prometheus' documentation order.
    pub const ALL: [Action; 11] = [
        Action::Replace,
        Action::Keep,
        Action::Drop,
        Action::KeepEqual,
        Action::DropEqual,
        Action::HashMod,
        Action::LabelMap,
        Action::LabelDrop,
        Action::LabelKeep,
        Action::Lowercase,
        Action::Uppercase,
    ];

    /// The name used in YAML.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Replace => "replace",
            Action::Keep => "keep",
            Action::Drop => "drop",
            Action::KeepEqual => "keepequal",
            Action::DropEqual => "dropequal",
            Action::HashMod => "hashmod",
            Action::LabelMap => "labelmap",
            Action::LabelDrop => "labeldrop",
            Action::LabelKeep => "labelkeep",
            Action::Lowercase => "lowercase",
            Action::Uppercase => "uppercase",
        }
    }

    /// Parses a name case-insensitively, as Prometheus does (`Replace` is `replace`).
    pub fn parse(s: &str) -> Option<Action> {
        Action::ALL
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(s))
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Action {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Action::parse(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown relabel action {s:?}")))
    }
}

impl Serialize for Action {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A relabeling regex: kept as written (for display and equality) and compiled fully
/// anchored as `^(?s:…)$`, so it must match a whole value and `.` matches a newline, as in
/// Prometheus 3.
#[derive(Clone)]
pub struct RelabelRegex {
    source: String,
    re: Regex,
}

impl RelabelRegex {
    /// Compiles `source` anchored.
    pub fn new(source: &str) -> Result<Self, RegexError> {
        let re = Regex::new(&format!("^(?s:{source})$")).map_err(|e| RegexError {
            pattern: source.to_owned(),
            reason: one_line_regex_error(&e),
        })?;
        Ok(Self {
            source: source.to_owned(),
            re,
        })
    }

    /// The regex as written in the configuration (without the anchors).
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the regex matches all of `s`.
    pub fn is_match(&self, s: &str) -> bool {
        self.re.is_match(s)
    }

    /// The compiled, anchored regex.
    pub fn regex(&self) -> &Regex {
        &self.re
    }

    fn is_default(&self) -> bool {
        self.source == DEFAULT_REGEX
    }
}

impl Default for RelabelRegex {
    fn default() -> Self {
        Self {
            source: DEFAULT_REGEX.to_owned(),
            re: DEFAULT_COMPILED.clone(),
        }
    }
}

impl fmt::Debug for RelabelRegex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.source)
    }
}

impl PartialEq for RelabelRegex {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for RelabelRegex {}

impl<'de> Deserialize<'de> for RelabelRegex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // `regex:` with no value is the empty regex (matches only ""), as in Prometheus.
        let s = Option::<String>::deserialize(d)?.unwrap_or_default();
        RelabelRegex::new(&s).map_err(serde::de::Error::custom)
    }
}

impl Serialize for RelabelRegex {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

/// A regex that does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid regular expression {pattern:?}: {reason}")]
pub struct RegexError {
    /// The regex as written.
    pub pattern: String,
    /// The compiler's complaint, on one line.
    pub reason: String,
}

/// The regex crate's syntax errors span several lines (pattern, caret, message); config
/// errors are one line, so keep the message.
fn one_line_regex_error(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .map(str::to_owned)
        .unwrap_or_else(|| text.lines().collect::<Vec<_>>().join(" "))
}

/// A relabeling step that breaks one of Prometheus' rules for its action.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RelabelConfigError {
    /// The key at fault (`target_label`, `modulus`, …), so the config loader can name its path.
    pub field: &'static str,
    /// What is wrong, in Prometheus' words.
    pub message: String,
}

/// One relabeling step, as in a Prometheus `relabel_configs` / `metric_relabel_configs` entry.
/// Defaults are Prometheus': separator `;`, regex `(.*)`, replacement `$1`, action `replace`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelabelConfig {
    /// Labels whose values are joined with `separator` (a missing label counts as "") to form
    /// the value the step looks at.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub source_labels: Vec<String>,
    /// Placed between the joined source values.
    pub separator: String,
    /// Matched against the joined value (or label names for labelmap/labeldrop/labelkeep).
    pub regex: RelabelRegex,
    /// Modulus for `hashmod`; must be non-zero there.
    #[serde(skip_serializing_if = "is_zero")]
    pub modulus: u64,
    /// Label written by replace/hashmod/lowercase/uppercase, compared by keepequal/dropequal;
    /// `replace` may use `$1` / `${name}` in it.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub target_label: String,
    /// Value written by `replace` (or name written by `labelmap`), with `$1` / `${name}`
    /// expanded by Go's `regexp.Expand` rules.
    pub replacement: String,
    /// What the step does.
    pub action: Action,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Default for RelabelConfig {
    fn default() -> Self {
        Self {
            source_labels: Vec::new(),
            separator: DEFAULT_SEPARATOR.to_owned(),
            regex: RelabelRegex::default(),
            modulus: 0,
            target_label: String::new(),
            replacement: DEFAULT_REPLACEMENT.to_owned(),
            action: Action::Replace,
        }
    }
}

impl RelabelConfig {
    /// Checks Prometheus' per-action rules (`Config.Validate` in relabel.go); the config loader
    /// runs it on every step at start.
    pub fn validate(&self) -> Result<(), RelabelConfigError> {
        use Action::*;
        let err = |field, message: String| Err(RelabelConfigError { field, message });
        let action = self.action;
        for name in &self.source_labels {
            if !is_valid_label_name(name) {
                return err(
                    "source_labels",
                    format!("{name:?} is not a valid label name"),
                );
            }
        }
        if action == HashMod && self.modulus == 0 {
            return err(
                "modulus",
                "relabel configuration for hashmod requires non-zero modulus".into(),
            );
        }
        let needs_target = matches!(
            action,
            Replace | HashMod | Lowercase | Uppercase | KeepEqual | DropEqual
        );
        if needs_target && self.target_label.is_empty() {
            return err(
                "target_label",
                format!("relabel configuration for {action} action requires 'target_label' value"),
            );
        }
        let invalid_target = || {
            err(
                "target_label",
                format!(
                    "{:?} is invalid 'target_label' for {action} action",
                    self.target_label
                ),
            )
        };
        let target = self.target_label.as_str();
        if action == Replace {
            let ok = if target.contains('$') {
                is_relabel_target(target)
            } else {
                is_valid_label_name(target)
            };
            if !ok {
                return invalid_target();
            }
        }
        let value_actions = matches!(action, Lowercase | Uppercase | KeepEqual | DropEqual);
        if (value_actions || action == HashMod) && !is_valid_label_name(target) {
            return invalid_target();
        }
        if value_actions && self.replacement != DEFAULT_REPLACEMENT {
            return err(
                "replacement",
                format!("'replacement' can not be set for {action} action"),
            );
        }
        if action == LabelMap && !is_relabel_target(&self.replacement) {
            return err(
                "replacement",
                format!(
                    "{:?} is invalid 'replacement' for {action} action",
                    self.replacement
                ),
            );
        }
        if matches!(action, KeepEqual | DropEqual)
            && (!self.regex.is_default()
                || self.modulus != 0
                || self.separator != DEFAULT_SEPARATOR
                || self.replacement != DEFAULT_REPLACEMENT)
        {
            return err(
                "action",
                format!(
                    "{action} action requires only 'source_labels' and `target_label`, and no other fields"
                ),
            );
        }
        if matches!(action, LabelDrop | LabelKeep)
            && (!self.source_labels.is_empty()
                || !self.target_label.is_empty()
                || self.modulus != 0
                || self.separator != DEFAULT_SEPARATOR
                || self.replacement != DEFAULT_REPLACEMENT)
        {
            return err(
                "action",
                format!("{action} action requires only 'regex', and no other fields"),
            );
        }
        Ok(())
    }
}

/// Runs `configs` in order over `labels`; `None` when a step drops the set.
pub fn relabel(labels: &Labels, configs: &[RelabelConfig]) -> Option<Labels> {
    let mut builder = labels.builder();
    relabel_in_place(&mut builder, configs).then(|| builder.build())
}

/// Runs `configs` in order over the labels in `builder`; `false` when a step drops the set
/// (the builder is then left part-way and should be discarded).
pub fn relabel_in_place(builder: &mut LabelsBuilder, configs: &[RelabelConfig]) -> bool {
    let mut joined = String::new();
    configs.iter().all(|c| apply(c, builder, &mut joined))
}

/// One step; `joined` is a scratch buffer reused across steps.
fn apply(cfg: &RelabelConfig, lb: &mut LabelsBuilder, joined: &mut String) -> bool {
    joined.clear();
    for (i, name) in cfg.source_labels.iter().enumerate() {
        if i > 0 {
            joined.push_str(&cfg.separator);
        }
        joined.push_str(lb.get(name).unwrap_or(""));
    }
    let val = joined.as_str();
    let target_value = || lb.get(&cfg.target_label).unwrap_or("");
    match cfg.action {
        Action::Drop => return !cfg.regex.is_match(val),
        Action::Keep => return cfg.regex.is_match(val),
        Action::DropEqual => return target_value() != val,
        Action::KeepEqual => return target_value() == val,
        Action::Replace => replace(cfg, lb, val),
        Action::Lowercase => {
            lb.set(cfg.target_label.as_str(), val.to_lowercase());
        }
        Action::Uppercase => {
            lb.set(cfg.target_label.as_str(), val.to_uppercase());
        }
        Action::HashMod => {
            // A zero modulus is rejected at load; a hand-built one leaves the set unchanged.
            if let Some(shard) = hash_mod(val, cfg.modulus) {
                lb.set(cfg.target_label.as_str(), shard.to_string());
            }
        }
        Action::LabelMap => {
            // Prometheus iterates a snapshot, so names set here are not themselves mapped.
            let mut mapped = Vec::new();
            for l in lb.iter() {
                if let Some(caps) = cfg.regex.regex().captures(&l.name) {
                    let mut name = String::new();
                    expand(&cfg.replacement, cfg.regex.regex(), &caps, &mut name);
                    if is_valid_label_name(&name) {
                        mapped.push((name, l.value.clone()));
                    }
                }
            }
            for (name, value) in mapped {
                lb.set(name, value);
            }
        }
        Action::LabelDrop => {
            lb.retain(|l| !cfg.regex.is_match(&l.name));
        }
        Action::LabelKeep => {
            lb.retain(|l| cfg.regex.is_match(&l.name));
        }
    }
    true
}

fn replace(cfg: &RelabelConfig, lb: &mut LabelsBuilder, val: &str) {
    // Prometheus' fast path (no match needed: `(.*)` matches ""), kept because it skips the
    // target-name check, which the loader already made for a `$`-free target.
    if val.is_empty()
        && cfg.regex.is_default()
        && !cfg.target_label.contains('$')
        && !cfg.replacement.contains('$')
    {
        lb.set(cfg.target_label.as_str(), cfg.replacement.as_str());
        return;
    }
    let re = cfg.regex.regex();
    // No match: no replacement at all.
    let Some(caps) = re.captures(val) else {
        return;
    };
    let mut target = String::new();
    expand(&cfg.target_label, re, &caps, &mut target);
    if !is_valid_label_name(&target) {
        return;
    }
    let mut value = String::new();
    expand(&cfg.replacement, re, &caps, &mut value);
    if value.is_empty() {
        lb.del(&target);
    } else {
        lb.set(target, value);
    }
}

/// Prometheus' shard of `value`: the last 8 bytes of its MD5, big-endian, modulo `modulus`
/// (`None` for a zero modulus).
pub fn hash_mod(value: &str, modulus: u64) -> Option<u64> {
    let digest: [u8; 16] = Md5::digest(value.as_bytes()).into();
    let [_, _, _, _, _, _, _, _, tail @ ..] = digest;
    u64::from_be_bytes(tail).checked_rem(modulus)
}

/// Appends `template` to `out` with `$n`, `${n}`, `$name`, `${name}` replaced by the groups of
/// `caps`, following Go's `regexp.Expand`: a name is the longest run of letters, digits and
/// `_` (so `$1x` is the group named `1x`, usually empty), `$$` is `$`, a group that does not
/// exist or did not take part is empty, and a `$` not followed by a name is kept as is.
pub fn expand(template: &str, re: &Regex, caps: &Captures<'_>, out: &mut String) {
    let mut rest = template;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
            continue;
        }
        let Some((name, number, tail)) = extract_name(after) else {
            // Malformed reference: the `$` is literal text.
            out.push('$');
            rest = after;
            continue;
        };
        rest = tail;
        let group = match number {
            Some(n) => caps.get(n),
            None => re
                .capture_names()
                .enumerate()
                .find(|(i, n)| *n == Some(name) && caps.get(*i).is_some())
                .and_then(|(i, _)| caps.get(i)),
        };
        if let Some(m) = group {
            out.push_str(m.as_str());
        }
    }
    out.push_str(rest);
}

/// Go's `regexp.extract`: the name after a `$`, its group number if it is a number (no
/// leading zero, under 10^9), and what follows it.
fn extract_name(s: &str) -> Option<(&str, Option<usize>, &str)> {
    let (brace, s) = match s.strip_prefix('{') {
        Some(inner) => (true, inner),
        None => (false, s),
    };
    let end = s
        .char_indices()
        .find(|&(_, c)| !(c.is_alphabetic() || c.is_numeric() || c == '_'))
        .map_or(s.len(), |(i, _)| i);
    if end == 0 {
        return None;
    }
    let (name, mut rest) = s.split_at(end);
    if brace {
        rest = rest.strip_prefix('}')?;
    }
    let mut num: Option<usize> = Some(0);
    for b in name.bytes() {
        num = match num {
            Some(n) if b.is_ascii_digit() && n < 100_000_000 => {
                Some(n * 10 + usize::from(b - b'0'))
            }
            _ => None,
        };
    }
    if name.len() > 1 && name.starts_with('0') {
        num = None;
    }
    Some((name, num, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied())
    }

    /// Parses and validates one step written as YAML.
    fn step(yaml: &str) -> RelabelConfig {
        let c: RelabelConfig = serde_yaml_ng::from_str(yaml).unwrap();
        c.validate().unwrap();
        c
    }

    /// Cases from Prometheus' relabel_test.go (TestRelabel), used as the oracle.
    #[test]
    fn prometheus_relabel_cases() {
        type Case<'a> = (
            &'a [(&'a str, &'a str)],
            &'a [&'a str],
            Option<&'a [(&'a str, &'a str)]>,
        );
        let cases: &[Case] = &[
            (
                &[("a", "foo"), ("b", "bar"), ("c", "baz")],
                &[
                    "{source_labels: [a], regex: 'f(.*)', target_label: d, replacement: 'ch${1}-ch${1}'}",
                ],
                Some(&[("a", "foo"), ("b", "bar"), ("c", "baz"), ("d", "choo-choo")]),
            ),
            (
                &[("a", "foo"), ("b", "bar"), ("c", "baz")],
                &[
                    "{source_labels: [a, b], regex: 'f(.*);(.*)r', target_label: a, replacement: 'b${1}${2}m'}",
                    "{source_labels: [c, a], regex: '(b).*b(.*)ba(.*)', target_label: d, replacement: '$1$2$2$3'}",
                ],
                Some(&[("a", "boobam"), ("b", "bar"), ("c", "baz"), ("d", "boooom")]),
            ),
            (
                &[("a", "foo")],
                &[
                    "{source_labels: [a], regex: '.*o.*', action: drop}",
                    "{source_labels: [a], regex: 'f(.*)', target_label: d, replacement: 'ch$1-ch$1'}",
                ],
                None,
            ),
            (
                &[("a", "foo"), ("b", "bar")],
                &["{source_labels: [a], regex: '.*o.*', action: drop}"],
                None,
            ),
            (
                &[("a", "abc")],
                &["{source_labels: [a], regex: '.*(b).*', target_label: d, replacement: '$1'}"],
                Some(&[("a", "abc"), ("d", "b")]),
            ),
            (
                &[("a", "foo")],
                &["{source_labels: [a], regex: no-match, action: drop}"],
                Some(&[("a", "foo")]),
            ),
            // Anchored: `f|o` does not match "foo".
            (
                &[("a", "foo")],
                &["{source_labels: [a], regex: 'f|o', action: drop}"],
                Some(&[("a", "foo")]),
            ),
            (
                &[("a", "foo")],
                &["{source_labels: [a], regex: no-match, action: keep}"],
                None,
            ),
            (
                &[("a", "foo")],
                &["{source_labels: [a], regex: 'f.*', action: keep}"],
                Some(&[("a", "foo")]),
            ),
            // No replacement without a match.
            (
                &[("a", "boo")],
                &["{source_labels: [a], regex: f, target_label: b, replacement: bar}"],
                Some(&[("a", "boo")]),
            ),
            (
                &[("a", "foo"), ("b", "bar"), ("c", "baz")],
                &["{source_labels: [c], target_label: d, action: hashmod, modulus: 1000}"],
                Some(&[("a", "foo"), ("b", "bar"), ("c", "baz"), ("d", "976")]),
            ),
            (
                &[("a", "foo\nbar")],
                &["{source_labels: [a], target_label: b, action: hashmod, modulus: 1000}"],
                Some(&[("a", "foo\nbar"), ("b", "734")]),
            ),
            (
                &[("a", "foo"), ("b1", "bar"), ("b2", "baz")],
                &["{regex: '(b.*)', replacement: 'bar_${1}', action: labelmap}"],
                Some(&[
                    ("a", "foo"),
                    ("b1", "bar"),
                    ("b2", "baz"),
                    ("bar_b1", "bar"),
                    ("bar_b2", "baz"),
                ]),
            ),
            (
                &[
                    ("a", "foo"),
                    ("__meta_my_bar", "aaa"),
                    ("__meta_my_baz", "bbb"),
                    ("__meta_other", "ccc"),
                ],
                &["{regex: '__meta_(my.*)', replacement: '${1}', action: labelmap}"],
                Some(&[
                    ("a", "foo"),
                    ("__meta_my_bar", "aaa"),
                    ("__meta_my_baz", "bbb"),
                    ("__meta_other", "ccc"),
                    ("my_bar", "aaa"),
                    ("my_baz", "bbb"),
                ]),
            ),
            (
                &[("a", "some-name-value")],
                &[
                    "{source_labels: [a], regex: 'some-([^-]+)-([^,]+)', replacement: '${2}', target_label: '${1}'}",
                ],
                Some(&[("a", "some-name-value"), ("name", "value")]),
            ),
            // A replacement expanding to "" deletes the (here absent) target.
            (
                &[("a", "some-name-value")],
                &[
                    "{source_labels: [a], regex: 'some-([^-]+)-([^,]+)', replacement: '${3}', target_label: '${1}'}",
                ],
                Some(&[("a", "some-name-value")]),
            ),
            // Targets expanding to "" or "-0" are invalid names: no change.
            (
                &[("a", "some-name-0")],
                &[
                    "{source_labels: [a], regex: 'some-([^-]+)-([^,]+)', replacement: '${1}', target_label: '${3}'}",
                    "{source_labels: [a], regex: 'some-([^-]+)(-[^,]+)', replacement: '${1}', target_label: '${3}'}",
                ],
                Some(&[("a", "some-name-0")]),
            ),
            (
                &[("__meta_sd_tags", "path:/secret,job:some-job,label:foo=bar")],
                &[
                    "{source_labels: [__meta_sd_tags], regex: '(?:.+,|^)path:(/[^,]+).*', replacement: '${1}', target_label: __metrics_path__}",
                    "{source_labels: [__meta_sd_tags], regex: '(?:.+,|^)job:([^,]+).*', replacement: '${1}', target_label: job}",
                    "{source_labels: [__meta_sd_tags], regex: '(?:.+,|^)label:([^=]+)=([^,]+).*', replacement: '${2}', target_label: '${1}'}",
                ],
                Some(&[
                    ("__meta_sd_tags", "path:/secret,job:some-job,label:foo=bar"),
                    ("__metrics_path__", "/secret"),
                    ("job", "some-job"),
                    ("foo", "bar"),
                ]),
            ),
            // prometheus/prometheus#12283: a label dropped, then set again, then kept on.
            (
                &[
                    ("__meta_kubernetes_pod_container_port_name", "foo"),
                    ("__meta_kubernetes_pod_annotation_XXX_metrics_port", "9091"),
                ],
                &[
                    "{regex: '^__meta_kubernetes_pod_container_port_name$', action: labeldrop}",
                    "{source_labels: [__meta_kubernetes_pod_annotation_XXX_metrics_port], regex: '(.+)', replacement: metrics, target_label: __meta_kubernetes_pod_container_port_name}",
                    "{source_labels: [__meta_kubernetes_pod_container_port_name], regex: '^metrics$', action: keep}",
                ],
                Some(&[
                    ("__meta_kubernetes_pod_annotation_XXX_metrics_port", "9091"),
                    ("__meta_kubernetes_pod_container_port_name", "metrics"),
                ]),
            ),
            (
                &[("a", "foo"), ("b1", "bar"), ("b2", "baz")],
                &["{regex: '(b.*)', action: labelkeep}"],
                Some(&[("b1", "bar"), ("b2", "baz")]),
            ),
            (
                &[("a", "foo"), ("b1", "bar"), ("b2", "baz")],
                &["{regex: '(b.*)', action: labeldrop}"],
                Some(&[("a", "foo")]),
            ),
            (
                &[("foo", "bAr123Foo")],
                &[
                    "{source_labels: [foo], action: uppercase, target_label: foo_uppercase}",
                    "{source_labels: [foo], action: lowercase, target_label: foo_lowercase}",
                ],
                Some(&[
                    ("foo", "bAr123Foo"),
                    ("foo_lowercase", "bar123foo"),
                    ("foo_uppercase", "BAR123FOO"),
                ]),
            ),
            (
                &[
                    ("__tmp_port", "1234"),
                    ("__port1", "1234"),
                    ("__port2", "5678"),
                ],
                &["{source_labels: [__tmp_port], action: keepequal, target_label: __port1}"],
                Some(&[
                    ("__tmp_port", "1234"),
                    ("__port1", "1234"),
                    ("__port2", "5678"),
                ]),
            ),
            (
                &[
                    ("__tmp_port", "1234"),
                    ("__port1", "1234"),
                    ("__port2", "5678"),
                ],
                &["{source_labels: [__tmp_port], action: dropequal, target_label: __port1}"],
                None,
            ),
            (
                &[
                    ("__tmp_port", "1234"),
                    ("__port1", "1234"),
                    ("__port2", "5678"),
                ],
                &["{source_labels: [__tmp_port], action: dropequal, target_label: __port2}"],
                Some(&[
                    ("__tmp_port", "1234"),
                    ("__port1", "1234"),
                    ("__port2", "5678"),
                ]),
            ),
            (
                &[
                    ("__tmp_port", "1234"),
                    ("__port1", "1234"),
                    ("__port2", "5678"),
                ],
                &["{source_labels: [__tmp_port], action: keepequal, target_label: __port2}"],
                None,
            ),
        ];
        for (i, (input, steps, want)) in cases.iter().enumerate() {
            let configs: Vec<RelabelConfig> = steps.iter().map(|s| step(s)).collect();
            let got = relabel(&labels(input), &configs);
            assert_eq!(got, want.map(labels), "case {i}: {steps:?}");
        }
    }

    #[test]
    fn replace_defaults_and_deletion() {
        // Default regex/replacement copies the joined value; an empty source deletes the target.
        let copy = step("{source_labels: [a, b], target_label: c}");
        assert_eq!(
            relabel(
                &labels(&[("a", "1"), ("b", "2")]),
                std::slice::from_ref(&copy)
            ),
            Some(labels(&[("a", "1"), ("b", "2"), ("c", "1;2")]))
        );
        let clear = step("{source_labels: [missing], target_label: a}");
        assert_eq!(
            relabel(&labels(&[("a", "1")]), &[clear]),
            Some(Labels::empty())
        );
        // Fast path: no sources, constant replacement.
        let set = step("{target_label: env, replacement: prod}");
        assert_eq!(
            relabel(&Labels::empty(), &[set]),
            Some(labels(&[("env", "prod")]))
        );
        // `.` matches a newline (`(?s)`), so a multi-line value is still matched whole.
        let nl = step("{source_labels: [a], regex: 'x.y', target_label: b, replacement: hit}");
        assert_eq!(
            relabel(&labels(&[("a", "x\ny")]), &[nl]),
            Some(labels(&[("a", "x\ny"), ("b", "hit")]))
        );
    }

    #[test]
    fn expand_follows_go_regexp_expand() {
        let re = Regex::new(r"^(?s:(?P<first>a)(b)?(c))$").unwrap();
        let caps = re.captures("ac").unwrap();
        let run = |t: &str| {
            let mut out = String::new();
            expand(t, &re, &caps, &mut out);
            out
        };
        assert_eq!(run("$1"), "a");
        assert_eq!(run("${1}x"), "ax");
        // `$1x` names the group "1x", which does not exist.
        assert_eq!(run("$1x"), "");
        assert_eq!(run("$first-$3"), "a-c");
        assert_eq!(run("${first}_"), "a_");
        // A group that did not take part is empty; so is one that does not exist.
        assert_eq!(run("[$2][$9][$nope]"), "[][][]");
        assert_eq!(run("$$1"), "$1");
        assert_eq!(run("cost: $"), "cost: $");
        assert_eq!(run("${1"), "${1");
        assert_eq!(run("${}"), "${}");
        assert_eq!(run("$-"), "$-");
        // Leading zeros make a name, not a number.
        assert_eq!(run("$01"), "");
        assert_eq!(run("$0"), "ac");
        assert_eq!(run("$1000000000"), "");
    }

    #[test]
    fn hashmod_matches_prometheus() {
        assert_eq!(hash_mod("baz", 1000), Some(976));
        assert_eq!(hash_mod("foo\nbar", 1000), Some(734));
        assert_eq!(hash_mod("x", 0), None);
        // Every shard is below the modulus.
        assert!((0..200).all(|i| hash_mod(&format!("10.0.0.{i}:9100"), 7).unwrap() < 7));
    }

    #[test]
    fn actions_parse_case_insensitively_and_reject_unknown() {
        assert_eq!(
            step("{action: Replace, target_label: a}").action,
            Action::Replace
        );
        assert_eq!(
            step("{action: HASHMOD, target_label: a, modulus: 2}").action,
            Action::HashMod
        );
        let e = serde_yaml_ng::from_str::<RelabelConfig>("{action: foo}").unwrap_err();
        assert!(
            e.to_string().contains(r#"unknown relabel action "foo""#),
            "{e}"
        );
        for a in Action::ALL {
            assert_eq!(Action::parse(a.as_str()), Some(a));
        }
    }

    /// Prometheus' TestRelabelValidate and TestTargetLabelValidity, plus each rule's field.
    #[test]
    fn validation_follows_prometheus() {
        let bad = |yaml: &str| -> RelabelConfigError {
            let c: RelabelConfig = serde_yaml_ng::from_str(yaml).unwrap();
            c.validate().unwrap_err()
        };
        let e = bad("{action: replace}");
        assert_eq!(e.field, "target_label");
        assert!(e.message.contains("requires 'target_label' value"), "{e}");
        assert!(
            bad("{action: lowercase}")
                .message
                .contains("requires 'target_label' value")
        );
        assert!(
            bad("{action: lowercase, target_label: '${3}'}")
                .message
                .contains(r#""${3}" is invalid 'target_label'"#)
        );
        assert!(
            bad("{action: replace, target_label: '0${3}'}")
                .message
                .contains(r#""0${3}" is invalid 'target_label'"#)
        );
        assert!(
            bad("{action: replace, target_label: '-${3}'}")
                .message
                .contains(r#""-${3}" is invalid 'target_label' for replace action"#)
        );
        assert!(
            bad("{action: replace, target_label: 'a-b'}")
                .message
                .contains("invalid 'target_label'")
        );
        assert_eq!(bad("{action: hashmod, target_label: a}").field, "modulus");
        assert_eq!(
            bad("{action: uppercase, target_label: a, replacement: x}").field,
            "replacement"
        );
        assert_eq!(
            bad("{action: labelmap, replacement: '-'}").field,
            "replacement"
        );
        assert_eq!(
            bad("{action: keepequal, target_label: a, regex: x}").field,
            "action"
        );
        assert_eq!(
            bad("{action: labeldrop, regex: x, target_label: a}").field,
            "action"
        );
        assert_eq!(
            bad("{source_labels: ['a.b'], target_label: a}").field,
            "source_labels"
        );
        step(
            "{source_labels: [a], regex: 'some-([^-]+)-([^,]+)', replacement: '${1}', target_label: '${3}'}",
        );

        for (s, valid) in [
            ("-label", false),
            ("label", true),
            ("label${1}", true),
            ("${1}label", true),
            ("${1}", true),
            ("${", false),
            ("$", false),
            ("${}", false),
            ("foo${", false),
            ("$1", true),
            ("asd$2asd", true),
            ("-foo${1}bar-", false),
            ("_${1}_", true),
            ("foo${bar}foo", true),
        ] {
            assert_eq!(is_relabel_target(s), valid, "{s}");
        }
    }

    #[test]
    fn regex_errors_are_one_line() {
        let e = RelabelRegex::new("(foo").unwrap_err();
        assert!(!e.to_string().contains('\n'), "{e}");
        assert!(e.to_string().contains("(foo"), "{e}");
        let e = serde_yaml_ng::from_str::<RelabelConfig>("{regex: '[z-a]'}").unwrap_err();
        assert!(e.to_string().contains("invalid regular expression"), "{e}");
        // `regex:` with no value is the empty regex.
        let c: RelabelConfig = serde_yaml_ng::from_str("{regex: , action: keep}").unwrap();
        assert!(c.regex.is_match("") && !c.regex.is_match("a"));
    }

    #[test]
    fn in_place_reports_drops() {
        let mut b = labels(&[("a", "1")]).builder();
        assert!(relabel_in_place(
            &mut b,
            &[step("{target_label: b, replacement: x}")]
        ));
        assert_eq!(b.build(), labels(&[("a", "1"), ("b", "x")]));
        let mut b = labels(&[("a", "1")]).builder();
        assert!(!relabel_in_place(
            &mut b,
            &[step("{source_labels: [a], regex: '1', action: drop}")]
        ));
        // No steps: kept unchanged.
        assert_eq!(
            relabel(&labels(&[("a", "1")]), &[]),
            Some(labels(&[("a", "1")]))
        );
    }
}
