//! SPEC.md §9: the test vectors, regenerated from fixed inputs and compared byte for byte with
//! the hex written in SPEC.md; and the tables of SPEC.md §3 (layouts, code tables, error codes,
//! field counts) compared with the checker's own.
//!
//! Where it helps a second implementation, a test also redoes a step the way SPEC.md describes
//! it, with the primitives alone (HPKE, ChaCha20-Poly1305, Ed25519, SHA-256), rather than
//! through this crate: the envelope is opened by hand from SPEC.md's bytes.
//!
//! To regenerate after a deliberate format change:
//! `RENKEI_PRINT_VECTORS=1 cargo test -p renkei-protocol --test vectors -- --nocapture`
//! and paste the printed blocks into SPEC.md.

#[path = "support/spec.rs"]
mod spec;

use chacha20::cipher::{KeyIvInit, StreamCipher};
use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce, Tag};
use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use hpke::{Deserializable, Kem as _, OpModeR, Serializable};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use renkei_protocol::ack::{Ack, AckFinding, Verdict};
use renkei_protocol::check::{CsvVersion, Field, Format, layout};
use renkei_protocol::envelope::{
    EnvelopeError, EnvelopeHeader, MessageId, OpenParams, SealParams, open, seal,
};
use renkei_protocol::frames::{FrameKind, Refusal, RefusalCode, encode_frame};
use renkei_protocol::{ErrorCode, FileKind, FileName, OfficeNumber, check_bytes, sha256};
use spec::Vector;
use x25519_dalek::StaticSecret;

type Kem = hpke::kem::X25519HkdfSha256;
type Kdf = hpke::kdf::HkdfSha256;
type HpkeAead = hpke::aead::ChaCha20Poly1305;

// The fixed inputs of SPEC.md §9.2.
const SENDER_OFFICE: &str = "1310000001";
const RECIPIENT_OFFICE: &str = "1310000011";
const SENDER_ED25519: [u8; 32] = [0x01; 32];
const RECIPIENT_X25519: [u8; 32] = [0x02; 32];
const RECIPIENT_ED25519: [u8; 32] = [0x03; 32];
const RNG_SEED: [u8; 32] = [0x04; 32];
const MESSAGE_ID: [u8; 16] = [
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
];
const CREATED_AT: u64 = 1_790_000_000;
const RECEIVED_AT: u64 = 1_790_000_100;
const FILE_NAME: &str = "UPPLAN_202610_1310000001_43_1310000011_11_20260928103000.CSV";
const CHUNK_SIZE: u32 = 64;
const PLAINTEXT: &str = "renkei SPEC.md test vector envelope-1. This plaintext is 150 bytes long, \
so with a chunk size of 64 it is sealed as three chunks: 64, 64 and 22 bytes.";

const REFUSE_REASON: &str = "受信中です / being received on another stream";

// The labels of SPEC.md §4.3, written out again here on purpose.
const HPKE_INFO_LABEL: &[u8] = b"renkei/1 envelope\0";
const EXPORT_LABEL: &[u8] = b"renkei/1 payload key";

fn office(s: &str) -> OfficeNumber {
    OfficeNumber::parse(s).unwrap()
}

fn x25519_public(secret: &[u8; 32]) -> [u8; 32] {
    x25519_dalek::PublicKey::from(&StaticSecret::from(*secret)).to_bytes()
}

fn ed25519_public(secret: &[u8; 32]) -> [u8; 32] {
    SigningKey::from_bytes(secret).verifying_key().to_bytes()
}

// ---------------------------------------------------------------------------------------------
// §9.3 The sealed envelope.
// ---------------------------------------------------------------------------------------------

#[test]
fn envelope_vector() {
    assert_eq!(PLAINTEXT.len(), 150);
    let text = spec::spec_text();
    let plaintext = PLAINTEXT.as_bytes();
    let params = SealParams {
        message_id: MessageId(MESSAGE_ID),
        created_at: CREATED_AT,
        sender_office: office(SENDER_OFFICE),
        recipient_office: office(RECIPIENT_OFFICE),
        recipient_key: x25519_public(&RECIPIENT_X25519),
        file_name: FILE_NAME,
        plaintext_len: plaintext.len() as u64,
        plaintext_hash: sha256(plaintext),
        chunk_size: CHUNK_SIZE,
    };
    let sender = SigningKey::from_bytes(&SENDER_ED25519);
    let envelope = seal(
        &params,
        plaintext,
        &sender,
        &mut ChaCha20Rng::from_seed(RNG_SEED),
    )
    .unwrap();
    let mut ikm_e = [0u8; 32];
    ChaCha20Rng::from_seed(RNG_SEED).fill_bytes(&mut ikm_e);

    // The header is 258 bytes plus the name; the chunks follow.
    let header_len = 258 + FILE_NAME.len();
    let (header, body) = envelope.split_at(header_len);
    let enc: [u8; 32] = header[header_len - 96..header_len - 64].try_into().unwrap();
    let info = [HPKE_INFO_LABEL, &sha256(&header[..header_len - 96])].concat();
    let payload_key = export_payload_key(&RECIPIENT_X25519, &enc, &info);

    let mut v = Vector::new("envelope-1");
    v.put("sender-office", SENDER_OFFICE)
        .put_hex("sender-ed25519-secret", &SENDER_ED25519)
        .put_hex("sender-ed25519-public", &ed25519_public(&SENDER_ED25519))
        .put("recipient-office", RECIPIENT_OFFICE)
        .put_hex("recipient-x25519-secret", &RECIPIENT_X25519)
        .put_hex("recipient-x25519-public", &x25519_public(&RECIPIENT_X25519))
        .put_hex("rng-seed", &RNG_SEED)
        .put_hex("ikm-e", &ikm_e)
        .put_hex("message-id", &MESSAGE_ID)
        .put("created-at", CREATED_AT)
        .put("file-name", FILE_NAME)
        .put("chunk-size", CHUNK_SIZE)
        .put_hex("plaintext", plaintext)
        .put_hex("plaintext-sha256", &sha256(plaintext))
        .put_hex("enc", &enc)
        .put_hex("hpke-info", &info)
        .put_hex("payload-key", &payload_key)
        .put_hex("header", header);
    for chunk in body.chunks(CHUNK_SIZE as usize + 16) {
        v.put_hex("chunk", chunk);
    }
    v.put_hex("envelope", &envelope);
    let v = spec::check(&text, &v);

    // ikm-e is the first 32 bytes of the ChaCha20 keystream (RFC 8439) under the seed as key,
    // with a zero nonce and the block counter starting at 0.
    let mut keystream = [0u8; 32];
    chacha20::ChaCha20::new(&v.array::<32>("rng-seed").into(), &[0u8; 12].into())
        .apply_keystream(&mut keystream);
    assert_eq!(keystream.as_slice(), v.hex("ikm-e").as_slice());

    // The ephemeral key is DeriveKeyPair(ikm-e) of RFC 9180, and its public half is `enc`.
    let (_, pk_e) = Kem::derive_keypair(&v.hex("ikm-e"));
    assert_eq!(pk_e.to_bytes().as_slice(), v.hex("enc").as_slice());

    // Open SPEC.md's bytes with SPEC.md's key, through this crate.
    let secrets = [StaticSecret::from(v.array::<32>("recipient-x25519-secret"))];
    let sender_keys = [VerifyingKey::from_bytes(&v.array::<32>("sender-ed25519-public")).unwrap()];
    let never = |_: &OfficeNumber, _: &MessageId| false;
    let (opened_header, opened) = open(
        &v.hex("envelope"),
        &OpenParams {
            recipient_office: office(v.get("recipient-office")),
            recipient_secrets: &secrets,
            sender_keys: &sender_keys,
            now: v.num("created-at") + 60,
            max_age: 86400,
            max_skew: 600,
            seen: &never,
        },
    )
    .unwrap();
    assert_eq!(opened, v.hex("plaintext"));
    assert_eq!(opened_header.file_name, v.get("file-name"));
    assert_eq!(opened_header.message_id.0.as_slice(), v.hex("message-id"));

    // And by hand, as SPEC.md §4 describes it.
    open_by_hand(&v);
}

