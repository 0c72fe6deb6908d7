//! Sending: deliver a partner's queued files over one stream, in send-unit order, pipelined,
//! driving a [`SenderSession`] that matches every answer to its message by id, and commit the
//! partner's signed acks in batches (SPEC.md §7.2).

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex};

use anyhow::{Context, anyhow};
use futures::{AsyncReadExt, AsyncWriteExt};
use renkei_protocol::ack::{Ack, Verdict};
use renkei_protocol::envelope::{DEFAULT_CHUNK_SIZE, MessageId, SealParams, TAG_LEN, seal_header};
use renkei_protocol::frames::{Disposition, Refusal, RefusalCode};
use renkei_protocol::frames::{encode_frame, encode_head};
use renkei_protocol::session::{Answer, SenderSession, SessionError};
use renkei_protocol::{ErrorCode, FileName, OfficeNumber, finding};
use tokio::io::AsyncReadExt as _;
use tokio::sync::{Notify, mpsc};

use crate::env::FaultPoint;
use crate::files::{NotRegular, Stamp, make_private, open_regular, shown, sync_dir};
use crate::frames::{self, Kind};
use crate::net::{DELIVER, peer_id_of};
use crate::outbox::{reject_file, resolve_rejected};
use crate::receipts::NewReceipt;
use crate::state::{Shared, lock};
use crate::store::{Intent, QueueItem};

/// Messages written ahead of their acks.
const WINDOW: usize = 256;
/// Queued files read ahead of the writer.
const READ_AHEAD: usize = 4;
/// About how many bytes of frames are gathered before a write.
const WRITE_PIECE: usize = 128 << 10;
/// Files up to this size are read once, hashed again and sealed from memory just before
/// sending; larger ones are streamed in chunks and checked by the recipient against the hash
/// in the signed header (a file changed meanwhile is refused and queued again).
const WHOLE_FILE_LIMIT: u64 = 8 << 20;

/// Why a delivery to a partner did not complete. The dispatcher retries with backoff and says
/// in the status what it means for the office.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DeliveryError {
    /// The partner is not in the directory (yet, or any more).
    #[error("送信先 {0} が名簿にありません / recipient {0} is not in the directory")]
    NotListed(OfficeNumber),
    /// No connection or stream could be opened to the partner.
    #[error("{0}")]
    Unreachable(String),
    /// The partner refused a message.
    #[error("{file}: 相手先が拒否しました（コード {code}）。{ja} / the partner refused it (code {code}): {reason}. {en}", file = shown(.file), code = .refusal.code.to_u16(), reason = shown(&.refusal.reason), ja = refusal_hint(.refusal.code).0, en = refusal_hint(.refusal.code).1)]
    Refused {
        /// The file refused.
        file: String,
        /// The refusal.
        refusal: Refusal,
    },
    /// The partner refused a message for its creation time (code 8): whose clock is wrong and
    /// by about how much, as the office is told (crate::clock).
    #[error("{0}")]
    Clock(String),
    /// The partner ended the stream with messages unanswered.
    #[error(
        "相手先が {0} 件を未回答のまま通信を終えました / the partner ended the stream with {0} files unanswered"
    )]
    Unanswered(usize),
    /// The partner broke the protocol.
    #[error("protocol: {0}")]
    Protocol(#[from] SessionError),
    /// The stream failed.
    #[error("stream: {0}")]
    Stream(#[from] frames::FrameError),
    /// This node could not do its part (disk, store, directory).
    #[error(transparent)]
    Local(#[from] anyhow::Error),
    /// The partner stayed unreachable, so its files were left in its association's mailbox.
    #[error(
        "送信先 {0} のノードに接続できないため、ファイルを暗号化したまま協会のメールボックスに預けました。相手先のノードが起動すると受け取られます / the node of {0} could not be reached, so its files were left, sealed, in the association's mailbox: they are delivered when the partner's node starts"
    )]
    Deposited(OfficeNumber),
}

impl DeliveryError {
    /// Whether the trouble is at the partner's end or on the way there (not this node's).
    pub(crate) fn is_unreachable(&self) -> bool {
        matches!(
            self,
            DeliveryError::Unreachable(_)
                | DeliveryError::Stream(_)
                | DeliveryError::Unanswered(_)
                | DeliveryError::Protocol(_)
        )
    }
}

impl From<std::io::Error> for DeliveryError {
    fn from(e: std::io::Error) -> Self {
        DeliveryError::Stream(e.into())
    }
}

/// A message written to the stream, waiting for its answer.
struct InFlight {
    seq: u64,
    item: QueueItem,
    sealed_size: u64,
    /// Our clock when it was sealed (its `created_at`): an ack's time is compared with it.
    sealed_ms: u64,
}

/// Completes queue items that were answered before a crash (receipt written, queue entry not
/// yet removed): an accepted file moves to `sent/`, a refused one to `rejected/` with the
/// partner's findings — never sent again.
pub(crate) async fn reconcile(shared: &Arc<Shared>) {
    let done: Vec<(u64, QueueItem, Verdict)> = {
        let answered = lock(&shared.sent_ids);
        lock(&shared.queue)
            .items
            .iter()
            .filter_map(|(s, i)| Some((*s, i.clone(), answered.get(&i.id())?.clone())))
            .collect()
    };
    if done.is_empty() {
        return;
    }
    let s = shared.clone();
    let _ = crate::env::file_work(move || complete_answered(&s, &done)).await;
}

