//! Fuzzes the checker: `check_bytes` must never panic, its report must hold together, and the
//! same bytes fed in pieces (read twice) must give the same report.
//!
//! Input layout: the first byte picks the file name. Below `KNOWN.len()` it picks one of the
//! standard names (so the fuzzer spends its time in the CSV rules); otherwise `byte -
//! KNOWN.len()` bytes that follow are the name, as lossy UTF-8. The rest is the file.

#![no_main]

use libfuzzer_sys::fuzz_target;
use renkei_protocol::check::{ErrorCode, MAX_FINDINGS};

const KNOWN: &[&str] = &[
    "UPPLAN_202610_1310000001_43_1310000011_11_20260928103000.CSV",
    "UPJSK_202610_1310000031_17_1310000001_43_20261102093000.CSV",
    "UPSIKYU_202610_1310000001_43_1310000011_11_20260928103000.CSV",
    "UP1KYO_1310000001_43_1310000011_11_20260928100000.CSV",
    "UP2KYO_1310000001_43_1310000011_11_20260928100000.CSV",
    "UP3KYO_1310000001_43_1310000011_11_20260928100000.CSV",
    "UPHOSOKU_000000_1310000001_43_1310000011_11_20260928100000.CSV",
    "UPHOSOKU_202610_1310000001_43_1310000011_11_20260928103000.CSV",
    "UPPLAN_202301_1300000001_1300000003_20230115093040.csv",
    "UPKIHON_1310000001_43_1310000011_11_20260928100000.CSV",
    "UPKIHON_SUB1_1310000001_43_1310000011_11_20260928100000.CSV",
    "UPKIHON_SUB2_1310000001_43_1310000011_11_20260928100000.CSV",
    "UPKIHON_IMAGE_1310000001_43_1310000011_11_20260928100000_0001.jpg",
    "UPYOBO_1310000001_43_1310000011_11_20260928100000.CSV",
    "UPYOBO_SUB_1310000001_43_1310000011_11_20260928100000.CSV",
    "DLT1KYO_1310000001_43_1310000011_11_20260928100000.CSV",
    "DLTPLAN_202610_1310000001_43_1310000011_11_20260928100000.CSV",
    "DLTJSK_202610_1310000001_43_1310000011_11_20260928100000.CSV",
    "DLTKIHON_1310000001_43_1310000011_11_20260928100000.CSV",
    "DLTYOBO_1310000001_43_1310000011_11_20260928100000.CSV",
];

fn physical_lines(bytes: &[u8]) -> u64 {
    let mut n = 1;
    let mut prev_cr = false;
    for &b in bytes {
        if b == b'\r' || (b == b'\n' && !prev_cr) {
            n += 1;
        }
        prev_cr = b == b'\r';
    }
    n
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let (name, bytes) = match KNOWN.get(usize::from(sel)) {
        Some(n) => (std::borrow::Cow::Borrowed(*n), rest),
        None => {
            let len = (usize::from(sel) - KNOWN.len()).min(rest.len());
            let (n, b) = rest.split_at(len);
            (String::from_utf8_lossy(n), b)
        }
    };
    let report = renkei_protocol::check_bytes(&name, bytes);
    // The same file in pieces, read twice, gives the same report.
    let piece = 1 + usize::from(sel) % 97;
    let mut checker = renkei_protocol::Checker::with_retain_limit(&name, 0);
    for p in bytes.chunks(piece) {
        checker.update(p);
    }
    let pieces = match checker.finish() {
        renkei_protocol::Checked::Done(r) => r,
        renkei_protocol::Checked::ReadAgain(mut records) => {
            for p in bytes.chunks(piece + 3) {
                records.update(p);
            }
            records.finish()
        }
    };
    assert_eq!(pieces, report);
    assert_eq!(report.valid, report.errors.is_empty());
    assert!(report.errors.len() <= MAX_FINDINGS + 1);
    let lines = physical_lines(bytes);
    for (i, f) in report.errors.iter().enumerate() {
        assert!(f.line <= lines, "line {} of {lines}", f.line);
        assert!(!f.message_ja.is_empty() && !f.message_en.is_empty());
        if f.code == ErrorCode::TooManyErrors {
            assert_eq!(i, MAX_FINDINGS);
        }
    }
});
