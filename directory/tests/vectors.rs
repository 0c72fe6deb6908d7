//! SPEC.md §9.7: the directory test vectors (a region snapshot with one entry, and a delta that
//! revokes it; a region of two prefectures with three entries, a delta with upserts and a
//! removal; files whose entries or upserts are out of order), regenerated from fixed keys and
//! compared byte for byte with SPEC.md; then SPEC.md's bytes are verified through this crate
//! and, field by field, by hand.
//!
//! To regenerate after a deliberate format change:
//! `RENKEI_PRINT_VECTORS=1 cargo test -p renkei-directory --test vectors -- --nocapture`

#[path = "../../protocol/tests/support/spec.rs"]
mod spec;

use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use renkei_directory::{
    Anchor, Applied, Delta, Directory, Entry, NodeInfo, OfficeKey, RegionCert, Snapshot, Status,
    entries_digest,
};
use renkei_protocol::{OfficeNumber, ServiceKind, sha256};
use spec::Vector;

const ROOT: [u8; 32] = [0x10; 32];
const REGION_KEY: [u8; 32] = [0x11; 32];
const OFFICE_ED25519: [u8; 32] = [0x12; 32];
const OFFICE_X25519: [u8; 32] = [0x13; 32];
const NODE_ED25519: [u8; 32] = [0x14; 32];

const REGION: &str = "13-tokyo";
const REGION_NAME: &str = "東京都テスト協会";
const PREFECTURES: [u8; 1] = [13];
const CERT_FROM: u64 = 1_780_000_000;
const CERT_UNTIL: u64 = 1_940_000_000;
const NODE_ADDRESS: &str = "/ip4/127.0.0.1/tcp/4700";
const NODE_HTTP: &str = "http://127.0.0.1:4780";
const OFFICE: &str = "1310000011";
const OFFICE_NAME: &str = "さくら訪問介護ステーション";
const OFFICE_KIND: &str = "11";
const OFFICE_ADDRESS: &str = "/ip4/127.0.0.1/tcp/4701";
const KEY_FROM: u64 = 1_780_000_000;
const KEY_UNTIL: u64 = 2_100_000_000;
const SEQ: u64 = 1;
const ISSUED_AT: u64 = 1_790_000_000;
const EXPIRES_AT: u64 = 1_790_604_800;
const DELTA_ISSUED_AT: u64 = 1_790_086_400;
const DELTA_EXPIRES_AT: u64 = 1_790_691_200;

fn public(secret: &[u8; 32]) -> [u8; 32] {
    SigningKey::from_bytes(secret).verifying_key().to_bytes()
}

fn x25519_public(secret: &[u8; 32]) -> [u8; 32] {
    x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(*secret)).to_bytes()
}

fn anchor_json() -> String {
    format!(
        r#"{{"format":"renkei-anchor/1","federation":"spec-vector","roots":["{}"]}}"#,
        hex::encode(public(&ROOT))
    )
}

fn cert() -> RegionCert {
    RegionCert::issue(
        &SigningKey::from_bytes(&ROOT),
        REGION,
        REGION_NAME,
        public(&REGION_KEY),
        PREFECTURES.to_vec(),
        CERT_FROM,
        CERT_UNTIL,
    )
}

fn node() -> NodeInfo {
    NodeInfo {
        key: public(&NODE_ED25519),
        addresses: vec![NODE_ADDRESS.into()],
        http: Some(NODE_HTTP.into()),
    }
}

fn entry(status: Status) -> Entry {
    Entry {
        office: OfficeNumber::parse(OFFICE).unwrap(),
        name: OFFICE_NAME.into(),
        kinds: vec![ServiceKind::parse(OFFICE_KIND).unwrap()],
        keys: vec![OfficeKey {
            identity: public(&OFFICE_ED25519),
            encryption: x25519_public(&OFFICE_X25519),
            valid_from: KEY_FROM,
            valid_until: KEY_UNTIL,
        }],
        addresses: vec![OFFICE_ADDRESS.into()],
        status,
        mailboxes: Vec::new(),
    }
}

// An encoder written from SPEC.md §6.2–§6.4 alone, to check the crate's bytes against.

fn put_str8(out: &mut Vec<u8>, s: &str) {
    out.push(s.len() as u8);
    out.extend_from_slice(s.as_bytes());
}

