//! An office's requests to the region authority (SPEC.md §6.7): enrollment, signed with its new
//! identity key, and key rotation, signed with both the old and the new one.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use renkei_protocol::wire::Put;
use renkei_protocol::{OfficeNumber, ServiceKind};
use serde::{Deserialize, Serialize};

use crate::DirectoryError;
use crate::encoding::{MAGIC, TYPE_ENROLL, TYPE_ROTATE, VERSION, hexbytes};
use crate::entry::{MAX_ADDRESS_BYTES, MAX_ADDRESSES, MAX_KINDS, MAX_NAME_BYTES, OfficeKey};

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
