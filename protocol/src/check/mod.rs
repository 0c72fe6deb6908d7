//! The standard-spec file checker (SPEC.md §3).
//!
//! [`check_bytes`] takes a file's name and its bytes and returns a [`CheckReport`] listing every
//! problem found (up to [`MAX_FINDINGS`]), each with the physical line where the record starts,
//! the field number, a stable [`ErrorCode`] and a message in Japanese and English.
//!
//! ```
//! use renkei_protocol::check_bytes;
//! let report = check_bytes("UPPLAN_202610_1310000001_43_1310000011_11_20260928103000.CSV", b"");
//! assert!(!report.is_valid());
//! assert_eq!(report.errors[0].code.as_str(), "FILE_EMPTY");
//! ```

mod codes;
pub mod layout;
mod messages;
mod scan;
mod tables;

use std::collections::HashMap;

pub use codes::ErrorCode;
pub use layout::{CodeTable, CsvVersion, Field, Format};
pub use scan::{MAX_RECORD, RETAIN_LIMIT};
pub use tables::layout;

use crate::name::{FileKind, FileName, NameError, YearMonth, days_in_month, digits, is_real_date};

/// At most this many findings are listed per file; a final [`ErrorCode::TooManyErrors`] says
/// more were found.
pub const MAX_FINDINGS: usize = 200;

/// One problem found in a file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Finding {
    /// Physical line (1-based) where the record starts; 0 when the problem is the file name.
    pub line: u64,
    /// Field number (1-based); 0 for file-level problems such as the name or the encoding.
    pub field: u32,
    /// The stable error code.
    pub code: ErrorCode,
    /// What is wrong and what to do, in Japanese.
    pub message_ja: String,
    /// What is wrong and what to do, in English.
    pub message_en: String,
}

/// The result of checking one file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CheckReport {
    /// The file name as given.
    pub file: String,
    /// The file kind, when the name's prefix is known.
    pub kind: Option<String>,
    /// Whether the file passed every check.
    pub valid: bool,
    /// Every problem found, in file order.
    pub errors: Vec<Finding>,
    /// How many records were read.
    #[serde(skip)]
    pub records: u64,
}

impl CheckReport {
    /// Whether the file passed every check.
    pub fn is_valid(&self) -> bool {
        self.errors.is_empty()
    }

    /// The distinct error codes found, in code order.
    pub fn codes(&self) -> Vec<ErrorCode> {
        let mut c: Vec<ErrorCode> = self.errors.iter().map(|f| f.code).collect();
        c.sort();
        c.dedup();
        c
    }
}

/// Checks one file held in memory: its name and its content.
///
/// `name` is the bare file name (no folders). Never panics, whatever the bytes. The same as
/// feeding the bytes to a [`Checker`]; as the bytes are in memory anyway, their text is kept
/// too and the file is read once, whatever its size.
pub fn check_bytes(name: &str, bytes: &[u8]) -> CheckReport {
    let mut checker = Checker::with_retain_limit(name, usize::MAX);
    checker.update(bytes);
    match checker.finish() {
        Checked::Done(report) => report,
        Checked::ReadAgain(mut records) => {
            records.update(bytes);
            records.finish()
        }
    }
}

/// One record of a CSV file that passed every check of its own (its layout, its fields' formats
/// and the cross-checks that name it), as read by the checker. Kept only when asked for
/// ([`read_records`], [`Checker::keep_records`]), for tools that work on the records of valid
/// files, such as the plan-versus-actual reconciliation.
#[derive(Clone, Debug)]
pub struct CheckedRecord {
    line: u64,
    fields: csv::StringRecord,
}

impl CheckedRecord {
    /// Physical line (1-based) where the record starts.
    pub fn line(&self) -> u64 {
        self.line
    }

    /// Field `no` (1-based, as the layouts number them); `""` past the end.
    pub fn field(&self, no: usize) -> &str {
        no.checked_sub(1)
            .and_then(|i| self.fields.get(i))
            .unwrap_or("")
    }

