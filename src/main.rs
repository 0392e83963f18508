//! `heimdall`: the whole stack in one process (`heimdall up`, the default), or one service
//! alone (`heimdall exporter …`, with exactly the flags of its own binary).
//!
//! # Layout
//! - `up`: starts every service on loopback with no configuration and prints where each
//!   listens; each service is wired in one commented block of [`up`].
//! - `exporter`, `nameserver`, `scraper`: hand their arguments to the service's own
//!   `main_with_args`.
//! - `check metrics`: validates an exposition on stdin, as `promtool check metrics` does
//!   ([`check_metrics`]); needs no runtime.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(
    name = "heimdall",
    version,
    about = "Heimdall: node_exporter-compatible fleet monitoring, one command to start",
    long_about = "Without a subcommand, `heimdall` runs `heimdall up`."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start every service in this process on loopback (the default).
    Up(UpArgs),
    /// Run the exporter alone; takes the same flags as `heimdall-exporter` (see `heimdall exporter --help`).
    #[command(disable_help_flag = true, disable_version_flag = true)]
    Exporter {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Run the nameserver alone; takes the same flags as `heimdall-nameserver`.
    #[command(disable_help_flag = true, disable_version_flag = true)]
    Nameserver {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Run the scraper alone; takes the same flags as `heimdall-scraper`.
    #[command(disable_help_flag = true, disable_version_flag = true)]
    Scraper {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Check files, as promtool does.
    #[command(subcommand)]
    Check(CheckCommand),
}

#[derive(Debug, Subcommand)]
enum CheckCommand {
    /// Check a /metrics exposition read from stdin: exit 0 when valid (lint warnings on
    /// stderr), 1 with the line, column and reason of the first error.
    Metrics(CheckMetricsArgs),
}

#[derive(Debug, clap::Args)]
struct CheckMetricsArgs {
    /// The exposition format [default: openmetrics when the input ends with a `# EOF` line
    /// (text if it is only valid as text), else text].
    #[arg(long, value_enum)]
    format: Option<FormatArg>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum FormatArg {
    /// Prometheus text format 0.0.4.
    Text,
    /// OpenMetrics 1.0 (strict: every rule of the specification the parser knows).
    Openmetrics,
}

/// The most `heimdall check metrics` reads; a larger input is an error, not a partial check.
const MAX_CHECK_INPUT_BYTES: u64 = 64 << 20;

#[derive(Debug, Parser)]
struct UpArgs {
    /// Where the exporter listens.
    #[arg(
        long = "exporter.listen-address",
        env = "HEIMDALL_EXPORTER_LISTEN_ADDRESS",
        default_value = "127.0.0.1:9090"
    )]
    exporter_listen: SocketAddr,
    /// Where the nameserver answers DNS (UDP and TCP).
    #[arg(
        long = "nameserver.dns-address",
        env = "HEIMDALL_NAMESERVER_DNS_ADDRESS",
        default_value = "127.0.0.1:8600"
    )]
    nameserver_dns: SocketAddr,
    /// Where the nameserver's registration API listens.
    #[arg(
        long = "nameserver.http-address",
        env = "HEIMDALL_NAMESERVER_HTTP_ADDRESS",
        default_value = "127.0.0.1:8053"
    )]
    nameserver_http: SocketAddr,
    /// Where the scraper's Prometheus API listens.
    #[arg(
        long = "scraper.listen-address",
        env = "HEIMDALL_SCRAPER_WEB_LISTEN_ADDRESS",
        default_value = "127.0.0.1:9190"
    )]
    scraper_listen: SocketAddr,
    /// Where the services keep their data (the nameserver's registry under `nameserver/`,
    /// the scraper's WAL and snapshots under `scraper/`).
    #[arg(
        long = "data.path",
        env = "HEIMDALL_DATA_PATH",
        default_value = "heimdall-data"
    )]
    data_path: std::path::PathBuf,
    /// Only log messages with the given severity or above: debug, info, warn, error.
    #[arg(long = "log.level", env = "HEIMDALL_LOG_LEVEL", default_value = "info")]
    log_level: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Check(CheckCommand::Metrics(args))) = &cli.command {
        let code = check_metrics(
            args.format,
            &mut std::io::stdin().lock(),
            &mut std::io::stdout().lock(),
            &mut std::io::stderr().lock(),
        );
        return ExitCode::from(code);
    }
    let rt = match heimdall_exporter::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("heimdall: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(run(cli))
}

async fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Some(Command::Exporter { args }) => {
            let argv = std::iter::once(OsString::from("heimdall exporter")).chain(args);
            heimdall_exporter::main_with_args(argv).await
        }
        Some(Command::Nameserver { args }) => {
            let argv = std::iter::once(OsString::from("heimdall nameserver")).chain(args);
            heimdall_nameserver::main_with_args(argv).await
        }
        Some(Command::Scraper { args }) => {
            let argv = std::iter::once(OsString::from("heimdall scraper")).chain(args);
            heimdall_scraper::main_with_args(argv).await
        }
        Some(Command::Up(args)) => report(up(args).await),
        // Handled in `main`, before a runtime exists.
        Some(Command::Check(_)) => ExitCode::FAILURE,
        None => report(up(UpArgs::parse_from(["heimdall up"])).await),
    }
}

/// `heimdall check metrics`: reads at most [`MAX_CHECK_INPUT_BYTES`] from `input`, prints
/// `OK: N families, M samples` to `out` and lint warnings to `err`, or the first error to
/// `err`. Returns the exit code: 0 valid, 1 invalid or unreadable.
fn check_metrics(
    format: Option<FormatArg>,
    input: &mut dyn Read,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    use heimdall_scraper::textparse::Format;
    let mut body = Vec::new();
    if let Err(e) = input.take(MAX_CHECK_INPUT_BYTES + 1).read_to_end(&mut body) {
        let _ = writeln!(err, "error: reading stdin: {e}");
        return 1;
    }
    if body.len() as u64 > MAX_CHECK_INPUT_BYTES {
        let _ = writeln!(
            err,
            "error: input larger than {} MiB",
            MAX_CHECK_INPUT_BYTES >> 20
        );
        return 1;
    }
    let result = match format {
        Some(FormatArg::Text) => heimdall_scraper::check::check_metrics(&body, Format::Text),
        Some(FormatArg::Openmetrics) => {
            heimdall_scraper::check::check_metrics(&body, Format::OpenMetrics)
        }
        None => heimdall_scraper::check::check_metrics_detected(&body),
    };
    match result {
        Ok(summary) => {
            if let Some(e) = &summary.not_openmetrics {
                let _ = writeln!(
                    err,
                    "note: ends with \"# EOF\" but is not OpenMetrics ({e}); checked as text format"
                );
            }
            for w in &summary.warnings {
                let _ = writeln!(err, "warning: {w}");
            }
            if summary.warnings_omitted > 0 {
                let _ = writeln!(
                    err,
                    "warning: … and {} more warnings",
                    summary.warnings_omitted
                );
            }
            let _ = writeln!(
                out,
                "OK: {} families, {} samples",
                summary.families, summary.samples
            );
            0
        }
        Err(e) => {
            let _ = writeln!(err, "{e}");
            1
        }
    }
}

