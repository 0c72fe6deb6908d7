//! Record layouts (field lists) of every standard-spec CSV file kind at each CSV version, and
//! the code tables their fields use.
//!
//! Source: 「ケアプランデータ連携標準仕様」 V4.1 (令和6年10月) 別紙 「CSVファイルレイアウト定義書」,
//! as summarised in the project's fact sheet (`careplan-spec.md`) and read in the text copy of
//! the 別紙. That text copy is column-garbled: field names and order are reliable, lengths and
//! 必須 marks needed reconstruction. Where a length or flag was reconstructed (M) or guessed (L),
//! the `// Sources:` comment above the layout says so and the field gets the more lenient
//! choice (longer length, sign allowed, `Text`, or not required). SPEC.md §3.7 lists the same
//! choices, and §3.9 prints every layout (checked against these tables by `tests/vectors.rs`).
//!
//! Versions: `202407` and `202504` share the V4 layouts. `202208` (V3) has the same layouts
//! for UPHOSOKU, UP1KYO, UP2KYO and the 居宅 delete files, a 第6表 without the three 福祉用具
//! columns (22 fields) and a 第7表 without them (34 fields, 回数／日数 2 digits). UP3KYO and the
//! 介護予防 files were added in V4 and have no V3 layout. UPKIHON_IMAGE is a JPEG, never a CSV.

use super::layout::{CodeTable, CsvVersion, Field, Format};
use crate::name::FileKind;

// ---------------------------------------------------------------------------------------------
// Code tables (【コード表】 of the 別紙, plus the option lists printed in the layout rows).
// ---------------------------------------------------------------------------------------------

/// 要介護状態区分 (居宅 files): 06 事業対象者, 12/13 要支援1/2, 21–25 要介護1–5.
pub(crate) static CARE_LEVEL: CodeTable = CodeTable {
    name_ja: "要介護状態区分",
    name_en: "care level",
    values: &["06", "12", "13", "21", "22", "23", "24", "25"],
};

/// 性別: 1 男性, 2 女性.
pub(crate) static SEX: CodeTable = CodeTable {
    name_ja: "性別",
    name_en: "sex",
    values: &["1", "2"],
};

/// 計画書区分: 11 初回, 12 紹介, 21 継続, 51 初回＆紹介, 52 初回＆継続, 53 紹介＆継続,
/// 54 初回＆紹介＆継続.
pub(crate) static PLAN_CATEGORY: CodeTable = CodeTable {
    name_ja: "計画書区分",
    name_en: "plan category",
    values: &["11", "12", "21", "51", "52", "53", "54"],
};

/// 認定状況区分: 1 申請中, 2 認定済.
pub(crate) static CERTIFICATION_STATUS: CodeTable = CodeTable {
    name_ja: "認定状況区分",
    name_en: "certification status",
    values: &["1", "2"],
};

/// 生活援助中心型の算定理由: 1 一人暮らし, 2 家族等が障害、疾病等, 3 その他.
pub(crate) static LIVING_SUPPORT_REASON: CodeTable = CodeTable {
    name_ja: "生活援助中心型の算定理由",
    name_en: "reason for living-support-centred service",
    values: &["1", "2", "3"],
};

/// 保険対象区分: Y 対象, N 対象外.
pub(crate) static INSURANCE_COVERED: CodeTable = CodeTable {
    name_ja: "保険対象区分",
    name_en: "insurance coverage",
    values: &["Y", "N"],
};

/// 曜日: 1 月曜日 … 7 日曜日.
pub(crate) static WEEKDAY: CodeTable = CodeTable {
    name_ja: "曜日",
    name_en: "weekday",
    values: &["1", "2", "3", "4", "5", "6", "7"],
};

/// ３０日超区分: 1 該当, 0 非該当.
pub(crate) static OVER_30_DAYS: CodeTable = CodeTable {
    name_ja: "３０日超区分",
    name_en: "over-30-days flag",
    values: &["0", "1"],
};

/// 計画種類 (介護予防): 1 介護予防支援, 2 介護予防ケアマネジメント.
pub(crate) static PLAN_TYPE: CodeTable = CodeTable {
    name_ja: "計画種類",
    name_en: "plan type",
    values: &["1", "2"],
};

/// 委託の有無 (介護予防): 1 自前, 2 委託.
pub(crate) static OUTSOURCING: CodeTable = CodeTable {
    name_ja: "委託の有無",
    name_en: "outsourcing",
    values: &["1", "2"],
};

/// 相談方法 (UPKIHON): 01 来所, 02 電話, 03 その他.
pub(crate) static CONSULTATION_METHOD: CodeTable = CodeTable {
    name_ja: "相談方法",
    name_en: "consultation method",
    values: &["01", "02", "03"],
};

/// 相談回数 (UPKIHON): 01 初回, 02 再来.
pub(crate) static CONSULTATION_COUNT: CodeTable = CodeTable {
    name_ja: "相談回数",
    name_en: "consultation count",
    values: &["01", "02"],
};

/// 利用者の現況 (UPKIHON): 01 在宅, 02 入院又は入所中.
pub(crate) static CURRENT_SITUATION: CodeTable = CodeTable {
    name_ja: "利用者の現況",
    name_en: "current situation",
    values: &["01", "02"],
};

/// 障害高齢者の日常生活自立度 (UPKIHON): 01 自立, 11 J1, 12 J2, 21 A1, 22 A2, 31 B1, 32 B2,
/// 41 C1, 42 C2.
pub(crate) static DISABILITY_INDEPENDENCE: CodeTable = CodeTable {
    name_ja: "障害高齢者の日常生活自立度",
    name_en: "independence level (disability)",
    values: &["01", "11", "12", "21", "22", "31", "32", "41", "42"],
};

/// 認知症高齢者の日常生活自立度 (UPKIHON): 01 自立, 02 Ⅰ, 03 Ⅱa, 04 Ⅱb, 05 Ⅲa, 06 Ⅲb,
/// 07 Ⅳ, 08 M.
pub(crate) static DEMENTIA_INDEPENDENCE: CodeTable = CodeTable {
    name_ja: "認知症高齢者の日常生活自立度",
    name_en: "independence level (dementia)",
    values: &["01", "02", "03", "04", "05", "06", "07", "08"],
};

/// 要介護状態区分 / 前回の介護度 in UPKIHON: 01 非該当 (not 06), 12/13 要支援1/2,
/// 21–25 要介護1–5.
pub(crate) static KIHON_CARE_LEVEL: CodeTable = CodeTable {
    name_ja: "要介護状態区分（利用者基本情報）",
    name_en: "care level (basic information)",
    values: &["01", "12", "13", "21", "22", "23", "24", "25"],
};

/// 基本チェックリスト記入結果 (UPKIHON): 1 事業対象者の該当あり, 2 事業対象者の該当なし.
pub(crate) static CHECKLIST_RESULT: CodeTable = CodeTable {
    name_ja: "基本チェックリスト記入結果",
    name_en: "basic checklist result",
    values: &["1", "2"],
};

