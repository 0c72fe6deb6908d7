//! Fuzzes the envelope and ack parsers and the opener with fixed keys.
//!
//! The first byte picks a mode:
//! - 0: the rest is an envelope from the network: `EnvelopeHeader::parse`, then `open`.
//! - 1: the rest is an ack from the network: `Ack::parse`; a parsed ack re-encodes to the same
//!   bytes and its self-signature check does not panic.
//! - 2: a real envelope is sealed with fuzzer-chosen chunk size, plaintext and header claims
//!   (length, hash), then cut, flipped or extended as the fuzzer says and opened. This gets
//!   past the signature check, which random bytes never do. An untouched, honest envelope
//!   must open to its plaintext.

#![no_main]

use ed25519_dalek::SigningKey;
use libfuzzer_sys::fuzz_target;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use renkei_protocol::ack::Ack;
use renkei_protocol::envelope::{
    EnvelopeHeader, MessageId, OpenParams, SealParams, Sealer, open, seal_header,
};
use renkei_protocol::{OfficeNumber, sha256};
use x25519_dalek::{PublicKey, StaticSecret};

const NOW: u64 = 1_790_000_000;
const NAME: &str = "UPPLAN_202610_1310000001_43_1310000011_11_20260928103000.CSV";

struct Keys {
    sender: SigningKey,
    recipient: StaticSecret,
}

fn keys() -> Keys {
    Keys {
        sender: SigningKey::from_bytes(&[1; 32]),
        recipient: StaticSecret::from([102; 32]),
    }
}

fn office(n: &str) -> OfficeNumber {
    OfficeNumber::parse(n).expect("office")
}

fn never(_: &OfficeNumber, _: &MessageId) -> bool {
    false
}

fn open_with(k: &Keys, bytes: &[u8]) -> Result<Vec<u8>, renkei_protocol::envelope::EnvelopeError> {
    let secrets = [k.recipient.clone()];
    let senders = [k.sender.verifying_key()];
    let p = OpenParams {
        recipient_office: office("1310000011"),
        recipient_secrets: &secrets,
        sender_keys: &senders,
        now: NOW + 60,
        max_age: 30 * 86400,
        max_skew: 600,
        seen: &never,
    };
    open(bytes, &p).map(|(_, pt)| pt)
}

/// Reads fuzzer-chosen values front to back; zeros once the input runs out.
struct Take<'a>(&'a [u8]);

impl Take<'_> {
    fn u8(&mut self) -> u8 {
        let (b, rest) = self.0.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
        self.0 = rest;
        b
    }
    fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    fn u64(&mut self) -> u64 {
        (u64::from(self.u32()) << 32) | u64::from(self.u32())
    }
    fn bytes(&mut self, n: usize) -> &[u8] {
        let (a, b) = self.0.split_at(n.min(self.0.len()));
        self.0 = b;
        a
    }
}

fn raw_envelope(k: &Keys, data: &[u8]) {
    if let Ok((header, used)) = EnvelopeHeader::parse(data) {
        assert!(used <= data.len());
        assert_eq!(header.to_bytes(), data[..used]);
        let _ = (header.chunk_count(), header.body_len());
        let _ = (header.chunk_len(0), header.chunk_len(u64::MAX));
    }
    let _ = open_with(k, data);
}

fn raw_ack(data: &[u8]) {
    if let Ok(ack) = Ack::parse(data) {
        assert_eq!(ack.to_bytes(), data);
        let _ = ack.verify_self_signed();
        let _ = ack.known_codes();
    }
}

fn sealed(k: &Keys, data: &[u8]) {
    let mut t = Take(data);
    let chunk_size = match t.u8() {
        // Mostly small legal sizes so several chunks fit in a fuzz input.
        0..=199 => 64 + u32::from(t.u8()),
        200..=249 => t.u32(),
        _ => renkei_protocol::envelope::DEFAULT_CHUNK_SIZE,
    };
    let flags = t.u8();
    let pt_len = usize::from(t.u8()) * 8 + usize::from(t.u8() % 8);
    let plaintext = t.bytes(pt_len).to_vec();
    let claimed_len = if flags & 1 == 0 {
        plaintext.len() as u64
    } else {
        t.u64()
    };
    let mut claimed_hash = sha256(&plaintext);
    if flags & 2 != 0 {
        claimed_hash[0] ^= 1;
    }
    let honest = claimed_len == plaintext.len() as u64 && flags & 2 == 0;
    let params = SealParams {
        message_id: MessageId([7; 16]),
        created_at: NOW,
        sender_office: office("1310000001"),
        recipient_office: office("1310000011"),
        recipient_key: PublicKey::from(&k.recipient).to_bytes(),
        file_name: NAME,
        plaintext_len: claimed_len,
        plaintext_hash: claimed_hash,
        chunk_size,
    };
    let mut rng = ChaCha20Rng::seed_from_u64(u64::from(flags));
    let Ok((mut env, mut sealer)) = seal_header(&params, &k.sender, &mut rng) else {
        assert!(!(64..=1024 * 1024).contains(&chunk_size));
        return;
    };
    seal_what_fits(&mut sealer, &plaintext, &mut env);
    let original = env.clone();
    // Tamper as told: 0 none, 1 cut, 2 flip a bit, 3 append.
    let tamper = t.u8() % 4;
    let at = t.u32() as usize % (env.len() + 1);
    match tamper {
        1 => env.truncate(at),
        2 if at < env.len() => env[at] ^= 1 << (t.u8() % 8),
        3 => env.extend_from_slice(t.bytes(64)),
        _ => {}
    }
    let result = open_with(k, &env);
    if honest && env == original {
        assert_eq!(result.as_deref(), Ok(&plaintext[..]));
    } else {
        assert!(result.is_err(), "altered or lying envelope opened");
    }
}

/// Seals as many chunks as the plaintext covers (all of them when the header is honest).
fn seal_what_fits(sealer: &mut Sealer, plaintext: &[u8], out: &mut Vec<u8>) {
    let mut rest = plaintext;
    while let Some(n) = sealer.next_plain_len() {
        if n > rest.len() {
            break;
        }
        let (chunk, tail) = rest.split_at(n);
        sealer
            .seal_chunk(chunk, out)
            .expect("chunk of the announced size");
        rest = tail;
    }
}

fuzz_target!(|data: &[u8]| {
    let k = keys();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => raw_envelope(&k, rest),
        1 => raw_ack(rest),
        _ => sealed(&k, rest),
    }
});
