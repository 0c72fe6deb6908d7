//! The sealed envelope (SPEC.md §4): one file, sealed by one office for one recipient office.
//!
//! Construction, all from reviewed parts:
//! - RFC 9180 HPKE, Base mode, DHKEM(X25519, HKDF-SHA256) / HKDF-SHA256 / ChaCha20-Poly1305,
//!   to the recipient's X25519 key from the directory. `info` binds the header fields.
//! - A 32-byte payload key exported from the HPKE context.
//! - The payload in fixed-size chunks under ChaCha20-Poly1305 with STREAM nonces
//!   (11-byte big-endian chunk counter, then 0x01 on the last chunk and 0x00 otherwise), so
//!   truncation, reordering and appending are detected.
//! - An Ed25519 signature by the sender's directory key over the whole header, including the
//!   HPKE encapsulated key, so the file is authenticated as the sender office's.

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce, Tag};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use hpke::{Deserializable, OpModeR, OpModeS, Serializable};
use rand_core::CryptoRng;
use sha2::Digest;

use crate::name::OfficeNumber;
use crate::wire::{Put, Reader, Short, sha256};

/// The first six bytes of every renkei envelope and ack.
pub const MAGIC: &[u8; 6] = b"RENKEI";
/// The type byte of an envelope header.
pub const TYPE_ENVELOPE: u8 = b'E';
/// The format version this crate writes and reads.
pub const VERSION: u8 = 1;
/// Plaintext bytes per chunk that [`seal`] uses.
pub const DEFAULT_CHUNK_SIZE: u32 = 64 * 1024;
/// The smallest chunk size a reader accepts.
pub const MIN_CHUNK_SIZE: u32 = 64;
/// The largest chunk size a reader accepts (bounds a reader's memory).
pub const MAX_CHUNK_SIZE: u32 = 1024 * 1024;
/// The authentication tag added to each chunk.
pub const TAG_LEN: usize = 16;
/// The longest file name an envelope carries.
pub const MAX_NAME_LEN: usize = 255;

const HPKE_INFO_LABEL: &[u8] = b"renkei/1 envelope\0";
const EXPORT_LABEL: &[u8] = b"renkei/1 payload key";

type Kem = hpke::kem::X25519HkdfSha256;
type Kdf = hpke::kdf::HkdfSha256;
type HpkeAead = hpke::aead::ChaCha20Poly1305;

/// A message id: 16 random bytes chosen by the sender, kept across retries.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub [u8; 16]);

impl MessageId {
    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 32 hex digits.
    pub fn from_hex(s: &str) -> Option<MessageId> {
        let mut out = [0u8; 16];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(MessageId(out))
    }
}

impl std::fmt::Debug for MessageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MessageId({})", self.to_hex())
    }
}

impl std::fmt::Display for MessageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Why an envelope cannot be sealed or opened. Each cause has its own variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// More bytes are needed to read the header.
    #[error("incomplete envelope header")]
    Incomplete,
    /// The bytes do not start with the renkei envelope magic.
    #[error("not a renkei envelope")]
    BadMagic,
    /// A format version this implementation does not read.
    #[error("unsupported envelope version {0}")]
    UnsupportedVersion(u8),
    /// A header field is out of its allowed range.
    #[error("malformed envelope header: {0}")]
    Malformed(&'static str),
    /// The envelope is addressed to another office (misrouted or swapped recipient).
    #[error("envelope is addressed to office {0}, not to us")]
    WrongRecipient(OfficeNumber),
    /// The envelope is sealed to an encryption key that is not ours.
    #[error("envelope is sealed to an encryption key that is not ours")]
    WrongRecipientKey,
    /// The header names a signing key the directory does not list for the sender office.
    #[error("the sender key is not the directory's key for office {0}")]
    UnknownSenderKey(OfficeNumber),
    /// The header signature does not verify: the header was altered.
    #[error("header signature does not verify")]
    BadSignature,
    /// A message with this id was already received.
    #[error("message {0} was already received")]
    Replayed(MessageId),
    /// The header's creation time lies too far in the future.
    #[error("envelope created in the future")]
    FromFuture,
    /// The header's creation time is older than the receiver accepts.
    #[error("envelope is too old")]
    TooOld,
    /// The HPKE encapsulated key could not be opened.
    #[error("key agreement failed")]
    KeyAgreement,
    /// A chunk failed authentication: altered, reordered, or sealed under another key.
    #[error("chunk {0} failed authentication")]
    ChunkAuth(u64),
    /// The stream ended before the last chunk.
    #[error("envelope truncated")]
    Truncated,
    /// Bytes follow the last chunk.
    #[error("data after the last chunk")]
    TrailingData,
    /// The opened plaintext does not have the length or hash the header promises.
    #[error("plaintext does not match the header's hash")]
    HashMismatch,
    /// The sealer was given chunks that do not add up to the announced length.
    #[error("chunk of the wrong size for sealing")]
    ChunkSize,
}