/// 該当/非該当 flags of UPKIHON (障害等認定, 経済状況): 1 該当, 0 非該当.
pub(crate) static APPLICABLE: CodeTable = CodeTable {
    name_ja: "該当・非該当",
    name_en: "applicable flag",
    values: &["0", "1"],
};

/// 居住形態 (UPKIHON): 01 自宅, 02 借家, 03 一戸建て, 04 集合住宅, 05 自宅・一戸建て,
/// 06 自宅・集合住宅, 07 借家・一戸建て, 08 借家・集合住宅.
pub(crate) static RESIDENCE_TYPE: CodeTable = CodeTable {
    name_ja: "居住形態",
    name_en: "residence type",
    values: &["01", "02", "03", "04", "05", "06", "07", "08"],
};

/// 住宅改修の有無 (UPKIHON): 1 有, 2 無.
pub(crate) static HOME_MODIFICATION: CodeTable = CodeTable {
    name_ja: "住宅改修の有無",
    name_en: "home modification",
    values: &["1", "2"],
};

/// 要支援状態区分 (UPYOBO): 1 要支援１, 2 要支援２, 3 地域支援事業.
pub(crate) static SUPPORT_LEVEL: CodeTable = CodeTable {
    name_ja: "要支援状態区分",
    name_en: "support level",
    values: &["1", "2", "3"],
};

/// 領域における課題の有無 (UPYOBO): 1 有, 2 無.
pub(crate) static ISSUE_PRESENCE: CodeTable = CodeTable {
    name_ja: "課題の有無",
    name_en: "issue presence",
    values: &["1", "2"],
};

/// 事業プログラムの要否 (UPYOBO): 1 要, 2 否.
pub(crate) static PROGRAM_NEED: CodeTable = CodeTable {
    name_ja: "要否",
    name_en: "program need",
    values: &["1", "2"],
};

/// 主治医・意見作成者フラグ (UPKIHON_SUB2): 1 主治医, 2 それ以外.
pub(crate) static ATTENDING_PHYSICIAN: CodeTable = CodeTable {
    name_ja: "主治医・意見作成者フラグ",
    name_en: "attending physician flag",
    values: &["1", "2"],
};

/// 経過 (UPKIHON_SUB2): 01 治療中, 02 経過観察中, 03 その他.
pub(crate) static MEDICAL_COURSE: CodeTable = CodeTable {
    name_ja: "経過",
    name_en: "course",
    values: &["01", "02", "03"],
};

// ---------------------------------------------------------------------------------------------
// Helpers.
// ---------------------------------------------------------------------------------------------

const fn req(name_ja: &'static str, name_en: &'static str, format: Format) -> Field {
    Field {
        name_ja,
        name_en,
        format,
        required: true,
    }
}

const fn opt(name_ja: &'static str, name_en: &'static str, format: Format) -> Field {
    Field {
        name_ja,
        name_en,
        format,
        required: false,
    }
}

const TEXT: Format = Format::Text;
const DATE: Format = Format::Date { zero_ok: false };
const MONTH: Format = Format::Month { zero_ok: false };

/// A non-negative integer of at most `max_digits` digits.
const fn int(max_digits: u8) -> Format {
    Format::Integer {
        max_digits,
        signed: false,
    }
}

/// A 単位数-type integer: a leading `-` is allowed (reduction lines, e.g. 共生型減算).
const fn units(max_digits: u8) -> Format {
    Format::Integer {
        max_digits,
        signed: true,
    }
}

/// Field 1 of every record.
const CSV_VERSION: Field = req("CSVバージョン", "CSV version", Format::Version);
/// Field 2 of every record.
const INSURER: Field = req("保険者番号", "insurer number", Format::Insurer);
/// Field 3 of every record.
const INSURED: Field = req("被保険者番号", "insured person number", Format::Insured);

// ---------------------------------------------------------------------------------------------
// 居宅 files.
// ---------------------------------------------------------------------------------------------

// Sources: UPHOSOKU 利用者補足情報, 63 fields. Names and order [H]; lengths [M].
// Required: 1–4 and 63 (fact sheet; the garbled text shows more ○ marks near the top that
// cannot be placed, so no other field is required). Unsure (M): the 合計単位数 / 限度超単位数
// slots and 合計限度超単位数 accept a sign (単位数-type); 12 利用者電話番号 and 62 識別子 are
// Text; 60 同意書受付業者 is an office number (居宅支援事業者番号).
static UPHOSOKU: [Field; 63] = [
    CSV_VERSION,
    INSURER,
    INSURED,
    req(
        "居宅サービス計画作成（変更）日",
        "care plan date",
        Format::Date { zero_ok: true },
    ),
    opt("利用者氏名フリガナ", "user name (kana)", TEXT),
    opt("利用者氏名", "user name", TEXT),
    opt("利用者性別", "user sex", Format::Code(&SEX)),
    opt("利用者生年月日", "user birth date", DATE),
    opt("利用者郵便番号", "user postal code", Format::Postal),
    opt("利用者住所１", "user address 1", TEXT),
    opt("利用者住所２", "user address 2", TEXT),
    opt("利用者電話番号", "user phone number", TEXT),
    opt("認定日", "certification date", DATE),
    opt("限度額適用開始年月日", "limit start date", DATE),
    opt("限度額適用終了年月日", "limit end date", DATE),
    opt(
        "認定状況区分",
        "certification status",
        Format::Code(&CERTIFICATION_STATUS),
    ),
    opt("要介護状態変更日", "care level change date", DATE),
    opt("要介護状態区分", "care level", Format::Code(&CARE_LEVEL)),
    opt("区分支給限度基準額", "benefit limit", int(7)),
    opt("１サービス種類コード", "slot 1 service kind", Format::Kind),
    opt("１支給限度基準額", "slot 1 kind limit", int(7)),
    opt("１合計単位数", "slot 1 total units", units(7)),
    opt("１限度超単位数", "slot 1 units over limit", units(7)),
    opt("２サービス種類コード", "slot 2 service kind", Format::Kind),
    opt("２支給限度基準額", "slot 2 kind limit", int(7)),
    opt("２合計単位数", "slot 2 total units", units(7)),
    opt("２限度超単位数", "slot 2 units over limit", units(7)),
    opt("３サービス種類コード", "slot 3 service kind", Format::Kind),
    opt("３支給限度基準額", "slot 3 kind limit", int(7)),
    opt("３合計単位数", "slot 3 total units", units(7)),
    opt("３限度超単位数", "slot 3 units over limit", units(7)),
    opt("４サービス種類コード", "slot 4 service kind", Format::Kind),
    opt("４支給限度基準額", "slot 4 kind limit", int(7)),
    opt("４合計単位数", "slot 4 total units", units(7)),
    opt("４限度超単位数", "slot 4 units over limit", units(7)),
    opt("５サービス種類コード", "slot 5 service kind", Format::Kind),
    opt("５支給限度基準額", "slot 5 kind limit", int(7)),
    opt("５合計単位数", "slot 5 total units", units(7)),
    opt("５限度超単位数", "slot 5 units over limit", units(7)),
    opt("６サービス種類コード", "slot 6 service kind", Format::Kind),
    opt("６支給限度基準額", "slot 6 kind limit", int(7)),
    opt("６合計単位数", "slot 6 total units", units(7)),
    opt("６限度超単位数", "slot 6 units over limit", units(7)),
    opt("７サービス種類コード", "slot 7 service kind", Format::Kind),
    opt("７支給限度基準額", "slot 7 kind limit", int(7)),
    opt("７合計単位数", "slot 7 total units", units(7)),
    opt("７限度超単位数", "slot 7 units over limit", units(7)),
    opt("８サービス種類コード", "slot 8 service kind", Format::Kind),
    opt("８支給限度基準額", "slot 8 kind limit", int(7)),
    opt("８合計単位数", "slot 8 total units", units(7)),
    opt("８限度超単位数", "slot 8 units over limit", units(7)),
    opt("９サービス種類コード", "slot 9 service kind", Format::Kind),
    opt("９支給限度基準額", "slot 9 kind limit", int(7)),
    opt("９合計単位数", "slot 9 total units", units(7)),
    opt("９限度超単位数", "slot 9 units over limit", units(7)),
    opt("合計限度超単位数", "total units over limit", units(7)),
    opt(
        "入所前月迄利用日数",
        "short-stay days to last month",
        int(5),
    ),
    opt("入所累積利用日数", "short-stay cumulative days", int(5)),
    opt(
        "前回要介護状態区分",
        "previous care level",
        Format::Code(&CARE_LEVEL),
    ),
    opt("同意書受付業者", "consent receiving office", Format::Office),
    opt("更新業者コード", "updating office", Format::Office),
    opt("識別子", "identifier", TEXT),
    req("対象年月", "target month", Format::Month { zero_ok: true }),
];

