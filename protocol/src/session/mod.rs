//! The delivery protocol's two ends as state machines (SPEC.md §7.2–§7.3), and the retry
//! schedule a sender keeps per partner.
//!
//! They hold no socket, no file and no clock: frames, events and the current time go in;
//! answers to write and actions to take come out. The node drives them over libp2p streams and
//! files; a test, a fuzzer or a simulation can drive the very same code over bytes in memory.
//!
//! Answers are matched by identity: an ack or a refusal names the message it answers, and a
//! message is known by its sender office and its message id, never by its place in a stream.

mod receiver;
mod schedule;
mod sender;

pub use receiver::{ReceiverConfig, ReceiverContext, ReceiverSession, RxAction, route_findings};
pub use schedule::{Backoff, Schedule};
pub use sender::{Answer, SenderSession};

use crate::ack::AckError;
use crate::envelope::MessageId;
use crate::frames::{FrameError, FrameKind};

/// A peer broke the delivery protocol: the stream is dropped and the delivery retried later.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// A frame of a type that has no place here.
    #[error("unexpected {0:?} frame")]
    UnexpectedFrame(FrameKind),
    /// An answer naming a message this stream is not waiting for.
    #[error("answer for message {0}, which is not waiting for one")]
    UnknownMessage(MessageId),
    /// The same message id written twice on one stream.
    #[error("message {0} written twice on one stream")]
    Repeated(MessageId),
    /// An ack that does not verify (SPEC.md §5.3).
    #[error("the partner's ack does not verify: {0}")]
    BadAck(AckError),
    /// An ack naming other offices than this delivery's.
    #[error("the partner's ack names other offices")]
    WrongOffices,
    /// A frame that cannot be read.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The receiver's own lookups failed (its directory or store could not be read): the
    /// stream is dropped without an answer and the sender retries.
    #[error("the receiver cannot decide now: {0}")]
    Local(String),
}
