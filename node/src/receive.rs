//! Receiving: verify the sender, open, check the plaintext again, write it durably into the
//! inbox, and only then send the signed ack (SPEC.md §7.3).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::anyhow;
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::PeerId;
use renkei_protocol::ack::{Ack, AckFinding, Verdict};
use renkei_protocol::envelope::{EnvelopeError, EnvelopeHeader, OpenParams, open_header};
use renkei_protocol::{ErrorCode, FileName, check_bytes, finding};
use tokio::sync::mpsc;

use crate::frames::{self, Kind};
use crate::home::sync_dir;
use crate::net::{DELIVER, key_of};
use crate::node::{Shared, lock, now_ms, now_secs};
use crate::receipts::NewReceipt;

/// Clock skew tolerated on a sender's creation time.
const MAX_SKEW_SECS: u64 = 600;

/// Bytes of received files one stream checks at the same time: the reader goes on receiving
/// the next files while earlier ones are checked. A larger file is checked alone.
const CHECK_BUDGET: u32 = 8 << 20;

/// A large file being received is flushed to disk every this many bytes, in the background, so
/// the fsync before its ack has little left to write.
const WRITEBACK_EVERY: u64 = 16 << 20;

/// Starts flushing a file being written every [`WRITEBACK_EVERY`] bytes, one flush at a time,
/// on a blocking thread (the writer goes on meanwhile).
#[derive(Default)]
struct WriteBack {
    written: u64,
    flushed: u64,
    running: Option<tokio::task::JoinHandle<()>>,
}

impl WriteBack {
    fn wrote(&mut self, file: &std::fs::File, n: usize) {
        self.written += n as u64;
        if self.written - self.flushed < WRITEBACK_EVERY
            || self.running.as_ref().is_some_and(|h| !h.is_finished())
        {
            return;
        }
        // Only an optimisation: the commit's own fsync is what makes the file durable.
        if let Ok(clone) = file.try_clone() {
            self.flushed = self.written;
            self.running = Some(tokio::task::spawn_blocking(move || {
                let _ = clone.sync_data();
            }));
        }
    }
}

/// What the reader hands the committer, in stream order.
enum Pending {
    /// A message opened and checked; its plaintext is in `temp`.
    Done {
        header: Box<EnvelopeHeader>,
        temp: PathBuf,
        verdict: Verdict,
        started_ms: u64,
        sealed_size: u64,
    },
    /// A message we had already received: send the same ack again.
    Duplicate(Vec<u8>),
    /// Refused before an ack could be made; the stream ends after it.
    Refuse(u16, String),
}

/// A message on its way to the committer: ready, or its check still running.
enum Queued {
    Ready(Pending),
    Checking(tokio::task::JoinHandle<anyhow::Result<Pending>>),
}

/// The reader's end of the queue to the committer.
struct ToCommitter(mpsc::UnboundedSender<Queued>);

impl ToCommitter {
    fn send(&self, p: Pending) -> Result<(), mpsc::error::SendError<Queued>> {
        self.0.send(Queued::Ready(p))
    }

    fn checking(
        &self,
        task: tokio::task::JoinHandle<anyhow::Result<Pending>>,
    ) -> Result<(), mpsc::error::SendError<Queued>> {
        self.0.send(Queued::Checking(task))
    }
}

/// Accepts delivery streams until shutdown.
pub(crate) async fn accept_loop(shared: Arc<Shared>) {
    let mut incoming = match shared.net.control.clone().accept(DELIVER) {
        Ok(i) => i,
        Err(_) => return,
    };
    let mut stop = shared.shutdown.clone();
    loop {
        tokio::select! {
            next = incoming.next() => {
                let Some((peer, stream)) = next else { break };
                let s = shared.clone();
                tokio::spawn(async move {
                    // By office, not PeerId: a partner that switches keys comes back under a
                    // new PeerId, and its earlier break must still be cleared.
                    let office = crate::net::key_of(&peer).and_then(|k| {
                        s.dir().active_office_by_key(&k, crate::node::now_secs()).ok().flatten()
                    });
                    let topic = match office {
                        Some(e) => format!("receive:{}", e.office),
                        None => format!("receive:{peer}"),
                    };
                    match handle(&s, peer, stream).await {
                        // A later stream from the partner that ends well clears earlier breaks.
                        Ok(()) => s.resolved(&topic),
                        Err(e) => s.error_about(Some(topic), format!("{peer} からの受信が中断しました / receiving from {peer} stopped: {e:#}")),
                    }
                });
            }
            _ = stop.changed() => break,
        }
    }
}

