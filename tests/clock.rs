//! Offices whose computer clock is set wrong (SPEC.md §4.6, §7.5): a whole federation in this
//! process on a test clock, with chosen offices and directory nodes running minutes, hours or
//! days off. Within the tolerated day files are delivered, and an office whose own clock is
//! off is told so first; beyond it files are refused, and each office's status says whose
//! clock is wrong and by about how much — never that the partner is unreachable.

use std::sync::Arc;
use std::time::Duration;

use futures::AsyncWriteExt;
use renkei_node::demo::{CARE_MANAGER, drop_into_outbox};
use renkei_node::env::{Clock, ManualClock, wall_clock_ms};
use renkei_node::federation::{
    Federation, RunningFederation, StartOptions, StoreChoice, Transport, drive_until,
};
use renkei_node::frames::{self, Kind};
use renkei_node::net::{self, DELIVER};
use renkei_node::receipts::read_log;
use renkei_node::samples::SAMPLES;
use renkei_node::status::Status;
use renkei_protocol::ack::{Ack, Verdict};
use renkei_protocol::envelope::{EnvelopeHeader, MessageId, SealParams, seal};

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;

/// The test clock's start: three days after the federation is made (keys and snapshots are
/// dated by the wall clock), as for offices that joined a while ago, whose keys even a clock
/// two days slow sees as valid.
fn start_ms() -> u64 {
    wall_clock_ms() + 3 * DAY as u64
}

/// The care-management office (0) and a service office (1) with `directory_nodes` directory
/// nodes, in memory, on a test clock that starts now; the offices and directory nodes given
/// run that far off it. Waits until both offices hold the directory.
async fn federation(
    dir: &std::path::Path,
    directory_nodes: usize,
    offices_off: &[(usize, i64)],
    directory_off: &[(usize, i64)],
) -> (RunningFederation, ManualClock) {
    let plan = Federation::builder(dir)
        .transport(Transport::Memory)
        .directory_nodes(directory_nodes)
        .office(CARE_MANAGER, "ひかり居宅介護支援事業所", &["43"])
        .office("1310000011", "さくら訪問介護ステーション", &["11"])
        .create()
        .unwrap();
    // Every directory node holds the region (in memory they do not mirror each other), so
    // each admits the offices and answers them.
    for n in &plan.directory_nodes[1..] {
        std::fs::create_dir_all(&n.data).unwrap();
        for f in std::fs::read_dir(&plan.directory_nodes[0].data).unwrap() {
            let f = f.unwrap();
            if f.file_type().unwrap().is_file() {
                std::fs::copy(f.path(), n.data.join(f.file_name())).unwrap();
            }
        }
    }
    let clock = ManualClock::new(start_ms());
    let fed = plan
        .start(StartOptions {
            clock: Arc::new(clock.clone()),
            seed: Some(15),
            store: StoreChoice::Memory,
            office_clock_offsets: offices_off.to_vec(),
            directory_clock_offsets: directory_off.to_vec(),
            ..Default::default()
        })
        .await
        .unwrap();
    let ok = drive_until(
        &clock,
        Duration::from_millis(200),
        Duration::from_secs(60),
        || (0..2).all(|i| fed.node(i).directory_entries() == 2),
    )
    .await;
    assert!(ok, "both offices hold the directory");
    (fed, clock)
}

/// The sample UPPLAN from the care-management office to office 1.
fn sample_plan() -> (&'static str, &'static [u8]) {
    *SAMPLES
        .iter()
        .find(|(n, _)| n.starts_with("UPPLAN_") && n.contains("_1310000011_11_"))
        .unwrap()
}

/// Drops the sample plan into office 0's outbox and moves the clock on until it is in office
/// 1's inbox with its receipt at office 0; returns whether it got there within `within` (real
/// time).
async fn send_plan(fed: &RunningFederation, clock: &ManualClock, within: Duration) -> bool {
    let (name, bytes) = sample_plan();
    drop_into_outbox(fed.plan.home(0), name, bytes).unwrap();
    let inbox = fed.plan.home(1).inbox().join(name);
    drive_until(clock, Duration::from_millis(200), within, || {
        inbox.exists() && fed.node(0).delivered() == 1
    })
    .await
}

