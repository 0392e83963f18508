//! Configuration: node_exporter's flags, `HEIMDALL_EXPORTER_*` environment variables and an
//! optional TOML file, merged by clap with one precedence rule (command line > environment >
//! file > default) and validated once at start.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, CommandFactory, FromArgMatches, Parser};

use crate::collector::{self, CollectorOptions, Paths, Registration};

pub use heimdall_common::parse_duration;

/// Prefix of every environment variable the exporter reads: `--web.listen-address` is
/// `HEIMDALL_EXPORTER_WEB_LISTEN_ADDRESS`, `--collector.cpu` is `HEIMDALL_EXPORTER_COLLECTOR_CPU`.
pub const ENV_PREFIX: &str = "HEIMDALL_EXPORTER_";

/// The environment variable for a flag's long name.
pub fn env_name(long: &str) -> String {
    let mut s = String::from(ENV_PREFIX);
    s.extend(long.chars().map(|c| {
        if c == '.' || c == '-' {
            '_'
        } else {
            c.to_ascii_uppercase()
        }
    }));
    s
}

/// Flags of `heimdall-exporter` (and `heimdall exporter`), with node_exporter's names.
/// Precedence: command line, then `HEIMDALL_EXPORTER_*` environment, then the TOML file of
/// `--config.file` (keys are the flag names), then the defaults below.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "heimdall-exporter",
    version,
    about = "Heimdall exporter: node_exporter-compatible host metrics on /metrics",
    after_help = "Every collector has --collector.<name> and --no-collector.<name>; \
                  every flag can also be set as HEIMDALL_EXPORTER_<FLAG> (dots and dashes \
                  as underscores) or as a key in the --config.file TOML."
)]
pub struct Cli {
    /// Address on which to expose metrics and web interface (`host:port`, or `:port` for all interfaces).
    #[arg(long = "web.listen-address", env = "HEIMDALL_EXPORTER_WEB_LISTEN_ADDRESS",
          default_value = ":9090", value_parser = parse_listen_address)]
    pub listen_address: SocketAddr,
    /// Path under which to expose metrics.
    #[arg(long = "web.telemetry-path", env = "HEIMDALL_EXPORTER_WEB_TELEMETRY_PATH",
          default_value = "/metrics", value_parser = parse_http_path)]
    pub telemetry_path: String,
    /// Path to exporter-toolkit web configuration (TLS, basic auth) in YAML.
    #[arg(long = "web.config.file", env = "HEIMDALL_EXPORTER_WEB_CONFIG_FILE")]
    pub web_config_file: Option<PathBuf>,
    /// File with bearer API keys, one per line ('#' comments); requests must then carry
    /// `Authorization: Bearer <key>` (or valid basic auth from the web config).
    #[arg(
        long = "web.bearer-token-file",
        env = "HEIMDALL_EXPORTER_WEB_BEARER_TOKEN_FILE"
    )]
    pub bearer_token_file: Option<PathBuf>,
    /// Maximum number of parallel scrape requests; excess requests get 503 at once. 0 disables the limit.
    #[arg(
        long = "web.max-requests",
        env = "HEIMDALL_EXPORTER_WEB_MAX_REQUESTS",
        default_value_t = 40
    )]
    pub max_requests: usize,
    /// procfs mountpoint.
    #[arg(
        long = "path.procfs",
        env = "HEIMDALL_EXPORTER_PATH_PROCFS",
        default_value = "/proc"
    )]
    pub procfs: PathBuf,
    /// sysfs mountpoint.
    #[arg(
        long = "path.sysfs",
        env = "HEIMDALL_EXPORTER_PATH_SYSFS",
        default_value = "/sys"
    )]
    pub sysfs: PathBuf,
    /// rootfs mountpoint.
    #[arg(
        long = "path.rootfs",
        env = "HEIMDALL_EXPORTER_PATH_ROOTFS",
        default_value = "/"
    )]
    pub rootfs: PathBuf,
    /// udev data path.
    #[arg(
        long = "path.udev.data",
        env = "HEIMDALL_EXPORTER_PATH_UDEV_DATA",
        default_value = "/run/udev/data"
    )]
    pub udev_data: PathBuf,
    /// Set all collectors to disabled by default; enable them one by one with --collector.<name>.
    #[arg(
        long = "collector.disable-defaults",
        env = "HEIMDALL_EXPORTER_COLLECTOR_DISABLE_DEFAULTS"
    )]
    pub disable_defaults: bool,
    /// How long one collector may take before the scrape goes on without it (reported as
    /// node_scrape_collector_success 0).
    #[arg(long = "collector.timeout", env = "HEIMDALL_EXPORTER_COLLECTOR_TIMEOUT",
          default_value = "8s", value_parser = parse_duration)]
    pub collector_timeout: Duration,
    /// Only log messages with the given severity or above: debug, info, warn, error.
    #[arg(long = "log.level", env = "HEIMDALL_EXPORTER_LOG_LEVEL", default_value = "info",
          value_parser = ["trace", "debug", "info", "warn", "error"])]
    pub log_level: String,
    /// TOML file whose keys are these flags' names (`"web.listen-address" = "127.0.0.1:9090"`,
    /// `"collector.cpu" = false`); command line and environment take precedence.
    #[arg(long = "config.file", env = "HEIMDALL_EXPORTER_CONFIG_FILE")]
    pub config_file: Option<PathBuf>,
    #[command(flatten)]
    pub collectors: CollectorOptions,
}

