//! The receipt log (`H/receipts.jsonl`): one JSON line per delivered or received file, each
//! carrying the hash of the line before it, so an office can show an auditor (運営指導) an
//! unbroken record — and the partner's signed ack for every file it sent (SPEC.md §8).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use renkei_directory::{Anchor, Directory};
use renkei_protocol::OfficeNumber;
use renkei_protocol::ack::{Ack, Verdict};
use renkei_protocol::name::shown;
use serde::{Deserialize, Serialize};

use crate::dirsync::DirFolder;
use crate::home::{Home, parse_office};

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
    /// A failed append could not be undone: no more appends until the log is opened again.
    broken: bool,
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

/// Our own office, for [`verify_keys`]: its number and the public halves of all its key
/// files (every generation, so acks signed before a rotation still count as ours).
#[derive(Clone, Debug)]
pub struct OwnOffice {
    /// Our office number.
    pub office: OfficeNumber,
    /// Our Ed25519 identity keys.
    pub keys: Vec<[u8; 32]>,
}

/// What [`verify_keys`] found for one receipt's ack key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyCheck {
    /// The directory lists the key for the acknowledging office, with a window that contains
    /// the ack's `received_at`.
    Listed {
        /// The office is revoked now (it was not necessarily when it signed).
        revoked_now: bool,
    },
    /// Signed by one of our own key files, for our own office.
    Own,
    /// Not verifiable here: the cached directory has no entry for the office.
    NoEntry(OfficeNumber),
    /// Not verifiable here: the directory does not list the key for the office, but the ack
    /// is older than the region's directory, so the key may be one the office retired and
    /// the directory dropped since (keys past their window are dropped at publishing).
    NotListedNow {
        /// The acknowledging office.
        office: OfficeNumber,
        /// When the region's cached directory was issued (Unix seconds).
        issued_at: u64,
    },
    /// Not verifiable here: no directory to check against (and why).
    NoDirectory(String),
    /// Fails: the directory lists the key for the office, but not at the ack's time.
    OutsideWindow {
        /// The acknowledging office.
        office: OfficeNumber,
        /// The ack's time.
        received_at: u64,
        /// The key's window.
        valid_from: u64,
        /// The key's window.
        valid_until: u64,
    },
    /// Fails: the directory, issued before the ack was signed, does not list the key for the
    /// office, so the office did not sign it.
    UnknownKey {
        /// The acknowledging office.
        office: OfficeNumber,
    },
    /// Fails: the receipt is another office's, not ours.
    OtherOffice,
}

impl KeyCheck {
    /// The key is shown to be the office's.
    pub fn verified(&self) -> bool {
        matches!(self, KeyCheck::Listed { .. } | KeyCheck::Own)
    }

    /// The receipt is shown to be false.
    pub fn fails(&self) -> bool {
        matches!(
            self,
            KeyCheck::OutsideWindow { .. } | KeyCheck::UnknownKey { .. } | KeyCheck::OtherOffice
        )
    }

