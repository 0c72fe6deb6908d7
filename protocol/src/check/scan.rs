//! The checker's two passes over a CSV file's bytes, fed in pieces of any size.
//!
//! The text pass decodes CP932 and checks the encoding, 外字 and the quoting. Only when all of
//! that holds are the records read (the record pass): broken quoting would make every record
//! after it wrong. The text pass keeps the decoded text of a file up to [`RETAIN_LIMIT`], so a
//! file of usual size is read once; a larger one is read a second time, piece by piece, and
//! memory stays bounded by the piece size and the longest record.

use super::{CheckedRecord, FileState, Sink, check_record, messages};
use crate::check::ErrorCode;
use crate::name::{FileKind, FileName};

/// The decoded text a checker keeps so the records can be read without a second pass.
pub const RETAIN_LIMIT: usize = 16 << 20;

/// The longest record the checker reads, in bytes of decoded text up to its line break; a
/// longer one is reported as [`ErrorCode::RecordTooLong`] and ends the check.
pub const MAX_RECORD: usize = 1 << 20;

/// How far past the first non-ASCII byte the UTF-8 test looks.
const UTF8_WINDOW: usize = 64 * 1024;

/// Counts physical lines (1-based) over text given in pieces. CR, LF and CRLF each end one
/// line, also when a CRLF is split between two pieces.
#[derive(Clone, Copy)]
pub(super) struct LineBase {
    line: u64,
    after_cr: bool,
}

impl LineBase {
    pub(super) fn start() -> LineBase {
        LineBase {
            line: 1,
            after_cr: false,
        }
    }
}

/// Maps byte offsets of one piece to lines. Offsets must be asked in non-decreasing order, so a
/// piece costs one pass.
pub(super) struct Lines<'a> {
    bytes: &'a [u8],
    pos: usize,
    line: u64,
    after_cr: bool,
}

impl<'a> Lines<'a> {
    pub(super) fn new(bytes: &'a [u8], base: LineBase) -> Lines<'a> {
        Lines {
            bytes,
            pos: 0,
            line: base.line,
            after_cr: base.after_cr,
        }
    }

    /// The line holding the byte at `offset`.
    pub(super) fn at(&mut self, offset: usize) -> u64 {
        let end = offset.min(self.bytes.len());
        if self.pos < end {
            for i in memchr::memchr2_iter(b'\n', b'\r', &self.bytes[self.pos..end]) {
                let at = self.pos + i;
                // CRLF ends one line: count its CR, not its LF.
                let after_cr = if at == 0 {
                    self.after_cr
                } else {
                    self.bytes[at - 1] == b'\r'
                };
                if !(self.bytes[at] == b'\n' && after_cr) {
                    self.line += 1;
                }
            }
            self.pos = end;
        }
        self.line
    }

    /// The line where a record starting at `offset` begins: csv skips blank lines before a
    /// record, and its offset may point at them.
    pub(super) fn record_at(&mut self, offset: usize) -> u64 {
        let skip = self
            .bytes
            .get(offset..)
            .unwrap_or_default()
            .iter()
            .take_while(|b| matches!(b, b'\r' | b'\n'))
            .count();
        self.at(offset + skip)
    }

    /// Where the next piece starts.
    pub(super) fn end(mut self) -> LineBase {
        let line = self.at(self.bytes.len());
        LineBase {
            line,
            after_cr: match self.bytes.last() {
                Some(b) => *b == b'\r',
                None => self.after_cr,
            },
        }
    }
}

/// Whether the content is CP932 at all, decided from its first bytes.
enum Sniff {
    /// Only ASCII so far.
    Ascii,
    /// Bytes from the first non-ASCII one on (which sits at offset `at`), until the UTF-8 test
    /// has seen enough.
    Window { at: u64, bytes: Vec<u8> },
    /// CP932 (or at least not UTF-8): decoding.
    Decoding,
    /// A byte-order mark or UTF-8: nothing more is read.
    Refused,
}

/// Where the quote scan stands between pieces.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Quote {
    /// Outside a quoted field.
    Outside,
    /// Inside a quoted field.
    Inside,
    /// A `"` inside a quoted field ended the last piece: the next byte says whether it was
    /// doubled or closed the field.
    MaybeClosed,
}

