//! The outbox: new files are noticed (file-system events plus a periodic rescan, so nothing is
//! missed), checked, routed and queued durably — or moved to `rejected/` with a report that
//! says, in Japanese and English, what is wrong and what to do. One file that cannot be handled
//! never holds up the others.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use notify::Watcher;
use renkei_protocol::{
    CheckReport, Checked, Checker, ErrorCode, FileName, Finding, ImageEnds, check_image, finding,
};

use crate::env::{file_age, jst};
use crate::files::{
    NotRegular, Stamp, kind_of, make_private, open_regular, shown, sync_dir, write_atomic,
};
use crate::state::{Shared, lock};
use crate::store::QueueItem;

/// How often a long scan queues the files it has checked so far.
const QUEUE_EVERY_MS: u64 = 25;

/// Watches the outbox and rescans it on events, on request and periodically.
pub(crate) async fn watch_loop(shared: Arc<Shared>) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    // In the lab the run tells the node of each file it drops (no watcher's thread then
    // decides when a scan happens).
    let watcher = if crate::env::on_one_thread() {
        drop(tx);
        Ok(None)
    } else {
        notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            // Only new, changed or renamed files matter; our own reads must not trigger scans.
            if let Ok(ev) = res
                && matches!(
                    ev.kind,
                    notify::EventKind::Create(_) | notify::EventKind::Modify(_)
                )
            {
                let _ = tx.send(());
            }
        })
        .and_then(|mut w| {
            w.watch(&shared.home.outbox(), notify::RecursiveMode::NonRecursive)
                .map(|_| Some(w))
        })
    };
    let _watcher = match watcher {
        Ok(w) => w,
        Err(e) => {
            shared.error(format!("送信フォルダを監視できません（定期確認のみ） / cannot watch the outbox, rescanning periodically only: {e}"));
            None
        }
    };
    let stop = shared.shutdown.clone();
    let every = Duration::from_secs(shared.config.rescan_secs.max(1));
    loop {
        let wait = match scan(&shared).await {
            Ok(Some(settle)) => settle.min(every),
            Ok(None) => every,
            Err(e) => {
                shared.error(format!(
                    "送信フォルダの確認に失敗 / outbox scan failed: {e:#}"
                ));
                every
            }
        };
        tokio::select! {
            biased;
            Some(()) = rx.recv() => {
                // Let a burst of events settle into one scan.
                tokio::time::sleep(Duration::from_millis(20)).await;
                while rx.try_recv().is_ok() {}
            }
            _ = shared.rescan.notified() => {}
            _ = shared.env.sleep(wait) => {}
            _ = stop.cancelled() => break,
        }
    }
}

/// Scans the outbox once. Returns how long until a file still being written settles.
pub(crate) async fn scan(shared: &Arc<Shared>) -> anyhow::Result<Option<Duration>> {
    let s = shared.clone();
    crate::env::file_work(move || scan_blocking(&s))
        .await
        .context("scan task")?
}

/// An outbox entry that may be a file to send.
struct Candidate {
    name: String,
    /// Sort key: send unit, the kind's place in it, the name.
    order: (String, usize, String),
}

