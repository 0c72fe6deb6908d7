//! An office's side of the association mailboxes (SPEC.md §7.6): it drains its own mail from
//! its region's mailboxes, and collects what became of the files it left in partners'
//! mailboxes — their acks, refusals or expiry, each with the mailbox's signed deletion
//! statement, which it keeps beside its receipts — and the imported statements recipients
//! left for it in its own mailboxes (SPEC.md §8.2).

use std::collections::BTreeSet;
use std::sync::Arc;

use anyhow::{Context, anyhow};
use futures::AsyncWriteExt;
use renkei_protocol::ErrorCode;
use renkei_protocol::ack::Ack;
use renkei_protocol::envelope::MessageId;
use renkei_protocol::frames::{Disposition, RefusalCode};
use renkei_protocol::statement::{Reason, Statement};

use crate::files::shown;
use crate::frames::{self, Kind};
use crate::mailbox::{MailboxRequest, Outcome, mailboxes_of};
use crate::net::peer_id_of;
use crate::send::open_mailbox;
use crate::state::{Shared, lock};

/// How long after its last deposit a mailbox is still asked for outcomes: a mailbox's
/// default time limit and a day.
const OUTCOMES_FOR_MS: u64 = 15 * 86_400_000;

/// Outcomes taken from one mailbox in one look.
const MAX_OUTCOMES: usize = 10_000;

/// Drains of one mailbox in one look: a drain stops at an envelope the office refuses for
/// now, which the mailbox then puts last, so the next drain goes past it.
const DRAINS_PER_LOOK: usize = 3;

/// Every how many looks an office drains its own box and asks its own mailboxes for outcomes
/// unasked (SPEC.md §7.6.2).
const OWN_LOOK_EVERY: u32 = 6;

/// Looks at the mailboxes at start, every `mailbox_poll_secs`, and when asked.
pub(crate) async fn mail_loop(shared: Arc<Shared>) {
    let stop = shared.shutdown.clone();
    // A directory node's "mail arrived" makes the next look now.
    if let Ok(mut incoming) = shared.net.control.clone().accept(crate::net::MAIL_NOTIFY) {
        let s = shared.clone();
        shared.spawn(async move {
            use futures::StreamExt;
            while let Some((peer, _stream)) = incoming.next().await {
                let from_node =
                    crate::net::key_of(&peer).is_some_and(|k| s.dir().is_directory_node(&k));
                if from_node {
                    s.mail_now.notify_one();
                }
            }
        });
    }
    // This office's own mailboxes hold mail for it only when a sender deposited some, and
    // outcomes only when a recipient handed some in; the mailbox then tells it. So its own
    // box is drained, and its own mailboxes asked for outcomes, at start, after such a word,
    // and every `OWN_LOOK_EVERY` looks in case the word was lost (it is sent once, to a node
    // reachable at that moment) — not at every look: four requests fewer per mailbox for
    // every office, most of the time for nothing (a 1,000-office lab run: 128 → 94 s).
    let mut own_in = 0;
    loop {
        if shared.stopping() {
            break;
        }
        if own_in == 0 {
            drain(&shared).await;
        }
        collect(&shared, own_in == 0).await;
        own_in = if own_in == 0 {
            OWN_LOOK_EVERY - 1
        } else {
            own_in - 1
        };
        // Spread by up to a tenth: offices started together do not all ask at one moment.
        let every = shared.config.mailbox_poll_secs.max(1).saturating_mul(1000);
        // Drawn for this moment, not the next of a sequence: a look a notification brought
        // early does not move the looks after it (a seeded lab run repeats).
        let now = shared.env.now_ms();
        let next = now
            .saturating_add(every)
            .saturating_add(shared.env.random_below_at("mailbox looks", now, every / 10));
        tokio::select! {
            biased;
            _ = shared.mail_now.notified() => own_in = 0,
            _ = shared.env.clock.sleep_until(next) => {}
            _ = stop.cancelled() => {}
        }
    }
}

/// Takes this office's mail from each of its region's mailboxes, as if the senders delivered
/// it: checked, written into the inbox exactly once, and acknowledged to the mailbox, which
/// then deletes it.
async fn drain(shared: &Arc<Shared>) {
    for node in mailboxes_of(shared, &shared.office) {
        let Some(peer) = peer_id_of(&node.key) else {
            continue;
        };
        // Again while it brings files (the first drain may have stopped at once, at an
        // envelope refused for now, which the mailbox then puts last).
        for round in 0..DRAINS_PER_LOOK {
            let before = lock(&shared.stats).received;
            if !drain_once(shared, &node, peer).await
                || (round > 0 && lock(&shared.stats).received == before)
            {
                break;
            }
        }
    }
}

