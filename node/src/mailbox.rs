//! The association mailbox a directory node runs for the offices of its region (SPEC.md §7.6):
//! it keeps sealed envelopes for offices that are off, hands them to their recipient only, and
//! signs a deletion statement for each envelope it drops. It never holds a key that opens one.
//!
//! On disk, under `<data>/mailbox/`:
//! - `box/<recipient>/<deposited ms>-<sender>-<message id>.env`: the envelope's frames as the
//!   sender wrote them (header, chunks), 0600; `….fetched` beside it once it went out in a drain;
//! - `out/<sender>/<message id>-<recipient>.json`: what became of a deposit (the recipient's
//!   ack or refusal, the deletion statement), until the sender collects it;
//! - `out/<sender>/imported-<message id>-<recipient>.json`: a recipient's signed imported
//!   statement handed in for the sender, until the sender collects it.
//!
//! Every write is made durable before it is answered (temp, fsync, rename, fsync the folder).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context, anyhow};
use ed25519_dalek::{SigningKey, VerifyingKey};
use futures::{AsyncWriteExt, StreamExt};
use libp2p::PeerId;
use renkei_directory::Directory;
use renkei_protocol::OfficeNumber;
use renkei_protocol::ack::Ack;
use renkei_protocol::envelope::{EnvelopeHeader, MessageId};
use renkei_protocol::frames::{Disposition, Refusal, RefusalCode};
use renkei_protocol::imported::Imported;
use renkei_protocol::statement::{Reason, Statement};
use serde::{Deserialize, Serialize};

use crate::dirserve::Clock;
use crate::env::WorkFile;
use crate::files::{sync_dir, write_atomic};
use crate::frames::{self, Kind};
use crate::net::{MAILBOX, Net, key_of};

/// A mailbox's limits.
#[derive(Debug, Clone)]
pub struct MailboxConfig {
    /// Nothing is kept longer than this (envelopes, and outcomes not collected). Default 14 days.
    pub ttl_secs: u64,
    /// Envelopes kept for one recipient office at most. Default 10,000.
    pub max_files: usize,
    /// Bytes kept for one recipient office at most. Default 2 GiB.
    pub max_bytes: u64,
}

impl Default for MailboxConfig {
    fn default() -> MailboxConfig {
        MailboxConfig {
            ttl_secs: 14 * 86400,
            max_files: 10_000,
            max_bytes: 2 << 30,
        }
    }
}

/// What a client asks on a mailbox stream (the first frame, JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum MailboxRequest {
    /// The sender office deposits envelopes for `to`: frames follow as on a delivery stream.
    Deposit {
        /// The recipient office.
        to: String,
    },
    /// The recipient office takes its envelopes: the mailbox writes them, the office answers
    /// each with its ack or refusal.
    Drain,
    /// The sender office collects what became of its deposits.
    Outcomes,
    /// A recipient office hands in acks (`Blob` frames, then `End`) for `to`, a sender whose
    /// mailbox this node is, when it took the files from another mailbox (SPEC.md §7.6.1).
    PostAcks {
        /// The sender office the acks are for.
        to: String,
    },
    /// A recipient office hands in its signed imported statements (`Blob` frames, then `End`)
    /// for `to`, the sender of the files, whose mailbox this node is (SPEC.md §7.6.1, §8.2).
    PostImported {
        /// The sender office the statements are for.
        to: String,
    },
    /// The sender has kept these outcomes (message ids, hex): they may go.
    Forget {
        /// Message ids of outcomes about deposits and acks.
        ids: Vec<String>,
        /// Message ids of imported statements kept (or refused for good).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        imported: Vec<String>,
    },
}

/// What became of a deposit, for its sender.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// The message id, hex.
    pub message_id: String,
    /// The recipient office.
    pub recipient: String,
    /// The recipient's signed ack, hex, when it acknowledged the message.
    #[serde(default)]
    pub ack: Option<String>,
    /// The recipient node's refusal code, when it refused the message for good.
    #[serde(default)]
    pub refusal_code: Option<u16>,
    /// Its reason.
    #[serde(default)]
    pub refusal_reason: Option<String>,
    /// The envelope went out in a drain before it expired (the recipient may hold the file).
    #[serde(default)]
    pub fetched: bool,
    /// The signed deletion statement, hex; none on an ack the recipient handed to the
    /// sender's own mailbox, which held no envelope.
    #[serde(default)]
    pub statement: Option<String>,
    /// The recipient's signed imported statement, hex (SPEC.md §8.2), on an outcome the
    /// recipient handed in with `post_imported`; nothing else is set then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imported: Option<String>,
    /// Unix ms when it was written (for the time limit).
    pub at_ms: u64,
}

