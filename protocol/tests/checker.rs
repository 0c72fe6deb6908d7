//! The checker, rule by rule: broken copies of the sample month and the exact findings each
//! one gives (physical line, field number, error code).
//!
//! Every case lives in one table, [`cases`]. One test runs the table; another asserts that the
//! table (plus the node's route codes, made with `finding`) produces every [`E`] code, so a new
//! code without a case fails the tests. Lines are physical lines where the record starts: CR, LF
//! and CRLF each end one, inside quoted fields too.

use std::collections::BTreeSet;
use std::path::Path;

use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha20Rng;
use renkei_protocol::check::{ErrorCode as E, MAX_FINDINGS, MAX_RECORD};
use renkei_protocol::{CheckReport, Checked, Checker, check_bytes, finding};

// ---------------------------------------------------------------------------------------------
// Sample files and a small editor for them.
// ---------------------------------------------------------------------------------------------

const PLAN: &str = "UPPLAN_202610_1310000001_43_1310000011_11_20260928103000.CSV";
const PLAN17: &str = "UPPLAN_202610_1310000001_43_1310000031_17_20260928103000.CSV";
const JSK17: &str = "UPJSK_202610_1310000031_17_1310000001_43_20261102093000.CSV";
const SIKYU: &str = "UPSIKYU_202610_1310000001_43_1310000011_11_20260928103000.CSV";
const KYO1: &str = "UP1KYO_1310000001_43_1310000011_11_20260928100000.CSV";
const KYO2: &str = "UP2KYO_1310000001_43_1310000011_11_20260928100000.CSV";
const KYO3: &str = "UP3KYO_1310000001_43_1310000011_11_20260928100000.CSV";
const HOSOKU0: &str = "UPHOSOKU_000000_1310000001_43_1310000011_11_20260928100000.CSV";
const HOSOKU: &str = "UPHOSOKU_202610_1310000001_43_1310000011_11_20260928103000.CSV";
const IMAGE: &str = "UPKIHON_IMAGE_1310000001_43_1310000011_11_20260928100000_0001.jpg";
/// A V3-form name (no service kind codes), lower-case extension.
const PLAN_V3: &str = "UPPLAN_202301_1300000001_1300000003_20230115093040.csv";

fn sample_bytes(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/month-202610")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn sjis_decode(bytes: &[u8]) -> String {
    let (text, had_errors) = encoding_rs::SHIFT_JIS.decode_without_bom_handling(bytes);
    assert!(!had_errors, "the sample is not clean CP932");
    text.into_owned()
}

fn sjis_encode(text: &str) -> Vec<u8> {
    let (bytes, _, had_errors) = encoding_rs::SHIFT_JIS.encode(text);
    assert!(!had_errors, "text not representable in CP932: {text}");
    bytes.into_owned()
}

/// A CSV file as records of raw fields: quotes are kept, so a field is written back exactly as
/// it was read (or as the test sets it).
#[derive(Clone, Debug)]
struct Csv {
    records: Vec<Vec<String>>,
}

impl Csv {
    /// A sample file, every record.
    fn sample(name: &str) -> Csv {
        Csv::parse(&sjis_decode(&sample_bytes(name)))
    }

    /// Splits CRLF-terminated CSV text, honouring quotes (line breaks inside quotes stay in the
    /// field).
    fn parse(text: &str) -> Csv {
        let mut records = Vec::new();
        let mut record = Vec::new();
        let mut field = String::new();
        let mut quoted = false;
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '"' => {
                    quoted = !quoted;
                    field.push(c);
                }
                ',' if !quoted => record.push(std::mem::take(&mut field)),
                '\r' if !quoted && chars.peek() == Some(&'\n') => {
                    chars.next();
                    record.push(std::mem::take(&mut field));
                    records.push(std::mem::take(&mut record));
                }
                _ => field.push(c),
            }
        }
        assert!(
            field.is_empty() && record.is_empty(),
            "sample not CRLF-terminated"
        );
        Csv { records }
    }

    /// Only the records `from..to` (0-based, like a slice).
    fn keep(mut self, range: std::ops::Range<usize>) -> Csv {
        self.records = self.records[range].to_vec();
        self
    }

    /// Sets field `field` (1-based) of record `record` (1-based) to the raw text `raw`.
    fn set(mut self, record: usize, field: usize, raw: &str) -> Csv {
        self.records[record - 1][field - 1] = raw.to_string();
        self
    }

    /// Sets a field in every record.
    fn set_all(mut self, field: usize, raw: &str) -> Csv {
        for r in &mut self.records {
            r[field - 1] = raw.to_string();
        }
        self
    }

    /// Reads a field's raw text.
    fn get(&self, record: usize, field: usize) -> &str {
        &self.records[record - 1][field - 1]
    }

    /// Removes the fields `range` (1-based, inclusive) from every record.
    fn drop_fields(mut self, range: std::ops::RangeInclusive<usize>) -> Csv {
        for r in &mut self.records {
            r.drain(range.start() - 1..*range.end());
        }
        self
    }

    /// Appends a record.
    fn push(mut self, record: Vec<String>) -> Csv {
        self.records.push(record);
        self
    }

    /// The text with every record ended by `eol`.
    fn text(&self, eol: &str) -> String {
        let mut s = String::new();
        for r in &self.records {
            s.push_str(&r.join(","));
            s.push_str(eol);
        }
        s
    }

    /// CP932 bytes, CRLF line ends (the standard's form).
    fn bytes(&self) -> Vec<u8> {
        sjis_encode(&self.text("\r\n"))
    }

    fn bytes_eol(&self, eol: &str) -> Vec<u8> {
        sjis_encode(&self.text(eol))
    }
}

/// The first record of the 訪問介護 UPPLAN sample: 山田, 2026-10-02, 117311 生活援助３.
fn plan1() -> Csv {
    Csv::sample(PLAN).keep(0..1)
}

/// The first three records of the same file.
fn plan3() -> Csv {
    Csv::sample(PLAN).keep(0..3)
}

fn name_with(prefix_month: &str) -> String {
    format!("UPPLAN_{prefix_month}_1310000001_43_1310000011_11_20260928103000.CSV")
}