impl From<Short> for EnvelopeError {
    fn from(_: Short) -> Self {
        EnvelopeError::Incomplete
    }
}

/// The signed header of an envelope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvelopeHeader {
    /// Chosen by the sender; the same on every retry of one file.
    pub message_id: MessageId,
    /// Unix seconds when the sender sealed the file.
    pub created_at: u64,
    /// 送信元 office number.
    pub sender_office: OfficeNumber,
    /// The sender office's Ed25519 directory key.
    pub sender_key: [u8; 32],
    /// 送信先 office number.
    pub recipient_office: OfficeNumber,
    /// The recipient office's X25519 directory key the file is sealed to.
    pub recipient_key: [u8; 32],
    /// The standard-spec file name.
    pub file_name: String,
    /// Plaintext length in bytes.
    pub plaintext_len: u64,
    /// SHA-256 of the plaintext.
    pub plaintext_hash: [u8; 32],
    /// Plaintext bytes per chunk (the last chunk may be shorter).
    pub chunk_size: u32,
    /// The HPKE encapsulated key.
    pub enc: [u8; 32],
    /// Ed25519 signature over every byte before it.
    pub signature: [u8; 64],
}

impl EnvelopeHeader {
    fn put_core(&self, out: &mut Vec<u8>) {
        out.put(MAGIC);
        out.put_u8(TYPE_ENVELOPE);
        out.put_u8(VERSION);
        out.put(&self.message_id.0);
        out.put_u64(self.created_at);
        out.put(self.sender_office.as_bytes());
        out.put(&self.sender_key);
        out.put(self.recipient_office.as_bytes());
        out.put(&self.recipient_key);
        out.put_u16(self.file_name.len() as u16);
        out.put(self.file_name.as_bytes());
        out.put_u64(self.plaintext_len);
        out.put(&self.plaintext_hash);
        out.put_u32(self.chunk_size);
    }

    /// The bytes the signature covers (everything before it).
    fn signed_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.file_name.len());
        self.put_core(&mut out);
        out.put(&self.enc);
        out
    }

    /// The HPKE `info`: a label and the SHA-256 of the header fields before `enc`.
    fn hpke_info(&self) -> Vec<u8> {
        let mut core = Vec::with_capacity(192 + self.file_name.len());
        self.put_core(&mut core);
        let mut info = HPKE_INFO_LABEL.to_vec();
        info.put(&sha256(&core));
        info
    }

    /// The encoded header.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.signed_bytes();
        out.put(&self.signature);
        out
    }

    /// Parses a header from the front of `buf`; returns it and the bytes it took.
    /// [`EnvelopeError::Incomplete`] means more bytes are needed.
    pub fn parse(buf: &[u8]) -> Result<(EnvelopeHeader, usize), EnvelopeError> {
        let mut r = Reader::new(buf);
        if r.bytes(6)? != MAGIC || r.u8()? != TYPE_ENVELOPE {
            return Err(EnvelopeError::BadMagic);
        }
        let version = r.u8()?;
        if version != VERSION {
            return Err(EnvelopeError::UnsupportedVersion(version));
        }
        let message_id = MessageId(r.array()?);
        let created_at = r.u64()?;
        let office = |b: &[u8]| {
            std::str::from_utf8(b)
                .ok()
                .and_then(OfficeNumber::parse)
                .ok_or(EnvelopeError::Malformed("office number"))
        };
        let sender_office = office(r.bytes(10)?)?;
        let sender_key = r.array()?;
        let recipient_office = office(r.bytes(10)?)?;
        let recipient_key = r.array()?;
        let name_len = usize::from(r.u16()?);
        if name_len == 0 || name_len > MAX_NAME_LEN {
            return Err(EnvelopeError::Malformed("file name length"));
        }
        let file_name = std::str::from_utf8(r.bytes(name_len)?)
            .map_err(|_| EnvelopeError::Malformed("file name"))?
            .to_string();
        let plaintext_len = r.u64()?;
        let plaintext_hash = r.array()?;
        let chunk_size = r.u32()?;
        if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&chunk_size) {
            return Err(EnvelopeError::Malformed("chunk size"));
        }
        let enc = r.array()?;
        let signature = r.array()?;
        let header = EnvelopeHeader {
            message_id,
            created_at,
            sender_office,
            sender_key,
            recipient_office,
            recipient_key,
            file_name,
            plaintext_len,
            plaintext_hash,
            chunk_size,
            enc,
            signature,
        };
        Ok((header, r.pos()))
    }

    /// How many chunks follow the header (at least one, even for an empty file).
    pub fn chunk_count(&self) -> u64 {
        self.plaintext_len
            .div_ceil(u64::from(self.chunk_size))
            .max(1)
    }

    /// Ciphertext length of chunk `index` (plaintext plus tag).
    pub fn chunk_len(&self, index: u64) -> usize {
        let cs = u64::from(self.chunk_size);
        let start = index.saturating_mul(cs);
        let pt = self.plaintext_len.saturating_sub(start).min(cs);
        pt as usize + TAG_LEN
    }

    /// Total bytes of all chunks after the header. The length is the peer's claim: a header
    /// claiming close to `u64::MAX` bytes gives `u64::MAX` here rather than overflowing.
    pub fn body_len(&self) -> u64 {
        self.plaintext_len
            .saturating_add(self.chunk_count() * TAG_LEN as u64)
    }
}

