//! Region snapshots and deltas (SPEC.md §6.4): their encoding, the region key's signature, and
//! the entries digest that binds the entries to it.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use renkei_protocol::OfficeNumber;
use renkei_protocol::wire::{Put, Reader, sha256};

use crate::DirectoryError;
use crate::encoding::{FORMAT_1, FORMAT_2, MAGIC, TYPE_DELTA, TYPE_SNAPSHOT};
use crate::entry::{Entry, NodeInfo, office};
use crate::trust::RegionCert;

/// The entries digest of `entries` (given in office-number order): SHA-256 over their
/// encodings in format 1, or in format 2 when any of them names mailbox nodes (SPEC.md §6.4).
/// It depends on the entries only, never on the format of the file that carried them, so a
/// delta of either format applies to a base of either format.
pub fn entries_digest<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> [u8; 32] {
    let entries: Vec<&Entry> = entries.into_iter().collect();
    let mut h = EntriesHasher::default();
    if entries.iter().any(|e| !e.mailboxes.is_empty()) {
        h.switch_to_format_2(&[]);
    }
    let mut buf = Vec::with_capacity(256);
    for e in entries {
        h.push(e, &mut buf);
    }
    h.finish()
}

/// Hashes entries one by one in format 1 until one names mailboxes; from then on in format 2,
/// after the caller has handed it the format 2 bytes of every earlier entry
/// ([`EntriesHasher::switch_to_format_2`]). So a region naming none (nearly all) is hashed
/// once, as before format 2.
#[derive(Default)]
pub(crate) struct EntriesHasher {
    hash: sha2::Sha256,
    format_2: bool,
}

impl EntriesHasher {
    /// Hashes `e`, leaving its format 2 encoding in `buf`. Before the first entry that names
    /// mailboxes, the caller switches to format 2.
    pub(crate) fn push(&mut self, e: &Entry, buf: &mut Vec<u8>) {
        use sha2::Digest;
        debug_assert!(self.format_2 || e.mailboxes.is_empty());
        buf.clear();
        e.encode_format_1(buf);
        if !self.format_2 {
            self.hash.update(&buf[..]);
        }
        e.encode_mailboxes(buf);
        if self.format_2 {
            self.hash.update(&buf[..]);
        }
    }

    /// Whether the entries are hashed in format 2.
    pub(crate) fn names_mailboxes(&self) -> bool {
        self.format_2
    }

    /// Starts again in format 2, given the format 2 bytes of every entry pushed so far.
    pub(crate) fn switch_to_format_2(&mut self, earlier: &[u8]) {
        use sha2::Digest;
        self.hash = sha2::Sha256::new();
        self.hash.update(earlier);
        self.format_2 = true;
    }

    pub(crate) fn finish(self) -> [u8; 32] {
        use sha2::Digest;
        self.hash.finalize().into()
    }
}

/// The format a file carrying `entries` is written in: the lowest that carries them all.
fn format_for<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> u8 {
    entries
        .into_iter()
        .map(Entry::format)
        .max()
        .unwrap_or(FORMAT_1)
}

/// Refuses a file of format 2 none of whose entries needed it: each content has one encoding.
pub(crate) fn check_format_needed(format: u8, names_mailboxes: bool) -> Result<(), DirectoryError> {
    if format == FORMAT_2 && !names_mailboxes {
        return Err(DirectoryError::Malformed(
            "format 2 file whose entries name no mailboxes",
        ));
    }
    Ok(())
}

/// The signed part of a snapshot: everything but the entries, which it commits to by digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotHeader {
    /// The file's format: 1, or 2 when an entry names mailbox nodes.
    pub format: u8,
    /// The region's certificate.
    pub cert: RegionCert,
    /// Strictly increasing per region.
    pub seq: u64,
    /// Unix seconds.
    pub issued_at: u64,
    /// Unix seconds; past it offices warn but keep working (SPEC.md §6.5).
    pub expires_at: u64,
    /// The region's directory nodes.
    pub nodes: Vec<NodeInfo>,
    /// How many entries follow.
    pub entry_count: u32,
    /// [`entries_digest`] of the entries.
    pub entries_digest: [u8; 32],
    /// The region key's signature over the header.
    pub signature: [u8; 64],
}

