//! The directory's trust story, end to end on bytes: a root certifies region authorities, the
//! authorities publish snapshots and deltas, and an office's `Directory` accepts exactly what the
//! chain vouches for — refusing forgeries, rollbacks, equivocation, out-of-scope entries and
//! garbage with the error that names the cause.

use ed25519_dalek::SigningKey;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha20Rng;
use renkei_directory::{
    Anchor, Applied, Delta, Directory, DirectoryError, EnrollmentRequest, Entry, Freshness,
    NodeInfo, OfficeKey, RegionCert, RegionWorkspace, RotationRequest, Snapshot, Status,
    WorkspaceError, entries_digest,
};
use renkei_protocol::{OfficeNumber, ServiceKind};

/// 2026-09-21, the authorities' clock in every test.
const T0: u64 = 1_790_000_000;
const HOUR: u64 = 3600;
const DAY: u64 = 86400;
const YEAR: u64 = 365 * DAY;

fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

fn root() -> SigningKey {
    key(1)
}

fn anchor() -> Anchor {
    anchor_with(&[&root()])
}

fn anchor_with(roots: &[&SigningKey]) -> Anchor {
    let roots: Vec<String> = roots
        .iter()
        .map(|k| format!("\"{}\"", hex::encode(k.verifying_key().to_bytes())))
        .collect();
    Anchor::from_json(&format!(
        r#"{{"format":"renkei-anchor/1","federation":"test","roots":[{}]}}"#,
        roots.join(",")
    ))
    .unwrap()
}

fn office(s: &str) -> OfficeNumber {
    OfficeNumber::parse(s).unwrap()
}

fn kind(s: &str) -> ServiceKind {
    ServiceKind::parse(s).unwrap()
}

/// A region authority: its key and its certificate from `root`.
struct Authority {
    key: SigningKey,
    cert: RegionCert,
}

fn authority(
    root: &SigningKey,
    region: &str,
    name: &str,
    seed: u8,
    prefectures: Vec<u8>,
) -> Authority {
    let key = key(seed);
    let cert = RegionCert::issue(
        root,
        region,
        name,
        key.verifying_key().to_bytes(),
        prefectures,
        T0 - YEAR,
        T0 + 5 * YEAR,
    );
    Authority { key, cert }
}

fn tokyo() -> Authority {
    authority(&root(), "13-tokyo", "東京都介護支援専門員協会", 2, vec![13])
}

fn osaka() -> Authority {
    authority(&root(), "27-osaka", "大阪府介護支援専門員協会", 3, vec![27])
}

/// An enrollment request from the office `number`, whose identity key is `key(seed)`.
fn request(number: &str, name: &str, seed: u8) -> EnrollmentRequest {
    EnrollmentRequest::new(
        office(number),
        name,
        vec![kind("43")],
        &key(seed),
        [seed.wrapping_add(100); 32],
        vec![format!("/ip4/203.0.113.{seed}/udp/4001/quic-v1")],
        T0 - HOUR,
    )
}

fn identity(seed: u8) -> [u8; 32] {
    key(seed).verifying_key().to_bytes()
}

/// A Tokyo workspace with two offices approved at T0.
fn tokyo_workspace() -> (Authority, RegionWorkspace) {
    let a = tokyo();
    let mut ws = RegionWorkspace::new(a.cert.clone());
    ws.approve(&request("1310000001", "ケアプランセンター青空", 10), T0)
        .unwrap();
    ws.approve(&request("1310000002", "訪問介護ステーションさくら", 11), T0)
        .unwrap();
    (a, ws)
}

fn snapshot(a: &Authority, seq: u64, entries: &[Entry]) -> Vec<u8> {
    Snapshot::build(&a.cert, &a.key, seq, T0, T0 + 7 * DAY, &[], entries)
}

fn entry(number: &str, name: &str, seed: u8) -> Entry {
    Entry {
        office: office(number),
        name: name.to_string(),
        kinds: vec![kind("43")],
        keys: vec![OfficeKey {
            identity: identity(seed),
            encryption: [seed.wrapping_add(100); 32],
            valid_from: T0 - DAY,
            valid_until: T0 + YEAR,
        }],
        addresses: vec![],
        status: Status::Active,
        mailboxes: Vec::new(),
    }
}

/// Whether the connection gate admits the office holding `identity(seed)` at `now`.
fn admitted(dir: &Directory, seed: u8, now: u64) -> bool {
    dir.active_office_by_key(&identity(seed), now)
        .unwrap()
        .is_some()
}

/// Where `needle` first occurs in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len())
        .position(|w| w == needle)
        .expect("pattern present")
}

/// The length of a snapshot's header (everything before the entries): the same for any
/// entries, since the header commits to them by count and digest only.
fn header_len(a: &Authority) -> usize {
    snapshot(a, 1, &[]).len()
}

#[test]
fn a_new_office_is_admitted_by_partners_whose_clock_is_up_to_a_day_slow() {
    // Requested an hour before T0, approved at T0: a partner whose clock runs 20 hours slow
    // reads "T0 − 21 h" right after the approval, and must admit the office all the same.
    let (a, mut ws) = tokyo_workspace();
    let (_, snap, _) = ws.publish(&a.key, T0);
    let mut dir = Directory::new(anchor());
    dir.apply_snapshot(&snap).unwrap();
    assert!(admitted(&dir, 10, T0 - HOUR - 20 * HOUR));
    assert!(admitted(&dir, 10, T0 - HOUR - DAY));
    // Before that the key was not the office's yet.
    assert!(!admitted(&dir, 10, T0 - HOUR - DAY - 1));
}

#[test]
fn valid_chain_verifies_and_answers_lookups() {
    let (a, mut ws) = tokyo_workspace();
    let (seq, snap, delta) = ws.publish(&a.key, T0);
    assert_eq!(seq, 1);
    assert!(delta.is_none(), "no delta before the first snapshot");

    let parsed = Directory::verify_snapshot(&anchor(), &snap).unwrap();
    assert_eq!(parsed.header.cert.region, "13-tokyo");
    assert_eq!(parsed.entries.len(), 2);

    let mut dir = Directory::new(anchor());
    assert_eq!(
        dir.apply_snapshot(&snap),
        Ok(Applied::Updated {
            region: "13-tokyo".into(),
            seq: 1
        })
    );
    assert_eq!(dir.apply_snapshot(&snap), Ok(Applied::Unchanged));
    assert_eq!(dir.entry_count(), 2);
    assert_eq!(dir.floors().get("13-tokyo"), Some(&1));

    let e = dir.lookup(&office("1310000001")).unwrap().unwrap();
    assert_eq!(e.name, "ケアプランセンター青空");
    assert_eq!(e.status, Status::Active);
    assert_eq!(e.identity_keys_at(T0 + HOUR).len(), 1);
    assert!(dir.lookup(&office("1310000099")).unwrap().is_none());

    let found = dir
        .active_office_by_key(&identity(11), T0 + HOUR)
        .unwrap()
        .unwrap();
    assert_eq!(found.office, office("1310000002"));
    assert_eq!(
        found.sealing_key_at(T0 + HOUR).unwrap().encryption,
        [111; 32]
    );
    assert!(!admitted(&dir, 99, T0 + HOUR));
}

