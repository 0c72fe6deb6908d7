//! Envelope seal and open throughput for a 1 MB and a 100 MB file, in bytes per second.
//!
//! `seal` includes the SHA-256 of the plaintext the sender must state in the header; `open`
//! includes the header checks, HPKE, every chunk and the final hash check. The reference is the
//! bare work underneath over the same bytes: SHA-256 plus ChaCha20-Poly1305 in the same 64 KiB
//! chunks, with no header, no HPKE and no signature.
//!
//! Run: `cargo bench -p renkei-protocol --bench envelope`

use std::hint::black_box;

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ed25519_dalek::SigningKey;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use renkei_protocol::envelope::{
    DEFAULT_CHUNK_SIZE, MessageId, OpenParams, SealParams, open, seal,
};
use renkei_protocol::{OfficeNumber, sha256};
use x25519_dalek::{PublicKey, StaticSecret};

const NOW: u64 = 1_790_000_000;
const NAME: &str = "UPPLAN_202610_1310000001_43_1310000011_11_20260928103000.CSV";
const MB: usize = 1_000_000;

struct Keys {
    sender_office: OfficeNumber,
    sender: SigningKey,
    recipient_office: OfficeNumber,
    recipient: StaticSecret,
}

fn keys() -> Keys {
    Keys {
        sender_office: OfficeNumber::parse("1310000001").unwrap(),
        sender: SigningKey::from_bytes(&[1; 32]),
        recipient_office: OfficeNumber::parse("1310000011").unwrap(),
        recipient: StaticSecret::from([102; 32]),
    }
}

fn seal_file(k: &Keys, plaintext: &[u8], rng: &mut ChaCha20Rng) -> Vec<u8> {
    let params = SealParams {
        message_id: MessageId([7; 16]),
        created_at: NOW,
        sender_office: k.sender_office,
        recipient_office: k.recipient_office,
        recipient_key: PublicKey::from(&k.recipient).to_bytes(),
        file_name: NAME,
        plaintext_len: plaintext.len() as u64,
        plaintext_hash: sha256(plaintext),
        chunk_size: DEFAULT_CHUNK_SIZE,
    };
    seal(&params, plaintext, &k.sender, rng).unwrap()
}

fn never(_: &OfficeNumber, _: &MessageId) -> bool {
    false
}

fn open_file(k: &Keys, sealed: &[u8]) -> Vec<u8> {
    let secrets = [k.recipient.clone()];
    let senders = [k.sender.verifying_key()];
    let p = OpenParams {
        recipient_office: k.recipient_office,
        recipient_secrets: &secrets,
        sender_keys: &senders,
        now: NOW + 60,
        max_age: 86400,
        max_skew: 600,
        seen: &never,
    };
    open(sealed, &p).unwrap().1
}

/// SHA-256 and ChaCha20-Poly1305 over 64 KiB chunks into a fresh buffer: the floor under
/// `seal`.
fn reference_seal(cipher: &ChaCha20Poly1305, plaintext: &[u8]) -> Vec<u8> {
    let hash = sha256(plaintext);
    let chunk = DEFAULT_CHUNK_SIZE as usize;
    let mut out = Vec::with_capacity(plaintext.len() + plaintext.len() / chunk * 16 + 48);
    out.extend_from_slice(&hash);
    for (i, pt) in plaintext.chunks(chunk).enumerate() {
        let mut n = [0u8; 12];
        n[3..11].copy_from_slice(&(i as u64).to_be_bytes());
        let start = out.len();
        out.extend_from_slice(pt);
        let tag = cipher
            .encrypt_inout_detached(&Nonce::from(n), &[], (&mut out[start..]).into())
            .unwrap();
        out.extend_from_slice(tag.as_slice());
    }
    out
}

fn envelope(c: &mut Criterion) {
    let k = keys();
    let cipher = ChaCha20Poly1305::new(&Key::from([5; 32]));
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    for size in [MB, 100 * MB] {
        let plaintext: Vec<u8> = (0..size).map(|i| (i * 31 + i / 977) as u8).collect();
        let sealed = seal_file(&k, &plaintext, &mut rng);
        assert_eq!(open_file(&k, &sealed), plaintext);
        let label = format!("{}MB", size / MB);

        let mut g = c.benchmark_group("envelope");
        g.throughput(Throughput::Bytes(size as u64));
        if size >= 100 * MB {
            g.sample_size(10);
        }
        g.bench_with_input(BenchmarkId::new("seal", &label), &plaintext, |b, pt| {
            b.iter(|| black_box(seal_file(&k, pt, &mut rng)))
        });
        g.bench_with_input(BenchmarkId::new("open", &label), &sealed, |b, s| {
            b.iter(|| black_box(open_file(&k, s)))
        });
        g.bench_with_input(
            BenchmarkId::new("reference_sha256_chacha20poly1305", &label),
            &plaintext,
            |b, pt| b.iter(|| black_box(reference_seal(&cipher, pt))),
        );
        g.bench_with_input(
            BenchmarkId::new("reference_sha256", &label),
            &plaintext,
            |b, pt| b.iter(|| black_box(sha256(pt))),
        );
        g.finish();
    }
}

criterion_group!(benches, envelope);
criterion_main!(benches);
