//! The one place that builds a federation: a trust anchor, regions with their directory nodes,
//! and offices enrolled in them — on disk, then running in this process or as `renkei`
//! processes. The demo, the tests, the benches and the lab all ask it for what they need.
//!
//! ```no_run
//! # async fn f() -> anyhow::Result<()> {
//! use renkei_node::federation::{Federation, StartOptions, Transport};
//! let dir = tempfile::tempdir()?;
//! let plan = Federation::builder(dir.path())
//!     .transport(Transport::Memory)
//!     .office("1310000001", "ひかり居宅介護支援事業所", &["43"])
//!     .office("1310000011", "さくら訪問介護", &["11"])
//!     .create()?;
//! let running = plan.start(StartOptions::default()).await?;
//! running.shutdown().await;
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use renkei_directory::NodeInfo;
use renkei_protocol::{OfficeNumber, ServiceKind};

use crate::admin::{self, OfficeSetup};
use crate::dirserve::{self, DirectoryNode, ServeConfig};
use crate::env::{Clock, Env, OffsetClock, SystemClock};
use crate::files::write_atomic;
use crate::home::{Config, Home};
use crate::node::{NodeHandle, NodeOptions};
use crate::store::{MemStore, Store};

/// How the nodes of a federation reach each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// TCP and QUIC on 127.0.0.1, as between real offices.
    Loopback,
    /// libp2p's in-memory transport, same noise, yamux and gate: no sockets at all. Only for
    /// nodes running in this process.
    Memory,
}

/// Where in-process office nodes keep their queue and received index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreChoice {
    /// sled in each office's `state/db`, as in production.
    Files,
    /// In memory, losing what was not flushed when a node crashes.
    Memory,
}

struct OfficeSpec {
    number: OfficeNumber,
    name: String,
    kinds: Vec<ServiceKind>,
    enrolled: bool,
}

struct RegionSpec {
    id: String,
    name: String,
    prefectures: Vec<u8>,
}

/// Builds a federation on disk ([`FederationBuilder::create`]).
pub struct FederationBuilder {
    dir: PathBuf,
    transport: Transport,
    directory_nodes: usize,
    http: bool,
    regions: Vec<RegionSpec>,
    offices: Vec<OfficeSpec>,
    tune: Box<dyn Fn(&mut Config)>,
}

impl std::fmt::Debug for FederationBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FederationBuilder")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// A region as created: its authority's folder and the folder it publishes into.
#[derive(Debug, Clone)]
pub struct Region {
    /// Region id, e.g. `13-tokyo`.
    pub id: String,
    /// The authority's folder (its key and workspace).
    pub folder: PathBuf,
    /// Where it publishes: its association's directory node's data folder.
    pub published: PathBuf,
}

/// A directory node as created.
#[derive(Debug, Clone)]
pub struct PlannedDirectoryNode {
    /// Its key file.
    pub key_file: PathBuf,
    /// Its libp2p listen address (no `/p2p/`).
    pub addr: String,
    /// Its address with `/p2p/<PeerId>`, as offices are given it.
    pub multiaddr: String,
    /// Its HTTP address, when it serves HTTP.
    pub http: Option<String>,
    /// The folder of files it serves.
    pub data: PathBuf,
}

/// An office as created.
#[derive(Debug, Clone)]
pub struct Office {
    /// 事業所番号.
    pub number: OfficeNumber,
    /// Its first service kind.
    pub kind: ServiceKind,
    /// Its home folder.
    pub home: Home,
    /// Whether its enrollment was approved.
    pub enrolled: bool,
}

/// A federation on disk: anchor, regions, directory nodes and office homes, published.
#[derive(Debug, Clone)]
pub struct Federation {
    /// The folder holding everything.
    pub dir: PathBuf,
    /// The trust anchor file.
    pub anchor: PathBuf,
    /// The regions.
    pub regions: Vec<Region>,
    /// The directory nodes (every region lists every one).
    pub directory_nodes: Vec<PlannedDirectoryNode>,
    /// The offices.
    pub offices: Vec<Office>,
    /// How its nodes reach each other.
    pub transport: Transport,
}

