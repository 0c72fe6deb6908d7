//! `renkei receipts` as an office or an auditor runs it on a log someone may have rewritten:
//! every receipt is checked against its signed ack, and every ack's key against the office's
//! cached directory. The logs are written here directly (no nodes run); the cache holds the
//! association's published files, as a node's would after syncing.

mod common;

use std::path::Path;
use std::process::Output;

use common::*;
use ed25519_dalek::SigningKey;
use renkei_node::env::wall_clock_ms;
use renkei_node::home::Home;
use renkei_node::receipts::{NewReceipt, Receipt, ReceiptLog};
use renkei_protocol::OfficeNumber;
use renkei_protocol::ack::{Ack, Verdict};
use renkei_protocol::envelope::MessageId;

const CM: usize = 0;
const SVC: usize = 1;

/// Two enrolled offices whose directory caches hold the published directory.
fn offices() -> Federation {
    let fed = federation(&[("1310000001", "43", true), ("1310000011", "11", true)]);
    for o in &fed.offices {
        let cache = o.home.directory_cache();
        std::fs::create_dir_all(&cache).unwrap();
        for e in std::fs::read_dir(&fed.published).unwrap().flatten() {
            std::fs::copy(e.path(), cache.join(e.file_name())).unwrap();
        }
    }
    fed
}

fn identity(home: &Home) -> SigningKey {
    home.load_keys().unwrap().remove(0).identity
}

/// A receipt of a file sent by `from` to `to`, acknowledged by `to` with `signer`, as the
/// office `ours` keeps it.
fn receipt(
    fed: &Federation,
    ours: usize,
    (from, to): (usize, usize),
    signer: &SigningKey,
    id: u8,
    file_name: &str,
) -> NewReceipt {
    let office = |i: usize| fed.offices[i].number;
    let ack = Ack::sign(
        MessageId([id; 16]),
        [id; 32],
        office(from),
        office(to),
        // After the directory was issued (the federation published it just now).
        wall_clock_ms() / 1000 + 60,
        Verdict::Accepted,
        signer,
    );
    let partner: OfficeNumber = if ours == from {
        office(to)
    } else {
        office(from)
    };
    NewReceipt {
        direction: if ours == from { "sent" } else { "received" },
        file_name: file_name.into(),
        office: office(ours).to_string(),
        partner: partner.to_string(),
        size: 100,
        sealed_size: 400,
        started_ms: 1_790_000_000_000,
        finished_ms: 1_790_000_001_000,
        ack,
    }
}

fn name(n: u32) -> String {
    format!("UPPLAN_202610_1310000001_43_1310000011_11_2026102509304{n}.CSV")
}

/// The care manager's log: a file sent to the service office (acked with its key) and one
/// received from it (acked with our own).
fn honest_log(fed: &Federation) {
    let cm = identity(fed.home(CM));
    let svc = identity(fed.home(SVC));
    let (mut log, _) = ReceiptLog::open(&fed.home(CM).receipts()).unwrap();
    log.append(vec![
        receipt(fed, CM, (CM, SVC), &svc, 1, &name(1)),
        receipt(fed, CM, (SVC, CM), &cm, 2, &name(2)),
    ])
    .unwrap();
}

fn receipts_cmd(home: &Home) -> (Output, String, String) {
    let out = renkei()
        .args(["receipts", "--home"])
        .arg(&home.root)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    let stderr = String::from_utf8(out.stderr.clone()).unwrap();
    (out, stdout, stderr)
}

/// Edits receipt `seq` and recomputes the chain after it by the rule of SPEC.md §8, as
/// someone who can rewrite the whole log would.
fn rehash(path: &Path, seq: u64, edit: impl Fn(&mut Receipt)) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut prev = "0".repeat(64);
    let mut out = String::new();
    for line in text.lines() {
        let mut r: Receipt = serde_json::from_str(line).unwrap();
        if r.seq == seq {
            edit(&mut r);
        }
        r.prev = prev;
        r.hash = String::new();
        let json = serde_json::to_string(&r).unwrap();
        let unhashed = format!("{}}}", json.strip_suffix(",\"hash\":\"\"}").unwrap());
        r.hash = hex::encode(renkei_protocol::sha256(unhashed.as_bytes()));
        prev = r.hash.clone();
        out.push_str(&serde_json::to_string(&r).unwrap());
        out.push('\n');
    }
    std::fs::write(path, out).unwrap();
}

