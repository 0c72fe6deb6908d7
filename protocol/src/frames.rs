//! Framing on renkei's libp2p streams and the refusal frame of a delivery (SPEC.md §7.1, §7.3).
//!
//! A stream carries frames: `type (u8) ‖ length (u32 BE) ‖ payload`, each type with its own
//! size limit. This module only encodes and decodes; the node reads and writes the bytes.

use crate::envelope::{EnvelopeError, MAX_CHUNK_SIZE, MessageId, TAG_LEN};
use crate::wire::{Put, Reader};

/// The delivery protocol's libp2p protocol name (SPEC.md §7). Version 2: refusals carry the
/// message id they answer.
pub const DELIVER_PROTOCOL: &str = "/renkei/deliver/2";
/// The directory sync protocol's libp2p protocol name (SPEC.md §6.6).
pub const DIRECTORY_PROTOCOL: &str = "/renkei/directory/1";

/// The mailbox protocol (SPEC.md §7.6).
pub const MAILBOX_PROTOCOL: &str = "/renkei/mailbox/1";

/// A mailbox tells a connected office that mail arrived for it (SPEC.md §7.6).
pub const MAIL_NOTIFY_PROTOCOL: &str = "/renkei/mail-notify/1";

/// A recipient tells a file's sender that its care software imported the file (SPEC.md §8.3).
pub const IMPORTED_PROTOCOL: &str = "/renkei/imported/1";

/// Bytes before every frame's payload: the type and the length.
pub const FRAME_HEAD_LEN: usize = 5;

/// The longest reason text a refusal carries, in bytes.
pub const MAX_REASON_LEN: usize = 4096 - 18;

/// Frame types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameKind {
    /// An envelope header (§4.2).
    Header = 1,
    /// One sealed chunk.
    Chunk = 2,
    /// A signed ack (§5).
    Ack = 3,
    /// A refusal: message id, code and reason ([`Refusal`]).
    Refuse = 4,
    /// The sender has nothing more on this stream.
    End = 5,
    /// A directory request (JSON, §6.6).
    Request = 6,
    /// A directory answer: a snapshot, a delta or a JSON listing.
    Blob = 7,
    /// A directory answer: not found (UTF-8 reason).
    NotFound = 8,
    /// A mailbox kept an envelope for its recipient: the message id (§7.6).
    Stored = 9,
    /// A signed "imported" statement (§8.3, [`crate::imported`]).
    Imported = 10,
}

impl FrameKind {
    /// The frame type of a byte, if it is one.
    pub fn from_u8(b: u8) -> Option<FrameKind> {
        Some(match b {
            1 => FrameKind::Header,
            2 => FrameKind::Chunk,
            3 => FrameKind::Ack,
            4 => FrameKind::Refuse,
            5 => FrameKind::End,
            6 => FrameKind::Request,
            7 => FrameKind::Blob,
            8 => FrameKind::NotFound,
            9 => FrameKind::Stored,
            10 => FrameKind::Imported,
            _ => return None,
        })
    }

    /// The largest payload a reader accepts for this type.
    pub fn limit(self) -> usize {
        match self {
            FrameKind::Header => 4096,
            FrameKind::Chunk => MAX_CHUNK_SIZE as usize + TAG_LEN,
            // The largest ack a reader accepts (256 findings with 64-byte codes, 18,359 bytes)
            // fits, with room.
            FrameKind::Ack => 80 * 1024,
            FrameKind::Refuse | FrameKind::NotFound | FrameKind::Request => 4096,
            FrameKind::End => 0,
            FrameKind::Stored => 16,
            FrameKind::Imported => crate::imported::IMPORTED_LEN,
            FrameKind::Blob => 256 << 20,
        }
    }
}