/// Finishes items whose answer is already durable in the receipts: the file moves out of the
/// outbox according to the verdict, and the item leaves the queue. A file that cannot be moved
/// now is reported; the item goes all the same (it is never sent twice).
fn complete_answered(shared: &Shared, done: &[(u64, QueueItem, Verdict)]) {
    for (_, item, verdict) in done {
        let moved = match verdict {
            Verdict::Accepted => finish_sent(shared, item).and_then(|()| {
                resolve_rejected(shared, &item.file_name).or_else(|e| {
                    tracing::warn!(
                        "{}: cannot move its old refusal to rejected/resolved: {e:#}",
                        shown(&item.file_name)
                    );
                    Ok(())
                })
            }),
            Verdict::Rejected(findings) => reject_answered(shared, item, findings),
        };
        if let Err(e) = moved {
            lock(&shared.stuck).insert(item.file_name.clone(), item.stamp);
            shared.error_about(
                Some(format!("file:{}", item.file_name)),
                format!(
                    "{} は相手先の回答を受け取りましたが、送信フォルダから移動できません。権限とディスクの空きを確認してください / {} was answered by the partner but cannot be moved out of the outbox: check permissions and free disk space ({e:#})",
                    shown(&item.file_name),
                    shown(&item.file_name)
                ),
            );
        }
    }
    if let Err(e) = sync_dir(&shared.home.sent()).and_then(|()| sync_dir(&shared.home.outbox())) {
        shared.error(format!(
            "送信済みフォルダを保存できません / cannot make sent/ and outbox/ durable: {e}"
        ));
    }
    // Not flushed: an item that comes back after a crash has its receipt, and is completed
    // from it at start without being sent again (SPEC.md §7.2).
    let mut q = lock(&shared.queue);
    for (seq, _, _) in done {
        if let Err(e) = shared.store.queue_remove(*seq) {
            tracing::warn!("queue entry {seq}: {e}");
        }
        q.remove(*seq);
    }
}

/// Moves a file the partner refused to `rejected/` with the partner's findings — unless the
/// clerk has changed it since it was taken: then only the report is written, and the new
/// version stays in the outbox to be sent as new content.
fn reject_answered(
    shared: &Shared,
    item: &QueueItem,
    findings: &[renkei_protocol::ack::AckFinding],
) -> anyhow::Result<()> {
    let shown_findings = findings
        .iter()
        .map(|x| match ErrorCode::parse(&x.code) {
            Some(c) => finding(c, u64::from(x.line), u32::from(x.field)),
            None => renkei_protocol::Finding {
                line: u64::from(x.line),
                field: u32::from(x.field),
                code: ErrorCode::TooManyErrors,
                message_ja: format!("相手先がエラー {} で受け取りを拒否しました。", x.code),
                message_en: format!("The partner refused the file with error {}.", x.code),
            },
        })
        .collect();
    let title = "相手先の事業所が受け取りを拒否しました / The partner office refused the file";
    if unchanged(shared, item) {
        reject_file(shared, &item.file_name, shown_findings, title)
    } else {
        crate::outbox::report_only(shared, &item.file_name, shown_findings, title)?;
        shared.rescan.notify_one();
        Ok(())
    }
}

/// Whether the outbox file is still the version this item was taken from.
fn unchanged(shared: &Shared, item: &QueueItem) -> bool {
    let Ok(meta) = std::fs::symlink_metadata(shared.home.outbox().join(&item.file_name)) else {
        return false;
    };
    let now = Stamp::of(&meta);
    meta.is_file() && now.len == item.size && (item.stamp.mtime_ns == 0 || now == item.stamp)
}

/// The order files go to one partner: by send unit (the 14-digit stamp), then the kind's
/// place in a unit, then queue order.
fn order_key(seq: u64, item: &QueueItem) -> (String, usize, u64) {
    match FileName::parse(&item.file_name) {
        Ok(n) => (n.stamp.as_str().to_string(), n.kind.unit_order(), seq),
        Err(_) => (String::new(), usize::MAX, seq),
    }
}

/// Delivers everything queued for `partner`. A stream that breaks before any answer (the
/// partner's accept queue was momentarily full) is opened again at once, a few times, before
/// the dispatcher's backoff takes over.
pub(crate) async fn deliver(
    shared: &Arc<Shared>,
    partner: OfficeNumber,
) -> Result<(), DeliveryError> {
    // A partner unreachable for `mailbox_after_secs` gets its files through its mailbox first
    // (sealed for it; the mailbox cannot open them); direct delivery is still tried after.
    let overdue = |now: u64| {
        lock(&shared.mail)
            .unreachable_since
            .get(&partner)
            .is_some_and(|since| {
                now.saturating_sub(*since) / 1000 >= shared.config.mailbox_after_secs
            })
    };
    let mut deposited = false;
    let started = shared.env.now_ms();
    if overdue(started) && has_undeposited(shared, partner) {
        deposited = deposit(shared, partner).await;
    }
    let direct = deliver_by(shared, partner, &Route::Direct).await;
    let now = shared.env.now_ms();
    match &direct {
        Ok(()) => {
            let via = crate::status::route_to(shared, &partner).await;
            let mut m = lock(&shared.mail);
            m.unreachable_since.remove(&partner);
            if let Some(via) = via {
                m.routes.insert(partner.to_string(), via);
            }
            return direct;
        }
        Err(e) if e.is_unreachable() => {}
        Err(_) => return direct,
    }
    // Unreachable since this attempt began (a dial can take its whole timeout to fail).
    lock(&shared.mail)
        .unreachable_since
        .entry(partner)
        .or_insert(started);
    if !deposited && overdue(now) && has_undeposited(shared, partner) {
        deposited = deposit(shared, partner).await;
    }
    if deposited {
        return Err(DeliveryError::Deposited(partner));
    }
    direct
}

