//! A mailbox's signed deletion statement (SPEC.md §7.6.4).
//!
//! When an association mailbox drops an envelope — its recipient acknowledged or refused it, or
//! it expired — it signs what it deleted, why and when with its directory-node key. The sender
//! keeps the statement beside its receipt, so "nothing kept" can be checked at an audit.

use ed25519_dalek::{Signer, SigningKey};

use crate::envelope::MessageId;
use crate::name::OfficeNumber;
use crate::signed::{self, SignatureFault};
use crate::wire::{Put, Reader};

/// The type byte of a deletion statement.
pub const TYPE_STATEMENT: u8 = b'D';

/// The encoded length of a statement.
pub const STATEMENT_LEN: usize = 6 + 1 + 1 + 16 + 10 + 10 + 32 + 1 + 8 + 32 + 64;

/// Why a mailbox dropped an envelope.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Reason {
    /// The recipient acknowledged it (accepted or rejected by its checker).
    Acked = 1,
    /// It was kept for the mailbox's time limit without being acknowledged.
    Expired = 2,
    /// The recipient's node refused it for good (a refusal the sender cannot cure by waiting).
    Refused = 3,
}

impl Reason {
    /// Its name in JSON and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Acked => "acked",
            Reason::Expired => "expired",
            Reason::Refused => "refused",
        }
    }

    fn from_u8(b: u8) -> Option<Reason> {
        Some(match b {
            1 => Reason::Acked,
            2 => Reason::Expired,
            3 => Reason::Refused,
            _ => return None,
        })
    }
}

/// A signed deletion statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    /// The message whose envelope was dropped.
    pub message_id: MessageId,
    /// Its sender.
    pub sender_office: OfficeNumber,
    /// Its recipient.
    pub recipient_office: OfficeNumber,
    /// SHA-256 of the envelope as deposited (header and sealed chunks, §4).
    pub envelope_hash: [u8; 32],
    /// Why.
    pub reason: Reason,
    /// Unix seconds, by the mailbox's clock.
    pub deleted_at: u64,
    /// The mailbox's directory-node key.
    pub node_key: [u8; 32],
    /// Ed25519 signature over every byte before it.
    pub signature: [u8; 64],
}

/// Why a statement is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatementError {
    /// The bytes are not a statement of this format.
    #[error("malformed deletion statement: {0}")]
    Malformed(&'static str),
    /// Signed by a key that is not one of the directory nodes given.
    #[error("deletion statement signed by a key that is not a listed directory node")]
    UnknownKey,
    /// The signature does not verify.
    #[error("deletion statement signature does not verify")]
    BadSignature,
}

impl Statement {
    /// Builds and signs a statement.
    pub fn sign(
        message_id: MessageId,
        sender_office: OfficeNumber,
        recipient_office: OfficeNumber,
        envelope_hash: [u8; 32],
        reason: Reason,
        deleted_at: u64,
        key: &SigningKey,
    ) -> Statement {
        let mut s = Statement {
            message_id,
            sender_office,
            recipient_office,
            envelope_hash,
            reason,
            deleted_at,
            node_key: key.verifying_key().to_bytes(),
            signature: [0; 64],
        };
        s.signature = key.sign(&s.signed_bytes()).to_bytes();
        s
    }

    fn signed_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(STATEMENT_LEN);
        signed::put_head(
            &mut out,
            TYPE_STATEMENT,
            &self.message_id,
            &self.sender_office,
            &self.recipient_office,
        );
        out.put(&self.envelope_hash);
        out.put_u8(self.reason as u8);
        out.put_u64(self.deleted_at);
        out.put(&self.node_key);
        out
    }

    /// The encoded statement.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.signed_bytes();
        out.put(&self.signature);
        out
    }

    /// Parses a statement (the whole of `buf`). Does not verify it: see [`Statement::verify`].
    pub fn parse(buf: &[u8]) -> Result<Statement, StatementError> {
        let short = |_| StatementError::Malformed("too short");
        let mut r = Reader::new(buf);
        let (message_id, sender_office, recipient_office) =
            signed::read_head(&mut r, TYPE_STATEMENT, "not a deletion statement")
                .map_err(StatementError::Malformed)?;
        let envelope_hash = r.array().map_err(short)?;
        let reason =
            Reason::from_u8(r.u8().map_err(short)?).ok_or(StatementError::Malformed("reason"))?;
        let deleted_at = r.u64().map_err(short)?;
        let (node_key, signature) =
            signed::read_tail(&mut r, buf.len()).map_err(StatementError::Malformed)?;
        Ok(Statement {
            message_id,
            sender_office,
            recipient_office,
            envelope_hash,
            reason,
            deleted_at,
            node_key,
            signature,
        })
    }

    /// Verifies the signature, made by one of `node_keys` (the directory nodes the directory
    /// lists).
    pub fn verify(&self, node_keys: &[[u8; 32]]) -> Result<(), StatementError> {
        signed::verify_by(
            node_keys,
            &self.node_key,
            &self.signed_bytes(),
            &self.signature,
        )
        .map_err(|f| match f {
            SignatureFault::UnknownKey => StatementError::UnknownKey,
            SignatureFault::BadSignature => StatementError::BadSignature,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statement() -> (Statement, SigningKey) {
        let key = SigningKey::from_bytes(&[9; 32]);
        let s = Statement::sign(
            MessageId([1; 16]),
            OfficeNumber::parse("1310000001").unwrap(),
            OfficeNumber::parse("1310000011").unwrap(),
            [2; 32],
            Reason::Expired,
            1_790_000_000,
            &key,
        );
        (s, key)
    }

    #[test]
    fn a_statement_round_trips_and_verifies() {
        let (s, key) = statement();
        let bytes = s.to_bytes();
        assert_eq!(bytes.len(), STATEMENT_LEN);
        let back = Statement::parse(&bytes).unwrap();
        assert_eq!(back, s);
        back.verify(&[key.verifying_key().to_bytes()]).unwrap();
        assert_eq!(back.verify(&[[7; 32]]), Err(StatementError::UnknownKey));
    }

    #[test]
    fn every_byte_changed_is_refused() {
        let (s, key) = statement();
        let bytes = s.to_bytes();
        let keys = [key.verifying_key().to_bytes()];
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            let ok = Statement::parse(&b).and_then(|s| s.verify(&keys)).is_ok();
            assert!(!ok, "byte {i} changed and still valid");
        }
        assert!(Statement::parse(&bytes[..bytes.len() - 1]).is_err());
        let mut long = bytes.clone();
        long.push(0);
        assert!(Statement::parse(&long).is_err());
    }
}
