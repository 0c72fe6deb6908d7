//! Standard-spec file names (ケアプラン標準仕様 §2.4): parse and build.
//!
//! V4 form: `PREFIX[_YYYYMM]_FROM(10)_FROMKIND(2)_TO(10)_TOKIND(2)_YYYYMMDDHHMMSS.CSV`
//! V3 form: the same without the two service-kind codes.
//! `UPKIHON_IMAGE` files are JPEG and carry a four-digit branch number before `.jpg`.
//! See SPEC.md §2.

use std::fmt;

/// The kind of a standard-spec file, named by its file-name prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileKind {
    /// 利用者補足情報
    UpHosoku,
    /// 居宅サービス計画書 第1表
    Up1Kyo,
    /// 第2表
    Up2Kyo,
    /// 第3表 週間サービス計画表 (V4 only)
    Up3Kyo,
    /// 第6表 サービス利用票 予定 (plan)
    UpPlan,
    /// 第6表 実績 (actuals), same layout as UPPLAN
    UpJsk,
    /// 第7表 サービス利用票別表
    UpSikyu,
    /// 第1表 削除
    Dlt1Kyo,
    /// 第6表 予定 削除
    DltPlan,
    /// 実績 削除
    DltJsk,
    /// 利用者基本情報 (介護予防支援)
    UpKihon,
    /// 利用者基本情報 別表1
    UpKihonSub1,
    /// 利用者基本情報 別表2
    UpKihonSub2,
    /// 家族構成 image (JPEG)
    UpKihonImage,
    /// 利用者基本情報 削除
    DltKihon,
    /// 介護予防サービス・支援計画書
    UpYobo,
    /// 介護予防サービス・支援計画書 別表
    UpYoboSub,
    /// 介護予防サービス・支援計画書 削除
    DltYobo,
}

impl FileKind {
    /// Every kind, in the order a send unit is delivered and imported.
    pub const ALL: [FileKind; 18] = [
        FileKind::Dlt1Kyo,
        FileKind::DltPlan,
        FileKind::DltJsk,
        FileKind::DltKihon,
        FileKind::DltYobo,
        FileKind::Up1Kyo,
        FileKind::Up2Kyo,
        FileKind::Up3Kyo,
        FileKind::UpKihon,
        FileKind::UpKihonSub1,
        FileKind::UpKihonSub2,
        FileKind::UpKihonImage,
        FileKind::UpYobo,
        FileKind::UpYoboSub,
        FileKind::UpPlan,
        FileKind::UpSikyu,
        FileKind::UpJsk,
        FileKind::UpHosoku,
    ];