/// A one-record UPPLAN for another target month: its name, and the record moved into it.
fn plan1_in(month: &str, day: &str) -> (String, Csv) {
    let csv = plan1()
        .set(1, 5, month)
        .set(1, 10, &format!("{month}{day}"));
    (name_with(month), csv)
}

/// The UPPLAN sample of 福祉用具 office 17 rewritten as a V3 (202208) file for January 2023:
/// 22 fields (no TAIS / 届出コード / 用具名称), dates moved into 202301.
fn plan_v3() -> Csv {
    let mut csv = Csv::sample(PLAN17)
        .drop_fields(16..=18)
        .set_all(1, "202208")
        .set_all(4, "20221226")
        .set_all(5, "202301");
    for r in &mut csv.records {
        let day = r[9][6..8].to_string();
        r[9] = format!("202301{day}");
    }
    csv
}

/// The physical line count of `bytes`: CR, LF and CRLF each end one line.
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

// ---------------------------------------------------------------------------------------------
// The table of cases.
// ---------------------------------------------------------------------------------------------

type Want = Vec<(u64, u32, E)>;

struct Case {
    what: String,
    name: String,
    bytes: Vec<u8>,
    want: Want,
}

fn case(what: &str, name: &str, bytes: Vec<u8>, want: Want) -> Case {
    Case {
        what: what.to_string(),
        name: name.to_string(),
        bytes,
        want,
    }
}

fn got(report: &CheckReport) -> Want {
    report
        .errors
        .iter()
        .map(|f| (f.line, f.field, f.code))
        .collect()
}

fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    v.extend(valid_cases());
    v.extend(name_cases());
    v.extend(encoding_cases());
    v.extend(structure_cases());
    v.extend(line_cases());
    v.extend(field_cases());
    v.extend(cross_record_cases());
    v.extend(limit_cases());
    v
}

/// Files that must pass: the rules' accepted edges.
fn valid_cases() -> Vec<Case> {
    let mut feb = plan1_in("202402", "05");
    feb.1 = feb.1.set(1, 4, "20240126");
    vec![
        case(
            "UPPLAN sample as is",
            PLAN,
            Csv::sample(PLAN).bytes(),
            vec![],
        ),
        case(
            "UPHOSOKU 000000: 00000000 is not used, 000000 allowed in field 63",
            HOSOKU0,
            Csv::sample(HOSOKU0).bytes(),
            vec![],
        ),
        case(
            "UPHOSOKU 202610: field 4 00000000 allowed",
            HOSOKU,
            Csv::sample(HOSOKU).bytes(),
            vec![],
        ),
        case(
            "V3 UPPLAN (202208, 22 fields) under a V3-form name",
            PLAN_V3,
            plan_v3().bytes(),
            vec![],
        ),
        case(
            "20240229 is a real date",
            &feb.0,
            feb.1.clone().set(1, 10, "20240229").bytes(),
            vec![],
        ),
        case(
            "times 9999 (no time shown)",
            PLAN,
            plan1().set(1, 12, "9999").set(1, 13, "9999").bytes(),
            vec![],
        ),
        case(
            "times 0000 and 2359",
            PLAN,
            plan1().set(1, 12, "0000").set(1, 13, "2359").bytes(),
            vec![],
        ),
        case(
            "end time 2400 (the weekly chart runs to 24:00)",
            PLAN,
            plan1().set(1, 13, "2400").bytes(),
            vec![],
        ),
        case(
            "被保険者番号 H + 9 digits (生保単独)",
            PLAN,
            plan1().set(1, 3, "H123456789").bytes(),
            vec![],
        ),
        case(
            "signed 単位数 (減算)",
            PLAN,
            plan1().set(1, 8, "-220").bytes(),
            vec![],
        ),
        case(
            "service code with letters (subtotal row style)",
            PLAN,
            plan1().set(1, 15, "11AAAA").bytes(),
            vec![],
        ),
        case(
            "quoted comma and doubled quote in free text",
            PLAN,
            plan1().set(1, 7, "\"中村, \"\"由美\"\"\"").bytes(),
            vec![],
        ),
        case(
            "quotes around a coded field",
            PLAN,
            plan1().set(1, 12, "\"1000\"").set(1, 23, "\"0\"").bytes(),
            vec![],
        ),
        case(
            "empty optional fields are null",
            PLAN,
            plan1()
                .set(1, 6, "")
                .set(1, 7, "")
                .set(1, 8, "")
                .set(1, 24, "")
                .bytes(),
            vec![],
        ),
        case(
            "day mask for all 31 days of October",
            PLAN,
            plan1().set(1, 11, &"1".repeat(31)).bytes(),
            vec![],
        ),
        case(
            "day mask for every day of February 2024 (29 days)",
            &feb.0,
            feb.1.set(1, 11, &format!("{}00", "1".repeat(29))).bytes(),
            vec![],
        ),
        case(
            "UPSIKYU decimals 10 and 10.9",
            SIKYU,
            Csv::sample(SIKYU)
                .keep(0..2)
                .set(1, 23, "10")
                .set(2, 23, "10.9")
                .bytes(),
            vec![],
        ),
        case(
            "postal code without hyphen; service kind with a letter",
            HOSOKU,
            Csv::sample(HOSOKU)
                .keep(0..1)
                .set(1, 9, "1010048")
                .set(1, 20, "A2")
                .bytes(),
            vec![],
        ),
        case(
            "福祉用具 line with only a 届出コード",
            JSK17,
            Csv::sample(JSK17)
                .set(1, 16, "")
                .set(1, 17, "\"K-0001\"")
                .bytes(),
            vec![],
        ),
        case(
            "UP2KYO sample: later rows leave 課題/目標 text empty (fill down)",
            KYO2,
            Csv::sample(KYO2).bytes(),
            vec![],
        ),
        case(
            "a JPEG family image",
            IMAGE,
            vec![
                0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, b'J', b'F', b'I', b'F', 0xFF, 0xD9,
            ],
            vec![],
        ),
        case(
            "no line end after the last record",
            PLAN,
            {
                let mut b = plan3().bytes();
                b.truncate(b.len() - 2);
                b
            },
            vec![],
        ),
    ]
}

