//! Association mailboxes (SPEC.md §7.6), on an in-memory federation and a test clock: offices
//! that are off get their files through their region's mailbox, which holds only ciphertext,
//! drops it once acknowledged (or expired) with a signed deletion statement, and serves each
//! office only its own mail.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use renkei_node::demo::{CARE_MANAGER, drop_into_outbox};
use renkei_node::env::{Clock, FaultPoint, ManualClock};
use renkei_node::federation::{
    Federation, RunningFederation, StartOptions, Transport, drive_until,
};
use renkei_node::frames::{self, Kind};
use renkei_node::mailbox::MailboxConfig;
use renkei_node::net::{self, MAILBOX};
use renkei_node::receipts::{KeptStatement, read_log};
use renkei_node::samples::SAMPLES;
use renkei_protocol::statement::{Reason, Statement};

const SERVICE: &str = "1310000011";
const THIRD: &str = "1310000021";

/// The plans the care-management office sends the first service office.
fn plans() -> Vec<(&'static str, &'static [u8])> {
    SAMPLES
        .iter()
        .filter(|(n, _)| n.contains(&format!("_{CARE_MANAGER}_43_{SERVICE}_11_")))
        .copied()
        .collect()
}

/// The care-management office (0) and the service office (1), with its node off, in memory on
/// a test clock; mailboxes are used after 5 s of unreachability.
async fn federation(dir: &Path) -> (RunningFederation, ManualClock) {
    federation_with(dir, None, false, 5).await
}

/// [`federation`] with the mailboxes' limits, and a third office (2, 通所介護, running).
async fn federation_with(
    dir: &Path,
    mailbox: Option<MailboxConfig>,
    third: bool,
    poll_secs: u64,
) -> (RunningFederation, ManualClock) {
    let mut b = Federation::builder(dir)
        .transport(Transport::Memory)
        .office(CARE_MANAGER, "ひかり居宅介護支援事業所", &["43"])
        .office(SERVICE, "さくら訪問介護ステーション", &["11"]);
    if third {
        b = b.office(THIRD, "あおぞらデイサービス", &["15"]);
    }
    let plan = b
        .tune(move |c| {
            c.mailbox_after_secs = 5;
            c.mailbox_poll_secs = poll_secs;
            c.retry_initial_ms = 500;
            c.retry_max_secs = 10;
        })
        .create()
        .unwrap();
    let (fed, clock) = plan
        .start_on_test_clock(
            9,
            StartOptions {
                off: vec![1],
                mailbox,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let n = fed.plan.offices.len();
    let held = drive(&clock, || fed.node(0).directory_entries() == n).await;
    assert!(held, "the care-management office holds the directory");
    (fed, clock)
}

async fn drive(clock: &ManualClock, f: impl FnMut() -> bool) -> bool {
    drive_until(
        clock,
        Duration::from_millis(250),
        Duration::from_secs(60),
        f,
    )
    .await
}

/// The regular files under a folder, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else if p.is_file() {
                out.push(p);
            }
        }
    }
    out
}

fn mailbox_dir(fed: &RunningFederation) -> PathBuf {
    fed.plan.directory_nodes[0].data.join("mailbox")
}

/// Envelopes the mailbox keeps for `office`.
fn kept_for(fed: &RunningFederation, office: &str) -> usize {
    files_under(&mailbox_dir(fed).join("box").join(office))
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "env"))
        .count()
}