    /// How many fields the record has.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether the record has no fields (never, for a record that passed its checks).
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

/// Checks one file held in memory, as [`check_bytes`] does, and also returns the records that
/// passed their checks, in file order. A record with a finding of its own is left out (the
/// report says why); a file whose text cannot be read as records (a wrong encoding, broken
/// quoting) gives none.
pub fn read_records(name: &str, bytes: &[u8]) -> (CheckReport, Vec<CheckedRecord>) {
    let mut checker = Checker::with_retain_limit(name, usize::MAX);
    if let Body::Text(pass) = &mut checker.body {
        pass.keep_records = true;
    }
    checker.update(bytes);
    let mut records = checker.into_records();
    if records.pass.as_ref().is_some_and(|p| !p.done) {
        // Unreachable with no retain limit; read again rather than lose the records.
        records.update(bytes);
    }
    records.finish_with_records()
}

/// The part of a JPEG file the checker needs: its length, its first three and its last two
/// bytes.
#[derive(Clone, Copy, Debug)]
pub struct ImageEnds {
    /// The file's length in bytes.
    pub len: u64,
    /// Its first three bytes (fewer if the file is shorter).
    pub head: [u8; 3],
    /// Its last two bytes.
    pub tail: [u8; 2],
}

impl ImageEnds {
    /// The ends of a file held in memory.
    pub fn of(bytes: &[u8]) -> ImageEnds {
        let mut ends = ImageEnds {
            len: 0,
            head: [0; 3],
            tail: [0; 2],
        };
        ends.update(bytes);
        ends
    }

    fn update(&mut self, bytes: &[u8]) {
        let have = self.len.min(3) as usize;
        let take = bytes.len().min(3 - have);
        self.head[have..have + take].copy_from_slice(&bytes[..take]);
        self.len += bytes.len() as u64;
        match bytes {
            [] => {}
            [b] => self.tail = [self.tail[1], *b],
            [.., a, b] => self.tail = [*a, *b],
        }
    }

    fn is_jpeg(&self) -> bool {
        self.len >= 4 && self.head == [0xFF, 0xD8, 0xFF] && self.tail == [0xFF, 0xD9]
    }
}

/// Checks an `UPKIHON_IMAGE` file from its ends (see [`ImageEnds`]): the same result as
/// [`check_bytes`] on the whole file. A name of another kind is reported as such.
pub fn check_image(name: &str, ends: ImageEnds) -> CheckReport {
    let mut checker = Checker::new(name);
    match &mut checker.body {
        Body::Image(e) => *e = ends,
        // Only the ends of a file were given, but the name says it is a CSV.
        Body::Text(_) => {
            checker.body = Body::Ignored;
            checker
                .out
                .push(0, 0, ErrorCode::NameExtension, messages::Ctx::default());
        }
        Body::Ignored => {}
    }
    match checker.finish() {
        Checked::Done(report) => report,
        // Unreachable: only a CSV asks for a second pass.
        Checked::ReadAgain(records) => records.finish(),
    }
}

/// Checks a file given in pieces of any size, in memory bounded by [`RETAIN_LIMIT`] and the
/// longest record, whatever the file's size. Gives the same report as [`check_bytes`].
///
/// A file larger than [`RETAIN_LIMIT`] is read twice: [`Checker::finish`] then asks for the
/// same bytes again ([`Checked::ReadAgain`]).
///
/// ```
/// use renkei_protocol::{Checked, Checker};
/// let file = b"202407,1310000001\r\n";
/// let mut checker = Checker::new("UPPLAN_202610_1310000001_43_1310000011_11_20260928103000.CSV");
/// for piece in file.chunks(7) {
///     checker.update(piece);
/// }
/// let report = match checker.finish() {
///     Checked::Done(report) => report,
///     Checked::ReadAgain(mut records) => {
///         for piece in file.chunks(7) {
///             records.update(piece);
///         }
///         records.finish()
///     }
/// };
/// assert_eq!(report.errors[0].code.as_str(), "FIELD_COUNT");
/// ```
pub struct Checker {
    file: String,
    kind: Option<FileKind>,
    out: Sink,
    body: Body,
}

enum Body {
    /// The name says nothing of the content's kind.
    Ignored,
    Image(ImageEnds),
    Text(Box<scan::TextPass>),
}

/// What [`Checker::finish`] found.
pub enum Checked {
    /// The whole report.
    Done(CheckReport),
    /// The file was too large to keep while its text was checked: feed it again, from the
    /// start, to read its records.
    ReadAgain(Box<RecordChecker>),
}

impl Checker {
    /// A checker for the file of this name (bare, no folders).
    pub fn new(name: &str) -> Checker {
        Checker::with_retain_limit(name, RETAIN_LIMIT)
    }