/// A framing failure: the peer broke SPEC.md §7.1, and the stream is dropped.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A type byte that is not a frame type.
    #[error("unknown frame type {0}")]
    UnknownType(u8),
    /// A length over the type's limit.
    #[error("{kind:?} frame of {len} bytes is over its limit")]
    TooLarge {
        /// The frame type.
        kind: FrameKind,
        /// The length it claimed.
        len: usize,
    },
    /// The stream ended inside a frame.
    #[error("stream ended inside a frame")]
    EndedInside,
    /// A refusal frame that cannot be read.
    #[error("malformed refusal frame")]
    BadRefusal,
}

/// The 5 bytes before a payload of `len` bytes.
pub fn encode_head(kind: FrameKind, len: usize) -> [u8; FRAME_HEAD_LEN] {
    let mut head = [0u8; FRAME_HEAD_LEN];
    head[0] = kind as u8;
    head[1..].copy_from_slice(&(len as u32).to_be_bytes());
    head
}

/// Reads a frame head: its type and payload length, refused when over the type's limit.
pub fn decode_head(head: [u8; FRAME_HEAD_LEN]) -> Result<(FrameKind, usize), FrameError> {
    let kind = FrameKind::from_u8(head[0]).ok_or(FrameError::UnknownType(head[0]))?;
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > kind.limit() {
        return Err(FrameError::TooLarge { kind, len });
    }
    Ok((kind, len))
}

/// Appends a whole frame to `out`.
pub fn encode_frame(kind: FrameKind, payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&encode_head(kind, payload.len()));
    out.extend_from_slice(payload);
}

/// Splits frames off the front of a byte buffer: the same rules as a stream reader, for
/// fuzzers, tests and transports that hand over bytes rather than a stream.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
}

impl FrameDecoder {
    /// Adds bytes received.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame, `Ok(None)` when more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<(FrameKind, Vec<u8>)>, FrameError> {
        let Some(head) = self.buf.first_chunk::<FRAME_HEAD_LEN>() else {
            return Ok(None);
        };
        let (kind, len) = decode_head(*head)?;
        if self.buf.len() < FRAME_HEAD_LEN + len {
            return Ok(None);
        }
        let payload = self.buf[FRAME_HEAD_LEN..FRAME_HEAD_LEN + len].to_vec();
        self.buf.drain(..FRAME_HEAD_LEN + len);
        Ok(Some((kind, payload)))
    }

    /// At the end of the stream: an error if bytes of an unfinished frame are left.
    pub fn finish(&self) -> Result<(), FrameError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(FrameError::EndedInside)
        }
    }
}

/// Why a receiver refused a message (SPEC.md §7.3), as the `u16` on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RefusalCode {
    /// 1: the header cannot be parsed.
    Unparseable,
    /// 2: an envelope version the receiver does not read.
    UnsupportedVersion,
    /// 3: addressed to another office.
    WrongRecipient,
    /// 4: sealed to an encryption key that is not the receiver's.
    WrongRecipientKey,
    /// 5: the sender key is not the directory's for the sender office, or not the connection's.
    UnknownSenderKey,
    /// 6: the header signature does not verify.
    BadSignature,
    /// 7: the message was already received (unused: a repeat is answered with its ack).
    Replayed,
    /// 8: created too far in the future or too long ago.
    Clock,
    /// 9: HPKE key agreement failed.
    KeyAgreement,
    /// 10: a chunk failed authentication, is missing or is extra.
    DamagedChunk,
    /// 11: the plaintext does not match the header's length or hash.
    HashMismatch,
    /// 12: chunk size error.
    ChunkSize,
    /// 13: larger than the receiver accepts.
    TooLarge,
    /// 14: not now: the message is being received on another stream, or the receiver holds
    /// as many unfinished bytes from this sender as it allows.
    Busy,
    /// A code this implementation does not know (a newer peer's).
    Other(u16),
}

/// What a sender does with a refused message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// Retrying cannot help: the file goes to `rejected/` with a report.
    Permanent,
    /// The file changed while it was sent: queue it again from the outbox as a new message.
    Requeue,
    /// Stale directory, clock, a damaged transfer or a busy receiver: retry later.
    Retry,
}

