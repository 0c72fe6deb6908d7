//! The signed directory's data model and its binary encoding (SPEC.md §6).

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use renkei_protocol::wire::{Put, Reader, Short, sha256};
use renkei_protocol::{OfficeNumber, ServiceKind};
use serde::{Deserialize, Serialize};

use crate::DirectoryError;

pub(crate) const MAGIC: &[u8; 6] = b"RENKEI";
pub(crate) const TYPE_CERT: u8 = b'R';
pub(crate) const TYPE_SNAPSHOT: u8 = b'S';
pub(crate) const TYPE_DELTA: u8 = b'D';
pub(crate) const TYPE_ENROLL: u8 = b'Q';
pub(crate) const TYPE_ROTATE: u8 = b'K';
pub(crate) const VERSION: u8 = 1;

/// Longest office name in an entry, in UTF-8 bytes.
pub const MAX_NAME_BYTES: usize = 1000;
/// Most service kinds an entry lists.
pub const MAX_KINDS: usize = 50;
/// Most addresses an entry lists.
pub const MAX_ADDRESSES: usize = 16;
/// Longest address, in bytes.
pub const MAX_ADDRESS_BYTES: usize = 512;
/// Longest region id.
pub const MAX_REGION_ID: usize = 64;

/// Serde helpers: 32- and 64-byte keys and signatures as lower-case hex in JSON.
pub mod hexbytes {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes as hex.
    pub fn serialize<S: Serializer, const N: usize>(b: &[u8; N], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(b))
    }

    /// Deserializes from hex.
    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<[u8; N], D::Error> {
        let s = String::deserialize(d)?;
        let mut out = [0u8; N];
        hex::decode_to_slice(&s, &mut out).map_err(serde::de::Error::custom)?;
        Ok(out)
    }
}

/// One key pair generation of an office: its Ed25519 identity key (also its libp2p PeerId and
/// the key that signs its envelopes and acks) and its X25519 encryption key, with the window in
/// which partners use them. Rotation adds a new `OfficeKey` with an overlapping window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfficeKey {
    /// Ed25519 public key.
    #[serde(with = "hexbytes")]
    pub identity: [u8; 32],
    /// X25519 public key.
    #[serde(with = "hexbytes")]
    pub encryption: [u8; 32],
    /// Unix seconds from which partners use this key.
    pub valid_from: u64,
    /// Unix seconds after which partners stop using it.
    pub valid_until: u64,
}

impl OfficeKey {
    /// Whether the key is in its window at `now`.
    pub fn valid_at(&self, now: u64) -> bool {
        self.valid_from <= now && now <= self.valid_until
    }
}

/// An entry's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// A member in good standing.
    Active,
    /// Revoked: it can neither send nor receive.
    Revoked,
}

/// One office in the directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// 事業所番号.
    pub office: OfficeNumber,
    /// 事業所名.
    pub name: String,
    /// The サービス種類コード the office acts as (one number may hold several).
    pub kinds: Vec<ServiceKind>,
    /// Its keys, oldest first; more than one during a rotation.
    pub keys: Vec<OfficeKey>,
    /// Where its node listens (libp2p multiaddrs), if it says.
    pub addresses: Vec<String>,
    /// Active or revoked.
    pub status: Status,
}

impl Entry {
    /// Whether the office is active.
    pub fn is_active(&self) -> bool {
        self.status == Status::Active
    }

    /// The keys valid at `now`.
    pub fn keys_at(&self, now: u64) -> impl Iterator<Item = &OfficeKey> {
        self.keys.iter().filter(move |k| k.valid_at(now))
    }

    /// The Ed25519 keys partners accept from this office at `now` (none when revoked).
    pub fn identity_keys_at(&self, now: u64) -> Vec<VerifyingKey> {
        if !self.is_active() {
            return Vec::new();
        }
        self.keys_at(now)
            .filter_map(|k| VerifyingKey::from_bytes(&k.identity).ok())
            .collect()
    }

