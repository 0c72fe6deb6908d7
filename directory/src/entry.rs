//! One office's entry, its keys, and the directory nodes a region lists (SPEC.md §6.3), with the
//! entry's binary encoding.

use ed25519_dalek::VerifyingKey;
use renkei_protocol::wire::{Put, Reader};
use renkei_protocol::{OfficeNumber, ServiceKind};
use serde::{Deserialize, Serialize};

use crate::DirectoryError;
use crate::encoding::{FORMAT_1, FORMAT_2, hexbytes, hexlist};

/// Longest office name in an entry, in UTF-8 bytes.
pub const MAX_NAME_BYTES: usize = 1000;
/// Most service kinds an entry lists.
pub const MAX_KINDS: usize = 50;
/// Most addresses an entry lists.
pub const MAX_ADDRESSES: usize = 16;
/// Longest address, in bytes.
pub const MAX_ADDRESS_BYTES: usize = 512;
/// Most mailbox nodes an entry names.
pub const MAX_MAILBOXES: usize = 4;

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
    /// The directory nodes that keep mail for the office while it is off (their Ed25519 keys),
    /// in the order senders try them. Empty: its region's directory nodes. Only directory files
    /// of format 2 can name them; a format 1 entry reads as empty (SPEC.md §6.3).
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "hexlist")]
    pub mailboxes: Vec<[u8; 32]>,
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

    /// The lowest directory file format that can carry the entry: 2 when it names mailboxes.
    pub fn format(&self) -> u8 {
        if self.mailboxes.is_empty() {
            FORMAT_1
        } else {
            FORMAT_2
        }
    }

    /// Encodes the entry in directory file format `format` (1 or 2). Format 1 cannot carry
    /// named mailboxes: callers choose the format with [`Entry::format`].
    pub(crate) fn encode(&self, out: &mut Vec<u8>, format: u8) {
        self.encode_format_1(out);
        if format >= FORMAT_2 {
            self.encode_mailboxes(out);
        }
    }

    /// The part of the encoding both formats share.
    pub(crate) fn encode_format_1(&self, out: &mut Vec<u8>) {
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

    /// What format 2 adds after the status: a `u8` count, then 32 bytes per node key.
    pub(crate) fn encode_mailboxes(&self, out: &mut Vec<u8>) {
        out.put_u8(self.mailboxes.len() as u8);
        for m in &self.mailboxes {
            out.put(m);
        }
    }

    /// Reads one entry (SPEC.md §6.3). Refused as malformed: an office that is not 10 digits, a
    /// name or an address that is not UTF-8, a kind that is not two of `0`–`9`, `A`–`Z`, a
    /// status other than 0 or 1. Nothing else is checked here: not the addresses' syntax (a
    /// node skips one it cannot dial), not the keys (one that is not a valid key never verifies
    /// a signature), not the limits the authority keeps to (§6.7).
    /// Format 2 adds the mailbox nodes after the status.
    pub(crate) fn decode(r: &mut Reader<'_>, format: u8) -> Result<Entry, DirectoryError> {
        let office = office(r.bytes(10)?)?;
        let name = text(r)?;
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
            addresses.push(text(r)?);
        }
        let status = match r.u8()? {
            0 => Status::Active,
            1 => Status::Revoked,
            _ => return Err(DirectoryError::Malformed("status")),
        };
        let mut mailboxes = Vec::new();
        if format >= FORMAT_2 {
            for _ in 0..r.u8()? {
                mailboxes.push(r.array()?);
            }
        }
        Ok(Entry {
            office,
            name,
            kinds,
            keys,
            addresses,
            status,
            mailboxes,
        })
    }
}

/// A `str16`: a `u16` length and that many bytes of UTF-8.
fn text(r: &mut Reader<'_>) -> Result<String, DirectoryError> {
    let n = usize::from(r.u16()?);
    let b = r.bytes(n)?;
    std::str::from_utf8(b)
        .map(str::to_string)
        .map_err(|_| DirectoryError::Malformed("text that is not UTF-8"))
}

pub(crate) fn office(b: &[u8]) -> Result<OfficeNumber, DirectoryError> {
    std::str::from_utf8(b)
        .ok()
        .and_then(OfficeNumber::parse)
        .ok_or(DirectoryError::Malformed("office number"))
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
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
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

    pub(crate) fn decode_list(r: &mut Reader<'_>) -> Result<Vec<NodeInfo>, DirectoryError> {
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
