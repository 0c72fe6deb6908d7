//! A whole federation in this process, on libp2p's in-memory transport (no sockets) and a test
//! clock: the production node code, crashed and restarted at chosen points.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::AsyncWriteExt;
use renkei_node::demo::{CARE_MANAGER, OFFICES, drop_into_outbox};
use renkei_node::env::{FaultPoint, ManualClock, wall_clock_ms};
use renkei_node::federation::wait_until;
use renkei_node::federation::{Federation, RunningFederation, StartOptions, Transport};
use renkei_node::frames::{self, Kind};
use renkei_node::net::{self, DELIVER};
use renkei_node::receipts::{Receipt, read_log};
use renkei_node::samples::SAMPLES;
use renkei_protocol::FileName;
use renkei_protocol::ack::{Ack, Verdict};
use renkei_protocol::envelope::EnvelopeHeader;

/// Moves the test clock on until `done` holds, restarting any node an injected fault crashed;
/// returns how many restarts it made.
async fn drive(
    fed: &mut RunningFederation,
    clock: &ManualClock,
    what: &str,
    done: impl FnMut(&RunningFederation) -> bool,
) -> usize {
    drive_with(fed, clock, what, |_, _| {}, done).await
}

/// [`drive`], calling `crashed(fed, i)` when office `i` has crashed, before it restarts.
async fn drive_with(
    fed: &mut RunningFederation,
    clock: &ManualClock,
    what: &str,
    mut crashed: impl FnMut(&RunningFederation, usize),
    mut done: impl FnMut(&RunningFederation) -> bool,
) -> usize {
    let mut restarts = 0;
    let end = tokio::time::Instant::now() + Duration::from_secs(120);
    while !done(fed) {
        if tokio::time::Instant::now() >= end {
            // What each office was doing, to tell a slow machine from a stuck node.
            for i in 0..fed.nodes.len() {
                let s = fed.node(i).status().await;
                eprintln!(
                    "office {}: queued {} delivered {} received {} errors {:#?}",
                    s.office, s.queued, s.delivered, s.received, s.last_errors
                );
            }
            panic!("timed out waiting for {what}");
        }
        for i in 0..fed.nodes.len() {
            if fed.node(i).crashed() {
                crashed(fed, i);
                fed.restart(i).await.unwrap();
                restarts += 1;
            }
        }
        clock.advance(Duration::from_millis(200));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    restarts
}

/// The receipts of office `i` while nodes may be appending: a line being written reads as
/// not there yet.
fn receipts_so_far(fed: &RunningFederation, i: usize) -> Vec<Receipt> {
    read_log(&fed.plan.home(i).receipts()).unwrap_or_default()
}

/// The receipts of office `i`, whose chain must verify.
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
    let (mut fed, clock) = plan
        .start_on_test_clock(20261031, Default::default())
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
        receipts_so_far(f, 0).len() == outgoing.len() && f.node(0).queued() == 0
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
        (1..OFFICES.len()).all(|i| receipts_so_far(f, i).iter().any(|r| r.direction == "sent"))
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

/// Two offices in memory; the second is not started (a test stands in for it, or not).
async fn pair(
    dir: &std::path::Path,
    tune: impl Fn(&mut renkei_node::home::Config) + 'static,
) -> RunningFederation {
    Federation::builder(dir)
        .transport(Transport::Memory)
        .office(CARE_MANAGER, "ひかり居宅介護支援事業所", &["43"])
        .office("1310000011", "さくら訪問介護ステーション", &["11"])
        .tune(move |c| {
            renkei_node::federation::tune_for_loopback(c);
            tune(c);
        })
        .create()
        .unwrap()
        .start(StartOptions {
            off: vec![1],
            ..Default::default()
        })
        .await
        .unwrap()
}

/// The sample UPPLAN from the care-management office to the first service office.
fn sample_plan() -> (&'static str, &'static [u8]) {
    *SAMPLES
        .iter()
        .find(|(n, _)| n.starts_with("UPPLAN_") && n.contains("_1310000011_11_"))
        .unwrap()
}

/// Reads one envelope from a delivery stream: its header (the chunks are read and dropped).
async fn read_envelope(s: &mut libp2p::Stream) -> EnvelopeHeader {
    let mut buf = Vec::new();
    let kind = frames::read(
        s,
        &mut buf,
        Duration::from_secs(10),
        &[Kind::Header, Kind::Chunk],
    )
    .await
    .unwrap();
    assert_eq!(kind, Some(Kind::Header));
    let (header, _) = EnvelopeHeader::parse(&buf).unwrap();
    for _ in 0..header.chunk_count() {
        assert_eq!(
            frames::read(
                s,
                &mut buf,
                Duration::from_secs(10),
                &[Kind::Header, Kind::Chunk]
            )
            .await
            .unwrap(),
            Some(Kind::Chunk)
        );
    }
    header
}

/// The service office's keys answering at its address: the test plays its node, and answers
/// each envelope as it likes.
struct StandIn {
    key: ed25519_dalek::SigningKey,
    incoming: libp2p_stream::IncomingStreams,
    _net: net::Net,
}

impl StandIn {
    fn start(home: &renkei_node::home::Home) -> StandIn {
        let keys = home.load_keys().unwrap();
        let listen: Vec<libp2p::Multiaddr> = home
            .config()
            .unwrap()
            .listen
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        let net = net::start(
            &keys[0].identity,
            &listen,
            Arc::new(|_: &libp2p::PeerId| true),
            &net::NetConfig::office().on(&listen),
        )
        .unwrap();
        StandIn {
            key: keys[0].identity.clone(),
            incoming: net.control.clone().accept(DELIVER).unwrap(),
            _net: net,
        }
    }

    /// The next delivery stream and its first envelope's header.
    async fn next(&mut self) -> (libp2p::Stream, EnvelopeHeader) {
        use futures::StreamExt;
        let (_, mut s) = tokio::time::timeout(Duration::from_secs(60), self.incoming.next())
            .await
            .expect("an envelope from the sender within 60 s")
            .unwrap();
        let h = read_envelope(&mut s).await;
        (s, h)
    }

    /// Answers an envelope with a signed ack.
    async fn answer(&self, s: &mut libp2p::Stream, h: &EnvelopeHeader, verdict: Verdict) {
        let ack = Ack::sign(
            h.message_id,
            h.plaintext_hash,
            h.sender_office,
            h.recipient_office,
            wall_clock_ms() / 1000,
            verdict,
            &self.key,
        );
        frames::write(s, Kind::Ack, &ack.to_bytes()).await.unwrap();
        s.flush().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_changed_after_it_was_sent_is_sent_again_and_sent_holds_what_was_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let fed = pair(dir.path(), |_| {}).await;
    let cm = fed.plan.home(0);
    let mut partner = StandIn::start(fed.plan.home(1));
    let (name, first) = sample_plan();
    // The care software writes the first part, pauses past the settle time…
    let prefix = &first[..first.len() / 2];
    let prefix_end = prefix.iter().rposition(|b| *b == b'\n').unwrap() + 1;
    let prefix = &first[..prefix_end];
    std::fs::write(cm.outbox().join(name), prefix).unwrap();
    let (mut s, h) = partner.next().await;
    assert_eq!(h.plaintext_hash, renkei_protocol::sha256(prefix));
    // …and writes the rest before the partner's ack arrives.
    std::fs::write(cm.outbox().join(name), first).unwrap();
    partner.answer(&mut s, &h, Verdict::Accepted).await;
    // The receipt is for the bytes delivered; sent/ never holds other bytes than those.
    assert!(
        wait_until(Duration::from_secs(20), || receipts_so_far(&fed, 0).len()
            == 1)
        .await,
        "the first receipt"
    );
    assert_eq!(receipts(&fed, 0)[0].sha256, hex::encode(h.plaintext_hash));
    assert!(
        !cm.sent().join(name).exists(),
        "sent/ holds the changed file, not the one delivered"
    );
    // The whole file goes out again, as a new message, and then sent/ holds it.
    let (mut s, h2) = partner.next().await;
    assert_eq!(h2.plaintext_hash, renkei_protocol::sha256(first));
    assert_ne!(h2.message_id, h.message_id);
    partner.answer(&mut s, &h2, Verdict::Accepted).await;
    let sent = cm.sent().join(name);
    assert!(
        wait_until(Duration::from_secs(20), || std::fs::read(&sent)
            .is_ok_and(|b| b == first))
        .await,
        "the whole file in sent/"
    );
    let status = fed.node(0).status().await;
    assert!(
        status
            .last_errors
            .iter()
            .any(|e| e.contains("changed after it was taken for sending")),
        "{:?}",
        status.last_errors
    );
    fed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_whose_receipt_survives_a_crash_still_reaches_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let mut fed = pair(dir.path(), |_| {}).await;
    let cm = fed.plan.home(0).clone();
    let mut partner = StandIn::start(fed.plan.home(1));
    // The sender crashes with the partner's refusal durable in its receipts.
    fed.node(0)
        .env()
        .faults
        .arm(FaultPoint::CrashAfterSentReceipts, 0);
    let (name, bytes) = sample_plan();
    drop_into_outbox(&cm, name, bytes).unwrap();
    let (mut s, h) = partner.next().await;
    let finding = renkei_protocol::ack::AckFinding {
        line: 1,
        field: 5,
        code: "SERVICE_DATE_MONTH".into(),
    };
    partner
        .answer(&mut s, &h, Verdict::Rejected(vec![finding]))
        .await;
    assert!(
        wait_until(Duration::from_secs(20), || fed.node(0).crashed()).await,
        "the crash"
    );
    fed.restart(0).await.unwrap();
    // Completed from its receipt at start: refused, with the partner's findings — not sent.
    let report = cm.rejected().join(renkei_node::report_name(name));
    assert!(
        wait_until(Duration::from_secs(20), || report.exists()).await,
        "the refusal's report"
    );
    assert!(
        std::fs::read_to_string(&report)
            .unwrap()
            .contains("SERVICE_DATE_MONTH")
    );
    assert_eq!(std::fs::read(cm.rejected().join(name)).unwrap(), bytes);
    assert!(!cm.sent().join(name).exists());
    assert!(!cm.outbox().join(name).exists());
    assert_eq!(fed.node(0).queued(), 0);
    assert_eq!(receipts(&fed, 0).len(), 1);
    fed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_cannot_be_moved_after_its_ack_is_never_sent_twice() {
    let dir = tempfile::tempdir().unwrap();
    let mut fed = pair(dir.path(), |_| {}).await;
    fed.start_node(1).await.unwrap();
    let cm = fed.plan.home(0).clone();
    // sent/ is not a folder: the delivered file cannot be moved there.
    std::fs::remove_dir(cm.sent()).unwrap();
    std::fs::write(cm.sent(), b"not a folder").unwrap();
    let (name, bytes) = sample_plan();
    drop_into_outbox(&cm, name, bytes).unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || {
            receipts_so_far(&fed, 0).len() == 1 && fed.node(0).queued() == 0
        })
        .await,
        "delivered once"
    );
    // Time passes (retries, rescans): still one receipt each side, and the office is told.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(receipts(&fed, 0).len(), 1, "a second sent receipt");
    assert_eq!(receipts(&fed, 1).len(), 1);
    let status = fed.node(0).status().await;
    assert!(
        status
            .last_errors
            .iter()
            .any(|e| e.contains("cannot be moved out of the outbox")),
        "{:?}",
        status.last_errors
    );
    fed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_the_inbox_cannot_take_holds_up_no_other() {
    let dir = tempfile::tempdir().unwrap();
    let mut fed = pair(dir.path(), |_| {}).await;
    fed.start_node(1).await.unwrap();
    let (cm, svc) = (fed.plan.home(0).clone(), fed.plan.home(1).clone());
    let plans: Vec<&(&str, &[u8])> = SAMPLES
        .iter()
        .filter(|(n, _)| n.contains("_1310000001_43_1310000011_11_"))
        .collect();
    assert!(plans.len() >= 3);
    // A folder in the recipient's inbox has the first file's name.
    std::fs::create_dir(svc.inbox().join(plans[0].0)).unwrap();
    for (name, bytes) in &plans {
        drop_into_outbox(&cm, name, bytes).unwrap();
    }
    assert!(
        wait_until(Duration::from_secs(30), || {
            plans[1..].iter().all(|(n, _)| cm.sent().join(n).exists())
        })
        .await,
        "the other files delivered"
    );
    // The blocked one waits, refused as busy for now; the recipient says why.
    assert!(cm.outbox().join(plans[0].0).exists());
    let status = fed.node(1).status().await;
    assert!(
        status
            .last_errors
            .iter()
            .any(|e| e.contains("cannot put the received")),
        "{:?}",
        status.last_errors
    );
    fed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_sent_keep_days_0_the_sender_keeps_only_the_receipt() {
    let dir = tempfile::tempdir().unwrap();
    let mut fed = pair(dir.path(), |c| c.sent_keep_days = 0).await;
    fed.start_node(1).await.unwrap();
    let (name, bytes) = sample_plan();
    drop_into_outbox(fed.plan.home(0), name, bytes).unwrap();
    assert!(
        // Committed: the receipt written, then the queue entry removed.
        wait_until(Duration::from_secs(30), || {
            receipts_so_far(&fed, 0).len() == 1 && fed.node(0).queued() == 0
        })
        .await,
        "delivered"
    );
    assert_eq!(
        std::fs::read(fed.plan.home(1).inbox().join(name)).unwrap(),
        bytes
    );
    assert_eq!(
        std::fs::read_dir(fed.plan.home(0).sent()).unwrap().count(),
        0
    );
    assert_eq!(
        std::fs::read_dir(fed.plan.home(0).outbox())
            .unwrap()
            .count(),
        0
    );
    fed.shutdown().await;
}

/// The care-management office (holding `kinds`) and the first service office, both running in
/// memory on a test clock and a memory store, once both hold the directory.
async fn running_pair(dir: &std::path::Path, kinds: &[&str]) -> (RunningFederation, ManualClock) {
    let plan = Federation::builder(dir)
        .transport(Transport::Memory)
        .office(CARE_MANAGER, "ひかり居宅介護支援事業所", kinds)
        .office("1310000011", "さくら訪問介護ステーション", &["11"])
        .create()
        .unwrap();
    let (mut fed, clock) = plan
        .start_on_test_clock(14, Default::default())
        .await
        .unwrap();
    drive(
        &mut fed,
        &clock,
        "both offices to hold the directory",
        |f| (0..2).all(|i| f.node(i).directory_entries() == 2),
    )
    .await;
    (fed, clock)
}

/// The care software imports: every file in office `i`'s inbox is taken away, and counted.
fn import_all(fed: &RunningFederation, i: usize, imported: &mut BTreeMap<String, Vec<Vec<u8>>>) {
    for e in std::fs::read_dir(fed.plan.home(i).inbox()).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        imported
            .entry(name)
            .or_default()
            .push(std::fs::read(e.path()).unwrap());
        std::fs::remove_file(e.path()).unwrap();
    }
}

/// Each file imported exactly once, as sent; one `received` receipt for it at `to` and one
/// `sent` receipt at `from`, both accepted, both chains verified.
fn assert_exactly_once(
    fed: &RunningFederation,
    (from, to): (usize, usize),
    files: &[(String, &[u8])],
    imported: &BTreeMap<String, Vec<Vec<u8>>>,
    what: &str,
) {
    for (name, bytes) in files {
        assert_eq!(
            imported.get(name).map(Vec::as_slice),
            Some(&[bytes.to_vec()][..]),
            "{what}: {name} is imported exactly once, as sent"
        );
        for (i, direction) in [(to, "received"), (from, "sent")] {
            let r: Vec<Receipt> = receipts(fed, i)
                .into_iter()
                .filter(|r| r.direction == direction && &r.file_name == name)
                .collect();
            assert_eq!(r.len(), 1, "{what}: {name}: {direction} receipts");
            assert_eq!(r[0].verdict, "accepted", "{what}: {name}");
        }
    }
    assert_eq!(imported.len(), files.len(), "{what}: {:?}", imported.keys());
    assert_eq!(
        std::fs::read_dir(fed.plan.home(to).partial())
            .unwrap()
            .count(),
        0,
        "{what}: partial files left"
    );
}

/// The receive's crash points, in the order of SPEC.md §7.3 step 6.
const RECEIVE_CRASHES: [FaultPoint; 5] = [
    FaultPoint::CrashBeforeInboxWrite,
    FaultPoint::CrashAfterIntent,
    FaultPoint::CrashAfterInboxWrite,
    FaultPoint::CrashAfterReceivedReceipts,
    FaultPoint::CrashBeforeAck,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_every_step_of_a_receive_then_an_import_never_brings_a_file_back() {
    let files: Vec<(String, &[u8])> = SAMPLES
        .iter()
        .filter(|(n, _)| n.contains(&format!("_{CARE_MANAGER}_43_1310000011_11_")))
        .map(|(n, b)| (n.to_string(), *b))
        .collect();
    assert!(files.len() >= 5, "{}", files.len());
    for point in RECEIVE_CRASHES {
        let dir = tempfile::tempdir().unwrap();
        let (mut fed, clock) = running_pair(dir.path(), &["43"]).await;
        fed.node(1).env().faults.arm(point, 0);
        for (name, bytes) in &files {
            drop_into_outbox(fed.plan.home(0), name, bytes).unwrap();
        }
        // The office's PC loses power; when it is back, the care software imports (and removes)
        // whatever is in the inbox before renkei has started again.
        let mut imported = BTreeMap::new();
        let restarts = drive_with(
            &mut fed,
            &clock,
            point.name(),
            |f, i| {
                assert_eq!(i, 1, "only the recipient crashes");
                import_all(f, 1, &mut imported);
            },
            |f| f.node(0).queued() == 0 && receipts_so_far(f, 0).len() == files.len(),
        )
        .await;
        assert_eq!(restarts, 1, "{}: the fault fired", point.name());
        import_all(&fed, 1, &mut imported);
        assert_exactly_once(&fed, (0, 1), &files, &imported, point.name());
        fed.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_within_one_office_is_written_into_its_inbox_once_across_a_crash() {
    let (sample, bytes) = sample_plan();
    // The same plan between two kinds of one office number (居宅介護支援 43 → 訪問介護 11).
    let name = sample.replace("_1310000011_11_", &format!("_{CARE_MANAGER}_11_"));
    let files = [(name, bytes)];
    for point in [
        FaultPoint::CrashAfterIntent,
        FaultPoint::CrashAfterInboxWrite,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (mut fed, clock) = running_pair(dir.path(), &["43", "11"]).await;
        fed.node(0).env().faults.arm(point, 0);
        drop_into_outbox(fed.plan.home(0), &files[0].0, bytes).unwrap();
        let mut imported = BTreeMap::new();
        let restarts = drive_with(
            &mut fed,
            &clock,
            point.name(),
            |f, i| import_all(f, i, &mut imported),
            |f| f.node(0).queued() == 0 && receipts_so_far(f, 0).len() == 2,
        )
        .await;
        assert_eq!(restarts, 1, "{}: the fault fired", point.name());
        import_all(&fed, 0, &mut imported);
        assert_exactly_once(&fed, (0, 0), &files, &imported, point.name());
        assert!(fed.plan.home(0).sent().join(&files[0].0).exists());
        fed.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_that_fails_after_the_inbox_write_stops_the_node_and_no_file_comes_twice() {
    let files: Vec<(String, &[u8])> = SAMPLES
        .iter()
        .filter(|(n, _)| n.contains(&format!("_{CARE_MANAGER}_43_1310000011_11_")))
        .map(|(n, b)| (n.to_string(), *b))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let (mut fed, clock) = running_pair(dir.path(), &["43"]).await;
    // The recipient's receipt log cannot be written once: its files are in the inbox already.
    fed.node(1).env().faults.arm(FaultPoint::DiskFull, 0);
    for (name, bytes) in &files {
        drop_into_outbox(fed.plan.home(0), name, bytes).unwrap();
    }
    // The care software imports whatever appears, all the time.
    let mut imported = BTreeMap::new();
    let mut restarts = 0;
    let end = tokio::time::Instant::now() + Duration::from_secs(60);
    while !(fed.node(0).queued() == 0 && receipts_so_far(&fed, 0).len() == files.len()) {
        assert!(tokio::time::Instant::now() < end, "timed out");
        import_all(&fed, 1, &mut imported);
        if fed.node(1).crashed() {
            restarts += 1;
            fed.restart(1).await.unwrap();
        }
        clock.advance(Duration::from_millis(200));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    import_all(&fed, 1, &mut imported);
    assert_eq!(restarts, 1, "the node stopped on the failed write");
    assert_exactly_once(&fed, (0, 1), &files, &imported, "disk-full");
    fed.shutdown().await;
}
