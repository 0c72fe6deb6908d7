//! A region's entries, kept compactly: their encodings (SPEC.md §6.3) one after another, in
//! memory or in a scratch file, with sorted indexes by office number and by identity key.
//!
//! Held as decoded values, a national directory of 300,000 offices costs about 120 MB of RAM
//! (strings, vectors and map nodes per entry). Kept in a scratch file, only the indexes stay in
//! memory, about 22 bytes per office; an entry is read and decoded when it is looked up.

use std::fmt;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;

use crate::DirectoryError;
use crate::encoding::FORMAT_2;
use crate::entry::Entry;
use crate::snapshot::EntriesHasher;
use crate::trust::RegionCert;
use renkei_protocol::OfficeNumber;
use renkei_protocol::wire::Reader;

/// A region's verified entries, in ascending office-number order. Cloning is cheap (shared).
#[derive(Clone)]
pub struct EntryTable(Arc<Inner>);

struct Inner {
    /// Ascending.
    offices: Vec<OfficeNumber>,
    /// End of entry `i`'s encoding in `bytes`; it starts where entry `i - 1` ends.
    ends: Vec<u32>,
    /// (first four bytes of an identity key, entry index), sorted: candidates for a key.
    keys: Vec<(u32, u32)>,
    revoked: usize,
    bytes: Bytes,
}

enum Bytes {
    Memory(Vec<u8>),
    /// An unnamed scratch file: removed by the system when the last handle closes.
    File(File),
}

fn key_prefix(key: &[u8; 32]) -> u32 {
    u32::from_be_bytes([key[0], key[1], key[2], key[3]])
}

impl EntryTable {
    /// How many entries.
    pub fn len(&self) -> usize {
        self.0.offices.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.offices.is_empty()
    }

    /// How many entries are revoked.
    pub fn revoked(&self) -> usize {
        self.0.revoked
    }

    /// The length of the entries' encodings, in bytes.
    pub fn encoded_len(&self) -> usize {
        self.0.ends.last().copied().unwrap_or(0) as usize
    }

    /// The office numbers, ascending.
    pub fn offices(&self) -> &[OfficeNumber] {
        &self.0.offices
    }

    /// Whether the table lists `office`.
    pub fn contains(&self, office: &OfficeNumber) -> bool {
        self.0.offices.binary_search(office).is_ok()
    }

    /// The entry of `office`. An error only when the scratch file cannot be read (a failing
    /// disk): the caller tries again later rather than taking the office for unlisted.
    pub fn get(&self, office: &OfficeNumber) -> Result<Option<Entry>, DirectoryError> {
        match self.0.offices.binary_search(office) {
            Ok(i) => self.entry(i).map(Some),
            Err(_) => Ok(None),
        }
    }

    /// The entries that list identity key `key` (any status, any validity window).
    pub fn with_key(&self, key: &[u8; 32]) -> Result<Vec<Entry>, DirectoryError> {
        let p = key_prefix(key);
        let keys = &self.0.keys;
        let start = keys.partition_point(|k| k.0 < p);
        let mut out = Vec::new();
        for k in keys[start..].iter().take_while(|k| k.0 == p) {
            let e = self.entry(k.1 as usize)?;
            if e.keys.iter().any(|k| &k.identity == key) {
                out.push(e);
            }
        }
        Ok(out)
    }

    /// Every entry in office order. Reads the whole table once.
    pub fn entries(&self) -> Result<Vec<Entry>, DirectoryError> {
        let mut out = Vec::with_capacity(self.len());
        self.for_each(|e| {
            out.push(e);
            Ok(())
        })?;
        Ok(out)
    }

