//! The sealed envelope and the signed ack: round trips and every tamper case.

use ed25519_dalek::SigningKey;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use renkei_protocol::ack::{Ack, AckError, AckFinding, Verdict};
use renkei_protocol::envelope::{
    EnvelopeError, EnvelopeHeader, MessageId, OpenParams, SealParams, open, seal, seal_header,
};
use renkei_protocol::{OfficeNumber, sha256};
use x25519_dalek::StaticSecret;

struct Office {
    number: OfficeNumber,
    sign: SigningKey,
    enc: StaticSecret,
}

fn office(n: &str, seed: u8) -> Office {
    Office {
        number: OfficeNumber::parse(n).unwrap(),
        sign: SigningKey::from_bytes(&[seed; 32]),
        enc: StaticSecret::from([seed.wrapping_add(100); 32]),
    }
}

fn cm() -> Office {
    office("1310000001", 1)
}
fn svc() -> Office {
    office("1310000011", 2)
}

const NOW: u64 = 1_790_000_000;
const NAME: &str = "UPPLAN_202610_1310000001_43_1310000011_11_20260928103000.CSV";

fn seal_for(from: &Office, to: &Office, id: u8, plaintext: &[u8], chunk: u32) -> Vec<u8> {
    let params = SealParams {
        message_id: MessageId([id; 16]),
        created_at: NOW,
        sender_office: from.number,
        recipient_office: to.number,
        recipient_key: x25519_dalek::PublicKey::from(&to.enc).to_bytes(),
        file_name: NAME,
        plaintext_len: plaintext.len() as u64,
        plaintext_hash: sha256(plaintext),
        chunk_size: chunk,
    };
    seal(
        &params,
        plaintext,
        &from.sign,
        &mut ChaCha20Rng::seed_from_u64(u64::from(id)),
    )
    .unwrap()
}

fn never(_: &OfficeNumber, _: &MessageId) -> bool {
    false
}

fn open_as(
    to: &Office,
    from: &Office,
    bytes: &[u8],
) -> Result<(EnvelopeHeader, Vec<u8>), EnvelopeError> {
    let secrets = [to.enc.clone()];
    let keys = [from.sign.verifying_key()];
    open(
        bytes,
        &OpenParams {
            recipient_office: to.number,
            recipient_secrets: &secrets,
            sender_keys: &keys,
            now: NOW + 60,
            max_age: 30 * 86400,
            max_skew: 600,
            seen: &never,
        },
    )
}

fn sample(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + 3) as u8).collect()
}

#[test]
fn round_trips_every_size_boundary() {
    for len in [0usize, 1, 63, 64, 65, 128, 200, 1000] {
        let pt = sample(len);
        let env = seal_for(&cm(), &svc(), 1, &pt, 64);
        let (header, opened) = open_as(&svc(), &cm(), &env).unwrap();
        assert_eq!(opened, pt, "len {len}");
        assert_eq!(header.file_name, NAME);
        assert_eq!(header.plaintext_hash, sha256(&pt));
    }
}

#[test]
fn every_tampered_byte_is_refused() {
    let pt = sample(150);
    let env = seal_for(&cm(), &svc(), 1, &pt, 64);
    let (_, header_len) = EnvelopeHeader::parse(&env).unwrap();
    for i in 0..env.len() {
        let mut bad = env.clone();
        bad[i] ^= 0x01;
        let err =
            open_as(&svc(), &cm(), &bad).expect_err(&format!("byte {i} flipped was accepted"));
        if i >= header_len {
            // A body byte: the chunk it belongs to fails authentication.
            let chunk = ((i - header_len) / (64 + 16)) as u64;
            assert_eq!(err, EnvelopeError::ChunkAuth(chunk), "byte {i}");
        }
    }
}

#[test]
fn header_tamper_is_a_bad_signature() {
    let env = seal_for(&cm(), &svc(), 1, &sample(100), 64);
    // The creation time (bytes 24..32) is covered by the signature only.
    let mut bad = env.clone();
    bad[30] ^= 0x80;
    assert_eq!(
        open_as(&svc(), &cm(), &bad).unwrap_err(),
        EnvelopeError::BadSignature
    );
    // So is the file name.
    let mut bad = env.clone();
    let at = env.windows(6).position(|w| w == b"UPPLAN").unwrap();
    bad[at] = b'X';
    assert_eq!(
        open_as(&svc(), &cm(), &bad).unwrap_err(),
        EnvelopeError::BadSignature
    );
}