/// How to run a federation in this process.
#[derive(Debug, Clone)]
pub struct StartOptions {
    /// The clock every node runs on.
    pub clock: Arc<dyn Clock>,
    /// Seeds each node's random source (with its index) for a repeatable run; `None`: the
    /// operating system's random numbers.
    pub seed: Option<u64>,
    /// Where office nodes keep their state.
    pub store: StoreChoice,
    /// Offices whose nodes are not started (switched off; [`RunningFederation::start_node`]
    /// starts one later).
    pub off: Vec<usize>,
    /// Offices whose computer clock is set wrong: (office index, milliseconds ahead of
    /// `clock`; negative: behind).
    pub office_clock_offsets: Vec<(usize, i64)>,
    /// Directory nodes whose clock is set wrong: (directory node index, milliseconds ahead).
    pub directory_clock_offsets: Vec<(usize, i64)>,
    /// The directory nodes' mailbox limits (`None`: the defaults).
    pub mailbox: Option<crate::mailbox::MailboxConfig>,
}

impl StartOptions {
    /// The clock of office `i`, or of directory node `i` when `directory`: the run's clock,
    /// shifted when the options set that computer's clock wrong.
    pub fn clock_of(&self, i: usize, directory: bool) -> Arc<dyn Clock> {
        let offsets = if directory {
            &self.directory_clock_offsets
        } else {
            &self.office_clock_offsets
        };
        match offsets.iter().find(|(j, _)| *j == i) {
            Some(&(_, ms)) => Arc::new(OffsetClock::new(self.clock.clone(), ms)),
            None => self.clock.clone(),
        }
    }
}

impl Default for StartOptions {
    fn default() -> Self {
        StartOptions {
            clock: Arc::new(SystemClock),
            seed: None,
            store: StoreChoice::Files,
            off: Vec::new(),
            office_clock_offsets: Vec::new(),
            directory_clock_offsets: Vec::new(),
            mailbox: None,
        }
    }
}

/// A free loopback port (TCP or UDP), never one this process handed out before.
pub fn free_port(udp: bool) -> anyhow::Result<u16> {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = if udp {
            std::net::UdpSocket::bind("127.0.0.1:0")?
                .local_addr()?
                .port()
        } else {
            std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port()
        };
        let mut given = crate::state::lock(&GIVEN);
        if !given.contains(&port) {
            given.push(port);
            return Ok(port);
        }
    }
}

