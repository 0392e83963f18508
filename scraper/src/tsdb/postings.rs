//! The inverted index: for every label pair the sorted ids of the series that carry it, and
//! the label-string interner (the index's keys are the one shared copy of every name and
//! value, handed to new series as `Arc<str>` clones).
//!
//! Matchers resolve to id sets the way Prometheus' `PostingsForMatchers` does: matchers that
//! do not match the empty string are unions of postings, intersected; matchers that do match
//! it (`!=`, `!~`, `=""`, `=~"a|"`) are subtracted, so series lacking the label stay in.

use std::collections::HashMap;
use std::sync::Arc;

use crate::model::{Label, Labels, MatchOp, Matcher};

/// Label name → label value → sorted series ids.
#[derive(Debug, Default)]
pub struct Postings {
    map: HashMap<Arc<str>, HashMap<Arc<str>, Vec<u32>>>,
    /// Every live series id, sorted.
    all: Vec<u32>,
}

/// One row of a status table (`{name, value}` in Prometheus' JSON).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Stat {
    pub name: String,
    pub value: u64,
}

/// Cardinality tables for `/api/v1/status/tsdb`, top `n` each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PostingsStats {
    pub num_label_pairs: u64,
    pub series_count_by_metric_name: Vec<Stat>,
    pub label_value_count_by_label_name: Vec<Stat>,
    pub memory_in_bytes_by_label_name: Vec<Stat>,
    pub series_count_by_label_value_pair: Vec<Stat>,
}

/// Inserts `id` keeping `v` sorted; ids are mostly handed out increasing, so this is
/// nearly always a push.
fn insert_sorted(v: &mut Vec<u32>, id: u32) {
    match v.last() {
        Some(&last) if last >= id => {
            if let Err(pos) = v.binary_search(&id) {
                v.insert(pos, id);
            }
        }
        _ => v.push(id),
    }
}