// Sources: UP1KYO 居宅サービス計画書 第1表, 28 fields. Names and order [H]; lengths and flags [M].
// Required: 1–4 and 14 (the key linking 2表/3表/補足). Unsure (M): the garbled text seems to
// put ○ on 8 居宅サービス計画作成者氏名, 9 介護支援事業者名, 13 介護支援事業者コード and
// 15 初回居宅サービス計画作成日 too; not enforced.
static UP1KYO: [Field; 28] = [
    CSV_VERSION,
    INSURER,
    INSURED,
    req("作成年月日", "creation date", DATE),
    opt("利用者郵便番号", "user postal code", Format::Postal),
    opt("利用者住所１", "user address 1", TEXT),
    opt("利用者住所２", "user address 2", TEXT),
    opt("居宅サービス計画作成者氏名", "plan author name", TEXT),
    opt("介護支援事業者名", "care management office name", TEXT),
    opt(
        "介護支援事業者郵便番号",
        "care management office postal code",
        Format::Postal,
    ),
    opt(
        "介護支援事業者住所１",
        "care management office address 1",
        TEXT,
    ),
    opt(
        "介護支援事業者住所２",
        "care management office address 2",
        TEXT,
    ),
    opt(
        "介護支援事業者コード",
        "care management office number",
        Format::Office,
    ),
    req("居宅サービス計画作成（変更）日", "care plan date", DATE),
    opt("初回居宅サービス計画作成日", "first care plan date", DATE),
    opt("計画書区分", "plan category", Format::Code(&PLAN_CATEGORY)),
    opt(
        "認定状況区分",
        "certification status",
        Format::Code(&CERTIFICATION_STATUS),
    ),
    opt("認定日", "certification date", DATE),
    opt("認定有効期間開始日", "certification start date", DATE),
    opt("認定有効期間終了日", "certification end date", DATE),
    opt("要介護状態区分", "care level", Format::Code(&CARE_LEVEL)),
    opt(
        "利用者及び家族の生活に対する意向を踏まえた課題分析の結果",
        "assessment result",
        TEXT,
    ),
    opt(
        "介護認定審査会の意見及びサービスの種類の指定",
        "certification board opinion",
        TEXT,
    ),
    opt("総合的な援助の方針", "overall support policy", TEXT),
    opt(
        "生活援助中心型の算定理由",
        "living-support reason",
        Format::Code(&LIVING_SUPPORT_REASON),
    ),
    opt("その他理由", "other reason", TEXT),
    opt("更新業者コード", "updating office", Format::Office),
    opt("識別子", "identifier", TEXT),
];

// Sources: UP2KYO 居宅サービス計画書 第2表, 22 fields (same in V3.2). Names and order [H].
// Required: 1–5 (five ○ marks at the top of the table). The NO fields are 1–99. Unsure (M):
// 17 サービス事業者コード is an office number even for rows outside insurance (家政婦, 病院);
// it is optional, so such rows may leave it empty.
static UP2KYO: [Field; 22] = [
    CSV_VERSION,
    INSURER,
    INSURED,
    req("居宅計画書作成年月日", "plan document date", DATE),
    req("居宅サービス計画作成（変更）日", "care plan date", DATE),
    opt("課題ＮＯ", "issue no", int(2)),
    opt("課題", "issue", TEXT),
    opt("援助目標ＮＯ", "goal no", int(2)),
    opt("長期目標", "long-term goal", TEXT),
    opt("短期目標", "short-term goal", TEXT),
    opt("長期期間", "long-term period", TEXT),
    opt("短期期間", "short-term period", TEXT),
    opt("援助内容ＮＯ", "support item no", int(2)),
    opt("サービス内容", "service content", TEXT),
    opt(
        "保険対象区分",
        "insurance coverage",
        Format::Code(&INSURANCE_COVERED),
    ),
    opt("サービス種別", "service type", TEXT),
    opt(
        "サービス事業者コード",
        "service office number",
        Format::Office,
    ),
    opt("サービス事業所名", "service office name", TEXT),
    opt("頻度", "frequency", TEXT),
    opt("実施期間", "period", TEXT),
    opt("更新業者コード", "updating office", Format::Office),
    opt("識別子", "identifier", TEXT),
];

// Sources: UP3KYO 週間サービス計画表 第3表 (new in V4), 13 fields. Names and order [H].
// Required: 1–5 (○ in both 必須 and 必要 columns). Unsure (M): the weekly chart runs to 24:00,
// so the `time` format accepts `2400` besides HHMM 0000–2359 and 9999.
static UP3KYO: [Field; 13] = [
    CSV_VERSION,
    INSURER,
    INSURED,
    req("週間サービス計画表作成年月日", "weekly plan date", DATE),
    req("居宅サービス計画作成（変更）日", "care plan date", DATE),
    opt("介護サービス内容", "care service content", TEXT),
    opt("曜日", "weekday", Format::Code(&WEEKDAY)),
    opt("開始時間", "service start time", Format::Time),
    opt("終了時間", "service end time", Format::Time),
    opt("主な日常生活上の活動", "main daily activity", TEXT),
    opt("開始時間", "activity start time", Format::Time),
    opt("終了時間", "activity end time", Format::Time),
    opt("週単位以外のサービス", "non-weekly services", TEXT),
];