#[test]
fn wrong_key_is_refused() {
    let env = seal_for(&cm(), &svc(), 1, &sample(100), 64);
    let mut rotated = svc();
    rotated.enc = StaticSecret::from([9u8; 32]);
    assert_eq!(
        open_as(&rotated, &cm(), &env).unwrap_err(),
        EnvelopeError::WrongRecipientKey
    );
}

#[test]
fn sender_key_not_in_directory_is_refused() {
    let mut impostor = cm();
    impostor.sign = SigningKey::from_bytes(&[77; 32]);
    let env = seal_for(&impostor, &svc(), 1, &sample(100), 64);
    assert_eq!(
        open_as(&svc(), &cm(), &env).unwrap_err(),
        EnvelopeError::UnknownSenderKey(cm().number)
    );
}

#[test]
fn swapped_recipient_is_refused() {
    let other = office("1310000021", 3);
    let env = seal_for(&cm(), &other, 1, &sample(100), 64);
    assert_eq!(
        open_as(&svc(), &cm(), &env).unwrap_err(),
        EnvelopeError::WrongRecipient(other.number)
    );
}

#[test]
fn truncated_stream_is_refused() {
    let env = seal_for(&cm(), &svc(), 1, &sample(150), 64);
    // Drop the last chunk entirely, or cut inside it, or cut inside the header.
    let last_chunk = 150 - 128 + 16;
    for cut in [last_chunk, 1, 17, 80] {
        let err = open_as(&svc(), &cm(), &env[..env.len() - cut]).unwrap_err();
        assert_eq!(err, EnvelopeError::Truncated, "cut {cut}");
    }
    assert_eq!(
        open_as(&svc(), &cm(), &env[..100]).unwrap_err(),
        EnvelopeError::Incomplete
    );
}

#[test]
fn reordered_chunks_are_refused() {
    let env = seal_for(&cm(), &svc(), 1, &sample(128), 64);
    let (_, h) = EnvelopeHeader::parse(&env).unwrap();
    let mut bad = env[..h].to_vec();
    bad.extend_from_slice(&env[h + 80..h + 160]);
    bad.extend_from_slice(&env[h..h + 80]);
    assert_eq!(
        open_as(&svc(), &cm(), &bad).unwrap_err(),
        EnvelopeError::ChunkAuth(0)
    );
}

#[test]
fn appended_data_is_refused() {
    let mut env = seal_for(&cm(), &svc(), 1, &sample(100), 64);
    env.push(0);
    assert_eq!(
        open_as(&svc(), &cm(), &env).unwrap_err(),
        EnvelopeError::TrailingData
    );
}

/// SPEC.md §4.5 step 6: message ids are per sender office. An id already received from this
/// sender is a replay; the same id from another office is another message.
#[test]
fn replay_is_per_sender_office() {
    let env = seal_for(&cm(), &svc(), 5, &sample(100), 64);
    let secrets = [svc().enc.clone()];
    let keys = [cm().sign.verifying_key()];
    let open_seen = |seen: &dyn Fn(&OfficeNumber, &MessageId) -> bool| {
        open(
            &env,
            &OpenParams {
                recipient_office: svc().number,
                recipient_secrets: &secrets,
                sender_keys: &keys,
                now: NOW,
                max_age: 86400,
                max_skew: 600,
                seen,
            },
        )
    };
    let from_us = |o: &OfficeNumber, id: &MessageId| *o == cm().number && *id == MessageId([5; 16]);
    assert_eq!(
        open_seen(&from_us).unwrap_err(),
        EnvelopeError::Replayed(MessageId([5; 16]))
    );
    let from_other =
        |o: &OfficeNumber, id: &MessageId| *o == svc().number && *id == MessageId([5; 16]);
    assert!(open_seen(&from_other).is_ok());
}

