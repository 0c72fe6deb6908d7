//! The recipient's signed acknowledgement (SPEC.md §5).
//!
//! An ack says: office R received message M whose plaintext hashes to H, at time T, and
//! accepted it, or rejected it with the checker's findings. It is signed by R's directory key,
//! so the sender can show it at an audit as proof of delivery.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use crate::envelope::{MAGIC, MessageId, VERSION};
use crate::name::OfficeNumber;
use crate::wire::{Put, Reader};

/// The type byte of an ack.
pub const TYPE_ACK: u8 = b'A';
/// The most findings an ack carries.
pub const MAX_ACK_FINDINGS: usize = 256;
/// The longest error code an ack carries, in bytes (a code is 1 to this many of `A`–`Z`,
/// `0`–`9`, `_`).
pub const MAX_CODE_LEN: usize = 64;

/// One checker finding carried in a negative ack.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AckFinding {
    /// Physical line (1-based), 0 for file-level.
    pub line: u32,
    /// Field number (1-based), 0 for file-level.
    pub field: u16,
    /// The stable error code text (kept as text so newer codes pass through older nodes).
    pub code: String,
}

/// What the recipient decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Written durably to the recipient's inbox.
    Accepted,
    /// Refused, with the reasons.
    Rejected(Vec<AckFinding>),
}

/// A signed acknowledgement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ack {
    /// The message acknowledged.
    pub message_id: MessageId,
    /// SHA-256 of the plaintext as received.
    pub plaintext_hash: [u8; 32],
    /// The office that sent the message.
    pub sender_office: OfficeNumber,
    /// The office acknowledging it.
    pub recipient_office: OfficeNumber,
    /// The recipient's Ed25519 directory key that signs the ack.
    pub recipient_key: [u8; 32],
    /// Unix seconds when the recipient committed (or refused) the file.
    pub received_at: u64,
    /// Accepted or rejected.
    pub verdict: Verdict,
    /// Ed25519 signature over every byte before it.
    pub signature: [u8; 64],
}

/// Why an ack is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    /// The bytes are not an ack of this format.
    #[error("malformed ack: {0}")]
    Malformed(&'static str),
    /// The ack is for another message.
    #[error("ack is for another message")]
    WrongMessage,
    /// The ack names another plaintext hash than the one sent.
    #[error("ack names another plaintext hash")]
    WrongHash,
    /// The ack is signed by a key the directory does not list for the recipient office.
    #[error("ack key is not the directory's key for office {0}")]
    UnknownKey(OfficeNumber),
    /// The signature does not verify.
    #[error("ack signature does not verify")]
    BadSignature,
}

impl Ack {
    /// Builds and signs an ack.
    pub fn sign(
        message_id: MessageId,
        plaintext_hash: [u8; 32],
        sender_office: OfficeNumber,
        recipient_office: OfficeNumber,
        received_at: u64,
        mut verdict: Verdict,
        key: &SigningKey,
    ) -> Ack {
        if let Verdict::Rejected(f) = &mut verdict {
            f.truncate(MAX_ACK_FINDINGS);
            for x in f.iter_mut() {
                // Codes are ASCII; cut at a character boundary all the same, never mid-character.
                let mut end = x.code.len().min(MAX_CODE_LEN);
                while !x.code.is_char_boundary(end) {
                    end -= 1;
                }
                x.code.truncate(end);
            }
        }
        let mut ack = Ack {
            message_id,
            plaintext_hash,
            sender_office,
            recipient_office,
            recipient_key: key.verifying_key().to_bytes(),
            received_at,
            verdict,
            signature: [0; 64],
        };
        ack.signature = key.sign(&ack.signed_bytes()).to_bytes();
        ack
    }