/// Every NAME_* code. The content is the valid sample, so the name is the only finding.
fn name_cases() -> Vec<Case> {
    let body = plan3().bytes();
    let n = |what: &str, name: &str, code: E| case(what, name, body.clone(), vec![(0, 0, code)]);
    vec![
        n(
            "extension .TXT",
            "UPPLAN_202610_1310000001_43_1310000011_11_20260928103000.TXT",
            E::NameExtension,
        ),
        n(
            "unknown prefix",
            "UPXXX_202610_1310000001_43_1310000011_11_20260928103000.CSV",
            E::NamePrefix,
        ),
        n(
            "a part missing",
            "UPPLAN_202610_1310000001_43_1310000011_20260928103000.CSV",
            E::NameShape,
        ),
        n("month 13", &name_with("202613"), E::NameMonth),
        n(
            "9-digit office",
            "UPPLAN_202610_131000001_43_1310000011_11_20260928103000.CSV",
            E::NameOffice,
        ),
        n(
            "1-character service kind",
            "UPPLAN_202610_1310000001_4_1310000011_11_20260928103000.CSV",
            E::NameKind,
        ),
        n(
            "stamp on 31 September",
            "UPPLAN_202610_1310000001_43_1310000011_11_20260931103000.CSV",
            E::NameStamp,
        ),
        n(
            "browser's duplicate-download suffix",
            "UPPLAN_202610_1310000001_43_1310000011_11_20260928103000 (1).CSV",
            E::NameCharacters,
        ),
        case(
            "a CSV name with the image prefix: checked as an image",
            "UPKIHON_IMAGE_1310000001_43_1310000011_11_20260928100000_0001.CSV",
            body.clone(),
            vec![(0, 0, E::NameExtension), (0, 0, E::ImageNotJpeg)],
        ),
    ]
}

fn encoding_cases() -> Vec<Case> {
    // The record's own errors (a bad date) must not be reported: the text is never decoded.
    let utf8 = plan3().set(2, 4, "20230229").text("\r\n");
    let mut bom = vec![0xEF, 0xBB, 0xBF];
    bom.extend_from_slice(utf8.as_bytes());
    // More than the first 64 KiB in ASCII (records without names), then UTF-8 Japanese.
    let ascii = Csv::sample(PLAN)
        .set_all(7, "")
        .set_all(18, "")
        .set_all(21, "");
    assert!(ascii.text("").is_ascii());
    let mut long = String::new();
    while long.len() < 100 * 1024 {
        long.push_str(&ascii.text("\r\n"));
    }
    // ああ in UTF-8 (E3 81 82 E3 81 82) also reads as CP932 (E381 82E3 8182): mojibake.
    let mojibake = format!(
        "{long}{}",
        plan1().set(1, 7, "\"ああ\"").set(1, 21, "").text("\r\n")
    );
    long.push_str(&utf8);

    // 0xA0 is no CP932 byte; 0x81 is a lead byte, here followed by CR.
    let mut invalid = Vec::new();
    for (i, r) in plan3().records.iter().enumerate() {
        let mut line = sjis_encode(&r.join(","));
        match i {
            1 => line.insert(30, 0xA0),
            2 => line.push(0x81),
            _ => {}
        }
        invalid.extend_from_slice(&line);
        invalid.extend_from_slice(b"\r\n");
    }
    // 外字: 0xF0 0x40 is the first user-defined character (U+E000). The text is split around
    // a marker and encoded in parts (any ASCII byte can be the trail byte of a kanji).
    let gaiji = |eol: &str| {
        let text = plan3().set(2, 7, "\"中村<GAIJI>\"").text(eol);
        let (before, after) = text.split_once("<GAIJI>").unwrap();
        [sjis_encode(before), vec![0xF0, 0x40], sjis_encode(after)].concat()
    };
    vec![
        case(
            "UTF-8 with BOM",
            PLAN,
            bom,
            vec![(1, 0, E::EncodingUtf8Bom)],
        ),
        case(
            "UTF-8 without BOM",
            PLAN,
            utf8.clone().into_bytes(),
            vec![(1, 0, E::EncodingUtf8)],
        ),
        case(
            "UTF-8 whose first 100 KiB are ASCII",
            PLAN,
            long.into_bytes(),
            vec![(1, 0, E::EncodingUtf8)],
        ),
        case(
            "UTF-8 that happens to be valid CP932, after 100 KiB of ASCII",
            PLAN,
            mojibake.into_bytes(),
            vec![(1, 0, E::EncodingUtf8)],
        ),
        case(
            "invalid CP932 bytes on lines 2 and 3",
            PLAN,
            invalid,
            vec![(2, 0, E::EncodingInvalid), (3, 0, E::EncodingInvalid)],
        ),
        case(
            "外字 on line 2 (CRLF)",
            PLAN,
            gaiji("\r\n"),
            vec![(2, 0, E::EncodingGaiji)],
        ),
        case(
            "外字 on line 2 (CR)",
            PLAN,
            gaiji("\r"),
            vec![(2, 0, E::EncodingGaiji)],
        ),
    ]
}

