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
use crate::registration;

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
    /// Base URL of the Heimdall nameserver's HTTP API to register this exporter in
    /// (`http://ns.example:8053`); without it the exporter does not register.
    #[arg(long = "registry.url", env = "HEIMDALL_EXPORTER_REGISTRY_URL",
          value_parser = registration::parse_registry_url, help_heading = "Registration")]
    pub registry_url: Option<String>,
    /// File with the registry's bearer token (first non-empty, non-'#' line). The token itself
    /// can instead be in HEIMDALL_EXPORTER_REGISTRY_TOKEN; it has no flag, so it stays out of `ps`.
    #[arg(
        long = "registry.token-file",
        env = "HEIMDALL_EXPORTER_REGISTRY_TOKEN_FILE",
        help_heading = "Registration"
    )]
    pub registry_token_file: Option<PathBuf>,
    /// Service to register under (a DNS label): `_<service>._tcp.<zone>` SRV.
    #[arg(long = "registry.service", env = "HEIMDALL_EXPORTER_REGISTRY_SERVICE",
          default_value = "exporter", value_parser = registration::parse_dns_label,
          help_heading = "Registration")]
    pub registry_service: String,
    /// Instance name (a DNS label); default: the host name's first label, lowercased, with
    /// other characters than [a-z0-9-] as '-'.
    #[arg(long = "registry.instance", env = "HEIMDALL_EXPORTER_REGISTRY_INSTANCE",
          value_parser = registration::parse_instance, help_heading = "Registration")]
    pub registry_instance: Option<String>,
    /// `ip:port` (or an IP, with the listen port) where others reach this exporter; default: the
    /// listen address, or on a wildcard listen address the host's primary IPv4 address.
    #[arg(long = "registry.advertise-address", env = "HEIMDALL_EXPORTER_REGISTRY_ADVERTISE_ADDRESS",
          value_parser = registration::parse_advertise_address, help_heading = "Registration")]
    pub registry_advertise_address: Option<registration::Advertise>,
    /// Lease of the registration (at least 2s); renewed every third of it, and dropped by the
    /// nameserver if the exporter stops renewing.
    #[arg(long = "registry.ttl", env = "HEIMDALL_EXPORTER_REGISTRY_TTL", default_value = "30s",
          value_parser = registration::parse_ttl, help_heading = "Registration")]
    pub registry_ttl: Duration,
    /// `key=value` label published with the registration (TXT record, http_sd meta label);
    /// repeatable, or comma-separated.
    #[arg(long = "registry.label", env = "HEIMDALL_EXPORTER_REGISTRY_LABEL",
          value_parser = registration::parse_label, value_delimiter = ',',
          action = ArgAction::Append, help_heading = "Registration")]
    pub registry_labels: Vec<(String, String)>,
    #[command(flatten)]
    pub collectors: CollectorOptions,
}

