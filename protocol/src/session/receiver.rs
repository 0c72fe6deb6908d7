//! The receiving end of one delivery stream (SPEC.md §7.3).

use ed25519_dalek::VerifyingKey;

use super::SessionError;
use crate::check::{ErrorCode, Finding, check_bytes, finding};
use crate::envelope::{EnvelopeError, EnvelopeHeader, MessageId, OpenParams, Opener, open_header};
use crate::frames::{FrameKind, Refusal, RefusalCode};
use crate::name::{FileName, OfficeNumber, ServiceKind};

/// What a receiver accepts.
#[derive(Clone, Debug)]
pub struct ReceiverConfig {
    /// Our office number.
    pub office: OfficeNumber,
    /// The largest plaintext accepted, in bytes (refusal 13 above it).
    pub max_file_len: u64,
    /// The oldest envelope accepted, in seconds.
    pub max_age: u64,
    /// How far in the future an envelope's creation time may lie, in seconds: the clock error
    /// tolerated between two offices (SPEC.md §4.6).
    pub max_skew: u64,
}

/// What a receiver asks of the node that runs it while it reads a header. The answers come
/// from the node's directory and store; an `Err` means they cannot be read now, and the stream
/// is dropped without an answer (the sender retries).
pub trait ReceiverContext {
    /// The identity keys the directory lists for `office`, valid now (none when it is not an
    /// active member).
    fn sender_keys(&mut self, office: &OfficeNumber) -> Result<Vec<VerifyingKey>, String>;
    /// The ack already signed for this message of this sender, when it was committed before.
    fn stored_ack(
        &mut self,
        sender: &OfficeNumber,
        id: &MessageId,
    ) -> Result<Option<Vec<u8>>, String>;
    /// Claims the message for this stream before any byte of it is written: `Err` with a
    /// reason when another stream is receiving it or the sender's unfinished bytes would pass
    /// the node's limit (refusal 14, busy). The node releases the claim when the message is
    /// committed or abandoned.
    fn claim(&mut self, header: &EnvelopeHeader) -> Result<(), String>;
}

/// What the node does after a frame.
#[derive(Debug, PartialEq, Eq)]
pub enum RxAction {
    /// Nothing (a chunk of a message received before, skipped).
    Nothing,
    /// A message received before: write this stored ack back again. No file is written.
    Repeat(Vec<u8>),
    /// A verified header of a new message, claimed: start its partial file.
    Begin(Box<EnvelopeHeader>),
    /// The frame buffer now holds the next plaintext piece of the current message: append it.
    Write,
    /// The current message is complete and matches its signed hash: check it, commit it, ack it.
    Complete(Box<EnvelopeHeader>),
    /// Refuse: write this frame, abandon the current message if any, and end the stream.
    Refuse(Refusal),
    /// The sender has nothing more: end the stream once every answer is written.
    End,
}

enum State {
    AwaitHeader,
    Receiving(Box<Opener>),
    Skipping(u64),
    Closed,
}

/// One delivery stream's receiving side: verifies each header against the directory and the
/// connection's key, answers repeats with their stored ack, opens the chunks and says when a
/// message is complete. One message at a time, as they come on the stream.
pub struct ReceiverSession {
    config: ReceiverConfig,
    /// The connection's proven key, which must have signed each envelope; `None` for
    /// envelopes drained from a mailbox (the directory's keys of the sender office decide).
    peer_key: Option<[u8; 32]>,
    secrets: Vec<x25519_dalek::StaticSecret>,
    state: State,
}

impl std::fmt::Debug for ReceiverSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiverSession")
            .field("office", &self.config.office)
            .finish_non_exhaustive()
    }
}

impl ReceiverSession {
    /// A stream from the peer whose connection proved `peer_key`, to an office holding
    /// `secrets` (every encryption key generation still in use).
    pub fn new(
        config: ReceiverConfig,
        peer_key: [u8; 32],
        secrets: Vec<x25519_dalek::StaticSecret>,
    ) -> ReceiverSession {
        ReceiverSession {
            config,
            peer_key: Some(peer_key),
            secrets,
            state: State::AwaitHeader,
        }
    }

    /// A stream of envelopes drained from a mailbox (SPEC.md §7.6): the mailbox is not their
    /// sender, so each header's signature is checked against the directory's keys of its
    /// sender office alone.
    pub fn from_mailbox(
        config: ReceiverConfig,
        secrets: Vec<x25519_dalek::StaticSecret>,
    ) -> ReceiverSession {
        ReceiverSession {
            config,
            peer_key: None,
            secrets,
            state: State::AwaitHeader,
        }
    }

