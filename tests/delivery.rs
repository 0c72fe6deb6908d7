//! Office nodes as separate processes on loopback: what an office sees in its folders.

mod common;

use std::time::Duration;

use common::*;
use renkei_protocol::FileKind;

const CM: usize = 0;
const SVC: usize = 1;

fn pair() -> Federation {
    federation(&[("1310000001", "43", true), ("1310000011", "11", true)])
}

/// Starts the directory node and both offices' nodes; returns once the sender has the
/// directory.
fn start(fed: &Federation) -> Vec<Proc> {
    let nodes = vec![fed.directory_node(), fed.node(CM), fed.node(SVC)];
    fed.wait_directory(CM, 1);
    nodes
}

#[test]
fn every_file_kind_is_delivered_and_acknowledged() {
    let fed = pair();
    let _nodes = start(&fed);
    let (from, to) = (&fed.offices[CM], &fed.offices[SVC]);
    let mut sent = Vec::new();
    for (i, kind) in FileKind::ALL.iter().enumerate() {
        let marker = format!("配送試験{i:02}");
        let bytes = valid_file(*kind, 3, &marker);
        let name = name_for(*kind, from, to, &stamp(i as u32));
        drop_file(fed.home(CM), &name, &bytes);
        sent.push((name, bytes, marker));
    }
    wait_for(Duration::from_secs(60), "every kind in the inbox", || {
        count(&fed.home(SVC).inbox()) == sent.len()
    });
    wait_for(Duration::from_secs(30), "every file acknowledged", || {
        count(&fed.home(CM).sent()) == sent.len()
    });
    for (name, bytes, _) in &sent {
        assert_eq!(
            &std::fs::read(fed.home(SVC).inbox().join(name)).unwrap(),
            bytes,
            "{name}"
        );
        assert_eq!(
            &std::fs::read(fed.home(CM).sent().join(name)).unwrap(),
            bytes,
            "{name}"
        );
    }
    assert_eq!(count(&fed.home(CM).outbox()), 0);
    assert_eq!(count(&fed.home(CM).rejected()), 0);
    // Both sides hold a verified receipt per file, the sender's with the recipient's ack.
    let out = receipts(fed.home(CM));
    let inn = receipts(fed.home(SVC));
    assert_eq!(out.len(), sent.len());
    assert_eq!(inn.len(), sent.len());
    for r in &out {
        assert_eq!(
            (r.direction.as_str(), r.verdict.as_str()),
            ("sent", "accepted")
        );
        let ack = r.parsed_ack().unwrap();
        assert_eq!(ack.recipient_office.as_str(), "1310000011");
    }
    let markers: Vec<Vec<u8>> = sent.iter().map(|s| marker_bytes(&s.2)).collect();
    let refs: Vec<&[u8]> = markers.iter().map(|m| m.as_slice()).collect();
    assert_state_clean(fed.home(CM), &refs);
    assert_state_clean(fed.home(SVC), &refs);
    // The CLI shows the same receipts and verifies the chain.
    let out = renkei()
        .args(["receipts", "--json", "--home"])
        .arg(&fed.home(CM).root)
        .output()
        .unwrap();
    assert!(out.status.success());
    let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.len(), sent.len());
}

