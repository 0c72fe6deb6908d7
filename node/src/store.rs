//! The node's durable state behind a small trait: sled in production, memory in tests and the
//! lab. Nothing here holds care data: the queue holds file names, hashes and routes; the
//! received index holds (sender office, message id) and the acks we signed.
//!
//! Durability rule (sled acknowledges writes in memory): call [`Store::flush`] before anything
//! that depends on the write is acknowledged to a peer or a file is deleted.

use std::collections::BTreeMap;
use std::sync::Mutex;

use renkei_protocol::OfficeNumber;
use renkei_protocol::envelope::MessageId;
use serde::{Deserialize, Serialize};

use crate::files::Stamp;

/// A file waiting for delivery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueItem {
    /// Kept across retries, so the recipient writes it once.
    pub message_id: String,
    /// The standard-spec file name (the file sits in the outbox under this name).
    pub file_name: String,
    /// The recipient office.
    pub recipient: String,
    /// SHA-256 of the plaintext when it was queued.
    pub sha256: String,
    /// Plaintext length.
    pub size: u64,
    /// Unix milliseconds when it was queued.
    pub queued_at_ms: u64,
    /// Length and modification time when it was checked: a file changed after that is not
    /// sealed, nor moved to `sent/` (queues written before this field read as unknown).
    #[serde(default)]
    pub stamp: Stamp,
    /// Unix ms when it was left in the partner's mailbox (0: not deposited).
    #[serde(default)]
    pub deposited_ms: u64,
    /// The mailbox (directory node key, hex) that keeps it.
    #[serde(default)]
    pub mailbox: String,
}

impl QueueItem {
    /// The message id (a damaged entry reads as all zeros, which no sender draws).
    pub fn id(&self) -> MessageId {
        MessageId::from_hex(&self.message_id).unwrap_or(MessageId([0; 16]))
    }

    /// The plaintext hash.
    pub fn hash(&self) -> [u8; 32] {
        let mut h = [0u8; 32];
        let _ = hex::decode_to_slice(&self.sha256, &mut h);
        h
    }
}

/// A file the receiver is about to rename into its inbox (SPEC.md §7.3 step 6): recorded
/// durably before the rename, and finished (receipt and ack from this record) or undone at
/// start, so a file is written into the inbox at most once even if the care software has taken
/// it away before a resend.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    /// The standard-spec file name it gets in `inbox/`.
    pub file_name: String,
    /// SHA-256 of the plaintext, hex (the hash the envelope was verified against).
    pub sha256: String,
    /// Plaintext length.
    pub size: u64,
    /// Sealed length as received (0 for a local route).
    pub sealed_size: u64,
    /// Unix milliseconds when its receive began.
    pub started_ms: u64,
}

impl Intent {
    /// The plaintext hash.
    pub fn hash(&self) -> [u8; 32] {
        let mut h = [0u8; 32];
        let _ = hex::decode_to_slice(&self.sha256, &mut h);
        h
    }
}

/// The received index's key: a message is known by its sender office and its id.
fn received_key(sender: &OfficeNumber, id: &MessageId) -> [u8; 26] {
    let mut k = [0u8; 26];
    k[..10].copy_from_slice(sender.as_bytes());
    k[10..].copy_from_slice(&id.0);
    k
}

/// A received-index key read back (None for a damaged one).
fn from_received_key(k: &[u8]) -> Option<(OfficeNumber, MessageId)> {
    let k = <&[u8; 26]>::try_from(k).ok()?;
    let office = OfficeNumber::parse(std::str::from_utf8(&k[..10]).ok()?)?;
    let id = MessageId(k[10..].try_into().ok()?);
    Some((office, id))
}

/// Storage errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("state database: {0}")]
    Db(String),
}