/// Builds the 第6表 layout (UPPLAN / UPJSK); the arguments are the V4 福祉用具 fields 16–18
/// (none for V3).
macro_rules! plan_layout {
    ($($welfare:expr),* $(,)?) => {
        [
            CSV_VERSION,
            INSURER,
            INSURED,
            req("作成年月日", "creation date", DATE),
            req("対象年月", "target month", MONTH),
            opt("プラン担当業者コード", "care management office number", Format::Office),
            opt("プラン担当者名", "care manager name", TEXT),
            opt("単位数", "units", units(6)),
            opt("前月までの短期入所利用日数", "short-stay days to last month", int(5)),
            req("サービス利用日", "service date", DATE),
            opt("日割対象日", "daily-rate days", Format::DayMask),
            req("サービス開始時刻", "service start time", Format::Time),
            req("サービス終了時刻", "service end time", Format::Time),
            req("サービス回数", "service count", int(2)),
            req("サービスコード", "service code", Format::ServiceCode),
            $($welfare,)*
            opt("明細判別コード", "line discriminator", int(3)),
            req("サービス事業者コード", "service office number", Format::Office),
            opt("サービス事業所名", "service office name", TEXT),
            opt("サテライト枝番", "satellite branch number", TEXT),
            req("３０日超区分", "over-30-days flag", Format::Code(&OVER_30_DAYS)),
            opt("更新業者コード", "updating office", Format::Office),
            opt("識別子", "identifier", TEXT),
        ]
    };
}

// Sources: UPPLAN / UPJSK 第6表 (予定 / 実績), 25 fields in V4. Names and order [H]; lengths
// and flags [M]. Required: 1–5, 10, 12–15, 20, 23. Unsure (M/L): 6 プラン担当業者コード
// (the ○ marks at the top cannot be placed; optional); 8 単位数 accepts a sign (共生型 減算);
// 19 明細判別コード has no printed length (S3 uses 2; up to 3 digits allowed); 22 サテライト枝番
// is an office-defined number, checked as Text.
static UPPLAN_V4: [Field; 25] = plan_layout!(
    opt("TAISコード", "TAIS code", TEXT),
    opt(
        "福祉用具届出コード",
        "welfare equipment notification code",
        TEXT
    ),
    opt("用具名称（機種名）", "equipment name", TEXT),
);

// Sources: as UPPLAN_V4 without fields 16–18 (added in V4), 22 fields [M: V3 count inferred
// from the V4 change history].
static UPPLAN_V3: [Field; 22] = plan_layout!();

/// Builds the 第7表 layout (UPSIKYU); `$count` is the length of 回数／日数 (2 in V3, 3 in V4)
/// and the remaining arguments are the V4 福祉用具 fields 10–12 (none for V3).
macro_rules! sikyu_layout {
    ($count:expr; $($welfare:expr),* $(,)?) => {
        [
            CSV_VERSION,
            INSURER,
            INSURED,
            req("作成年月日", "creation date", DATE),
            req("対象年月", "target month", MONTH),
            opt("サービス事業所名", "service office name", TEXT),
            req("サービス事業所コード", "service office number", Format::Office),
            opt("サテライト枝番", "satellite branch number", TEXT),
            req("サービスコード", "service code", Format::ServiceCode),
            $($welfare,)*
            req("単位数", "units", units(6)),
            opt("割引後率", "discount rate", int(5)),
            opt("割引後単位数", "discounted units", units(6)),
            req("回数／日数", "count / days", int($count)),
            opt("サービス単位金額", "service units / amount", units(6)),
            opt("給付管理単位数", "benefit-managed units", units(6)),
            opt("種類支給限度基準超単位数", "units over kind limit", units(6)),
            opt("種類支給限度基準内単位数", "units within kind limit", units(6)),
            opt("区分支給限度基準超単位数", "units over benefit limit", units(6)),
            opt("区分支給限度基準内単位数", "units within benefit limit", units(6)),
            opt("単位数単価", "unit price", Format::Decimal),
            opt("費用総額保険／事業対象分", "total cost (insured)", int(6)),
            opt("給付率", "benefit rate", int(6)),
            opt("保険／事業費請求額", "insurance claim amount", int(6)),
            opt("定額利用者負担単価金額", "fixed co-payment unit amount", int(6)),
            opt("利用者負担保険／事業対象分", "co-payment (insured)", int(6)),
            opt("利用者負担（全額負担分）", "co-payment (full)", int(6)),
            opt("前月までの利用日数", "days used to last month", int(5)),
            opt("当月の計画利用日数", "planned days this month", int(2)),
            opt("累積利用日数", "cumulative days", int(5)),
            req("３０日超区分", "over-30-days flag", Format::Code(&OVER_30_DAYS)),
            opt("事業所コード", "office code", Format::Office),
            opt("入力者コード", "input person code", TEXT),
            opt("更新業者コード", "updating office", Format::Office),
            opt("識別子", "identifier", TEXT),
        ]
    };
}

// Sources: UPSIKYU 第7表 サービス利用票別表, 37 fields in V4. Names and order [H]; lengths
// [M–L]. Required: 1–5, 7, 9, 13, 16, 33. Unsure: the 単位数-type fields (13, 15, 17–22)
// accept a sign; 17 サービス単位金額 length 5 or 6 → 6 [M]; 30 前月までの利用日数 length 2
// or 5 → 5 [L]; 34 事業所コード / 35 入力者コード: the text puts 「9999999999を固定でセット」
// on one of them [L] → 34 Office (accepts 9999999999), 35 Text; 8 サテライト枝番 Text.
static UPSIKYU_V4: [Field; 37] = sikyu_layout!(3;
    opt("TAISコード", "TAIS code", TEXT),
    opt("福祉用具届出コード", "welfare equipment notification code", TEXT),
    opt("用具名称（機種名）", "equipment name", TEXT),
);

// Sources: as UPSIKYU_V4 without fields 10–12 (added in V4) and with 回数／日数 of 2 digits
// (V4 changed it from 2 to 3), 34 fields [M: V3 count inferred from the V4 change history].
static UPSIKYU_V3: [Field; 34] = sikyu_layout!(2;);

// Sources: delete files [H]. Every field is required.
static DLT1KYO: [Field; 4] = [
    CSV_VERSION,
    INSURER,
    INSURED,
    req("居宅サービス計画作成（変更）日", "care plan date", DATE),
];

