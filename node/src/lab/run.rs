//! Runs a scenario: the federation built by [`crate::federation`], every node the production
//! node in this process on libp2p's in-memory transport, on one virtual clock.
//!
//! The run is a loop over virtual time on a single-threaded tokio runtime whose own timers are
//! paused: after each move of the clock, the loop waits until every task of every node has
//! nothing left to do (tokio moves its paused time only when the runtime is idle and no
//! blocking work is running), applies the events due (files dropped into outboxes, faults
//! starting and ending), and moves the clock again — by `step_secs` while files are on their
//! way, doubling up to `max_step_secs` while nothing moves, straight to the next event when
//! nothing is pending. So what happens at a virtual time does not depend on how fast the
//! machine is, and a seed replays a run.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use libp2p::{Multiaddr, PeerId};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha20Rng;

use super::report::{FaultReport, Report, Sample};
use super::scenario::{Fault, Offices, Role, Scenario, parse_at, parse_duration};
use super::workload::{self, Drop, Population};
use crate::env::{Clock, FaultPoint, ManualClock};
use crate::federation::{Federation, RunningFederation, StartOptions, Transport};
use crate::mailbox::MailboxConfig;
use crate::net::{LinkVerdict, MemoryLinks};
use crate::state::lock;

/// How a run is made (besides its scenario).
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Overrides the scenario's seed.
    pub seed: Option<u64>,
    /// Where the federation is built (default: a temporary folder, in memory when the system
    /// has `/dev/shm`), removed afterwards unless `keep`.
    pub dir: Option<PathBuf>,
    /// Keep the federation's folder after the run.
    pub keep: bool,
    /// Stop at Ctrl-C or SIGTERM, removing the temporary folder (unless `keep`), rather than
    /// leaving gigabytes in `/dev/shm` (the command line sets it).
    pub interruptible: bool,
}

/// A node of the in-memory network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Node {
    Office(usize),
    Directory(usize),
}

/// The network's state the lab's faults set: who may dial whom, loss and latency.
struct LinkState {
    peers: HashMap<PeerId, Node>,
    addrs: HashMap<Multiaddr, Node>,
    loss: f64,
    latency_ms: u64,
    /// Active partitions: (offices on one side, directory nodes only on that side).
    partitions: BTreeMap<usize, (BTreeSet<usize>, BTreeSet<usize>)>,
    /// The run's seed for link loss. Whether a dial is lost depends on the seed, the two nodes
    /// and how many times the one has dialled the other — not on the order in which the
    /// runtime's threads happen to dial, so the same seed loses the same dials.
    seed: u64,
    dials: HashMap<(Node, Node), u64>,
    /// Dials refused by loss and by partitions so far.
    lost: u64,
    cut: u64,
}

struct Links {
    state: Mutex<LinkState>,
    clock: ManualClock,
}

impl LinkState {
    fn side(&self, p: usize, n: Node) -> Option<bool> {
        let (offices, nodes) = self.partitions.get(&p)?;
        Some(match n {
            Node::Office(i) => offices.contains(&i),
            // A directory node not cut stays reachable from both sides.
            Node::Directory(d) => {
                if nodes.contains(&d) {
                    true
                } else {
                    return None;
                }
            }
        })
    }
}

impl MemoryLinks for Links {
    fn dial(&self, from: &PeerId, to: &Multiaddr) -> LinkVerdict {
        let mut st = lock(&self.state);
        let (Some(&a), Some(&b)) = (st.peers.get(from), st.addrs.get(to)) else {
            return LinkVerdict::Open;
        };
        let parts: Vec<usize> = st.partitions.keys().copied().collect();
        for p in parts {
            if let (Some(x), Some(y)) = (st.side(p, a), st.side(p, b))
                && x != y
            {
                st.cut += 1;
                return LinkVerdict::Lost;
            }
        }
        if st.loss > 0.0 {
            let loss = st.loss;
            let n = {
                let c = st.dials.entry((a, b)).or_insert(0);
                *c += 1;
                *c
            };
            let pair = |n: Node| match n {
                Node::Office(i) => i as u64,
                Node::Directory(d) => (1 << 40) | d as u64,
            };
            let mut key = [0u8; 32];
            for (k, v) in [st.seed, pair(a), pair(b), n].into_iter().enumerate() {
                key[k * 8..k * 8 + 8].copy_from_slice(&v.to_le_bytes());
            }
            if ChaCha20Rng::from_seed(key).random_bool(loss) {
                st.lost += 1;
                return LinkVerdict::Lost;
            }
        }
        if st.latency_ms > 0 {
            let until = self.clock.now_ms() + st.latency_ms;
            return LinkVerdict::After(self.clock.sleep_until(until));
        }
        LinkVerdict::Open
    }
}

