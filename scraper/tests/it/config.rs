//! `prometheus.yml` loading: every `testdata/config/*.good.yml` loads and survives a round
//! trip through the status YAML; every `*.bad.yml` fails naming its key path and reason (the
//! table below); relabel steps read from a file behave as written.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use heimdall_scraper::config::{
    ByteSize, Config, ConfigError, DnsRecordType, LOCAL_EXPORTER_SRV, MAX_CONFIG_BYTES, Scheme,
    ScrapeProtocol, Secret,
};
use heimdall_scraper::model::Labels;
use heimdall_scraper::relabel::{hash_mod, relabel};

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/config")
}

/// Names of the files in testdata/config ending in `suffix`, without it.
fn files(suffix: &str) -> BTreeSet<String> {
    std::fs::read_dir(testdata())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter_map(|n| n.strip_suffix(suffix).map(str::to_owned))
        .collect()
}

/// Each bad file and what its error must contain: the YAML path, then the reason.
const BAD: &[(&str, &str)] = &[
    (
        "alert_relabel",
        "alerting.alert_relabel_configs[0].target_label: relabel configuration for replace action requires 'target_label' value",
    ),
    (
        "alertmanager_api_version",
        "alerting.alertmanagers[0].api_version: expected Alertmanager api version to be one of [v2] but got v1",
    ),
    (
        "authorization_basic",
        r#"scrape_configs[0].authorization.type: authorization type cannot be set to "basic""#,
    ),
    (
        "authorization_two_credentials",
        "remote_write[0].authorization.credentials_file: at most one of authorization credentials & credentials_file",
    ),
    (
        "bad_duration_fraction",
        r#"global.scrape_interval: unknown unit "." in duration "1.5m""#,
    ),
    (
        "bad_duration_order",
        r#"global.evaluation_interval: not a valid duration string: "30s1m""#,
    ),
    (
        "bad_duration_unit",
        r#"scrape_configs[0].scrape_interval: unknown unit "x" in duration "5x""#,
    ),
    (
        "bad_regex",
        r#"scrape_configs[0].metric_relabel_configs[0].regex: invalid regular expression "go_(.*": unclosed group"#,
    ),
    (
        "basic_auth_and_authorization",
        "scrape_configs[0].authorization: at most one of basic_auth & authorization",
    ),
    (
        "basic_auth_two_passwords",
        "scrape_configs[0].basic_auth.password_file: at most one of basic_auth password & password_file",
    ),
    (
        "body_size_limit_number",
        r#"scrape_configs[0].body_size_limit: invalid size "1000""#,
    ),
    (
        "body_size_limit_unit",
        r#"global.body_size_limit: invalid size "10 MB""#,
    ),
    (
        "dns_sd_a_without_port",
        "scrape_configs[0].dns_sd_configs[0].port: a port is required in DNS-SD configs for all record types except SRV",
    ),
    (
        "dns_sd_nameserver",
        r#"scrape_configs[0].dns_sd_configs[0].nameservers: nameserver "ns1.internal" is not ip:port"#,
    ),
    (
        "dns_sd_no_names",
        "scrape_configs[0].dns_sd_configs[0].names: DNS-SD config must contain at least one SRV record name",
    ),
    (
        "dns_sd_type",
        "scrape_configs[0].dns_sd_configs[0].type: invalid DNS-SD records type TXT",
    ),
    (
        "dns_sd_zero_refresh",
        "scrape_configs[0].dns_sd_configs[0].refresh_interval: refresh_interval must be greater than 0",
    ),
    (
        "duplicate_job_name",
        r#"scrape_configs[2].job_name: found multiple scrape configs with job name "node""#,
    ),
    (
        "duplicate_label_key",
        r#"scrape_configs[0].static_configs[0].labels: mapping key "env" already defined"#,
    ),
    (
        "empty_job_name",
        "scrape_configs[0].job_name: job_name is empty",
    ),
    (
        "external_label_name",
        r#"global.external_labels: "0x" is not a valid label name"#,
    ),
    (
        "file_sd_extension",
        r#"scrape_configs[0].file_sd_configs[0].files[1]: path name "targets.txt" is not valid for file discovery"#,
    ),
    (
        "file_sd_no_files",
        "scrape_configs[0].file_sd_configs[0].files: file service discovery config must contain at least one path name",
    ),
    (
        "global_timeout_above_interval",
        "global.scrape_timeout: global scrape timeout greater than scrape interval",
    ),
    (
        "hashmod_without_modulus",
        "scrape_configs[0].relabel_configs[0].modulus: relabel configuration for hashmod requires non-zero modulus",
    ),
    (
        "hashmod_zero_modulus",
        "scrape_configs[0].relabel_configs[0].modulus: relabel configuration for hashmod requires non-zero modulus",
    ),
    (
        "invalid_source_label",
        r#"scrape_configs[0].relabel_configs[0].source_labels: "not-ok" is not a valid label name"#,
    ),
    (
        "invalid_target_label",
        r#"scrape_configs[0].relabel_configs[0].target_label: "foo-bar" is invalid 'target_label' for replace action"#,
    ),
    (
        "invalid_target_template",
        r#"scrape_configs[0].relabel_configs[0].target_label: "-${1}" is invalid 'target_label' for replace action"#,
    ),
    (
        "job_timeout_above_own_interval",
        r#"scrape_configs[0].scrape_timeout: scrape timeout greater than scrape interval for scrape config with job name "node""#,
    ),
    (
        "keepequal_with_regex",
        "scrape_configs[0].relabel_configs[0].action: keepequal action requires only 'source_labels' and `target_label`, and no other fields",
    ),
    (
        "labeldrop_extra_fields",
        "scrape_configs[0].metric_relabel_configs[0].action: labeldrop action requires only 'regex', and no other fields",
    ),
    (
        "labelmap_bad_replacement",
        r#"scrape_configs[0].relabel_configs[0].replacement: "-$1" is invalid 'replacement' for labelmap action"#,
    ),
    (
        "lowercase_with_replacement",
        "scrape_configs[0].relabel_configs[0].replacement: 'replacement' can not be set for lowercase action",
    ),
    (
        "metrics_path",
        r#"scrape_configs[0].metrics_path: metrics_path "metrics" must start with "/""#,
    ),
    (
        "negative_limit",
        "scrape_configs[0].sample_limit: invalid type: integer `-1`",
    ),
    ("not_yaml", "did not find expected node content at line 2"),
    (
        "remote_write_authorization_header",
        "remote_write[0].headers.Authorization: authorization header must be changed via the basic_auth or authorization parameter",
    ),
    (
        "remote_write_duplicate_name",
        r#"remote_write[1].name: found multiple remote write configs with name "x""#,
    ),
    (
        "remote_write_no_url",
        "remote_write[0].url: url for remote_write is empty",
    ),
    (
        "remote_write_queue_zero",
        "remote_write[0].queue_config.max_shards: max_shards must be greater than 0",
    ),
    (
        "remote_write_relabel",
        "remote_write[0].write_relabel_configs[0].modulus: relabel configuration for hashmod requires non-zero modulus",
    ),
    (
        "remote_write_relative_url",
        r#"remote_write[0].url: "/api/v1/write" is not an absolute http or https URL"#,
    ),
    (
        "remote_write_reserved_header",
        "remote_write[0].headers.User-Agent: User-Agent is a reserved header",
    ),
    (
        "replace_without_target",
        "scrape_configs[0].relabel_configs[0].target_label: relabel configuration for replace action requires 'target_label' value",
    ),
    (
        "rule_files_glob",
        r#"rule_files[0]: invalid rule file path "rules/*/x.yml""#,
    ),
    (
        "scheme",
        "scrape_configs[0].scheme: unknown variant `ftp`, expected `http` or `https`",
    ),
    (
        "scrape_protocol_unknown",
        "global.scrape_protocols[1]: unknown scrape protocol Protobuf, supported: [OpenMetricsText0.0.1 OpenMetricsText1.0.0 PrometheusProto PrometheusText0.0.4 PrometheusText1.0.0]",
    ),
    (
        "scrape_protocols_duplicate",
        "scrape_configs[0].scrape_protocols[2]: duplicated protocol PrometheusProto in scrape_protocols",
    ),
    (
        "scrape_protocols_empty",
        "scrape_configs[0].scrape_protocols: scrape_protocols cannot be empty",
    ),
    (
        "static_label_name",
        r#"scrape_configs[0].static_configs[0].labels: "my.label" is not a valid label name"#,
    ),
    (
        "static_target_url",
        r#"scrape_configs[0].static_configs[0].targets[1]: "http://b:9100/metrics" is not a valid hostname"#,
    ),
    (
        "timeout_above_interval",
        r#"scrape_configs[0].scrape_timeout: scrape timeout greater than scrape interval for scrape config with job name "node""#,
    ),
    (
        "tls_cert_without_key",
        "scrape_configs[0].tls_config.key_file: key_file must be configured when a client certificate (cert_file) is configured",
    ),
    (
        "tls_unknown_key",
        "scrape_configs[0].tls_config.ca: unknown field `ca`",
    ),
    (
        "unknown_relabel_action",
        r#"scrape_configs[1].relabel_configs[0].action: unknown relabel action "foo""#,
    ),
    (
        "unknown_relabel_key",
        "scrape_configs[0].relabel_configs[0].source_label: unknown field `source_label`, expected one of `source_labels`",
    ),
    (
        "unknown_scrape_key",
        "scrape_configs[0].scrape_intervall: unknown field `scrape_intervall`",
    ),
    (
        "unknown_top_level_key",
        "storage: unknown field `storage`, expected one of `global`, `alerting`, `rule_files`, `scrape_configs`, `remote_write` at line 3 column 1",
    ),
    (
        "wrong_type",
        "scrape_configs: invalid type: map, expected a sequence",
    ),
];