    /// A checker that keeps at most `retain` bytes of decoded text; a larger file is read
    /// twice. Lower it to check in less memory.
    pub fn with_retain_limit(name: &str, retain: usize) -> Checker {
        let mut out = Sink::new();
        let parsed = FileName::parse(name);
        let kind = match &parsed {
            Ok(n) => Some(n.kind),
            Err(e) => {
                out.push(0, 0, name_code(*e), messages::Ctx::default());
                guess_kind(name)
            }
        };
        let body = match kind {
            Some(k) if k.is_image() => Body::Image(ImageEnds::of(&[])),
            Some(k) => Body::Text(Box::new(scan::TextPass::new(k, parsed.ok(), retain))),
            None => Body::Ignored,
        };
        Checker {
            file: name.to_string(),
            kind,
            out,
            body,
        }
    }

    /// Takes the next piece of the file.
    pub fn update(&mut self, bytes: &[u8]) {
        match &mut self.body {
            Body::Ignored => {}
            Body::Image(ends) => ends.update(bytes),
            Body::Text(pass) => pass.update(bytes),
        }
    }

    /// Ends the file: the report, or a request to read the file again for its records.
    pub fn finish(self) -> Checked {
        let records = self.into_records();
        match &records.pass {
            Some(pass) if !pass.done => Checked::ReadAgain(Box::new(records)),
            _ => Checked::Done(records.finish()),
        }
    }

    /// Ends the text pass; the record pass has run when the text was kept.
    fn into_records(mut self) -> RecordChecker {
        let records = match self.body {
            Body::Ignored => None,
            Body::Image(ends) => {
                if !ends.is_jpeg() {
                    self.out
                        .push(0, 0, ErrorCode::ImageNotJpeg, messages::Ctx::default());
                }
                None
            }
            Body::Text(pass) => pass.finish(&mut self.out),
        };
        RecordChecker {
            file: self.file,
            kind: self.kind,
            out: self.out,
            pass: records,
        }
    }
}

impl std::fmt::Debug for Checker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checker").field("file", &self.file).finish()
    }
}

impl std::fmt::Debug for Checked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Checked::Done(r) => f.debug_tuple("Done").field(r).finish(),
            Checked::ReadAgain(r) => f.debug_tuple("ReadAgain").field(r).finish(),
        }
    }
}

impl std::fmt::Debug for RecordChecker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordChecker")
            .field("file", &self.file)
            .finish()
    }
}

/// The second reading of a large file (see [`Checked::ReadAgain`]).
pub struct RecordChecker {
    file: String,
    kind: Option<FileKind>,
    out: Sink,
    pass: Option<scan::RecordPass>,
}

impl RecordChecker {
    /// Takes the next piece of the file, read again from its start.
    pub fn update(&mut self, bytes: &[u8]) {
        if let Some(pass) = &mut self.pass {
            pass.update(bytes, &mut self.out);
        }
    }

    /// The whole report.
    pub fn finish(self) -> CheckReport {
        self.finish_with_records().0
    }

