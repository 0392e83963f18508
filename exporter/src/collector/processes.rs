//! `processes`: process and thread counts by state from `/proc/<pid>/stat` and
//! `/proc/<pid>/task/<tid>/stat`, plus the kernel limits, as node_exporter's
//! `processes_linux.go`. Processes and threads that exit while being read are skipped.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use super::{BuildError, CollectError, Collector, CollectorOptions, Paths};
use crate::exposition::Sink;

#[derive(Debug)]
struct Processes;

pub fn build(_: &CollectorOptions) -> Result<Box<dyn Collector>, BuildError> {
    Ok(Box::new(Processes))
}

/// Totals over all processes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub pids: u64,
    pub threads: i64,
    pub states: BTreeMap<String, u64>,
    pub thread_states: BTreeMap<String, u64>,
}

/// The fields of `/proc/<pid>/stat` this collector needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat<'a> {
    pub state: &'a str,
    pub num_threads: i64,
}

/// Parses `/proc/<pid>/stat`: `pid (comm) state ppid ...`, where comm may hold spaces and
/// parentheses (so the last `)` ends it); num_threads is the 20th field.
pub fn parse_proc_stat(s: &str) -> Result<ProcStat<'_>, CollectError> {
    let err = |why: &str| CollectError::parse("/proc/<pid>/stat", format!("{why}: {s:?}"));
    let (Some(l), Some(r)) = (s.find('('), s.rfind(')')) else {
        return Err(err("cannot find comm"));
    };
    if r < l {
        return Err(err("cannot find comm"));
    }
    let mut fields = s[r + 1..].split_ascii_whitespace();
    let state = fields.next().ok_or_else(|| err("missing state"))?;
    // ppid .. nice are fields 4..=19, num_threads is 20: the 17th after state.
    let raw = fields.nth(16).ok_or_else(|| err("missing num_threads"))?;
    let num_threads = raw.parse().map_err(|_| err("invalid num_threads"))?;
    Ok(ProcStat { state, num_threads })
}

fn parse_uint(s: &str, what: &str) -> Result<u64, CollectError> {
    let t = s.trim();
    t.parse()
        .map_err(|e| CollectError::parse(what.to_owned(), format!("{t:?}: {e}")))
}

/// A process or thread that exited between listing and reading.
fn vanished(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
        || e.raw_os_error() == Some(rustix::io::Errno::SRCH.raw_os_error())
}