#[test]
fn recipient_down_then_up() {
    let fed = pair();
    let _dn = fed.directory_node();
    let _cm = fed.node(CM);
    fed.wait_directory(CM, 1);
    let (from, to) = (&fed.offices[CM], &fed.offices[SVC]);
    let bytes = valid_file(FileKind::UpPlan, 20, "不在時試験");
    let name = name_for(FileKind::UpPlan, from, to, &stamp(1));
    drop_file(fed.home(CM), &name, &bytes);
    // The file is queued and retried while the recipient is down.
    wait_for(
        Duration::from_secs(30),
        "a failed delivery attempt to be reported",
        || {
            std::fs::read_to_string(fed.home(CM).status()).is_ok_and(|s| {
                s.contains("\"queued\": 1") && s.contains("delivery to") && s.contains("failed")
            })
        },
    );
    // The retries keep one line for the partner, counting them, rather than one line each.
    wait_for(
        Duration::from_secs(30),
        "a repeated attempt counted",
        || std::fs::read_to_string(fed.home(CM).status()).is_ok_and(|s| s.contains(" times]")),
    );
    let status = std::fs::read_to_string(fed.home(CM).status()).unwrap();
    assert_eq!(status.matches("delivery to").count(), 1, "{status}");
    assert!(status.contains("contact the partner") && status.contains("相手先に連絡"));
    assert_eq!(count(&fed.home(CM).sent()), 0);
    let _svc = fed.node(SVC);
    wait_for(
        Duration::from_secs(60),
        "delivery after the recipient came up",
        || count(&fed.home(CM).sent()) == 1,
    );
    // The failed attempts are over: the status no longer lists them as errors.
    wait_for(
        Duration::from_secs(10),
        "the delivery errors cleared from the status",
        || {
            std::fs::read_to_string(fed.home(CM).status())
                .is_ok_and(|s| s.contains("\"delivered\": 1") && !s.contains("delivery to"))
        },
    );
    assert_eq!(
        std::fs::read(fed.home(SVC).inbox().join(&name)).unwrap(),
        bytes
    );
    assert_state_clean(fed.home(CM), &[&marker_bytes("不在時試験")]);
    assert_state_clean(fed.home(SVC), &[&marker_bytes("不在時試験")]);
}