#[test]
fn a_second_root_in_the_anchor_certifies_too() {
    let other_root = key(4);
    let a = authority(&other_root, "27-osaka", "大阪", 3, vec![27]);
    let snap = snapshot(&a, 1, &[entry("2710000001", "大阪ケアプラン", 20)]);
    assert_eq!(
        Directory::new(anchor()).apply_snapshot(&snap),
        Err(DirectoryError::UnknownRoot)
    );
    let mut dir = Directory::new(anchor_with(&[&root(), &other_root]));
    assert!(dir.apply_snapshot(&snap).is_ok());
}

#[test]
fn altered_entry_is_a_digest_mismatch() {
    let a = tokyo();
    let mut revoked = entry("1310000002", "訪問介護ステーションさくら", 11);
    revoked.status = Status::Revoked;
    let snap = snapshot(&a, 1, &[entry("1310000001", "青空", 10), revoked]);
    assert!(Directory::new(anchor()).apply_snapshot(&snap).is_ok());

    // Un-revoking an office: its status is the last byte of the file.
    let mut forged = snap.clone();
    *forged.last_mut().unwrap() = 0;
    assert_eq!(
        Directory::new(anchor()).apply_snapshot(&forged),
        Err(DirectoryError::DigestMismatch)
    );

    // Swapping in an attacker's encryption key for an office.
    let mut forged = snap.clone();
    let at = find(&forged, &[110; 32]);
    forged[at..at + 32].copy_from_slice(&[66; 32]);
    assert_eq!(
        Directory::new(anchor()).apply_snapshot(&forged),
        Err(DirectoryError::DigestMismatch)
    );
}

#[test]
fn inserted_or_substituted_entry_is_refused() {
    let a = tokyo();
    let h = header_len(&a);
    let good = entry("1310000001", "青空", 10);
    let other = entry("1310000003", "みどり", 12);
    let intruder = entry("1310000002", "なりすまし居宅介護支援事業所", 66);
    let snap = snapshot(&a, 1, &[good.clone(), other.clone()]);
    let with_intruder = snapshot(&a, 1, &[good.clone(), intruder.clone(), other.clone()]);

    // The intruder's record put in place of a genuine one (the header and its count untouched).
    let mut forged = snap[..h].to_vec();
    forged.extend_from_slice(&snapshot(&a, 1, &[good.clone(), intruder.clone()])[h..]);
    assert_eq!(
        Directory::new(anchor()).apply_snapshot(&forged),
        Err(DirectoryError::DigestMismatch)
    );

    // Inserted with the signed count left as it was: the count ends the entries early.
    let mut forged = snap[..h].to_vec();
    forged.extend_from_slice(&with_intruder[h..]);
    assert_eq!(
        Directory::new(anchor()).apply_snapshot(&forged),
        Err(DirectoryError::Malformed("trailing bytes"))
    );

    // Inserted with the count raised: the count is signed.
    let count_at = h - 64 - 32 - 4;
    forged[count_at..count_at + 4].copy_from_slice(&3u32.to_be_bytes());
    assert_eq!(
        Directory::new(anchor()).apply_snapshot(&forged),
        Err(DirectoryError::BadSignature)
    );

    // Re-signed by a key that is not the region's, under the genuine certificate.
    let impostor = Authority {
        key: key(66),
        cert: a.cert.clone(),
    };
    let forged = snapshot(&impostor, 1, &[good, intruder, other]);
    assert_eq!(
        Directory::new(anchor()).apply_snapshot(&forged),
        Err(DirectoryError::BadSignature)
    );
}

#[test]
fn certificate_from_an_unknown_root_is_refused() {
    let a = authority(&key(99), "13-tokyo", "偽の協会", 2, vec![13]);
    let snap = snapshot(&a, 1, &[entry("1310000001", "青空", 10)]);
    assert_eq!(
        Directory::new(anchor()).apply_snapshot(&snap),
        Err(DirectoryError::UnknownRoot)
    );
}

#[test]
fn tampered_certificate_is_refused() {
    // A region widening its own scope.
    let mut a = tokyo();
    a.cert.prefectures.push(27);
    let snap = snapshot(&a, 1, &[entry("1310000001", "青空", 10)]);
    assert_eq!(
        Directory::new(anchor()).apply_snapshot(&snap),
        Err(DirectoryError::BadCertSignature)
    );

    // An attacker putting their own key into the genuine certificate.
    let mut a = tokyo();
    a.key = key(66);
    a.cert.key = a.key.verifying_key().to_bytes();
    let snap = snapshot(&a, 1, &[entry("1310000001", "青空", 10)]);
    assert_eq!(
        Directory::new(anchor()).apply_snapshot(&snap),
        Err(DirectoryError::BadCertSignature)
    );

    // The same, done on the file's bytes: the prefecture code inside the certificate.
    let a = tokyo();
    let mut snap = snapshot(&a, 1, &[entry("1310000001", "青空", 10)]);
    let at = find(&snap, &a.cert.key) + 32;
    assert_eq!(&snap[at..at + 2], &[1, 13]);
    snap[at + 1] = 27;
    assert_eq!(
        Directory::new(anchor()).apply_snapshot(&snap),
        Err(DirectoryError::BadCertSignature)
    );
}

/// Encodings of Ed25519 points an anchor or a certificate must not carry as a key (SPEC.md
/// §6.2): the identity and another point of small order, and a non-canonical encoding (y ≥ p)
/// of a point that is not of small order.
fn invalid_keys() -> Vec<[u8; 32]> {
    let identity = {
        let mut b = [0u8; 32];
        b[0] = 1;
        b
    };
    // y = 0 (x² = -1): a point of order 4.
    let order_four = [0u8; 32];
    // y = p + k for the first k that decodes to a point of large order: 2^255 - 19 + k.
    let non_canonical = (2u8..19)
        .map(|k| {
            let mut b = [0xFF; 32];
            b[0] = 0xED + k;
            b[31] = 0x7F;
            b
        })
        .find(|b| ed25519_dalek::VerifyingKey::from_bytes(b).is_ok_and(|k| !k.is_weak()))
        .expect("a non-canonical encoding that decodes");
    for weak in [identity, order_four] {
        assert!(
            ed25519_dalek::VerifyingKey::from_bytes(&weak)
                .unwrap()
                .is_weak()
        );
    }
    vec![identity, order_four, non_canonical]
}

