//! Any input, both formats, both rule sets: the parser never panics, every error says where,
//! an error repeats on the next call, and labels can be built for every sample it hands out.
//! `heimdall check metrics` (parser plus lint) runs on the same input.
#![no_main]

use heimdall_scraper::check::check_metrics;
use heimdall_scraper::model::LabelsBuilder;
use heimdall_scraper::textparse::{Entry, Format, Parser, Rules};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let lines = data.split(|b| *b == b'\n').count();
    for format in [Format::Text, Format::OpenMetrics] {
        for rules in [Rules::Strict, Rules::SyntaxOnly] {
            let mut p = Parser::with_rules(data, format, rules);
            loop {
                match p.next() {
                    Ok(Some(Entry::Sample(s))) => {
                        let mut b = LabelsBuilder::default();
                        s.labels(&mut b);
                        assert_eq!(b.build().metric_name(), Some(s.name));
                        if let Some(ex) = s.exemplar {
                            ex.labels(&mut LabelsBuilder::default());
                        }
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(e) => {
                        assert!(e.line >= 1 && e.line <= lines + 1, "{e}");
                        assert!(e.column >= 1 && !e.reason.is_empty(), "{e}");
                        assert_eq!(p.next(), Err(e));
                        break;
                    }
                }
            }
        }
        let _ = check_metrics(data, format);
    }
});