#[test]
fn sender_killed_mid_transfer_then_restarted() {
    let fed = pair();
    let _dn = fed.directory_node();
    let _svc = fed.node(SVC);
    let mut cm = fed.node(CM);
    fed.wait_directory(CM, 1);
    // A large family-structure image so the transfer takes a while.
    let mut bytes = vec![0xFF, 0xD8, 0xFF, 0xE0];
    bytes.extend((0..48u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    bytes.extend_from_slice(&[0xFF, 0xD9]);
    let name = fed.drop(FileKind::UpKihonImage, CM, SVC, 1, &bytes);
    let partial = fed.home(SVC).partial();
    wait_for(Duration::from_secs(30), "the transfer to start", || {
        std::fs::read_dir(&partial)
            .map(|d| d.count() > 0)
            .unwrap_or(false)
    });
    cm.kill();
    assert!(
        !fed.home(SVC).inbox().join(&name).exists(),
        "the file must not appear before it is complete"
    );
    let broken = |s: &str| s.contains("receiving from") && s.contains("stopped");
    wait_for(Duration::from_secs(60), "the break in the status", || {
        std::fs::read_to_string(fed.home(SVC).status()).is_ok_and(|s| broken(&s))
    });
    let _cm = fed.node(CM);
    wait_for(
        Duration::from_secs(90),
        "delivery after the restart",
        || count(&fed.home(CM).sent()) == 1,
    );
    assert_eq!(
        std::fs::read(fed.home(SVC).inbox().join(&name)).unwrap(),
        bytes
    );
    assert_eq!(count(&fed.home(SVC).inbox()), 1, "exactly one copy");
    assert_eq!(receipts(fed.home(SVC)).len(), 1);
    assert_eq!(receipts(fed.home(CM)).len(), 1);
    assert_eq!(count(&partial), 0);
    // Delivered in full after all: the break is no longer shown as a current error.
    wait_for(
        Duration::from_secs(30),
        "the break cleared from the status",
        || std::fs::read_to_string(fed.home(SVC).status()).is_ok_and(|s| !broken(&s)),
    );
    assert_state_clean(fed.home(CM), &[&bytes[100..140]]);
    assert_state_clean(fed.home(SVC), &[&bytes[100..140]]);
}

#[test]
fn recipient_killed_after_writing_before_acking_never_writes_the_file_again() {
    let fed = pair();
    let _dn = fed.directory_node();
    let _cm = fed.node(CM);
    let mut svc = fed.node_with_env(SVC, &[("RENKEI_FAULT", "crash-after-inbox-write")]);
    fed.wait_directory(CM, 1);
    let bytes = valid_file(FileKind::UpPlan, 10, "受信直後停止");
    let name = fed.drop(FileKind::UpPlan, CM, SVC, 1, &bytes);
    // The recipient writes the file durably, then dies before recording or acking it.
    wait_for(Duration::from_secs(30), "the recipient to crash", || {
        matches!(svc.child.try_wait(), Ok(Some(_)))
    });
    assert_eq!(
        std::fs::read(fed.home(SVC).inbox().join(&name)).unwrap(),
        bytes
    );
    assert_eq!(
        count(&fed.home(CM).sent()),
        0,
        "no ack, so the sender still holds it"
    );
    // The care software imports the file (and removes it) before renkei starts again.
    std::fs::remove_file(fed.home(SVC).inbox().join(&name)).unwrap();
    let _svc = fed.node(SVC);
    wait_for(
        Duration::from_secs(60),
        "the retry to be acknowledged",
        || count(&fed.home(CM).sent()) == 1,
    );
    assert_eq!(
        count(&fed.home(SVC).inbox()),
        0,
        "the file taken by the care software is not written again"
    );
    assert_eq!(receipts(fed.home(SVC)).len(), 1);
    assert_eq!(receipts(fed.home(CM)).len(), 1);
    assert_state_clean(fed.home(SVC), &[&marker_bytes("受信直後停止")]);
}

#[test]
fn a_file_naming_another_sender_is_rejected_with_a_report() {
    let fed = pair();
    let _dn = fed.directory_node();
    let _cm = fed.node(CM);
    fed.wait_directory(CM, 1);
    // Named as if the service office sent it.
    let name = name_for(
        FileKind::UpJsk,
        &fed.offices[SVC],
        &fed.offices[CM],
        &stamp(1),
    );
    drop_file(
        fed.home(CM),
        &name,
        &valid_file(FileKind::UpJsk, 2, "なりすまし"),
    );
    let text = wait_rejected(fed.home(CM), &name);
    assert!(text.contains("ROUTE_SENDER"), "{text}");
    assert!(
        text.contains("送信元") && text.contains("sender office"),
        "{text}"
    );
    assert!(fed.home(CM).rejected().join(&name).exists());
    assert_eq!(count(&fed.home(CM).outbox()), 0);
    assert!(receipts(fed.home(CM)).is_empty());
    assert_state_clean(fed.home(CM), &[&marker_bytes("なりすまし")]);
    // A folder dropped into the outbox is not sent, and the office is told so.
    std::fs::create_dir(fed.home(CM).outbox().join("10月分")).unwrap();
    wait_for(Duration::from_secs(20), "a note about the folder", || {
        std::fs::read_to_string(fed.home(CM).status()).is_ok_and(|s| {
            s.contains("10月分") && s.contains("put regular files directly in outbox")
        })
    });
}

#[test]
fn a_file_dropped_again_is_sent_again_with_a_notice() {
    let fed = pair();
    let _nodes = start(&fed);
    let bytes = valid_file(FileKind::UpPlan, 2, "再送試験計画");
    let name = fed.drop(FileKind::UpPlan, CM, SVC, 1, &bytes);
    wait_for(Duration::from_secs(30), "the first delivery", || {
        receipts(fed.home(CM)).len() == 1
    });
    // The clerk drops the same file again.
    drop_file(fed.home(CM), &name, &bytes);
    wait_for(
        Duration::from_secs(30),
        "the second delivery and its notice",
        || {
            receipts(fed.home(CM)).len() == 2
                && std::fs::read_to_string(fed.home(CM).status())
                    .is_ok_and(|s| s.contains("already sent with the same content"))
        },
    );
    let r = receipts(fed.home(SVC));
    assert_eq!(r.len(), 2);
    assert_ne!(
        r[0].message_id, r[1].message_id,
        "a new message, not a replay"
    );
    assert_eq!(
        std::fs::read(fed.home(SVC).inbox().join(&name)).unwrap(),
        bytes
    );
}

#[test]
fn an_invalid_file_never_leaves_the_office() {
    let fed = pair();
    let _nodes = start(&fed);
    let file = valid_file(FileKind::UpPlan, 2, "不正ファイル試験");
    let text = encoding_rs::SHIFT_JIS
        .decode(&file)
        .0
        .replacen("20261001", "20261032", 1);
    let bytes = encoding_rs::SHIFT_JIS.encode(&text).0.into_owned();
    let name = fed.drop(FileKind::UpPlan, CM, SVC, 1, &bytes);
    let text = wait_rejected(fed.home(CM), &name);
    let status_text = || {
        let out = run_ok(renkei().args(["status", "--home"]).arg(&fed.home(CM).root));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(status_text().contains("1 waiting in rejected/"));
    assert!(
        text.contains("[DATE]") && text.contains("1行目") && text.contains("line 1"),
        "{text}"
    );
    assert_eq!(count(&fed.home(SVC).inbox()), 0);
    assert_state_clean(fed.home(CM), &[&marker_bytes("不正ファイル試験")]);
    assert_state_clean(fed.home(SVC), &[&marker_bytes("不正ファイル試験")]);

    // The clerk fixes it and drops it again under the same name: it is delivered, and the
    // old refusal moves out of the way to rejected/resolved/ (kept, not deleted).
    drop_file(fed.home(CM), &name, &file);
    wait_for(Duration::from_secs(30), "the fixed file delivered", || {
        fed.home(SVC).inbox().join(&name).exists()
    });
    wait_for(Duration::from_secs(10), "the old refusal resolved", || {
        let resolved = fed.home(CM).rejected().join("resolved");
        resolved.join(&name).exists() && resolved.join(format!("{name}.error.txt")).exists()
    });
    assert!(!fed.home(CM).rejected().join(&name).exists());
    assert!(status_text().contains("0 waiting in rejected/"));
    assert!(
        !fed.home(CM)
            .rejected()
            .join(format!("{name}.error.txt"))
            .exists()
    );
    assert_eq!(
        std::fs::read(fed.home(CM).rejected().join("resolved").join(&name)).unwrap(),
        bytes,
        "the refused version is kept"
    );
    assert_eq!(
        std::fs::read(fed.home(SVC).inbox().join(&name)).unwrap(),
        file
    );
    wait_for(
        Duration::from_secs(10),
        "its error gone from the status",
        || {
            std::fs::read_to_string(fed.home(CM).status())
                .is_ok_and(|s| s.contains("\"delivered\": 1") && !s.contains(&name))
        },
    );

    // The same mistake and fix once more: the first resolved pair is kept beside the second.
    drop_file(fed.home(CM), &name, &bytes);
    wait_rejected(fed.home(CM), &name);
    drop_file(fed.home(CM), &name, &file);
    wait_for(
        Duration::from_secs(30),
        "the second refusal resolved",
        || {
            let resolved = fed.home(CM).rejected().join("resolved");
            resolved.join(format!("{name}.2")).exists()
                && resolved.join(format!("{name}.error.txt.2")).exists()
        },
    );
    let resolved = fed.home(CM).rejected().join("resolved");
    assert_eq!(count(&resolved), 4);
    assert_eq!(std::fs::read(resolved.join(&name)).unwrap(), bytes);
    assert_eq!(count(&fed.home(CM).rejected()), 1, "only resolved/ is left");
}

#[test]
fn a_thousand_files_arrive_exactly_once() {
    let fed = pair();
    let _nodes = start(&fed);
    let (from, to) = (&fed.offices[CM], &fed.offices[SVC]);
    let mut names = Vec::new();
    for i in 0..1000u32 {
        let kind = [FileKind::UpPlan, FileKind::UpSikyu, FileKind::UpHosoku][i as usize % 3];
        let name = name_for(kind, from, to, &stamp(i / 3));
        drop_file(
            fed.home(CM),
            &name,
            &valid_file(kind, 2, &format!("一括{i:04}")),
        );
        names.push(name);
    }
    wait_for(Duration::from_secs(180), "1,000 files acknowledged", || {
        count(&fed.home(CM).sent()) == 1000
    });
    assert_eq!(count(&fed.home(SVC).inbox()), 1000);
    for n in &names {
        assert!(fed.home(SVC).inbox().join(n).exists(), "{n}");
    }
    let inn = receipts(fed.home(SVC));
    let out = receipts(fed.home(CM));
    assert_eq!(inn.len(), 1000, "each message received once");
    assert_eq!(out.len(), 1000);
    let mut ids: Vec<&str> = inn.iter().map(|r| r.message_id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 1000);
    assert_state_clean(fed.home(CM), &[&marker_bytes("一括0007")]);
    assert_state_clean(fed.home(SVC), &[&marker_bytes("一括0007")]);
}

/// A JPEG family-structure image of `len` bytes.
fn jpeg(len: usize) -> Vec<u8> {
    let mut b = vec![0xFF, 0xD8, 0xFF, 0xE0];
    b.extend((4..len - 2).map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0]));
    b.extend_from_slice(&[0xFF, 0xD9]);
    b
}

#[test]
fn files_over_the_size_limits_are_refused_with_a_report() {
    let fed = pair();
    // The sender sends up to 3 MiB, the recipient takes up to 1 MiB.
    for (i, mb) in [(CM, 3), (SVC, 1)] {
        let mut c = fed.home(i).config().unwrap();
        c.max_file_mb = mb;
        fed.home(i).write_config(&c).unwrap();
    }
    let _nodes = start(&fed);
    let too_big_to_send = fed.drop(FileKind::UpKihonImage, CM, SVC, 1, &jpeg(4 << 20));
    let too_big_to_take = fed.drop(FileKind::UpKihonImage, CM, SVC, 2, &jpeg(2 << 20));
    let small = fed.drop(
        FileKind::UpPlan,
        CM,
        SVC,
        3,
        &valid_file(FileKind::UpPlan, 2, "小さい計画試験"),
    );
    wait_for(
        Duration::from_secs(60),
        "two reports and one delivery",
        || count(&fed.home(CM).rejected()) == 4 && count(&fed.home(CM).sent()) == 1,
    );
    for name in [&too_big_to_send, &too_big_to_take] {
        let report = fed.home(CM).rejected().join(format!("{name}.error.txt"));
        let text = std::fs::read_to_string(&report).unwrap();
        assert!(
            text.contains("FILE_TOO_LARGE") && text.contains("max_file_mb"),
            "{text}"
        );
        assert!(fed.home(CM).rejected().join(name).exists());
    }
    assert!(fed.home(SVC).inbox().join(&small).exists());
    assert_eq!(count(&fed.home(SVC).inbox()), 1);
    assert_eq!(
        count(&fed.home(SVC).partial()),
        0,
        "nothing of a refused file was written"
    );
    // Only the small file has receipts; the refused ones were never acknowledged.
    assert_eq!(receipts(fed.home(CM)).len(), 1);
    assert_eq!(receipts(fed.home(SVC)).len(), 1);
    assert_state_clean(fed.home(SVC), &[&marker_bytes("小さい計画試験")]);
}

#[test]
fn month_end_actuals_from_many_offices_arrive_at_once() {
    // 24 service offices send their 第6表 実績 to one care-management office at the same
    // moment: many inbound streams reach one node together (libp2p-stream drops those that
    // find its one-slot accept queue full; the senders open them again).
    const SENDERS: usize = 24;
    const EACH: u32 = 25;
    let numbers: Vec<String> = (0..=SENDERS).map(|i| format!("13100001{i:02}")).collect();
    let mut offices = vec![(numbers[0].as_str(), "43", true)];
    offices.extend(numbers[1..].iter().map(|n| (n.as_str(), "11", true)));
    let fed = federation(&offices);
    let _dn = fed.directory_node();
    let _nodes: Vec<Proc> = (0..=SENDERS).map(|i| fed.node(i)).collect();
    for i in 0..=SENDERS {
        fed.wait_directory(i, 1);
    }
    let mut names = Vec::new();
    for n in 0..EACH {
        for from in 1..=SENDERS {
            let marker = format!("実績{from}-{n:02}");
            names.push(fed.drop(
                FileKind::UpJsk,
                from,
                CM,
                n + 1,
                &valid_file(FileKind::UpJsk, 3, &marker),
            ));
        }
    }
    let total = SENDERS * EACH as usize;
    wait_for(
        Duration::from_secs(120),
        "every office's actuals acknowledged",
        || (1..=SENDERS).all(|i| count(&fed.home(i).sent()) == EACH as usize),
    );
    assert_eq!(count(&fed.home(CM).inbox()), total);
    for n in &names {
        assert!(fed.home(CM).inbox().join(n).exists(), "{n}");
    }
    let inn = receipts(fed.home(CM));
    assert_eq!(inn.len(), total, "each file received once");
    let mut ids: Vec<&str> = inn.iter().map(|r| r.message_id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), total);
    for i in 1..=SENDERS {
        assert_eq!(receipts(fed.home(i)).len(), EACH as usize);
        assert_state_clean(fed.home(i), &[&marker_bytes(&format!("実績{i}-00"))]);
    }
    assert_state_clean(fed.home(CM), &[&marker_bytes("実績1-00")]);
}

