//! Start-up and the node's task loops: the delivery dispatcher, directory sync, status and
//! retention. The work itself lives in the modules these loops call (`outbox`, `send`,
//! `receive`, `status`), all of which share [`Shared`] from `state`.

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::Context;
use libp2p::Multiaddr;
use renkei_directory::{Anchor, Directory, Entry, Freshness};
use renkei_protocol::OfficeNumber;
use renkei_protocol::envelope::MessageId;
use renkei_protocol::session::{Backoff, Schedule};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::dirsync::{self, DirFolder, P2pSource};
use crate::env::{Env, file_age};
use crate::files::shown;
use crate::home::{Config, Home, KeyPair, parse_office};
use crate::net::{self, Command};
use crate::receipts::ReceiptLog;
pub use crate::state::Shared;
use crate::state::{Queue, Stats, lock};
pub use crate::status::{RegionStatus, Status};
use crate::store::{SledStore, Store};

/// How a node is run: its environment and, optionally, its store.
#[derive(Debug)]
pub struct NodeOptions {
    /// Clock, random source and fault points.
    pub env: Arc<Env>,
    /// The store; `None`: sled in `H/state/db`.
    pub store: Option<Arc<dyn Store>>,
}

impl Default for NodeOptions {
    fn default() -> Self {
        NodeOptions {
            env: Arc::new(Env::system()),
            store: None,
        }
    }
}

/// A running node.
pub struct NodeHandle {
    /// Shared state (for the demo, tests and the lab).
    pub shared: Arc<Shared>,
    stop: CancellationToken,
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
        self.stop.cancel();
        self.shared.wake.notify_waiters();
        self.shared.rescan.notify_waiters();
        // One deadline for all of them: a service manager's SIGTERM is answered in seconds.
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            futures::future::join_all(self.tasks),
        )
        .await;
        self.shared.tasks.cancel();
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            crate::status::write_status(&self.shared),
        )
        .await;
        let _ = self.shared.store.flush();
        self.shared.net.shutdown().await;
    }

    /// Stops the node at once, as a power cut would: no last status, no flush; its tasks end
    /// where they stand. Returns once its network is gone (its addresses can be used again).
    pub async fn kill(self) {
        {
            // Marked crashed under the receipt log's lock: no receipt is appended after this,
            // and the store refuses every write (blocking work still running finds it so).
            let _log = lock(&self.shared.receipts);
            self.shared.env.faults.crash_now();
        }
        self.shared.tasks.cancel();
        self.shared.net.shutdown().await;
        for t in self.tasks {
            let _ = t.await;
        }
    }

    /// The node's clock, random source and fault points.
    pub fn env(&self) -> &Env {
        &self.shared.env
    }

    /// Whether an injected crash fault has stopped this node.
    pub fn crashed(&self) -> bool {
        self.shared.env.faults.has_crashed()
    }

    /// How many files wait in the queue.
    pub fn queued(&self) -> usize {
        lock(&self.shared.queue).items.len()
    }

    /// Files delivered and acknowledged by partners so far.
    pub fn delivered(&self) -> u64 {
        lock(&self.shared.stats).delivered
    }

    /// Files received from partners so far.
    pub fn received(&self) -> u64 {
        lock(&self.shared.stats).received
    }

    /// Offices in the node's verified directory.
    pub fn directory_entries(&self) -> usize {
        self.shared.dir().entry_count()
    }

    /// Where the node's status page and local API listen (`None`: `ui_port = 0`, or the port
    /// was in use).
    pub fn ui_addr(&self) -> Option<std::net::SocketAddr> {
        self.shared.ui_addr.get().copied()
    }

    /// The node's status now.
    pub async fn status(&self) -> Status {
        crate::status::status(&self.shared).await
    }
}

/// Starts a node from its home folder, on the system clock.
pub async fn start(home: Home) -> anyhow::Result<NodeHandle> {
    let config = home.config()?;
    start_with(home, config, NodeOptions::default()).await
}

