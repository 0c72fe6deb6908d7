//! Checker throughput on a large 第6表 (UPPLAN) file, in records per second.
//!
//! The file is built from the 福祉用具 office's UPPLAN sample (116 records, with TAIS codes and
//! 日割 masks), repeated with a fresh 被保険者番号 per copy, to 100,000 records (about 14 MB of
//! CP932). For reference, the same bytes are also only decoded (encoding_rs) and only split
//! into records (csv), the two library steps the checker builds on.
//!
//! Run: `cargo bench -p renkei-protocol --bench checker`

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use renkei_protocol::{Checked, Checker, check_bytes};

const NAME: &str = "UPPLAN_202610_1310000001_43_1310000031_17_20260928103000.CSV";
const RECORDS: usize = 100_000;

/// A valid UPPLAN file of `n` records, CP932, CRLF.
fn large_upplan(n: usize) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/month-202610")
        .join(NAME);
    let sample = std::fs::read(path).expect("sample UPPLAN");
    let (text, _, bad) = encoding_rs::SHIFT_JIS.decode(&sample);
    assert!(!bad);
    let lines: Vec<&str> = text.split_terminator("\r\n").collect();
    let mut out = String::with_capacity(n * 150);
    for i in 0..n {
        let line = lines[i % lines.len()];
        // Field 3 is the 被保険者番号: one fictional person per copy of the sample.
        let (head, rest) = line.split_at(line.find(',').unwrap() + 1);
        let rest = &rest[rest.find(',').unwrap() + 1..];
        let rest = &rest[rest.find(',').unwrap()..];
        out.push_str(head);
        out.push_str("131016,");
        out.push_str(&format!("{:010}", 200_000 + i / lines.len()));
        out.push_str(rest);
        out.push_str("\r\n");
    }
    let (bytes, _, bad) = encoding_rs::SHIFT_JIS.encode(&out);
    assert!(!bad);
    bytes.into_owned()
}

fn checker(c: &mut Criterion) {
    let file = large_upplan(RECORDS);
    let report = check_bytes(NAME, &file);
    assert!(
        report.is_valid(),
        "{:?}",
        &report.errors[..3.min(report.errors.len())]
    );
    assert_eq!(report.records, RECORDS as u64);
    eprintln!("UPPLAN of {RECORDS} records: {} bytes", file.len());

    let mut g = c.benchmark_group("checker");
    g.throughput(Throughput::Elements(RECORDS as u64));
    g.sample_size(20);
    g.bench_function("check_bytes/upplan_100k", |b| {
        b.iter(|| black_box(check_bytes(NAME, black_box(&file))))
    });
    // The same file fed in 1 MiB pieces, as a node reads it from disk, keeping at most 8 MiB
    // of text: it is read twice, in bounded memory.
    g.bench_function("checker_pieces_read_twice/upplan_100k", |b| {
        b.iter(|| {
            let mut checker = Checker::with_retain_limit(NAME, 8 << 20);
            for piece in file.chunks(1 << 20) {
                checker.update(black_box(piece));
            }
            match checker.finish() {
                Checked::Done(_) => panic!("a {} byte file was kept whole", file.len()),
                Checked::ReadAgain(mut records) => {
                    for piece in file.chunks(1 << 20) {
                        records.update(black_box(piece));
                    }
                    black_box(records.finish())
                }
            }
        })
    });
    // Reference points: the library steps alone, over the same bytes.
    g.bench_function("reference/sjis_decode_100k", |b| {
        b.iter(|| {
            let (text, _, _) = encoding_rs::SHIFT_JIS.decode(black_box(&file));
            black_box(text.len())
        })
    });
    g.bench_function("reference/csv_split_100k", |b| {
        b.iter(|| {
            let mut reader = csv::ReaderBuilder::new()
                .has_headers(false)
                .from_reader(black_box(&file[..]));
            let mut record = csv::ByteRecord::new();
            let mut n = 0u64;
            while reader.read_byte_record(&mut record).unwrap() {
                n += record.len() as u64;
            }
            black_box(n)
        })
    });
    g.finish();
}

criterion_group!(benches, checker);
criterion_main!(benches);