fn scan_blocking(shared: &Arc<Shared>) -> anyhow::Result<Option<Duration>> {
    let settle = Duration::from_millis(shared.config.settle_ms);
    let mut wait: Option<Duration> = None;
    let directory_ready = shared.dir().regions().next().is_some();
    let mut candidates = Vec::new();
    let mut odd = std::collections::HashSet::new();
    for e in std::fs::read_dir(shared.home.outbox())?.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with('.') || name.ends_with(".tmp") || name.ends_with(".part") {
            continue;
        }
        // The entry itself (a symlink is not followed).
        let Ok(meta) = e.metadata() else { continue };
        if !meta.is_file() {
            // Folders, FIFOs, sockets, devices and symlinks are never sent: said once.
            if lock(&shared.ignored).insert(name.clone()) {
                let (ja, en) = kind_of(&meta);
                shared.error(format!(
                    "送信フォルダ内の「{}」（{ja}）は送信されません。通常のファイルを送信フォルダに直接置いてください / {} in the outbox is a {en} and is not sent: put regular files directly in outbox/",
                    shown(&name),
                    shown(&name)
                ));
            }
            odd.insert(name);
            continue;
        }
        if lock(&shared.queue).names.contains(&name) {
            continue;
        }
        // Delivered already, but it could not be moved out (reported): not sent again while
        // it is the same file.
        {
            let mut stuck = lock(&shared.stuck);
            match stuck.get(&name) {
                Some(s) if *s == Stamp::of(&meta) => continue,
                Some(_) => {
                    stuck.remove(&name);
                }
                None => {}
            }
        }
        // A file the care software is still writing: wait until it has settled.
        let age = meta.modified().ok().and_then(file_age).unwrap_or(settle);
        if age < settle {
            let left = settle - age;
            wait = Some(wait.map_or(left, |w| w.min(left)));
            continue;
        }
        let order = match FileName::parse(&name) {
            Ok(f) => (
                f.stamp.as_str().to_string(),
                f.kind.unit_order(),
                name.clone(),
            ),
            Err(_) => (String::new(), usize::MAX, name.clone()),
        };
        candidates.push(Candidate { name, order });
    }
    // An entry removed and made again is reported again.
    lock(&shared.ignored).retain(|f| odd.contains(f));
    // In send-unit order, as they are delivered, so that what is queued first goes first.
    candidates.sort_by(|a, b| a.order.cmp(&b.order));
    tracing::debug!(
        candidates = candidates.len(),
        directory_ready,
        "outbox scan"
    );
    let mut queued = Vec::new();
    let mut last_queued = shared.env.now_ms();
    for c in candidates {
        // Queue what has passed so far every few milliseconds, so a large batch starts
        // going out while the rest of it is still being checked.
        let now = shared.env.now_ms();
        if now.saturating_sub(last_queued) >= QUEUE_EVERY_MS && !queued.is_empty() {
            queue_items(shared, &mut queued)?;
            last_queued = now;
        }
        match take(shared, &c.name, directory_ready) {
            Ok(Some(item)) => queued.push(item),
            Ok(None) => {}
            // This file only: the others go on.
            Err(e) => shared.error_about(
                Some(format!("file:{}", c.name)),
                format!(
                    "{}: 送信の準備ができません。次の確認で再試行します / cannot prepare it for sending; retried at the next scan: {e:#}",
                    shown(&c.name)
                ),
            ),
        }
    }
    queue_items(shared, &mut queued)?;
    Ok(wait)
}

/// Checks one outbox file: `Some(item)` to queue, `None` when it was rejected (with its
/// report) or waits for later.
fn take(
    shared: &Arc<Shared>,
    name: &str,
    directory_ready: bool,
) -> anyhow::Result<Option<QueueItem>> {
    let path = shared.home.outbox().join(name);
    let max_file = shared.config.max_file_mb.saturating_mul(1 << 20);
    // Not even read: larger than this node sends.
    if std::fs::symlink_metadata(&path).is_ok_and(|m| m.len() > max_file) {
        reject_file(
            shared,
            name,
            vec![finding(ErrorCode::FileTooLarge, 0, 0)],
            "このファイルは送信できませんでした / This file could not be sent",
        )?;
        lock(&shared.stats).rejected_outgoing += 1;
        return Ok(None);
    }
    let (report, sha256, stamp) = match check_path(name, &path, true) {
        Ok((report, Some(hash), stamp)) => (report, hash, stamp),
        Ok((_, None, _)) => return Ok(None),
        // Gone, replaced by something else, or changing: looked at again next time.
        Err(e) => {
            tracing::debug!(name = %shown(name), "not taken now: {e}");
            return Ok(None);
        }
    };
    let mut findings = report.errors;
    let parsed = FileName::parse(name).ok();
    if let Some(n) = &parsed {
        match route_findings(shared, name, n, &findings, directory_ready) {
            Some(more) => findings.extend(more),
            None => return Ok(None),
        }
    }
    if !findings.is_empty() {
        reject_file(
            shared,
            name,
            findings,
            "このファイルは送信できませんでした / This file could not be sent",
        )?;
        lock(&shared.stats).rejected_outgoing += 1;
        return Ok(None);
    }
    let Some(n) = parsed else { return Ok(None) };
    note_resend(shared, name, &sha256);
    Ok(Some(QueueItem {
        message_id: hex::encode(shared.env.random_bytes_for::<16>("message ids")),
        file_name: name.to_string(),
        recipient: n.to.office.to_string(),
        sha256: hex::encode(sha256),
        size: stamp.len,
        queued_at_ms: shared.env.now_ms(),
        stamp,
        deposited_ms: 0,
        mailbox: String::new(),
    }))
}