/// A running mailbox.
#[derive(Debug)]
pub struct Mailbox {
    root: PathBuf,
    view: Arc<RwLock<Directory>>,
    clock: Clock,
    key: SigningKey,
    cfg: MailboxConfig,
    /// Deposits, drains and expiry change a box one at a time.
    lock: tokio::sync::Mutex<()>,
    /// Bytes and files promised to deposits in progress, per recipient (counted in the quota).
    reserved: std::sync::Mutex<std::collections::HashMap<OfficeNumber, (usize, u64)>>,
    /// Envelopes a recipient refused for now (a retry refusal), and how often: they go last
    /// in its next drains, and after [`DEFER_LIMIT`] refusals they are dropped as refused.
    deferred: std::sync::Mutex<std::collections::HashMap<(OfficeNumber, MessageId), u32>>,
    /// Offices whose drain is in progress: their envelopes do not expire meanwhile.
    draining: std::sync::Mutex<std::collections::HashSet<OfficeNumber>>,
    /// Each office's turn to drain.
    drains: std::sync::Mutex<std::collections::HashMap<OfficeNumber, Arc<tokio::sync::Mutex<()>>>>,
}

/// Retry refusals of one envelope by its recipient (on different drains) after which the
/// mailbox gives it up as refused: its sender seals it again (to the recipient's current key).
const DEFER_LIMIT: u32 = 3;

/// Acks, or imported statements, one stream may hand in for a sender's own mailbox.
const MAX_POSTED: usize = 10_000;

/// What a recipient office hands in for a sender's collection.
#[derive(Debug, Clone, Copy)]
enum Posted {
    Acks,
    Imported,
}

/// One signed item handed in, checked.
struct PostedItem {
    message_id: MessageId,
    recipient: OfficeNumber,
    sender: OfficeNumber,
    bytes: Vec<u8>,
}

impl Posted {
    fn what(self) -> &'static str {
        match self {
            Posted::Acks => "acks",
            Posted::Imported => "imported statements",
        }
    }

    /// What starts the file name of its outcome (an ack's has none, for older nodes).
    fn prefix(self) -> &'static str {
        match self {
            Posted::Acks => "",
            Posted::Imported => "imported-",
        }
    }

    /// Parses one and checks its signature against `keys`.
    fn check(self, frame: &[u8], keys: &[VerifyingKey]) -> anyhow::Result<PostedItem> {
        Ok(match self {
            Posted::Acks => {
                let ack = Ack::parse(frame).map_err(|e| anyhow!("{e}"))?;
                ack.verify_signature(keys).map_err(|e| anyhow!("{e}"))?;
                PostedItem {
                    message_id: ack.message_id,
                    recipient: ack.recipient_office,
                    sender: ack.sender_office,
                    bytes: ack.to_bytes(),
                }
            }
            Posted::Imported => {
                let st = Imported::parse(frame).map_err(|e| anyhow!("{e}"))?;
                let keys: Vec<[u8; 32]> = keys.iter().map(VerifyingKey::to_bytes).collect();
                st.verify(&keys).map_err(|e| anyhow!("{e}"))?;
                PostedItem {
                    message_id: st.message_id,
                    recipient: st.recipient_office,
                    sender: st.sender_office,
                    bytes: st.to_bytes().to_vec(),
                }
            }
        })
    }
}

/// The largest outcome a mailbox sends (an ack of 256 findings, a statement, JSON): 256 KiB.
pub(crate) const MAX_OUTCOME: usize = 256 << 10;

fn lock_std<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The regular files in `dir` (not following links): anything else someone put there — a
/// FIFO, a device, a link — is never opened, so it cannot block a drain or the sweeper.
fn regular_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// One kept envelope.
#[derive(Debug, Clone)]
struct Kept {
    path: PathBuf,
    deposited_ms: u64,
    sender: OfficeNumber,
    id: MessageId,
}

impl Kept {
    fn parse(path: PathBuf) -> Option<Kept> {
        let name = path
            .file_name()?
            .to_str()?
            .strip_suffix(".env")?
            .to_string();
        let mut parts = name.splitn(3, '-');
        let deposited_ms = parts.next()?.parse().ok()?;
        let sender = OfficeNumber::parse(parts.next()?)?;
        let id = MessageId::from_hex(parts.next()?)?;
        Some(Kept {
            path,
            deposited_ms,
            sender,
            id,
        })
    }

    fn fetched_marker(&self) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(".fetched");
        PathBuf::from(p)
    }
}

fn io_refusal(id: MessageId, why: &str) -> Refusal {
    Refusal::new(id, RefusalCode::Busy, why)
}

