//! Imported statements (SPEC.md §8.2): when the care software imports a received file (the
//! local API says so, or the file is moved to `inbox/imported/`), the node signs a statement,
//! keeps it in `H/imported.jsonl` (fsynced) and only then sends it to the file's sender, again
//! every minute until the sender says it kept it. The sender checks it against the directory and
//! its own receipt, and keeps it in its `H/imported.jsonl` too.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::OpenOptions;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use futures::{AsyncWriteExt, StreamExt};
use renkei_protocol::OfficeNumber;
use renkei_protocol::envelope::MessageId;
use renkei_protocol::frames::{Refusal, RefusalCode};
use renkei_protocol::imported::Imported;
use serde::{Deserialize, Serialize};

use crate::frames::{self, Kind};
use crate::home::Home;
use crate::net::{IMPORTED, key_of, peer_id_of};
use crate::receipts::{Receipt, read_log};
use crate::state::{Shared, lock};

/// One line of `H/imported.jsonl`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptImported {
    /// `made` (we imported a partner's file and signed), `received` (a partner imported ours),
    /// `posted` (our statement was left in the sender's own mailbox, the sender being off),
    /// `delivered` (the sender kept our statement) or `refused` (the sender would not).
    pub role: String,
    /// The message id, hex.
    pub message_id: String,
    /// The file name.
    #[serde(default)]
    pub file_name: String,
    /// The other office.
    #[serde(default)]
    pub partner: String,
    /// SHA-256 of the plaintext, hex.
    #[serde(default)]
    pub sha256: String,
    /// Unix seconds, by the importer's clock.
    #[serde(default)]
    pub imported_at: u64,
    /// The signed statement, hex (empty on `delivered` and `refused` lines).
    #[serde(default)]
    pub statement: String,
    /// Why the sender refused it (`refused` lines).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// What `imported.jsonl` holds, by message id.
#[derive(Debug, Default, Clone)]
pub struct ImportedBook {
    /// Statements we made.
    pub made: HashMap<String, KeptImported>,
    /// Statements partners made about our files.
    pub received: HashMap<String, KeptImported>,
    /// Our statements the sender kept.
    pub delivered: HashSet<String>,
    /// Our statements left in the sender's own mailbox (offered directly still, until the
    /// sender says it kept one).
    pub posted: HashSet<String>,
    /// Our statements the sender refused, with why.
    pub refused: HashMap<String, String>,
}

impl ImportedBook {
    /// Reads `H/imported.jsonl` (a line that does not parse is skipped with a warning).
    pub fn read(home: &Home) -> ImportedBook {
        let mut book = ImportedBook::default();
        let text = std::fs::read_to_string(home.imported()).unwrap_or_default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            match serde_json::from_str::<KeptImported>(line) {
                Ok(k) => book.add(k),
                Err(e) => tracing::warn!("imported.jsonl: a line is not readable, skipped: {e}"),
            }
        }
        book
    }

    fn add(&mut self, k: KeptImported) {
        match k.role.as_str() {
            "made" => {
                self.made.insert(k.message_id.clone(), k);
            }
            "received" => {
                self.received.insert(k.message_id.clone(), k);
            }
            "delivered" => {
                self.delivered.insert(k.message_id);
            }
            "posted" => {
                self.posted.insert(k.message_id);
            }
            "refused" => {
                self.refused.insert(k.message_id, k.reason);
            }
            _ => {}
        }
    }

    /// Our statements not yet kept by their sender (nor refused by it).
    pub fn pending(&self) -> Vec<KeptImported> {
        let mut v: Vec<_> = self
            .made
            .values()
            .filter(|k| {
                !self.delivered.contains(&k.message_id) && !self.refused.contains_key(&k.message_id)
            })
            .cloned()
            .collect();
        v.sort_by_key(|k| k.imported_at);
        v
    }

    /// The statement about a message, made by us or received.
    pub fn about(&self, message_id: &str) -> Option<&KeptImported> {
        self.made
            .get(message_id)
            .or_else(|| self.received.get(message_id))
    }
}

/// Appends one line to `H/imported.jsonl`, fsynced (a line torn by a crash is closed first).
fn append(home: &Home, k: &KeptImported) -> anyhow::Result<()> {
    let path = home.imported();
    let held = std::fs::read(&path).unwrap_or_default();
    let sep = if held.is_empty() || held.ends_with(b"\n") {
        ""
    } else {
        "\n"
    };
    let created = held.is_empty() && !path.exists();
    let mut opts = OpenOptions::new();
    opts.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&path)?;
    f.write_all(format!("{sep}{}\n", serde_json::to_string(k)?).as_bytes())?;
    f.sync_data()?;
    if created {
        crate::files::sync_dir(&home.root)?;
    }
    Ok(())
}

