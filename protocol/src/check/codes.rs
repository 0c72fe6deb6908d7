//! Stable error codes of the checker, each with a Japanese and an English message that tells
//! office staff what is wrong and what to do. The codes are part of the wire format: negative
//! acknowledgements carry them (SPEC.md §3.6).

use std::fmt;

macro_rules! codes {
    ($( $(#[$doc:meta])* $variant:ident = $code:literal, )*) => {
        /// A stable checker error code.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum ErrorCode {
            $( $(#[$doc])* $variant, )*
        }

        impl ErrorCode {
            /// Every code, in declaration order.
            pub const ALL: &'static [ErrorCode] = &[ $( ErrorCode::$variant, )* ];

            /// The stable text of the code, e.g. `DATE`.
            pub fn as_str(self) -> &'static str {
                match self { $( ErrorCode::$variant => $code, )* }
            }

            /// Looks a code up by its stable text.
            pub fn parse(s: &str) -> Option<ErrorCode> {
                match s { $( $code => Some(ErrorCode::$variant), )* _ => None }
            }
        }
    };
}

codes! {
    /// The file name's extension is not `.CSV` (or `.jpg` for UPKIHON_IMAGE).
    NameExtension = "NAME_EXTENSION",
    /// The file name does not start with a known prefix.
    NamePrefix = "NAME_PREFIX",
    /// The file name does not have the standard parts.
    NameShape = "NAME_SHAPE",
    /// The target month in the name is not a valid YYYYMM.
    NameMonth = "NAME_MONTH",
    /// An office number in the name is not 10 digits.
    NameOffice = "NAME_OFFICE",
    /// A service kind code in the name is malformed.
    NameKind = "NAME_KIND",
    /// The 14-digit stamp is not a real date and time.
    NameStamp = "NAME_STAMP",
    /// The name contains characters that are not allowed.
    NameCharacters = "NAME_CHARACTERS",
    /// The file is UTF-8 with a byte-order mark, not CP932.
    EncodingUtf8Bom = "ENCODING_UTF8_BOM",
    /// The file is UTF-8, not CP932.
    EncodingUtf8 = "ENCODING_UTF8",
    /// Bytes that are not valid CP932.
    EncodingInvalid = "ENCODING_INVALID",
    /// 外字 (user-defined characters), forbidden by the spec.
    EncodingGaiji = "ENCODING_GAIJI",
    /// The file holds no records.
    FileEmpty = "FILE_EMPTY",
    /// The UPKIHON_IMAGE file is not a JPEG image.
    ImageNotJpeg = "IMAGE_NOT_JPEG",
    /// A `"` in the wrong place, or a quoted field that never ends.
    CsvQuote = "CSV_QUOTE",
    /// The record has the wrong number of fields.
    FieldCount = "FIELD_COUNT",
    /// A record longer than the checker reads (`MAX_RECORD`, 1 MiB).
    RecordTooLong = "RECORD_TOO_LONG",
    /// Field 1 is not a CSV version the spec defines.
    CsvVersionUnknown = "CSV_VERSION_UNKNOWN",
    /// Field 1 differs from the first record's version.
    CsvVersionMixed = "CSV_VERSION_MIXED",
    /// This kind of file does not exist at this CSV version.
    CsvVersionKind = "CSV_VERSION_KIND",
    /// A required field is empty.
    Required = "REQUIRED",
    /// Not a real YYYYMMDD date.
    Date = "DATE",
    /// Not a valid YYYYMM month.
    Month = "MONTH",
    /// Not a HHMM time (0000–2359), 2400 (end of day) or 9999.
    Time = "TIME",
    /// 保険者番号 is not 6 digits.
    Insurer = "INSURER",
    /// 被保険者番号 is not 10 digits or H + 9 digits.
    Insured = "INSURED",
    /// 事業所番号 is not 10 digits.
    Office = "OFFICE",
    /// サービス種類コード is not 2 digits or letters.
    Kind = "KIND",
    /// サービスコード is not 6 digits or letters.
    ServiceCode = "SERVICE_CODE",
    /// Not an integer of the allowed length.
    Integer = "INTEGER",
    /// Not a decimal number such as 10.90.
    Decimal = "DECIMAL",
    /// Not a value of the field's code table.
    Code = "CODE",
    /// 日割対象日 is not 31 characters of 0 and 1.
    DayMask = "DAY_MASK",
    /// 郵便番号 is not NNN-NNNN.
    Postal = "POSTAL",
    /// The record's target month differs from the file name's.
    MonthNameMismatch = "MONTH_NAME_MISMATCH",
    /// The file holds more than one service month.
    MonthMixed = "MONTH_MIXED",
    /// A service date outside the file's target month.
    ServiceDateMonth = "SERVICE_DATE_MONTH",
    /// 第2表: the same 課題/目標/援助内容 numbers twice in one plan.
    Plan2NumberDuplicate = "PLAN2_NUMBER_DUPLICATE",
    /// 第2表: two different texts for the same 課題 or 目標 number.
    Plan2TextConflict = "PLAN2_TEXT_CONFLICT",
    /// 第3表: a row with none of its three column groups filled.
    Plan3RowEmpty = "PLAN3_ROW_EMPTY",
    /// 福祉用具貸与 row without a TAIS code or 届出コード.
    EquipmentCodeMissing = "EQUIPMENT_CODE_MISSING",
    /// More errors than are listed.
    TooManyErrors = "TOO_MANY_ERRORS",
    /// The name's sender is not the office sending it.
    RouteSender = "ROUTE_SENDER",
    /// The name's recipient is not the office receiving it.
    RouteRecipient = "ROUTE_RECIPIENT",
    /// The recipient is not an active member of the directory.
    RecipientUnknown = "RECIPIENT_UNKNOWN",
    /// The partner's node refused the sealed file for good (not a content error).
    PartnerRefused = "PARTNER_REFUSED",
    /// The file is larger than the node sends or receives.
    FileTooLarge = "FILE_TOO_LARGE",
    /// The file waited in the partner's mailbox for its whole time limit, unacknowledged.
    MailboxExpired = "MAILBOX_EXPIRED",
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for ErrorCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ErrorCode::parse(&s).ok_or_else(|| serde::de::Error::custom("unknown error code"))
    }
}
