//! The fake fleet of `bench/scraper.sh`: one process serving many scrape targets on one port,
//! so a thousand targets cost one process whose CPU is measured apart from the scrapers'.
//!
//! - `/t/<n>/metrics` (`n` < `--targets`): `--series` series in text format 0.0.4, no
//!   timestamps. Every `--interval-ms` (aligned to the wall clock) a thread renders the bodies
//!   of all targets for the new tick; requests are served from that memory. Values move like
//!   an exporter's: integer counters (60 %), a seconds counter in hundredths (10 %), gauges
//!   that wander (bytes in pages, a temperature with one decimal, a small state; 30 %) and a
//!   constant (10 %). Every value is a function of (target, series, tick), so any scraper sees
//!   the same data for the same tick.
//! - `/bf/<tag>/<n>/metrics` (`n` < `--bf-targets`): the backfill for range queries.
//!   `--bf-series` counters with explicit timestamps: the k-th request to a target gets step
//!   k, at `anchor + k × --bf-step-ms`, where the anchor (set by the first request of the tag)
//!   lies `--bf-steps × --bf-step-ms − --bf-margin-ms` in the past. Scraped every 200 ms, an
//!   hour of 15 s data goes in within a minute and ends before "now". After the last step the
//!   last one is repeated (duplicates, which both Prometheus and we ignore). A scraper gets
//!   its own tag, so both store the very same samples.
//! - `/stats`: JSON counters (scrapes served, render time, backfill progress per tag).
//!
//! usage: heimdall-bench-fleet --listen=127.0.0.1:PORT [--targets=1000] [--series=1000]
//!        [--interval-ms=15000] [--bf-targets=10] [--bf-series=100] [--bf-steps=240]
//!        [--bf-step-ms=15000] [--bf-margin-ms=30000]
//!
//! HTTP/1.1 with keep-alive, one thread per connection (scrapers keep a few hundred at most);
//! bodies are sent uncompressed whatever `Accept-Encoding` says, for both scrapers alike.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone)]
struct Opts {
    listen: String,
    targets: usize,
    series: usize,
    interval_ms: u64,
    bf_targets: usize,
    bf_series: usize,
    bf_steps: u64,
    bf_step_ms: u64,
    bf_margin_ms: u64,
}

