//! What the directory's formats share (SPEC.md §6.2–§6.7): the `RENKEI` prefix, type letter and
//! version byte that open every binary file and signed message, and keys and signatures as hex
//! in the JSON ones.

use renkei_protocol::wire::Short;

use crate::DirectoryError;

pub(crate) const MAGIC: &[u8; 6] = b"RENKEI";
pub(crate) const TYPE_CERT: u8 = b'R';
pub(crate) const TYPE_SNAPSHOT: u8 = b'S';
pub(crate) const TYPE_DELTA: u8 = b'D';
pub(crate) const TYPE_ENROLL: u8 = b'Q';
pub(crate) const TYPE_ROTATE: u8 = b'K';
pub(crate) const VERSION: u8 = 1;
/// Snapshots and deltas come in two formats: 1, and 2 whose entries may name mailbox nodes.
pub(crate) const FORMAT_1: u8 = 1;
pub(crate) const FORMAT_2: u8 = 2;

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

/// Serde helpers: a list of 32-byte keys as a list of lower-case hex strings in JSON.
pub mod hexlist {
    use serde::{Deserialize, Deserializer, Serializer, ser::SerializeSeq};

    /// Serializes as a list of hex strings.
    pub fn serialize<S: Serializer>(keys: &[[u8; 32]], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(keys.len()))?;
        for k in keys {
            seq.serialize_element(&hex::encode(k))?;
        }
        seq.end()
    }

    /// Deserializes from a list of hex strings.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<[u8; 32]>, D::Error> {
        let list = Vec::<String>::deserialize(d)?;
        list.iter()
            .map(|s| {
                let mut out = [0u8; 32];
                hex::decode_to_slice(s, &mut out).map_err(serde::de::Error::custom)?;
                Ok(out)
            })
            .collect()
    }
}

impl From<Short> for DirectoryError {
    fn from(_: Short) -> Self {
        DirectoryError::Malformed("truncated")
    }
}