    /// The file-name prefix, e.g. `UPPLAN`.
    pub fn prefix(self) -> &'static str {
        match self {
            FileKind::UpHosoku => "UPHOSOKU",
            FileKind::Up1Kyo => "UP1KYO",
            FileKind::Up2Kyo => "UP2KYO",
            FileKind::Up3Kyo => "UP3KYO",
            FileKind::UpPlan => "UPPLAN",
            FileKind::UpJsk => "UPJSK",
            FileKind::UpSikyu => "UPSIKYU",
            FileKind::Dlt1Kyo => "DLT1KYO",
            FileKind::DltPlan => "DLTPLAN",
            FileKind::DltJsk => "DLTJSK",
            FileKind::UpKihon => "UPKIHON",
            FileKind::UpKihonSub1 => "UPKIHON_SUB1",
            FileKind::UpKihonSub2 => "UPKIHON_SUB2",
            FileKind::UpKihonImage => "UPKIHON_IMAGE",
            FileKind::DltKihon => "DLTKIHON",
            FileKind::UpYobo => "UPYOBO",
            FileKind::UpYoboSub => "UPYOBO_SUB",
            FileKind::DltYobo => "DLTYOBO",
        }
    }

    /// Looks a kind up by its prefix (upper case, as the spec writes it).
    pub fn from_prefix(prefix: &str) -> Option<FileKind> {
        FileKind::ALL.into_iter().find(|k| k.prefix() == prefix)
    }

    /// Whether the file name carries a 対象年月 (target month) after the prefix.
    pub fn has_month(self) -> bool {
        matches!(
            self,
            FileKind::UpHosoku
                | FileKind::UpPlan
                | FileKind::UpJsk
                | FileKind::UpSikyu
                | FileKind::DltPlan
                | FileKind::DltJsk
        )
    }

    /// Whether the file is a JPEG image rather than a CSV.
    pub fn is_image(self) -> bool {
        self == FileKind::UpKihonImage
    }

    /// The Japanese name of the document, for messages to office staff.
    pub fn name_ja(self) -> &'static str {
        match self {
            FileKind::UpHosoku => "利用者補足情報",
            FileKind::Up1Kyo => "居宅サービス計画書 第1表",
            FileKind::Up2Kyo => "居宅サービス計画書 第2表",
            FileKind::Up3Kyo => "週間サービス計画表 第3表",
            FileKind::UpPlan => "サービス利用票 第6表 (予定)",
            FileKind::UpJsk => "サービス利用票 第6表 (実績)",
            FileKind::UpSikyu => "サービス利用票別表 第7表",
            FileKind::Dlt1Kyo => "第1表 削除",
            FileKind::DltPlan => "第6表 予定 削除",
            FileKind::DltJsk => "実績 削除",
            FileKind::UpKihon => "利用者基本情報",
            FileKind::UpKihonSub1 => "利用者基本情報 別表1",
            FileKind::UpKihonSub2 => "利用者基本情報 別表2",
            FileKind::UpKihonImage => "利用者基本情報 家族構成画像",
            FileKind::DltKihon => "利用者基本情報 削除",
            FileKind::UpYobo => "介護予防サービス・支援計画書",
            FileKind::UpYoboSub => "介護予防サービス・支援計画書 別表",
            FileKind::DltYobo => "介護予防サービス・支援計画書 削除",
        }
    }

    /// Position of this kind inside a send unit: files of one unit are delivered and
    /// imported in ascending order (deletes first, then parents before children).
    pub fn unit_order(self) -> usize {
        FileKind::ALL
            .iter()
            .position(|k| *k == self)
            .unwrap_or(usize::MAX)
    }
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.prefix())
    }
}

/// A 10-digit 事業所番号 (office number). The first two digits are the prefecture code.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OfficeNumber([u8; 10]);

impl OfficeNumber {
    /// Parses ten ASCII digits.
    pub fn parse(s: &str) -> Option<OfficeNumber> {
        let b = s.as_bytes();
        if b.len() != 10 || !b.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let mut out = [0u8; 10];
        out.copy_from_slice(b);
        Some(OfficeNumber(out))
    }

    /// The ten ASCII digits.
    pub fn as_bytes(&self) -> &[u8; 10] {
        &self.0
    }

    /// The number as text.
    pub fn as_str(&self) -> &str {
        // Only ASCII digits are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("??????????")
    }

    /// The two-digit prefecture code (都道府県番号) the number starts with.
    pub fn prefecture(&self) -> u8 {
        (self.0[0] - b'0') * 10 + (self.0[1] - b'0')
    }
}

impl fmt::Debug for OfficeNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OfficeNumber({})", self.as_str())
    }
}

impl fmt::Display for OfficeNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for OfficeNumber {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OfficeNumber::parse(s).ok_or(NameError::BadOffice)
    }
}

impl serde::Serialize for OfficeNumber {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for OfficeNumber {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        OfficeNumber::parse(&s)
            .ok_or_else(|| serde::de::Error::custom("office number must be 10 digits"))
    }
}

/// A two-character サービス種類コード (service kind code), e.g. `43` 居宅介護支援 or `A2`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKind([u8; 2]);

impl ServiceKind {
    /// Parses two ASCII digits or upper-case letters.
    pub fn parse(s: &str) -> Option<ServiceKind> {
        let b = s.as_bytes();
        if b.len() != 2
            || !b
                .iter()
                .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
        {
            return None;
        }
        Some(ServiceKind([b[0], b[1]]))
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

impl fmt::Debug for ServiceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ServiceKind({})", self.as_str())
    }
}

impl fmt::Display for ServiceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for ServiceKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for ServiceKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ServiceKind::parse(&s)
            .ok_or_else(|| serde::de::Error::custom("service kind must be 2 digits or letters"))
    }
}

