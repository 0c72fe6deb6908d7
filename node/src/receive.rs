//! Receiving: drives a [`ReceiverSession`] over each incoming delivery stream, writes each
//! message to a partial file only this stream holds, checks the plaintext again, writes it
//! durably into the inbox, and only then sends the signed ack (SPEC.md §7.3).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, anyhow};
use ed25519_dalek::VerifyingKey;
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::PeerId;
use renkei_protocol::OfficeNumber;
use renkei_protocol::ack::{Ack, AckFinding, Verdict};
use renkei_protocol::envelope::{EnvelopeHeader, MessageId};
use renkei_protocol::frames::{Refusal, RefusalCode};
use renkei_protocol::session::{
    ReceiverConfig, ReceiverContext, ReceiverSession, RxAction, route_findings,
};
use tokio::io::AsyncWriteExt as _;
use tokio::sync::mpsc;

use crate::env::FaultPoint;
use crate::files::{shown, sync_dir};
use crate::frames::{self, Kind};
use crate::net::{DELIVER, key_of};
use crate::receipts::NewReceipt;
use crate::state::{Claim, Shared, lock};
use crate::store::Intent;

/// Bytes of received files one stream checks at the same time: the reader goes on receiving
/// the next files while earlier ones are checked. A larger file is checked alone, and at most
/// four are checked at once (each check is a blocking thread).
const CHECK_BUDGET: u32 = 8 << 20;

/// What checking a file of `len` bytes takes from [`CHECK_BUDGET`].
fn check_cost(len: u64) -> u32 {
    len.clamp(u64::from(CHECK_BUDGET / 4), u64::from(CHECK_BUDGET)) as u32
}

/// A large file being received is flushed to disk every this many bytes, in the background, so
/// the fsync before its ack has little left to write.
const WRITEBACK_EVERY: u64 = 16 << 20;

/// Messages up to this size are opened into memory, checked from there and written to their
/// partial file once (no second reading); larger ones are streamed to the file as they come.
const IN_MEMORY: u64 = 1 << 20;

/// Where a message's plaintext goes while it is received.
enum Body {
    Memory(Vec<u8>),
    Disk(tokio::fs::File, WriteBack),
}

/// A message being received: its partial file in `inbox/.partial/`, which only this stream
/// writes, and its claim. Dropped before it is committed — the stream failed, timed out, was
/// refused, or the file was rejected — the partial file is deleted and the claim released.
struct Partial {
    path: PathBuf,
    header: Box<EnvelopeHeader>,
    started_ms: u64,
    sealed_size: u64,
    committed: bool,
    _claim: Claim,
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A message opened and checked, on its way to the committer: an accepted one's partial file
/// is written and fsynced, a refused one's is not kept.
struct Pending {
    partial: Partial,
    verdict: Verdict,
}

/// A message on its way to the committer: its check still running.
type Checking = tokio::task::JoinHandle<anyhow::Result<Pending>>;

/// Accepts delivery streams until shutdown.
pub(crate) async fn accept_loop(shared: Arc<Shared>) {
    let mut incoming = match shared.net.control.clone().accept(DELIVER) {
        Ok(i) => i,
        Err(_) => return,
    };
    let stop = shared.shutdown.clone();
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            next = incoming.next() => {
                let Some((peer, stream)) = next else { break };
                let s = shared.clone();
                shared.spawn(async move {
                    // By office, not PeerId: a partner that switches keys comes back under a
                    // new PeerId, and its earlier break must still be cleared.
                    let office = key_of(&peer).and_then(|k| {
                        s.dir().active_office_by_key(&k, s.env.now_secs()).ok().flatten()
                    });
                    let (topic, who) = match office {
                        Some(e) => (format!("receive:{}", e.office), e.office.to_string()),
                        None => (format!("receive:{peer}"), peer.to_string()),
                    };
                    match handle(&s, peer, stream, false).await.map(|_| ()) {
                        // A later stream from the partner that ends well clears earlier breaks.
                        Ok(()) => s.resolved(&topic),
                        Err(e) => s.error_about(Some(topic), format!("{who} からの受信が途中で止まりました。相手先が自動で送り直します。続く場合は相手先に連絡してください / receiving from {who} stopped; the partner sends again by itself — if this lasts, contact the partner: {}", shown(&format!("{e:#}")))),
                    }
                });
            }
        }
    }
}