/// The exported payload key of SPEC.md §4.3, with HPKE alone.
fn export_payload_key(secret: &[u8; 32], enc: &[u8; 32], info: &[u8]) -> [u8; 32] {
    let sk = <Kem as hpke::Kem>::PrivateKey::from_bytes(secret).unwrap();
    let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(enc).unwrap();
    let ctx = hpke::setup_receiver::<HpkeAead, Kdf, Kem>(&OpModeR::Base, &sk, &enc, info).unwrap();
    let mut key = [0u8; 32];
    ctx.export(EXPORT_LABEL, &mut key).unwrap();
    key
}

/// Opens SPEC.md's envelope from the layout of SPEC.md §4.2 and the steps of §4.3–§4.4.
fn open_by_hand(v: &Vector) {
    let env = v.hex("envelope");
    let be64 = |b: &[u8]| u64::from_be_bytes(b.try_into().unwrap());
    assert_eq!(&env[0..6], b"RENKEI");
    assert_eq!(env[6], b'E');
    assert_eq!(env[7], 1);
    assert_eq!(&env[8..24], v.hex("message-id").as_slice());
    assert_eq!(be64(&env[24..32]), v.num("created-at"));
    assert_eq!(&env[32..42], v.get("sender-office").as_bytes());
    assert_eq!(&env[42..74], v.hex("sender-ed25519-public").as_slice());
    assert_eq!(&env[74..84], v.get("recipient-office").as_bytes());
    assert_eq!(&env[84..116], v.hex("recipient-x25519-public").as_slice());
    let n = usize::from(u16::from_be_bytes([env[116], env[117]]));
    assert_eq!(&env[118..118 + n], v.get("file-name").as_bytes());
    let plaintext_len = be64(&env[118 + n..126 + n]);
    assert_eq!(&env[126 + n..158 + n], v.hex("plaintext-sha256").as_slice());
    let chunk_size = u32::from_be_bytes(env[158 + n..162 + n].try_into().unwrap());
    assert_eq!(u64::from(chunk_size), v.num("chunk-size"));
    let enc: [u8; 32] = env[162 + n..194 + n].try_into().unwrap();
    let signature: [u8; 64] = env[194 + n..258 + n].try_into().unwrap();
    let header_len = 258 + n;
    assert_eq!(&env[..header_len], v.hex("header").as_slice());

    // The signature covers every header byte before it.
    let sender = VerifyingKey::from_bytes(&v.array::<32>("sender-ed25519-public")).unwrap();
    sender
        .verify_strict(&env[..194 + n], &Signature::from_bytes(&signature))
        .unwrap();

    // info = label || SHA-256(header bytes before enc); the payload key is exported from it.
    let info = [HPKE_INFO_LABEL, &sha256(&env[..162 + n])].concat();
    assert_eq!(info, v.hex("hpke-info"));
    let key = export_payload_key(&v.array::<32>("recipient-x25519-secret"), &enc, &info);
    assert_eq!(key.as_slice(), v.hex("payload-key").as_slice());

    // ceil(len / chunk_size) chunks, at least one; STREAM nonces; the last one flagged.
    let count = plaintext_len.div_ceil(u64::from(chunk_size)).max(1);
    let cipher = ChaCha20Poly1305::new(&Key::from(key));
    let mut rest = &env[header_len..];
    let mut plaintext = Vec::new();
    let chunks = v.all("chunk");
    assert_eq!(chunks.len() as u64, count);
    for i in 0..count {
        let last = i + 1 == count;
        let len = if last {
            plaintext_len - i * u64::from(chunk_size)
        } else {
            u64::from(chunk_size)
        } as usize;
        let (chunk, tail) = rest.split_at(len + 16);
        assert_eq!(hex::encode(chunk), chunks[i as usize]);
        let mut nonce = [0u8; 12];
        nonce[3..11].copy_from_slice(&i.to_be_bytes());
        nonce[11] = u8::from(last);
        let mut buf = chunk[..len].to_vec();
        let tag = Tag::try_from(&chunk[len..]).unwrap();
        cipher
            .decrypt_inout_detached(&Nonce::from(nonce), &[], buf.as_mut_slice().into(), &tag)
            .unwrap();
        plaintext.extend_from_slice(&buf);
        rest = tail;
    }
    assert!(rest.is_empty());
    assert_eq!(plaintext, v.hex("plaintext"));
    assert_eq!(
        sha256(&plaintext).as_slice(),
        v.hex("plaintext-sha256").as_slice()
    );
}

