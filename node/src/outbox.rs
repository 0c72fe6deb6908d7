//! The outbox: new files are noticed (file-system events plus a periodic rescan, so nothing is
//! missed), checked, routed and queued durably — or moved to `rejected/` with a report that
//! says, in Japanese and English, what is wrong and what to do.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use notify::Watcher;
use renkei_protocol::{
    CheckReport, Checked, Checker, ErrorCode, FileName, Finding, ImageEnds, check_image, finding,
};

use crate::home::{sync_dir, write_atomic};
use crate::node::{Shared, lock, now_ms, now_secs};
use crate::store::QueueItem;

/// How often a long scan queues the files it has checked so far.
const QUEUE_EVERY: Duration = Duration::from_millis(25);

/// Watches the outbox and rescans it on events, on request and periodically.
pub(crate) async fn watch_loop(shared: Arc<Shared>) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
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
            .map(|_| w)
    });
    let _watcher = match watcher {
        Ok(w) => Some(w),
        Err(e) => {
            shared.error(format!("送信フォルダを監視できません（定期確認のみ） / cannot watch the outbox, rescanning periodically only: {e}"));
            None
        }
    };
    let mut stop = shared.shutdown.clone();
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
            Some(()) = rx.recv() => {
                // Let a burst of events settle into one scan.
                tokio::time::sleep(Duration::from_millis(20)).await;
                while rx.try_recv().is_ok() {}
            }
            _ = shared.rescan.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => break,
        }
    }
}

/// Scans the outbox once. Returns how long until a file still being written settles.
pub(crate) async fn scan(shared: &Arc<Shared>) -> anyhow::Result<Option<Duration>> {
    let s = shared.clone();
    tokio::task::spawn_blocking(move || scan_blocking(&s))
        .await
        .context("scan task")?
}