/// One drain of one mailbox; whether it ran to its end.
async fn drain_once(
    shared: &Arc<Shared>,
    node: &renkei_directory::NodeInfo,
    peer: libp2p::PeerId,
) -> bool {
    let s = match open_mailbox(shared, node, shared.timeout()).await {
        Ok(mut s) => {
            let req = serde_json::to_vec(&MailboxRequest::Drain).unwrap_or_default();
            if frames::write(&mut s, Kind::Request, &req).await.is_err() {
                return false;
            }
            s
        }
        Err(e) => {
            tracing::debug!(%peer, "mailbox unreachable: {e}");
            return false;
        }
    };
    match crate::receive::handle(shared, peer, s, true).await {
        Ok(acks) => {
            shared.resolved("mailbox");
            post_acks(shared, node.key, acks).await;
            true
        }
        Err(e) => {
            shared.error_about(
                Some("mailbox".into()),
                format!(
                    "協会のメールボックスからの受け取りが途中で止まりました。自動で再試行します / taking this office's files from the association's mailbox stopped; it is tried again by itself: {}",
                    shown(&format!("{e:#}"))
                ),
            );
            false
        }
    }
}

/// Hands the acks of one drain of mailbox `drained` to each sender's own mailbox, when that
/// is another node (SPEC.md §7.6.2): a sender that is off then finds them where it looks
/// anyway, even if the mailbox that held its files is out of its reach. Best effort — the
/// drained mailbox keeps every outcome with its statement too, and a sender retrying directly
/// gets the stored ack — so a failure is logged, not retried.
async fn post_acks(shared: &Arc<Shared>, drained: [u8; 32], acks: Vec<Vec<u8>>) {
    let mut by_sender: std::collections::BTreeMap<renkei_protocol::OfficeNumber, Vec<Vec<u8>>> =
        Default::default();
    for a in acks {
        if let Ok(ack) = Ack::parse(&a) {
            by_sender.entry(ack.sender_office).or_default().push(a);
        }
    }
    for (sender, acks) in by_sender {
        let boxes = mailboxes_of(shared, &sender);
        if boxes.iter().any(|n| n.key == drained) {
            continue;
        }
        let req = MailboxRequest::PostAcks {
            to: sender.to_string(),
        };
        for node in boxes {
            match post_to(shared, &node, &req, &acks).await {
                Ok(()) => {
                    tracing::info!(%sender, n = acks.len(), "acks left in the sender's own mailbox");
                    break;
                }
                Err(e) => tracing::debug!(%sender, "acks not left in a mailbox: {e:#}"),
            }
        }
    }
}

/// Hands signed blobs (acks or imported statements, as `req` says) to a mailbox; whether it
/// kept them all durably.
pub(crate) async fn post_to(
    shared: &Arc<Shared>,
    node: &renkei_directory::NodeInfo,
    req: &MailboxRequest,
    blobs: &[Vec<u8>],
) -> anyhow::Result<()> {
    let timeout = shared.timeout();
    let mut s = open_mailbox(shared, node, timeout).await?;
    frames::write(&mut s, Kind::Request, &serde_json::to_vec(req)?).await?;
    for a in blobs {
        frames::write(&mut s, Kind::Blob, a).await?;
    }
    frames::write(&mut s, Kind::End, &[]).await?;
    s.flush().await?;
    let mut frame = Vec::new();
    let answer = frames::read(&mut s, &mut frame, timeout, &[Kind::End, Kind::Refuse]).await?;
    let _ = s.close().await;
    anyhow::ensure!(answer == Some(Kind::End), "the mailbox did not keep them");
    Ok(())
}

/// Collects the outcomes of this office's deposits from the mailboxes that keep them.
async fn collect(shared: &Arc<Shared>, own: bool) {
    // Where our files wait, and where outcomes may wait for us (after a direct answer, say).
    let mut keys: BTreeSet<String> = lock(&shared.queue)
        .items
        .values()
        .filter(|i| i.deposited_ms != 0)
        .map(|i| i.mailbox.clone())
        .collect();
    keys.extend(lock(&shared.mail).outcomes_at.keys().cloned());
    // And this office's own mailboxes, where recipients leave acks and imported statements
    // for it.
    if own {
        keys.extend(
            mailboxes_of(shared, &shared.office)
                .iter()
                .map(|n| hex::encode(n.key)),
        );
    }
    if keys.is_empty() {
        return;
    }
    let nodes: Vec<renkei_directory::NodeInfo> = shared
        .dir()
        .directory_nodes()
        .into_iter()
        .filter(|n| keys.contains(&hex::encode(n.key)))
        .cloned()
        .collect();
    for node in nodes {
        match collect_from(shared, &node).await {
            // Nothing more to collect there once none of our files waits in it and its
            // envelopes' time limit has passed since our last deposit.
            Ok(0) => {
                let key = hex::encode(node.key);
                let waiting = lock(&shared.queue)
                    .items
                    .values()
                    .any(|i| i.deposited_ms != 0 && i.mailbox == key);
                let now = shared.env.now_ms();
                let mut mail = lock(&shared.mail);
                let old = mail
                    .outcomes_at
                    .get(&key)
                    .is_none_or(|at| now.saturating_sub(*at) > OUTCOMES_FOR_MS);
                if !waiting && old {
                    mail.outcomes_at.remove(&key);
                }
            }
            Ok(_) => {}
            Err(e) => tracing::debug!("mailbox outcomes: {e:#}"),
        }
    }
}