#[test]
fn root_and_region_keys_must_be_canonical_and_not_of_small_order() {
    for bad in invalid_keys() {
        // As a root: the anchor is refused.
        let json = format!(
            r#"{{"format":"renkei-anchor/1","federation":"test","roots":["{}","{}"]}}"#,
            hex::encode(root().verifying_key().to_bytes()),
            hex::encode(bad)
        );
        assert_eq!(
            Anchor::from_json(&json),
            Err(DirectoryError::Malformed("anchor root keys")),
            "{}",
            hex::encode(bad)
        );
        // As a region key: the certificate is malformed (not a bad signature later on).
        let cert = RegionCert::issue(
            &root(),
            "13-tokyo",
            "東京",
            bad,
            vec![13],
            T0 - YEAR,
            T0 + YEAR,
        );
        let a = Authority { key: key(2), cert };
        assert_eq!(
            Directory::new(anchor()).apply_snapshot(&snapshot(&a, 1, &[])),
            Err(DirectoryError::Malformed("region key")),
            "{}",
            hex::encode(bad)
        );
    }
    // Hex digits in either case name the same root.
    let upper = format!(
        r#"{{"format":"renkei-anchor/1","federation":"test","roots":["{}"]}}"#,
        hex::encode_upper(root().verifying_key().to_bytes())
    );
    let upper = Anchor::from_json(&upper).unwrap();
    assert_eq!(upper.root_keys(), anchor().root_keys());
    let mut dir = Directory::new(upper);
    assert!(dir.apply_snapshot(&snapshot(&tokyo(), 1, &[])).is_ok());
}

#[test]
fn certificate_must_cover_the_issue_time() {
    let k = key(2);
    let cert = RegionCert::issue(
        &root(),
        "13-tokyo",
        "東京",
        k.verifying_key().to_bytes(),
        vec![13],
        T0 - 2 * YEAR,
        T0 - YEAR,
    );
    let a = Authority { key: k, cert };
    assert_eq!(
        Directory::new(anchor()).apply_snapshot(&snapshot(&a, 1, &[])),
        Err(DirectoryError::CertNotValid)
    );
}

#[test]
fn entry_outside_the_region_is_refused() {
    let a = tokyo();
    let osaka_office = entry("2710000001", "大阪ケアプランセンター", 20);
    let snap = snapshot(&a, 1, &[entry("1310000001", "青空", 10), osaka_office]);
    assert_eq!(
        Directory::new(anchor()).apply_snapshot(&snap),
        Err(DirectoryError::OutOfScope {
            office: office("2710000001"),
            region: "13-tokyo".into()
        })
    );

    let mut ws = RegionWorkspace::new(a.cert.clone());
    assert_eq!(
        ws.approve(&request("2710000001", "大阪ケアプランセンター", 20), T0),
        Err(WorkspaceError::OutOfScope(office("2710000001")))
    );
    assert!(ws.entries.is_empty());
}

#[test]
fn entries_out_of_order_or_duplicated_are_malformed() {
    let a = tokyo();
    let one = entry("1310000001", "青空", 10);
    let two = entry("1310000002", "さくら", 11);
    for entries in [[two.clone(), one.clone()], [one.clone(), one.clone()]] {
        assert_eq!(
            Directory::new(anchor()).apply_snapshot(&snapshot(&a, 1, &entries)),
            Err(DirectoryError::Malformed(
                "entries not in ascending office order"
            ))
        );
    }
}

/// SPEC.md §6.3: what a reader checks in an entry. Refused (`Malformed`): a kind that is not two
/// of `0`–`9`, `A`–`Z`, a name or an address that is not UTF-8, a status other than 0 or 1.
/// Accepted as they are: addresses that are no multiaddr, no kinds or more than §6.7 allows.
#[test]
fn entry_fields_checked_when_read() {
    let a = tokyo();
    let mut e = entry("1310000001", "青空", 10);
    e.kinds = vec![kind("43"), kind("A2")];
    e.addresses = vec!["/ip4/192.0.2.7/tcp/4001".into()];
    let good = snapshot(&a, 1, std::slice::from_ref(&e));
    // The entry is the file's tail: office, name, kinds, keys, addresses, status.
    let at = header_len(&a);
    assert_eq!(
        good.len() - at,
        10 + 2 + "青空".len() + 1 + 4 + 1 + 80 + 1 + 2 + e.addresses[0].len() + 1
    );
    assert_eq!(&good[at..at + 10], b"1310000001");
    let kinds = at + 10 + 2 + "青空".len();
    assert_eq!(&good[kinds..kinds + 5], b"\x0243A2");
    let name = at + 12;
    let address = good.len() - 1 - e.addresses[0].len();
    let status = good.len() - 1;
    let malformed = |what| Err(DirectoryError::Malformed(what));
    for (what, at, byte, want) in [
        (
            "a kind in lower case",
            kinds + 4,
            b'a',
            malformed("service kind"),
        ),
        (
            "a kind with a space",
            kinds + 1,
            b' ',
            malformed("service kind"),
        ),
        (
            "a name that is not UTF-8",
            name,
            0xFF,
            malformed("text that is not UTF-8"),
        ),
        (
            "an address that is not UTF-8",
            address,
            0xC0,
            malformed("text that is not UTF-8"),
        ),
        ("status 2", status, 2, malformed("status")),
    ] {
        let mut bad = good.clone();
        bad[at] = byte;
        assert_eq!(
            Directory::new(anchor()).apply_snapshot(&bad),
            want,
            "{what}"
        );
        assert_eq!(
            Snapshot::parse(&bad).map(|_| ()),
            want.map(|_| ()),
            "{what}"
        );
    }

    // Not checked when read: an address that is no multiaddr, no kinds at all, more kinds and
    // addresses than the authority writes (§6.7).
    let mut odd = entry("1310000002", "", 11);
    odd.kinds = vec![];
    odd.addresses = vec!["not a multiaddr".into(); 17];
    let mut many = entry("1310000003", "多", 12);
    many.kinds = vec![kind("43"); 51];
    let mut dir = Directory::new(anchor());
    dir.apply_snapshot(&snapshot(&a, 1, &[odd.clone(), many.clone()]))
        .unwrap();
    assert_eq!(dir.lookup(&odd.office).unwrap(), Some(odd));
    assert_eq!(dir.lookup(&many.office).unwrap(), Some(many));
}

