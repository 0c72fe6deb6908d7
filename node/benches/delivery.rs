//! Office-node delivery benchmarks with real `renkei run` processes on loopback.
//!
//! Every scenario drops its files into the sender's outbox at once (each written under a dot
//! name beforehand, then renamed, the way care software should) and stops the clock when the
//! sender holds every signed ack: the files have moved to `sent/`, after the receipts with
//! the partner's acks were made durable. Latency per file comes from the sender's receipts.
//!
//! - 1,000 UPPLAN files of 50 KB (≈310 realistic 160-byte records each) to one partner, and
//!   the same spread over 10 partners;
//! - one 100 MB file: a UPKIHON_IMAGE JPEG (pure transfer: the checker only looks at the JPEG
//!   markers) and, labelled separately, a 100 MB UPPLAN CSV (≈620,000 records, which both nodes
//!   check in full);
//! - a 90-file office batch: one care-management office's month, 30 send units of
//!   UPPLAN + UPSIKYU + UPHOSOKU (the sample month's sizes: 17.8 / 5.6 / 1.1 KB);
//! - node RSS (VmRSS sampled every 10 ms, and VmHWM) idle, during each scenario;
//! - start-up with a 300,000-entry national directory (47 regions): first start pulling it
//!   from a directory node, and restarts from the node's verified cache;
//! - in the same run, OpenSSH on this machine (`sshd` on 127.0.0.1, key-only): `scp -r`,
//!   `scp -O -r`, `sftp -b` of the same files, and `cp -r` + `sync` as the local floor.
//!
//! ```sh
//! cargo bench -p renkei-node --bench delivery
//! RENKEI_BENCH_RUNS=5 cargo bench -p renkei-node --bench delivery     # runs per scenario (3)
//! RENKEI_BENCH_ONLY=delivery,startup,ssh cargo bench -p renkei-node --bench delivery
//! RENKEI_BENCH_FILTER='10 partners' ...                                # delivery scenarios whose label contains this
//! RENKEI_BENCH_KEEP=1 ...                                               # keep the folders
//! RENKEI_BENCH_BIN=/path/to/renkei ...                                  # another build of the node
//! RENKEI_BENCH_DIR=/some/dir ...                                        # where the folders go
//! ```
//!
//! Cargo builds the `renkei` binary in the same (release) profile before the bench, and the
//! bench runs it as separate processes. The OpenSSH part needs `/usr/sbin/sshd` (Debian:
//! `apt-get install openssh-server openssh-client`); without it the bench says so and measures
//! the local floor only. Results are printed as Markdown tables.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use ed25519_dalek::SigningKey;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha20Rng;
use renkei_directory::{Anchor, Entry, NodeInfo, OfficeKey, RegionCert, Snapshot, Status};
use renkei_node::admin::{self, OfficeSetup};
use renkei_node::federation::{free_port, tune_for_loopback};
use renkei_node::home::Home;
use renkei_node::receipts::Receipt;
use renkei_protocol::{FileKind, OfficeNumber, ServiceKind, check_bytes};

// The same generated offices as `directory/benches/national.rs`.
#[path = "../../directory/benches/support/national_offices.rs"]
mod national_offices;

/// The care-management office that sends.
const CM: (&str, &str) = ("1310000001", "43");
/// Its partners: (office, service kind).
const PARTNERS: [(&str, &str); 10] = [
    ("1310000011", "11"),
    ("1310000021", "15"),
    ("1310000031", "17"),
    ("1310000041", "13"),
    ("1310000051", "11"),
    ("1310000061", "15"),
    ("1310000071", "17"),
    ("1310000081", "13"),
    ("1310000091", "11"),
    ("1310000101", "15"),
];
const SMALL: usize = 50_000;
const BIG: usize = 100_000_000;
const SAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/month-202610");

fn main() -> anyhow::Result<()> {
    let runs: usize = std::env::var("RENKEI_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    let only = std::env::var("RENKEI_BENCH_ONLY").unwrap_or_default();
    let part = |p: &str| only.is_empty() || only.split(',').any(|x| x.trim() == p);
    // Not under /tmp: on this machine's ext4 (no journal) a new inode costs a scan past every
    // inode freed in the last 60–300 s in its block group, so other programs deleting files
    // in /tmp would slow our receivers down. RENKEI_BENCH_DIR chooses another place.
    let base = std::env::var_os("RENKEI_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-tmp"));
    std::fs::create_dir_all(&base)?;
    let tmp = tempfile::Builder::new()
        .prefix("renkei-bench-")
        .tempdir_in(&base)?;
    let root = tmp.path().to_path_buf();
    let _keep = if std::env::var_os("RENKEI_BENCH_KEEP").is_some() {
        let _ = tmp.keep();
        None
    } else {
        Some(tmp)
    };
    let mut report = String::new();
    writeln!(report, "{}", machine())?;
    writeln!(
        report,
        "binary: {}; runs per scenario: {runs}; folder: {}\n",
        renkei_bin().display(),
        root.display()
    )?;
    println!("{report}");

    eprintln!("generating files …");
    let t = Instant::now();
    let files = Files::generate();
    eprintln!("generated in {:.1} s", t.elapsed().as_secs_f64());

    if part("delivery") {
        let text = delivery(&root.join("delivery"), &files, runs)?;
        println!("{text}");
        report.push_str(&text);
    }
    if part("startup") {
        let text = national_startup(&root.join("national"), runs)?;
        println!("{text}");
        report.push_str(&text);
    }
    if part("ssh") {
        let text = openssh(&root.join("ssh"), &files, runs)?;
        println!("{text}");
        report.push_str(&text);
    }
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-delivery-results.md");
    std::fs::write(&out, &report)?;
    println!("results also written to {}", out.display());
    Ok(())
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("").to_string())
        })
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| format!("{:.1} GiB", kb as f64 / 1048576.0))
        .unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "machine: nproc {}, CPU `{cpu}`, memory {mem}, Linux {}, load average at start {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        kernel.trim(),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    )
}

// ---------------------------------------------------------------------------------------------
// Files

/// The generated payloads.
struct Files {
    /// 1,000 UPPLAN bodies of about 50 KB.
    small: Vec<Arc<Vec<u8>>>,
    /// 100 MB JPEG.
    jpeg: Arc<Vec<u8>>,
    /// 100 MB UPPLAN.
    big_csv: Arc<Vec<u8>>,
    /// The office batch's three bodies: UPPLAN, UPSIKYU, UPHOSOKU.
    batch: [(FileKind, Arc<Vec<u8>>); 3],
}

/// The sample UPPLAN's records, decoded.
fn sample_lines(name: &str) -> Vec<String> {
    let bytes = std::fs::read(Path::new(SAMPLES).join(name)).expect("sample file");
    let (text, _, bad) = encoding_rs::SHIFT_JIS.decode(&bytes);
    assert!(!bad);
    text.split_terminator("\r\n").map(str::to_string).collect()
}

