//! The office node: state shared by its tasks, start-up, the delivery dispatcher and status.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use libp2p::Multiaddr;
use renkei_directory::{Anchor, Directory, Entry, Freshness};
use renkei_protocol::envelope::MessageId;
use renkei_protocol::{OfficeNumber, ServiceKind};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};

use crate::dirsync::{self, DirFolder, P2pSource};
use crate::home::{Config, Home, KeyPair, parse_office, write_atomic};
use crate::net::{self, Command, Net};
use crate::receipts::ReceiptLog;
use crate::store::{QueueItem, SledStore, Store};

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Unix seconds now.
pub fn now_secs() -> u64 {
    now_ms() / 1000
}

/// Delivery state of one partner office.
#[derive(Debug)]
pub(crate) struct Partner {
    pub active: bool,
    pub next_try: Instant,
    pub backoff: Duration,
}

/// The in-memory view of the durable queue.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    pub items: BTreeMap<u64, QueueItem>,
    pub names: HashSet<String>,
    pub next_seq: u64,
    pub partners: HashMap<OfficeNumber, Partner>,
}

/// Counters and recent errors for `renkei status`.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub delivered: u64,
    pub received: u64,
    pub rejected_outgoing: u64,
    pub rejected_incoming: u64,
    /// (what it is about, if it can be resolved; how many times; the line shown).
    pub last_errors: VecDeque<(Option<String>, u32, String)>,
}

/// What every task of a node shares.
pub struct Shared {
    pub(crate) home: Home,
    pub(crate) config: Config,
    pub(crate) office: OfficeNumber,
    pub(crate) kinds: Vec<ServiceKind>,
    /// Every key generation on disk, newest first (re-read when a rotation is published).
    pub(crate) keys: RwLock<Vec<KeyPair>>,
    /// The identity this run uses: its PeerId and the key that signs envelopes and acks.
    pub(crate) identity: ed25519_dalek::SigningKey,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) directory: Arc<RwLock<Directory>>,
    pub(crate) dir_cache: DirFolder,
    pub(crate) receipts: Mutex<ReceiptLog>,
    pub(crate) sent_ids: Mutex<HashSet<String>>,
    /// Sub-folders of the outbox already reported (they are never sent).
    pub(crate) ignored_folders: Mutex<HashSet<String>>,
    pub(crate) net: Net,
    pub(crate) queue: Mutex<Queue>,
    pub(crate) wake: Notify,
    pub(crate) rescan: Notify,
    pub(crate) stats: Mutex<Stats>,
    pub(crate) shutdown: watch::Receiver<bool>,
    /// Asks `run` to restart the node (to switch to a newer key).
    pub(crate) restart: Notify,
    /// Whether anyone acts on `restart` (`run` does; an in-process node of the demo or a
    /// test does not, so it shows the restart notice instead).
    pub(crate) restartable: AtomicBool,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("office", &self.office)
            .finish_non_exhaustive()
    }
}

/// The topic of status lines about our own directory entry.
const OWN_ENTRY: &str = "own-entry";

/// Locks a mutex, recovering from a poisoned lock (a panicked task must not stop the node).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    /// Records an error for `renkei status` and the log.
    pub(crate) fn error(&self, msg: String) {
        self.error_about(None, msg);
    }

    /// Records an error about `topic` (a partner, say) that [`Shared::resolved`] clears once
    /// the trouble is over, so the status does not show a fixed problem as a current one. A
    /// topic keeps one line: a repeat replaces it, counting the times.
    pub(crate) fn error_about(&self, topic: Option<String>, msg: String) {
        tracing::warn!("{msg}");
        let mut s = lock(&self.stats);
        let mut times = 1u32;
        if let Some(t) = &topic
            && let Some(i) = s.last_errors.iter().position(|e| e.0.as_ref() == Some(t))
        {
            times = s.last_errors.remove(i).map_or(1, |e| e.1.saturating_add(1));
        }
        if s.last_errors.len() >= 20 {
            s.last_errors.pop_front();
        }
        s.last_errors
            .push_back((topic, times, format!("{} {msg}", jst(now_ms()))));
    }

    /// Clears the errors recorded about `topic`.
    pub(crate) fn resolved(&self, topic: &str) {
        lock(&self.stats)
            .last_errors
            .retain(|e| e.0.as_deref() != Some(topic));
    }

    pub(crate) fn dir(&self) -> std::sync::RwLockReadGuard<'_, Directory> {
        self.directory.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Our X25519 secrets, every generation (a partner may seal to any key still valid).
    pub(crate) fn secrets(&self) -> Vec<x25519_dalek::StaticSecret> {
        self.keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|k| k.encryption.clone())
            .collect()
    }

    pub(crate) fn timeout(&self) -> Duration {
        Duration::from_secs(self.config.io_timeout_secs.max(1))
    }

    pub(crate) fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }
}