    /// The key a partner seals to at `now`: of the valid keys, the newest one.
    pub fn sealing_key_at(&self, now: u64) -> Option<&OfficeKey> {
        if !self.is_active() {
            return None;
        }
        self.keys_at(now).max_by_key(|k| k.valid_from)
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.put(self.office.as_bytes());
        out.put_u16(self.name.len() as u16);
        out.put(self.name.as_bytes());
        out.put_u8(self.kinds.len() as u8);
        for k in &self.kinds {
            out.put(k.as_str().as_bytes());
        }
        out.put_u8(self.keys.len() as u8);
        for k in &self.keys {
            out.put(&k.identity);
            out.put(&k.encryption);
            out.put_u64(k.valid_from);
            out.put_u64(k.valid_until);
        }
        out.put_u8(self.addresses.len() as u8);
        for a in &self.addresses {
            out.put_u16(a.len() as u16);
            out.put(a.as_bytes());
        }
        out.put_u8(match self.status {
            Status::Active => 0,
            Status::Revoked => 1,
        });
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Entry, DirectoryError> {
        let office = office(r.bytes(10)?)?;
        let name = r.str_u16()?.to_string();
        let n = r.u8()?;
        let mut kinds = Vec::with_capacity(n.into());
        for _ in 0..n {
            let k = std::str::from_utf8(r.bytes(2)?)
                .ok()
                .and_then(ServiceKind::parse);
            kinds.push(k.ok_or(DirectoryError::Malformed("service kind"))?);
        }
        let n = r.u8()?;
        let mut keys = Vec::with_capacity(n.into());
        for _ in 0..n {
            keys.push(OfficeKey {
                identity: r.array()?,
                encryption: r.array()?,
                valid_from: r.u64()?,
                valid_until: r.u64()?,
            });
        }
        let n = r.u8()?;
        let mut addresses = Vec::with_capacity(n.into());
        for _ in 0..n {
            addresses.push(r.str_u16()?.to_string());
        }
        let status = match r.u8()? {
            0 => Status::Active,
            1 => Status::Revoked,
            _ => return Err(DirectoryError::Malformed("status")),
        };
        Ok(Entry {
            office,
            name,
            kinds,
            keys,
            addresses,
            status,
        })
    }
}

pub(crate) fn office(b: &[u8]) -> Result<OfficeNumber, DirectoryError> {
    std::str::from_utf8(b)
        .ok()
        .and_then(OfficeNumber::parse)
        .ok_or(DirectoryError::Malformed("office number"))
}

impl From<Short> for DirectoryError {
    fn from(_: Short) -> Self {
        DirectoryError::Malformed("truncated")
    }
}

/// The trust anchor: the federation's root keys. All an office needs to trust the directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    /// Always `renkei-anchor/1`.
    pub format: String,
    /// The federation's name.
    pub federation: String,
    /// Root public keys (Ed25519, hex); any of them may certify a region.
    pub roots: Vec<String>,
}

/// The anchor's format string.
pub const ANCHOR_FORMAT: &str = "renkei-anchor/1";

impl Anchor {
    /// Parses and checks an anchor file.
    pub fn from_json(s: &str) -> Result<Anchor, DirectoryError> {
        let a: Anchor = serde_json::from_str(s).map_err(|_| DirectoryError::UnknownFormat)?;
        if a.format != ANCHOR_FORMAT {
            return Err(DirectoryError::UnknownFormat);
        }
        if a.roots.is_empty() || a.root_keys().len() != a.roots.len() {
            return Err(DirectoryError::Malformed("anchor root keys"));
        }
        Ok(a)
    }

    /// The root keys.
    pub fn root_keys(&self) -> Vec<VerifyingKey> {
        self.roots
            .iter()
            .filter_map(|h| {
                let mut b = [0u8; 32];
                hex::decode_to_slice(h, &mut b).ok()?;
                VerifyingKey::from_bytes(&b).ok()
            })
            .collect()
    }
}