fn scan_blocking(shared: &Arc<Shared>) -> anyhow::Result<Option<Duration>> {
    let settle = Duration::from_millis(shared.config.settle_ms);
    let mut wait: Option<Duration> = None;
    let mut queued = Vec::new();
    let directory_ready = shared.dir().regions().next().is_some();
    let mut names: Vec<String> = Vec::new();
    let mut folders = std::collections::HashSet::new();
    for e in std::fs::read_dir(shared.home.outbox())?.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with('.') || name.ends_with(".tmp") || name.ends_with(".part") {
            continue;
        }
        let Ok(meta) = e.metadata() else { continue };
        if !meta.is_file() {
            if meta.is_dir() {
                if lock(&shared.ignored_folders).insert(name.clone()) {
                    shared.error(format!(
                        "送信フォルダ内のフォルダ「{name}」の中身は送信されません。ファイルは送信フォルダに直接置いてください / the folder {name} in the outbox is not sent: put files directly in outbox/"
                    ));
                }
                folders.insert(name);
            }
            continue;
        }
        if lock(&shared.queue).names.contains(&name) {
            tracing::trace!(%name, "already queued");
            continue;
        }
        // A file the care software is still writing: wait until it has settled.
        let age = meta
            .modified()
            .ok()
            .and_then(|m| SystemTime::now().duration_since(m).ok())
            .unwrap_or(settle);
        if age < settle {
            tracing::trace!(%name, ?age, "still settling");
            let left = settle - age;
            wait = Some(wait.map_or(left, |w| w.min(left)));
            continue;
        }
        names.push(name);
    }
    // A folder removed and made again is reported again.
    lock(&shared.ignored_folders).retain(|f| folders.contains(f));
    // In send-unit order, as they are delivered, so that what is queued first goes first.
    names.sort_by_cached_key(|n| match FileName::parse(n) {
        Ok(f) => (f.stamp.as_str().to_string(), f.kind.unit_order(), n.clone()),
        Err(_) => (String::new(), usize::MAX, n.clone()),
    });
    tracing::debug!(candidates = names.len(), directory_ready, "outbox scan");
    let mut last_queued = Instant::now();
    let max_file = shared.config.max_file_mb.saturating_mul(1 << 20);
    for name in names {
        // Queue what has passed so far every few milliseconds, so a large batch starts
        // going out while the rest of it is still being checked.
        if last_queued.elapsed() >= QUEUE_EVERY && !queued.is_empty() {
            queue_items(shared, &mut queued)?;
            last_queued = Instant::now();
        }
        let path = shared.home.outbox().join(&name);
        // Not even read: larger than this node sends.
        if std::fs::metadata(&path).is_ok_and(|m| m.len() > max_file) {
            reject_file(
                shared,
                &name,
                vec![finding(ErrorCode::FileTooLarge, 0, 0)],
                "このファイルは送信できませんでした / This file could not be sent",
            )?;
            lock(&shared.stats).rejected_outgoing += 1;
            continue;
        }
        let Ok((report, sha256, size)) = check_file(&name, &path) else {
            continue;
        };
        let mut findings = report.errors;
        let parsed = FileName::parse(&name).ok();
        if let Some(n) = &parsed {
            let kind_ok = match n.from.kind {
                Some(k) => shared.kinds.is_empty() || shared.kinds.contains(&k),
                None => true,
            };
            if n.from.office != shared.office || !kind_ok {
                findings.push(finding(ErrorCode::RouteSender, 0, 0));
            }
            if findings.is_empty() {
                if !directory_ready {
                    // Wait for the first directory sync before judging recipients.
                    continue;
                }
                let listed = match shared.dir().lookup(&n.to.office) {
                    Ok(listed) => listed,
                    Err(e) => {
                        // Not the recipient's fault: the file waits for the next scan.
                        shared.error(format!("{name}: 名簿を読めないため送信を待ちます / waiting, cannot read the directory: {e}"));
                        continue;
                    }
                };
                let ok = listed.is_some_and(|e| {
                    e.is_active()
                        && n.to.kind.is_none_or(|k| e.kinds.contains(&k))
                        && e.sealing_key_at(now_secs()).is_some()
                });
                if !ok {
                    findings.push(finding(ErrorCode::RecipientUnknown, 0, 0));
                }
            }
        }
        if !findings.is_empty() {
            reject_file(
                shared,
                &name,
                findings,
                "このファイルは送信できませんでした / This file could not be sent",
            )?;
            lock(&shared.stats).rejected_outgoing += 1;
            continue;
        }
        let Some(n) = parsed else { continue };
        note_resend(shared, &name, &sha256);
        let mut id = [0u8; 16];
        rand::Rng::fill_bytes(&mut rand::rng(), &mut id);
        queued.push(QueueItem {
            message_id: hex::encode(id),
            file_name: name,
            recipient: n.to.office.to_string(),
            sha256: hex::encode(sha256),
            size,
            queued_at_ms: now_ms(),
        });
    }
    queue_items(shared, &mut queued)?;
    Ok(wait)
}