fn inbox(fed: &RunningFederation, i: usize) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(fed.plan.home(i).inbox())
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_file())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_office_off_for_the_whole_send_gets_every_file_once_from_its_mailbox() {
    let dir = tempfile::tempdir().unwrap();
    let (mut fed, clock) = federation(dir.path()).await;
    let files = plans();
    assert!(files.len() >= 5);
    for (name, bytes) in &files {
        drop_into_outbox(fed.plan.home(0), name, bytes).unwrap();
    }
    // The service office stays off: after 5 s the files go to its mailbox, sealed.
    let deposited = drive(&clock, || kept_for(&fed, SERVICE) == files.len()).await;
    assert!(
        deposited,
        "kept {} of {}",
        kept_for(&fed, SERVICE),
        files.len()
    );
    // What the mailbox holds is ciphertext: no plaintext line of any file is in its folder.
    for p in files_under(&mailbox_dir(&fed)) {
        let held = std::fs::read(&p).unwrap();
        for (name, bytes) in &files {
            let line = &bytes[..bytes.len().min(40)];
            assert!(
                !held.windows(line.len()).any(|w| w == line),
                "{} holds plaintext of {name}",
                p.display()
            );
        }
    }
    // The sender goes off before the recipient starts.
    fed.stop_node(0).await;
    fed.start_node(1).await.unwrap();
    let drained = drive(&clock, || {
        inbox(&fed, 1).len() == files.len() && kept_for(&fed, SERVICE) == 0
    })
    .await;
    assert!(drained, "inbox {:?}", inbox(&fed, 1).keys());
    let got = inbox(&fed, 1);
    for (name, bytes) in &files {
        assert_eq!(got.get(*name).map(Vec::as_slice), Some(*bytes), "{name}");
    }
    // The sender comes back: it collects every ack, moves its files to sent/, and keeps the
    // mailbox's deletion statements.
    fed.start_node(0).await.unwrap();
    let done = drive(&clock, || {
        fed.node(0).queued() == 0
            && read_log(&fed.plan.home(0).receipts()).is_ok_and(|r| r.len() == files.len())
    })
    .await;
    assert!(
        done,
        "queued {}, receipts {:?}",
        fed.node(0).queued(),
        read_log(&fed.plan.home(0).receipts()).map(|r| r.len())
    );
    let sent = read_log(&fed.plan.home(0).receipts()).unwrap();
    let received = read_log(&fed.plan.home(1).receipts()).unwrap();
    assert_eq!(received.len(), files.len(), "one received receipt per file");
    for (name, _) in &files {
        assert_eq!(sent.iter().filter(|r| r.file_name == *name).count(), 1);
        assert!(fed.plan.home(0).sent().join(name).exists(), "{name}");
    }
    let node_key = fed.directory_nodes[0].net.peer_id;
    let node_key = renkei_node::net::key_of(&node_key).unwrap();
    let kept = || -> Vec<KeptStatement> {
        std::fs::read_to_string(fed.plan.home(0).statements())
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    // The statements come with the outcomes, which the sender may collect after its acks.
    let all = drive(&clock, || kept().len() == files.len()).await;
    assert!(all, "{} statements", kept().len());
    let statements = kept();
    for k in &statements {
        let s = Statement::parse(&hex::decode(&k.statement).unwrap()).unwrap();
        s.verify(&[node_key]).unwrap();
        assert_eq!(s.reason, Reason::Acked);
        assert!(sent.iter().any(|r| r.message_id == s.message_id.to_hex()));
    }
    // `renkei receipts` verifies the statements against the directory nodes it lists; a
    // statement edited afterwards fails.
    let home = fed.plan.home(0);
    let audit = renkei_node::receipts::audit(home).unwrap();
    assert_eq!(audit.statements.len(), files.len());
    assert!(
        audit.statements.iter().all(|(_, why)| why.is_none()),
        "{:?}",
        audit.statements
    );
    assert_eq!(audit.exit_code(), 0);
    let text = std::fs::read_to_string(home.statements()).unwrap();
    std::fs::write(
        home.statements(),
        text.replacen("\"acked\"", "\"expired\"", 1),
    )
    .unwrap();
    let audit = renkei_node::receipts::audit(home).unwrap();
    assert_eq!(
        audit.statements.iter().filter(|(_, w)| w.is_some()).count(),
        1
    );
    assert_eq!(audit.exit_code(), 1);
    std::fs::write(home.statements(), text).unwrap();
    // Nothing is left at the mailbox once the sender has taken its outcomes: no envelope, no
    // part of one, no outcome.
    let left = || files_under(&mailbox_dir(&fed));
    let empty = drive(&clock, || left().is_empty()).await;
    assert!(empty, "{:?}", left());
    fed.shutdown().await;
}

/// Drops the plans into the care-management office's outbox and waits until `n` of them are
/// kept in the service office's mailbox.
async fn deposit(
    fed: &RunningFederation,
    clock: &ManualClock,
    n: usize,
) -> Vec<(&'static str, &'static [u8])> {
    let files = plans();
    for (name, bytes) in &files {
        drop_into_outbox(fed.plan.home(0), name, bytes).unwrap();
    }
    let kept = drive(clock, || kept_for(fed, SERVICE) == n).await;
    assert!(kept, "kept {} of {n}", kept_for(fed, SERVICE));
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mailbox_restarted_with_envelopes_in_it_loses_none() {
    let dir = tempfile::tempdir().unwrap();
    let (mut fed, clock) = federation(dir.path()).await;
    let files = deposit(&fed, &clock, plans().len()).await;
    // Stopped at once, as a killed process would be, and started from its folder.
    fed.restart_directory_node(0).await.unwrap();
    assert_eq!(kept_for(&fed, SERVICE), files.len());
    start_and_take_everything_once(&mut fed, &clock, &files).await;
    fed.shutdown().await;
}

/// A mailbox tells an office that mail came once, when it keeps it. An office that never got
/// that word still drains its box on one of its next looks (every sixth look at the latest,
/// SPEC.md §7.6.2). Here the word went out while the office was off, and when it started again
/// its mailbox node was down, so its drain at start failed; the node comes back without a word
/// (and with no news in the directory, which would also make the office look).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_office_that_missed_the_word_still_drains_its_box_within_six_looks() {
    let dir = tempfile::tempdir().unwrap();
    let (mut fed, clock) = federation(dir.path()).await;
    // The service office has run once: it holds the directory.
    fed.start_node(1).await.unwrap();
    let n = fed.plan.offices.len();
    assert!(drive(&clock, || fed.node(1).directory_entries() == n).await);
    fed.stop_node(1).await;
    let files = deposit(&fed, &clock, plans().len()).await;
    // The sender goes off: the files can only come from the mailbox.
    fed.stop_node(0).await;
    fed.stop_directory_node(0).await;
    fed.start_node(1).await.unwrap();
    clock.advance(Duration::from_secs(2));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(inbox(&fed, 1).is_empty());
    fed.start_directory_node(0).await.unwrap();
    let back = clock.now_ms();
    let drained = drive(&clock, || inbox(&fed, 1).len() == files.len()).await;
    assert!(
        drained,
        "inbox {:?} after {} s",
        inbox(&fed, 1).keys(),
        (clock.now_ms() - back) / 1000
    );
    // Looks every 5 s (plus up to a tenth); the directory first, after its retry backoff.
    let took = (clock.now_ms() - back) / 1000;
    assert!(took <= 50, "{took} s");
    fed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_not_taken_before_the_time_limit_is_reported_to_its_sender_with_a_statement() {
    let dir = tempfile::tempdir().unwrap();
    let ttl = MailboxConfig {
        ttl_secs: 3600,
        ..Default::default()
    };
    let (fed, clock) = federation_with(dir.path(), Some(ttl), false, 5).await;
    let files = deposit(&fed, &clock, plans().len()).await;
    // An hour passes with the service office off: every envelope is dropped, its sender told.
    clock.advance(Duration::from_secs(3600));
    let reported = drive(&clock, || {
        fed.node(0).queued() == 0 && kept_for(&fed, SERVICE) == 0
    })
    .await;
    assert!(
        reported,
        "queued {}, kept {}",
        fed.node(0).queued(),
        kept_for(&fed, SERVICE)
    );
    let cm = fed.plan.home(0);
    for (name, _) in &files {
        assert!(cm.rejected().join(name).exists(), "{name} in rejected/");
        let report =
            std::fs::read_to_string(cm.rejected().join(format!("{name}.error.txt"))).unwrap();
        assert!(report.contains("MAILBOX_EXPIRED"), "{report}");
        assert!(
            report.contains("保管期限") && report.contains("time limit"),
            "{report}"
        );
    }
    let statements = std::fs::read_to_string(cm.statements()).unwrap();
    let reasons: Vec<KeptStatement> = statements
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(reasons.len(), files.len());
    assert!(reasons.iter().all(|k| k.reason == "expired"));
    assert!(
        read_log(&cm.receipts()).unwrap().is_empty(),
        "nothing was delivered"
    );
    let status = fed.node(0).status().await;
    assert!(
        status.last_errors.iter().any(|e| e.contains("rejected/")),
        "{:?}",
        status.last_errors
    );
    fed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_members_use_a_mailbox_each_office_drains_only_its_own_and_quotas_hold() {
    let dir = tempfile::tempdir().unwrap();
    let quota = MailboxConfig {
        max_files: 2,
        ..Default::default()
    };
    let (mut fed, clock) = federation_with(dir.path(), Some(quota), true, 5).await;
    let files = deposit(&fed, &clock, 2).await;
    // More is refused while the box is full: it stays at its quota.
    drive_until(
        &clock,
        Duration::from_millis(250),
        Duration::from_secs(2),
        || false,
    )
    .await;
    assert_eq!(kept_for(&fed, SERVICE), 2, "the quota holds");
    assert_eq!(fed.node(0).queued(), files.len());

    let dn = &fed.plan.directory_nodes[0];
    let dn_peer: libp2p::PeerId = dn.multiaddr.rsplit('/').next().unwrap().parse().unwrap();
    let dn_addr: libp2p::Multiaddr = dn.addr.parse().unwrap();
    // The third office, a member, asks to drain: it gets its own (empty) box, never another's.
    let third = fed.plan.home(2).load_keys().unwrap()[0].identity.clone();
    let drained = ask_drain(&third, dn_peer, dn_addr.clone()).await;
    assert_eq!(drained, Ok(0), "the third office's own box is empty");
    assert_eq!(
        kept_for(&fed, SERVICE),
        2,
        "nothing of another office moved"
    );
    // A key that is no member's cannot even connect.
    let stranger = ed25519_dalek::SigningKey::from_bytes(&[42; 32]);
    assert!(ask_drain(&stranger, dn_peer, dn_addr).await.is_err());

    // The service office starts: everything arrives, exactly once, as the box empties.
    start_and_take_everything_once(&mut fed, &clock, &files).await;
    fed.shutdown().await;
}

/// A swarm of its own with `key` (kept alive by the returned `Net`) and a mailbox stream from
/// it to the directory node `dn` at `addr`.
async fn open_mailbox_as(
    key: &ed25519_dalek::SigningKey,
    dn: libp2p::PeerId,
    addr: libp2p::Multiaddr,
) -> Result<(net::Net, libp2p::Stream), String> {
    let listen: Vec<libp2p::Multiaddr> = vec!["/memory/0".parse().unwrap()];
    let net = net::start(
        key,
        &listen,
        Arc::new(|_: &libp2p::PeerId| true),
        &net::NetConfig::office().on(&listen),
    )
    .map_err(|e| e.to_string())?;
    net.add_address(dn, addr).await;
    let s = net
        .open(dn, MAILBOX, Duration::from_secs(5))
        .await
        .map_err(|e| e.to_string())?;
    Ok((net, s))
}

/// Connects with `key` to the directory node and asks for its mail: how many envelopes came,
/// or why it could not ask.
async fn ask_drain(
    key: &ed25519_dalek::SigningKey,
    dn: libp2p::PeerId,
    addr: libp2p::Multiaddr,
) -> Result<usize, String> {
    let (net, mut s) = open_mailbox_as(key, dn, addr).await?;
    frames::write(&mut s, Kind::Request, br#"{"op":"drain"}"#)
        .await
        .map_err(|e| e.to_string())?;
    let mut frame = Vec::new();
    let mut n = 0;
    loop {
        match frames::read(
            &mut s,
            &mut frame,
            Duration::from_secs(5),
            &[Kind::Header, Kind::Chunk, Kind::End, Kind::NotFound],
        )
        .await
        {
            Ok(Some(Kind::Header)) => n += 1,
            Ok(Some(Kind::Chunk)) => {}
            Ok(Some(Kind::NotFound)) => return Err(String::from_utf8_lossy(&frame).into()),
            Ok(_) => break,
            Err(e) => return Err(e.to_string()),
        }
    }
    net.shutdown().await;
    Ok(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_envelope_refused_for_now_does_not_hold_up_the_rest_of_the_box() {
    let dir = tempfile::tempdir().unwrap();
    // Offices look at their mailboxes only once an hour (and when they start).
    let (mut fed, clock) = federation_with(dir.path(), None, false, 3600).await;
    let files = deposit(&fed, &clock, plans().len()).await;
    fed.stop_node(0).await;
    // The service office refuses the first envelope of its first drain for now (busy).
    fed.start_node(1).await.unwrap();
    fed.node(1).env().faults.arm(FaultPoint::RefuseBusy, 0);
    // Well inside the hour: the rest of the box, and then the refused one, still arrive.
    let all = drive_until(
        &clock,
        Duration::from_millis(100),
        Duration::from_secs(30),
        || inbox(&fed, 1).len() == files.len(),
    )
    .await;
    assert!(all, "inbox {} of {}", inbox(&fed, 1).len(), files.len());
    let emptied = drive(&clock, || kept_for(&fed, SERVICE) == 0).await;
    assert!(emptied, "kept {}", kept_for(&fed, SERVICE));
    fed.shutdown().await;
}

/// The service office starts: every file arrives in its inbox, byte for byte, once, and the
/// sender holds one receipt per file.
async fn start_and_take_everything_once(
    fed: &mut RunningFederation,
    clock: &ManualClock,
    files: &[(&str, &[u8])],
) {
    fed.start_node(1).await.unwrap();
    let all = drive(clock, || {
        inbox(fed, 1).len() == files.len() && fed.node(0).queued() == 0
    })
    .await;
    assert!(
        all,
        "inbox {}, queued {}",
        inbox(fed, 1).len(),
        fed.node(0).queued()
    );
    for (name, bytes) in files {
        assert_eq!(inbox(fed, 1).get(*name).map(Vec::as_slice), Some(*bytes));
    }
    for i in [0, 1] {
        let n = read_log(&fed.plan.home(i).receipts()).unwrap().len();
        assert_eq!(n, files.len(), "office {i}: one receipt per file");
    }
}

/// The care-management office (0) and the service office (1, off) with two directory nodes,
/// both serving the region; `named` gives (office, node) mailbox names. The first office has
/// dropped its plans for the second.
async fn two_nodes_sending(
    dir: &Path,
    named: &[(usize, usize)],
    seed: u64,
) -> (
    RunningFederation,
    ManualClock,
    Vec<(&'static str, &'static [u8])>,
) {
    let plan = Federation::builder(dir)
        .transport(Transport::Memory)
        .directory_nodes(2)
        .office(CARE_MANAGER, "ひかり居宅介護支援事業所", &["43"])
        .office(SERVICE, "さくら訪問介護ステーション", &["11"])
        .tune(|c| {
            c.mailbox_after_secs = 5;
            c.mailbox_poll_secs = 5;
            c.retry_initial_ms = 500;
            c.retry_max_secs = 10;
        })
        .create()
        .unwrap();
    for &(office, node) in named {
        plan.set_mailboxes(office, &[node]).unwrap();
    }
    plan.mirror_files().unwrap();
    let (fed, clock) = plan
        .start_on_test_clock(
            seed,
            StartOptions {
                off: vec![1],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let held = drive(&clock, || fed.node(0).directory_entries() == 2).await;
    assert!(held, "the care-management office holds the directory");
    let files = plans();
    for (name, bytes) in &files {
        drop_into_outbox(fed.plan.home(0), name, bytes).unwrap();
    }
    (fed, clock, files)
}

/// Envelopes directory node `node`'s mailbox keeps for `office`.
fn kept_at(fed: &RunningFederation, node: usize, office: &str) -> usize {
    let folder = fed.plan.directory_nodes[node].data.join("mailbox");
    files_under(&folder.join("box").join(office))
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "env"))
        .count()
}

/// SPEC.md §6.3: an office whose entry names its mailbox node gets its mail there and only
/// there; the region's other directory node neither takes its envelopes (it refuses them: it
/// is not the office's mailbox) nor is asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_office_names_its_mailbox_node_and_its_mail_goes_there_only() {
    let dir = tempfile::tempdir().unwrap();
    // The service office names the second node; the region's files are format 2 from now on.
    let (mut fed, clock, files) = two_nodes_sending(dir.path(), &[(1, 1)], 11).await;
    let deposited = drive(&clock, || kept_at(&fed, 1, SERVICE) == files.len()).await;
    assert!(
        deposited,
        "node 1 keeps {}, node 0 keeps {}",
        kept_at(&fed, 1, SERVICE),
        kept_at(&fed, 0, SERVICE)
    );
    assert_eq!(kept_at(&fed, 0, SERVICE), 0, "the unnamed node took mail");
    fed.start_node(1).await.unwrap();
    let drained = drive(&clock, || {
        inbox(&fed, 1).len() == files.len() && kept_at(&fed, 1, SERVICE) == 0
    })
    .await;
    assert!(drained, "inbox {:?}", inbox(&fed, 1).keys());
    let acked = drive(&clock, || fed.node(0).queued() == 0).await;
    assert!(acked, "queued {}", fed.node(0).queued());
    assert_eq!(kept_at(&fed, 0, SERVICE), 0);
    fed.shutdown().await;
}

/// Outcomes directory node `node` keeps for sender `office`, and how many carry a statement.
fn outcomes_at(fed: &RunningFederation, node: usize, office: &str) -> (usize, usize) {
    let folder = fed.plan.directory_nodes[node]
        .data
        .join("mailbox")
        .join("out")
        .join(office);
    let all: Vec<serde_json::Value> = files_under(&folder)
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .filter_map(|p| serde_json::from_slice(&std::fs::read(p).ok()?).ok())
        .collect();
    let signed = all.iter().filter(|o| !o["statement"].is_null()).count();
    (all.len(), signed)
}

/// SPEC.md §7.6.2: the recipient hands its acks to the sender's own mailbox when the files
/// came from another; the sender, back after the recipient took them and with the recipient's
/// mailbox gone, still gets every ack there and moves its files to sent/ exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_reach_the_senders_own_mailbox_when_the_recipients_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    // Each office names a mailbox of its own: the sender node 0, the recipient node 1.
    let (mut fed, clock, files) = two_nodes_sending(dir.path(), &[(0, 0), (1, 1)], 12).await;
    let deposited = drive(&clock, || kept_at(&fed, 1, SERVICE) == files.len()).await;
    assert!(deposited, "node 1 keeps {}", kept_at(&fed, 1, SERVICE));
    fed.stop_node(0).await;
    fed.start_node(1).await.unwrap();
    // The recipient takes them from node 1 and leaves its acks at node 0 for the sender;
    // node 1 keeps its own outcomes (with statements) too.
    let handed = drive(&clock, || {
        inbox(&fed, 1).len() == files.len()
            && outcomes_at(&fed, 0, CARE_MANAGER) == (files.len(), 0)
            && outcomes_at(&fed, 1, CARE_MANAGER) == (files.len(), files.len())
    })
    .await;
    assert!(
        handed,
        "inbox {}, at node 0 {:?}, at node 1 {:?}",
        inbox(&fed, 1).len(),
        outcomes_at(&fed, 0, CARE_MANAGER),
        outcomes_at(&fed, 1, CARE_MANAGER)
    );
    // Node 1 goes away, and the recipient's node too: only node 0 can tell the sender.
    fed.stop_node(1).await;
    fed.stop_directory_node(1).await;
    fed.start_node(0).await.unwrap();
    let done = drive(&clock, || {
        fed.node(0).queued() == 0
            && read_log(&fed.plan.home(0).receipts()).is_ok_and(|r| r.len() == files.len())
    })
    .await;
    assert!(done, "queued {}", fed.node(0).queued());
    for (name, _) in &files {
        assert!(fed.plan.home(0).sent().join(name).exists(), "{name}");
    }
    let collected = drive(&clock, || outcomes_at(&fed, 0, CARE_MANAGER).0 == 0).await;
    assert!(
        collected,
        "node 0 still keeps {:?}",
        outcomes_at(&fed, 0, CARE_MANAGER)
    );
    // Node 1 back: the sender still collects its deletion statements from it.
    fed.start_directory_node(1).await.unwrap();
    let statements = drive(&clock, || {
        std::fs::read_to_string(fed.plan.home(0).statements())
            .is_ok_and(|t| t.lines().count() == files.len())
            && outcomes_at(&fed, 1, CARE_MANAGER) == (0, 0)
    })
    .await;
    assert!(
        statements,
        "statements not all collected from node 1: it keeps {:?}",
        outcomes_at(&fed, 1, CARE_MANAGER)
    );
    fed.shutdown().await;
}

/// Something an operator (or a faulty backup tool) left in the mailbox's folders that is not a
/// regular file — a FIFO named like an envelope or an outcome — blocks neither a drain nor the
/// outcomes nor the sweeper.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_in_the_mailbox_folders_blocks_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut fed, clock) = federation(dir.path()).await;
    let files = plans();
    for (name, bytes) in &files {
        drop_into_outbox(fed.plan.home(0), name, bytes).unwrap();
    }
    let deposited = drive(&clock, || kept_for(&fed, SERVICE) == files.len()).await;
    assert!(deposited, "kept {}", kept_for(&fed, SERVICE));
    let fifo = |p: PathBuf| {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let ok = std::process::Command::new("mkfifo")
            .arg(&p)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mkfifo {}", p.display());
    };
    let box_dir = mailbox_dir(&fed).join("box").join(SERVICE);
    fifo(box_dir.join(format!("1-{CARE_MANAGER}-{}.env", "ab".repeat(16))));
    fifo(
        mailbox_dir(&fed)
            .join("out")
            .join(CARE_MANAGER)
            .join(format!("{}-{SERVICE}.json", "cd".repeat(16))),
    );
    fed.start_node(1).await.unwrap();
    // Drained, acknowledged and collected past the FIFOs, with the sweeper's minute passing.
    let done = drive(&clock, || {
        inbox(&fed, 1).len() == files.len()
            && kept_for(&fed, SERVICE) == 0
            && fed.node(0).queued() == 0
    })
    .await;
    assert!(
        done,
        "inbox {}, kept {}, queued {}",
        inbox(&fed, 1).len(),
        kept_for(&fed, SERVICE),
        fed.node(0).queued()
    );
    fed.shutdown().await;
}

/// Imported statements the mailbox keeps for sender `office` (files `imported-*.json`).
fn imported_kept_for(fed: &RunningFederation, office: &str) -> usize {
    files_under(&mailbox_dir(fed).join("out").join(office))
        .iter()
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("imported-"))
        })
        .count()
}