/// A region authority's certificate: the root lets this key vouch for offices whose number
/// starts with one of `prefectures`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionCert {
    /// Short stable id, e.g. `13-tokyo`.
    pub region: String,
    /// Display name, e.g. 東京都介護支援専門員協会.
    pub name: String,
    /// The region authority's Ed25519 key.
    #[serde(with = "hexbytes")]
    pub key: [u8; 32],
    /// Prefecture codes (the first two digits of 事業所番号) it may vouch for.
    pub prefectures: Vec<u8>,
    /// Unix seconds.
    pub valid_from: u64,
    /// Unix seconds.
    pub valid_until: u64,
    /// The root key that signed it.
    #[serde(with = "hexbytes")]
    pub root: [u8; 32],
    /// Root signature over the fields above.
    #[serde(with = "hexbytes")]
    pub signature: [u8; 64],
}

impl RegionCert {
    /// Issues a certificate signed by a root key.
    pub fn issue(
        root: &SigningKey,
        region: &str,
        name: &str,
        key: [u8; 32],
        prefectures: Vec<u8>,
        valid_from: u64,
        valid_until: u64,
    ) -> RegionCert {
        let mut c = RegionCert {
            region: region.to_string(),
            name: name.to_string(),
            key,
            prefectures,
            valid_from,
            valid_until,
            root: root.verifying_key().to_bytes(),
            signature: [0; 64],
        };
        c.signature = root.sign(&c.signed_bytes()).to_bytes();
        c
    }

    fn signed_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(160);
        out.put(MAGIC);
        out.put_u8(TYPE_CERT);
        out.put_u8(VERSION);
        out.put_u8(self.region.len() as u8);
        out.put(self.region.as_bytes());
        out.put_u16(self.name.len() as u16);
        out.put(self.name.as_bytes());
        out.put(&self.key);
        out.put_u8(self.prefectures.len() as u8);
        out.put(&self.prefectures);
        out.put_u64(self.valid_from);
        out.put_u64(self.valid_until);
        out.put(&self.root);
        out
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.put(&self.signed_bytes());
        out.put(&self.signature);
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<RegionCert, DirectoryError> {
        if r.bytes(6)? != MAGIC || r.u8()? != TYPE_CERT || r.u8()? != VERSION {
            return Err(DirectoryError::UnknownFormat);
        }
        let region = r.str_u8()?.to_string();
        let name = r.str_u16()?.to_string();
        let key = r.array()?;
        let n = usize::from(r.u8()?);
        let prefectures = r.bytes(n)?.to_vec();
        Ok(RegionCert {
            region,
            name,
            key,
            prefectures,
            valid_from: r.u64()?,
            valid_until: r.u64()?,
            root: r.array()?,
            signature: r.array()?,
        })
    }

    /// Verifies the root's signature and that the certificate covers time `at`.
    pub fn verify(&self, anchor: &Anchor, at: u64) -> Result<VerifyingKey, DirectoryError> {
        let root = anchor
            .root_keys()
            .into_iter()
            .find(|k| k.as_bytes() == &self.root)
            .ok_or(DirectoryError::UnknownRoot)?;
        root.verify_strict(
            &self.signed_bytes(),
            &Signature::from_bytes(&self.signature),
        )
        .map_err(|_| DirectoryError::BadCertSignature)?;
        if at < self.valid_from || at > self.valid_until {
            return Err(DirectoryError::CertNotValid);
        }
        if self.region.is_empty()
            || self.region.len() > MAX_REGION_ID
            || !self
                .region
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-')
        {
            return Err(DirectoryError::Malformed("region id"));
        }
        VerifyingKey::from_bytes(&self.key).map_err(|_| DirectoryError::Malformed("region key"))
    }