    /// What it means, in Japanese and English, with what to do when it is not verified.
    pub fn explain(&self) -> String {
        let day = |secs: u64| crate::env::jst(secs.saturating_mul(1000));
        match self {
            KeyCheck::Listed { revoked_now: false } => {
                "署名鍵は名簿に載っている相手先の鍵です / signed by a key the directory lists for the office".into()
            }
            KeyCheck::Listed { revoked_now: true } => {
                "署名鍵は名簿に載っている相手先の鍵です（この事業所は現在、登録を取り消されています）/ signed by a key the directory lists for the office (the office is revoked now)".into()
            }
            KeyCheck::Own => "自事業所の鍵で署名 / signed by our own key".into(),
            KeyCheck::NoEntry(o) => format!(
                "ここでは確認できません：保存された名簿に事業所 {o} がありません。ノードを起動して名簿を同期するか、協会に確認してください / not verifiable here: the cached directory has no entry for office {o}; run the node to sync the directory, or ask your association"
            ),
            KeyCheck::NotListedNow { office, issued_at } => format!(
                "ここでは確認できません：{issued} 発行の名簿は、この受領確認の署名鍵を事業所 {office} の鍵として載せていません。それ以前に役目を終えた鍵は名簿から消えるため、当時の名簿で協会に確認してください。当時の名簿にもなければ偽造です / not verifiable here: the directory issued {issued} does not list the key that signed this ack for office {office}; keys retired before then are dropped from it, so check with your association against the directory of the time: if that does not list it either, the receipt is forged",
                issued = day(*issued_at)
            ),
            KeyCheck::NoDirectory(why) => format!(
                "ここでは確認できません：名簿がありません / not verifiable here: no directory ({why})"
            ),
            KeyCheck::OutsideWindow {
                office,
                received_at,
                valid_from,
                valid_until,
            } => format!(
                "不合格：署名鍵は事業所 {office} の鍵ですが、署名時刻 {at} はその有効期間（{from}〜{until}）の外です。管理者に連絡してください / FAILS: the key is office {office}'s, but the ack's time {at} is outside its window ({from} to {until}); contact your administrator",
                at = day(*received_at),
                from = day(*valid_from),
                until = day(*valid_until)
            ),
            KeyCheck::UnknownKey { office } => format!(
                "不合格：この受領確認より前に発行された名簿に、その署名鍵は事業所 {office} の鍵として載っていません。相手先が署名したものではありません。管理者に連絡してください（名簿が古い場合は、ノードに名簿を同期させてから再確認してください）/ FAILS: the directory, issued before this ack, does not list the key that signed it for office {office}: the office did not sign it; contact your administrator (if the cached directory is out of date, let the node sync it and check again)"
            ),
            KeyCheck::OtherOffice => {
                "不合格：この受領記録は自事業所のものではありません（office が違います）。管理者に連絡してください / FAILS: this receipt is not our office's (another office number); contact your administrator".into()
            }
        }
    }
}

/// Checks, for each receipt of a log that [`read_log`] verified, that its ack was signed by
/// the acknowledging office: by an identity key the directory lists for that office with a
/// window containing the ack's `received_at`, or, for acks our own office signed, by one of
/// our own key files (SPEC.md §8). One answer per receipt, in order.
pub fn verify_keys(list: &[Receipt], dir: &Directory, own: &OwnOffice) -> Vec<KeyCheck> {
    list.iter().map(|r| verify_key(r, dir, own)).collect()
}

fn verify_key(r: &Receipt, dir: &Directory, own: &OwnOffice) -> KeyCheck {
    if r.office != own.office.as_str() {
        return KeyCheck::OtherOffice;
    }
    let Some(ack) = r.parsed_ack() else {
        // read_log refuses such a log; a list from elsewhere gets no pass.
        return KeyCheck::NoDirectory("the ack does not parse".into());
    };
    let office = ack.recipient_office;
    if office == own.office && own.keys.contains(&ack.recipient_key) {
        return KeyCheck::Own;
    }
    let mut found = None;
    for region in dir.regions() {
        match region.entries.get(&office) {
            Ok(Some(e)) => {
                found = Some((e, region.issued_at));
                break;
            }
            Ok(None) => {}
            Err(e) => return KeyCheck::NoDirectory(e.to_string()),
        }
    }
    let Some((entry, issued_at)) = found else {
        return KeyCheck::NoEntry(office);
    };
    let at = ack.received_at;
    let mut keys = entry
        .keys
        .iter()
        .filter(|k| k.identity == ack.recipient_key)
        .peekable();
    let Some(first) = keys.peek().copied() else {
        // A key dropped from the directory had a window that ended before the publishing
        // that dropped it, so an ack signed after the cached directory was issued cannot
        // have been signed by one.
        return if at >= issued_at {
            KeyCheck::UnknownKey { office }
        } else {
            KeyCheck::NotListedNow { office, issued_at }
        };
    };
    if keys.any(|k| k.valid_at(at)) {
        KeyCheck::Listed {
            revoked_now: !entry.is_active(),
        }
    } else {
        KeyCheck::OutsideWindow {
            office,
            received_at: at,
            valid_from: first.valid_from,
            valid_until: first.valid_until,
        }
    }
}