/// Something due at a virtual time.
#[derive(Debug, Clone)]
enum Event {
    /// Drop file `i` of the month.
    Drop(usize),
    /// Fault `i` starts.
    Start(usize),
    /// Fault `i` ends.
    End(usize),
    /// Office `i` starts again after fault `f` (a crash).
    Restart(usize, usize),
    /// Office `i` restarts under its new key (fault `f`, a rotation).
    Rekey(usize, usize),
}

/// The run's state besides the federation.
struct Lab<'a> {
    s: &'a Scenario,
    pop: Population,
    drops: Vec<Drop>,
    fed: RunningFederation,
    clock: ManualClock,
    t0: u64,
    links: Arc<Links>,
    events: BTreeMap<(u64, u64), Event>,
    next_event: u64,
    rng: ChaCha20Rng,
    /// Why each office is down (a count of reasons: off, crashed, skew restart …).
    down: Vec<u32>,
    /// Offices' clock offsets over time: (from ms since start, offset ms).
    offsets: Vec<Vec<(u64, i64)>>,
    /// Offices each fault hit.
    hit: Vec<Vec<usize>>,
    faults: Vec<FaultReport>,
    /// Crash fault armed at a point, by office: the fault's index.
    armed: HashMap<usize, usize>,
    last_queued: Vec<usize>,
    last_delivered: Vec<u64>,
    samples: Vec<Sample>,
    last_mailbox_scan: Option<u64>,
    mailbox_bytes: u64,
    /// Files whose envelopes were in a mailbox when it was lost: (file name, fault index).
    in_lost_mailbox: BTreeMap<String, usize>,
    mailbox_keys: Vec<String>,
    steps: u64,
}

/// Runs `s` and returns its report. It puts the whole process's nodes on one thread
/// ([`crate::env::run_on_one_thread`]) for good: call it from a process of its own (the
/// `renkei lab` command), not beside nodes serving offices.
pub fn run(s: &Scenario, opts: &RunOptions) -> anyhow::Result<Report> {
    let mut s = s.clone();
    if let Some(seed) = opts.seed {
        s.seed = seed;
    }
    let wall = std::time::Instant::now();
    let pop = Population::of(&s);
    let drops = workload::month(&s, &pop);
    let tmp;
    let dir = match &opts.dir {
        Some(d) => {
            anyhow::ensure!(
                !d.exists() || std::fs::read_dir(d)?.next().is_none(),
                "フォルダ {} は空ではありません。空のフォルダを指定してください / {} is not empty: give an empty folder",
                d.display(),
                d.display()
            );
            d.clone()
        }
        None => {
            let shm = Path::new("/dev/shm");
            let need = folder_estimate(&pop, &drops);
            let room = mem_available().map_or(0, |a| a / 3);
            let in_memory = shm.is_dir() && need <= room;
            if !in_memory && std::env::var_os("RENKEI_LAB_PROGRESS").is_some() {
                eprintln!(
                    "lab: the federation's folders (about {} MB) go to the temporary folder on disk, \
                     not /dev/shm ({} MB is a third of the memory available)",
                    need >> 20,
                    room >> 20
                );
            }
            let t = if in_memory {
                tempfile::Builder::new()
                    .prefix("renkei-lab-")
                    .tempdir_in(shm)
            } else {
                tempfile::Builder::new().prefix("renkei-lab-").tempdir()
            }
            .context("temporary folder for the lab")?;
            let p = t.path().to_path_buf();
            tmp = t;
            if opts.keep {
                let _ = tmp.keep();
            }
            p
        }
    };
    // Tokio's own timers are paused: they move only when every task is idle, which is how the
    // run knows that a virtual moment's work is done.
    // Its nodes' file work runs on a few threads, not tokio's default of up to 512: on two
    // cores more only wait, and each holds memory of its own.
    // Every node's file work on this one thread too, and no outbox watchers: nothing but the
    // seed decides the course of the run.
    crate::env::run_on_one_thread();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .max_blocking_threads(16)
        .build()?;
    let outcome = rt.block_on(async {
        if !opts.interruptible {
            return Some(run_in(&s, pop, drops, &dir).await);
        }
        tokio::select! {
            biased;
            r = run_in(&s, pop, drops, &dir) => Some(r),
            _ = interrupted() => None,
        }
    });
    let Some(outcome) = outcome else {
        // The nodes' blocking work is given a moment to end; the folder goes with `tmp`.
        rt.shutdown_timeout(Duration::from_secs(5));
        anyhow::bail!(
            "中断しました。一時フォルダ {} は削除します / interrupted: the temporary folder {} is removed{}",
            dir.display(),
            dir.display(),
            if opts.keep { " (kept: --keep)" } else { "" }
        );
    };
    let mut report = outcome?;
    drop(rt);
    report.run.wall_secs = (wall.elapsed().as_secs_f64() * 100.0).round() / 100.0;
    report.run.folder = opts.keep.then(|| dir.display().to_string());
    report.run.peak_rss_kb = peak_rss_kb();
    if opts.dir.is_none() && !opts.keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(report)
}