#[test]
fn revoked_office_can_neither_send_nor_receive() {
    let (a, mut ws) = tokyo_workspace();
    let (_, first, _) = ws.publish(&a.key, T0);
    ws.revoke(&office("1310000002")).unwrap();
    assert_eq!(
        ws.revoke(&office("1310000099")),
        Err(WorkspaceError::NotFound(office("1310000099")))
    );
    let (_, second, delta) = ws.publish(&a.key, T0 + HOUR);

    let mut by_snapshot = Directory::new(anchor());
    by_snapshot.apply_snapshot(&first).unwrap();
    assert!(admitted(&by_snapshot, 11, T0 + HOUR));
    by_snapshot.apply_snapshot(&second).unwrap();

    let mut by_delta = Directory::new(anchor());
    by_delta.apply_snapshot(&first).unwrap();
    by_delta.apply_delta(&delta.unwrap()).unwrap();

    for dir in [&by_snapshot, &by_delta] {
        let now = T0 + 2 * HOUR;
        let e = dir.lookup(&office("1310000002")).unwrap().unwrap();
        assert_eq!(e.status, Status::Revoked);
        assert!(!e.is_active());
        assert!(e.identity_keys_at(now).is_empty());
        assert!(e.sealing_key_at(now).is_none());
        assert!(!admitted(dir, 11, now));
        // The other office is untouched.
        assert!(admitted(dir, 10, now));
    }
}

#[test]
fn older_snapshot_is_a_rollback() {
    let (a, mut ws) = tokyo_workspace();
    let (_, s1, _) = ws.publish(&a.key, T0);
    let (_, s2, _) = ws.publish(&a.key, T0 + HOUR);

    let mut dir = Directory::new(anchor());
    dir.apply_snapshot(&s2).unwrap();
    let rollback = Err(DirectoryError::Rollback {
        region: "13-tokyo".into(),
        have: 2,
        got: 1,
    });
    assert_eq!(dir.apply_snapshot(&s1), rollback);
    assert_eq!(dir.region("13-tokyo").unwrap().seq, 2);

    // After a restart: the floor kept on disk refuses what the fresh view would not know of.
    let mut restarted = Directory::new(anchor());
    restarted.set_floor("13-tokyo", 2);
    restarted.set_floor("13-tokyo", 1); // a floor never goes down
    assert_eq!(restarted.apply_snapshot(&s1), rollback);
    assert!(restarted.region("13-tokyo").is_none());
    assert!(restarted.apply_snapshot(&s2).is_ok());
}

#[test]
fn delta_below_the_floor_is_a_rollback() {
    let (a, mut ws) = tokyo_workspace();
    let (_, s1, _) = ws.publish(&a.key, T0);
    let (_, _, d2) = ws.publish(&a.key, T0 + HOUR);
    let (_, s3, _) = ws.publish(&a.key, T0 + 2 * HOUR);

    // Restarted from a cached seq-1 snapshot after having seen seq 3.
    let mut dir = Directory::new(anchor());
    dir.apply_snapshot(&s1).unwrap();
    dir.set_floor("13-tokyo", 3);
    assert_eq!(
        dir.apply_delta(&d2.unwrap()),
        Err(DirectoryError::Rollback {
            region: "13-tokyo".into(),
            have: 3,
            got: 2
        })
    );
    assert_eq!(dir.region("13-tokyo").unwrap().seq, 1);
    assert!(dir.apply_snapshot(&s3).is_ok());
}

#[test]
fn same_sequence_with_other_content_is_equivocation() {
    let a = tokyo();
    let one = snapshot(&a, 1, &[entry("1310000001", "青空", 10)]);
    let other = snapshot(&a, 1, &[entry("1310000001", "青空", 12)]);
    let mut dir = Directory::new(anchor());
    dir.apply_snapshot(&one).unwrap();
    assert_eq!(
        dir.apply_snapshot(&other),
        Err(DirectoryError::Equivocation {
            region: "13-tokyo".into(),
            seq: 1
        })
    );
    assert_eq!(
        dir.lookup(&office("1310000001")).unwrap().unwrap().keys[0].identity,
        identity(10)
    );
    assert_eq!(dir.apply_snapshot(&one), Ok(Applied::Unchanged));
}

#[test]
fn expired_snapshot_is_used_with_a_warning() {
    let (a, mut ws) = tokyo_workspace();
    let (_, snap, _) = ws.publish(&a.key, T0);
    let expires_at = T0 + ws.validity_secs;
    let warn = DAY;

    // Applying takes no clock: an office that was offline for weeks still loads its copy.
    let mut dir = Directory::new(anchor());
    dir.apply_snapshot(&snap).unwrap();
    let state = |now| dir.freshness(now, warn);

    assert_eq!(
        state(T0),
        vec![("13-tokyo".to_string(), 1, expires_at, Freshness::Fresh)]
    );
    assert_eq!(state(expires_at - warn - 1)[0].3, Freshness::Fresh);
    assert_eq!(state(expires_at - warn)[0].3, Freshness::ExpiringSoon);
    assert_eq!(state(expires_at)[0].3, Freshness::ExpiringSoon);
    assert_eq!(state(expires_at + 1)[0].3, Freshness::Expired);
    assert_eq!(state(expires_at + 30 * DAY)[0].3, Freshness::Expired);

    let later = expires_at + 30 * DAY;
    assert!(admitted(&dir, 10, later));
    assert!(dir.lookup(&office("1310000002")).unwrap().is_some());
}

#[test]
fn key_rotation_overlaps_then_hands_over() {
    let (a, mut ws) = tokyo_workspace();
    let number = office("1310000001");
    let (old, new) = (key(10), key(30));
    let starts = T0 + DAY;
    let rotation = RotationRequest::new(number, &old, &new, [130; 32], starts, T0 + 10 * YEAR);
    assert!(rotation.verify().is_ok());
    ws.rotate(&rotation).unwrap();
    let (_, snap, _) = ws.publish(&a.key, T0 + HOUR);

    let mut dir = Directory::new(anchor());
    dir.apply_snapshot(&snap).unwrap();
    let holder = |key: &[u8; 32], now| {
        dir.active_office_by_key(key, now)
            .unwrap()
            .map(|e| e.office)
    };
    let sealing = |now| {
        dir.lookup(&number)
            .unwrap()
            .unwrap()
            .sealing_key_at(now)
            .map(|k| k.identity)
    };

    // Before the new key starts: only the old one, and partners seal to it.
    let before = starts - 1;
    assert_eq!(holder(&identity(10), before), Some(number));
    assert_eq!(holder(&identity(30), before), None);
    assert_eq!(sealing(before), Some(identity(10)));

    // During the overlap: both are accepted, partners seal to the new one.
    for now in [starts, starts + DAY, starts + ws.overlap_secs] {
        assert_eq!(holder(&identity(10), now), Some(number));
        assert_eq!(holder(&identity(30), now), Some(number));
        assert_eq!(sealing(now), Some(identity(30)));
        assert_eq!(
            dir.lookup(&number)
                .unwrap()
                .unwrap()
                .identity_keys_at(now)
                .len(),
            2
        );
    }

    // After the overlap: only the new key.
    let after = starts + ws.overlap_secs + 1;
    assert_eq!(holder(&identity(10), after), None);
    assert_eq!(holder(&identity(30), after), Some(number));
    assert_eq!(sealing(after), Some(identity(30)));

    // The next publish after the overlap drops the old key from the entry and the index.
    let (_, snap, _) = ws.publish(&a.key, after);
    dir.apply_snapshot(&snap).unwrap();
    assert_eq!(dir.lookup(&number).unwrap().unwrap().keys.len(), 1);
    assert_eq!(
        dir.active_office_by_key(&identity(10), starts).unwrap(),
        None
    );
}

