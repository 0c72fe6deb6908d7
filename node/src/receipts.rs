//! The receipt log (`H/receipts.jsonl`): one JSON line per delivered or received file, each
//! carrying the hash of the line before it, so an office can show an auditor (運営指導) an
//! unbroken record — and the partner's signed ack for every file it sent (SPEC.md §8).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use renkei_protocol::ack::{Ack, Verdict};
use renkei_protocol::name::shown;
use serde::{Deserialize, Serialize};

/// One receipt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// Position in the log, from 1.
    pub seq: u64,
    /// Hash of the previous receipt (64 zeros for the first).
    pub prev: String,
    /// `sent` or `received`.
    pub direction: String,
    /// The message id.
    pub message_id: String,
    /// The standard-spec file name.
    pub file_name: String,
    /// Our office.
    pub office: String,
    /// The other office.
    pub partner: String,
    /// SHA-256 of the plaintext.
    pub sha256: String,
    /// Plaintext bytes.
    pub size: u64,
    /// Sealed bytes on the wire.
    pub sealed_size: u64,
    /// Unix milliseconds the sender queued (sent) or we received the header (received).
    pub started_ms: u64,
    /// Unix milliseconds the ack was verified (sent) or signed (received).
    pub finished_ms: u64,
    /// `accepted` or `rejected`.
    pub verdict: String,
    /// The checker's codes of a rejection.
    pub codes: Vec<String>,
    /// The recipient's signed ack, hex.
    pub ack: String,
    /// SHA-256 over `prev` and this record without `hash`.
    pub hash: String,
}

#[derive(Serialize)]
struct Hashed<'a> {
    seq: u64,
    prev: &'a str,
    direction: &'a str,
    message_id: &'a str,
    file_name: &'a str,
    office: &'a str,
    partner: &'a str,
    sha256: &'a str,
    size: u64,
    sealed_size: u64,
    started_ms: u64,
    finished_ms: u64,
    verdict: &'a str,
    codes: &'a [String],
    ack: &'a str,
}

impl Receipt {
    fn compute_hash(&self) -> String {
        let h = Hashed {
            seq: self.seq,
            prev: &self.prev,
            direction: &self.direction,
            message_id: &self.message_id,
            file_name: &self.file_name,
            office: &self.office,
            partner: &self.partner,
            sha256: &self.sha256,
            size: self.size,
            sealed_size: self.sealed_size,
            started_ms: self.started_ms,
            finished_ms: self.finished_ms,
            verdict: &self.verdict,
            codes: &self.codes,
            ack: &self.ack,
        };
        let bytes = serde_json::to_vec(&h).unwrap_or_default();
        hex::encode(renkei_protocol::sha256(&bytes))
    }

    /// The parsed ack.
    pub fn parsed_ack(&self) -> Option<Ack> {
        Ack::parse(&hex::decode(&self.ack).ok()?).ok()
    }
}

/// What a receipt is about, before it is chained.
#[derive(Clone, Debug)]
pub struct NewReceipt {
    /// `sent` or `received`.
    pub direction: &'static str,
    /// The file name.
    pub file_name: String,
    /// Our office.
    pub office: String,
    /// The other office.
    pub partner: String,
    /// Plaintext bytes.
    pub size: u64,
    /// Sealed bytes.
    pub sealed_size: u64,
    /// Unix ms.
    pub started_ms: u64,
    /// Unix ms.
    pub finished_ms: u64,
    /// The signed ack.
    pub ack: Ack,
}

/// The open log.
#[derive(Debug)]
pub struct ReceiptLog {
    path: PathBuf,
    file: File,
    last_hash: String,
    next_seq: u64,
}