/// One end of a route: an office number and, in V4 names, the service kind it acts as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    /// 事業所番号
    pub office: OfficeNumber,
    /// サービス種類コード; `None` in V3 names.
    pub kind: Option<ServiceKind>,
}

/// A 対象年月 (target month), `YYYYMM`. `000000` is the spec's placeholder and is kept as
/// `YearMonth { year: 0, month: 0 }`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct YearMonth {
    /// Calendar year, or 0 for the placeholder.
    pub year: u16,
    /// 1..=12, or 0 for the placeholder.
    pub month: u8,
}

impl YearMonth {
    /// Parses `YYYYMM`; `000000` is accepted only when `zero_ok`.
    pub fn parse(s: &str, zero_ok: bool) -> Option<YearMonth> {
        let b = s.as_bytes();
        if b.len() != 6 || !b.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let year = digits(&b[..4]) as u16;
        let month = digits(&b[4..]) as u8;
        if year == 0 && month == 0 {
            return zero_ok.then_some(YearMonth { year, month });
        }
        ((1..=12).contains(&month) && year >= 1900).then_some(YearMonth { year, month })
    }

    /// Whether this is the `000000` placeholder.
    pub fn is_placeholder(&self) -> bool {
        self.year == 0
    }
}

impl fmt::Display for YearMonth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}{:02}", self.year, self.month)
    }
}

/// The 14-digit send-unit stamp (ファイル連番) that ends every file name: `YYYYMMDDHHMMSS`.
/// Files sharing it form one 送信単位 (send unit).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Stamp([u8; 14]);

impl Stamp {
    /// Parses 14 digits that form a real calendar date and time.
    pub fn parse(s: &str) -> Option<Stamp> {
        let b = s.as_bytes();
        if b.len() != 14 || !b.iter().all(u8::is_ascii_digit) {
            return None;
        }
        if !is_real_date(&s[..8]) {
            return None;
        }
        let (h, m, sec) = (digits(&b[8..10]), digits(&b[10..12]), digits(&b[12..14]));
        if h > 23 || m > 59 || sec > 59 {
            return None;
        }
        let mut out = [0u8; 14];
        out.copy_from_slice(b);
        Some(Stamp(out))
    }

    /// The stamp as text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("??????????????")
    }
}

impl fmt::Debug for Stamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Stamp({})", self.as_str())
    }
}

impl fmt::Display for Stamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed standard-spec file name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FileName {
    /// Which document the file holds.
    pub kind: FileKind,
    /// 対象年月, present exactly when [`FileKind::has_month`].
    pub month: Option<YearMonth>,
    /// 送信元 (sender).
    pub from: Endpoint,
    /// 送信先 (recipient).
    pub to: Endpoint,
    /// ファイル連番: the send-unit stamp.
    pub stamp: Stamp,
    /// The four-digit branch number of an `UPKIHON_IMAGE` file.
    pub branch: Option<u16>,
    /// Whether the extension was written in upper case.
    pub upper_ext: bool,
}

/// Why a file name is not a standard-spec name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name has no `.CSV` / `.jpg` extension of the right kind.
    #[error("the extension must be .CSV (or .jpg for UPKIHON_IMAGE)")]
    BadExtension,
    /// The prefix is not one of the spec's file kinds.
    #[error("unknown file-name prefix")]
    UnknownPrefix,
    /// The parts between the underscores are not in the spec's shape.
    #[error("the name does not have the standard parts")]
    BadShape,
    /// The 対象年月 part is not a valid `YYYYMM`.
    #[error("the target month in the name is not a valid YYYYMM")]
    BadMonth,
    /// An office number is not 10 digits.
    #[error("an office number in the name is not 10 digits")]
    BadOffice,
    /// A service kind code is not 2 digits or letters.
    #[error("a service kind code in the name is not 2 digits or letters")]
    BadKind,
    /// The 14-digit stamp is not a real date and time.
    #[error("the 14-digit stamp in the name is not a real date and time")]
    BadStamp,
    /// The name has characters other than letters, digits, `_` and `.`.
    #[error("the name has characters that are not allowed")]
    BadCharacters,
}

