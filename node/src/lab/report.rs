//! The report of a run: what became of every file, read after the run from the offices'
//! receipts, deletion statements and folders — the same records an office would show an
//! auditor — and what is left anywhere it should not be.
//!
//! Everything but `run` is reproducible: it is in virtual time, in sorted maps, and the same
//! scenario and seed give the same report. `run` (wall-clock seconds, memory) is not.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use serde::Serialize;

use super::scenario::{Fault, Scenario};
use super::workload::{Drop, Population};
use crate::federation::Federation;
use crate::receipts::{KeptStatement, read_log};

/// Whether bytes are a sealed envelope.
pub(crate) fn is_sealed(b: &[u8]) -> bool {
    use renkei_protocol::envelope::{MAGIC, TYPE_ENVELOPE};
    b.windows(MAGIC.len() + 1)
        .any(|w| &w[..MAGIC.len()] == MAGIC && w[MAGIC.len()] == TYPE_ENVELOPE)
}

/// One point of the run's time series.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Sample {
    /// Milliseconds since the start (virtual).
    pub t_ms: u64,
    /// Files waiting in every office's queue.
    pub queued: u64,
    /// Files delivered and acknowledged so far.
    pub delivered: u64,
    /// Sealed bytes kept in every mailbox.
    pub mailbox_bytes: u64,
}

/// What became of a file.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum FileOutcome {
    /// Acknowledged by its recipient.
    Delivered,
    /// Refused by its recipient, or not deliverable (its recipient revoked): in the sender's
    /// `rejected/` with a report.
    Rejected,
    /// Not taken from the mailbox in time: in the sender's `rejected/`, reported.
    Expired,
    /// Still in its sender's outbox and queue when the run ended.
    Pending,
    /// Nowhere: neither delivered, nor reported, nor still held by its sender.
    Lost,
}

/// One file's fate.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct FileRecord {
    /// Its name.
    pub name: String,
    /// When it was dropped (ms since the start).
    pub at_ms: u64,
    /// When its ack was verified by the sender (ms since the start).
    pub acked_ms: Option<u64>,
    /// Its fate.
    pub outcome: FileOutcome,
    /// `direct` or `mailbox` when delivered.
    pub path: Option<&'static str>,
    /// Sender and recipient office indexes.
    pub from: usize,
    /// Recipient.
    pub to: usize,
    /// `plan`, `change`, `delete`, `actual`.
    pub phase: &'static str,
}

/// A fault and what it did.
#[derive(Debug, Clone, Serialize)]
pub struct FaultReport {
    /// Its kind.
    pub kind: &'static str,
    /// Starts (ms since the start).
    pub at_ms: u64,
    /// Ends (ms since the start), for faults that last.
    pub end_ms: Option<u64>,
    /// The offices it hit (`cm0`, `sv3`, …).
    pub offices: Vec<String>,
    /// Its effects (counts; milliseconds for `*_ms`).
    pub effects: BTreeMap<String, u64>,
    #[serde(skip)]
    marks: BTreeMap<String, u64>,
    #[serde(skip)]
    hit: Vec<usize>,
}

impl FaultReport {
    pub(crate) fn new(
        _i: usize,
        f: &Fault,
        at: u64,
        end: Option<u64>,
        hit: &[usize],
        pop: &Population,
    ) -> FaultReport {
        FaultReport {
            kind: f.kind(),
            at_ms: at,
            end_ms: end,
            offices: hit.iter().map(|i| pop.offices[*i].name.clone()).collect(),
            effects: BTreeMap::new(),
            marks: BTreeMap::new(),
            hit: hit.to_vec(),
        }
    }

    /// Adds to an effect.
    pub(crate) fn count(&mut self, what: &str, n: u64) {
        *self.effects.entry(what.into()).or_default() += n;
    }

    /// Notes a value for later (not reported).
    pub(crate) fn mark(&mut self, what: &str, n: u64) {
        self.marks.insert(what.into(), n);
    }

    /// A noted value.
    pub(crate) fn get(&self, what: &str) -> u64 {
        self.marks.get(what).copied().unwrap_or(0)
    }
}

/// Counts of one group of files.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    /// Dropped into outboxes.
    pub sent: u64,
    /// Acknowledged.
    pub delivered: u64,
    /// Median drop-to-ack, ms.
    pub p50_ms: u64,
    /// Longest drop-to-ack, ms.
    pub max_ms: u64,
}