static DLTPLAN: [Field; 4] = [
    CSV_VERSION,
    INSURER,
    INSURED,
    req("削除対象年月", "month to delete", MONTH),
];

static DLTJSK: [Field; 6] = [
    CSV_VERSION,
    INSURER,
    INSURED,
    req("削除対象年月", "month to delete", MONTH),
    req(
        "サービス事業者コード",
        "service office number",
        Format::Office,
    ),
    req("サービス種類コード", "service kind", Format::Kind),
];

// ---------------------------------------------------------------------------------------------
// 介護予防 files (added in V4).
// ---------------------------------------------------------------------------------------------

// Sources: UPKIHON 利用者基本情報, 71 fields. Names and order [H]; lengths, formats and flags
// reconstructed from the garbled text [M]. Required: 1–5 (○○ on the rows). Unsure (M):
// 6 委託の有無 has ○ only in the 必要 column → optional; 14 フリガナ, 15 氏名, 16 性別,
// 17 生年月日 appear to carry ○○ but the rows had to be realigned → optional; 23/26 use the
// UPKIHON care-level list (01 非該当, not 06); 35 自室の階数 has no printed format → Text;
// phone/fax numbers and 62 家族構成 画像ファイル名 are Text.
static UPKIHON: [Field; 71] = [
    CSV_VERSION,
    INSURER,
    INSURED,
    req("相談日", "consultation date", DATE),
    req("計画種類", "plan type", Format::Code(&PLAN_TYPE)),
    opt("委託の有無", "outsourcing", Format::Code(&OUTSOURCING)),
    opt("作成担当者", "author", TEXT),
    opt(
        "相談方法",
        "consultation method",
        Format::Code(&CONSULTATION_METHOD),
    ),
    opt(
        "相談方法(その他の内容)",
        "consultation method (other)",
        TEXT,
    ),
    opt(
        "相談回数",
        "consultation count",
        Format::Code(&CONSULTATION_COUNT),
    ),
    opt("前回相談日", "previous consultation date", DATE),
    opt(
        "利用者の現況",
        "current situation",
        Format::Code(&CURRENT_SITUATION),
    ),
    opt(
        "利用者の現況(状況補足)",
        "current situation (details)",
        TEXT,
    ),
    opt("利用者氏名ﾌﾘｶﾞﾅ", "user name (kana)", TEXT),
    opt("利用者氏名", "user name", TEXT),
    opt("利用者性別", "user sex", Format::Code(&SEX)),
    opt("利用者生年月日", "user birth date", DATE),
    opt("利用者住所", "user address", TEXT),
    opt("利用者電話番号", "user phone number", TEXT),
    opt("利用者Fax番号", "user fax number", TEXT),
    opt(
        "障害高齢者の日常生活自立度",
        "independence level (disability)",
        Format::Code(&DISABILITY_INDEPENDENCE),
    ),
    opt(
        "認知症高齢者の日常生活自立度",
        "independence level (dementia)",
        Format::Code(&DEMENTIA_INDEPENDENCE),
    ),
    opt(
        "要介護状態区分",
        "care level",
        Format::Code(&KIHON_CARE_LEVEL),
    ),
    opt("認定有効期限開始日", "certification start date", DATE),
    opt("認定有効期間終了日", "certification end date", DATE),
    opt(
        "前回の介護度",
        "previous care level",
        Format::Code(&KIHON_CARE_LEVEL),
    ),
    opt(
        "基本チェックリスト記入結果",
        "basic checklist result",
        Format::Code(&CHECKLIST_RESULT),
    ),
    opt("基本チェックリスト記入日", "basic checklist date", DATE),
    opt(
        "障害等認定(身障)",
        "disability certificate (physical)",
        Format::Code(&APPLICABLE),
    ),
    opt(
        "障害等認定(療育)",
        "disability certificate (intellectual)",
        Format::Code(&APPLICABLE),
    ),
    opt(
        "障害等認定(精神)",
        "disability certificate (mental)",
        Format::Code(&APPLICABLE),
    ),
    opt(
        "障害等認定(難病)",
        "disability certificate (intractable disease)",
        Format::Code(&APPLICABLE),
    ),
    opt("障害等認定特記事項", "disability notes", TEXT),
    opt("居住形態", "residence type", Format::Code(&RESIDENCE_TYPE)),
    opt("自室の階数", "room floor", TEXT),
    opt(
        "住宅改修の有無",
        "home modification",
        Format::Code(&HOME_MODIFICATION),
    ),
    opt(
        "経済状況(国民年金)",
        "income (national pension)",
        Format::Code(&APPLICABLE),
    ),
    opt(
        "経済状況(厚生年金)",
        "income (employee pension)",
        Format::Code(&APPLICABLE),
    ),
    opt(
        "経済状況(障害年金)",
        "income (disability pension)",
        Format::Code(&APPLICABLE),
    ),
    opt(
        "経済状況(生活保護)",
        "income (public assistance)",
        Format::Code(&APPLICABLE),
    ),
    opt("経済状況詳細", "income details", TEXT),
    opt("来所者(相談者)氏名", "visitor name", TEXT),
    opt("来所者(相談者)住所", "visitor address", TEXT),
    opt("来所者(相談者)電話番号", "visitor phone number", TEXT),
    opt("来所者(相談者)続柄", "visitor relationship", TEXT),
    opt("1 緊急連絡先(氏名)", "emergency contact 1 name", TEXT),
    opt(
        "1 緊急連絡先(続柄)",
        "emergency contact 1 relationship",
        TEXT,
    ),
    opt("1 緊急連絡先(住所)", "emergency contact 1 address", TEXT),
    opt("1 緊急連絡先(電話番号)", "emergency contact 1 phone", TEXT),
    opt("2 緊急連絡先(氏名)", "emergency contact 2 name", TEXT),
    opt(
        "2 緊急連絡先(続柄)",
        "emergency contact 2 relationship",
        TEXT,
    ),
    opt("2 緊急連絡先(住所)", "emergency contact 2 address", TEXT),
    opt("2 緊急連絡先(電話番号)", "emergency contact 2 phone", TEXT),
    opt("3 緊急連絡先(氏名)", "emergency contact 3 name", TEXT),
    opt(
        "3 緊急連絡先(続柄)",
        "emergency contact 3 relationship",
        TEXT,
    ),
    opt("3 緊急連絡先(住所)", "emergency contact 3 address", TEXT),
    opt("3 緊急連絡先(電話番号)", "emergency contact 3 phone", TEXT),
    opt("4 緊急連絡先(氏名)", "emergency contact 4 name", TEXT),
    opt(
        "4 緊急連絡先(続柄)",
        "emergency contact 4 relationship",
        TEXT,
    ),
    opt("4 緊急連絡先(住所)", "emergency contact 4 address", TEXT),
    opt("4 緊急連絡先(電話番号)", "emergency contact 4 phone", TEXT),
    opt("家族構成 画像ファイル名", "family diagram image file", TEXT),
    opt("家族関係等の状況", "family situation", TEXT),
    opt("今までの生活", "life history", TEXT),
    opt(
        "１日の生活・すごし方(生活全般)",
        "daily life (general)",
        TEXT,
    ),
    opt("趣味・楽しみ・特技", "hobbies", TEXT),
    opt("友人・地域との関係", "community relationships", TEXT),
    opt(
        "現在利用している公的サービス",
        "public services in use",
        TEXT,
    ),
    opt(
        "現在利用している非公的サービス",
        "non-public services in use",
        TEXT,
    ),
    opt("同意日", "consent date", DATE),
    opt("同意者氏名", "consenting person", TEXT),
];

