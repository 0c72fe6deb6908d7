//! Sending: deliver a partner's queued files over one stream, in send-unit order, pipelined,
//! and commit the partner's signed acks in batches (SPEC.md §7.2).

use std::collections::VecDeque;
use std::io::Read;
use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use futures::{AsyncReadExt, AsyncWriteExt};
use renkei_protocol::ack::{Ack, Verdict};
use renkei_protocol::envelope::{DEFAULT_CHUNK_SIZE, MessageId, SealParams, seal_header};
use renkei_protocol::{ErrorCode, FileName, OfficeNumber, finding};
use tokio::sync::{Semaphore, mpsc};

use crate::frames::{self, Kind};
use crate::home::{sync_dir, write_atomic};
use crate::net::{DELIVER, peer_id_of};
use crate::node::{Shared, lock, now_ms, now_secs};
use crate::outbox::reject_file;
use crate::receipts::NewReceipt;
use crate::store::QueueItem;

/// Messages written ahead of their acks.
const WINDOW: usize = 256;
/// Files up to this size are read once, hashed again and sealed from memory just before
/// sending; larger ones are streamed in chunks and checked by the recipient against the hash
/// in the signed header (a file changed meanwhile is refused and queued again).
const WHOLE_FILE_LIMIT: u64 = 8 << 20;

/// A message written to the stream, waiting for its ack.
struct InFlight {
    seq: u64,
    item: QueueItem,
    sealed_size: u64,
}

/// Completes queue items that were acknowledged before a crash (receipt written, queue entry
/// not yet removed).
pub(crate) async fn reconcile(shared: &Arc<Shared>) {
    let done: Vec<(u64, QueueItem)> = {
        let ids = lock(&shared.sent_ids);
        lock(&shared.queue)
            .items
            .iter()
            .filter(|(_, i)| ids.contains(&i.message_id))
            .map(|(s, i)| (*s, i.clone()))
            .collect()
    };
    if done.is_empty() {
        return;
    }
    for (seq, item) in &done {
        let from = shared.home.outbox().join(&item.file_name);
        if from.exists() {
            let _ = std::fs::rename(&from, shared.home.sent().join(&item.file_name));
        }
        let _ = shared.store.queue_remove(*seq);
    }
    let _ = sync_dir(&shared.home.sent());
    let _ = sync_dir(&shared.home.outbox());
    let _ = shared.store.flush();
    let mut q = lock(&shared.queue);
    for (seq, item) in done {
        q.items.remove(&seq);
        q.names.remove(&item.file_name);
    }
}

/// The order files go to one partner: by send unit (the 14-digit stamp), then the kind's
/// place in a unit, then queue order.
fn order_key(seq: u64, item: &QueueItem) -> (String, usize, u64) {
    match FileName::parse(&item.file_name) {
        Ok(n) => (n.stamp.as_str().to_string(), n.kind.unit_order(), seq),
        Err(_) => (String::new(), usize::MAX, seq),
    }
}

/// Delivers everything queued for `partner`. A stream that breaks before any ack (the
/// partner's accept queue was momentarily full) is opened again at once, a few times, before
/// the dispatcher's backoff takes over.
pub(crate) async fn deliver(shared: &Arc<Shared>, partner: OfficeNumber) -> anyhow::Result<()> {
    let mut attempt = 0u64;
    loop {
        let before = settled(shared);
        match deliver_once(shared, partner).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                let after = settled(shared);
                attempt += 1;
                let unreachable = format!("{e:#}").contains("cannot connect")
                    || format!("{e:#}").contains("timed out connecting");
                if attempt >= 3 || after != before || unreachable || shared.stopping() {
                    return Err(e);
                }
                tracing::debug!(%partner, "stream failed early, retrying: {e:#}");
                tokio::time::sleep(std::time::Duration::from_millis(
                    10 + rand::random_range(0..40u64) * attempt,
                ))
                .await;
            }
        }
    }
}

/// How many files this node has settled (delivered or refused) so far.
fn settled(shared: &Shared) -> u64 {
    let st = lock(&shared.stats);
    st.delivered + st.rejected_outgoing
}