/// Leaves the partner's undeposited files with one of its mailboxes; whether one took them.
async fn deposit(shared: &Arc<Shared>, partner: OfficeNumber) -> bool {
    for node in crate::mailbox::mailboxes_of(shared, &partner) {
        match deliver_by(shared, partner, &Route::Mailbox(node)).await {
            Ok(()) => {
                lock(&shared.mail)
                    .routes
                    .insert(partner.to_string(), "mailbox");
                shared.mail_now.notify_one();
                return true;
            }
            Err(e) => tracing::info!(%partner, "a mailbox did not take the files: {e:#}"),
        }
    }
    false
}

/// Whether some of the partner's queued files are in no mailbox yet.
fn has_undeposited(shared: &Shared, partner: OfficeNumber) -> bool {
    lock(&shared.queue)
        .items
        .values()
        .any(|i| i.recipient == partner.as_str() && i.deposited_ms == 0)
}

/// Where a delivery stream goes.
#[derive(Debug, Clone)]
pub(crate) enum Route {
    /// To the partner's node.
    Direct,
    /// To a mailbox of the partner's region, which keeps the envelopes for it.
    Mailbox(renkei_directory::NodeInfo),
}

/// Delivery over one route, with a quick second try when a stream failed before any answer.
async fn deliver_by(
    shared: &Arc<Shared>,
    partner: OfficeNumber,
    route: &Route,
) -> Result<(), DeliveryError> {
    let mut attempt = 0u64;
    loop {
        // Whether this attempt's partner answered anything: only a stream that failed before
        // any answer is opened again at once.
        let any_answer = std::sync::atomic::AtomicBool::new(false);
        match deliver_once(shared, partner, &any_answer, route).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                attempt += 1;
                let early = matches!(e, DeliveryError::Stream(_) | DeliveryError::Unanswered(_));
                let any = any_answer.load(std::sync::atomic::Ordering::Relaxed);
                if attempt >= 3 || !early || any || shared.stopping() {
                    return Err(e);
                }
                tracing::debug!(%partner, "stream failed early, retrying: {e:#}");
                // Transport-level: real time, whatever clock the node runs on.
                // Keyed by the moment and the partner: deliveries started together spread.
                let partner_key = partner.as_str().parse::<u64>().unwrap_or(0);
                let key = shared
                    .env
                    .now_ms()
                    .wrapping_add(partner_key.wrapping_mul(0x9e37_79b9_7f4a_7c15));
                let jitter = 10 + shared.env.random_below_at("stream retries", key, 40) * attempt;
                tokio::time::sleep(std::time::Duration::from_millis(jitter)).await;
            }
        }
    }
}

/// A queued file, read again just before sealing.
enum Prepared {
    /// Small enough to seal from memory: the bytes, whose hash is the queued one.
    Whole(Vec<u8>),
    /// Streamed from the open file (the recipient checks the hash).
    Stream(std::fs::File),
    /// No longer in the outbox, or no longer a regular file.
    Gone(String),
    /// Changed since it was checked: it is queued again as a new message.
    Changed,
}

fn prepare(shared: &Shared, item: &QueueItem) -> Prepared {
    let path = shared.home.outbox().join(&item.file_name);
    let mut file = match open_regular(&path) {
        Ok(f) => f,
        Err(NotRegular::Io(e)) => return Prepared::Gone(e.to_string()),
        Err(e) => return Prepared::Gone(e.to_string()),
    };
    let Ok(meta) = file.metadata() else {
        return Prepared::Changed;
    };
    let stamp = Stamp::of(&meta);
    // Queues written before stamps were kept compare the length only.
    let known = item.stamp.mtime_ns != 0;
    if stamp.len != item.size || (known && stamp != item.stamp) {
        return Prepared::Changed;
    }
    if item.size > WHOLE_FILE_LIMIT {
        return Prepared::Stream(file);
    }
    let mut data = Vec::with_capacity(item.size as usize);
    if file.read_to_end(&mut data).is_err() || renkei_protocol::sha256(&data) != item.hash() {
        return Prepared::Changed;
    }
    Prepared::Whole(data)
}

/// Drops a queue item; the outbox scan takes the file again if it is there.
fn forget_item(shared: &Shared, seq: u64) {
    let _ = shared.store.queue_remove(seq);
    let _ = shared.store.flush();
    lock(&shared.queue).remove(seq);
    shared.rescan.notify_one();
}