/// The node's answers to a receiver session's questions: its directory and store, and the
/// claims of the messages being received.
struct NodeContext<'a> {
    shared: &'a Arc<Shared>,
    now: u64,
    claim: Option<Claim>,
}

impl ReceiverContext for NodeContext<'_> {
    fn sender_keys(&mut self, office: &OfficeNumber) -> Result<Vec<VerifyingKey>, String> {
        Ok(self
            .shared
            .dir()
            .lookup(office)
            .map_err(|e| e.to_string())?
            .map(|e| e.identity_keys_at(self.now))
            .unwrap_or_default())
    }

    fn stored_ack(
        &mut self,
        sender: &OfficeNumber,
        id: &MessageId,
    ) -> Result<Option<Vec<u8>>, String> {
        self.shared
            .store
            .received_get(sender, id)
            .map_err(|e| e.to_string())
    }

    fn claim(&mut self, header: &EnvelopeHeader) -> Result<(), String> {
        if self.shared.env.faults.hit(FaultPoint::RefuseBusy) {
            return Err("injected fault: refuse-busy".into());
        }
        self.claim = Some(self.shared.claim(
            header.sender_office,
            header.message_id,
            header.plaintext_len,
        )?);
        Ok(())
    }
}

/// Receives the messages of one stream: a partner's delivery stream, or (`from_mailbox`) a
/// drain of this office's mailbox, whose envelopes were signed by their senders, not by the
/// mailbox at the other end (SPEC.md §7.6).
pub(crate) async fn handle(
    shared: &Arc<Shared>,
    peer: PeerId,
    stream: libp2p::Stream,
    from_mailbox: bool,
) -> anyhow::Result<Vec<Vec<u8>>> {
    let (mut reader, mut writer) = stream.split();
    // The acks written on a drain, for their senders' own mailboxes (SPEC.md §7.6.2).
    let mut written_acks = Vec::new();
    let (answer_tx, mut answer_rx) = mpsc::unbounded_channel::<(Kind, Vec<u8>)>();
    let (check_tx, mut check_rx) = mpsc::unbounded_channel::<Checking>();
    // Answers go out as they are ready: stored acks for repeats and refusals from the reader,
    // acks from the committer. Each names its message, so their order does not matter.
    let timeout = shared.timeout();
    let write = async {
        while let Some((kind, payload)) = answer_rx.recv().await {
            // A sender that stops reading does not hold this stream for ever.
            tokio::time::timeout(timeout, async {
                frames::write(&mut writer, kind, &payload).await?;
                if from_mailbox && kind == Kind::Ack {
                    written_acks.push(payload);
                }
                while let Ok((kind, payload)) = answer_rx.try_recv() {
                    frames::write(&mut writer, kind, &payload).await?;
                    if from_mailbox && kind == Kind::Ack {
                        written_acks.push(payload);
                    }
                }
                writer.flush().await?;
                anyhow::Ok(())
            })
            .await
            .map_err(|_| anyhow!("timed out writing answers to the partner"))??;
        }
        let _ = writer.close().await;
        anyhow::Ok(())
    };
    let commit = {
        let answer_tx = answer_tx.clone();
        async move {
            while let Some(first) = check_rx.recv().await {
                let mut checking = vec![first];
                while let Ok(more) = check_rx.try_recv() {
                    checking.push(more);
                }
                let mut batch = Vec::with_capacity(checking.len());
                for task in checking {
                    batch.push(task.await.map_err(|e| anyhow!("check task: {e}"))??);
                }
                let s = shared.clone();
                let n = batch.len();
                let t0 = std::time::Instant::now();
                let via = if from_mailbox {
                    "mailbox"
                } else {
                    shared.net.via(peer).await.map_or("direct", |v| v.as_str())
                };
                let acks = crate::env::file_work(move || commit_batch(&s, batch, via))
                    .await
                    .map_err(|e| anyhow!("commit task: {e}"))??;
                tracing::debug!(n, ms = t0.elapsed().as_millis() as u64, "receiver commit");
                for answer in acks {
                    let _ = answer_tx.send(answer);
                }
            }
            anyhow::Ok(())
        }
    };
    let read = async {
        let r = read_messages(
            shared,
            peer,
            from_mailbox,
            &mut reader,
            &answer_tx,
            &check_tx,
        )
        .await;
        drop(answer_tx);
        drop(check_tx);
        r
    };
    // The first to fail ends the stream (a failed commit must not go on reading).
    tokio::try_join!(write, commit, read)?;
    Ok(written_acks)
}