/// A file of a name already delivered is sent again (SPEC.md §7.3); the office is told, so an
/// accidental second drop does not go unnoticed.
fn note_resend(shared: &Shared, name: &str, sha256: &[u8; 32]) {
    let earlier = shared.home.sent().join(name);
    let Ok((_, Some(hash), _)) = check_path(name, &earlier, true) else {
        return;
    };
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

/// Checks a file and hashes it, reading it in pieces: memory stays bounded whatever its size
/// (a CSV whose text passes [`KEEP_TEXT`] is read a second time for its records).
pub(crate) fn check_file(name: &str, path: &Path) -> std::io::Result<(CheckReport, [u8; 32], u64)> {
    let (report, hash, size) = check_path(name, path, true)?;
    Ok((report, hash.unwrap_or_default(), size))
}

/// Checks a file by reading it in pieces; with `hash`, also its SHA-256.
pub fn check_path(
    name: &str,
    path: &Path,
    hash: bool,
) -> std::io::Result<(CheckReport, Option<[u8; 32]>, u64)> {
    use sha2::Digest;
    // A usual file of tens of KB needs no 1 MiB buffer.
    let meta = std::fs::metadata(path)?;
    let before = meta.modified().ok();
    let len = meta.len();
    let mut buf = vec![0u8; len.clamp(1, READ_PIECE as u64) as usize];
    let mut hasher = hash.then(sha2::Sha256::new);
    let mut checker = Checker::with_retain_limit(name, KEEP_TEXT);
    let size = read_pieces(path, &mut buf, |piece| {
        if let Some(h) = &mut hasher {
            h.update(piece);
        }
        checker.update(piece);
    })?;
    let report = match checker.finish() {
        Checked::Done(report) => report,
        Checked::ReadAgain(mut records) => {
            let again = read_pieces(path, &mut buf, |piece| records.update(piece))?;
            // The records must be those of the bytes hashed: a file rewritten between the two
            // readings is left for the next scan.
            let now = std::fs::metadata(path)?;
            if again != size || now.len() != size || now.modified().ok() != before {
                return Err(std::io::Error::other(
                    "ファイルが確認中に変わりました / the file changed while it was checked",
                ));
            }
            records.finish()
        }
    };
    Ok((report, hasher.map(|h| h.finalize().into()), size))
}

/// How much decoded text the checker keeps to read the records from; a file with more text
/// (over about 5 MB of CP932) is read from disk a second time instead.
const KEEP_TEXT: usize = 8 << 20;

/// How much of a file is read at a time.
const READ_PIECE: usize = 1 << 20;

/// Reads a file from its start in pieces; returns its length.
fn read_pieces(path: &Path, buf: &mut [u8], mut f: impl FnMut(&[u8])) -> std::io::Result<u64> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
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
    let mut f = std::fs::File::open(path)?;
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

/// Checks a received file (its hash was already verified by the envelope). A family-structure
/// image needs only its ends.
pub(crate) fn check_received(name: &str, path: &Path) -> std::io::Result<CheckReport> {
    if FileName::parse(name).is_ok_and(|n| n.kind.is_image()) {
        Ok(check_image(name, image_ends(path)?))
    } else {
        Ok(check_path(name, path, false)?.0)
    }
}

/// Queues checked files durably (one flush) and wakes the dispatcher.
fn queue_items(shared: &Shared, queued: &mut Vec<QueueItem>) -> anyhow::Result<()> {
    if queued.is_empty() {
        return Ok(());
    }
    let mut q = lock(&shared.queue);
    let mut seqs = Vec::with_capacity(queued.len());
    for item in queued.iter() {
        let seq = q.next_seq;
        q.next_seq += 1;
        shared.store.queue_put(seq, item)?;
        seqs.push(seq);
    }
    shared.store.flush()?;
    for (seq, item) in seqs.into_iter().zip(queued.drain(..)) {
        q.names.insert(item.file_name.clone());
        q.items.insert(seq, item);
    }
    drop(q);
    shared.wake.notify_one();
    Ok(())
}

/// Moves an outbox file to `rejected/` with `<name>.error.txt` beside it.
pub(crate) fn reject_file(
    shared: &Shared,
    name: &str,
    findings: Vec<Finding>,
    title: &str,
) -> anyhow::Result<()> {
    let mut text = format!(
        "renkei: {title}\r\nファイル / File: {name}\r\n日時 / Time: {}\r\n\r\n",
        crate::node::jst(now_ms())
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
    let rejected = shared.home.rejected();
    // Names from the outbox are plain file names (read_dir), never paths.
    write_atomic(
        &rejected.join(format!("{name}.error.txt")),
        text.as_bytes(),
        false,
    )?;
    let from = shared.home.outbox().join(name);
    if from.exists() {
        std::fs::rename(&from, rejected.join(name))?;
    }
    sync_dir(&rejected)?;
    sync_dir(&shared.home.outbox())?;
    shared.error_about(
        Some(format!("file:{name}")),
        format!(
            "{name}: {title} ({})",
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
    let report = format!("{name}.error.txt");
    // The refused copy moves first and the report last, so a copy that cannot be moved now
    // (open in a spreadsheet, say) leaves the report in place and is tried again next time.
    let files = [name, report.as_str()];
    if !files.iter().any(|f| rejected.join(f).exists()) {
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
                .all(|f| !resolved.join(format!("{f}{s}")).exists())
        })
        .unwrap_or_default();
    for f in files {
        if rejected.join(f).exists() {
            std::fs::rename(rejected.join(f), resolved.join(format!("{f}{suffix}")))?;
        }
    }
    sync_dir(&resolved)?;
    sync_dir(&rejected)?;
    Ok(())
}