/// Why a file cannot be marked imported.
#[derive(Debug, thiserror::Error)]
pub enum MarkError {
    /// No accepted received file of that name.
    #[error(
        "受信したファイル {0} の記録がありません。ファイル名を確かめてください / no file named {0} was received: check the name"
    )]
    NotReceived(String),
    /// Writing the statement failed.
    #[error(
        "取込済みの記録を書き込めません。ディスクの空きと権限を確認してください / cannot write the imported statement: check free disk space and permissions ({0:#})"
    )]
    Io(anyhow::Error),
}

/// The newest accepted receipt of a received file of this name.
pub(crate) fn received_receipt(receipts: &[Receipt], file_name: &str) -> Option<Receipt> {
    receipts
        .iter()
        .rev()
        .find(|r| r.direction == "received" && r.verdict == "accepted" && r.file_name == file_name)
        .cloned()
}

/// Marks the received file `file_name` imported: signs the statement and keeps it (fsynced)
/// before it is sent; marking it again returns the statement made the first time.
pub(crate) fn mark(shared: &Arc<Shared>, file_name: &str) -> Result<KeptImported, MarkError> {
    let receipts = read_log(&shared.home.receipts()).map_err(|e| MarkError::Io(e.into()))?;
    let r = received_receipt(&receipts, file_name)
        .ok_or_else(|| MarkError::NotReceived(crate::files::shown(file_name).into_owned()))?;
    let (Some(id), Some(sender), Ok(hash)) = (
        MessageId::from_hex(&r.message_id),
        OfficeNumber::parse(&r.partner),
        hex::decode(&r.sha256),
    ) else {
        return Err(MarkError::NotReceived(
            crate::files::shown(file_name).into_owned(),
        ));
    };
    let hash: [u8; 32] = hash
        .try_into()
        .map_err(|_| MarkError::NotReceived(crate::files::shown(file_name).into_owned()))?;
    let mut book = lock(&shared.imported);
    if let Some(k) = book.made.get(&r.message_id) {
        return Ok(k.clone());
    }
    let at = shared.env.now_secs();
    let st = Imported::sign(id, sender, shared.office, hash, at, &shared.identity);
    let k = KeptImported {
        role: "made".into(),
        message_id: r.message_id.clone(),
        file_name: r.file_name.clone(),
        partner: r.partner.clone(),
        sha256: r.sha256.clone(),
        imported_at: at,
        statement: hex::encode(st.to_bytes()),
        reason: String::new(),
    };
    shared
        .env
        .faults
        .alive()
        .map_err(|e| MarkError::Io(e.into()))?;
    append(&shared.home, &k).map_err(MarkError::Io)?;
    book.add(k.clone());
    drop(book);
    shared.imported_now.notify_one();
    Ok(k)
}

