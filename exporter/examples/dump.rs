//! Runs collectors once on the given paths and prints their exposition: a development aid for
//! comparing a collector with node_exporter's golden output.
//!
//! `cargo run -p heimdall-exporter --example dump -- --path.procfs F/proc --path.sysfs F/sys \
//!   --path.rootfs F --collectors cpu,stat [--collector.<name>.<knob> ...]`

use clap::Parser;
use heimdall_exporter::collector::{self, CollectorOptions, Paths};
use heimdall_exporter::exposition::{Format, Sink, encode};

#[derive(Debug, Parser)]
struct Args {
    #[arg(long = "path.procfs", default_value = "/proc")]
    procfs: String,
    #[arg(long = "path.sysfs", default_value = "/sys")]
    sysfs: String,
    #[arg(long = "path.rootfs", default_value = "/")]
    rootfs: String,
    #[arg(long = "path.udev.data", default_value = "/run/udev/data")]
    udev: String,
    /// Comma-separated collector names; all when absent.
    #[arg(long, value_delimiter = ',')]
    collectors: Vec<String>,
    #[arg(long)]
    openmetrics: bool,
    #[command(flatten)]
    options: CollectorOptions,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let paths = Paths {
        procfs: args.procfs.into(),
        sysfs: args.sysfs.into(),
        rootfs: args.rootfs.into(),
        udev_data: args.udev.into(),
    };
    let mut sinks = Vec::new();
    for reg in collector::COLLECTORS {
        if !args.collectors.is_empty() && !args.collectors.iter().any(|c| c == reg.name) {
            continue;
        }
        let c = (reg.build)(&args.options)?;
        let mut sink = Sink::new();
        if let Err(e) = c.collect(&paths, &mut sink) {
            eprintln!("collector {} failed: {e}", reg.name);
            continue;
        }
        sinks.push(sink);
    }
    let refs: Vec<&Sink> = sinks.iter().collect();
    let mut out = Vec::new();
    let format = if args.openmetrics {
        Format::OpenMetrics
    } else {
        Format::Text
    };
    encode(&refs, format, &mut out);
    use std::io::Write;
    std::io::stdout().write_all(&out)?;
    Ok(())
}
