//! A whole federation in this process, on libp2p's in-memory transport (no sockets) and a test
//! clock: the production node code, crashed and restarted at chosen points.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use renkei_node::demo::{CARE_MANAGER, OFFICES, drop_into_outbox};
use renkei_node::env::{FaultPoint, ManualClock, wall_clock_ms};
use renkei_node::federation::{
    Federation, RunningFederation, StartOptions, StoreChoice, Transport,
};
use renkei_node::receipts::{Receipt, read_log};
use renkei_node::samples::SAMPLES;
use renkei_protocol::FileName;

/// Moves the test clock on until `done` holds, restarting any node an injected fault crashed;
/// returns how many restarts it made.
async fn drive(
    fed: &mut RunningFederation,
    clock: &ManualClock,
    what: &str,
    mut done: impl FnMut(&RunningFederation) -> bool,
) -> usize {
    let mut restarts = 0;
    let end = tokio::time::Instant::now() + Duration::from_secs(120);
    while !done(fed) {
        assert!(
            tokio::time::Instant::now() < end,
            "timed out waiting for {what}"
        );
        for i in 0..fed.nodes.len() {
            if fed.node(i).crashed() {
                fed.restart(i).await.unwrap();
                restarts += 1;
            }
        }
        clock.advance(Duration::from_millis(200));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    restarts
}

fn receipts(fed: &RunningFederation, i: usize) -> Vec<Receipt> {
    read_log(&fed.plan.home(i).receipts()).expect("the receipt chain verifies")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_month_in_memory_with_crashes_is_delivered_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = Federation::builder(dir.path()).transport(Transport::Memory);
    for (number, name, kind) in OFFICES {
        b = b.office(number, name, &[kind]);
    }
    let plan = b.create().unwrap();
    // Every listen address is in memory: no socket is opened.
    for o in &plan.offices {
        let c = o.home.config().unwrap();
        assert!(
            c.listen.iter().all(|a| a.starts_with("/memory/")),
            "{:?}",
            c.listen
        );
    }
    // The test clock starts now (keys and snapshots are dated by the wall clock) and moves
    // only when the test moves it.
    let clock = ManualClock::new(wall_clock_ms());
    let mut fed = plan
        .start(StartOptions {
            clock: Arc::new(clock.clone()),
            seed: Some(20261031),
            store: StoreChoice::Memory,
        })
        .await
        .unwrap();
    drive(
        &mut fed,
        &clock,
        "every office to hold the directory",
        |f| (0..OFFICES.len()).all(|i| f.node(i).directory_entries() == OFFICES.len()),
    )
    .await;

    // Faults: the first service office crashes with its first batch committed but not acked;
    // the care-management office crashes after its first sent receipts are durable, and later,
    // receiving the actuals, after writing them into its inbox but before any receipt.
    fed.node(1).env().faults.arm(FaultPoint::CrashBeforeAck, 0);
    fed.node(0)
        .env()
        .faults
        .arm(FaultPoint::CrashAfterSentReceipts, 0);

    let outgoing: Vec<&(&str, &[u8])> = SAMPLES
        .iter()
        .filter(|(n, _)| n.contains(&format!("_{CARE_MANAGER}_43_1")))
        .collect();
    let actuals: Vec<&(&str, &[u8])> = SAMPLES
        .iter()
        .filter(|(n, _)| n.starts_with("UPJSK_"))
        .collect();
    assert!(outgoing.len() >= 20 && actuals.len() == 3);
    for (name, bytes) in &outgoing {
        drop_into_outbox(fed.plan.home(0), name, bytes).unwrap();
    }
    let mut restarts = drive(&mut fed, &clock, "the plans delivered", |f| {
        receipts(f, 0).len() == outgoing.len() && f.node(0).queued() == 0
    })
    .await;
    assert_eq!(
        restarts, 2,
        "both crash faults fired and both offices came back"
    );

    fed.node(0)
        .env()
        .faults
        .arm(FaultPoint::CrashAfterInboxWrite, 0);
    for (name, bytes) in &actuals {
        let from = FileName::parse(name).unwrap().from.office;
        let i = fed.plan.office_index(from.as_str()).unwrap();
        drop_into_outbox(fed.plan.home(i), name, bytes).unwrap();
    }
    restarts += drive(&mut fed, &clock, "the actuals delivered", |f| {
        (1..OFFICES.len()).all(|i| receipts(f, i).iter().any(|r| r.direction == "sent"))
            && (1..OFFICES.len()).all(|i| f.node(i).queued() == 0)
    })
    .await;
    assert_eq!(restarts, 3, "the third crash fired too");

    // Exactly once: every file is in its recipient's inbox byte for byte, with exactly one
    // `received` receipt there and one `sent` receipt at its sender, each with a verified ack.
    let mut received: BTreeMap<String, usize> = BTreeMap::new();
    let mut sent: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..OFFICES.len() {
        for r in receipts(&fed, i) {
            assert_eq!(r.verdict, "accepted", "{}", r.file_name);
            let m = if r.direction == "sent" {
                &mut sent
            } else {
                &mut received
            };
            *m.entry(r.file_name.clone()).or_default() += 1;
        }
    }
    for (name, bytes) in outgoing.iter().chain(actuals.iter()) {
        let to = FileName::parse(name).unwrap().to.office;
        let i = fed.plan.office_index(to.as_str()).unwrap();
        let got = std::fs::read(fed.plan.home(i).inbox().join(name)).unwrap();
        assert_eq!(&got[..], *bytes, "{name}");
        assert_eq!(received.get(*name), Some(&1), "{name}: received receipts");
        assert_eq!(sent.get(*name), Some(&1), "{name}: sent receipts");
    }
    assert_eq!(received.len(), outgoing.len() + actuals.len());
    for (i, o) in fed.plan.offices.iter().enumerate() {
        assert_eq!(fed.node(i).queued(), 0);
        assert_eq!(std::fs::read_dir(o.home.partial()).unwrap().count(), 0);
        assert_eq!(std::fs::read_dir(o.home.outbox()).unwrap().count(), 0);
    }
    fed.shutdown().await;
}