impl Mailbox {
    /// A mailbox keeping its files under `data/mailbox`, answering for the regions of `view`
    /// that list `key` as one of their directory nodes.
    pub fn new(
        data: &Path,
        view: Arc<RwLock<Directory>>,
        clock: Clock,
        key: SigningKey,
        cfg: MailboxConfig,
    ) -> anyhow::Result<Arc<Mailbox>> {
        let root = data.join("mailbox");
        for d in [root.join("box"), root.join("out")] {
            crate::home::create_private_dir(&d)
                .with_context(|| format!("mailbox folder {}", d.display()))?;
        }
        // A deposit cut off by a crash leaves its temp file: nothing was answered for it.
        for b in std::fs::read_dir(root.join("box"))?.flatten() {
            let Ok(files) = std::fs::read_dir(b.path()) else {
                continue;
            };
            for f in files.flatten() {
                if f.file_name().to_string_lossy().ends_with(".tmp") {
                    std::fs::remove_file(f.path())?;
                }
            }
        }
        Ok(Arc::new(Mailbox {
            root,
            view,
            clock,
            key,
            cfg,
            lock: tokio::sync::Mutex::new(()),
            reserved: Default::default(),
            deferred: Default::default(),
            draining: Default::default(),
            drains: Default::default(),
        }))
    }

    fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    fn box_dir(&self, office: &OfficeNumber) -> PathBuf {
        self.root.join("box").join(office.as_str())
    }

    fn out_dir(&self, office: &OfficeNumber) -> PathBuf {
        self.root.join("out").join(office.as_str())
    }

    /// The active member office whose identity key proved this connection.
    fn office_of(&self, peer: &PeerId) -> Option<OfficeNumber> {
        let key = key_of(peer)?;
        let view = self.view.read().unwrap_or_else(|p| p.into_inner());
        view.active_office_by_key(&key, self.now_ms() / 1000)
            .ok()
            .flatten()
            .map(|e| e.office)
    }

    /// Whether this node keeps mail for `office`: its entry names this node, or names none
    /// and its region lists this node (SPEC.md §6.3).
    fn serves(&self, office: &OfficeNumber) -> bool {
        let me = self.key.verifying_key().to_bytes();
        let view = self.view.read().unwrap_or_else(|p| p.into_inner());
        view.regions().any(|r| match r.entries.get(office) {
            Ok(Some(e)) if e.mailboxes.is_empty() => r.nodes.iter().any(|n| n.key == me),
            Ok(Some(e)) => e.mailboxes.contains(&me),
            _ => false,
        })
    }

    /// The keys an ack of `office` may be signed by: any identity key the directory lists for
    /// it that has started (a repeat's stored ack by a key it has since rotated away from), and
    /// the connection's.
    fn ack_keys(&self, office: &OfficeNumber, connection: VerifyingKey) -> Vec<VerifyingKey> {
        let now = self.now_ms() / 1000;
        let view = self.view.read().unwrap_or_else(|p| p.into_inner());
        let mut keys: Vec<VerifyingKey> = view
            .lookup(office)
            .ok()
            .flatten()
            .map(|e| {
                e.keys
                    .iter()
                    .filter(|k| k.valid_from <= now)
                    .filter_map(|k| VerifyingKey::from_bytes(&k.identity).ok())
                    .collect()
            })
            .unwrap_or_default();
        keys.push(connection);
        keys
    }

    /// The office `to` names, when this node is its mailbox; else it refuses the stream
    /// (`Refuse` 14, message id zero) and says none.
    async fn served(
        &self,
        to: &str,
        s: &mut libp2p::Stream,
    ) -> anyhow::Result<Option<OfficeNumber>> {
        match OfficeNumber::parse(to) {
            Some(to) if self.serves(&to) => Ok(Some(to)),
            _ => {
                let r = io_refusal(
                    MessageId([0; 16]),
                    "このメールボックスはその事業所の分を預かりません / this mailbox does not keep mail for that office",
                );
                frames::write(s, Kind::Refuse, &r.to_bytes()).await?;
                Ok(None)
            }
        }
    }

    /// The envelopes kept for `office`, oldest first.
    fn kept(&self, office: &OfficeNumber) -> Vec<Kept> {
        let mut out: Vec<Kept> = regular_files(&self.box_dir(office))
            .into_iter()
            .filter_map(Kept::parse)
            .collect();
        let deferred = lock_std(&self.deferred);
        out.sort_by_key(|k| {
            let d = deferred.get(&(*office, k.id)).copied().unwrap_or(0);
            (d, k.deposited_ms, k.path.clone())
        });
        out
    }