/// Why a log does not verify: the first receipt that fails, by its `seq` and file name.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// A line is not a receipt.
    #[error("受領記録の {0} 行目が受領記録として読めません / line {0} is not a receipt")]
    Unreadable(u64),
    /// A receipt's hash, link or sequence is wrong.
    #[error(
        "受領記録 {0}：連鎖が切れています（書き換え・削除・並べ替え）/ receipt {0}: the chain is broken (edited, removed or reordered)"
    )]
    Broken(u64),
    /// A receipt's ack does not parse, or its signature is invalid.
    #[error(
        "受領記録 {seq}（{}）：受領確認（ack）が読めないか、その署名が検証できません / receipt {seq} ({}): its ack does not parse or its signature does not verify",
        shown(.file_name), shown(.file_name)
    )]
    BadAck {
        /// The receipt's `seq`.
        seq: u64,
        /// Its file name (as written; shown escaped).
        file_name: String,
    },
    /// A receipt's `direction` is neither `sent` nor `received`.
    #[error(
        "受領記録 {seq}（{}）：direction が sent でも received でもありません / receipt {seq} ({}): direction is neither sent nor received",
        shown(.file_name), shown(.file_name)
    )]
    Direction {
        /// The receipt's `seq`.
        seq: u64,
        /// Its file name (as written; shown escaped).
        file_name: String,
    },
    /// A receipt says something else than the ack it carries, which its partner signed.
    #[error(
        "受領記録 {seq}（{}）：{field} が署名された受領確認（ack）と一致しません（受領確認では {ack_says}）/ receipt {seq} ({}): its {field} does not match its signed ack (the ack says {ack_says})",
        shown(.file_name), shown(.file_name)
    )]
    Mismatch {
        /// The receipt's `seq`.
        seq: u64,
        /// Its file name (as written; shown escaped).
        file_name: String,
        /// The receipt field that disagrees (`message_id`, `sha256`, `verdict`, `codes`,
        /// `office`, `partner`).
        field: &'static str,
        /// What the ack says instead.
        ack_says: String,
    },
    /// I/O.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The receipt's `verdict` and `codes` for an ack's verdict.
fn verdict_fields(v: &Verdict) -> (&'static str, Vec<String>) {
    match v {
        Verdict::Accepted => ("accepted", Vec::new()),
        Verdict::Rejected(f) => ("rejected", f.iter().map(|x| x.code.clone()).collect()),
    }
}

/// Checks that a receipt says what its ack says: the same message, plaintext hash, verdict and
/// codes, and offices that fit its direction (SPEC.md §8).
fn check_fields(r: &Receipt, ack: &Ack) -> Result<(), ChainError> {
    let (office, partner) = match r.direction.as_str() {
        "sent" => (ack.sender_office, ack.recipient_office),
        "received" => (ack.recipient_office, ack.sender_office),
        _ => {
            return Err(ChainError::Direction {
                seq: r.seq,
                file_name: r.file_name.clone(),
            });
        }
    };
    let (verdict, codes) = verdict_fields(&ack.verdict);
    let checks = [
        (
            "message_id",
            r.message_id == hex::encode(ack.message_id.0),
            hex::encode(ack.message_id.0),
        ),
        (
            "sha256",
            r.sha256 == hex::encode(ack.plaintext_hash),
            hex::encode(ack.plaintext_hash),
        ),
        ("verdict", r.verdict == verdict, verdict.to_string()),
        ("codes", r.codes == codes, format!("[{}]", codes.join(","))),
        ("office", r.office == office.as_str(), office.to_string()),
        (
            "partner",
            r.partner == partner.as_str(),
            partner.to_string(),
        ),
    ];
    match checks.into_iter().find(|(_, same, _)| !same) {
        None => Ok(()),
        Some((field, _, ack_says)) => Err(ChainError::Mismatch {
            seq: r.seq,
            file_name: r.file_name.clone(),
            field,
            ack_says,
        }),
    }
}

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Reads and verifies a whole log: the chain, each ack's signature against the key it names,
/// and each receipt's fields against its ack. Whether that key was the office's is
/// [`verify_keys`]' part.
pub fn read_log(path: &Path) -> Result<Vec<Receipt>, ChainError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out: Vec<Receipt> = Vec::new();
    let mut prev = GENESIS.to_string();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line?;
        let n = i as u64 + 1;
        if line.trim().is_empty() {
            continue;
        }
        let r: Receipt = serde_json::from_str(&line).map_err(|_| ChainError::Unreadable(n))?;
        if r.prev != prev || r.seq != out.len() as u64 + 1 || r.compute_hash() != r.hash {
            return Err(ChainError::Broken(r.seq));
        }
        let ack = r
            .parsed_ack()
            .filter(|a| a.verify_self_signed().is_ok())
            .ok_or_else(|| ChainError::BadAck {
                seq: r.seq,
                file_name: r.file_name.clone(),
            })?;
        check_fields(&r, &ack)?;
        prev = r.hash.clone();
        out.push(r);
    }
    Ok(out)
}

/// A crash while appending can leave a last line without its newline. Nothing on such a
/// line was acknowledged (acks follow the fsync), so it is cut off, with a warning.
fn repair_torn_tail(path: &Path) -> std::io::Result<()> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if bytes.is_empty() || bytes.ends_with(b"\n") {
        return Ok(());
    }
    let keep = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    tracing::warn!(path = %path.display(), "receipt log ends in a torn line from a crash; removing it");
    let f = OpenOptions::new().write(true).open(path)?;
    f.set_len(keep as u64)?;
    f.sync_all()
}