/// Refusal code for a file larger than this node's `max_file_mb` (SPEC.md §7.3).
const REFUSE_TOO_LARGE: u16 = 13;

fn refuse_code(e: &EnvelopeError) -> u16 {
    match e {
        EnvelopeError::Incomplete | EnvelopeError::BadMagic | EnvelopeError::Malformed(_) => 1,
        EnvelopeError::UnsupportedVersion(_) => 2,
        EnvelopeError::WrongRecipient(_) => 3,
        EnvelopeError::WrongRecipientKey => 4,
        EnvelopeError::UnknownSenderKey(_) => 5,
        EnvelopeError::BadSignature => 6,
        EnvelopeError::Replayed(_) => 7,
        EnvelopeError::FromFuture | EnvelopeError::TooOld => 8,
        EnvelopeError::KeyAgreement => 9,
        EnvelopeError::ChunkAuth(_) | EnvelopeError::Truncated | EnvelopeError::TrailingData => 10,
        EnvelopeError::HashMismatch => 11,
        EnvelopeError::ChunkSize => 12,
    }
}

async fn handle(shared: &Arc<Shared>, peer: PeerId, stream: libp2p::Stream) -> anyhow::Result<()> {
    let (mut reader, mut writer) = stream.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Queued>();
    let tx = ToCommitter(tx);
    let committer = {
        let shared = shared.clone();
        async move {
            while let Some(first) = rx.recv().await {
                let mut queued = vec![first];
                while let Ok(more) = rx.try_recv() {
                    queued.push(more);
                }
                let mut batch = Vec::with_capacity(queued.len());
                for q in queued {
                    batch.push(match q {
                        Queued::Ready(p) => p,
                        Queued::Checking(task) => {
                            task.await.map_err(|e| anyhow!("check task: {e}"))??
                        }
                    });
                }
                let s = shared.clone();
                let answers = tokio::task::spawn_blocking(move || commit_batch(&s, peer, batch))
                    .await
                    .map_err(|e| anyhow!("commit task: {e}"))??;
                let mut stop = false;
                for (kind, payload) in answers {
                    frames::write(&mut writer, kind, &payload).await?;
                    stop |= kind == Kind::Refuse;
                }
                writer.flush().await?;
                if stop {
                    break;
                }
            }
            let _ = writer.close().await;
            anyhow::Ok(())
        }
    };
    let read = async {
        let r = read_messages(shared, peer, &mut reader, &tx).await;
        drop(tx);
        r
    };
    let (c, r) = tokio::join!(committer, read);
    c?;
    r
}

