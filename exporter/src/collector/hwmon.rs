//! `hwmon`: hardware sensors from `/sys/class/hwmon`, as node_exporter's `hwmon_linux.go`.
//!
//! Chips are named after their device path (`platform_coretemp_0`), falling back to the
//! `name` file and then to the `hwmonX` directory name. When several hwmon nodes resolve to the
//! same device-derived name (e.g. three `ieee80211_phy0` radios), each is suffixed with its
//! `name` file content when that disambiguates, otherwise with its `hwmonX` basename.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use regex::Regex;

use super::clean_metric_name;
use super::{BuildError, CollectError, Collector, CollectorOptions, Paths, sys_read_file};
use crate::exposition::Sink;

/// Sensor file types node_exporter reads; other files in a hwmon directory are ignored.
const SENSOR_TYPES: &[&str] = &[
    "vrm",
    "beep_enable",
    "update_interval",
    "in",
    "cpu",
    "fan",
    "pwm",
    "temp",
    "curr",
    "power",
    "energy",
    "humidity",
    "intrusion",
    "freq",
];

static FILENAME_FORMAT: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"^(?P<type>[^0-9]+)(?P<id>[0-9]*)?(_(?P<property>.+))?$").ok());

/// Include/exclude regex pair with node_exporter's `deviceFilter` semantics.
#[derive(Debug, Clone, Default)]
struct Filter {
    include: Option<Regex>,
    exclude: Option<Regex>,
}

impl Filter {
    fn ignored(&self, name: &str) -> bool {
        self.exclude.as_ref().is_some_and(|r| r.is_match(name))
            || self.include.as_ref().is_some_and(|r| !r.is_match(name))
    }
}

#[derive(Debug)]
struct Hwmon {
    chips: Filter,
    sensors: Filter,
}

pub fn build(opts: &CollectorOptions) -> Result<Box<dyn Collector>, BuildError> {
    Ok(Box::new(Hwmon {
        chips: Filter {
            include: opts.hwmon_chip_include.clone(),
            exclude: opts.hwmon_chip_exclude.clone(),
        },
        sensors: Filter {
            include: opts.hwmon_sensor_include.clone(),
            exclude: opts.hwmon_sensor_exclude.clone(),
        },
    }))
}

/// One `/sys/class/hwmon/hwmonX` entry after the first pass.
#[derive(Debug)]
struct ChipDir {
    dir: PathBuf,
    /// `hwmonX`, cleaned.
    basename: String,
    /// Device-derived name, before disambiguation.
    base: String,
    /// Cleaned content of the `name` file, if any (the `chip_name` label).
    human: Option<String>,
}

impl Collector for Hwmon {
    fn collect(&self, paths: &Paths, out: &mut Sink) -> Result<(), CollectError> {
        let class = paths.sys("class/hwmon");
        let entries = match fs::read_dir(&class) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(CollectError::NoData),
            Err(source) => {
                return Err(CollectError::Io {
                    path: class,
                    source,
                });
            }
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();

        // Pass 1: device-derived base names.
        let mut chips = Vec::new();
        for name in names {
            let dir = class.join(&name);
            // Follows the symlink, as node_exporter's Lstat-then-Stat does.
            match fs::metadata(&dir) {
                Ok(m) if m.is_dir() => {}
                _ => continue,
            }
            let base = match hwmon_name(&dir) {
                Some(b) => b,
                None => {
                    tracing::warn!(dir = %dir.display(), "hwmon: could not derive a monitoring name");
                    continue;
                }
            };
            let human = fs::read(dir.join("name"))
                .ok()
                .map(|raw| clean_metric_name(&String::from_utf8_lossy(&raw)))
                .filter(|n| !n.is_empty());
            chips.push(ChipDir {
                dir,
                basename: clean_metric_name(&name),
                base,
                human,
            });
        }
        let labels = chip_labels(&chips);

        // Pass 2: filter on the final label and emit.
        for (chip, label) in chips.iter().zip(labels) {
            if self.chips.ignored(&label) {
                continue;
            }
            let mut data = SensorData::new();
            if let Err(e) = collect_sensor_data(&chip.dir, &mut data) {
                tracing::warn!(dir = %chip.dir.display(), error = %e, "hwmon: reading sensors");
                continue;
            }
            let device = chip.dir.join("device");
            if fs::metadata(&device).is_ok()
                && let Err(e) = collect_sensor_data(&device, &mut data)
            {
                tracing::warn!(dir = %device.display(), error = %e, "hwmon: reading sensors");
                continue;
            }
            if let Some(human) = &chip.human {
                out.gauge(
                    "node_hwmon_chip_names",
                    "Annotation metric for human-readable chip names",
                    &[("chip", &label), ("chip_name", human)],
                    1.0,
                );
            }
            emit_chip(&label, &data, &self.sensors, out);
        }
        Ok(())
    }
}

