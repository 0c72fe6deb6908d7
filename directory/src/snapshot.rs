//! Region snapshots and deltas (SPEC.md §6.4): their encoding, the region key's signature, and
//! the entries digest that binds the entries to it.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use renkei_protocol::OfficeNumber;
use renkei_protocol::wire::{Put, Reader, sha256};

use crate::DirectoryError;
use crate::encoding::{MAGIC, TYPE_DELTA, TYPE_SNAPSHOT, VERSION};
use crate::entry::{Entry, NodeInfo, office};
use crate::trust::RegionCert;

/// The SHA-256 over the encodings of `entries` in office-number order.
pub fn entries_digest<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> [u8; 32] {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    let mut buf = Vec::with_capacity(256);
    for e in entries {
        buf.clear();
        e.encode(&mut buf);
        h.update(&buf);
    }
    h.finalize().into()
}

/// The signed part of a snapshot: everything but the entries, which it commits to by digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotHeader {
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
        out.put_u8(VERSION);
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
        let mut header = SnapshotHeader {
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
            e.encode(&mut out);
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
            entries.push(Entry::decode(&mut r)?);
        }
        if !r.rest().is_empty() {
            return Err(DirectoryError::Malformed("trailing bytes"));
        }
        Ok(Snapshot { header, entries })
    }

    /// Parses a `.snapshot` file's header; the reader is left at the first entry.
    pub(crate) fn parse_header(
        bytes: &[u8],
    ) -> Result<(SnapshotHeader, Reader<'_>), DirectoryError> {
        let mut r = open_reader(bytes, TYPE_SNAPSHOT)?;
        let cert = RegionCert::decode(&mut r)?;
        let seq = r.u64()?;
        let issued_at = r.u64()?;
        let expires_at = r.u64()?;
        let nodes = NodeInfo::decode_list(&mut r)?;
        let entry_count = r.u32()?;
        let entries_digest = r.array()?;
        let signature = r.array()?;
        let header = SnapshotHeader {
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

/// A reader past the magic, type and version of a directory file of type `kind`.
fn open_reader(bytes: &[u8], kind: u8) -> Result<Reader<'_>, DirectoryError> {
    if !bytes.starts_with(MAGIC) {
        return Err(DirectoryError::UnknownFormat);
    }
    let mut r = Reader::new(bytes);
    if r.bytes(6)? != MAGIC || r.u8()? != kind || r.u8()? != VERSION {
        return Err(DirectoryError::UnknownFormat);
    }
    Ok(r)
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
    fn signed_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1024);
        out.put(MAGIC);
        out.put_u8(TYPE_DELTA);
        out.put_u8(VERSION);
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
            e.encode(&mut out);
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
        let mut r = open_reader(bytes, TYPE_DELTA)?;
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
            upserts.push(Entry::decode(&mut r)?);
        }
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