/// One delivery attempt over one stream.
async fn deliver_once(shared: &Arc<Shared>, partner: OfficeNumber) -> anyhow::Result<()> {
    let mut items: Vec<(u64, QueueItem)> = lock(&shared.queue)
        .items
        .iter()
        .filter(|(_, i)| i.recipient == partner.as_str())
        .map(|(s, i)| (*s, i.clone()))
        .collect();
    if items.is_empty() {
        return Ok(());
    }
    items.sort_by_key(|(s, i)| order_key(*s, i));
    if partner == shared.office {
        // A route between two service kinds of the same office number stays on this node.
        let s = shared.clone();
        return tokio::task::spawn_blocking(move || deliver_local(&s, items))
            .await
            .map_err(|e| anyhow!("local delivery task: {e}"))?;
    }
    let now = now_secs();
    let entry = shared.dir().lookup(&partner)?;
    let Some(entry) = entry else {
        bail!("送信先 {partner} が名簿にありません / recipient {partner} is not in the directory");
    };
    if !entry.is_active() {
        // Revoked while files waited: they cannot be delivered.
        for (seq, item) in items {
            fail_item(
                shared,
                seq,
                &item,
                vec![finding(ErrorCode::RecipientUnknown, 0, 0)],
                "送信先に届けられません / Cannot be delivered",
            )
            .await;
        }
        return Ok(());
    }
    let key = entry
        .sealing_key_at(now)
        .cloned()
        .context("recipient has no valid key")?;
    // During a key rotation the partner's node may still run as its older identity: try its
    // valid identities, newest first. The file is sealed to the newest encryption key either
    // way, and the partner holds every generation's secret.
    let timeout = shared.timeout();
    let mut identities: Vec<_> = entry.keys_at(now).collect();
    identities.sort_by_key(|k| std::cmp::Reverse(k.valid_from));
    let mut stream = None;
    let mut last = None;
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
                stream = Some(s);
                break;
            }
            Err(e) => last = Some(e.into()),
        }
    }
    let Some(stream) = stream else {
        return Err(last.unwrap_or_else(|| anyhow!("recipient has no usable identity key")));
    };
    let (mut reader, mut writer) = stream.split();
    let window = Arc::new(Semaphore::new(WINDOW));
    let (fly_tx, mut fly_rx) = mpsc::unbounded_channel::<InFlight>();
    let (commit_tx, commit_rx) = mpsc::unbounded_channel::<(InFlight, Ack)>();
    let identity_keys = entry.identity_keys_at(now);
    let total = items.len();

    let write = async {
        let mut buf = Vec::with_capacity(DEFAULT_CHUNK_SIZE as usize + 64);
        for (seq, item) in items {
            let permit = window
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| anyhow!("closed"))?;
            permit.forget();
            let path = shared.home.outbox().join(&item.file_name);
            let mut file = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(e) => {
                    // Removed from the outbox before delivery: forget it.
                    shared.error(format!(
                        "{} が送信フォルダから消えました / left the outbox before delivery: {e}",
                        item.file_name
                    ));
                    let _ = shared.store.queue_remove(seq);
                    let mut q = lock(&shared.queue);
                    q.items.remove(&seq);
                    q.names.remove(&item.file_name);
                    window.add_permits(1);
                    continue;
                }
            };
            let mut hash = [0u8; 32];
            hex::decode_to_slice(&item.sha256, &mut hash)
                .map_err(|_| anyhow!("bad queue entry"))?;
            let mut id = [0u8; 16];
            hex::decode_to_slice(&item.message_id, &mut id)
                .map_err(|_| anyhow!("bad queue entry"))?;
            let params = SealParams {
                message_id: MessageId(id),
                created_at: now_secs(),
                sender_office: shared.office,
                recipient_office: partner,
                recipient_key: key.encryption,
                file_name: &item.file_name,
                plaintext_len: item.size,
                plaintext_hash: hash,
                chunk_size: DEFAULT_CHUNK_SIZE,
            };
            // A file changed since it was queued is dropped here; the outbox scan queues it
            // again as a new message.
            // A small file is read once, checked unchanged by its hash, and sealed from memory;
            // a large one is streamed (the recipient checks the hash in the signed header).
            let mut data = None;
            let unchanged = match file.metadata() {
                Ok(m) if m.len() == item.size && item.size <= WHOLE_FILE_LIMIT => {
                    let mut d = Vec::with_capacity(item.size as usize);
                    let same =
                        file.read_to_end(&mut d).is_ok() && renkei_protocol::sha256(&d) == hash;
                    data = Some(d);
                    same
                }
                Ok(m) => m.len() == item.size,
                Err(_) => false,
            };
            if !unchanged {
                shared.error(format!("{} は待機中に変更されたため、送り直します / changed while queued; it will be queued again", item.file_name));
                let _ = shared.store.queue_remove(seq);
                let mut q = lock(&shared.queue);
                q.items.remove(&seq);
                q.names.remove(&item.file_name);
                window.add_permits(1);
                shared.rescan.notify_one();
                continue;
            }
            if data.is_none() {
                file = std::fs::File::open(&path)?;
            }
            let (header, mut sealer) = seal_header(&params, &shared.identity, &mut rand::rng())?;
            let chunks = item.size.div_ceil(u64::from(DEFAULT_CHUNK_SIZE)).max(1);
            let sealed_size = header.len() as u64 + item.size + chunks * 16;
            fly_tx
                .send(InFlight {
                    seq,
                    item: item.clone(),
                    sealed_size,
                })
                .map_err(|_| anyhow!("ack reader stopped"))?;
            frames::write(&mut writer, Kind::Header, &header).await?;
            let mut plain = vec![0u8; DEFAULT_CHUNK_SIZE as usize];
            let mut at = 0usize;
            while let Some(n) = sealer.next_plain_len() {
                let chunk = match &data {
                    Some(d) => &d[at..at + n],
                    None => {
                        file.read_exact(&mut plain[..n]).with_context(|| {
                            format!("{} changed while it was being sent", item.file_name)
                        })?;
                        &plain[..n]
                    }
                };
                at += n;
                buf.clear();
                sealer.seal_chunk(chunk, &mut buf)?;
                frames::write(&mut writer, Kind::Chunk, &buf).await?;
            }
        }
        frames::write(&mut writer, Kind::End, &[]).await?;
        writer.flush().await?;
        drop(fly_tx);
        anyhow::Ok(())
    };

    let read = async {
        let mut frame = Vec::new();
        let mut acked = 0usize;
        let mut pending: VecDeque<InFlight> = VecDeque::new();
        loop {
            let kind = frames::read(&mut reader, &mut frame, timeout * 4).await?;
            let Some(kind) = kind else { break };
            while let Ok(f) = fly_rx.try_recv() {
                pending.push_back(f);
            }
            if pending.is_empty()
                && let Some(f) = fly_rx.recv().await
            {
                pending.push_back(f);
            }
            let fly = pending
                .pop_front()
                .ok_or_else(|| anyhow!("ack without a message"))?;
            match kind {
                Kind::Ack => {
                    let ack =
                        Ack::parse(&frame).map_err(|e| anyhow!("partner sent a bad ack: {e}"))?;
                    let mut hash = [0u8; 32];
                    hex::decode_to_slice(&fly.item.sha256, &mut hash)
                        .map_err(|_| anyhow!("bad queue entry"))?;
                    let mut id = [0u8; 16];
                    hex::decode_to_slice(&fly.item.message_id, &mut id)
                        .map_err(|_| anyhow!("bad queue entry"))?;
                    ack.verify(&MessageId(id), &hash, &identity_keys)
                        .map_err(|e| anyhow!("partner's ack does not verify: {e}"))?;
                    if ack.sender_office != shared.office || ack.recipient_office != partner {
                        bail!("partner's ack names the wrong offices");
                    }
                    commit_tx
                        .send((fly, ack))
                        .map_err(|_| anyhow!("committer stopped"))?;
                    acked += 1;
                }
                Kind::Refuse => {
                    let code = frame
                        .get(..2)
                        .map_or(0, |c| u16::from_be_bytes([c[0], c[1]]));
                    let reason =
                        String::from_utf8_lossy(frame.get(2..).unwrap_or_default()).to_string();
                    match refusal(code) {
                        Refusal::Permanent => {
                            let code = if code == 13 {
                                ErrorCode::FileTooLarge
                            } else {
                                ErrorCode::PartnerRefused
                            };
                            fail_item(
                                shared,
                                fly.seq,
                                &fly.item,
                                vec![finding(code, 0, 0)],
                                &format!("相手先が拒否しました / The partner refused it: {reason}"),
                            )
                            .await;
                        }
                        Refusal::Requeue => forget_item(shared, fly.seq, &fly.item),
                        Refusal::Transient => {}
                    }
                    let (ja, en) = refusal_hint(code);
                    bail!(
                        "{}: 相手先が拒否しました（コード {code}）。{ja} / the partner refused it (code {code}): {reason}. {en}",
                        fly.item.file_name
                    );
                }
                _ => bail!("unexpected frame from partner"),
            }
            if acked == total {
                break;
            }
        }
        drop(commit_tx);
        // The partner ended the stream with files unanswered: a failed delivery (the writer,
        // perhaps waiting for a window slot no ack will free, is dropped).
        if acked < total {
            bail!(
                "相手先が {} 件を未回答のまま通信を終えました / the partner ended the stream with {} files unanswered",
                total - acked,
                total - acked
            );
        }
        anyhow::Ok(acked)
    };

    let commit = commit_loop(shared, partner, commit_rx, window.clone());
    let transfer = async {
        tokio::pin!(write);
        tokio::pin!(read);
        let mut written = None;
        let r = loop {
            tokio::select! {
                r = &mut read => break r,
                w = &mut write, if written.is_none() => written = Some(w),
            }
        };
        // A refusal or a broken stream ends the delivery at once: a writer still sending a
        // large file to a partner that has stopped reading would wait for the timeout.
        let w = match (written, &r) {
            (Some(w), _) => w,
            (None, Ok(_)) => write.await,
            (None, Err(_)) => Ok(()),
        };
        (w, r)
    };
    let ((w, r), c) = tokio::join!(transfer, commit);
    c?;
    r?;
    w?;
    Ok(())
}

