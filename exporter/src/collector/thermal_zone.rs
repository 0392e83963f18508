//! `thermal_zone`: node_thermal_zone_temp and node_cooling_device_{cur,max}_state from
//! `/sys/class/thermal`, as node_exporter (procfs `ClassThermalZoneStats`,
//! `ClassCoolingDeviceStats`) reads them.

use std::fs;
use std::path::Path;

use super::{BuildError, CollectError, Collector, CollectorOptions, Paths, sys_read_file};
use crate::exposition::Sink;

#[derive(Debug)]
struct ThermalZone;

pub fn build(_: &CollectorOptions) -> Result<Box<dyn Collector>, BuildError> {
    Ok(Box::new(ThermalZone))
}

impl Collector for ThermalZone {
    fn collect(&self, paths: &Paths, out: &mut Sink) -> Result<(), CollectError> {
        let class = paths.sys("class/thermal");
        let names = list_dir(&class)?;

        for name in glob_numbered(&names, "thermal_zone") {
            let dir = class.join(name);
            // A zone whose files cannot be read (absent, ENODATA, EAGAIN...) is skipped;
            // a temperature that does not parse fails the collector.
            let (Ok(kind), Ok(_policy), Ok(temp)) = (
                sys_read_file(&dir.join("type")),
                sys_read_file(&dir.join("policy")),
                sys_read_file(&dir.join("temp")),
            ) else {
                continue;
            };
            let temp = parse_int(&dir.join("temp"), &temp)?;
            let zone = &name["thermal_zone".len()..];
            out.gauge(
                "node_thermal_zone_temp",
                "Zone temperature in Celsius",
                &[("zone", zone), ("type", &kind)],
                temp as f64 / 1000.0,
            );
        }

        for name in glob_numbered(&names, "cooling_device") {
            let dir = class.join(name);
            let read = |file: &str| {
                let path = dir.join(file);
                sys_read_file(&path).map_err(|source| CollectError::Io { path, source })
            };
            let kind = read("type")?;
            let max = parse_int(&dir.join("max_state"), &read("max_state")?)?;
            // cur_state may be -1 (e.g. intel_powerclamp).
            let cur = parse_int(&dir.join("cur_state"), &read("cur_state")?)?;
            let cd = &name["cooling_device".len()..];
            let labels = [("name", cd), ("type", kind.as_str())];
            out.gauge(
                "node_cooling_device_cur_state",
                "Current throttle state of the cooling device",
                &labels,
                cur as f64,
            );
            out.gauge(
                "node_cooling_device_max_state",
                "Maximum throttle state of the cooling device",
                &labels,
                max as f64,
            );
        }
        Ok(())
    }
}

/// Directory entry names, sorted (as `filepath.Glob` returns them).
fn list_dir(dir: &Path) -> Result<Vec<String>, CollectError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        // No thermal class: an empty glob, so no samples and no error.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(CollectError::Io {
                path: dir.to_owned(),
                source,
            });
        }
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    Ok(names)
}

/// Names matching the glob `<prefix>[0-9]*`.
fn glob_numbered<'a>(
    names: &'a [String],
    prefix: &'a str,
) -> impl Iterator<Item = &'a String> + 'a {
    names.iter().filter(move |n| {
        n.strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
    })
}

pub fn parse_int(path: &Path, s: &str) -> Result<i64, CollectError> {
    s.trim()
        .parse()
        .map_err(|e| CollectError::parse(path.display().to_string(), format!("{s:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::{Format, encode};

    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (rel, content) in files {
            let p = dir.path().join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, content).unwrap();
        }
        dir
    }

    fn run(dir: &Path) -> Result<String, CollectError> {
        let paths = Paths {
            sysfs: dir.into(),
            ..Paths::default()
        };
        let mut sink = Sink::new();
        build(&CollectorOptions::default())
            .unwrap()
            .collect(&paths, &mut sink)?;
        let mut out = Vec::new();
        encode(&[&sink], Format::Text, &mut out);
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn reads_zones_and_cooling_devices() {
        let d = tree(&[
            ("class/thermal/thermal_zone0/type", "acpitz\n"),
            ("class/thermal/thermal_zone0/policy", "step_wise\n"),
            ("class/thermal/thermal_zone0/temp", "27800\n"),
            // Missing policy: skipped like procfs does.
            ("class/thermal/thermal_zone1/type", "x86_pkg_temp\n"),
            ("class/thermal/thermal_zone1/temp", "40000\n"),
            ("class/thermal/cooling_device0/type", "intel_powerclamp\n"),
            ("class/thermal/cooling_device0/cur_state", "-1\n"),
            ("class/thermal/cooling_device0/max_state", "50\n"),
            ("class/thermal/cooling_devicex/type", "ignored\n"),
        ]);
        let text = run(d.path()).unwrap();
        assert!(
            text.contains("node_thermal_zone_temp{type=\"acpitz\",zone=\"0\"} 27.8\n"),
            "{text}"
        );
        assert!(!text.contains("x86_pkg_temp"), "{text}");
        assert!(
            text.contains(
                "node_cooling_device_cur_state{name=\"0\",type=\"intel_powerclamp\"} -1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "node_cooling_device_max_state{name=\"0\",type=\"intel_powerclamp\"} 50\n"
            )
        );
        assert!(!text.contains("ignored"));
    }

    #[test]
    fn malformed_values_fail() {
        let d = tree(&[
            ("class/thermal/thermal_zone0/type", "acpitz\n"),
            ("class/thermal/thermal_zone0/policy", "step_wise\n"),
            ("class/thermal/thermal_zone0/temp", "hot\n"),
        ]);
        let err = run(d.path()).unwrap_err();
        assert!(err.to_string().contains("\"hot\""), "{err}");

        let d = tree(&[
            ("class/thermal/cooling_device0/type", "Processor\n"),
            ("class/thermal/cooling_device0/cur_state", "0\n"),
        ]);
        assert!(run(d.path()).unwrap_err().is_not_found());
    }

    #[test]
    fn no_thermal_class_is_empty() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(run(d.path()).unwrap(), "");
    }
}