/// Everything the exporter needs to run, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub cli: Cli,
    pub enabled: Vec<&'static Registration>,
}

impl Config {
    pub fn paths(&self) -> Paths {
        Paths {
            procfs: self.cli.procfs.clone(),
            sysfs: self.cli.sysfs.clone(),
            rootfs: self.cli.rootfs.clone(),
            udev_data: self.cli.udev_data.clone(),
        }
    }

    /// The configuration `heimdall up` uses: loopback, defaults everywhere else.
    pub fn local(listen: SocketAddr) -> Result<Self, ConfigError> {
        let mut cfg = parse_from(["heimdall-exporter"])?;
        cfg.cli.listen_address = listen;
        Ok(cfg)
    }
}

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Bad flag or value (also `--help` / `--version`: call `.exit()` on it).
    #[error("{0}")]
    Cli(#[from] clap::Error),
    #[error("config file {path}: {reason}")]
    File { path: PathBuf, reason: String },
}

/// The full command, including the `--collector.<name>` / `--no-collector.<name>` flags
/// derived from [`collector::COLLECTORS`].
pub fn command() -> clap::Command {
    let mut cmd = Cli::command();
    for reg in collector::COLLECTORS {
        let long = format!("collector.{}", reg.name);
        cmd = cmd
            .arg(
                clap::Arg::new(long.clone())
                    .long(long.clone())
                    .env(env_name(&long))
                    .action(ArgAction::Set)
                    .num_args(0..=1)
                    .require_equals(true)
                    .default_missing_value("true")
                    .value_parser(clap::value_parser!(bool))
                    .help(format!(
                        "Enable the {} collector (default: {}).",
                        reg.name,
                        if reg.enabled_by_default {
                            "enabled"
                        } else {
                            "disabled"
                        }
                    ))
                    .help_heading("Collectors"),
            )
            .arg(
                clap::Arg::new(format!("no-collector.{}", reg.name))
                    .long(format!("no-collector.{}", reg.name))
                    .action(ArgAction::SetTrue)
                    .hide(true),
            );
    }
    cmd
}

/// Parses the command line (first item: program name) plus environment and config file.
pub fn parse_from<I, T>(args: I) -> Result<Config, ConfigError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let mut args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let cmd = command();
    let first = cmd.clone().try_get_matches_from(&args)?;
    if let Some(path) = first.get_one::<PathBuf>("config_file") {
        let extra = file_args(&cmd, path, &args)?;
        let at = args.len().min(1);
        args.splice(at..at, extra);
    }
    let matches = cmd.try_get_matches_from(&args)?;
    let cli = Cli::from_arg_matches(&matches)?;
    let enabled = enabled_collectors(&matches, cli.disable_defaults);
    if cli.max_requests > 100_000 {
        return Err(clap::Error::raw(
            clap::error::ErrorKind::ValueValidation,
            "--web.max-requests: at most 100000 (use 0 for no limit)\n",
        )
        .into());
    }
    Ok(Config { cli, enabled })
}

fn enabled_collectors(m: &ArgMatches, disable_defaults: bool) -> Vec<&'static Registration> {
    collector::COLLECTORS
        .iter()
        .filter(|reg| {
            if m.get_flag(&format!("no-collector.{}", reg.name)) {
                return false;
            }
            let id = format!("collector.{}", reg.name);
            match m.value_source(&id) {
                Some(ValueSource::CommandLine | ValueSource::EnvVariable) => {
                    m.get_one::<bool>(&id).copied().unwrap_or(true)
                }
                _ => reg.enabled_by_default && !disable_defaults,
            }
        })
        .collect()
}