/// What `renkei receipts` found: the verified log, and each receipt's key check.
#[derive(Debug)]
pub struct Audit {
    /// The receipts, chain and fields verified.
    pub receipts: Vec<Receipt>,
    /// One key check per receipt.
    pub keys: Vec<KeyCheck>,
    /// Directory files in the cache that did not verify (skipped).
    pub directory_problems: Vec<String>,
    /// The mailboxes' deletion statements kept in `statements.jsonl`, each with what is wrong
    /// with it (`None`: verified against a directory node the cached directory lists).
    pub statements: Vec<(KeptStatement, Option<String>)>,
    /// The imported statements kept in `imported.jsonl` (ours and partners'), each with what is
    /// wrong with it (`None`: verified, ours by our key files, a partner's by its directory keys
    /// at the statement's time).
    pub imported: Vec<(crate::imported::KeptImported, Option<String>)>,
}

/// Verifies an office's receipt log: the chain and fields ([`read_log`]), then every ack's
/// key against the office's cached directory ([`verify_keys`]) and its own key files.
/// Only a broken log is an error; a missing directory makes its receipts "not verifiable".
pub fn audit(home: &Home) -> Result<Audit, ChainError> {
    let receipts = read_log(&home.receipts())?;
    let kept = read_statements(home);
    let book = crate::imported::ImportedBook::read(home);
    let mut kept_imported: Vec<_> = book
        .made
        .values()
        .chain(book.received.values())
        .cloned()
        .collect();
    kept_imported
        .sort_by(|a, b| (a.imported_at, &a.message_id).cmp(&(b.imported_at, &b.message_id)));
    let mut imported = Vec::new();
    let (keys, directory_problems, statements) = match home_directory(home) {
        Ok((dir, own, problems, _scratch)) => {
            for k in kept_imported {
                let keys: Vec<[u8; 32]> = if k.role == "made" {
                    own.keys.clone()
                } else {
                    OfficeNumber::parse(&k.partner)
                        .and_then(|o| dir.lookup(&o).ok().flatten())
                        .map(|e| {
                            e.keys
                                .iter()
                                .filter(|x| x.valid_at(k.imported_at))
                                .map(|x| x.identity)
                                .collect()
                        })
                        .unwrap_or_default()
                };
                let why = crate::imported::check_kept(&k, &keys).err();
                imported.push((k, why));
            }
            let nodes: Vec<[u8; 32]> = dir.directory_nodes().iter().map(|n| n.key).collect();
            let statements = kept
                .into_iter()
                .map(|k| {
                    let why = check_statement(&k, &nodes).err();
                    (k, why)
                })
                .collect();
            (verify_keys(&receipts, &dir, &own), problems, statements)
        }
        Err(why) => {
            imported = kept_imported
                .into_iter()
                .map(|k| (k, Some(format!("no directory: {why}"))))
                .collect();
            (
                receipts
                    .iter()
                    .map(|_| KeyCheck::NoDirectory(why.clone()))
                    .collect(),
                Vec::new(),
                kept.into_iter()
                    .map(|k| (k, Some(format!("no directory: {why}"))))
                    .collect(),
            )
        }
    };
    Ok(Audit {
        receipts,
        keys,
        directory_problems,
        statements,
        imported,
    })
}

/// The office's directory as its cache holds it (verified against its anchor), and its own
/// office and keys. The directory's scratch folder is a temporary one, not the home's.
fn home_directory(
    home: &Home,
) -> Result<(Directory, OwnOffice, Vec<String>, tempfile::TempDir), String> {
    let config = home.config().map_err(|e| e.to_string())?;
    let (office, _) = parse_office(&config).map_err(|e| e.to_string())?;
    let keys = home
        .load_keys()
        .map(|ks| {
            ks.iter()
                .map(|k| k.identity.verifying_key().to_bytes())
                .collect()
        })
        .unwrap_or_default();
    let anchor_path = home.root.join(&config.anchor);
    let anchor = std::fs::read_to_string(&anchor_path)
        .map_err(|e| e.to_string())
        .and_then(|t| Anchor::from_json(&t).map_err(|e| e.to_string()))
        .map_err(|e| format!("trust anchor {}: {e}", anchor_path.display()))?;
    let scratch = tempfile::tempdir().map_err(|e| format!("scratch folder: {e}"))?;
    let mut dir = Directory::on_disk(anchor, scratch.path());
    let problems = DirFolder {
        path: home.directory_cache(),
    }
    .load(&mut dir);
    Ok((dir, OwnOffice { office, keys }, problems, scratch))
}