/// Commits acks in batches: receipts (one fsync), the outbox files moved to `sent/` or
/// `rejected/`, queue entries removed (one flush).
async fn commit_loop(
    shared: &Arc<Shared>,
    partner: OfficeNumber,
    mut rx: mpsc::UnboundedReceiver<(InFlight, Ack)>,
    window: Arc<Semaphore>,
) -> anyhow::Result<()> {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let n = batch.len();
        let s = shared.clone();
        tokio::task::spawn_blocking(move || commit_batch(&s, partner, batch))
            .await
            .map_err(|e| anyhow!("commit task: {e}"))??;
        window.add_permits(n);
    }
    Ok(())
}

fn commit_batch(
    shared: &Arc<Shared>,
    partner: OfficeNumber,
    batch: Vec<(InFlight, Ack)>,
) -> anyhow::Result<()> {
    let finished = now_ms();
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
    lock(&shared.receipts)
        .append(receipts)
        .context("writing receipts")?;
    {
        let mut ids = lock(&shared.sent_ids);
        for (f, _) in &batch {
            ids.insert(f.item.message_id.clone());
        }
    }
    let mut rejected = Vec::new();
    for (f, ack) in &batch {
        let from = shared.home.outbox().join(&f.item.file_name);
        match &ack.verdict {
            Verdict::Accepted => {
                tracing::info!(file = %f.item.file_name, to = %partner, bytes = f.item.size, "delivered");
                let _ = std::fs::rename(&from, shared.home.sent().join(&f.item.file_name));
                if let Err(e) = crate::outbox::resolve_rejected(shared, &f.item.file_name) {
                    tracing::warn!(
                        "{}: cannot move its old refusal to rejected/resolved: {e:#}",
                        f.item.file_name
                    );
                }
            }
            Verdict::Rejected(findings) => rejected.push((f, findings.clone())),
        }
    }
    for (f, findings) in &rejected {
        let shown = findings
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
        reject_file(
            shared,
            &f.item.file_name,
            shown,
            "相手先の事業所が受け取りを拒否しました / The partner office refused the file",
        )?;
    }
    sync_dir(&shared.home.sent())?;
    sync_dir(&shared.home.outbox())?;
    for (f, _) in &batch {
        shared.store.queue_remove(f.seq)?;
    }
    shared.store.flush()?;
    let mut q = lock(&shared.queue);
    let mut st = lock(&shared.stats);
    for (f, ack) in &batch {
        q.items.remove(&f.seq);
        q.names.remove(&f.item.file_name);
        match ack.verdict {
            Verdict::Accepted => st.delivered += 1,
            Verdict::Rejected(_) => st.rejected_outgoing += 1,
        }
    }
    Ok(())
}