/// File-level structure: empty files, images, quotes, field counts, versions.
fn structure_cases() -> Vec<Case> {
    let plan = plan3();
    vec![
        case("empty file", PLAN, vec![], vec![(0, 0, E::FileEmpty)]),
        case(
            "only line ends",
            PLAN,
            b"\r\n\r\n".to_vec(),
            vec![(0, 0, E::FileEmpty)],
        ),
        case(
            "image that is not a JPEG",
            IMAGE,
            b"GIF89a".to_vec(),
            vec![(0, 0, E::ImageNotJpeg)],
        ),
        case(
            "image without the end marker",
            IMAGE,
            vec![0xFF, 0xD8, 0xFF, 0xE0, 0, 0],
            vec![(0, 0, E::ImageNotJpeg)],
        ),
        case(
            "unterminated quote in record 3",
            PLAN,
            plan.clone().set(3, 21, "\"さくら訪問介護").bytes(),
            vec![(3, 0, E::CsvQuote)],
        ),
        case(
            "unterminated quote in record 2: the next quote closes it, then two strays",
            PLAN,
            plan.clone().set(2, 7, "\"中村　由美").bytes(),
            vec![(2, 0, E::CsvQuote), (2, 0, E::CsvQuote)],
        ),
        case(
            "stray quote inside an unquoted field of record 3",
            PLAN,
            plan.clone().set(3, 7, "中村\"由美").bytes(),
            vec![(3, 0, E::CsvQuote)],
        ),
        case(
            "text after a closing quote in record 3",
            PLAN,
            plan.clone().set(3, 7, "\"中村\"由美").bytes(),
            vec![(3, 0, E::CsvQuote)],
        ),
        case(
            "one field too many in record 2",
            PLAN,
            {
                let mut c = plan.clone();
                c.records[1].push(String::new());
                c.bytes()
            },
            vec![(2, 0, E::FieldCount)],
        ),
        case(
            "one field too few in record 3",
            PLAN,
            {
                let mut c = plan.clone();
                c.records[2].pop();
                c.bytes()
            },
            vec![(3, 0, E::FieldCount)],
        ),
        case(
            "V4 field count at version 202208",
            PLAN,
            plan1().set(1, 1, "202208").bytes(),
            vec![(1, 0, E::FieldCount)],
        ),
        case(
            "unknown CSV version",
            PLAN,
            plan1().set(1, 1, "202499").bytes(),
            vec![(1, 1, E::CsvVersionUnknown)],
        ),
        case(
            "mixed CSV versions (202407 then 202504)",
            PLAN,
            plan.clone().set(2, 1, "202504").set(3, 1, "202504").bytes(),
            vec![(2, 1, E::CsvVersionMixed), (3, 1, E::CsvVersionMixed)],
        ),
        case(
            "UP3KYO at 202208 (第3表 starts with V4)",
            KYO3,
            Csv::sample(KYO3).keep(0..2).set_all(1, "202208").bytes(),
            vec![(1, 1, E::CsvVersionKind), (2, 1, E::CsvVersionKind)],
        ),
    ]
}

/// Line numbers are physical lines, whatever the line ends.
fn line_cases() -> Vec<Case> {
    // Record 1 holds a name broken over three lines, so record 3 starts on line 5.
    let broken = |eol: &str| {
        plan3()
            .set(1, 7, &format!("\"中村{eol}由美{eol}様\""))
            .set(3, 4, "20230229")
            .bytes_eol(eol)
    };
    let mut v = Vec::new();
    for (label, eol) in [("CR", "\r"), ("LF", "\n"), ("CRLF", "\r\n")] {
        v.push(case(
            &format!("{label} line ends"),
            PLAN,
            Csv::sample(PLAN).bytes_eol(eol),
            vec![],
        ));
        v.push(case(
            &format!("{label}: record 3 after a three-line field starts on line 5"),
            PLAN,
            broken(eol),
            vec![(5, 4, E::Date)],
        ));
    }
    v.push(case(
        "UP1KYO sample: records of three lines each, record 3 starts on line 7",
        KYO1,
        Csv::sample(KYO1).set(3, 4, "20230229").bytes(),
        vec![(7, 4, E::Date)],
    ));
    v.push(case(
        "blank line between records counts as a line",
        PLAN,
        {
            let c = plan3().set(2, 4, "20230229");
            let rows: Vec<String> = c.records.iter().map(|r| r.join(",")).collect();
            sjis_encode(&format!(
                "{}\r\n\r\n{}\r\n{}\r\n",
                rows[0], rows[1], rows[2]
            ))
        },
        vec![(3, 4, E::Date)],
    ));
    v.push(case(
        "mixed line ends: CR, LF, CRLF",
        PLAN,
        {
            let c = plan3().set(3, 4, "20230229");
            let rows: Vec<String> = c.records.iter().map(|r| r.join(",")).collect();
            sjis_encode(&format!("{}\r{}\n{}\r\n", rows[0], rows[1], rows[2]))
        },
        vec![(3, 4, E::Date)],
    ));
    v.push(case(
        "unterminated quote reported where its record starts",
        PLAN,
        plan3()
            .set(1, 7, "\"中村\r\n由美\"")
            .set(3, 21, "\"さくら\r\n訪問介護")
            .bytes(),
        vec![(4, 0, E::CsvQuote)],
    ));
    v
}