/// SPEC.md §8.2 step 5: the recipient marks a file imported while the sender is off; the
/// statement waits in the sender's own mailbox, and the sender, started after the recipient
/// went off, keeps it (checked as one that came directly) and shows the file imported. The
/// recipient stops offering it once the sender says it kept it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imported_statement_reaches_a_sender_that_is_never_on_with_the_recipient() {
    use renkei_node::imported::ImportedBook;
    let dir = tempfile::tempdir().unwrap();
    let (mut fed, clock) = federation(dir.path()).await;
    let files = deposit(&fed, &clock, plans().len()).await;
    start_and_take_everything_once(&mut fed, &clock, &files).await;
    let (cm_home, svc_home) = (fed.plan.home(0).clone(), fed.plan.home(1).clone());
    // The sender goes off; the care software at the recipient takes one file.
    fed.stop_node(0).await;
    let name = files[0].0;
    std::fs::create_dir_all(svc_home.imported_folder()).unwrap();
    std::fs::rename(
        svc_home.inbox().join(name),
        svc_home.imported_folder().join(name),
    )
    .unwrap();
    let posted = drive(&clock, || {
        ImportedBook::read(&svc_home).posted.len() == 1
            && imported_kept_for(&fed, CARE_MANAGER) == 1
    })
    .await;
    assert!(
        posted,
        "made {}, posted {}, in the mailbox {}",
        ImportedBook::read(&svc_home).made.len(),
        ImportedBook::read(&svc_home).posted.len(),
        imported_kept_for(&fed, CARE_MANAGER)
    );
    // Not handed over yet: the sender has not said it kept it.
    assert!(ImportedBook::read(&svc_home).delivered.is_empty());
    // The recipient goes off; only then does the sender start.
    fed.stop_node(1).await;
    fed.start_node(0).await.unwrap();
    let kept = drive(&clock, || {
        ImportedBook::read(&cm_home).received.len() == 1
            && imported_kept_for(&fed, CARE_MANAGER) == 0
    })
    .await;
    assert!(
        kept,
        "received {}, still in the mailbox {}",
        ImportedBook::read(&cm_home).received.len(),
        imported_kept_for(&fed, CARE_MANAGER)
    );
    let at_sender = ImportedBook::read(&cm_home);
    let k = at_sender.received.values().next().unwrap();
    assert_eq!((k.file_name.as_str(), k.partner.as_str()), (name, SERVICE));
    assert_eq!(
        k.statement,
        ImportedBook::read(&svc_home)
            .made
            .values()
            .next()
            .unwrap()
            .statement,
        "the recipient's signed statement, byte for byte"
    );
    // `renkei receipts` at the sender shows the file imported, the statement verified.
    fed.stop_node(0).await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_renkei"))
        .args(["receipts", "--home"])
        .arg(&cm_home.root)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(" imported 20"), "{text}");
    assert!(text.contains("imported statement verified"), "{text}");
    assert_eq!(out.status.code(), Some(0), "{text}");
    // Both on at last: the sender confirms, and the recipient stops offering it.
    fed.start_node(0).await.unwrap();
    fed.start_node(1).await.unwrap();
    let confirmed = drive(&clock, || {
        ImportedBook::read(&svc_home).delivered.len() == 1
    })
    .await;
    assert!(confirmed, "the sender's confirmation reached the recipient");
    assert_eq!(ImportedBook::read(&cm_home).received.len(), 1, "kept once");
    fed.shutdown().await;
}