    /// Every office with a box.
    fn boxes(&self) -> Vec<OfficeNumber> {
        std::fs::read_dir(self.root.join("box"))
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| OfficeNumber::parse(e.file_name().to_str()?))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Drops a kept envelope: the outcome for its sender (with a signed statement) is durable
    /// first, then the envelope goes. A crash in between leaves both; the envelope is then
    /// answered or expired again, and the outcome written anew.
    fn settle(
        &self,
        recipient: &OfficeNumber,
        kept: &Kept,
        reason: Reason,
        ack: Option<&Ack>,
        refusal: Option<&Refusal>,
    ) -> anyhow::Result<()> {
        // Settled already (answered on another drain, or expired): only a stray mark can be
        // left.
        if !kept.path.exists() {
            let _ = std::fs::remove_file(kept.fetched_marker());
            return Ok(());
        }
        let statement = Statement::sign(
            kept.id,
            kept.sender,
            *recipient,
            envelope_hash(&kept.path)?,
            reason,
            self.now_ms() / 1000,
            &self.key,
        );
        let outcome = Outcome {
            message_id: kept.id.to_hex(),
            recipient: recipient.to_string(),
            ack: ack.map(|a| hex::encode(a.to_bytes())),
            refusal_code: refusal.map(|r| r.code.to_u16()),
            refusal_reason: refusal.map(|r| r.reason.clone()),
            fetched: kept.fetched_marker().exists(),
            statement: Some(hex::encode(statement.to_bytes())),
            imported: None,
            at_ms: self.now_ms(),
        };
        let out = self.out_dir(&kept.sender);
        crate::home::create_private_dir(&out)?;
        write_atomic(
            &out.join(format!("{}-{recipient}.json", kept.id)),
            &serde_json::to_vec(&outcome)?,
            true,
        )?;
        std::fs::remove_file(&kept.path)?;
        let _ = std::fs::remove_file(kept.fetched_marker());
        sync_dir(&self.box_dir(recipient))?;
        lock_std(&self.deferred).remove(&(*recipient, kept.id));
        tracing::info!(from = %kept.sender, to = %recipient, id = %kept.id, reason = reason.as_str(), "mailbox dropped an envelope");
        Ok(())
    }

