//! The national directory's cold load: 300,000 offices in 47 prefecture snapshots, read from
//! disk and verified into a fresh `Directory`, as an office node does at start-up. For
//! comparison, the same entries checked one signature each (one by one and batched), which is
//! what signing each snapshot once over a digest of its entries saves.
//!
//! `cargo bench -p renkei-directory --bench national` runs everything; append `-- cold_load` for
//! the load alone (the per-entry comparison takes about three minutes more).

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha20Rng;
use renkei_directory::{Anchor, Directory, Entry, NodeInfo, RegionCert, Snapshot};
use renkei_protocol::OfficeNumber;

#[path = "support/national_offices.rs"]
mod national_offices;

use national_offices::{OFFICES, office_entry, region_counts};

/// 2026-09-21.
const T0: u64 = 1_790_000_000;
const YEAR: u64 = 365 * 86400;

/// The length of an entry's encoding (SPEC.md §6), to find each entry's bytes in a file.
fn encoded_len(e: &Entry) -> usize {
    10 + 2
        + e.name.len()
        + 1
        + 2 * e.kinds.len()
        + 1
        + 80 * e.keys.len()
        + 1
        + e.addresses.iter().map(|a| 2 + a.len()).sum::<usize>()
        + 1
}

/// The generated national directory, its files on disk, and what the per-entry comparison
/// needs: each entry's bytes (a range in its region's file), signed by its region's key.
struct National {
    _dir: tempfile::TempDir,
    anchor: Anchor,
    paths: Vec<PathBuf>,
    files: Vec<Vec<u8>>,
    region_keys: Vec<VerifyingKey>,
    /// (file index, byte range) per entry.
    entries: Vec<(usize, std::ops::Range<usize>)>,
    signatures: Vec<Signature>,
}

impl National {
    fn message(&self, i: usize) -> &[u8] {
        let (f, r) = &self.entries[i];
        &self.files[*f][r.clone()]
    }
}

fn generate() -> National {
    let started = Instant::now();
    let mut rng = ChaCha20Rng::seed_from_u64(2026);
    let root = SigningKey::from_bytes(&[1; 32]);
    let anchor = Anchor::from_json(&format!(
        r#"{{"format":"renkei-anchor/1","federation":"bench","roots":["{}"]}}"#,
        hex::encode(root.verifying_key().to_bytes())
    ))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();

    let counts = region_counts();

    let mut national = National {
        _dir: dir,
        anchor,
        paths: Vec::new(),
        files: Vec::new(),
        region_keys: Vec::new(),
        entries: Vec::with_capacity(OFFICES),
        signatures: Vec::new(),
    };
    let mut signing_keys = Vec::new();
    for (i, count) in counts.iter().enumerate() {
        let pref = i as u8 + 1;
        let key = SigningKey::from_bytes(&[pref.wrapping_add(100); 32]);
        let region = format!("{pref:02}-region");
        let cert = RegionCert::issue(
            &root,
            &region,
            &format!("第{pref}地域 介護支援専門員協会"),
            key.verifying_key().to_bytes(),
            vec![pref],
            T0 - YEAR,
            T0 + 5 * YEAR,
        );
        let nodes: Vec<NodeInfo> = (0..2u8)
            .map(|n| NodeInfo {
                key: [pref * 2 + n; 32],
                addresses: vec![format!(
                    "/ip4/198.51.100.{pref}/udp/{}/quic-v1",
                    4001 + n as u16
                )],
                http: Some(format!("https://dir{n}.region{pref}.example.jp")),
            })
            .collect();
        let mut number = 0u32;
        let entries: Vec<Entry> = (0..*count)
            .map(|_| {
                number += rng.random_range(1..20);
                let office = OfficeNumber::parse(&format!("{pref:02}7{number:07}")).unwrap();
                office_entry(&mut rng, office, T0)
            })
            .collect();
        let bytes = Snapshot::build(&cert, &key, 1, T0, T0 + 7 * 86400, &nodes, &entries);

        let file = national.files.len();
        let mut at = bytes.len() - entries.iter().map(encoded_len).sum::<usize>();
        for e in &entries {
            let len = encoded_len(e);
            national.entries.push((file, at..at + len));
            at += len;
        }
        assert_eq!(at, bytes.len());

        let path = national._dir.path().join(format!("{region}.snapshot"));
        std::fs::write(&path, &bytes).unwrap();
        national.paths.push(path);
        national.files.push(bytes);
        national.region_keys.push(key.verifying_key());
        signing_keys.push(key);
    }

    // Per-entry signatures for the comparison, made on both cores.
    let half = OFFICES / 2;
    let sign = |range: std::ops::Range<usize>| -> Vec<Signature> {
        range
            .map(|i| signing_keys[national.entries[i].0].sign(national.message(i)))
            .collect()
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| sign(0..half));
        let b = s.spawn(|| sign(half..OFFICES));
        (a.join().unwrap(), b.join().unwrap())
    });
    national.signatures = a;
    national.signatures.extend(b);

    let on_disk: u64 = national
        .paths
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    let names: usize = national
        .files
        .iter()
        .map(|f| Snapshot::parse(f).unwrap().entries)
        .flat_map(|es| es.into_iter().map(|e| e.name.chars().count()))
        .sum();
    println!(
        "national directory: {} entries in {} snapshot files, {} bytes on disk ({:.1} MB, {:.0} bytes per entry, names {:.1} characters on average); largest file {:.1} MB; generated in {:.1} s",
        national.entries.len(),
        national.paths.len(),
        on_disk,
        on_disk as f64 / 1e6,
        on_disk as f64 / OFFICES as f64,
        names as f64 / OFFICES as f64,
        national.files.iter().map(Vec::len).max().unwrap() as f64 / 1e6,
        started.elapsed().as_secs_f64(),
    );
    national
}