#[test]
fn bad_files_fail_with_the_key_path_and_reason() {
    let table: BTreeSet<String> = BAD.iter().map(|(f, _)| f.to_string()).collect();
    assert_eq!(
        table,
        files(".bad.yml"),
        "every bad file has one row in BAD, and only those"
    );
    for (file, want) in BAD {
        let err = match Config::load(testdata().join(format!("{file}.bad.yml"))) {
            Ok(_) => panic!("{file}.bad.yml loaded"),
            Err(e) => e,
        };
        assert!(
            matches!(err, ConfigError::Parse { .. } | ConfigError::Invalid { .. }),
            "{file}: {err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains(want),
            "{file}.bad.yml:\n  got  {text}\n  want {want}"
        );
        assert!(!text.contains('\n'), "{file}: errors are one line: {text}");
        // The path is said once: the parser's own coarser path is not repeated after it.
        let path = err.key_path().unwrap();
        assert!(text.starts_with(&format!("{path}: ")), "{file}: {text}");
        assert!(!text[path.len() + 2..].starts_with(path), "{file}: {text}");
    }
}

/// The config with inline secrets replaced by what the status YAML shows for them.
fn masked(c: &Config) -> Config {
    let mut c = c.clone();
    let mask = |s: &mut Secret| {
        if !s.is_empty() {
            *s = Secret::new("<secret>");
        }
    };
    let auth = |b: Option<&mut heimdall_scraper::config::BasicAuth>,
                a: Option<&mut heimdall_scraper::config::Authorization>| {
        if let Some(b) = b {
            mask(&mut b.password);
        }
        if let Some(a) = a {
            mask(&mut a.credentials);
        }
    };
    for j in &mut c.scrape_configs {
        auth(j.basic_auth.as_mut(), j.authorization.as_mut());
    }
    for r in &mut c.remote_write {
        auth(r.basic_auth.as_mut(), r.authorization.as_mut());
    }
    for a in &mut c.alerting.alertmanagers {
        auth(a.basic_auth.as_mut(), a.authorization.as_mut());
    }
    c
}