/// Starts a node with an explicit configuration and environment.
pub async fn start_with(
    home: Home,
    config: Config,
    options: NodeOptions,
) -> anyhow::Result<NodeHandle> {
    let env = options.env;
    home.create_dirs()?;
    let (office, kinds) = parse_office(&config)?;
    let keys = home.load_keys()?;
    let anchor_path = home.root.join(&config.anchor);
    let anchor = Anchor::from_json(&std::fs::read_to_string(&anchor_path).with_context(|| {
        format!("信頼アンカー {} を読めません。協会から受け取った anchor.json を置いてください。/ Cannot read the trust anchor {}: put the anchor.json from your association there.", anchor_path.display(), anchor_path.display())
    })?)
    .map_err(|e| anyhow::anyhow!("trust anchor {}: {e}", anchor_path.display()))?;
    let store: Arc<dyn Store> = Arc::new(crate::store::Fenced {
        inner: match options.store {
            Some(s) => s,
            None => Arc::new(SledStore::open(&home.state().join("db"))?),
        },
        env: env.clone(),
    });
    let dir_cache = DirFolder::new(home.directory_cache())?;
    // Entries stay on disk (unnamed scratch files in state/.scratch/), indexes in memory: a
    // national directory of 300,000 offices costs about 7 MB of RAM rather than 120 MB.
    let mut directory = Directory::on_disk(anchor, crate::scratch_folder(&home.state())?);
    for p in dir_cache.load(&mut directory) {
        tracing::warn!("directory cache: {p}");
    }
    // The floors guard against rollback from the network from here on.
    dirsync::load_floors(&dir_cache.path, &mut directory);
    let directory = Arc::new(RwLock::new(directory));

    let (mut receipts, mut existing) = ReceiptLog::open(&home.receipts()).map_err(|e| {
        anyhow::anyhow!("受領記録 {} が壊れています: {e}。管理者に連絡してください。/ The receipt log {} is damaged: {e}. Contact your administrator.", home.receipts().display(), home.receipts().display())
    })?;

    let members = net::directory_members(directory.clone(), env.clock.clone());
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
    let identity = choose_identity(&keys, listed.as_ref(), env.now_secs());

    // What a crash left between a receive's intent and its receipt is finished or undone
    // before anything else touches the inbox (SPEC.md §7.3 step 6).
    existing.extend(crate::receive::recover_intents(
        &home,
        store.as_ref(),
        &mut receipts,
        &existing,
        office,
        &identity,
        env.now_ms(),
    )?);
    // Leftovers of an interrupted receive never reach the care software.
    if let Ok(rd) = std::fs::read_dir(home.partial()) {
        for e in rd.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
    }
    let mut stats = Stats::default();
    let mut sent_ids = std::collections::HashMap::new();
    for r in &existing {
        match (r.direction.as_str(), r.verdict.as_str()) {
            ("sent", "accepted") => stats.delivered += 1,
            ("sent", _) => stats.rejected_outgoing += 1,
            ("received", "accepted") => stats.received += 1,
            _ => stats.rejected_incoming += 1,
        }
        if r.direction == "sent"
            && let Some(ack) = r.parsed_ack()
        {
            sent_ids.insert(ack.message_id, ack.verdict);
        }
    }
    let dir_nodes: Vec<Multiaddr> = config
        .directory_nodes
        .iter()
        .filter_map(|a| a.parse().ok())
        .collect();
    let relays = net::directory_relays(
        directory.clone(),
        env.clock.clone(),
        office,
        dir_nodes.clone(),
    );
    let net = net::start(
        &identity,
        &listen,
        members,
        &net::NetConfig::office()
            .on(&[listen.as_slice(), &dir_nodes].concat())
            .with_relays(relays, config.reachability),
    )?;

    // The receipt log is fsynced before the received index is flushed: after a crash in
    // between, the index is completed from the log so a resent message is not written twice.
    let mut mended = false;
    for r in existing.iter().filter(|r| r.direction == "received") {
        if let (Some(id), Some(sender), Ok(ack)) = (
            MessageId::from_hex(&r.message_id),
            OfficeNumber::parse(&r.partner),
            hex::decode(&r.ack),
        ) && store.received_get(&sender, &id)?.is_none()
        {
            store.received_put(&sender, &id, &ack)?;
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
    let outcomes_at = queue
        .items
        .values()
        .filter(|i| i.deposited_ms != 0)
        .map(|i| (i.mailbox.clone(), i.deposited_ms))
        .collect();
    // A token, not a watch channel: its waiters wake in the order they began to wait (a
    // watch channel's, from lists picked at random), so a lab run stops a node the same way
    // every time.
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let home_for_book = home.clone();
    // The page and API: on loopback, bound before the node's tasks start (its address is in
    // the status); a port in use is said in the status and the node runs on without them.
    let ui = crate::web::bind(&home, &config, &env).await;
    let shared = Arc::new(Shared {
        home,
        config,
        office,
        kinds,
        env,
        keys: RwLock::new(keys),
        identity,
        store,
        directory,
        dir_cache,
        receipts: Mutex::new(receipts),
        sent_ids: Mutex::new(sent_ids),
        ignored: Mutex::new(HashSet::new()),
        stuck: Mutex::new(Default::default()),
        net,
        queue: Mutex::new(queue),
        receiving: Mutex::new(Default::default()),
        wake: Notify::new(),
        rescan: Notify::new(),
        stats: Mutex::new(stats),
        shutdown,
        tasks: CancellationToken::new(),
        restart: Notify::new(),
        restartable: AtomicBool::new(false),
        mail: Mutex::new(crate::state::MailState {
            // Outcomes of earlier deposits are collected even if their files are answered
            // directly first.
            outcomes_at,
            ..Default::default()
        }),
        mail_now: Notify::new(),
        imported: Mutex::new(crate::imported::ImportedBook::read(&home_for_book)),
        imported_now: Notify::new(),
        progress: Mutex::new(Default::default()),
        ui_addr: Default::default(),
    });
    crate::send::reconcile(&shared).await;

    let mut tasks = vec![
        shared.spawn(crate::receive::accept_loop(shared.clone())),
        shared.spawn(directory_loop(shared.clone())),
        shared.spawn(crate::outbox::watch_loop(shared.clone())),
        shared.spawn(dispatch_loop(shared.clone())),
        shared.spawn(status_loop(shared.clone())),
        shared.spawn(retention_loop(shared.clone())),
        shared.spawn(crate::mailclient::mail_loop(shared.clone())),
        shared.spawn(crate::imported::send_loop(shared.clone())),
        shared.spawn(crate::imported::accept_loop(shared.clone())),
    ];
    match ui {
        Ok(Some(ui)) => {
            let _ = shared.ui_addr.set(ui.addr);
            tasks.push(shared.spawn(crate::web::serve(shared.clone(), ui)));
        }
        Ok(None) => {}
        Err(e) => shared.error(format!("{e:#}")),
    }
    // A crash fault stops every task of this node at once, and its network with it.
    tokio::spawn({
        let s = shared.clone();
        async move {
            tokio::select! {
                biased;
                () = s.env.faults.crashed() => {
                    tracing::error!(office = %s.office, "node crashed (injected fault)");
                    s.tasks.cancel();
                    s.net.shutdown().await;
                }
                () = s.tasks.cancelled() => {}
            }
        }
    });
    tracing::info!(office = %shared.office, peer = %shared.net.peer_id, "node started");
    Ok(NodeHandle {
        shared,
        stop,
        tasks,
    })
}

/// The key generation to run as: the newest one the directory lists for us as valid now, so a
/// pre-announced key is used only from its start time; without a directory entry, the newest.
fn choose_identity(
    keys: &[KeyPair],
    listed: Option<&Entry>,
    now: u64,
) -> ed25519_dalek::SigningKey {
    keys.iter()
        .find(|k| {
            let pk = k.identity.verifying_key().to_bytes();
            listed.is_some_and(|e| e.keys_at(now).any(|x| x.identity == pk))
        })
        .unwrap_or(&keys[0])
        .identity
        .clone()
}

/// The topic of status lines about our own directory entry.
const OWN_ENTRY: &str = "own-entry";

/// The topic of status lines about fetching the directory.
const DIRECTORY_SYNC: &str = "directory-sync";

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
    let best = choose_identity(&keys, entry.as_ref(), shared.env.now_secs());
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

/// Runs a node until Ctrl-C or SIGTERM, or until it asks to be restarted under a new key. A
/// crash fault armed in `env` ends the process at once, as a power cut would.
pub async fn run(home: Home, env: Env) -> anyhow::Result<Ended> {
    let config = home.config()?;
    let node = start_with(
        home,
        config,
        NodeOptions {
            env: Arc::new(env),
            store: None,
        },
    )
    .await?;
    node.shared.restartable.store(true, Ordering::Relaxed);
    let restart = node.shared.restart.notified();
    let crashed = node.shared.env.faults.crashed();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut ended = tokio::select! {
            _ = tokio::signal::ctrl_c() => Ended::Stopped,
            _ = term.recv() => Ended::Stopped,
            _ = restart => Ended::Restart,
            () = crashed => std::process::abort(),
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
            () = crashed => std::process::abort(),
        };
        tracing::info!(?ended, "shutting down");
        node.shutdown().await;
        Ok(ended)
    }
}

/// Starts deliveries to partners that have queued files and are due, on the node's clock.
async fn dispatch_loop(shared: Arc<Shared>) {
    let stop = shared.shutdown.clone();
    let schedule = Arc::new(Mutex::new(Schedule::new(Backoff {
        initial_ms: shared.config.retry_initial_ms,
        max_ms: shared.config.retry_max_secs.saturating_mul(1000),
    })));
    loop {
        if shared.stopping() {
            break;
        }
        let now = shared.env.now_ms();
        // In order, so partners due together start in the same order every run.
        let pending: BTreeSet<OfficeNumber> = lock(&shared.queue)
            .items
            .values()
            .filter_map(|i| OfficeNumber::parse(&i.recipient))
            .collect();
        let (start, next) = {
            let mut s = lock(&schedule);
            let due = s.due(now, pending.iter().copied());
            s.retain(|p| pending.contains(p));
            due
        };
        for p in start {
            let s = shared.clone();
            let schedule = schedule.clone();
            shared.spawn(async move {
                let result = crate::send::deliver(&s, p).await;
                let now = s.env.now_ms();
                match result {
                    Ok(()) => {
                        lock(&schedule).succeeded(&p, now);
                        s.resolved(&format!("delivery:{p}"));
                    }
                    Err(e) => {
                        lock(&schedule).failed(&p, now);
                        s.error_about(Some(format!("delivery:{p}")), delivery_failure(p, &e));
                    }
                }
                s.wake.notify_one();
            });
        }
        let until = next.unwrap_or(now.saturating_add(1000));
        tokio::select! {
            biased;
            _ = shared.wake.notified() => {}
            _ = shared.env.clock.sleep_until(until) => {}
            _ = stop.cancelled() => {}
        }
    }
}

/// What a failed delivery means for the office, in both languages.
fn delivery_failure(p: OfficeNumber, e: &crate::send::DeliveryError) -> String {
    use crate::send::DeliveryError;
    match e {
        e if e.is_unreachable() => format!(
            "送信先 {p} に届けられません。相手先のノードが停止しているか接続できない可能性があります。自動で再試行します。続く場合は相手先に連絡してください / delivery to {p} failed: the partner's node may be stopped or unreachable; renkei keeps retrying by itself — if this lasts, contact the partner. ({e})"
        ),
        DeliveryError::NotListed(_) => format!(
            "{e}。名簿の更新後に自動で再試行します。続く場合は協会に確認してください / it is retried after the next directory update; if this lasts, ask your association"
        ),
        DeliveryError::Refused { .. } => format!("送信先 {p} / delivery to {p}: {e}"),
        DeliveryError::Deposited(_) => e.to_string(),
        // Whose clock and by how much, worded when the refusal came (crate::clock).
        DeliveryError::Clock(line) => line.clone(),
        _ => format!(
            "送信先 {p} への送信中にこのパソコンでエラーが起きました。自動で再試行します。続く場合はディスクの空きと権限を確認してください / delivery to {p} failed on this computer; it is retried — if this lasts, check free disk space and permissions: {e:#}"
        ),
    }
}

/// Syncs the directory from the configured directory nodes, at start and then periodically.
async fn directory_loop(shared: Arc<Shared>) {
    let stop = shared.shutdown.clone();
    // Until the first directory is in hand the node cannot send: retry soon, backing off from
    // 1 s to the refresh interval, rather than waiting a whole interval after a failure.
    let mut first = Duration::from_secs(1);
    loop {
        sync_directory(&shared).await;
        shared.spawn(crate::clock::sample_directory_nodes(shared.clone()));
        warn_expiry(&shared);
        let mut every = Duration::from_secs(shared.config.directory_refresh_secs.max(1));
        if shared.dir().regions().next().is_none() {
            every = every.min(first);
            first = (first * 2).min(Duration::from_secs(60));
        }
        // Spread by up to a tenth (a second at least): offices started together (after a
        // power cut, or in the lab) do not all ask their directory node at the same moment.
        every += Duration::from_millis(shared.env.random_below_for(
            "directory refresh",
            (every.as_millis() as u64 / 10).max(1000),
        ));
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            _ = shared.env.sleep(every) => {}
        }
    }
}