/// Turns the TOML file into `--key=value` arguments for every key that neither the command
/// line nor the environment sets.
fn file_args(
    cmd: &clap::Command,
    path: &std::path::Path,
    argv: &[OsString],
) -> Result<Vec<OsString>, ConfigError> {
    let err = |reason: String| ConfigError::File {
        path: path.to_owned(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| err(e.to_string()))?;
    let mut flat = Vec::new();
    flatten("", &table, &mut flat);
    let mut out = Vec::new();
    for (key, value) in flat {
        let Some(arg) = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(key.as_str()) && !a.is_hide_set())
        else {
            return Err(err(format!(
                "unknown key {key:?} (keys are flag names, see --help)"
            )));
        };
        if key == "config.file" {
            return Err(err(
                "\"config.file\" cannot be set from the config file".into()
            ));
        }
        let on_command_line = argv.iter().skip(1).any(|a| {
            let a = a.to_string_lossy();
            a.strip_prefix("--")
                .map(|rest| {
                    rest == key
                        || rest.starts_with(&format!("{key}="))
                        || rest == format!("no-{key}")
                })
                .unwrap_or(false)
        });
        if on_command_line || std::env::var_os(env_name(&key)).is_some() {
            continue;
        }
        let values: Vec<&toml::Value> = match &value {
            toml::Value::Array(items) => items.iter().collect(),
            v => vec![v],
        };
        for v in values {
            let text = match v {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => {
                    if matches!(arg.get_action(), ArgAction::SetTrue) {
                        if *b {
                            out.push(OsString::from(format!("--{key}")));
                        }
                        continue;
                    }
                    b.to_string()
                }
                other => {
                    return Err(err(format!(
                        "key {key:?}: unsupported value {other} (use a string, number, boolean or list)"
                    )));
                }
            };
            out.push(OsString::from(format!("--{key}={text}")));
        }
    }
    Ok(out)
}

fn flatten(prefix: &str, table: &toml::Table, out: &mut Vec<(String, toml::Value)>) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) => flatten(&key, t, out),
            v => out.push((key, v.clone())),
        }
    }
}

pub use heimdall_common::parse_listen_address;

fn parse_http_path(s: &str) -> Result<String, String> {
    if !s.starts_with('/') || s.len() < 2 {
        return Err(format!("{s:?} must start with '/' and not be '/' alone"));
    }
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_flag_has_the_derived_env_name() {
        for arg in command().get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if arg.is_hide_set() || long == "help" || long == "version" {
                continue;
            }
            let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
            assert_eq!(env, Some(env_name(long)), "flag --{long}");
        }
    }

    #[test]
    fn collector_flags() {
        let cfg = parse_from(["x", "--no-collector.cpu"]).unwrap();
        assert!(!cfg.enabled.iter().any(|r| r.name == "cpu"));
        assert!(cfg.enabled.iter().any(|r| r.name == "meminfo"));
        let cfg = parse_from(["x", "--collector.disable-defaults", "--collector.meminfo"]).unwrap();
        let names: Vec<_> = cfg.enabled.iter().map(|r| r.name).collect();
        assert_eq!(names, ["meminfo"]);
        let cfg = parse_from(["x", "--collector.cpu=false"]).unwrap();
        assert!(!cfg.enabled.iter().any(|r| r.name == "cpu"));
    }

    #[test]
    fn bad_values_name_the_flag() {
        let e = parse_from(["x", "--collector.filesystem.mount-points-exclude", "("]).unwrap_err();
        assert!(
            e.to_string()
                .contains("collector.filesystem.mount-points-exclude"),
            "{e}"
        );
        let e = parse_from(["x", "--web.listen-address", "nope"]).unwrap_err();
        assert!(e.to_string().contains("web.listen-address"), "{e}");
        let e = parse_from(["x", "--collector.timeout", "5"]).unwrap_err();
        assert!(e.to_string().contains("collector.timeout"), "{e}");
        assert!(parse_from(["x", "--collector.nosuch"]).is_err());
    }

    #[test]
    fn config_file_keys_are_flags_and_lose_to_the_command_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("exporter.toml");
        std::fs::write(
            &path,
            r#"
"web.listen-address" = "127.0.0.1:19999"
"web.max-requests" = 7
"collector.stat.softirq" = true
[collector]
cpu = false
[path]
procfs = "/somewhere/proc"
"#,
        )
        .unwrap();
        let p = path.to_str().unwrap();
        let cfg = parse_from(["x", "--config.file", p, "--web.max-requests=3"]).unwrap();
        assert_eq!(cfg.cli.listen_address, "127.0.0.1:19999".parse().unwrap());
        assert_eq!(cfg.cli.max_requests, 3);
        assert!(cfg.cli.collectors.stat_softirq);
        assert_eq!(cfg.cli.procfs, PathBuf::from("/somewhere/proc"));
        assert!(!cfg.enabled.iter().any(|r| r.name == "cpu"));

        std::fs::write(&path, "\"web.listen-adress\" = \":1\"\n").unwrap();
        let e = parse_from(["x", "--config.file", p])
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown key \"web.listen-adress\""), "{e}");
        std::fs::write(&path, "\"web.max-requests\" = \"many\"\n").unwrap();
        let e = parse_from(["x", "--config.file", p])
            .unwrap_err()
            .to_string();
        assert!(e.contains("web.max-requests"), "{e}");
    }
}