/// What the sender states about the file it seals.
#[derive(Clone, Debug)]
pub struct SealParams<'a> {
    /// The message id (random, kept across retries).
    pub message_id: MessageId,
    /// Unix seconds now.
    pub created_at: u64,
    /// Our office number.
    pub sender_office: OfficeNumber,
    /// The recipient office number.
    pub recipient_office: OfficeNumber,
    /// The recipient's X25519 key from the directory.
    pub recipient_key: [u8; 32],
    /// The standard-spec file name.
    pub file_name: &'a str,
    /// Plaintext length.
    pub plaintext_len: u64,
    /// SHA-256 of the plaintext.
    pub plaintext_hash: [u8; 32],
    /// Plaintext bytes per chunk.
    pub chunk_size: u32,
}

fn stream_nonce(index: u64, last: bool) -> Nonce {
    let mut n = [0u8; 12];
    n[3..11].copy_from_slice(&index.to_be_bytes());
    n[11] = u8::from(last);
    Nonce::from(n)
}

fn payload_cipher(
    export: impl FnOnce(&[u8], &mut [u8]) -> Result<(), hpke::HpkeError>,
) -> Result<ChaCha20Poly1305, EnvelopeError> {
    let mut key = [0u8; 32];
    export(EXPORT_LABEL, &mut key).map_err(|_| EnvelopeError::KeyAgreement)?;
    Ok(ChaCha20Poly1305::new(&Key::from(key)))
}

/// Seals the chunks of one file, in order, after [`seal_header`].
pub struct Sealer {
    cipher: ChaCha20Poly1305,
    index: u64,
    remaining: u64,
    chunk_size: u32,
    done: bool,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

impl Sealer {
    /// The plaintext length the next chunk must have, or `None` when every chunk is sealed.
    pub fn next_plain_len(&self) -> Option<usize> {
        (!self.done).then(|| self.remaining.min(u64::from(self.chunk_size)) as usize)
    }