/// A valid UPPLAN of at least `size` bytes: the 福祉用具 office's 116-record sample repeated,
/// one fictional 被保険者番号 per copy (as the checker bench does), starting at `person`.
fn upplan(lines: &[String], size: usize, person: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(size + 256);
    let mut i = 0usize;
    while out.len() < size {
        let line = &lines[i % lines.len()];
        let (head, rest) = line.split_at(line.find(',').unwrap() + 1);
        let rest = &rest[rest.find(',').unwrap() + 1..];
        let rest = &rest[rest.find(',').unwrap()..];
        let rec = format!(
            "{head}131016,{:010}{rest}\r\n",
            person + (i / lines.len()) as u64
        );
        let (b, _, bad) = encoding_rs::SHIFT_JIS.encode(&rec);
        assert!(!bad);
        out.extend_from_slice(&b);
        i += 1;
    }
    out
}

impl Files {
    fn generate() -> Files {
        let lines = sample_lines("UPPLAN_202610_1310000001_43_1310000031_17_20260928103000.CSV");
        let probe = name(FileKind::UpPlan, CM, PARTNERS[0], &stamp(0));
        let small: Vec<Arc<Vec<u8>>> = (0..1000u64)
            .map(|i| Arc::new(upplan(&lines, SMALL, 200_000 + i * 10)))
            .collect();
        for f in small.iter().take(3) {
            let r = check_bytes(&probe, f);
            assert!(r.is_valid(), "{:?}", &r.errors[..r.errors.len().min(3)]);
        }
        let big_csv = upplan(&lines, BIG, 3_000_000);
        let r = check_bytes(&probe, &big_csv);
        assert!(r.is_valid(), "{:?}", &r.errors[..r.errors.len().min(3)]);
        eprintln!(
            "UPPLAN 50 KB: {} bytes, {} records; UPPLAN 100 MB: {} bytes, {} records",
            small[0].len(),
            check_bytes(&probe, &small[0]).records,
            big_csv.len(),
            r.records
        );
        let mut jpeg = Vec::with_capacity(BIG);
        jpeg.extend_from_slice(&[0xFF, 0xD8, 0xFF, 0xE0]);
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        while jpeg.len() < BIG - 2 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let n = (BIG - 2 - jpeg.len()).min(8);
            jpeg.extend_from_slice(&x.to_le_bytes()[..n]);
        }
        jpeg.extend_from_slice(&[0xFF, 0xD9]);
        let img = name(FileKind::UpKihonImage, CM, PARTNERS[0], &stamp(0));
        assert!(check_bytes(&img, &jpeg).is_valid());
        let sample = |kind: FileKind, file: &str| {
            let bytes = std::fs::read(Path::new(SAMPLES).join(file)).expect("sample");
            let n = name(kind, CM, PARTNERS[0], &stamp(0));
            let r = check_bytes(&n, &bytes);
            assert!(r.is_valid(), "{n}: {:?}", r.errors);
            (kind, Arc::new(bytes))
        };
        Files {
            small,
            jpeg: Arc::new(jpeg),
            big_csv: Arc::new(big_csv),
            batch: [
                sample(
                    FileKind::UpPlan,
                    "UPPLAN_202610_1310000001_43_1310000011_11_20260928103000.CSV",
                ),
                sample(
                    FileKind::UpSikyu,
                    "UPSIKYU_202610_1310000001_43_1310000011_11_20260928103000.CSV",
                ),
                sample(
                    FileKind::UpHosoku,
                    "UPHOSOKU_202610_1310000001_43_1310000011_11_20260928103000.CSV",
                ),
            ],
        }
    }
}

/// The standard name of a file of `kind` from `from` to `to` in send unit `stamp`.
fn name(kind: FileKind, from: (&str, &str), to: (&str, &str), stamp: &str) -> String {
    let month = if kind.has_month() { "_202610" } else { "" };
    let branch = if kind.is_image() { "_0001" } else { "" };
    let ext = if kind.is_image() { "jpg" } else { "CSV" };
    format!(
        "{}{month}_{}_{}_{}_{}_{stamp}{branch}.{ext}",
        kind.prefix(),
        from.0,
        from.1,
        to.0,
        to.1
    )
}

/// Send-unit stamps 20261001000000 + n seconds.
fn stamp(n: u32) -> String {
    let (h, m, s) = (n / 3600 % 24, n / 60 % 60, n % 60);
    let day = 1 + n / 86400;
    format!("202610{day:02}{h:02}{m:02}{s:02}")
}

// ---------------------------------------------------------------------------------------------
// Processes and memory

/// A child process killed when dropped.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(mut cmd: Command, log: &Path) -> anyhow::Result<Proc> {
        let out = std::fs::File::create(log)?;
        let err = out.try_clone()?;
        cmd.stdout(Stdio::from(out)).stderr(Stdio::from(err));
        Ok(Proc {
            child: cmd.spawn().context("start renkei")?,
            log: log.to_path_buf(),
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_has(&self, what: &str) -> bool {
        std::fs::read_to_string(&self.log).is_ok_and(|t| t.contains(what))
    }

    fn log_tail(&self) -> String {
        let t = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = t.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// SIGTERM and wait for the clean exit.
    fn terminate(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
        let end = Instant::now() + Duration::from_secs(15);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `renkei` binary cargo built for this bench, or `RENKEI_BENCH_BIN` (to compare builds).
fn renkei_bin() -> PathBuf {
    std::env::var_os("RENKEI_BENCH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_renkei")))
}

fn renkei() -> Command {
    Command::new(renkei_bin())
}

/// A `/proc/<pid>/status` field in kB (VmRSS, VmHWM).
fn status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix(field)?
                    .strip_prefix(':')?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
        })
        .unwrap_or(0)
}

/// Resets VmHWM to the current RSS (Linux ≥ 4.0, `clear_refs` 5).
fn reset_hwm(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

fn mb(kb: u64) -> String {
    format!("{:.1}", kb as f64 / 1024.0)
}

/// Samples VmRSS of some processes every 10 ms, keeping each one's maximum.
struct Sampler {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<BTreeMap<u32, u64>>,
}

impl Sampler {
    fn start(pids: Vec<u32>) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut max: BTreeMap<u32, u64> = BTreeMap::new();
            loop {
                for &p in &pids {
                    let v = status_kb(p, "VmRSS");
                    let m = max.entry(p).or_default();
                    *m = (*m).max(v);
                }
                if s.load(Ordering::Relaxed) {
                    return max;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Sampler { stop, handle }
    }

    fn finish(self) -> BTreeMap<u32, u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or_default()
    }
}

/// A free loopback port not handed out before in this run: a port is free only until someone
/// binds it, and the nodes bind theirs later, so two of ours must never get the same one.
fn port(udp: bool) -> anyhow::Result<u16> {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let p = free_port(udp)?;
        if given.insert(p) {
            return Ok(p);
        }
    }
}