/// A running node.
pub struct NodeHandle {
    /// Shared state (for the demo, tests and the lab).
    pub shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for NodeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeHandle")
            .field("office", &self.shared.office)
            .finish_non_exhaustive()
    }
}

impl NodeHandle {
    /// Stops the node's tasks and writes a last status.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        self.shared.wake.notify_waiters();
        self.shared.rescan.notify_waiters();
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
        let _ = write_status(&self.shared).await;
        let _ = self.shared.store.flush();
    }

    /// How many files wait in the queue.
    pub fn queued(&self) -> usize {
        lock(&self.shared.queue).items.len()
    }
}

/// Starts a node from its home folder.
pub async fn start(home: Home) -> anyhow::Result<NodeHandle> {
    let config = home.config()?;
    start_with(home, config, None).await
}

/// Starts a node with an explicit configuration and, optionally, a store (the lab's in-memory
/// one); otherwise sled in `H/state/db`.
pub async fn start_with(
    home: Home,
    config: Config,
    store: Option<Arc<dyn Store>>,
) -> anyhow::Result<NodeHandle> {
    home.create_dirs()?;
    let (office, kinds) = parse_office(&config)?;
    let keys = home.load_keys()?;
    let anchor_path = home.root.join(&config.anchor);
    let anchor = Anchor::from_json(&std::fs::read_to_string(&anchor_path).with_context(|| {
        format!("信頼アンカー {} を読めません。協会から受け取った anchor.json を置いてください。/ Cannot read the trust anchor {}: put the anchor.json from your association there.", anchor_path.display(), anchor_path.display())
    })?)
    .map_err(|e| anyhow::anyhow!("trust anchor {}: {e}", anchor_path.display()))?;
    let store: Arc<dyn Store> = match store {
        Some(s) => s,
        None => Arc::new(SledStore::open(&home.state().join("db"))?),
    };
    let dir_cache = DirFolder::new(home.directory_cache())?;
    // Entries stay on disk (unnamed scratch files in state/scratch/), indexes in memory: a
    // national directory of 300,000 offices costs about 7 MB of RAM rather than 120 MB.
    let mut directory = Directory::on_disk(anchor, crate::scratch_folder(&home.state())?);
    for p in dir_cache.load(&mut directory) {
        tracing::warn!("directory cache: {p}");
    }
    // The floors guard against rollback from the network from here on.
    dirsync::load_floors(&dir_cache.path, &mut directory);
    let directory = Arc::new(RwLock::new(directory));

    let (receipts, existing) = ReceiptLog::open(&home.receipts()).map_err(|e| {
        anyhow::anyhow!("受領記録 {} が壊れています: {e}。管理者に連絡してください。/ The receipt log {} is damaged: {e}. Contact your administrator.", home.receipts().display(), home.receipts().display())
    })?;
    let mut stats = Stats::default();
    let mut sent_ids = HashSet::new();
    for r in &existing {
        match (r.direction.as_str(), r.verdict.as_str()) {
            ("sent", "accepted") => stats.delivered += 1,
            ("sent", _) => stats.rejected_outgoing += 1,
            ("received", "accepted") => stats.received += 1,
            _ => stats.rejected_incoming += 1,
        }
        if r.direction == "sent" {
            sent_ids.insert(r.message_id.clone());
        }
    }

    // Leftovers of an interrupted receive never reach the care software.
    if let Ok(rd) = std::fs::read_dir(home.partial()) {
        for e in rd.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
    }

    let members_dir = directory.clone();
    let members = net::directory_members(members_dir);
    let listen: Vec<Multiaddr> = config
        .listen
        .iter()
        .map(|a| a.parse().with_context(|| format!("bad listen address {a}")))
        .collect::<anyhow::Result<_>>()?;
    let listed = directory
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .lookup(&office)
        .unwrap_or_else(|e| {
            tracing::warn!("{e}");
            None
        });
    let identity = choose_identity(&keys, listed.as_ref());
    let net = net::start(&identity, &listen, members, &net::NetConfig::office())?;

    // The receipt log is fsynced before the received index is flushed: after a crash in
    // between, the index is completed from the log so a resent message is not written twice.
    let mut mended = false;
    for r in existing.iter().filter(|r| r.direction == "received") {
        if let (Some(id), Ok(ack)) = (MessageId::from_hex(&r.message_id), hex::decode(&r.ack))
            && store.received_get(&id)?.is_none()
        {
            store.received_put(&id, &ack)?;
            mended = true;
        }
    }
    if mended {
        store.flush()?;
    }

    let mut queue = Queue::default();
    for (seq, item) in store.queue_all()? {
        queue.names.insert(item.file_name.clone());
        queue.next_seq = queue.next_seq.max(seq + 1);
        queue.items.insert(seq, item);
    }
    let (stop, shutdown) = watch::channel(false);
    let shared = Arc::new(Shared {
        home,
        config,
        office,
        kinds,
        keys: RwLock::new(keys),
        identity,
        store,
        directory,
        dir_cache,
        receipts: Mutex::new(receipts),
        sent_ids: Mutex::new(sent_ids),
        ignored_folders: Mutex::new(HashSet::new()),
        net,
        queue: Mutex::new(queue),
        wake: Notify::new(),
        rescan: Notify::new(),
        stats: Mutex::new(stats),
        shutdown,
        restart: Notify::new(),
        restartable: AtomicBool::new(false),
    });
    crate::send::reconcile(&shared).await;

    let tasks = vec![
        tokio::spawn(crate::receive::accept_loop(shared.clone())),
        tokio::spawn(directory_loop(shared.clone())),
        tokio::spawn(crate::outbox::watch_loop(shared.clone())),
        tokio::spawn(dispatch_loop(shared.clone())),
        tokio::spawn(status_loop(shared.clone())),
    ];
    tracing::info!(office = %shared.office, peer = %shared.net.peer_id, "node started");
    Ok(NodeHandle {
        shared,
        stop,
        tasks,
    })
}