#[test]
fn a_route_between_two_kinds_of_one_office_number_is_delivered() {
    // One office number holding 居宅介護支援 (43) and 訪問介護 (11).
    let fed = federation(&[("1310000001", "43+11", true)]);
    let _dn = fed.directory_node();
    let _node = fed.node(0);
    fed.wait_directory(0, 1);
    let office = &fed.offices[0];
    let to = Office {
        number: office.number,
        kind: renkei_protocol::ServiceKind::parse("11").unwrap(),
        home: office.home.clone(),
        enrolled: true,
    };
    let name = name_for(FileKind::UpPlan, office, &to, &stamp(1));
    let bytes = valid_file(FileKind::UpPlan, 5, "同一番号");
    drop_file(fed.home(0), &name, &bytes);
    wait_for(Duration::from_secs(30), "local delivery", || {
        count(&fed.home(0).sent()) == 1
    });
    assert_eq!(
        std::fs::read(fed.home(0).inbox().join(&name)).unwrap(),
        bytes
    );
    let r = receipts(fed.home(0));
    assert_eq!(
        r.iter().map(|r| r.direction.as_str()).collect::<Vec<_>>(),
        vec!["received", "sent"]
    );
    assert_state_clean(fed.home(0), &[&marker_bytes("同一番号")]);
}