fn wait_for(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    f()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn sync_disk() {
    let _ = Command::new("sync").status();
}

fn count(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .count()
        })
        .unwrap_or(0)
}

/// Moves the (non-dot) files of a folder into `to`, as the care software takes imported files
/// away. Renamed, not deleted: freeing thousands of inodes just before a run would make the
/// run's own file creations slower (see `main`).
fn clear(dir: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(dir)?.flatten() {
        let p = e.path();
        if p.is_file() && !e.file_name().to_string_lossy().starts_with('.') {
            std::fs::rename(&p, to.join(e.file_name()))?;
        }
    }
    Ok(())
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

// ---------------------------------------------------------------------------------------------
// The delivery federation

struct Office {
    number: &'static str,
    home: Home,
}

struct Federation {
    dir: PathBuf,
    published: PathBuf,
    anchor: PathBuf,
    dn_key: PathBuf,
    dn_addr: String,
    offices: Vec<Office>,
}

/// Root, region 13-tokyo, a directory node and the offices; every office enrolled (built by
/// the one federation builder). The offices use the loopback tuning (settle_ms = 0) with
/// production-like refresh intervals.
fn federation(dir: &Path, offices: &[(&'static str, &'static str)]) -> anyhow::Result<Federation> {
    let mut b = renkei_node::federation::Federation::builder(dir).tune(|c| {
        tune_for_loopback(c);
        c.directory_refresh_secs = 300;
        c.rescan_secs = 5;
    });
    for (number, kind) in offices {
        b = b.office(number, &format!("ベンチ事業所 {number}"), &[kind]);
    }
    let plan = b.create()?;
    let dn = &plan.directory_nodes[0];
    Ok(Federation {
        dir: dir.to_path_buf(),
        published: plan.regions[0].published.clone(),
        anchor: plan.anchor.clone(),
        dn_key: dn.key_file.clone(),
        dn_addr: dn.addr.clone(),
        offices: plan
            .offices
            .iter()
            .zip(offices)
            .map(|(o, (number, _))| Office {
                number,
                home: o.home.clone(),
            })
            .collect(),
    })
}

impl Federation {
    fn directory_node(&self) -> anyhow::Result<Proc> {
        let mut c = renkei();
        c.args(["directory", "serve", "--refresh-secs", "300", "--listen"])
            .arg(&self.dn_addr)
            .arg("--data")
            .arg(&self.published)
            .arg("--anchor")
            .arg(&self.anchor)
            .arg("--identity")
            .arg(&self.dn_key);
        Proc::spawn(c, &self.dir.join("directory-node.log"))
    }

    fn node(&self, i: usize) -> anyhow::Result<Proc> {
        let home = &self.offices[i].home;
        let mut c = renkei();
        c.arg("run").arg("--home").arg(&home.root);
        Proc::spawn(c, &home.root.join("node.log"))
    }
}

/// One file of a scenario.
struct Item {
    /// Index of the recipient in the federation.
    to: usize,
    name: String,
    bytes: Arc<Vec<u8>>,
}

/// One timed run.
struct Outcome {
    wall: f64,
    /// Receipt `finished_ms − started_ms` (queued by the outbox scan → ack durable).
    lat_queue: Vec<u64>,
    /// Receipt `finished_ms` − the moment the files were dropped.
    lat_drop: Vec<u64>,
    sender_rss: u64,
    sender_hwm: u64,
    recv_rss: u64,
    recv_hwm: u64,
    /// Where the last file acked spent its time, ms: dropped → queued by the outbox scan →
    /// header at the receiver → ack signed there (file durable) → ack durable at the sender.
    stages: [u64; 4],
}

/// Drops `items` into office `from`'s outbox at once and waits for every ack.
fn run_once(
    fed: &Federation,
    procs: &[Proc],
    from: usize,
    items: &[Item],
) -> anyhow::Result<Outcome> {
    let sender = &fed.offices[from].home;
    let archive = fed.dir.join("taken-away");
    for o in &fed.offices {
        clear(&o.home.sent(), &archive.join(o.number).join("sent"))?;
        clear(&o.home.inbox(), &archive.join(o.number).join("inbox"))?;
    }
    ensure!(
        count(&sender.outbox()) == 0,
        "the sender's outbox is not empty"
    );
    ensure!(
        count(&sender.rejected()) == 0,
        "the sender rejected files before"
    );
    let offset = std::fs::metadata(sender.receipts()).map_or(0, |m| m.len());
    for it in items {
        std::fs::write(
            sender.outbox().join(format!(".{}.writing", it.name)),
            it.bytes.as_slice(),
        )?;
    }
    // The care software wrote these earlier; their write-back must not land in the timing.
    sync_disk();
    std::thread::sleep(Duration::from_millis(300));
    let receivers: BTreeSet<usize> = items.iter().map(|i| i.to).collect();
    let sender_pid = procs[from].pid();
    let recv_pids: Vec<u32> = receivers.iter().map(|&r| procs[r].pid()).collect();
    reset_hwm(sender_pid);
    for &p in &recv_pids {
        reset_hwm(p);
    }
    let mut all = vec![sender_pid];
    all.extend(&recv_pids);
    let sampler = Sampler::start(all);

    let t0 = Instant::now();
    let t0_ms = now_ms();
    for it in items {
        std::fs::rename(
            sender.outbox().join(format!(".{}.writing", it.name)),
            sender.outbox().join(&it.name),
        )?;
    }
    let n = items.len();
    let sent = sender.sent();
    let rejected = sender.rejected();
    let end = t0 + Duration::from_secs(300);
    loop {
        if count(&sent) >= n {
            break;
        }
        if count(&rejected) > 0 {
            bail!(
                "the sender rejected files: {:?}",
                std::fs::read_dir(&rejected)?
                    .flatten()
                    .map(|e| e.file_name())
                    .collect::<Vec<_>>()
            );
        }
        if Instant::now() > end {
            bail!(
                "timed out: {} of {n} acknowledged; sender log:\n{}",
                count(&sent),
                procs[from].log_tail()
            );
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let wall = t0.elapsed().as_secs_f64();
    let peaks = sampler.finish();
    let sender_hwm = status_kb(sender_pid, "VmHWM");
    let recv_hwm = recv_pids
        .iter()
        .map(|&p| status_kb(p, "VmHWM"))
        .max()
        .unwrap_or(0);

    // Receipts written in this run.
    let mut text = String::new();
    let mut f = std::fs::File::open(sender.receipts())?;
    f.seek(SeekFrom::Start(offset))?;
    f.read_to_string(&mut text)?;
    let names: BTreeSet<&str> = items.iter().map(|i| i.name.as_str()).collect();
    let mut lat_queue = Vec::new();
    let mut lat_drop = Vec::new();
    let mut last: Option<Receipt> = None;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let r: Receipt = serde_json::from_str(line).context("receipt")?;
        if r.direction != "sent" || !names.contains(r.file_name.as_str()) {
            continue;
        }
        ensure!(r.verdict == "accepted", "{} was refused", r.file_name);
        lat_queue.push(r.finished_ms.saturating_sub(r.started_ms));
        lat_drop.push(r.finished_ms.saturating_sub(t0_ms));
        if last.as_ref().is_none_or(|l| r.finished_ms >= l.finished_ms) {
            last = Some(r);
        }
    }
    let mut stages = [0; 4];
    if let Some(s) = &last {
        let to = items
            .iter()
            .find(|i| i.name == s.file_name)
            .map_or(1, |i| i.to);
        let text = std::fs::read_to_string(fed.offices[to].home.receipts())?;
        let got = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Receipt>(l).ok())
            .find(|r| r.direction == "received" && r.message_id == s.message_id);
        if let Some(r) = got {
            stages = [
                s.started_ms.saturating_sub(t0_ms),
                r.started_ms.saturating_sub(s.started_ms),
                r.finished_ms.saturating_sub(r.started_ms),
                s.finished_ms.saturating_sub(r.finished_ms),
            ];
        }
    }
    ensure!(
        lat_queue.len() == n,
        "{} receipts for {n} files",
        lat_queue.len()
    );
    // Every file arrived byte for byte.
    for it in items {
        let got = std::fs::read(fed.offices[it.to].home.inbox().join(&it.name))
            .with_context(|| format!("{} missing from the inbox", it.name))?;
        ensure!(got == *it.bytes, "{} differs", it.name);
    }
    lat_queue.sort_unstable();
    lat_drop.sort_unstable();
    Ok(Outcome {
        wall,
        lat_queue,
        lat_drop,
        sender_rss: peaks.get(&sender_pid).copied().unwrap_or(0),
        sender_hwm,
        recv_rss: recv_pids
            .iter()
            .filter_map(|p| peaks.get(p))
            .copied()
            .max()
            .unwrap_or(0),
        recv_hwm,
        stages,
    })
}

/// The delivery scenarios. Every run gets fresh send-unit stamps, so names never repeat.
#[derive(Clone, Copy)]
enum Shape {
    SmallToOne,
    SmallToTen,
    Jpeg,
    BigCsv,
    BatchToTen,
    BatchToOne,
}

impl Shape {
    const ALL: [Shape; 6] = [
        Shape::SmallToOne,
        Shape::SmallToTen,
        Shape::Jpeg,
        Shape::BigCsv,
        Shape::BatchToTen,
        Shape::BatchToOne,
    ];

    fn label(self) -> &'static str {
        match self {
            Shape::SmallToOne => "1,000 × 50 KB UPPLAN → 1 partner",
            Shape::SmallToTen => "1,000 × 50 KB UPPLAN → 10 partners (100 each)",
            Shape::Jpeg => "1 × 100 MB UPKIHON_IMAGE JPEG → 1 partner (pure transfer)",
            Shape::BigCsv => {
                "1 × 100 MB UPPLAN CSV (618k records, checked at both ends) → 1 partner"
            }
            Shape::BatchToTen => {
                "90-file office batch (30 units × UPPLAN+UPSIKYU+UPHOSOKU) → 10 partners"
            }
            Shape::BatchToOne => "90-file office batch → 1 partner",
        }
    }

    /// The issue's goal for the wall time, seconds.
    fn goal(self) -> Option<f64> {
        match self {
            Shape::SmallToOne | Shape::SmallToTen => Some(1.0),
            Shape::Jpeg => Some(0.45),
            Shape::BigCsv => None,
            Shape::BatchToTen | Shape::BatchToOne => Some(0.3),
        }
    }

    /// The files of one run; recipients are federation indexes (1 = the first partner).
    fn items(self, files: &Files, stamps: &mut u32) -> Vec<Item> {
        let one = |kind: FileKind, to: usize, stamp: &str, bytes: &Arc<Vec<u8>>| Item {
            to: to + 1,
            name: name(kind, CM, PARTNERS[to], stamp),
            bytes: bytes.clone(),
        };
        let spread = match self {
            Shape::SmallToTen | Shape::BatchToTen => PARTNERS.len(),
            _ => 1,
        };
        match self {
            Shape::SmallToOne | Shape::SmallToTen => (0..files.small.len())
                .map(|i| {
                    one(
                        FileKind::UpPlan,
                        i % spread,
                        &next_stamp(stamps),
                        &files.small[i],
                    )
                })
                .collect(),
            Shape::Jpeg => vec![one(
                FileKind::UpKihonImage,
                0,
                &next_stamp(stamps),
                &files.jpeg,
            )],
            Shape::BigCsv => vec![one(
                FileKind::UpPlan,
                0,
                &next_stamp(stamps),
                &files.big_csv,
            )],
            Shape::BatchToTen | Shape::BatchToOne => (0..30)
                .flat_map(|unit| {
                    let stamp = next_stamp(stamps);
                    files
                        .batch
                        .iter()
                        .map(|(kind, bytes)| one(*kind, unit % spread, &stamp, bytes))
                        .collect::<Vec<_>>()
                })
                .collect(),
        }
    }
}