/// The text pass: decoding, 外字, quoting.
pub(super) struct TextPass {
    kind: FileKind,
    name: Option<FileName>,
    fed: u64,
    sniff: Sniff,
    decoder: encoding_rs::Decoder,
    decoded: String,
    /// The last raw bytes given to the decoder, to show a malformed byte that began in an
    /// earlier piece.
    raw_tail: [u8; 4],
    lines: LineBase,
    /// The last byte of the text so far (a quote's predecessor), if any.
    prev: Option<u8>,
    quote: Quote,
    /// The line where the record being scanned starts.
    record_line: u64,
    quotes_ok: bool,
    refused: Option<ErrorCode>,
    malformed: Sink,
    gaiji: Sink,
    quoting: Sink,
    retained: Option<String>,
    retain: usize,
    /// Keep the records that pass their checks ([`super::CheckedRecord`]).
    pub(super) keep_records: bool,
}

impl TextPass {
    pub(super) fn new(kind: FileKind, name: Option<FileName>, retain: usize) -> TextPass {
        TextPass {
            kind,
            name,
            fed: 0,
            sniff: Sniff::Ascii,
            decoder: encoding_rs::SHIFT_JIS.new_decoder_without_bom_handling(),
            decoded: String::new(),
            raw_tail: [0; 4],
            lines: LineBase::start(),
            prev: None,
            quote: Quote::Outside,
            record_line: 1,
            quotes_ok: true,
            refused: None,
            malformed: Sink::new(),
            gaiji: Sink::new(),
            quoting: Sink::new(),
            retained: Some(String::new()),
            retain,
            keep_records: false,
        }
    }

    pub(super) fn update(&mut self, mut bytes: &[u8]) {
        let offset = self.fed;
        self.fed += bytes.len() as u64;
        if matches!(self.sniff, Sniff::Ascii) {
            match bytes.iter().position(|b| !b.is_ascii()) {
                None => return self.decode(bytes, false),
                Some(i) => {
                    self.decode(&bytes[..i], false);
                    self.sniff = Sniff::Window {
                        at: offset + i as u64,
                        bytes: Vec::new(),
                    };
                    bytes = &bytes[i..];
                }
            }
        }
        if let Sniff::Window { bytes: window, .. } = &mut self.sniff {
            // One byte more than the window tells whether the file goes on after it.
            let take = (UTF8_WINDOW + 1 - window.len()).min(bytes.len());
            window.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if window.len() <= UTF8_WINDOW {
                return;
            }
            self.decide();
        }
        if matches!(self.sniff, Sniff::Decoding) {
            self.decode(bytes, false);
        }
    }

    /// Runs the UTF-8 test on the window and decodes it if the content may be CP932.
    fn decide(&mut self) {
        let Sniff::Window { at, bytes } = std::mem::replace(&mut self.sniff, Sniff::Decoding)
        else {
            return;
        };
        if at == 0 && bytes.starts_with(&[0xEF, 0xBB, 0xBF]) {
            self.refused = Some(ErrorCode::EncodingUtf8Bom);
        } else {
            // Non-ASCII text that is valid UTF-8 is UTF-8: real CP932 Japanese text is
            // practically never valid UTF-8. Only a window is tested, so huge files cost
            // little, and it starts at the first non-ASCII byte, so a long ASCII start
            // (records without names) does not hide it.
            let more = bytes.len() > UTF8_WINDOW;
            let window = &bytes[..bytes.len().min(UTF8_WINDOW)];
            let utf8 = match std::str::from_utf8(window) {
                Ok(_) => true,
                // A multi-byte sequence cut by the window is still UTF-8.
                Err(e) => e.error_len().is_none() && more,
            };
            if utf8 {
                self.refused = Some(ErrorCode::EncodingUtf8);
            }
        }
        if self.refused.is_some() {
            self.sniff = Sniff::Refused;
            self.retained = None;
        } else {
            self.decode(&bytes, false);
        }
    }