    /// Whether the region may vouch for `office`.
    pub fn covers(&self, office: &OfficeNumber) -> bool {
        self.prefectures.contains(&office.prefecture())
    }
}

/// A directory node a region runs (listed in its snapshots so offices let it connect).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Its Ed25519 key (its libp2p PeerId).
    #[serde(with = "hexbytes")]
    pub key: [u8; 32],
    /// Its libp2p multiaddrs.
    pub addresses: Vec<String>,
    /// Its HTTP base URL, if it serves HTTP.
    pub http: Option<String>,
}

impl NodeInfo {
    fn encode(&self, out: &mut Vec<u8>) {
        out.put(&self.key);
        out.put_u8(self.addresses.len() as u8);
        for a in &self.addresses {
            out.put_u16(a.len() as u16);
            out.put(a.as_bytes());
        }
        let http = self.http.as_deref().unwrap_or("");
        out.put_u16(http.len() as u16);
        out.put(http.as_bytes());
    }

    fn decode_list(r: &mut Reader<'_>) -> Result<Vec<NodeInfo>, DirectoryError> {
        let n = r.u16()?;
        let mut nodes = Vec::with_capacity(n.into());
        for _ in 0..n {
            nodes.push(NodeInfo::decode(r)?);
        }
        Ok(nodes)
    }

    fn decode(r: &mut Reader<'_>) -> Result<NodeInfo, DirectoryError> {
        let key = r.array()?;
        let n = r.u8()?;
        let mut addresses = Vec::with_capacity(n.into());
        for _ in 0..n {
            addresses.push(r.str_u16()?.to_string());
        }
        let http = r.str_u16()?;
        Ok(NodeInfo {
            key,
            addresses,
            http: (!http.is_empty()).then(|| http.to_string()),
        })
    }
}

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

/// A new office's request to join, signed with its new identity key (proof of possession).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollmentRequest {
    /// Always `renkei-enroll/1`.
    pub format: String,
    /// 事業所番号.
    pub office: OfficeNumber,
    /// 事業所名.
    pub name: String,
    /// Service kinds.
    pub kinds: Vec<ServiceKind>,
    /// Ed25519 identity key.
    #[serde(with = "hexbytes")]
    pub identity: [u8; 32],
    /// X25519 encryption key.
    #[serde(with = "hexbytes")]
    pub encryption: [u8; 32],
    /// Where its node listens.
    pub addresses: Vec<String>,
    /// Unix seconds.
    pub created_at: u64,
    /// Signature by `identity` over the fields above.
    #[serde(with = "hexbytes")]
    pub signature: [u8; 64],
}

/// The enrollment request's format string.
pub const ENROLL_FORMAT: &str = "renkei-enroll/1";