fn next_stamp(n: &mut u32) -> String {
    *n += 1;
    stamp(*n)
}

struct Scenario {
    label: String,
    files: usize,
    bytes: u64,
    goal: Option<f64>,
    outcomes: Vec<Outcome>,
    error: Option<String>,
}

fn delivery(dir: &Path, files: &Files, runs: usize) -> anyhow::Result<String> {
    std::fs::create_dir_all(dir)?;
    let mut offices = vec![CM];
    offices.extend(PARTNERS);
    let fed = federation(dir, &offices)?;
    let _dn = fed.directory_node()?;
    // The nodes start one after another: the directory node takes one incoming stream at a
    // time (libp2p-stream drops the others), and an office whose first sync fails waits a
    // whole refresh interval. Start-up time: process start → directory synced.
    let mut procs = Vec::new();
    let mut up = Vec::new();
    for i in 0..fed.offices.len() {
        let mut synced = false;
        for attempt in 0..3 {
            let t = Instant::now();
            let p = fed.node(i)?;
            if wait_for(Duration::from_secs(10), || p.log_has("directory updated")) {
                up.push(t.elapsed().as_secs_f64());
                procs.push(p);
                synced = true;
                break;
            }
            eprintln!(
                "WARNING: office {} did not get the directory (attempt {}), restarting it:\n{}",
                fed.offices[i].number,
                attempt + 1,
                p.log_tail()
            );
        }
        ensure!(
            synced,
            "office {} never got the directory",
            fed.offices[i].number
        );
    }
    let entries_ok = |h: &Home| {
        std::fs::read_to_string(h.status())
            .ok()
            .and_then(|t| serde_json::from_str::<renkei_node::status::Status>(&t).ok())
            .is_some_and(|s| s.directory_entries == 11)
    };
    ensure!(
        wait_for(Duration::from_secs(30), || fed
            .offices
            .iter()
            .all(|o| entries_ok(&o.home))),
        "status.json did not show the directory"
    );
    std::thread::sleep(Duration::from_secs(3));
    let idle_sender = status_kb(procs[0].pid(), "VmRSS");
    let idle_recv = (1..procs.len())
        .map(|i| status_kb(procs[i].pid(), "VmRSS"))
        .max()
        .unwrap_or(0);
    let idle_hwm = status_kb(procs[0].pid(), "VmHWM");

    let mut stamps = 0u32;

    // Warm-up: one file to every partner, so every connection is open (as on a running node).
    let warm: Vec<Item> = (0..PARTNERS.len())
        .map(|p| Item {
            to: p + 1,
            name: name(FileKind::UpPlan, CM, PARTNERS[p], &next_stamp(&mut stamps)),
            bytes: files.small[p].clone(),
        })
        .collect();
    run_once(&fed, &procs, 0, &warm).context("warm-up")?;

    let filter = std::env::var("RENKEI_BENCH_FILTER").unwrap_or_default();
    let mut results = Vec::new();
    for shape in Shape::ALL {
        let label = shape.label();
        if !label.contains(filter.as_str()) {
            continue;
        }
        let mut sc = Scenario {
            label: label.to_string(),
            files: 0,
            bytes: 0,
            goal: shape.goal(),
            outcomes: Vec::new(),
            error: None,
        };
        for run in 0..runs {
            let items = shape.items(files, &mut stamps);
            sc.files = items.len();
            sc.bytes = items.iter().map(|i| i.bytes.len() as u64).sum();
            match run_once(&fed, &procs, 0, &items) {
                Ok(o) => {
                    eprintln!(
                        "{label}, run {}: {:.3} s, p50 {} ms, p99 {} ms, sender RSS peak {} MB, receiver {} MB",
                        run + 1,
                        o.wall,
                        percentile(&o.lat_drop, 50.0),
                        percentile(&o.lat_drop, 99.0),
                        mb(o.sender_rss),
                        mb(o.recv_rss)
                    );
                    sc.outcomes.push(o);
                }
                Err(e) => {
                    eprintln!("{label}, run {}: FAILED: {e:#}", run + 1);
                    sc.error = Some(format!("{e:#}"));
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(1500));
        }
        results.push(sc);
    }
    std::thread::sleep(Duration::from_secs(3));
    let idle_after = status_kb(procs[0].pid(), "VmRSS");

    let mut t = String::new();
    writeln!(
        t,
        "## Delivery (renkei, {} partner processes, one sender)\n",
        PARTNERS.len()
    )?;
    writeln!(
        t,
        "Wall time from the drop until the sender holds every ack (files in `sent/`), median of {runs} runs [min–max]. \
         Latency per file over all runs: *queued→ack* is the receipt's `finished_ms − started_ms`; *drop→ack* counts from the drop. \
         RSS: the highest VmRSS sampled every 10 ms during the run / VmHWM (peak, reset before each run), MB, worst run; receiver = the largest of the receivers.\n"
    )?;
    writeln!(
        t,
        "| scenario | files | MB | wall s | files/s | MB/s | drop→ack p50 / p99 ms | queued→ack p50 / p99 ms | sender RSS / HWM MB | receiver RSS / HWM MB | goal | met |"
    )?;
    writeln!(t, "|---|---|---|---|---|---|---|---|---|---|---|---|")?;
    for sc in &results {
        if sc.outcomes.is_empty() {
            writeln!(
                t,
                "| {} | {} | | FAILED: {} | | | | | | | | no |",
                sc.label,
                sc.files,
                sc.error
                    .as_deref()
                    .unwrap_or("")
                    .lines()
                    .next()
                    .unwrap_or("")
            )?;
            continue;
        }
        let walls: Vec<f64> = sc.outcomes.iter().map(|o| o.wall).collect();
        let w = median(&walls);
        let min = walls.iter().copied().fold(f64::INFINITY, f64::min);
        let max = walls.iter().copied().fold(0.0, f64::max);
        let mut ld: Vec<u64> = sc
            .outcomes
            .iter()
            .flat_map(|o| o.lat_drop.clone())
            .collect();
        let mut lq: Vec<u64> = sc
            .outcomes
            .iter()
            .flat_map(|o| o.lat_queue.clone())
            .collect();
        ld.sort_unstable();
        lq.sort_unstable();
        let worst = |f: fn(&Outcome) -> u64| sc.outcomes.iter().map(f).max().unwrap_or(0);
        writeln!(
            t,
            "| {} | {} | {:.1} | **{w:.3}** [{min:.3}–{max:.3}] | {:.0} | {:.1} | {} / {} | {} / {} | {} / {} | {} / {} | {} | {} |",
            sc.label,
            sc.files,
            sc.bytes as f64 / 1e6,
            sc.files as f64 / w,
            sc.bytes as f64 / 1e6 / w,
            percentile(&ld, 50.0),
            percentile(&ld, 99.0),
            percentile(&lq, 50.0),
            percentile(&lq, 99.0),
            mb(worst(|o| o.sender_rss)),
            mb(worst(|o| o.sender_hwm)),
            mb(worst(|o| o.recv_rss)),
            mb(worst(|o| o.recv_hwm)),
            sc.goal.map_or("–".into(), |g| format!("≤ {g} s")),
            match (sc.goal, &sc.error) {
                (_, Some(_)) => "no (failed)".to_string(),
                (Some(g), None) if w <= g => "yes".to_string(),
                (Some(g), None) => format!("**no** ({:.1}×)", w / g),
                (None, None) => "–".to_string(),
            }
        )?;
    }
    writeln!(t)?;
    writeln!(
        t,
        "Where the last file acked spent its time (ms, median over runs): \
         **scan** = dropped → checked, hashed and queued by the sender's outbox scan; \
         **to header** = queued → its envelope header read by the receiver (waiting behind earlier files, sealing); \
         **receive** = header → ack signed (body decrypted and written, checked, fsynced into the inbox, receipt and index durable); \
         **ack** = ack signed → verified, receipt durable and file moved to `sent/` at the sender.\n"
    )?;
    writeln!(t, "| scenario | scan | to header | receive | ack |")?;
    writeln!(t, "|---|---|---|---|---|")?;
    for sc in results.iter().filter(|s| !s.outcomes.is_empty()) {
        let stage = |i: usize| {
            let v: Vec<f64> = sc.outcomes.iter().map(|o| o.stages[i] as f64).collect();
            median(&v)
        };
        writeln!(
            t,
            "| {} | {:.0} | {:.0} | {:.0} | {:.0} |",
            sc.label,
            stage(0),
            stage(1),
            stage(2),
            stage(3)
        )?;
    }
    writeln!(t)?;
    writeln!(t, "| node memory | MB | goal |")?;
    writeln!(t, "|---|---|---|")?;
    writeln!(
        t,
        "| sender idle after start-up and directory sync (VmRSS) | {} | ≤ 30 MB: {} |",
        mb(idle_sender),
        if idle_sender <= 30 * 1024 {
            "met"
        } else {
            "**missed**"
        }
    )?;
    writeln!(
        t,
        "| sender start-up peak (VmHWM before any traffic) | {} | |",
        mb(idle_hwm)
    )?;
    writeln!(
        t,
        "| largest receiver idle (VmRSS) | {} | ≤ 30 MB: {} |",
        mb(idle_recv),
        if idle_recv <= 30 * 1024 {
            "met"
        } else {
            "**missed**"
        }
    )?;
    writeln!(
        t,
        "| sender idle after all scenarios (VmRSS) | {} | |",
        mb(idle_after)
    )?;
    for sc in &results {
        if sc.label.contains("100 MB") && !sc.outcomes.is_empty() {
            let s = sc.outcomes.iter().map(|o| o.sender_hwm).max().unwrap_or(0);
            let r = sc.outcomes.iter().map(|o| o.recv_hwm).max().unwrap_or(0);
            writeln!(
                t,
                "| peak during {} — sender / receiver (VmHWM) | {} / {} | ≤ 64 MB: {} |",
                sc.label,
                mb(s),
                mb(r),
                if s.max(r) <= 64 * 1024 {
                    "met"
                } else {
                    "**missed**"
                }
            )?;
        }
    }
    let ups: Vec<f64> = up.clone();
    writeln!(
        t,
        "\nStart-up with the 11-office directory (nodes started one after another): process start → directory synced from the directory node, median {:.2} s [{:.2}–{:.2}].\n",
        median(&ups),
        ups.iter().copied().fold(f64::INFINITY, f64::min),
        ups.iter().copied().fold(0.0, f64::max)
    )?;
    drop(procs);
    Ok(t)
}

// ---------------------------------------------------------------------------------------------
// Start-up with the national directory

const YEAR: u64 = 365 * 86400;

fn national_startup(dir: &Path, runs: usize) -> anyhow::Result<String> {
    std::fs::create_dir_all(dir)?;
    let t = Instant::now();
    let now = renkei_node::env::wall_clock_ms() / 1000;
    let root = SigningKey::from_bytes(&[1; 32]);
    let anchor = Anchor::from_json(&format!(
        r#"{{"format":"renkei-anchor/1","federation":"bench-national","roots":["{}"]}}"#,
        hex::encode(root.verifying_key().to_bytes())
    ))
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let anchor_path = dir.join("anchor.json");
    std::fs::write(&anchor_path, serde_json::to_string_pretty(&anchor)?)?;

    // The office (in region 13) and its directory node, real keys.
    let home = Home::new(dir.join("office"));
    let dn_key = admin::generate_signing_key();
    let dn_key_path = dir.join("dn.key");
    admin::write_secret(&dn_key_path, &dn_key)?;
    let dn_pub = dn_key.verifying_key().to_bytes();
    let dn_addr = format!("/ip4/127.0.0.1/tcp/{}", port(false)?);
    let dn_port: u16 = dn_addr.rsplit('/').next().unwrap_or("0").parse()?;
    let dn_peer = renkei_node::net::peer_id_of(&dn_pub).context("peer id")?;
    let office = OfficeNumber::parse(CM.0).context("office")?;
    admin::init_office(
        &home,
        &OfficeSetup {
            office,
            name: "ベンチ居宅介護支援事業所".into(),
            kinds: vec![ServiceKind::parse(CM.1).context("kind")?],
            listen: vec![
                format!("/ip4/127.0.0.1/tcp/{}", port(false)?),
                format!("/ip4/127.0.0.1/udp/{}/quic-v1", port(true)?),
            ],
            advertise: Vec::new(),
            directory_nodes: vec![format!("{dn_addr}/p2p/{dn_peer}")],
            anchor: Some(anchor_path.clone()),
        },
    )?;
    let mut c = home.config()?;
    tune_for_loopback(&mut c);
    c.directory_refresh_secs = 300;
    c.rescan_secs = 5;
    home.write_config(&c)?;
    let keys = home.load_keys()?;
    let own = Entry {
        office,
        name: "ベンチ居宅介護支援事業所".into(),
        kinds: vec![ServiceKind::parse(CM.1).context("kind")?],
        keys: vec![OfficeKey {
            identity: keys[0].identity.verifying_key().to_bytes(),
            encryption: x25519_dalek::PublicKey::from(&keys[0].encryption).to_bytes(),
            valid_from: now - 86400,
            valid_until: now + 5 * YEAR,
        }],
        addresses: c.listen.clone(),
        status: Status::Active,
        mailboxes: Vec::new(),
    };

    // 300,000 offices over 47 regions in proportion to population (as directory/benches).
    let mut rng = ChaCha20Rng::seed_from_u64(2026);
    let counts = national_offices::region_counts();
    let published = dir.join("published");
    std::fs::create_dir_all(&published)?;
    let mut bytes_total = 0u64;
    for (i, count) in counts.iter().enumerate() {
        let pref = i as u8 + 1;
        let key = SigningKey::from_bytes(&[pref.wrapping_add(100); 32]);
        let region = format!("{pref:02}-region");
        let cert = RegionCert::issue(
            &root,
            &region,
            &format!("第{pref}地域 連携協議会"),
            key.verifying_key().to_bytes(),
            vec![pref],
            now - YEAR,
            now + 5 * YEAR,
        );
        let mut number = 0u32;
        let mut entries: Vec<Entry> = (0..*count)
            .map(|_| {
                number += rng.random_range(1..20);
                let n = OfficeNumber::parse(&format!("{pref:02}7{number:07}")).unwrap();
                national_offices::office_entry(&mut rng, n, now)
            })
            .collect();
        let mut nodes = vec![NodeInfo {
            key: [pref; 32],
            addresses: vec![format!("/ip4/198.51.100.{pref}/udp/4001/quic-v1")],
            http: None,
        }];
        if pref == 13 {
            entries.push(own.clone());
            nodes.push(NodeInfo {
                key: dn_pub,
                addresses: vec![dn_addr.clone()],
                http: None,
            });
        }
        entries.sort_by_key(|e| e.office);
        let bytes = Snapshot::build(&cert, &key, 1, now - 60, now + 7 * 86400, &nodes, &entries);
        bytes_total += bytes.len() as u64;
        std::fs::write(
            published.join(format!("{region}-{:010}.snapshot", 1)),
            &bytes,
        )?;
    }
    sync_disk();
    eprintln!(
        "national directory: {} entries, 47 snapshots, {:.1} MB, generated in {:.1} s",
        national_offices::OFFICES + 1,
        bytes_total as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );

    // The directory node loads and verifies the 47 files before it listens.
    let t_dn = Instant::now();
    let mut c = renkei();
    c.args(["directory", "serve", "--refresh-secs", "300", "--listen"])
        .arg(&dn_addr)
        .arg("--data")
        .arg(&published)
        .arg("--anchor")
        .arg(&anchor_path)
        .arg("--identity")
        .arg(&dn_key_path);
    let dn = Proc::spawn(c, &dir.join("directory-node.log"))?;
    ensure!(
        wait_for(Duration::from_secs(60), || std::net::TcpStream::connect((
            "127.0.0.1",
            dn_port
        ))
        .is_ok()),
        "directory node did not listen:\n{}",
        dn.log_tail()
    );
    let dn_up = t_dn.elapsed().as_secs_f64();

    let want = national_offices::OFFICES + 1;
    let loaded = |h: &Home| {
        std::fs::read_to_string(h.status())
            .ok()
            .and_then(|t| serde_json::from_str::<renkei_node::status::Status>(&t).ok())
            .is_some_and(|s| s.directory_entries == want && s.directory.len() == 47)
    };
    let run_node = |log: &str| -> anyhow::Result<Proc> {
        let mut c = renkei();
        c.arg("run").arg("--home").arg(&home.root);
        Proc::spawn(c, &dir.join(log))
    };

    // First start: empty cache, everything pulled from the directory node and verified.
    let t_first = Instant::now();
    let mut node = run_node("office-first.log")?;
    ensure!(
        wait_for(Duration::from_secs(120), || node
            .log_has("directory updated")),
        "the office did not load the national directory:\n{}",
        node.log_tail()
    );
    let first = t_first.elapsed().as_secs_f64();
    ensure!(
        wait_for(Duration::from_secs(10), || loaded(&home)),
        "status.json does not show the national directory"
    );
    let first_hwm = status_kb(node.pid(), "VmHWM");
    std::thread::sleep(Duration::from_secs(3));
    let first_idle = status_kb(node.pid(), "VmRSS");
    node.terminate();

    // Restarts: the verified cache in state/directory.
    let mut restarts = Vec::new();
    let mut started_log = Vec::new();
    let mut idle = 0;
    let mut hwm = 0;
    for r in 0..runs {
        let _ = std::fs::remove_file(home.status());
        let t0 = Instant::now();
        let mut node = run_node(&format!("office-restart-{r}.log"))?;
        let mut t_started = None;
        let ok = wait_for(Duration::from_secs(60), || {
            if t_started.is_none() && node.log_has("node started") {
                t_started = Some(t0.elapsed().as_secs_f64());
            }
            loaded(&home)
        });
        ensure!(
            ok,
            "restart {r}: no status with the directory:\n{}",
            node.log_tail()
        );
        restarts.push(t0.elapsed().as_secs_f64());
        started_log.push(t_started.unwrap_or(f64::NAN));
        std::thread::sleep(Duration::from_secs(3));
        idle = idle.max(status_kb(node.pid(), "VmRSS"));
        hwm = hwm.max(status_kb(node.pid(), "VmHWM"));
        node.terminate();
    }
    let dn_rss = status_kb(dn.pid(), "VmRSS");
    let dn_hwm = status_kb(dn.pid(), "VmHWM");
    drop(dn);

    let mut t = String::new();
    writeln!(
        t,
        "## Start-up with the national directory ({want} entries, 47 regions, {:.1} MB of snapshots)\n",
        bytes_total as f64 / 1e6
    )?;
    writeln!(t, "| what | time s | RSS after 3 s idle / VmHWM MB |")?;
    writeln!(t, "|---|---|---|")?;
    writeln!(
        t,
        "| directory node: process start → listening (loads and verifies 47 files first) | {dn_up:.2} | {} / {} |",
        mb(dn_rss),
        mb(dn_hwm)
    )?;
    writeln!(
        t,
        "| office, first start (empty cache): process start → all 47 regions pulled from the directory node, verified, cached (log `directory updated`) | {first:.2} | {} / {} |",
        mb(first_idle),
        mb(first_hwm)
    )?;
    writeln!(
        t,
        "| office restart from its verified cache: process start → log `node started` (median of {runs}) | {:.2} [{:.2}–{:.2}] | |",
        median(&started_log),
        started_log.iter().copied().fold(f64::INFINITY, f64::min),
        started_log.iter().copied().fold(0.0, f64::max)
    )?;
    writeln!(
        t,
        "| office restart: process start → `status.json` shows all 47 regions, {want} entries (median of {runs}) | **{:.2}** [{:.2}–{:.2}] | {} / {} |",
        median(&restarts),
        restarts.iter().copied().fold(f64::INFINITY, f64::min),
        restarts.iter().copied().fold(0.0, f64::max),
        mb(idle),
        mb(hwm)
    )?;
    writeln!(t)?;
    Ok(t)
}

// ---------------------------------------------------------------------------------------------
// OpenSSH on the same machine

fn ssh_common(key: &Path, port: u16) -> Vec<String> {
    vec![
        "-i".into(),
        key.display().to_string(),
        "-o".into(),
        "BatchMode=yes".into(),
        "-o".into(),
        "StrictHostKeyChecking=no".into(),
        "-o".into(),
        "UserKnownHostsFile=/dev/null".into(),
        "-o".into(),
        "LogLevel=ERROR".into(),
        "-o".into(),
        format!("Port={port}"),
    ]
}

fn timed(cmd: &mut Command) -> anyhow::Result<f64> {
    let t = Instant::now();
    let out = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).output()?;
    let s = t.elapsed().as_secs_f64();
    ensure!(
        out.status.success(),
        "{:?} failed: {}",
        cmd,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(s)
}

fn openssh(dir: &Path, files: &Files, runs: usize) -> anyhow::Result<String> {
    std::fs::create_dir_all(dir)?;
    let src_small = dir.join("src-1000");
    let src_big = dir.join("src-100m");
    std::fs::create_dir_all(&src_small)?;
    std::fs::create_dir_all(&src_big)?;
    for (i, b) in files.small.iter().enumerate() {
        std::fs::write(
            src_small.join(name(
                FileKind::UpPlan,
                CM,
                PARTNERS[0],
                &stamp(i as u32 + 1),
            )),
            b.as_slice(),
        )?;
    }
    let big_name = name(FileKind::UpKihonImage, CM, PARTNERS[0], &stamp(1));
    std::fs::write(src_big.join(&big_name), files.jpeg.as_slice())?;
    sync_disk();

    let mut t = String::new();
    writeln!(
        t,
        "## The same files with OpenSSH and cp on this machine (median of {runs} runs [min–max], whole command)\n"
    )?;
    let mut rows: Vec<(String, Vec<f64>, Vec<f64>, &str)> = Vec::new();

    // The floor: cp -r + sync.
    let mut a = Vec::new();
    let mut b = Vec::new();
    for r in 0..runs {
        let d = dir.join(format!("cp-{r}"));
        a.push(timed(Command::new("sh").arg("-c").arg(format!(
            "cp -r '{}' '{}' && sync",
            src_small.display(),
            d.display()
        )))?);
        let d2 = dir.join(format!("cp-big-{r}"));
        b.push(timed(Command::new("sh").arg("-c").arg(format!(
            "cp -r '{}' '{}' && sync",
            src_big.display(),
            d2.display()
        )))?);
    }
    rows.push((
        "`cp -r` + `sync` (local floor: no network, no crypto)".into(),
        a,
        b,
        "yes",
    ));

    let sshd = Path::new("/usr/sbin/sshd");
    let mut sshd_problem = None;
    if !sshd.exists() {
        sshd_problem = Some(
            "/usr/sbin/sshd is not installed (apt-get install -y openssh-server openssh-client)"
                .to_string(),
        );
    }
    let mut server = None;
    let port = port(false)?;
    let key = dir.join("id_ed25519");
    if sshd_problem.is_none() {
        let setup = || -> anyhow::Result<Proc> {
            for (k, args) in [
                (dir.join("host_ed25519"), vec!["-t", "ed25519"]),
                (key.clone(), vec!["-t", "ed25519"]),
            ] {
                let st = Command::new("ssh-keygen")
                    .args(&args)
                    .args(["-q", "-N", "", "-f"])
                    .arg(&k)
                    .stdout(Stdio::null())
                    .status()?;
                ensure!(st.success(), "ssh-keygen failed");
            }
            std::fs::copy(dir.join("id_ed25519.pub"), dir.join("authorized_keys"))?;
            std::fs::create_dir_all("/run/sshd")?;
            let cfg = dir.join("sshd_config");
            std::fs::write(
                &cfg,
                format!(
                    "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\n\
                     PidFile {}\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                     PermitRootLogin prohibit-password\nStrictModes no\nUseDNS no\nLogLevel ERROR\n\
                     Subsystem sftp internal-sftp\n",
                    dir.join("host_ed25519").display(),
                    dir.join("authorized_keys").display(),
                    dir.join("sshd.pid").display()
                ),
            )?;
            let mut c = Command::new(sshd);
            c.arg("-D").arg("-e").arg("-f").arg(&cfg);
            let p = Proc::spawn(c, &dir.join("sshd.log"))?;
            ensure!(
                wait_for(Duration::from_secs(10), || std::net::TcpStream::connect((
                    "127.0.0.1",
                    port
                ))
                .is_ok()),
                "sshd did not listen: {}",
                p.log_tail()
            );
            timed(
                Command::new("ssh")
                    .args(ssh_common(&key, port))
                    .arg("root@127.0.0.1")
                    .arg("true"),
            )?;
            Ok(p)
        };
        match setup() {
            Ok(p) => server = Some(p),
            Err(e) => sshd_problem = Some(format!("{e:#}")),
        }
    }
    if let Some(p) = &sshd_problem {
        let msg = format!(
            "**WARNING: sshd could not run here, so there is no OpenSSH comparison: {p}**\n"
        );
        eprintln!("\n!!!!!!!! {msg}");
        writeln!(t, "{msg}")?;
    }
    if server.is_some() {
        let scp = |legacy: bool, src: &Path, dst: &Path| {
            let mut c = Command::new("scp");
            c.args(ssh_common(&key, port)).arg("-q").arg("-r");
            if legacy {
                c.arg("-O");
            }
            c.arg(src).arg(format!("root@127.0.0.1:{}", dst.display()));
            timed(&mut c)
        };
        let sftp = |src: &Path, dst: &Path| -> anyhow::Result<f64> {
            let batch = dir.join("sftp-batch");
            std::fs::write(
                &batch,
                format!(
                    "mkdir {}\ncd {}\nlcd {}\nput *\n",
                    dst.display(),
                    dst.display(),
                    src.display()
                ),
            )?;
            let mut c = Command::new("sftp");
            c.args(ssh_common(&key, port))
                .arg("-q")
                .arg("-b")
                .arg(&batch)
                .arg("root@127.0.0.1");
            timed(&mut c)
        };
        let mut r_scp = (Vec::new(), Vec::new());
        let mut r_scpo = (Vec::new(), Vec::new());
        let mut r_sftp = (Vec::new(), Vec::new());
        for r in 0..runs {
            let d = |what: &str| dir.join(format!("dst-{what}-{r}"));
            r_scp.0.push(scp(false, &src_small, &d("scp"))?);
            r_scp.1.push(scp(false, &src_big, &d("scp-big"))?);
            r_scpo.0.push(scp(true, &src_small, &d("scpo"))?);
            r_scpo.1.push(scp(true, &src_big, &d("scpo-big"))?);
            r_sftp.0.push(sftp(&src_small, &d("sftp"))?);
            r_sftp.1.push(sftp(&src_big, &d("sftp-big"))?);
            ensure!(
                count(&d("scp")) == 1000 && count(&d("sftp")) == 1000,
                "copies incomplete"
            );
            // Kept, not deleted, for the reason `clear` gives.
            sync_disk();
        }
        let v = Command::new("ssh")
            .arg("-V")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_string())
            .unwrap_or_default();
        rows.push((
            format!("`scp -r` ({v}; SFTP protocol, the default since 9.0)"),
            r_scp.0,
            r_scp.1,
            "no",
        ));
        rows.push((
            "`scp -O -r` (legacy SCP protocol)".into(),
            r_scpo.0,
            r_scpo.1,
            "no",
        ));
        rows.push(("`sftp -b` (`put *`)".into(), r_sftp.0, r_sftp.1, "no"));
    }
    drop(server);
    writeln!(
        t,
        "| tool | 1,000 × 50 KB s | one 100 MB file s | durable (fsync) at the receiver |"
    )?;
    writeln!(t, "|---|---|---|---|")?;
    let cell = |v: &[f64]| {
        format!(
            "{:.3} [{:.3}–{:.3}]",
            median(v),
            v.iter().copied().fold(f64::INFINITY, f64::min),
            v.iter().copied().fold(0.0, f64::max)
        )
    };
    for (label, a, b, durable) in &rows {
        writeln!(t, "| {label} | {} | {} | {durable} |", cell(a), cell(b))?;
    }
    writeln!(t)?;
    Ok(t)
}