#[test]
fn rotation_must_be_signed_by_the_current_key() {
    let (_, mut ws) = tokyo_workspace();
    let number = office("1310000001");

    // Signed by some other office's key.
    let stranger = RotationRequest::new(number, &key(11), &key(66), [1; 32], T0, T0 + YEAR);
    assert_eq!(ws.rotate(&stranger), Err(WorkspaceError::NotCurrentKey));

    // Claims the current key but was not signed by it.
    let mut forged = RotationRequest::new(number, &key(66), &key(67), [1; 32], T0, T0 + YEAR);
    forged.old_identity = identity(10);
    assert_eq!(
        ws.rotate(&forged),
        Err(WorkspaceError::Invalid(DirectoryError::BadSignature))
    );

    // Once rotated, the superseded key may no longer rotate (a stolen old key must not be
    // able to take the office over during the overlap).
    let rotation = RotationRequest::new(number, &key(10), &key(30), [130; 32], T0, T0 + YEAR);
    ws.rotate(&rotation).unwrap();
    let hijack = RotationRequest::new(number, &key(10), &key(66), [66; 32], T0, T0 + YEAR);
    assert_eq!(ws.rotate(&hijack), Err(WorkspaceError::NotCurrentKey));
    let next = RotationRequest::new(number, &key(30), &key(31), [131; 32], T0, T0 + YEAR);
    assert!(ws.rotate(&next).is_ok());

    let missing = RotationRequest::new(office("1310000099"), &key(9), &key(8), [1; 32], T0, T0);
    assert_eq!(
        ws.rotate(&missing),
        Err(WorkspaceError::NotFound(office("1310000099")))
    );
}

#[test]
fn rotation_with_a_far_future_start_does_not_overflow() {
    let (_, mut ws) = tokyo_workspace();
    let number = office("1310000001");
    let rotation = RotationRequest::new(number, &key(10), &key(30), [130; 32], u64::MAX, u64::MAX);
    ws.rotate(&rotation).unwrap();
    let old = &ws.entries[&number].keys[0];
    assert_eq!(old.valid_until, T0 + 10 * YEAR);
}

/// The Tokyo workspace through four publishes with approvals, revocations, rotations, an
/// address change and a removal in between. Returns the snapshots and deltas.
fn history() -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let (a, mut ws) = tokyo_workspace();
    let mut snaps = Vec::new();
    let mut deltas = Vec::new();
    let mut publish = |ws: &mut RegionWorkspace, now| {
        let (_, s, d) = ws.publish(&a.key, now);
        snaps.push(s);
        deltas.extend(d);
    };
    publish(&mut ws, T0);

    ws.approve(
        &request("1310000003", "デイサービスセンターひまわり", 12),
        T0,
    )
    .unwrap();
    ws.approve(&request("1310000004", "居宅介護支援事業所つばさ", 13), T0)
        .unwrap();
    ws.revoke(&office("1310000002")).unwrap();
    publish(&mut ws, T0 + HOUR);

    let rotation = RotationRequest::new(
        office("1310000001"),
        &key(10),
        &key(30),
        [130; 32],
        T0 + DAY,
        T0 + 10 * YEAR,
    );
    ws.rotate(&rotation).unwrap();
    ws.set_addresses(
        &office("1310000003"),
        vec!["/ip4/198.51.100.3/udp/4001/quic-v1".into()],
    )
    .unwrap();
    publish(&mut ws, T0 + 2 * HOUR);

    ws.entries.remove(&office("1310000002"));
    ws.approve(&request("1310000005", "訪問看護ステーションあおば", 14), T0)
        .unwrap();
    // Past the overlap: the rotated-out key is dropped.
    publish(&mut ws, T0 + 20 * DAY);
    (snaps, deltas)
}

#[test]
fn deltas_reach_the_same_state_as_the_last_snapshot() {
    let (snaps, deltas) = history();
    assert_eq!((snaps.len(), deltas.len()), (4, 3));

    // In memory and kept on disk (what an office node does): the same results.
    let scratch = tempfile::tempdir().unwrap();
    let mut incremental = Directory::new(anchor());
    let mut on_disk = Directory::on_disk(anchor(), scratch.path());
    for dir in [&mut incremental, &mut on_disk] {
        dir.apply_snapshot(&snaps[0]).unwrap();
        for (i, d) in deltas.iter().enumerate() {
            assert_eq!(
                dir.apply_delta(d),
                Ok(Applied::Updated {
                    region: "13-tokyo".into(),
                    seq: i as u64 + 2
                })
            );
        }
    }
    let mut direct = Directory::new(anchor());
    direct.apply_snapshot(snaps.last().unwrap()).unwrap();
    let mut direct_on_disk = Directory::on_disk(anchor(), scratch.path());
    direct_on_disk
        .apply_snapshot(snaps.last().unwrap())
        .unwrap();
    for other in [&on_disk, &direct_on_disk] {
        let (x, y) = (
            incremental.region("13-tokyo").unwrap(),
            other.region("13-tokyo").unwrap(),
        );
        assert_eq!((x.seq, x.digest), (y.seq, y.digest));
        assert_eq!(x.entries.entries(), y.entries.entries());
        assert!(format!("{:?}", y.entries).contains("file"));
        for e in x.entries.entries().unwrap() {
            assert_eq!(other.lookup(&e.office).unwrap(), Some(e));
        }
    }
    // (On Windows a scratch file has a name while it is open.)
    #[cfg(unix)]
    assert!(
        std::fs::read_dir(scratch.path()).unwrap().next().is_none(),
        "scratch files have no names"
    );

    let (x, y) = (
        incremental.region("13-tokyo").unwrap(),
        direct.region("13-tokyo").unwrap(),
    );
    assert_eq!(x.seq, 4);
    assert_eq!(x.seq, y.seq);
    assert_eq!(x.digest, y.digest);
    assert_eq!(x.entries.entries().unwrap(), y.entries.entries().unwrap());
    assert_eq!(x.expires_at, y.expires_at);
    assert_eq!(x.issued_at, y.issued_at);
    assert_eq!(x.nodes, y.nodes);
    assert_eq!(x.cert, y.cert);
    assert_eq!(
        x.entries
            .offices()
            .iter()
            .map(|o| o.as_str())
            .collect::<Vec<_>>(),
        ["1310000001", "1310000003", "1310000004", "1310000005"]
    );
    assert_eq!(
        x.entries.get(&office("1310000001")).unwrap().unwrap().keys[0].identity,
        identity(30)
    );

    // The identity-key index follows the deltas too.
    let now = T0 + 20 * DAY;
    for dir in [&incremental, &direct, &on_disk, &direct_on_disk] {
        assert!(!admitted(dir, 10, now));
        assert!(!admitted(dir, 11, now));
        for seed in [30, 12, 13, 14] {
            assert!(admitted(dir, seed, now));
        }
    }

    // Replaying and going back.
    assert_eq!(
        incremental.apply_delta(deltas.last().unwrap()),
        Ok(Applied::Unchanged)
    );
    assert_eq!(
        incremental.apply_delta(&deltas[0]),
        Err(DirectoryError::Rollback {
            region: "13-tokyo".into(),
            have: 4,
            got: 2
        })
    );
}