    /// Drops what is past the time limit: envelopes (their senders are told) and outcomes
    /// nobody collected.
    pub async fn expire(&self) -> anyhow::Result<usize> {
        let _g = self.lock.lock().await;
        let now = self.now_ms();
        let limit = self.cfg.ttl_secs.saturating_mul(1000);
        let mut n = 0;
        for office in self.boxes() {
            // An envelope out in a drain now may be acknowledged in a moment.
            if lock_std(&self.draining).contains(&office) {
                continue;
            }
            // Marks whose envelope is gone (a drain marked it as it was settled) go too.
            if let Ok(rd) = std::fs::read_dir(self.box_dir(&office)) {
                for f in rd.flatten() {
                    let p = f.path();
                    let name = p.to_string_lossy();
                    if let Some(env) = name.strip_suffix(".fetched")
                        && !Path::new(env).exists()
                    {
                        let _ = std::fs::remove_file(&p);
                    }
                }
            }
            for k in self.kept(&office) {
                if k.deposited_ms.saturating_add(limit) <= now {
                    self.settle(&office, &k, Reason::Expired, None, None)?;
                    n += 1;
                }
            }
        }
        for dir in std::fs::read_dir(self.root.join("out"))?.flatten() {
            for f in regular_files(&dir.path()) {
                let old = std::fs::read(&f)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Outcome>(&b).ok())
                    .is_none_or(|o| o.at_ms.saturating_add(limit) <= now);
                if old {
                    std::fs::remove_file(&f)?;
                }
            }
        }
        Ok(n)
    }

    /// Tells the recipient office's node, if it can be reached at once, that mail is waiting.
    fn notify(&self, net: &Net, to: &OfficeNumber) {
        let now = self.now_ms() / 1000;
        let peers: Vec<PeerId> = {
            let view = self.view.read().unwrap_or_else(|p| p.into_inner());
            view.lookup(to)
                .ok()
                .flatten()
                .map(|e| {
                    e.identity_keys_at(now)
                        .iter()
                        .filter_map(|k| crate::net::peer_id_of(&k.to_bytes()))
                        .collect()
                })
                .unwrap_or_default()
        };
        for peer in peers {
            let net = net.clone();
            tokio::spawn(async move {
                if let Ok(mut s) = net
                    .open(peer, crate::net::MAIL_NOTIFY, Duration::from_secs(5))
                    .await
                {
                    let _ = s.close().await;
                }
            });
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn deposit(
        &self,
        net: &Net,
        peer: &PeerId,
        from: OfficeNumber,
        to: &str,
        s: &mut libp2p::Stream,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let Some(to) = self.served(to, s).await? else {
            return Ok(());
        };
        let peer_key = key_of(peer).context("peer key")?;
        let mut frame = Vec::new();
        let mut stored = 0;
        loop {
            let kind = frames::read(s, &mut frame, timeout, &[Kind::Header, Kind::End]).await?;
            if kind != Some(Kind::Header) {
                if stored > 0 {
                    self.notify(net, &to);
                }
                return Ok(());
            }
            let header = match EnvelopeHeader::parse(&frame) {
                Ok((h, n)) if n == frame.len() => h,
                _ => {
                    let r = Refusal::new(
                        Refusal::id_of_unparsed(&frame),
                        RefusalCode::Unparseable,
                        "envelope header",
                    );
                    frames::write(s, Kind::Refuse, &r.to_bytes()).await?;
                    return Ok(());
                }
            };
            let id = header.message_id;
            if header.sender_office != from
                || header.sender_key != peer_key
                || header.recipient_office != to
            {
                let r = Refusal::new(
                    id,
                    RefusalCode::UnknownSenderKey,
                    "the envelope's offices or key are not this connection's",
                );
                frames::write(s, Kind::Refuse, &r.to_bytes()).await?;
                return Ok(());
            }
            let chunks = header.chunk_count();
            // What the envelope will take on disk, as the header claims it (checked against
            // every chunk below): saturating, so a header claiming near u64::MAX bytes only
            // ever looks too large.
            let size = (frame.len() as u64)
                .saturating_add(header.body_len())
                .saturating_add(chunks.saturating_add(1).saturating_mul(5));
            // The quota is checked before the bytes come, without holding the box while a
            // slow sender sends them (two deposits at once may pass it by one envelope).
            let full = {
                let _g = self.lock.lock().await;
                let kept = self.kept(&to);
                let used: u64 = kept
                    .iter()
                    .map(|k| std::fs::metadata(&k.path).map(|m| m.len()).unwrap_or(0))
                    .sum();
                let already = kept.iter().any(|k| k.sender == from && k.id == id);
                let mut reserved = lock_std(&self.reserved);
                let (rf, rb) = reserved.get(&to).copied().unwrap_or((0, 0));
                let full = !already
                    && (kept.len().saturating_add(rf) >= self.cfg.max_files
                        || used.saturating_add(rb).saturating_add(size) > self.cfg.max_bytes);
                if !full {
                    // Promised to this deposit until it is kept or fails.
                    let r = reserved.entry(to).or_insert((0, 0));
                    *r = (r.0 + 1, r.1.saturating_add(size));
                }
                full
            };
            if full {
                let r = io_refusal(
                    id,
                    "相手先のメールボックスが満杯です。相手先のノードが起動すると空きます / the partner's mailbox is full; it empties when the partner's node starts",
                );
                frames::write(s, Kind::Refuse, &r.to_bytes()).await?;
                return Ok(());
            }
            let unreserve = || {
                let mut reserved = lock_std(&self.reserved);
                if let Some(r) = reserved.get_mut(&to) {
                    *r = (r.0.saturating_sub(1), r.1.saturating_sub(size));
                }
            };
            let dir = self.box_dir(&to);
            if let Err(e) = crate::home::create_private_dir(&dir) {
                unreserve();
                return Err(e);
            }
            let tmp = crate::files::temp_path(&dir);
            let written = async {
                let mut f = WorkFile::create_private(tmp.clone()).await?;
                let mut out = Vec::with_capacity(frame.len() + 5);
                renkei_protocol::frames::encode_frame(Kind::Header, &frame, &mut out);
                out = f.write_all(out).await?;
                for i in 0..chunks {
                    match frames::read(s, &mut frame, timeout, &[Kind::Chunk]).await? {
                        Some(Kind::Chunk) => {}
                        _ => anyhow::bail!("the envelope ended early"),
                    }
                    // Every chunk exactly as long as the header says: what is kept is what the
                    // quota counted.
                    anyhow::ensure!(
                        frame.len() == header.chunk_len(i),
                        "chunk {i} of {} bytes where the header says {}",
                        frame.len(),
                        header.chunk_len(i)
                    );
                    out.clear();
                    renkei_protocol::frames::encode_frame(Kind::Chunk, &frame, &mut out);
                    out = f.write_all(out).await?;
                }
                f.sync_all().await?;
                anyhow::Ok(())
            }
            .await;
            if let Err(e) = written {
                let _ = std::fs::remove_file(&tmp);
                unreserve();
                return Err(e);
            }
            let _g = self.lock.lock().await;
            unreserve();
            let already = self
                .kept(&to)
                .iter()
                .any(|k| k.sender == from && k.id == id);
            if already {
                std::fs::remove_file(&tmp)?;
            } else {
                std::fs::rename(&tmp, dir.join(format!("{}-{from}-{id}.env", self.now_ms())))?;
                sync_dir(&dir)?;
                tracing::info!(%from, %to, %id, "mailbox kept an envelope");
            }
            drop(_g);
            stored += 1;
            frames::write(s, Kind::Stored, &id.0).await?;
            s.flush().await?;
        }
    }

    async fn drain(
        &self,
        peer: &PeerId,
        office: OfficeNumber,
        s: libp2p::Stream,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let peer_key = VerifyingKey::from_bytes(&key_of(peer).context("peer key")?)?;
        // One drain of an office at a time: a second waits until the first has settled what
        // it was answered, so it never sends those envelopes again.
        let turn = lock_std(&self.drains).entry(office).or_default().clone();
        let _turn = turn.lock().await;
        lock_std(&self.draining).insert(office);
        let r = self.drain_box(peer_key, office, s, timeout).await;
        lock_std(&self.draining).remove(&office);
        r
    }

    async fn drain_box(
        &self,
        peer_key: VerifyingKey,
        office: OfficeNumber,
        s: libp2p::Stream,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let office_keys = self.ack_keys(&office, peer_key);
        let kept = self.kept(&office);
        // What each envelope's ack must name: its plaintext hash, from its header.
        let mut waiting = Vec::with_capacity(kept.len());
        for k in kept {
            match header_of(&k.path) {
                Ok(h) => waiting.push((k, h.plaintext_hash)),
                Err(e) => tracing::warn!(path = %k.path.display(), "unreadable envelope: {e:#}"),
            }
        }
        let (mut reader, mut writer) = futures::AsyncReadExt::split(s);
        let files: Vec<Kept> = waiting.iter().map(|(k, _)| k.clone()).collect();
        let write = async {
            let mut buf = vec![0u8; 1 << 20];
            for k in &files {
                // Gone meanwhile (expired or answered): nothing to send, nothing to mark.
                let Ok(mut f) = WorkFile::open(k.path.clone()).await else {
                    continue;
                };
                // Marked (durably) before it goes out: if it expires later, its sender is
                // told the recipient may hold it.
                if let Ok(mut m) = WorkFile::create_private(k.fetched_marker()).await {
                    let _ = m.sync_all().await;
                    if let Some(d) = k.path.parent() {
                        let _ = sync_dir(d);
                    }
                }
                loop {
                    let (b, n) = f.read(buf).await?;
                    buf = b;
                    if n == 0 {
                        break;
                    }
                    writer.write_all(&buf[..n]).await?;
                }
            }
            frames::write(&mut writer, Kind::End, &[]).await?;
            writer.flush().await?;
            anyhow::Ok(())
        };
        let read = async {
            let mut frame = Vec::new();
            let mut answered = 0;
            while answered < waiting.len() {
                let Some(kind) = frames::read(
                    &mut reader,
                    &mut frame,
                    timeout * 4,
                    &[Kind::Ack, Kind::Refuse],
                )
                .await?
                else {
                    break;
                };
                answered += 1;
                let _g = self.lock.lock().await;
                match kind {
                    Kind::Ack => {
                        let ack = Ack::parse(&frame).map_err(|e| anyhow!("ack: {e}"))?;
                        let Some((k, hash)) = waiting
                            .iter()
                            .find(|(k, _)| k.id == ack.message_id && k.sender == ack.sender_office)
                        else {
                            anyhow::bail!("an ack for no envelope of this drain");
                        };
                        ack.verify(&k.id, hash, &office_keys)
                            .map_err(|e| anyhow!("ack: {e}"))?;
                        if ack.recipient_office != office {
                            anyhow::bail!("an ack from another office");
                        }
                        self.settle(&office, k, Reason::Acked, Some(&ack), None)?;
                    }
                    _ => {
                        let r = Refusal::parse(&frame).map_err(|e| anyhow!("refusal: {e}"))?;
                        if let Some((k, _)) = waiting.iter().find(|(k, _)| k.id == r.message_id) {
                            let times = {
                                let mut d = lock_std(&self.deferred);
                                let n = d.entry((office, k.id)).or_insert(0);
                                *n += 1;
                                *n
                            };
                            // Refused for good, or for now too often: given up, its sender
                            // told (and it seals the file again for a retry refusal).
                            if r.code.disposition() == Disposition::Permanent
                                || times >= DEFER_LIMIT
                            {
                                self.settle(&office, k, Reason::Refused, None, Some(&r))?;
                            }
                        }
                        // The office stops reading after a refusal: the rest wait.
                        break;
                    }
                }
            }
            anyhow::Ok(())
        };
        tokio::pin!(write);
        tokio::pin!(read);
        // The answers decide; a writer the office stopped reading from is dropped with them.
        let mut wrote = false;
        loop {
            tokio::select! {
                biased;
                r = &mut read => return r,
                w = &mut write, if !wrote => { w?; wrote = true; }
            }
        }
    }

    /// Keeps the signed items a recipient office `from` hands in for `to`, the sender of the
    /// files, whose mailbox this node is, as outcomes `to` collects (SPEC.md §7.6.1, §8.2):
    /// acks (`post_acks`) or imported statements (`post_imported`). Each must be signed by a
    /// key the directory lists for `from` (or the connection's), name `from` as recipient and
    /// `to` as sender; one kept already for the message is left as it is. An ack is kept as
    /// `out/<to>/<message id>-<from>.json`, a statement as `imported-<message id>-<from>.json`
    /// with only `imported` set; the sender checks either as one that came directly, and
    /// forgets it. Answered `End` once all are durable.
    #[allow(clippy::too_many_arguments)]
    async fn keep_posted(
        &self,
        net: &Net,
        posted: Posted,
        peer: &PeerId,
        from: OfficeNumber,
        to: &str,
        s: &mut libp2p::Stream,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let Some(to) = self.served(to, s).await? else {
            return Ok(());
        };
        let keys = self.ack_keys(
            &from,
            VerifyingKey::from_bytes(&key_of(peer).context("peer key")?)?,
        );
        let what = posted.what();
        let mut items = Vec::new();
        let mut frame = Vec::new();
        while let Some(Kind::Blob) =
            frames::read(s, &mut frame, timeout, &[Kind::Blob, Kind::End]).await?
        {
            anyhow::ensure!(items.len() < MAX_POSTED, "too many in one stream: {what}");
            let item = posted
                .check(&frame, &keys)
                .map_err(|e| anyhow!("{what}: {e}"))?;
            anyhow::ensure!(
                item.recipient == from && item.sender == to,
                "{what} about other offices"
            );
            items.push(item);
        }
        let _g = self.lock.lock().await;
        let out = self.out_dir(&to);
        if !self.room_for(&out, items.len(), s).await? {
            return Ok(());
        }
        let mut kept = 0;
        for item in &items {
            let path = out.join(format!(
                "{}{}-{from}.json",
                posted.prefix(),
                item.message_id
            ));
            if path.exists() {
                continue;
            }
            kept += 1;
            let signed = Some(hex::encode(&item.bytes));
            let (ack, imported) = match posted {
                Posted::Acks => (signed, None),
                Posted::Imported => (None, signed),
            };
            let outcome = Outcome {
                message_id: item.message_id.to_hex(),
                recipient: from.to_string(),
                ack,
                refusal_code: None,
                refusal_reason: None,
                fetched: false,
                statement: None,
                imported,
                at_ms: self.now_ms(),
            };
            write_atomic(&path, &serde_json::to_vec(&outcome)?, true)?;
        }
        sync_dir(&out)?;
        frames::write(s, Kind::End, &[]).await?;
        s.flush().await?;
        tracing::info!(%from, %to, n = items.len(), "mailbox kept {what} for their sender");
        // The sender asks its own mailboxes at once when told, not only now and then.
        if kept > 0 {
            self.notify(net, &to);
        }
        Ok(())
    }

    /// Whether `adding` more outcomes fit in the outcome folder `out` (the same quota as a
    /// box's files, `max_files`, counting everything kept there for that office); if not, the
    /// stream is answered `Refuse` 14. Creates the folder when they fit.
    async fn room_for(
        &self,
        out: &Path,
        adding: usize,
        s: &mut libp2p::Stream,
    ) -> anyhow::Result<bool> {
        let held = std::fs::read_dir(out).map(|rd| rd.count()).unwrap_or(0);
        if held.saturating_add(adding) > self.cfg.max_files {
            let r = io_refusal(
                MessageId([0; 16]),
                "メールボックスが満杯です / the mailbox is full",
            );
            frames::write(s, Kind::Refuse, &r.to_bytes()).await?;
            return Ok(false);
        }
        crate::home::create_private_dir(out)?;
        Ok(true)
    }

    async fn outcomes(
        &self,
        office: OfficeNumber,
        s: &mut libp2p::Stream,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let dir = self.out_dir(&office);
        let mut files = regular_files(&dir);
        files.sort();
        for f in &files {
            let path = f.clone();
            if let Ok(Ok(b)) = crate::env::file_work(move || std::fs::read(path)).await {
                frames::write(s, Kind::Blob, &b).await?;
            }
        }
        frames::write(s, Kind::End, &[]).await?;
        s.flush().await?;
        let mut frame = Vec::new();
        if let Some(Kind::Request) = frames::read(s, &mut frame, timeout, &[Kind::Request]).await?
            && let Ok(MailboxRequest::Forget { ids, imported }) = serde_json::from_slice(&frame)
        {
            let _g = self.lock.lock().await;
            // Only what was just listed: an outcome written meanwhile waits for the next look.
            for f in &files {
                let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                if ids.iter().any(|id| name.starts_with(&format!("{id}-")))
                    || imported
                        .iter()
                        .any(|id| name.starts_with(&format!("imported-{id}-")))
                {
                    std::fs::remove_file(f)?;
                }
            }
            sync_dir(&dir)?;
        }
        Ok(())
    }

    async fn handle(
        &self,
        net: &Net,
        peer: PeerId,
        mut s: libp2p::Stream,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let mut frame = Vec::new();
        let Some(Kind::Request) =
            frames::read(&mut s, &mut frame, timeout, &[Kind::Request]).await?
        else {
            return Ok(());
        };
        let request: MailboxRequest =
            serde_json::from_slice(&frame).map_err(|e| anyhow!("mailbox request: {e}"))?;
        // Only member offices use a mailbox, each for its own mail.
        let Some(office) = self.office_of(&peer) else {
            frames::write(&mut s, Kind::NotFound, b"not a member office").await?;
            let _ = s.close().await;
            return Ok(());
        };
        match request {
            MailboxRequest::Deposit { to } => {
                self.deposit(net, &peer, office, &to, &mut s, timeout)
                    .await?
            }
            MailboxRequest::Drain => return self.drain(&peer, office, s, timeout).await,
            MailboxRequest::Outcomes => self.outcomes(office, &mut s, timeout).await?,
            MailboxRequest::PostAcks { to } => {
                self.keep_posted(net, Posted::Acks, &peer, office, &to, &mut s, timeout)
                    .await?
            }
            MailboxRequest::PostImported { to } => {
                self.keep_posted(net, Posted::Imported, &peer, office, &to, &mut s, timeout)
                    .await?
            }
            MailboxRequest::Forget { .. } => {}
        }
        let _ = s.close().await;
        Ok(())
    }
}

/// Serves mailbox streams until the node stops, and drops what is past its time.
pub async fn serve(mailbox: Arc<Mailbox>, net: Net, timeout: Duration) -> anyhow::Result<()> {
    let mut incoming = net
        .control
        .clone()
        .accept(MAILBOX)
        .map_err(|_| anyhow!("mailbox protocol already served"))?;
    let sweeper = tokio::spawn({
        let m = mailbox.clone();
        async move {
            loop {
                if let Err(e) = m.expire().await {
                    tracing::warn!("mailbox expiry: {e:#}");
                }
                let next = m.now_ms().saturating_add(60_000);
                m.clock.sleep_until(next).await;
            }
        }
    });
    while let Some((peer, s)) = incoming.next().await {
        let (m, net) = (mailbox.clone(), net.clone());
        tokio::spawn(async move {
            if let Err(e) = m.handle(&net, peer, s, timeout).await {
                tracing::info!(%peer, "mailbox stream: {e:#}");
            }
        });
    }
    sweeper.abort();
    Ok(())
}

/// The envelope header at the start of a kept file.
fn header_of(path: &Path) -> anyhow::Result<EnvelopeHeader> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut head = [0u8; renkei_protocol::frames::FRAME_HEAD_LEN];
    f.read_exact(&mut head)?;
    let (kind, len) = renkei_protocol::frames::decode_head(head)?;
    anyhow::ensure!(kind == Kind::Header, "not an envelope");
    let mut body = vec![0u8; len];
    f.read_exact(&mut body)?;
    Ok(EnvelopeHeader::parse(&body)?.0)
}