impl ReceiptLog {
    /// Opens the log, verifying the chain so far.
    pub fn open(path: &Path) -> Result<(ReceiptLog, Vec<Receipt>), ChainError> {
        repair_torn_tail(path)?;
        let existing = read_log(path)?;
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let last_hash = existing
            .last()
            .map(|r| r.hash.clone())
            .unwrap_or_else(|| GENESIS.to_string());
        let next_seq = existing.len() as u64 + 1;
        Ok((
            ReceiptLog {
                path: path.to_path_buf(),
                file,
                last_hash,
                next_seq,
            },
            existing,
        ))
    }

    /// Appends receipts and makes them durable with one fsync.
    pub fn append(&mut self, batch: Vec<NewReceipt>) -> std::io::Result<Vec<Receipt>> {
        let mut text = String::new();
        let mut out = Vec::with_capacity(batch.len());
        for n in batch {
            let (verdict, codes) = verdict_fields(&n.ack.verdict);
            let mut r = Receipt {
                seq: self.next_seq,
                prev: self.last_hash.clone(),
                direction: n.direction.to_string(),
                message_id: hex::encode(n.ack.message_id.0),
                file_name: n.file_name,
                office: n.office,
                partner: n.partner,
                sha256: hex::encode(n.ack.plaintext_hash),
                size: n.size,
                sealed_size: n.sealed_size,
                started_ms: n.started_ms,
                finished_ms: n.finished_ms,
                verdict: verdict.to_string(),
                codes,
                ack: hex::encode(n.ack.to_bytes()),
                hash: String::new(),
            };
            r.hash = r.compute_hash();
            self.last_hash = r.hash.clone();
            self.next_seq += 1;
            text.push_str(&serde_json::to_string(&r).unwrap_or_default());
            text.push('\n');
            out.push(r);
        }
        self.file.write_all(text.as_bytes())?;
        self.file.sync_data()?;
        Ok(out)
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use renkei_protocol::OfficeNumber;
    use renkei_protocol::envelope::MessageId;

    fn receipt(i: u8) -> NewReceipt {
        let key = SigningKey::from_bytes(&[3; 32]);
        let ack = Ack::sign(
            MessageId([i; 16]),
            [i; 32],
            OfficeNumber::parse("1310000001").unwrap(),
            OfficeNumber::parse("1310000011").unwrap(),
            1000,
            Verdict::Accepted,
            &key,
        );
        NewReceipt {
            direction: "sent",
            file_name: format!("F{i}"),
            office: "1310000001".into(),
            partner: "1310000011".into(),
            size: 10,
            sealed_size: 300,
            started_ms: 1,
            finished_ms: 2,
            ack,
        }
    }

    #[test]
    fn chain_verifies_and_detects_edits() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.jsonl");
        let (mut log, old) = ReceiptLog::open(&p).unwrap();
        assert!(old.is_empty());
        log.append(vec![receipt(1), receipt(2)]).unwrap();
        drop(log);
        let (mut log, old) = ReceiptLog::open(&p).unwrap();
        assert_eq!(old.len(), 2);
        log.append(vec![receipt(3)]).unwrap();
        assert_eq!(read_log(&p).unwrap().len(), 3);

        let text = std::fs::read_to_string(&p).unwrap();
        // Edit a field.
        std::fs::write(&p, text.replacen("\"F2\"", "\"F9\"", 1)).unwrap();
        assert!(matches!(read_log(&p), Err(ChainError::Broken(2))));
        // Remove a line.
        let lines: Vec<&str> = text.lines().collect();
        std::fs::write(&p, format!("{}\n{}\n", lines[0], lines[2])).unwrap();
        assert!(matches!(read_log(&p), Err(ChainError::Broken(3))));
    }