#[test]
fn delta_with_the_wrong_base_is_refused() {
    let (snaps, deltas) = history();
    let mut dir = Directory::new(anchor());
    dir.apply_snapshot(&snaps[0]).unwrap();
    assert_eq!(
        dir.apply_delta(&deltas[1]),
        Err(DirectoryError::DeltaBase { have: 1, from: 2 })
    );
    assert_eq!(dir.region("13-tokyo").unwrap().seq, 1);
}

/// A Tokyo delta from seq 1 (holding `base`) to seq 2, with the result digest of `result`.
fn tokyo_delta(
    base: &[Entry],
    upserts: Vec<Entry>,
    removals: &[&str],
    result: &[Entry],
) -> Vec<u8> {
    let a = tokyo();
    Delta {
        cert: a.cert.clone(),
        from_seq: 1,
        to_seq: 2,
        issued_at: T0 + HOUR,
        expires_at: T0 + 7 * DAY,
        nodes: vec![],
        base_digest: entries_digest(base),
        result_digest: entries_digest(result),
        upserts,
        removals: removals.iter().map(|o| office(o)).collect(),
        signature: [0; 64],
    }
    .sign(&a.key)
}

/// SPEC.md §6.4: a delta writes its change one way only. Upserts and removals each in strictly
/// ascending office order, no office in both, only held offices removed; else `Malformed`,
/// even when the result digest is that of some reading of it.
#[test]
fn a_delta_has_one_reading_or_is_malformed() {
    let one = entry("1310000001", "青空", 10);
    let two = entry("1310000002", "さくら", 11);
    let three = entry("1310000003", "ひまわり", 12);
    let base = vec![one.clone(), two.clone()];
    let mut one_b = one.clone();
    one_b.name = "青空（新）".into();
    let held = || {
        let mut dir = Directory::new(anchor());
        dir.apply_snapshot(&snapshot(&tokyo(), 1, &base)).unwrap();
        dir
    };
    let malformed = |what| Err(DirectoryError::Malformed(what));
    let cases = [
        (
            "the same office upserted twice",
            tokyo_delta(
                &base,
                vec![one.clone(), one_b.clone()],
                &[],
                &[one_b.clone(), two.clone()],
            ),
            malformed("delta upserts not in ascending office order"),
        ),
        (
            "upserts out of order",
            tokyo_delta(
                &base,
                vec![three.clone(), one_b.clone()],
                &[],
                &[one_b.clone(), two.clone(), three.clone()],
            ),
            malformed("delta upserts not in ascending office order"),
        ),
        (
            "removals out of order",
            tokyo_delta(&base, vec![], &["1310000002", "1310000001"], &[]),
            malformed("delta removals not in ascending office order"),
        ),
        (
            "the same office removed twice",
            tokyo_delta(
                &base,
                vec![],
                &["1310000002", "1310000002"],
                std::slice::from_ref(&one),
            ),
            malformed("delta removals not in ascending office order"),
        ),
        (
            "an office upserted and removed",
            tokyo_delta(
                &base,
                vec![one_b.clone()],
                &["1310000001"],
                &[one_b.clone(), two.clone()],
            ),
            malformed("delta upserts and removes the same office"),
        ),
        (
            "an office removed that is not held",
            tokyo_delta(&base, vec![], &["1310000009"], &base),
            malformed("delta removes an office the region does not hold"),
        ),
    ];
    for (what, delta, want) in cases {
        let mut dir = held();
        assert_eq!(dir.apply_delta(&delta), want, "{what}");
        assert_eq!(dir.region("13-tokyo").unwrap().seq, 1, "{what}");
    }
    // Written the one way, the same changes apply.
    let mut dir = held();
    let delta = tokyo_delta(
        &base,
        vec![one_b.clone(), three.clone()],
        &["1310000002"],
        &[one_b.clone(), three.clone()],
    );
    assert!(dir.apply_delta(&delta).is_ok());
    let region = dir.region("13-tokyo").unwrap();
    assert_eq!(region.entries.entries().unwrap(), [one_b, three]);
}

/// SPEC.md §6.4: a delta to the held seq with another result digest is equivocation (as for a
/// snapshot); a delta that expires before it is issued is malformed; an applied delta's
/// certificate, nodes and times replace the held ones.
#[test]
fn delta_equivocation_expiry_and_what_it_replaces() {
    let one = entry("1310000001", "青空", 10);
    let two = entry("1310000002", "さくら", 11);
    let a = tokyo();
    let mut dir = Directory::new(anchor());
    dir.apply_snapshot(&snapshot(&a, 1, std::slice::from_ref(&one)))
        .unwrap();
    let delta = |to_seq: u64,
                 issued_at: u64,
                 expires_at: u64,
                 result: &[Entry],
                 upserts: Vec<Entry>,
                 cert: &RegionCert,
                 nodes: Vec<NodeInfo>| {
        Delta {
            cert: cert.clone(),
            from_seq: 1,
            to_seq,
            issued_at,
            expires_at,
            nodes,
            base_digest: entries_digest([&one]),
            result_digest: entries_digest(result),
            upserts,
            removals: vec![],
            signature: [0; 64],
        }
        .sign(&a.key)
    };
    let both = [one.clone(), two.clone()];
    assert_eq!(
        dir.clone().apply_delta(&delta(
            1,
            T0 + HOUR,
            T0 + DAY,
            &both,
            vec![two.clone()],
            &a.cert,
            vec![]
        )),
        Err(DirectoryError::Equivocation {
            region: "13-tokyo".into(),
            seq: 1
        })
    );
    assert_eq!(
        dir.clone().apply_delta(&delta(
            2,
            T0 + HOUR,
            T0 + HOUR - 1,
            &both,
            vec![two.clone()],
            &a.cert,
            vec![]
        )),
        Err(DirectoryError::Malformed("expiry before issue time"))
    );
    // A renewed certificate (same region and key, a later window) and a directory node.
    let renewed = RegionCert::issue(
        &root(),
        "13-tokyo",
        "東京都介護支援専門員協会（更新）",
        a.key.verifying_key().to_bytes(),
        vec![13],
        T0,
        T0 + 10 * YEAR,
    );
    let node = NodeInfo {
        key: identity(40),
        addresses: vec!["/ip4/192.0.2.1/tcp/4700".into()],
        http: None,
    };
    assert!(
        dir.apply_delta(&delta(
            2,
            T0 + HOUR,
            T0 + DAY,
            &both,
            vec![two],
            &renewed,
            vec![node.clone()]
        ))
        .is_ok()
    );
    let region = dir.region("13-tokyo").unwrap();
    assert_eq!(region.cert, renewed);
    assert_eq!(region.nodes, [node]);
    assert_eq!(
        (region.seq, region.issued_at, region.expires_at),
        (2, T0 + HOUR, T0 + DAY)
    );
    assert!(dir.is_directory_node(&identity(40)));
}