/// A `/memory/<n>` address no other node of this process uses.
fn memory_addr() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("/memory/{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Short intervals for a federation on one machine.
pub fn tune_for_loopback(c: &mut Config) {
    c.settle_ms = 0;
    c.rescan_secs = 1;
    c.directory_refresh_secs = 2;
    c.retry_initial_ms = 200;
    c.retry_max_secs = 2;
    c.io_timeout_secs = 20;
}

impl Federation {
    /// A builder of a federation in `dir`.
    pub fn builder(dir: &Path) -> FederationBuilder {
        FederationBuilder {
            dir: dir.to_path_buf(),
            transport: Transport::Loopback,
            directory_nodes: 1,
            http: false,
            regions: Vec::new(),
            offices: Vec::new(),
            tune: Box::new(tune_for_loopback),
        }
    }
}

impl FederationBuilder {
    /// How the nodes reach each other (loopback by default).
    pub fn transport(mut self, t: Transport) -> Self {
        self.transport = t;
        self
    }

    /// How many directory nodes (1 by default). Region `i` publishes into node `i % n`, and
    /// with HTTP the nodes mirror each other.
    pub fn directory_nodes(mut self, n: usize) -> Self {
        self.directory_nodes = n.max(1);
        self
    }

    /// Directory nodes also serve HTTP (loopback only).
    pub fn http(mut self, on: bool) -> Self {
        self.http = on;
        self
    }

    /// A region vouching for the given prefectures (`13-tokyo` for 13 when none is given).
    pub fn region(mut self, id: &str, name: &str, prefectures: &[u8]) -> Self {
        self.regions.push(RegionSpec {
            id: id.into(),
            name: name.into(),
            prefectures: prefectures.to_vec(),
        });
        self
    }

    /// An enrolled office with its service kinds.
    pub fn office(self, number: &str, name: &str, kinds: &[&str]) -> Self {
        self.office_enrolled(number, name, kinds, true)
    }

    /// An office, enrolled or only set up (its request never approved).
    pub fn office_enrolled(
        mut self,
        number: &str,
        name: &str,
        kinds: &[&str],
        enrolled: bool,
    ) -> Self {
        self.offices.push(OfficeSpec {
            number: OfficeNumber::parse(number).unwrap_or_else(|| panic!("office number {number}")),
            name: name.into(),
            kinds: kinds
                .iter()
                .map(|k| ServiceKind::parse(k).unwrap_or_else(|| panic!("service kind {k}")))
                .collect(),
            enrolled,
        });
        self
    }

    /// How each office's `renkei.toml` is tuned after `init` ([`tune_for_loopback`] by default).
    pub fn tune(mut self, f: impl Fn(&mut Config) + 'static) -> Self {
        self.tune = Box::new(f);
        self
    }

    /// Creates everything on disk: the anchor, the regions with their directory nodes listed,
    /// the offices' homes (keys, `renkei.toml`), approves the enrolled ones and publishes.
    pub fn create(mut self) -> anyhow::Result<Federation> {
        if self.regions.is_empty() {
            self.regions.push(RegionSpec {
                id: "13-tokyo".into(),
                name: "東京都 ケアプラン連携協議会".into(),
                prefectures: vec![13],
            });
        }
        let dir = self.dir.clone();
        std::fs::create_dir_all(&dir)?;
        let assoc = dir.join("association");
        let anchor = admin::root_init(&assoc, "renkei federation")?;
        let anchor_file = dir.join("anchor.json");
        write_atomic(
            &anchor_file,
            serde_json::to_string_pretty(&anchor)?.as_bytes(),
            false,
        )?;
        let memory = self.transport == Transport::Memory;

        let mut nodes = Vec::new();
        for i in 0..self.directory_nodes {
            let key_file = dir.join("directory-nodes").join(format!("dn{i}.key"));
            let key = admin::generate_signing_key();
            admin::write_secret(&key_file, &key)?;
            let peer = crate::net::peer_id_of(&key.verifying_key().to_bytes())
                .context("directory node key")?;
            let addr = if memory {
                memory_addr()
            } else {
                format!("/ip4/127.0.0.1/tcp/{}", free_port(false)?)
            };
            let http = (self.http && !memory)
                .then(|| free_port(false).map(|p| format!("127.0.0.1:{p}")))
                .transpose()?;
            nodes.push((
                key,
                PlannedDirectoryNode {
                    key_file,
                    multiaddr: format!("{addr}/p2p/{peer}"),
                    addr,
                    http,
                    data: dir.join("directory-nodes").join(format!("dn{i}")),
                },
            ));
        }
        let mut regions = Vec::new();
        for (r, spec) in self.regions.iter().enumerate() {
            let folder = assoc.join(&spec.id);
            admin::region_init(
                &assoc.join("root.key"),
                &folder,
                &spec.id,
                &spec.name,
                spec.prefectures.clone(),
                5,
            )?;
            for (key, n) in &nodes {
                admin::add_node(
                    &folder,
                    NodeInfo {
                        key: key.verifying_key().to_bytes(),
                        addresses: vec![n.addr.clone()],
                        http: n.http.as_ref().map(|h| format!("http://{h}")),
                    },
                )?;
            }
            regions.push((
                Vec::new(),
                Region {
                    id: spec.id.clone(),
                    folder,
                    published: nodes[r % nodes.len()].1.data.clone(),
                },
            ));
        }
        let mut offices = Vec::new();
        for spec in &self.offices {
            let home = Home::new(dir.join("offices").join(spec.number.as_str()));
            let listen = if memory {
                vec![memory_addr()]
            } else {
                vec![
                    format!("/ip4/127.0.0.1/tcp/{}", free_port(false)?),
                    format!("/ip4/127.0.0.1/udp/{}/quic-v1", free_port(true)?),
                ]
            };
            let req = admin::init_office(
                &home,
                &OfficeSetup {
                    office: spec.number,
                    name: spec.name.clone(),
                    kinds: spec.kinds.clone(),
                    listen,
                    advertise: Vec::new(),
                    directory_nodes: nodes.iter().map(|(_, n)| n.multiaddr.clone()).collect(),
                    anchor: Some(anchor_file.clone()),
                },
            )?;
            let mut c = home.config()?;
            // Each office's page on a port of its own (none in memory: nothing else listens).
            c.ui_port = if memory { 0 } else { free_port(false)? };
            (self.tune)(&mut c);
            home.write_config(&c)?;
            // Into the region vouching for its prefecture (the first two digits).
            let pref: u8 = spec.number.as_str()[..2].parse().unwrap_or(0);
            let region = self
                .regions
                .iter()
                .position(|r| r.prefectures.contains(&pref))
                .with_context(|| format!("no region vouches for office {}", spec.number))?;
            if spec.enrolled {
                regions[region].0.push(req);
            }
            offices.push(Office {
                number: spec.number,
                kind: spec.kinds[0],
                home,
                enrolled: spec.enrolled,
            });
        }
        for (requests, region) in &regions {
            admin::approve(&region.folder, requests)?;
            admin::publish(&region.folder, &region.published)?;
        }
        Ok(Federation {
            dir,
            anchor: anchor_file,
            regions: regions.into_iter().map(|(_, r)| r).collect(),
            directory_nodes: nodes.into_iter().map(|(_, n)| n).collect(),
            offices,
            transport: self.transport,
        })
    }
}

impl Federation {
    /// Office `i`'s home.
    pub fn home(&self, i: usize) -> &Home {
        &self.offices[i].home
    }

    /// The index of an office by number.
    pub fn office_index(&self, number: &str) -> Option<usize> {
        self.offices
            .iter()
            .position(|o| o.number.as_str() == number)
    }

    /// Publishes every region's next snapshot (after an approval, revocation or rotation).
    pub fn publish(&self) -> anyhow::Result<()> {
        for r in &self.regions {
            admin::publish(&r.folder, &r.published)?;
        }
        Ok(())
    }

    /// Revokes office `i` and publishes.
    pub fn revoke(&self, i: usize) -> anyhow::Result<()> {
        let o = &self.offices[i];
        let pref: u8 = o.number.as_str()[..2].parse().unwrap_or(0);
        for r in &self.regions {
            if admin::load_workspace(&r.folder)?
                .cert
                .prefectures
                .contains(&pref)
            {
                admin::revoke(&r.folder, &o.number)?;
            }
        }
        self.publish()
    }

    /// Names directory nodes `nodes` (by index) as office `i`'s mailboxes and publishes; an
    /// empty list means its region's directory nodes again (SPEC.md §6.3).
    pub fn set_mailboxes(&self, i: usize, nodes: &[usize]) -> anyhow::Result<()> {
        let o = &self.offices[i];
        let mut keys = Vec::new();
        for &n in nodes {
            let key = admin::read_secret(&self.directory_nodes[n].key_file)?;
            keys.push(key.verifying_key().to_bytes());
        }
        for r in &self.regions {
            let mut ws = admin::load_workspace(&r.folder)?;
            if ws.entries.contains_key(&o.number) {
                ws.set_mailboxes(&o.number, keys.clone())?;
                admin::save_workspace(&r.folder, &ws)?;
            }
        }
        self.publish()
    }

    /// Copies every region's published files to every directory node's folder: what HTTP
    /// mirroring does between nodes, for federations without HTTP (the memory transport).
    pub fn mirror_files(&self) -> anyhow::Result<()> {
        for r in &self.regions {
            for e in std::fs::read_dir(&r.published)? {
                let p = e?.path();
                let ext = p.extension().and_then(|e| e.to_str());
                if !matches!(ext, Some("snapshot" | "delta")) {
                    continue;
                }
                for n in &self.directory_nodes {
                    if n.data != r.published {
                        std::fs::create_dir_all(&n.data)?;
                        let to = n.data.join(p.file_name().unwrap_or_default());
                        write_atomic(&to, &std::fs::read(&p)?, false)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The serve configuration of directory node `i`.
    pub fn serve_config(&self, i: usize) -> anyhow::Result<ServeConfig> {
        let n = &self.directory_nodes[i];
        let anchor = renkei_directory::Anchor::from_json(&std::fs::read_to_string(&self.anchor)?)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(ServeConfig {
            data: n.data.clone(),
            anchor,
            identity: admin::read_secret(&n.key_file)?,
            listen: vec![n.addr.parse()?],
            http: n.http.as_ref().map(|h| h.parse()).transpose()?,
            mirrors: self
                .directory_nodes
                .iter()
                .enumerate()
                .filter(|(j, o)| *j != i && o.http.is_some())
                .filter_map(|(_, o)| o.http.as_ref().map(|h| format!("http://{h}")))
                .collect(),
            refresh_secs: 1,
            http_options: Default::default(),
            clock: Arc::new(SystemClock),
            mailbox: Some(Default::default()),
            relay: Some(Default::default()),
        })
    }

    /// Directory node `i`'s configuration for a run with `options`.
    fn directory_config(&self, i: usize, options: &StartOptions) -> anyhow::Result<ServeConfig> {
        let mut cfg = self.serve_config(i)?;
        cfg.clock = options.clock_of(i, true);
        if let Some(m) = &options.mailbox {
            cfg.mailbox = Some(m.clone());
        }
        Ok(cfg)
    }

    /// Starts it in this process with memory stores on a test clock that begins now (keys and
    /// snapshots are dated by the wall clock) and moves only when it is moved; `seed` makes
    /// every node's randomness repeatable. `options` gives the rest (offices off, limits …).
    pub async fn start_on_test_clock(
        &self,
        seed: u64,
        options: StartOptions,
    ) -> anyhow::Result<(RunningFederation, crate::env::ManualClock)> {
        // On a whole minute: a run's times differ from another's only by whole minutes.
        let clock = crate::env::ManualClock::new(crate::env::wall_clock_ms() / 60_000 * 60_000);
        let fed = self
            .start(StartOptions {
                clock: Arc::new(clock.clone()),
                seed: Some(seed),
                store: StoreChoice::Memory,
                ..options
            })
            .await?;
        Ok((fed, clock))
    }

    /// Starts every directory node and office node in this process.
    pub async fn start(&self, options: StartOptions) -> anyhow::Result<RunningFederation> {
        let mut directory_nodes = Vec::new();
        for i in 0..self.directory_nodes.len() {
            directory_nodes.push(dirserve::start(self.directory_config(i, &options)?).await?);
        }
        let stores: Vec<Option<Arc<MemStore>>> = self
            .offices
            .iter()
            .map(|_| (options.store == StoreChoice::Memory).then(|| Arc::new(MemStore::default())))
            .collect();
        let mut running = RunningFederation {
            plan: self.clone(),
            options,
            directory_nodes,
            nodes: Vec::new(),
            stores,
            starts: vec![0; self.offices.len()],
            directory_down: Vec::new(),
        };
        for i in 0..self.offices.len() {
            running.nodes.push(None);
            if !running.options.off.contains(&i) {
                running.start_node(i).await?;
            }
        }
        Ok(running)
    }
}

/// A federation running in this process.
#[derive(Debug)]
pub struct RunningFederation {
    /// What it was built from.
    pub plan: Federation,
    options: StartOptions,
    /// The directory nodes.
    pub directory_nodes: Vec<DirectoryNode>,
    /// The office nodes, in the plan's order (`None` while one is stopped).
    pub nodes: Vec<Option<NodeHandle>>,
    stores: Vec<Option<Arc<MemStore>>>,
    starts: Vec<u64>,
    /// Directory nodes stopped by [`RunningFederation::stop_directory_node`], by index.
    directory_down: Vec<usize>,
}

impl RunningFederation {
    async fn start_office(&mut self, i: usize) -> anyhow::Result<NodeHandle> {
        let home = self.plan.offices[i].home.clone();
        let config = home.config()?;
        self.starts[i] += 1;
        let clock = self.options.clock_of(i, false);
        let env = match self.options.seed {
            // Each node, and each start of it, draws from its own stream of the run's seed.
            Some(seed) => Env::seeded(clock, seed ^ ((i as u64) << 32) ^ self.starts[i]),
            None => {
                let mut e = Env::system();
                e.clock = clock;
                e
            }
        };
        let store = self.stores[i].clone().map(|s| s as Arc<dyn Store>);
        crate::node::start_with(
            home,
            config,
            NodeOptions {
                env: Arc::new(env),
                store,
            },
        )
        .await
    }

    /// Starts office `i`'s node (switched off until now, or stopped).
    pub async fn start_node(&mut self, i: usize) -> anyhow::Result<()> {
        anyhow::ensure!(self.nodes[i].is_none(), "office {i} is already running");
        let n = self.start_office(i).await?;
        self.nodes[i] = Some(n);
        Ok(())
    }

    /// Office `i`'s running node.
    pub fn node(&self, i: usize) -> &NodeHandle {
        self.nodes[i]
            .as_ref()
            .expect("the office's node is running")
    }

    /// Stops directory node `i` at once, as a killed process would stop (what it wrote is
    /// on disk), and starts it again from its folder.
    pub async fn restart_directory_node(&mut self, i: usize) -> anyhow::Result<()> {
        if self.directory_down.contains(&i) {
            return self.start_directory_node(i).await;
        }
        let slot = self.directory_slot(i);
        let old = self.directory_nodes.remove(slot);
        old.net.shutdown().await;
        old.stop();
        let new = dirserve::start(self.plan.directory_config(i, &self.options)?).await?;
        self.directory_nodes.insert(slot, new);
        Ok(())
    }

    /// Where directory node `i` sits in [`RunningFederation::directory_nodes`] while some
    /// are stopped.
    fn directory_slot(&self, i: usize) -> usize {
        i - self.directory_down.iter().filter(|d| **d < i).count()
    }

    /// Stops directory node `i` at once (an outage; what it wrote stays on disk) until
    /// [`RunningFederation::start_directory_node`]. No-op when it is stopped already.
    pub async fn stop_directory_node(&mut self, i: usize) {
        if self.directory_down.contains(&i) || i >= self.plan.directory_nodes.len() {
            return;
        }
        let old = self.directory_nodes.remove(self.directory_slot(i));
        old.net.shutdown().await;
        old.stop();
        self.directory_down.push(i);
    }

    /// Starts directory node `i` again from its folder after
    /// [`RunningFederation::stop_directory_node`].
    pub async fn start_directory_node(&mut self, i: usize) -> anyhow::Result<()> {
        let Some(pos) = self.directory_down.iter().position(|d| *d == i) else {
            return Ok(());
        };
        self.directory_down.remove(pos);
        let new = dirserve::start(self.plan.directory_config(i, &self.options)?).await?;
        let slot = self.directory_slot(i);
        self.directory_nodes.insert(slot, new);
        Ok(())
    }

    /// Sets office `i`'s computer clock `ms` ahead of the run's clock (negative: behind) from
    /// its next start.
    pub fn set_office_clock_offset(&mut self, i: usize, ms: i64) {
        self.options.office_clock_offsets.retain(|(j, _)| *j != i);
        if ms != 0 {
            self.options.office_clock_offsets.push((i, ms));
        }
    }

    /// Office `i`'s memory store (when the run keeps stores in memory).
    pub fn store(&self, i: usize) -> Option<&Arc<MemStore>> {
        self.stores[i].as_ref()
    }

    /// Switches office `i`'s node off cleanly (as at the end of a working day).
    pub async fn stop_node(&mut self, i: usize) {
        if let Some(n) = self.nodes[i].take() {
            n.shutdown().await;
        }
    }

    /// Stops office `i` as a power cut would (nothing more is written, unflushed state of a
    /// memory store is lost) and starts it again from what it left.
    pub async fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        if let Some(n) = self.nodes[i].take() {
            n.kill().await;
        }
        if let Some(s) = &self.stores[i] {
            s.crash();
        }
        let n = self.start_office(i).await?;
        self.nodes[i] = Some(n);
        Ok(())
    }

    /// Stops everything cleanly.
    pub async fn shutdown(self) {
        for n in self.nodes.into_iter().flatten() {
            n.shutdown().await;
        }
        for d in self.directory_nodes {
            d.stop();
        }
    }
}

/// Waits (in real time) until `f` holds, polling; returns whether it did before `timeout`.
pub async fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < end {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}

/// Waits until `f` holds while moving `clock` forward by `step` every few real milliseconds,
/// so that nodes on a test clock retry, rescan and sync; returns whether it held before
/// `timeout` (real time).
pub async fn drive_until(
    clock: &crate::env::ManualClock,
    step: Duration,
    timeout: Duration,
    mut f: impl FnMut() -> bool,
) -> bool {
    let end = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < end {
        if f() {
            return true;
        }
        clock.advance(step);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    f()
}