    /// The whole report, and the records kept (when asked for, see [`read_records`]).
    fn finish_with_records(mut self) -> (CheckReport, Vec<CheckedRecord>) {
        let mut records = 0;
        let mut kept = Vec::new();
        if let Some(pass) = &mut self.pass {
            pass.finish(&mut self.out);
            records = pass.records;
            kept = pass.kept.take().unwrap_or_default();
        }
        let errors = self.out.finish();
        let report = CheckReport {
            file: self.file,
            kind: self.kind.map(|k| k.prefix().to_string()),
            valid: errors.is_empty(),
            errors,
            records,
        };
        (report, kept)
    }
}

/// A finding with the code's general message, for checks made outside [`check_bytes`] (the
/// node's route checks) and for showing the findings of a partner's negative ack.
pub fn finding(code: ErrorCode, line: u64, field: u32) -> Finding {
    let (message_ja, message_en) = messages::render(code, line, field, &messages::Ctx::default());
    Finding {
        line,
        field,
        code,
        message_ja,
        message_en,
    }
}

fn name_code(e: NameError) -> ErrorCode {
    match e {
        NameError::BadExtension => ErrorCode::NameExtension,
        NameError::UnknownPrefix => ErrorCode::NamePrefix,
        NameError::BadShape => ErrorCode::NameShape,
        NameError::BadMonth => ErrorCode::NameMonth,
        NameError::BadOffice => ErrorCode::NameOffice,
        NameError::BadKind => ErrorCode::NameKind,
        NameError::BadStamp => ErrorCode::NameStamp,
        NameError::BadCharacters => ErrorCode::NameCharacters,
    }
}

/// The kind named by a file name that failed to parse, so its content can still be checked.
fn guess_kind(name: &str) -> Option<FileKind> {
    let stem = name.split('.').next()?;
    let parts: Vec<&str> = stem.split('_').collect();
    [2usize, 1]
        .into_iter()
        .filter(|n| parts.len() >= *n)
        .find_map(|n| FileKind::from_prefix(&parts[..n].join("_")))
}

/// Collects findings up to the cap.
struct Sink {
    findings: Vec<Finding>,
    overflow: bool,
}

impl Sink {
    fn new() -> Sink {
        Sink {
            findings: Vec::new(),
            overflow: false,
        }
    }

    fn push(&mut self, line: u64, field: u32, code: ErrorCode, ctx: messages::Ctx<'_>) {
        if self.findings.len() >= MAX_FINDINGS {
            self.overflow = true;
            return;
        }
        let (message_ja, message_en) = messages::render(code, line, field, &ctx);
        self.findings.push(Finding {
            line,
            field,
            code,
            message_ja,
            message_en,
        });
    }

    fn full(&self) -> bool {
        self.overflow
    }

    /// Takes another sink's findings after this one's, up to the cap.
    fn absorb(&mut self, other: Sink) {
        for f in other.findings {
            if self.findings.len() >= MAX_FINDINGS {
                self.overflow = true;
                return;
            }
            self.findings.push(f);
        }
        self.overflow |= other.overflow;
    }

    fn finish(mut self) -> Vec<Finding> {
        if self.overflow {
            let (message_ja, message_en) =
                messages::render(ErrorCode::TooManyErrors, 0, 0, &messages::Ctx::default());
            self.findings.push(Finding {
                line: 0,
                field: 0,
                code: ErrorCode::TooManyErrors,
                message_ja,
                message_en,
            });
        }
        self.findings
    }
}

/// State kept across the records of one file for the cross-record checks.
#[derive(Default)]
struct FileState {
    version: Option<CsvVersion>,
    first_month: Option<String>,
    month_mixed_reported: bool,
    /// 第2表: (insurer, insured, plan date, 課題NO, 目標NO, 内容NO) → line.
    plan2_numbers: HashMap<[String; 6], u64>,
    /// 第2表: (insurer, insured, plan date, 課題NO, 目標NO or "") → texts.
    plan2_texts: HashMap<[String; 5], Vec<String>>,
}