#[test]
fn delta_for_an_unknown_region_is_refused() {
    let (_, deltas) = history();
    let mut dir = Directory::new(anchor());
    assert_eq!(
        dir.apply_delta(&deltas[0]),
        Err(DirectoryError::UnknownRegion("13-tokyo".into()))
    );
}

#[test]
fn tampered_delta_is_refused() {
    let (snaps, deltas) = history();
    let fresh = || {
        let mut dir = Directory::new(anchor());
        dir.apply_snapshot(&snaps[0]).unwrap();
        dir
    };
    // An upserted office's encryption key swapped.
    let mut forged = deltas[0].clone();
    let at = find(&forged, &[112; 32]);
    forged[at] ^= 1;
    assert_eq!(
        fresh().apply_delta(&forged),
        Err(DirectoryError::BadSignature)
    );
    // The signature itself.
    let mut forged = deltas[0].clone();
    *forged.last_mut().unwrap() ^= 0x40;
    assert_eq!(
        fresh().apply_delta(&forged),
        Err(DirectoryError::BadSignature)
    );
    // Signed by a key that is not the region's: rebuild the delta's bytes under another key.
    let a = tokyo();
    let h = find(&deltas[0], &a.cert.signature) + 64;
    let (_, mut ws) = tokyo_workspace();
    ws.publish(&key(66), T0);
    ws.revoke(&office("1310000002")).unwrap();
    let (_, _, d) = ws.publish(&key(66), T0 + HOUR);
    let d = d.unwrap();
    assert_eq!(&d[..h], &deltas[0][..h], "same certificate, same layout");
    assert_eq!(fresh().apply_delta(&d), Err(DirectoryError::BadSignature));
}

#[test]
fn garbage_is_malformed_or_unknown_format() {
    let (snaps, deltas) = history();
    let mut dir = Directory::new(anchor());
    // Too short to hold the magic: not a directory file at all.
    assert_eq!(dir.apply_snapshot(b""), Err(DirectoryError::UnknownFormat));
    assert_eq!(
        dir.apply_snapshot(b"RENK"),
        Err(DirectoryError::UnknownFormat)
    );
    let truncated = Err(DirectoryError::Malformed("truncated"));
    assert_eq!(dir.apply_snapshot(b"RENKEIS\x01"), truncated);
    assert_eq!(
        dir.apply_snapshot(b"not a directory file at all"),
        Err(DirectoryError::UnknownFormat)
    );
    assert_eq!(
        dir.apply_snapshot(&deltas[0]),
        Err(DirectoryError::UnknownFormat)
    );
    assert_eq!(
        dir.apply_delta(&snaps[0]),
        Err(DirectoryError::UnknownFormat)
    );
    let mut v3 = snaps[0].clone();
    v3[7] = 3;
    assert_eq!(dir.apply_snapshot(&v3), Err(DirectoryError::UnknownFormat));
    let s = &snaps[0];
    assert_eq!(dir.apply_snapshot(&s[..s.len() - 1]), truncated);
    assert_eq!(dir.apply_delta(&deltas[0][..200]), truncated);
    let mut long = s.clone();
    long.push(0);
    assert_eq!(
        dir.apply_snapshot(&long),
        Err(DirectoryError::Malformed("trailing bytes"))
    );
    let mut long = deltas[0].clone();
    long.push(0);
    assert_eq!(
        dir.apply_delta(&long),
        Err(DirectoryError::Malformed("trailing bytes"))
    );
    assert_eq!(dir.regions().count(), 0);
    assert!(Snapshot::parse(s).is_ok());
}

#[test]
fn every_prefix_and_byte_flip_is_an_error() {
    let (snaps, deltas) = history();
    let snap = &snaps[1];
    let delta = &deltas[1];
    let base = {
        let mut dir = Directory::new(anchor());
        dir.apply_snapshot(&snaps[1]).unwrap();
        dir
    };

    for n in 0..snap.len() {
        assert!(
            Directory::new(anchor()).apply_snapshot(&snap[..n]).is_err(),
            "snapshot prefix {n}"
        );
    }
    for n in 0..delta.len() {
        assert!(
            base.clone().apply_delta(&delta[..n]).is_err(),
            "delta prefix {n}"
        );
    }

    let mut rng = ChaCha20Rng::seed_from_u64(7);
    for _ in 0..3000 {
        let mut bad = snap.clone();
        let at = rng.random_range(0..bad.len());
        bad[at] ^= rng.random_range(1..=255u8);
        assert!(
            Directory::new(anchor()).apply_snapshot(&bad).is_err(),
            "snapshot flip at {at}"
        );
    }
    for _ in 0..1000 {
        let mut bad = delta.clone();
        let at = rng.random_range(0..bad.len());
        bad[at] ^= rng.random_range(1..=255u8);
        assert!(
            base.clone().apply_delta(&bad).is_err(),
            "delta flip at {at}"
        );
    }
}

#[test]
fn enrollment_request_with_a_bad_signature_is_refused() {
    let req = request("1310000007", "ケアプランセンターこもれび", 17);
    assert!(req.verify().is_ok());

    // Altered after signing, as it travels as JSON.
    let mut json: serde_json::Value = serde_json::to_value(&req).unwrap();
    json["name"] = "ケアプランセンターこもれび本店".into();
    let altered: EnrollmentRequest = serde_json::from_value(json).unwrap();
    assert_eq!(altered.verify(), Err(DirectoryError::BadSignature));

    // Someone else's identity key claimed without its private half.
    let mut stolen = req.clone();
    stolen.identity = identity(10);
    assert_eq!(stolen.verify(), Err(DirectoryError::BadSignature));

    let (_, mut ws) = tokyo_workspace();
    for bad in [&altered, &stolen] {
        assert_eq!(
            ws.approve(bad, T0),
            Err(WorkspaceError::Invalid(DirectoryError::BadSignature))
        );
    }
    assert_eq!(ws.entries.len(), 2);
    assert!(ws.approve(&req, T0).is_ok());
}