/// Removes an item that can never be delivered, moving its file to `rejected/`.
/// Delivers files addressed to another service kind of our own office number: written
/// durably into our inbox and acknowledged with our own key, with both receipts.
fn deliver_local(shared: &Arc<Shared>, items: Vec<(u64, QueueItem)>) -> anyhow::Result<()> {
    let mut batch = Vec::new();
    let mut received = Vec::new();
    for (seq, item) in items {
        let bytes = match std::fs::read(shared.home.outbox().join(&item.file_name)) {
            Ok(b) if hex::encode(renkei_protocol::sha256(&b)) == item.sha256 => b,
            _ => {
                forget_item(shared, seq, &item);
                continue;
            }
        };
        write_atomic(&shared.home.inbox().join(&item.file_name), &bytes, false)?;
        let mut id = [0u8; 16];
        hex::decode_to_slice(&item.message_id, &mut id).map_err(|_| anyhow!("bad queue entry"))?;
        let ack = Ack::sign(
            MessageId(id),
            renkei_protocol::sha256(&bytes),
            shared.office,
            shared.office,
            now_secs(),
            Verdict::Accepted,
            &shared.identity,
        );
        shared
            .store
            .received_put(&ack.message_id, &ack.to_bytes())?;
        received.push(NewReceipt {
            direction: "received",
            file_name: item.file_name.clone(),
            office: shared.office.to_string(),
            partner: shared.office.to_string(),
            size: item.size,
            sealed_size: 0,
            started_ms: item.queued_at_ms,
            finished_ms: now_ms(),
            ack: ack.clone(),
        });
        batch.push((
            InFlight {
                seq,
                item,
                sealed_size: 0,
            },
            ack,
        ));
    }
    if batch.is_empty() {
        return Ok(());
    }
    let n = received.len() as u64;
    lock(&shared.receipts).append(received)?;
    lock(&shared.stats).received += n;
    commit_batch(shared, shared.office, batch)
}