impl RefusalCode {
    /// The code on the wire.
    pub fn to_u16(self) -> u16 {
        match self {
            RefusalCode::Unparseable => 1,
            RefusalCode::UnsupportedVersion => 2,
            RefusalCode::WrongRecipient => 3,
            RefusalCode::WrongRecipientKey => 4,
            RefusalCode::UnknownSenderKey => 5,
            RefusalCode::BadSignature => 6,
            RefusalCode::Replayed => 7,
            RefusalCode::Clock => 8,
            RefusalCode::KeyAgreement => 9,
            RefusalCode::DamagedChunk => 10,
            RefusalCode::HashMismatch => 11,
            RefusalCode::ChunkSize => 12,
            RefusalCode::TooLarge => 13,
            RefusalCode::Busy => 14,
            RefusalCode::Other(c) => c,
        }
    }

    /// The code of a `u16` from the wire.
    pub fn from_u16(c: u16) -> RefusalCode {
        match c {
            1 => RefusalCode::Unparseable,
            2 => RefusalCode::UnsupportedVersion,
            3 => RefusalCode::WrongRecipient,
            4 => RefusalCode::WrongRecipientKey,
            5 => RefusalCode::UnknownSenderKey,
            6 => RefusalCode::BadSignature,
            7 => RefusalCode::Replayed,
            8 => RefusalCode::Clock,
            9 => RefusalCode::KeyAgreement,
            10 => RefusalCode::DamagedChunk,
            11 => RefusalCode::HashMismatch,
            12 => RefusalCode::ChunkSize,
            13 => RefusalCode::TooLarge,
            14 => RefusalCode::Busy,
            c => RefusalCode::Other(c),
        }
    }

    /// The code for an envelope that failed to open (SPEC.md §4.5 → §7.3).
    pub fn for_envelope_error(e: &EnvelopeError) -> RefusalCode {
        match e {
            EnvelopeError::Incomplete | EnvelopeError::BadMagic | EnvelopeError::Malformed(_) => {
                RefusalCode::Unparseable
            }
            EnvelopeError::UnsupportedVersion(_) => RefusalCode::UnsupportedVersion,
            EnvelopeError::WrongRecipient(_) => RefusalCode::WrongRecipient,
            EnvelopeError::WrongRecipientKey => RefusalCode::WrongRecipientKey,
            EnvelopeError::UnknownSenderKey(_) => RefusalCode::UnknownSenderKey,
            EnvelopeError::BadSignature => RefusalCode::BadSignature,
            EnvelopeError::Replayed(_) => RefusalCode::Replayed,
            EnvelopeError::FromFuture | EnvelopeError::TooOld => RefusalCode::Clock,
            EnvelopeError::KeyAgreement => RefusalCode::KeyAgreement,
            EnvelopeError::ChunkAuth(_)
            | EnvelopeError::Truncated
            | EnvelopeError::TrailingData => RefusalCode::DamagedChunk,
            EnvelopeError::HashMismatch => RefusalCode::HashMismatch,
            EnvelopeError::ChunkSize => RefusalCode::ChunkSize,
        }
    }

    /// What the sender does with a message refused with this code.
    pub fn disposition(self) -> Disposition {
        match self {
            RefusalCode::Unparseable
            | RefusalCode::UnsupportedVersion
            | RefusalCode::WrongRecipient
            | RefusalCode::BadSignature
            | RefusalCode::ChunkSize
            | RefusalCode::TooLarge => Disposition::Permanent,
            RefusalCode::HashMismatch => Disposition::Requeue,
            _ => Disposition::Retry,
        }
    }
}

/// What ends the reason of a code-8 refusal, before the receiver's Unix seconds and `)`.
const RECEIVER_TIME: &str = " (receiver time ";