#[test]
fn good_files_load_and_round_trip_through_status_yaml() {
    let good = files(".good.yml");
    assert!(good.len() >= 5, "{good:?}");
    for file in good {
        let c = Config::load(testdata().join(format!("{file}.good.yml")))
            .unwrap_or_else(|e| panic!("{file}.good.yml: {e}"));
        let yaml = c.to_yaml().unwrap();
        let back = Config::from_yaml_str(&yaml).unwrap_or_else(|e| panic!("{file}: {e}\n{yaml}"));
        assert_eq!(back, masked(&c), "{file}:\n{yaml}");
        assert_eq!(
            back.to_yaml().unwrap(),
            yaml,
            "{file}: the status YAML is a fixed point"
        );
    }
}

#[test]
fn inline_secrets_print_as_secret() {
    let c = Config::from_yaml_str(
        "scrape_configs:\n- job_name: a\n  basic_auth: {username: u, password: hunter2}\n\
         remote_write:\n- url: http://r:9201/w\n  authorization: {credentials: tok3n}\n",
    )
    .unwrap();
    assert_eq!(
        c.scrape_configs[0]
            .basic_auth
            .as_ref()
            .unwrap()
            .password
            .expose(),
        "hunter2"
    );
    assert_eq!(
        c.remote_write[0].authorization.as_ref().unwrap().kind,
        "Bearer"
    );
    let yaml = c.to_yaml().unwrap();
    let debug = format!("{c:?}");
    for text in [&yaml, &debug] {
        assert!(
            !text.contains("hunter2") && !text.contains("tok3n"),
            "{text}"
        );
        assert!(text.contains("<secret>"), "{text}");
    }
    assert!(
        yaml.contains("password: <secret>") && yaml.contains("credentials: <secret>"),
        "{yaml}"
    );
}

