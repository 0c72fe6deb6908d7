//! Record layouts per file kind and CSV version (ケアプラン標準仕様 別紙 CSVファイルレイアウト定義書).
//!
//! Each layout lists the fields of one record in order (field 1 first). The checker applies
//! each field's [`Format`] and `required` flag. Where the source is unclear (marked M or L in
//! the fact sheet), the field is given a lenient format and SPEC.md §3.7 says so.

/// A CSV version (field 1, CSVバージョン) the checker knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CsvVersion {
    /// `202208`: V3 (3.0–3.2).
    V202208,
    /// `202407`: V4.1, the value V4 files must carry.
    V202407,
    /// `202504`: V4.0 as first issued; same layouts as 202407.
    V202504,
}

impl CsvVersion {
    /// Parses the 6-digit field value.
    pub fn parse(s: &str) -> Option<CsvVersion> {
        match s {
            "202208" => Some(CsvVersion::V202208),
            "202407" => Some(CsvVersion::V202407),
            "202504" => Some(CsvVersion::V202504),
            _ => None,
        }
    }

    /// The field value.
    pub fn as_str(self) -> &'static str {
        match self {
            CsvVersion::V202208 => "202208",
            CsvVersion::V202407 => "202407",
            CsvVersion::V202504 => "202504",
        }
    }

    /// Whether this is a V4 layout (202407 or 202504).
    pub fn is_v4(self) -> bool {
        !matches!(self, CsvVersion::V202208)
    }
}

/// A code table from the spec's 【コード表】.
#[derive(Debug)]
pub struct CodeTable {
    /// The table's Japanese name, used in messages.
    pub name_ja: &'static str,
    /// The table's English name, used in messages.
    pub name_en: &'static str,
    /// Every allowed value.
    pub values: &'static [&'static str],
}

/// The format a field's value must have (empty values are only checked against `required`).
#[derive(Debug, Clone, Copy)]
pub enum Format {
    /// Free text: anything CP932 can hold.
    Text,
    /// CSVバージョン: checked separately by the checker.
    Version,
    /// `YYYYMMDD` naming a real calendar day; `00000000` too when `zero_ok`.
    Date {
        /// `00000000` (no date) is allowed.
        zero_ok: bool,
    },
    /// `YYYYMM`; `000000` too when `zero_ok`.
    Month {
        /// `000000` (no month) is allowed.
        zero_ok: bool,
    },
    /// `HHMM` from 0000 to 2359, `2400` (end of day), or `9999` (no time shown).
    Time,
    /// 保険者番号: 6 digits.
    Insurer,
    /// 被保険者番号: 10 digits, or `H` and 9 digits (生保単独).
    Insured,
    /// 事業所番号: 10 digits.
    Office,
    /// サービス種類コード: 2 digits or upper-case letters.
    Kind,
    /// サービスコード: 6 digits or upper-case letters (including `CDAAAA`-style subtotal rows).
    ServiceCode,
    /// A non-negative integer of at most `max_digits` digits (a leading `-` allowed when `signed`).
    Integer {
        /// The most digits the value may have (not counting a `-`).
        max_digits: u8,
        /// A leading `-` is allowed.
        signed: bool,
    },
    /// A decimal such as `10.90` (単位数単価).
    Decimal,
    /// One value of a code table.
    Code(&'static CodeTable),
    /// 日割対象日: 31 characters, each `0` or `1`.
    DayMask,
    /// 郵便番号: `NNN-NNNN` (7 digits without the hyphen also accepted).
    Postal,
}

/// One field of a record layout.
#[derive(Debug)]
pub struct Field {
    /// The field's name in the spec (項目名).
    pub name_ja: &'static str,
    /// An English name for messages.
    pub name_en: &'static str,
    /// Its format.
    pub format: Format,
    /// Whether the spec marks it 必須 (○).
    pub required: bool,
}
