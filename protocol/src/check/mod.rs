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
mod tables;

use std::collections::HashMap;

pub use codes::ErrorCode;
pub use layout::{CodeTable, CsvVersion, Field, Format};
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

/// Checks one file: its name and its content.
///
/// `name` is the bare file name (no folders). Never panics, whatever the bytes.
pub fn check_bytes(name: &str, bytes: &[u8]) -> CheckReport {
    check_content(name, Content::Bytes(bytes))
}

/// The part of a JPEG file the checker needs: its length, its first three and its last two
/// bytes. Lets a node check a large family-structure image without reading it into memory.
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
        let mut head = [0u8; 3];
        let mut tail = [0u8; 2];
        let h = bytes.len().min(3);
        head[..h].copy_from_slice(&bytes[..h]);
        if bytes.len() >= 2 {
            tail.copy_from_slice(&bytes[bytes.len() - 2..]);
        }
        ImageEnds {
            len: bytes.len() as u64,
            head,
            tail,
        }
    }

    fn is_jpeg(&self) -> bool {
        self.len >= 4 && self.head == [0xFF, 0xD8, 0xFF] && self.tail == [0xFF, 0xD9]
    }
}

/// Checks an `UPKIHON_IMAGE` file from its ends (see [`ImageEnds`]): the same result as
/// [`check_bytes`] on the whole file. A name of another kind is reported as such.
pub fn check_image(name: &str, ends: ImageEnds) -> CheckReport {
    check_content(name, Content::Image(ends))
}

enum Content<'a> {
    Bytes(&'a [u8]),
    Image(ImageEnds),
}