#[test]
fn full_file_is_read_as_written() {
    let dir = testdata();
    let c = Config::load(dir.join("full.good.yml")).unwrap();
    let g = &c.global;
    assert_eq!(g.scrape_interval, Duration::from_secs(15));
    assert_eq!(g.evaluation_interval, Duration::from_secs(30));
    assert_eq!(
        g.external_labels,
        Labels::from_pairs([("cluster", "lab"), ("replica", "1")])
    );
    assert_eq!(g.body_size_limit, ByteSize(10 << 20));
    assert_eq!(
        c.rule_files,
        [
            dir.join("rules/*.yml").to_string_lossy(),
            "/etc/heimdall/alerts.yml".into()
        ]
    );

    let node = c.job("node").unwrap();
    assert_eq!(node.scrape_interval, Duration::from_secs(5));
    // The global 10s timeout, capped at the job's 5s interval.
    assert_eq!(node.scrape_timeout, Duration::from_secs(5));
    assert!(node.honor_labels && !node.honor_timestamps && !node.enable_compression);
    assert_eq!(node.scheme, Scheme::Https);
    assert_eq!(node.body_size_limit, ByteSize(1 << 30));
    assert_eq!(node.sample_limit, 1000);
    // Not set on the job: inherited.
    assert_eq!(
        (
            node.label_limit,
            node.label_name_length_limit,
            node.label_value_length_limit
        ),
        (64, 128, 2048)
    );
    assert_eq!(node.scrape_protocols, ScrapeProtocol::DEFAULT);
    assert_eq!(node.params["collect[]"], ["cpu", "meminfo"]);
    let auth = node.basic_auth.as_ref().unwrap();
    assert_eq!(auth.username, "prometheus");
    assert_eq!(
        auth.password_file.as_deref(),
        Some(dir.join("secrets/node-password").as_path())
    );
    assert_eq!(
        node.tls_config.ca_file.as_deref(),
        Some(dir.join("ca.pem").as_path())
    );
    assert_eq!(
        node.tls_config.cert_file.as_deref(),
        Some(Path::new("/etc/heimdall/client.pem"))
    );
    assert_eq!(node.tls_config.server_name, "node.internal");
    assert_eq!(
        node.static_configs[0].targets,
        ["localhost:9100", "10.0.0.2:9100"]
    );
    assert_eq!(
        node.static_configs[0].labels,
        Labels::from_pairs([("env", "prod"), ("team", "infra")])
    );
    assert_eq!(
        node.file_sd_configs[0].files,
        [
            dir.join("targets/*.json").to_string_lossy(),
            dir.join("more.yml").to_string_lossy()
        ]
    );
    assert_eq!(
        node.file_sd_configs[0].refresh_interval,
        Duration::from_secs(60)
    );
    let srv = &node.dns_sd_configs[0];
    assert_eq!(
        (srv.record_type, srv.refresh_interval),
        (DnsRecordType::Srv, Duration::from_secs(30))
    );
    let ns: Vec<SocketAddr> = vec![
        "127.0.0.1:8053".parse().unwrap(),
        "[::1]:8053".parse().unwrap(),
    ];
    assert_eq!(srv.nameservers, ns);
    let a = &node.dns_sd_configs[1];
    assert_eq!(
        (a.record_type, a.port, a.nameservers.len()),
        (DnsRecordType::A, 9187, 0)
    );
    assert_eq!(
        (
            node.relabel_configs.len(),
            node.metric_relabel_configs.len()
        ),
        (9, 3)
    );

    let bb = c.job("blackbox").unwrap();
    assert_eq!(bb.scrape_interval, Duration::from_secs(15));
    assert_eq!(bb.scrape_timeout, Duration::from_secs(10));
    assert_eq!(bb.scrape_protocols, [ScrapeProtocol::PrometheusText0_0_4]);
    assert_eq!(bb.metrics_path, "/probe");
    assert_eq!(bb.scheme, Scheme::Http);
    assert!(bb.honor_timestamps && bb.enable_compression);
    assert_eq!(
        bb.authorization
            .as_ref()
            .unwrap()
            .credentials_file
            .as_deref(),
        Some(dir.join("secrets/token").as_path())
    );

    let rw = &c.remote_write[0];
    assert_eq!(
        (rw.name.as_str(), rw.remote_timeout),
        ("archive", Duration::from_secs(10))
    );
    assert_eq!(rw.headers["X-Scope-OrgID"], "lab");
    let q = &rw.queue_config;
    assert_eq!(
        (
            q.capacity,
            q.max_shards,
            q.max_samples_per_send,
            q.batch_send_deadline
        ),
        (20_000, 10, 500, Duration::from_secs(2))
    );
    let am = &c.alerting.alertmanagers[0];
    assert_eq!(
        (
            am.scheme,
            am.path_prefix.as_str(),
            am.timeout,
            am.api_version.as_str()
        ),
        (Scheme::Https, "/am", Duration::from_secs(5), "v2")
    );
    assert_eq!(c.alerting.alert_relabel_configs.len(), 1);
}