    fn decode(&mut self, bytes: &[u8], last: bool) {
        if self.malformed.full() {
            return;
        }
        let mut consumed = 0usize;
        loop {
            // Decoded straight into the kept text while it is kept, else into a scratch buffer.
            let keep = self.retained.is_some();
            let mut buf = match &mut self.retained {
                Some(kept) => std::mem::take(kept),
                None => std::mem::take(&mut self.decoded),
            };
            let start = buf.len();
            if buf.capacity() - start < 64 * 1024 {
                // The kept text grows geometrically, never much past the limit; the scratch
                // buffer takes 64 KiB at a time.
                let want = if keep {
                    let need = start + (bytes.len() - consumed) * 3 / 2 + 16;
                    need.max(buf.capacity() * 2)
                        .min(self.retain.saturating_add(64 * 1024))
                } else {
                    64 * 1024
                };
                buf.reserve_exact(want.saturating_sub(start).max(64 * 1024));
            }
            let (result, read) = self.decoder.decode_to_string_without_replacement(
                &bytes[consumed..],
                &mut buf,
                last,
            );
            consumed += read;
            self.text(&buf[start..]);
            if keep && buf.len() <= self.retain {
                self.retained = Some(buf);
            } else {
                self.retained = None;
                buf.clear();
                if !keep || buf.capacity() <= 256 * 1024 {
                    self.decoded = buf;
                }
            }
            match result {
                encoding_rs::DecoderResult::InputEmpty => break,
                encoding_rs::DecoderResult::OutputFull => {}
                encoding_rs::DecoderResult::Malformed(len, after) => {
                    // The text before the bad bytes has been counted, so `lines` is their
                    // line. They may have begun in an earlier piece.
                    let back = len as usize + after as usize;
                    let byte = if consumed >= back {
                        bytes[consumed - back]
                    } else {
                        self.raw_tail[4 - (back - consumed).min(4)]
                    };
                    self.retained = None;
                    self.malformed.push(
                        self.lines.line,
                        0,
                        ErrorCode::EncodingInvalid,
                        messages::Ctx {
                            value: Some(&format!("0x{byte:02X}")),
                            ..Default::default()
                        },
                    );
                    if self.malformed.full() {
                        break;
                    }
                }
            }
        }
        for b in bytes.iter().rev().take(4).rev() {
            self.raw_tail.rotate_left(1);
            self.raw_tail[3] = *b;
        }
    }

    /// Takes a piece of decoded text: 外字, quoting, lines.
    fn text(&mut self, piece: &str) {
        if piece.is_empty() {
            return;
        }
        let b = piece.as_bytes();
        // 外字: CP932's user-defined area decodes to the Private Use Area, U+E000–U+F8FF: in
        // UTF-8, 0xEE xx xx or 0xEF 0x80–0xA3 xx. Only those lead bytes are looked at.
        if !self.gaiji.full() {
            let mut lines = Lines::new(b, self.lines);
            for i in memchr::memchr2_iter(0xEE, 0xEF, b) {
                if b[i] == 0xEF && b.get(i + 1).is_none_or(|n| *n > 0xA3) {
                    continue;
                }
                let Some(c) = piece.get(i..).and_then(|t| t.chars().next()) else {
                    continue;
                };
                let v = format!("U+{:04X}", c as u32);
                self.gaiji.push(
                    lines.at(i),
                    0,
                    ErrorCode::EncodingGaiji,
                    messages::Ctx {
                        value: Some(&v),
                        ..Default::default()
                    },
                );
            }
        }
        if !self.quoting.full() {
            self.scan_quotes(b);
        }
        self.prev = b.last().copied();
        self.lines = Lines::new(b, self.lines).end();
    }

    /// Checks the quoting: `"` only opens a field, closes it, or is doubled inside it. Jumps
    /// from quote to quote, so text without quotes costs one vectorised search.
    fn scan_quotes(&mut self, text: &[u8]) {
        let mut lines = Lines::new(text, self.lines);
        let mut starts = Lines::new(text, self.lines);
        let mut pos = 0usize;
        if self.quote == Quote::MaybeClosed {
            if text[0] == b'"' {
                self.quote = Quote::Inside;
                pos = 1;
            } else {
                self.quote = Quote::Outside;
                self.after_close(text, 0, &mut lines);
            }
        }
        loop {
            if self.quoting.full() {
                return;
            }
            match self.quote {
                Quote::Outside => {
                    let Some(i) = memchr::memchr(b'"', &text[pos..]) else {
                        if let Some(nl) = memchr::memrchr2(b'\n', b'\r', &text[pos..]) {
                            self.record_line = starts.at(pos + nl + 1);
                        }
                        return;
                    };
                    let q = pos + i;
                    if let Some(nl) = memchr::memrchr2(b'\n', b'\r', &text[pos..q]) {
                        self.record_line = starts.at(pos + nl + 1);
                    }
                    let before = if q == 0 { self.prev } else { Some(text[q - 1]) };
                    if matches!(before, None | Some(b',' | b'\n' | b'\r')) {
                        self.quote = Quote::Inside;
                    } else {
                        self.quote_error(lines.at(q), messages::QuoteProblem::Stray);
                    }
                    pos = q + 1;
                }
                Quote::Inside | Quote::MaybeClosed => {
                    let Some(k) = memchr::memchr(b'"', &text[pos..]) else {
                        return;
                    };
                    let q = pos + k;
                    match text.get(q + 1) {
                        None => {
                            self.quote = Quote::MaybeClosed;
                            return;
                        }
                        Some(b'"') => pos = q + 2,
                        Some(_) => {
                            self.quote = Quote::Outside;
                            pos = q + 1;
                            self.after_close(text, pos, &mut lines);
                        }
                    }
                }
            }
        }
    }