async fn read_messages(
    shared: &Arc<Shared>,
    peer: PeerId,
    reader: &mut (impl futures::AsyncRead + Unpin),
    tx: &ToCommitter,
) -> anyhow::Result<()> {
    let timeout = shared.timeout();
    let check_budget = Arc::new(tokio::sync::Semaphore::new(CHECK_BUDGET as usize));
    let mut frame = Vec::new();
    let peer_key = key_of(&peer).ok_or_else(|| anyhow!("peer has no Ed25519 key"))?;
    loop {
        let Some(kind) = frames::read(reader, &mut frame, timeout).await? else {
            return Ok(());
        };
        match kind {
            Kind::End => return Ok(()),
            Kind::Header => {}
            _ => anyhow::bail!("expected an envelope header"),
        }
        let started_ms = now_ms();
        let (header, _) = match EnvelopeHeader::parse(&frame) {
            // The frame must hold exactly one header.
            Ok((h, used)) if used == frame.len() => (h, used),
            Ok(_) => {
                let _ = tx.send(Pending::Refuse(1, "bytes after the envelope header".into()));
                return Ok(());
            }
            Err(e) => {
                let _ = tx.send(Pending::Refuse(refuse_code(&e), e.to_string()));
                return Ok(());
            }
        };
        // The connection's proven identity must be the key that signed the envelope.
        if header.sender_key != peer_key {
            let _ = tx.send(Pending::Refuse(
                5,
                "the connection's key is not the envelope's sender key".into(),
            ));
            return Ok(());
        }
        let now = now_secs();
        let sender_keys = shared
            .dir()
            .lookup(&header.sender_office)?
            .map(|e| e.identity_keys_at(now))
            .unwrap_or_default();
        let secrets = shared.secrets();
        let never = |_: &_| false;
        let opened = open_header(
            &header,
            &OpenParams {
                recipient_office: shared.office,
                recipient_secrets: &secrets,
                sender_keys: &sender_keys,
                now,
                max_age: shared.config.max_age_days * 86400,
                max_skew: MAX_SKEW_SECS,
                seen: &never,
            },
        );
        let mut opener = match opened {
            Ok(o) => o,
            Err(e) => {
                shared.error(format!(
                    "{peer} からの封筒を拒否 / refused an envelope from {peer}: {e}"
                ));
                let _ = tx.send(Pending::Refuse(refuse_code(&e), e.to_string()));
                return Ok(());
            }
        };
        // A message received before (its ack was lost): the header is verified above, so
        // skip the body and send the same ack again. The file is not written twice.
        if let Some(ack) = shared.store.received_get(&header.message_id)? {
            for _ in 0..header.chunk_count() {
                match frames::read(reader, &mut frame, timeout).await? {
                    Some(Kind::Chunk) => {}
                    _ => anyhow::bail!("stream ended inside a message"),
                }
            }
            let _ = tx.send(Pending::Duplicate(ack));
            continue;
        }
        // Refused before a byte is written: the disk is the office's, not the sender's. (After
        // the duplicate check: a file already received is always acked again.)
        if header.plaintext_len > shared.config.max_file_mb.saturating_mul(1 << 20) {
            shared.error(format!(
                "{peer} からのファイル {} は大きすぎるため拒否（{} バイト、上限 max_file_mb = {} MiB） / refused {} from {peer}: {} bytes, more than max_file_mb = {} MiB",
                header.file_name,
                header.plaintext_len,
                shared.config.max_file_mb,
                header.file_name,
                header.plaintext_len,
                shared.config.max_file_mb
            ));
            let _ = tx.send(Pending::Refuse(
                REFUSE_TOO_LARGE,
                format!(
                    "受け取り側の上限 {} MiB を超えるファイルです / file larger than the recipient's limit of {} MiB",
                    shared.config.max_file_mb, shared.config.max_file_mb
                ),
            ));
            return Ok(());
        }
        let temp = shared
            .home
            .partial()
            .join(format!("{}.part", header.message_id));
        let mut file = std::fs::File::create(&temp)?;
        let mut writeback = WriteBack::default();
        let mut sealed_size = frame.len() as u64;
        let mut failed = None;
        while opener.next_chunk_len().is_some() {
            match frames::read(reader, &mut frame, timeout).await? {
                Some(Kind::Chunk) => {}
                _ => {
                    let _ = std::fs::remove_file(&temp);
                    anyhow::bail!("stream ended inside a message");
                }
            }
            sealed_size += frame.len() as u64;
            if let Err(e) = opener.open_chunk(&mut frame) {
                failed = Some(e);
                break;
            }
            file.write_all(&frame)?;
            writeback.wrote(&file, frame.len());
        }
        let header = match failed.map_or_else(|| opener.finish(), Err) {
            Ok(h) => h,
            Err(e) => {
                drop(file);
                let _ = std::fs::remove_file(&temp);
                shared.error(format!(
                    "{peer} からの封筒を拒否 / refused an envelope from {peer}: {e}"
                ));
                let _ = tx.send(Pending::Refuse(refuse_code(&e), e.to_string()));
                return Ok(());
            }
        };
        drop(file);
        // Checked while the next message is read; the committer takes the results in order.
        let permit = check_budget
            .clone()
            .acquire_many_owned(header.plaintext_len.min(u64::from(CHECK_BUDGET)) as u32)
            .await
            .map_err(|_| anyhow!("check budget closed"))?;
        let s = shared.clone();
        let task = tokio::task::spawn_blocking(move || {
            let verdict = verdict_for(&s, &header, &temp)?;
            drop(permit);
            Ok(Pending::Done {
                header: Box::new(header),
                temp,
                verdict,
                started_ms,
                sealed_size,
            })
        });
        let _ = tx.checking(task);
    }
}