/// The envelope of vector envelope-1, sealed again from the fixed inputs.
fn envelope_1() -> Vec<u8> {
    let plaintext = PLAINTEXT.as_bytes();
    let params = SealParams {
        message_id: MessageId(MESSAGE_ID),
        created_at: CREATED_AT,
        sender_office: office(SENDER_OFFICE),
        recipient_office: office(RECIPIENT_OFFICE),
        recipient_key: x25519_public(&RECIPIENT_X25519),
        file_name: FILE_NAME,
        plaintext_len: plaintext.len() as u64,
        plaintext_hash: sha256(plaintext),
        chunk_size: CHUNK_SIZE,
    };
    let sender = SigningKey::from_bytes(&SENDER_ED25519);
    seal(
        &params,
        plaintext,
        &sender,
        &mut ChaCha20Rng::from_seed(RNG_SEED),
    )
    .unwrap()
}

/// The name of an envelope error as SPEC.md §4.5 writes it (the variant, without its details).
fn error_name(e: &EnvelopeError) -> String {
    let debug = format!("{e:?}");
    debug.split('(').next().unwrap().to_string()
}

fn parse_vector(name: &str, bytes: &[u8]) -> Vector {
    let e = EnvelopeHeader::parse(bytes).map(|_| ()).unwrap_err();
    let mut v = Vector::new(name);
    v.put_hex("bytes", bytes)
        .put("error", error_name(&e))
        .put("refusal-code", RefusalCode::for_envelope_error(&e).to_u16());
    v
}

/// SPEC.md §4.5 step 1: the field that fails first decides between `Incomplete` and the
/// field's own error.
#[test]
fn envelope_parse_vectors() {
    let text = spec::spec_text();
    let env = envelope_1();
    // The magic whole and nothing after it.
    let one = b"RENKEI".to_vec();
    // Up to name_len, which is 0: the input ends there.
    let mut two = env[..118].to_vec();
    two[116..118].copy_from_slice(&[0, 0]);
    // Ending inside the sender office, whose first digit is not a digit.
    let mut three = env[..36].to_vec();
    three[32] = b'x';
    for (name, bytes) in [
        ("envelope-parse-1", one),
        ("envelope-parse-2", two),
        ("envelope-parse-3", three),
    ] {
        let v = spec::check(&text, &parse_vector(name, &bytes));
        let e = EnvelopeHeader::parse(&v.hex("bytes"))
            .map(|_| ())
            .unwrap_err();
        assert_eq!(error_name(&e), v.get("error"));
        assert_eq!(
            u64::from(RefusalCode::for_envelope_error(&e).to_u16()),
            v.num("refusal-code")
        );
    }
}

// ---------------------------------------------------------------------------------------------
// §9.4 Signed acks.
// ---------------------------------------------------------------------------------------------

fn ack_vector(name: &str, verdict: Verdict) -> Vector {
    let key = SigningKey::from_bytes(&RECIPIENT_ED25519);
    let hash = sha256(PLAINTEXT.as_bytes());
    let ack = Ack::sign(
        MessageId(MESSAGE_ID),
        hash,
        office(SENDER_OFFICE),
        office(RECIPIENT_OFFICE),
        RECEIVED_AT,
        verdict.clone(),
        &key,
    );
    let mut v = Vector::new(name);
    v.put_hex("recipient-ed25519-secret", &RECIPIENT_ED25519)
        .put_hex(
            "recipient-ed25519-public",
            &ed25519_public(&RECIPIENT_ED25519),
        )
        .put_hex("message-id", &MESSAGE_ID)
        .put_hex("plaintext-sha256", &hash)
        .put("sender-office", SENDER_OFFICE)
        .put("recipient-office", RECIPIENT_OFFICE)
        .put("received-at", RECEIVED_AT);
    match &verdict {
        Verdict::Accepted => {
            v.put("verdict", "accepted");
        }
        Verdict::Rejected(findings) => {
            v.put("verdict", "rejected");
            for f in findings {
                v.put("finding", format!("{} {} {}", f.line, f.field, f.code));
            }
        }
    }
    v.put_hex("ack", &ack.to_bytes());
    v
}

/// Parses SPEC.md's ack bytes and checks them against the vector's values and the signature.
fn check_ack(v: &Vector) {
    let bytes = v.hex("ack");
    let ack = Ack::parse(&bytes).unwrap();
    assert_eq!(ack.to_bytes(), bytes);
    assert_eq!(ack.message_id.0.as_slice(), v.hex("message-id").as_slice());
    assert_eq!(ack.sender_office.as_str(), v.get("sender-office"));
    assert_eq!(ack.recipient_office.as_str(), v.get("recipient-office"));
    assert_eq!(ack.received_at, v.num("received-at"));
    let key = VerifyingKey::from_bytes(&v.array::<32>("recipient-ed25519-public")).unwrap();
    ack.verify(
        &MessageId(v.array("message-id")),
        &v.array("plaintext-sha256"),
        &[key],
    )
    .unwrap();
    // By hand: the signature covers every byte before the last 64.
    let (signed, sig) = bytes.split_at(bytes.len() - 64);
    key.verify_strict(signed, &Signature::from_bytes(sig.try_into().unwrap()))
        .unwrap();
    let findings: Vec<String> = match &ack.verdict {
        Verdict::Accepted => {
            assert_eq!(v.get("verdict"), "accepted");
            assert_eq!(&signed[116..119], &[0, 0, 0]);
            Vec::new()
        }
        Verdict::Rejected(f) => {
            assert_eq!(v.get("verdict"), "rejected");
            assert_eq!(signed[116], 1);
            f.iter()
                .map(|f| format!("{} {} {}", f.line, f.field, f.code))
                .collect()
        }
    };
    assert_eq!(findings, v.all("finding"));
}

