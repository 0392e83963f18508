//! The data model shared by scraping, storage and queries: label sets ([`Labels`]), label
//! matchers ([`Matcher`]) and the staleness marker.
//!
//! A series is identified by its label set, the metric name being the label `__name__`.
//! Label sets are sorted by name with unique names and no empty values (an empty value means
//! "no such label", as in Prometheus). Strings are `Arc<str>` so the TSDB can intern them and
//! query results can share them without copying.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

/// The label that holds the metric name.
pub const METRIC_NAME: &str = "__name__";

/// Bit pattern of the NaN Prometheus writes as a staleness marker ("this series ended").
/// Any other NaN is an ordinary value.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// The staleness marker as a value.
pub fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

/// Whether `v` is the staleness marker (compares bits: NaN != NaN).
pub fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// Whether `name` is a valid (legacy, ASCII) label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_valid_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'A'..=b'Z' | b'_'))
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Whether `name` is a valid (legacy) metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn is_valid_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'A'..=b'Z' | b'_' | b':'))
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

/// One label.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Label {
    pub name: Arc<str>,
    pub value: Arc<str>,
}

impl Label {
    pub fn new(name: impl Into<Arc<str>>, value: impl Into<Arc<str>>) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// A label set: sorted by name, names unique, no empty values.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Labels(Vec<Label>);

impl Labels {
    /// The empty set.
    pub fn empty() -> Self {
        Self(Vec::new())
    }

    /// Builds a set from pairs in any order; pairs with an empty value are left out, and of
    /// two pairs with the same name the last wins.
    pub fn from_pairs<N, V>(pairs: impl IntoIterator<Item = (N, V)>) -> Self
    where
        N: Into<Arc<str>>,
        V: Into<Arc<str>>,
    {
        let mut b = LabelsBuilder::default();
        for (n, v) in pairs {
            b.set(n, v);
        }
        b.build()
    }

    /// Wraps labels already sorted by name, unique, with no empty value (checked in debug builds).
    pub fn from_sorted(labels: Vec<Label>) -> Self {
        debug_assert!(labels.windows(2).all(|w| w[0].name < w[1].name));
        debug_assert!(labels.iter().all(|l| !l.value.is_empty()));
        Self(labels)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|l| (*l.name).cmp(name))
            .ok()
            .map(|i| &*self.0[i].value)
    }

    /// The value of `__name__`, if any.
    pub fn metric_name(&self) -> Option<&str> {
        self.get(METRIC_NAME)
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Label> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_slice(&self) -> &[Label] {
        &self.0
    }

    /// A builder starting from this set.
    pub fn builder(&self) -> LabelsBuilder {
        LabelsBuilder {
            labels: self.0.clone(),
        }
    }

    /// A 64-bit hash of the set, stable across runs and platforms (FNV-1a over
    /// `name 0xff value 0xff …`), for sharding and fingerprints.
    pub fn stable_hash(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |bytes: &[u8]| {
            for b in bytes {
                h ^= u64::from(*b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
        };
        for l in &self.0 {
            eat(l.name.as_bytes());
            eat(&[0xff]);
            eat(l.value.as_bytes());
            eat(&[0xff]);
        }
        h
    }
}

impl<'a> IntoIterator for &'a Labels {
    type Item = &'a Label;
    type IntoIter = std::slice::Iter<'a, Label>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// `name{a="1", b="2"}` as Prometheus prints a series (values escaped).
impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(name) = self.metric_name() {
            f.write_str(name)?;
        }
        let mut rest = self.0.iter().filter(|l| &*l.name != METRIC_NAME).peekable();
        if rest.peek().is_none() && self.metric_name().is_some() {
            return Ok(());
        }
        f.write_str("{")?;
        let mut first = true;
        for l in rest {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{}=\"", l.name)?;
            for c in l.value.chars() {
                match c {
                    '\\' => f.write_str("\\\\")?,
                    '"' => f.write_str("\\\"")?,
                    '\n' => f.write_str("\\n")?,
                    c => write!(f, "{c}")?,
                }
            }
            f.write_str("\"")?;
        }
        f.write_str("}")
    }
}

/// Edits a label set (relabeling, target labels); [`Self::build`] sorts and drops empties.
#[derive(Debug, Clone, Default)]
pub struct LabelsBuilder {
    labels: Vec<Label>,
}

impl LabelsBuilder {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .rev()
            .find(|l| &*l.name == name)
            .map(|l| &*l.value)
    }

    /// Sets `name` to `value` (an empty value deletes it).
    pub fn set(&mut self, name: impl Into<Arc<str>>, value: impl Into<Arc<str>>) -> &mut Self {
        let (name, value) = (name.into(), value.into());
        self.labels.retain(|l| l.name != name);
        if !value.is_empty() {
            self.labels.push(Label { name, value });
        }
        self
    }

    pub fn del(&mut self, name: &str) -> &mut Self {
        self.labels.retain(|l| &*l.name != name);
        self
    }

    /// Keeps only the labels for which `keep` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&Label) -> bool) -> &mut Self {
        self.labels.retain(|l| keep(l));
        self
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Label> {
        self.labels.iter()
    }