/// Checks a received file again: its name must route from the envelope's sender to us, and
/// its content must pass the checker.
fn verdict_for(
    shared: &Shared,
    header: &EnvelopeHeader,
    temp: &std::path::Path,
) -> anyhow::Result<Verdict> {
    let mut findings = Vec::new();
    match FileName::parse(&header.file_name) {
        Ok(name) => {
            if name.from.office != header.sender_office {
                findings.push(finding(ErrorCode::RouteSender, 0, 0));
            }
            let kind_ok = match name.to.kind {
                Some(k) => shared.kinds.is_empty() || shared.kinds.contains(&k),
                None => true,
            };
            if name.to.office != shared.office || !kind_ok {
                findings.push(finding(ErrorCode::RouteRecipient, 0, 0));
            }
            findings.extend(crate::outbox::check_received(&header.file_name, temp)?.errors);
        }
        Err(_) => {
            // Never use a name from the network that is not a standard name. Only the name's
            // findings are reported; the content was not read.
            findings.extend(
                check_bytes(&header.file_name, &[])
                    .errors
                    .into_iter()
                    .filter(|f| f.code != ErrorCode::FileEmpty),
            );
        }
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

/// Commits a batch: accepted files fsynced and renamed into the inbox, the inbox folder
/// fsynced once, receipts appended (one fsync), the received index flushed — then the acks.
fn commit_batch(
    shared: &Arc<Shared>,
    peer: PeerId,
    batch: Vec<Pending>,
) -> anyhow::Result<Vec<(Kind, Vec<u8>)>> {
    let mut answers = Vec::with_capacity(batch.len());
    let mut receipts = Vec::new();
    let mut acks = Vec::new();
    let mut moved = false;
    for p in &batch {
        if let Pending::Done {
            header,
            temp,
            verdict,
            ..
        } = p
        {
            if *verdict == Verdict::Accepted {
                std::fs::File::open(temp)?.sync_all()?;
                // The name was parsed as a standard name: no folders, no dots but the
                // extension, so it cannot leave the inbox.
                std::fs::rename(temp, shared.home.inbox().join(&header.file_name))?;
                moved = true;
            } else {
                let _ = std::fs::remove_file(temp);
            }
        }
    }
    if moved {
        sync_dir(&shared.home.inbox())?;
    }
    // Fault injection for the crash tests and the lab: die after the files are durable in the
    // inbox but before anything is recorded or acknowledged.
    if std::env::var("RENKEI_FAULT").as_deref() == Ok("crash-after-inbox-write") && moved {
        tracing::error!("RENKEI_FAULT: crashing after the inbox write, before the ack");
        std::process::abort();
    }
    let now = now_secs();
    for p in batch {
        match p {
            Pending::Done {
                header,
                verdict,
                started_ms,
                sealed_size,
                ..
            } => {
                let ack = Ack::sign(
                    header.message_id,
                    header.plaintext_hash,
                    header.sender_office,
                    shared.office,
                    now,
                    verdict,
                    &shared.identity,
                );
                let bytes = ack.to_bytes();
                shared.store.received_put(&header.message_id, &bytes)?;
                receipts.push(NewReceipt {
                    direction: "received",
                    file_name: header.file_name.clone(),
                    office: shared.office.to_string(),
                    partner: header.sender_office.to_string(),
                    size: header.plaintext_len,
                    sealed_size,
                    started_ms,
                    finished_ms: now_ms(),
                    ack: ack.clone(),
                });
                acks.push(ack);
                answers.push((Kind::Ack, bytes));
            }
            Pending::Duplicate(bytes) => answers.push((Kind::Ack, bytes)),
            Pending::Refuse(code, reason) => {
                let mut payload = code.to_be_bytes().to_vec();
                payload.extend_from_slice(reason.as_bytes());
                answers.push((Kind::Refuse, payload));
            }
        }
    }
    if !receipts.is_empty() {
        for r in &receipts {
            let verdict = match r.ack.verdict {
                Verdict::Accepted => "received",
                Verdict::Rejected(_) => "refused (negative ack)",
            };
            tracing::info!(file = %r.file_name, from = %r.partner, bytes = r.size, "{verdict}");
        }
        lock(&shared.receipts).append(receipts)?;
        shared.store.flush()?;
        let mut st = lock(&shared.stats);
        for a in &acks {
            match a.verdict {
                Verdict::Accepted => st.received += 1,
                Verdict::Rejected(_) => st.rejected_incoming += 1,
            }
        }
    }
    tracing::debug!(%peer, n = answers.len(), "committed a batch");
    Ok(answers)
}
