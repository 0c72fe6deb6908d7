//! The node's file discipline: what it opens, how it writes durably, who may read what it
//! writes.
//!
//! - Only regular files are opened: never a FIFO (which would block the reader), a device or a
//!   symlink (which would lead out of the folder). The open itself cannot block.
//! - A write that matters is: write a temporary file, fsync it, rename it into place, fsync the
//!   folder (SPEC.md §8). Temporary names are short and fixed in length, so any name that fits
//!   the file system still fits with them.
//! - Files holding care data (inbox, sent, rejected, partial) and keys are readable by the
//!   office's user only (0600).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Why a file in a folder is not taken.
#[derive(Debug, thiserror::Error)]
pub enum NotRegular {
    /// A FIFO, socket, device or symlink: (Japanese, English).
    #[error("通常のファイルではありません（{}）/ not a regular file ({})", .0.0, .0.1)]
    Kind((&'static str, &'static str)),
    /// The file could not be opened or read.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// What a directory entry is, for reports: (Japanese, English).
pub fn kind_of(meta: &fs::Metadata) -> (&'static str, &'static str) {
    let t = meta.file_type();
    if t.is_file() {
        return ("ファイル", "file");
    }
    if t.is_dir() {
        return ("フォルダ", "folder");
    }
    if t.is_symlink() {
        return ("シンボリックリンク", "symlink");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return ("名前付きパイプ", "FIFO");
        }
        if t.is_socket() {
            return ("ソケット", "socket");
        }
        if t.is_block_device() || t.is_char_device() {
            return ("デバイス", "device");
        }
    }
    ("特殊ファイル", "special file")
}

/// Opens `path` for reading only if it is a regular file. The open does not follow a symlink
/// and does not block on a FIFO; the type is checked on the opened file itself, so a file
/// swapped for a FIFO after a directory scan is caught too.
pub fn open_regular(path: &Path) -> Result<fs::File, NotRegular> {
    let mut opts = fs::OpenOptions::new();
    opts.read(true);
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // O_NONBLOCK | O_NOFOLLOW (values of Linux on every architecture renkei builds for).
        const O_NONBLOCK: i32 = 0o4000;
        const O_NOFOLLOW: i32 = 0o400000;
        opts.custom_flags(O_NONBLOCK | O_NOFOLLOW);
    }
    #[cfg(not(target_os = "linux"))]
    {
        // Elsewhere: refuse anything but a regular file before opening.
        let meta = fs::symlink_metadata(path)?;
        if !meta.file_type().is_file() {
            return Err(NotRegular::Kind(kind_of(&meta)));
        }
    }
    let file = match opts.open(path) {
        Ok(f) => f,
        // ELOOP: the last component is a symlink.
        Err(e) if e.raw_os_error() == Some(40) && cfg!(target_os = "linux") => {
            return Err(NotRegular::Kind(("シンボリックリンク", "symlink")));
        }
        Err(e) => return Err(e.into()),
    };
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(NotRegular::Kind(kind_of(&meta)));
    }
    Ok(file)
}

/// A file's identity for change detection: its length and modification time. A file rewritten
/// or appended to after it was read has another one (and its hash tells the rest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
pub struct Stamp {
    /// Bytes.
    pub len: u64,
    /// Modification time, nanoseconds since the Unix epoch (0 when unknown).
    pub mtime_ns: u64,
}

impl Stamp {
    /// The stamp of a file's metadata.
    pub fn of(meta: &fs::Metadata) -> Stamp {
        Stamp {
            len: meta.len(),
            mtime_ns: meta
                .modified()
                .ok()
                .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos() as u64),
        }
    }
}

/// Makes a file readable and writable by its owner only.
pub fn make_private(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// A temporary name in `dir`: short and of fixed length, unique in this process.
pub fn temp_path(dir: &Path) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(".renkei-{:x}-{n:x}.tmp", std::process::id()))
}

/// Writes a file atomically and durably: temp file, fsync, rename, fsync the folder.
/// `private` makes it readable by the owner only (0600) from the moment it is created.
pub fn write_atomic(path: &Path, data: &[u8], private: bool) -> anyhow::Result<()> {
    use anyhow::Context;
    // A bare file name's parent is "", which is the current folder.
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = temp_path(dir);
    let written = (|| -> std::io::Result<()> {
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        if private {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        #[cfg(not(unix))]
        let _ = private;
        let mut f = opts.open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written.with_context(|| format!("writing {}", path.display()))
}

/// Moves the (fsynced) file `tmp` to `to` unless something is there already: linked, then
/// the temporary name removed, so a file someone put at `to` meanwhile is never replaced
/// (`AlreadyExists`, and `tmp` stays for the caller to remove). Not durable until the folder
/// is synced.
pub fn move_no_clobber(tmp: &Path, to: &Path) -> std::io::Result<()> {
    fs::hard_link(tmp, to)?;
    fs::remove_file(tmp)
}

/// fsyncs a folder so renames inside it are durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        fs::File::open(dir)?.sync_all()?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// A name as it may be shown to people and written to logs: control characters and
/// bidirectional overrides escaped (one function for the whole workspace).
pub use renkei_protocol::shown;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_move_never_replaces_what_is_there() {
        let dir = tempfile::tempdir().unwrap();
        let (tmp, to) = (dir.path().join(".tmp"), dir.path().join("a.csv"));
        fs::write(&to, b"the clerk's file").unwrap();
        fs::write(&tmp, b"an upload").unwrap();
        let e = move_no_clobber(&tmp, &to).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&to).unwrap(), b"the clerk's file");
        assert!(tmp.exists());
        fs::remove_file(&to).unwrap();
        move_no_clobber(&tmp, &to).unwrap();
        assert_eq!(fs::read(&to).unwrap(), b"an upload");
        assert!(!tmp.exists());
    }

    #[test]
    fn only_regular_files_are_opened() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.csv");
        fs::write(&file, b"x").unwrap();
        assert!(open_regular(&file).is_ok());
        assert!(matches!(
            open_regular(dir.path()),
            Err(NotRegular::Kind((_, "folder")))
        ));
        #[cfg(unix)]
        {
            let link = dir.path().join("link.csv");
            std::os::unix::fs::symlink(&file, &link).unwrap();
            assert!(matches!(
                open_regular(&link),
                Err(NotRegular::Kind((_, "symlink")))
            ));
            let fifo = dir.path().join("fifo.csv");
            let made = std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap();
            assert!(made.success(), "mkfifo is needed for this test");
            // Returns at once (a plain open would wait for a writer forever).
            assert!(matches!(
                open_regular(&fifo),
                Err(NotRegular::Kind((_, "FIFO")))
            ));
        }
    }

    #[test]
    fn a_name_of_255_bytes_still_gets_a_temporary_name() {
        let dir = tempfile::tempdir().unwrap();
        let name = "a".repeat(255);
        write_atomic(&dir.path().join(&name), b"data", true).unwrap();
        assert_eq!(fs::read(dir.path().join(&name)).unwrap(), b"data");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join(&name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Nothing else is left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