fn note(r: &Receipt, k: &KeyCheck) -> Option<String> {
    (!k.verified()).then(|| {
        format!(
            "      受領記録 {} / receipt {} ({}): {}",
            r.seq,
            r.seq,
            shown(&r.file_name),
            k.explain()
        )
    })
}

impl Audit {
    /// Receipts whose key check fails.
    pub fn failing(&self) -> impl Iterator<Item = (&Receipt, &KeyCheck)> {
        self.receipts
            .iter()
            .zip(&self.keys)
            .filter(|(_, k)| k.fails())
    }

    /// One line per receipt, each followed by a line saying why when its key is not verified.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (r, k) in self.receipts.iter().zip(&self.keys) {
            let imported = self
                .imported
                .iter()
                .find(|(i, _)| i.message_id == r.message_id)
                .map_or(String::new(), |(i, _)| {
                    format!(
                        " imported {}",
                        crate::env::jst(i.imported_at.saturating_mul(1000))
                    )
                });
            out.push(format!(
                "{:>5} {:<8} {} {} {:<8} {} sha256:{}{imported}",
                r.seq,
                shown(&r.direction),
                crate::env::jst(r.finished_ms),
                shown(&r.partner),
                shown(&r.verdict),
                shown(&r.file_name),
                shown(r.sha256.get(..16).unwrap_or(&r.sha256))
            ));
            out.extend(note(r, k));
        }
        out
    }

    /// Only the lines that say why a receipt's key is not verified.
    pub fn notes(&self) -> Vec<String> {
        self.receipts
            .iter()
            .zip(&self.keys)
            .filter_map(|(r, k)| note(r, k))
            .collect()
    }

    /// The last line: exactly what was verified.
    pub fn summary(&self) -> String {
        let n = self.receipts.len();
        let own = self.keys.iter().filter(|k| **k == KeyCheck::Own).count();
        let listed = self.keys.iter().filter(|k| k.verified()).count() - own;
        let failing: Vec<String> = self.failing().map(|(r, _)| r.seq.to_string()).collect();
        let open: Vec<String> = self
            .receipts
            .iter()
            .zip(&self.keys)
            .filter(|(_, k)| !k.verified() && !k.fails())
            .map(|(r, _)| r.seq.to_string())
            .collect();
        let mut ja = format!(
            "受領記録 {n} 件：連鎖は正常で、各記録のメッセージID・ハッシュ・判定・エラーコード・事業所番号は署名された受領確認と一致します。署名鍵の確認：名簿で {listed} 件、自事業所の鍵で {own} 件"
        );
        let mut en = format!(
            "{n} receipts: chain ok; each receipt's message id, sha256, verdict, codes and offices match its signed ack; ack keys verified: {listed} by the directory (listed for the acknowledging office at the ack's time), {own} as our own key"
        );
        if !failing.is_empty() {
            ja.push_str(&format!(
                "、不合格 {} 件（受領記録 {}）",
                failing.len(),
                failing.join(", ")
            ));
            en.push_str(&format!(
                "; {} FAIL (receipt {})",
                failing.len(),
                failing.join(", ")
            ));
        }
        if !open.is_empty() {
            ja.push_str(&format!(
                "、ここでは確認できないもの {} 件（受領記録 {}）",
                open.len(),
                open.join(", ")
            ));
            en.push_str(&format!(
                "; {} not verifiable here (receipt {})",
                open.len(),
                open.join(", ")
            ));
        }
        format!("{ja} / {en}")
    }

    /// 0: everything verified; 1: a receipt fails; 3: none fails, but some could not be
    /// verified here.
    pub fn exit_code(&self) -> u8 {
        if self.keys.iter().any(KeyCheck::fails)
            || self.statements.iter().any(|(_, w)| w.is_some())
            || self.imported.iter().any(|(_, w)| w.is_some())
        {
            1
        } else if self.keys.iter().all(KeyCheck::verified) {
            0
        } else {
            3
        }
    }
}

