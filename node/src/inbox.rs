//! What the care software sees of the inbox: the received files, whether each was imported,
//! and which are superseded — a newer file from the same sender, for the same users, month and
//! kind, replaces an older one (the send unit's stamp, ファイル連番, says which is newer), and a
//! deletion file (DLT*) deletes it. Nothing here deletes or moves a file: only the care
//! software or a person does that.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use renkei_protocol::{FileKind, FileName};
use serde::Serialize;

use crate::home::Home;
use crate::imported::ImportedBook;
use crate::receipts::Receipt;

/// A file in `inbox/` or `inbox/imported/`.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ReceivedFile {
    /// The standard-spec file name.
    pub file_name: String,
    /// The sending office (from the name).
    pub sender: String,
    /// The file kind's prefix (`UPPLAN`, `UPJSK`, …).
    pub kind: String,
    /// 対象年月 `YYYYMM`, when the kind has one.
    pub month: Option<String>,
    /// Bytes.
    pub size: u64,
    /// SHA-256 of the file as received, hex (from its receipt).
    pub sha256: Option<String>,
    /// Unix ms it was received (its receipt's time).
    pub received_ms: Option<u64>,
    /// The message id it came in.
    pub message_id: Option<String>,
    /// Whether it lies in `inbox/imported/` (moved there by the care software).
    pub in_imported_folder: bool,
    /// Unix seconds of the signed imported statement, when there is one.
    pub imported_at: Option<u64>,
    /// Whether the file's sender has kept our imported statement.
    pub imported_delivered: bool,
    /// Whether our imported statement waits in the sender's own mailbox (the sender was off).
    pub imported_posted: bool,
    /// The newer file of the same sender, users, month and kind that replaces this one.
    pub superseded_by: Option<String>,
    /// The newer deletion file (DLT*) of the same sender, users and month that deletes it.
    pub deleted_by: Option<String>,
}

/// The kind and its deletion kind share a family: a DLT file deletes what its family's UP
/// file carried.
fn family(kind: FileKind) -> (&'static str, bool) {
    match kind {
        FileKind::Up1Kyo => ("1KYO", false),
        FileKind::Dlt1Kyo => ("1KYO", true),
        FileKind::UpPlan => ("PLAN", false),
        FileKind::DltPlan => ("PLAN", true),
        FileKind::UpJsk => ("JSK", false),
        FileKind::DltJsk => ("JSK", true),
        FileKind::UpKihon => ("KIHON", false),
        FileKind::DltKihon => ("KIHON", true),
        FileKind::UpYobo => ("YOBO", false),
        FileKind::DltYobo => ("YOBO", true),
        other => (other.prefix(), false),
    }
}

/// The users a CSV file is about: (保険者番号, 被保険者番号) of its records. Empty for an
/// image or a file whose records cannot be read.
fn users_of(name: &str, path: &Path) -> BTreeSet<(String, String)> {
    let Ok(bytes) = std::fs::read(path) else {
        return BTreeSet::new();
    };
    let (_, records) = renkei_protocol::check::read_records(name, &bytes);
    records
        .iter()
        .map(|r| (r.field(2).to_string(), r.field(3).to_string()))
        .filter(|(a, b)| !a.is_empty() || !b.is_empty())
        .collect()
}

/// The files in `inbox/` and `inbox/imported/`, newest first, each with what the receipts and
/// imported statements say of it and whether a newer file supersedes it.
pub fn list(home: &Home, receipts: &[Receipt], book: &ImportedBook) -> Vec<ReceivedFile> {
    let mut by_name: HashMap<&str, &Receipt> = HashMap::new();
    for r in receipts
        .iter()
        .filter(|r| r.direction == "received" && r.verdict == "accepted")
    {
        by_name.insert(r.file_name.as_str(), r);
    }
    let mut files = Vec::new();
    let mut parsed = Vec::new();
    for (folder, moved) in [(home.inbox(), false), (home.imported_folder(), true)] {
        for e in std::fs::read_dir(&folder).into_iter().flatten().flatten() {
            let Ok(meta) = e.metadata() else { continue };
            let name = e.file_name().to_string_lossy().into_owned();
            if !meta.is_file() || name.starts_with('.') {
                continue;
            }
            let Ok(n) = FileName::parse(&name) else {
                continue;
            };
            let r = by_name.get(name.as_str());
            let k = r.and_then(|r| book.about(&r.message_id));
            files.push(ReceivedFile {
                file_name: name.clone(),
                sender: n.from.office.to_string(),
                kind: n.kind.prefix().to_string(),
                month: n.month.map(|m| m.to_string()),
                size: meta.len(),
                sha256: r.map(|r| r.sha256.clone()),
                received_ms: r.map(|r| r.finished_ms),
                message_id: r.map(|r| r.message_id.clone()),
                in_imported_folder: moved,
                imported_at: k.map(|k| k.imported_at),
                imported_delivered: r.is_some_and(|r| book.delivered.contains(&r.message_id)),
                imported_posted: r.is_some_and(|r| book.posted.contains(&r.message_id)),
                superseded_by: None,
                deleted_by: None,
            });
            parsed.push((n, folder.join(&name)));
        }
    }
    mark_superseded(&mut files, &parsed);
    files.sort_by(|a, b| {
        b.received_ms
            .cmp(&a.received_ms)
            .then(b.file_name.cmp(&a.file_name))
    });
    files
}