/// Sends our statements until their senders keep them, every minute and when one is made —
/// through the sender's own mailbox too once the sender has been unreachable for
/// `mailbox_after_secs`; and marks files the care software moved to `inbox/imported/`.
pub(crate) async fn send_loop(shared: Arc<Shared>) {
    let stop = shared.shutdown.clone();
    let mut seen_moved: HashSet<String> = HashSet::new();
    // Unix ms (the node's clock) of the last round of sending.
    let mut last_send = None::<u64>;
    // Statements sent at least once: a new one goes at once, the others every minute.
    let mut tried: HashSet<String> = HashSet::new();
    // Senders not reached since (Unix ms), from the first failure without a success between.
    let mut unreachable_since: HashMap<String, u64> = HashMap::new();
    loop {
        // Files moved to inbox/imported/ by the care software or a person.
        let moved = moved_to_imported(&shared.home);
        for name in moved {
            if seen_moved.contains(&name) {
                continue;
            }
            let s = shared.clone();
            let n = name.clone();
            match crate::env::file_work(move || mark(&s, &n)).await {
                Ok(Ok(_)) | Ok(Err(MarkError::NotReceived(_))) => {
                    seen_moved.insert(name);
                }
                Ok(Err(e)) => shared.error(e.to_string()),
                Err(e) => tracing::warn!("imported: {e}"),
            }
        }
        // Every minute, or sooner when deliveries are retried sooner (a federation on one
        // machine).
        let resend_ms = shared.config.retry_max_secs.clamp(1, 60) * 1000;
        let started = shared.env.now_ms();
        let due = last_send.is_none_or(|t| started.saturating_sub(t) >= resend_ms);
        let pending = lock(&shared.imported).pending();
        if due || pending.iter().any(|k| !tried.contains(&k.message_id)) {
            // Statements for senders not reached this round, by sender.
            let mut missed: BTreeMap<String, Vec<KeptImported>> = BTreeMap::new();
            for k in pending {
                tried.insert(k.message_id.clone());
                let result = send_one(&shared, &k).await;
                if result.is_ok() {
                    unreachable_since.remove(&k.partner);
                }
                match result {
                    Ok(None) => {
                        shared.resolved(&format!("imported:{}", k.partner));
                        let line = KeptImported {
                            role: "delivered".into(),
                            statement: String::new(),
                            ..k.clone()
                        };
                        if append(&shared.home, &line).is_ok() {
                            lock(&shared.imported).add(line);
                        }
                    }
                    Ok(Some(reason)) => {
                        shared.error(format!(
                            "{} の取込済み通知を送信元 {} が受け付けませんでした / the sender {} refused the imported statement of {}: {reason}",
                            crate::files::shown(&k.file_name),
                            k.partner,
                            k.partner,
                            crate::files::shown(&k.file_name)
                        ));
                        let line = KeptImported {
                            role: "refused".into(),
                            statement: String::new(),
                            reason,
                            ..k.clone()
                        };
                        if append(&shared.home, &line).is_ok() {
                            lock(&shared.imported).add(line);
                        }
                    }
                    Err(e) => {
                        unreachable_since
                            .entry(k.partner.clone())
                            .or_insert(started);
                        tracing::debug!(partner = %k.partner, "imported statement not sent directly: {e:#}");
                        missed.entry(k.partner.clone()).or_default().push(k);
                    }
                }
            }
            let now = shared.env.now_ms();
            for (partner, statements) in missed {
                let overdue = unreachable_since.get(&partner).is_some_and(|since| {
                    now.saturating_sub(*since) / 1000 >= shared.config.mailbox_after_secs
                });
                let unposted: Vec<KeptImported> = {
                    let book = lock(&shared.imported);
                    statements
                        .iter()
                        .filter(|k| !book.posted.contains(&k.message_id))
                        .cloned()
                        .collect()
                };
                if overdue && !unposted.is_empty() {
                    post(&shared, &partner, &unposted).await;
                }
                let all_posted = {
                    let book = lock(&shared.imported);
                    statements
                        .iter()
                        .all(|k| book.posted.contains(&k.message_id))
                };
                if all_posted {
                    // Waiting in the sender's own mailbox: nothing for the office to do.
                    shared.resolved(&format!("imported:{partner}"));
                } else {
                    shared.error_about(
                        Some(format!("imported:{partner}")),
                        format!(
                            "送信元 {partner} に取込済みの通知を届けられません。自動で再送します / cannot reach the sender {partner} with the imported statement; renkei sends it again by itself"
                        ),
                    );
                }
            }
            last_send = Some(started);
        }
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            _ = shared.imported_now.notified() => {}
            _ = shared.env.sleep(Duration::from_secs(shared.config.rescan_secs.max(1))) => {}
        }
    }
}

/// Leaves statements for an unreachable sender in the sender's own mailbox (the first of its
/// mailboxes that takes them, SPEC.md §7.6.1 `post_imported`) and notes each `posted`. They are
/// still offered directly until the sender says it kept them.
async fn post(shared: &Arc<Shared>, partner: &str, statements: &[KeptImported]) {
    let Some(sender) = OfficeNumber::parse(partner) else {
        return;
    };
    let blobs: Vec<Vec<u8>> = statements
        .iter()
        .filter_map(|k| hex::decode(&k.statement).ok())
        .collect();
    let req = crate::mailbox::MailboxRequest::PostImported {
        to: sender.to_string(),
    };
    for node in crate::mailbox::mailboxes_of(shared, &sender) {
        match crate::mailclient::post_to(shared, &node, &req, &blobs).await {
            Ok(()) => {
                tracing::info!(%sender, n = blobs.len(), "imported statements left in the sender's own mailbox");
                let mut book = lock(&shared.imported);
                for k in statements {
                    let line = KeptImported {
                        role: "posted".into(),
                        statement: String::new(),
                        ..k.clone()
                    };
                    if append(&shared.home, &line).is_ok() {
                        book.add(line);
                    }
                }
                return;
            }
            Err(e) => tracing::debug!(%sender, "imported statements not left in a mailbox: {e:#}"),
        }
    }
}