/// `renkei receipts`: verifies the receipt log of the home at `home` ([`audit`]) and lists
/// it (as text, or as a JSON array with the notes on stderr). Exit status as
/// [`Audit::exit_code`]; 1 also when the log cannot be read or does not verify.
pub fn show(home: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let home = Home::existing(home)?;
    let audit = match audit(&home) {
        Ok(a) => a,
        Err(ChainError::Io(e)) => {
            eprintln!(
                "受領記録 {} を読めません。権限を確かめてください / cannot read the receipt log {}: check its permissions ({e})",
                home.receipts().display(),
                home.receipts().display()
            );
            return Ok(ExitCode::from(1));
        }
        Err(e) => {
            eprintln!(
                "受領記録の検証に失敗しました。書かれた後に変更されています。この写しを残し、管理者に連絡してください / the receipt log does not verify: it was changed after it was written; keep this copy and contact your administrator\n{e}"
            );
            return Ok(ExitCode::from(1));
        }
    };
    for p in &audit.directory_problems {
        eprintln!("名簿のキャッシュ / directory cache: {p}");
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&audit.receipts)?);
        // The receipts on stdout stay a plain array; what is not verified goes to stderr.
        for line in audit.notes() {
            eprintln!("{line}");
        }
        eprintln!("{}", audit.summary());
    } else {
        for line in audit.lines() {
            println!("{line}");
        }
        println!("{}", audit.summary());
    }
    // What the mailboxes signed they deleted (SPEC.md §7.6.4).
    for (k, why) in &audit.statements {
        let line = format!(
            "statement {} to {} {} at {}: {}",
            k.message_id,
            k.recipient,
            k.reason,
            crate::env::jst(k.deleted_at.saturating_mul(1000)),
            match why {
                None => "削除証明は名簿の協会ノードの署名で確認済み / deletion statement verified (signed by a listed directory node)".to_string(),
                Some(w) => format!("不合格 / FAIL: {w}"),
            }
        );
        if json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    }
    // What the care software imported, here and at partners (SPEC.md §8.2).
    for (k, why) in &audit.imported {
        let line = format!(
            "imported {} {} {} by {} at {}: {}",
            k.role,
            k.message_id,
            shown(&k.file_name),
            if k.role == "made" {
                "us"
            } else {
                k.partner.as_str()
            },
            crate::env::jst(k.imported_at.saturating_mul(1000)),
            match why {
                None => "取込済みの証明は署名を確認済み / imported statement verified".to_string(),
                Some(w) => format!("不合格 / FAIL: {w}"),
            }
        );
        if json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    }
    // The times are this computer's: say so when its clock is known to be off.
    if let Some(note) = crate::status::read(&home)
        .ok()
        .and_then(|s| s.clock.times_note())
    {
        eprintln!("{note}");
    }
    Ok(ExitCode::from(audit.exit_code()))
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
        let created = !path.exists();
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        if created && let Some(dir) = path.parent() {
            // A new log's name is durable before its first receipt is acknowledged.
            crate::files::sync_dir(dir)?;
        }
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
                broken: false,
            },
            existing,
        ))
    }

    /// Appends receipts and makes them durable with one fsync. A write that fails is undone
    /// (the log cut back to where it was, the chain's state restored), so the next append
    /// chains to what is on disk; if it cannot be undone, the log takes no more appends until
    /// the node starts again (and mends a torn last line).
    pub fn append(&mut self, batch: Vec<NewReceipt>) -> std::io::Result<Vec<Receipt>> {
        if self.broken {
            return Err(std::io::Error::other(
                "受領記録への書き込みが前回失敗しました。ノードを再起動してください / an earlier write to the receipt log failed: restart the node",
            ));
        }
        let (last_hash, next_seq) = (self.last_hash.clone(), self.next_seq);
        let len = self.file.metadata()?.len();
        match self.write_batch(batch) {
            Ok(out) => Ok(out),
            Err(e) => {
                self.last_hash = last_hash;
                self.next_seq = next_seq;
                if self
                    .file
                    .set_len(len)
                    .and_then(|()| self.file.sync_data())
                    .is_err()
                {
                    self.broken = true;
                }
                Err(e)
            }
        }
    }

    fn write_batch(&mut self, batch: Vec<NewReceipt>) -> std::io::Result<Vec<Receipt>> {
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

    mod keys {
        use super::*;
        use renkei_directory::{Entry, OfficeKey, RegionCert, Snapshot, Status};
        use renkei_protocol::ServiceKind;

        const T0: u64 = 1_790_000_000;
        const HOUR: u64 = 3600;
        const YEAR: u64 = 365 * 86400;
        const OURS: &str = "1310000001";
        const PARTNER: &str = "1310000011";

        fn key(n: u8) -> SigningKey {
            SigningKey::from_bytes(&[n; 32])
        }

        fn office(s: &str) -> OfficeNumber {
            OfficeNumber::parse(s).unwrap()
        }

        fn entry(number: &str, seed: u8, status: Status) -> Entry {
            Entry {
                office: office(number),
                name: format!("事業所 {number}"),
                kinds: vec![ServiceKind::parse("43").unwrap()],
                keys: vec![OfficeKey {
                    identity: key(seed).verifying_key().to_bytes(),
                    encryption: [seed; 32],
                    valid_from: T0 - YEAR,
                    valid_until: T0 + YEAR,
                }],
                addresses: vec![],
                status,
                mailboxes: Vec::new(),
            }
        }

        /// A Tokyo directory issued at T0 listing our office (key 10) and the partner (key 11).
        fn directory(partner: Status) -> Directory {
            let root = key(1);
            let anchor = renkei_directory::Anchor::from_json(&format!(
                r#"{{"format":"renkei-anchor/1","federation":"test","roots":["{}"]}}"#,
                hex::encode(root.verifying_key().to_bytes())
            ))
            .unwrap();
            let region = key(2);
            let cert = RegionCert::issue(
                &root,
                "13-tokyo",
                "テスト協会",
                region.verifying_key().to_bytes(),
                vec![13],
                T0 - YEAR,
                T0 + 5 * YEAR,
            );
            let entries = [entry(OURS, 10, Status::Active), entry(PARTNER, 11, partner)];
            let snap = Snapshot::build(&cert, &region, 1, T0, T0 + 7 * 86400, &[], &entries);
            let mut dir = Directory::new(anchor);
            dir.apply_snapshot(&snap).unwrap();
            dir
        }

        /// A receipt of a file `direction` between our office and `partner`, acknowledged at
        /// `at` by the recipient with `signer`.
        fn receipt(
            direction: &'static str,
            partner: &str,
            signer: &SigningKey,
            at: u64,
        ) -> NewReceipt {
            let (from, to) = match direction {
                "sent" => (OURS, partner),
                _ => (partner, OURS),
            };
            let ack = Ack::sign(
                MessageId([at as u8; 16]),
                [7; 32],
                office(from),
                office(to),
                at,
                Verdict::Accepted,
                signer,
            );
            NewReceipt {
                direction,
                file_name: "F".into(),
                office: OURS.into(),
                partner: partner.into(),
                size: 1,
                sealed_size: 1,
                started_ms: 1,
                finished_ms: 2,
                ack,
            }
        }

        fn check(dir: &Directory, own_keys: &[u8], batch: Vec<NewReceipt>) -> Vec<KeyCheck> {
            let tmp = tempfile::tempdir().unwrap();
            let p = log_of(tmp.path(), batch);
            let list = read_log(&p).unwrap();
            let own = OwnOffice {
                office: office(OURS),
                keys: own_keys
                    .iter()
                    .map(|n| key(*n).verifying_key().to_bytes())
                    .collect(),
            };
            verify_keys(&list, dir, &own)
        }

        #[test]
        fn ack_keys_are_checked_against_the_directory_and_its_windows() {
            let dir = directory(Status::Active);
            let stranger = key(99);
            let got = check(
                &dir,
                &[10, 12],
                vec![
                    receipt("sent", PARTNER, &key(11), T0 + HOUR),
                    receipt("received", PARTNER, &key(10), T0 + HOUR),
                    // An older generation of our own key, no longer in the directory.
                    receipt("received", PARTNER, &key(12), T0 - 2 * YEAR),
                    // A local route: our own office on both ends.
                    receipt("sent", OURS, &key(10), T0 + HOUR),
                    // The partner's key, used outside its window.
                    receipt("sent", PARTNER, &key(11), T0 + 2 * YEAR),
                    // Validly self-signed by a key the directory never listed, after it was
                    // issued: forged.
                    receipt("sent", PARTNER, &stranger, T0 + HOUR),
                    // The same before the directory was issued: perhaps a retired key.
                    receipt("sent", PARTNER, &stranger, T0 - HOUR),
                    // A stranger's key as our own office's (not among our key files).
                    receipt("received", PARTNER, &stranger, T0 + HOUR),
                    // An office the directory does not hold.
                    receipt("sent", "1310000099", &stranger, T0 + HOUR),
                ],
            );
            let partner = office(PARTNER);
            assert_eq!(
                got,
                vec![
                    KeyCheck::Listed { revoked_now: false },
                    KeyCheck::Own,
                    KeyCheck::Own,
                    KeyCheck::Own,
                    KeyCheck::OutsideWindow {
                        office: partner,
                        received_at: T0 + 2 * YEAR,
                        valid_from: T0 - YEAR,
                        valid_until: T0 + YEAR,
                    },
                    KeyCheck::UnknownKey { office: partner },
                    KeyCheck::NotListedNow {
                        office: partner,
                        issued_at: T0,
                    },
                    KeyCheck::UnknownKey {
                        office: office(OURS),
                    },
                    KeyCheck::NoEntry(office("1310000099")),
                ]
            );
            // Our own key is also the directory's for our office.
            assert_eq!(
                check(
                    &dir,
                    &[],
                    vec![receipt("received", PARTNER, &key(10), T0 + HOUR)]
                ),
                vec![KeyCheck::Listed { revoked_now: false }]
            );
            // A partner revoked since: its key still shows it signed.
            assert_eq!(
                check(
                    &directory(Status::Revoked),
                    &[],
                    vec![receipt("sent", PARTNER, &key(11), T0 + HOUR)]
                ),
                vec![KeyCheck::Listed { revoked_now: true }]
            );
        }

        #[test]
        fn another_offices_receipt_fails() {
            let dir = directory(Status::Active);
            let tmp = tempfile::tempdir().unwrap();
            let p = log_of(
                tmp.path(),
                vec![receipt("sent", PARTNER, &key(11), T0 + HOUR)],
            );
            let list = read_log(&p).unwrap();
            let own = OwnOffice {
                office: office(PARTNER),
                keys: vec![],
            };
            assert_eq!(verify_keys(&list, &dir, &own), vec![KeyCheck::OtherOffice]);
        }

        #[test]
        fn the_summary_says_what_was_verified_and_the_exit_code_follows() {
            let r = |seq: u64| Receipt {
                seq,
                prev: String::new(),
                direction: "sent".into(),
                message_id: String::new(),
                file_name: "A\n\x1b]0;x\x07".into(),
                office: OURS.into(),
                partner: PARTNER.into(),
                sha256: "abc".into(),
                size: 0,
                sealed_size: 0,
                started_ms: 0,
                finished_ms: u64::MAX,
                verdict: "accepted".into(),
                codes: vec![],
                ack: String::new(),
                hash: String::new(),
            };
            let audit = |keys: Vec<KeyCheck>| Audit {
                receipts: (1..=keys.len() as u64).map(r).collect(),
                keys,
                directory_problems: vec![],
                statements: vec![],
                imported: vec![],
            };
            let ok = audit(vec![KeyCheck::Listed { revoked_now: false }, KeyCheck::Own]);
            assert_eq!(ok.exit_code(), 0);
            assert!(ok.notes().is_empty());
            let s = ok.summary();
            assert!(
                s.contains("2 receipts: chain ok")
                    && s.contains("1 by the directory")
                    && s.contains("1 as our own key")
                    && !s.contains("FAIL")
                    && !s.contains("not verifiable"),
                "{s}"
            );
            let open = audit(vec![KeyCheck::Own, KeyCheck::NoEntry(office("1310000099"))]);
            assert_eq!(open.exit_code(), 3);
            assert!(open.summary().contains("1 not verifiable here (receipt 2)"));
            let bad = audit(vec![
                KeyCheck::NoEntry(office("1310000099")),
                KeyCheck::UnknownKey {
                    office: office(PARTNER),
                },
            ]);
            assert_eq!(bad.exit_code(), 1);
            let s = bad.summary();
            assert!(
                s.contains("1 FAIL (receipt 2)") && s.contains("不合格 1 件"),
                "{s}"
            );
            // A short hash and a name with control characters are shown, escaped, in one line
            // each.
            let lines = bad.lines();
            assert_eq!(lines.len(), 4, "{lines:?}");
            assert!(
                lines[0].ends_with("A\\u{a}\\u{1b}]0;x\\u{7} sha256:abc"),
                "{}",
                lines[0]
            );
            assert!(lines[3].contains("receipt 2") && lines[3].contains("FAILS"));
            for l in lines.iter().chain([&s]) {
                assert!(!l.chars().any(char::is_control), "{l:?}");
            }
        }
    }
}

