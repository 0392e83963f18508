//! `filesystem`: node_filesystem_* from `/proc/1/mountinfo` (falling back to
//! `/proc/self/mountinfo`) and statfs of each mount point below the rootfs, as node_exporter
//! 1.x's `filesystem_linux.go`.
//!
//! Each statfs runs on a helper thread (at most [`WORKERS`] in flight). One that has not
//! answered within `--collector.filesystem.mount-timeout` marks its mount point stuck: it is
//! reported with `device_error="mountpoint timeout"` and not statted again until the hung call
//! returns, like node_exporter's `stuckMounts`.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use regex::Regex;

use super::{BuildError, CollectError, Collector, CollectorOptions, Paths};
use crate::exposition::Sink;

/// statfs calls in flight at once (node_exporter's `--collector.filesystem.stat-workers`).
const WORKERS: usize = 4;

const TIMEOUT_ERROR: &str = "mountpoint timeout";

#[derive(Debug)]
struct Filesystem {
    mount_points_exclude: Regex,
    fs_types_exclude: Regex,
    timeout: Duration,
    /// Mount points whose statfs is still hanging from an earlier scrape.
    stuck: Arc<Mutex<HashSet<String>>>,
}

pub fn build(opts: &CollectorOptions) -> Result<Box<dyn Collector>, BuildError> {
    Ok(Box::new(Filesystem {
        mount_points_exclude: opts.filesystem_mount_points_exclude.clone(),
        fs_types_exclude: opts.filesystem_fs_types_exclude.clone(),
        timeout: opts.filesystem_mount_timeout,
        stuck: Arc::default(),
    }))
}

/// One line of mountinfo, reduced to what the collector uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub device: String,
    pub mount_point: String,
    pub fs_type: String,
    pub major: String,
    pub minor: String,
    /// `ro` among the mount or the superblock options.
    pub read_only: bool,
}

/// What statfs said about a mount.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    pub size: f64,
    pub free: f64,
    pub avail: f64,
    pub files: f64,
    pub files_free: f64,
}

/// Parses `/proc/<pid>/mountinfo`. `rootfs` is stripped from the front of mount points (as
/// node_exporter's `rootfsStripPrefix`) unless it is `/`.
pub fn parse_mountinfo(s: &str, rootfs: &str) -> Result<Vec<Mount>, CollectError> {
    let mut mounts = Vec::new();
    for line in s.lines() {
        if line.is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split(' ').collect();
        let n = f.len();
        if n < 10 {
            return Err(CollectError::parse(
                "mountinfo",
                format!("too few fields in {line:?}"),
            ));
        }
        if f[n - 4] != "-" {
            return Err(CollectError::parse(
                "mountinfo",
                format!("couldn't find separator in expected field: {:?}", f[n - 4]),
            ));
        }
        let (major, minor) = f[2]
            .split_once(':')
            .and_then(|(a, b)| Some((a.parse::<i64>().ok()?, b.parse::<i64>().ok()?)))
            .ok_or_else(|| {
                CollectError::parse(
                    "mountinfo",
                    format!("malformed mount point MajorMinorVer: {:?}", f[2]),
                )
            })?;
        let mount_point = f[4].replace("\\040", " ").replace("\\011", "\t");
        let has_ro = |opts: &str| opts.split(',').any(|o| o == "ro");
        mounts.push(Mount {
            device: f[n - 2].to_string(),
            mount_point: strip_rootfs(&mount_point, rootfs),
            fs_type: f[n - 3].to_string(),
            major: major.to_string(),
            minor: minor.to_string(),
            read_only: has_ro(f[5]) || has_ro(f[n - 1]),
        });
    }
    Ok(mounts)
}

fn strip_rootfs(path: &str, rootfs: &str) -> String {
    if rootfs == "/" {
        return path.to_string();
    }
    match path.strip_prefix(rootfs).unwrap_or(path) {
        "" => "/".to_string(),
        p => p.to_string(),
    }
}