/// Final chip labels: the base name, suffixed only where several chips share it.
fn chip_labels(chips: &[ChipDir]) -> Vec<String> {
    let mut count: HashMap<&str, usize> = HashMap::new();
    let mut human_count: HashMap<(&str, &str), usize> = HashMap::new();
    for c in chips {
        *count.entry(&c.base).or_default() += 1;
        if let Some(h) = &c.human {
            *human_count.entry((&c.base, h)).or_default() += 1;
        }
    }
    chips
        .iter()
        .map(|c| {
            if count.get(c.base.as_str()).copied().unwrap_or(0) <= 1 {
                return c.base.clone();
            }
            match &c.human {
                Some(h) if human_count.get(&(c.base.as_str(), h.as_str())) == Some(&1) => {
                    format!("{}_{}", c.base, h)
                }
                _ => format!("{}_{}", c.base, c.basename),
            }
        })
        .collect()
}

/// node_exporter's `hwmonName`: device path, then `name` file, then the directory name.
fn hwmon_name(dir: &Path) -> Option<String> {
    if let Ok(device) = fs::canonicalize(dir.join("device")) {
        let dev_name = device
            .file_name()
            .map(|n| clean_metric_name(&n.to_string_lossy()))
            .unwrap_or_default();
        let dev_type = device
            .parent()
            .and_then(Path::file_name)
            .map(|n| clean_metric_name(&n.to_string_lossy()))
            .unwrap_or_default();
        if !dev_type.is_empty() && !dev_name.is_empty() {
            return Some(format!("{dev_type}_{dev_name}"));
        }
        if !dev_name.is_empty() {
            return Some(dev_name);
        }
    }
    if let Ok(raw) = fs::read(dir.join("name")) {
        let n = clean_metric_name(&String::from_utf8_lossy(&raw));
        if !n.is_empty() {
            return Some(n);
        }
    }
    let real = fs::canonicalize(dir).ok()?;
    let n = clean_metric_name(&real.file_name()?.to_string_lossy());
    (!n.is_empty()).then_some(n)
}

/// Splits `temp1_crit_alarm` into ("temp", 1, "crit_alarm"). `None` when the name does not
/// have that shape or the number overflows.
fn explode_sensor_filename(name: &str) -> Option<(&str, i64, &str)> {
    let re = FILENAME_FORMAT.as_ref()?;
    let caps = re.captures(name)?;
    let kind = caps.name("type").map_or("", |m| m.as_str());
    let num = match caps.name("id").map(|m| m.as_str()) {
        Some(id) if !id.is_empty() => id.parse().ok()?,
        _ => 0,
    };
    let prop = caps.name("property").map_or("", |m| m.as_str());
    Some((kind, num, prop))
}

/// sensor (e.g. `temp1`) → property (e.g. `input`, `""` for the bare file) → raw value.
type SensorData = BTreeMap<String, BTreeMap<String, String>>;

fn collect_sensor_data(dir: &Path, data: &mut SensorData) -> std::io::Result<()> {
    let mut names: Vec<String> = fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names {
        let Some((kind, num, prop)) = explode_sensor_filename(&name) else {
            continue;
        };
        if !SENSOR_TYPES.contains(&kind) {
            continue;
        }
        // Unreadable files (directories, EAGAIN from broken drivers) are skipped.
        if let Ok(value) = sys_read_file(&dir.join(&name)) {
            data.entry(format!("{kind}{num}"))
                .or_default()
                .insert(prop.to_string(), value);
        }
    }
    Ok(())
}