/// Where a checked file goes: the findings about its sender (our office, a kind we act as)
/// and, when nothing else is wrong with it (`earlier`: the checker's findings), its recipient
/// (listed, active, of the kind named, with a key now). `None`: it waits, for the first
/// directory or for the directory to be readable again.
pub(crate) fn route_findings(
    shared: &Shared,
    name: &str,
    n: &FileName,
    earlier: &[Finding],
    directory_ready: bool,
) -> Option<Vec<Finding>> {
    let mut findings = Vec::new();
    let kind_ok = match n.from.kind {
        Some(k) => shared.kinds.is_empty() || shared.kinds.contains(&k),
        None => true,
    };
    if n.from.office != shared.office || !kind_ok {
        findings.push(finding(ErrorCode::RouteSender, 0, 0));
    }
    if earlier.is_empty() && findings.is_empty() {
        if !directory_ready {
            // Wait for the first directory sync before judging recipients.
            return None;
        }
        let listed = match shared.dir().lookup(&n.to.office) {
            Ok(listed) => listed,
            Err(e) => {
                // Not the recipient's fault: the file waits for the next scan.
                shared.error(format!(
                    "{}: 名簿を読めないため送信を待ちます / waiting, cannot read the directory: {e}",
                    shown(name)
                ));
                return None;
            }
        };
        let ok = listed.is_some_and(|e| {
            e.is_active()
                && n.to.kind.is_none_or(|k| e.kinds.contains(&k))
                && e.sealing_key_at(shared.env.now_secs()).is_some()
        });
        if !ok {
            findings.push(finding(ErrorCode::RecipientUnknown, 0, 0));
        }
    }
    Some(findings)
}

/// A file of a name already delivered is sent again (SPEC.md §7.3); the office is told, so an
/// accidental second drop does not go unnoticed.
fn note_resend(shared: &Shared, name: &str, sha256: &[u8; 32]) {
    let earlier = shared.home.sent().join(name);
    let Ok((_, Some(hash), _)) = check_path(name, &earlier, true) else {
        return;
    };
    let name = shown(name);
    shared.error(if &hash == sha256 {
        format!(
            "{name} は同じ内容で送信済みです。もう一度送ります（相手先では上書きされます）/ {name} was already sent with the same content; it is sent again (the partner's copy is replaced)"
        )
    } else {
        format!(
            "{name} は送信済みです。新しい内容で送り直します（相手先では上書きされます）/ {name} was sent before; this new content is sent and replaces the partner's copy"
        )
    });
}