fn field_str(record: &csv::StringRecord, i: usize) -> &str {
    record.get(i).unwrap_or("")
}

fn check_record(
    kind: FileKind,
    name: Option<&FileName>,
    line: u64,
    record: &csv::StringRecord,
    state: &mut FileState,
    out: &mut Sink,
) {
    let v = field_str(record, 0);
    let Some(version) = CsvVersion::parse(v) else {
        out.push(
            line,
            1,
            ErrorCode::CsvVersionUnknown,
            messages::Ctx {
                value: Some(v),
                ..Default::default()
            },
        );
        return;
    };
    match state.version {
        None => state.version = Some(version),
        Some(first) if first != version => {
            out.push(
                line,
                1,
                ErrorCode::CsvVersionMixed,
                messages::Ctx {
                    value: Some(v),
                    expected: Some(first.as_str()),
                    ..Default::default()
                },
            );
        }
        Some(_) => {}
    }
    let Some(fields) = layout(kind, version) else {
        out.push(
            line,
            1,
            ErrorCode::CsvVersionKind,
            messages::Ctx {
                value: Some(v),
                kind: Some(kind),
                ..Default::default()
            },
        );
        return;
    };
    if record.len() != fields.len() {
        let expected = fields.len().to_string();
        let got = record.len().to_string();
        out.push(
            line,
            0,
            ErrorCode::FieldCount,
            messages::Ctx {
                value: Some(&got),
                expected: Some(&expected),
                kind: Some(kind),
                ..Default::default()
            },
        );
        return;
    }
    for (i, field) in fields.iter().enumerate().skip(1) {
        let value = field_str(record, i);
        let no = i as u32 + 1;
        if value.is_empty() {
            if field.required {
                out.push(
                    line,
                    no,
                    ErrorCode::Required,
                    messages::Ctx {
                        field: Some(field),
                        ..Default::default()
                    },
                );
            }
            continue;
        }
        if let Some(code) = check_format(field.format, value) {
            let expected = match field.format {
                Format::Code(t) => Some(t.values.join(", ")),
                Format::Integer { max_digits, .. } => Some(max_digits.to_string()),
                _ => None,
            };
            out.push(
                line,
                no,
                code,
                messages::Ctx {
                    field: Some(field),
                    value: Some(value),
                    expected: expected.as_deref(),
                    table: match field.format {
                        Format::Code(t) => Some(t),
                        _ => None,
                    },
                    ..Default::default()
                },
            );
        }
    }
    cross_checks(kind, name, version, line, record, state, out);
}