#[test]
fn defaults_are_prometheus_defaults() {
    let c = Config::load(testdata().join("minimal.good.yml")).unwrap();
    let j = &c.scrape_configs[0];
    assert_eq!(
        (j.scrape_interval, j.scrape_timeout),
        (Duration::from_secs(60), Duration::from_secs(10))
    );
    assert_eq!(
        (j.metrics_path.as_str(), j.scheme),
        ("/metrics", Scheme::Http)
    );
    assert!(j.honor_timestamps && !j.honor_labels && j.enable_compression);
    assert_eq!(
        (j.sample_limit, j.label_limit, j.body_size_limit),
        (0, 0, ByteSize(0))
    );
    assert_eq!(j.scrape_protocols, ScrapeProtocol::DEFAULT);
    assert_eq!(c.global.evaluation_interval, Duration::from_secs(60));
    assert!(
        c.remote_write.is_empty() && c.rule_files.is_empty() && c.alerting.alertmanagers.is_empty()
    );
    assert_eq!(
        Config::load(testdata().join("empty.good.yml")).unwrap(),
        Config::default()
    );
}

#[test]
fn jobs_inherit_from_global() {
    let c = Config::load(testdata().join("inherit.good.yml")).unwrap();
    let protos = [
        ScrapeProtocol::PrometheusProto,
        ScrapeProtocol::PrometheusText0_0_4,
    ];
    let j = c.job("inherits").unwrap();
    assert_eq!(
        (j.scrape_interval, j.scrape_timeout),
        (Duration::from_secs(30), Duration::from_secs(10))
    );
    assert_eq!(
        (j.body_size_limit, j.sample_limit, j.label_limit),
        (ByteSize(1024), 10, 20)
    );
    assert_eq!(
        (j.label_name_length_limit, j.label_value_length_limit),
        (30, 40)
    );
    assert_eq!(j.scrape_protocols, protos);
    let short = c.job("short").unwrap();
    // The timeout is capped at the job's own, shorter interval.
    assert_eq!(
        (short.scrape_interval, short.scrape_timeout),
        (Duration::from_secs(2), Duration::from_secs(2))
    );
    assert_eq!(short.sample_limit, 99);
    let own = c.job("own-timeout").unwrap();
    assert_eq!(
        (own.scrape_interval, own.scrape_timeout),
        (Duration::from_secs(30), Duration::from_secs(20))
    );
    // The global section keeps "unset" protocols unset, as Prometheus' status page does.
    assert_eq!(Config::default().global.scrape_protocols, None);
}

#[test]
fn default_local_is_the_local_good_file() {
    let ns: SocketAddr = "127.0.0.1:8053".parse().unwrap();
    let from_file = Config::load(testdata().join("local.good.yml")).unwrap();
    let built = Config::default_local(ns);
    assert_eq!(built, from_file);
    let job = &built.scrape_configs[0];
    assert_eq!(job.job_name, "exporter");
    assert_eq!(
        (job.scrape_interval, job.scrape_timeout),
        (Duration::from_secs(5), Duration::from_secs(5))
    );
    assert_eq!(job.dns_sd_configs[0].names, [LOCAL_EXPORTER_SRV]);
    assert_eq!(job.dns_sd_configs[0].nameservers, [ns]);
    assert_eq!(
        job.dns_sd_configs[0].refresh_interval,
        Duration::from_secs(30)
    );
}