#[test]
fn an_honest_log_verifies_fully() {
    let fed = offices();
    honest_log(&fed);
    let (out, stdout, stderr) = receipts_cmd(fed.home(CM));
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let last = stdout.lines().last().unwrap();
    assert!(
        last.contains("2 receipts: chain ok")
            && last.contains("1 by the directory")
            && last.contains("1 as our own key"),
        "{stdout}"
    );
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
}

#[test]
fn a_receipt_rewritten_against_its_ack_is_refused() {
    let fed = offices();
    honest_log(&fed);
    // Another partner, file and hash than the ack says, with the chain recomputed.
    rehash(&fed.home(CM).receipts(), 1, |r| {
        r.partner = "1310000099".into();
        r.file_name = name(9);
        r.sha256 = hex::encode([9u8; 32]);
    });
    let (out, stdout, stderr) = receipts_cmd(fed.home(CM));
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains(&format!(
            "receipt 1 ({}): its sha256 does not match",
            name(9)
        )) && stderr.contains("受領記録 1"),
        "{stderr}"
    );
    assert!(!stdout.contains("chain ok"), "{stdout}");
}

#[test]
fn a_short_hash_is_an_error_not_a_panic() {
    let fed = offices();
    honest_log(&fed);
    rehash(&fed.home(CM).receipts(), 2, |r| r.sha256 = "abc".into());
    let (out, stdout, stderr) = receipts_cmd(fed.home(CM));
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains(&format!(
            "receipt 2 ({}): its sha256 does not match",
            name(2)
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn an_appended_ack_signed_by_a_key_not_in_the_directory_fails() {
    let fed = offices();
    honest_log(&fed);
    // A well-formed, validly self-signed ack "from" the service office, by a stranger's key.
    let stranger = SigningKey::from_bytes(&[77; 32]);
    let (mut log, _) = ReceiptLog::open(&fed.home(CM).receipts()).unwrap();
    log.append(vec![receipt(&fed, CM, (CM, SVC), &stranger, 3, &name(3))])
        .unwrap();
    drop(log);
    let (out, stdout, stderr) = receipts_cmd(fed.home(CM));
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!(
            "receipt 3 ({}): 不合格：この受領確認より前に発行された名簿に",
            name(3)
        )) && stdout.contains("does not list the key that signed it for office 1310000011"),
        "{stdout}"
    );
    let last = stdout.lines().last().unwrap();
    assert!(
        last.contains("3 receipts: chain ok")
            && last.contains("1 by the directory")
            && last.contains("1 FAIL (receipt 3)"),
        "{last}"
    );
}

#[test]
fn without_the_partners_entry_receipts_are_not_verifiable_here() {
    let fed = offices();
    honest_log(&fed);
    std::fs::remove_dir_all(fed.home(CM).directory_cache()).unwrap();
    let (out, stdout, stderr) = receipts_cmd(fed.home(CM));
    assert_eq!(out.status.code(), Some(3), "{stdout}{stderr}");
    assert!(
        stdout.contains("receipt 1")
            && stdout.contains(
                "not verifiable here: the cached directory has no entry for office 1310000011"
            ),
        "{stdout}"
    );
    let last = stdout.lines().last().unwrap();
    assert!(
        last.contains("0 by the directory")
            && last.contains("1 as our own key")
            && last.contains("1 not verifiable here (receipt 1)")
            && !last.contains("FAIL"),
        "{last}"
    );
}

#[test]
fn names_with_control_characters_are_shown_escaped() {
    let fed = offices();
    let svc = identity(fed.home(SVC));
    // A name that would print a forged receipt line and clear the real one.
    let forged = format!("{}\n    9 sent     forged\x1b[2K\u{202e}", name(4));
    let (mut log, _) = ReceiptLog::open(&fed.home(CM).receipts()).unwrap();
    log.append(vec![receipt(&fed, CM, (CM, SVC), &svc, 4, &forged)])
        .unwrap();
    drop(log);
    let (out, stdout, stderr) = receipts_cmd(fed.home(CM));
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    assert!(
        stdout.contains(&format!(
            "{}\\u{{a}}    9 sent     forged\\u{{1b}}[2K\\u{{202e}} sha256:",
            name(4)
        )),
        "{stdout}"
    );
    assert!(!stdout.contains('\x1b') && !stdout.contains('\u{202e}'));
}