// Sources: UPKIHON_SUB1 利用者基本情報（別表1）１日の生活・すごし方, 7 fields [H names; M].
// Required: 1–4 (the keys of the linked UPKIHON record). 5 時間 is free text (e.g. `6:00`).
static UPKIHON_SUB1: [Field; 7] = [
    CSV_VERSION,
    INSURER,
    INSURED,
    req("相談日", "consultation date", DATE),
    opt("時間", "time", TEXT),
    opt("本人の生活状況", "user's daily life", TEXT),
    opt("介護者・家族の生活状況", "carer's daily life", TEXT),
];

// Sources: UPKIHON_SUB2 利用者基本情報（別表2）現病歴・既往歴, 11 fields [H names; M].
// Required: 1–4. 5 年月日 is free text (e.g. 「H12年10月」); 9 電話番号 is Text.
static UPKIHON_SUB2: [Field; 11] = [
    CSV_VERSION,
    INSURER,
    INSURED,
    req("相談日", "consultation date", DATE),
    opt("年月日", "onset date", TEXT),
    opt("病名", "disease name", TEXT),
    opt("医療機関・医師名", "clinic / doctor", TEXT),
    opt(
        "主治医・意見作成者フラグ",
        "attending physician flag",
        Format::Code(&ATTENDING_PHYSICIAN),
    ),
    opt("医療機関・医師電話番号", "clinic phone number", TEXT),
    opt("経過", "course", Format::Code(&MEDICAL_COURSE)),
    opt("治療中の内容", "treatment", TEXT),
];

// Sources: DLTKIHON, delete file [H]. Every field is required.
static DLTKIHON: [Field; 4] = [
    CSV_VERSION,
    INSURER,
    INSURED,
    req("相談日", "consultation date", DATE),
];

// Sources: UPYOBO 介護予防サービス・支援計画書, 57 fields. Names and order [H]; lengths,
// formats and flags reconstructed [M]. Required: 1–5. Unsure (M): 6 委託の有無 has ○ only in
// the 必要 column → optional; 8 利用者名 appears to carry ○○ after realignment → optional;
// 43–48 基本チェックリストの該当数 have length 1, allowed up to 2 digits; 19 電話番号 is Text.
static UPYOBO: [Field; 57] = [
    CSV_VERSION,
    INSURER,
    INSURED,
    req("計画作成(変更)日", "plan date", DATE),
    req("計画種類", "plan type", Format::Code(&PLAN_TYPE)),
    opt("委託の有無", "outsourcing", Format::Code(&OUTSOURCING)),
    opt("整理番号", "reference number", TEXT),
    opt("利用者名", "user name", TEXT),
    opt("認定年月日", "certification date", DATE),
    opt("認定有効期間開始日", "certification start date", DATE),
    opt("認定有効期間終了日", "certification end date", DATE),
    opt("計画書区分", "plan category", Format::Code(&PLAN_CATEGORY)),
    opt(
        "認定状況区分",
        "certification status",
        Format::Code(&CERTIFICATION_STATUS),
    ),
    opt(
        "要支援状態区分",
        "support level",
        Format::Code(&SUPPORT_LEVEL),
    ),
    opt(
        "計画作成者氏名（地域包括支援センター担当者名）",
        "plan author (centre)",
        TEXT,
    ),
    opt(
        "計画作成者氏名（担当介護支援専門員名）",
        "plan author (care manager)",
        TEXT,
    ),
    opt("計画作成者事業者・事業所名", "author office name", TEXT),
    opt(
        "計画作成者事業者・事業所住所",
        "author office address",
        TEXT,
    ),
    opt(
        "計画作成者事業者・事業所電話番号",
        "author office phone",
        TEXT,
    ),
    opt("初回作成日", "first plan date", DATE),
    opt("担当地域包括支援センター", "responsible centre", TEXT),
    opt("目標とする生活(1日)", "life goal (day)", TEXT),
    opt("目標とする生活(1年)", "life goal (year)", TEXT),
    opt("【運動・移動】現在の状況", "mobility: situation", TEXT),
    opt(
        "【運動・移動】本人・家族の意欲・意向",
        "mobility: wishes",
        TEXT,
    ),
    opt(
        "【運動・移動】領域における課題の有無",
        "mobility: issue",
        Format::Code(&ISSUE_PRESENCE),
    ),
    opt(
        "【運動・移動】領域における課題（背景・原因）",
        "mobility: issue background",
        TEXT,
    ),
    opt(
        "【日常生活(家庭生活)】現在の状況",
        "daily life: situation",
        TEXT,
    ),
    opt(
        "【日常生活(家庭生活)】本人・家族の意欲・意向",
        "daily life: wishes",
        TEXT,
    ),
    opt(
        "【日常生活(家庭生活)】領域における課題の有無",
        "daily life: issue",
        Format::Code(&ISSUE_PRESENCE),
    ),
    opt(
        "【日常生活(家庭生活)】領域における課題（背景・原因）",
        "daily life: issue background",
        TEXT,
    ),
    opt(
        "【社会参加、対人関係・コミュニケーション】現在の状況",
        "social: situation",
        TEXT,
    ),
    opt(
        "【社会参加、対人関係・コミュニケーション】本人・家族の意欲・意向",
        "social: wishes",
        TEXT,
    ),
    opt(
        "【社会参加、対人関係・コミュニケーション】領域における課題の有無",
        "social: issue",
        Format::Code(&ISSUE_PRESENCE),
    ),
    opt(
        "【社会参加、対人関係・コミュニケーション】領域における課題（背景・原因）",
        "social: issue background",
        TEXT,
    ),
    opt("【健康管理】現在の状況", "health: situation", TEXT),
    opt("【健康管理】本人・家族の意欲・意向", "health: wishes", TEXT),
    opt(
        "【健康管理】領域における課題の有無",
        "health: issue",
        Format::Code(&ISSUE_PRESENCE),
    ),
    opt(
        "【健康管理】領域における課題（背景・原因）",
        "health: issue background",
        TEXT,
    ),
    opt("健康状態の留意点", "health notes", TEXT),
    opt("妥当な支援の実施に向けた方針", "support policy", TEXT),
    opt("総合的な方針", "overall policy", TEXT),
    opt(
        "基本チェックリストの該当数(運動不足)",
        "checklist count (exercise)",
        int(2),
    ),
    opt(
        "基本チェックリストの該当数(栄養改善)",
        "checklist count (nutrition)",
        int(2),
    ),
    opt(
        "基本チェックリストの該当数(口腔内ケア)",
        "checklist count (oral care)",
        int(2),
    ),
    opt(
        "基本チェックリストの該当数(閉じこもり予防)",
        "checklist count (withdrawal)",
        int(2),
    ),
    opt(
        "基本チェックリストの該当数(物忘れ予防)",
        "checklist count (forgetfulness)",
        int(2),
    ),
    opt(
        "基本チェックリストの該当数(うつ予防)",
        "checklist count (depression)",
        int(2),
    ),
    opt(
        "事業プログラムの要否(運動不足)",
        "program need (exercise)",
        Format::Code(&PROGRAM_NEED),
    ),
    opt(
        "事業プログラムの要否(栄養改善)",
        "program need (nutrition)",
        Format::Code(&PROGRAM_NEED),
    ),
    opt(
        "事業プログラムの要否(口腔内ケア)",
        "program need (oral care)",
        Format::Code(&PROGRAM_NEED),
    ),
    opt(
        "事業プログラムの要否(閉じこもり予防)",
        "program need (withdrawal)",
        Format::Code(&PROGRAM_NEED),
    ),
    opt(
        "事業プログラムの要否(物忘れ予防)",
        "program need (forgetfulness)",
        Format::Code(&PROGRAM_NEED),
    ),
    opt(
        "事業プログラムの要否(うつ予防)",
        "program need (depression)",
        Format::Code(&PROGRAM_NEED),
    ),
    opt("地域包括支援センター意見", "centre opinion", TEXT),
    opt("同意日", "consent date", DATE),
    opt("同意者氏名", "consenting person", TEXT),
];

