//! The recipient's signed "imported" statement (SPEC.md §8.3).
//!
//! An ack proves that a file arrived and passed the checks; it does not prove that anyone used
//! it. When the recipient's care software imports a file (it says so through the local API, or
//! moves the file to `inbox/imported/`), the recipient's node signs what was imported — the
//! message, both offices, the plaintext's hash — and when, with its identity key, and sends the
//! statement to the sender. Both keep it beside their receipts, so "received and used" can be
//! shown at an audit (運営指導). The sender checks the key against the recipient's directory
//! entry at the statement's time, as it does for acks.

use ed25519_dalek::{Signer, SigningKey};

use crate::envelope::MessageId;
use crate::name::OfficeNumber;
use crate::signed::{self, SignatureFault};
use crate::wire::{Put, Reader};

/// The type byte of an imported statement.
pub const TYPE_IMPORTED: u8 = b'I';

/// The encoded length of an imported statement.
pub const IMPORTED_LEN: usize = 6 + 1 + 1 + 16 + 10 + 10 + 32 + 8 + 32 + 64;

/// A signed imported statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Imported {
    /// The message whose file was imported.
    pub message_id: MessageId,
    /// The file's sender.
    pub sender_office: OfficeNumber,
    /// The file's recipient, who imported it and signs.
    pub recipient_office: OfficeNumber,
    /// SHA-256 of the plaintext, as in the envelope and the ack.
    pub plaintext_hash: [u8; 32],
    /// Unix seconds, by the recipient's clock.
    pub imported_at: u64,
    /// The recipient's Ed25519 identity key.
    pub recipient_key: [u8; 32],
    /// Ed25519 signature over every byte before it.
    pub signature: [u8; 64],
}

/// Why an imported statement is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportedError {
    /// The bytes are not an imported statement of this format.
    #[error("malformed imported statement: {0}")]
    Malformed(&'static str),
    /// Signed by a key that is not one of the recipient's keys given.
    #[error("imported statement signed by a key the directory does not list for the recipient")]
    UnknownKey,
    /// The signature does not verify.
    #[error("imported statement signature does not verify")]
    BadSignature,
}

impl Imported {
    /// Builds and signs a statement.
    pub fn sign(
        message_id: MessageId,
        sender_office: OfficeNumber,
        recipient_office: OfficeNumber,
        plaintext_hash: [u8; 32],
        imported_at: u64,
        key: &SigningKey,
    ) -> Imported {
        let mut s = Imported {
            message_id,
            sender_office,
            recipient_office,
            plaintext_hash,
            imported_at,
            recipient_key: key.verifying_key().to_bytes(),
            signature: [0; 64],
        };
        s.signature = key.sign(&s.signed_bytes()).to_bytes();
        s
    }

    fn signed_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(IMPORTED_LEN);
        signed::put_head(
            &mut out,
            TYPE_IMPORTED,
            &self.message_id,
            &self.sender_office,
            &self.recipient_office,
        );
        out.put(&self.plaintext_hash);
        out.put_u64(self.imported_at);
        out.put(&self.recipient_key);
        out
    }

    /// The encoded statement.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.signed_bytes();
        out.put(&self.signature);
        out
    }

    /// Parses a statement (the whole of `buf`). Does not verify it: see [`Imported::verify`].
    pub fn parse(buf: &[u8]) -> Result<Imported, ImportedError> {
        let short = |_| ImportedError::Malformed("too short");
        let mut r = Reader::new(buf);
        let (message_id, sender_office, recipient_office) =
            signed::read_head(&mut r, TYPE_IMPORTED, "not an imported statement")
                .map_err(ImportedError::Malformed)?;
        let plaintext_hash = r.array().map_err(short)?;
        let imported_at = r.u64().map_err(short)?;
        let (recipient_key, signature) =
            signed::read_tail(&mut r, buf.len()).map_err(ImportedError::Malformed)?;
        Ok(Imported {
            message_id,
            sender_office,
            recipient_office,
            plaintext_hash,
            imported_at,
            recipient_key,
            signature,
        })
    }

    /// Verifies the signature, made by one of `recipient_keys` (the identity keys the directory
    /// lists for the recipient office, valid at `imported_at`).
    pub fn verify(&self, recipient_keys: &[[u8; 32]]) -> Result<(), ImportedError> {
        signed::verify_by(
            recipient_keys,
            &self.recipient_key,
            &self.signed_bytes(),
            &self.signature,
        )
        .map_err(|f| match f {
            SignatureFault::UnknownKey => ImportedError::UnknownKey,
            SignatureFault::BadSignature => ImportedError::BadSignature,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statement() -> (Imported, SigningKey) {
        let key = SigningKey::from_bytes(&[7; 32]);
        let s = Imported::sign(
            MessageId([1; 16]),
            OfficeNumber::parse("1310000001").unwrap(),
            OfficeNumber::parse("1310000011").unwrap(),
            [2; 32],
            1_790_000_000,
            &key,
        );
        (s, key)
    }

    #[test]
    fn a_statement_round_trips_and_verifies() {
        let (s, key) = statement();
        let bytes = s.to_bytes();
        assert_eq!(bytes.len(), IMPORTED_LEN);
        let back = Imported::parse(&bytes).unwrap();
        assert_eq!(back, s);
        back.verify(&[key.verifying_key().to_bytes()]).unwrap();
        assert_eq!(back.verify(&[[3; 32]]), Err(ImportedError::UnknownKey));
        // Not a deletion statement, and not the other way round.
        let mut d = bytes.clone();
        d[6] = crate::statement::TYPE_STATEMENT;
        assert!(Imported::parse(&d).is_err());
    }

    #[test]
    fn every_byte_changed_is_refused() {
        let (s, key) = statement();
        let bytes = s.to_bytes();
        let keys = [key.verifying_key().to_bytes()];
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            let ok = Imported::parse(&b).and_then(|s| s.verify(&keys)).is_ok();
            assert!(!ok, "byte {i} changed and still valid");
        }
        assert!(Imported::parse(&bytes[..bytes.len() - 1]).is_err());
        let mut long = bytes.clone();
        long.push(0);
        assert!(Imported::parse(&long).is_err());
    }
}