async fn read_messages(
    shared: &Arc<Shared>,
    peer: PeerId,
    from_mailbox: bool,
    reader: &mut (impl futures::AsyncRead + Unpin),
    answers: &mpsc::UnboundedSender<(Kind, Vec<u8>)>,
    checks: &mpsc::UnboundedSender<Checking>,
) -> anyhow::Result<()> {
    let timeout = shared.timeout();
    let check_budget = Arc::new(tokio::sync::Semaphore::new(CHECK_BUDGET as usize));
    let peer_key = key_of(&peer).ok_or_else(|| anyhow!("peer has no Ed25519 key"))?;
    let config = ReceiverConfig {
        office: shared.office,
        max_file_len: shared.config.max_file_mb.saturating_mul(1 << 20),
        max_age: shared.config.max_age_days.saturating_mul(86400),
        max_skew: shared.config.max_clock_skew_secs,
    };
    let mut session = if from_mailbox {
        ReceiverSession::from_mailbox(config, shared.secrets())
    } else {
        ReceiverSession::new(config, peer_key, shared.secrets())
    };
    let mut frame = Vec::new();
    // The first header of a stream tells the sender's clock (crate::clock).
    let mut first_header = true;
    // The message being received: its partial file, and its open handle.
    let mut current: Option<(Partial, Body)> = None;
    loop {
        let Some(kind) = frames::read(
            reader,
            &mut frame,
            timeout,
            &[Kind::Header, Kind::Chunk, Kind::End],
        )
        .await?
        else {
            if current.is_some() {
                anyhow::bail!("stream ended inside a message");
            }
            return Ok(());
        };
        let now_ms = shared.env.now_ms();
        let mut ctx = NodeContext {
            shared,
            now: now_ms / 1000,
            claim: None,
        };
        let frame_len = frame.len() as u64;
        let action = session.on_frame(kind, &mut frame, now_ms / 1000, &mut ctx)?;
        // A drained envelope was sealed when it was deposited: no sample of a clock.
        if kind == Kind::Header && !from_mailbox {
            crate::clock::header_seen(shared, &frame, &action, &mut first_header);
        }
        match action {
            RxAction::Nothing => {}
            RxAction::End => return Ok(()),
            RxAction::Repeat(ack) => {
                let _ = answers.send((Kind::Ack, ack));
            }
            RxAction::Refuse(r) => {
                refused(shared, peer, &r);
                let _ = answers.send((Kind::Refuse, r.to_bytes()));
                return Ok(());
            }
            RxAction::Begin(header) => {
                let claim = ctx.claim.take().context("claim")?;
                let path = shared
                    .home
                    .partial_file(&header.sender_office, &header.message_id);
                let len = header.plaintext_len;
                let partial = Partial {
                    path: path.clone(),
                    header,
                    started_ms: now_ms,
                    sealed_size: frame_len,
                    committed: false,
                    _claim: claim,
                };
                if len <= IN_MEMORY {
                    current = Some((partial, Body::Memory(Vec::with_capacity(len as usize))));
                    continue;
                }
                // The claim makes the path this stream's: a file left there by a failed write
                // is replaced.
                let created = match create_partial_async(&path).await {
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        tokio::fs::remove_file(&path).await?;
                        create_partial_async(&path).await
                    }
                    other => other,
                };
                let file = created.with_context(|| format!("partial file {}", path.display()))?;
                current = Some((partial, Body::Disk(file, WriteBack::default())));
            }
            RxAction::Write => {
                let (partial, body) = current.as_mut().context("no message")?;
                if shared.env.faults.hit(FaultPoint::DropConnection) {
                    anyhow::bail!("injected fault: drop-connection");
                }
                partial.sealed_size += frame_len;
                match body {
                    Body::Memory(bytes) => bytes.extend_from_slice(&frame),
                    Body::Disk(file, writeback) => {
                        file.write_all(&frame).await?;
                        writeback.wrote(file, frame.len()).await;
                    }
                }
                match session.finish_message() {
                    None => {}
                    Some(RxAction::Complete(header)) => {
                        let (mut partial, body) = current.take().context("no message")?;
                        partial.header = header;
                        let permit = check_budget
                            .clone()
                            .acquire_many_owned(check_cost(partial.header.plaintext_len))
                            .await
                            .map_err(|_| anyhow!("check budget closed"))?;
                        let s = shared.clone();
                        // Checked while the next message is read.
                        let task = match body {
                            Body::Memory(bytes) => crate::env::spawn_file_work(move || {
                                let verdict = verdict_for(&s, &partial, Some(&bytes))?;
                                drop(permit);
                                let mut partial = partial;
                                // Only an accepted file is ever written.
                                if verdict == Verdict::Accepted {
                                    write_partial(&mut partial, &bytes)?;
                                }
                                Ok(Pending { partial, verdict })
                            }),
                            Body::Disk(mut file, _) => {
                                file.flush().await?;
                                let file = file.into_std().await;
                                crate::env::spawn_file_work(move || {
                                    let verdict = verdict_for(&s, &partial, None)?;
                                    drop(permit);
                                    if verdict == Verdict::Accepted {
                                        file.sync_all()?;
                                    }
                                    // Closed now: a commit renames by path, and a partner's
                                    // window of pending files must not hold descriptors.
                                    drop(file);
                                    Ok(Pending { partial, verdict })
                                })
                            }
                        };
                        let _ = checks.send(task);
                    }
                    Some(RxAction::Refuse(r)) => {
                        // The partial file goes with it.
                        drop(current.take());
                        refused(shared, peer, &r);
                        let _ = answers.send((Kind::Refuse, r.to_bytes()));
                        return Ok(());
                    }
                    Some(_) => anyhow::bail!("unexpected receiver state"),
                }
            }
            RxAction::Complete(_) => anyhow::bail!("unexpected receiver state"),
        }
    }
}