/// Says clearly when a region's snapshot is about to expire or has expired. Traffic goes on
/// with the last good snapshot (SPEC.md §6.5); the office should check its connection to the
/// directory nodes.
fn warn_expiry(shared: &Shared) {
    let now = shared.env.now_secs();
    for (region, seq, expires_at, f) in shared
        .dir()
        .freshness(now, shared.config.expiry_warning_hours.saturating_mul(3600))
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
    // Each round starts at a node chosen at random: the offices of a region share the load
    // of their directory nodes rather than all asking the first one listed.
    let nodes = &shared.config.directory_nodes;
    let start = shared
        .env
        .random_below_for("directory node", nodes.len() as u64) as usize;
    for addr in nodes.iter().cycle().skip(start).take(nodes.len()) {
        let Ok(ma) = addr.parse::<Multiaddr>() else {
            shared.error(format!(
                "renkei.toml の名簿サーバーのアドレス {} が読めません。協会から受け取ったアドレス（/ip4/…/tcp/…/p2p/…）に直してください / the directory node address {} in renkei.toml cannot be read: write the address from your association (/ip4/…/tcp/…/p2p/…)",
                shown(addr),
                shown(addr)
            ));
            continue;
        };
        let Some(peer) = ma.iter().find_map(|p| match p {
            libp2p::multiaddr::Protocol::P2p(id) => Some(id),
            _ => None,
        }) else {
            shared.error(format!(
                "renkei.toml の名簿サーバーのアドレス {} に /p2p/ で始まる識別子がありません。協会から受け取ったアドレスをそのまま書いてください / the directory node address {} in renkei.toml has no /p2p/ peer id: write the address exactly as your association gave it",
                shown(addr),
                shown(addr)
            ));
            continue;
        };
        shared.net.command(Command::Pin(peer));
        shared.net.add_address(peer, ma.clone()).await;
        let mut source = P2pSource {
            net: shared.net.clone(),
            peer,
            timeout: shared.timeout(),
            jitter_seed: shared.env.random_below_for("directory retries", u64::MAX),
        };
        // Most rounds find nothing new: look at the listing first, so that the directory
        // (150 MB at national scale) is copied only when there is something to apply.
        let pulled = match dirsync::Source::list(&mut source).await {
            Ok(offers) if !dirsync::offers_news(&offers, &shared.dir()) => {
                shared.resolved(DIRECTORY_SYNC);
                return false;
            }
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
                shared.resolved(DIRECTORY_SYNC);
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
                // The mailboxes are known from the directory: look at them now.
                shared.mail_now.notify_one();
                return true;
            }
            // One line for the trouble, counting its repeats; gone once a sync succeeds.
            Err(e) => shared.error_about(
                Some(DIRECTORY_SYNC.into()),
                format!(
                    "名簿サーバー {addr} から名簿を取得できません。ネットワークと、協会でこの事業所の承認と公開が済んでいるか（名簿サーバーは名簿に載った事業所だけを受け付けます）を確認してください。自動で再試行します / cannot get the directory from {addr}: check the network, and that your association has approved and published this office (a directory node admits listed offices only); renkei retries by itself. ({e:#})"
                ),
            ),
        }
    }
    false
}