    /// A closing quote must end its field.
    fn after_close(&mut self, text: &[u8], pos: usize, lines: &mut Lines<'_>) {
        if !matches!(text[pos], b',' | b'\r' | b'\n') {
            self.quote_error(lines.at(pos), messages::QuoteProblem::AfterClose);
        }
    }

    fn quote_error(&mut self, line: u64, problem: messages::QuoteProblem) {
        self.quotes_ok = false;
        self.quoting.push(
            line,
            0,
            ErrorCode::CsvQuote,
            messages::Ctx {
                detail: Some(problem),
                ..Default::default()
            },
        );
    }

    /// Ends the text pass. Its findings go to `out`; the record pass follows when the text
    /// can be read as records: at once on the kept text, or as a [`RecordPass`] to be fed
    /// the file again.
    pub(super) fn finish(mut self, out: &mut Sink) -> Option<RecordPass> {
        if matches!(self.sniff, Sniff::Window { .. }) {
            self.decide();
        }
        if matches!(self.sniff, Sniff::Decoding) {
            self.decode(&[], true);
        }
        if let Some(code) = self.refused {
            out.push(1, 0, code, messages::Ctx::default());
            return None;
        }
        if !self.malformed.findings.is_empty() {
            out.absorb(self.malformed);
            return None;
        }
        if self.quote == Quote::Inside && !self.quoting.full() {
            let line = self.record_line;
            self.quote_error(line, messages::QuoteProblem::Unterminated);
        }
        out.absorb(self.gaiji);
        out.absorb(self.quoting);
        if !self.quotes_ok || out.full() {
            return None;
        }
        let mut pass = RecordPass::new(self.kind, self.name, self.keep_records);
        if let Some(text) = self.retained.take() {
            pass.pending = text;
            pass.take_records(out, true);
            pass.done = true;
        }
        Some(pass)
    }
}

/// The record pass: every record against its layout and the cross-record checks.
pub(super) struct RecordPass {
    kind: FileKind,
    name: Option<FileName>,
    decoder: encoding_rs::Decoder,
    /// Decoded text not yet read as records: the end of a record cut by a piece.
    pending: String,
    /// How much of `pending` the quote parity has seen, and whether that ends inside quotes.
    scanned: usize,
    in_quotes: bool,
    /// Where the last complete record in `pending` ends.
    boundary: usize,
    /// Where the record being scanned starts in `pending` (after the last line break).
    record_start: usize,
    lines: LineBase,
    state: FileState,
    pub(super) records: u64,
    /// The records that passed their checks, when asked for.
    pub(super) kept: Option<Vec<CheckedRecord>>,
    /// The record pass ran on the kept text, or stopped early.
    pub(super) done: bool,
}

impl RecordPass {
    fn new(kind: FileKind, name: Option<FileName>, keep: bool) -> RecordPass {
        RecordPass {
            kind,
            name,
            decoder: encoding_rs::SHIFT_JIS.new_decoder_without_bom_handling(),
            pending: String::new(),
            scanned: 0,
            in_quotes: false,
            boundary: 0,
            record_start: 0,
            lines: LineBase::start(),
            state: FileState::default(),
            records: 0,
            kept: keep.then(Vec::new),
            done: false,
        }
    }

    pub(super) fn update(&mut self, bytes: &[u8], out: &mut Sink) {
        self.decode(bytes, false, out);
    }

    pub(super) fn finish(&mut self, out: &mut Sink) {
        if !self.done {
            self.decode(&[], true, out);
            self.take_records(out, true);
            self.done = true;
        }
        if self.records == 0 && out.findings.is_empty() {
            out.push(0, 0, ErrorCode::FileEmpty, messages::Ctx::default());
        }
    }