fn put_str16(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn spec_cert_signed_part() -> Vec<u8> {
    let mut out = b"RENKEIR\x01".to_vec();
    put_str8(&mut out, REGION);
    put_str16(&mut out, REGION_NAME);
    out.extend_from_slice(&public(&REGION_KEY));
    out.push(PREFECTURES.len() as u8);
    out.extend_from_slice(&PREFECTURES);
    out.extend_from_slice(&CERT_FROM.to_be_bytes());
    out.extend_from_slice(&CERT_UNTIL.to_be_bytes());
    out.extend_from_slice(&public(&ROOT));
    out
}

fn spec_entry(status: u8) -> Vec<u8> {
    let mut out = OFFICE.as_bytes().to_vec();
    put_str16(&mut out, OFFICE_NAME);
    out.push(1);
    out.extend_from_slice(OFFICE_KIND.as_bytes());
    out.push(1);
    out.extend_from_slice(&public(&OFFICE_ED25519));
    out.extend_from_slice(&x25519_public(&OFFICE_X25519));
    out.extend_from_slice(&KEY_FROM.to_be_bytes());
    out.extend_from_slice(&KEY_UNTIL.to_be_bytes());
    out.push(1);
    put_str16(&mut out, OFFICE_ADDRESS);
    out.push(status);
    out
}

fn spec_node() -> Vec<u8> {
    let mut out = public(&NODE_ED25519).to_vec();
    out.push(1);
    put_str16(&mut out, NODE_ADDRESS);
    put_str16(&mut out, NODE_HTTP);
    out
}

fn snapshot_vector() -> Vector {
    let snapshot = Snapshot::build(
        &cert(),
        &SigningKey::from_bytes(&REGION_KEY),
        SEQ,
        ISSUED_AT,
        EXPIRES_AT,
        &[node()],
        &[entry(Status::Active)],
    );
    let cert_len = spec_cert_signed_part().len() + 64;
    let entry_len = spec_entry(0).len();
    let mut v = Vector::new("directory-snapshot-1");
    v.put_hex("root-ed25519-secret", &ROOT)
        .put_hex("root-ed25519-public", &public(&ROOT))
        .put("anchor", anchor_json())
        .put_hex("region-ed25519-secret", &REGION_KEY)
        .put_hex("region-ed25519-public", &public(&REGION_KEY))
        .put("region", REGION)
        .put("region-name", REGION_NAME)
        .put("prefecture", PREFECTURES[0])
        .put("cert-valid-from", CERT_FROM)
        .put("cert-valid-until", CERT_UNTIL)
        .put_hex("region-cert", &snapshot[8..8 + cert_len])
        .put_hex("node-ed25519-secret", &NODE_ED25519)
        .put_hex("node-ed25519-public", &public(&NODE_ED25519))
        .put("node-address", NODE_ADDRESS)
        .put("node-http", NODE_HTTP)
        .put("office", OFFICE)
        .put("office-name", OFFICE_NAME)
        .put("office-kind", OFFICE_KIND)
        .put_hex("office-ed25519-secret", &OFFICE_ED25519)
        .put_hex("office-ed25519-public", &public(&OFFICE_ED25519))
        .put_hex("office-x25519-secret", &OFFICE_X25519)
        .put_hex("office-x25519-public", &x25519_public(&OFFICE_X25519))
        .put("key-valid-from", KEY_FROM)
        .put("key-valid-until", KEY_UNTIL)
        .put("office-address", OFFICE_ADDRESS)
        .put("status", "active")
        .put_hex("entry", &snapshot[snapshot.len() - entry_len..])
        .put_hex("entries-digest", &entries_digest(&[entry(Status::Active)]))
        .put("seq", SEQ)
        .put("issued-at", ISSUED_AT)
        .put("expires-at", EXPIRES_AT)
        .put_hex("snapshot", &snapshot);
    v
}

fn delta_vector() -> Vector {
    let base = entries_digest(&[entry(Status::Active)]);
    let result = entries_digest(&[entry(Status::Revoked)]);
    let delta = Delta {
        cert: cert(),
        from_seq: SEQ,
        to_seq: SEQ + 1,
        issued_at: DELTA_ISSUED_AT,
        expires_at: DELTA_EXPIRES_AT,
        nodes: vec![node()],
        base_digest: base,
        result_digest: result,
        upserts: vec![entry(Status::Revoked)],
        removals: Vec::new(),
        signature: [0; 64],
    }
    .sign(&SigningKey::from_bytes(&REGION_KEY));
    let mut v = Vector::new("directory-delta-1");
    v.put("from-seq", SEQ)
        .put("to-seq", SEQ + 1)
        .put("issued-at", DELTA_ISSUED_AT)
        .put("expires-at", DELTA_EXPIRES_AT)
        .put_hex("base-digest", &base)
        .put_hex("result-digest", &result)
        .put_hex("upsert", &spec_entry(1))
        .put_hex("delta", &delta);
    v
}

#[test]
fn snapshot_vector_matches_spec() {
    let text = spec::spec_text();
    let v = spec::check(&text, &snapshot_vector());

    // Through the crate: SPEC.md's anchor accepts SPEC.md's snapshot.
    let anchor = Anchor::from_json(v.get("anchor")).unwrap();
    assert_eq!(anchor.roots, vec![v.get("root-ed25519-public").to_string()]);
    let mut dir = Directory::new(anchor);
    let bytes = v.hex("snapshot");
    assert_eq!(
        dir.apply_snapshot(&bytes).unwrap(),
        Applied::Updated {
            region: v.get("region").into(),
            seq: v.num("seq")
        }
    );
    let e = dir
        .lookup(&OfficeNumber::parse(v.get("office")).unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(e.name, v.get("office-name"));
    assert!(e.is_active());
    assert_eq!(
        e.keys[0].identity.as_slice(),
        v.hex("office-ed25519-public")
    );
    assert_eq!(
        e.keys[0].encryption.as_slice(),
        v.hex("office-x25519-public")
    );
    assert!(dir.is_directory_node(&v.array("node-ed25519-public")));

    // By hand, from SPEC.md §6.2–§6.4.
    let cert = v.hex("region-cert");
    assert_eq!(&cert[..cert.len() - 64], spec_cert_signed_part().as_slice());
    let root = VerifyingKey::from_bytes(&v.array("root-ed25519-public")).unwrap();
    let (signed, sig) = cert.split_at(cert.len() - 64);
    root.verify_strict(signed, &Signature::from_bytes(sig.try_into().unwrap()))
        .unwrap();

    let entry = v.hex("entry");
    assert_eq!(entry, spec_entry(0));
    assert_eq!(
        sha256(&entry).as_slice(),
        v.hex("entries-digest").as_slice()
    );

    let mut header = b"RENKEIS\x01".to_vec();
    header.extend_from_slice(&cert);
    header.extend_from_slice(&v.num("seq").to_be_bytes());
    header.extend_from_slice(&v.num("issued-at").to_be_bytes());
    header.extend_from_slice(&v.num("expires-at").to_be_bytes());
    header.extend_from_slice(&1u16.to_be_bytes());
    header.extend_from_slice(&spec_node());
    header.extend_from_slice(&1u32.to_be_bytes());
    header.extend_from_slice(&v.hex("entries-digest"));
    assert_eq!(&bytes[..header.len()], header.as_slice());
    let sig: [u8; 64] = bytes[header.len()..header.len() + 64].try_into().unwrap();
    let region = VerifyingKey::from_bytes(&v.array("region-ed25519-public")).unwrap();
    region
        .verify_strict(&header, &Signature::from_bytes(&sig))
        .unwrap();
    assert_eq!(&bytes[header.len() + 64..], entry.as_slice());
}

#[test]
fn delta_vector_matches_spec() {
    let text = spec::spec_text();
    let s = if spec::printing() {
        snapshot_vector()
    } else {
        spec::vector(&text, "directory-snapshot-1")
    };
    let v = spec::check(&text, &delta_vector());

    // Through the crate: the delta applies on top of the snapshot and revokes the office.
    let mut dir = Directory::new(Anchor::from_json(&anchor_json()).unwrap());
    dir.apply_snapshot(&s.hex("snapshot")).unwrap();
    let bytes = v.hex("delta");
    assert_eq!(
        dir.apply_delta(&bytes).unwrap(),
        Applied::Updated {
            region: REGION.into(),
            seq: v.num("to-seq")
        }
    );
    let e = dir
        .lookup(&OfficeNumber::parse(OFFICE).unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(e.status, Status::Revoked);
    assert!(e.identity_keys_at(ISSUED_AT).is_empty());
    assert_eq!(
        dir.region(REGION).unwrap().digest.as_slice(),
        v.hex("result-digest")
    );

    // By hand.
    let upsert = v.hex("upsert");
    assert_eq!(
        sha256(&upsert).as_slice(),
        v.hex("result-digest").as_slice()
    );
    assert_eq!(v.hex("base-digest"), s.hex("entries-digest"));
    let mut signed = b"RENKEID\x01".to_vec();
    signed.extend_from_slice(&s.hex("region-cert"));
    for k in ["from-seq", "to-seq", "issued-at", "expires-at"] {
        signed.extend_from_slice(&v.num(k).to_be_bytes());
    }
    signed.extend_from_slice(&1u16.to_be_bytes());
    signed.extend_from_slice(&spec_node());
    signed.extend_from_slice(&v.hex("base-digest"));
    signed.extend_from_slice(&v.hex("result-digest"));
    signed.extend_from_slice(&1u32.to_be_bytes());
    signed.extend_from_slice(&upsert);
    signed.extend_from_slice(&0u32.to_be_bytes());
    assert_eq!(&bytes[..bytes.len() - 64], signed.as_slice());
    let region = VerifyingKey::from_bytes(&s.array("region-ed25519-public")).unwrap();
    let sig: [u8; 64] = bytes[bytes.len() - 64..].try_into().unwrap();
    region
        .verify_strict(&signed, &Signature::from_bytes(&sig))
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// A region of two prefectures with several entries (SPEC.md §6.4: the digest is over the
// entries as the file lists them; order is checked after it).
// ---------------------------------------------------------------------------------------------

const KANTO: &str = "kanto";
const KANTO_NAME: &str = "関東テスト協会";
const KANTO_PREFECTURES: [u8; 2] = [13, 14];

fn kanto_cert() -> RegionCert {
    RegionCert::issue(
        &SigningKey::from_bytes(&ROOT),
        KANTO,
        KANTO_NAME,
        public(&REGION_KEY),
        KANTO_PREFECTURES.to_vec(),
        CERT_FROM,
        CERT_UNTIL,
    )
}

fn key_pair(identity: u8, encryption: u8, valid_from: u64, valid_until: u64) -> OfficeKey {
    OfficeKey {
        identity: public(&[identity; 32]),
        encryption: x25519_public(&[encryption; 32]),
        valid_from,
        valid_until,
    }
}

/// 1310000021 in the middle of a key rotation: two kinds, two keys, two addresses.
fn aozora(rotated: bool) -> Entry {
    let old = key_pair(0x15, 0x16, KEY_FROM, 1_791_209_600);
    let new = key_pair(0x17, 0x18, 1_790_000_000, KEY_UNTIL);
    Entry {
        office: OfficeNumber::parse("1310000021").unwrap(),
        name: "ケアプランセンター青空".into(),
        kinds: vec![
            ServiceKind::parse("43").unwrap(),
            ServiceKind::parse("46").unwrap(),
        ],
        keys: if rotated { vec![new] } else { vec![old, new] },
        addresses: vec![
            "/ip4/127.0.0.1/tcp/4702".into(),
            "/ip4/127.0.0.1/udp/4702/quic-v1".into(),
        ],
        status: Status::Active,
        mailboxes: Vec::new(),
    }
}

/// 1410000001, revoked, with no addresses.
fn yokohama() -> Entry {
    Entry {
        office: OfficeNumber::parse("1410000001").unwrap(),
        name: "横浜テスト事業所".into(),
        kinds: vec![ServiceKind::parse("11").unwrap()],
        keys: vec![key_pair(0x19, 0x1a, KEY_FROM, KEY_UNTIL)],
        addresses: vec![],
        status: Status::Revoked,
        mailboxes: Vec::new(),
    }
}

/// 1410000002, enrolled in the delta.
fn kawasaki() -> Entry {
    Entry {
        office: OfficeNumber::parse("1410000002").unwrap(),
        name: "川崎テスト訪問看護".into(),
        kinds: vec![ServiceKind::parse("13").unwrap()],
        keys: vec![key_pair(0x1b, 0x1c, DELTA_ISSUED_AT, KEY_UNTIL)],
        addresses: vec!["/ip4/127.0.0.1/tcp/4703".into()],
        status: Status::Active,
        mailboxes: Vec::new(),
    }
}

/// An entry's bytes (the crate's encoder is private): the tail of a one-entry snapshot.
fn encoded(e: &Entry) -> Vec<u8> {
    let build = |entries: &[Entry]| {
        Snapshot::build(
            &kanto_cert(),
            &SigningKey::from_bytes(&REGION_KEY),
            1,
            ISSUED_AT,
            EXPIRES_AT,
            &[],
            entries,
        )
    };
    let head = build(&[]).len();
    build(std::slice::from_ref(e))[head..].to_vec()
}

/// A kanto snapshot; `full` adds what a second implementation needs to rebuild it (the
/// certificate's fields and the times), which vector directory-snapshot-3 shares with -2.
fn kanto_snapshot_vector(name: &str, entries: &[Entry], full: bool) -> Vector {
    let snapshot = Snapshot::build(
        &kanto_cert(),
        &SigningKey::from_bytes(&REGION_KEY),
        SEQ,
        ISSUED_AT,
        EXPIRES_AT,
        &[node()],
        entries,
    );
    let cert_len = 8 + 1 + KANTO.len() + 2 + KANTO_NAME.len() + 32 + 1 + 2 + 8 + 8 + 32 + 64;
    let mut v = Vector::new(name);
    if full {
        v.put("region", KANTO).put("region-name", KANTO_NAME);
        for p in KANTO_PREFECTURES {
            v.put("prefecture", p);
        }
        v.put_hex("region-cert", &snapshot[8..8 + cert_len]);
    }
    for e in entries {
        v.put_hex("entry", &encoded(e));
    }
    v.put_hex("entries-digest", &entries_digest(entries));
    if full {
        v.put("seq", SEQ)
            .put("issued-at", ISSUED_AT)
            .put("expires-at", EXPIRES_AT);
    }
    v.put_hex("snapshot", &snapshot);
    let mut dir = Directory::new(Anchor::from_json(&anchor_json()).unwrap());
    v.put(
        "result",
        match dir.apply_snapshot(&snapshot) {
            Ok(_) => "accepted".to_string(),
            Err(e) => error_name(&e),
        },
    );
    v
}

/// The name of a directory error as SPEC.md §6 writes it.
fn error_name(e: &renkei_directory::DirectoryError) -> String {
    format!("{e:?}").split('(').next().unwrap().to_string()
}

fn kanto_entries() -> Vec<Entry> {
    vec![entry(Status::Active), aozora(false), yokohama()]
}

/// A kanto delta from directory-snapshot-2; `full` as for [`kanto_snapshot_vector`].
fn kanto_delta_vector(name: &str, upserts: Vec<Entry>, full: bool) -> Vector {
    let base = kanto_entries();
    let result = vec![aozora(true), yokohama(), kawasaki()];
    let removal = OfficeNumber::parse(OFFICE).unwrap();
    let delta = Delta {
        cert: kanto_cert(),
        from_seq: SEQ,
        to_seq: SEQ + 1,
        issued_at: DELTA_ISSUED_AT,
        expires_at: DELTA_EXPIRES_AT,
        nodes: vec![node()],
        base_digest: entries_digest(&base),
        result_digest: entries_digest(&result),
        upserts: upserts.clone(),
        removals: vec![removal],
        signature: [0; 64],
    }
    .sign(&SigningKey::from_bytes(&REGION_KEY));
    let mut v = Vector::new(name);
    if full {
        v.put("from-seq", SEQ)
            .put("to-seq", SEQ + 1)
            .put("issued-at", DELTA_ISSUED_AT)
            .put("expires-at", DELTA_EXPIRES_AT)
            .put_hex("base-digest", &entries_digest(&base))
            .put_hex("result-digest", &entries_digest(&result));
    }
    for e in &upserts {
        v.put_hex("upsert", &encoded(e));
    }
    v.put("removal", removal).put_hex("delta", &delta);
    let mut dir = Directory::new(Anchor::from_json(&anchor_json()).unwrap());
    let snapshot = Snapshot::build(
        &kanto_cert(),
        &SigningKey::from_bytes(&REGION_KEY),
        SEQ,
        ISSUED_AT,
        EXPIRES_AT,
        &[node()],
        &base,
    );
    dir.apply_snapshot(&snapshot).unwrap();
    v.put(
        "result",
        match dir.apply_delta(&delta) {
            Ok(_) => "accepted".to_string(),
            Err(e) => error_name(&e),
        },
    );
    v
}

/// Applies SPEC.md's bytes and checks the outcome SPEC.md states.
fn outcome(dir: &mut Directory, file: &[u8], delta: bool) -> String {
    let r = if delta {
        dir.apply_delta(file)
    } else {
        dir.apply_snapshot(file)
    };
    match r {
        Ok(_) => "accepted".to_string(),
        Err(e) => error_name(&e),
    }
}

#[test]
fn several_entries_vectors_match_spec() {
    let text = spec::spec_text();
    let s2 = spec::check(
        &text,
        &kanto_snapshot_vector("directory-snapshot-2", &kanto_entries(), true),
    );
    // Out of office order: the digest over the entries as listed matches; the order does not.
    let unsorted = [yokohama(), entry(Status::Active)];
    let s3 = spec::check(
        &text,
        &kanto_snapshot_vector("directory-snapshot-3", &unsorted, false),
    );
    let d2 = spec::check(
        &text,
        &kanto_delta_vector("directory-delta-2", vec![aozora(true), kawasaki()], true),
    );
    let d3 = spec::check(
        &text,
        &kanto_delta_vector("directory-delta-3", vec![kawasaki(), aozora(true)], false),
    );

    // By hand: a snapshot's digest is SHA-256 over its entries' bytes as the file lists them,
    // and they are the file's tail.
    for v in [&s2, &s3] {
        let entries: Vec<u8> = v
            .all("entry")
            .iter()
            .flat_map(|h| hex::decode(h).unwrap())
            .collect();
        assert_eq!(
            sha256(&entries).as_slice(),
            v.hex("entries-digest").as_slice()
        );
        assert!(v.hex("snapshot").ends_with(&entries));
        // The same certificate in both.
        assert!(v.hex("snapshot")[8..].starts_with(&s2.hex("region-cert")));
    }
    // The certificate lists both prefectures, one byte each.
    let cert = s2.hex("region-cert");
    let prefectures: Vec<u8> = s2
        .all("prefecture")
        .iter()
        .map(|p| p.parse().unwrap())
        .collect();
    let at = 8 + 1 + s2.get("region").len() + 2 + s2.get("region-name").len() + 32;
    assert_eq!(usize::from(cert[at]), prefectures.len());
    assert_eq!(
        &cert[at + 1..at + 1 + prefectures.len()],
        prefectures.as_slice()
    );

    // Through the crate, SPEC.md's bytes give SPEC.md's outcomes.
    let anchor = || Directory::new(Anchor::from_json(&anchor_json()).unwrap());
    assert_eq!(
        outcome(&mut anchor(), &s3.hex("snapshot"), false),
        s3.get("result")
    );
    assert_eq!(s3.get("result"), "Malformed");
    for d in [&d2, &d3] {
        let mut dir = anchor();
        assert_eq!(
            outcome(&mut dir, &s2.hex("snapshot"), false),
            s2.get("result")
        );
        assert_eq!(outcome(&mut dir, &d.hex("delta"), true), d.get("result"));
        // By hand: the held entries less the removal, with the upserts, in office order, hash
        // to the result digest.
        let mut result: Vec<Vec<u8>> = s2
            .all("entry")
            .iter()
            .map(|h| hex::decode(h).unwrap())
            .filter(|e| !d.all("removal").iter().any(|o| e.starts_with(o.as_bytes())))
            .collect();
        for u in d.all("upsert") {
            let u = hex::decode(u).unwrap();
            result.retain(|e| e[..10] != u[..10]);
            result.push(u);
        }
        result.sort_by(|a, b| a[..10].cmp(&b[..10]));
        assert_eq!(
            sha256(&result.concat()).as_slice(),
            d2.hex("result-digest").as_slice()
        );
    }
    assert_eq!(d2.get("result"), "accepted");
    assert_eq!(d3.get("result"), "Malformed");
    let mut dir = anchor();
    dir.apply_snapshot(&s2.hex("snapshot")).unwrap();
    dir.apply_delta(&d2.hex("delta")).unwrap();
    let region = dir.region(KANTO).unwrap();
    assert_eq!(
        region.entries.entries().unwrap(),
        [aozora(true), yokohama(), kawasaki()]
    );
}

/// 1310000021 after its rotation, naming the vector's directory node as its mailbox.
fn aozora_with_mailbox() -> Entry {
    Entry {
        mailboxes: vec![public(&NODE_ED25519)],
        ..aozora(true)
    }
}

/// An entry's format 2 bytes: those of format 1 and the mailbox list (a count, then the keys).
fn encoded_2(e: &Entry) -> Vec<u8> {
    if e.mailboxes.is_empty() {
        let mut out = encoded(e);
        out.push(0);
        out
    } else {
        // A one-entry snapshot naming a mailbox is of format 2 already.
        encoded(e)
    }
}

/// SPEC.md §6.3/§6.4 format 2: a delta naming a mailbox, applied to the format 1 snapshot
/// directory-snapshot-2, and the snapshot of the result.
#[test]
fn format_2_vectors_match_spec() {
    let text = spec::spec_text();
    let region_key = SigningKey::from_bytes(&REGION_KEY);
    let base = kanto_entries();
    let result = vec![aozora_with_mailbox(), yokohama(), kawasaki()];
    let removal = OfficeNumber::parse(OFFICE).unwrap();
    let upserts = vec![aozora_with_mailbox(), kawasaki()];
    let delta = Delta {
        cert: kanto_cert(),
        from_seq: SEQ,
        to_seq: SEQ + 1,
        issued_at: DELTA_ISSUED_AT,
        expires_at: DELTA_EXPIRES_AT,
        nodes: vec![node()],
        base_digest: entries_digest(&base),
        result_digest: entries_digest(&result),
        upserts: upserts.clone(),
        removals: vec![removal],
        signature: [0; 64],
    }
    .sign(&region_key);
    let snapshot = Snapshot::build(
        &kanto_cert(),
        &region_key,
        SEQ + 1,
        DELTA_ISSUED_AT,
        DELTA_EXPIRES_AT,
        &[node()],
        &result,
    );
    let mut dv = Vector::new("directory-delta-4");
    dv.put_hex("mailbox-key", &public(&NODE_ED25519))
        .put_hex("result-digest", &entries_digest(&result));
    for e in &upserts {
        dv.put_hex("upsert", &encoded_2(e));
    }
    dv.put("removal", removal).put_hex("delta", &delta);
    let mut sv = Vector::new("directory-snapshot-4");
    for e in &result {
        sv.put_hex("entry", &encoded_2(e));
    }
    sv.put_hex("entries-digest", &entries_digest(&result))
        .put_hex("snapshot", &snapshot);
    let d4 = spec::check(&text, &dv);
    let s4 = spec::check(&text, &sv);
    let s2 = spec::check(
        &text,
        &kanto_snapshot_vector("directory-snapshot-2", &kanto_entries(), true),
    );

    // By hand: both files say format 2; an entry's format 2 bytes are its format 1 bytes and
    // the mailbox list; the digest is SHA-256 over every entry's format 2 bytes, also those
    // carried over from the format 1 base.
    assert_eq!(d4.hex("delta")[..8], *b"RENKEID\x02");
    assert_eq!(s4.hex("snapshot")[..8], *b"RENKEIS\x02");
    let entries: Vec<Vec<u8>> = s4
        .all("entry")
        .iter()
        .map(|h| hex::decode(h).unwrap())
        .collect();
    let mut named = encoded(&aozora(true));
    named.push(1);
    named.extend(d4.hex("mailbox-key"));
    assert_eq!(entries[0], named);
    let yokohama_1 = hex::decode(s2.all("entry")[2]).unwrap();
    assert_eq!(entries[1], [yokohama_1.as_slice(), &[0]].concat());
    assert_eq!(
        sha256(&entries.concat()).as_slice(),
        s4.hex("entries-digest").as_slice()
    );
    assert_eq!(d4.hex("result-digest"), s4.hex("entries-digest"));
    assert!(s4.hex("snapshot").ends_with(&entries.concat()));

    // Through the crate: the delta on the format 1 base and the snapshot give one state, and
    // the entry reads back with its mailbox.
    let anchor = || Directory::new(Anchor::from_json(&anchor_json()).unwrap());
    let mut by_delta = anchor();
    by_delta.apply_snapshot(&s2.hex("snapshot")).unwrap();
    by_delta.apply_delta(&d4.hex("delta")).unwrap();
    let mut by_snapshot = anchor();
    by_snapshot.apply_snapshot(&s4.hex("snapshot")).unwrap();
    for dir in [&by_delta, &by_snapshot] {
        let region = dir.region(KANTO).unwrap();
        assert_eq!(
            region.digest.as_slice(),
            s4.hex("entries-digest").as_slice()
        );
        assert_eq!(region.entries.entries().unwrap(), result);
    }
}
