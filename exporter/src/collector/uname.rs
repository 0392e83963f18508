//! `uname`: node_uname_info from the uname(2) system call, as node_exporter.

use super::{BuildError, CollectError, Collector, CollectorOptions, Paths};
use crate::exposition::Sink;

#[derive(Debug)]
struct Uname;

pub fn build(_: &CollectorOptions) -> Result<Box<dyn Collector>, BuildError> {
    Ok(Box::new(Uname))
}

/// The fields of `struct utsname`, as strings.
#[derive(Debug, Clone, Default, PartialEq)]
struct Info {
    sysname: String,
    release: String,
    version: String,
    machine: String,
    nodename: String,
    domainname: String,
}

impl Collector for Uname {
    fn collect(&self, _paths: &Paths, out: &mut Sink) -> Result<(), CollectError> {
        let u = rustix::system::uname();
        let s = |c: &std::ffi::CStr| c.to_string_lossy().into_owned();
        emit(
            &Info {
                sysname: s(u.sysname()),
                release: s(u.release()),
                version: s(u.version()),
                machine: s(u.machine()),
                nodename: s(u.nodename()),
                domainname: s(u.domainname()),
            },
            out,
        );
        Ok(())
    }
}

fn emit(i: &Info, out: &mut Sink) {
    out.gauge(
        "node_uname_info",
        "Labeled system information as provided by the uname system call.",
        &[
            ("sysname", &i.sysname),
            ("release", &i.release),
            ("version", &i.version),
            ("machine", &i.machine),
            ("nodename", &i.nodename),
            ("domainname", &i.domainname),
        ],
        1.0,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::{Format, encode};

    fn render(sink: &Sink) -> String {
        let mut out = Vec::new();
        encode(&[sink], Format::Text, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn formats_info() {
        let mut sink = Sink::new();
        emit(
            &Info {
                sysname: "Linux".into(),
                release: "6.8.0-1-generic".into(),
                version: "#1 SMP PREEMPT_DYNAMIC".into(),
                machine: "x86_64".into(),
                nodename: "host\"1".into(),
                domainname: "(none)".into(),
            },
            &mut sink,
        );
        assert_eq!(
            render(&sink),
            "# HELP node_uname_info Labeled system information as provided by the uname system call.\n\
             # TYPE node_uname_info gauge\n\
             node_uname_info{domainname=\"(none)\",machine=\"x86_64\",nodename=\"host\\\"1\",release=\"6.8.0-1-generic\",sysname=\"Linux\",version=\"#1 SMP PREEMPT_DYNAMIC\"} 1\n"
        );
    }

    #[test]
    fn reads_this_host() {
        let mut sink = Sink::new();
        build(&CollectorOptions::default())
            .unwrap()
            .collect(&Paths::default(), &mut sink)
            .unwrap();
        assert!(render(&sink).contains("sysname=\"Linux\""));
    }
}
