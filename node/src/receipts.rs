//! The receipt log (`H/receipts.jsonl`): one JSON line per delivered or received file, each
//! carrying the hash of the line before it, so an office can show an auditor (運営指導) an
//! unbroken record — and the partner's signed ack for every file it sent (SPEC.md §8).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use renkei_protocol::ack::{Ack, Verdict};
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

/// A broken chain.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// A line is not a receipt.
    #[error("line {0} is not a receipt")]
    Unreadable(u64),
    /// A receipt's hash, link or sequence is wrong.
    #[error("receipt {0}: the chain is broken (edited, removed or reordered)")]
    Broken(u64),
    /// A receipt's ack signature is invalid.
    #[error("receipt {0}: the ack signature does not verify")]
    BadAck(u64),
    /// I/O.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Reads and verifies a whole log.
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
        let ack = r.parsed_ack().ok_or(ChainError::BadAck(r.seq))?;
        if ack.verify_self_signed().is_err() || hex::encode(ack.message_id.0) != r.message_id {
            return Err(ChainError::BadAck(r.seq));
        }
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
            let (verdict, codes) = match &n.ack.verdict {
                Verdict::Accepted => ("accepted", Vec::new()),
                Verdict::Rejected(f) => ("rejected", f.iter().map(|x| x.code.clone()).collect()),
            };
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
}