/// How big the run was.
#[derive(Debug, Clone, Serialize)]
pub struct Scale {
    /// Offices in all.
    pub offices: usize,
    /// Care-management offices.
    pub care_management: usize,
    /// Service offices.
    pub service: usize,
    /// Directory nodes.
    pub directory_nodes: usize,
    /// Regions.
    pub regions: usize,
    /// (Care-management office, partner) pairs.
    pub partner_pairs: usize,
    /// Files dropped.
    pub files: usize,
    /// Plaintext bytes dropped.
    pub bytes: u64,
    /// Simulated days.
    pub virtual_days: u32,
}

/// What is not part of the reproducible report: how long the run took on this machine.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunInfo {
    /// Wall-clock seconds of the whole run (set-up included).
    pub wall_secs: f64,
    /// The process's peak resident memory, kB (Linux).
    pub peak_rss_kb: Option<u64>,
    /// Where the federation was kept (`--keep`).
    pub folder: Option<String>,
    /// The renkei version that ran it.
    pub version: String,
    /// Moves of the virtual clock.
    pub steps: u64,
}

/// The report of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The scenario's name.
    pub scenario: String,
    /// The seed it ran with.
    pub seed: u64,
    /// Files dropped into outboxes.
    pub sent: u64,
    /// Files acknowledged by their recipient (exactly once each).
    pub delivered: u64,
    /// Extra copies: a file written into an inbox more than once.
    pub duplicates: u64,
    /// Files nowhere: neither delivered, reported rejected or expired, nor still held by their
    /// sender.
    pub lost: u64,
    /// Files refused or undeliverable, reported to their sender in `rejected/`.
    pub rejected: u64,
    /// Files not taken from a mailbox in time, reported to their sender in `rejected/`.
    pub expired: u64,
    /// Files still in their sender's outbox and queue at the end.
    pub pending: u64,
    /// Bytes of sealed or plain file content held anywhere but the recipient's inbox and the
    /// sender's own outbox, sent/ and rejected/ (mailboxes, partial files, other offices …),
    /// found by scanning every folder of every office and directory node after the run.
    pub residual_bytes: u64,
    /// Where those bytes are (paths relative to the federation folder), at most 20.
    pub residual_files: Vec<String>,
    /// Median drop-to-ack, virtual ms.
    pub p50_ms: u64,
    /// 99th percentile drop-to-ack, virtual ms.
    pub p99_ms: u64,
    /// Longest drop-to-ack, virtual ms.
    pub max_ms: u64,
    /// Delivered files by the way they went: `direct`, `relayed`, `mailbox`.
    pub by_path: BTreeMap<String, u64>,
    /// By workload phase.
    pub by_phase: BTreeMap<String, Counts>,
    /// Each fault and its effects.
    pub faults: Vec<FaultReport>,
    /// Most files waiting in all queues at once.
    pub peak_queue_depth: u64,
    /// Most sealed bytes in all mailboxes at once.
    pub peak_mailbox_bytes: u64,
    /// How big the run was.
    pub scale: Scale,
    /// Acks per virtual hour (index: hour since the start).
    pub delivered_per_hour: Vec<u64>,
    /// Drop-to-ack latencies by bucket (upper bounds, `≤1m` … `>7d`).
    pub latency_buckets: BTreeMap<String, u64>,
    /// Files not delivered, with what became of them (at most 200, by name).
    pub undelivered: BTreeMap<String, FileOutcome>,
    /// The time series (at most 1,500 points).
    pub series: Vec<Sample>,
    /// Not reproducible: how the run went on this machine.
    pub run: RunInfo,
}

impl Report {
    /// The reproducible part as JSON (everything but `run`).
    pub fn reproducible(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(m) = v.as_object_mut() {
            m.remove("run");
        }
        v
    }
}

/// Latency buckets: (label, upper bound in ms).
pub(crate) const BUCKETS: [(&str, u64); 8] = [
    ("a ≤1m", 60_000),
    ("b ≤10m", 600_000),
    ("c ≤1h", 3_600_000),
    ("d ≤6h", 21_600_000),
    ("e ≤1d", 86_400_000),
    ("f ≤3d", 259_200_000),
    ("g ≤7d", 604_800_000),
    ("h >7d", u64::MAX),
];

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn counts(records: &[&FileRecord]) -> Counts {
    let mut lat: Vec<u64> = records
        .iter()
        .filter_map(|r| r.acked_ms.map(|a| a.saturating_sub(r.at_ms)))
        .collect();
    lat.sort_unstable();
    Counts {
        sent: records.len() as u64,
        delivered: records
            .iter()
            .filter(|r| r.outcome == FileOutcome::Delivered)
            .count() as u64,
        p50_ms: percentile(&lat, 0.5),
        max_ms: lat.last().copied().unwrap_or(0),
    }
}

