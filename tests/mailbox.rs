//! Association mailboxes (SPEC.md §7.6), on an in-memory federation and a test clock: offices
//! that are off get their files through their region's mailbox, which holds only ciphertext,
//! drops it once acknowledged (or expired) with a signed deletion statement, and serves each
//! office only its own mail.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use renkei_node::demo::{CARE_MANAGER, drop_into_outbox};
use renkei_node::env::{ManualClock, wall_clock_ms};
use renkei_node::federation::{
    Federation, RunningFederation, StartOptions, StoreChoice, Transport, drive_until,
};
use renkei_node::receipts::{KeptStatement, read_log};
use renkei_node::samples::SAMPLES;
use renkei_protocol::statement::{Reason, Statement};

const SERVICE: &str = "1310000011";

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
    let plan = Federation::builder(dir)
        .transport(Transport::Memory)
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
    let clock = ManualClock::new(wall_clock_ms());
    let fed = plan
        .start(StartOptions {
            clock: Arc::new(clock.clone()),
            seed: Some(9),
            store: StoreChoice::Memory,
            off: vec![1],
            ..Default::default()
        })
        .await
        .unwrap();
    let held = drive(&clock, || fed.node(0).directory_entries() == 2).await;
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

/// The files under a folder, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
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
    let statements: Vec<KeptStatement> = std::fs::read_to_string(fed.plan.home(0).statements())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(statements.len(), files.len());
    for k in &statements {
        let s = Statement::parse(&hex::decode(&k.statement).unwrap()).unwrap();
        s.verify(&[node_key]).unwrap();
        assert_eq!(s.reason, Reason::Acked);
        assert!(sent.iter().any(|r| r.message_id == s.message_id.to_hex()));
    }
    // Nothing is left at the mailbox but what it owes nobody: no envelope, no part of one.
    let left: Vec<PathBuf> = files_under(&mailbox_dir(&fed))
        .into_iter()
        .filter(|p| !p.to_string_lossy().contains("/.scratch/"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    fed.shutdown().await;
}