    /// Takes one frame; `frame` is opened in place when it is a chunk ([`RxAction::Write`]).
    /// `now` is Unix seconds.
    pub fn on_frame(
        &mut self,
        kind: FrameKind,
        frame: &mut Vec<u8>,
        now: u64,
        ctx: &mut dyn ReceiverContext,
    ) -> Result<RxAction, SessionError> {
        match std::mem::replace(&mut self.state, State::Closed) {
            State::Closed => Err(SessionError::UnexpectedFrame(kind)),
            State::AwaitHeader => match kind {
                FrameKind::End => Ok(RxAction::End),
                FrameKind::Header => self.on_header(frame, now, ctx),
                other => Err(SessionError::UnexpectedFrame(other)),
            },
            State::Skipping(left) => match kind {
                FrameKind::Chunk => {
                    self.state = if left > 1 {
                        State::Skipping(left - 1)
                    } else {
                        State::AwaitHeader
                    };
                    Ok(RxAction::Nothing)
                }
                other => Err(SessionError::UnexpectedFrame(other)),
            },
            State::Receiving(mut opener) => match kind {
                FrameKind::Chunk => {
                    let id = opener.header().message_id;
                    if let Err(e) = opener.open_chunk(frame) {
                        return Ok(refuse(id, &e));
                    }
                    // Even the last piece is written before the message is complete: the
                    // node calls `finish_message` after each write.
                    self.state = State::Receiving(opener);
                    Ok(RxAction::Write)
                }
                other => Err(SessionError::UnexpectedFrame(other)),
            },
        }
    }

    /// After the [`RxAction::Write`] of the last chunk: checks the whole message against its
    /// signed length and hash. `None` while chunks are still due.
    pub fn finish_message(&mut self) -> Option<RxAction> {
        match std::mem::replace(&mut self.state, State::Closed) {
            State::Receiving(opener) if opener.next_chunk_len().is_none() => {
                let id = opener.header().message_id;
                Some(match opener.finish() {
                    Ok(header) => {
                        self.state = State::AwaitHeader;
                        RxAction::Complete(Box::new(header))
                    }
                    Err(e) => refuse(id, &e),
                })
            }
            other => {
                self.state = other;
                None
            }
        }
    }

    fn on_header(
        &mut self,
        frame: &[u8],
        now: u64,
        ctx: &mut dyn ReceiverContext,
    ) -> Result<RxAction, SessionError> {
        let header = match EnvelopeHeader::parse(frame) {
            // The frame must hold exactly one header.
            Ok((h, used)) if used == frame.len() => h,
            Ok((h, _)) => {
                return Ok(RxAction::Refuse(Refusal::new(
                    h.message_id,
                    RefusalCode::Unparseable,
                    "bytes after the envelope header",
                )));
            }
            Err(e) => {
                return Ok(RxAction::Refuse(Refusal::new(
                    Refusal::id_of_unparsed(frame),
                    RefusalCode::for_envelope_error(&e),
                    &e.to_string(),
                )));
            }
        };
        let id = header.message_id;
        // The connection's proven identity must be the key that signed the envelope.
        if self.peer_key.is_some_and(|k| header.sender_key != k) {
            return Ok(RxAction::Refuse(Refusal::new(
                id,
                RefusalCode::UnknownSenderKey,
                "the connection's key is not the envelope's sender key",
            )));
        }
        let sender_keys = ctx
            .sender_keys(&header.sender_office)
            .map_err(SessionError::Local)?;
        let never = |_: &OfficeNumber, _: &MessageId| false;
        let opener = match open_header(
            &header,
            &OpenParams {
                recipient_office: self.config.office,
                recipient_secrets: &self.secrets,
                sender_keys: &sender_keys,
                now,
                max_age: self.config.max_age,
                max_skew: self.config.max_skew,
                seen: &never,
            },
        ) {
            Ok(o) => o,
            // The receiver's clock goes with a clock refusal: the sender tells whose is wrong.
            Err(e @ (EnvelopeError::FromFuture | EnvelopeError::TooOld)) => {
                return Ok(RxAction::Refuse(Refusal::clock(id, &e.to_string(), now)));
            }
            Err(e) => return Ok(refuse(id, &e)),
        };
        // A message committed before (its ack was lost): the same ack again, no second write.
        if let Some(ack) = ctx
            .stored_ack(&header.sender_office, &id)
            .map_err(SessionError::Local)?
        {
            let chunks = header.chunk_count();
            self.state = State::Skipping(chunks);
            return Ok(RxAction::Repeat(ack));
        }
        // Refused before a byte is written: the disk is the office's, not the sender's.
        if header.plaintext_len > self.config.max_file_len {
            return Ok(RxAction::Refuse(Refusal::new(
                id,
                RefusalCode::TooLarge,
                &format!(
                    "受け取り側の上限 {} MiB を超えるファイルです / file larger than the recipient's limit of {} MiB",
                    self.config.max_file_len >> 20,
                    self.config.max_file_len >> 20
                ),
            )));
        }
        if let Err(reason) = ctx.claim(&header) {
            return Ok(RxAction::Refuse(Refusal::new(
                id,
                RefusalCode::Busy,
                &reason,
            )));
        }
        // Asked again under the claim: another stream (a mailbox drain beside a direct
        // delivery, say) may have committed the message and released its claim in between.
        if let Some(ack) = ctx
            .stored_ack(&header.sender_office, &id)
            .map_err(SessionError::Local)?
        {
            self.state = State::Skipping(header.chunk_count());
            return Ok(RxAction::Repeat(ack));
        }
        self.state = State::Receiving(Box::new(opener));
        Ok(RxAction::Begin(Box::new(header)))
    }
}