impl EnrollmentRequest {
    fn signed_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.put(MAGIC);
        out.put_u8(TYPE_ENROLL);
        out.put_u8(VERSION);
        out.put(self.office.as_bytes());
        out.put_u16(self.name.len() as u16);
        out.put(self.name.as_bytes());
        out.put_u8(self.kinds.len() as u8);
        for k in &self.kinds {
            out.put(k.as_str().as_bytes());
        }
        out.put(&self.identity);
        out.put(&self.encryption);
        out.put_u8(self.addresses.len() as u8);
        for a in &self.addresses {
            out.put_u16(a.len() as u16);
            out.put(a.as_bytes());
        }
        out.put_u64(self.created_at);
        out
    }

    /// Builds and signs a request with the office's new identity key.
    pub fn new(
        office: OfficeNumber,
        name: &str,
        kinds: Vec<ServiceKind>,
        identity: &SigningKey,
        encryption: [u8; 32],
        addresses: Vec<String>,
        created_at: u64,
    ) -> EnrollmentRequest {
        let mut r = EnrollmentRequest {
            format: ENROLL_FORMAT.to_string(),
            office,
            name: name.to_string(),
            kinds,
            identity: identity.verifying_key().to_bytes(),
            encryption,
            addresses,
            created_at,
            signature: [0; 64],
        };
        r.signature = identity.sign(&r.signed_bytes()).to_bytes();
        r
    }

    /// Checks the format and the proof of possession.
    pub fn verify(&self) -> Result<(), DirectoryError> {
        if self.format != ENROLL_FORMAT {
            return Err(DirectoryError::UnknownFormat);
        }
        // Bounds that keep every approved entry encodable (the layout's length prefixes).
        if self.name.is_empty()
            || self.name.len() > MAX_NAME_BYTES
            || self.kinds.is_empty()
            || self.kinds.len() > MAX_KINDS
        {
            return Err(DirectoryError::Malformed("enrollment name or kinds"));
        }
        if self.addresses.len() > MAX_ADDRESSES
            || self
                .addresses
                .iter()
                .any(|a| a.is_empty() || a.len() > MAX_ADDRESS_BYTES)
        {
            return Err(DirectoryError::Malformed("enrollment addresses"));
        }
        let key =
            VerifyingKey::from_bytes(&self.identity).map_err(|_| DirectoryError::BadSignature)?;
        key.verify_strict(
            &self.signed_bytes(),
            &Signature::from_bytes(&self.signature),
        )
        .map_err(|_| DirectoryError::BadSignature)
    }
}

/// An office's request to rotate its keys, signed by both the current and the new identity key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationRequest {
    /// 事業所番号.
    pub office: OfficeNumber,
    /// The identity key in use now.
    #[serde(with = "hexbytes")]
    pub old_identity: [u8; 32],
    /// The new key pair.
    pub new_key: OfficeKey,
    /// Signature by the old identity key.
    #[serde(with = "hexbytes")]
    pub old_signature: [u8; 64],
    /// Signature by the new identity key.
    #[serde(with = "hexbytes")]
    pub new_signature: [u8; 64],
}

impl RotationRequest {
    fn signed_bytes(office: &OfficeNumber, old: &[u8; 32], new_key: &OfficeKey) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        out.put(MAGIC);
        out.put_u8(TYPE_ROTATE);
        out.put_u8(VERSION);
        out.put(office.as_bytes());
        out.put(old);
        out.put(&new_key.identity);
        out.put(&new_key.encryption);
        out.put_u64(new_key.valid_from);
        out.put_u64(new_key.valid_until);
        out
    }

    /// Builds a request: the new key takes over at `valid_from`.
    pub fn new(
        office: OfficeNumber,
        old: &SigningKey,
        new: &SigningKey,
        new_encryption: [u8; 32],
        valid_from: u64,
        valid_until: u64,
    ) -> RotationRequest {
        let new_key = OfficeKey {
            identity: new.verifying_key().to_bytes(),
            encryption: new_encryption,
            valid_from,
            valid_until,
        };
        let old_identity = old.verifying_key().to_bytes();
        let msg = Self::signed_bytes(&office, &old_identity, &new_key);
        RotationRequest {
            office,
            old_identity,
            old_signature: old.sign(&msg).to_bytes(),
            new_signature: new.sign(&msg).to_bytes(),
            new_key,
        }
    }

    /// Checks both signatures.
    pub fn verify(&self) -> Result<(), DirectoryError> {
        let msg = Self::signed_bytes(&self.office, &self.old_identity, &self.new_key);
        for (k, s) in [
            (&self.old_identity, &self.old_signature),
            (&self.new_key.identity, &self.new_signature),
        ] {
            let key = VerifyingKey::from_bytes(k).map_err(|_| DirectoryError::BadSignature)?;
            key.verify_strict(&msg, &Signature::from_bytes(s))
                .map_err(|_| DirectoryError::BadSignature)?;
        }
        Ok(())
    }
}

/// The hash identifying a snapshot or delta file, for logs.
pub fn file_id(bytes: &[u8]) -> String {
    hex::encode(&sha256(bytes)[..8])
}