/// The key generation to run as: the newest one the directory lists for us as valid now, so a
/// pre-announced key is used only from its start time; without a directory entry, the newest.
fn choose_identity(keys: &[KeyPair], listed: Option<&Entry>) -> ed25519_dalek::SigningKey {
    let now = now_secs();
    keys.iter()
        .find(|k| {
            let pk = k.identity.verifying_key().to_bytes();
            listed
                .as_ref()
                .is_some_and(|e| e.keys_at(now).any(|x| x.identity == pk))
        })
        .unwrap_or(&keys[0])
        .identity
        .clone()
}

/// After a directory update: picks up key files written by `renkei rotate-keys`, and says
/// when a newer key of ours has started, so the office restarts the node to use it.
fn check_own_keys(shared: &Shared) {
    if let Ok(on_disk) = shared.home.load_keys() {
        let mut keys = shared.keys.write().unwrap_or_else(|p| p.into_inner());
        if on_disk.len() != keys.len() {
            tracing::info!(generations = on_disk.len(), "loaded rotated keys");
            *keys = on_disk;
        }
    }
    let keys = shared
        .keys
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let entry = match shared.dir().lookup(&shared.office) {
        Ok(e) => e,
        Err(e) => {
            shared.error_about(
                Some(OWN_ENTRY.into()),
                format!("名簿を読めません / cannot read the directory: {e}"),
            );
            return;
        }
    };
    // One line about our own entry, replaced on each directory update, gone when all is well.
    let own = |msg: String| shared.error_about(Some(OWN_ENTRY.into()), msg);
    match entry.as_ref().map(|e| e.is_active()) {
        None => own(format!(
            "この事業所（{}）は連携名簿に載っていません。承認前か削除されています。協会に確認してください。/ This office ({}) is not in the directory: not approved yet, or removed. Ask your association.",
            shared.office, shared.office
        )),
        Some(false) => own(format!(
            "この事業所（{}）の登録は取り消されています。送受信できません。協会に確認してください。/ This office ({}) is revoked in the directory: it can neither send nor receive. Ask your association.",
            shared.office, shared.office
        )),
        Some(true) => shared.resolved(OWN_ENTRY),
    }
    let best = choose_identity(&keys, entry.as_ref());
    if best.verifying_key() != shared.identity.verifying_key() {
        if shared.config.switch_keys && cfg!(unix) && shared.restartable.load(Ordering::Relaxed) {
            tracing::info!(
                "新しい鍵の使用開始時刻になりました。新しい鍵で再起動します / your new key has started: restarting under it"
            );
            shared.restart.notify_one();
        } else {
            shared.error_about(Some("own-key".into()), "新しい鍵の使用開始時刻になりました。ノードを再起動してください（旧鍵は重複期間中は有効です）。/ Your new key has started: restart the node to use it (the old key stays valid during the overlap).".into());
        }
    }
}