    #[test]
    fn a_torn_last_line_is_cut_off_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.jsonl");
        let (mut log, _) = ReceiptLog::open(&p).unwrap();
        log.append(vec![receipt(1), receipt(2)]).unwrap();
        drop(log);
        let mut text = std::fs::read_to_string(&p).unwrap();
        text.push_str("{\"seq\":3,\"prev\":\"ab");
        std::fs::write(&p, &text).unwrap();
        let (mut log, old) = ReceiptLog::open(&p).unwrap();
        assert_eq!(old.len(), 2);
        log.append(vec![receipt(3)]).unwrap();
        assert_eq!(read_log(&p).unwrap().len(), 3);
    }

    /// Edits receipt `seq` and recomputes the chain from there on, as someone who can rewrite
    /// the whole log would: the chain itself still verifies.
    pub(crate) fn rehash(path: &Path, seq: u64, edit: impl Fn(&mut Receipt)) {
        let text = std::fs::read_to_string(path).unwrap();
        let mut prev = GENESIS.to_string();
        let mut out = String::new();
        for line in text.lines() {
            let mut r: Receipt = serde_json::from_str(line).unwrap();
            if r.seq == seq {
                edit(&mut r);
            }
            r.prev = prev;
            r.hash = r.compute_hash();
            prev = r.hash.clone();
            out.push_str(&serde_json::to_string(&r).unwrap());
            out.push('\n');
        }
        std::fs::write(path, out).unwrap();
    }

    fn log_of(dir: &Path, batch: Vec<NewReceipt>) -> PathBuf {
        let p = dir.join("r.jsonl");
        let _ = std::fs::remove_file(&p);
        let (mut log, _) = ReceiptLog::open(&p).unwrap();
        log.append(batch).unwrap();
        p
    }

    fn rejected(i: u8) -> NewReceipt {
        let key = SigningKey::from_bytes(&[4; 32]);
        let finding = |code: &str| renkei_protocol::ack::AckFinding {
            line: 3,
            field: 10,
            code: code.into(),
        };
        let ack = Ack::sign(
            MessageId([i; 16]),
            [i; 32],
            OfficeNumber::parse("1310000011").unwrap(),
            OfficeNumber::parse("1310000001").unwrap(),
            1000,
            Verdict::Rejected(vec![finding("DATE"), finding("REQUIRED")]),
            &key,
        );
        NewReceipt {
            direction: "received",
            file_name: format!("F{i}"),
            office: "1310000001".into(),
            partner: "1310000011".into(),
            size: 10,
            sealed_size: 300,
            started_ms: 1,
            finished_ms: 2,
            ack,
        }
    }

    #[test]
    fn a_rehashed_receipt_that_disagrees_with_its_ack_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let batch = || vec![receipt(1), rejected(2), receipt(3)];
        // The node's own writes pass, sent and received, accepted and rejected.
        let p = log_of(dir.path(), batch());
        assert_eq!(read_log(&p).unwrap().len(), 3);

        type Edit = fn(&mut Receipt);
        let edits: [(u64, &str, Edit); 11] = [
            // What the outside testers did: another partner, file and hash at once (the
            // first field that disagrees is named).
            (1, "sha256", |r| {
                r.partner = "1310000099".into();
                r.file_name = "F9".into();
                r.sha256 = hex::encode([9u8; 32]);
            }),
            (1, "sha256", |r| r.sha256 = hex::encode([9u8; 32])),
            (3, "sha256", |r| r.sha256.truncate(8)),
            (3, "message_id", |r| r.message_id = hex::encode([9u8; 16])),
            (3, "partner", |r| r.partner = "1310000099".into()),
            (3, "office", |r| r.office = "1310000099".into()),
            (3, "verdict", |r| r.verdict = "rejected".into()),
            (2, "verdict", |r| {
                r.verdict = "accepted".into();
                r.codes.clear();
            }),
            (2, "codes", |r| r.codes.truncate(1)),
            // A received receipt turned into a sent one: the offices no longer fit.
            (2, "office", |r| r.direction = "sent".into()),
            (2, "partner", |r| r.partner = r.office.clone()),
        ];
        for (seq, field, edit) in edits {
            let p = log_of(dir.path(), batch());
            rehash(&p, seq, edit);
            match read_log(&p) {
                Err(ChainError::Mismatch {
                    seq: s, field: f, ..
                }) if s == seq && f == field => {}
                other => panic!("receipt {seq}, {field}: {other:?}"),
            }
        }

        let p = log_of(dir.path(), batch());
        rehash(&p, 2, |r| r.direction = "forwarded".into());
        assert!(matches!(
            read_log(&p),
            Err(ChainError::Direction { seq: 2, .. })
        ));

        // The message names the receipt, its file (escaped) and the field.
        let p = log_of(dir.path(), batch());
        rehash(&p, 3, |r| {
            r.file_name = "F3\n\x1b[31mforged".into();
            r.sha256 = "abc".into();
        });
        let e = read_log(&p).unwrap_err().to_string();
        assert!(
            e.contains("receipt 3 (F3\\u{a}\\u{1b}[31mforged): its sha256 does not match")
                && e.contains(&hex::encode([3u8; 32]))
                && e.contains("受領記録 3"),
            "{e}"
        );
        assert!(!e.contains('\n') && !e.contains('\x1b'), "{e}");
    }
}