/// Collects and takes the outcomes one mailbox holds for us; returns how many it held.
async fn collect_from(
    shared: &Arc<Shared>,
    node: &renkei_directory::NodeInfo,
) -> anyhow::Result<usize> {
    let timeout = shared.timeout();
    let mut s = open_mailbox(shared, node, timeout).await?;
    frames::write(
        &mut s,
        Kind::Request,
        &serde_json::to_vec(&MailboxRequest::Outcomes)?,
    )
    .await?;
    s.flush().await?;
    let mut frame = Vec::new();
    let mut outcomes = Vec::new();
    while let Some(Kind::Blob) =
        frames::read(&mut s, &mut frame, timeout, &[Kind::Blob, Kind::End]).await?
    {
        // Bounded: a mailbox cannot make this node hold more than this at once; the rest
        // waits for the next look. One that does not parse is skipped, not fatal.
        anyhow::ensure!(
            frame.len() <= crate::mailbox::MAX_OUTCOME,
            "an outcome of {} bytes",
            frame.len()
        );
        if outcomes.len() >= MAX_OUTCOMES {
            continue;
        }
        match serde_json::from_slice::<Outcome>(&frame) {
            Ok(o) => outcomes.push(o),
            Err(e) => tracing::warn!("a mailbox outcome that does not parse: {e}"),
        }
    }
    let n = outcomes.len();
    if n == 0 {
        return Ok(0);
    }
    // Imported statements last: one about a file whose ack is among these outcomes needs
    // that ack's `sent` receipt.
    outcomes.sort_by_key(|o| o.imported.is_some());
    let s2 = shared.clone();
    let key = node.key;
    let (kept, imported) = crate::env::file_work(move || {
        let (mut kept, mut imported) = (Vec::new(), Vec::new());
        for o in outcomes {
            if let Some(st) = &o.imported {
                if take_imported(&s2, &o.message_id, st) {
                    imported.push(o.message_id);
                }
                continue;
            }
            match settle(&s2, &o, key) {
                Ok(()) => kept.push(o.message_id),
                Err(e) => {
                    tracing::warn!(id = %o.message_id, "mailbox outcome not taken: {e:#}")
                }
            }
        }
        (kept, imported)
    })
    .await?;
    frames::write(
        &mut s,
        Kind::Request,
        &serde_json::to_vec(&MailboxRequest::Forget {
            ids: kept,
            imported,
        })?,
    )
    .await?;
    s.flush().await?;
    let _ = s.close().await;
    shared.wake.notify_one();
    Ok(n)
}

/// Takes a recipient's imported statement left in this office's own mailbox, checked exactly
/// as one that came directly (SPEC.md §8.2 step 3, without a connection to compare); whether
/// the mailbox may forget it — kept, or refused for good. One about a file whose ack this node
/// has not committed yet waits in the mailbox for a later look.
fn take_imported(shared: &Arc<Shared>, id: &str, statement: &str) -> bool {
    let Ok(bytes) = hex::decode(statement) else {
        tracing::warn!(%id, "an imported statement in the mailbox that is not hex: dropped");
        return true;
    };
    match crate::imported::take(shared, crate::imported::Came::Mailbox, &bytes) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(%id, later = e.later, "an imported statement from the mailbox not kept: {}", e.why);
            !e.later
        }
    }
}