/// Regular files in `inbox/imported/`.
fn moved_to_imported(home: &Home) -> Vec<String> {
    std::fs::read_dir(home.imported_folder())
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect()
}

/// Sends one statement to its sender: `Ok(None)` once kept, `Ok(Some(reason))` when refused.
async fn send_one(shared: &Arc<Shared>, k: &KeptImported) -> anyhow::Result<Option<String>> {
    let partner = OfficeNumber::parse(&k.partner).ok_or_else(|| anyhow::anyhow!("office"))?;
    let statement = hex::decode(&k.statement)?;
    let now = shared.env.now_secs();
    let entry = shared
        .dir()
        .lookup(&partner)?
        .ok_or_else(|| anyhow::anyhow!("{partner} is not in the directory"))?;
    let mut keys: Vec<_> = entry.keys_at(now).cloned().collect();
    keys.sort_by_key(|k| std::cmp::Reverse(k.valid_from));
    let mut last = anyhow::anyhow!("{partner} has no usable identity key");
    for key in keys {
        let Some(peer) = peer_id_of(&key.identity) else {
            continue;
        };
        for a in &entry.addresses {
            if let Ok(ma) = a.parse() {
                shared.net.add_address(peer, ma).await;
            }
        }
        let mut stream = match shared.net.open(peer, IMPORTED, shared.timeout()).await {
            Ok(s) => s,
            Err(e) => {
                last = e.into();
                continue;
            }
        };
        frames::write(&mut stream, Kind::Imported, &statement).await?;
        stream.flush().await?;
        let mut buf = Vec::new();
        return match frames::read(
            &mut stream,
            &mut buf,
            shared.timeout(),
            &[Kind::End, Kind::Refuse],
        )
        .await?
        {
            Some(Kind::End) => Ok(None),
            Some(_) => Ok(Some(
                Refusal::parse(&buf)
                    .map(|r| crate::files::shown(&r.reason).into_owned())
                    .unwrap_or_else(|e| e.to_string()),
            )),
            None => Err(anyhow::anyhow!("the sender closed the stream")),
        };
    }
    Err(last)
}

/// Takes partners' statements about our files.
pub(crate) async fn accept_loop(shared: Arc<Shared>) {
    let Ok(mut incoming) = shared.net.control.clone().accept(IMPORTED) else {
        return;
    };
    let stop = shared.shutdown.clone();
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            next = incoming.next() => {
                let Some((peer, mut stream)) = next else { break };
                let s = shared.clone();
                shared.spawn(async move {
                    let mut buf = Vec::new();
                    let Ok(Some(_)) = frames::read(&mut stream, &mut buf, s.timeout(), &[Kind::Imported]).await else {
                        return;
                    };
                    let came = Came::Direct(key_of(&peer));
                    let s2 = s.clone();
                    let verdict = crate::env::file_work(move || take(&s2, came, &buf))
                        .await
                        .unwrap_or_else(|e| Err(NotKept::new(MessageId([0; 16]), &e.to_string())));
                    let _ = match verdict {
                        Ok(()) => frames::write(&mut stream, Kind::End, &[]).await,
                        Err(NotKept { id, why, .. }) => {
                            tracing::warn!("refused an imported statement: {why}");
                            let r = Refusal::new(id, RefusalCode::Other(100), &why);
                            frames::write(&mut stream, Kind::Refuse, &r.to_bytes()).await
                        }
                    };
                    let _ = stream.flush().await;
                    let _ = stream.close().await;
                });
            }
        }
    }
}

/// How a partner's statement came.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Came {
    /// On an imported stream from the peer with this identity key.
    Direct(Option<[u8; 32]>),
    /// Collected from this office's own mailbox, where the recipient left it.
    Mailbox,
}

/// Why a partner's statement was not kept.
#[derive(Debug)]
pub(crate) struct NotKept {
    /// The message it is about (zero when it does not parse).
    pub(crate) id: MessageId,
    /// Why, for the log and the refusal.
    pub(crate) why: String,
    /// It may be kept later: this node holds no `sent` receipt of the message yet, and the
    /// file is still queued for that office (its ack still to be collected).
    pub(crate) later: bool,
}