/// Checks a regular file by reading it in pieces (memory stays bounded whatever its size);
/// with `hash`, also its SHA-256. Returns the report, the hash and the file's [`Stamp`] as
/// read. A file that changes while it is read is an error (it is looked at again later).
pub fn check_path(
    name: &str,
    path: &Path,
    hash: bool,
) -> std::io::Result<(CheckReport, Option<[u8; 32]>, Stamp)> {
    use sha2::Digest;
    let mut file = open_regular(path).map_err(io_error)?;
    let before = Stamp::of(&file.metadata()?);
    // A usual file of tens of KB needs no 1 MiB buffer.
    let mut buf = vec![0u8; before.len.clamp(1, READ_PIECE as u64) as usize];
    let mut hasher = hash.then(sha2::Sha256::new);
    let mut checker = Checker::with_retain_limit(name, KEEP_TEXT);
    let size = read_pieces(&mut file, &mut buf, |piece| {
        if let Some(h) = &mut hasher {
            h.update(piece);
        }
        checker.update(piece);
    })?;
    let report = match checker.finish() {
        Checked::Done(report) => report,
        Checked::ReadAgain(mut records) => {
            let mut again = open_regular(path).map_err(io_error)?;
            let n = read_pieces(&mut again, &mut buf, |piece| records.update(piece))?;
            if n != size || Stamp::of(&again.metadata()?) != before {
                return Err(changed());
            }
            records.finish()
        }
    };
    // The report and hash must be those of one version of the file.
    if size != before.len || Stamp::of(&file.metadata()?) != before {
        return Err(changed());
    }
    Ok((report, hasher.map(|h| h.finalize().into()), before))
}

