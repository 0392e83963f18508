//! `diskstats`: TO BE WRITTEN (see the issue); until then it reports no data.

use super::{BuildError, CollectError, Collector, CollectorOptions, Paths};
use crate::exposition::Sink;

#[derive(Debug)]
struct Unwritten;

pub fn build(_: &CollectorOptions) -> Result<Box<dyn Collector>, BuildError> {
    Ok(Box::new(Unwritten))
}

impl Collector for Unwritten {
    fn collect(&self, _paths: &Paths, _out: &mut Sink) -> Result<(), CollectError> {
        Err(CollectError::NoData)
    }
}