/// SPEC.md §4.5 step 1: the header is read field by field, front to back, and the first field
/// that fails decides: one the input ends inside is `Incomplete`, one read whole with a value
/// out of range is its own error, whatever follows.
#[test]
fn header_parse_errors_are_decided_field_by_field() {
    let env = seal_for(&cm(), &svc(), 1, &sample(10), 64);
    let parse = |b: &[u8]| EnvelopeHeader::parse(b).map(|_| ()).unwrap_err();
    // Ends inside the magic, even with wrong bytes so far; ends after a right magic.
    assert_eq!(parse(b"XYZ"), EnvelopeError::Incomplete);
    assert_eq!(parse(b"RENKEI"), EnvelopeError::Incomplete);
    assert_eq!(parse(b"RENKEX"), EnvelopeError::BadMagic);
    assert_eq!(parse(b"RENKEIA"), EnvelopeError::BadMagic);
    assert_eq!(parse(b"RENKEIE\x02"), EnvelopeError::UnsupportedVersion(2));
    // Ends inside the sender office: Incomplete, even though the digits so far are bad.
    let mut bad = env[..36].to_vec();
    bad[32] = b'x';
    assert_eq!(parse(&bad), EnvelopeError::Incomplete);
    // A whole sender office that is not 10 digits: Malformed, however little follows.
    let mut bad = env[..42].to_vec();
    bad[32] = b'x';
    assert_eq!(parse(&bad), EnvelopeError::Malformed("office number"));
    // name_len = 0 with nothing after it: Malformed, not Incomplete.
    let mut bad = env[..118].to_vec();
    bad[116..118].copy_from_slice(&[0, 0]);
    assert_eq!(parse(&bad), EnvelopeError::Malformed("file name length"));
    // name_len = 256 and the input ends inside the name: Malformed (the length is read first).
    bad[116..118].copy_from_slice(&256u16.to_be_bytes());
    assert_eq!(parse(&bad), EnvelopeError::Malformed("file name length"));
    // A valid name_len with the input ending inside the name: Incomplete.
    assert_eq!(parse(&env[..130]), EnvelopeError::Incomplete);
    // A chunk size out of range with nothing after it: Malformed.
    let n = NAME.len();
    let mut bad = env[..162 + n].to_vec();
    bad[158 + n..162 + n].copy_from_slice(&63u32.to_be_bytes());
    assert_eq!(parse(&bad), EnvelopeError::Malformed("chunk size"));
}

#[test]
fn header_spliced_onto_another_body_is_refused() {
    let a = seal_for(&cm(), &svc(), 1, &sample(100), 64);
    let b = seal_for(&cm(), &svc(), 2, &sample(100), 64);
    let (_, ha) = EnvelopeHeader::parse(&a).unwrap();
    let (_, hb) = EnvelopeHeader::parse(&b).unwrap();
    let mut spliced = a[..ha].to_vec();
    spliced.extend_from_slice(&b[hb..]);
    assert_eq!(
        open_as(&svc(), &cm(), &spliced).unwrap_err(),
        EnvelopeError::ChunkAuth(0)
    );
}

#[test]
fn stale_and_future_envelopes_are_refused() {
    let env = seal_for(&cm(), &svc(), 1, &sample(10), 64);
    let secrets = [svc().enc.clone()];
    let keys = [cm().sign.verifying_key()];
    let at = |now: u64| {
        open(
            &env,
            &OpenParams {
                recipient_office: svc().number,
                recipient_secrets: &secrets,
                sender_keys: &keys,
                now,
                max_age: 86400,
                max_skew: 600,
                seen: &never,
            },
        )
    };
    assert_eq!(at(NOW + 2 * 86400).unwrap_err(), EnvelopeError::TooOld);
    assert_eq!(at(NOW - 3600).unwrap_err(), EnvelopeError::FromFuture);
    assert!(at(NOW).is_ok());
}

#[test]
fn a_day_of_clock_error_is_tolerated_and_a_replay_inside_it_still_refused() {
    let env = seal_for(&cm(), &svc(), 6, &sample(10), 64);
    let secrets = [svc().enc.clone()];
    let keys = [cm().sign.verifying_key()];
    let at = |now: u64, seen: &dyn Fn(&OfficeNumber, &MessageId) -> bool| {
        open(
            &env,
            &OpenParams {
                recipient_office: svc().number,
                recipient_secrets: &secrets,
                sender_keys: &keys,
                now,
                max_age: 60 * 86400,
                max_skew: 86400,
                seen,
            },
        )
    };
    // The sender's clock 20 hours ahead of ours: taken, once.
    let sender_fast = NOW - 20 * 3600;
    assert!(at(sender_fast, &never).is_ok());
    let received =
        |from: &OfficeNumber, id: &MessageId| *from == cm().number && *id == MessageId([6; 16]);
    assert_eq!(
        at(sender_fast, &received).unwrap_err(),
        EnvelopeError::Replayed(MessageId([6; 16]))
    );
    // A day and a second ahead: refused as from the future.
    assert_eq!(
        at(NOW - 86401, &never).unwrap_err(),
        EnvelopeError::FromFuture
    );
}