// Sources: UPYOBO_SUB 介護予防サービス・支援計画書（別表）支援計画, 17 fields [H names; M].
// Required: 1–4 (the keys of the linked UPYOBO record). The three NO fields are 2 digits.
static UPYOBO_SUB: [Field; 17] = [
    CSV_VERSION,
    INSURER,
    INSURED,
    req("計画作成(変更)日", "plan date", DATE),
    opt("課題ＮＯ", "issue no", int(2)),
    opt("総合的課題", "overall issue", TEXT),
    opt(
        "課題に対する目標と具体策の提案",
        "proposed goals and measures",
        TEXT,
    ),
    opt(
        "具体策についての意向本人・家族",
        "wishes on the measures",
        TEXT,
    ),
    opt("目標", "goal", TEXT),
    opt("支援計画ＮＯ", "support plan no", int(2)),
    opt(
        "【支援計画】目標についての支援のポイント",
        "support points",
        TEXT,
    ),
    opt(
        "【支援計画】本人等のセルフケアや家族の支援、インフォーマルサービス（民間サービス）",
        "self-care and informal support",
        TEXT,
    ),
    opt(
        "【支援計画】介護保険サービス又は地域支援事業（総合事業のサービス）",
        "insurance or community services",
        TEXT,
    ),
    opt("利用サービスＮＯ", "service no", int(2)),
    opt("【利用サービス】サービス種別", "service type", TEXT),
    opt("【利用サービス】事業所(利用先)", "service office", TEXT),
    opt("【利用サービス】期間", "service period", TEXT),
];

// Sources: DLTYOBO, delete file [H]. Every field is required.
static DLTYOBO: [Field; 4] = [
    CSV_VERSION,
    INSURER,
    INSURED,
    req("計画作成(変更)日", "plan date", DATE),
];

// ---------------------------------------------------------------------------------------------
// Lookup.
// ---------------------------------------------------------------------------------------------