    /// Calls `f` with every entry in office order, decoding them one by one.
    pub(crate) fn for_each(
        &self,
        mut f: impl FnMut(Entry) -> Result<(), DirectoryError>,
    ) -> Result<(), DirectoryError> {
        match &self.0.bytes {
            Bytes::Memory(b) => {
                let mut r = Reader::new(&b[..self.encoded_len()]);
                for _ in 0..self.len() {
                    f(Entry::decode(&mut r, FORMAT_2)?)?;
                }
            }
            Bytes::File(file) => {
                // Read in windows of about 1 MiB (or one entry, if longer), never all at once.
                const WINDOW: usize = 1 << 20;
                let mut window = Vec::new();
                let mut window_start = 0usize;
                let mut start = 0usize;
                for &end in &self.0.ends {
                    let end = end as usize;
                    if end > window_start + window.len() {
                        let len = WINDOW.max(end - start).min(self.encoded_len() - start);
                        window.resize(len, 0);
                        read_at(file, &mut window, start as u64).map_err(storage)?;
                        window_start = start;
                    }
                    let bytes = &window[start - window_start..end - window_start];
                    f(Entry::decode(&mut Reader::new(bytes), FORMAT_2)?)?;
                    start = end;
                }
            }
        }
        Ok(())
    }

    fn entry(&self, i: usize) -> Result<Entry, DirectoryError> {
        let start = if i == 0 { 0 } else { self.0.ends[i - 1] } as usize;
        let end = self.0.ends[i] as usize;
        let decode = |b: &[u8]| Entry::decode(&mut Reader::new(b), FORMAT_2);
        match &self.0.bytes {
            Bytes::Memory(b) => decode(&b[start..end]),
            Bytes::File(file) => {
                let mut b = vec![0; end - start];
                read_at(file, &mut b, start as u64).map_err(storage)?;
                decode(&b)
            }
        }
    }
}

impl fmt::Debug for EntryTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EntryTable")
            .field("entries", &self.len())
            .field(
                "in",
                &match self.0.bytes {
                    Bytes::Memory(_) => "memory",
                    Bytes::File(_) => "file",
                },
            )
            .finish()
    }
}

fn storage(e: std::io::Error) -> DirectoryError {
    DirectoryError::Storage(e.to_string())
}

#[cfg(unix)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(windows)]
fn read_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_read(buf, offset)? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
        }
    }
    Ok(())
}

enum Sink {
    Memory(Vec<u8>),
    File(BufWriter<File>),
}

/// Builds a table from entries given in order, hashing them as it goes ([`entries_digest`]
/// over the same bytes) so a snapshot or delta is verified without holding its entries.
///
/// [`entries_digest`]: crate::entries_digest
pub(crate) struct TableBuilder<'c> {
    cert: &'c RegionCert,
    offices: Vec<OfficeNumber>,
    ends: Vec<u32>,
    keys: Vec<(u32, u32)>,
    revoked: usize,
    sink: Sink,
    written: u64,
    hasher: EntriesHasher,
    buf: Vec<u8>,
    /// The first entry out of order or out of the region's scope. Kept rather than returned
    /// at once, so the caller decides which check speaks first (the digest, usually).
    problem: Option<DirectoryError>,
}

/// What [`TableBuilder::finish`] returns.
pub(crate) struct Built {
    pub table: EntryTable,
    /// Whether an entry names mailbox nodes (so its file had to be of format 2).
    pub names_mailboxes: bool,
    pub digest: [u8; 32],
    pub problem: Option<DirectoryError>,
}