/// An errno as Go's `syscall.Errno.Error()` words it ("permission denied").
fn errno_text(e: &std::io::Error) -> String {
    let s = e.to_string();
    let s = match s.find(" (os error") {
        Some(i) => &s[..i],
        None => &s,
    };
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_lowercase().chain(c).collect(),
        None => s.to_string(),
    }
}

/// Result for one mount: usage, or the `device_error` label text.
type Outcome = Result<Usage, String>;

struct InFlight {
    mount: Mount,
    started: Instant,
    done: Arc<AtomicBool>,
    rx: mpsc::Receiver<Outcome>,
}

impl Filesystem {
    fn lock_stuck(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.stuck.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts statfs of `mount` on a helper thread.
    fn start(&self, paths: &Paths, mount: Mount) -> InFlight {
        let target = paths.root(&mount.mount_point);
        let (tx, rx) = mpsc::sync_channel(1);
        let spawn_failed = tx.clone();
        let done = Arc::new(AtomicBool::new(false));
        let stuck = Arc::clone(&self.stuck);
        let (done2, mp) = (Arc::clone(&done), mount.mount_point.clone());
        let spawned = std::thread::Builder::new()
            .name("fs-statfs".into())
            .spawn(move || {
                let result = rustix::fs::statvfs(&target)
                    .map(|s| {
                        let bsize = s.f_bsize as f64;
                        Usage {
                            size: s.f_blocks as f64 * bsize,
                            free: s.f_bfree as f64 * bsize,
                            avail: s.f_bavail as f64 * bsize,
                            files: s.f_files as f64,
                            files_free: s.f_ffree as f64,
                        }
                    })
                    .map_err(|e| errno_text(&std::io::Error::from(e)));
                {
                    let mut stuck = stuck.lock().unwrap_or_else(PoisonError::into_inner);
                    done2.store(true, Ordering::SeqCst);
                    if stuck.remove(&mp) {
                        tracing::info!(mountpoint = %mp, "mount point has recovered, monitoring will resume");
                    }
                }
                // The collector may have given up waiting; nothing to do then.
                let _ = tx.send(result);
            });
        if let Err(e) = spawned {
            done.store(true, Ordering::SeqCst);
            let _ = spawn_failed.send(Err(errno_text(&e)));
        }
        InFlight {
            mount,
            started: Instant::now(),
            done,
            rx,
        }
    }

    /// Waits for one statfs up to the mount timeout; marks the mount stuck if it runs over.
    fn finish(&self, f: InFlight) -> (Mount, Outcome) {
        let left = self.timeout.saturating_sub(f.started.elapsed());
        match f.rx.recv_timeout(left) {
            Ok(r) => (f.mount, r),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                (f.mount, Err("statfs thread failed".into()))
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let finished = {
                    let mut stuck = self.lock_stuck();
                    let finished = f.done.load(Ordering::SeqCst);
                    if !finished {
                        tracing::warn!(mountpoint = %f.mount.mount_point,
                            "mount point timed out, it is being labeled as stuck and will not be monitored");
                        stuck.insert(f.mount.mount_point.clone());
                    }
                    finished
                };
                // Answered just after the timeout: the result is (about to be) in the channel.
                match finished.then(|| f.rx.recv().ok()).flatten() {
                    Some(r) => (f.mount, r),
                    None => (f.mount, Err(TIMEOUT_ERROR.into())),
                }
            }
        }
    }
}