    pub fn build(mut self) -> Labels {
        self.labels.sort();
        // `set` keeps names unique; sorting by (name, value) then puts names in order.
        Labels(self.labels)
    }
}

/// How a [`Matcher`] compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchOp {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

impl fmt::Display for MatchOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        })
    }
}

/// A label matcher: `name="v"`, `name!="v"`, `name=~"re"`, `name!~"re"`. Regexes are fully
/// anchored, as in Prometheus. A missing label matches as the empty string.
#[derive(Clone)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    re: Option<regex::Regex>,
}

impl fmt::Debug for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{:?}", self.name, self.op, self.value)
    }
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.op == other.op && self.value == other.value
    }
}

/// A matcher whose regular expression does not compile.
#[derive(Debug, thiserror::Error)]
#[error("invalid regular expression {value:?} for label {name}: {reason}")]
pub struct MatcherError {
    pub name: String,
    pub value: String,
    pub reason: String,
}

impl Matcher {
    pub fn new(
        op: MatchOp,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<Self, MatcherError> {
        let (name, value) = (name.into(), value.into());
        let re = match op {
            MatchOp::Regex | MatchOp::NotRegex => Some(
                regex::Regex::new(&format!("^(?s:{value})$")).map_err(|e| MatcherError {
                    name: name.clone(),
                    value: value.clone(),
                    reason: e.to_string(),
                })?,
            ),
            _ => None,
        };
        Ok(Self {
            name,
            op,
            value,
            re,
        })
    }

    /// `name="value"` (cannot fail).
    pub fn equal(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            op: MatchOp::Equal,
            value: value.into(),
            re: None,
        }
    }

    /// Whether a label value (`""` when the label is missing) matches.
    pub fn matches(&self, v: &str) -> bool {
        match self.op {
            MatchOp::Equal => v == self.value,
            MatchOp::NotEqual => v != self.value,
            MatchOp::Regex => self.re.as_ref().is_some_and(|r| r.is_match(v)),
            MatchOp::NotRegex => !self.re.as_ref().is_some_and(|r| r.is_match(v)),
        }
    }

    /// Whether the matcher matches a series that lacks the label.
    pub fn matches_empty(&self) -> bool {
        self.matches("")
    }

    /// Whether `labels` satisfy the matcher.
    pub fn matches_labels(&self, labels: &Labels) -> bool {
        self.matches(labels.get(&self.name).unwrap_or(""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_sorted_unique_and_without_empties() {
        let l = Labels::from_pairs([("b", "2"), ("a", "1"), ("c", ""), ("b", "3")]);
        let names: Vec<&str> = l.iter().map(|l| &*l.name).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(l.get("b"), Some("3"));
        assert_eq!(l.get("c"), None);
        let same = Labels::from_pairs([("a", "1"), ("b", "3")]);
        assert_eq!(l, same);
        assert_eq!(l.stable_hash(), same.stable_hash());
        assert_ne!(
            Labels::from_pairs([("a", "1b")]).stable_hash(),
            Labels::from_pairs([("a1", "b")]).stable_hash()
        );
    }

    #[test]
    fn display_as_prometheus_prints_series() {
        let l = Labels::from_pairs([("__name__", "up"), ("job", "n\"x\\")]);
        assert_eq!(l.to_string(), r#"up{job="n\"x\\"}"#);
        assert_eq!(Labels::from_pairs([("__name__", "up")]).to_string(), "up");
        assert_eq!(Labels::from_pairs([("a", "b")]).to_string(), r#"{a="b"}"#);
        assert_eq!(Labels::empty().to_string(), "{}");
    }

    #[test]
    fn matchers_follow_prometheus() {
        let m = |op, v: &str| Matcher::new(op, "job", v).unwrap();
        assert!(m(MatchOp::Regex, "no.*").matches("node"));
        // Anchored: a regex matches the whole value.
        assert!(!m(MatchOp::Regex, "ode").matches("node"));
        assert!(m(MatchOp::NotRegex, "ode").matches("node"));
        assert!(m(MatchOp::Regex, "a|").matches_empty());
        assert!(m(MatchOp::NotEqual, "x").matches_empty());
        assert!(!m(MatchOp::Equal, "x").matches_empty());
        // (?s): `.` matches a newline, as Go's regexp in Prometheus.
        assert!(m(MatchOp::Regex, "a.b").matches("a\nb"));
        assert!(Matcher::new(MatchOp::Regex, "job", "(").is_err());
        let labels = Labels::from_pairs([("job", "node")]);
        assert!(Matcher::equal("job", "node").matches_labels(&labels));
        assert!(Matcher::equal("instance", "").matches_labels(&labels));
    }

    #[test]
    fn staleness_marker_is_one_nan() {
        assert!(is_stale(stale_nan()));
        assert!(!is_stale(f64::NAN));
        assert!(is_valid_label_name("_a1") && !is_valid_label_name("1a"));
        assert!(is_valid_metric_name("a:b_c") && !is_valid_label_name("a:b"));
    }
}
