//! Plan against actual for a 90-user care-management office month, in milliseconds.
//!
//! The month is generated: 90 users, each with a daily 訪問介護 visit (one of four offices), day
//! service twice a week with its bathing 加算 (one of three offices) and, for every other user,
//! a rented bed (one office). As the standard says, the 予定 sent to each office carries all of
//! the user's lines, so each plan line is in up to three files. Each office's 実績 follows the
//! plan with a few differences: every tenth visit ten minutes late, a cancelled day-service day
//! for every seventh user, an extra visit for every eleventh.
//!
//! Figures: the whole reconciliation from the files' bytes (CP932 decoding and the checker
//! included), the comparison alone (`finish`, the files already read), the reading alone, and
//! for reference the checker alone over the same files.
//!
//! Run: `cargo bench -p renkei-protocol --bench reconcile`

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use renkei_protocol::reconcile::Reconciler;
use renkei_protocol::{YearMonth, check_bytes};

const USERS: usize = 90;
const CM: &str = "1310000001";

struct Office {
    no: String,
    kind: &'static str,
    name: &'static str,
}

fn offices() -> Vec<Office> {
    let mut v = Vec::new();
    for i in 0..4 {
        v.push(Office {
            no: format!("13100001{i:02}"),
            kind: "11",
            name: "訪問介護ステーション",
        });
    }
    for i in 0..3 {
        v.push(Office {
            no: format!("13100002{i:02}"),
            kind: "15",
            name: "デイサービスセンター",
        });
    }
    v.push(Office {
        no: "1310000300".into(),
        kind: "17",
        name: "福祉用具",
    });
    v
}

/// October 2026 starts on a Thursday: ISO weekday of day `d` (1 = Monday).
fn weekday(d: u32) -> u32 {
    (d + 2) % 7 + 1
}

struct Line {
    office: usize,
    day: u32,
    start: String,
    end: String,
    code: &'static str,
    units: u32,
    tais: &'static str,
}

fn plan_lines(user: usize) -> Vec<Line> {
    let mut v = Vec::new();
    let visit = user % 4;
    for day in 1..=31 {
        v.push(Line {
            office: visit,
            day,
            start: "0900".into(),
            end: "0930".into(),
            code: "111111",
            units: 244,
            tais: "",
        });
    }
    let day_service = 4 + user % 3;
    for day in (1..=31).filter(|d| matches!(weekday(*d), 2 | 4)) {
        for (code, units) in [("152442", 777), ("155301", 40)] {
            v.push(Line {
                office: day_service,
                day,
                start: "0930".into(),
                end: "1645".into(),
                code,
                units,
                tais: "",
            });
        }
    }
    if user.is_multiple_of(2) {
        v.push(Line {
            office: 7,
            day: 1,
            start: "9999".into(),
            end: "9999".into(),
            code: "171003",
            units: 900,
            tais: "00123-000201",
        });
    }
    v
}

/// What each office reports: the plan with a few differences.
fn actual_lines(user: usize) -> Vec<Line> {
    let mut v = Vec::new();
    for (i, mut l) in plan_lines(user).into_iter().enumerate() {
        if l.code == "111111" && i % 10 == 3 {
            l.start = "0910".into();
            l.end = "0940".into();
        }
        if user.is_multiple_of(7) && l.day == 15 && l.code.starts_with("15") {
            continue;
        }
        v.push(l);
    }
    if user.is_multiple_of(11) {
        v.push(Line {
            office: user % 4,
            day: 10,
            start: "1500".into(),
            end: "1530".into(),
            code: "111111",
            units: 244,
            tais: "",
        });
    }
    v
}

fn record(out: &mut String, user: usize, created: &str, l: &Line, offices: &[Office], upd: &str) {
    let o = &offices[l.office];
    out.push_str(&format!(
        "202407,131016,{:010},{created},202610,{CM},\"担当　花子\",{},,202610{:02},,{},{},1,{},{},,,,{},\"{}\",,0,{upd},\r\n",
        300_000 + user,
        l.units,
        l.day,
        l.start,
        l.end,
        l.code,
        l.tais,
        o.no,
        o.name,
    ));
}

/// The month's files: (name, CP932 bytes).
fn month() -> Vec<(String, Vec<u8>)> {
    let offices = offices();
    let mut plans: BTreeMap<usize, String> = BTreeMap::new();
    let mut actuals: BTreeMap<usize, String> = BTreeMap::new();
    for user in 0..USERS {
        let lines = plan_lines(user);
        let served: std::collections::BTreeSet<usize> = lines.iter().map(|l| l.office).collect();
        for &o in &served {
            let text = plans.entry(o).or_default();
            for l in &lines {
                record(text, user, "20260926", l, &offices, CM);
            }
        }
        for l in actual_lines(user) {
            let text = actuals.entry(l.office).or_default();
            record(text, user, "20261102", &l, &offices, &offices[l.office].no);
        }
    }
    let encode = |t: &str| encoding_rs::SHIFT_JIS.encode(t).0.into_owned();
    let mut files = Vec::new();
    for (o, text) in &plans {
        let of = &offices[*o];
        files.push((
            format!(
                "UPPLAN_202610_{CM}_43_{}_{}_20260928103000.CSV",
                of.no, of.kind
            ),
            encode(text),
        ));
    }
    for (o, text) in &actuals {
        let of = &offices[*o];
        files.push((
            format!(
                "UPJSK_202610_{}_{}_{CM}_43_20261102090000.CSV",
                of.no, of.kind
            ),
            encode(text),
        ));
    }
    files
}

fn read(files: &[(String, Vec<u8>)]) -> Reconciler {
    let mut r = Reconciler::new(YearMonth::parse("202610", false).unwrap());
    for (name, bytes) in files {
        r.add_file(name, bytes).unwrap();
    }
    r
}

fn reconcile(c: &mut Criterion) {
    let files = month();
    let result = read(&files).finish();
    assert!(
        result.inputs.iter().all(|f| f.problems.is_empty()),
        "{:?}",
        result.inputs
    );
    assert_eq!(result.users.len(), USERS);
    let records: u64 = result.inputs.iter().map(|f| f.records).sum();
    let bytes: usize = files.iter().map(|(_, b)| b.len()).sum();
    eprintln!(
        "{USERS} users, {} files, {records} records, {bytes} bytes; {} differences",
        files.len(),
        result.difference_count()
    );
    let mut g = c.benchmark_group("reconcile");
    g.sample_size(30);
    g.bench_function("office_month_90_users/from_bytes", |b| {
        b.iter(|| black_box(read(black_box(&files)).finish()))
    });
    g.bench_function("office_month_90_users/compare_only", |b| {
        b.iter_batched(
            || read(&files),
            |r| black_box(r.finish()),
            BatchSize::LargeInput,
        )
    });
    g.bench_function("office_month_90_users/read_only", |b| {
        b.iter(|| black_box(read(black_box(&files))))
    });
    // Reference: the checker alone over the same files, as a node checks them on arrival.
    g.bench_function("reference/check_bytes_only", |b| {
        b.iter(|| {
            for (name, bytes) in &files {
                black_box(check_bytes(name, black_box(bytes)));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, reconcile);
criterion_main!(benches);