/// The status YAML of full.good.yml, as `/api/v1/status/config` will show it. Refresh with
/// `UPDATE_GOLDEN=1 cargo test -p heimdall-scraper --test it config::`.
#[test]
fn status_yaml_is_golden() {
    let text = std::fs::read_to_string(testdata().join("full.good.yml")).unwrap();
    // from_yaml_str keeps relative paths, so the golden file does not depend on the checkout.
    let yaml = Config::from_yaml_str(&text).unwrap().to_yaml().unwrap();
    let golden = testdata().join("full.status.golden.yaml");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &yaml).unwrap();
    }
    let want = std::fs::read_to_string(&golden).unwrap();
    assert_eq!(
        yaml, want,
        "status YAML changed; refresh with UPDATE_GOLDEN=1 if intended"
    );
}

#[test]
fn load_reports_missing_and_oversized_files() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.yml");
    let e = Config::load(&missing).unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }), "{e:?}");
    assert!(e.to_string().contains("nope.yml"), "{e}");

    let big = dir.path().join("big.yml");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(MAX_CONFIG_BYTES + 1).unwrap();
    let e = Config::load(&big).unwrap_err();
    assert!(matches!(e, ConfigError::TooLarge { .. }), "{e:?}");

    let binary = dir.path().join("binary.yml");
    std::fs::write(&binary, [0xff, 0xfe, 0x00]).unwrap();
    assert!(matches!(
        Config::load(&binary),
        Err(ConfigError::Read { .. })
    ));
}

/// Relabel steps read from full.good.yml shard, filter, map and case-fold a target the way
/// their YAML says.
#[test]
fn relabel_steps_from_the_file_behave_as_written() {
    let c = Config::load(testdata().join("full.good.yml")).unwrap();
    let node = c.job("node").unwrap();
    let addr = |shard: u64| {
        (0..1000)
            .map(|i| format!("10.0.0.{i}:9100"))
            .find(|a| hash_mod(a, 4) == Some(shard))
            .unwrap()
    };
    let target = |address: &str| {
        Labels::from_pairs([
            ("__address__", address),
            ("__meta_dns_name", "db1.EU.heimdall.internal."),
            ("env", "prod"),
            ("job", "node"),
            ("other", "x"),
        ])
    };
    let kept = addr(0);
    let got = relabel(&target(&kept), &node.relabel_configs);
    let want = Labels::from_pairs([
        ("__address__", kept.as_str()),
        ("__meta_dns_name", "db1.EU.heimdall.internal."),
        ("__tmp_hash", "0"),
        ("dns_name", "db1.EU.heimdall.internal."),
        ("env", "prod"),
        ("env_upper", "PROD"),
        ("job", "node"),
        ("shard", "0"),
        ("zone", "db1.eu"),
    ]);
    assert_eq!(got, Some(want));
    assert_eq!(
        relabel(&target(&addr(3)), &node.relabel_configs),
        None,
        "other shards are dropped"
    );

    let series = |name: &str, instance: &str, host: &str| {
        Labels::from_pairs([
            ("__name__", name),
            ("instance", instance),
            ("host", host),
            ("id", "7"),
        ])
    };
    let m = &node.metric_relabel_configs;
    assert_eq!(relabel(&series("go_goroutines", "a", "b"), m), None);
    assert_eq!(relabel(&series("up", "a", "a"), m), None);
    assert_eq!(
        relabel(&series("up", "a", "b"), m),
        Some(Labels::from_pairs([
            ("__name__", "up"),
            ("instance", "a"),
            ("host", "b")
        ]))
    );
}

/// A stock Prometheus config from prometheus/compliance, read in place from the shared peer
/// data (skipped when that folder is not next to the checkout).
#[test]
fn peer_prometheus_config_loads() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let rel = "shared/peer/promql-compliance/prometheus-test-data.yml";
    let Some(path) = [
        manifest.join("../..").join(rel),
        manifest.join("../../..").join(rel),
    ]
    .into_iter()
    .find(|p| p.exists()) else {
        eprintln!("skipped: peer data {rel} not found next to the checkout");
        return;
    };
    let c = Config::load(&path).unwrap();
    let demo = c.job("demo").unwrap();
    assert_eq!(
        (demo.scrape_interval, demo.scrape_timeout),
        (Duration::from_secs(5), Duration::from_secs(5))
    );
    assert_eq!(demo.static_configs[0].targets.len(), 3);
}