/// `renkei check`: checks each file and prints a report per file (text, or a JSON array).
/// Exit status 0 when all are valid, 1 when one is not, 2 when one could not be read.
pub fn check_files(json: bool, files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let mut reports = Vec::new();
    let mut unreadable = false;
    // A bar on a terminal for many files; nothing when the output goes to a file or a program.
    let bar = crate::progress::bar(
        files.len() > 20,
        files.len() as u64,
        crate::progress::Unit::Items,
        "確認中 / checking",
    );
    for f in files {
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        bar.set_message(crate::files::shown(name).into_owned());
        bar.inc(1);
        match check_path(name, f, false) {
            Ok((mut r, _, _)) => {
                r.file = f.display().to_string();
                reports.push(r);
            }
            // The other files are still checked; the exit status says something was missed.
            Err(e) => {
                unreadable = true;
                let line = format!(
                    "ファイル {} を読めません / cannot read {}: {e}",
                    f.display(),
                    f.display()
                );
                bar.suspend(|| eprintln!("{line}"));
            }
        }
    }
    bar.finish_and_clear();
    let all_ok = reports.iter().all(|r| r.valid);
    if json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        for r in &reports {
            if r.valid {
                println!("ok  {}", r.file);
                continue;
            }
            let n = r.errors.len();
            println!(
                "NG  {} ({n} error{})",
                r.file,
                if n == 1 { "" } else { "s" }
            );
            for e in &r.errors {
                if e.line == 0 {
                    println!("    whole file [{}]", e.code);
                } else {
                    println!("    line {} field {} [{}]", e.line, e.field, e.code);
                }
                println!("      {}", e.message_ja);
                println!("      {}", e.message_en);
            }
        }
    }
    Ok(if unreadable {
        ExitCode::from(2)
    } else if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn changed() -> std::io::Error {
    std::io::Error::other("ファイルが確認中に変わりました / the file changed while it was checked")
}

fn io_error(e: NotRegular) -> std::io::Error {
    match e {
        NotRegular::Io(e) => e,
        other => std::io::Error::other(other.to_string()),
    }
}

/// How much decoded text the checker keeps to read the records from; a file with more text
/// (over about 5 MB of CP932) is read from disk a second time instead.
const KEEP_TEXT: usize = 8 << 20;

/// How much of a file is read at a time.
const READ_PIECE: usize = 1 << 20;

/// Reads an open file from where it stands in pieces; returns the bytes read.
fn read_pieces(
    file: &mut std::fs::File,
    buf: &mut [u8],
    mut f: impl FnMut(&[u8]),
) -> std::io::Result<u64> {
    use std::io::Read;
    let mut total = 0u64;
    loop {
        let n = match file.read(buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        total += n as u64;
        f(&buf[..n]);
    }
}

/// Reads a file's first three and last two bytes.
fn image_ends(path: &Path) -> std::io::Result<ImageEnds> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = open_regular(path).map_err(io_error)?;
    let len = f.metadata()?.len();
    let mut head = [0u8; 3];
    let n = f.read(&mut head)?;
    let mut tail = [0u8; 2];
    if len >= 2 {
        f.seek(SeekFrom::Start(len - 2))?;
        f.read_exact(&mut tail)?;
    }
    let mut ends = ImageEnds::of(&head[..n]);
    ends.len = len;
    ends.tail = tail;
    Ok(ends)
}

/// Checks a received file held only by this node. A family-structure image needs only its
/// ends; a CSV is read whole, and its hash must still be the one the envelope's signed header
/// promised, so what is acknowledged is exactly what was checked.
pub(crate) fn check_received(
    name: &str,
    path: &Path,
    hash: &[u8; 32],
) -> std::io::Result<CheckReport> {
    if FileName::parse(name).is_ok_and(|n| n.kind.is_image()) {
        return Ok(check_image(name, image_ends(path)?));
    }
    let (report, got, _) = check_path(name, path, true)?;
    if got.as_ref() != Some(hash) {
        return Err(std::io::Error::other(
            "受信したファイルが確認の前に変わりました / the received file changed before it was checked",
        ));
    }
    Ok(report)
}

/// Queues checked files durably (one flush) and wakes the dispatcher.
fn queue_items(shared: &Shared, queued: &mut Vec<QueueItem>) -> anyhow::Result<()> {
    if queued.is_empty() {
        return Ok(());
    }
    // Sequence numbers are taken under the lock, the durable writes made without it (the
    // dispatcher and the status read the queue meanwhile; the scan is its only writer).
    let first = {
        let mut q = lock(&shared.queue);
        let first = q.next_seq;
        q.next_seq += queued.len() as u64;
        first
    };
    for (seq, item) in (first..).zip(queued.iter()) {
        shared.store.queue_put(seq, item)?;
    }
    shared.store.flush()?;
    let n = queued.len();
    let mut q = lock(&shared.queue);
    for (seq, item) in (first..).zip(queued.drain(..)) {
        q.names.insert(item.file_name.clone());
        q.items.insert(seq, item);
    }
    drop(q);
    tracing::debug!(n, "queued");
    shared.wake.notify_one();
    Ok(())
}

/// The name of the report beside a refused file: `<name>.error.txt`, or, for a name too long
/// to take the suffix (the file system allows 255 bytes), its first bytes and a short hash.
pub fn report_name(name: &str) -> String {
    const SUFFIX: &str = ".error.txt";
    if name.len() + SUFFIX.len() <= 255 {
        return format!("{name}{SUFFIX}");
    }
    let hash = hex::encode(&renkei_protocol::sha256(name.as_bytes())[..4]);
    let mut end = 255 - SUFFIX.len() - 1 - hash.len();
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}~{hash}{SUFFIX}", &name[..end])
}

/// Moves an outbox file to `rejected/` with its report (see [`report_name`]) beside it, both
/// readable by the office's user only.
pub(crate) fn reject_file(
    shared: &Shared,
    name: &str,
    findings: Vec<Finding>,
    title: &str,
) -> anyhow::Result<()> {
    report_only(shared, name, findings, title)?;
    let rejected = shared.home.rejected();
    // Names from the outbox are plain file names (read_dir), never paths.
    let from = shared.home.outbox().join(name);
    if std::fs::symlink_metadata(&from).is_ok() {
        let to = rejected.join(name);
        std::fs::rename(&from, &to)?;
        make_private(&to)?;
    }
    sync_dir(&rejected)?;
    sync_dir(&shared.home.outbox())?;
    Ok(())
}