/// One format rule per case, on a single record so the finding stands alone.
fn field_cases() -> Vec<Case> {
    let sikyu = || Csv::sample(SIKYU).keep(0..1);
    let hosoku = || Csv::sample(HOSOKU).keep(0..1);
    let one = |what: &str, csv: Csv, field: u32, code: E| {
        case(what, PLAN, csv.bytes(), vec![(1, field, code)])
    };
    let (feb_name, feb) = plan1_in("202602", "05");
    let feb = feb.set(1, 4, "20260126");
    vec![
        one(
            "required 被保険者番号 empty",
            plan1().set(1, 3, ""),
            3,
            E::Required,
        ),
        one(
            "required サービス利用日 empty",
            plan1().set(1, 10, ""),
            10,
            E::Required,
        ),
        one(
            "quoted empty is empty too",
            plan1().set(1, 15, "\"\""),
            15,
            E::Required,
        ),
        one("date 20230229", plan1().set(1, 4, "20230229"), 4, E::Date),
        one("date 20261032", plan1().set(1, 10, "20261032"), 10, E::Date),
        one(
            "00000000 only where the layout allows it",
            plan1().set(1, 4, "00000000"),
            4,
            E::Date,
        ),
        one(
            "date with slashes",
            plan1().set(1, 4, "2026/09/26"),
            4,
            E::Date,
        ),
        case(
            "UPHOSOKU 00000000 allowed in field 4, not in field 13",
            HOSOKU,
            hosoku().set(1, 13, "00000000").bytes(),
            vec![(1, 13, E::Date)],
        ),
        case(
            "month 13 (and so not the name's month)",
            SIKYU,
            sikyu().set(1, 5, "202613").bytes(),
            vec![(1, 5, E::Month), (1, 5, E::MonthNameMismatch)],
        ),
        case(
            "month 000000 where the layout does not allow it",
            PLAN,
            plan1().set(1, 5, "000000").bytes(),
            vec![
                (1, 5, E::Month),
                (1, 5, E::MonthNameMismatch),
                (1, 10, E::ServiceDateMonth),
            ],
        ),
        one("time 2360", plan1().set(1, 12, "2360"), 12, E::Time),
        one("time 930", plan1().set(1, 13, "930"), 13, E::Time),
        one("time 2401", plan1().set(1, 13, "2401"), 13, E::Time),
        one(
            "insurer of 5 digits",
            plan1().set(1, 2, "13101"),
            2,
            E::Insurer,
        ),
        one(
            "insurer with a letter",
            plan1().set(1, 2, "13101A"),
            2,
            E::Insurer,
        ),
        one(
            "insured G + 9 digits",
            plan1().set(1, 3, "G000000521"),
            3,
            E::Insured,
        ),
        one(
            "insured h (lower case) + 9 digits",
            plan1().set(1, 3, "h000000521"),
            3,
            E::Insured,
        ),
        one(
            "insured of 9 digits",
            plan1().set(1, 3, "000012345"),
            3,
            E::Insured,
        ),
        one(
            "office of 9 digits",
            plan1().set(1, 20, "131000001"),
            20,
            E::Office,
        ),
        case(
            "service kind of 1 character",
            HOSOKU,
            hosoku().set(1, 20, "1").bytes(),
            vec![(1, 20, E::Kind)],
        ),
        case(
            "service kind in lower case",
            HOSOKU,
            hosoku().set(1, 20, "a2").bytes(),
            vec![(1, 20, E::Kind)],
        ),
        one(
            "service code of 5 digits",
            plan1().set(1, 15, "11731"),
            15,
            E::ServiceCode,
        ),
        one(
            "a quoted comma stays in the field",
            plan1().set(1, 15, "\"1173,1\""),
            15,
            E::ServiceCode,
        ),
        one(
            "a doubled quote stays in the field",
            plan1().set(1, 15, "\"11\"\"311\""),
            15,
            E::ServiceCode,
        ),
        one(
            "count of 3 digits",
            plan1().set(1, 14, "100"),
            14,
            E::Integer,
        ),
        one("count 1.5", plan1().set(1, 14, "1.5"), 14, E::Integer),
        one(
            "unsigned field with a sign",
            plan1().set(1, 9, "-1"),
            9,
            E::Integer,
        ),
        one("sign alone", plan1().set(1, 8, "-"), 8, E::Integer),
        case(
            "decimal with two points",
            SIKYU,
            sikyu().set(1, 23, "11.4.0").bytes(),
            vec![(1, 23, E::Decimal)],
        ),
        case(
            "decimal without integer part",
            SIKYU,
            sikyu().set(1, 23, ".40").bytes(),
            vec![(1, 23, E::Decimal)],
        ),
        case(
            "decimal ending in a point",
            SIKYU,
            sikyu().set(1, 23, "11.").bytes(),
            vec![(1, 23, E::Decimal)],
        ),
        one("３０日超区分 2", plan1().set(1, 23, "2"), 23, E::Code),
        case(
            "保険対象区分 in lower case",
            KYO2,
            Csv::sample(KYO2).keep(0..1).set(1, 15, "y").bytes(),
            vec![(1, 15, E::Code)],
        ),
        case(
            "UPHOSOKU care level 26",
            HOSOKU,
            hosoku().set(1, 18, "26").bytes(),
            vec![(1, 18, E::Code)],
        ),
        one(
            "day mask too short",
            plan1().set(1, 11, "0101"),
            11,
            E::DayMask,
        ),
        one(
            "day mask with a 2",
            plan1().set(1, 11, &format!("2{}", "0".repeat(30))),
            11,
            E::DayMask,
        ),
        case(
            "day mask marks 29 February 2026",
            &feb_name,
            feb.set(1, 11, &format!("{}100", "0".repeat(28))).bytes(),
            vec![(1, 11, E::DayMask)],
        ),
        case(
            "postal code 101-048",
            HOSOKU,
            hosoku().set(1, 9, "101-048").bytes(),
            vec![(1, 9, E::Postal)],
        ),
        case(
            "postal code with a full-width hyphen",
            HOSOKU,
            hosoku().set(1, 9, "101－0048").bytes(),
            vec![(1, 9, E::Postal)],
        ),
    ]
}

fn cross_record_cases() -> Vec<Case> {
    let kyo2 = Csv::sample(KYO2);
    let kyo3 = Csv::sample(KYO3);
    let jsk17 = Csv::sample(JSK17);
    vec![
        case(
            "target month differs from the name's",
            PLAN,
            plan1().set(1, 5, "202611").set(1, 10, "20261102").bytes(),
            vec![(1, 5, E::MonthNameMismatch)],
        ),
        case(
            "two target months in one file (reported once)",
            PLAN,
            plan3()
                .set(2, 5, "202611")
                .set(2, 10, "20261105")
                .set(3, 5, "202611")
                .set(3, 10, "20261107")
                .bytes(),
            vec![
                (2, 5, E::MonthNameMismatch),
                (2, 5, E::MonthMixed),
                (3, 5, E::MonthNameMismatch),
            ],
        ),
        case(
            "two target months in a file whose name failed",
            "UPPLAN_202610_1310000001_43_1310000011_11_20260928103000.csv.bak",
            plan3().set(3, 5, "202611").set(3, 10, "20261107").bytes(),
            vec![(0, 0, E::NameExtension), (3, 5, E::MonthMixed)],
        ),
        case(
            "service date outside the target month",
            PLAN,
            plan3().set(2, 10, "20261101").bytes(),
            vec![(2, 10, E::ServiceDateMonth)],
        ),
        case(
            "第2表: same 課題/目標/援助内容 numbers twice",
            KYO2,
            kyo2.clone().set(3, 13, "1").bytes(),
            vec![(3, 6, E::Plan2NumberDuplicate)],
        ),
        case(
            "第2表: another 課題 text for 課題 1",
            KYO2,
            kyo2.clone().set(2, 7, "\"別の課題\"").bytes(),
            vec![(2, 7, E::Plan2TextConflict)],
        ),
        case(
            "第2表: another 短期目標 for 目標 1-2",
            KYO2,
            kyo2.clone().set(3, 10, "\"別の目標\"").bytes(),
            vec![(3, 10, E::Plan2TextConflict)],
        ),
        case(
            "第2表: the same numbers for another user are no duplicate",
            KYO2,
            {
                let mut c = kyo2.clone().keep(0..1);
                let mut other = c.records[0].clone();
                other[2] = "0000123469".into();
                c = c.push(other);
                c.bytes()
            },
            vec![],
        ),
        case(
            "第3表: a row with nothing in it",
            KYO3,
            {
                let mut c = kyo3.clone().keep(0..3);
                for f in 6..=13 {
                    c = c.set(2, f, "");
                }
                c.bytes()
            },
            vec![(2, 6, E::Plan3RowEmpty)],
        ),
        case(
            "福祉用具 line without TAIS or 届出コード",
            JSK17,
            jsk17.clone().set(2, 16, "").bytes(),
            vec![(2, 16, E::EquipmentCodeMissing)],
        ),
        case(
            "福祉用具 line without codes at V3 (no such columns)",
            PLAN_V3,
            {
                let c = plan_v3();
                let row = c
                    .records
                    .iter()
                    .position(|r| r[14].starts_with("17"))
                    .unwrap();
                assert_eq!(c.records[row].len(), 22);
                c.bytes()
            },
            vec![],
        ),
    ]
}