/// After a directory update, drops connections to peers that are no longer members.
async fn expel_non_members(shared: &Arc<Shared>) {
    let now = shared.env.now_secs();
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

async fn status_loop(shared: Arc<Shared>) {
    let stop = shared.shutdown.clone();
    loop {
        if let Err(e) = crate::status::write_status(&shared).await {
            tracing::debug!("status: {e:#}");
        }
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            _ = shared.env.sleep(Duration::from_secs(shared.config.status_secs.max(1))) => {}
        }
    }
}

/// Removes files older than `sent_keep_days` from `sent/`, at start and every six hours.
async fn retention_loop(shared: Arc<Shared>) {
    let stop = shared.shutdown.clone();
    loop {
        let s = shared.clone();
        match crate::env::file_work(move || prune_sent(&s)).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(removed = n, "sent/: removed copies past sent_keep_days"),
            Ok(Err(e)) => shared.error(format!(
                "送信済みフォルダの整理に失敗 / cannot prune sent/: {e:#}"
            )),
            Err(e) => tracing::warn!("retention task: {e}"),
        }
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            _ = shared.env.sleep(Duration::from_secs(6 * 3600)) => {}
        }
    }
}

/// Deletes the copies in `sent/` older than `sent_keep_days` (by the time they were delivered,
/// which is their modification time there); returns how many.
pub(crate) fn prune_sent(shared: &Shared) -> anyhow::Result<usize> {
    let keep = Duration::from_secs(shared.config.sent_keep_days.saturating_mul(86400));
    prune_folder(&shared.home.sent(), keep)
}