impl NotKept {
    fn new(id: MessageId, why: &str) -> NotKept {
        NotKept {
            id,
            why: why.to_string(),
            later: false,
        }
    }
}

/// Checks a partner's statement and keeps it (SPEC.md §8.2 step 3): one that came directly
/// must come from the recipient office's node; one from the mailbox has only its signature to
/// show who made it, checked the same way.
pub(crate) fn take(shared: &Arc<Shared>, came: Came, bytes: &[u8]) -> Result<(), NotKept> {
    let st =
        Imported::parse(bytes).map_err(|e| NotKept::new(MessageId([0; 16]), &e.to_string()))?;
    let id = st.message_id;
    let refuse = |why: &str| NotKept::new(id, why);
    if st.sender_office != shared.office {
        return Err(refuse("not our file (another sender office)"));
    }
    let now = shared.env.now_secs();
    let (peer_office, keys) = {
        let d = shared.dir();
        let peer_office = match came {
            Came::Direct(peer_key) => peer_key
                .and_then(|k| d.active_office_by_key(&k, now).ok().flatten())
                .map(|e| e.office),
            Came::Mailbox => Some(st.recipient_office),
        };
        let keys: Vec<[u8; 32]> = d
            .lookup(&st.recipient_office)
            .ok()
            .flatten()
            .map(|e| {
                e.keys
                    .iter()
                    .filter(|k| k.valid_at(st.imported_at))
                    .map(|k| k.identity)
                    .collect()
            })
            .unwrap_or_default();
        (peer_office, keys)
    };
    if peer_office != Some(st.recipient_office) {
        return Err(refuse(
            "the statement's recipient is not the connected office",
        ));
    }
    st.verify(&keys).map_err(|e| refuse(&e.to_string()))?;
    let receipts = read_log(&shared.home.receipts()).map_err(|e| refuse(&e.to_string()))?;
    let hex_id = id.to_hex();
    let Some(r) = receipts.iter().rev().find(|r| {
        r.direction == "sent"
            && r.message_id == hex_id
            && r.partner == st.recipient_office.as_str()
            && r.verdict == "accepted"
    }) else {
        // Later only for a file still queued for that office (its ack yet to be collected):
        // one about a message never sent there is forgotten at once, so a member cannot keep
        // the sender's mailbox full of statements about made-up messages.
        let queued = lock(&shared.queue)
            .items
            .values()
            .any(|i| i.id() == id && i.recipient == st.recipient_office.as_str());
        return Err(NotKept {
            later: queued,
            ..refuse("no accepted sent receipt of this message here")
        });
    };
    if r.sha256 != hex::encode(st.plaintext_hash) {
        return Err(refuse("the hash is not the one acknowledged"));
    }
    let mut book = lock(&shared.imported);
    if book.received.contains_key(&hex_id) {
        return Ok(());
    }
    let k = KeptImported {
        role: "received".into(),
        message_id: hex_id,
        file_name: r.file_name.clone(),
        partner: r.partner.clone(),
        sha256: r.sha256.clone(),
        imported_at: st.imported_at,
        statement: hex::encode(bytes),
        reason: String::new(),
    };
    shared
        .env
        .faults
        .alive()
        .map_err(|e| refuse(&e.to_string()))?;
    append(&shared.home, &k).map_err(|e| refuse(&format!("{e:#}")))?;
    tracing::info!(file = %crate::files::shown(&k.file_name), partner = %k.partner, "the partner imported our file");
    book.add(k);
    Ok(())
}

/// Verifies a kept statement's signature: ours by our own key files (`own_keys`), a partner's
/// by the identity keys its directory entry lists (`partner_keys`, valid at its time).
pub fn check_kept(k: &KeptImported, keys: &[[u8; 32]]) -> Result<Imported, String> {
    let bytes = hex::decode(&k.statement).map_err(|e| format!("not hex: {e}"))?;
    let st = Imported::parse(&bytes).map_err(|e| e.to_string())?;
    if st.message_id.to_hex() != k.message_id
        || hex::encode(st.plaintext_hash) != k.sha256
        || st.imported_at != k.imported_at
    {
        return Err("the line says other than its signed statement".into());
    }
    st.verify(keys).map_err(|e| e.to_string())?;
    Ok(st)
}