fn limit_cases() -> Vec<Case> {
    let bad = plan1().set(1, 4, "20230229");
    let mut many = bad.clone();
    for _ in 1..250 {
        many = many.push(bad.records[0].clone());
    }
    let mut want: Want = (1..=MAX_FINDINGS as u64).map(|l| (l, 4, E::Date)).collect();
    want.push((0, 0, E::TooManyErrors));
    // A quoted field of more than a MiB with line breaks in it, after two records (one bad),
    // then records the checker never reads.
    let mut long = plan3().keep(0..2).set(2, 4, "20230229");
    let mut record = long.records[0].clone();
    record[20] = format!("\"{}\"", "長い説明\r\n".repeat(MAX_RECORD / 12));
    let first = long.records[0].clone();
    long = long.push(record).push(first).set(4, 4, "2023");
    let no_end = format!("202407,\"{}\"", "あ".repeat(MAX_RECORD / 2));
    // SPEC.md §3.3: a record's length runs from its first character up to, not including, its
    // line end; the line break inside its quoted field counts, the empty lines before it and its
    // own CRLF do not. Exactly MAX_RECORD bytes is read (and has the wrong field count); one
    // more is too long.
    let of_length = |len: usize| {
        let head = "202407,\"";
        let filler = len - head.len() - "\r\n".len() - 1;
        let record = format!("{head}{}\r\n\"", "a".repeat(filler));
        assert_eq!(record.len(), len);
        format!("\r\n\r\n{record}\r\n").into_bytes()
    };
    vec![
        case(
            "250 bad records: 200 listed, then TOO_MANY_ERRORS",
            PLAN,
            many.bytes(),
            want,
        ),
        case(
            "a record of over 1 MiB: the records before it are checked, none after",
            PLAN,
            long.bytes(),
            vec![(2, 4, E::Date), (3, 0, E::RecordTooLong)],
        ),
        case(
            "a last record of over 1 MiB with no line end",
            PLAN,
            sjis_encode(&no_end),
            vec![(1, 0, E::RecordTooLong)],
        ),
        case(
            "a record of exactly 1 MiB after two empty lines is read",
            PLAN,
            of_length(MAX_RECORD),
            vec![(3, 0, E::FieldCount)],
        ),
        case(
            "a record of 1 MiB and one byte after two empty lines is too long",
            PLAN,
            of_length(MAX_RECORD + 1),
            vec![(3, 0, E::RecordTooLong)],
        ),
    ]
}

// ---------------------------------------------------------------------------------------------
// Tests.
// ---------------------------------------------------------------------------------------------