/// Office `i` makes new keys starting now, and the association approves and publishes them.
fn rotate_now(fed: &Federation, i: usize) {
    run_ok(
        renkei()
            .args(["rotate-keys", "--starts-in-hours", "0", "--home"])
            .arg(&fed.home(i).root),
    );
    run_ok(
        renkei()
            .args(["directory", "rotate", "--region"])
            .arg(&fed.region)
            .arg(fed.home(i).root.join("rotation.json")),
    );
    renkei_node::admin::publish(&fed.region, &fed.published).unwrap();
}

#[test]
fn a_key_rotation_never_makes_the_office_disappear() {
    let fed = pair();
    // Switched by hand here (restart below); the next test lets the node switch by itself.
    let mut c = fed.home(SVC).config().unwrap();
    c.switch_keys = false;
    fed.home(SVC).write_config(&c).unwrap();
    let _dn = fed.directory_node();
    let _cm = fed.node(CM);
    let mut svc = fed.node(SVC);
    fed.wait_directory(CM, 1);
    fed.wait_directory(SVC, 1);
    // The service office makes new keys, starting now; the association publishes them.
    rotate_now(&fed, SVC);
    fed.wait_directory(CM, 2);
    fed.wait_directory(SVC, 2);
    // Still running under its old identity, the office receives files sealed to its new key.
    fed.drop(
        FileKind::UpPlan,
        CM,
        SVC,
        1,
        &valid_file(FileKind::UpPlan, 3, "鍵更新前"),
    );
    wait_for(
        Duration::from_secs(60),
        "delivery during the overlap",
        || count(&fed.home(CM).sent()) == 1,
    );
    // With switch_keys = false the node only asks for a restart.
    wait_for(
        Duration::from_secs(30),
        "the status to ask for a restart",
        || {
            std::fs::read_to_string(fed.home(SVC).status())
                .is_ok_and(|s| s.contains("restart the node to use it"))
        },
    );
    // Restarted, it runs under the new identity, and partners reach it there.
    svc.terminate();
    let _svc = fed.node(SVC);
    fed.drop(
        FileKind::UpPlan,
        CM,
        SVC,
        2,
        &valid_file(FileKind::UpPlan, 3, "鍵更新後"),
    );
    wait_for(Duration::from_secs(60), "delivery after the switch", || {
        count(&fed.home(CM).sent()) == 2
    });
    let acks: Vec<[u8; 32]> = receipts(fed.home(CM))
        .iter()
        .map(|r| r.parsed_ack().unwrap().recipient_key)
        .collect();
    assert_ne!(
        acks[0], acks[1],
        "the second ack is signed with the new identity key"
    );
    assert_eq!(count(&fed.home(SVC).inbox()), 2);
    for h in [fed.home(CM), fed.home(SVC)] {
        assert_state_clean(h, &[&marker_bytes("鍵更新前"), &marker_bytes("鍵更新後")]);
    }
}