/// The offset of an office's clock at its own time `own_ms` (ms since the start, by its clock).
fn offset_at(offsets: &[(u64, i64)], own_ms: u64) -> i64 {
    offsets
        .iter()
        .rev()
        .find(|(from, off)| (own_ms as i64 - off) >= *from as i64)
        .map_or(0, |(_, o)| *o)
}

/// A sent receipt as the report needs it: (message id, accepted, ack verified at ms).
type SentReceipt = (String, bool, u64);

/// Builds the report from what the offices and directory nodes hold after the run.
#[allow(clippy::too_many_arguments)]
pub(crate) fn build(
    s: &Scenario,
    pop: &Population,
    drops: &[Drop],
    plan: &Federation,
    mut faults: Vec<FaultReport>,
    t0: u64,
    offsets: &[Vec<(u64, i64)>],
    samples: Vec<Sample>,
    in_lost_mailbox: &BTreeMap<String, usize>,
) -> anyhow::Result<Report> {
    // Receipts: sent ones by (sender, file), received ones by (recipient, file).
    let mut sent: HashMap<(usize, String), Vec<SentReceipt>> = HashMap::new();
    let mut received: HashMap<(usize, String), u64> = HashMap::new();
    let mut via_mailbox: HashMap<usize, BTreeSet<String>> = HashMap::new();
    for (i, o) in plan.offices.iter().enumerate() {
        let log = read_log(&o.home.receipts()).map_err(|e| {
            anyhow::anyhow!(
                "office {} ({}): receipts: {e}",
                pop.offices[i].name,
                o.number
            )
        })?;
        for r in log {
            if r.direction == "sent" {
                sent.entry((i, r.file_name.clone())).or_default().push((
                    r.message_id.clone(),
                    r.verdict == "accepted",
                    r.finished_ms,
                ));
            } else if r.verdict == "accepted" {
                *received.entry((i, r.file_name.clone())).or_default() += 1;
            }
        }
        if let Ok(text) = std::fs::read_to_string(o.home.statements()) {
            for line in text.lines() {
                if let Ok(k) = serde_json::from_str::<KeptStatement>(line)
                    && k.reason == "acked"
                {
                    via_mailbox.entry(i).or_default().insert(k.message_id);
                }
            }
        }
    }
    let mut records = Vec::new();
    let mut duplicates = 0;
    for d in drops {
        let home = &plan.offices[d.from].home;
        let receipts = sent.get(&(d.from, d.name.clone()));
        let accepted = receipts.and_then(|r| r.iter().find(|x| x.1));
        let got = received.get(&(d.to, d.name.clone())).copied().unwrap_or(0);
        duplicates += got.saturating_sub(1);
        duplicates += receipts
            .map_or(0, |r| r.iter().filter(|x| x.1).count() as u64)
            .saturating_sub(1);
        let (outcome, acked, path) = if let Some((id, _, finished)) = accepted {
            let own = finished.saturating_sub(t0);
            let base = (own as i64 - offset_at(&offsets[d.from], own)).max(0) as u64;
            let mailbox = via_mailbox.get(&d.from).is_some_and(|m| m.contains(id));
            (
                FileOutcome::Delivered,
                Some(base.max(d.at_ms)),
                Some(if mailbox { "mailbox" } else { "direct" }),
            )
        } else if receipts.is_some() {
            (FileOutcome::Rejected, None, None)
        } else if home.rejected().join(&d.name).exists() {
            let report =
                std::fs::read_to_string(home.rejected().join(crate::outbox::report_name(&d.name)))
                    .unwrap_or_default();
            if report.contains("MAILBOX_EXPIRED") {
                (FileOutcome::Expired, None, None)
            } else {
                (FileOutcome::Rejected, None, None)
            }
        } else if home.outbox().join(&d.name).exists() {
            (FileOutcome::Pending, None, None)
        } else {
            (FileOutcome::Lost, None, None)
        };
        records.push(FileRecord {
            name: d.name.clone(),
            at_ms: d.at_ms,
            acked_ms: acked,
            outcome,
            path,
            from: d.from,
            to: d.to,
            phase: d.phase,
        });
    }
    let (residual_bytes, residual_files) = residual(plan, drops)?;

    let mut lat: Vec<u64> = records
        .iter()
        .filter_map(|r| r.acked_ms.map(|a| a - r.at_ms))
        .collect();
    lat.sort_unstable();
    let n_of = |o: FileOutcome| records.iter().filter(|r| r.outcome == o).count() as u64;
    let mut by_path: BTreeMap<String, u64> = ["direct", "relayed", "mailbox"]
        .map(|p| (p.to_string(), 0))
        .into();
    for r in &records {
        if let Some(p) = r.path {
            *by_path.entry(p.into()).or_default() += 1;
        }
    }
    let mut by_phase = BTreeMap::new();
    for phase in ["plan", "change", "delete", "actual"] {
        let these: Vec<&FileRecord> = records.iter().filter(|r| r.phase == phase).collect();
        if !these.is_empty() {
            by_phase.insert(phase.to_string(), counts(&these));
        }
    }
    let hours = (u64::from(s.days) * 24) as usize;
    let mut delivered_per_hour = vec![0u64; hours];
    for r in &records {
        if let Some(a) = r.acked_ms {
            let h = ((a / 3_600_000) as usize).min(hours.saturating_sub(1));
            delivered_per_hour[h] += 1;
        }
    }
    let mut latency_buckets: BTreeMap<String, u64> =
        BUCKETS.iter().map(|(l, _)| (l.to_string(), 0)).collect();
    for l in &lat {
        if let Some((label, _)) = BUCKETS.iter().find(|(_, max)| l <= max) {
            *latency_buckets.entry(label.to_string()).or_default() += 1;
        }
    }
    // Effects of each fault on the files it touched.
    for (fi, f) in faults.iter_mut().enumerate() {
        let end = f.end_ms.unwrap_or(f.at_ms + 86_400_000);
        let during: Vec<&FileRecord> = records
            .iter()
            .filter(|r| r.at_ms >= f.at_ms && r.at_ms < end)
            .collect();
        let c = counts(&during);
        f.effects.insert("files_dropped_during".into(), c.sent);
        f.effects.insert("delivered_of_those".into(), c.delivered);
        f.effects.insert("p50_ms_of_those".into(), c.p50_ms);
        f.effects.insert("max_ms_of_those".into(), c.max_ms);
        f.effects.insert(
            "via_mailbox_of_those".into(),
            during.iter().filter(|r| r.path == Some("mailbox")).count() as u64,
        );
        if !f.hit.is_empty() {
            // A fault of a moment (revocation, rotation, crash) touches files to the end.
            let end = f.end_ms.unwrap_or(u64::MAX);
            let hit: BTreeSet<usize> = f.hit.iter().copied().collect();
            let touching: Vec<&FileRecord> = records
                .iter()
                .filter(|r| {
                    (hit.contains(&r.from) || hit.contains(&r.to))
                        && r.at_ms < end
                        && r.acked_ms.is_none_or(|a| a >= f.at_ms)
                })
                .collect();
            let c = counts(&touching);
            f.effects.insert("files_of_hit_offices".into(), c.sent);
            f.effects.insert("delivered_of_hit".into(), c.delivered);
            f.effects.insert("p50_ms_of_hit".into(), c.p50_ms);
            f.effects.insert("max_ms_of_hit".into(), c.max_ms);
            for (key, o) in [
                ("rejected_of_hit", FileOutcome::Rejected),
                ("expired_of_hit", FileOutcome::Expired),
                ("pending_of_hit", FileOutcome::Pending),
                ("lost_of_hit", FileOutcome::Lost),
            ] {
                f.effects.insert(
                    key.into(),
                    touching.iter().filter(|r| r.outcome == o).count() as u64,
                );
            }
        }
        if f.kind == "mailbox-lost" {
            let affected: Vec<&FileRecord> = records
                .iter()
                .filter(|r| in_lost_mailbox.get(&r.name) == Some(&fi))
                .collect();
            let of = |o: FileOutcome| affected.iter().filter(|r| r.outcome == o).count() as u64;
            f.effects
                .insert("resent".into(), of(FileOutcome::Delivered));
            f.effects.insert("expired".into(), of(FileOutcome::Expired));
            f.effects
                .insert("rejected".into(), of(FileOutcome::Rejected));
            f.effects.insert("pending".into(), of(FileOutcome::Pending));
            f.effects.insert("lost".into(), of(FileOutcome::Lost));
        }
    }
    let peak_queue_depth = samples.iter().map(|x| x.queued).max().unwrap_or(0);
    let peak_mailbox_bytes = samples.iter().map(|x| x.mailbox_bytes).max().unwrap_or(0);
    let series = thin(samples, 1500);
    let f = &s.federation;
    Ok(Report {
        scenario: s.name.clone(),
        seed: s.seed,
        sent: records.len() as u64,
        delivered: n_of(FileOutcome::Delivered),
        duplicates,
        lost: n_of(FileOutcome::Lost),
        rejected: n_of(FileOutcome::Rejected),
        expired: n_of(FileOutcome::Expired),
        pending: n_of(FileOutcome::Pending),
        residual_bytes,
        residual_files,
        p50_ms: percentile(&lat, 0.5),
        p99_ms: percentile(&lat, 0.99),
        max_ms: lat.last().copied().unwrap_or(0),
        by_path,
        by_phase,
        faults,
        peak_queue_depth,
        peak_mailbox_bytes,
        scale: Scale {
            offices: pop.offices.len(),
            care_management: f.care_management,
            service: f.service,
            directory_nodes: f.directory_nodes,
            regions: f.regions,
            partner_pairs: pop.partners.values().map(Vec::len).sum(),
            files: drops.len(),
            bytes: drops.iter().map(|d| d.bytes.len() as u64).sum(),
            virtual_days: s.days,
        },
        delivered_per_hour,
        latency_buckets,
        undelivered: records
            .iter()
            .filter(|r| r.outcome != FileOutcome::Delivered)
            .map(|r| (r.name.clone(), r.outcome))
            .take(200)
            .collect(),
        series,
        run: RunInfo {
            version: env!("CARGO_PKG_VERSION").into(),
            ..Default::default()
        },
    })
}