#[test]
fn every_case_gives_exactly_its_findings() {
    let mut failures = Vec::new();
    for c in cases() {
        let report = check_bytes(&c.name, &c.bytes);
        let got = got(&report);
        if got != c.want {
            failures.push(format!(
                "{}:\n   want {:?}\n   got  {:?}",
                c.what, c.want, got
            ));
        }
        assert_eq!(report.valid, report.errors.is_empty(), "{}", c.what);
        assert_eq!(report.is_valid(), c.want.is_empty(), "{}", c.what);
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// Codes the node reports about routes and the directory, through [`finding`]: no file
/// content produces them.
const ROUTE_CODES: [E; 6] = [
    E::RouteSender,
    E::RouteRecipient,
    E::RecipientUnknown,
    E::PartnerRefused,
    E::FileTooLarge,
    E::MailboxExpired,
];

#[test]
fn every_error_code_has_a_case() {
    let mut seen = BTreeSet::new();
    for c in cases() {
        let codes = check_bytes(&c.name, &c.bytes).codes();
        assert!(!codes.iter().any(|c| ROUTE_CODES.contains(c)));
        seen.extend(codes);
    }
    seen.extend(ROUTE_CODES.map(|c| finding(c, 0, 0).code));
    let all: BTreeSet<E> = E::ALL.iter().copied().collect();
    let missing: Vec<_> = all.difference(&seen).collect();
    assert!(missing.is_empty(), "codes without a case: {missing:?}");
    assert_eq!(seen, all);
}

#[test]
fn messages_are_in_both_languages() {
    let japanese = |s: &str| {
        s.chars().any(|c| {
            matches!(c, '\u{3040}'..='\u{30FF}' | '\u{4E00}'..='\u{9FFF}' | '\u{FF00}'..='\u{FFEF}')
        })
    };
    let mut codes = BTreeSet::new();
    let route = ROUTE_CODES.map(|c| finding(c, 0, 0));
    for c in cases() {
        for f in check_bytes(&c.name, &c.bytes)
            .errors
            .into_iter()
            .chain(route.clone())
        {
            assert!(!f.message_en.trim().is_empty(), "{}: {:?}", c.what, f.code);
            assert!(japanese(&f.message_ja), "{}: {}", c.what, f.message_ja);
            assert_ne!(f.message_ja, f.message_en);
            codes.insert(f.code);
        }
    }
    assert_eq!(codes.len(), E::ALL.len());
}

#[test]
fn messages_show_the_value_as_read() {
    let report = check_bytes(PLAN, &plan1().set(1, 15, "\"1173,1\"").bytes());
    assert!(report.errors[0].message_en.contains("\"1173,1\""));
    assert!(report.errors[0].message_ja.contains("「1173,1」"));
    let report = check_bytes(PLAN, &plan1().set(1, 15, "\"11\"\"311\"").bytes());
    assert!(report.errors[0].message_ja.contains("「11\"311」"));
    assert!(report.errors[0].message_ja.contains("サービスコード"));
    let report = check_bytes(
        SIKYU,
        &Csv::sample(SIKYU).keep(0..1).set(1, 5, "202613").bytes(),
    );
    assert!(
        report.errors[1].message_en.contains("202610"),
        "{:?}",
        report.errors
    );
}

#[test]
fn utf8_is_refused_before_any_record_is_read() {
    let text = Csv::sample(PLAN).text("\r\n");
    for (what, bytes) in [
        ("no BOM", text.clone().into_bytes()),
        ("BOM", [&[0xEF, 0xBB, 0xBF][..], text.as_bytes()].concat()),
    ] {
        let report = check_bytes(PLAN, &bytes);
        assert_eq!(report.records, 0, "{what}");
        assert_eq!(report.errors.len(), 1, "{what}");
    }
}

#[test]
fn sample_record_counts() {
    // Line numbers are physical lines, but records are records.
    let report = check_bytes(KYO1, &sample_bytes(KYO1));
    assert_eq!(report.records, 4);
    assert!(report.is_valid());
    let report = check_bytes(PLAN, &Csv::sample(PLAN).bytes_eol("\r"));
    assert_eq!(report.records, 110);
}

#[test]
fn too_many_errors_stops_the_reading() {
    let bad = plan1().set(1, 4, "20230229");
    let mut many = bad.clone();
    for _ in 1..1000 {
        many = many.push(bad.records[0].clone());
    }
    let report = check_bytes(PLAN, &many.bytes());
    assert_eq!(report.errors.len(), MAX_FINDINGS + 1);
    assert_eq!(report.errors.last().unwrap().code, E::TooManyErrors);
    assert!(report.records < 1000, "read {} records", report.records);
}

#[test]
fn many_invalid_bytes_stop_at_the_cap() {
    let mut bytes = Vec::new();
    for _ in 0..1000 {
        bytes.extend_from_slice(b"202407,\xA0\r\n");
    }
    let report = check_bytes(PLAN, &bytes);
    assert_eq!(report.errors.len(), MAX_FINDINGS + 1);
    assert_eq!(report.errors[199].line, 200);
    assert_eq!(report.errors[200].code, E::TooManyErrors);
}

#[test]
fn sample_fields_the_cases_rely_on() {
    // If the samples change, these cases would silently test something else.
    let plan = Csv::sample(PLAN);
    assert_eq!(plan.get(1, 5), "202610");
    assert_eq!(plan.get(1, 10), "20261002");
    assert_eq!(plan.get(1, 15), "117311");
    let kyo2 = Csv::sample(KYO2);
    assert_eq!(
        [kyo2.get(2, 6), kyo2.get(2, 8), kyo2.get(2, 13)],
        ["1", "2", "1"]
    );
    assert_eq!(
        [kyo2.get(3, 6), kyo2.get(3, 8), kyo2.get(3, 13)],
        ["1", "2", "2"]
    );
    let jsk = Csv::sample(JSK17);
    assert!(jsk.get(2, 15).starts_with("17") && !jsk.get(2, 16).is_empty());
    assert_eq!(jsk.get(2, 17), "");
    assert_eq!(Csv::sample(SIKYU).get(1, 23), "11.40");
    assert_eq!(Csv::sample(HOSOKU).get(1, 9), "101-0048");
}

// ---------------------------------------------------------------------------------------------
// Never panics.
// ---------------------------------------------------------------------------------------------

/// Byte strings shaped to reach deep into the checker: random bytes, CSV-ish alphabets with
/// CP932 lead bytes, and mutated sample files, under real and broken names.
#[test]
fn never_panics_on_pseudo_random_input() {
    let mut rng = ChaCha20Rng::seed_from_u64(0x5EED_C4EC);
    let samples: Vec<(&str, Vec<u8>)> = [PLAN, JSK17, SIKYU, KYO1, KYO2, KYO3, HOSOKU0]
        .into_iter()
        .map(|n| (n, sample_bytes(n)))
        .collect();
    let names = [
        PLAN,
        JSK17,
        SIKYU,
        KYO1,
        KYO2,
        KYO3,
        HOSOKU0,
        HOSOKU,
        IMAGE,
        PLAN_V3,
        "UPKIHON_1310000001_43_1310000011_11_20260928100000.CSV",
        "UPYOBO_SUB_1310000001_43_1310000011_11_20260928100000.CSV",
        "DLTJSK_202610_1310000001_43_1310000011_11_20260928100000.CSV",
        "UPPLAN_202610.CSV",
        "",
        ".",
        "_",
        "UPKIHON_IMAGE_.jpg",
        "é.CSV",
    ];
    let alphabet: &[u8] = b"0123456789,,,,\"\"\r\n\r\nH-.AZ \x81\x82\x88\x9F\xE0\xEF\xF0\xFC\x40\x7F\x80\xA0\xA1\xDF\xFD\xFF\xEF\xBB\xBF";
    for i in 0..3000 {
        let name: String = if rng.random_ratio(1, 8) {
            let len = rng.random_range(0..80);
            (0..len)
                .map(|_| char::from(b"UPLAN_0123456789.CSVjpg-"[rng.random_range(0..24)]))
                .collect()
        } else {
            names[rng.random_range(0..names.len())].to_string()
        };
        let bytes: Vec<u8> = match i % 3 {
            0 => {
                let mut b = vec![0u8; rng.random_range(0..2000)];
                rng.fill_bytes(&mut b);
                b
            }
            1 => (0..rng.random_range(0..3000))
                .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                .collect(),
            _ => {
                let (sample_name, sample) = &samples[rng.random_range(0..samples.len())];
                let mut b = sample.clone();
                for _ in 0..rng.random_range(1..20) {
                    let at = rng.random_range(0..b.len());
                    match rng.random_range(0..4) {
                        0 => b[at] = alphabet[rng.random_range(0..alphabet.len())],
                        1 => b.insert(at, alphabet[rng.random_range(0..alphabet.len())]),
                        2 => {
                            b.remove(at);
                        }
                        _ => b.truncate(at),
                    }
                    if b.is_empty() {
                        break;
                    }
                }
                if rng.random_bool(0.5) {
                    check_invariants(sample_name, &b);
                }
                b
            }
        };
        check_invariants(&name, &bytes);
    }
}

/// Checks a file fed in pieces of `piece` bytes, keeping at most `retain` bytes of text (0:
/// every file is read twice).
fn check_in_pieces(name: &str, bytes: &[u8], piece: usize, retain: usize) -> CheckReport {
    let mut checker = Checker::with_retain_limit(name, retain);
    for p in bytes.chunks(piece) {
        checker.update(p);
    }
    match checker.finish() {
        Checked::Done(report) => report,
        Checked::ReadAgain(mut records) => {
            for p in bytes.chunks(piece.max(5) - 4) {
                records.update(p);
            }
            records.finish()
        }
    }
}

/// Pieces of every size, read once or twice, give the report of the whole file.
fn assert_same_in_pieces(name: &str, bytes: &[u8], whole: &CheckReport, what: &str) {
    for piece in [1, 2, 3, 61, 4096, 70_000] {
        if piece < 3 && bytes.len() > 4096 {
            continue;
        }
        for retain in [0, 100, renkei_protocol::check::RETAIN_LIMIT] {
            let report = check_in_pieces(name, bytes, piece, retain);
            assert_eq!(
                &report, whole,
                "{what}: pieces of {piece}, keeping {retain}"
            );
        }
    }
}

#[test]
fn every_case_gives_the_same_findings_in_pieces() {
    for c in cases() {
        let whole = check_bytes(&c.name, &c.bytes);
        assert_same_in_pieces(&c.name, &c.bytes, &whole, &c.what);
    }
    for name in [PLAN, JSK17, SIKYU, KYO1, KYO2, KYO3, HOSOKU0] {
        let bytes = sample_bytes(name);
        let whole = check_bytes(name, &bytes);
        assert!(whole.is_valid(), "{name}");
        assert_same_in_pieces(name, &bytes, &whole, name);
    }
}

#[test]
fn a_file_larger_than_what_is_kept_is_read_twice() {
    // 1,000 copies of the sample plan, with an error in the last record.
    let one = Csv::sample(PLAN);
    let mut many = one.clone();
    for _ in 1..1000 {
        for r in &one.records {
            many = many.push(r.clone());
        }
    }
    let n = many.records.len();
    let bad = many.set(n, 4, "20231301");
    let bytes = bad.bytes();
    let whole = check_bytes(PLAN, &bytes);
    // The sample's records are one line each.
    assert_eq!(got(&whole), vec![(n as u64, 4, E::Date)]);
    assert_eq!(whole.records, n as u64);
    let mut checker = Checker::with_retain_limit(PLAN, 1 << 20);
    for p in bytes.chunks(1 << 16) {
        checker.update(p);
    }
    let Checked::ReadAgain(mut records) = checker.finish() else {
        panic!("a {} byte file was kept whole", bytes.len());
    };
    for p in bytes.chunks(1 << 16) {
        records.update(p);
    }
    assert_eq!(records.finish(), whole);
}

fn check_invariants(name: &str, bytes: &[u8]) {
    let report = check_bytes(name, bytes);
    let what = format!("{name} {:02X?}", &bytes[..bytes.len().min(64)]);
    for (piece, retain) in [(1, 0), (7, 100), (331, 0)] {
        assert_eq!(
            check_in_pieces(name, bytes, piece, retain),
            report,
            "{what}: pieces of {piece}, keeping {retain}"
        );
    }
    assert_eq!(report.valid, report.errors.is_empty(), "{what}");
    assert!(report.errors.len() <= MAX_FINDINGS + 1, "{what}");
    let lines = physical_lines(bytes);
    for (i, f) in report.errors.iter().enumerate() {
        assert!(f.line <= lines, "{what}: line {} of {lines}", f.line);
        assert!(f.field <= 71, "{what}: field {}", f.field);
        assert!(
            !f.message_ja.is_empty() && !f.message_en.is_empty(),
            "{what}"
        );
        if f.code == E::TooManyErrors {
            assert_eq!(i, MAX_FINDINGS, "{what}");
        }
    }
}

#[test]
fn checking_an_image_by_its_ends_matches_checking_it_whole() {
    use renkei_protocol::{ImageEnds, check_image};
    let name = "UPKIHON_IMAGE_1310000001_43_1310000011_11_20250125093040_0001.jpg";
    let cases: [&[u8]; 6] = [
        &[0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3, 0xFF, 0xD9],
        &[0xFF, 0xD8, 0xFF, 0xD9],
        &[0xFF, 0xD8, 0xFF],
        &[0x89, b'P', b'N', b'G', 0xFF, 0xD9],
        &[0xFF, 0xD8, 0xFF, 0xE0, 0, 0],
        &[],
    ];
    for bytes in cases {
        assert_eq!(
            check_image(name, ImageEnds::of(bytes)),
            check_bytes(name, bytes),
            "{bytes:?}"
        );
    }
    // A CSV name checked by its ends only is refused rather than passed.
    let csv = "UPPLAN_202610_1310000001_43_1310000011_11_20260928103000.CSV";
    assert!(!check_image(csv, ImageEnds::of(b"x")).is_valid());
}