/// SHA-256 of the envelope in a kept file: its header and sealed chunks, without the frame
/// heads (SPEC.md §7.6.4), read a frame at a time.
pub(crate) fn envelope_hash(path: &Path) -> anyhow::Result<[u8; 32]> {
    use sha2::Digest;
    use std::io::Read;
    let mut f = std::io::BufReader::new(std::fs::File::open(path)?);
    let mut h = sha2::Sha256::new();
    let mut head = [0u8; renkei_protocol::frames::FRAME_HEAD_LEN];
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match f.read_exact(&mut head) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e.into()),
        }
        let (_, mut len) = renkei_protocol::frames::decode_head(head)?;
        while len > 0 {
            let n = len.min(buf.len());
            f.read_exact(&mut buf[..n])?;
            h.update(&buf[..n]);
            len -= n;
        }
    }
    Ok(h.finalize().into())
}

/// The mailboxes that keep mail for `office` (SPEC.md §6.3): the nodes its entry names, in
/// its order, found among the directory nodes of the regions this node holds; when it names
/// none, or none of those named can be found, the directory nodes of its region.
pub(crate) fn mailboxes_of(
    shared: &crate::state::Shared,
    office: &OfficeNumber,
) -> Vec<renkei_directory::NodeInfo> {
    let dir = shared.dir();
    let Some(region) = dir.regions().find(|r| r.entries.contains(office)) else {
        return Vec::new();
    };
    let named = match region.entries.get(office) {
        Ok(Some(e)) => e.mailboxes,
        _ => Vec::new(),
    };
    let found: Vec<renkei_directory::NodeInfo> = named
        .iter()
        .filter_map(|k| {
            dir.directory_nodes()
                .into_iter()
                .find(|n| &n.key == k)
                .cloned()
        })
        .collect();
    if found.is_empty() {
        region.nodes.clone()
    } else {
        found
    }
}