/// Checks one non-empty value against its format; returns the error code when it fails.
fn check_format(format: Format, v: &str) -> Option<ErrorCode> {
    let b = v.as_bytes();
    let all_digits = |b: &[u8]| b.iter().all(u8::is_ascii_digit);
    let ok = match format {
        Format::Text | Format::Version => return None,
        Format::Date { zero_ok } => (zero_ok && v == "00000000") || is_real_date(v),
        Format::Month { zero_ok } => YearMonth::parse(v, zero_ok).is_some(),
        Format::Time => {
            // 2400 (end of the day) is accepted: 第3表's weekly chart runs to 24:00.
            v == "9999"
                || v == "2400"
                || (b.len() == 4 && all_digits(b) && digits(&b[..2]) <= 23 && digits(&b[2..]) <= 59)
        }
        Format::Insurer => b.len() == 6 && all_digits(b),
        Format::Insured => {
            b.len() == 10 && (all_digits(b) || (b[0] == b'H' && all_digits(&b[1..])))
        }
        Format::Office => b.len() == 10 && all_digits(b),
        Format::Kind => {
            b.len() == 2
                && b.iter()
                    .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
        }
        Format::ServiceCode => {
            b.len() == 6
                && b.iter()
                    .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
        }
        Format::Integer { max_digits, signed } => {
            let d = if signed {
                b.strip_prefix(b"-").unwrap_or(b)
            } else {
                b
            };
            !d.is_empty() && d.len() <= usize::from(max_digits) && all_digits(d)
        }
        Format::Decimal => {
            let (i, f) = v.split_once('.').unwrap_or((v, ""));
            !i.is_empty()
                && i.len() <= 4
                && all_digits(i.as_bytes())
                && f.len() <= 4
                && all_digits(f.as_bytes())
                && !(v.ends_with('.'))
        }
        Format::Code(t) => t.values.contains(&v),
        Format::DayMask => b.len() == 31 && b.iter().all(|c| *c == b'0' || *c == b'1'),
        Format::Postal => {
            (b.len() == 8 && b[3] == b'-' && all_digits(&b[..3]) && all_digits(&b[4..]))
                || (b.len() == 7 && all_digits(b))
        }
    };
    if ok {
        return None;
    }
    Some(match format {
        Format::Text | Format::Version => return None,
        Format::Date { .. } => ErrorCode::Date,
        Format::Month { .. } => ErrorCode::Month,
        Format::Time => ErrorCode::Time,
        Format::Insurer => ErrorCode::Insurer,
        Format::Insured => ErrorCode::Insured,
        Format::Office => ErrorCode::Office,
        Format::Kind => ErrorCode::Kind,
        Format::ServiceCode => ErrorCode::ServiceCode,
        Format::Integer { .. } => ErrorCode::Integer,
        Format::Decimal => ErrorCode::Decimal,
        Format::Code(_) => ErrorCode::Code,
        Format::DayMask => ErrorCode::DayMask,
        Format::Postal => ErrorCode::Postal,
    })
}

/// The (1-based) field holding the record's target month, for kinds whose name has one.
fn month_field(kind: FileKind) -> Option<usize> {
    match kind {
        FileKind::UpPlan | FileKind::UpJsk | FileKind::UpSikyu => Some(5),
        FileKind::DltPlan | FileKind::DltJsk => Some(4),
        FileKind::UpHosoku => Some(63),
        _ => None,
    }
}

/// Whether a `YYYYMM` field holds `m`, without formatting `m`.
fn month_equals(field: &str, m: YearMonth) -> bool {
    let b = field.as_bytes();
    b.len() == 6
        && b.iter().all(u8::is_ascii_digit)
        && digits(&b[..4]) == u32::from(m.year)
        && digits(&b[4..]) == u32::from(m.month)
}