#[test]
fn a_node_switches_to_its_new_key_by_itself() {
    let fed = pair();
    let _dn = fed.directory_node();
    let _cm = fed.node(CM);
    let mut svc = fed.node(SVC);
    fed.wait_directory(CM, 1);
    fed.wait_directory(SVC, 1);
    let status = || {
        std::fs::read_to_string(fed.home(SVC).status())
            .ok()
            .and_then(|t| serde_json::from_str::<renkei_node::status::Status>(&t).ok())
    };
    let before = status().unwrap().peer_id;
    rotate_now(&fed, SVC);
    // Nobody restarts it: the node sees its new key listed and started, and runs itself again.
    wait_for(
        Duration::from_secs(60),
        "the node under its new key",
        || status().is_some_and(|s| s.running && s.peer_id != before),
    );
    assert!(
        svc.child.try_wait().unwrap().is_none(),
        "the same process carries on"
    );
    assert!(svc.log_text().contains("restarting under it"));
    let name = fed.drop(
        FileKind::UpPlan,
        CM,
        SVC,
        1,
        &valid_file(FileKind::UpPlan, 3, "自動鍵切替"),
    );
    wait_for(Duration::from_secs(60), "delivery to the new key", || {
        count(&fed.home(CM).sent()) == 1
    });
    let ack = receipts(fed.home(CM))[0].parsed_ack().unwrap();
    assert_eq!(
        renkei_node::net::peer_id_of(&ack.recipient_key)
            .unwrap()
            .to_string(),
        status().unwrap().peer_id,
        "acked under the new identity"
    );
    assert!(fed.home(SVC).inbox().join(&name).exists());
    // It switched once, and runs on under the new key (no second restart).
    let log = svc.log_text();
    assert_eq!(log.matches("restarting under it").count(), 1, "{log}");
    assert_eq!(log.matches("node started").count(), 2, "{log}");
    svc.terminate();
    assert_state_clean(fed.home(SVC), &[&marker_bytes("自動鍵切替")]);
}

