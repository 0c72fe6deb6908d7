//! The trust chain's top (SPEC.md §6.2): the anchor with the federation's root keys, and the
//! region certificates a root signs.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use renkei_protocol::OfficeNumber;
use renkei_protocol::wire::{Put, Reader};
use serde::{Deserialize, Serialize};

use crate::DirectoryError;
use crate::encoding::{MAGIC, TYPE_CERT, VERSION, hexbytes};

/// Longest region id.
pub const MAX_REGION_ID: usize = 64;

/// A valid Ed25519 public key for a root or a region (SPEC.md §6.2): 32 bytes that RFC 8032
/// §5.1.3 decodes (so the canonical encoding of a curve point: no `y` ≥ p, no `x` = 0 with the
/// sign bit set) and not of small order. ed25519-dalek decodes non-canonical encodings too, so
/// the encoding is compared with the point's own.
pub(crate) fn valid_key(bytes: &[u8; 32]) -> Option<VerifyingKey> {
    let key = VerifyingKey::from_bytes(bytes).ok()?;
    let canonical = key.to_edwards().compress().to_bytes() == *bytes;
    (canonical && !key.is_weak()).then_some(key)
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

    /// The root keys: each root's 64 hex digits (either case), when they are a valid key.
    pub fn root_keys(&self) -> Vec<VerifyingKey> {
        self.roots
            .iter()
            .filter_map(|h| {
                let mut b = [0u8; 32];
                hex::decode_to_slice(h, &mut b).ok()?;
                valid_key(&b)
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
        valid_key(&self.key).ok_or(DirectoryError::Malformed("region key"))
    }

    /// Whether the region may vouch for `office`.
    pub fn covers(&self, office: &OfficeNumber) -> bool {
        self.prefectures.contains(&office.prefecture())
    }
}