/// How [`run`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// Ctrl-C or SIGTERM.
    Stopped,
    /// A newer key of ours has started: the caller starts the node again (the process runs
    /// itself again, so every socket and lock is released first).
    Restart,
}

/// Runs a node until Ctrl-C or SIGTERM, or until it asks to be restarted under a new key.
pub async fn run(home: Home) -> anyhow::Result<Ended> {
    let node = start(home).await?;
    node.shared.restartable.store(true, Ordering::Relaxed);
    let restart = node.shared.restart.notified();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut ended = tokio::select! {
            _ = tokio::signal::ctrl_c() => Ended::Stopped,
            _ = term.recv() => Ended::Stopped,
            _ = restart => Ended::Restart,
        };
        tracing::info!(?ended, "shutting down");
        // The shutdown runs to its end; a SIGTERM meanwhile turns a restart into a stop (a
        // service manager stopping the node must not see it come back).
        let shutdown = node.shutdown();
        tokio::pin!(shutdown);
        let mut term_open = true;
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                got = term.recv(), if term_open => match got {
                    Some(()) => ended = Ended::Stopped,
                    None => term_open = false,
                },
            }
        }
        Ok(ended)
    }
    #[cfg(not(unix))]
    {
        let ended = tokio::select! {
            r = tokio::signal::ctrl_c() => { r?; Ended::Stopped }
            _ = restart => Ended::Restart,
        };
        tracing::info!(?ended, "shutting down");
        node.shutdown().await;
        Ok(ended)
    }
}

/// Starts deliveries to partners that have queued files and are due.
async fn dispatch_loop(shared: Arc<Shared>) {
    let mut stop = shared.shutdown.clone();
    loop {
        if shared.stopping() {
            break;
        }
        let now = Instant::now();
        let mut next: Option<Instant> = None;
        let mut start = Vec::new();
        {
            let mut q = lock(&shared.queue);
            let pending: HashSet<OfficeNumber> = q
                .items
                .values()
                .filter_map(|i| OfficeNumber::parse(&i.recipient))
                .collect();
            for p in pending {
                let partner = q.partners.entry(p).or_insert(Partner {
                    active: false,
                    next_try: now,
                    backoff: Duration::from_millis(shared.config.retry_initial_ms),
                });
                if partner.active {
                    continue;
                }
                if partner.next_try <= now {
                    partner.active = true;
                    start.push(p);
                } else {
                    next =
                        Some(next.map_or(partner.next_try, |n: Instant| n.min(partner.next_try)));
                }
            }
        }
        for p in start {
            let s = shared.clone();
            tokio::spawn(async move {
                let result = crate::send::deliver(&s, p).await;
                let mut q = lock(&s.queue);
                let initial = Duration::from_millis(s.config.retry_initial_ms);
                let max = Duration::from_secs(s.config.retry_max_secs);
                if let Some(partner) = q.partners.get_mut(&p) {
                    partner.active = false;
                    match result {
                        Ok(()) => {
                            partner.backoff = initial;
                            partner.next_try = Instant::now();
                            drop(q);
                            s.resolved(&format!("delivery:{p}"));
                        }
                        Err(e) => {
                            partner.next_try = Instant::now() + partner.backoff;
                            partner.backoff = (partner.backoff * 2).min(max);
                            drop(q);
                            s.error_about(Some(format!("delivery:{p}")), format!("送信先 {p} に届けられません。相手先のノードが停止しているか接続できない可能性があります。自動で再試行します。続く場合は相手先に連絡してください / delivery to {p} failed: the partner's node may be stopped or unreachable; renkei keeps retrying by itself — if this lasts, contact the partner. ({e:#})"));
                        }
                    }
                }
                s.wake.notify_one();
            });
        }
        let sleep = next
            .map(|n| n.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_secs(1));
        tokio::select! {
            _ = shared.wake.notified() => {}
            _ = tokio::time::sleep(sleep.max(Duration::from_millis(5))) => {}
            _ = stop.changed() => {}
        }
    }
}