    fn signed_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(160);
        out.put(MAGIC);
        out.put_u8(TYPE_ACK);
        out.put_u8(VERSION);
        out.put(&self.message_id.0);
        out.put(&self.plaintext_hash);
        out.put(self.sender_office.as_bytes());
        out.put(self.recipient_office.as_bytes());
        out.put(&self.recipient_key);
        out.put_u64(self.received_at);
        match &self.verdict {
            Verdict::Accepted => {
                out.put_u8(0);
                out.put_u16(0);
            }
            Verdict::Rejected(findings) => {
                out.put_u8(1);
                out.put_u16(findings.len() as u16);
                for f in findings {
                    out.put_u32(f.line);
                    out.put_u16(f.field);
                    out.put_u8(f.code.len() as u8);
                    out.put(f.code.as_bytes());
                }
            }
        }
        out
    }

    /// The encoded ack.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.signed_bytes();
        out.put(&self.signature);
        out
    }

    /// Parses an ack (the whole of `buf`). Does not verify it: see [`Ack::verify`].
    pub fn parse(buf: &[u8]) -> Result<Ack, AckError> {
        let short = |_| AckError::Malformed("too short");
        let mut r = Reader::new(buf);
        if r.bytes(6).map_err(short)? != MAGIC || r.u8().map_err(short)? != TYPE_ACK {
            return Err(AckError::Malformed("not an ack"));
        }
        if r.u8().map_err(short)? != VERSION {
            return Err(AckError::Malformed("unsupported version"));
        }
        let message_id = MessageId(r.array().map_err(short)?);
        let plaintext_hash = r.array().map_err(short)?;
        let office = |b: &[u8]| {
            std::str::from_utf8(b)
                .ok()
                .and_then(OfficeNumber::parse)
                .ok_or(AckError::Malformed("office number"))
        };
        let sender_office = office(r.bytes(10).map_err(short)?)?;
        let recipient_office = office(r.bytes(10).map_err(short)?)?;
        let recipient_key = r.array().map_err(short)?;
        let received_at = r.u64().map_err(short)?;
        let verdict_byte = r.u8().map_err(short)?;
        let n = usize::from(r.u16().map_err(short)?);
        let verdict = match verdict_byte {
            0 if n == 0 => Verdict::Accepted,
            1 if n <= MAX_ACK_FINDINGS => {
                let mut findings = Vec::with_capacity(n);
                for _ in 0..n {
                    let line = r.u32().map_err(short)?;
                    let field = r.u16().map_err(short)?;
                    let len = usize::from(r.u8().map_err(short)?);
                    let code = std::str::from_utf8(r.bytes(len).map_err(short)?)
                        .map_err(|_| AckError::Malformed("error code"))?;
                    if code.is_empty()
                        || code.len() > MAX_CODE_LEN
                        || !code
                            .bytes()
                            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_')
                    {
                        return Err(AckError::Malformed("error code"));
                    }
                    findings.push(AckFinding {
                        line,
                        field,
                        code: code.to_string(),
                    });
                }
                Verdict::Rejected(findings)
            }
            _ => return Err(AckError::Malformed("verdict")),
        };
        let signature = r.array().map_err(short)?;
        if r.pos() != buf.len() {
            return Err(AckError::Malformed("trailing bytes"));
        }
        Ok(Ack {
            message_id,
            plaintext_hash,
            sender_office,
            recipient_office,
            recipient_key,
            received_at,
            verdict,
            signature,
        })
    }

    /// Verifies the ack for the message we sent: same id and hash, signed by one of the keys
    /// the directory lists for the recipient office.
    pub fn verify(
        &self,
        message_id: &MessageId,
        plaintext_hash: &[u8; 32],
        recipient_keys: &[VerifyingKey],
    ) -> Result<(), AckError> {
        if &self.message_id != message_id {
            return Err(AckError::WrongMessage);
        }
        if &self.plaintext_hash != plaintext_hash {
            return Err(AckError::WrongHash);
        }
        self.verify_signature(recipient_keys)
    }

    /// Verifies only the signature (for re-checking a stored receipt at an audit).
    pub fn verify_signature(&self, recipient_keys: &[VerifyingKey]) -> Result<(), AckError> {
        let key = recipient_keys
            .iter()
            .find(|k| k.as_bytes() == &self.recipient_key)
            .ok_or(AckError::UnknownKey(self.recipient_office))?;
        key.verify_strict(
            &self.signed_bytes(),
            &Signature::from_bytes(&self.signature),
        )
        .map_err(|_| AckError::BadSignature)
    }

    /// Verifies the signature against the key the ack itself names. Only meaningful together
    /// with a check that this key belongs to the recipient office.
    pub fn verify_self_signed(&self) -> Result<(), AckError> {
        let key =
            VerifyingKey::from_bytes(&self.recipient_key).map_err(|_| AckError::BadSignature)?;
        self.verify_signature(&[key])
    }
}
