//! What the two fixed-layout signed statements share (SPEC.md §7.6.4, §8.3): the mailbox's
//! deletion statement and the recipient's imported statement both open with the magic, a type
//! byte, the version, the message id and the two offices, and end with the signer's key and an
//! Ed25519 signature over every byte before it.

use ed25519_dalek::{Signature, VerifyingKey};

use crate::envelope::{MAGIC, MessageId, VERSION};
use crate::name::OfficeNumber;
use crate::wire::{Put, Reader};

/// The common opening, as written: magic, type, version, message id, sender, recipient.
pub(crate) fn put_head(
    out: &mut Vec<u8>,
    ty: u8,
    message_id: &MessageId,
    sender: &OfficeNumber,
    recipient: &OfficeNumber,
) {
    out.put(MAGIC);
    out.put_u8(ty);
    out.put_u8(VERSION);
    out.put(&message_id.0);
    out.put(sender.as_bytes());
    out.put(recipient.as_bytes());
}

/// Reads the common opening of a statement of type `ty`; the error says what is wrong.
pub(crate) fn read_head(
    r: &mut Reader<'_>,
    ty: u8,
    not_this_type: &'static str,
) -> Result<(MessageId, OfficeNumber, OfficeNumber), &'static str> {
    let short = |_| "too short";
    if r.bytes(6).map_err(short)? != MAGIC || r.u8().map_err(short)? != ty {
        return Err(not_this_type);
    }
    if r.u8().map_err(short)? != VERSION {
        return Err("unsupported version");
    }
    let message_id = MessageId(r.array().map_err(short)?);
    let office = |b: &[u8]| {
        std::str::from_utf8(b)
            .ok()
            .and_then(OfficeNumber::parse)
            .ok_or("office number")
    };
    let sender = office(r.bytes(10).map_err(short)?)?;
    let recipient = office(r.bytes(10).map_err(short)?)?;
    Ok((message_id, sender, recipient))
}

/// Reads the closing signer key and signature, and checks that nothing follows.
pub(crate) fn read_tail(
    r: &mut Reader<'_>,
    len: usize,
) -> Result<([u8; 32], [u8; 64]), &'static str> {
    let key = r.array().map_err(|_| "too short")?;
    let signature = r.array().map_err(|_| "too short")?;
    if r.pos() != len {
        return Err("trailing bytes");
    }
    Ok((key, signature))
}

/// Why a signature is not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SignatureFault {
    /// The signer's key is not one of those given.
    UnknownKey,
    /// The signature does not verify (strictly) over the signed bytes.
    BadSignature,
}

/// Checks that `key` is one of `keys` and signed `signed` with `signature`.
pub(crate) fn verify_by(
    keys: &[[u8; 32]],
    key: &[u8; 32],
    signed: &[u8],
    signature: &[u8; 64],
) -> Result<(), SignatureFault> {
    if !keys.contains(key) {
        return Err(SignatureFault::UnknownKey);
    }
    let k = VerifyingKey::from_bytes(key).map_err(|_| SignatureFault::BadSignature)?;
    k.verify_strict(signed, &Signature::from_bytes(signature))
        .map_err(|_| SignatureFault::BadSignature)
}