#[test]
fn enrolled_office_needs_rotation_for_a_new_key() {
    let (_, mut ws) = tokyo_workspace();
    assert_eq!(
        ws.approve(&request("1310000001", "青空", 66), T0),
        Err(WorkspaceError::AlreadyEnrolled(office("1310000001")))
    );
    // Re-approving with the same key (an edited name, say) is fine.
    assert!(
        ws.approve(
            &request("1310000001", "ケアプランセンター青空 本店", 10),
            T0
        )
        .is_ok()
    );
}

#[test]
fn two_regions_claiming_one_office_conflict() {
    let tokyo = tokyo();
    let tama = authority(&root(), "13-tama", "多摩地域", 5, vec![13]);
    let osaka = osaka();
    let claimed = entry("1310000001", "青空", 10);

    let mut dir = Directory::new(anchor());
    dir.apply_snapshot(&snapshot(&tokyo, 1, std::slice::from_ref(&claimed)))
        .unwrap();
    dir.apply_snapshot(&snapshot(&osaka, 1, &[entry("2710000001", "大阪", 20)]))
        .unwrap();
    let rival = entry("1310000001", "青空（偽）", 66);
    assert_eq!(
        dir.apply_snapshot(&snapshot(
            &tama,
            1,
            &[rival, entry("1310000009", "多摩", 21)]
        )),
        Err(DirectoryError::Conflict(office("1310000001")))
    );
    assert!(dir.region("13-tama").is_none());
    assert!(!admitted(&dir, 66, T0));
    assert_eq!(
        dir.lookup(&office("1310000001")).unwrap().unwrap().name,
        "青空"
    );

    // Without the overlap the second region is welcome.
    let ok = dir.apply_snapshot(&snapshot(&tama, 1, &[entry("1310000009", "多摩", 21)]));
    assert!(ok.is_ok());
    assert_eq!(dir.regions().count(), 3);
    assert!(admitted(&dir, 21, T0));
}

#[test]
fn identity_key_listed_by_two_offices_stays_resolvable() {
    // One corporation's node serving offices in two prefectures under one key.
    let (tokyo, osaka) = (tokyo(), osaka());
    let mut dir = Directory::new(anchor());
    dir.apply_snapshot(&snapshot(&tokyo, 1, &[entry("1310000001", "青空", 10)]))
        .unwrap();
    dir.apply_snapshot(&snapshot(
        &osaka,
        1,
        &[entry("2710000001", "青空 大阪", 10)],
    ))
    .unwrap();
    assert!(admitted(&dir, 10, T0));

    // Osaka drops its office: the key still leads to the Tokyo one.
    dir.apply_snapshot(&snapshot(&osaka, 2, &[entry("2710000002", "大阪", 20)]))
        .unwrap();
    let e = dir
        .active_office_by_key(&identity(10), T0)
        .unwrap()
        .unwrap();
    assert_eq!(e.office, office("1310000001"));
    assert!(admitted(&dir, 20, T0));
}

/// SPEC.md §6.3/§6.4: naming mailboxes makes the next files format 2; a later delta that names
/// none is format 1 again even while the result still names some (its digest follows the
/// result, not the file); clearing them brings the digest back to format 1. Deltas applied one
/// by one reach every snapshot's state, and the workspace keeps the names across a JSON save.
#[test]
fn mailbox_names_move_the_format_both_ways() {
    let (a, mut ws) = tokyo_workspace();
    let node = identity(40);
    let mut snaps = vec![ws.publish(&a.key, T0).1];
    let mut deltas = Vec::new();
    let mut publish = |ws: &mut RegionWorkspace, now, snaps: &mut Vec<Vec<u8>>| {
        let (_, s, d) = ws.publish(&a.key, now);
        snaps.push(s);
        deltas.push(d.unwrap());
    };
    ws.set_mailboxes(&office("1310000001"), vec![node]).unwrap();
    publish(&mut ws, T0 + HOUR, &mut snaps);
    ws.set_addresses(
        &office("1310000002"),
        vec!["/ip4/198.51.100.2/tcp/4001".into()],
    )
    .unwrap();
    publish(&mut ws, T0 + 2 * HOUR, &mut snaps);
    ws.set_mailboxes(&office("1310000001"), vec![]).unwrap();
    publish(&mut ws, T0 + 3 * HOUR, &mut snaps);
    let format = |f: &[u8]| f[7];
    assert_eq!(
        snaps.iter().map(|s| format(s)).collect::<Vec<_>>(),
        [1, 2, 2, 1]
    );
    assert_eq!(
        deltas.iter().map(|d| format(d)).collect::<Vec<_>>(),
        [2, 1, 1]
    );

    let mut dir = Directory::new(anchor());
    dir.apply_snapshot(&snaps[0]).unwrap();
    for (i, d) in deltas.iter().enumerate() {
        dir.apply_delta(d).unwrap();
        let mut direct = Directory::new(anchor());
        direct.apply_snapshot(&snaps[i + 1]).unwrap();
        let (x, y) = (
            dir.region("13-tokyo").unwrap(),
            direct.region("13-tokyo").unwrap(),
        );
        assert_eq!((x.seq, x.digest), (y.seq, y.digest));
        assert_eq!(x.entries.entries(), y.entries.entries());
        let named = dir
            .lookup(&office("1310000001"))
            .unwrap()
            .unwrap()
            .mailboxes;
        assert_eq!(named, if i < 2 { vec![node] } else { vec![] });
    }

    // Limits the workspace keeps: four at most, none twice, a listed office only.
    assert!(
        ws.set_mailboxes(&office("1310000001"), vec![node; 2])
            .is_err()
    );
    let five: Vec<[u8; 32]> = (50..55).map(identity).collect();
    assert!(ws.set_mailboxes(&office("1310000001"), five).is_err());
    assert_eq!(
        ws.set_mailboxes(&office("1310000099"), vec![node]),
        Err(WorkspaceError::NotFound(office("1310000099")))
    );
    ws.set_mailboxes(&office("1310000002"), vec![node]).unwrap();
    let json = serde_json::to_string(&ws).unwrap();
    let back: RegionWorkspace = serde_json::from_str(&json).unwrap();
    assert_eq!(back.entries[&office("1310000002")].mailboxes, [node]);
    // An entry naming none is written as before, so older workspaces read unchanged.
    assert!(
        !serde_json::to_string(&back.entries[&office("1310000001")])
            .unwrap()
            .contains("mailboxes")
    );
}