/// Go's `strconv.ParseFloat` for the decimal forms sysfs produces.
fn parse_value(s: &str) -> Option<f64> {
    s.parse::<f64>().ok()
}

/// Emits every sample of one chip from its collected sensor data.
fn emit_chip(chip: &str, data: &SensorData, sensors: &Filter, out: &mut Sink) {
    for (sensor, props) in data {
        if sensors.ignored(&format!("{chip};{sensor}")) {
            continue;
        }
        let kind = explode_sensor_filename(sensor).map_or("", |(k, _, _)| k);
        let labels = [("chip", chip), ("sensor", sensor.as_str())];
        if let Some(text) = props.get("label") {
            out.gauge(
                "node_hwmon_sensor_label",
                "Label for given chip and sensor",
                &[("chip", chip), ("sensor", sensor), ("label", text)],
                1.0,
            );
        }
        let bare = props.get("").map(String::as_str);
        match kind {
            "beep_enable" => {
                let v = if bare == Some("1") { 1.0 } else { 0.0 };
                out.gauge(
                    "node_hwmon_beep_enabled",
                    "Hardware beep enabled",
                    &labels,
                    v,
                );
                continue;
            }
            "vrm" => {
                if let Some(v) = parse_value(bare.unwrap_or("")) {
                    out.gauge(
                        "node_hwmon_voltage_regulator_version",
                        "Hardware voltage regulator",
                        &labels,
                        v,
                    );
                }
                continue;
            }
            "update_interval" => {
                if let Some(v) = parse_value(bare.unwrap_or("")) {
                    out.gauge(
                        "node_hwmon_update_interval_seconds",
                        "Hardware monitor update interval",
                        &labels,
                        v * 0.001,
                    );
                }
                continue;
            }
            _ => {}
        }
        let prefix = format!("node_hwmon_{kind}");
        for (element, value) in props {
            if element == "label" {
                continue;
            }
            emit_element(chip, sensor, kind, &prefix, element, value, props, out);
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn emit_element(
    chip: &str,
    sensor: &str,
    kind: &str,
    prefix: &str,
    element: &str,
    value: &str,
    props: &BTreeMap<String, String>,
    out: &mut Sink,
) {
    let labels = [("chip", chip), ("sensor", sensor)];
    let name = if element == "input" {
        if props.contains_key("") {
            format!("{prefix}_input")
        } else {
            prefix.to_string()
        }
    } else if !element.is_empty() {
        format!("{prefix}_{}", clean_metric_name(element))
    } else {
        prefix.to_string()
    };
    let Some(v) = parse_value(value) else {
        return;
    };

    if element == "fault" || element == "alarm" {
        let help = format!("Hardware sensor {element} status ({kind})");
        out.gauge(&name, &help, &labels, v);
        return;
    }
    if element == "beep" {
        let name = format!("{name}_enabled");
        out.gauge(
            &name,
            "Hardware monitor sensor has beeping enabled",
            &labels,
            v,
        );
        return;
    }
    let (suffix, help, value) = match kind {
        "in" | "cpu" => (
            "_volts",
            format!("Hardware monitor for voltage ({element})"),
            v * 0.001,
        ),
        "temp" if element != "type" => {
            let el = if element.is_empty() { "input" } else { element };
            (
                "_celsius",
                format!("Hardware monitor for temperature ({el})"),
                v * 0.001,
            )
        }
        "curr" => (
            "_amps",
            format!("Hardware monitor for current ({element})"),
            v * 0.001,
        ),
        "energy" => {
            let name = format!("{name}_joule_total");
            let help = format!("Hardware monitor for joules used so far ({element})");
            out.counter(&name, &help, &labels, v / 1_000_000.0);
            return;
        }
        "power" if element == "accuracy" => (
            "",
            "Hardware monitor power meter accuracy, as a ratio".to_string(),
            v / 1_000_000.0,
        ),
        "power"
            if matches!(
                element,
                "average_interval" | "average_interval_min" | "average_interval_max"
            ) =>
        {
            (
                "_seconds",
                format!("Hardware monitor power usage update interval ({element})"),
                v * 0.001,
            )
        }
        "power" => (
            "_watt",
            format!("Hardware monitor for power usage in watts ({element})"),
            v / 1_000_000.0,
        ),
        "humidity" => (
            "",
            format!(
                "Hardware monitor for humidity, as a ratio (multiply with 100.0 to get the humidity as a percentage) ({element})"
            ),
            v / 1_000_000.0,
        ),
        "fan" if matches!(element, "input" | "min" | "max" | "target") => (
            "_rpm",
            format!("Hardware monitor for fan revolutions per minute ({element})"),
            v,
        ),
        "freq" if element == "input" => {
            // Emitted only with a label, which replaces the sensor label.
            if let Some(text) = props.get("label") {
                let name = format!("{name}_freq_mhz");
                let sensor = clean_metric_name(text);
                out.gauge(
                    &name,
                    "Hardware monitor for GPU frequency in MHz",
                    &[("chip", chip), ("sensor", &sensor)],
                    v / 1_000_000.0,
                );
            }
            return;
        }
        _ => ("", format!("Hardware monitor {kind} element {element}"), v),
    };
    let name = format!("{name}{suffix}");
    out.gauge(&name, &help, &labels, value);
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

    fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn cleans_names() {
        assert_eq!(clean_metric_name("coretemp.0\n"), "coretemp_0");
        assert_eq!(clean_metric_name("Core 0"), "core_0");
        assert_eq!(clean_metric_name("__A-b:c__"), "a_b:c");
        assert_eq!(clean_metric_name("\n"), "");
    }

    #[test]
    fn explodes_filenames() {
        assert_eq!(
            explode_sensor_filename("temp1_crit_alarm"),
            Some(("temp", 1, "crit_alarm"))
        );
        assert_eq!(explode_sensor_filename("pwm1"), Some(("pwm", 1, "")));
        assert_eq!(
            explode_sensor_filename("beep_enable"),
            Some(("beep_enable", 0, ""))
        );
        assert_eq!(
            explode_sensor_filename("in0_input"),
            Some(("in", 0, "input"))
        );
        assert_eq!(explode_sensor_filename("12"), None);
        assert_eq!(
            explode_sensor_filename("temp99999999999999999999999_input"),
            None
        );
    }

    #[test]
    fn emits_units_and_help() {
        let mut data = SensorData::new();
        data.insert(
            "temp1".into(),
            props(&[
                ("input", "55000"),
                ("crit_alarm", "0"),
                ("label", "Core 0"),
                ("type", "4"),
            ]),
        );
        data.insert(
            "fan2".into(),
            props(&[("input", "1098"), ("pulses", "2"), ("alarm", "1")]),
        );
        data.insert("in0".into(), props(&[("input", "792"), ("beep", "0")]));
        data.insert(
            "freq1".into(),
            props(&[("input", "214000000"), ("label", "sclk")]),
        );
        data.insert(
            "power1".into(),
            props(&[("average", "12500000"), ("accuracy", "x")]),
        );
        data.insert("energy1".into(), props(&[("input", "2000000")]));
        data.insert("curr1".into(), props(&[("input", "garbage")]));
        let mut sink = Sink::new();
        emit_chip("chip0", &data, &Filter::default(), &mut sink);
        let text = render(&sink);
        for line in [
            "# HELP node_hwmon_temp_celsius Hardware monitor for temperature (input)",
            "node_hwmon_temp_celsius{chip=\"chip0\",sensor=\"temp1\"} 55",
            "# HELP node_hwmon_temp_crit_alarm_celsius Hardware monitor for temperature (crit_alarm)",
            "node_hwmon_sensor_label{chip=\"chip0\",label=\"Core 0\",sensor=\"temp1\"} 1",
            "# HELP node_hwmon_fan_alarm Hardware sensor alarm status (fan)",
            "node_hwmon_fan_rpm{chip=\"chip0\",sensor=\"fan2\"} 1098",
            "# HELP node_hwmon_fan_pulses Hardware monitor fan element pulses",
            "node_hwmon_in_volts{chip=\"chip0\",sensor=\"in0\"} 0.792",
            "node_hwmon_in_beep_enabled{chip=\"chip0\",sensor=\"in0\"} 0",
            "node_hwmon_freq_freq_mhz{chip=\"chip0\",sensor=\"sclk\"} 214",
            "node_hwmon_power_average_watt{chip=\"chip0\",sensor=\"power1\"} 12.5",
            "# TYPE node_hwmon_energy_joule_total counter",
            "node_hwmon_energy_joule_total{chip=\"chip0\",sensor=\"energy1\"} 2",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        // temp*_type is not a temperature: dumped as is. Unparsable values are skipped.
        assert!(
            text.contains("node_hwmon_temp_type{chip=\"chip0\",sensor=\"temp1\"} 4\n"),
            "{text}"
        );
        assert!(!text.contains("curr"), "{text}");
        assert!(!text.contains("power_accuracy"), "{text}");
    }

    #[test]
    fn sensor_filter_matches_chip_and_sensor() {
        let mut data = SensorData::new();
        data.insert("temp1".into(), props(&[("input", "1000")]));
        data.insert("temp2".into(), props(&[("input", "2000")]));
        let filter = Filter {
            include: None,
            exclude: Regex::new("^c;temp2$").ok(),
        };
        let mut sink = Sink::new();
        emit_chip("c", &data, &filter, &mut sink);
        let text = render(&sink);
        assert!(text.contains("sensor=\"temp1\""));
        assert!(!text.contains("sensor=\"temp2\""));
    }

    #[test]
    fn disambiguates_colliding_chips() {
        let chip = |base: &str, basename: &str, human: Option<&str>| ChipDir {
            dir: PathBuf::new(),
            basename: basename.into(),
            base: base.into(),
            human: human.map(Into::into),
        };
        let chips = [
            chip("platform_coretemp_0", "hwmon0", Some("coretemp")),
            chip("ieee80211_phy0", "hwmon8", Some("mt_0")),
            chip("ieee80211_phy0", "hwmon9", Some("mt_1")),
            chip("platform_x", "hwmon2", Some("same")),
            chip("platform_x", "hwmon3", Some("same")),
            chip("platform_x", "hwmon5", None),
        ];
        assert_eq!(
            chip_labels(&chips),
            [
                "platform_coretemp_0",
                "ieee80211_phy0_mt_0",
                "ieee80211_phy0_mt_1",
                "platform_x_hwmon2",
                "platform_x_hwmon3",
                "platform_x_hwmon5",
            ]
        );
    }

    #[test]
    fn reads_a_tree() {
        let dir = tempfile::tempdir().unwrap();
        let class = dir.path().join("class/hwmon/hwmon0");
        fs::create_dir_all(&class).unwrap();
        fs::write(class.join("name"), "acpitz\n").unwrap();
        fs::write(class.join("temp1_input"), "27800\n").unwrap();
        fs::write(class.join("temp1_crit"), "not a number\n").unwrap();
        fs::create_dir(class.join("power")).unwrap();
        let paths = Paths {
            sysfs: dir.path().into(),
            ..Paths::default()
        };
        let c = build(&CollectorOptions::default()).unwrap();
        let mut sink = Sink::new();
        c.collect(&paths, &mut sink).unwrap();
        let text = render(&sink);
        assert!(
            text.contains("node_hwmon_chip_names{chip=\"acpitz\",chip_name=\"acpitz\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("node_hwmon_temp_celsius{chip=\"acpitz\",sensor=\"temp1\"} 27.8"),
            "{text}"
        );
        assert!(!text.contains("crit"), "{text}");

        let empty = tempfile::tempdir().unwrap();
        let paths = Paths {
            sysfs: empty.path().into(),
            ..Paths::default()
        };
        assert!(matches!(
            c.collect(&paths, &mut Sink::new()),
            Err(CollectError::NoData)
        ));
    }
}