#[test]
fn version_and_magic_are_checked() {
    let env = seal_for(&cm(), &svc(), 1, &sample(10), 64);
    let mut bad = env.clone();
    bad[7] = 2;
    assert_eq!(
        open_as(&svc(), &cm(), &bad).unwrap_err(),
        EnvelopeError::UnsupportedVersion(2)
    );
    let mut bad = env.clone();
    bad[0] = b'X';
    assert_eq!(
        open_as(&svc(), &cm(), &bad).unwrap_err(),
        EnvelopeError::BadMagic
    );
}

fn ack(verdict: Verdict) -> Ack {
    Ack::sign(
        MessageId([1; 16]),
        sha256(b"x"),
        cm().number,
        svc().number,
        NOW,
        verdict,
        &svc().sign,
    )
}

#[test]
fn ack_round_trips_and_verifies() {
    for v in [
        Verdict::Accepted,
        Verdict::Rejected(vec![AckFinding {
            line: 3,
            field: 10,
            code: "DATE".into(),
        }]),
    ] {
        let a = ack(v);
        let parsed = Ack::parse(&a.to_bytes()).unwrap();
        assert_eq!(parsed, a);
        parsed
            .verify(
                &MessageId([1; 16]),
                &sha256(b"x"),
                &[svc().sign.verifying_key()],
            )
            .unwrap();
    }
}

#[test]
fn ack_tampering_is_refused() {
    let a = ack(Verdict::Rejected(vec![AckFinding {
        line: 3,
        field: 10,
        code: "DATE".into(),
    }]));
    let bytes = a.to_bytes();
    let keys = [svc().sign.verifying_key()];
    for i in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[i] ^= 0x01;
        let ok = Ack::parse(&bad)
            .and_then(|p| p.verify(&MessageId([1; 16]), &sha256(b"x"), &keys))
            .is_ok();
        assert!(!ok, "ack byte {i} flipped was accepted");
    }
    assert_eq!(
        a.verify(&MessageId([2; 16]), &sha256(b"x"), &keys),
        Err(AckError::WrongMessage)
    );
    assert_eq!(
        a.verify(&MessageId([1; 16]), &sha256(b"y"), &keys),
        Err(AckError::WrongHash)
    );
    assert_eq!(
        a.verify(
            &MessageId([1; 16]),
            &sha256(b"x"),
            &[cm().sign.verifying_key()]
        ),
        Err(AckError::UnknownKey(svc().number))
    );
    let mut forged = a.clone();
    forged.verdict = Verdict::Accepted;
    assert_eq!(
        forged.verify(&MessageId([1; 16]), &sha256(b"x"), &keys),
        Err(AckError::BadSignature)
    );
}

/// SPEC.md §5.2: a code is 1 to 64 bytes of `A`–`Z`, `0`–`9`, `_`. A reader refuses an empty
/// code and a longer one; the reference signer cuts a longer code to 64 bytes.
#[test]
fn ack_codes_are_one_to_64_bytes() {
    let with_code = |code: &str| Ack {
        verdict: Verdict::Rejected(vec![AckFinding {
            line: 1,
            field: 0,
            code: code.into(),
        }]),
        ..ack(Verdict::Accepted)
    };
    let code64 = "A".repeat(64);
    assert!(Ack::parse(&with_code(&code64).to_bytes()).is_ok());
    assert!(Ack::parse(&with_code("X").to_bytes()).is_ok());
    for bad in [String::new(), "A".repeat(65), "A".repeat(255)] {
        assert_eq!(
            Ack::parse(&with_code(&bad).to_bytes()),
            Err(AckError::Malformed("error code")),
            "a code of {} bytes",
            bad.len()
        );
    }
    // The signer keeps 64 bytes of a longer code, and never cuts a character in two.
    let signed = ack(Verdict::Rejected(vec![
        AckFinding {
            line: 1,
            field: 0,
            code: "B".repeat(70),
        },
        AckFinding {
            line: 1,
            field: 0,
            code: format!("{}é", "C".repeat(63)),
        },
    ]));
    let Verdict::Rejected(f) = &signed.verdict else {
        panic!("rejected")
    };
    assert_eq!(f[0].code, "B".repeat(64));
    assert_eq!(f[1].code, "C".repeat(63));
}