impl SnapshotHeader {
    fn signed_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        out.put(MAGIC);
        out.put_u8(TYPE_SNAPSHOT);
        out.put_u8(self.format);
        self.cert.encode(&mut out);
        out.put_u64(self.seq);
        out.put_u64(self.issued_at);
        out.put_u64(self.expires_at);
        out.put_u16(self.nodes.len() as u16);
        for n in &self.nodes {
            n.encode(&mut out);
        }
        out.put_u32(self.entry_count);
        out.put(&self.entries_digest);
        out
    }

    /// Checks the region key's signature over the header.
    pub(crate) fn verify_signature(&self, region_key: &VerifyingKey) -> Result<(), DirectoryError> {
        verify_region_signature(region_key, &self.signed_bytes(), &self.signature)
    }
}

/// A region's published snapshot: the signed header and every entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The signed header.
    pub header: SnapshotHeader,
    /// Entries in ascending office-number order.
    pub entries: Vec<Entry>,
}

impl Snapshot {
    /// Signs and encodes a snapshot (the `.snapshot` file's bytes).
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        cert: &RegionCert,
        region_key: &SigningKey,
        seq: u64,
        issued_at: u64,
        expires_at: u64,
        nodes: &[NodeInfo],
        entries: &[Entry],
    ) -> Vec<u8> {
        let format = format_for(entries);
        let mut header = SnapshotHeader {
            format,
            cert: cert.clone(),
            seq,
            issued_at,
            expires_at,
            nodes: nodes.to_vec(),
            entry_count: entries.len() as u32,
            entries_digest: entries_digest(entries),
            signature: [0; 64],
        };
        let signed = header.signed_bytes();
        header.signature = region_key.sign(&signed).to_bytes();
        let mut out = signed;
        out.put(&header.signature);
        for e in entries {
            e.encode(&mut out, format);
        }
        out
    }

    /// Parses a `.snapshot` file without verifying it.
    pub fn parse(bytes: &[u8]) -> Result<Snapshot, DirectoryError> {
        let (header, mut r) = Self::parse_header(bytes)?;
        // Bound the allocation by what the bytes can hold (an entry takes at least 100 bytes).
        let cap = (header.entry_count as usize).min(r.rest().len() / 100);
        let mut entries = Vec::with_capacity(cap);
        for _ in 0..header.entry_count {
            entries.push(Entry::decode(&mut r, header.format)?);
        }
        if !r.rest().is_empty() {
            return Err(DirectoryError::Malformed("trailing bytes"));
        }
        check_format_needed(
            header.format,
            entries.iter().any(|e| !e.mailboxes.is_empty()),
        )?;
        Ok(Snapshot { header, entries })
    }

    /// Parses a `.snapshot` file's header; the reader is left at the first entry.
    pub(crate) fn parse_header(
        bytes: &[u8],
    ) -> Result<(SnapshotHeader, Reader<'_>), DirectoryError> {
        let (format, mut r) = open_reader(bytes, TYPE_SNAPSHOT)?;
        let cert = RegionCert::decode(&mut r)?;
        let seq = r.u64()?;
        let issued_at = r.u64()?;
        let expires_at = r.u64()?;
        let nodes = NodeInfo::decode_list(&mut r)?;
        let entry_count = r.u32()?;
        let entries_digest = r.array()?;
        let signature = r.array()?;
        let header = SnapshotHeader {
            format,
            cert,
            seq,
            issued_at,
            expires_at,
            nodes,
            entry_count,
            entries_digest,
            signature,
        };
        Ok((header, r))
    }

    /// Checks the header signature with the region key, the digest over the entries, their
    /// order, and that every entry lies in the region's scope.
    pub(crate) fn verify_body(&self, region_key: &VerifyingKey) -> Result<(), DirectoryError> {
        let h = &self.header;
        h.verify_signature(region_key)?;
        if entries_digest(&self.entries) != h.entries_digest {
            return Err(DirectoryError::DigestMismatch);
        }
        check_entries(&h.cert, &self.entries)
    }
}