impl Collector for Filesystem {
    fn collect(&self, paths: &Paths, out: &mut Sink) -> Result<(), CollectError> {
        let text = match paths.read_proc("1/mountinfo") {
            // /proc/1 may be hidden (hidepid); fall back to our own mount namespace view.
            Err(e) if e.is_not_found() => paths.read_proc("self/mountinfo")?,
            r => r?,
        };
        let rootfs = paths.rootfs.to_string_lossy();
        let mounts = parse_mountinfo(&text, &rootfs)?;

        let mut results: Vec<(Mount, Outcome)> = Vec::new();
        let mut in_flight: VecDeque<InFlight> = VecDeque::new();
        for mount in mounts {
            if self.mount_points_exclude.is_match(&mount.mount_point)
                || self.fs_types_exclude.is_match(&mount.fs_type)
            {
                continue;
            }
            if self.lock_stuck().contains(&mount.mount_point) {
                // Still hanging from before: not read-only-checked, as node_exporter.
                let m = Mount {
                    read_only: false,
                    ..mount
                };
                results.push((m, Err(TIMEOUT_ERROR.into())));
                continue;
            }
            if in_flight.len() >= WORKERS
                && let Some(f) = in_flight.pop_front()
            {
                results.push(self.finish(f));
            }
            in_flight.push_back(self.start(paths, mount));
        }
        while let Some(f) = in_flight.pop_front() {
            results.push(self.finish(f));
        }
        emit(&results, out);
        Ok(())
    }
}