/// Creates a partial file, never one that exists: what is written is only this stream's.
async fn create_partial_async(path: &std::path::Path) -> std::io::Result<tokio::fs::File> {
    let mut opts = tokio::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    opts.mode(0o600);
    opts.open(path).await
}

/// Writes a message opened in memory to its partial file (created new, 0600) and makes it
/// durable. A partial file of the same name left by a failed write is this stream's to replace:
/// the claim makes the path its own.
fn write_partial(partial: &mut Partial, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let create = || {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        opts.open(&partial.path)
    };
    let mut file = match create() {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::remove_file(&partial.path)?;
            create()?
        }
        other => other?,
    };
    file.write_all(bytes)?;
    // Durable before the commit renames it into the inbox (each message on its own blocking
    // thread, so a batch's fsyncs run side by side).
    file.sync_all()?;
    Ok(())
}

/// Says in the status and the log why a partner's envelope was refused.
fn refused(shared: &Shared, peer: PeerId, r: &Refusal) {
    // Busy is not a problem; a refusal for time is reported by crate::clock, whose clock and
    // by how much.
    if matches!(r.code, RefusalCode::Busy | RefusalCode::Clock) {
        tracing::info!(%peer, id = %r.message_id, code = r.code.to_u16(), "{}", shown(&r.reason));
        return;
    }
    shared.error(format!(
        "{peer} からの封筒を拒否（コード {}）/ refused an envelope from {peer} (code {}): {}",
        r.code.to_u16(),
        r.code.to_u16(),
        shown(&r.reason)
    ));
}

/// Flushes a large file being received every [`WRITEBACK_EVERY`] bytes in the background.
#[derive(Default)]
struct WriteBack {
    written: u64,
    flushed: u64,
    running: Option<tokio::task::JoinHandle<()>>,
}