/// Syncs the directory from the configured directory nodes, at start and then periodically.
async fn directory_loop(shared: Arc<Shared>) {
    let mut stop = shared.shutdown.clone();
    // Until the first directory is in hand the node cannot send: retry soon, backing off from
    // 1 s to the refresh interval, rather than waiting a whole interval after a failure.
    let mut first = Duration::from_secs(1);
    loop {
        sync_directory(&shared).await;
        warn_expiry(&shared);
        let mut every = Duration::from_secs(shared.config.directory_refresh_secs.max(1));
        if shared.dir().regions().next().is_none() {
            every = every.min(first);
            first = (first * 2).min(Duration::from_secs(60));
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => break,
        }
    }
}

/// Says clearly when a region's snapshot is about to expire or has expired. Traffic goes on
/// with the last good snapshot (SPEC.md §6.5); the office should check its connection to the
/// directory nodes.
fn warn_expiry(shared: &Shared) {
    let now = now_secs();
    for (region, seq, expires_at, f) in shared
        .dir()
        .freshness(now, shared.config.expiry_warning_hours * 3600)
    {
        match f {
            Freshness::Fresh => {}
            Freshness::ExpiringSoon => tracing::warn!(%region, seq, expires_at, "名簿の有効期限が近づいています。名簿サーバーへの接続を確認してください。/ the directory snapshot expires soon: check the connection to the directory nodes"),
            Freshness::Expired => shared.error(format!("名簿（{region} 第{seq}版）の有効期限が切れています。最後に確認した名簿で送受信を続けています。名簿サーバーへの接続を確認してください。/ the directory snapshot of {region} (seq {seq}) has expired; the node keeps working with it — check the connection to the directory nodes")),
        }
    }
}

/// One directory sync round; returns whether anything changed.
pub(crate) async fn sync_directory(shared: &Arc<Shared>) -> bool {
    for addr in &shared.config.directory_nodes {
        let Ok(ma) = addr.parse::<Multiaddr>() else {
            shared.error(format!("directory node address {addr} is not a multiaddr"));
            continue;
        };
        let Some(peer) = ma.iter().find_map(|p| match p {
            libp2p::multiaddr::Protocol::P2p(id) => Some(id),
            _ => None,
        }) else {
            shared.error(format!(
                "directory node address {addr} has no /p2p/ peer id"
            ));
            continue;
        };
        shared.net.command(Command::Pin(peer));
        shared.net.add_address(peer, ma.clone()).await;
        let mut source = P2pSource {
            net: shared.net.clone(),
            peer,
            timeout: shared.timeout(),
        };
        // Most rounds find nothing new: look at the listing first, so that the directory
        // (150 MB at national scale) is copied only when there is something to apply.
        let pulled = match dirsync::Source::list(&mut source).await {
            Ok(offers) if !dirsync::offers_news(&offers, &shared.dir()) => return false,
            Ok(offers) => {
                let mut dir = shared.dir().clone();
                dirsync::pull_offers(&mut source, offers, &mut dir, &shared.dir_cache)
                    .await
                    .map(|report| (report, dir))
            }
            Err(e) => Err(e),
        };
        match pulled {
            Ok((report, dir)) => {
                for r in &report.refused {
                    shared.error(format!(
                        "名簿の更新を拒否しました / refused directory data from {peer}: {r}"
                    ));
                }
                if report.updated.is_empty() {
                    return false;
                }
                let _ = dirsync::save_floors(&shared.dir_cache.path, &dir);
                *shared.directory.write().unwrap_or_else(|p| p.into_inner()) = dir;
                check_own_keys(shared);
                tracing::info!(updated = ?report.updated, "directory updated");
                expel_non_members(shared).await;
                shared.rescan.notify_one();
                shared.wake.notify_one();
                return true;
            }
            Err(e) => shared.error(format!(
                "名簿サーバー {addr} に接続できません / cannot reach directory node {addr}: {e:#}"
            )),
        }
    }
    false
}