/// Intersection of two sorted id lists.
pub fn intersect(a: &[u32], b: &[u32]) -> Vec<u32> {
    let (small, large) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    let mut out = Vec::with_capacity(small.len());
    if small.len().saturating_mul(16) < large.len() {
        // Very different sizes: binary-search the small list's ids in the large one.
        let mut rest = large;
        for &id in small {
            match rest.binary_search(&id) {
                Ok(i) => {
                    out.push(id);
                    rest = rest.get(i + 1..).unwrap_or_default();
                }
                Err(i) => rest = rest.get(i..).unwrap_or_default(),
            }
        }
        return out;
    }
    let (mut i, mut j) = (0, 0);
    while let (Some(&x), Some(&y)) = (small.get(i), large.get(j)) {
        match x.cmp(&y) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(x);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

/// `a` minus `b`, both sorted.
pub fn subtract(a: &[u32], b: &[u32]) -> Vec<u32> {
    if b.is_empty() {
        return a.to_vec();
    }
    let mut out = Vec::with_capacity(a.len());
    let mut j = 0;
    for &x in a {
        while b.get(j).is_some_and(|&y| y < x) {
            j += 1;
        }
        if b.get(j) != Some(&x) {
            out.push(x);
        }
    }
    out
}

/// Union of sorted lists.
fn union(lists: Vec<&[u32]>) -> Vec<u32> {
    match lists.as_slice() {
        [] => Vec::new(),
        [one] => one.to_vec(),
        _ => {
            let mut out: Vec<u32> = lists.concat();
            out.sort_unstable();
            out.dedup();
            out
        }
    }
}

/// The alternatives of a regex made only of literals joined by `|` (`a|b|c`), which resolve
/// by direct lookups instead of a scan over the label's values.
fn literal_alternatives(re: &str) -> Option<Vec<&str>> {
    const META: &[char] = &[
        '\\', '.', '+', '*', '?', '(', ')', '[', ']', '{', '}', '^', '$', '#', '&', '-', '~',
    ];
    if re.contains(META) {
        return None;
    }
    Some(re.split('|').collect())
}

impl Postings {
    /// Adds series `id` under each of its labels and returns the labels rebuilt from the
    /// interned strings.
    pub fn add(&mut self, id: u32, labels: &Labels) -> Labels {
        let mut interned = Vec::with_capacity(labels.len());
        for l in labels {
            let name = match self.map.get_key_value(&*l.name) {
                Some((k, _)) => k.clone(),
                None => {
                    self.map.insert(l.name.clone(), HashMap::new());
                    l.name.clone()
                }
            };
            let Some(values) = self.map.get_mut(&*name) else {
                continue;
            };
            let value = match values.get_key_value(&*l.value) {
                Some((k, _)) => k.clone(),
                None => {
                    values.insert(l.value.clone(), Vec::new());
                    l.value.clone()
                }
            };
            if let Some(ids) = values.get_mut(&*value) {
                insert_sorted(ids, id);
            }
            interned.push(Label { name, value });
        }
        insert_sorted(&mut self.all, id);
        Labels::from_sorted(interned)
    }

    /// Removes dropped series (ids sorted) in one pass per touched list.
    pub fn remove(&mut self, removed: &[(u32, Labels)]) {
        if removed.is_empty() {
            return;
        }
        let mut ids: Vec<u32> = removed.iter().map(|(id, _)| *id).collect();
        ids.sort_unstable();
        let mut touched: HashMap<(&str, &str), ()> = HashMap::new();
        for (_, labels) in removed {
            for l in labels {
                touched.insert((&*l.name, &*l.value), ());
            }
        }
        for (name, value) in touched.into_keys() {
            let Some(values) = self.map.get_mut(name) else {
                continue;
            };
            if let Some(list) = values.get_mut(value) {
                list.retain(|id| ids.binary_search(id).is_err());
                if list.is_empty() {
                    values.remove(value);
                }
            }
            if values.is_empty() {
                self.map.remove(name);
            }
        }
        self.all.retain(|id| ids.binary_search(id).is_err());
    }

    pub fn all(&self) -> &[u32] {
        &self.all
    }

    pub fn get(&self, name: &str, value: &str) -> &[u32] {
        self.map
            .get(name)
            .and_then(|v| v.get(value))
            .map_or(&[], Vec::as_slice)
    }

    /// Union of the postings of the values of `name` for which `pick` holds.
    fn union_where(&self, name: &str, pick: impl Fn(&str) -> bool) -> Vec<u32> {
        let Some(values) = self.map.get(name) else {
            return Vec::new();
        };
        union(
            values
                .iter()
                .filter(|(v, _)| pick(v))
                .map(|(_, ids)| ids.as_slice())
                .collect(),
        )
    }

    fn union_of(&self, name: &str, literals: &[&str]) -> Vec<u32> {
        union(literals.iter().map(|v| self.get(name, v)).collect())
    }

    /// Ids of the series with a value of `m.name` that `m` does not match (for matchers that
    /// match the empty string: the series to subtract).
    fn not_matching(&self, m: &Matcher) -> Vec<u32> {
        match m.op {
            MatchOp::NotEqual => self.get(&m.name, &m.value).to_vec(),
            MatchOp::NotRegex => match literal_alternatives(&m.value) {
                Some(lits) => self.union_of(&m.name, &lits),
                None => self.union_where(&m.name, |v| !m.matches(v)),
            },
            _ => self.union_where(&m.name, |v| !m.matches(v)),
        }
    }

    /// Ids of the series with a value of `m.name` that `m` matches (for matchers that do not
    /// match the empty string).
    fn matching(&self, m: &Matcher) -> Vec<u32> {
        match m.op {
            MatchOp::Equal => self.get(&m.name, &m.value).to_vec(),
            MatchOp::Regex => match literal_alternatives(&m.value) {
                Some(lits) => self.union_of(&m.name, &lits),
                None => self.union_where(&m.name, |v| m.matches(v)),
            },
            _ => self.union_where(&m.name, |v| m.matches(v)),
        }
    }

    /// Ids (sorted) of the series matching every matcher; no matcher means every series.
    pub fn select(&self, matchers: &[Matcher]) -> Vec<u32> {
        let mut positive: Option<Vec<u32>> = None;
        let mut negative: Vec<Vec<u32>> = Vec::new();
        for m in matchers {
            if m.matches_empty() {
                negative.push(self.not_matching(m));
                continue;
            }
            let set = self.matching(m);
            let next = match positive {
                None => set,
                Some(p) => intersect(&p, &set),
            };
            if next.is_empty() {
                return next;
            }
            positive = Some(next);
        }
        let mut out = positive.unwrap_or_else(|| self.all.clone());
        for n in &negative {
            out = subtract(&out, n);
        }
        out
    }

    /// Every label name, sorted.
    pub fn label_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.map.keys().map(|k| k.to_string()).collect();
        v.sort_unstable();
        v
    }

    /// Every value of `name`, sorted.
    pub fn label_values(&self, name: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .map
            .get(name)
            .map(|vals| vals.keys().map(|k| k.to_string()).collect())
            .unwrap_or_default();
        v.sort_unstable();
        v
    }

    /// Bytes held by the index: strings (once each), list entries and map slots (estimate).
    pub fn memory_bytes(&self) -> usize {
        let slot = size_of::<(Arc<str>, Vec<u32>)>() + 16;
        let mut total = self.all.capacity() * 4;
        for (name, values) in &self.map {
            total += name.len() + slot + 16;
            for (v, ids) in values {
                total += v.len() + 16 + slot + ids.capacity() * 4;
            }
        }
        total
    }

    /// Cardinality tables, top `n` of each, as Prometheus' `index.PostingsStats`.
    pub fn stats(&self, metric_label: &str, n: usize) -> PostingsStats {
        let mut by_metric = Vec::new();
        let mut value_count = Vec::new();
        let mut memory = Vec::new();
        let mut pairs = Vec::new();
        let mut num_label_pairs = 0u64;
        for (name, values) in &self.map {
            let mut size = 0u64;
            for (value, ids) in values {
                let count = ids.len() as u64;
                if &**name == metric_label {
                    by_metric.push(Stat {
                        name: value.to_string(),
                        value: count,
                    });
                }
                pairs.push((count, name, value));
                size += value.len() as u64 * count;
            }
            num_label_pairs += values.len() as u64;
            value_count.push(Stat {
                name: name.to_string(),
                value: values.len() as u64,
            });
            memory.push(Stat {
                name: name.to_string(),
                value: size,
            });
        }
        let top = |mut v: Vec<Stat>| {
            v.sort_unstable_by(|a, b| b.value.cmp(&a.value).then_with(|| a.name.cmp(&b.name)));
            v.truncate(n);
            v
        };
        pairs.sort_unstable_by(|a, b| b.0.cmp(&a.0).then_with(|| (a.1, a.2).cmp(&(b.1, b.2))));
        pairs.truncate(n);
        PostingsStats {
            num_label_pairs,
            series_count_by_metric_name: top(by_metric),
            label_value_count_by_label_name: top(value_count),
            memory_in_bytes_by_label_name: top(memory),
            series_count_by_label_value_pair: pairs
                .into_iter()
                .map(|(count, name, value)| Stat {
                    name: format!("{name}={value}"),
                    value: count,
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> Postings {
        let mut p = Postings::default();
        let series = [
            [("__name__", "up"), ("job", "node"), ("instance", "a")],
            [("__name__", "up"), ("job", "node"), ("instance", "b")],
            [("__name__", "up"), ("job", "dns"), ("instance", "a")],
            [("__name__", "load"), ("job", "node"), ("instance", "")],
        ];
        for (id, pairs) in series.iter().enumerate() {
            p.add(id as u32 * 7, &Labels::from_pairs(pairs.iter().copied()));
        }
        p
    }

    fn sel(p: &Postings, ms: &[(MatchOp, &str, &str)]) -> Vec<u32> {
        let ms: Vec<Matcher> = ms
            .iter()
            .map(|&(op, n, v)| Matcher::new(op, n, v).unwrap())
            .collect();
        p.select(&ms)
    }

    #[test]
    fn matchers_resolve_like_prometheus() {
        use MatchOp::*;
        let p = index();
        assert_eq!(sel(&p, &[(Equal, "__name__", "up")]), [0, 7, 14]);
        assert_eq!(
            sel(&p, &[(Equal, "job", "node"), (Equal, "instance", "a")]),
            [0]
        );
        assert_eq!(
            sel(&p, &[(Equal, "job", "node"), (NotEqual, "instance", "a")]),
            [7, 21]
        );
        // A missing label matches the empty string.
        assert_eq!(
            sel(&p, &[(Equal, "job", "node"), (Equal, "instance", "")]),
            [21]
        );
        assert_eq!(
            sel(&p, &[(Equal, "job", "node"), (NotEqual, "instance", "")]),
            [0, 7]
        );
        assert_eq!(sel(&p, &[(Regex, "instance", "a|b")]), [0, 7, 14]);
        assert_eq!(sel(&p, &[(Regex, "job", "n.*")]), [0, 7, 21]);
        assert_eq!(
            sel(&p, &[(Regex, "__name__", ".+"), (Regex, "instance", "b|")]),
            [7, 21]
        );
        assert_eq!(
            sel(&p, &[(Equal, "job", "node"), (NotRegex, "instance", "a|b")]),
            [21]
        );
        assert_eq!(
            sel(&p, &[(Equal, "job", "node"), (NotRegex, "instance", "b.*")]),
            [0, 21]
        );
        assert_eq!(sel(&p, &[(Equal, "job", "nope")]), Vec::<u32>::new());
        assert_eq!(sel(&p, &[(NotEqual, "job", "dns")]), [0, 7, 21]);
        assert_eq!(sel(&p, &[]), [0, 7, 14, 21]);
    }

    #[test]
    fn strings_are_interned_and_removal_cleans_up() {
        let mut p = index();
        let a = p.add(
            100,
            &Labels::from_pairs([("__name__", "up"), ("job", "node")]),
        );
        let b = p.get("job", "node").len();
        assert_eq!(b, 4);
        let again = p.add(
            101,
            &Labels::from_pairs([("__name__", "up"), ("job", "node")]),
        );
        assert!(Arc::ptr_eq(
            &a.as_slice()[1].value,
            &again.as_slice()[1].value
        ));
        p.remove(&[(100, a), (101, again)]);
        p.remove(&[(
            14,
            Labels::from_pairs([("__name__", "up"), ("job", "dns"), ("instance", "a")]),
        )]);
        assert_eq!(p.label_values("job"), ["node"]);
        assert_eq!(p.all(), [0, 7, 21]);
        let stats = p.stats("__name__", 10);
        assert_eq!(
            stats.series_count_by_metric_name[0],
            Stat {
                name: "up".into(),
                value: 2
            }
        );
        assert_eq!(stats.series_count_by_label_value_pair[0].name, "job=node");
        assert_eq!(stats.num_label_pairs, 5);
    }

    #[test]
    fn set_operations() {
        assert_eq!(intersect(&[1, 3, 5, 7], &[3, 4, 5]), [3, 5]);
        let big: Vec<u32> = (0..1000).collect();
        assert_eq!(intersect(&[5, 999, 1001], &big), [5, 999]);
        assert_eq!(subtract(&[1, 2, 3, 4], &[2, 4, 9]), [1, 3]);
        assert_eq!(union(vec![&[1, 4][..], &[2, 4]]), [1, 2, 4]);
        assert!(literal_alternatives("a|b").is_some());
        assert!(literal_alternatives("a.*").is_none());
    }
}