impl WriteBack {
    async fn wrote(&mut self, file: &tokio::fs::File, n: usize) {
        self.written += n as u64;
        if self.written - self.flushed < WRITEBACK_EVERY
            || self.running.as_ref().is_some_and(|h| !h.is_finished())
        {
            return;
        }
        // Only an optimisation: the commit's own fsync is what makes the file durable.
        if let Ok(clone) = file.try_clone().await {
            self.flushed = self.written;
            self.running = Some(tokio::spawn(async move {
                let _ = clone.sync_data().await;
            }));
        }
    }
}

/// Checks a received file again: its name must route from the envelope's sender to us, and
/// its content must pass the checker.
fn verdict_for(
    shared: &Shared,
    partial: &Partial,
    bytes: Option<&[u8]>,
) -> anyhow::Result<Verdict> {
    let header = &partial.header;
    let (mut findings, standard) = route_findings(header, shared.office, &shared.kinds);
    if standard {
        findings.extend(
            match bytes {
                // The bytes the envelope's hash was verified over, checked as they are.
                Some(b) => renkei_protocol::check_bytes(&header.file_name, b),
                None => crate::outbox::check_received(
                    &header.file_name,
                    &partial.path,
                    &header.plaintext_hash,
                )?,
            }
            .errors,
        );
    }
    Ok(if findings.is_empty() {
        Verdict::Accepted
    } else {
        Verdict::Rejected(
            findings
                .into_iter()
                .map(|f| AckFinding {
                    line: f.line.min(u64::from(u32::MAX)) as u32,
                    field: f.field.min(u32::from(u16::MAX)) as u16,
                    code: f.code.as_str().to_string(),
                })
                .collect(),
        )
    })
}

/// Commits a batch: the intent to put its accepted files (fsynced when they were checked) into
/// the inbox recorded durably, the files renamed into the inbox, the inbox folder fsynced
/// once, acks signed, receipts appended (one fsync), the received index updated — and only then
/// are the answers returned to be written. A file that cannot be put in the inbox (a folder in
/// the way, say) is refused as busy, alone: the rest go on. SPEC.md §7.3 step 6 and §8 list
/// the crash each step survives.
fn commit_batch(
    shared: &Arc<Shared>,
    mut batch: Vec<Pending>,
    via: &'static str,
) -> anyhow::Result<Vec<(Kind, Vec<u8>)>> {
    let answers = commit(shared, &mut batch);
    if answers.is_ok() {
        let mut mail = lock(&shared.mail);
        for p in &batch {
            mail.routes
                .insert(p.partial.header.sender_office.to_string(), via);
        }
    }
    if let Err(e) = &answers
        && batch.iter().any(|p| p.verdict == Verdict::Accepted)
        && shared.env.faults.alive().is_ok()
    {
        // Once an intent may be durable, a failure must not delete its partial file (an intent
        // without one reads as "written"), nor let a resend be written again while the node
        // runs on: the node stops, and its next start settles every intent (SPEC.md §7.3).
        fail_stop(shared, e);
    }
    if shared.env.faults.alive().is_err() {
        // A stopped node leaves its files where they are, as a dead process would: recovery at
        // start reads a partial file that is still there as "not in the inbox".
        for p in &mut batch {
            p.partial.committed = true;
        }
    }
    answers
}