fn cross_checks(
    kind: FileKind,
    name: Option<&FileName>,
    version: CsvVersion,
    line: u64,
    record: &csv::StringRecord,
    state: &mut FileState,
    out: &mut Sink,
) {
    let f = |n: usize| field_str(record, n - 1);
    if let Some(mf) = month_field(kind) {
        let month = f(mf);
        if let Some(name_month) = name.and_then(|n| n.month)
            && !month.is_empty()
            && !month_equals(month, name_month)
        {
            let want = name_month.to_string();
            out.push(
                line,
                mf as u32,
                ErrorCode::MonthNameMismatch,
                messages::Ctx {
                    value: Some(month),
                    expected: Some(&want),
                    ..Default::default()
                },
            );
        }
        match &state.first_month {
            None => state.first_month = Some(month.to_string()),
            Some(first) if first != month && !state.month_mixed_reported => {
                state.month_mixed_reported = true;
                let first = first.clone();
                out.push(
                    line,
                    mf as u32,
                    ErrorCode::MonthMixed,
                    messages::Ctx {
                        value: Some(month),
                        expected: Some(&first),
                        ..Default::default()
                    },
                );
            }
            Some(_) => {}
        }
    }
    match kind {
        FileKind::UpPlan | FileKind::UpJsk => {
            // Service date (field 10) inside the target month (field 5).
            let (month, date) = (f(5), f(10));
            if month.len() == 6 && is_real_date(date) && !date.starts_with(month) {
                out.push(
                    line,
                    10,
                    ErrorCode::ServiceDateMonth,
                    messages::Ctx {
                        value: Some(date),
                        expected: Some(month),
                        ..Default::default()
                    },
                );
            }
            // 日割対象日 must not mark days the month does not have.
            let mask = f(11).as_bytes();
            if mask.len() == 31 && month.len() == 6 && month.bytes().all(|c| c.is_ascii_digit()) {
                let b = month.as_bytes();
                let days = days_in_month(digits(&b[..4]), digits(&b[4..])) as usize;
                if (1..=12).contains(&digits(&b[4..])) && mask[days..].contains(&b'1') {
                    out.push(
                        line,
                        11,
                        ErrorCode::DayMask,
                        messages::Ctx {
                            value: Some(f(11)),
                            ..Default::default()
                        },
                    );
                }
            }
            // 福祉用具貸与 (17, 予防 67): a TAIS code or a 届出コード is required (V4 fields 16/17).
            let code = f(15);
            if version.is_v4()
                && (code.starts_with("17") || code.starts_with("67"))
                && f(16).is_empty()
                && f(17).is_empty()
            {
                out.push(
                    line,
                    16,
                    ErrorCode::EquipmentCodeMissing,
                    messages::Ctx::default(),
                );
            }
        }
        FileKind::Up2Kyo => check_plan2(line, record, state, out),
        FileKind::Up3Kyo => {
            let filled =
                |r: std::ops::RangeInclusive<usize>| r.into_iter().any(|n| !f(n).is_empty());
            if !filled(6..=9) && !filled(10..=12) && !filled(13..=13) {
                out.push(line, 6, ErrorCode::Plan3RowEmpty, messages::Ctx::default());
            }
        }
        _ => {}
    }
}

/// 第2表: numbering unique per plan, and one text per 課題 and per 目標 (later rows may leave the
/// text empty: receivers fill it down).
fn check_plan2(line: u64, record: &csv::StringRecord, state: &mut FileState, out: &mut Sink) {
    let f = |n: usize| field_str(record, n - 1).to_string();
    let key = [f(2), f(3), f(5), f(6), f(8), f(13)];
    if key[3..].iter().any(String::is_empty) {
        return;
    }
    if let Some(first) = state.plan2_numbers.get(&key) {
        let at = first.to_string();
        let nums = format!("{}-{}-{}", key[3], key[4], key[5]);
        out.push(
            line,
            6,
            ErrorCode::Plan2NumberDuplicate,
            messages::Ctx {
                value: Some(&nums),
                expected: Some(&at),
                ..Default::default()
            },
        );
    } else {
        state.plan2_numbers.insert(key.clone(), line);
    }
    let issue_key = [
        key[0].clone(),
        key[1].clone(),
        key[2].clone(),
        key[3].clone(),
        String::new(),
    ];
    let goal_key = [
        key[0].clone(),
        key[1].clone(),
        key[2].clone(),
        key[3].clone(),
        key[4].clone(),
    ];
    for (k, cols) in [(issue_key, &[7usize][..]), (goal_key, &[9usize, 10][..])] {
        let texts: Vec<String> = cols.iter().map(|c| f(*c)).collect();
        match state.plan2_texts.get_mut(&k) {
            None => {
                state.plan2_texts.insert(k, texts);
            }
            Some(known) => {
                for (j, t) in texts.iter().enumerate() {
                    if t.is_empty() {
                        continue;
                    }
                    if known[j].is_empty() {
                        known[j] = t.clone();
                    } else if &known[j] != t {
                        out.push(
                            line,
                            cols[j] as u32,
                            ErrorCode::Plan2TextConflict,
                            messages::Ctx {
                                value: Some(t),
                                expected: Some(&known[j].clone()),
                                ..Default::default()
                            },
                        );
                    }
                }
            }
        }
    }
}