/// The node's durable state.
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Adds or replaces a queue item under its sequence number.
    fn queue_put(&self, seq: u64, item: &QueueItem) -> Result<(), StoreError>;
    /// Removes a queue item.
    fn queue_remove(&self, seq: u64) -> Result<(), StoreError>;
    /// Every queue item, in sequence order.
    fn queue_all(&self) -> Result<Vec<(u64, QueueItem)>, StoreError>;
    /// The ack we signed for a message of `sender` already received.
    fn received_get(
        &self,
        sender: &OfficeNumber,
        id: &MessageId,
    ) -> Result<Option<Vec<u8>>, StoreError>;
    /// Records that a message of `sender` was received, with the ack we signed.
    fn received_put(
        &self,
        sender: &OfficeNumber,
        id: &MessageId,
        ack: &[u8],
    ) -> Result<(), StoreError>;
    /// Records a file about to be renamed into the inbox.
    fn intent_put(
        &self,
        sender: &OfficeNumber,
        id: &MessageId,
        intent: &Intent,
    ) -> Result<(), StoreError>;
    /// Forgets an intent (finished or undone).
    fn intent_remove(&self, sender: &OfficeNumber, id: &MessageId) -> Result<(), StoreError>;
    /// Every recorded intent.
    fn intents(&self) -> Result<Vec<(OfficeNumber, MessageId, Intent)>, StoreError>;
    /// Makes every write so far durable.
    fn flush(&self) -> Result<(), StoreError>;
}

/// sled, as the product owner chose (three trees: queue, received, intents).
pub struct SledStore {
    db: sled::Db,
    queue: sled::Tree,
    received: sled::Tree,
    intents: sled::Tree,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore").finish_non_exhaustive()
    }
}

fn db(e: impl std::fmt::Display) -> StoreError {
    StoreError::Db(e.to_string())
}

impl SledStore {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &std::path::Path) -> Result<SledStore, StoreError> {
        // A database closed a moment ago in this process keeps its file lock until sled's
        // background flusher has stopped: wait for it briefly rather than fail. Another live
        // node on the same folder holds the lock for good and still fails.
        // sled writes its small `conf` file at creation without an fsync, and reads one of 8
        // bytes or fewer (what a power cut leaves) as missing — with a warning on every start —
        // then writes it again. Such a file holds nothing: it is removed, so sled writes it
        // afresh without the warning, and made durable below.
        let conf = path.join("conf");
        if std::fs::symlink_metadata(&conf).is_ok_and(|m| m.is_file() && m.len() <= 8) {
            std::fs::remove_file(&conf).map_err(db)?;
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        let db = loop {
            match sled::Config::new()
                .path(path)
                .flush_every_ms(Some(1000))
                .open()
            {
                Ok(db) => break db,
                Err(sled::Error::Io(e))
                    if e.to_string().contains("could not acquire lock")
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => {
                    return Err(StoreError::Db(format!(
                        "状態データベースを開けません。同じフォルダでノードが既に動いていないか確認してください。/ Cannot open the state database: check that no other node runs on this home folder. ({e})"
                    )));
                }
            }
        };
        // Its configuration durable once it exists, so a power cut cannot take it back.
        std::fs::File::open(&conf)
            .and_then(|f| f.sync_all())
            .and_then(|()| crate::files::sync_dir(path))
            .and_then(|()| crate::files::sync_dir(path.parent().unwrap_or(path)))
            .map_err(|e| StoreError::Db(format!("{}: {e}", conf.display())))?;
        Ok(SledStore {
            queue: db.open_tree("queue").map_err(db_err)?,
            received: db.open_tree("received").map_err(db_err)?,
            intents: db.open_tree("intents").map_err(db_err)?,
            db,
        })
    }
}

fn db_err(e: sled::Error) -> StoreError {
    db(e)
}