fn refuse(id: MessageId, e: &crate::envelope::EnvelopeError) -> RxAction {
    RxAction::Refuse(Refusal::new(
        id,
        RefusalCode::for_envelope_error(e),
        &e.to_string(),
    ))
}

/// The route findings of a received file (SPEC.md §7.3 step 9), before its content is checked:
/// `ROUTE_SENDER` when the name's sender is not the envelope's, `ROUTE_RECIPIENT` when the name
/// is not addressed to us (office, or a V4 name's kind when `kinds` is not empty). A name that is
/// not a standard name gives the name's own findings, and `false`: its content is not to be
/// read or written under that name.
pub fn route_findings(
    header: &EnvelopeHeader,
    office: OfficeNumber,
    kinds: &[ServiceKind],
) -> (Vec<Finding>, bool) {
    match FileName::parse(&header.file_name) {
        Ok(name) => {
            let mut findings = Vec::new();
            if name.from.office != header.sender_office {
                findings.push(finding(ErrorCode::RouteSender, 0, 0));
            }
            let kind_ok = match name.to.kind {
                Some(k) => kinds.is_empty() || kinds.contains(&k),
                None => true,
            };
            if name.to.office != office || !kind_ok {
                findings.push(finding(ErrorCode::RouteRecipient, 0, 0));
            }
            (findings, true)
        }
        Err(_) => (
            check_bytes(&header.file_name, &[])
                .errors
                .into_iter()
                .filter(|f| f.code != ErrorCode::FileEmpty)
                .collect(),
            false,
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use ed25519_dalek::SigningKey;

    use super::*;
    use crate::envelope::{SealParams, TAG_LEN, seal};

    const NOW: u64 = 1_790_000_000;

    struct Ctx {
        keys: Vec<VerifyingKey>,
        stored: Option<Vec<u8>>,
        claimed: HashSet<(OfficeNumber, MessageId)>,
        /// Set when the message is claimed: another stream committed it just before.
        committed_meanwhile: Option<Vec<u8>>,
    }

    impl ReceiverContext for Ctx {
        fn sender_keys(&mut self, _: &OfficeNumber) -> Result<Vec<VerifyingKey>, String> {
            Ok(self.keys.clone())
        }
        fn stored_ack(
            &mut self,
            _: &OfficeNumber,
            _: &MessageId,
        ) -> Result<Option<Vec<u8>>, String> {
            Ok(self.stored.clone())
        }
        fn claim(&mut self, h: &EnvelopeHeader) -> Result<(), String> {
            if self.claimed.insert((h.sender_office, h.message_id)) {
                if let Some(ack) = self.committed_meanwhile.take() {
                    self.stored = Some(ack);
                }
                Ok(())
            } else {
                Err("busy".into())
            }
        }
    }

    struct Fixture {
        sender: SigningKey,
        secret: x25519_dalek::StaticSecret,
        us: OfficeNumber,
        them: OfficeNumber,
    }

    fn fixture() -> Fixture {
        Fixture {
            sender: SigningKey::from_bytes(&[1; 32]),
            secret: x25519_dalek::StaticSecret::from([2; 32]),
            us: OfficeNumber::parse("1310000011").unwrap(),
            them: OfficeNumber::parse("1310000001").unwrap(),
        }
    }

    impl Fixture {
        fn envelope(&self, id: u8, plaintext: &[u8]) -> Vec<u8> {
            let params = SealParams {
                message_id: MessageId([id; 16]),
                created_at: NOW,
                sender_office: self.them,
                recipient_office: self.us,
                recipient_key: x25519_dalek::PublicKey::from(&self.secret).to_bytes(),
                file_name: "UPPLAN_202610_1310000001_43_1310000011_11_20261001000000.CSV",
                plaintext_len: plaintext.len() as u64,
                plaintext_hash: crate::sha256(plaintext),
                chunk_size: 64,
            };
            let mut rng = rand_chacha::ChaCha20Rng::from_seed([9; 32]);
            seal(&params, plaintext, &self.sender, &mut rng).unwrap()
        }

        fn session(&self) -> ReceiverSession {
            ReceiverSession::new(
                ReceiverConfig {
                    office: self.us,
                    max_file_len: 1 << 20,
                    max_age: 86400,
                    max_skew: 600,
                },
                self.sender.verifying_key().to_bytes(),
                vec![self.secret.clone()],
            )
        }

        fn ctx(&self) -> Ctx {
            Ctx {
                keys: vec![self.sender.verifying_key()],
                stored: None,
                claimed: HashSet::new(),
                committed_meanwhile: None,
            }
        }
    }

    use rand::SeedableRng;

    /// The envelope's frames: the header, then each chunk.
    fn frames(envelope: &[u8]) -> Vec<(FrameKind, Vec<u8>)> {
        let (h, mut at) = EnvelopeHeader::parse(envelope).unwrap();
        let mut out = vec![(FrameKind::Header, envelope[..at].to_vec())];
        for i in 0..h.chunk_count() {
            let n = h.chunk_len(i);
            out.push((FrameKind::Chunk, envelope[at..at + n].to_vec()));
            at += n;
        }
        out
    }

    /// Feeds frames; returns the actions and the plaintext written.
    fn drive(
        s: &mut ReceiverSession,
        ctx: &mut Ctx,
        frames: Vec<(FrameKind, Vec<u8>)>,
    ) -> (Vec<RxAction>, Vec<u8>) {
        let mut actions = Vec::new();
        let mut written = Vec::new();
        for (kind, mut f) in frames {
            let a = s.on_frame(kind, &mut f, NOW, ctx).unwrap();
            if a == RxAction::Write {
                written.extend_from_slice(&f);
                if let Some(done) = s.finish_message() {
                    actions.push(done);
                }
            } else {
                // A refusal ends the stream.
                let end = matches!(a, RxAction::Refuse(_));
                actions.push(a);
                if end {
                    break;
                }
            }
        }
        (actions, written)
    }

    #[test]
    fn a_message_is_claimed_opened_and_completed() {
        let fx = fixture();
        let plain = vec![b'x'; 150];
        let (actions, written) = drive(
            &mut fx.session(),
            &mut fx.ctx(),
            frames(&fx.envelope(1, &plain)),
        );
        assert_eq!(written, plain);
        assert!(matches!(&actions[0], RxAction::Begin(h) if h.message_id == MessageId([1; 16])));
        assert!(matches!(&actions[1], RxAction::Complete(h) if h.plaintext_len == 150));
        assert_eq!(actions.len(), 2);
    }

    #[test]
    fn a_message_committed_by_another_stream_just_before_the_claim_is_a_repeat() {
        let fx = fixture();
        let mut ctx = fx.ctx();
        ctx.committed_meanwhile = Some(b"the other stream's ack".to_vec());
        let (actions, written) = drive(
            &mut fx.session(),
            &mut ctx,
            frames(&fx.envelope(1, &[b'x'; 150])),
        );
        assert!(written.is_empty(), "nothing is written a second time");
        assert_eq!(
            actions[0],
            RxAction::Repeat(b"the other stream's ack".to_vec())
        );
        assert!(actions[1..].iter().all(|a| *a == RxAction::Nothing));
    }

    #[test]
    fn a_repeat_is_answered_with_its_stored_ack_and_its_chunks_skipped() {
        let fx = fixture();
        let mut ctx = fx.ctx();
        ctx.stored = Some(b"stored ack".to_vec());
        let mut s = fx.session();
        let mut all = frames(&fx.envelope(1, &[b'y'; 150]));
        all.push((FrameKind::End, Vec::new()));
        let (actions, written) = drive(&mut s, &mut ctx, all);
        assert!(written.is_empty());
        assert_eq!(
            actions,
            vec![
                RxAction::Repeat(b"stored ack".to_vec()),
                RxAction::Nothing,
                RxAction::Nothing,
                RxAction::Nothing,
                RxAction::End
            ]
        );
        assert!(ctx.claimed.is_empty(), "a repeat claims nothing");
    }

    #[test]
    fn a_message_held_by_another_stream_is_refused_as_busy() {
        let fx = fixture();
        let mut ctx = fx.ctx();
        let env = fx.envelope(1, &[b'z'; 100]);
        let mut first = fx.session();
        let mut h = frames(&env)[0].1.clone();
        assert!(matches!(
            first.on_frame(FrameKind::Header, &mut h, NOW, &mut ctx),
            Ok(RxAction::Begin(_))
        ));
        let mut second = fx.session();
        let mut h = frames(&env)[0].1.clone();
        let a = second
            .on_frame(FrameKind::Header, &mut h, NOW, &mut ctx)
            .unwrap();
        assert!(
            matches!(&a, RxAction::Refuse(r) if r.code == RefusalCode::Busy && r.message_id == MessageId([1; 16]))
        );
        // A refused stream takes no more frames.
        let mut c = frames(&env)[1].1.clone();
        assert!(
            second
                .on_frame(FrameKind::Chunk, &mut c, NOW, &mut ctx)
                .is_err()
        );
    }

    #[test]
    fn refusals_name_the_message_and_the_cause() {
        let fx = fixture();
        let env = fx.envelope(4, &[b'q'; 130]);
        let refused = |s: &mut ReceiverSession, ctx: &mut Ctx, fr: Vec<(FrameKind, Vec<u8>)>| {
            drive(s, ctx, fr)
                .0
                .into_iter()
                .find_map(|a| match a {
                    RxAction::Refuse(r) => Some((r.message_id, r.code)),
                    _ => None,
                })
                .unwrap()
        };
        let id = MessageId([4; 16]);
        // A chunk altered on the way.
        let mut fr = frames(&env);
        fr[2].1[0] ^= 1;
        assert_eq!(
            refused(&mut fx.session(), &mut fx.ctx(), fr),
            (id, RefusalCode::DamagedChunk)
        );
        // Signed by a key the connection did not prove.
        let mut s = ReceiverSession::new(
            fx.session().config.clone(),
            [7; 32],
            vec![fx.secret.clone()],
        );
        assert_eq!(
            refused(&mut s, &mut fx.ctx(), frames(&env)),
            (id, RefusalCode::UnknownSenderKey)
        );
        // A sender the directory does not list.
        let mut ctx = fx.ctx();
        ctx.keys.clear();
        assert_eq!(
            refused(&mut fx.session(), &mut ctx, frames(&env)),
            (id, RefusalCode::UnknownSenderKey)
        );
        // Larger than we take.
        let mut s = fx.session();
        s.config.max_file_len = 100;
        assert_eq!(
            refused(&mut s, &mut fx.ctx(), frames(&env)),
            (id, RefusalCode::TooLarge)
        );
        // A header frame with a byte after the header, and one cut short.
        let mut fr = frames(&env);
        fr[0].1.push(0);
        assert_eq!(
            refused(&mut fx.session(), &mut fx.ctx(), fr),
            (id, RefusalCode::Unparseable)
        );
        let mut fr = frames(&env);
        fr[0].1.truncate(40);
        assert_eq!(
            refused(&mut fx.session(), &mut fx.ctx(), fr),
            (id, RefusalCode::Unparseable)
        );
        // A chunk of the wrong length.
        let mut fr = frames(&env);
        fr[1].1.truncate(64 + TAG_LEN - 1);
        assert_eq!(
            refused(&mut fx.session(), &mut fx.ctx(), fr),
            (id, RefusalCode::DamagedChunk)
        );
    }

    #[test]
    fn a_clock_a_day_off_is_tolerated_and_a_refusal_beyond_names_the_receivers_time() {
        let fx = fixture();
        let env = fx.envelope(5, &[b'c'; 100]);
        let header = || frames(&env)[0].1.clone();
        let mut s = fx.session();
        s.config.max_skew = 86_400;
        // The sender's clock a day ahead of ours: still taken.
        let at = NOW - 86_400;
        let a = s
            .on_frame(FrameKind::Header, &mut header(), at, &mut fx.ctx())
            .unwrap();
        assert!(matches!(a, RxAction::Begin(_)), "{a:?}");
        // A second more: refused as a clock problem, naming our time.
        for now in [NOW - 86_401, NOW + 86_400 + 1] {
            let mut s = fx.session();
            s.config.max_skew = 86_400;
            match s.on_frame(FrameKind::Header, &mut header(), now, &mut fx.ctx()) {
                Ok(RxAction::Refuse(r)) => {
                    assert_eq!(r.code, RefusalCode::Clock);
                    assert_eq!(r.message_id, MessageId([5; 16]));
                    assert_eq!(r.receiver_time(), Some(now));
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn frames_out_of_place_are_protocol_errors() {
        let fx = fixture();
        let mut ctx = fx.ctx();
        let mut s = fx.session();
        assert_eq!(
            s.on_frame(FrameKind::Chunk, &mut vec![0; 80], NOW, &mut ctx),
            Err(SessionError::UnexpectedFrame(FrameKind::Chunk))
        );
        let env = fx.envelope(1, &[b'a'; 100]);
        let mut s = fx.session();
        let mut h = frames(&env)[0].1.clone();
        assert!(matches!(
            s.on_frame(FrameKind::Header, &mut h, NOW, &mut ctx),
            Ok(RxAction::Begin(_))
        ));
        assert_eq!(
            s.on_frame(FrameKind::End, &mut Vec::new(), NOW, &mut ctx),
            Err(SessionError::UnexpectedFrame(FrameKind::End))
        );
    }

    #[test]
    fn route_findings_compare_the_name_with_the_envelope() {
        let fx = fixture();
        let (h, _) = EnvelopeHeader::parse(&fx.envelope(1, b"a")).unwrap();
        assert_eq!(route_findings(&h, fx.us, &[]), (vec![], true));
        let codes = |f: Vec<Finding>| f.into_iter().map(|f| f.code).collect::<Vec<_>>();
        let (f, standard) = route_findings(&h, fx.them, &[]);
        assert!(standard);
        assert_eq!(codes(f), vec![ErrorCode::RouteRecipient]);
        let mut other = h.clone();
        other.sender_office = OfficeNumber::parse("1310000099").unwrap();
        assert_eq!(
            codes(route_findings(&other, fx.us, &[]).0),
            vec![ErrorCode::RouteSender]
        );
        let kinds = [crate::name::ServiceKind::parse("15").unwrap()];
        assert_eq!(
            codes(route_findings(&h, fx.us, &kinds).0),
            vec![ErrorCode::RouteRecipient]
        );
        let mut odd = h.clone();
        odd.file_name = "../../etc/passwd".into();
        let (f, standard) = route_findings(&odd, fx.us, &[]);
        assert!(!standard && !f.is_empty());
    }

    #[test]
    fn mangled_streams_never_panic_the_receiver() {
        use rand::{Rng, RngExt, SeedableRng};
        let fx = fixture();
        let env = fx.envelope(3, &[b'r'; 300]);
        let good = frames(&env);
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(8);
        for _ in 0..3000 {
            let mut s = fx.session();
            let mut ctx = fx.ctx();
            let mut fr = good.clone();
            // Mangle: drop, repeat or reorder frames, flip bytes, cut or extend them.
            for _ in 0..rng.random_range(1..4u32) {
                let i = rng.random_range(0..fr.len());
                match rng.random_range(0..5u32) {
                    0 => {
                        fr.remove(i);
                    }
                    1 => fr.insert(i, fr[i].clone()),
                    2 => {
                        let n = fr[i].1.len().max(1);
                        let at = rng.random_range(0..n);
                        if let Some(b) = fr[i].1.get_mut(at) {
                            *b ^= 1 << rng.random_range(0..8u32);
                        }
                    }
                    3 => {
                        let n = fr[i].1.len();
                        fr[i].1.truncate(rng.random_range(0..=n));
                    }
                    _ => {
                        let mut junk = vec![0u8; rng.random_range(0..64usize)];
                        rng.fill_bytes(&mut junk);
                        fr[i].1.extend_from_slice(&junk);
                    }
                }
                if fr.is_empty() {
                    break;
                }
            }
            for (kind, mut f) in fr {
                match s.on_frame(kind, &mut f, NOW, &mut ctx) {
                    Ok(RxAction::Refuse(_)) | Err(_) => break,
                    Ok(RxAction::Write) => {
                        if let Some(RxAction::Refuse(_)) = s.finish_message() {
                            break;
                        }
                    }
                    Ok(_) => {}
                }
            }
        }
    }
}