/// The layout of `kind` at `version`, or `None` when that kind has no CSV layout at that
/// version (UP3KYO and the 介護予防 files at `202208`; UPKIHON_IMAGE, a JPEG, always).
pub fn layout(kind: FileKind, version: CsvVersion) -> Option<&'static [Field]> {
    let v4 = version.is_v4();
    let fields: &'static [Field] = match kind {
        FileKind::UpHosoku => &UPHOSOKU,
        FileKind::Up1Kyo => &UP1KYO,
        FileKind::Up2Kyo => &UP2KYO,
        FileKind::Up3Kyo if v4 => &UP3KYO,
        FileKind::UpPlan | FileKind::UpJsk if v4 => &UPPLAN_V4,
        FileKind::UpPlan | FileKind::UpJsk => &UPPLAN_V3,
        FileKind::UpSikyu if v4 => &UPSIKYU_V4,
        FileKind::UpSikyu => &UPSIKYU_V3,
        FileKind::Dlt1Kyo => &DLT1KYO,
        FileKind::DltPlan => &DLTPLAN,
        FileKind::DltJsk => &DLTJSK,
        FileKind::UpKihon if v4 => &UPKIHON,
        FileKind::UpKihonSub1 if v4 => &UPKIHON_SUB1,
        FileKind::UpKihonSub2 if v4 => &UPKIHON_SUB2,
        FileKind::DltKihon if v4 => &DLTKIHON,
        FileKind::UpYobo if v4 => &UPYOBO,
        FileKind::UpYoboSub if v4 => &UPYOBO_SUB,
        FileKind::DltYobo if v4 => &DLTYOBO,
        FileKind::Up3Kyo
        | FileKind::UpKihon
        | FileKind::UpKihonSub1
        | FileKind::UpKihonSub2
        | FileKind::DltKihon
        | FileKind::UpYobo
        | FileKind::UpYoboSub
        | FileKind::DltYobo
        | FileKind::UpKihonImage => return None,
    };
    Some(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VERSIONS: [CsvVersion; 3] = [
        CsvVersion::V202208,
        CsvVersion::V202407,
        CsvVersion::V202504,
    ];

    /// The expected field count of `kind` at a V4 (`true`) or V3 (`false`) version.
    fn expected_count(kind: FileKind, v4: bool) -> Option<usize> {
        match (kind, v4) {
            (FileKind::UpKihonImage, _) => None,
            (FileKind::UpHosoku, _) => Some(63),
            (FileKind::Up1Kyo, _) => Some(28),
            (FileKind::Up2Kyo, _) => Some(22),
            (FileKind::Up3Kyo, true) => Some(13),
            (FileKind::UpPlan | FileKind::UpJsk, true) => Some(25),
            (FileKind::UpPlan | FileKind::UpJsk, false) => Some(22),
            (FileKind::UpSikyu, true) => Some(37),
            (FileKind::UpSikyu, false) => Some(34),
            (FileKind::Dlt1Kyo | FileKind::DltPlan, _) => Some(4),
            (FileKind::DltJsk, _) => Some(6),
            (FileKind::UpKihon, true) => Some(71),
            (FileKind::UpKihonSub1, true) => Some(7),
            (FileKind::UpKihonSub2, true) => Some(11),
            (FileKind::DltKihon | FileKind::DltYobo, true) => Some(4),
            (FileKind::UpYobo, true) => Some(57),
            (FileKind::UpYoboSub, true) => Some(17),
            (
                FileKind::Up3Kyo
                | FileKind::UpKihon
                | FileKind::UpKihonSub1
                | FileKind::UpKihonSub2
                | FileKind::DltKihon
                | FileKind::UpYobo
                | FileKind::UpYoboSub
                | FileKind::DltYobo,
                false,
            ) => None,
        }
    }

    #[test]
    fn field_counts_of_every_kind_at_every_version() {
        for kind in FileKind::ALL {
            for version in VERSIONS {
                let got = layout(kind, version).map(<[Field]>::len);
                assert_eq!(
                    got,
                    expected_count(kind, version.is_v4()),
                    "{} at {}",
                    kind.prefix(),
                    version.as_str()
                );
            }
        }
    }

    #[test]
    fn v4_versions_share_layouts() {
        for kind in FileKind::ALL {
            let a = layout(kind, CsvVersion::V202407);
            let b = layout(kind, CsvVersion::V202504);
            assert_eq!(a.map(<[Field]>::as_ptr), b.map(<[Field]>::as_ptr));
        }
    }

    #[test]
    fn image_has_no_layout() {
        for version in VERSIONS {
            assert!(layout(FileKind::UpKihonImage, version).is_none());
        }
    }

    #[test]
    fn keys_lead_every_layout() {
        for kind in FileKind::ALL {
            for version in VERSIONS {
                let Some(fields) = layout(kind, version) else {
                    continue;
                };
                let what = format!("{} at {}", kind.prefix(), version.as_str());
                assert!(matches!(fields[0].format, Format::Version), "{what}");
                assert!(matches!(fields[1].format, Format::Insurer), "{what}");
                assert!(matches!(fields[2].format, Format::Insured), "{what}");
                assert!(fields[..3].iter().all(|f| f.required), "{what}");
            }
        }
    }

    #[test]
    fn delete_files_are_all_required() {
        let deletes = [
            FileKind::Dlt1Kyo,
            FileKind::DltPlan,
            FileKind::DltJsk,
            FileKind::DltKihon,
            FileKind::DltYobo,
        ];
        for kind in deletes {
            let fields = layout(kind, CsvVersion::V202407).unwrap();
            assert!(fields.iter().all(|f| f.required), "{}", kind.prefix());
        }
    }

    #[test]
    fn upplan_v4_formats() {
        let f = layout(FileKind::UpPlan, CsvVersion::V202407).unwrap();
        assert!(matches!(f[4].format, Format::Month { zero_ok: false }));
        assert!(matches!(f[11].format, Format::Time));
        assert!(matches!(f[12].format, Format::Time));
        assert!(matches!(f[14].format, Format::ServiceCode));
        assert_eq!(f[15].name_ja, "TAISコード");
        assert!(matches!(f[10].format, Format::DayMask));
        assert!(matches!(f[22].format, Format::Code(t) if t.name_ja == "３０日超区分"));
    }

    #[test]
    fn upplan_v3_drops_the_welfare_columns() {
        let v3 = layout(FileKind::UpPlan, CsvVersion::V202208).unwrap();
        let v4 = layout(FileKind::UpPlan, CsvVersion::V202407).unwrap();
        let v4_names: Vec<_> = v4
            .iter()
            .enumerate()
            .filter(|(i, _)| !(15..18).contains(i))
            .map(|(_, f)| f.name_ja)
            .collect();
        let v3_names: Vec<_> = v3.iter().map(|f| f.name_ja).collect();
        assert_eq!(v3_names, v4_names);
    }

    #[test]
    fn upsikyu_versions_differ_in_welfare_columns_and_count_length() {
        let v3 = layout(FileKind::UpSikyu, CsvVersion::V202208).unwrap();
        let v4 = layout(FileKind::UpSikyu, CsvVersion::V202407).unwrap();
        assert_eq!(v4[9].name_ja, "TAISコード");
        assert_eq!(v3[9].name_ja, "単位数");
        assert!(matches!(
            v4[15].format,
            Format::Integer { max_digits: 3, .. }
        ));
        assert!(matches!(
            v3[12].format,
            Format::Integer { max_digits: 2, .. }
        ));
        assert!(matches!(v4[22].format, Format::Decimal));
    }

    #[test]
    fn uphosoku_placeholders() {
        let f = layout(FileKind::UpHosoku, CsvVersion::V202407).unwrap();
        assert!(matches!(f[3].format, Format::Date { zero_ok: true }));
        assert!(matches!(f[62].format, Format::Month { zero_ok: true }));
        assert!(f[62].required);
    }

    #[test]
    fn zero_placeholders_only_in_uphosoku() {
        for kind in FileKind::ALL {
            if kind == FileKind::UpHosoku {
                continue;
            }
            for version in VERSIONS {
                for f in layout(kind, version).unwrap_or_default() {
                    assert!(
                        !matches!(
                            f.format,
                            Format::Date { zero_ok: true } | Format::Month { zero_ok: true }
                        ),
                        "{} {}",
                        kind.prefix(),
                        f.name_ja
                    );
                }
            }
        }
    }

    #[test]
    fn code_tables_have_unique_values() {
        let tables: [&CodeTable; 25] = [
            &CARE_LEVEL,
            &SEX,
            &PLAN_CATEGORY,
            &CERTIFICATION_STATUS,
            &LIVING_SUPPORT_REASON,
            &INSURANCE_COVERED,
            &WEEKDAY,
            &OVER_30_DAYS,
            &PLAN_TYPE,
            &OUTSOURCING,
            &CONSULTATION_METHOD,
            &CONSULTATION_COUNT,
            &CURRENT_SITUATION,
            &DISABILITY_INDEPENDENCE,
            &DEMENTIA_INDEPENDENCE,
            &KIHON_CARE_LEVEL,
            &CHECKLIST_RESULT,
            &APPLICABLE,
            &RESIDENCE_TYPE,
            &HOME_MODIFICATION,
            &SUPPORT_LEVEL,
            &ISSUE_PRESENCE,
            &PROGRAM_NEED,
            &ATTENDING_PHYSICIAN,
            &MEDICAL_COURSE,
        ];
        for t in tables {
            assert!(!t.values.is_empty(), "{}", t.name_en);
            for (i, v) in t.values.iter().enumerate() {
                assert!(!t.values[..i].contains(v), "{} {v}", t.name_en);
            }
        }
    }

    #[test]
    fn field_names_are_filled() {
        for kind in FileKind::ALL {
            for version in VERSIONS {
                for f in layout(kind, version).unwrap_or_default() {
                    assert!(!f.name_ja.is_empty() && !f.name_en.is_empty());
                }
            }
        }
    }
}