impl Opts {
    fn parse() -> Result<Self, String> {
        let mut o = Opts {
            listen: "127.0.0.1:0".into(),
            targets: 1000,
            series: 1000,
            interval_ms: 15_000,
            bf_targets: 10,
            bf_series: 100,
            bf_steps: 240,
            bf_step_ms: 15_000,
            bf_margin_ms: 30_000,
        };
        for a in std::env::args().skip(1) {
            let (k, v) = a
                .split_once('=')
                .ok_or_else(|| format!("expected --name=value, got {a}"))?;
            let n = || v.parse::<u64>().map_err(|e| format!("{k}: {e}"));
            match k {
                "--listen" => o.listen = v.to_owned(),
                "--targets" => o.targets = n()? as usize,
                "--series" => o.series = n()? as usize,
                "--interval-ms" => o.interval_ms = n()?.max(1),
                "--bf-targets" => o.bf_targets = n()? as usize,
                "--bf-series" => o.bf_series = n()? as usize,
                "--bf-steps" => o.bf_steps = n()?.max(1),
                "--bf-step-ms" => o.bf_step_ms = n()?.max(1),
                "--bf-margin-ms" => o.bf_margin_ms = n()?,
                _ => return Err(format!("unknown flag {k}")),
            }
        }
        Ok(o)
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A well-mixed hash of three small numbers (target, series, tick or salt).
fn h(a: u64, b: u64, c: u64) -> u64 {
    splitmix(a ^ splitmix(b ^ splitmix(c)))
}

fn put_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// `v / 10^decimals` written with exactly `decimals` digits after the point.
fn put_fixed(out: &mut Vec<u8>, v: u64, decimals: u32) {
    let p = 10u64.pow(decimals);
    put_u64(out, v / p);
    out.push(b'.');
    let frac = v % p;
    let mut digits = [b'0'; 8];
    let mut f = frac;
    for d in (0..decimals as usize).rev() {
        digits[d] = b'0' + (f % 10) as u8;
        f /= 10;
    }
    out.extend_from_slice(&digits[..decimals as usize]);
}

const CODES: [&str; 4] = ["200", "404", "500", "503"];

/// One series of the main targets: its kind (series index mod 10) and `name{labels} `.
#[derive(Debug)]
struct SeriesDef {
    index: u64,
    kind: u64,
    /// `# HELP`/`# TYPE` lines when this series opens a metric family.
    family_header: Option<String>,
    prefix: String,
}

fn series_defs(m: usize) -> Vec<SeriesDef> {
    let name = |kind: u64, g: u64| match kind {
        0..=4 => (format!("bench_requests_{kind}_{g}_total"), "counter"),
        5 => (format!("bench_cpu_{g}_seconds_total"), "counter"),
        6 => (format!("bench_memory_{g}_bytes"), "gauge"),
        7 => (format!("bench_temperature_{g}_celsius"), "gauge"),
        8 => (format!("bench_state_{g}"), "gauge"),
        _ => (format!("bench_info_{g}"), "gauge"),
    };
    // Text format wants a family's lines together: order by (kind, group, index).
    let mut idx: Vec<u64> = (0..m as u64).collect();
    idx.sort_by_key(|&i| (i % 10, i / 100, i));
    let mut out = Vec::with_capacity(m);
    let mut last = None;
    for i in idx {
        let (kind, g) = (i % 10, i / 100);
        let (n, t) = name(kind, g);
        let family_header = (last != Some((kind, g)))
            .then(|| format!("# HELP {n} A fake {t} of kind {kind}.\n# TYPE {n} {t}\n"));
        last = Some((kind, g));
        let prefix = format!("{n}{{id=\"{i}\",code=\"{}\"}} ", CODES[(i % 4) as usize]);
        out.push(SeriesDef {
            index: i,
            kind,
            family_header,
            prefix,
        });
    }
    out
}

/// Appends series `s` of target `n` at tick `t` (ticks since the fleet started).
fn put_value(out: &mut Vec<u8>, n: u64, s: &SeriesDef, t: u64) {
    let i = s.index;
    let r = h(n, i, u64::MAX);
    match s.kind {
        0..=4 => {
            // Integer counter: a fifth never move, the others at 1 to 10^4 per tick.
            let rate = if r.is_multiple_of(5) {
                0
            } else {
                1 + (r >> 8) % 10u64.pow(((r >> 4) % 5) as u32)
            };
            let jitter = if rate > 0 { h(n, i, t) % rate } else { 0 };
            put_u64(out, (r >> 20) % 1_000_000 + rate * t + jitter);
        }
        5 => {
            let rate = 1 + (r >> 8) % 500;
            let cs = (r >> 20) % 10_000_000 + rate * t + h(n, i, t) % rate;
            put_fixed(out, cs, 2);
        }
        6 => {
            let period = 1 + r % 4;
            let pages = 1_000 + (r >> 8) % 250_000 + h(n, i, t / period) % 4096;
            put_u64(out, pages * 4096);
        }
        7 => {
            let period = 1 + r % 4;
            put_fixed(out, 200 + h(n, i, t / period) % 300, 1);
        }
        8 => put_u64(out, h(n, i, t / 8) % 4),
        _ => out.push(b'1'),
    }
}

fn render_target(out: &mut Vec<u8>, n: u64, defs: &[SeriesDef], t: u64) {
    for s in defs {
        if let Some(hdr) = &s.family_header {
            out.extend_from_slice(hdr.as_bytes());
        }
        out.extend_from_slice(s.prefix.as_bytes());
        put_value(out, n, s, t);
        out.push(b'\n');
    }
}

const MODES: [&str; 10] = [
    "user",
    "system",
    "idle",
    "iowait",
    "irq",
    "softirq",
    "steal",
    "nice",
    "guest",
    "guest_nice",
];

fn render_backfill(o: &Opts, n: u64, step: u64, anchor_ms: u64) -> Vec<u8> {
    let ts = anchor_ms + step * o.bf_step_ms;
    let step_s = (o.bf_step_ms / 1000).max(1);
    let mut out = Vec::with_capacity(o.bf_series * 80 + 200);
    out.extend_from_slice(
        b"# HELP bench_bf_cpu_seconds_total Backfilled CPU seconds.\n# TYPE bench_bf_cpu_seconds_total counter\n",
    );
    for j in 0..o.bf_series as u64 {
        let cpu = (n * o.bf_series as u64 + j) / 10;
        let r = h(n, j, u64::MAX - 1);
        // Hundredths: at least 105 per 15 s step plus a jitter below 100, so always rising.
        let rate = 7 + r % 200;
        let cs = (r >> 20) % 10_000_000 + rate * step_s * step + h(n, j, step) % 100;
        let _ = write!(
            Str(&mut out),
            "bench_bf_cpu_seconds_total{{cpu=\"{cpu}\",mode=\"{}\"}} ",
            MODES[(j % 10) as usize]
        );
        put_fixed(&mut out, cs, 2);
        out.push(b' ');
        put_u64(&mut out, ts);
        out.push(b'\n');
    }
    out
}

/// `fmt::Write` into a byte vector.
struct Str<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Str<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[derive(Debug)]
struct Snapshot {
    tick: u64,
    bodies: Vec<Vec<u8>>,
}

#[derive(Debug)]
struct BfTag {
    anchor_ms: u64,
    served: Vec<u64>,
}

#[derive(Debug)]
struct State {
    opts: Opts,
    snapshot: RwLock<Arc<Snapshot>>,
    backfill: Mutex<HashMap<String, BfTag>>,
    main_scrapes: AtomicU64,
    main_bytes: AtomicU64,
    bf_scrapes: AtomicU64,
    not_found: AtomicU64,
    connections: AtomicU64,
    render_us: AtomicU64,
    renders: AtomicU64,
}

fn renderer(st: Arc<State>) {
    let defs = series_defs(st.opts.series);
    let every = st.opts.interval_ms;
    let first = now_ms() / every;
    let mut sizes = vec![st.opts.series * 80; st.opts.targets];
    loop {
        let tick = now_ms() / every;
        let t0 = Instant::now();
        let bodies: Vec<Vec<u8>> = (0..st.opts.targets)
            .map(|n| {
                let mut b = Vec::with_capacity(sizes[n] + 64);
                render_target(&mut b, n as u64, &defs, tick - first);
                b
            })
            .collect();
        for (s, b) in sizes.iter_mut().zip(&bodies) {
            *s = b.len();
        }
        *st.snapshot.write().unwrap_or_else(|p| p.into_inner()) =
            Arc::new(Snapshot { tick, bodies });
        st.render_us
            .store(t0.elapsed().as_micros() as u64, Ordering::Relaxed);
        st.renders.fetch_add(1, Ordering::Relaxed);
        let next = (tick + 1) * every;
        std::thread::sleep(Duration::from_millis(next.saturating_sub(now_ms()).max(1)));
    }
}

fn stats_json(st: &State) -> Vec<u8> {
    let snap = st
        .snapshot
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let mut s = format!(
        "{{\"tick\":{},\"targets\":{},\"series\":{},\"body_bytes_target0\":{},\"render_ms\":{:.1},\"renders\":{},\
         \"main_scrapes\":{},\"main_bytes\":{},\"bf_scrapes\":{},\"not_found\":{},\"connections\":{},\"bf\":{{",
        snap.tick,
        st.opts.targets,
        st.opts.series,
        snap.bodies.first().map_or(0, Vec::len),
        st.render_us.load(Ordering::Relaxed) as f64 / 1000.0,
        st.renders.load(Ordering::Relaxed),
        st.main_scrapes.load(Ordering::Relaxed),
        st.main_bytes.load(Ordering::Relaxed),
        st.bf_scrapes.load(Ordering::Relaxed),
        st.not_found.load(Ordering::Relaxed),
        st.connections.load(Ordering::Relaxed),
    );
    let bf = st.backfill.lock().unwrap_or_else(|p| p.into_inner());
    let mut first = true;
    for (tag, b) in bf.iter() {
        let _ = write!(
            s,
            "{}\"{tag}\":{{\"anchor_ms\":{},\"step_ms\":{},\"steps\":{},\"min_served\":{},\"max_served\":{}}}",
            if first { "" } else { "," },
            b.anchor_ms,
            st.opts.bf_step_ms,
            st.opts.bf_steps,
            b.served.iter().min().copied().unwrap_or(0),
            b.served.iter().max().copied().unwrap_or(0),
        );
        first = false;
    }
    s.push_str("}}\n");
    s.into_bytes()
}

enum Body {
    Main(Arc<Snapshot>, usize),
    Owned(Vec<u8>),
}

fn route(st: &State, path: &str) -> (u16, &'static str, Body) {
    const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
    let parts: Vec<&str> = path.split('?').next().unwrap_or("").split('/').collect();
    match parts.as_slice() {
        ["", "t", n, "metrics"] => {
            if let Ok(n) = n.parse::<usize>()
                && n < st.opts.targets
            {
                let snap = st
                    .snapshot
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                st.main_scrapes.fetch_add(1, Ordering::Relaxed);
                st.main_bytes
                    .fetch_add(snap.bodies[n].len() as u64, Ordering::Relaxed);
                return (200, TEXT, Body::Main(snap, n));
            }
        }
        ["", "bf", tag, n, "metrics"] => {
            if let Ok(n) = n.parse::<usize>()
                && n < st.opts.bf_targets
            {
                let o = &st.opts;
                let (step, anchor) = {
                    let mut bf = st.backfill.lock().unwrap_or_else(|p| p.into_inner());
                    let b = bf.entry((*tag).to_owned()).or_insert_with(|| {
                        let span = o.bf_steps * o.bf_step_ms;
                        let a = now_ms() - span + o.bf_margin_ms;
                        BfTag {
                            anchor_ms: a / o.bf_step_ms * o.bf_step_ms,
                            served: vec![0; o.bf_targets],
                        }
                    });
                    let k = b.served[n];
                    b.served[n] += 1;
                    (k.min(o.bf_steps - 1), b.anchor_ms)
                };
                st.bf_scrapes.fetch_add(1, Ordering::Relaxed);
                return (
                    200,
                    TEXT,
                    Body::Owned(render_backfill(o, n as u64, step, anchor)),
                );
            }
        }
        ["", "stats"] => return (200, "application/json", Body::Owned(stats_json(st))),
        ["", "-", "healthy"] => return (200, "text/plain", Body::Owned(b"OK\n".to_vec())),
        _ => {}
    }
    st.not_found.fetch_add(1, Ordering::Relaxed);
    (404, "text/plain", Body::Owned(b"not found\n".to_vec()))
}

fn serve(stream: TcpStream, st: Arc<State>) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    // An idle keep-alive connection is closed after this long (scrapers reconnect).
    stream.set_read_timeout(Some(Duration::from_secs(300)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut w = stream;
    let (mut line, mut hdr) = (String::new(), String::new());
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let req = line.trim_end();
        if req.is_empty() {
            continue;
        }
        let mut close = req.ends_with("HTTP/1.0");
        loop {
            hdr.clear();
            if reader.read_line(&mut hdr)? == 0 {
                return Ok(());
            }
            let hl = hdr.trim_end().to_ascii_lowercase();
            if hl.is_empty() {
                break;
            }
            if let Some(v) = hl.strip_prefix("connection:") {
                close = v.trim() == "close";
            }
        }
        let path = req.split(' ').nth(1).unwrap_or("/");
        let (status, ctype, body) = route(&st, path);
        let bytes: &[u8] = match &body {
            Body::Main(s, n) => &s.bodies[*n],
            Body::Owned(b) => b,
        };
        let reason = if status == 200 { "OK" } else { "Not Found" };
        let head = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n{}\r\n",
            bytes.len(),
            if close { "Connection: close\r\n" } else { "" }
        );
        w.write_all(head.as_bytes())?;
        w.write_all(bytes)?;
        if close {
            return Ok(());
        }
    }
}

fn main() {
    let opts = match Opts::parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("heimdall-bench-fleet: {e}");
            std::process::exit(2);
        }
    };
    let listener = match TcpListener::bind(&opts.listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("heimdall-bench-fleet: bind {}: {e}", opts.listen);
            std::process::exit(1);
        }
    };
    let st = Arc::new(State {
        snapshot: RwLock::new(Arc::new(Snapshot {
            tick: 0,
            bodies: vec![Vec::new(); opts.targets],
        })),
        opts,
        backfill: Mutex::new(HashMap::new()),
        main_scrapes: AtomicU64::new(0),
        main_bytes: AtomicU64::new(0),
        bf_scrapes: AtomicU64::new(0),
        not_found: AtomicU64::new(0),
        connections: AtomicU64::new(0),
        render_us: AtomicU64::new(0),
        renders: AtomicU64::new(0),
    });
    {
        let st = st.clone();
        std::thread::spawn(move || renderer(st));
    }
    while st.renders.load(Ordering::Relaxed) == 0 {
        std::thread::sleep(Duration::from_millis(10));
    }
    println!(
        "listening on {}",
        listener
            .local_addr()
            .map_or_else(|e| e.to_string(), |a| a.to_string())
    );
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        st.connections.fetch_add(1, Ordering::Relaxed);
        let st = st.clone();
        let _ = std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(move || {
                let _ = serve(conn, st);
            });
    }
}