    fn decode(&mut self, bytes: &[u8], last: bool, out: &mut Sink) {
        // In pieces, so the text waiting to be read stays small whatever the caller gives.
        let mut pieces = bytes.chunks(64 * 1024).peekable();
        let empty: &[u8] = &[];
        while let Some(piece) = pieces.next().or(if last { Some(empty) } else { None }) {
            let final_piece = last && pieces.peek().is_none();
            let mut consumed = 0usize;
            while !self.done {
                self.pending.reserve((piece.len() - consumed) * 3 / 2 + 16);
                let (result, read) = self.decoder.decode_to_string_without_replacement(
                    &piece[consumed..],
                    &mut self.pending,
                    final_piece,
                );
                consumed += read;
                self.take_records(out, false);
                match result {
                    encoding_rs::DecoderResult::InputEmpty => break,
                    encoding_rs::DecoderResult::OutputFull => {}
                    encoding_rs::DecoderResult::Malformed(..) => {
                        // The text pass found none: the file changed between the passes.
                        out.push(
                            self.lines.line,
                            0,
                            ErrorCode::EncodingInvalid,
                            messages::Ctx::default(),
                        );
                        self.done = true;
                    }
                }
            }
            if final_piece || self.done {
                break;
            }
        }
    }

    /// Reads the complete records at the front of `pending`: those before the last line
    /// break outside quotes (the text pass has checked the quoting, so parity tells). With
    /// `last`, the rest too. A record longer than [`MAX_RECORD`] ends the check, whole or cut
    /// by a piece alike, so memory stays bounded whatever the file holds.
    fn take_records(&mut self, out: &mut Sink, last: bool) {
        if self.done {
            return;
        }
        let b = self.pending.as_bytes();
        let mut too_long = None;
        for i in memchr::memchr3_iter(b'"', b'\n', b'\r', &b[self.scanned..]) {
            let at = self.scanned + i;
            if b[at] == b'"' {
                self.in_quotes = !self.in_quotes;
            } else if !self.in_quotes {
                if at - self.record_start > MAX_RECORD {
                    too_long = Some(self.record_start);
                    break;
                }
                self.record_start = at + 1;
                self.boundary = at + 1;
            }
        }
        if too_long.is_none() {
            self.scanned = b.len();
            if b.len() - self.record_start > MAX_RECORD {
                too_long = Some(self.record_start);
            }
        }
        if let Some(start) = too_long {
            let long = self.pending.split_off(start);
            let block = std::mem::take(&mut self.pending);
            self.records_of(&block, out);
            if !self.done {
                let line = Lines::new(long.as_bytes(), self.lines).record_at(0);
                out.push(line, 0, ErrorCode::RecordTooLong, messages::Ctx::default());
                self.done = true;
            }
            return;
        }
        // Small pieces are gathered: a csv reader per block costs a little.
        if !last && self.boundary < 64 * 1024 {
            return;
        }
        let cut = if last {
            self.pending.len()
        } else {
            self.boundary
        };
        let rest = self.pending.split_off(cut);
        let block = std::mem::replace(&mut self.pending, rest);
        // With `last` everything is taken, the unended last record too.
        self.scanned -= cut;
        self.record_start = self.record_start.saturating_sub(cut);
        self.boundary = 0;
        self.records_of(&block, out);
    }

    /// Reads the records of a block of whole records (the last block may lack a line break).
    fn records_of(&mut self, text: &str, out: &mut Sink) {
        if self.done || text.is_empty() {
            return;
        }
        let bytes = text.as_bytes();
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(bytes);
        let mut record = csv::StringRecord::new();
        // Lines are counted from each record's byte offset: csv's own line counter does not
        // count the CRLF that ends a record.
        let mut lines = Lines::new(bytes, self.lines);
        loop {
            match reader.read_record(&mut record) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    // The quote scan makes this unreachable in practice; report, never panic.
                    let line = e.position().map_or(0, |p| lines.at(p.byte() as usize));
                    out.push(line, 0, ErrorCode::CsvQuote, messages::Ctx::default());
                    self.done = true;
                    return;
                }
            }
            self.records += 1;
            let line = record
                .position()
                .map_or(self.records, |p| lines.record_at(p.byte() as usize));
            let before = (out.findings.len(), out.full());
            check_record(
                self.kind,
                self.name.as_ref(),
                line,
                &record,
                &mut self.state,
                out,
            );
            if let Some(kept) = &mut self.kept
                && before == (out.findings.len(), out.full())
            {
                kept.push(CheckedRecord {
                    line,
                    fields: record.clone(),
                });
            }
            if out.full() {
                self.done = true;
                return;
            }
        }
        self.lines = lines.end();
    }
}