/// At most `max` samples, evenly taken, the first and the last kept, and the peaks of queue
/// and mailbox kept where they fall.
fn thin(samples: Vec<Sample>, max: usize) -> Vec<Sample> {
    if samples.len() <= max {
        return samples;
    }
    let every = samples.len().div_ceil(max);
    let mut out = Vec::new();
    for chunk in samples.chunks(every) {
        // The chunk's point with the deepest queue stands for it.
        if let Some(p) = chunk.iter().max_by_key(|x| (x.queued, x.mailbox_bytes)) {
            out.push(p.clone());
        }
    }
    out
}

/// Bytes of file content (sealed, or a dropped file's plaintext) anywhere but where it
/// belongs: its recipient's inbox, its sender's outbox, sent/ and rejected/.
fn residual(plan: &Federation, drops: &[Drop]) -> anyhow::Result<(u64, Vec<String>)> {
    let mut hashes: HashMap<[u8; 32], ()> = HashMap::new();
    let mut belongs: HashMap<String, (usize, usize)> = HashMap::new();
    for d in drops {
        hashes.insert(renkei_protocol::sha256(&d.bytes), ());
        belongs.insert(d.name.clone(), (d.from, d.to));
    }
    let homes: HashMap<std::path::PathBuf, usize> = plan
        .offices
        .iter()
        .enumerate()
        .map(|(i, o)| (o.home.root.clone(), i))
        .collect();
    let mut bytes = 0;
    let mut where_ = Vec::new();
    let mut stack = vec![plan.dir.clone()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut entries: Vec<_> = rd.flatten().map(|e| e.path()).collect();
        entries.sort();
        for p in entries {
            let Ok(meta) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if meta.is_dir() {
                stack.push(p);
                continue;
            }
            let Ok(b) = std::fs::read(&p) else { continue };
            if !(is_sealed(&b) || hashes.contains_key(&renkei_protocol::sha256(&b))) {
                continue;
            }
            if allowed(&p, &homes, &belongs) {
                continue;
            }
            bytes += b.len() as u64;
            if where_.len() < 20 {
                where_.push(
                    p.strip_prefix(&plan.dir)
                        .unwrap_or(&p)
                        .display()
                        .to_string(),
                );
            }
        }
    }
    where_.sort();
    Ok((bytes, where_))
}

fn allowed(
    p: &Path,
    homes: &HashMap<std::path::PathBuf, usize>,
    belongs: &HashMap<String, (usize, usize)>,
) -> bool {
    let (Some(name), Some(folder)) = (p.file_name(), p.parent()) else {
        return false;
    };
    let Some(&(from, to)) = belongs.get(&*name.to_string_lossy()) else {
        return false;
    };
    let (Some(kind), Some(home)) = (folder.file_name(), folder.parent()) else {
        return false;
    };
    let Some(&office) = homes.get(home) else {
        return false;
    };
    match &*kind.to_string_lossy() {
        "inbox" => office == to,
        "outbox" | "sent" | "rejected" => office == from,
        _ => false,
    }
}