fn check_content(name: &str, content: Content<'_>) -> CheckReport {
    let mut out = Sink::new();
    let parsed = FileName::parse(name);
    let kind = match &parsed {
        Ok(n) => Some(n.kind),
        Err(e) => {
            out.push(0, 0, name_code(*e), messages::Ctx::default());
            guess_kind(name)
        }
    };
    let mut records = 0;
    match (kind, content) {
        (Some(kind), content) if kind.is_image() => {
            let ends = match content {
                Content::Bytes(b) => ImageEnds::of(b),
                Content::Image(e) => e,
            };
            if !ends.is_jpeg() {
                out.push(0, 0, ErrorCode::ImageNotJpeg, messages::Ctx::default());
            }
        }
        (Some(kind), Content::Bytes(bytes)) => {
            records = check_csv(kind, parsed.as_ref().ok(), bytes, &mut out);
        }
        // Only the ends of a file were given, but the name says it is a CSV.
        (Some(_), Content::Image(_)) => {
            out.push(0, 0, ErrorCode::NameExtension, messages::Ctx::default())
        }
        (None, _) => {}
    }
    let errors = out.finish();
    CheckReport {
        file: name.to_string(),
        kind: kind.map(|k| k.prefix().to_string()),
        valid: errors.is_empty(),
        errors,
        records,
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

/// Maps byte offsets of a text to physical lines (1-based). CR, LF and CRLF each end one line.
/// Offsets must be asked in non-decreasing order, so a whole file costs one pass.
struct Lines<'a> {
    bytes: &'a [u8],
    pos: usize,
    line: u64,
}

impl<'a> Lines<'a> {
    fn new(bytes: &'a [u8]) -> Lines<'a> {
        Lines {
            bytes,
            pos: 0,
            line: 1,
        }
    }

    /// The line holding the byte at `offset`.
    fn at(&mut self, offset: usize) -> u64 {
        let end = offset.min(self.bytes.len());
        if self.pos < end {
            for i in memchr::memchr2_iter(b'\n', b'\r', &self.bytes[self.pos..end]) {
                let at = self.pos + i;
                // CRLF ends one line: count its CR, not its LF.
                if !(self.bytes[at] == b'\n' && at > 0 && self.bytes[at - 1] == b'\r') {
                    self.line += 1;
                }
            }
            self.pos = end;
        }
        self.line
    }

    /// The line where a record starting at `offset` begins: csv skips blank lines before a
    /// record, and its offset may point at them.
    fn record_at(&mut self, offset: usize) -> u64 {
        let skip = self
            .bytes
            .get(offset..)
            .unwrap_or_default()
            .iter()
            .take_while(|b| matches!(b, b'\r' | b'\n'))
            .count();
        self.at(offset + skip)
    }
}

/// Decodes CP932, reporting every malformed sequence. Returns `None` when the content cannot
/// be read as CP932 at all.
fn decode(bytes: &[u8], out: &mut Sink) -> Option<String> {
    if bytes.starts_with(&[0xEF, 0xBB, 0xBF]) {
        out.push(1, 0, ErrorCode::EncodingUtf8Bom, messages::Ctx::default());
        return None;
    }
    let Some(first) = bytes.iter().position(|b| !b.is_ascii()) else {
        // Pure ASCII is valid CP932 and needs no decoding.
        return Some(String::from_utf8_lossy(bytes).into_owned());
    };
    // A file whose non-ASCII text is valid UTF-8 is UTF-8: real CP932 Japanese text is
    // practically never valid UTF-8. Checked on a window from the first non-ASCII byte, so huge
    // files cost little and a long ASCII start (records without names) does not hide it.
    let window = &bytes[first..bytes.len().min(first + 64 * 1024)];
    let utf8 = match std::str::from_utf8(window) {
        Ok(_) => true,
        // A multi-byte sequence cut by the window is still UTF-8.
        Err(e) => e.error_len().is_none() && first + window.len() < bytes.len(),
    };
    if utf8 {
        out.push(1, 0, ErrorCode::EncodingUtf8, messages::Ctx::default());
        return None;
    }
    let mut decoder = encoding_rs::SHIFT_JIS.new_decoder_without_bom_handling();
    let mut text = String::with_capacity(bytes.len() * 3 / 2 + 16);
    let mut consumed = 0usize;
    let mut bad = false;
    let mut lines = Lines::new(bytes);
    loop {
        let (result, read) =
            decoder.decode_to_string_without_replacement(&bytes[consumed..], &mut text, true);
        consumed += read;
        match result {
            encoding_rs::DecoderResult::InputEmpty => break,
            encoding_rs::DecoderResult::OutputFull => {
                text.reserve(bytes.len() - consumed + 16);
            }
            encoding_rs::DecoderResult::Malformed(len, after) => {
                bad = true;
                let at = consumed.saturating_sub(len as usize + after as usize);
                let byte = bytes.get(at).copied().unwrap_or(0);
                out.push(
                    lines.at(at),
                    0,
                    ErrorCode::EncodingInvalid,
                    messages::Ctx {
                        value: Some(&format!("0x{byte:02X}")),
                        ..Default::default()
                    },
                );
                if out.full() {
                    break;
                }
            }
        }
    }
    if bad {
        return None;
    }
    // 外字: CP932's user-defined area decodes to the Private Use Area, U+E000–U+F8FF: in UTF-8,
    // 0xEE xx xx or 0xEF 0x80–0xA3 xx. Only those lead bytes are looked at.
    let b = text.as_bytes();
    let mut lines = Lines::new(b);
    for i in memchr::memchr2_iter(0xEE, 0xEF, b) {
        if b[i] == 0xEF && b.get(i + 1).is_none_or(|n| *n > 0xA3) {
            continue;
        }
        let Some(c) = text.get(i..).and_then(|t| t.chars().next()) else {
            continue;
        };
        let v = format!("U+{:04X}", c as u32);
        out.push(
            lines.at(i),
            0,
            ErrorCode::EncodingGaiji,
            messages::Ctx {
                value: Some(&v),
                ..Default::default()
            },
        );
    }
    Some(text)
}

/// Checks the quoting of the whole text: `"` only opens a field, closes it, or is doubled
/// inside it. Returns false when the quoting is broken (records cannot be trusted then).
/// Jumps from quote to quote, so text without quotes costs one vectorised search.
fn check_quotes(text: &[u8], out: &mut Sink) -> bool {
    let quote_error = |out: &mut Sink, line: u64, problem: messages::QuoteProblem| {
        out.push(
            line,
            0,
            ErrorCode::CsvQuote,
            messages::Ctx {
                detail: Some(problem),
                ..Default::default()
            },
        );
    };
    let mut lines = Lines::new(text);
    let mut ok = true;
    // Where the record being scanned starts (after the last line break outside quotes).
    let mut record_start = 0usize;
    let mut pos = 0usize;
    while let Some(i) = memchr::memchr(b'"', &text[pos..]) {
        let q = pos + i;
        if let Some(nl) = memchr::memrchr2(b'\n', b'\r', &text[pos..q]) {
            record_start = pos + nl + 1;
        }
        let at_field_start = q == 0 || matches!(text[q - 1], b',' | b'\n' | b'\r');
        if !at_field_start {
            quote_error(out, lines.at(q), messages::QuoteProblem::Stray);
            ok = false;
            pos = q + 1;
        } else {
            // A quoted field: find its closing quote, skipping doubled ones.
            let mut from = q + 1;
            let close = loop {
                match memchr::memchr(b'"', &text[from..]) {
                    None => break None,
                    Some(k) if text.get(from + k + 1) == Some(&b'"') => from += k + 2,
                    Some(k) => break Some(from + k),
                }
            };
            let Some(c) = close else {
                // Counted afresh: earlier findings may lie after the record's start.
                quote_error(
                    out,
                    Lines::new(text).at(record_start),
                    messages::QuoteProblem::Unterminated,
                );
                return false;
            };
            pos = c + 1;
            if !matches!(text.get(pos), None | Some(b',' | b'\r' | b'\n')) {
                quote_error(out, lines.at(pos), messages::QuoteProblem::AfterClose);
                ok = false;
            }
        }
        if out.full() {
            return false;
        }
    }
    ok
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

fn check_csv(kind: FileKind, name: Option<&FileName>, bytes: &[u8], out: &mut Sink) -> u64 {
    let Some(text) = decode(bytes, out) else {
        return 0;
    };
    if !check_quotes(text.as_bytes(), out) {
        return 0;
    }
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut record = csv::StringRecord::new();
    let mut state = FileState::default();
    let mut records = 0u64;
    // Lines are counted from each record's byte offset: csv's own line counter does not count
    // the CRLF that ends a record.
    let mut lines = Lines::new(text.as_bytes());
    loop {
        match reader.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                // The quote scan above makes this unreachable in practice; report, never panic.
                let line = e.position().map_or(0, |p| lines.at(p.byte() as usize));
                out.push(line, 0, ErrorCode::CsvQuote, messages::Ctx::default());
                break;
            }
        }
        records += 1;
        let line = record
            .position()
            .map_or(records, |p| lines.record_at(p.byte() as usize));
        check_record(kind, name, line, &record, &mut state, out);
        if out.full() {
            break;
        }
    }
    if records == 0 && out.findings.is_empty() {
        out.push(0, 0, ErrorCode::FileEmpty, messages::Ctx::default());
    }
    records
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
