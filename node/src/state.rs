//! What a running node's tasks share: its identity, configuration, environment, store, directory,
//! queue, counters and recent errors. Below every task: the outbox, sender, receiver, status and
//! start-up code import this module, and it imports none of them.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use renkei_directory::Directory;
use renkei_protocol::envelope::MessageId;
use renkei_protocol::{OfficeNumber, ServiceKind};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::dirsync::DirFolder;
use crate::env::{Env, jst};
use crate::home::{Config, Home, KeyPair};
use crate::net::Net;
use crate::receipts::ReceiptLog;
use crate::store::{QueueItem, Store};

/// Locks a mutex, recovering from a poisoned lock (a panicked task must not stop the node).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The in-memory view of the durable queue.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    pub(crate) items: BTreeMap<u64, QueueItem>,
    pub(crate) names: HashSet<String>,
    pub(crate) next_seq: u64,
}

impl Queue {
    /// Forgets an item (after its store entry is removed).
    pub(crate) fn remove(&mut self, seq: u64) {
        if let Some(item) = self.items.remove(&seq) {
            self.names.remove(&item.file_name);
        }
    }
}

/// Counters and recent errors for `renkei status`.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) delivered: u64,
    pub(crate) received: u64,
    pub(crate) rejected_outgoing: u64,
    pub(crate) rejected_incoming: u64,
    /// (what it is about, if it can be resolved; how many times; the line shown).
    pub(crate) last_errors: VecDeque<(Option<String>, u32, String)>,
    /// What directory nodes and partners said of their time, against ours.
    pub(crate) clock: crate::clock::ClockSamples,
}

/// Messages being received now, per sender office: one stream per (sender, message id) at a
/// time, and a bound on the unfinished bytes a sender may leave on this office's disk.
#[derive(Debug, Default)]
pub(crate) struct Receiving {
    by_sender: HashMap<OfficeNumber, (HashSet<MessageId>, u64)>,
}

/// A claim on a message being received; released when dropped.
#[derive(Debug)]
pub(crate) struct Claim {
    shared: Arc<Shared>,
    sender: OfficeNumber,
    id: MessageId,
    bytes: u64,
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut r = lock(&self.shared.receiving);
        if let Some((ids, bytes)) = r.by_sender.get_mut(&self.sender) {
            ids.remove(&self.id);
            *bytes = bytes.saturating_sub(self.bytes);
            if ids.is_empty() {
                r.by_sender.remove(&self.sender);
            }
        }
    }
}

/// What every task of a node shares.
pub struct Shared {
    pub(crate) home: Home,
    pub(crate) config: Config,
    pub(crate) office: OfficeNumber,
    pub(crate) kinds: Vec<ServiceKind>,
    /// The clock, random source and fault points.
    pub(crate) env: Arc<Env>,
    /// Every key generation on disk, newest first (re-read when a rotation is published).
    pub(crate) keys: RwLock<Vec<KeyPair>>,
    /// The identity this run uses: its PeerId and the key that signs envelopes and acks.
    pub(crate) identity: ed25519_dalek::SigningKey,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) directory: Arc<RwLock<Directory>>,
    pub(crate) dir_cache: DirFolder,
    pub(crate) receipts: Mutex<ReceiptLog>,
    /// The partner's verdict on each of our messages whose `sent` receipt is written: such a
    /// message is never sent again, only completed from it.
    pub(crate) sent_ids: Mutex<HashMap<MessageId, renkei_protocol::ack::Verdict>>,
    /// Entries of the outbox already reported as never sent (folders, FIFOs, symlinks …).
    pub(crate) ignored: Mutex<HashSet<String>>,
    /// Outbox files answered by their partner that could not be moved out (reported): not
    /// taken again while they stay as they were.
    pub(crate) stuck: Mutex<HashMap<String, crate::files::Stamp>>,
    pub(crate) net: Net,
    pub(crate) queue: Mutex<Queue>,
    pub(crate) receiving: Mutex<Receiving>,
    pub(crate) wake: Notify,
    pub(crate) rescan: Notify,
    pub(crate) stats: Mutex<Stats>,
    pub(crate) shutdown: CancellationToken,
    /// Cancelled when the node stops: every task of the node ends with it.
    pub(crate) tasks: CancellationToken,
    /// Asks `run` to restart the node (to switch to a newer key).
    pub(crate) restart: Notify,
    /// Whether anyone acts on `restart` (`run` does; an in-process node of the demo or a
    /// test does not, so it shows the restart notice instead).
    pub(crate) restartable: AtomicBool,
    /// What the node knows of partners' reachability and the mailboxes.
    pub(crate) mail: Mutex<MailState>,
    /// Asks the mailbox task to look now (a mailbox said something arrived, or files were
    /// just deposited).
    pub(crate) mail_now: Notify,
    /// Imported statements kept in `H/imported.jsonl` (SPEC.md §8.2).
    pub(crate) imported: Mutex<crate::imported::ImportedBook>,
    /// Asks the imported task to send now (a statement was just made).
    pub(crate) imported_now: Notify,
    /// Plaintext bytes of each message (by id, hex) written to its stream so far.
    pub(crate) progress: Mutex<HashMap<String, u64>>,
    /// Where the status page and local API listen, once bound.
    pub(crate) ui_addr: std::sync::OnceLock<std::net::SocketAddr>,
}