/// A refusal frame's payload: `message_id (16) ‖ code (u16) ‖ reason (UTF-8)`. The id is the
/// message refused; when the header could not be read it is bytes 8–23 of the header frame, or
/// zeros when the frame is shorter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The message refused.
    pub message_id: MessageId,
    /// Why.
    pub code: RefusalCode,
    /// A reason for people and logs (not for machines).
    pub reason: String,
}

impl Refusal {
    /// A refusal of `message_id`; a reason longer than [`MAX_REASON_LEN`] is cut at a
    /// character boundary.
    pub fn new(message_id: MessageId, code: RefusalCode, reason: &str) -> Refusal {
        let mut end = reason.len().min(MAX_REASON_LEN);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        Refusal {
            message_id,
            code,
            reason: reason[..end].to_string(),
        }
    }

    /// A refusal for a creation time outside the receiver's window (code 8): the reason names
    /// the receiver's clock at the end, ` (receiver time <unix seconds>)` (SPEC.md §7.3), so
    /// the sender can tell whose clock is wrong and by how much.
    pub fn clock(message_id: MessageId, reason: &str, receiver_now: u64) -> Refusal {
        let suffix = format!("{RECEIVER_TIME}{receiver_now})");
        let mut end = reason.len().min(MAX_REASON_LEN - suffix.len());
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        Refusal::new(
            message_id,
            RefusalCode::Clock,
            &format!("{}{suffix}", &reason[..end]),
        )
    }

    /// The receiver's clock (Unix seconds) a code-8 refusal names, when it names one.
    pub fn receiver_time(&self) -> Option<u64> {
        if self.code != RefusalCode::Clock {
            return None;
        }
        let (_, rest) = self.reason.rsplit_once(RECEIVER_TIME)?;
        let digits = rest.strip_suffix(')')?;
        if digits.is_empty() || digits.len() > 20 || !digits.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    }

    /// The message id to name when refusing a header frame that could not be parsed.
    pub fn id_of_unparsed(header_frame: &[u8]) -> MessageId {
        let mut id = [0u8; 16];
        if let Some(b) = header_frame.get(8..24) {
            id.copy_from_slice(b);
        }
        MessageId(id)
    }