impl Store for SledStore {
    fn queue_put(&self, seq: u64, item: &QueueItem) -> Result<(), StoreError> {
        let v = serde_json::to_vec(item).map_err(db)?;
        self.queue.insert(seq.to_be_bytes(), v).map_err(db)?;
        Ok(())
    }
    fn queue_remove(&self, seq: u64) -> Result<(), StoreError> {
        self.queue.remove(seq.to_be_bytes()).map_err(db)?;
        Ok(())
    }
    fn queue_all(&self) -> Result<Vec<(u64, QueueItem)>, StoreError> {
        let mut out = Vec::new();
        for kv in self.queue.iter() {
            let (k, v) = kv.map_err(db)?;
            let Ok(k) = <[u8; 8]>::try_from(&k[..]) else {
                continue;
            };
            let Ok(item) = serde_json::from_slice(&v) else {
                continue;
            };
            out.push((u64::from_be_bytes(k), item));
        }
        Ok(out)
    }
    fn received_get(
        &self,
        sender: &OfficeNumber,
        id: &MessageId,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .received
            .get(received_key(sender, id))
            .map_err(db)?
            .map(|v| v.to_vec()))
    }
    fn received_put(
        &self,
        sender: &OfficeNumber,
        id: &MessageId,
        ack: &[u8],
    ) -> Result<(), StoreError> {
        self.received
            .insert(received_key(sender, id), ack)
            .map_err(db)?;
        Ok(())
    }
    fn intent_put(
        &self,
        sender: &OfficeNumber,
        id: &MessageId,
        intent: &Intent,
    ) -> Result<(), StoreError> {
        let v = serde_json::to_vec(intent).map_err(db)?;
        self.intents
            .insert(received_key(sender, id), v)
            .map_err(db)?;
        Ok(())
    }
    fn intent_remove(&self, sender: &OfficeNumber, id: &MessageId) -> Result<(), StoreError> {
        self.intents.remove(received_key(sender, id)).map_err(db)?;
        Ok(())
    }
    fn intents(&self) -> Result<Vec<(OfficeNumber, MessageId, Intent)>, StoreError> {
        let mut out = Vec::new();
        for kv in self.intents.iter() {
            let (k, v) = kv.map_err(db)?;
            if let (Some((office, id)), Ok(intent)) =
                (from_received_key(&k), serde_json::from_slice(&v))
            {
                out.push((office, id, intent));
            }
        }
        Ok(out)
    }
    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map_err(db)?;
        Ok(())
    }
}

/// A store that refuses every write once its node has crashed (an injected fault), so a node
/// that crashed in a process that goes on writes no more than a dead process would.
#[derive(Debug)]
pub(crate) struct Fenced {
    pub(crate) inner: std::sync::Arc<dyn Store>,
    pub(crate) env: std::sync::Arc<crate::env::Env>,
}

impl Fenced {
    fn alive(&self) -> Result<(), StoreError> {
        self.env
            .faults
            .alive()
            .map_err(|e| StoreError::Db(e.to_string()))
    }
}

impl Store for Fenced {
    fn queue_put(&self, seq: u64, item: &QueueItem) -> Result<(), StoreError> {
        self.alive()?;
        self.inner.queue_put(seq, item)
    }
    fn queue_remove(&self, seq: u64) -> Result<(), StoreError> {
        self.alive()?;
        self.inner.queue_remove(seq)
    }
    fn queue_all(&self) -> Result<Vec<(u64, QueueItem)>, StoreError> {
        self.inner.queue_all()
    }
    fn received_get(
        &self,
        sender: &OfficeNumber,
        id: &MessageId,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.received_get(sender, id)
    }
    fn received_put(
        &self,
        sender: &OfficeNumber,
        id: &MessageId,
        ack: &[u8],
    ) -> Result<(), StoreError> {
        self.alive()?;
        self.inner.received_put(sender, id, ack)
    }
    fn intent_put(
        &self,
        sender: &OfficeNumber,
        id: &MessageId,
        intent: &Intent,
    ) -> Result<(), StoreError> {
        self.alive()?;
        self.inner.intent_put(sender, id, intent)
    }
    fn intent_remove(&self, sender: &OfficeNumber, id: &MessageId) -> Result<(), StoreError> {
        self.alive()?;
        self.inner.intent_remove(sender, id)
    }
    fn intents(&self) -> Result<Vec<(OfficeNumber, MessageId, Intent)>, StoreError> {
        self.inner.intents()
    }
    fn flush(&self) -> Result<(), StoreError> {
        self.alive()?;
        self.inner.flush()
    }
}