/// Everything the exporter needs to run, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub cli: Cli,
    pub enabled: Vec<&'static Registration>,
    /// Self-registration in the nameserver; `None` without `--registry.url`.
    pub registration: Option<registration::Settings>,
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

    /// The configuration `heimdall up` uses: loopback, defaults everywhere else, and no
    /// self-registration (`heimdall up` registers its exporter in-process).
    pub fn local(listen: SocketAddr) -> Result<Self, ConfigError> {
        let mut cfg = parse_from(["heimdall-exporter"])?;
        cfg.cli.listen_address = listen;
        cfg.registration = None;
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
    #[error("--{flag}: {reason}")]
    Invalid { flag: &'static str, reason: String },
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
    let env_token = std::env::var(registration::TOKEN_ENV).ok();
    let registration = registration_settings(&cli, env_token, registration::host_name)?;
    Ok(Config {
        cli,
        enabled,
        registration,
    })
}

/// Validates the `--registry.*` flags into [`registration::Settings`] when `--registry.url`
/// is set. `env_token` is [`registration::TOKEN_ENV`]; `host_name` gives the default instance.
fn registration_settings(
    cli: &Cli,
    env_token: Option<String>,
    host_name: impl FnOnce() -> Option<String>,
) -> Result<Option<registration::Settings>, ConfigError> {
    let Some(url) = &cli.registry_url else {
        return Ok(None);
    };
    let env_token = env_token.filter(|t| !t.trim().is_empty());
    let token = match (&cli.registry_token_file, env_token) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::Invalid {
                flag: "registry.token-file",
                reason: format!(
                    "{} is set too; give the token one way only",
                    registration::TOKEN_ENV
                ),
            });
        }
        (Some(path), None) => registration::TokenSource::File(path.clone()),
        (None, Some(t)) => registration::TokenSource::Env(registration::Secret::new(t.trim())),
        (None, None) => registration::TokenSource::None,
    };
    let instance = match &cli.registry_instance {
        Some(i) => i.clone(),
        None => {
            let host = host_name().unwrap_or_default();
            registration::instance_from_host_name(&host).map_err(|reason| ConfigError::Invalid {
                flag: "registry.instance",
                reason,
            })?
        }
    };
    let mut labels = std::collections::BTreeMap::new();
    for (k, v) in &cli.registry_labels {
        if labels.insert(k.clone(), v.clone()).is_some() {
            return Err(ConfigError::Invalid {
                flag: "registry.label",
                reason: format!("label {k:?} given twice"),
            });
        }
    }
    Ok(Some(registration::Settings {
        url: url.clone(),
        token,
        service: cli.registry_service.clone(),
        instance,
        advertise: cli.registry_advertise_address,
        ttl: cli.registry_ttl,
        labels,
    }))
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

    fn registration_of(
        args: &[&str],
        env_token: Option<&str>,
    ) -> Result<Option<registration::Settings>, ConfigError> {
        let mut argv = vec!["x"];
        argv.extend_from_slice(args);
        let cli = Cli::from_arg_matches(&command().try_get_matches_from(argv)?)?;
        registration_settings(&cli, env_token.map(str::to_owned), || {
            Some("Web_01.example.com".into())
        })
    }

    #[test]
    fn registration_flags() {
        assert!(registration_of(&[], Some("t")).unwrap().is_none());
        let s = registration_of(&["--registry.url=http://127.0.0.1:8053/"], None)
            .unwrap()
            .unwrap();
        assert_eq!(s.url, "http://127.0.0.1:8053");
        assert_eq!(s.service, "exporter");
        assert_eq!(s.instance, "web-01");
        assert_eq!(s.ttl, Duration::from_secs(30));
        assert_eq!(s.token, registration::TokenSource::None);
        assert!(s.labels.is_empty() && s.advertise.is_none());

        let s = registration_of(
            &[
                "--registry.url=https://ns.example",
                "--registry.service=Node",
                "--registry.instance=db-7",
                "--registry.ttl=1m",
                "--registry.label=dc=fra,rack=r1",
                "--registry.label=team=infra",
                "--registry.advertise-address=10.1.2.3",
            ],
            Some(" s3cret \n"),
        )
        .unwrap()
        .unwrap();
        assert_eq!((s.service.as_str(), s.instance.as_str()), ("node", "db-7"));
        assert_eq!(s.ttl, Duration::from_secs(60));
        let labels: Vec<_> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(labels, ["dc=fra", "rack=r1", "team=infra"]);
        assert_eq!(s.advertise.unwrap().ip.to_string(), "10.1.2.3");
        assert_eq!(
            s.token,
            registration::TokenSource::Env(registration::Secret::new("s3cret"))
        );
    }

    #[test]
    fn bad_registration_values_name_the_flag() {
        let url = "--registry.url=http://127.0.0.1:8053";
        for (args, flag) in [
            (&["--registry.url=127.0.0.1:8053"][..], "registry.url"),
            (&[url, "--registry.ttl=1s"], "registry.ttl"),
            (&[url, "--registry.instance=ns"], "registry.instance"),
            (&[url, "--registry.service=a_b"], "registry.service"),
            (&[url, "--registry.label=a-b=c"], "registry.label"),
            (
                &[url, "--registry.label=a=1", "--registry.label=a=2"],
                "registry.label",
            ),
            (
                &[url, "--registry.advertise-address=0.0.0.0:9090"],
                "registry.advertise-address",
            ),
        ] {
            let e = registration_of(args, None).unwrap_err().to_string();
            assert!(e.contains(flag), "{args:?}: {e}");
        }
        let e = registration_of(&[url, "--registry.token-file=/t"], Some("t"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("HEIMDALL_EXPORTER_REGISTRY_TOKEN"), "{e}");
        let cli =
            Cli::from_arg_matches(&command().try_get_matches_from(["x", url]).unwrap()).unwrap();
        let e = registration_settings(&cli, None, || Some("___".into()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("--registry.instance"), "{e}");
        assert!(registration_settings(&cli, None, || None).is_err());
    }

    #[test]
    fn registration_from_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("exporter.toml");
        std::fs::write(
            &path,
            r#"
[registry]
url = "http://127.0.0.1:8053"
instance = "web-2"
ttl = "10s"
label = ["dc=fra", "rack=r1"]
"#,
        )
        .unwrap();
        let cfg = parse_from(["x", "--config.file", path.to_str().unwrap()]).unwrap();
        let s = cfg.registration.unwrap();
        assert_eq!(s.url, "http://127.0.0.1:8053");
        assert_eq!(s.instance, "web-2");
        assert_eq!(s.ttl, Duration::from_secs(10));
        assert_eq!(s.labels.len(), 2);
    }

    #[test]
    fn heimdall_up_never_self_registers() {
        let cfg = Config::local("127.0.0.1:0".parse().unwrap()).unwrap();
        assert!(cfg.registration.is_none());
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