/// Office `i`'s status once `f` holds of it (moving the clock on, so that directory nodes
/// are asked their time again), or its last status.
async fn status_when(
    fed: &RunningFederation,
    clock: &ManualClock,
    i: usize,
    f: impl Fn(&Status) -> bool,
) -> Status {
    let end = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let s = fed.node(i).status().await;
        if f(&s) || tokio::time::Instant::now() >= end {
            return s;
        }
        clock.advance(Duration::from_millis(200));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// No status line puts a clock problem down to an unreachable partner.
fn never_unreachable(s: &Status) {
    for e in &s.last_errors {
        assert!(
            !e.contains("unreachable") && !e.contains("停止"),
            "a clock problem reported as an unreachable partner: {e}"
        );
    }
}

/// Office 0 runs `offset` off; the plan is delivered, and office 0 (only) is told its clock
/// is `ja` / `en`. Returns the running federation.
async fn sender_off_delivers(
    dir: &std::path::Path,
    offset: i64,
    ja: &str,
    en: &str,
) -> (RunningFederation, ManualClock) {
    let (fed, clock) = federation(dir, 1, &[(0, offset)], &[]).await;
    assert!(
        send_plan(&fed, &clock, Duration::from_secs(60)).await,
        "delivered: {:#?}",
        fed.node(0).status().await.last_errors
    );
    let want = format!(
        "このパソコンの時計が{ja}。時刻を自動で合わせる設定にしてください / This computer's clock is {en}: set it to update automatically."
    );
    let s = status_when(&fed, &clock, 0, |s| s.clock.warning.is_some()).await;
    assert_eq!(s.clock.warning.as_deref(), Some(want.as_str()), "{s:#?}");
    let offset_seen = s.clock.offset_ms.unwrap();
    assert!(offset_seen.abs_diff(offset) < 10_000, "{offset_seen}");
    never_unreachable(&s);
    let r = fed.node(1).status().await;
    assert_eq!(r.clock.warning, None, "{:#?}", r.clock);
    never_unreachable(&r);
    (fed, clock)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_15_minutes_fast_delivers_and_is_told_its_clock_is_fast() {
    let dir = tempfile::tempdir().unwrap();
    let (fed, clock) = sender_off_delivers(
        dir.path(),
        15 * MIN,
        "約15分進んでいます",
        "about 15 minutes fast",
    )
    .await;
    let home = fed.plan.home(0).clone();
    // `renkei status` says it first, and notes that its times are this clock's.
    assert!(
        drive_until(
            &clock,
            Duration::from_millis(200),
            Duration::from_secs(30),
            || renkei_node::status::read(&home).is_ok_and(|s| s.clock.warning.is_some())
        )
        .await
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_renkei"))
        .args(["status", "--home"])
        .arg(&home.root)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("clock       このパソコンの時計が約15分進んでいます。時刻を自動で合わせる設定にしてください / This computer's clock is about 15 minutes fast: set it to update automatically.\n"),
        "{text}"
    );
    assert!(
        text.contains("times shown are by this computer's clock, which is about 15 minutes fast"),
        "{text}"
    );
    // So do the receipts' times…
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_renkei"))
        .args(["receipts", "--home"])
        .arg(&home.root)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("times shown are by this computer's clock, which is about 15 minutes fast"),
        "{err}"
    );
    // …and a refused file's report.
    let bad = "UPPLAN_202610_1310000001_43_1310000011_11_20261001000000.CSV";
    drop_into_outbox(&home, bad, b"not a plan\r\n").unwrap();
    let report = home.rejected().join(renkei_node::report_name(bad));
    assert!(
        drive_until(
            &clock,
            Duration::from_millis(200),
            Duration::from_secs(30),
            || report.exists()
        )
        .await
    );
    let report = std::fs::read_to_string(report).unwrap();
    assert!(
        report.contains("（表示の時刻はこのパソコンの時計によるもので、その時計は約15分進んでいます / times shown are by this computer's clock, which is about 15 minutes fast）"),
        "{report}"
    );
    fed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_3_hours_fast_delivers() {
    let dir = tempfile::tempdir().unwrap();
    let (fed, _) = sender_off_delivers(
        dir.path(),
        3 * HOUR,
        "約3時間進んでいます",
        "about 3 hours fast",
    )
    .await;
    fed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_2_hours_slow_delivers() {
    let dir = tempfile::tempdir().unwrap();
    let (fed, _) = sender_off_delivers(
        dir.path(),
        -2 * HOUR,
        "約2時間遅れています",
        "about 2 hours slow",
    )
    .await;
    fed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recipient_15_minutes_fast_receives_and_is_told_its_clock_is_fast() {
    let dir = tempfile::tempdir().unwrap();
    let (fed, clock) = federation(dir.path(), 1, &[(1, 15 * MIN)], &[]).await;
    assert!(send_plan(&fed, &clock, Duration::from_secs(60)).await);
    let r = status_when(&fed, &clock, 1, |s| s.clock.warning.is_some()).await;
    assert!(
        r.clock
            .warning
            .as_deref()
            .is_some_and(|w| w.starts_with("このパソコンの時計が約15分進んでいます")),
        "{:#?}",
        r.clock
    );
    // The sender's clock is right: nothing to tell it.
    let s = fed.node(0).status().await;
    assert_eq!(s.clock.warning, None, "{:#?}", s.clock);
    never_unreachable(&s);
    fed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_node_an_hour_off_is_not_taken_for_the_offices_own_clock() {
    let dir = tempfile::tempdir().unwrap();
    // The first directory node, the one that publishes the region, runs an hour fast; the
    // offices still sync from it.
    let (fed, clock) = federation(dir.path(), 3, &[], &[(0, HOUR)]).await;
    assert!(send_plan(&fed, &clock, Duration::from_secs(60)).await);
    for i in 0..2 {
        // Three directory nodes and the partner heard: the two in step outvote the one off.
        let s = status_when(&fed, &clock, i, |s| s.clock.sources >= 4).await;
        assert!(s.clock.sources >= 4, "{:#?}", s.clock);
        assert!(
            s.clock.offset_ms.is_some_and(|o| o.abs() < MIN),
            "{:#?}",
            s.clock
        );
        assert_eq!(s.clock.warning, None);
        never_unreachable(&s);
    }
    fed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_directory_node_off_and_one_partner_conclude_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (fed, clock) = federation(dir.path(), 1, &[], &[(0, -HOUR)]).await;
    assert!(send_plan(&fed, &clock, Duration::from_secs(60)).await);
    for i in 0..2 {
        let s = status_when(&fed, &clock, i, |s| s.clock.sources >= 2).await;
        assert_eq!(s.clock.sources, 2, "{:#?}", s.clock);
        assert_eq!(s.clock.offset_ms, None, "split: not known");
        assert_eq!(s.clock.warning, None);
    }
    fed.shutdown().await;
}

/// Lets office 0 try to send the plan for a while, which cannot succeed; returns both
/// statuses once each has a line containing its text.
async fn refused_for_time(
    fed: &RunningFederation,
    clock: &ManualClock,
    sender_line: &str,
    recipient_line: &str,
) -> (Status, Status) {
    let (name, _) = sample_plan();
    assert!(!send_plan(fed, clock, Duration::from_secs(2)).await);
    assert!(!fed.plan.home(1).inbox().join(name).exists());
    assert_eq!(fed.node(0).queued(), 1, "kept queued, retried");
    let has = |s: &Status, t: &str| s.last_errors.iter().any(|e| e.contains(t));
    let s = status_when(fed, clock, 0, |s| has(s, sender_line)).await;
    let r = status_when(fed, clock, 1, |s| has(s, recipient_line)).await;
    assert!(has(&s, sender_line), "{:#?}", s.last_errors);
    assert!(has(&r, recipient_line), "{:#?}", r.last_errors);
    never_unreachable(&s);
    never_unreachable(&r);
    (s, r)
}

/// A recipient whose clock runs fast takes envelopes from the past: only `max_age_days`
/// bounds that side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recipient_2_days_fast_still_receives() {
    let dir = tempfile::tempdir().unwrap();
    let (fed, clock) = federation(dir.path(), 1, &[(1, 2 * DAY)], &[]).await;
    assert!(send_plan(&fed, &clock, Duration::from_secs(60)).await);
    fed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_2_days_fast_is_refused_and_told_its_clock_is_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let (fed, clock) = federation(dir.path(), 1, &[(0, 2 * DAY)], &[]).await;
    let (s, _) = refused_for_time(
        &fed,
        &clock,
        "送信先 1310000011 が時刻のずれを理由に受け取りを拒否しました。このパソコンの時計が約2日進んでいます。時刻を自動で合わせる設定にしてください。",
        "送信元 1310000001 からのファイルを、時刻のずれのため受け取れませんでした。相手先のパソコンの時計がこのパソコンより約2日進んでいます。",
    )
    .await;
    let w = s.clock.warning.unwrap();
    assert!(
        w.starts_with("このパソコンの時計が約2日進んでいます") && w.contains("no file can be sent"),
        "{w}"
    );
    assert!(
        s.last_errors
            .iter()
            .any(|e| e.contains("this computer's clock is about 2 days fast")),
        "{:#?}",
        s.last_errors
    );
    fed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recipient_2_days_slow_refuses_and_the_sender_is_told_it_is_the_partners_clock() {
    let dir = tempfile::tempdir().unwrap();
    let (fed, clock) = federation(dir.path(), 1, &[(1, -2 * DAY)], &[]).await;
    let (s, r) = refused_for_time(
        &fed,
        &clock,
        "相手先のパソコンの時計がこのパソコンより約2日遅れています。相手先に、時刻を自動で合わせる設定にするよう連絡してください。",
        "送信元 1310000001 からのファイルを、時刻のずれのため受け取れませんでした。このパソコンの時計が約2日遅れています。",
    )
    .await;
    assert_eq!(s.clock.warning, None, "the sender's clock is right");
    assert!(
        s.last_errors
            .iter()
            .any(|e| e.contains("the partner's computer clock is about 2 days behind this one's")),
        "{:#?}",
        s.last_errors
    );
    assert!(
        r.clock
            .warning
            .as_deref()
            .is_some_and(|w| w.starts_with("このパソコンの時計が約2日遅れています")),
        "{:#?}",
        r.clock
    );
    fed.shutdown().await;
}

/// Writes one envelope on a new delivery stream from `from` to `peer` and returns the answer
/// frame.
async fn deliver_raw(from: &net::Net, peer: libp2p::PeerId, envelope: &[u8]) -> (Kind, Vec<u8>) {
    let mut s = from
        .open(peer, DELIVER, Duration::from_secs(10))
        .await
        .unwrap();
    let (h, mut at) = EnvelopeHeader::parse(envelope).unwrap();
    frames::write(&mut s, Kind::Header, &envelope[..at])
        .await
        .unwrap();
    for i in 0..h.chunk_count() {
        let n = h.chunk_len(i);
        frames::write(&mut s, Kind::Chunk, &envelope[at..at + n])
            .await
            .unwrap();
        at += n;
    }
    frames::write(&mut s, Kind::End, &[]).await.unwrap();
    s.flush().await.unwrap();
    let mut buf = Vec::new();
    let kind = frames::read(
        &mut s,
        &mut buf,
        Duration::from_secs(20),
        &[Kind::Ack, Kind::Refuse],
    )
    .await
    .unwrap()
    .expect("an answer");
    (kind, buf)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_envelope_is_still_not_delivered_again_inside_the_wider_window() {
    let dir = tempfile::tempdir().unwrap();
    let plan = Federation::builder(dir.path())
        .transport(Transport::Memory)
        .office(CARE_MANAGER, "ひかり居宅介護支援事業所", &["43"])
        .office("1310000011", "さくら訪問介護ステーション", &["11"])
        .create()
        .unwrap();
    let clock = ManualClock::new(start_ms());
    // The test plays the care-management office with its keys.
    let fed = plan
        .start(StartOptions {
            clock: Arc::new(clock.clone()),
            store: StoreChoice::Memory,
            off: vec![0],
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        drive_until(
            &clock,
            Duration::from_millis(200),
            Duration::from_secs(60),
            || fed.node(1).directory_entries() == 2
        )
        .await
    );
    let sender = fed.plan.home(0).load_keys().unwrap().remove(0);
    let recipient = fed.plan.home(1).load_keys().unwrap().remove(0);
    let (name, bytes) = sample_plan();
    // Sealed by a computer whose clock runs 20 hours fast.
    let envelope = seal(
        &SealParams {
            message_id: MessageId([0x15; 16]),
            created_at: (clock.now_ms() + 20 * HOUR as u64) / 1000,
            sender_office: fed.plan.offices[0].number,
            recipient_office: fed.plan.offices[1].number,
            recipient_key: x25519_dalek::PublicKey::from(&recipient.encryption).to_bytes(),
            file_name: name,
            plaintext_len: bytes.len() as u64,
            plaintext_hash: renkei_protocol::sha256(bytes),
            chunk_size: 1024,
        },
        bytes,
        &sender.identity,
        &mut rand::rng(),
    )
    .unwrap();
    let listen: Vec<libp2p::Multiaddr> = vec!["/memory/915015".parse().unwrap()];
    let us = net::start(
        &sender.identity,
        &listen,
        Arc::new(|_: &libp2p::PeerId| true),
        &net::NetConfig::office().on(&listen),
    )
    .unwrap();
    let peer = net::peer_id_of(&recipient.identity.verifying_key().to_bytes()).unwrap();
    for a in fed.plan.home(1).config().unwrap().listen {
        us.add_address(peer, a.parse().unwrap()).await;
    }
    let (kind, first) = deliver_raw(&us, peer, &envelope).await;
    assert_eq!(
        kind,
        Kind::Ack,
        "accepted from a clock 20 hours fast: {}",
        String::from_utf8_lossy(&first)
    );
    let ack = Ack::parse(&first).unwrap();
    assert_eq!(ack.verdict, Verdict::Accepted);
    let inbox = fed.plan.home(1).inbox().join(name);
    assert_eq!(std::fs::read(&inbox).unwrap(), bytes);
    // The clerk imports the file; twelve hours later the same envelope comes again, still
    // inside the window: answered with the same ack, and nothing is written again.
    std::fs::remove_file(&inbox).unwrap();
    clock.advance(Duration::from_secs(12 * 3600));
    let (kind, again) = deliver_raw(&us, peer, &envelope).await;
    assert_eq!((kind, &again), (Kind::Ack, &first));
    assert!(!inbox.exists(), "a replay wrote the file again");
    let received = read_log(&fed.plan.home(1).receipts()).unwrap();
    assert_eq!(received.len(), 1, "one receipt");
    us.shutdown().await;
    fed.shutdown().await;
}