/// What `renkei status` prints for an office.
fn status_text(home: &renkei_node::home::Home) -> String {
    let out = renkei()
        .args(["status", "--home"])
        .arg(&home.root)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn one_file_that_cannot_be_handled_never_holds_up_the_others() {
    let fed = pair();
    let _nodes = start(&fed);
    let cm = fed.home(CM);
    // A name as long as the file system allows: its report and temporary names must fit.
    let long = format!("{}.CSV", "長".repeat(83));
    assert!(long.len() >= 250 && long.len() <= 255, "{}", long.len());
    drop_file(cm, &long, b"x");
    // And a file whose report cannot be written at all (a folder is in the way).
    let stuck = "UPPLAN_not_a_standard_name.CSV";
    std::fs::create_dir(cm.rejected().join(format!("{stuck}.error.txt"))).unwrap();
    drop_file(cm, stuck, b"y");
    let good = fed.drop(
        FileKind::UpPlan,
        CM,
        SVC,
        1,
        &valid_file(FileKind::UpPlan, 3, "後ろの正しいファイル"),
    );
    wait_for(Duration::from_secs(30), "the valid file delivered", || {
        count(&cm.sent()) == 1
    });
    assert!(cm.sent().join(&good).exists());
    let report = cm.rejected().join(renkei_node::report_name(&long));
    wait_for(Duration::from_secs(10), "the long name refused", || {
        report.exists() && cm.rejected().join(&long).exists()
    });
    let text = std::fs::read_to_string(&report).unwrap();
    assert!(text.contains("NAME_CHARACTERS"), "{text}");
    // The one whose report cannot be written stays, and the office is told.
    assert!(cm.outbox().join(stuck).exists());
    wait_for(Duration::from_secs(10), "a status line about it", || {
        status_text(cm).contains(stuck)
    });
}

#[test]
fn a_queued_file_swapped_for_a_fifo_freezes_nothing() {
    let fed = pair();
    let _dn = fed.directory_node();
    let mut cm = fed.node(CM);
    fed.wait_directory(CM, 1);
    let home = fed.home(CM);
    // Queued while the partner is down.
    let first = fed.drop(
        FileKind::UpPlan,
        CM,
        SVC,
        1,
        &valid_file(FileKind::UpPlan, 3, "FIFOに替わる"),
    );
    wait_for(Duration::from_secs(30), "the file queued", || {
        std::fs::read_to_string(home.status()).is_ok_and(|s| s.contains("\"queued\": 1"))
    });
    // Replaced by a FIFO that nobody writes: opening it for reading would block forever.
    std::fs::remove_file(home.outbox().join(&first)).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(home.outbox().join(&first))
        .status()
        .expect("mkfifo is needed for this test");
    assert!(made.success());
    let second = fed.drop(
        FileKind::UpPlan,
        CM,
        SVC,
        2,
        &valid_file(FileKind::UpPlan, 3, "FIFOの後ろ"),
    );
    let _svc = fed.node(SVC);
    wait_for(Duration::from_secs(60), "the other file delivered", || {
        home.sent().join(&second).exists()
    });
    // The node goes on: its status is fresh and says what the FIFO is.
    wait_for(
        Duration::from_secs(10),
        "a status line about the FIFO",
        || status_text(home).contains("FIFO"),
    );
    let status = status_text(home);
    assert!(status.contains("node        running"), "{status}");
    // SIGTERM stops the node within seconds.
    let t = std::time::Instant::now();
    cm.terminate();
    assert!(
        matches!(cm.child.try_wait(), Ok(Some(s)) if s.success()),
        "the node did not stop cleanly on SIGTERM"
    );
    assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
}

#[test]
fn names_with_control_characters_are_shown_escaped() {
    let fed = pair();
    let _nodes = start(&fed);
    let home = fed.home(CM);
    let name = "UPPLAN\nINFO renkei_node: forged line\u{1b}[31m.CSV";
    drop_file(home, name, b"z");
    let report = home.rejected().join(renkei_node::report_name(name));
    wait_for(Duration::from_secs(30), "the odd name refused", || {
        report.exists()
    });
    wait_for(Duration::from_secs(10), "its status line", || {
        status_text(home).contains("forged line")
    });
    let status = status_text(home);
    assert!(
        status.contains("UPPLAN\\u{a}INFO renkei_node: forged line\\u{1b}[31m.CSV"),
        "{status}"
    );
    assert!(!status.contains('\u{1b}'), "{status}");
    assert!(
        !status
            .lines()
            .any(|l| l.starts_with("INFO renkei_node: forged")),
        "{status}"
    );
    let text = std::fs::read_to_string(&report).unwrap();
    assert!(
        !text.contains('\u{1b}') && !text.contains("\nINFO"),
        "{text}"
    );
}

/// Issue 9: the real mailbox, SIGKILLed with envelopes in it and started again, loses none —
/// the recipient, off until then, gets every file once and the mailbox ends empty.
#[test]
fn a_mailbox_node_killed_with_envelopes_in_it_loses_none() {
    let fed = pair();
    for i in [CM, SVC] {
        let home = fed.home(i);
        let mut c = home.config().unwrap();
        c.mailbox_after_secs = 1;
        c.mailbox_poll_secs = 1;
        home.write_config(&c).unwrap();
    }
    let envelopes = || {
        std::fs::read_dir(fed.published.join("mailbox").join("box").join("1310000011"))
            .map(|d| {
                d.flatten()
                    .filter(|e| e.path().extension().is_some_and(|x| x == "env"))
                    .count()
            })
            .unwrap_or(0)
    };
    let mut dn = fed.directory_node();
    let mut cm = fed.node(CM);
    fed.wait_directory(CM, 1);
    let files: Vec<(String, Vec<u8>)> = (1..=5)
        .map(|n| {
            let bytes = valid_file(FileKind::UpPlan, 5, &format!("預け{n}"));
            (fed.drop(FileKind::UpPlan, CM, SVC, n, &bytes), bytes)
        })
        .collect();
    wait_for(
        Duration::from_secs(60),
        "5 envelopes in the mailbox",
        || envelopes() == files.len(),
    );
    dn.kill();
    cm.terminate();
    let _dn = fed.directory_node();
    let _svc = fed.node(SVC);
    wait_for(Duration::from_secs(60), "every file in the inbox", || {
        files
            .iter()
            .all(|(name, _)| fed.home(SVC).inbox().join(name).exists())
            && envelopes() == 0
    });
    for (name, bytes) in &files {
        assert_eq!(
            &std::fs::read(fed.home(SVC).inbox().join(name)).unwrap(),
            bytes
        );
    }
    assert_eq!(count(&fed.home(SVC).inbox()), files.len(), "each file once");
}