/// SPEC.md §5.2: a receiver's rejection carries at most 203 findings — `ROUTE_SENDER` and
/// `ROUTE_RECIPIENT` (§7.3 step 9) before the check's 201 (§3.6) — with codes of at most 22
/// bytes, so at most 6,070 bytes; the format's largest ack (256 findings of 64-byte codes) is
/// 18,359 bytes. Both fit an `Ack` frame.
#[test]
fn the_largest_acks_fit_an_ack_frame() {
    use renkei_protocol::check::{ErrorCode, MAX_FINDINGS};
    use renkei_protocol::frames::FrameKind;
    use renkei_protocol::session::route_findings;

    let longest = ErrorCode::ALL
        .iter()
        .map(|c| c.as_str().len())
        .max()
        .unwrap();
    assert_eq!(longest, 22);
    assert_eq!(MAX_FINDINGS + 1, 201);

    // A file with both route findings and more problems than the cap.
    let name = "UPPLAN_202610_1310000099_43_1310000098_11_20260928103000.CSV";
    let mut bytes = Vec::new();
    for _ in 0..300 {
        bytes.extend_from_slice(b"202407,x\r\n");
    }
    let header = EnvelopeHeader::parse(&seal_for(&cm(), &svc(), 1, &bytes, 64))
        .unwrap()
        .0;
    let header = EnvelopeHeader {
        file_name: name.into(),
        ..header
    };
    let (mut findings, _) = route_findings(&header, svc().number, &[]);
    assert_eq!(findings.len(), 2);
    findings.extend(renkei_protocol::check_bytes(name, &bytes).errors);
    assert_eq!(findings.len(), 203);
    let worst: Vec<AckFinding> = (0..203)
        .map(|_| AckFinding {
            line: u32::MAX,
            field: u16::MAX,
            code: "X".repeat(longest),
        })
        .collect();
    let worst = ack(Verdict::Rejected(worst)).to_bytes();
    assert_eq!(worst.len(), 6070);

    let largest: Vec<AckFinding> = (0..256)
        .map(|_| AckFinding {
            line: 1,
            field: 1,
            code: "X".repeat(64),
        })
        .collect();
    let largest = ack(Verdict::Rejected(largest)).to_bytes();
    assert_eq!(largest.len(), 18_359);
    assert!(Ack::parse(&largest).is_ok());
    assert!(largest.len() <= FrameKind::Ack.limit());
}

/// Regression (cargo-fuzz `envelope`): the sizes a header claims come from the peer, before any
/// check; a length near `u64::MAX` must not overflow the size arithmetic.
#[test]
fn huge_claimed_length_does_not_overflow() {
    let (from, to) = (cm(), svc());
    for claimed in [u64::MAX, u64::MAX - 100, 0xFFF7_0000_0000_0064] {
        let params = SealParams {
            message_id: MessageId([9; 16]),
            created_at: NOW,
            sender_office: from.number,
            recipient_office: to.number,
            recipient_key: x25519_dalek::PublicKey::from(&to.enc).to_bytes(),
            file_name: NAME,
            plaintext_len: claimed,
            plaintext_hash: sha256(b""),
            chunk_size: 64,
        };
        let (bytes, _) =
            seal_header(&params, &from.sign, &mut ChaCha20Rng::seed_from_u64(9)).unwrap();
        let (header, _) = EnvelopeHeader::parse(&bytes).unwrap();
        assert_eq!(header.body_len(), u64::MAX);
        assert_eq!(header.chunk_count(), claimed.div_ceil(64));
        assert_eq!(header.chunk_len(0), 64 + 16);
        assert_eq!(header.chunk_len(u64::MAX), 16);
        assert_eq!(
            open_as(&to, &from, &bytes).unwrap_err(),
            EnvelopeError::Truncated
        );
    }
}
