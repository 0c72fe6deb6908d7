//! The sending end of one delivery stream (SPEC.md §7.2).

use std::collections::HashMap;

use ed25519_dalek::VerifyingKey;

use super::SessionError;
use crate::ack::Ack;
use crate::envelope::MessageId;
use crate::frames::{FrameKind, Refusal};
use crate::name::OfficeNumber;

/// An answer from the partner, matched to the message it names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// A signed ack that verified (SPEC.md §5.3): the receipt can be committed.
    Acked(Ack),
    /// The partner refused the message; [`Refusal::code`] says what to do with it.
    Refused(Refusal),
    /// A mailbox kept the message for the partner (SPEC.md §7.6): no ack yet.
    Stored(MessageId),
}

/// One delivery stream's sending side: which messages are written and waiting for an answer,
/// how many more may be written (the window), and the checks every answer must pass.
///
/// ```
/// use renkei_protocol::OfficeNumber;
/// use renkei_protocol::envelope::MessageId;
/// use renkei_protocol::session::SenderSession;
/// let us = OfficeNumber::parse("1310000001").unwrap();
/// let partner = OfficeNumber::parse("1310000011").unwrap();
/// let mut s = SenderSession::new(us, partner, Vec::new(), 2);
/// s.wrote(MessageId([1; 16]), [0; 32]).unwrap();
/// s.wrote(MessageId([2; 16]), [0; 32]).unwrap();
/// assert!(!s.has_room());
/// ```
#[derive(Debug)]
pub struct SenderSession {
    office: OfficeNumber,
    partner: OfficeNumber,
    partner_keys: Vec<VerifyingKey>,
    window: usize,
    /// Written and not yet answered: the plaintext hash each ack must name.
    waiting: HashMap<MessageId, [u8; 32]>,
    /// Answered, and holding a window slot until the caller has committed the answer.
    settling: usize,
}

impl SenderSession {
    /// A stream from `office` to `partner`, whose acks must be signed by one of
    /// `partner_keys` (its identity keys valid when the delivery started), with at most
    /// `window` messages written and not yet settled.
    pub fn new(
        office: OfficeNumber,
        partner: OfficeNumber,
        partner_keys: Vec<VerifyingKey>,
        window: usize,
    ) -> SenderSession {
        SenderSession {
            office,
            partner,
            partner_keys,
            window: window.max(1),
            waiting: HashMap::new(),
            settling: 0,
        }
    }

    /// Whether another message may be written now.
    pub fn has_room(&self) -> bool {
        self.waiting.len() + self.settling < self.window
    }

    /// Records a message written to the stream, with the hash its ack must name.
    pub fn wrote(&mut self, id: MessageId, plaintext_hash: [u8; 32]) -> Result<(), SessionError> {
        if self.waiting.insert(id, plaintext_hash).is_some() {
            return Err(SessionError::Repeated(id));
        }
        Ok(())
    }

    /// Takes one frame from the partner. An `Ack` must verify and name a message this stream
    /// waits for; a `Refuse` must name one. Anything else is a protocol error.
    pub fn on_frame(&mut self, kind: FrameKind, payload: &[u8]) -> Result<Answer, SessionError> {
        match kind {
            FrameKind::Ack => {
                let ack = Ack::parse(payload).map_err(SessionError::BadAck)?;
                let hash = self
                    .waiting
                    .get(&ack.message_id)
                    .ok_or(SessionError::UnknownMessage(ack.message_id))?;
                ack.verify(&ack.message_id, hash, &self.partner_keys)
                    .map_err(SessionError::BadAck)?;
                if ack.sender_office != self.office || ack.recipient_office != self.partner {
                    return Err(SessionError::WrongOffices);
                }
                self.waiting.remove(&ack.message_id);
                self.settling += 1;
                Ok(Answer::Acked(ack))
            }
            FrameKind::Refuse => {
                let refusal = Refusal::parse(payload)?;
                if self.waiting.remove(&refusal.message_id).is_none() {
                    return Err(SessionError::UnknownMessage(refusal.message_id));
                }
                self.settling += 1;
                Ok(Answer::Refused(refusal))
            }
            FrameKind::Stored => {
                let id = MessageId(
                    payload
                        .try_into()
                        .map_err(|_| SessionError::UnexpectedFrame(kind))?,
                );
                if self.waiting.remove(&id).is_none() {
                    return Err(SessionError::UnknownMessage(id));
                }
                self.settling += 1;
                Ok(Answer::Stored(id))
            }
            other => Err(SessionError::UnexpectedFrame(other)),
        }
    }