fn bench(c: &mut Criterion) {
    let n = generate();

    let mut g = c.benchmark_group("cold_load");
    g.sample_size(10).measurement_time(Duration::from_secs(15));
    g.bench_function("read_and_apply_47_files", |b| {
        b.iter_with_large_drop(|| {
            let mut dir = Directory::new(n.anchor.clone());
            for p in &n.paths {
                let bytes = std::fs::read(p).unwrap();
                dir.apply_snapshot(&bytes).unwrap();
            }
            assert_eq!(dir.entry_count(), OFFICES);
            dir
        })
    });
    let scratch = tempfile::tempdir().unwrap();
    g.bench_function("read_and_apply_47_files_on_disk", |b| {
        b.iter_with_large_drop(|| {
            let mut dir = Directory::on_disk(n.anchor.clone(), scratch.path());
            for p in &n.paths {
                let bytes = std::fs::read(p).unwrap();
                dir.apply_snapshot(&bytes).unwrap();
            }
            assert_eq!(dir.entry_count(), OFFICES);
            dir
        })
    });
    g.bench_function("apply_47_files_from_memory", |b| {
        b.iter_with_large_drop(|| {
            let mut dir = Directory::new(n.anchor.clone());
            for f in &n.files {
                dir.apply_snapshot(f).unwrap();
            }
            dir
        })
    });
    g.bench_function("read_only", |b| {
        b.iter_with_large_drop(|| {
            n.paths
                .iter()
                .map(|p| std::fs::read(p).unwrap())
                .collect::<Vec<_>>()
        })
    });
    g.bench_function("parse_only", |b| {
        b.iter_with_large_drop(|| {
            n.files
                .iter()
                .map(|f| Snapshot::parse(f).unwrap())
                .collect::<Vec<_>>()
        })
    });
    g.bench_function("parse_and_verify", |b| {
        b.iter_with_large_drop(|| {
            n.files
                .iter()
                .map(|f| Directory::verify_snapshot(&n.anchor, f).unwrap())
                .collect::<Vec<_>>()
        })
    });
    g.finish();

    // What a node asks of its directory: an office by number (before sending, on receiving)
    // and by identity key (admitting a connection). About 1,000 active offices spread over all
    // regions.
    let sample: Vec<(OfficeNumber, [u8; 32])> = n
        .files
        .iter()
        .flat_map(|f| Snapshot::parse(f).unwrap().entries)
        .filter(|e| e.is_active())
        .step_by(OFFICES / 1000)
        .map(|e| (e.office, e.keys[0].identity))
        .collect();
    let now = T0 + 86400;
    let mut g = c.benchmark_group("lookup_1000");
    for (mode, dir) in [
        ("in_memory", Directory::new(n.anchor.clone())),
        (
            "on_disk",
            Directory::on_disk(n.anchor.clone(), scratch.path()),
        ),
    ] {
        let mut dir = dir;
        for f in &n.files {
            dir.apply_snapshot(f).unwrap();
        }
        g.bench_function(format!("by_office_{mode}"), |b| {
            b.iter(|| {
                for (o, _) in &sample {
                    assert!(dir.lookup(black_box(o)).unwrap().is_some());
                }
            })
        });
        g.bench_function(format!("by_key_{mode}"), |b| {
            b.iter(|| {
                for (_, k) in &sample {
                    assert!(
                        dir.active_office_by_key(black_box(k), now)
                            .unwrap()
                            .is_some()
                    );
                }
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("per_entry_signatures");
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(1));
    g.bench_function("verify_strict_one_by_one_300k", |b| {
        b.iter(|| {
            for (i, sig) in n.signatures.iter().enumerate() {
                let key = &n.region_keys[n.entries[i].0];
                key.verify_strict(black_box(n.message(i)), sig).unwrap();
            }
        })
    });
    g.bench_function("verify_batch_1024_300k", |b| {
        let messages: Vec<&[u8]> = (0..OFFICES).map(|i| n.message(i)).collect();
        let keys: Vec<VerifyingKey> = n.entries.iter().map(|(f, _)| n.region_keys[*f]).collect();
        b.iter(|| {
            for ((m, s), k) in messages
                .chunks(1024)
                .zip(n.signatures.chunks(1024))
                .zip(keys.chunks(1024))
            {
                ed25519_dalek::verify_batch(black_box(m), s, k).unwrap();
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