/// Writes the report of a refused file into `rejected/` and says so in the status, leaving
/// the file where it is (a version the clerk has changed since stays in the outbox).
pub(crate) fn report_only(
    shared: &Shared,
    name: &str,
    findings: Vec<Finding>,
    title: &str,
) -> anyhow::Result<()> {
    shared.env.faults.alive()?;
    let mut text = format!(
        "renkei: {title}\r\nファイル / File: {}\r\n日時 / Time: {}{}\r\n\r\n",
        shown(name),
        jst(shared.env.now_ms()),
        crate::clock::status(shared)
            .times_note()
            .map_or(String::new(), |n| format!("（{n}）"))
    );
    for f in &findings {
        let place = match (f.line, f.field) {
            (0, 0) => "ファイル全体 / whole file".to_string(),
            (l, 0) => format!("{l}行目 / line {l}"),
            (l, c) => format!("{l}行目 {c}項目目 / line {l}, field {c}"),
        };
        text.push_str(&format!(
            "[{}] {place}\r\n  {}\r\n  {}\r\n\r\n",
            f.code, f.message_ja, f.message_en
        ));
    }
    text.push_str("対処後、修正したファイルを送信フォルダ（outbox）に置き直してください。\r\nAfter fixing it, put the corrected file in the outbox again.\r\n");
    write_atomic(
        &shared.home.rejected().join(report_name(name)),
        text.as_bytes(),
        true,
    )?;
    shared.error_about(
        Some(format!("file:{name}")),
        format!(
            "{}: {title} ({})",
            shown(name),
            findings
                .iter()
                .map(|f| f.code.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    Ok(())
}

/// After a file of this name was delivered: an earlier refusal of it (its report and refused
/// copy in `rejected/`) is moved to `rejected/resolved/`, so `rejected/` shows only what still
/// needs the clerk, and its line leaves the status's errors. Nothing is deleted: a name already
/// in `resolved/` (refused and fixed before) gets `.2`, `.3`, … appended.
pub(crate) fn resolve_rejected(shared: &Shared, name: &str) -> anyhow::Result<()> {
    shared.resolved(&format!("file:{name}"));
    let rejected = shared.home.rejected();
    let report = report_name(name);
    // The refused copy moves first and the report last, so a copy that cannot be moved now
    // (open in a spreadsheet, say) leaves the report in place and is tried again next time.
    let files = [name, report.as_str()];
    let exists = |p: PathBuf| std::fs::symlink_metadata(p).is_ok();
    if !files.iter().any(|f| exists(rejected.join(f))) {
        return Ok(());
    }
    let resolved = rejected.join("resolved");
    std::fs::create_dir_all(&resolved)?;
    let suffix = (1..)
        .map(|n: u32| {
            if n == 1 {
                String::new()
            } else {
                format!(".{n}")
            }
        })
        .find(|s| {
            files
                .iter()
                .all(|f| !exists(resolved.join(format!("{f}{s}"))))
        })
        .unwrap_or_default();
    for f in files {
        if exists(rejected.join(f)) {
            std::fs::rename(rejected.join(f), resolved.join(format!("{f}{suffix}")))?;
        }
    }
    sync_dir(&resolved)?;
    sync_dir(&rejected)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_names_fit_the_file_system() {
        assert_eq!(report_name("A.CSV"), "A.CSV.error.txt");
        for len in [245, 246, 250, 255] {
            let name = "x".repeat(len);
            let r = report_name(&name);
            assert!(r.len() <= 255, "{len}: {}", r.len());
            assert!(r.ends_with(".error.txt"));
        }
        // Two long names that share their first bytes get different reports.
        let a = format!("{}a", "x".repeat(250));
        let b = format!("{}b", "x".repeat(250));
        assert_ne!(report_name(&a), report_name(&b));
        // Multi-byte names are cut at a character boundary.
        let j = "あ".repeat(85);
        assert!(report_name(&j).len() <= 255);
    }
}