/// Takes one outcome: the deletion statement is verified and kept, then the file completes as
/// its answer says — delivered (ack verified as if it came directly), refused, or expired.
fn settle(shared: &Arc<Shared>, o: &Outcome, node_key: [u8; 32]) -> anyhow::Result<()> {
    let id = MessageId::from_hex(&o.message_id).context("message id")?;
    let Some(statement) = &o.statement else {
        return settle_posted_ack(shared, id, o);
    };
    let statement = Statement::parse(&hex::decode(statement)?)?;
    statement.verify(&[node_key])?;
    anyhow::ensure!(
        statement.message_id == id && statement.sender_office == shared.office,
        "the statement is about another message"
    );
    crate::receipts::keep_statement(&shared.home, &statement)?;
    let found = queued_message(shared, id);
    // Delivered directly meanwhile (or completed before a crash): only the statement is new.
    let Some((seq, item)) = found else {
        return Ok(());
    };
    anyhow::ensure!(
        item.recipient == statement.recipient_office.as_str(),
        "the statement names another recipient"
    );
    let partner = statement.recipient_office;
    match statement.reason {
        Reason::Acked => take_ack(shared, id, o, partner, seq, item)?,
        Reason::Refused => {
            let code = RefusalCode::from_u16(o.refusal_code.unwrap_or(0));
            if code.disposition() == Disposition::Permanent {
                crate::send::fail_item(
                    shared,
                    seq,
                    &item,
                    vec![renkei_protocol::finding(ErrorCode::PartnerRefused, 0, 0)],
                    "相手先が拒否しました / The partner refused it",
                );
            } else {
                // Refused for now, too often (a key the partner no longer holds, say): sealed
                // again and deposited again, or delivered directly.
                crate::send::undeposit(shared, seq)?;
            }
        }
        Reason::Expired => {
            let title = if o.fetched {
                "メールボックスで期限切れ（相手先が受け取った可能性があります。送り直す前に相手先に確認してください） / Expired in the mailbox (the partner may have received it: ask them before sending it again)"
            } else {
                "メールボックスで期限切れ / Expired in the mailbox"
            };
            crate::send::fail_item(
                shared,
                seq,
                &item,
                vec![renkei_protocol::finding(ErrorCode::MailboxExpired, 0, 0)],
                title,
            );
            shared.error_about(
                Some(format!("file:{}", item.file_name)),
                format!(
                    "{} は相手先 {partner} に届かないままメールボックスの保管期限が過ぎ、rejected フォルダに移しました。相手先に連絡してください / {} was not taken by {partner} before the mailbox's time limit: it is in rejected/ — contact the partner",
                    shown(&item.file_name),
                    shown(&item.file_name)
                ),
            );
        }
    }
    Ok(())
}

/// An ack from an outcome, verified exactly as one that came directly (§5.3), committed.
fn take_ack(
    shared: &Arc<Shared>,
    id: MessageId,
    o: &Outcome,
    partner: renkei_protocol::OfficeNumber,
    seq: u64,
    item: crate::store::QueueItem,
) -> anyhow::Result<()> {
    let ack = Ack::parse(&hex::decode(o.ack.as_deref().context("no ack")?)?)
        .map_err(|e| anyhow!("ack: {e}"))?;
    let keys = shared
        .dir()
        .lookup(&partner)?
        .map(|e| e.identity_keys_at(ack.received_at))
        .unwrap_or_default();
    ack.verify(&id, &item.hash(), &keys)
        .map_err(|e| anyhow!("ack: {e}"))?;
    anyhow::ensure!(
        ack.sender_office == shared.office && ack.recipient_office == partner,
        "the ack names other offices"
    );
    crate::send::commit_outcome(shared, partner, seq, item, ack)?;
    shared.resolved(&format!("delivery:{partner}"));
    Ok(())
}

/// An ack a recipient left in this office's own mailbox (no statement: that mailbox held no
/// envelope). The file completes; the mailbox that held its envelope is still asked for its
/// deletion statement for as long as after any deposit.
fn settle_posted_ack(shared: &Arc<Shared>, id: MessageId, o: &Outcome) -> anyhow::Result<()> {
    let found = queued_message(shared, id);
    let Some((seq, item)) = found else {
        return Ok(());
    };
    let partner = renkei_protocol::OfficeNumber::parse(&o.recipient).context("recipient")?;
    anyhow::ensure!(
        item.recipient == partner.as_str(),
        "the ack is from another recipient"
    );
    if item.deposited_ms != 0 {
        lock(&shared.mail)
            .outcomes_at
            .entry(item.mailbox.clone())
            .or_insert(item.deposited_ms);
    }
    take_ack(shared, id, o, partner, seq, item)
}

/// The queued file with message `id`, if it is still queued.
fn queued_message(shared: &Shared, id: MessageId) -> Option<(u64, crate::store::QueueItem)> {
    lock(&shared.queue)
        .items
        .iter()
        .find(|(_, i)| i.id() == id)
        .map(|(s, i)| (*s, i.clone()))
}