fn io_err(path: &Path, source: io::Error) -> CollectError {
    CollectError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Reads `path` into `buf` (cleared first), reusing its allocation.
fn read_into(path: &Path, buf: &mut String) -> io::Result<()> {
    let mut bytes = std::mem::take(buf).into_bytes();
    let r = super::read_into(path, &mut bytes);
    *buf = String::from_utf8(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    r
}

/// The numeric entries of a directory, sorted; `Ok(None)` when it is gone.
fn numeric_entries(dir: &Path) -> Result<Option<Vec<u64>>, CollectError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if vanished(&e) => return Ok(None),
        Err(e) => return Err(io_err(dir, e)),
    };
    let mut ids = Vec::new();
    for entry in entries {
        let entry = match entry {
            Ok(e) => e,
            Err(e) if vanished(&e) => return Ok(None),
            Err(e) => return Err(io_err(dir, e)),
        };
        if let Some(id) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u64>().ok())
        {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(Some(ids))
}

fn bump(map: &mut BTreeMap<String, u64>, state: &str) {
    match map.get_mut(state) {
        Some(n) => *n += 1,
        None => {
            map.insert(state.to_owned(), 1);
        }
    }
}

/// Walks `<procfs>/<pid>` and `<procfs>/<pid>/task/<tid>`.
fn count(procfs: &Path) -> Result<Counts, CollectError> {
    let mut counts = Counts::default();
    let pids = numeric_entries(procfs)?.ok_or_else(|| {
        io_err(
            procfs,
            io::Error::new(io::ErrorKind::NotFound, "procfs is not there"),
        )
    })?;
    let mut buf = String::with_capacity(512);
    let mut tbuf = String::with_capacity(512);
    let mut num = itoa::Buffer::new();
    let mut tnum = itoa::Buffer::new();
    let mut path = PathBuf::new();
    for pid in pids {
        path.as_mut_os_string().clear();
        path.push(procfs);
        path.push(num.format(pid));
        path.push("stat");
        match read_into(&path, &mut buf) {
            Ok(()) => {}
            Err(e) if vanished(&e) => continue,
            Err(e) => return Err(io_err(&path, e)),
        }
        let stat = parse_proc_stat(&buf)?;
        counts.pids += 1;
        bump(&mut counts.states, stat.state);
        counts.threads += stat.num_threads;

        path.pop();
        path.push("task");
        let Some(tids) = numeric_entries(&path)? else {
            continue;
        };
        for tid in tids {
            if tid == pid {
                bump(&mut counts.thread_states, stat.state);
                continue;
            }
            path.push(tnum.format(tid));
            path.push("stat");
            let res = read_into(&path, &mut tbuf);
            if let Err(e) = res {
                if !vanished(&e) {
                    return Err(io_err(&path, e));
                }
                path.pop();
                path.pop();
                continue;
            }
            path.pop();
            path.pop();
            bump(&mut counts.thread_states, parse_proc_stat(&tbuf)?.state);
        }
    }
    Ok(counts)
}

impl Collector for Processes {
    fn collect(&self, paths: &Paths, out: &mut Sink) -> Result<(), CollectError> {
        let counts = count(&paths.procfs)?;
        let max_threads = parse_uint(&paths.read_proc("sys/kernel/threads-max")?, "threads-max")?;
        let pid_max = parse_uint(&paths.read_proc("sys/kernel/pid_max")?, "pid_max")?;

        out.gauge(
            "node_processes_threads",
            "Allocated threads in system",
            &[],
            counts.threads as f64,
        );
        out.gauge(
            "node_processes_max_threads",
            "Limit of threads in the system",
            &[],
            max_threads as f64,
        );
        for (state, n) in &counts.states {
            out.gauge(
                "node_processes_state",
                "Number of processes in each state.",
                &[("state", state)],
                *n as f64,
            );
        }
        for (state, n) in &counts.thread_states {
            out.gauge(
                "node_processes_threads_state",
                "Number of threads in each state.",
                &[("thread_state", state)],
                *n as f64,
            );
        }
        out.gauge(
            "node_processes_pids",
            "Number of PIDs",
            &[],
            counts.pids as f64,
        );
        out.gauge(
            "node_processes_max_processes",
            "Number of max PIDs limit",
            &[],
            pid_max as f64,
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_stat() {
        let s = "4242 (my (odd) comm) R 1 4242 4242 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 7 0 1234 \
                 1000000 200 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 3 0 0 0 0 0\n";
        assert_eq!(
            parse_proc_stat(s).unwrap(),
            ProcStat {
                state: "R",
                num_threads: 7
            }
        );
    }

    #[test]
    fn rejects_malformed_proc_stat() {
        assert!(parse_proc_stat("").is_err());
        assert!(parse_proc_stat("1 (init S 0 1").is_err());
        assert!(parse_proc_stat("1 (init) S 0 1 1 0\n").is_err());
        assert!(parse_proc_stat("1 (init) S 0 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 many 0\n").is_err());
        assert!(parse_proc_stat("1 )init( S").is_err());
    }

    #[test]
    fn counts_processes_and_threads_on_a_tree() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let stat = |pid: u32, state: &str, threads: u32| {
            format!("{pid} (p{pid}) {state} 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 {threads} 0 1 0 0\n")
        };
        std::fs::create_dir_all(root.join("1/task/1")).unwrap();
        std::fs::create_dir_all(root.join("1/task/5")).unwrap();
        std::fs::create_dir_all(root.join("1/task/6")).unwrap(); // vanished thread: no stat
        std::fs::write(root.join("1/stat"), stat(1, "S", 3)).unwrap();
        std::fs::write(root.join("1/task/5/stat"), stat(5, "R", 3)).unwrap();
        std::fs::create_dir_all(root.join("2")).unwrap();
        std::fs::write(root.join("2/stat"), stat(2, "I", 1)).unwrap();
        std::fs::create_dir_all(root.join("3")).unwrap(); // vanished process: no stat
        std::fs::create_dir_all(root.join("self")).unwrap();
        let c = count(root).unwrap();
        assert_eq!(c.pids, 2);
        assert_eq!(c.threads, 4);
        assert_eq!(
            c.states,
            BTreeMap::from([("I".to_owned(), 1), ("S".to_owned(), 1)])
        );
        assert_eq!(
            c.thread_states,
            BTreeMap::from([("R".to_owned(), 1), ("S".to_owned(), 1)])
        );
    }
}