impl FileName {
    /// Parses a bare file name (no directories).
    pub fn parse(name: &str) -> Result<FileName, NameError> {
        if !name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.')
        {
            return Err(NameError::BadCharacters);
        }
        let (stem, ext) = name.rsplit_once('.').ok_or(NameError::BadExtension)?;
        let upper_ext = ext.bytes().all(|c| c.is_ascii_uppercase());
        let is_csv = ext.eq_ignore_ascii_case("csv");
        let is_jpg = ext.eq_ignore_ascii_case("jpg");
        if !is_csv && !is_jpg {
            return Err(NameError::BadExtension);
        }
        let parts: Vec<&str> = stem.split('_').collect();
        // Longest prefix match: prefixes themselves may contain one underscore.
        let (kind, used) = [2usize, 1]
            .into_iter()
            .filter(|n| parts.len() > *n)
            .find_map(|n| FileKind::from_prefix(&parts[..n].join("_")).map(|k| (k, n)))
            .ok_or(NameError::UnknownPrefix)?;
        if kind.is_image() != is_jpg {
            return Err(NameError::BadExtension);
        }
        let mut rest = &parts[used..];
        let month = if kind.has_month() {
            let (m, r) = rest.split_first().ok_or(NameError::BadShape)?;
            rest = r;
            Some(YearMonth::parse(m, true).ok_or(NameError::BadMonth)?)
        } else {
            None
        };
        let branch = if kind.is_image() {
            let (b, r) = rest.split_last().ok_or(NameError::BadShape)?;
            rest = r;
            if b.len() != 4 || !b.bytes().all(|c| c.is_ascii_digit()) {
                return Err(NameError::BadShape);
            }
            Some(digits(b.as_bytes()) as u16)
        } else {
            None
        };
        let office = |s: &str| OfficeNumber::parse(s).ok_or(NameError::BadOffice);
        let svc = |s: &str| ServiceKind::parse(s).ok_or(NameError::BadKind);
        let (from, to, stamp) = match rest {
            [f, fk, t, tk, st] => (
                Endpoint {
                    office: office(f)?,
                    kind: Some(svc(fk)?),
                },
                Endpoint {
                    office: office(t)?,
                    kind: Some(svc(tk)?),
                },
                st,
            ),
            [f, t, st] => (
                Endpoint {
                    office: office(f)?,
                    kind: None,
                },
                Endpoint {
                    office: office(t)?,
                    kind: None,
                },
                st,
            ),
            _ => return Err(NameError::BadShape),
        };
        let stamp = Stamp::parse(stamp).ok_or(NameError::BadStamp)?;
        Ok(FileName {
            kind,
            month,
            from,
            to,
            stamp,
            branch,
            upper_ext,
        })
    }

    /// Whether the name is in the V4 form (with service kind codes).
    pub fn is_v4(&self) -> bool {
        self.from.kind.is_some()
    }

    /// Builds the canonical name. Round-trips with [`FileName::parse`].
    pub fn to_name(&self) -> String {
        let mut s = String::with_capacity(64);
        s.push_str(self.kind.prefix());
        if let Some(m) = self.month {
            s.push('_');
            s.push_str(&m.to_string());
        }
        for end in [&self.from, &self.to] {
            s.push('_');
            s.push_str(end.office.as_str());
            if let Some(k) = end.kind {
                s.push('_');
                s.push_str(k.as_str());
            }
        }
        s.push('_');
        s.push_str(self.stamp.as_str());
        if let Some(b) = self.branch {
            s.push_str(&format!("_{b:04}"));
        }
        s.push_str(match (self.kind.is_image(), self.upper_ext) {
            (true, true) => ".JPG",
            (true, false) => ".jpg",
            (false, true) => ".CSV",
            (false, false) => ".csv",
        });
        s
    }
}

impl fmt::Display for FileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_name())
    }
}