fn commit(shared: &Arc<Shared>, batch: &mut Vec<Pending>) -> anyhow::Result<Vec<(Kind, Vec<u8>)>> {
    let faults = &shared.env.faults;
    let store = &shared.store;
    let mut answers = Vec::with_capacity(batch.len());
    if batch.iter().any(|p| p.verdict == Verdict::Accepted) {
        faults.crash_point(FaultPoint::CrashBeforeInboxWrite)?;
        // The partial files' names are durable before any intent can be (sled also flushes
        // by itself): "partial file gone" is then only ever a rename into the inbox.
        sync_dir(&shared.home.partial())?;
        // The intent, before any rename: after a crash, an intent whose partial file is gone
        // means the file reached the inbox (the care software may have taken it since), and it
        // is finished from this record instead of being written again.
        for p in batch.iter().filter(|p| p.verdict == Verdict::Accepted) {
            let h = &p.partial.header;
            store.intent_put(
                &h.sender_office,
                &h.message_id,
                &Intent {
                    file_name: h.file_name.clone(),
                    sha256: hex::encode(h.plaintext_hash),
                    size: h.plaintext_len,
                    sealed_size: p.partial.sealed_size,
                    started_ms: p.partial.started_ms,
                },
            )?;
        }
        store.flush()?;
        faults.crash_point(FaultPoint::CrashAfterIntent)?;
    }
    let mut i = 0;
    while i < batch.len() {
        let p = &mut batch[i];
        if p.verdict == Verdict::Accepted {
            faults.alive()?;
            let header = &p.partial.header;
            // The name was parsed as a standard name: no folders, no dots but the
            // extension, so it cannot leave the inbox.
            let to = shared.home.inbox().join(&header.file_name);
            if let Err(e) = std::fs::rename(&p.partial.path, &to) {
                let name = shown(&header.file_name).into_owned();
                shared.error(format!(
                    "受信したファイル {name} を受信フォルダに置けません。inbox の権限と同名のフォルダを確認してください / cannot put the received {name} into inbox/: check its permissions and that no folder has its name ({e})"
                ));
                let r = Refusal::new(
                    header.message_id,
                    RefusalCode::Busy,
                    "受け取り側で受信フォルダに書けません / the recipient cannot write to its inbox",
                );
                answers.push((Kind::Refuse, r.to_bytes()));
                // Undone durably before its partial file goes (with the batch entry): an
                // intent without its partial file would read as written.
                store.intent_remove(&header.sender_office, &header.message_id)?;
                store.flush()?;
                batch.remove(i);
                continue;
            }
            p.partial.committed = true;
        }
        i += 1;
    }
    if batch.iter().any(|p| p.partial.committed) {
        sync_dir(&shared.home.inbox())?;
        faults.crash_point(FaultPoint::CrashAfterInboxWrite)?;
    }
    let now = shared.env.now_secs();
    let finished_ms = shared.env.now_ms();
    let mut receipts = Vec::with_capacity(batch.len());
    let mut acks = Vec::with_capacity(batch.len());
    for Pending {
        partial, verdict, ..
    } in batch.iter()
    {
        let header = &partial.header;
        let ack = Ack::sign(
            header.message_id,
            header.plaintext_hash,
            header.sender_office,
            shared.office,
            now,
            verdict.clone(),
            &shared.identity,
        );
        let bytes = ack.to_bytes();
        tracing::info!(
            file = %shown(&header.file_name),
            from = %header.sender_office,
            bytes = header.plaintext_len,
            "{}",
            if *verdict == Verdict::Accepted { "received" } else { "refused (negative ack)" }
        );
        receipts.push(NewReceipt {
            direction: "received",
            file_name: header.file_name.clone(),
            office: shared.office.to_string(),
            partner: header.sender_office.to_string(),
            size: header.plaintext_len,
            sealed_size: partial.sealed_size,
            started_ms: partial.started_ms,
            finished_ms,
            ack,
        });
        acks.push(bytes);
    }
    // The receipts are the record: the received index is not flushed here, since a node
    // completes it from the receipts at start (SPEC.md §7.3).
    shared.append_receipts(receipts)?;
    faults.crash_point(FaultPoint::CrashAfterReceivedReceipts)?;
    // Only now, with the receipts durable, may a repeat be answered from the index, and the
    // intents go (a crash before this is mended from the receipts at start).
    for (p, ack) in batch.iter().zip(&acks) {
        let h = &p.partial.header;
        store.received_put(&h.sender_office, &h.message_id, ack)?;
        if p.partial.committed {
            store.intent_remove(&h.sender_office, &h.message_id)?;
        }
    }
    {
        let mut st = lock(&shared.stats);
        for p in batch.iter() {
            match p.verdict {
                Verdict::Accepted => st.received += 1,
                Verdict::Rejected(_) => st.rejected_incoming += 1,
            }
        }
    }
    faults.crash_point(FaultPoint::CrashBeforeAck)?;
    // The batch is dropped by the caller: rejected partial files are deleted, and the claims
    // released only now that the received index answers for these messages.
    answers.extend(acks.into_iter().map(|a| (Kind::Ack, a)));
    Ok(answers)
}