/// The format of a directory file of type `kind` (1 or 2), and a reader past its magic, type
/// and format bytes.
fn open_reader(bytes: &[u8], kind: u8) -> Result<(u8, Reader<'_>), DirectoryError> {
    if !bytes.starts_with(MAGIC) {
        return Err(DirectoryError::UnknownFormat);
    }
    let mut r = Reader::new(bytes);
    if r.bytes(6)? != MAGIC || r.u8()? != kind {
        return Err(DirectoryError::UnknownFormat);
    }
    match r.u8()? {
        f @ (FORMAT_1 | FORMAT_2) => Ok((f, r)),
        _ => Err(DirectoryError::UnknownFormat),
    }
}

/// Checks a region key's signature (snapshot headers and deltas).
fn verify_region_signature(
    region_key: &VerifyingKey,
    signed: &[u8],
    signature: &[u8; 64],
) -> Result<(), DirectoryError> {
    region_key
        .verify_strict(signed, &Signature::from_bytes(signature))
        .map_err(|_| DirectoryError::BadSignature)
}

pub(crate) fn check_entries(cert: &RegionCert, entries: &[Entry]) -> Result<(), DirectoryError> {
    for w in entries.windows(2) {
        if w[0].office >= w[1].office {
            return Err(DirectoryError::Malformed(
                "entries not in ascending office order",
            ));
        }
    }
    for e in entries {
        if !cert.covers(&e.office) {
            return Err(DirectoryError::OutOfScope {
                office: e.office,
                region: cert.region.clone(),
            });
        }
    }
    Ok(())
}

/// An incremental update from one sequence number to a later one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delta {
    /// The region's certificate.
    pub cert: RegionCert,
    /// The sequence number it applies to.
    pub from_seq: u64,
    /// The sequence number it produces.
    pub to_seq: u64,
    /// Unix seconds.
    pub issued_at: u64,
    /// Unix seconds.
    pub expires_at: u64,
    /// The region's directory nodes at `to_seq`.
    pub nodes: Vec<NodeInfo>,
    /// Digest of the entries at `from_seq`.
    pub base_digest: [u8; 32],
    /// Digest of the entries at `to_seq`.
    pub result_digest: [u8; 32],
    /// Entries added or changed.
    pub upserts: Vec<Entry>,
    /// Offices removed from the directory.
    pub removals: Vec<OfficeNumber>,
    /// Region signature over everything before it.
    pub signature: [u8; 64],
}

impl Delta {
    /// The delta's format: 2 when an upsert names mailbox nodes, else 1. Its result digest is
    /// [`entries_digest`] of the whole result, whatever the delta's own format.
    pub fn format(&self) -> u8 {
        format_for(&self.upserts)
    }

    fn signed_bytes(&self) -> Vec<u8> {
        let format = self.format();
        let mut out = Vec::with_capacity(1024);
        out.put(MAGIC);
        out.put_u8(TYPE_DELTA);
        out.put_u8(format);
        self.cert.encode(&mut out);
        out.put_u64(self.from_seq);
        out.put_u64(self.to_seq);
        out.put_u64(self.issued_at);
        out.put_u64(self.expires_at);
        out.put_u16(self.nodes.len() as u16);
        for n in &self.nodes {
            n.encode(&mut out);
        }
        out.put(&self.base_digest);
        out.put(&self.result_digest);
        out.put_u32(self.upserts.len() as u32);
        for e in &self.upserts {
            e.encode(&mut out, format);
        }
        out.put_u32(self.removals.len() as u32);
        for o in &self.removals {
            out.put(o.as_bytes());
        }
        out
    }

    /// Signs and encodes a delta (the `.delta` file's bytes).
    pub fn sign(mut self, region_key: &SigningKey) -> Vec<u8> {
        let mut out = self.signed_bytes();
        self.signature = region_key.sign(&out).to_bytes();
        out.put(&self.signature);
        out
    }