    /// The payload bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(18 + self.reason.len());
        out.put(&self.message_id.0);
        out.put_u16(self.code.to_u16());
        out.put(self.reason.as_bytes());
        out
    }

    /// Reads a payload. A reason that is not UTF-8 is kept with replacement characters.
    pub fn parse(payload: &[u8]) -> Result<Refusal, FrameError> {
        let mut r = Reader::new(payload);
        let id = r.array::<16>().map_err(|_| FrameError::BadRefusal)?;
        let code = r.u16().map_err(|_| FrameError::BadRefusal)?;
        Ok(Refusal {
            message_id: MessageId(id),
            code: RefusalCode::from_u16(code),
            reason: String::from_utf8_lossy(r.rest()).into_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_round_trip_and_limits_hold() {
        for kind in [
            FrameKind::Header,
            FrameKind::Chunk,
            FrameKind::Ack,
            FrameKind::Refuse,
            FrameKind::End,
            FrameKind::Request,
            FrameKind::Blob,
            FrameKind::NotFound,
            FrameKind::Stored,
            FrameKind::Imported,
        ] {
            let at_limit = encode_head(kind, kind.limit());
            assert_eq!(decode_head(at_limit), Ok((kind, kind.limit())));
            let over = encode_head(kind, kind.limit() + 1);
            assert!(matches!(
                decode_head(over),
                Err(FrameError::TooLarge { .. })
            ));
        }
        assert_eq!(
            decode_head([0, 0, 0, 0, 0]),
            Err(FrameError::UnknownType(0))
        );
        assert_eq!(
            decode_head([11, 0, 0, 0, 0]),
            Err(FrameError::UnknownType(11))
        );
    }

    #[test]
    fn the_decoder_splits_frames_fed_a_byte_at_a_time() {
        let mut wire = Vec::new();
        encode_frame(FrameKind::Header, b"abc", &mut wire);
        encode_frame(FrameKind::End, b"", &mut wire);
        let mut d = FrameDecoder::default();
        let mut got = Vec::new();
        for b in &wire {
            d.push(std::slice::from_ref(b));
            while let Some(f) = d.next_frame().unwrap() {
                got.push(f);
            }
        }
        assert_eq!(
            got,
            vec![
                (FrameKind::Header, b"abc".to_vec()),
                (FrameKind::End, Vec::new())
            ]
        );
        assert_eq!(d.finish(), Ok(()));
        d.push(&[1, 0]);
        assert_eq!(d.next_frame(), Ok(None));
        assert_eq!(d.finish(), Err(FrameError::EndedInside));
    }

    #[test]
    fn refusals_carry_their_message_id() {
        let r = Refusal::new(MessageId([7; 16]), RefusalCode::Busy, "いま受信中 / busy");
        let back = Refusal::parse(&r.to_bytes()).unwrap();
        assert_eq!(back, r);
        assert_eq!(r.to_bytes()[16..18], [0, 14]);
        // Codes from a newer peer are kept, and retried.
        let mut other = r.to_bytes();
        other[16..18].copy_from_slice(&999u16.to_be_bytes());
        let o = Refusal::parse(&other).unwrap();
        assert_eq!(o.code, RefusalCode::Other(999));
        assert_eq!(o.code.disposition(), Disposition::Retry);
        assert_eq!(Refusal::parse(&[0; 17]), Err(FrameError::BadRefusal));
        // Every known code maps back to itself.
        for c in 1..=14 {
            assert_eq!(RefusalCode::from_u16(c).to_u16(), c);
            assert!(!matches!(RefusalCode::from_u16(c), RefusalCode::Other(_)));
        }
    }

    #[test]
    fn a_long_reason_is_cut_at_a_character_boundary() {
        let long = "あ".repeat(2000);
        let r = Refusal::new(MessageId([0; 16]), RefusalCode::Clock, &long);
        assert!(r.reason.len() <= MAX_REASON_LEN);
        assert!(r.to_bytes().len() <= FrameKind::Refuse.limit());
        assert!(r.reason.chars().all(|c| c == 'あ'));
    }

    #[test]
    fn a_clock_refusal_names_the_receivers_time() {
        let r = Refusal::clock(
            MessageId([1; 16]),
            "envelope created in the future",
            1_790_000_000,
        );
        assert_eq!(
            r.reason,
            "envelope created in the future (receiver time 1790000000)"
        );
        let back = Refusal::parse(&r.to_bytes()).unwrap();
        assert_eq!(back.receiver_time(), Some(1_790_000_000));
        // A long reason is cut before the time, which stays readable.
        let long = Refusal::clock(MessageId([1; 16]), &"あ".repeat(2000), 7);
        assert!(long.reason.len() <= MAX_REASON_LEN);
        assert_eq!(long.receiver_time(), Some(7));
        // Only a code-8 refusal's time counts, and only when it is exactly a number.
        for (code, reason) in [
            (RefusalCode::Busy, "busy (receiver time 5)"),
            (RefusalCode::Clock, "too old"),
            (RefusalCode::Clock, "too old (receiver time )"),
            (RefusalCode::Clock, "too old (receiver time -5)"),
            (RefusalCode::Clock, "too old (receiver time 5) and more"),
            (
                RefusalCode::Clock,
                "(receiver time 99999999999999999999999)",
            ),
        ] {
            assert_eq!(
                Refusal::new(MessageId([0; 16]), code, reason).receiver_time(),
                None,
                "{reason}"
            );
        }
    }

    #[test]
    fn an_unparsed_header_is_refused_under_the_id_it_carries() {
        let mut frame = vec![0u8; 30];
        frame[8..24].copy_from_slice(&[5; 16]);
        assert_eq!(Refusal::id_of_unparsed(&frame), MessageId([5; 16]));
        assert_eq!(Refusal::id_of_unparsed(&frame[..20]), MessageId([0; 16]));
    }
}