// ---------------------------------------------------------------------------------------------
// §9.9 A mailbox's deletion statement.
// ---------------------------------------------------------------------------------------------

/// The mailbox's Ed25519 secret in the statement vector.
const NODE_ED25519: [u8; 32] = [5; 32];

#[test]
fn statement_vector() {
    use renkei_protocol::statement::{Reason, Statement};
    let key = SigningKey::from_bytes(&NODE_ED25519);
    let envelope_hash = sha256(b"the envelope as deposited");
    let st = Statement::sign(
        MessageId(MESSAGE_ID),
        office(SENDER_OFFICE),
        office(RECIPIENT_OFFICE),
        envelope_hash,
        Reason::Acked,
        RECEIVED_AT + 60,
        &key,
    );
    let mut v = Vector::new("deletion-statement");
    v.put_hex("node-ed25519-secret", &NODE_ED25519)
        .put_hex("node-ed25519-public", &ed25519_public(&NODE_ED25519))
        .put_hex("message-id", &MESSAGE_ID)
        .put("sender-office", SENDER_OFFICE)
        .put("recipient-office", RECIPIENT_OFFICE)
        .put_hex("envelope-sha256", &envelope_hash)
        .put("reason", "acked")
        .put("deleted-at", RECEIVED_AT + 60)
        .put_hex("statement", &st.to_bytes());
    let v = spec::check(&spec::spec_text(), &v);
    // The bytes written in SPEC.md parse, say what the vector says, and verify by hand.
    let bytes = v.hex("statement");
    let parsed = Statement::parse(&bytes).unwrap();
    assert_eq!(parsed.to_bytes(), bytes);
    assert_eq!(parsed.reason, Reason::Acked);
    assert_eq!(parsed.deleted_at, v.num("deleted-at"));
    assert_eq!(
        parsed.envelope_hash.as_slice(),
        v.hex("envelope-sha256").as_slice()
    );
    let public = v.array::<32>("node-ed25519-public");
    parsed.verify(&[public]).unwrap();
    assert_eq!(&bytes[..8], b"RENKEID\x01");
    let (signed, sig) = bytes.split_at(bytes.len() - 64);
    VerifyingKey::from_bytes(&public)
        .unwrap()
        .verify_strict(signed, &Signature::from_bytes(sig.try_into().unwrap()))
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// §9.10 A recipient's imported statement.
// ---------------------------------------------------------------------------------------------

#[test]
fn imported_vector() {
    use renkei_protocol::imported::Imported;
    let key = SigningKey::from_bytes(&RECIPIENT_ED25519);
    let hash = sha256(PLAINTEXT.as_bytes());
    let st = Imported::sign(
        MessageId(MESSAGE_ID),
        office(SENDER_OFFICE),
        office(RECIPIENT_OFFICE),
        hash,
        RECEIVED_AT + 3600,
        &key,
    );
    let mut v = Vector::new("imported-statement");
    v.put_hex("recipient-ed25519-secret", &RECIPIENT_ED25519)
        .put_hex(
            "recipient-ed25519-public",
            &ed25519_public(&RECIPIENT_ED25519),
        )
        .put_hex("message-id", &MESSAGE_ID)
        .put("sender-office", SENDER_OFFICE)
        .put("recipient-office", RECIPIENT_OFFICE)
        .put_hex("plaintext-sha256", &hash)
        .put("imported-at", RECEIVED_AT + 3600)
        .put_hex("statement", &st.to_bytes());
    let v = spec::check(&spec::spec_text(), &v);
    let bytes = v.hex("statement");
    let parsed = Imported::parse(&bytes).unwrap();
    assert_eq!(parsed.to_bytes(), bytes);
    assert_eq!(parsed.imported_at, v.num("imported-at"));
    let public = v.array::<32>("recipient-ed25519-public");
    parsed.verify(&[public]).unwrap();
    assert_eq!(&bytes[..8], b"RENKEII\x01");
    let (signed, sig) = bytes.split_at(bytes.len() - 64);
    VerifyingKey::from_bytes(&public)
        .unwrap()
        .verify_strict(signed, &Signature::from_bytes(sig.try_into().unwrap()))
        .unwrap();
}

#[test]
fn ack_vectors() {
    let text = spec::spec_text();
    let accepted = spec::check(&text, &ack_vector("ack-accepted", Verdict::Accepted));
    let rejected = spec::check(
        &text,
        &ack_vector(
            "ack-rejected",
            Verdict::Rejected(vec![AckFinding {
                line: 3,
                field: 10,
                code: "SERVICE_DATE_MONTH".into(),
            }]),
        ),
    );
    check_ack(&accepted);
    check_ack(&rejected);
}

/// An ack signed properly whose one finding's code breaks SPEC.md §5.2 (empty, or longer than
/// 64 bytes): a reader refuses it whatever its signature.
fn refused_ack_vector(name: &str, code: &str) -> Vector {
    let key = SigningKey::from_bytes(&RECIPIENT_ED25519);
    let mut ack = Ack::sign(
        MessageId(MESSAGE_ID),
        sha256(PLAINTEXT.as_bytes()),
        office(SENDER_OFFICE),
        office(RECIPIENT_OFFICE),
        RECEIVED_AT,
        Verdict::Accepted,
        &key,
    );
    ack.verdict = Verdict::Rejected(vec![AckFinding {
        line: 3,
        field: 10,
        code: code.into(),
    }]);
    let mut bytes = ack.to_bytes();
    let signed = bytes.len() - 64;
    let signature = ed25519_dalek::Signer::sign(&key, &bytes[..signed]).to_bytes();
    bytes[signed..].copy_from_slice(&signature);
    let mut v = Vector::new(name);
    v.put("code-length", code.len()).put_hex("ack", &bytes).put(
        "result",
        match Ack::parse(&bytes) {
            Ok(_) => "accepted".to_string(),
            Err(_) => "refused".to_string(),
        },
    );
    v
}

#[test]
fn refused_ack_vectors() {
    let text = spec::spec_text();
    for (name, code) in [
        ("ack-refused-1", String::new()),
        ("ack-refused-2", "A".repeat(65)),
    ] {
        let v = spec::check(&text, &refused_ack_vector(name, &code));
        let bytes = v.hex("ack");
        // By hand: the signature (by the key at bytes 76..108) is good; the code's length
        // byte, after the finding's line and field, is what is wrong.
        let (signed, sig) = bytes.split_at(bytes.len() - 64);
        VerifyingKey::from_bytes(&signed[76..108].try_into().unwrap())
            .unwrap()
            .verify_strict(signed, &Signature::from_bytes(sig.try_into().unwrap()))
            .unwrap();
        assert_eq!(u64::from(signed[125]), v.num("code-length"));
        assert!(Ack::parse(&bytes).is_err());
    }
}

/// The refusal frame of SPEC.md §9.8: message id, code and reason, behind the frame head.
fn refuse_vector() -> Vector {
    let refusal = Refusal::new(MessageId(MESSAGE_ID), RefusalCode::Busy, REFUSE_REASON);
    let mut frame = Vec::new();
    encode_frame(FrameKind::Refuse, &refusal.to_bytes(), &mut frame);
    let mut v = Vector::new("refuse-1");
    v.put_hex("message-id", &MESSAGE_ID)
        .put("code", refusal.code.to_u16())
        .put("reason", REFUSE_REASON)
        .put_hex("frame", &frame);
    v
}

#[test]
fn refuse_vector_matches_spec() {
    let v = spec::check(&spec::spec_text(), &refuse_vector());
    // By hand: type 4, the payload length big-endian, the id, the code, the reason.
    let frame = v.hex("frame");
    assert_eq!(frame[0], 4);
    let len = u32::from_be_bytes(frame[1..5].try_into().unwrap()) as usize;
    assert_eq!(len, frame.len() - 5);
    assert_eq!(&frame[5..21], v.hex("message-id").as_slice());
    assert_eq!(
        u64::from(u16::from_be_bytes([frame[21], frame[22]])),
        v.num("code")
    );
    assert_eq!(std::str::from_utf8(&frame[23..]).unwrap(), v.get("reason"));
    let back = Refusal::parse(&frame[5..]).unwrap();
    assert_eq!(back.code, RefusalCode::Busy);
}

// ---------------------------------------------------------------------------------------------
// §9.5 File names.
// ---------------------------------------------------------------------------------------------

fn name_vector(vector: &str, name: &str) -> Vector {
    let mut v = Vector::new(vector);
    v.put("name", name);
    match FileName::parse(name) {
        Ok(n) => {
            let or_none = |o: Option<String>| o.unwrap_or_else(|| "none".into());
            v.put("kind", n.kind.prefix())
                .put("month", or_none(n.month.map(|m| m.to_string())))
                .put("from-office", n.from.office)
                .put("from-kind", or_none(n.from.kind.map(|k| k.to_string())))
                .put("to-office", n.to.office)
                .put("to-kind", or_none(n.to.kind.map(|k| k.to_string())))
                .put("stamp", n.stamp)
                .put("branch", or_none(n.branch.map(|b| format!("{b:04}"))))
                .put("form", if n.is_v4() { "V4" } else { "V3" })
                .put("extension", if n.upper_ext { "upper" } else { "lower" })
                .put("unit-order", n.kind.unit_order());
            assert_eq!(n.to_name(), name, "{name} does not round-trip");
        }
        Err(_) => {
            let report = check_bytes(name, b"");
            v.put("error", report.errors[0].code.as_str());
        }
    }
    v
}

#[test]
fn name_vectors() {
    let text = spec::spec_text();
    let names = [
        (
            "name-1",
            "UPPLAN_202610_1310000001_43_1310000011_11_20260928103000.CSV",
        ),
        (
            "name-2",
            "UPPLAN_202301_1300000001_1300000003_20230115093040.csv",
        ),
        (
            "name-3",
            "UPHOSOKU_000000_1310000001_43_1310000011_11_20260928100000.CSV",
        ),
        (
            "name-4",
            "UPKIHON_IMAGE_1310000001_43_1310000011_11_20260928100000_0001.jpg",
        ),
        (
            "name-5",
            "UPPLAN_202610_1310000001_43_1310000011_11_20260931103000.CSV",
        ),
        (
            "name-6",
            "UP1KYO_202610_1310000001_43_1310000011_11_20260928100000.CSV",
        ),
        // The prefix and the extension must agree (§2.3 step 4).
        (
            "name-7",
            "UP1KYO_1310000001_43_1310000011_11_20260928100000.jpg",
        ),
        (
            "name-8",
            "UPKIHON_IMAGE_1310000001_43_1310000011_11_20260928100000_0001.CSV",
        ),
        // FROMKIND, TO and the stamp are all bad: the first in order decides (§2.3 step 7).
        (
            "name-9",
            "UPPLAN_202610_1310000001_4x_131000001_11_20260931103000.CSV",
        ),
        // TO and TOKIND and the stamp are bad: TO comes first.
        (
            "name-10",
            "UPPLAN_202610_1310000001_43_131000001_1_20260931103000.CSV",
        ),
    ];
    for (vector, name) in names {
        spec::check(&text, &name_vector(vector, name));
    }
}

// ---------------------------------------------------------------------------------------------
// §9.6 The checker.
// ---------------------------------------------------------------------------------------------

/// The file of vector check-1, as text (SPEC.md shows it): CRLF line ends, a line break inside
/// a quoted field, an empty line.
const CHECK_FILE_NAME: &str = "UPPLAN_202610_1310000001_43_1310000011_11_20260928103000.CSV";
const CHECK_TEXT: &str = "\
202407,131016,0000123451,20260926,202610,1310000001,\"中村　由美\",220,,20261002,,1000,1050,1,117311,,,,,1310000011,\"さくら訪問介護\r\nステーション\",,0,1310000001,\r\n\
202407,131016,H12345678,20260926,202610,1310000001,\"中村　由美\",220,,20261101,,2460,1050,1,117311,,,,,1310000011,\"さくら訪問介護ステーション\",,0,1310000001,\r\n\
\r\n\
202407,131016,0000123451\r\n";

#[test]
fn checker_vector() {
    let text = spec::spec_text();
    let (bytes, _, bad) = encoding_rs::SHIFT_JIS.encode(CHECK_TEXT);
    assert!(!bad);
    let report = check_bytes(CHECK_FILE_NAME, &bytes);
    let mut v = Vector::new("check-1");
    v.put("file-name", CHECK_FILE_NAME)
        .put_hex("content", &bytes);
    for f in &report.errors {
        v.put("finding", format!("{} {} {}", f.line, f.field, f.code));
    }
    let v = spec::check(&text, &v);

    // SPEC.md's bytes give SPEC.md's findings.
    let report = check_bytes(v.get("file-name"), &v.hex("content"));
    let got: Vec<String> = report
        .errors
        .iter()
        .map(|f| format!("{} {} {}", f.line, f.field, f.code))
        .collect();
    assert_eq!(got, v.all("finding"));
}

/// A checker vector: a file name, its bytes, and the findings as `line field code`.
fn check_vector(name: &str, file_name: &str, bytes: &[u8]) -> Vector {
    let report = check_bytes(file_name, bytes);
    let mut v = Vector::new(name);
    v.put("file-name", file_name).put_hex("content", bytes);
    for f in &report.errors {
        v.put("finding", format!("{} {} {}", f.line, f.field, f.code));
    }
    v
}

/// SPEC.md's content gives SPEC.md's findings.
fn assert_check_vector(v: &Vector) {
    let report = check_bytes(v.get("file-name"), &v.hex("content"));
    let got: Vec<String> = report
        .errors
        .iter()
        .map(|f| format!("{} {} {}", f.line, f.field, f.code))
        .collect();
    assert_eq!(got, v.all("finding"), "vector {}", v.name);
}

fn cp932(text: &str) -> Vec<u8> {
    let (bytes, _, bad) = encoding_rs::SHIFT_JIS.encode(text);
    assert!(!bad, "{text}");
    bytes.into_owned()
}

/// Vector check-2 (SPEC.md §3.3, quoting): after a character that follows a closing quote, the
/// rest of the field is unquoted text, so each later `"` in it is a finding of its own.
const QUOTE_TEXT: &str = "\
202407,\"ab\"c\"d\",x\r\n\
202407,x\"y,\"\"\r\n\
202407,\"never\r\n\
closed\r\n";

/// Vector check-3 (SPEC.md §3.4 step 2, §3.5.3): a 第2表 whose texts fill in and conflict, a
/// record at the other V4 version, and a numbering used twice.
const PLAN2_NAME: &str = "UP2KYO_1310000001_43_1310000011_11_20260928100000.CSV";
const PLAN2_TEXT: &str = "\
202407,131016,0000123451,20260926,20260926,1,,1,,転倒しない,,,1,訪問介護,,,,,,,,\r\n\
202407,131016,0000123451,20260926,20260926,1,歩行が不安定,1,自宅で暮らす,,,,2,通所介護,,,,,,,,\r\n\
202407,131016,0000123451,20260926,20260926,1,外出が減った,1,,外出する,,,3,福祉用具,,,,,,,,\r\n\
202504,131016,0000123451,20260926,20260926,1,,1,,,,,4,見守り,,,,,,,,\r\n\
202407,131016,0000123451,20260926,20260926,1,歩行が不安定,1,自宅で暮らす,転倒しない,,,4,見守り,,,,,,,,\r\n";

/// Vectors check-4 and check-5 (SPEC.md §3.2): the bytes where CP932 tables disagree.
fn cp932_vectors() -> [(&'static str, Vec<u8>); 2] {
    // Record 1 of check-1 with byte 0x80 in the name field: U+0080, a character like any other.
    let mut four = cp932("202407,131016,0000123451,20260926,202610,1310000001,\"中村");
    four.push(0x80);
    four.extend(cp932(
        "由美\",220,,20261002,,1000,1050,1,117311,,,,,1310000011,\"さくら訪問介護ステーション\",,0,1310000001,\r\n",
    ));
    // A0, FD, FE and FF alone are malformed; a lead byte with a non-ASCII byte that does not
    // complete a pair is one malformed sequence of two bytes.
    let five = b"202407,\xA0\r\n202407,\xFD\xFE\xFF\r\n202407,\x81\xE9\xE9\r\n".to_vec();
    [("check-4", four), ("check-5", five)]
}

#[test]
fn more_checker_vectors() {
    let text = spec::spec_text();
    let plan = CHECK_FILE_NAME;
    let [(n4, four), (n5, five)] = cp932_vectors();
    for (name, file, bytes) in [
        ("check-2", plan, cp932(QUOTE_TEXT)),
        ("check-3", PLAN2_NAME, cp932(PLAN2_TEXT)),
        (n4, plan, four),
        (n5, plan, five),
    ] {
        let v = spec::check(&text, &check_vector(name, file, &bytes));
        assert_check_vector(&v);
    }
}

// ---------------------------------------------------------------------------------------------
// §3 tables: layouts, code tables, field counts, error codes.
// ---------------------------------------------------------------------------------------------

const VERSIONS: [CsvVersion; 3] = [
    CsvVersion::V202208,
    CsvVersion::V202407,
    CsvVersion::V202504,
];

/// A format in SPEC.md §3.4's notation.
fn format_name(f: Format) -> String {
    match f {
        Format::Text => "text".into(),
        Format::Version => "version".into(),
        Format::Date { zero_ok: false } => "date".into(),
        Format::Date { zero_ok: true } => "date0".into(),
        Format::Month { zero_ok: false } => "month".into(),
        Format::Month { zero_ok: true } => "month0".into(),
        Format::Time => "time".into(),
        Format::Insurer => "insurer".into(),
        Format::Insured => "insured".into(),
        Format::Office => "office".into(),
        Format::Kind => "kind".into(),
        Format::ServiceCode => "service-code".into(),
        Format::Integer {
            max_digits,
            signed: false,
        } => format!("int({max_digits})"),
        Format::Integer {
            max_digits,
            signed: true,
        } => format!("sint({max_digits})"),
        Format::Decimal => "decimal".into(),
        Format::Code(t) => format!("code({})", t.name_ja),
        Format::DayMask => "day-mask".into(),
        Format::Postal => "postal".into(),
    }
}

fn layout_rows(fields: &[Field]) -> Vec<Vec<String>> {
    fields
        .iter()
        .enumerate()
        .map(|(i, f)| {
            vec![
                (i + 1).to_string(),
                f.name_ja.to_string(),
                f.name_en.to_string(),
                format_name(f.format),
                if f.required { "○" } else { "" }.to_string(),
            ]
        })
        .collect()
}

/// The layouts as SPEC.md §3.9 groups them: kinds sharing a layout, versions sharing it.
fn layout_groups() -> Vec<(Vec<FileKind>, Vec<CsvVersion>)> {
    use CsvVersion::*;
    use FileKind::*;
    let all = vec![V202208, V202407, V202504];
    let v4 = vec![V202407, V202504];
    vec![
        (vec![UpHosoku], all.clone()),
        (vec![Up1Kyo], all.clone()),
        (vec![Up2Kyo], all.clone()),
        (vec![Up3Kyo], v4.clone()),
        (vec![UpPlan, UpJsk], v4.clone()),
        (vec![UpPlan, UpJsk], vec![V202208]),
        (vec![UpSikyu], v4.clone()),
        (vec![UpSikyu], vec![V202208]),
        (vec![Dlt1Kyo], all.clone()),
        (vec![DltPlan], all.clone()),
        (vec![DltJsk], all),
        (vec![UpKihon], v4.clone()),
        (vec![UpKihonSub1], v4.clone()),
        (vec![UpKihonSub2], v4.clone()),
        (vec![DltKihon], v4.clone()),
        (vec![UpYobo], v4.clone()),
        (vec![UpYoboSub], v4.clone()),
        (vec![DltYobo], v4),
    ]
}

fn group_marker(kinds: &[FileKind], versions: &[CsvVersion]) -> String {
    let k: Vec<&str> = kinds.iter().map(|k| k.prefix()).collect();
    let v: Vec<&str> = versions.iter().map(|v| v.as_str()).collect();
    format!("layout {} {}", k.join(","), v.join(","))
}

#[test]
fn layouts_match_spec() {
    let text = spec::spec_text();
    let groups = layout_groups();
    // The groups cover every layout the checker has, once.
    for kind in FileKind::ALL {
        for version in VERSIONS {
            let n = groups
                .iter()
                .filter(|(k, v)| k.contains(&kind) && v.contains(&version))
                .count();
            let want = usize::from(layout(kind, version).is_some());
            assert_eq!(n, want, "{} at {}", kind.prefix(), version.as_str());
        }
    }
    let mut markers = Vec::new();
    for (kinds, versions) in &groups {
        let fields = layout(kinds[0], versions[0]).unwrap();
        for k in kinds {
            for ver in versions {
                let other = layout(*k, *ver).unwrap();
                assert!(
                    std::ptr::eq(fields, other),
                    "{} {}",
                    k.prefix(),
                    ver.as_str()
                );
            }
        }
        let marker = group_marker(kinds, versions);
        let rows = layout_rows(fields);
        if spec::printing() {
            println!(
                "{}",
                spec::render_table(
                    &marker,
                    &["No", "項目名", "English", "Format", "Req"],
                    &["---:", "---", "---", "---", ":-:"],
                    &rows
                )
            );
        } else {
            assert_eq!(
                spec::table_after(&text, &marker),
                rows,
                "SPEC.md table {marker}"
            );
        }
        markers.push(marker["layout ".len()..].to_string());
    }
    if !spec::printing() {
        assert_eq!(
            spec::markers(&text, "layout"),
            markers,
            "SPEC.md's layout tables"
        );
    }
}

#[test]
fn code_tables_match_spec() {
    let text = spec::spec_text();
    let mut rows: Vec<Vec<String>> = Vec::new();
    for kind in FileKind::ALL {
        for version in VERSIONS {
            for f in layout(kind, version).unwrap_or_default() {
                if let Format::Code(t) = f.format {
                    let row = vec![
                        t.name_ja.to_string(),
                        t.name_en.to_string(),
                        t.values.join(", "),
                    ];
                    if !rows.contains(&row) {
                        rows.push(row);
                    }
                }
            }
        }
    }
    rows.sort();
    if spec::printing() {
        println!(
            "{}",
            spec::render_table(
                "code-tables",
                &["Table", "English", "Values"],
                &["---", "---", "---"],
                &rows
            )
        );
        return;
    }
    let mut written = spec::table_after(&text, "code-tables");
    written.sort();
    assert_eq!(written, rows);
}

#[test]
fn field_counts_match_spec() {
    let text = spec::spec_text();
    let count = |k, v| layout(k, v).map_or("—".to_string(), |f| f.len().to_string());
    let rows: Vec<Vec<String>> = FileKind::ALL
        .iter()
        .map(|&k| {
            vec![
                format!("`{}`", k.prefix()),
                count(k, CsvVersion::V202208),
                count(k, CsvVersion::V202407),
            ]
        })
        .collect();
    for k in FileKind::ALL {
        assert_eq!(
            layout(k, CsvVersion::V202407).map(<[Field]>::len),
            layout(k, CsvVersion::V202504).map(<[Field]>::len)
        );
    }
    if spec::printing() {
        println!(
            "{}",
            spec::render_table(
                "field-counts",
                &["File kind", "202208 (V3)", "202407 / 202504 (V4)"],
                &["---", "---:", "---:"],
                &rows
            )
        );
        return;
    }
    assert_eq!(spec::table_after(&text, "field-counts"), rows);
}

#[test]
fn error_codes_match_spec() {
    let text = spec::spec_text();
    let written: Vec<String> = spec::table_after(&text, "error-codes")
        .into_iter()
        .map(|r| r[0].trim_matches('`').to_string())
        .collect();
    let codes: Vec<String> = ErrorCode::ALL
        .iter()
        .map(|c| c.as_str().to_string())
        .collect();
    assert_eq!(
        written, codes,
        "SPEC.md §3.6 lists every code, in code order"
    );
}

#[test]
fn send_unit_order_matches_spec() {
    let text = spec::spec_text();
    let written: Vec<String> = spec::table_after(&text, "unit-order")
        .into_iter()
        .map(|r| format!("{} {}", r[0], r[1].trim_matches('`')))
        .collect();
    let want: Vec<String> = FileKind::ALL
        .iter()
        .map(|k| format!("{} {}", k.unit_order(), k.prefix()))
        .collect();
    assert_eq!(written, want);
}

// ---------------------------------------------------------------------------------------------
// §9.1 The vector format itself.
// ---------------------------------------------------------------------------------------------

/// The kinds of value SPEC.md §9.1 defines, and the keys it gives each.
#[derive(Debug, PartialEq)]
enum ValueKind {
    Bytes,
    Number,
    Text,
    Finding,
    Word(&'static [&'static str]),
}

fn value_kind(key: &str) -> ValueKind {
    use ValueKind::*;
    const BYTES: &[&str] = &[
        "message-id",
        "rng-seed",
        "ikm-e",
        "enc",
        "hpke-info",
        "plaintext",
        "header",
        "chunk",
        "envelope",
        "bytes",
        "ack",
        "content",
        "region-cert",
        "entry",
        "upsert",
        "snapshot",
        "delta",
        "frame",
        "statement",
    ];
    const NUMBERS: &[&str] = &[
        "created-at",
        "received-at",
        "deleted-at",
        "imported-at",
        "issued-at",
        "expires-at",
        "cert-valid-from",
        "cert-valid-until",
        "key-valid-from",
        "key-valid-until",
        "seq",
        "from-seq",
        "to-seq",
        "chunk-size",
        "code",
        "refusal-code",
        "code-length",
        "unit-order",
        "prefecture",
    ];
    const TEXTS: &[&str] = &[
        "name",
        "file-name",
        "sender-office",
        "recipient-office",
        "office",
        "from-office",
        "to-office",
        "removal",
        "from-kind",
        "to-kind",
        "office-kind",
        "kind",
        "month",
        "stamp",
        "branch",
        "region",
        "region-name",
        "office-name",
        "node-address",
        "office-address",
        "node-http",
        "reason",
        "anchor",
    ];
    let bytes_suffix = ["-secret", "-public", "-sha256", "-digest", "-key"];
    if BYTES.contains(&key) || bytes_suffix.iter().any(|s| key.ends_with(s)) {
        return Bytes;
    }
    if NUMBERS.contains(&key) {
        return Number;
    }
    if TEXTS.contains(&key) {
        return Text;
    }
    match key {
        "finding" => Finding,
        "verdict" => Word(&["accepted", "rejected"]),
        "status" => Word(&["active", "revoked"]),
        "form" => Word(&["V4", "V3"]),
        "extension" => Word(&["upper", "lower"]),
        // Checked below: an error code, an envelope error name, a directory error name.
        "error" | "result" => Word(&[]),
        other => panic!("SPEC.md §9.1 does not say what kind of value `{other}` is"),
    }
}

/// SPEC.md §9.1: every vector's every value is of the kind §9.1 gives its key, lists are the
/// keys it names, and the reader of spec.rs reads the format as §9.1 writes it.
#[test]
fn vectors_follow_the_format_of_spec_9_1() {
    // The reader: comments and empty lines skipped, continuations joined with nothing between,
    // a key before its first `:` only, lists in order.
    let sample = "```vector sample\n# a comment\nanchor: {\"a\": 1}\nbytes:\n  00ff\n\n  \
                  10\nfinding: 1 2 X\nfinding: 3 4 Y\n```\n";
    let v = &spec::vectors(sample)[0];
    assert_eq!(v.get("anchor"), "{\"a\": 1}");
    assert_eq!(v.get("bytes"), "00ff10");
    assert_eq!(v.all("finding"), ["1 2 X", "3 4 Y"]);

    const LISTS: [&str; 7] = [
        "chunk",
        "finding",
        "entry",
        "upsert",
        "removal",
        "prefecture",
        "office-kind",
    ];
    let is_code = |s: &str| ErrorCode::ALL.iter().any(|c| c.as_str() == s);
    let vectors = spec::vectors(&spec::spec_text());
    assert!(vectors.len() >= 30, "{} vectors", vectors.len());
    for v in &vectors {
        let mut seen = std::collections::BTreeSet::new();
        for (key, value) in &v.values {
            let what = format!("vector {}: {key}: {value}", v.name);
            if !seen.insert(key.as_str()) {
                assert!(LISTS.contains(&key.as_str()), "{what}: repeated");
            }
            match value_kind(key) {
                ValueKind::Bytes => assert!(
                    !value.is_empty()
                        && value.len() % 2 == 0
                        && value
                            .bytes()
                            .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')),
                    "{what}"
                ),
                ValueKind::Number => assert!(
                    !value.is_empty() && value.bytes().all(|c| c.is_ascii_digit()),
                    "{what}"
                ),
                ValueKind::Text => assert!(!value.is_empty(), "{what}"),
                ValueKind::Finding => {
                    let parts: Vec<&str> = value.split(' ').collect();
                    assert_eq!(parts.len(), 3, "{what}");
                    assert!(parts[0].parse::<u32>().is_ok(), "{what}");
                    assert!(parts[1].parse::<u16>().is_ok(), "{what}");
                    assert!(is_code(parts[2]), "{what}");
                }
                ValueKind::Word(words) if !words.is_empty() => {
                    assert!(words.contains(&value.as_str()), "{what}")
                }
                ValueKind::Word(_) => assert!(
                    value == "accepted"
                        || value == "refused"
                        || is_code(value)
                        || value.bytes().all(|c| c.is_ascii_alphabetic()),
                    "{what}"
                ),
            }
        }
    }
}