/// Connects with `key` to the directory node and hands in `statements` for `to` with
/// `post_imported`: the mailbox's answer (`End` kept, `Refuse` not), or none when it dropped
/// the stream.
async fn post_imported_raw(
    key: &ed25519_dalek::SigningKey,
    dn: libp2p::PeerId,
    addr: libp2p::Multiaddr,
    to: &str,
    statements: &[Vec<u8>],
) -> Result<Option<Kind>, String> {
    let (net, mut s) = open_mailbox_as(key, dn, addr).await?;
    let req = format!(r#"{{"op":"post_imported","to":"{to}"}}"#);
    let mut frame = Vec::new();
    let sent = async {
        frames::write(&mut s, Kind::Request, req.as_bytes()).await?;
        for st in statements {
            frames::write(&mut s, Kind::Blob, st).await?;
        }
        frames::write(&mut s, Kind::End, &[]).await?;
        futures::AsyncWriteExt::flush(&mut s).await?;
        anyhow::Ok(())
    }
    .await;
    let answer = match sent {
        Ok(()) => frames::read(
            &mut s,
            &mut frame,
            Duration::from_secs(5),
            &[Kind::End, Kind::Refuse, Kind::NotFound],
        )
        .await
        .unwrap_or(None),
        Err(_) => None,
    };
    net.shutdown().await;
    Ok(answer)
}

/// SPEC.md §7.6.1 `post_imported`: a member hands in only statements it signed itself about
/// files sent to it by the office whose mailbox it posts to, and never more than the quota.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_cannot_forge_or_flood_imported_statements_into_another_offices_mailbox() {
    use renkei_protocol::OfficeNumber;
    use renkei_protocol::envelope::MessageId;
    use renkei_protocol::imported::Imported;
    let dir = tempfile::tempdir().unwrap();
    let quota = MailboxConfig {
        max_files: 2,
        ..Default::default()
    };
    let (mut fed, clock) = federation_with(dir.path(), Some(quota), true, 5).await;
    // The sender is off while statements are handed in: nothing collects them meanwhile.
    fed.stop_node(0).await;
    let dn = &fed.plan.directory_nodes[0];
    let dn_peer: libp2p::PeerId = dn.multiaddr.rsplit('/').next().unwrap().parse().unwrap();
    let dn_addr: libp2p::Multiaddr = dn.addr.parse().unwrap();
    let third = fed.plan.home(2).load_keys().unwrap()[0].identity.clone();
    let office = |n: &str| OfficeNumber::parse(n).unwrap();
    let statement = |i: u8, recipient: &str, key: &ed25519_dalek::SigningKey| {
        Imported::sign(
            MessageId([i; 16]),
            office(CARE_MANAGER),
            office(recipient),
            [i; 32],
            1_700_000_000,
            key,
        )
        .to_bytes()
    };
    let post = |statements: Vec<Vec<u8>>| {
        let (third, dn_addr) = (third.clone(), dn_addr.clone());
        async move { post_imported_raw(&third, dn_peer, dn_addr, CARE_MANAGER, &statements).await }
    };
    // In another office's name (the service office's number, signed by the third's key):
    // dropped without an answer, nothing kept.
    assert_eq!(post(vec![statement(1, SERVICE, &third)]).await, Ok(None));
    // In its own name but signed by another office's key: dropped too.
    let service = fed.plan.home(1).load_keys().unwrap()[0].identity.clone();
    assert_eq!(post(vec![statement(2, THIRD, &service)]).await, Ok(None));
    assert_eq!(imported_kept_for(&fed, CARE_MANAGER), 0);
    // More than the quota at once: refused, nothing kept.
    let three: Vec<Vec<u8>> = (3..6).map(|i| statement(i, THIRD, &third)).collect();
    assert_eq!(post(three.clone()).await, Ok(Some(Kind::Refuse)));
    assert_eq!(imported_kept_for(&fed, CARE_MANAGER), 0);
    // Its own statements, up to the quota: kept (the same one twice is kept once).
    assert_eq!(
        post(vec![three[0].clone(), three[1].clone(), three[0].clone()]).await,
        Ok(Some(Kind::Refuse)),
        "three in one stream count three against the quota"
    );
    assert_eq!(post(three[..2].to_vec()).await, Ok(Some(Kind::End)));
    assert_eq!(imported_kept_for(&fed, CARE_MANAGER), 2);
    // Then the box is full: one more is refused.
    assert_eq!(post(vec![three[2].clone()]).await, Ok(Some(Kind::Refuse)));
    assert_eq!(imported_kept_for(&fed, CARE_MANAGER), 2);
    // The sender starts: statements about messages it never sent to that office are
    // refused for good and forgotten, and the box has room again.
    fed.start_node(0).await.unwrap();
    let forgotten = drive(&clock, || imported_kept_for(&fed, CARE_MANAGER) == 0).await;
    assert!(forgotten, "kept {}", imported_kept_for(&fed, CARE_MANAGER));
    assert!(
        renkei_node::imported::ImportedBook::read(fed.plan.home(0))
            .received
            .is_empty()
    );
    fed.shutdown().await;
}