/// How a sender treats a partner's refusal (codes of SPEC.md §7.3).
enum Refusal {
    /// Retrying cannot help: the file goes to `rejected/` with a report.
    Permanent,
    /// The file changed while it was sent: queue it again from the outbox.
    Requeue,
    /// Stale directory, clock or a damaged transfer: retry with backoff.
    Transient,
}

fn refusal(code: u16) -> Refusal {
    match code {
        1 | 2 | 3 | 6 | 12 | 13 => Refusal::Permanent,
        11 => Refusal::Requeue,
        _ => Refusal::Transient,
    }
}

/// What office staff can do about a refusal, in Japanese and English.
fn refusal_hint(code: u16) -> (&'static str, &'static str) {
    match refusal(code) {
        Refusal::Permanent => (
            "送れなかったファイルは rejected フォルダにあります。",
            "The file is in the rejected folder.",
        ),
        Refusal::Requeue => (
            "送信中にファイルが変わったため、送り直します。",
            "The file changed while it was sent; it will be sent again.",
        ),
        Refusal::Transient => match code {
            8 => (
                "このパソコンか相手先のパソコンの時刻がずれています。時刻を自動で合わせる設定にしてください。自動で再送します。",
                "The clock of this computer or of the partner's is wrong: set it to update automatically. It will be retried.",
            ),
            4 | 5 => (
                "どちらかの事業所の鍵が更新された直後です。ディレクトリの更新後に自動で再送します。",
                "One office's keys have just changed; it will be retried once the directory is updated.",
            ),
            _ => (
                "自動で再送します。続く場合は相手先に連絡してください。",
                "It will be retried; if this goes on, contact the partner office.",
            ),
        },
    }
}

/// Drops a queue item without a report; the outbox scan queues the file again.
fn forget_item(shared: &Arc<Shared>, seq: u64, item: &QueueItem) {
    let _ = shared.store.queue_remove(seq);
    let _ = shared.store.flush();
    let mut q = lock(&shared.queue);
    q.items.remove(&seq);
    q.names.remove(&item.file_name);
    drop(q);
    shared.rescan.notify_one();
}

async fn fail_item(
    shared: &Arc<Shared>,
    seq: u64,
    item: &QueueItem,
    findings: Vec<renkei_protocol::Finding>,
    title: &str,
) {
    if let Err(e) = reject_file(shared, &item.file_name, findings, title) {
        shared.error(format!("{}: {e:#}", item.file_name));
    }
    let _ = shared.store.queue_remove(seq);
    let _ = shared.store.flush();
    let mut q = lock(&shared.queue);
    q.items.remove(&seq);
    q.names.remove(&item.file_name);
    lock(&shared.stats).rejected_outgoing += 1;
}