/// A name (a file name, an office's name, anything that came from a file, a peer or a user)
/// made safe to show in one line of a status, a log or a terminal: control characters are
/// written as `\u{..}` text, everything else is left as it is (Japanese text included).
///
/// Escaped: C0 controls (U+0000–U+001F: newline, tab, ESC, …), DEL (U+007F), C1 controls
/// (U+0080–U+009F), the line and paragraph separators (U+2028, U+2029) and the bidirectional
/// controls (U+061C, U+200E, U+200F, U+202A–U+202E, U+2066–U+2069). So a name can neither
/// start a line of its own (forging a log line), nor send a terminal escape sequence, nor
/// reorder the text shown around it. A backslash is not escaped: the result is for reading,
/// not for parsing back.
///
/// ```
/// use renkei_protocol::name::shown;
/// assert_eq!(shown("UPPLAN_\n\x1b[31m"), "UPPLAN_\\u{a}\\u{1b}[31m");
/// assert_eq!(shown("テスト事業所"), "テスト事業所");
/// ```
pub fn shown(name: &str) -> std::borrow::Cow<'_, str> {
    fn hidden(c: char) -> bool {
        matches!(c,
            '\u{0}'..='\u{1f}'
            | '\u{7f}'..='\u{9f}'
            | '\u{61c}'
            | '\u{200e}'
            | '\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}')
    }
    if !name.chars().any(hidden) {
        return std::borrow::Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len() + 8);
    for c in name.chars() {
        if hidden(c) {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

pub(crate) fn digits(b: &[u8]) -> u32 {
    b.iter().fold(0u32, |acc, c| acc * 10 + u32::from(c - b'0'))
}

/// Whether `s` is `YYYYMMDD` naming a real calendar day (Gregorian, year ≥ 1868).
pub(crate) fn is_real_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 8 || !b.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let y = digits(&b[..4]);
    let m = digits(&b[4..6]);
    let d = digits(&b[6..8]);
    if !(1868..=9999).contains(&y) || !(1..=12).contains(&m) || d == 0 {
        return false;
    }
    d <= days_in_month(y, m)
}

pub(crate) fn days_in_month(y: u32, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400) => 29,
        _ => 28,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_v4_name() {
        let n = FileName::parse("UPPLAN_202501_1310000001_43_1310000011_11_20250125093040.CSV")
            .unwrap();
        assert_eq!(n.kind, FileKind::UpPlan);
        assert_eq!(
            n.month,
            Some(YearMonth {
                year: 2025,
                month: 1
            })
        );
        assert_eq!(n.from.office.as_str(), "1310000001");
        assert_eq!(n.from.kind.unwrap().as_str(), "43");
        assert_eq!(n.to.office.as_str(), "1310000011");
        assert_eq!(n.to.kind.unwrap().as_str(), "11");
        assert_eq!(n.stamp.as_str(), "20250125093040");
        assert!(n.is_v4());
        assert_eq!(
            n.to_name(),
            "UPPLAN_202501_1310000001_43_1310000011_11_20250125093040.CSV"
        );
    }

    #[test]
    fn parses_v3_name_with_lower_case_extension() {
        let n = FileName::parse("UPPLAN_202301_1300000001_1300000003_20230115093040.csv").unwrap();
        assert!(!n.is_v4());
        assert!(!n.upper_ext);
        assert_eq!(
            n.to_name(),
            "UPPLAN_202301_1300000001_1300000003_20230115093040.csv"
        );
    }

    #[test]
    fn parses_every_prefix_and_round_trips() {
        for kind in FileKind::ALL {
            let mut name = kind.prefix().to_string();
            if kind.has_month() {
                name.push_str("_202501");
            }
            name.push_str("_1310000001_43_1310000011_11_20250125093040");
            if kind.is_image() {
                name.push_str("_0001.jpg");
            } else {
                name.push_str(".CSV");
            }
            let parsed = FileName::parse(&name).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(parsed.kind, kind);
            assert_eq!(parsed.to_name(), name);
        }
    }

    #[test]
    fn same_office_number_different_kinds_is_a_legal_route() {
        let n = FileName::parse("UP1KYO_1310000001_43_1310000001_11_20250125093040.CSV").unwrap();
        assert_eq!(n.from.office, n.to.office);
        assert_ne!(n.from.kind, n.to.kind);
    }

    #[test]
    fn refuses_bad_names() {
        let cases = [
            (
                "UPPLAN_202501_1310000001_43_1310000011_11_20250125093040.TXT",
                NameError::BadExtension,
            ),
            (
                "UPXXX_202501_1310000001_43_1310000011_11_20250125093040.CSV",
                NameError::UnknownPrefix,
            ),
            (
                "UPPLAN_202513_1310000001_43_1310000011_11_20250125093040.CSV",
                NameError::BadMonth,
            ),
            (
                "UPPLAN_202501_131000001_43_1310000011_11_20250125093040.CSV",
                NameError::BadOffice,
            ),
            (
                "UPPLAN_202501_1310000001_4_1310000011_11_20250125093040.CSV",
                NameError::BadKind,
            ),
            (
                "UPPLAN_202501_1310000001_43_1310000011_11_20250230093040.CSV",
                NameError::BadStamp,
            ),
            (
                "UPPLAN_202501_1310000001_43_1310000011_11_20250125253040.CSV",
                NameError::BadStamp,
            ),
            (
                "UPPLAN_202501_1310000001_43_1310000011_20250125093040.CSV",
                NameError::BadShape,
            ),
            (
                "UP1KYO_202501_1310000001_43_1310000011_11_20250125093040.CSV",
                NameError::BadShape,
            ),
            (
                "../UP1KYO_1310000001_43_1310000011_11_20250125093040.CSV",
                NameError::BadCharacters,
            ),
            (
                "UPKIHON_IMAGE_1310000001_43_1310000011_11_20250125093040_0001.CSV",
                NameError::BadExtension,
            ),
            (
                "UP1KYO_1310000001_43_1310000011_11_20250125093040.jpg",
                NameError::BadExtension,
            ),
        ];
        for (name, want) in cases {
            assert_eq!(FileName::parse(name), Err(want), "{name}");
        }
    }

    #[test]
    fn calendar() {
        assert!(is_real_date("20240229"));
        assert!(!is_real_date("20230229"));
        assert!(!is_real_date("19000229"));
        assert!(is_real_date("20000229"));
        assert!(!is_real_date("20240431"));
        assert!(!is_real_date("00000000"));
    }

    #[test]
    fn shown_escapes_controls_only() {
        use std::borrow::Cow;
        // Ordinary names, Japanese included, are borrowed unchanged.
        for s in [
            "UPPLAN_202501_1310000001_43_1310000011_11_20250125093040.CSV",
            "テスト事業所 ケアプラン・連携（東京）",
            "a\\b \"q\" ~",
            "",
        ] {
            assert!(matches!(shown(s), Cow::Borrowed(x) if x == s), "{s}");
        }
        let cases = [
            ("a\nb", "a\\u{a}b"),
            ("a\r\nb", "a\\u{d}\\u{a}b"),
            ("\t", "\\u{9}"),
            ("\0", "\\u{0}"),
            ("\x1b[2J\x1b[31m赤", "\\u{1b}[2J\\u{1b}[31m赤"),
            ("\x7f", "\\u{7f}"),
            ("\u{85}\u{9b}", "\\u{85}\\u{9b}"),
            ("\u{2028}\u{2029}", "\\u{2028}\\u{2029}"),
            ("x\u{202e}VSC.exe", "x\\u{202e}VSC.exe"),
            (
                "\u{202a}\u{202b}\u{202c}\u{202d}\u{2066}\u{2067}\u{2068}\u{2069}",
                "\\u{202a}\\u{202b}\\u{202c}\\u{202d}\\u{2066}\\u{2067}\\u{2068}\\u{2069}",
            ),
            ("\u{200e}\u{200f}\u{61c}", "\\u{200e}\\u{200f}\\u{61c}"),
        ];
        for (raw, want) in cases {
            assert_eq!(shown(raw), want, "{raw:?}");
            assert!(!shown(raw).chars().any(char::is_control), "{raw:?}");
        }
        // Neighbours of the escaped ranges stay as they are.
        for c in [
            '\u{20}', '\u{7e}', '\u{a0}', '\u{2027}', '\u{202f}', '\u{2065}', '\u{206a}',
        ] {
            let s = c.to_string();
            assert_eq!(shown(&s), s, "{c:?}");
        }
    }
}