    /// Seals the next chunk and appends it (ciphertext and tag) to `out`.
    pub fn seal_chunk(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), EnvelopeError> {
        if self.next_plain_len() != Some(plaintext.len()) {
            return Err(EnvelopeError::ChunkSize);
        }
        self.remaining -= plaintext.len() as u64;
        let last = self.remaining == 0;
        let start = out.len();
        out.extend_from_slice(plaintext);
        let tag = self
            .cipher
            .encrypt_inout_detached(
                &stream_nonce(self.index, last),
                &[],
                (&mut out[start..]).into(),
            )
            .map_err(|_| EnvelopeError::ChunkSize)?;
        out.extend_from_slice(tag.as_slice());
        self.index += 1;
        self.done = last;
        Ok(())
    }
}

/// Builds and signs the header for `params`, and returns the encoded header with the
/// [`Sealer`] for the chunks.
pub fn seal_header(
    params: &SealParams<'_>,
    sender: &SigningKey,
    rng: &mut impl CryptoRng,
) -> Result<(Vec<u8>, Sealer), EnvelopeError> {
    if params.file_name.is_empty() || params.file_name.len() > MAX_NAME_LEN {
        return Err(EnvelopeError::Malformed("file name length"));
    }
    if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&params.chunk_size) {
        return Err(EnvelopeError::Malformed("chunk size"));
    }
    let mut header = EnvelopeHeader {
        message_id: params.message_id,
        created_at: params.created_at,
        sender_office: params.sender_office,
        sender_key: sender.verifying_key().to_bytes(),
        recipient_office: params.recipient_office,
        recipient_key: params.recipient_key,
        file_name: params.file_name.to_string(),
        plaintext_len: params.plaintext_len,
        plaintext_hash: params.plaintext_hash,
        chunk_size: params.chunk_size,
        enc: [0; 32],
        signature: [0; 64],
    };
    let pk = <Kem as hpke::Kem>::PublicKey::from_bytes(&params.recipient_key)
        .map_err(|_| EnvelopeError::WrongRecipientKey)?;
    let (enc, ctx) = hpke::setup_sender_with_rng::<HpkeAead, Kdf, Kem>(
        &OpModeS::Base,
        &pk,
        &header.hpke_info(),
        rng,
    )
    .map_err(|_| EnvelopeError::KeyAgreement)?;
    header.enc.copy_from_slice(&enc.to_bytes());
    header.signature = sender.sign(&header.signed_bytes()).to_bytes();
    let sealer = Sealer {
        cipher: payload_cipher(|l, o| ctx.export(l, o))?,
        index: 0,
        remaining: params.plaintext_len,
        chunk_size: params.chunk_size,
        done: false,
    };
    Ok((header.to_bytes(), sealer))
}

/// Seals a whole file held in memory: header and every chunk.
pub fn seal(
    params: &SealParams<'_>,
    plaintext: &[u8],
    sender: &SigningKey,
    rng: &mut impl CryptoRng,
) -> Result<Vec<u8>, EnvelopeError> {
    if params.plaintext_len != plaintext.len() as u64 {
        return Err(EnvelopeError::ChunkSize);
    }
    let (mut out, mut sealer) = seal_header(params, sender, rng)?;
    out.reserve(plaintext.len() + TAG_LEN * (plaintext.len() / params.chunk_size as usize + 1));
    let mut rest = plaintext;
    while let Some(n) = sealer.next_plain_len() {
        let (chunk, tail) = rest.split_at(n);
        sealer.seal_chunk(chunk, &mut out)?;
        rest = tail;
    }
    Ok(out)
}

/// What the recipient knows and expects when it opens an envelope.
pub struct OpenParams<'a> {
    /// Our office number.
    pub recipient_office: OfficeNumber,
    /// Our X25519 secrets (the current one and any pre-announced or overlapping one).
    pub recipient_secrets: &'a [x25519_dalek::StaticSecret],
    /// The Ed25519 keys the directory lists for the header's sender office (empty when the
    /// sender is not an active member).
    pub sender_keys: &'a [VerifyingKey],
    /// Unix seconds now.
    pub now: u64,
    /// The oldest envelope accepted, in seconds.
    pub max_age: u64,
    /// How far in the future a creation time may lie (clock skew), in seconds.
    pub max_skew: u64,
    /// Whether this sender office's message id was already received (replay). Message ids are
    /// per sender: the same id from another office is another message.
    pub seen: &'a dyn Fn(&OfficeNumber, &MessageId) -> bool,
}

impl std::fmt::Debug for OpenParams<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenParams")
            .field("recipient_office", &self.recipient_office)
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

/// Opens the chunks of one envelope, in order, after [`open_header`].
pub struct Opener {
    cipher: ChaCha20Poly1305,
    index: u64,
    count: u64,
    header: EnvelopeHeader,
    hasher: sha2::Sha256,
    opened: u64,
}

impl std::fmt::Debug for Opener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opener")
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