impl<'c> TableBuilder<'c> {
    /// A builder writing into memory, or into an unnamed scratch file in `spill`, for about
    /// `expect` entries taking about `expect_bytes` (capacity hints, bounded by the caller by
    /// what it holds, never by a count it was told).
    pub(crate) fn new(
        cert: &'c RegionCert,
        spill: Option<&Path>,
        expect: usize,
        expect_bytes: usize,
    ) -> Result<TableBuilder<'c>, DirectoryError> {
        let sink = match spill {
            None => Sink::Memory(Vec::with_capacity(expect_bytes)),
            Some(dir) => Sink::File(BufWriter::with_capacity(
                1 << 16,
                tempfile::tempfile_in(dir).map_err(storage)?,
            )),
        };
        Ok(TableBuilder {
            cert,
            offices: Vec::with_capacity(expect),
            ends: Vec::with_capacity(expect),
            keys: Vec::with_capacity(expect),
            revoked: 0,
            sink,
            written: 0,
            hasher: EntriesHasher::default(),
            buf: Vec::with_capacity(256),
            problem: None,
        })
    }

    /// Adds the next entry.
    pub(crate) fn push(&mut self, e: &Entry) -> Result<(), DirectoryError> {
        if self.problem.is_none() {
            if self.offices.last().is_some_and(|last| *last >= e.office) {
                self.problem = Some(DirectoryError::Malformed(
                    "entries not in ascending office order",
                ));
            } else if !self.cert.covers(&e.office) {
                self.problem = Some(DirectoryError::OutOfScope {
                    office: e.office,
                    region: self.cert.region.clone(),
                });
            }
        }
        // The first entry naming mailboxes turns the digest to format 2: the entries before it
        // are hashed again from what the table kept of them (format 2 bytes).
        if !e.mailboxes.is_empty() && !self.hasher.names_mailboxes() {
            let earlier = self.written_bytes()?;
            self.hasher.switch_to_format_2(&earlier);
        }
        // The table keeps every entry in format 2, whatever the file's format.
        self.hasher.push(e, &mut self.buf);
        match &mut self.sink {
            Sink::Memory(v) => v.extend_from_slice(&self.buf),
            Sink::File(w) => w.write_all(&self.buf).map_err(storage)?,
        }
        self.written += self.buf.len() as u64;
        let end = u32::try_from(self.written)
            .map_err(|_| DirectoryError::Malformed("a region's entries exceed 4 GiB"))?;
        let index = self.offices.len() as u32;
        self.offices.push(e.office);
        self.ends.push(end);
        for k in &e.keys {
            self.keys.push((key_prefix(&k.identity), index));
        }
        if !e.is_active() {
            self.revoked += 1;
        }
        Ok(())
    }

    /// Every byte written so far.
    fn written_bytes(&mut self) -> Result<Vec<u8>, DirectoryError> {
        match &mut self.sink {
            Sink::Memory(v) => Ok(v.clone()),
            Sink::File(w) => {
                w.flush().map_err(storage)?;
                let mut b = vec![0; self.written as usize];
                read_at(w.get_ref(), &mut b, 0).map_err(storage)?;
                Ok(b)
            }
        }
    }

    /// The table, the digest of its entries, and the first order or scope problem.
    pub(crate) fn finish(mut self) -> Result<Built, DirectoryError> {
        let bytes = match self.sink {
            Sink::Memory(mut v) => {
                v.shrink_to_fit();
                Bytes::Memory(v)
            }
            Sink::File(w) => Bytes::File(w.into_inner().map_err(|e| storage(e.into_error()))?),
        };
        self.keys.sort_unstable();
        self.keys.dedup();
        self.offices.shrink_to_fit();
        self.ends.shrink_to_fit();
        self.keys.shrink_to_fit();
        Ok(Built {
            table: EntryTable(Arc::new(Inner {
                offices: self.offices,
                ends: self.ends,
                keys: self.keys,
                revoked: self.revoked,
                bytes,
            })),
            names_mailboxes: self.hasher.names_mailboxes(),
            digest: self.hasher.finish(),
            problem: self.problem,
        })
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;
    use renkei_protocol::ServiceKind;

    use sha2::Digest;

    use super::*;
    use crate::entry::{OfficeKey, Status};

    fn entry(n: u32, identity: [u8; 32], status: Status) -> Entry {
        Entry {
            office: OfficeNumber::parse(&format!("13{n:08}")).unwrap(),
            name: format!("事業所{n}"),
            kinds: vec![ServiceKind::parse("43").unwrap()],
            keys: vec![OfficeKey {
                identity,
                encryption: [7; 32],
                valid_from: 0,
                valid_until: u64::MAX,
            }],
            addresses: vec!["/ip4/127.0.0.1/tcp/4001".into()],
            status,
            mailboxes: Vec::new(),
        }
    }

    fn build(spill: Option<&Path>, entries: &[Entry]) -> Built {
        let root = SigningKey::from_bytes(&[1; 32]);
        let cert = RegionCert::issue(&root, "13-tokyo", "東京", [2; 32], vec![13], 0, u64::MAX);
        let mut b = TableBuilder::new(&cert, spill, 0, 0).unwrap();
        for e in entries {
            b.push(e).unwrap();
        }
        b.finish().unwrap()
    }

    #[test]
    fn keys_sharing_a_prefix_and_offices_sharing_a_key_are_told_apart() {
        let key = |last: u8| {
            let mut k = [9; 32];
            k[31] = last;
            k
        };
        // Three keys with the same first four bytes; offices 2 and 3 list the same key.
        let entries = [
            entry(1, key(1), Status::Active),
            entry(2, key(2), Status::Revoked),
            entry(3, key(2), Status::Active),
            entry(4, key(3), Status::Active),
        ];
        let scratch = tempfile::tempdir().unwrap();
        for spill in [None, Some(scratch.path())] {
            let built = build(spill, &entries);
            assert!(built.problem.is_none());
            assert_eq!(built.digest, crate::entries_digest(&entries));
            let t = built.table;
            assert_eq!((t.len(), t.revoked()), (4, 1));
            let offices = |k: [u8; 32]| {
                t.with_key(&k)
                    .unwrap()
                    .into_iter()
                    .map(|e| e.office)
                    .collect::<Vec<_>>()
            };
            assert_eq!(offices(key(1)), [entries[0].office]);
            assert_eq!(offices(key(2)), [entries[1].office, entries[2].office]);
            assert_eq!(offices(key(3)), [entries[3].office]);
            assert!(offices(key(4)).is_empty());
            for e in &entries {
                assert_eq!(t.get(&e.office).unwrap().as_ref(), Some(e));
            }
            assert_eq!(t.get(&OfficeNumber::parse("1300000099").unwrap()), Ok(None));
            assert_eq!(t.entries().unwrap(), entries);
        }
    }

    #[test]
    fn a_table_over_several_read_windows_reads_back_whole() {
        // 2,500 entries of about 1 KB: the file is read back in three windows.
        let entries: Vec<Entry> = (0..2500)
            .map(|n| {
                let mut e = entry(n, [(n % 251) as u8; 32], Status::Active);
                e.name = format!("{n:05}{}", "長".repeat(300));
                e
            })
            .collect();
        let scratch = tempfile::tempdir().unwrap();
        let t = build(Some(scratch.path()), &entries).table;
        assert!(t.encoded_len() > 2 << 20);
        assert_eq!(t.entries().unwrap(), entries);
    }

    /// An entry naming mailboxes after others turns the digest to format 2 over all of them,
    /// the earlier ones hashed again from what the table kept (in memory and in a file).
    #[test]
    fn a_named_mailbox_midway_turns_the_whole_digest_to_format_2() {
        let mut entries: Vec<Entry> = (1..=4)
            .map(|n| entry(n, [n as u8; 32], Status::Active))
            .collect();
        entries[2].mailboxes = vec![[9; 32]];
        let mut format_2 = Vec::new();
        for e in &entries {
            e.encode(&mut format_2, crate::encoding::FORMAT_2);
        }
        let expected: [u8; 32] = sha2::Sha256::digest(&format_2).into();
        assert_eq!(crate::entries_digest(&entries), expected);
        let scratch = tempfile::tempdir().unwrap();
        for spill in [None, Some(scratch.path())] {
            let built = build(spill, &entries);
            assert!(built.names_mailboxes);
            assert_eq!(built.digest, expected);
            assert_eq!(built.table.entries().unwrap(), entries);
        }
        // Without it, format 1 throughout.
        entries[2].mailboxes.clear();
        let mut format_1 = Vec::new();
        for e in &entries {
            e.encode(&mut format_1, crate::encoding::FORMAT_1);
        }
        let built = build(None, &entries);
        assert!(!built.names_mailboxes);
        assert_eq!(
            built.digest,
            <[u8; 32]>::from(sha2::Sha256::digest(&format_1))
        );
    }

    #[test]
    fn order_and_scope_problems_are_kept_for_the_caller() {
        let a = entry(1, [1; 32], Status::Active);
        let b = entry(2, [2; 32], Status::Active);
        let built = build(None, &[b.clone(), a.clone()]);
        assert_eq!(
            built.problem,
            Some(DirectoryError::Malformed(
                "entries not in ascending office order"
            ))
        );
        let mut osaka = entry(3, [3; 32], Status::Active);
        osaka.office = OfficeNumber::parse("2710000001").unwrap();
        let built = build(None, &[a, osaka.clone()]);
        assert_eq!(
            built.problem,
            Some(DirectoryError::OutOfScope {
                office: osaka.office,
                region: "13-tokyo".into()
            })
        );
    }
}