/// After a directory update, drops connections to peers that are no longer members.
async fn expel_non_members(shared: &Arc<Shared>) {
    let now = now_secs();
    for peer in shared.net.peers().await {
        let Some(key) = net::key_of(&peer) else {
            continue;
        };
        let member = {
            let d = shared.dir();
            // Not readable now: keep the connection (the gate decides on the next one).
            d.active_office_by_key(&key, now)
                .map_or(true, |o| o.is_some())
                || d.is_directory_node(&key)
        };
        let pinned = shared
            .config
            .directory_nodes
            .iter()
            .any(|a| a.contains(&peer.to_string()));
        if !member && !pinned {
            tracing::warn!(%peer, "closing connections to a peer that left the directory");
            shared.net.command(Command::Expel(peer));
        }
    }
}

/// The status file `renkei status` reads (`H/state/status.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    /// Our office.
    pub office: String,
    /// Our PeerId.
    pub peer_id: String,
    /// Where we listen.
    pub listening: Vec<String>,
    /// Directory regions: freshness.
    pub directory: Vec<RegionStatus>,
    /// Offices in the directory.
    pub directory_entries: usize,
    /// Connected peers.
    pub peers: Vec<String>,
    /// Files waiting for delivery.
    pub queued: usize,
    /// Files delivered and acknowledged.
    pub delivered: u64,
    /// Files received.
    pub received: u64,
    /// Files refused (ours, by checks or by partners).
    pub rejected: u64,
    /// Files from partners we refused.
    pub rejected_incoming: u64,
    /// Recent errors, oldest first.
    pub last_errors: Vec<String>,
    /// Unix seconds of this status.
    pub updated_at: u64,
    /// Whether the node is running (false after a clean shutdown).
    pub running: bool,
}

/// One region's freshness in the status.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegionStatus {
    /// Region id.
    pub region: String,
    /// Sequence number.
    pub seq: u64,
    /// Unix seconds.
    pub expires_at: u64,
    /// `fresh`, `expiring-soon` or `expired`.
    pub state: String,
}

pub(crate) async fn write_status(shared: &Arc<Shared>) -> anyhow::Result<Status> {
    let peers = shared.net.peers().await;
    let listening = shared.net.listen_addrs().await;
    let now = now_secs();
    let (directory, directory_entries) = {
        let d = shared.dir();
        let f = d
            .freshness(now, shared.config.expiry_warning_hours * 3600)
            .into_iter()
            .map(|(region, seq, expires_at, f)| RegionStatus {
                region,
                seq,
                expires_at,
                state: match f {
                    Freshness::Fresh => "fresh",
                    Freshness::ExpiringSoon => "expiring-soon",
                    Freshness::Expired => "expired",
                }
                .into(),
            })
            .collect();
        (f, d.entry_count())
    };
    let queued = lock(&shared.queue).items.len();
    let status = {
        let s = lock(&shared.stats);
        Status {
            office: shared.office.to_string(),
            peer_id: shared.net.peer_id.to_string(),
            listening: listening.iter().map(|a| a.to_string()).collect(),
            directory,
            directory_entries,
            peers: peers.iter().map(|p| p.to_string()).collect(),
            queued,
            delivered: s.delivered,
            received: s.received,
            rejected: s.rejected_outgoing,
            rejected_incoming: s.rejected_incoming,
            last_errors: s
                .last_errors
                .iter()
                .map(|(_, times, line)| match times {
                    1 => line.clone(),
                    n => format!("{line} [{n}回目 / {n} times]"),
                })
                .collect(),
            updated_at: now,
            running: !shared.stopping(),
        }
    };
    write_atomic(
        &shared.home.status(),
        &serde_json::to_vec_pretty(&status)?,
        false,
    )?;
    Ok(status)
}

async fn status_loop(shared: Arc<Shared>) {
    let mut stop = shared.shutdown.clone();
    loop {
        if let Err(e) = write_status(&shared).await {
            tracing::debug!("status: {e:#}");
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = stop.changed() => break,
        }
    }
}

/// Waits until `f` holds, polling the shared state (demo and tests).
pub async fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}

/// Unix milliseconds as Japan Standard Time, for people reading receipts at an audit.
pub fn jst(ms: u64) -> String {
    let secs = ms / 1000 + 9 * 3600;
    let (days, rest) = ((secs / 86400) as i64, secs % 86400);
    // Civil date from days since 1970-01-01 (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} JST",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}