/// Partners' reachability and how each was last reached.
#[derive(Debug, Default)]
pub(crate) struct MailState {
    /// Since when (Unix ms) a partner has been unreachable, without a delivery since.
    pub(crate) unreachable_since: HashMap<OfficeNumber, u64>,
    /// How the last file to or from each partner went: `direct` or `mailbox`.
    pub(crate) routes: BTreeMap<String, &'static str>,
    /// Mailboxes (directory node keys, hex) that may hold outcomes of our deposits for us to
    /// collect — also after the file was answered directly (its recipient may drain the
    /// envelope days later) — with the time of our last deposit there.
    pub(crate) outcomes_at: BTreeMap<String, u64>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("office", &self.office)
            .finish_non_exhaustive()
    }
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
        let line = format!("{} {msg}", jst(self.env.now_ms()));
        s.last_errors.push_back((topic, times, line));
    }

    /// Clears the errors recorded about `topic`.
    pub(crate) fn resolved(&self, topic: &str) {
        lock(&self.stats)
            .last_errors
            .retain(|e| e.0.as_deref() != Some(topic));
    }

    /// Appends receipts durably (one fsync) — unless this node has crashed.
    pub(crate) fn append_receipts(
        &self,
        batch: Vec<crate::receipts::NewReceipt>,
    ) -> anyhow::Result<()> {
        // Checked under the log's lock: a node cut off (see `NodeHandle::kill`) takes the
        // same lock, so no append lands after it.
        let mut log = lock(&self.receipts);
        self.env.faults.alive()?;
        if self.env.faults.hit(crate::env::FaultPoint::DiskFull) {
            anyhow::bail!("writing receipts: injected fault: disk full");
        }
        log.append(batch)
            .map_err(|e| anyhow::anyhow!("writing receipts: {e}"))?;
        Ok(())
    }

    /// The verified directory.
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

    /// How long to wait for a peer before giving up on a stream.
    pub(crate) fn timeout(&self) -> Duration {
        Duration::from_secs(self.config.io_timeout_secs.max(1))
    }

    /// Whether the node is shutting down.
    pub(crate) fn stopping(&self) -> bool {
        self.shutdown.is_cancelled() || self.tasks.is_cancelled()
    }

    /// Runs `work` as a task of this node: it ends when the node stops or crashes.
    pub(crate) fn spawn<F>(&self, work: F) -> tokio::task::JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let token = self.tasks.clone();
        tokio::spawn(async move {
            tokio::select! {
                biased;
                () = token.cancelled() => {}
                () = work => {}
            }
        })
    }

    /// Claims (sender, id) for one receiving stream, with `bytes` of partial file. `Err` with
    /// a reason when another stream holds it or the sender's unfinished bytes would pass
    /// `max_partial_mb`.
    pub(crate) fn claim(
        self: &Arc<Self>,
        sender: OfficeNumber,
        id: MessageId,
        bytes: u64,
    ) -> Result<Claim, String> {
        let limit = self.config.max_partial_mb.saturating_mul(1 << 20);
        let mut r = lock(&self.receiving);
        let (ids, held) = r.by_sender.entry(sender).or_default();
        if ids.contains(&id) {
            return Err(format!(
                "このメッセージは別の接続で受信中です / message {id} is being received on another stream"
            ));
        }
        // One message may always be received, however large (max_file_mb bounds it).
        if !ids.is_empty() && held.saturating_add(bytes) > limit {
            return Err(format!(
                "送信元 {sender} からの受信途中のデータが上限（max_partial_mb = {} MiB）に達しています / unfinished data from {sender} has reached max_partial_mb = {} MiB",
                self.config.max_partial_mb, self.config.max_partial_mb
            ));
        }
        ids.insert(id);
        *held = held.saturating_add(bytes);
        Ok(Claim {
            shared: self.clone(),
            sender,
            id,
            bytes,
        })
    }
}
