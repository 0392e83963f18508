//! `heimdall`: the whole stack in one process (`heimdall up`, the default), or one service
//! alone (`heimdall exporter …`, with exactly the flags of its own binary).
//!
//! # Layout
//! - `up`: starts every service on loopback with no configuration and prints where each
//!   listens; each service is wired in one commented block of [`up`].
//! - `exporter`: hands its arguments to `heimdall_exporter::main_with_args`.

use std::ffi::OsString;
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
}

#[derive(Debug, Parser)]
struct UpArgs {
    /// Where the exporter listens.
    #[arg(
        long = "exporter.listen-address",
        env = "HEIMDALL_EXPORTER_LISTEN_ADDRESS",
        default_value = "127.0.0.1:9090"
    )]
    exporter_listen: SocketAddr,
    /// Only log messages with the given severity or above: debug, info, warn, error.
    #[arg(long = "log.level", env = "HEIMDALL_LOG_LEVEL", default_value = "info")]
    log_level: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
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
        Some(Command::Up(args)) => report(up(args).await),
        None => report(up(UpArgs::parse_from(["heimdall up"])).await),
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

    println!("heimdall {} is up:", env!("CARGO_PKG_VERSION"));
    println!(
        "  exporter   http://{exporter_addr}/metrics   (health: http://{exporter_addr}/health)"
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