/// An in-memory store for tests and the lab. It keeps what was flushed apart from what was
/// only written, so a simulated crash ([`MemStore::crash`]) loses exactly what sled would.
#[derive(Debug, Default)]
pub struct MemStore {
    inner: Mutex<MemState>,
}

#[derive(Debug, Default)]
struct MemState {
    written: MemInner,
    durable: MemInner,
}

#[derive(Debug, Default, Clone)]
struct MemInner {
    queue: BTreeMap<u64, QueueItem>,
    received: BTreeMap<[u8; 26], Vec<u8>>,
    intents: BTreeMap<[u8; 26], Intent>,
}

impl MemStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, MemState> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets every write since the last flush, as a crash would.
    pub fn crash(&self) {
        let mut s = self.lock();
        s.written = s.durable.clone();
    }
}

impl Store for MemStore {
    fn queue_put(&self, seq: u64, item: &QueueItem) -> Result<(), StoreError> {
        self.lock().written.queue.insert(seq, item.clone());
        Ok(())
    }
    fn queue_remove(&self, seq: u64) -> Result<(), StoreError> {
        self.lock().written.queue.remove(&seq);
        Ok(())
    }
    fn queue_all(&self) -> Result<Vec<(u64, QueueItem)>, StoreError> {
        Ok(self
            .lock()
            .written
            .queue
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect())
    }
    fn received_get(
        &self,
        sender: &OfficeNumber,
        id: &MessageId,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .lock()
            .written
            .received
            .get(&received_key(sender, id))
            .cloned())
    }
    fn received_put(
        &self,
        sender: &OfficeNumber,
        id: &MessageId,
        ack: &[u8],
    ) -> Result<(), StoreError> {
        self.lock()
            .written
            .received
            .insert(received_key(sender, id), ack.to_vec());
        Ok(())
    }
    fn intent_put(
        &self,
        sender: &OfficeNumber,
        id: &MessageId,
        intent: &Intent,
    ) -> Result<(), StoreError> {
        self.lock()
            .written
            .intents
            .insert(received_key(sender, id), intent.clone());
        Ok(())
    }
    fn intent_remove(&self, sender: &OfficeNumber, id: &MessageId) -> Result<(), StoreError> {
        self.lock()
            .written
            .intents
            .remove(&received_key(sender, id));
        Ok(())
    }
    fn intents(&self) -> Result<Vec<(OfficeNumber, MessageId, Intent)>, StoreError> {
        Ok(self
            .lock()
            .written
            .intents
            .iter()
            .filter_map(|(k, v)| {
                let (office, id) = from_received_key(k)?;
                Some((office, id, v.clone()))
            })
            .collect())
    }
    fn flush(&self) -> Result<(), StoreError> {
        let mut s = self.lock();
        s.durable = s.written.clone();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(n: u64) -> QueueItem {
        QueueItem {
            message_id: format!("{n:032x}"),
            file_name: "UP1KYO_1310000001_43_1310000011_11_20260928100000.CSV".into(),
            recipient: "1310000011".into(),
            sha256: "00".repeat(32),
            size: n,
            queued_at_ms: n,
            stamp: Stamp::default(),
            deposited_ms: 0,
            mailbox: String::new(),
        }
    }

    fn office(s: &str) -> OfficeNumber {
        OfficeNumber::parse(s).unwrap()
    }

    fn exercise(s: &dyn Store) {
        s.queue_put(2, &item(2)).unwrap();
        s.queue_put(1, &item(1)).unwrap();
        let (a, b) = (office("1310000001"), office("1310000002"));
        s.received_put(&a, &MessageId([7; 16]), b"ack").unwrap();
        s.flush().unwrap();
        let q = s.queue_all().unwrap();
        assert_eq!(q.iter().map(|x| x.0).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(q[0].1, item(1));
        s.queue_remove(1).unwrap();
        assert_eq!(s.queue_all().unwrap().len(), 1);
        assert_eq!(
            s.received_get(&a, &MessageId([7; 16])).unwrap().as_deref(),
            Some(&b"ack"[..])
        );
        // Message ids are per sender: another office's message of the same id is not known.
        assert_eq!(s.received_get(&b, &MessageId([7; 16])).unwrap(), None);
        assert_eq!(s.received_get(&a, &MessageId([8; 16])).unwrap(), None);
        let intent = Intent {
            file_name: item(3).file_name,
            sha256: "ab".repeat(32),
            size: 3,
            sealed_size: 400,
            started_ms: 9,
        };
        s.intent_put(&b, &MessageId([9; 16]), &intent).unwrap();
        s.intent_put(&a, &MessageId([9; 16]), &intent).unwrap();
        s.intent_remove(&a, &MessageId([9; 16])).unwrap();
        assert_eq!(
            s.intents().unwrap(),
            vec![(b, MessageId([9; 16]), intent.clone())]
        );
        assert_eq!(intent.hash(), [0xab; 32]);
    }

    #[test]
    fn a_memory_store_loses_what_was_not_flushed_in_a_crash() {
        let s = MemStore::default();
        s.queue_put(1, &item(1)).unwrap();
        s.flush().unwrap();
        s.queue_put(2, &item(2)).unwrap();
        s.queue_remove(1).unwrap();
        s.crash();
        assert_eq!(s.queue_all().unwrap(), vec![(1, item(1))]);
    }

    #[test]
    fn sled_and_memory_stores_behave_alike() {
        let dir = tempfile::tempdir().unwrap();
        exercise(&SledStore::open(&dir.path().join("db")).unwrap());
        exercise(&MemStore::default());
    }

    #[test]
    fn a_database_closed_a_moment_ago_opens_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let first = SledStore::open(&path).unwrap();
        let closer = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(200));
            drop(first);
        });
        // Asked while the first is still open: waits for its lock instead of failing.
        let second = SledStore::open(&path);
        closer.join().unwrap();
        assert!(second.is_ok(), "{second:?}");
    }

    /// Keeps the warnings sled logs.
    struct Warnings(Mutex<Vec<String>>);

    impl log::Log for Warnings {
        fn enabled(&self, m: &log::Metadata<'_>) -> bool {
            m.level() <= log::Level::Warn
        }
        fn log(&self, r: &log::Record<'_>) {
            if self.enabled(r.metadata()) {
                self.0
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(r.args().to_string());
            }
        }
        fn flush(&self) {}
    }

    static WARNINGS: Warnings = Warnings(Mutex::new(Vec::new()));

    #[test]
    fn a_configuration_emptied_by_a_power_cut_opens_without_a_warning() {
        log::set_logger(&WARNINGS).expect("the only logger of this test binary");
        log::set_max_level(log::LevelFilter::Warn);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let s = SledStore::open(&path).unwrap();
            s.queue_put(5, &item(5)).unwrap();
            s.flush().unwrap();
        }
        // What a power cut before sled's unsynced write of `conf` leaves.
        std::fs::File::create(path.join("conf")).unwrap();
        let s = SledStore::open(&path).unwrap();
        assert_eq!(s.queue_all().unwrap(), vec![(5, item(5))]);
        let conf = std::fs::metadata(path.join("conf")).unwrap().len();
        assert!(conf > 8, "conf written again ({conf} bytes)");
        let warned = WARNINGS.0.lock().unwrap().clone();
        assert!(
            !warned.iter().any(|w| w.contains("configuration")),
            "{warned:?}"
        );
    }

    #[test]
    fn sled_survives_reopen_after_flush() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = SledStore::open(&dir.path().join("db")).unwrap();
            s.queue_put(5, &item(5)).unwrap();
            s.flush().unwrap();
        }
        let s = SledStore::open(&dir.path().join("db")).unwrap();
        assert_eq!(s.queue_all().unwrap(), vec![(5, item(5))]);
    }
}