/// Finishes or undoes, at start, what a crash left between an intent and its receipt (SPEC.md
/// §7.3 step 6). An intent whose receipt is in the log is done. One whose partial file is still
/// there never reached the inbox: it is undone, and the sender's resend is received anew. One
/// whose partial file is gone was renamed into the inbox — the file may be there still, or the
/// care software may have taken it — so it is never written again: its ack is signed and its
/// receipt appended now, and the resend is answered with that ack. Returns the receipts added.
pub(crate) fn recover_intents(
    home: &crate::home::Home,
    store: &dyn crate::store::Store,
    log: &mut crate::receipts::ReceiptLog,
    existing: &[crate::receipts::Receipt],
    office: OfficeNumber,
    identity: &ed25519_dalek::SigningKey,
    now_ms: u64,
) -> anyhow::Result<Vec<crate::receipts::Receipt>> {
    let intents = store.intents()?;
    if intents.is_empty() {
        return Ok(Vec::new());
    }
    let receipted: std::collections::HashSet<(OfficeNumber, MessageId)> = existing
        .iter()
        .filter(|r| r.direction == "received")
        .filter_map(|r| {
            Some((
                OfficeNumber::parse(&r.partner)?,
                MessageId::from_hex(&r.message_id)?,
            ))
        })
        .collect();
    let mut finish = Vec::new();
    for (sender, id, intent) in intents {
        if receipted.contains(&(sender, id)) {
            store.intent_remove(&sender, &id)?;
            continue;
        }
        let partial = home.partial_file(&sender, &id);
        match std::fs::symlink_metadata(&partial) {
            Ok(_) => {
                // Only the intent goes here (flushed below); the partial file is deleted
                // with the other leftovers after that, never before.
                store.intent_remove(&sender, &id)?;
                tracing::info!(file = %shown(&intent.file_name), from = %sender, "an interrupted receive was undone; the partner sends it again");
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => finish.push((sender, id, intent)),
            // Cannot tell whether it reached the inbox: guess neither way.
            Err(e) => {
                return Err(anyhow!(
                    "受信途中のファイル {} を確認できません。権限を確認してから再起動してください / cannot look at the partly received {}: check its permissions, then start again ({e})",
                    partial.display(),
                    partial.display()
                ));
            }
        }
    }
    let mut receipts = Vec::with_capacity(finish.len());
    let mut acks = Vec::with_capacity(finish.len());
    for (sender, id, intent) in &finish {
        let ack = Ack::sign(
            *id,
            intent.hash(),
            *sender,
            office,
            now_ms / 1000,
            Verdict::Accepted,
            identity,
        );
        let receipt = |direction| NewReceipt {
            direction,
            file_name: intent.file_name.clone(),
            office: office.to_string(),
            partner: sender.to_string(),
            size: intent.size,
            sealed_size: intent.sealed_size,
            started_ms: intent.started_ms,
            finished_ms: now_ms,
            ack: ack.clone(),
        };
        receipts.push(receipt("received"));
        // A local route (the office's own other kind) writes both sides' receipts at once.
        if *sender == office {
            receipts.push(receipt("sent"));
        }
        acks.push(ack.to_bytes());
        tracing::info!(file = %shown(&intent.file_name), from = %sender, "a file put into the inbox before a crash is recorded as received; it is not written again");
    }
    let added = if receipts.is_empty() {
        Vec::new()
    } else {
        log.append(receipts)
            .map_err(|e| anyhow!("writing receipts: {e}"))?
    };
    for ((sender, id, _), ack) in finish.iter().zip(&acks) {
        store.received_put(sender, id, ack)?;
        store.intent_remove(sender, id)?;
    }
    store.flush()?;
    Ok(added)
}

/// Stops the node after a failure that leaves an intent unsettled (a disk that cannot be
/// written, a store that cannot be flushed): going on could write a resent file into the inbox
/// a second time. `renkei run` ends its process; the next start settles the intents.
pub(crate) fn fail_stop(shared: &Shared, e: &anyhow::Error) {
    tracing::error!(
        "受信したファイルの記録中にディスクまたは状態データベースへ書けませんでした。同じファイルを二度受信フォルダに置かないよう、ノードを停止します。ディスクの空きと権限を確認してから起動し直してください / could not record a received file on disk or in the state database; the node stops so that no file is put into the inbox twice: check free disk space and permissions, then start it again ({e:#})"
    );
    shared.env.faults.crash_now();
}