/// Marks each file a newer one of its sender, recipient, family and month covers (all its
/// users): the newest such file replaces it, or deletes it when that is a DLT file.
fn mark_superseded(files: &mut [ReceivedFile], parsed: &[(FileName, std::path::PathBuf)]) {
    let users: Vec<BTreeSet<(String, String)>> = parsed
        .iter()
        .map(|(n, p)| {
            if n.kind.is_image() {
                BTreeSet::new()
            } else {
                users_of(&files_name(p), p)
            }
        })
        .collect();
    for i in 0..files.len() {
        let (a, _) = &parsed[i];
        if users[i].is_empty() || family(a.kind).1 {
            continue;
        }
        let newest = (0..files.len())
            .filter(|&j| j != i)
            .filter(|&j| {
                let (b, _) = &parsed[j];
                family(b.kind).0 == family(a.kind).0
                    && b.from.office == a.from.office
                    && b.from.kind == a.from.kind
                    && b.to.office == a.to.office
                    && b.month == a.month
                    && b.stamp > a.stamp
                    && users[i].is_subset(&users[j])
            })
            .max_by_key(|&j| parsed[j].0.stamp);
        if let Some(j) = newest {
            let by = files[j].file_name.clone();
            if family(parsed[j].0.kind).1 {
                files[i].deleted_by = Some(by);
            } else {
                files[i].superseded_by = Some(by);
            }
        }
    }
}

fn files_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samples::SAMPLES;

    fn sample(prefix: &str) -> (&'static str, &'static [u8]) {
        *SAMPLES
            .iter()
            .find(|(n, _)| n.starts_with(prefix) && n.contains("_1310000011_11_"))
            .unwrap()
    }

    fn find<'a>(list: &'a [ReceivedFile], name: &str) -> &'a ReceivedFile {
        list.iter().find(|f| f.file_name == name).unwrap()
    }

    #[test]
    fn a_newer_file_for_the_same_users_supersedes_and_a_deletion_file_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path());
        std::fs::create_dir_all(home.imported_folder()).unwrap();
        let (plan, bytes) = sample("UPPLAN_");
        let (table7, table7_bytes) = sample("UPSIKYU_");
        std::fs::write(home.inbox().join(plan), bytes).unwrap();
        std::fs::write(home.inbox().join(table7), table7_bytes).unwrap();
        let files = list(&home, &[], &ImportedBook::default());
        assert!(
            files
                .iter()
                .all(|f| f.superseded_by.is_none() && f.deleted_by.is_none())
        );

        // The same plan again, changed mid-month: a later send unit. The older one lies in
        // imported/ (the care software took it): it is superseded there too.
        let newer = plan.replace("20260928103000", "20261003090000");
        std::fs::write(home.inbox().join(&newer), bytes).unwrap();
        std::fs::rename(home.inbox().join(plan), home.imported_folder().join(plan)).unwrap();
        let files = list(&home, &[], &ImportedBook::default());
        assert_eq!(
            find(&files, plan).superseded_by.as_deref(),
            Some(newer.as_str())
        );
        assert!(find(&files, plan).in_imported_folder);
        assert_eq!(find(&files, &newer).superseded_by, None);
        // Another kind of the same send unit is not replaced by a plan.
        assert_eq!(find(&files, table7).superseded_by, None);

        // The users the plan is about.
        let users = users_of(&newer, &home.inbox().join(&newer));
        assert!(!users.is_empty());

        // A DLTPLAN for every user of the plan deletes both copies.
        let dlt = "DLTPLAN_202610_1310000001_43_1310000011_11_20261010090000.CSV";
        let rows: String = users
            .iter()
            .map(|(insurer, insured)| format!("202407,{insurer},{insured},202610\r\n"))
            .collect();
        std::fs::write(home.inbox().join(dlt), rows).unwrap();
        assert_eq!(users_of(dlt, &home.inbox().join(dlt)), users);
        let files = list(&home, &[], &ImportedBook::default());
        assert_eq!(find(&files, plan).deleted_by.as_deref(), Some(dlt));
        assert_eq!(find(&files, &newer).deleted_by.as_deref(), Some(dlt));
        assert_eq!(find(&files, table7).deleted_by, None);
        // Nothing was removed.
        assert_eq!(files.len(), 4);
        assert!(home.imported_folder().join(plan).is_file());
    }

    #[test]
    fn a_newer_plan_for_other_users_replaces_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path());
        std::fs::create_dir_all(home.inbox()).unwrap();
        let (plan, bytes) = sample("UPPLAN_");
        std::fs::write(home.inbox().join(plan), bytes).unwrap();
        let users = users_of(plan, &home.inbox().join(plan));
        // A deletion for a user not in the plan.
        let dlt = "DLTPLAN_202610_1310000001_43_1310000011_11_20261010090000.CSV";
        std::fs::write(
            home.inbox().join(dlt),
            "202407,131016,9999999999,202610\r\n",
        )
        .unwrap();
        assert!(!users.contains(&("131016".into(), "9999999999".into())));
        let files = list(&home, &[], &ImportedBook::default());
        assert_eq!(find(&files, plan).deleted_by, None);
        assert_eq!(find(&files, plan).superseded_by, None);
    }
}