    /// Parses a `.delta` file without verifying it.
    pub fn parse(bytes: &[u8]) -> Result<Delta, DirectoryError> {
        let (format, mut r) = open_reader(bytes, TYPE_DELTA)?;
        let cert = RegionCert::decode(&mut r)?;
        let from_seq = r.u64()?;
        let to_seq = r.u64()?;
        let issued_at = r.u64()?;
        let expires_at = r.u64()?;
        let nodes = NodeInfo::decode_list(&mut r)?;
        let base_digest = r.array()?;
        let result_digest = r.array()?;
        let n = r.u32()?;
        let mut upserts = Vec::with_capacity((n as usize).min(r.rest().len() / 100));
        for _ in 0..n {
            upserts.push(Entry::decode(&mut r, format)?);
        }
        check_format_needed(format, upserts.iter().any(|e| !e.mailboxes.is_empty()))?;
        let n = r.u32()?;
        let mut removals = Vec::with_capacity((n as usize).min(r.rest().len() / 10));
        for _ in 0..n {
            removals.push(office(r.bytes(10)?)?);
        }
        let signature = r.array()?;
        if !r.rest().is_empty() {
            return Err(DirectoryError::Malformed("trailing bytes"));
        }
        Ok(Delta {
            cert,
            from_seq,
            to_seq,
            issued_at,
            expires_at,
            nodes,
            base_digest,
            result_digest,
            upserts,
            removals,
            signature,
        })
    }

    pub(crate) fn verify_signature(&self, region_key: &VerifyingKey) -> Result<(), DirectoryError> {
        verify_region_signature(region_key, &self.signed_bytes(), &self.signature)
    }
}

/// The hash identifying a snapshot or delta file, for logs.
pub fn file_id(bytes: &[u8]) -> String {
    hex::encode(&sha256(bytes)[..8])
}

#[cfg(test)]
mod tests {
    use renkei_protocol::ServiceKind;

    use super::*;
    use crate::entry::{OfficeKey, Status};

    /// A file may say format 2 only when an entry needs it: the same content has one encoding.
    #[test]
    fn format_2_without_a_named_mailbox_is_malformed() {
        let root = SigningKey::from_bytes(&[1; 32]);
        let region = SigningKey::from_bytes(&[2; 32]);
        let cert = RegionCert::issue(
            &root,
            "13-tokyo",
            "東京",
            region.verifying_key().to_bytes(),
            vec![13],
            0,
            u64::MAX,
        );
        let entry = Entry {
            office: OfficeNumber::parse("1310000001").unwrap(),
            name: "事業所".into(),
            kinds: vec![ServiceKind::parse("43").unwrap()],
            keys: vec![OfficeKey {
                identity: [3; 32],
                encryption: [4; 32],
                valid_from: 0,
                valid_until: u64::MAX,
            }],
            addresses: vec![],
            status: Status::Active,
            mailboxes: vec![],
        };
        // Written by hand as format 2, signed properly: every field right but the need.
        let mut header = SnapshotHeader {
            format: FORMAT_2,
            cert: cert.clone(),
            seq: 1,
            issued_at: 10,
            expires_at: 20,
            nodes: vec![],
            entry_count: 1,
            entries_digest: entries_digest([&entry]),
            signature: [0; 64],
        };
        let mut file = header.signed_bytes();
        header.signature = region.sign(&file).to_bytes();
        file.put(&header.signature);
        entry.encode(&mut file, FORMAT_2);
        let malformed = Err(DirectoryError::Malformed(
            "format 2 file whose entries name no mailboxes",
        ));
        assert_eq!(Snapshot::parse(&file).map(|_| ()), malformed);
        let anchor = crate::Anchor::from_json(&format!(
            r#"{{"format":"renkei-anchor/1","federation":"t","roots":["{}"]}}"#,
            hex::encode(root.verifying_key().to_bytes())
        ))
        .unwrap();
        let mut dir = crate::Directory::new(anchor);
        assert_eq!(dir.apply_snapshot(&file).map(|_| ()), malformed);
        // The same content as format 1 is accepted.
        let good = Snapshot::build(&cert, &region, 1, 10, 20, &[], std::slice::from_ref(&entry));
        assert_eq!(good[7], FORMAT_1);
        dir.apply_snapshot(&good).unwrap();

        // A delta likewise.
        let delta = Delta {
            cert,
            from_seq: 1,
            to_seq: 2,
            issued_at: 11,
            expires_at: 21,
            nodes: vec![],
            base_digest: entries_digest([&entry]),
            result_digest: entries_digest([&entry]),
            upserts: vec![entry],
            removals: vec![],
            signature: [0; 64],
        };
        let mut file = delta.clone().sign(&region);
        assert_eq!(file[7], FORMAT_1);
        file[7] = FORMAT_2;
        assert!(Delta::parse(&file).is_err());
    }
}