/// Writes the samples of all mounts, each label set once.
fn emit(results: &[(Mount, Outcome)], out: &mut Sink) {
    let mut seen = HashSet::new();
    for (m, outcome) in results {
        let error = outcome.as_ref().err().map_or("", String::as_str);
        let key = (
            &m.device,
            &m.mount_point,
            &m.fs_type,
            error,
            &m.major,
            &m.minor,
        );
        if !seen.insert(key) {
            continue;
        }
        let labels = [
            ("device", m.device.as_str()),
            ("mountpoint", m.mount_point.as_str()),
            ("fstype", m.fs_type.as_str()),
            ("device_error", error),
        ];
        out.gauge(
            "node_filesystem_device_error",
            "Whether an error occurred while getting statistics for the given device.",
            &labels,
            if outcome.is_err() { 1.0 } else { 0.0 },
        );
        out.gauge(
            "node_filesystem_readonly",
            "Filesystem read-only status.",
            &labels,
            if m.read_only { 1.0 } else { 0.0 },
        );
        let Ok(u) = outcome else {
            continue;
        };
        out.gauge(
            "node_filesystem_size_bytes",
            "Filesystem size in bytes.",
            &labels,
            u.size,
        );
        out.gauge(
            "node_filesystem_free_bytes",
            "Filesystem free space in bytes.",
            &labels,
            u.free,
        );
        out.gauge(
            "node_filesystem_avail_bytes",
            "Filesystem space available to non-root users in bytes.",
            &labels,
            u.avail,
        );
        out.gauge(
            "node_filesystem_files",
            "Filesystem total file nodes.",
            &labels,
            u.files,
        );
        out.gauge(
            "node_filesystem_files_free",
            "Filesystem total free file nodes.",
            &labels,
            u.files_free,
        );
        out.gauge(
            "node_filesystem_mount_info",
            "Filesystem mount information.",
            &[
                ("device", m.device.as_str()),
                ("major", m.major.as_str()),
                ("minor", m.minor.as_str()),
                ("mountpoint", m.mount_point.as_str()),
            ],
            1.0,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::{Format, encode};

    const MOUNTINFO: &str = "\
22 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw,errors=remount-ro
23 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
24 22 0:5 / /dev rw,nosuid shared:2 - devtmpfs udev rw,size=8000000k
30 22 259:1 / /boot/efi ro,relatime shared:5 - vfat /dev/nvme0n1p1 rw,fmask=0077
31 22 0:40 / /mnt/my\\040disk rw,relatime - ext4 /dev/sdb1 ro
32 22 0:41 / /run/user/1000 rw,nosuid,nodev,relatime shared:300 master:2 - tmpfs tmpfs rw,size=1600000k,mode=700
";

    #[test]
    fn parses_mountinfo() {
        let m = parse_mountinfo(MOUNTINFO, "/").unwrap();
        assert_eq!(m.len(), 6);
        assert_eq!(
            m[0],
            Mount {
                device: "/dev/nvme0n1p2".into(),
                mount_point: "/".into(),
                fs_type: "ext4".into(),
                major: "259".into(),
                minor: "2".into(),
                read_only: false,
            }
        );
        assert!(m[3].read_only, "mount option ro");
        assert_eq!(m[4].mount_point, "/mnt/my disk");
        assert!(m[4].read_only, "superblock option ro");
        assert_eq!(m[5].fs_type, "tmpfs");
        assert_eq!(m[5].device, "tmpfs");
    }

    #[test]
    fn strips_rootfs() {
        let m = parse_mountinfo(
            "1 0 8:1 / /host rw - ext4 /dev/sda1 rw\n2 1 8:2 / /host/boot rw - ext4 /dev/sda2 rw\n",
            "/host",
        )
        .unwrap();
        assert_eq!(m[0].mount_point, "/");
        assert_eq!(m[1].mount_point, "/boot");
    }

    #[test]
    fn rejects_malformed_mountinfo() {
        for bad in [
            "22 1 259:2 / / rw - ext4",
            "22 1 259:2 / / rw shared:1 x ext4 /dev/sda rw",
            "22 1 259-2 / / rw shared:1 - ext4 /dev/sda rw",
            "22 1 a:b / / rw shared:1 - ext4 /dev/sda rw",
        ] {
            let err = parse_mountinfo(bad, "/").unwrap_err();
            assert!(matches!(err, CollectError::Parse { .. }), "{bad}: {err}");
        }
    }

    fn render(results: &[(Mount, Outcome)]) -> String {
        let mut sink = Sink::new();
        emit(results, &mut sink);
        let mut out = Vec::new();
        encode(&[&sink], Format::Text, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn emits_usage_and_errors() {
        let mounts = parse_mountinfo(MOUNTINFO, "/").unwrap();
        let usage = Usage {
            size: 1000.0,
            free: 500.0,
            avail: 400.0,
            files: 10.0,
            files_free: 5.0,
        };
        let text = render(&[
            (mounts[0].clone(), Ok(usage)),
            (mounts[0].clone(), Ok(usage)),
            (mounts[4].clone(), Err("permission denied".into())),
        ]);
        let l = "device=\"/dev/nvme0n1p2\",device_error=\"\",fstype=\"ext4\",mountpoint=\"/\"";
        for line in [
            format!("node_filesystem_size_bytes{{{l}}} 1000\n"),
            format!("node_filesystem_free_bytes{{{l}}} 500\n"),
            format!("node_filesystem_avail_bytes{{{l}}} 400\n"),
            format!("node_filesystem_files_free{{{l}}} 5\n"),
            format!("node_filesystem_device_error{{{l}}} 0\n"),
            "node_filesystem_mount_info{device=\"/dev/nvme0n1p2\",major=\"259\",minor=\"2\",mountpoint=\"/\"} 1\n".into(),
            "node_filesystem_device_error{device=\"/dev/sdb1\",device_error=\"permission denied\",fstype=\"ext4\",mountpoint=\"/mnt/my disk\"} 1\n".into(),
            "node_filesystem_readonly{device=\"/dev/sdb1\",device_error=\"permission denied\",fstype=\"ext4\",mountpoint=\"/mnt/my disk\"} 1\n".into(),
        ] {
            assert!(text.contains(&line), "missing {line:?} in\n{text}");
        }
        assert_eq!(
            text.matches("node_filesystem_size_bytes{").count(),
            1,
            "{text}"
        );
        assert!(!text.contains("size_bytes{device=\"/dev/sdb1\""), "{text}");
    }

    #[test]
    fn errno_words_like_go() {
        let e = std::io::Error::from_raw_os_error(13);
        assert_eq!(errno_text(&e), "permission denied");
        let e = std::io::Error::from_raw_os_error(2);
        assert_eq!(errno_text(&e), "no such file or directory");
    }

    #[test]
    fn collects_from_a_tree() {
        let dir = tempfile::tempdir().unwrap();
        let proc_dir = dir.path().join("proc/self");
        std::fs::create_dir_all(&proc_dir).unwrap();
        // rootfs is the temp dir itself, so "/" stats the temp dir and "/missing" fails.
        let root = dir.path().to_string_lossy().into_owned();
        std::fs::write(
            proc_dir.join("mountinfo"),
            format!(
                "1 0 8:1 / {root} rw - ext4 /dev/sda1 rw\n\
                 2 1 8:2 / {root}/missing rw - ext4 /dev/sda2 rw\n\
                 3 1 0:3 / {root}/proc rw - proc proc rw\n"
            ),
        )
        .unwrap();
        let paths = Paths {
            procfs: dir.path().join("proc"),
            rootfs: dir.path().into(),
            ..Paths::default()
        };
        let c = build(&CollectorOptions::default()).unwrap();
        let mut sink = Sink::new();
        c.collect(&paths, &mut sink).unwrap();
        let mut out = Vec::new();
        encode(&[&sink], Format::Text, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("node_filesystem_size_bytes{device=\"/dev/sda1\",device_error=\"\",fstype=\"ext4\",mountpoint=\"/\"}"), "{text}");
        assert!(text.contains("node_filesystem_device_error{device=\"/dev/sda2\",device_error=\"no such file or directory\",fstype=\"ext4\",mountpoint=\"/missing\"} 1"), "{text}");
        assert!(!text.contains("proc"), "{text}");

        // A mount point still stuck from an earlier scrape is not statted again.
        let fs = Filesystem {
            mount_points_exclude: Regex::new("^/proc").unwrap(),
            fs_types_exclude: Regex::new("^proc$").unwrap(),
            timeout: Duration::from_secs(5),
            stuck: Arc::new(Mutex::new(HashSet::from(["/".to_string()]))),
        };
        let mut sink = Sink::new();
        fs.collect(&paths, &mut sink).unwrap();
        let mut out = Vec::new();
        encode(&[&sink], Format::Text, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("node_filesystem_device_error{device=\"/dev/sda1\",device_error=\"mountpoint timeout\",fstype=\"ext4\",mountpoint=\"/\"} 1"), "{text}");
        assert!(!text.contains("size_bytes{device=\"/dev/sda1\""), "{text}");
    }

    #[test]
    fn stuck_mounts_are_skipped_until_they_recover() {
        let fs = Filesystem {
            mount_points_exclude: Regex::new("^$").unwrap(),
            fs_types_exclude: Regex::new("^$").unwrap(),
            timeout: Duration::from_millis(10),
            stuck: Arc::default(),
        };
        let mount = parse_mountinfo("1 0 8:1 / /slow rw - nfs srv:/x rw\n", "/")
            .unwrap()
            .remove(0);
        // A statfs that never answers in time.
        let (tx, rx) = mpsc::sync_channel(1);
        let done = Arc::new(AtomicBool::new(false));
        let f = InFlight {
            mount: mount.clone(),
            started: Instant::now(),
            done: Arc::clone(&done),
            rx,
        };
        let (_, outcome) = fs.finish(f);
        assert_eq!(outcome, Err(TIMEOUT_ERROR.to_string()));
        assert!(fs.lock_stuck().contains("/slow"));
        drop(tx);

        // A call that finished just after the deadline is not marked stuck.
        let (tx, rx) = mpsc::sync_channel(1);
        let done = Arc::new(AtomicBool::new(true));
        tx.send(Ok(Usage {
            size: 1.0,
            free: 1.0,
            avail: 1.0,
            files: 1.0,
            files_free: 1.0,
        }))
        .unwrap();
        let f = InFlight {
            mount: Mount {
                mount_point: "/late".into(),
                ..mount
            },
            started: Instant::now() - Duration::from_secs(1),
            done,
            rx,
        };
        let (_, outcome) = fs.finish(f);
        assert!(outcome.is_ok());
        assert!(!fs.lock_stuck().contains("/late"));
    }
}