/// Ctrl-C, or SIGTERM where there is one (`timeout`, a service manager).
async fn interrupted() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    ctrl_c().await;
}

/// Ctrl-C; never, where it cannot be listened for.
async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The process's peak resident memory (Linux), kB.
fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Roughly how much the federation's folders will hold at the end of the run: every file
/// twice (the sender's sent/ and the recipient's inbox), each office's copy of the directory
/// (about 140 bytes an office) and its keys, settings and receipts.
fn folder_estimate(pop: &Population, drops: &[Drop]) -> u64 {
    let offices = pop.offices.len() as u64;
    let files: u64 = drops.iter().map(|d| d.bytes.len() as u64).sum();
    2 * files + offices * offices * 140 + offices * (64 << 10)
}

/// Memory the kernel says can still be had (Linux), bytes.
fn mem_available() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: u64 = info
        .lines()
        .find(|l| l.starts_with("MemAvailable:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb << 10)
}

async fn run_in(
    s: &Scenario,
    pop: Population,
    drops: Vec<Drop>,
    dir: &Path,
) -> anyhow::Result<Report> {
    let setup = std::time::Instant::now();
    let progress = std::env::var_os("RENKEI_LAB_PROGRESS").is_some();
    let f = &s.federation;
    let oc = s.office_config.clone();
    let mut b = Federation::builder(dir)
        .transport(Transport::Memory)
        .directory_nodes(f.directory_nodes)
        .tune(move |c| {
            c.settle_ms = 0;
            // The lab tells an office of each file it drops; the periodic rescan is only
            // the safety net.
            c.rescan_secs = 3600;
            // Nobody reads the offices' status files during a run: an hourly write, not one
            // per office at every step of the clock.
            c.status_secs = 3600;
            c.directory_refresh_secs = oc.directory_refresh_secs;
            c.retry_initial_ms = 1000;
            c.retry_max_secs = oc.retry_max_secs;
            c.io_timeout_secs = 30;
            c.mailbox_after_secs = oc.mailbox_after_secs;
            c.mailbox_poll_secs = oc.mailbox_poll_secs;
            // The lab restarts a node under its new key itself.
            c.switch_keys = false;
            // Every in-memory listener can be dialled: no relay slots, no AutoNAT.
            c.reachability = crate::net::Reachability::Public;
        });
    for r in 0..f.regions {
        let p = workload::prefecture(r);
        b = b.region(&format!("{p:02}-lab{r}"), &format!("研究用地域 {r}"), &[p]);
    }
    for o in &pop.offices {
        b = b.office(&o.number, &format!("研究用事業所 {}", o.name), &[o.kind]);
    }
    let plan = {
        // The same seed, the same keys (they order the nodes in libp2p's tables and ours).
        let _keys = crate::admin::SeededKeys::new(s.seed ^ 0x6b65_7973);
        b.create()?
    };
    // Snapshots are dated by the wall clock; the run covers `days` of virtual time, so they
    // are made valid for the whole run (an association republishes them every few days).
    for r in &plan.regions {
        let mut ws = crate::admin::load_workspace(&r.folder)?;
        ws.validity_secs = (u64::from(s.days) + 30) * 86400;
        crate::admin::save_workspace(&r.folder, &ws)?;
    }
    plan.publish()?;
    mirror(&plan)?;
    if progress {
        eprintln!(
            "lab: {} offices and {} files created in {:.1} s",
            pop.offices.len(),
            drops.len(),
            setup.elapsed().as_secs_f64()
        );
    }

    let mut addrs = HashMap::new();
    let mut peers = HashMap::new();
    for (i, o) in plan.offices.iter().enumerate() {
        for a in o.home.config()?.listen {
            addrs.insert(a.parse::<Multiaddr>()?, Node::Office(i));
        }
        for k in o.home.load_keys()? {
            if let Some(p) = crate::net::peer_id_of(&k.identity.verifying_key().to_bytes()) {
                peers.insert(p, Node::Office(i));
            }
        }
    }
    let mut mailbox_keys = Vec::new();
    for (d, n) in plan.directory_nodes.iter().enumerate() {
        addrs.insert(n.addr.parse::<Multiaddr>()?, Node::Directory(d));
        let key = crate::admin::read_secret(&n.key_file)?
            .verifying_key()
            .to_bytes();
        mailbox_keys.push(hex::encode(key));
        if let Some(p) = crate::net::peer_id_of(&key) {
            peers.insert(p, Node::Directory(d));
        }
    }
    let addr_list: Vec<Multiaddr> = addrs.keys().cloned().collect();
    let n_offices = plan.offices.len();
    let (fed, clock) = plan
        .start_on_test_clock(
            s.seed,
            StartOptions {
                mailbox: Some(MailboxConfig {
                    ttl_secs: s.office_config.mailbox_ttl_days * 86400,
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await?;
    if progress {
        eprintln!("lab: started after {:.1} s", setup.elapsed().as_secs_f64());
    }
    let links = Arc::new(Links {
        state: Mutex::new(LinkState {
            peers,
            addrs,
            loss: 0.0,
            latency_ms: 0,
            partitions: BTreeMap::new(),
            seed: s.seed ^ 0x6c69_6e6b,
            dials: HashMap::new(),
            lost: 0,
            cut: 0,
        }),
        clock: clock.clone(),
    });
    crate::net::set_memory_links(&addr_list, Some(links.clone() as Arc<dyn MemoryLinks>));
    let t0 = clock.now_ms();
    let mut lab = Lab {
        s,
        pop,
        drops,
        fed,
        clock,
        t0,
        links,
        events: BTreeMap::new(),
        next_event: 0,
        rng: ChaCha20Rng::seed_from_u64(s.seed ^ 0x6661_756c),
        down: vec![0; n_offices],
        offsets: vec![vec![(0, 0)]; n_offices],
        hit: Vec::new(),
        faults: Vec::new(),
        armed: HashMap::new(),
        last_queued: vec![0; n_offices],
        last_delivered: vec![0; n_offices],
        samples: Vec::new(),
        last_mailbox_scan: None,
        mailbox_bytes: 0,
        in_lost_mailbox: BTreeMap::new(),
        mailbox_keys,
        steps: 0,
    };
    lab.schedule()?;
    let result = lab.drive().await;
    crate::net::set_memory_links(&addr_list, None);
    result?;
    lab.finish().await
}

impl Lab<'_> {
    fn now(&self) -> u64 {
        self.clock.now_ms().saturating_sub(self.t0)
    }

    fn push(&mut self, at: u64, e: Event) {
        self.next_event += 1;
        self.events.insert((at, self.next_event), e);
    }

    /// The offices `o` names or chooses (by the seed), sorted.
    fn choose(&mut self, o: &Offices) -> Vec<usize> {
        let cm = self.s.federation.care_management;
        let mut out: BTreeSet<usize> = o
            .offices
            .iter()
            .filter_map(|n| self.pop.index_of(n, cm))
            .collect();
        if o.share > 0.0 {
            let pool: Vec<usize> = (0..self.pop.offices.len())
                .filter(|i| match o.role {
                    Role::Any => true,
                    Role::Cm => self.pop.offices[*i].cm,
                    Role::Service => !self.pop.offices[*i].cm,
                })
                .collect();
            let n = ((pool.len() as f64) * o.share).round() as usize;
            for k in rand::seq::index::sample(&mut self.rng, pool.len(), n.min(pool.len())) {
                out.insert(pool[k]);
            }
        }
        out.into_iter().collect()
    }

    fn schedule(&mut self) -> anyhow::Result<()> {
        for i in 0..self.drops.len() {
            let res = self.s.drop_resolution_secs.max(1) * 1000;
            // The drop's time is when it happens: latencies are measured from it.
            let at = self.drops[i].at_ms.div_ceil(res) * res;
            self.drops[i].at_ms = at;
            self.push(at, Event::Drop(i));
        }
        let faults = self.s.faults.clone();
        for (i, f) in faults.iter().enumerate() {
            let at = parse_at(f.at()).context("fault time")?;
            let end = f.duration().and_then(parse_duration).map(|d| at + d);
            let hit = match (f, f.offices()) {
                (_, Some(o)) => self.choose(o),
                (Fault::ClockSkew { office, .. }, None) => self
                    .pop
                    .index_of(office, self.s.federation.care_management)
                    .into_iter()
                    .collect(),
                _ => Vec::new(),
            };
            self.faults
                .push(FaultReport::new(i, f, at, end, &hit, &self.pop));
            self.hit.push(hit);
            self.push(at, Event::Start(i));
            if let Some(end) = end {
                self.push(end, Event::End(i));
            }
        }
        Ok(())
    }

    async fn take_down(&mut self, i: usize, clean: bool) {
        self.down[i] += 1;
        if self.down[i] == 1 {
            self.last_queued[i] = self.fed.nodes[i].as_ref().map_or(0, |n| n.queued());
            if clean {
                self.fed.stop_node(i).await;
            } else {
                if let Some(n) = self.fed.nodes[i].take() {
                    n.kill().await;
                }
                if let Some(store) = self.fed.store(i) {
                    store.crash();
                }
            }
        }
    }

    async fn bring_up(&mut self, i: usize) -> anyhow::Result<()> {
        self.down[i] = self.down[i].saturating_sub(1);
        if self.down[i] == 0 && self.fed.nodes[i].is_none() {
            self.fed.start_node(i).await?;
        }
        Ok(())
    }

    async fn apply(&mut self, e: Event) -> anyhow::Result<()> {
        let now = self.now();
        match e {
            Event::Drop(k) => {
                let d = &self.drops[k];
                crate::demo::drop_into_outbox(self.fed.plan.home(d.from), &d.name, &d.bytes)?;
                let (from, to) = (d.from, d.to);
                if let Some(n) = &self.fed.nodes[from] {
                    n.shared.rescan.notify_one();
                }
                // A lossy link also cuts a stream in the middle of a file now and then.
                let loss = lock(&self.links.state).loss;
                if loss > 0.0
                    && self.rng.random_bool(loss)
                    && let Some(n) = &self.fed.nodes[to]
                {
                    n.env().faults.arm(FaultPoint::DropConnection, 0);
                }
            }
            Event::Start(f) => self.start_fault(f, now).await?,
            Event::End(f) => self.end_fault(f).await?,
            Event::Restart(i, f) => {
                self.bring_up(i).await?;
                self.faults[f].count("restarts", 1);
            }
            Event::Rekey(i, f) => {
                if self.fed.nodes[i].is_some() {
                    self.take_down(i, true).await;
                    self.bring_up(i).await?;
                    self.faults[f].count("restarts", 1);
                }
            }
        }
        Ok(())
    }

    async fn start_fault(&mut self, f: usize, now: u64) -> anyhow::Result<()> {
        let fault = self.s.faults[f].clone();
        let hit = self.hit[f].clone();
        match fault {
            Fault::Crash {
                point,
                restart_after,
                ..
            } => {
                let after = restart_after
                    .as_deref()
                    .and_then(parse_duration)
                    .unwrap_or(0);
                for i in hit {
                    match point.as_deref().and_then(FaultPoint::parse) {
                        Some(p) => {
                            if let Some(n) = &self.fed.nodes[i] {
                                n.env().faults.arm(p, 0);
                                self.armed.insert(i, f);
                            }
                        }
                        None => {
                            if self.fed.nodes[i].is_some() {
                                self.take_down(i, false).await;
                                self.faults[f].count("crashes", 1);
                                self.push(now + after, Event::Restart(i, f));
                            }
                        }
                    }
                }
            }
            Fault::OfficeOff { .. } => {
                for i in hit {
                    self.take_down(i, true).await;
                }
            }
            Fault::DirectoryOutage { node, .. } => self.fed.stop_directory_node(node).await,
            Fault::LinkLoss { rate, .. } => {
                let mut st = lock(&self.links.state);
                st.loss = rate;
                self.faults[f].mark("dials_lost_before", st.lost);
            }
            Fault::Latency { ms, .. } => lock(&self.links.state).latency_ms = ms,
            Fault::Partition { cut_nodes, .. } => {
                let side: BTreeSet<usize> = hit.into_iter().collect();
                let cut: BTreeSet<usize> = cut_nodes.into_iter().collect();
                // Connections across the cut break now; new ones fail until it heals.
                let (mine, theirs): (Vec<PeerId>, Vec<PeerId>) = {
                    let st = lock(&self.links.state);
                    let mut mine = Vec::new();
                    let mut theirs = Vec::new();
                    for (p, n) in &st.peers {
                        match *n {
                            Node::Office(i) if side.contains(&i) => mine.push(*p),
                            Node::Office(_) => theirs.push(*p),
                            Node::Directory(d) if cut.contains(&d) => mine.push(*p),
                            Node::Directory(_) => {}
                        }
                    }
                    (mine, theirs)
                };
                for n in self.fed.nodes.iter().flatten() {
                    let me = n.shared.net.peer_id;
                    let other = if mine.contains(&me) { &theirs } else { &mine };
                    for p in other {
                        n.shared.net.command(crate::net::Command::Expel(*p));
                    }
                }
                let mut st = lock(&self.links.state);
                self.faults[f].mark("dials_cut_before", st.cut);
                st.partitions.insert(f, (side, cut));
            }
            Fault::Revoke { .. } => {
                for i in hit {
                    self.fed.plan.revoke(i)?;
                }
                mirror(&self.fed.plan)?;
            }
            Fault::RotateKeys { restart_after, .. } => {
                let after = restart_after
                    .as_deref()
                    .and_then(parse_duration)
                    .unwrap_or(3_600_000);
                for i in hit {
                    let home = self.fed.plan.home(i).clone();
                    let req = {
                        let _keys = crate::admin::SeededKeys::new(
                            self.s.seed ^ 0x726f_7461 ^ ((f as u64) << 32) ^ i as u64,
                        );
                        rotate_keys_now(&home, self.clock.now_ms() / 1000)?
                    };
                    let region = self.pop.offices[i].region;
                    crate::admin::rotate(&self.fed.plan.regions[region].folder, &req)?;
                    for k in home.load_keys()? {
                        if let Some(p) =
                            crate::net::peer_id_of(&k.identity.verifying_key().to_bytes())
                        {
                            lock(&self.links.state).peers.insert(p, Node::Office(i));
                        }
                    }
                    // Restarted under the new key later, as staff would after the notice.
                    self.push(now + after, Event::Rekey(i, f));
                }
                self.fed.plan.publish()?;
                mirror(&self.fed.plan)?;
            }
            Fault::ClockSkew { minutes, .. } => {
                for i in hit {
                    self.skew(i, minutes * 60_000, now).await?;
                }
            }
            Fault::MailboxLost { node, .. } => {
                self.fed.stop_directory_node(node).await;
                // What the senders had left there: its files are now in no mailbox.
                let key = self.mailbox_keys[node].clone();
                let mut affected = 0;
                for n in self.fed.nodes.iter().flatten() {
                    for item in lock(&n.shared.queue).items.values() {
                        if item.deposited_ms != 0 && item.mailbox == key {
                            self.in_lost_mailbox.insert(item.file_name.clone(), f);
                            affected += 1;
                        }
                    }
                }
                let folder = self.fed.plan.directory_nodes[node].data.join("mailbox");
                let (files, bytes) = sealed_under(&folder);
                self.faults[f].count("envelopes_lost", files);
                self.faults[f].count("bytes_lost", bytes);
                self.faults[f].count("files_affected", affected);
                if folder.exists() {
                    std::fs::remove_dir_all(&folder)?;
                }
                self.fed.start_directory_node(node).await?;
            }
        }
        Ok(())
    }

    async fn skew(&mut self, i: usize, ms: i64, now: u64) -> anyhow::Result<()> {
        self.fed.set_office_clock_offset(i, ms);
        self.offsets[i].push((now, ms));
        if self.fed.nodes[i].is_some() {
            self.take_down(i, true).await;
            self.bring_up(i).await?;
        }
        Ok(())
    }

    async fn end_fault(&mut self, f: usize) -> anyhow::Result<()> {
        let now = self.now();
        let fault = self.s.faults[f].clone();
        let hit = self.hit[f].clone();
        match fault {
            Fault::OfficeOff { .. } => {
                for i in hit {
                    self.bring_up(i).await?;
                }
            }
            Fault::DirectoryOutage { node, .. } => self.fed.start_directory_node(node).await?,
            Fault::LinkLoss { .. } => {
                let mut st = lock(&self.links.state);
                st.loss = 0.0;
                let before = self.faults[f].get("dials_lost_before");
                self.faults[f].count("dials_lost", st.lost - before);
            }
            Fault::Latency { .. } => lock(&self.links.state).latency_ms = 0,
            Fault::Partition { .. } => {
                let mut st = lock(&self.links.state);
                st.partitions.remove(&f);
                let before = self.faults[f].get("dials_cut_before");
                self.faults[f].count("dials_cut", st.cut - before);
            }
            Fault::ClockSkew { .. } => {
                for i in hit {
                    self.skew(i, 0, now).await?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Restarts offices that an armed crash point stopped.
    async fn restart_crashed(&mut self) -> anyhow::Result<()> {
        let now = self.now();
        for i in 0..self.fed.nodes.len() {
            if self.fed.nodes[i].as_ref().is_some_and(|n| n.crashed()) {
                let f = self.armed.remove(&i).unwrap_or(usize::MAX);
                self.take_down(i, false).await;
                if f == usize::MAX {
                    self.bring_up(i).await?;
                    continue;
                }
                self.faults[f].count("crashes", 1);
                let after = match &self.s.faults[f] {
                    Fault::Crash { restart_after, .. } => restart_after
                        .as_deref()
                        .and_then(parse_duration)
                        .unwrap_or(0),
                    _ => 0,
                };
                self.push(now + after, Event::Restart(i, f));
            }
        }
        Ok(())
    }

    /// Waits until every task has done what this moment asks of it. Tokio's paused timers
    /// move only while every task is idle, so this returns once nothing is left to do but
    /// wait — including the short waits (debouncing, a first retry) of tokio's own timers
    /// within the next 50 ms, which belong to this moment too.
    async fn settle(&self) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    /// Moves the virtual clock, and tokio's timers (I/O timeouts, libp2p's intervals) with it.
    async fn advance(&self, by: u64) {
        // Tokio's first: connections idle that long close before the nodes wake and use them.
        // The first seconds pass timer by timer, in order (the runtime moves its paused time
        // to each next timer while idle), so retries spread by jitter happen at their own
        // moments rather than together; the rest at once (a 2-second tick of every node
        // over an hour would be thousands of wake-ups).
        // Before the jump, the work woken at the end of those seconds is let finish (the
        // paused clock moves only while every task is idle and no file work is running):
        // a jump over a reply still being written would time out a stream that, a moment
        // later, would have been answered — in one run and not in another.
        let fine = by.min(FINE_MS);
        tokio::time::sleep(Duration::from_millis(fine)).await;
        let calm = (by - fine).min(CALM_MS);
        tokio::time::sleep(Duration::from_millis(calm)).await;
        tokio::time::advance(Duration::from_millis(by - fine - calm)).await;
        self.settle().await;
        self.clock.advance(Duration::from_millis(by));
    }

    /// (files queued, files delivered) over every office (the last known of one that is down).
    fn totals(&mut self) -> (usize, u64) {
        let mut q = 0;
        let mut d = 0;
        for i in 0..self.fed.nodes.len() {
            if let Some(n) = &self.fed.nodes[i] {
                self.last_queued[i] = n.queued();
                self.last_delivered[i] = n.delivered();
            }
            q += self.last_queued[i];
            d += self.last_delivered[i];
        }
        (q, d)
    }

    fn sample(&mut self, now: u64) {
        let (queued, delivered) = self.totals();
        // Mailboxes are looked at every ten virtual minutes at most (a walk of their folders).
        if self
            .last_mailbox_scan
            .is_none_or(|t| now >= t + 600_000 || queued == 0)
        {
            self.mailbox_bytes = self
                .fed
                .plan
                .directory_nodes
                .iter()
                .map(|d| sealed_under(&d.data.join("mailbox")).1)
                .sum();
            self.last_mailbox_scan = Some(now);
        }
        let s = Sample {
            t_ms: now,
            queued: queued as u64,
            delivered,
            mailbox_bytes: self.mailbox_bytes,
        };
        if self.samples.last().is_none_or(|l| {
            l.queued != s.queued || l.delivered != s.delivered || l.mailbox_bytes != s.mailbox_bytes
        }) {
            self.samples.push(s);
        }
    }

    async fn drive(&mut self) -> anyhow::Result<()> {
        let end = u64::from(self.s.days) * 86_400_000;
        let min_step = self.s.step_secs * 1000;
        let max_step = self.s.max_step_secs * 1000;
        let mut step = min_step;
        let mut last = (usize::MAX, u64::MAX, u64::MAX);
        let mut profile = Profile::from_env();
        loop {
            let now = self.now();
            let t = std::time::Instant::now();
            while let Some(entry) = self.events.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                let e = entry.remove();
                self.apply(e).await?;
            }
            profile.events += t.elapsed();
            let t = std::time::Instant::now();
            self.settle().await;
            profile.settle += t.elapsed();
            let t = std::time::Instant::now();
            self.restart_crashed().await?;
            self.sample(now);
            profile.sample += t.elapsed();
            if now >= end {
                break;
            }
            let (queued, delivered) = self.totals();
            let sig = (queued, delivered, self.mailbox_bytes);
            step = if sig != last {
                min_step
            } else {
                (step * 2).min(max_step)
            };
            last = sig;
            let next_event = self
                .events
                .first_key_value()
                .map_or(end, |(k, _)| k.0)
                .min(end);
            // Files on their way, in a mailbox, or an office still without its directory.
            let without_directory = self
                .fed
                .nodes
                .iter()
                .flatten()
                .filter(|n| n.directory_entries() == 0)
                .count();
            let busy = queued > 0 || self.mailbox_bytes > 0 || without_directory > 0;
            let target = if busy {
                (now + step).min(next_event)
            } else {
                // Nothing on its way: only the nodes' periodic looks would happen meanwhile,
                // once per move whatever its length (tokio's intervals do not catch up), so
                // the clock goes to the next event, a week at most.
                next_event.min(now + IDLE_STEP_MAX_MS.max(max_step))
            };
            let t = std::time::Instant::now();
            self.advance(target.max(now + 1) - now).await;
            profile.advance += t.elapsed();
            self.steps += 1;
            profile.line(self.steps, now, queued, delivered, without_directory);
        }
        Ok(())
    }

    /// Stops everything, then reads every office's receipts, statements and folders.
    async fn finish(self) -> anyhow::Result<Report> {
        let Lab {
            s,
            pop,
            drops,
            mut fed,
            faults,
            t0,
            offsets,
            samples,
            in_lost_mailbox,
            steps,
            ..
        } = self;
        for i in 0..fed.nodes.len() {
            fed.stop_node(i).await;
        }
        let plan = fed.plan.clone();
        fed.shutdown().await;
        let mut report = super::report::build(
            s,
            &pop,
            &drops,
            &plan,
            faults,
            t0,
            &offsets,
            samples,
            &in_lost_mailbox,
        )?;
        report.run.steps = steps;
        Ok(report)
    }
}

/// The longest move of the clock while nothing is on its way.
const IDLE_STEP_MAX_MS: u64 = 7 * 86_400_000;

/// How much of each move of the clock passes timer by timer (see [`Lab::advance`]).
const FINE_MS: u64 = 10_000;

/// How long the clock waits, idle, before it jumps (see [`Lab::advance`]).
const CALM_MS: u64 = 50;

/// With `RENKEI_LAB_PROGRESS` set, a line on stderr every ten seconds of wall time: the step,
/// the virtual time, files queued and delivered, and where the wall time went.
struct Profile {
    on: bool,
    since: std::time::Instant,
    steps: u64,
    events: Duration,
    settle: Duration,
    sample: Duration,
    advance: Duration,
}

impl Profile {
    fn from_env() -> Profile {
        Profile {
            on: std::env::var_os("RENKEI_LAB_PROGRESS").is_some(),
            since: std::time::Instant::now(),
            steps: 0,
            events: Duration::ZERO,
            settle: Duration::ZERO,
            sample: Duration::ZERO,
            advance: Duration::ZERO,
        }
    }

    fn line(&mut self, step: u64, now_ms: u64, queued: usize, delivered: u64, undirected: usize) {
        if !self.on || self.since.elapsed() < Duration::from_secs(10) {
            return;
        }
        eprintln!(
            "lab: step {step} · day {} {:02}:{:02} · queued {queued} delivered {delivered} · without a directory {undirected} · last {:.1} s: {} steps, events {:.1} s, settle {:.1} s, sample {:.1} s, advance {:.1} s",
            now_ms / 86_400_000 + 1,
            now_ms / 3_600_000 % 24,
            now_ms / 60_000 % 60,
            self.since.elapsed().as_secs_f64(),
            step - self.steps,
            self.events.as_secs_f64(),
            self.settle.as_secs_f64(),
            self.sample.as_secs_f64(),
            self.advance.as_secs_f64(),
        );
        *self = Profile {
            steps: step,
            ..Profile::from_env()
        };
    }
}

/// `renkei rotate-keys --starts-in-hours 0` on the virtual clock: a new key generation for the
/// office (the current one kept as `.1`) and its rotation request, starting at `now_secs`.
/// (`admin::rotate_keys` dates it by the wall clock, which is the run's first moment here:
/// the overlap of the old key would be over before the rotation is published.)
fn rotate_keys_now(
    home: &crate::home::Home,
    now_secs: u64,
) -> anyhow::Result<renkei_directory::RotationRequest> {
    let config = home.config()?;
    let office = renkei_protocol::OfficeNumber::parse(&config.office).context("office number")?;
    let old = home.load_keys()?.remove(0);
    let new = crate::home::KeyPair {
        identity: crate::admin::generate_signing_key(),
        encryption: x25519_dalek::StaticSecret::from(
            crate::admin::generate_signing_key().to_bytes(),
        ),
    };
    let req = renkei_directory::RotationRequest::new(
        office,
        &old.identity,
        &new.identity,
        x25519_dalek::PublicKey::from(&new.encryption).to_bytes(),
        now_secs,
        now_secs + 10 * 365 * 86400,
    );
    home.write_new_keys(&new)?;
    Ok(req)
}

/// Copies what each region published into every directory node's folder, as the nodes'
/// mirroring of each other would (`ServeConfig::mirrors`, over HTTP, which the in-memory
/// lab does not run): each node then serves and admits by the same directory. Without it,
/// a node that never got the region's files refuses every office of it.
fn mirror(plan: &crate::federation::Federation) -> anyhow::Result<()> {
    for r in &plan.regions {
        let files: Vec<_> = std::fs::read_dir(&r.published)?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.extension()
                    .is_some_and(|x| x == "snapshot" || x == "delta")
            })
            .collect();
        for n in &plan.directory_nodes {
            if n.data == r.published {
                continue;
            }
            std::fs::create_dir_all(&n.data)?;
            for f in &files {
                let Some(name) = f.file_name() else { continue };
                let to = n.data.join(name);
                if !to.exists() {
                    crate::files::write_atomic(&to, &std::fs::read(f)?, false)?;
                }
            }
        }
    }
    Ok(())
}

/// (envelope files, bytes) under a folder.
pub(crate) fn sealed_under(dir: &Path) -> (u64, u64) {
    let mut n = (0, 0);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(b) = std::fs::read(&p)
                && super::report::is_sealed(&b)
            {
                n.0 += 1;
                n.1 += b.len() as u64;
            }
        }
    }
    n
}