fn report(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("heimdall: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn up(args: UpArgs) -> anyhow::Result<()> {
    heimdall_exporter::init_tracing(&args.log_level);
    let shutdown = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();

    // Exporter: this host's metrics, node_exporter-compatible.
    let config = heimdall_exporter::config::Config::local(args.exporter_listen)
        .context("exporter configuration")?;
    let exporter = heimdall_exporter::Exporter::bind(&config).context("starting the exporter")?;
    let exporter_addr = exporter.local_addr();
    tasks.spawn({
        let shutdown = shutdown.clone();
        async move { exporter.run(shutdown).await.context("exporter") }
    });

    // Nameserver: the registry of the fleet as DNS (SRV + A) and http_sd.
    let ns_config = heimdall_nameserver::config::Config::parse_from([
        OsString::from("heimdall nameserver"),
        OsString::from(format!("--dns.listen-address={}", args.nameserver_dns)),
        OsString::from(format!("--http.listen-address={}", args.nameserver_http)),
        {
            let mut a = OsString::from("--storage.path=");
            a.push(args.data_path.join("nameserver"));
            a
        },
    ])
    .context("nameserver configuration")?;
    let nameserver =
        heimdall_nameserver::Nameserver::bind(&ns_config).context("starting the nameserver")?;
    let (dns_addr, ns_http_addr) = (nameserver.local_dns_addr(), nameserver.local_http_addr());
    // The local exporter registers in-process; it lives as long as this process, so no lease.
    let instance = local_instance_name();
    nameserver
        .store()
        .register(
            "exporter",
            &instance,
            heimdall_nameserver::registry::Registration {
                address: exporter_addr.ip(),
                port: exporter_addr.port(),
                labels: Default::default(),
                ttl_seconds: None,
                health_path: heimdall_nameserver::registry::default_health_path(),
            },
        )
        .await
        .context("registering the local exporter")?;
    let nameserver_store = nameserver.store();
    tasks.spawn({
        let shutdown = shutdown.clone();
        async move { nameserver.run(shutdown).await.context("nameserver") }
    });

    // Scraper: finds the exporters in the nameserver (SRV), scrapes them every 5 s, keeps
    // the samples (WAL under the data path) and answers the Prometheus API.
    let scraper_flags = heimdall_scraper::flags::Flags::parse_from([
        OsString::from("heimdall scraper"),
        OsString::from(format!("--discovery.nameserver={dns_addr}")),
        OsString::from(format!("--web.listen-address={}", args.scraper_listen)),
        {
            let mut a = OsString::from("--storage.tsdb.path=");
            a.push(args.data_path.join("scraper"));
            a
        },
    ])
    .context("scraper configuration")?;
    let scraper = heimdall_scraper::Scraper::bind(&scraper_flags, shutdown.child_token())
        .context("starting the scraper")?;
    let scraper_addr = scraper.local_addr();
    // Registered as `_scraper._tcp` (the gateway finds it there), in-process like the exporter.
    nameserver_store
        .register(
            "scraper",
            &instance,
            heimdall_nameserver::registry::Registration {
                address: scraper_addr.ip(),
                port: scraper_addr.port(),
                labels: Default::default(),
                ttl_seconds: None,
                health_path: Some("/-/healthy".to_owned()),
            },
        )
        .await
        .context("registering the scraper")?;
    tasks.spawn(async move { scraper.run().await.context("scraper") });

    println!("heimdall {} is up:", env!("CARGO_PKG_VERSION"));
    println!(
        "  exporter   http://{exporter_addr}/metrics   (health: http://{exporter_addr}/health)"
    );
    println!("  nameserver dns://{dns_addr}   (registry: http://{ns_http_addr}/v1/services)");
    println!(
        "             dig @{} -p {} SRV _exporter._tcp.heimdall.internal.   ({instance} registered)",
        dns_addr.ip(),
        dns_addr.port()
    );
    println!(
        "  scraper    http://{scraper_addr}/api/v1/query?query=up   (Prometheus API: Grafana data source URL http://{scraper_addr})"
    );
    println!("Press Ctrl-C to stop.");

    tokio::select! {
        () = heimdall_exporter::shutdown_signal() => {}
        Some(done) = tasks.join_next() => {
            shutdown.cancel();
            done.context("service task")??;
            anyhow::bail!("a service stopped unexpectedly");
        }
    }
    eprintln!("heimdall: shutting down");
    shutdown.cancel();
    while let Some(done) = tasks.join_next().await {
        done.context("service task")??;
    }
    Ok(())
}

/// This host's name as a DNS label (`web-1.example.com` → `web-1`), or `localhost`.
fn local_instance_name() -> String {
    let node = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    let first = node.split('.').next().unwrap_or("");
    heimdall_nameserver::registry::dns_label("instance", first)
        .ok()
        .filter(|n| n != "ns")
        .unwrap_or_else(|| "localhost".to_owned())
}