    /// Frees the window slot of an answered message once the caller has committed it.
    pub fn settled(&mut self) {
        self.settling = self.settling.saturating_sub(1);
    }

    /// How many written messages still wait for an answer.
    pub fn unanswered(&self) -> usize {
        self.waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;

    use super::*;
    use crate::ack::Verdict;
    use crate::frames::RefusalCode;

    fn offices() -> (OfficeNumber, OfficeNumber) {
        (
            OfficeNumber::parse("1310000001").unwrap(),
            OfficeNumber::parse("1310000011").unwrap(),
        )
    }

    fn ack(id: u8, hash: u8, key: &SigningKey) -> Vec<u8> {
        let (us, them) = offices();
        Ack::sign(
            MessageId([id; 16]),
            [hash; 32],
            us,
            them,
            1000,
            Verdict::Accepted,
            key,
        )
        .to_bytes()
    }

    #[test]
    fn answers_are_matched_by_message_id_in_any_order() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let (us, them) = offices();
        let mut s = SenderSession::new(us, them, vec![key.verifying_key()], 3);
        for i in 1..=3 {
            s.wrote(MessageId([i; 16]), [i; 32]).unwrap();
        }
        assert!(!s.has_room());
        // The third is answered first, then a refusal of the first, then the second.
        let a = s.on_frame(FrameKind::Ack, &ack(3, 3, &key)).unwrap();
        assert!(matches!(a, Answer::Acked(a) if a.message_id == MessageId([3; 16])));
        let r = Refusal::new(MessageId([1; 16]), RefusalCode::Busy, "busy");
        let a = s.on_frame(FrameKind::Refuse, &r.to_bytes()).unwrap();
        assert_eq!(a, Answer::Refused(r));
        assert_eq!(s.unanswered(), 1);
        // Answered but not committed: the window stays full until settled.
        assert!(!s.has_room());
        s.settled();
        assert!(s.has_room());
        s.on_frame(FrameKind::Ack, &ack(2, 2, &key)).unwrap();
        assert_eq!(s.unanswered(), 0);
    }

    #[test]
    fn answers_that_do_not_match_are_protocol_errors() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let other = SigningKey::from_bytes(&[4; 32]);
        let (us, them) = offices();
        let mut s = SenderSession::new(us, them, vec![key.verifying_key()], 8);
        s.wrote(MessageId([1; 16]), [1; 32]).unwrap();
        assert_eq!(
            s.wrote(MessageId([1; 16]), [1; 32]),
            Err(SessionError::Repeated(MessageId([1; 16])))
        );
        // An ack for a message not written here, with the wrong hash, by another key.
        assert_eq!(
            s.on_frame(FrameKind::Ack, &ack(9, 1, &key)),
            Err(SessionError::UnknownMessage(MessageId([9; 16])))
        );
        assert!(matches!(
            s.on_frame(FrameKind::Ack, &ack(1, 2, &key)),
            Err(SessionError::BadAck(_))
        ));
        assert!(matches!(
            s.on_frame(FrameKind::Ack, &ack(1, 1, &other)),
            Err(SessionError::BadAck(_))
        ));
        // An ack naming other offices.
        let wrong = Ack::sign(
            MessageId([1; 16]),
            [1; 32],
            them,
            us,
            1000,
            Verdict::Accepted,
            &key,
        );
        assert_eq!(
            s.on_frame(FrameKind::Ack, &wrong.to_bytes()),
            Err(SessionError::WrongOffices)
        );
        let r = Refusal::new(MessageId([8; 16]), RefusalCode::Clock, "clock");
        assert_eq!(
            s.on_frame(FrameKind::Refuse, &r.to_bytes()),
            Err(SessionError::UnknownMessage(MessageId([8; 16])))
        );
        assert_eq!(
            s.on_frame(FrameKind::Chunk, &[]),
            Err(SessionError::UnexpectedFrame(FrameKind::Chunk))
        );
        // Nothing above was taken as an answer.
        assert_eq!(s.unanswered(), 1);
        assert!(matches!(
            s.on_frame(FrameKind::Ack, &ack(1, 1, &key)),
            Ok(Answer::Acked(_))
        ));
    }
}