/// One kept deletion statement (a line of `statements.jsonl`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptStatement {
    /// The message id, hex.
    pub message_id: String,
    /// The recipient office.
    pub recipient: String,
    /// `acked`, `expired` or `refused`.
    pub reason: String,
    /// Unix seconds, by the mailbox's clock.
    pub deleted_at: u64,
    /// The signed statement, hex.
    pub statement: String,
}

/// Appends a mailbox's deletion statement to `statements.jsonl` (fsynced), once.
pub(crate) fn keep_statement(
    home: &crate::home::Home,
    s: &renkei_protocol::statement::Statement,
) -> anyhow::Result<()> {
    use std::io::Write;
    let path = home.statements();
    let encoded = hex::encode(s.to_bytes());
    let held = std::fs::read_to_string(&path).unwrap_or_default();
    if held.contains(&encoded) {
        return Ok(());
    }
    // A line torn by a crash is closed first, so this one stands on its own.
    let sep = if held.is_empty() || held.ends_with('\n') {
        ""
    } else {
        "\n"
    };
    let line = serde_json::to_string(&KeptStatement {
        message_id: s.message_id.to_hex(),
        recipient: s.recipient_office.to_string(),
        reason: s.reason.as_str().to_string(),
        deleted_at: s.deleted_at,
        statement: encoded,
    })?;
    let created = !path.exists();
    let mut opts = OpenOptions::new();
    opts.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&path)?;
    f.write_all(format!("{sep}{line}\n").as_bytes())?;
    f.sync_data()?;
    if created {
        crate::files::sync_dir(&home.root)?;
    }
    Ok(())
}

/// The statements kept in `statements.jsonl` (a line that does not parse is kept as one that
/// fails, with its text as the message id).
fn read_statements(home: &Home) -> Vec<KeptStatement> {
    std::fs::read_to_string(home.statements())
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|_| KeptStatement {
                message_id: crate::files::shown(l).chars().take(40).collect(),
                recipient: String::new(),
                reason: String::new(),
                deleted_at: 0,
                statement: String::new(),
            })
        })
        .collect()
}

/// A kept statement must parse, say what its line says, and be signed by one of `nodes`.
fn check_statement(k: &KeptStatement, nodes: &[[u8; 32]]) -> Result<(), String> {
    let bytes = hex::decode(&k.statement).map_err(|e| format!("not hex: {e}"))?;
    let s = renkei_protocol::statement::Statement::parse(&bytes).map_err(|e| e.to_string())?;
    if s.message_id.to_hex() != k.message_id
        || s.recipient_office.as_str() != k.recipient
        || s.reason.as_str() != k.reason
        || s.deleted_at != k.deleted_at
    {
        return Err("the line says other than its signed statement".into());
    }
    s.verify(nodes).map_err(|e| e.to_string())
}