/// One delivery attempt over one stream.
async fn deliver_once(
    shared: &Arc<Shared>,
    partner: OfficeNumber,
    any_answer: &std::sync::atomic::AtomicBool,
    route: &Route,
) -> Result<(), DeliveryError> {
    let mailbox = matches!(route, Route::Mailbox(_));
    let mut items: Vec<(u64, QueueItem)> = lock(&shared.queue)
        .items
        .iter()
        .filter(|(_, i)| i.recipient == partner.as_str() && !(mailbox && i.deposited_ms != 0))
        .map(|(s, i)| (*s, i.clone()))
        .collect();
    // An item answered already (its receipt is durable) is completed, never sent again; one
    // whose entry is damaged is dropped and its file queued anew.
    let mut answered = Vec::new();
    {
        let known = lock(&shared.sent_ids);
        items.retain(|(seq, i)| {
            if MessageId::from_hex(&i.message_id).is_none() {
                forget_item(shared, *seq);
                return false;
            }
            match known.get(&i.id()) {
                Some(v) => {
                    answered.push((*seq, i.clone(), v.clone()));
                    false
                }
                None => true,
            }
        });
    }
    if !answered.is_empty() {
        let s = shared.clone();
        crate::env::file_work(move || complete_answered(&s, &answered))
            .await
            .map_err(|e| anyhow!("{e}"))?;
    }
    if items.is_empty() {
        return Ok(());
    }
    items.sort_by_key(|(s, i)| order_key(*s, i));
    if partner == shared.office && !mailbox {
        // A route between two service kinds of the same office number stays on this node.
        let s = shared.clone();
        return crate::env::file_work(move || deliver_local(&s, items))
            .await
            .map_err(|e| anyhow!("local delivery task: {e}"))?
            .map_err(DeliveryError::Local);
    }
    let now = shared.env.now_secs();
    let entry = shared.dir().lookup(&partner).map_err(|e| anyhow!("{e}"))?;
    let Some(entry) = entry else {
        return Err(DeliveryError::NotListed(partner));
    };
    if !entry.is_active() {
        // Revoked while files waited: they cannot be delivered.
        let s = shared.clone();
        crate::env::file_work(move || {
            for (seq, item) in items {
                fail_item(
                    &s,
                    seq,
                    &item,
                    vec![finding(ErrorCode::RecipientUnknown, 0, 0)],
                    "送信先に届けられません / Cannot be delivered",
                );
            }
        })
        .await
        .map_err(|e| anyhow!("{e}"))?;
        return Ok(());
    }
    let key = entry
        .sealing_key_at(now)
        .cloned()
        .ok_or(DeliveryError::NotListed(partner))?;
    // During a key rotation the partner's node may still run as its older identity: try its
    // valid identities, newest first. The file is sealed to the newest encryption key either
    // way, and the partner holds every generation's secret.
    let timeout = shared.timeout();
    let mut identities: Vec<_> = entry.keys_at(now).collect();
    identities.sort_by_key(|k| std::cmp::Reverse(k.valid_from));
    let mut stream = None;
    let mut last = None;
    if let Route::Mailbox(node) = route {
        identities.clear();
        match open_mailbox(shared, node, timeout).await {
            Ok(mut s) => {
                let request = crate::mailbox::MailboxRequest::Deposit {
                    to: partner.to_string(),
                };
                frames::write(
                    &mut s,
                    Kind::Request,
                    &serde_json::to_vec(&request).map_err(|e| anyhow!("{e}"))?,
                )
                .await?;
                stream = Some(s);
            }
            Err(e) => last = Some(e),
        }
    }
    for k in identities {
        let Some(peer) = peer_id_of(&k.identity) else {
            continue;
        };
        for a in &entry.addresses {
            if let Ok(ma) = a.parse() {
                shared.net.add_address(peer, ma).await;
            }
        }
        match shared.net.open(peer, DELIVER, timeout).await {
            Ok(s) => {
                // The way this stream goes (direct or relayed), noted before any ack is counted:
                // whoever reads the status after a delivery sees its route.
                if let Some(via) = shared.net.via(peer).await {
                    lock(&shared.mail)
                        .routes
                        .insert(partner.to_string(), via.as_str());
                }
                stream = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let Some(stream) = stream else {
        return Err(DeliveryError::Unreachable(last.map_or_else(
            || "recipient has no usable identity key".to_string(),
            |e| e.to_string(),
        )));
    };
    let (mut reader, mut writer) = stream.split();
    let session = Mutex::new(SenderSession::new(
        shared.office,
        partner,
        entry.identity_keys_at(now),
        WINDOW,
    ));
    let room = Notify::new();
    let in_flight: Mutex<HashMap<MessageId, InFlight>> = Mutex::new(HashMap::new());
    let written_all = std::sync::atomic::AtomicBool::new(false);
    let (commit_tx, commit_rx) = mpsc::unbounded_channel::<(InFlight, Ack)>();

    // The queued files are read (and their hashes checked) ahead, in order, on one blocking
    // thread; a few wait ready for the writer.
    let (ready_tx, mut ready) = mpsc::channel::<(u64, QueueItem, Prepared)>(READ_AHEAD);
    let reader_thread = {
        let s = shared.clone();
        if crate::env::on_one_thread() {
            // The lab: read on a task of its own, in turn with the writer.
            tokio::spawn(async move {
                for (seq, item) in items {
                    let p = prepare(&s, &item);
                    if ready_tx.send((seq, item, p)).await.is_err() {
                        break;
                    }
                }
            })
        } else {
            tokio::task::spawn_blocking(move || {
                for (seq, item) in items {
                    let p = prepare(&s, &item);
                    if ready_tx.blocking_send((seq, item, p)).is_err() {
                        break;
                    }
                }
            })
        }
    };
    let write = async {
        // Frames are gathered and written in pieces of about WRITE_PIECE: fewer, larger
        // writes to the multiplexer below.
        let mut wire = Vec::with_capacity(WRITE_PIECE + DEFAULT_CHUNK_SIZE as usize + 64);
        let mut plain = vec![0u8; DEFAULT_CHUNK_SIZE as usize];
        while let Some((seq, item, prepared)) = ready.recv().await {
            loop {
                let notified = room.notified();
                if lock(&session).has_room() {
                    break;
                }
                notified.await;
            }
            let mut data = match prepared {
                Prepared::Gone(why) => {
                    shared.error(format!(
                        "{} は送信前に送信フォルダから消えたか、通常のファイルでなくなりました / left the outbox or is no longer a regular file: {why}",
                        shown(&item.file_name)
                    ));
                    forget_item(shared, seq);
                    continue;
                }
                Prepared::Changed => {
                    shared.error(format!(
                        "{} は待機中に変更されたため、送り直します / changed while queued; it will be queued again",
                        shown(&item.file_name)
                    ));
                    forget_item(shared, seq);
                    continue;
                }
                Prepared::Whole(d) => Whole::Memory(d),
                Prepared::Stream(f) => Whole::File(tokio::fs::File::from_std(f)),
            };
            let id = item.id();
            let sealed_ms = shared.env.now_ms();
            let params = SealParams {
                message_id: id,
                created_at: sealed_ms / 1000,
                sender_office: shared.office,
                recipient_office: partner,
                recipient_key: key.encryption,
                file_name: &item.file_name,
                plaintext_len: item.size,
                plaintext_hash: item.hash(),
                chunk_size: DEFAULT_CHUNK_SIZE,
            };
            let (header, mut sealer) = shared
                .env
                .with_rng(|rng| seal_header(&params, &shared.identity, &mut &mut *rng))
                .map_err(|e| anyhow!("sealing {}: {e}", shown(&item.file_name)))?;
            let chunks = item.size.div_ceil(u64::from(DEFAULT_CHUNK_SIZE)).max(1);
            let sealed_size = header.len() as u64 + item.size + chunks * 16;
            lock(&session).wrote(id, item.hash())?;
            lock(&in_flight).insert(
                id,
                InFlight {
                    seq,
                    item: item.clone(),
                    sealed_size,
                    sealed_ms,
                },
            );
            encode_frame(Kind::Header, &header, &mut wire);
            let mut at = 0usize;
            while let Some(n) = sealer.next_plain_len() {
                let chunk = match &mut data {
                    Whole::Memory(d) => &d[at..at + n],
                    Whole::File(f) => {
                        f.read_exact(&mut plain[..n]).await.with_context(|| {
                            format!("{} changed while it was being sent", shown(&item.file_name))
                        })?;
                        &plain[..n]
                    }
                };
                at += n;
                // The chunk is sealed straight into the frame that carries it.
                wire.extend_from_slice(&encode_head(Kind::Chunk, n + TAG_LEN));
                sealer
                    .seal_chunk(chunk, &mut wire)
                    .map_err(|e| anyhow!("sealing: {e}"))?;
                if wire.len() >= WRITE_PIECE {
                    writer.write_all(&wire).await?;
                    wire.clear();
                    // For the status page: how far this file has gone out.
                    lock(&shared.progress).insert(item.message_id.clone(), at as u64);
                }
            }
            // The message goes out whole: its ack can come while the next is read.
            writer.write_all(&wire).await?;
            wire.clear();
        }
        frames::write(&mut writer, Kind::End, &[]).await?;
        writer.flush().await?;
        written_all.store(true, std::sync::atomic::Ordering::SeqCst);
        Ok::<(), DeliveryError>(())
    };

    let read = async {
        let mut frame = Vec::new();
        let mut refused: Option<DeliveryError> = None;
        loop {
            let done = written_all.load(std::sync::atomic::Ordering::SeqCst);
            if done && lock(&session).unanswered() == 0 {
                break;
            }
            let Some(kind) = frames::read(
                &mut reader,
                &mut frame,
                timeout * 4,
                if mailbox {
                    &[Kind::Refuse, Kind::Stored]
                } else {
                    &[Kind::Ack, Kind::Refuse]
                },
            )
            .await?
            else {
                break;
            };
            let answer = lock(&session).on_frame(kind, &frame)?;
            any_answer.store(true, std::sync::atomic::Ordering::Relaxed);
            match answer {
                Answer::Acked(ack) => {
                    let fly = lock(&in_flight)
                        .remove(&ack.message_id)
                        .context("answer without its message")?;
                    crate::clock::ack_received(shared, &partner, fly.sealed_ms, ack.received_at);
                    commit_tx
                        .send((fly, ack))
                        .map_err(|_| anyhow!("committer stopped"))?;
                }
                Answer::Stored(id) => {
                    let fly = lock(&in_flight)
                        .remove(&id)
                        .context("answer without its message")?;
                    if let Route::Mailbox(node) = route {
                        let s = shared.clone();
                        let key = hex::encode(node.key);
                        crate::env::file_work(move || mark_deposited(&s, fly.seq, &key))
                            .await
                            .map_err(|e| anyhow!("{e}"))??;
                    }
                    lock(&session).settled();
                    room.notify_one();
                }
                Answer::Refused(r) => {
                    let fly = lock(&in_flight)
                        .remove(&r.message_id)
                        .context("answer without its message")?;
                    lock(&session).settled();
                    room.notify_one();
                    let s = shared.clone();
                    // A mailbox's refusal says nothing of the partner: the file is simply not
                    // deposited (it goes directly, or to a mailbox later).
                    let code = if mailbox { RefusalCode::Busy } else { r.code };
                    let item = fly.item.clone();
                    crate::env::file_work(move || match code.disposition() {
                        Disposition::Permanent => fail_item(
                            &s,
                            fly.seq,
                            &fly.item,
                            vec![finding(
                                if code == RefusalCode::TooLarge {
                                    ErrorCode::FileTooLarge
                                } else {
                                    ErrorCode::PartnerRefused
                                },
                                0,
                                0,
                            )],
                            "相手先が拒否しました / The partner refused it",
                        ),
                        Disposition::Requeue => forget_item(&s, fly.seq),
                        Disposition::Retry => {}
                    })
                    .await
                    .map_err(|e| anyhow!("{e}"))?;
                    // The partner ends the stream after a refusal; the answers it sends
                    // before that are still taken.
                    if refused.is_none() && code == RefusalCode::Clock {
                        refused = Some(DeliveryError::Clock(crate::clock::refused_for_time(
                            shared, &partner, &r,
                        )));
                    } else if refused.is_none() && code.disposition() == Disposition::Retry {
                        refused = Some(DeliveryError::Refused {
                            file: item.file_name,
                            refusal: r,
                        });
                    }
                }
            }
        }
        drop(commit_tx);
        if let Some(e) = refused {
            return Err(e);
        }
        let left = lock(&session).unanswered();
        if left > 0 || !written_all.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(DeliveryError::Unanswered(left.max(1)));
        }
        Ok(())
    };

    let commit = commit_loop(shared, partner, commit_rx, &session, &room);
    let transfer = async {
        tokio::pin!(write);
        tokio::pin!(read);
        let mut written = None;
        let r = loop {
            tokio::select! {
                biased;
                r = &mut read => break r,
                w = &mut write, if written.is_none() => {
                    if w.is_err() {
                        // The writer failed: nothing more will be answered.
                        break Err(w.err().unwrap_or(DeliveryError::Unanswered(0)));
                    }
                    written = Some(Ok(()));
                }
            }
        };
        // A refusal or a broken stream ends the delivery at once: a writer still sending a
        // large file to a partner that has stopped reading would wait for the timeout.
        let w: Result<(), DeliveryError> = match (written, &r) {
            (Some(w), _) => w,
            (None, Ok(())) => write.await,
            (None, Err(_)) => Ok(()),
        };
        (w, r)
    };
    let ((w, r), c) = tokio::join!(transfer, commit);
    // The reading thread ends at its next file: the writer's channel is gone.
    drop(reader_thread);
    c?;
    r?;
    w
}

/// Records that a mailbox keeps a queued file for its partner (durable: a file in a mailbox
/// is not deposited again after a restart; deposited twice, the mailbox keeps one).
fn mark_deposited(shared: &Shared, seq: u64, mailbox: &str) -> anyhow::Result<()> {
    let item = {
        let mut q = lock(&shared.queue);
        let Some(item) = q.items.get_mut(&seq) else {
            return Ok(());
        };
        item.deposited_ms = shared.env.now_ms();
        item.mailbox = mailbox.to_string();
        item.clone()
    };
    shared.store.queue_put(seq, &item)?;
    shared.store.flush()?;
    lock(&shared.mail)
        .outcomes_at
        .insert(mailbox.to_string(), item.deposited_ms);
    tracing::info!(file = %shown(&item.file_name), to = %item.recipient, "left in the partner's mailbox");
    Ok(())
}

/// A queued file a mailbox gave up (refused for now, too often): it is deposited again.
pub(crate) fn undeposit(shared: &Shared, seq: u64) -> anyhow::Result<()> {
    let item = {
        let mut q = lock(&shared.queue);
        let Some(item) = q.items.get_mut(&seq) else {
            return Ok(());
        };
        item.deposited_ms = 0;
        item.mailbox.clear();
        item.clone()
    };
    shared.store.queue_put(seq, &item)?;
    shared.store.flush()?;
    Ok(())
}

/// Opens a mailbox stream to a directory node.
pub(crate) async fn open_mailbox(
    shared: &Shared,
    node: &renkei_directory::NodeInfo,
    timeout: std::time::Duration,
) -> Result<libp2p::Stream, crate::net::NetError> {
    let peer = peer_id_of(&node.key)
        .ok_or_else(|| crate::net::NetError::Unreachable("directory node key".into()))?;
    for a in &node.addresses {
        if let Ok(ma) = a.parse() {
            shared.net.add_address(peer, ma).await;
        }
    }
    shared.net.open(peer, crate::net::MAILBOX, timeout).await
}

/// A file to seal: from memory, or streamed from disk.
enum Whole {
    Memory(Vec<u8>),
    File(tokio::fs::File),
}

/// Commits acks in batches: receipts (one fsync), the outbox files moved to `sent/` or
/// `rejected/`, queue entries removed (one flush), then their window slots freed.
async fn commit_loop(
    shared: &Arc<Shared>,
    partner: OfficeNumber,
    mut rx: mpsc::UnboundedReceiver<(InFlight, Ack)>,
    session: &Mutex<SenderSession>,
    room: &Notify,
) -> Result<(), DeliveryError> {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let n = batch.len();
        let s = shared.clone();
        let t0 = std::time::Instant::now();
        crate::env::file_work(move || commit_batch(&s, partner, batch))
            .await
            .map_err(|e| anyhow!("commit task: {e}"))??;
        tracing::debug!(n, ms = t0.elapsed().as_millis() as u64, "sender commit");
        {
            let mut s = lock(session);
            for _ in 0..n {
                s.settled();
            }
        }
        room.notify_one();
    }
    Ok(())
}

/// After a file's ack is durable: the outbox file moves to `sent/` (or is removed when
/// `sent_keep_days` is 0) — only if it is still the version delivered. A file changed after it
/// was taken stays in the outbox and is sent again as new content; `sent/` never holds bytes
/// other than those delivered.
fn finish_sent(shared: &Shared, item: &QueueItem) -> anyhow::Result<()> {
    shared.env.faults.alive()?;
    let from = shared.home.outbox().join(&item.file_name);
    if std::fs::symlink_metadata(&from).is_err() {
        return Ok(());
    }
    if !unchanged(shared, item) {
        shared.error(format!(
            "{} は送信のあとに変更されました。届いた版（SHA-256 {}…）は受領記録にあります。新しい内容を送り直します / {} changed after it was taken for sending: the version delivered (SHA-256 {}…) is in the receipts; the new content is sent again",
            shown(&item.file_name),
            item.sha256.get(..16).unwrap_or_default(),
            shown(&item.file_name),
            item.sha256.get(..16).unwrap_or_default()
        ));
        shared.rescan.notify_one();
        return Ok(());
    }
    if shared.config.sent_keep_days == 0 {
        std::fs::remove_file(&from)?;
        return Ok(());
    }
    let to = shared.home.sent().join(&item.file_name);
    std::fs::rename(&from, &to)?;
    make_private(&to)?;
    // Kept for `sent_keep_days` from now (the age counts from delivery).
    if let Ok(f) = std::fs::File::options().write(true).open(&to) {
        let _ = f.set_modified(std::time::SystemTime::now());
    }
    Ok(())
}

/// Completes a queued file whose ack came through a mailbox (verified by the caller), as if it
/// had come on a delivery stream.
pub(crate) fn commit_outcome(
    shared: &Arc<Shared>,
    partner: OfficeNumber,
    seq: u64,
    item: QueueItem,
    ack: Ack,
) -> anyhow::Result<()> {
    let chunks = item.size.div_ceil(u64::from(DEFAULT_CHUNK_SIZE)).max(1);
    let fly = InFlight {
        seq,
        sealed_size: item.size + chunks * TAG_LEN as u64,
        // Not a sample of the partner's clock: the ack waited in the mailbox.
        sealed_ms: 0,
        item,
    };
    commit_batch(shared, partner, vec![(fly, ack)])
}

fn commit_batch(
    shared: &Arc<Shared>,
    partner: OfficeNumber,
    batch: Vec<(InFlight, Ack)>,
) -> anyhow::Result<()> {
    let finished = shared.env.now_ms();
    // A file can be answered twice — directly and through a mailbox: the first answer is
    // committed, and the check and the append are one step under this lock.
    let mut answered = lock(&shared.sent_ids);
    let batch: Vec<(InFlight, Ack)> = batch
        .into_iter()
        .filter(|(f, _)| !answered.contains_key(&f.item.id()))
        .collect();
    if batch.is_empty() {
        return Ok(());
    }
    let receipts: Vec<NewReceipt> = batch
        .iter()
        .map(|(f, ack)| NewReceipt {
            direction: "sent",
            file_name: f.item.file_name.clone(),
            office: shared.office.to_string(),
            partner: partner.to_string(),
            size: f.item.size,
            sealed_size: f.sealed_size,
            started_ms: f.item.queued_at_ms,
            finished_ms: finished,
            ack: ack.clone(),
        })
        .collect();
    shared.append_receipts(receipts)?;
    for (f, ack) in &batch {
        answered.insert(f.item.id(), ack.verdict.clone());
    }
    drop(answered);
    shared
        .env
        .faults
        .crash_point(FaultPoint::CrashAfterSentReceipts)?;
    {
        let mut st = lock(&shared.stats);
        for (f, ack) in &batch {
            match ack.verdict {
                Verdict::Accepted => {
                    tracing::info!(file = %shown(&f.item.file_name), to = %partner, bytes = f.item.size, "delivered");
                    st.delivered += 1;
                }
                Verdict::Rejected(_) => st.rejected_outgoing += 1,
            }
        }
    }
    let done: Vec<(u64, QueueItem, Verdict)> = batch
        .into_iter()
        .map(|(f, ack)| (f.seq, f.item, ack.verdict))
        .collect();
    complete_answered(shared, &done);
    Ok(())
}

/// Delivers files addressed to another service kind of our own office number: each staged in
/// `inbox/.partial/` (never where the care software looks), made durable and renamed into the
/// inbox, acknowledged with our own key; then both receipts of every file in one append, so a
/// crash leaves both or neither.
fn deliver_local(shared: &Arc<Shared>, items: Vec<(u64, QueueItem)>) -> anyhow::Result<()> {
    use std::io::Write;
    let mut staged = Vec::new();
    for (seq, item) in items {
        let bytes = match prepare(shared, &item) {
            Prepared::Whole(b) => b,
            Prepared::Stream(mut f) => {
                let mut b = Vec::new();
                f.read_to_end(&mut b)?;
                if renkei_protocol::sha256(&b) != item.hash() {
                    forget_item(shared, seq);
                    continue;
                }
                b
            }
            Prepared::Gone(_) | Prepared::Changed => {
                forget_item(shared, seq);
                continue;
            }
        };
        shared.env.faults.alive()?;
        let tmp = shared.home.partial_file(&shared.office, &item.id());
        let _ = std::fs::remove_file(&tmp);
        {
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let mut f = opts.open(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
        }
        staged.push((seq, item, tmp));
    }
    if staged.is_empty() {
        return Ok(());
    }
    // From the first intent on, a failure stops the node rather than leave an intent
    // unsettled while it runs (SPEC.md §7.3): its next start settles them.
    match commit_local(shared, staged) {
        Ok(failed) => failed.map_or(Ok(()), Err),
        Err(e) => {
            if shared.env.faults.alive().is_ok() {
                crate::receive::fail_stop(shared, &e);
            }
            Err(e)
        }
    }
}

/// [`deliver_local`] from its intents on: renames, receipts, index. Returns the error of a
/// file that could not be renamed (the others went on).
fn commit_local(
    shared: &Arc<Shared>,
    staged: Vec<(u64, QueueItem, std::path::PathBuf)>,
) -> anyhow::Result<Option<anyhow::Error>> {
    // The same intent as a partner's file (SPEC.md §7.3 step 6): recorded before the renames,
    // so a crash before the receipts never puts a file into the inbox twice.
    for (_, item, _) in &staged {
        shared.store.intent_put(
            &shared.office,
            &item.id(),
            &Intent {
                file_name: item.file_name.clone(),
                sha256: item.sha256.clone(),
                size: item.size,
                sealed_size: 0,
                started_ms: item.queued_at_ms,
            },
        )?;
    }
    sync_dir(&shared.home.partial())?;
    shared.store.flush()?;
    shared
        .env
        .faults
        .crash_point(FaultPoint::CrashAfterIntent)?;
    let mut renamed = Vec::with_capacity(staged.len());
    let mut failed = None;
    for (seq, item, tmp) in staged {
        shared.env.faults.alive()?;
        if let Err(e) = std::fs::rename(&tmp, shared.home.inbox().join(&item.file_name)) {
            // Undone durably before its staged copy goes: an intent without it would read as
            // written. The file stays queued; the others go on, and the error below has the
            // route retried later.
            shared.store.intent_remove(&shared.office, &item.id())?;
            shared.store.flush()?;
            let _ = std::fs::remove_file(&tmp);
            let name = shown(&item.file_name).into_owned();
            failed = Some(anyhow!(
                "{name} を受信フォルダに置けません。inbox の権限と同名のフォルダを確認してください。自動で再試行します / cannot put {name} into inbox/: check its permissions and that no folder has its name; it is tried again ({e})"
            ));
            continue;
        }
        let ack = Ack::sign(
            item.id(),
            item.hash(),
            shared.office,
            shared.office,
            shared.env.now_secs(),
            Verdict::Accepted,
            &shared.identity,
        );
        renamed.push((seq, item, ack));
    }
    let staged = renamed;
    if staged.is_empty() {
        return Ok(failed);
    }
    sync_dir(&shared.home.inbox())?;
    shared
        .env
        .faults
        .crash_point(FaultPoint::CrashAfterInboxWrite)?;
    let finished_ms = shared.env.now_ms();
    let receipt = |direction: &'static str, item: &QueueItem, ack: &Ack| NewReceipt {
        direction,
        file_name: item.file_name.clone(),
        office: shared.office.to_string(),
        partner: shared.office.to_string(),
        size: item.size,
        sealed_size: 0,
        started_ms: item.queued_at_ms,
        finished_ms,
        ack: ack.clone(),
    };
    let receipts = staged
        .iter()
        .flat_map(|(_, item, ack)| [receipt("received", item, ack), receipt("sent", item, ack)])
        .collect();
    shared.append_receipts(receipts)?;
    {
        let mut answered = lock(&shared.sent_ids);
        for (_, item, ack) in &staged {
            shared
                .store
                .received_put(&shared.office, &item.id(), &ack.to_bytes())?;
            shared.store.intent_remove(&shared.office, &item.id())?;
            answered.insert(item.id(), Verdict::Accepted);
        }
    }
    {
        let mut st = lock(&shared.stats);
        st.received += staged.len() as u64;
        st.delivered += staged.len() as u64;
    }
    let done: Vec<(u64, QueueItem, Verdict)> = staged
        .into_iter()
        .map(|(seq, item, _)| (seq, item, Verdict::Accepted))
        .collect();
    complete_answered(shared, &done);
    Ok(failed)
}

/// What office staff can do about a refusal, in Japanese and English.
pub(crate) fn refusal_hint(code: RefusalCode) -> (&'static str, &'static str) {
    match code.disposition() {
        Disposition::Permanent => (
            "送れなかったファイルは rejected フォルダにあります。",
            "The file is in the rejected folder.",
        ),
        Disposition::Requeue => (
            "送信中にファイルが変わったため、送り直します。",
            "The file changed while it was sent; it will be sent again.",
        ),
        Disposition::Retry => match code {
            RefusalCode::Clock => (
                "このパソコンか相手先のパソコンの時刻がずれています。時刻を自動で合わせる設定にしてください。自動で再送します。",
                "The clock of this computer or of the partner's is wrong: set it to update automatically. It will be retried.",
            ),
            RefusalCode::WrongRecipientKey | RefusalCode::UnknownSenderKey => (
                "どちらかの事業所の鍵が更新された直後です。ディレクトリの更新後に自動で再送します。",
                "One office's keys have just changed; it will be retried once the directory is updated.",
            ),
            RefusalCode::Busy => (
                "相手先が受信中のため、少し後に自動で再送します。",
                "The partner is busy receiving; it will be retried shortly.",
            ),
            _ => (
                "自動で再送します。続く場合は相手先に連絡してください。",
                "It will be retried; if this goes on, contact the partner office.",
            ),
        },
    }
}

/// Moves a file that can never be delivered to `rejected/` with its report, and drops its
/// queue item.
pub(crate) fn fail_item(
    shared: &Shared,
    seq: u64,
    item: &QueueItem,
    findings: Vec<renkei_protocol::Finding>,
    title: &str,
) {
    if let Err(e) = reject_file(shared, &item.file_name, findings, title) {
        shared.error(format!("{}: {e:#}", shown(&item.file_name)));
    }
    let _ = shared.store.queue_remove(seq);
    let _ = shared.store.flush();
    lock(&shared.queue).remove(seq);
    lock(&shared.stats).rejected_outgoing += 1;
}