/// Deletes the regular files of `dir` older than `keep`; returns how many.
fn prune_folder(dir: &std::path::Path, keep: Duration) -> anyhow::Result<usize> {
    let mut removed = 0;
    for e in std::fs::read_dir(dir)?.flatten() {
        let Ok(meta) = e.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        let old = meta
            .modified()
            .ok()
            .and_then(file_age)
            .is_some_and(|age| age >= keep);
        if old && std::fs::remove_file(e.path()).is_ok() {
            removed += 1;
        }
    }
    if removed > 0 {
        crate::files::sync_dir(dir)?;
    }
    Ok(removed)
}

/// `renkei run`: runs the node of the home at `home` in the foreground on the system's clock
/// and randomness, with the fault point named in `RENKEI_FAULT` armed (for tests of a whole
/// process, e.g. crash-after-inbox-write), and runs this program again when the node asks to
/// be restarted under a new key.
pub fn run_command(home: std::path::PathBuf) -> anyhow::Result<std::process::ExitCode> {
    let env = Env::system();
    if let Ok(name) = std::env::var("RENKEI_FAULT") {
        let point = crate::env::FaultPoint::parse(&name)
            .with_context(|| format!("RENKEI_FAULT={name}: unknown fault point"))?;
        env.faults.arm(point, 0);
    }
    let rt = crate::runtime()?;
    let ended = rt.block_on(run(Home::new(home), env));
    // A blocking task stuck in the operating system (a hung disk, say) must not keep
    // the process from ending once the node has stopped.
    rt.shutdown_timeout(Duration::from_secs(2));
    if ended? == Ended::Restart {
        restart_self()?;
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// Runs this program again in this process (same arguments, same process id, so a service
/// manager sees no change) once the node has shut down cleanly: every socket, file lock and
/// key of the old run is released by the exec.
#[cfg(unix)]
fn restart_self() -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    // On Linux the running program itself, even if a package upgrade replaced its file.
    let exe = if cfg!(target_os = "linux") {
        std::path::PathBuf::from("/proc/self/exe")
    } else {
        std::env::current_exe().context("finding this program to restart it")?
    };
    let err = std::process::Command::new(&exe)
        .args(std::env::args_os().skip(1))
        .exec();
    Err(anyhow::anyhow!(
        "再起動できません。ノードを手動で起動してください / cannot restart ({}): start the node again by hand: {err}",
        exe.display()
    ))
}

#[cfg(not(unix))]
fn restart_self() -> anyhow::Result<()> {
    anyhow::bail!(
        "新しい鍵で使うためにノードを再起動してください / restart the node to use the new key"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_past_their_keeping_time_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("UPPLAN_old.CSV");
        let new = dir.path().join("UPPLAN_new.CSV");
        std::fs::write(&old, b"old").unwrap();
        std::fs::write(&new, b"new").unwrap();
        let two_days_ago = std::time::SystemTime::now() - Duration::from_secs(2 * 86400);
        std::fs::File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(two_days_ago)
            .unwrap();
        assert_eq!(
            prune_folder(dir.path(), Duration::from_secs(86400)).unwrap(),
            1
        );
        assert!(!old.exists() && new.exists());
        assert_eq!(
            prune_folder(dir.path(), Duration::from_secs(86400)).unwrap(),
            0
        );
    }
}
