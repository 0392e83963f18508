//! A small in-memory [`Querier`] for tests, benchmarks and the `.test` script runner: series
//! in a sorted map, samples kept in time order. Not a TSDB: no retention, no limits, no index
//! (every select scans all series), so keep it to test-sized data.

use std::collections::BTreeMap;

use crate::model::{Labels, Matcher};
use crate::storage::{Querier, Sample, Series, StorageError};

#[derive(Debug, Default, Clone)]
pub struct MemStore {
    series: BTreeMap<Labels, Vec<Sample>>,
}

impl MemStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one sample; a sample at an existing timestamp replaces it.
    pub fn add(&mut self, labels: &Labels, t: i64, v: f64) {
        let samples = self.series.entry(labels.clone()).or_default();
        match samples.last() {
            Some(last) if last.t >= t => {
                let i = samples.partition_point(|s| s.t < t);
                match samples.get_mut(i) {
                    Some(s) if s.t == t => s.v = v,
                    _ => samples.insert(i, Sample { t, v }),
                }
            }
            _ => samples.push(Sample { t, v }),
        }
    }

    /// Drops everything.
    pub fn clear(&mut self) {
        self.series.clear();
    }

    /// Number of series.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    fn matching<'a>(
        &'a self,
        matchers: &'a [Matcher],
        mint: i64,
        maxt: i64,
    ) -> impl Iterator<Item = (&'a Labels, &'a [Sample])> + 'a {
        self.series.iter().filter_map(move |(labels, samples)| {
            if !matchers.iter().all(|m| m.matches_labels(labels)) {
                return None;
            }
            let lo = samples.partition_point(|s| s.t < mint);
            let hi = samples.partition_point(|s| s.t <= maxt);
            let window = samples.get(lo..hi)?;
            (!window.is_empty()).then_some((labels, window))
        })
    }
}

impl Querier for MemStore {
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Series>, StorageError> {
        if matchers.iter().all(Matcher::matches_empty) {
            return Err(StorageError::Query(
                "at least one matcher must not match the empty string".to_owned(),
            ));
        }
        Ok(self
            .matching(matchers, mint, maxt)
            .map(|(labels, samples)| Series {
                labels: labels.clone(),
                samples: samples.to_vec(),
            })
            .collect())
    }

    fn label_names(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError> {
        let mut names: Vec<String> = self
            .matching(matchers, mint, maxt)
            .flat_map(|(l, _)| l.iter().map(|l| l.name.to_string()))
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError> {
        let mut values: Vec<String> = self
            .matching(matchers, mint, maxt)
            .filter_map(|(l, _)| l.get(name).map(str::to_owned))
            .collect();
        values.sort();
        values.dedup();
        Ok(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_samples_in_order_and_slices_by_time() {
        let mut m = MemStore::new();
        let l = Labels::from_pairs([("__name__", "up"), ("job", "a")]);
        m.add(&l, 20, 2.0);
        m.add(&l, 10, 1.0);
        m.add(&l, 30, 3.0);
        m.add(&l, 20, 4.0);
        let got = m.select(&[Matcher::equal("job", "a")], 15, 30).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(
            got[0].samples,
            vec![Sample { t: 20, v: 4.0 }, Sample { t: 30, v: 3.0 }]
        );
        assert!(
            m.select(&[Matcher::equal("job", "a")], 31, 40)
                .unwrap()
                .is_empty()
        );
        assert!(m.select(&[Matcher::equal("job", "")], 0, 40).is_err());
        assert_eq!(m.label_values("job", &[], 0, 40).unwrap(), ["a"]);
        assert_eq!(m.label_names(&[], 0, 40).unwrap(), ["__name__", "job"]);
    }
}