/// Verifies a parsed header against what we expect, and prepares to open its chunks.
pub fn open_header(header: &EnvelopeHeader, p: &OpenParams<'_>) -> Result<Opener, EnvelopeError> {
    if header.recipient_office != p.recipient_office {
        return Err(EnvelopeError::WrongRecipient(header.recipient_office));
    }
    let secret = p
        .recipient_secrets
        .iter()
        .find(|s| x25519_dalek::PublicKey::from(*s).as_bytes() == &header.recipient_key)
        .ok_or(EnvelopeError::WrongRecipientKey)?;
    let sender_key = p
        .sender_keys
        .iter()
        .find(|k| k.as_bytes() == &header.sender_key)
        .ok_or(EnvelopeError::UnknownSenderKey(header.sender_office))?;
    let signature = Signature::from_bytes(&header.signature);
    sender_key
        .verify_strict(&header.signed_bytes(), &signature)
        .map_err(|_| EnvelopeError::BadSignature)?;
    if (p.seen)(&header.sender_office, &header.message_id) {
        return Err(EnvelopeError::Replayed(header.message_id));
    }
    if header.created_at > p.now.saturating_add(p.max_skew) {
        return Err(EnvelopeError::FromFuture);
    }
    if p.now.saturating_sub(header.created_at) > p.max_age {
        return Err(EnvelopeError::TooOld);
    }
    let sk = <Kem as hpke::Kem>::PrivateKey::from_bytes(secret.as_bytes())
        .map_err(|_| EnvelopeError::KeyAgreement)?;
    let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&header.enc)
        .map_err(|_| EnvelopeError::KeyAgreement)?;
    let ctx =
        hpke::setup_receiver::<HpkeAead, Kdf, Kem>(&OpModeR::Base, &sk, &enc, &header.hpke_info())
            .map_err(|_| EnvelopeError::KeyAgreement)?;
    Ok(Opener {
        cipher: payload_cipher(|l, o| ctx.export(l, o))?,
        index: 0,
        count: header.chunk_count(),
        header: header.clone(),
        hasher: sha2::Sha256::new(),
        opened: 0,
    })
}

impl Opener {
    /// The verified header.
    pub fn header(&self) -> &EnvelopeHeader {
        &self.header
    }

    /// The ciphertext length of the next chunk, or `None` when all chunks are open.
    pub fn next_chunk_len(&self) -> Option<usize> {
        (self.index < self.count).then(|| self.header.chunk_len(self.index))
    }

    /// Opens the next chunk in place: `chunk` holds the ciphertext and tag on entry and the
    /// plaintext on success.
    pub fn open_chunk(&mut self, chunk: &mut Vec<u8>) -> Result<(), EnvelopeError> {
        let want = self.next_chunk_len().ok_or(EnvelopeError::TrailingData)?;
        if chunk.len() != want {
            return Err(EnvelopeError::Truncated);
        }
        let last = self.index + 1 == self.count;
        let split = chunk.len() - TAG_LEN;
        let (ct, tag) = chunk.split_at_mut(split);
        let tag = Tag::try_from(&*tag).map_err(|_| EnvelopeError::Truncated)?;
        self.cipher
            .decrypt_inout_detached(&stream_nonce(self.index, last), &[], ct.into(), &tag)
            .map_err(|_| EnvelopeError::ChunkAuth(self.index))?;
        chunk.truncate(split);
        self.hasher.update(&chunk[..]);
        self.opened += chunk.len() as u64;
        self.index += 1;
        Ok(())
    }

    /// Checks that every chunk was opened and the plaintext matches the header's hash.
    pub fn finish(self) -> Result<EnvelopeHeader, EnvelopeError> {
        if self.index < self.count {
            return Err(EnvelopeError::Truncated);
        }
        let hash: [u8; 32] = self.hasher.finalize().into();
        if self.opened != self.header.plaintext_len || hash != self.header.plaintext_hash {
            return Err(EnvelopeError::HashMismatch);
        }
        Ok(self.header)
    }
}

/// Opens a whole envelope held in memory; returns the verified header and the plaintext.
pub fn open(bytes: &[u8], p: &OpenParams<'_>) -> Result<(EnvelopeHeader, Vec<u8>), EnvelopeError> {
    let (header, mut pos) = EnvelopeHeader::parse(bytes)?;
    let mut opener = open_header(&header, p)?;
    let mut plaintext = Vec::with_capacity(header.plaintext_len.min(bytes.len() as u64) as usize);
    let mut chunk = Vec::with_capacity(header.chunk_size as usize + TAG_LEN);
    while let Some(n) = opener.next_chunk_len() {
        let Some(ct) = bytes.get(pos..pos + n) else {
            return Err(EnvelopeError::Truncated);
        };
        chunk.clear();
        chunk.extend_from_slice(ct);
        opener.open_chunk(&mut chunk)?;
        plaintext.extend_from_slice(&chunk);
        pos += n;
    }
    if pos != bytes.len() {
        return Err(EnvelopeError::TrailingData);
    }
    let header = opener.finish()?;
    Ok((header, plaintext))
}
