//! Plan against actual (予定・実績の突合): a month's サービス利用票 予定 (UPPLAN) compared with the
//! 実績 (UPJSK) of the same users, offices and month.
//!
//! Every month a care-management office checks the service offices' 実績 against its 予定 before
//! it files the 給付管理票; the national relay does no such check. A node sees both files pass,
//! so it can do it whatever care software the office uses. A [`Reconciler`] takes files (name and
//! bytes, read by the caller) and gives a [`Reconciliation`]: per user and office the rows that
//! match, the services planned but not performed, performed but not planned, changed (date, time,
//! count, service code, units) or performed by another office, and the unit totals.
//!
//! How the files are read (SPEC.md §2 and §3.9; the fact sheet's §1.4):
//! - Records are read by the checker ([`crate::check::read_records`]); a record with a finding
//!   of its own is left out and its file is listed with its problems.
//! - 予定 is keyed by (保険者番号, 被保険者番号, 対象年月): for each user the newest stamp's
//!   UPPLAN holds the whole plan (all offices' lines); copies of one send unit sent to several
//!   offices are the same plan and count once. A DLTPLAN removes the plan lines of the office it
//!   was sent to. UPSIKYU (第7表) of the plan's send unit gives a line's 単位数 when the 第6表
//!   leaves it empty.
//! - 実績 is sent per office and サービス種類: the newest stamp's UPJSK from an office and kind
//!   replaces that office and kind's earlier 実績 of the user. A DLTJSK removes them.
//! - In one send unit deletes come before the files they precede (§2.6), so a delete and a
//!   replacement with the same stamp leave the replacement.
//!
//! Rows are paired in rounds, each on what is still unpaired: the same office, service code,
//! day and 明細判別コード (a match, or a change of time, count, 日割対象日 or units); then the
//! same office, kind and day (a changed service code); then the same kind and day at another
//! office (a substitute office); then the same office and code within a week (a changed date).
//! What is left was planned but not performed, or performed but not planned.
//!
//! What it does not do: read files or folders, decide which month to look at, or print. The
//! node does that (`renkei reconcile`). The result serializes (JSON for a status page) and
//! renders as CSV bytes for Excel ([`Reconciliation::to_csv`]).
//!
//! ```
//! use renkei_protocol::reconcile::{Reconciler, Taken};
//! use renkei_protocol::YearMonth;
//! let month = YearMonth::parse("202610", false).unwrap();
//! let mut r = Reconciler::new(month);
//! let row = |office: &str| format!(
//!     "202407,131016,0000123451,20260926,202610,1310000001,,244,,20261005,,0800,0825,1,111111,,,,,{office},,,0,{office},\r\n");
//! let plan = row("1310000011");
//! let taken = r.add_file("UPPLAN_202610_1310000001_43_1310000011_11_20260928103000.CSV", plan.as_bytes());
//! assert_eq!(taken, Ok(Taken::Used));
//! r.add_file("UPJSK_202610_1310000011_11_1310000001_43_20261102090000.CSV", plan.as_bytes()).unwrap();
//! let result = r.finish();
//! assert!(result.all_match());
//! assert_eq!(result.users[0].offices[0].matched, 1);
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

mod export;

pub use export::{CsvEncoding, Lang};

use crate::check::{CheckedRecord, CsvVersion, Finding, layout, read_records};
use crate::name::{FileKind, FileName, NameError, Stamp, YearMonth};

/// How far apart (in days) a cancelled and an extra visit of the same service at the same office
/// may be to be reported as one visit moved to another date.
pub const MOVED_WITHIN_DAYS: u8 = 7;

/// At most this many of a file's check findings are kept in [`InputFile::problems`].
pub const PROBLEMS_KEPT: usize = 5;

/// What [`Reconciler::add_file`] did with a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Taken {
    /// Its records were read.
    Used,
    /// Not a kind the reconciliation reads (only UPPLAN, UPSIKYU, UPJSK, DLTPLAN, DLTJSK and
    /// UPHOSOKU are).
    OtherKind,
    /// Its name's 対象年月 is another month.
    OtherMonth,
    /// A file of the same name was given before (a file kept in both `sent/` and `inbox/`).
    Duplicate,
}

/// Whether the reconciliation reads files of this kind.
pub fn reads_kind(kind: FileKind) -> bool {
    matches!(
        kind,
        FileKind::UpPlan
            | FileKind::UpSikyu
            | FileKind::UpJsk
            | FileKind::DltPlan
            | FileKind::DltJsk
            | FileKind::UpHosoku
    )
}

/// The result of a month's reconciliation. Serializes to JSON for `renkei reconcile --json` and
/// for a status page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reconciliation {
    /// 対象年月, `YYYYMM`.
    pub month: String,
    /// Per partner (service) office: how many users match and differ.
    pub offices: Vec<OfficeSummary>,
    /// Per user, sorted by (保険者番号, 被保険者番号): each office's comparison.
    pub users: Vec<UserResult>,
    /// Every file read, in name order, with its problems.
    pub inputs: Vec<InputFile>,
}

impl Reconciliation {
    /// Whether every user's every office matches and every file was read whole.
    pub fn all_match(&self) -> bool {
        self.users
            .iter()
            .all(|u| u.offices.iter().all(|o| o.status == Status::Match))
            && self.inputs.iter().all(|f| f.problems.is_empty())
    }

    /// How many differences were found, over all users and offices.
    pub fn difference_count(&self) -> usize {
        self.users
            .iter()
            .flat_map(|u| &u.offices)
            .map(|o| o.differences.len())
            .sum()
    }
}

/// One partner office over all users of the month.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfficeSummary {
    /// 事業所番号.
    pub office: String,
    /// 事業所名 as the files give it (empty when none does).
    pub office_name: String,
    /// Users with a plan or an actual at this office.
    pub users: u32,
    /// Users whose plan and actual match.
    pub matching: u32,
    /// Users with differences (a plan without actuals not counted).
    pub differing: u32,
    /// Users planned at this office for whom no 実績 is in.
    pub without_actuals: u32,
    /// Planned 単位数, all users.
    pub planned_units: i64,
    /// Actual 単位数, all users.
    pub actual_units: i64,
}

/// One user: the comparison at each office.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserResult {
    /// 保険者番号 (of the plan; of the actual when there is no plan).
    pub insurer: String,
    /// 被保険者番号.
    pub insured: String,
    /// 利用者氏名 from the month's 利用者補足情報, when one was read.
    pub name: String,
    /// The 保険者番号 of the 実績 when it differs from the plan's (住所地特例: the service office
    /// may correct it), so the two were paired by 被保険者番号 alone.
    pub actual_insurer: Option<String>,
    /// Per office, by office number.
    pub offices: Vec<UserOffice>,
}

/// Whether a user's plan and actual at one office agree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Every row matches and the unit totals agree.
    Match,
    /// Planned here, but no 実績 of this user from this office is in.
    NoActuals,
    /// Performed here, but nothing was planned at this office.
    NoPlan,
    /// Some rows differ.
    Differ,
}

impl Status {
    /// A short label in Japanese.
    pub fn label_ja(self) -> &'static str {
        match self {
            Status::Match => "一致",
            Status::NoActuals => "実績なし",
            Status::NoPlan => "予定なし",
            Status::Differ => "相違あり",
        }
    }

    /// A short label in English.
    pub fn label_en(self) -> &'static str {
        match self {
            Status::Match => "match",
            Status::NoActuals => "no actuals",
            Status::NoPlan => "not planned",
            Status::Differ => "differs",
        }
    }
}

/// One user at one office.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserOffice {
    /// 事業所番号 (the planned office; rows performed by a substitute are listed here).
    pub office: String,
    /// 事業所名 as the files give it.
    pub office_name: String,
    /// The comparison's outcome.
    pub status: Status,
    /// Rows that match.
    pub matched: u32,
    /// Planned 単位数 at this office: 単位数 × サービス回数 over the plan's rows.
    pub planned_units: i64,
    /// Actual 単位数 of this office's own 実績 rows.
    pub actual_units: i64,
    /// Planned サービス回数, summed.
    pub planned_count: u32,
    /// Actual サービス回数, summed.
    pub actual_count: u32,
    /// Whether a row had no 単位数 in the 第6表 nor the 第7表 (counted as 0).
    pub units_missing: bool,
    /// Every difference, by date.
    pub differences: Vec<Difference>,
}

/// One difference between plan and actual.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Difference {
    /// What kind of difference.
    pub kind: DifferenceKind,
    /// For [`DifferenceKind::Changed`]: what changed.
    pub changes: Vec<Change>,
    /// The planned row (several rows merged when the two sides split a day differently).
    pub planned: Option<RowView>,
    /// The actual row.
    pub actual: Option<RowView>,
}

impl Difference {
    /// A short label in Japanese, e.g. 「予定のみ」, 「時刻・回数変更」.
    pub fn label_ja(&self) -> String {
        match self.kind {
            DifferenceKind::NotPerformed => "予定のみ（実績なし）".into(),
            DifferenceKind::NotPlanned => "実績のみ（予定なし）".into(),
            DifferenceKind::Changed => {
                let parts: Vec<&str> = self.changes.iter().map(|c| c.label_ja()).collect();
                format!("{}変更", parts.join("・"))
            }
        }
    }

    /// A short label in English, e.g. "planned, not performed", "changed: time, count".
    pub fn label_en(&self) -> String {
        match self.kind {
            DifferenceKind::NotPerformed => "planned, not performed".into(),
            DifferenceKind::NotPlanned => "performed, not planned".into(),
            DifferenceKind::Changed => {
                let parts: Vec<&str> = self.changes.iter().map(|c| c.label_en()).collect();
                format!("changed: {}", parts.join(", "))
            }
        }
    }

    /// The day of the month the difference is about (the plan's, else the actual's).
    pub fn day(&self) -> u8 {
        self.planned
            .as_ref()
            .or(self.actual.as_ref())
            .map_or(0, |r| r.day)
    }
}

/// The kinds of difference.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DifferenceKind {
    /// Planned, but no 実績 row answers it (a cancelled visit).
    NotPerformed,
    /// In the 実績, but not planned (an extra visit).
    NotPlanned,
    /// Planned and performed, with [`Difference::changes`].
    Changed,
}

/// What changed between a planned row and the actual row paired with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// Performed by another office than planned (サービス事業者コード).
    Office,
    /// サービスコード.
    ServiceCode,
    /// サービス利用日 or 日割対象日.
    Date,
    /// サービス開始時刻 or 終了時刻.
    Time,
    /// サービス回数.
    Count,
    /// 単位数 (same service code).
    Units,
}

impl Change {
    /// Japanese label.
    pub fn label_ja(self) -> &'static str {
        match self {
            Change::Office => "事業所",
            Change::ServiceCode => "サービスコード",
            Change::Date => "日付",
            Change::Time => "時刻",
            Change::Count => "回数",
            Change::Units => "単位数",
        }
    }

    /// English label.
    pub fn label_en(self) -> &'static str {
        match self {
            Change::Office => "office",
            Change::ServiceCode => "service code",
            Change::Date => "date",
            Change::Time => "time",
            Change::Count => "count",
            Change::Units => "units",
        }
    }
}

/// A 第6表 row as shown in a difference.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowView {
    /// サービス事業者コード.
    pub office: String,
    /// サービスコード.
    pub service_code: String,
    /// Day of the month of the サービス利用日.
    pub day: u8,
    /// 日割対象日 (31 × `0`/`1`), when given.
    pub day_mask: Option<String>,
    /// サービス開始時刻 (`HHMM`, `9999` = no time).
    pub start: String,
    /// サービス終了時刻.
    pub end: String,
    /// サービス回数.
    pub count: u32,
    /// 単位数 per time (from the 第7表 when the 第6表 leaves it empty), if known.
    pub units: Option<i64>,
    /// 明細判別コード (福祉用具貸与), when given.
    pub line_code: Option<String>,
    /// The file and line the row comes from (the first row, when several were merged).
    pub file: String,
    /// Line in that file.
    pub line: u64,
    /// How many rows were merged into this one (1 normally).
    pub merged: u32,
}

/// A file that was read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputFile {
    /// The file name.
    pub name: String,
    /// Its kind's prefix (`UPPLAN`, `UPJSK`, …).
    pub kind: String,
    /// Records read and used (records of other months are not used).
    pub records: u64,
    /// Whether some of its rows are in force: not all replaced by newer files or deleted.
    pub in_force: bool,
    /// The first of its check findings (at most [`PROBLEMS_KEPT`]); its records with findings
    /// were left out.
    pub problems: Vec<Finding>,
    /// How many findings the check gave in all.
    pub problem_count: usize,
}

// ---------------------------------------------------------------------------------------------
// Reading

type UserKey = (String, String);

/// The 単位数 the 第7表 of a user's plan gives per item: (サービス事業所コード, サービスコード,
/// TAISコード).
#[derive(Debug, Default)]
struct Table7 {
    units: HashMap<(String, String, String), i64>,
}

impl Table7 {
    /// A row's 単位数 per time: the 第7表's for its item, else the one figure it gives for the
    /// row's office and code, else for its code: none where it gives several (two rentals of one
    /// code at different prices).
    fn lookup(&self, d: &RowData) -> Option<i64> {
        let key = (d.office.clone(), d.code.clone(), d.tais.clone());
        if let Some(u) = self.units.get(&key) {
            return Some(*u);
        }
        let only = |same_office: bool| {
            let mut found = None;
            for ((office, code, _), u) in &self.units {
                if *code != d.code || (same_office && *office != d.office) {
                    continue;
                }
                match found {
                    None => found = Some(*u),
                    Some(f) if f == *u => {}
                    Some(_) => return None,
                }
            }
            found
        };
        only(true).or_else(|| only(false))
    }
}

/// The compared content of a 第6表 row.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct RowData {
    office: String,
    code: String,
    day: u8,
    mask: String,
    start: String,
    end: String,
    count: u32,
    units: Option<i64>,
    line_code: String,
    /// TAISコード (福祉用具; not compared, but used to find the item's units in the 第7表).
    tais: String,
}

impl RowData {
    fn kind(&self) -> &str {
        self.code.get(..2).unwrap_or("")
    }
}

#[derive(Clone, Debug)]
struct Row {
    data: RowData,
    file: usize,
    line: u64,
}

/// One file's effect on one user (or one user's office and kind).
#[derive(Debug)]
struct Event {
    stamp: Stamp,
    order: usize,
    file: usize,
    what: EventKind,
}

#[derive(Debug)]
enum EventKind {
    /// A 第6表 (予定 or 実績) holding these rows of the user.
    Rows(Vec<Row>),
    /// 第7表: (office, service code) → 単位数.
    Units(Table7),
    /// DLTPLAN sent to this office.
    DeletePlan { office: String },
    /// DLTJSK of this office and kind.
    DeleteActual { office: String, kind: String },
}

/// The positions (1-based) of the 第6表 fields the reconciliation reads, by layout version.
#[derive(Clone, Copy)]
struct Table6 {
    units: usize,
    date: usize,
    mask: usize,
    start: usize,
    end: usize,
    count: usize,
    code: usize,
    line_code: usize,
    tais: usize,
    office: usize,
    office_name: usize,
}

/// The position of the field named `name_ja` in a layout; 0 (which reads as empty) if none.
fn position(kind: FileKind, version: CsvVersion, name_ja: &str) -> usize {
    layout(kind, version)
        .and_then(|fields| fields.iter().position(|f| f.name_ja == name_ja))
        .map_or(0, |i| i + 1)
}

impl Table6 {
    fn of(version: CsvVersion) -> Table6 {
        let p = |n| position(FileKind::UpPlan, version, n);
        Table6 {
            units: p("単位数"),
            date: p("サービス利用日"),
            mask: p("日割対象日"),
            start: p("サービス開始時刻"),
            end: p("サービス終了時刻"),
            count: p("サービス回数"),
            code: p("サービスコード"),
            line_code: p("明細判別コード"),
            tais: p("TAISコード"),
            office: p("サービス事業者コード"),
            office_name: p("サービス事業所名"),
        }
    }
}

/// Reads a month's files and reconciles them. See the module documentation.
#[derive(Debug)]
pub struct Reconciler {
    month: YearMonth,
    month_text: String,
    files: Vec<InputFile>,
    names: BTreeSet<String>,
    /// Per user: plan-side events (UPPLAN, UPSIKYU, DLTPLAN).
    plans: HashMap<UserKey, Vec<Event>>,
    /// Per user: actual-side events (UPJSK with its (office, kind) scope, DLTJSK).
    actuals: HashMap<UserKey, Vec<(Scope, Event)>>,
    /// Per user: (stamp, 利用者氏名) of the newest 利用者補足情報.
    names_of_users: HashMap<UserKey, (Stamp, String)>,
    office_names: BTreeMap<String, String>,
}

/// Which 実績 a newer 実績 replaces: the sending office and its サービス種類 (absent in V3 names).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Scope {
    office: String,
    kind: Option<String>,
}

impl Reconciler {
    /// A reconciliation of the month `month` (対象年月).
    pub fn new(month: YearMonth) -> Reconciler {
        Reconciler {
            month,
            month_text: month.to_string(),
            files: Vec::new(),
            names: BTreeSet::new(),
            plans: HashMap::new(),
            actuals: HashMap::new(),
            names_of_users: HashMap::new(),
            office_names: BTreeMap::new(),
        }
    }

    /// Whether [`Reconciler::add_file`] would read a file of this name, so a caller can skip
    /// reading the others.
    pub fn wants(&self, name: &FileName) -> bool {
        reads_kind(name.kind) && name.month == Some(self.month)
    }

    /// Takes one file: its bare name and its bytes. A name that is not a standard-spec name is
    /// an error; a file of another kind or month is left aside. Problems inside the file are
    /// recorded in the result ([`InputFile::problems`]), never an error. Never panics.
    pub fn add_file(&mut self, name: &str, bytes: &[u8]) -> Result<Taken, NameError> {
        let parsed = FileName::parse(name)?;
        if !reads_kind(parsed.kind) {
            return Ok(Taken::OtherKind);
        }
        if parsed.month != Some(self.month) {
            return Ok(Taken::OtherMonth);
        }
        if !self.names.insert(name.to_string()) {
            return Ok(Taken::Duplicate);
        }
        let (report, records) = read_records(name, bytes);
        let file = self.files.len();
        self.files.push(InputFile {
            name: name.to_string(),
            kind: parsed.kind.prefix().to_string(),
            records: 0,
            in_force: false,
            problem_count: report.errors.len(),
            problems: report.errors.into_iter().take(PROBLEMS_KEPT).collect(),
        });
        let used = match parsed.kind {
            FileKind::UpPlan | FileKind::UpJsk => self.read_table6(&parsed, file, &records),
            FileKind::UpSikyu => self.read_table7(&parsed, file, &records),
            FileKind::DltPlan | FileKind::DltJsk => self.read_delete(&parsed, file, &records),
            FileKind::UpHosoku => self.read_hosoku(&parsed, &records),
            _ => 0,
        };
        self.files[file].records = used;
        if parsed.kind == FileKind::UpHosoku {
            self.files[file].in_force = used > 0;
        }
        Ok(Taken::Used)
    }

    fn event(&self, name: &FileName, file: usize, what: EventKind) -> Event {
        Event {
            stamp: name.stamp,
            order: name.kind.unit_order(),
            file,
            what,
        }
    }

    fn read_table6(&mut self, name: &FileName, file: usize, records: &[CheckedRecord]) -> u64 {
        let mut by_user: BTreeMap<UserKey, Vec<Row>> = BTreeMap::new();
        let mut current: Option<(UserKey, Vec<Row>)> = None;
        let mut cached: Option<(String, Table6)> = None;
        let mut used = 0;
        for r in records {
            if r.field(5) != self.month_text {
                continue;
            }
            let version = r.field(1);
            let t = match &cached {
                Some((v, t)) if v == version => *t,
                _ => {
                    let Some(v) = CsvVersion::parse(version) else {
                        continue;
                    };
                    let t = Table6::of(v);
                    cached = Some((version.to_string(), t));
                    t
                }
            };
            let date = r.field(t.date);
            let day = date.get(6..8).and_then(|d| d.parse().ok()).unwrap_or(0);
            let office = r.field(t.office).to_string();
            let office_name = r.field(t.office_name);
            if !office_name.is_empty() && !self.office_names.contains_key(&office) {
                self.office_names
                    .insert(office.clone(), office_name.to_string());
            }
            let data = RowData {
                office,
                code: r.field(t.code).to_string(),
                day,
                mask: r.field(t.mask).to_string(),
                start: r.field(t.start).to_string(),
                end: r.field(t.end).to_string(),
                count: r.field(t.count).parse().unwrap_or(0),
                units: r.field(t.units).parse().ok(),
                line_code: r.field(t.line_code).to_string(),
                tais: r.field(t.tais).to_string(),
            };
            used += 1;
            let row = Row {
                data,
                file,
                line: r.line(),
            };
            // A file lists a user's rows together as a rule: the user's group is kept at hand.
            match &mut current {
                Some(((insurer, insured), rows))
                    if insurer == r.field(2) && insured == r.field(3) =>
                {
                    rows.push(row)
                }
                _ => {
                    if let Some((user, rows)) = current.take() {
                        by_user.entry(user).or_default().extend(rows);
                    }
                    current = Some(((r.field(2).to_string(), r.field(3).to_string()), vec![row]));
                }
            }
        }
        if let Some((user, rows)) = current.take() {
            by_user.entry(user).or_default().extend(rows);
        }
        for (user, rows) in by_user {
            let ev = self.event(name, file, EventKind::Rows(rows));
            if name.kind == FileKind::UpPlan {
                self.plans.entry(user).or_default().push(ev);
            } else {
                let scope = Scope {
                    office: name.from.office.as_str().to_string(),
                    kind: name.from.kind.map(|k| k.as_str().to_string()),
                };
                self.actuals.entry(user).or_default().push((scope, ev));
            }
        }
        used
    }

    fn read_table7(&mut self, name: &FileName, file: usize, records: &[CheckedRecord]) -> u64 {
        let mut by_user: BTreeMap<UserKey, Table7> = BTreeMap::new();
        let mut cached: Option<(String, [usize; 4])> = None;
        let mut used = 0;
        for r in records {
            if r.field(5) != self.month_text {
                continue;
            }
            let version = r.field(1);
            let [office, code_at, tais, units_at] = match &cached {
                Some((v, p)) if v == version => *p,
                _ => {
                    let Some(v) = CsvVersion::parse(version) else {
                        continue;
                    };
                    let p = |n| position(FileKind::UpSikyu, v, n);
                    let at = [
                        p("サービス事業所コード"),
                        p("サービスコード"),
                        p("TAISコード"),
                        p("単位数"),
                    ];
                    cached = Some((version.to_string(), at));
                    at
                }
            };
            let code = r.field(code_at);
            // Subtotal (`11AAAA`) and total (`999999`) rows carry no per-code units.
            if code.ends_with("AAAA") || code == "999999" {
                continue;
            }
            let Ok(units) = r.field(units_at).parse::<i64>() else {
                continue;
            };
            used += 1;
            by_user
                .entry((r.field(2).to_string(), r.field(3).to_string()))
                .or_default()
                .units
                .insert(
                    (
                        r.field(office).to_string(),
                        code.to_string(),
                        r.field(tais).to_string(),
                    ),
                    units,
                );
        }
        for (user, units) in by_user {
            let ev = self.event(name, file, EventKind::Units(units));
            self.plans.entry(user).or_default().push(ev);
        }
        used
    }

    fn read_delete(&mut self, name: &FileName, file: usize, records: &[CheckedRecord]) -> u64 {
        let mut used = 0;
        for r in records {
            if r.field(4) != self.month_text {
                continue;
            }
            used += 1;
            let user = (r.field(2).to_string(), r.field(3).to_string());
            if name.kind == FileKind::DltPlan {
                let what = EventKind::DeletePlan {
                    office: name.to.office.as_str().to_string(),
                };
                let ev = self.event(name, file, what);
                self.plans.entry(user).or_default().push(ev);
            } else {
                let office = r.field(5).to_string();
                let kind = r.field(6).to_string();
                let scope = Scope {
                    office: office.clone(),
                    kind: Some(kind.clone()),
                };
                let ev = self.event(name, file, EventKind::DeleteActual { office, kind });
                self.actuals.entry(user).or_default().push((scope, ev));
            }
        }
        used
    }

    fn read_hosoku(&mut self, name: &FileName, records: &[CheckedRecord]) -> u64 {
        let mut used = 0;
        for r in records {
            if r.field(63) != self.month_text {
                continue;
            }
            let Some(v) = CsvVersion::parse(r.field(1)) else {
                continue;
            };
            let person = r.field(position(FileKind::UpHosoku, v, "利用者氏名"));
            used += 1;
            let user = (r.field(2).to_string(), r.field(3).to_string());
            let newer = self
                .names_of_users
                .get(&user)
                .is_none_or(|(s, _)| *s <= name.stamp);
            if newer && !person.is_empty() {
                self.names_of_users
                    .insert(user, (name.stamp, person.to_string()));
            }
        }
        used
    }

    /// Applies the newer-replaces-older and delete rules, pairs the rows and gives the result.
    pub fn finish(mut self) -> Reconciliation {
        let mut in_force = vec![false; self.files.len()];
        let mut plans: BTreeMap<UserKey, (Vec<Row>, Table7)> = BTreeMap::new();
        for (user, events) in std::mem::take(&mut self.plans) {
            let (rows, units) = replay_plan(events, &mut in_force);
            plans.insert(user, (rows, units));
        }
        let mut actuals: BTreeMap<UserKey, Vec<Row>> = BTreeMap::new();
        for (user, events) in std::mem::take(&mut self.actuals) {
            actuals.insert(user, replay_actual(events, &mut in_force));
        }
        for (f, used) in self.files.iter_mut().zip(&in_force) {
            f.in_force |= *used;
        }

        // Users planned under one 保険者番号 and performed under another (住所地特例) are paired
        // by 被保険者番号 when that pairing is the only one possible.
        let mut moved_insurer: HashMap<UserKey, String> = HashMap::new();
        let plan_only: Vec<UserKey> = plans
            .iter()
            .filter(|(u, (rows, _))| !rows.is_empty() && actuals.get(*u).is_none_or(Vec::is_empty))
            .map(|(u, _)| u.clone())
            .collect();
        for user in plan_only {
            let candidates: Vec<UserKey> = actuals
                .iter()
                .filter(|(u, rows)| {
                    u.1 == user.1
                        && u.0 != user.0
                        && !rows.is_empty()
                        && plans.get(*u).is_none_or(|(p, _)| p.is_empty())
                })
                .map(|(u, _)| u.clone())
                .collect();
            let same_insured_plans = plans
                .iter()
                .filter(|(u, (p, _))| u.1 == user.1 && !p.is_empty())
                .count();
            if let [other] = candidates.as_slice()
                && same_insured_plans == 1
                && let Some(rows) = actuals.remove(other)
            {
                moved_insurer.insert(user.clone(), other.0.clone());
                actuals.insert(user, rows);
            }
        }

        let mut users_keys: BTreeSet<UserKey> = plans.keys().cloned().collect();
        users_keys.extend(actuals.keys().cloned());
        let mut users = Vec::new();
        for user in users_keys {
            let (plan_rows, units) = plans
                .remove(&user)
                .unwrap_or_else(|| (Vec::new(), Table7::default()));
            let actual_rows = actuals.remove(&user).unwrap_or_default();
            if plan_rows.is_empty() && actual_rows.is_empty() {
                continue;
            }
            let offices = compare_user(
                plan_rows,
                actual_rows,
                &units,
                &self.files,
                &self.office_names,
            );
            users.push(UserResult {
                name: self
                    .names_of_users
                    .get(&user)
                    .map(|(_, n)| n.clone())
                    .unwrap_or_default(),
                actual_insurer: moved_insurer.get(&user).cloned(),
                insurer: user.0,
                insured: user.1,
                offices,
            });
        }

        let mut summaries: BTreeMap<String, OfficeSummary> = BTreeMap::new();
        for uo in users.iter().flat_map(|u| &u.offices) {
            let s = summaries
                .entry(uo.office.clone())
                .or_insert_with(|| OfficeSummary {
                    office: uo.office.clone(),
                    office_name: uo.office_name.clone(),
                    users: 0,
                    matching: 0,
                    differing: 0,
                    without_actuals: 0,
                    planned_units: 0,
                    actual_units: 0,
                });
            s.users += 1;
            match uo.status {
                Status::Match => s.matching += 1,
                Status::NoActuals => s.without_actuals += 1,
                Status::NoPlan | Status::Differ => s.differing += 1,
            }
            s.planned_units += uo.planned_units;
            s.actual_units += uo.actual_units;
        }
        self.files.sort_by(|a, b| a.name.cmp(&b.name));
        Reconciliation {
            month: self.month_text,
            offices: summaries.into_values().collect(),
            users,
            inputs: self.files,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Newer replaces older

/// Sorts a user's events into the order the standard applies them: by stamp, and within one
/// send unit deletes first (§2.6).
fn sort_events(events: &mut [Event]) {
    events.sort_by_key(|e| (e.stamp, e.order, e.file));
}

/// Rows of `b` added to `a` where `b` holds more copies of the same row: copies of one send
/// unit sent to several offices hold the same plan, and each may hold only part of it.
fn union_rows(a: &mut Vec<Row>, b: Vec<Row>) {
    let mut have: HashMap<&RowData, usize> = HashMap::new();
    for r in a.iter() {
        *have.entry(&r.data).or_default() += 1;
    }
    let mut more = Vec::new();
    for r in b {
        match have.get_mut(&r.data) {
            Some(n) if *n > 0 => *n -= 1,
            _ => more.push(r),
        }
    }
    a.extend(more);
}

/// The plan in force for one user, and the 第7表 units of its send unit.
fn replay_plan(mut events: Vec<Event>, in_force: &mut [bool]) -> (Vec<Row>, Table7) {
    sort_events(&mut events);
    let mut rows: Vec<Row> = Vec::new();
    let mut rows_stamp: Option<Stamp> = None;
    let mut files: Vec<usize> = Vec::new();
    let mut units: Vec<(Stamp, usize, Table7)> = Vec::new();
    for ev in events {
        match ev.what {
            EventKind::Rows(new) => {
                if rows_stamp == Some(ev.stamp) {
                    union_rows(&mut rows, new);
                } else {
                    rows = new;
                    rows_stamp = Some(ev.stamp);
                    files.clear();
                }
                files.push(ev.file);
            }
            EventKind::DeletePlan { office } => {
                in_force[ev.file] = true;
                rows.retain(|r| r.data.office != office);
            }
            EventKind::Units(u) => units.push((ev.stamp, ev.file, u)),
            EventKind::DeleteActual { .. } => {}
        }
    }
    if !rows.is_empty() {
        for f in files {
            in_force[f] = true;
        }
    }
    // The 第7表 of the plan's send unit (all copies of it).
    let mut table7 = Table7::default();
    for (stamp, file, u) in units {
        if Some(stamp) == rows_stamp && !rows.is_empty() {
            in_force[file] = true;
            table7.units.extend(u.units);
        }
    }
    (rows, table7)
}

/// The 実績 in force for one user: per (office, kind), the newest.
fn replay_actual(events: Vec<(Scope, Event)>, in_force: &mut [bool]) -> Vec<Row> {
    let mut scopes: Vec<Scope> = Vec::with_capacity(events.len());
    let mut evs: Vec<Event> = Vec::with_capacity(events.len());
    for (s, e) in events {
        scopes.push(s);
        evs.push(e);
    }
    let mut order: Vec<usize> = (0..evs.len()).collect();
    order.sort_by(|&a, &b| {
        (evs[a].stamp, evs[a].order, evs[a].file).cmp(&(evs[b].stamp, evs[b].order, evs[b].file))
    });
    let mut state: BTreeMap<(String, Option<String>), (Stamp, Vec<Row>)> = BTreeMap::new();
    let mut slots: Vec<Option<Event>> = evs.into_iter().map(Some).collect();
    for i in order {
        let Some(ev) = slots[i].take() else { continue };
        let scope = &scopes[i];
        match ev.what {
            EventKind::Rows(new) => {
                let key = (scope.office.clone(), scope.kind.clone());
                match state.get_mut(&key) {
                    Some((stamp, rows)) if *stamp == ev.stamp => union_rows(rows, new),
                    _ => {
                        state.insert(key, (ev.stamp, new));
                    }
                }
            }
            EventKind::DeleteActual { office, kind } => {
                in_force[ev.file] = true;
                for ((o, k), (_, rows)) in state.iter_mut() {
                    if *o != office {
                        continue;
                    }
                    match k {
                        Some(k) if *k == kind => rows.clear(),
                        Some(_) => {}
                        // A V3 name carries no kind: the rows of that kind go.
                        None => rows.retain(|r| r.data.kind() != kind),
                    }
                }
            }
            EventKind::DeletePlan { .. } | EventKind::Units(_) => {}
        }
    }
    let rows: Vec<Row> = state.into_values().flat_map(|(_, rows)| rows).collect();
    for r in &rows {
        in_force[r.file] = true;
    }
    rows
}

// ---------------------------------------------------------------------------------------------
// Pairing

/// A pairing of planned and actual rows (indices), after the rounds.
struct Pairing {
    planned: Vec<usize>,
    actual: Vec<usize>,
}

fn time_minutes(t: &str) -> Option<i32> {
    let b = t.as_bytes();
    if t == "9999" || b.len() != 4 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(i32::from(b[0] - b'0') * 600 + i32::from(b[1] - b'0') * 60 + t[2..].parse::<i32>().ok()?)
}

/// How far apart two rows' start times are, in minutes (no time shown counts as far).
fn start_distance(a: &RowData, b: &RowData) -> i32 {
    match (time_minutes(&a.start), time_minutes(&b.start)) {
        (Some(x), Some(y)) => (x - y).abs(),
        (None, None) => 0,
        _ => 24 * 60,
    }
}

fn common_prefix(a: &str, b: &str) -> usize {
    a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count()
}

/// Whether two rows agree on everything compared.
fn same(a: &RowData, b: &RowData) -> bool {
    a == b
}

/// The rows of one user being paired: which are still free, and the pairings so far.
struct Board<'a> {
    plan: &'a [Row],
    actual: &'a [Row],
    free_p: Vec<bool>,
    free_a: Vec<bool>,
    pairs: Vec<Pairing>,
}

impl<'a> Board<'a> {
    fn new(plan: &'a [Row], actual: &'a [Row]) -> Board<'a> {
        Board {
            plan,
            actual,
            free_p: vec![true; plan.len()],
            free_a: vec![true; actual.len()],
            pairs: Vec::new(),
        }
    }

    /// Free rows of each side grouped by `key`; only groups with rows on both sides.
    fn groups<K: std::hash::Hash + Eq>(
        &self,
        key: impl Fn(&'a RowData) -> K,
    ) -> Vec<(Vec<usize>, Vec<usize>)> {
        let mut groups: HashMap<K, (Vec<usize>, Vec<usize>)> = HashMap::new();
        for (i, r) in self.plan.iter().enumerate() {
            if self.free_p[i] {
                groups.entry(key(&r.data)).or_default().0.push(i);
            }
        }
        for (i, r) in self.actual.iter().enumerate() {
            if self.free_a[i]
                && let Some(g) = groups.get_mut(&key(&r.data))
            {
                g.1.push(i);
            }
        }
        let mut groups: Vec<_> = groups
            .into_values()
            .filter(|(p, a)| !p.is_empty() && !a.is_empty())
            .collect();
        // HashMap order is arbitrary: the pairing must not be.
        groups.sort();
        groups
    }

    fn take(&mut self, planned: Vec<usize>, actual: Vec<usize>) {
        for &p in &planned {
            self.free_p[p] = false;
        }
        for &a in &actual {
            self.free_a[a] = false;
        }
        self.pairs.push(Pairing { planned, actual });
    }

    /// Pairs free rows whose `key`s are equal, greedily by `cost` (lowest first), only where
    /// `allowed`.
    fn round<K: std::hash::Hash + Eq>(
        &mut self,
        key: impl Fn(&'a RowData) -> K,
        allowed: impl Fn(&RowData, &RowData) -> bool,
        cost: impl Fn(&RowData, &RowData) -> (i32, i32, i32),
    ) {
        let mut found: Vec<((i32, i32, i32), usize, usize)> = Vec::new();
        for (ps, as_) in self.groups(key) {
            found.clear();
            for &p in &ps {
                for &a in &as_ {
                    let (dp, da) = (&self.plan[p].data, &self.actual[a].data);
                    if allowed(dp, da) {
                        found.push((cost(dp, da), p, a));
                    }
                }
            }
            found.sort();
            for &(_, p, a) in &found {
                if self.free_p[p] && self.free_a[a] {
                    self.take(vec![p], vec![a]);
                }
            }
        }
    }

    /// Rows of one day, office and code that the two sides split differently (two visits of
    /// サービス回数 1 against one of 2): paired as a whole when the merged rows agree.
    fn split_days(&mut self) {
        fn key(d: &RowData) -> (&str, &str, u8, &str) {
            (&d.office, &d.code, d.day, &d.line_code)
        }
        for (ps, as_) in self.groups(key) {
            if ps.len() == as_.len() {
                continue;
            }
            let mp = merged(self.plan, &ps);
            let ma = merged(self.actual, &as_);
            if (mp.count, &mp.start, &mp.end, mp.units) == (ma.count, &ma.start, &ma.end, ma.units)
            {
                self.take(ps, as_);
            }
        }
    }
}

/// The rows of one side of a pairing as one: none, the row itself, or several merged.
fn side_of<'a>(rows: &'a [Row], idx: &[usize]) -> Option<std::borrow::Cow<'a, RowData>> {
    match idx {
        [] => None,
        [i] => Some(std::borrow::Cow::Borrowed(&rows[*i].data)),
        many => Some(std::borrow::Cow::Owned(merged(rows, many))),
    }
}

/// Several rows of one day, office and code as one: counts summed, the earliest start and the
/// latest end, the units per time of the first.
fn merged(rows: &[Row], idx: &[usize]) -> RowData {
    let mut d = rows[idx[0]].data.clone();
    for &i in &idx[1..] {
        let r = &rows[i].data;
        d.count += r.count;
        if time_minutes(&r.start).is_some()
            && (time_minutes(&d.start).is_none() || r.start < d.start)
        {
            d.start = r.start.clone();
        }
        if time_minutes(&r.end).is_some() && (time_minutes(&d.end).is_none() || r.end > d.end) {
            d.end = r.end.clone();
        }
    }
    d
}

fn changes_between(p: &RowData, a: &RowData) -> Vec<Change> {
    let mut c = Vec::new();
    if p.office != a.office {
        c.push(Change::Office);
    }
    if p.code != a.code {
        c.push(Change::ServiceCode);
    }
    if p.day != a.day || p.mask != a.mask {
        c.push(Change::Date);
    }
    if p.start != a.start || p.end != a.end {
        c.push(Change::Time);
    }
    if p.count != a.count {
        c.push(Change::Count);
    }
    if p.code == a.code && p.units != a.units {
        c.push(Change::Units);
    }
    c
}

fn view(d: &RowData, row: &Row, merged_rows: u32, files: &[InputFile]) -> RowView {
    RowView {
        office: d.office.clone(),
        service_code: d.code.clone(),
        day: d.day,
        day_mask: (!d.mask.is_empty()).then(|| d.mask.clone()),
        start: d.start.clone(),
        end: d.end.clone(),
        count: d.count,
        units: d.units,
        line_code: (!d.line_code.is_empty()).then(|| d.line_code.clone()),
        file: files
            .get(row.file)
            .map(|f| f.name.clone())
            .unwrap_or_default(),
        line: row.line,
        merged: merged_rows,
    }
}

/// Compares one user's plan and actual rows, office by office.
fn compare_user(
    mut plan: Vec<Row>,
    mut actual: Vec<Row>,
    table7: &Table7,
    files: &[InputFile],
    office_names: &BTreeMap<String, String>,
) -> Vec<UserOffice> {
    // Units filled in from the 第7表 where the 第6表 leaves them empty, so both sides compare
    // the same figures.
    for r in plan.iter_mut().chain(actual.iter_mut()) {
        if r.data.units.is_none() {
            r.data.units = table7.lookup(&r.data);
        }
    }
    let mut b = Board::new(&plan, &actual);
    // Round 1: same office, code, day and 明細判別コード. Identical rows first, then rows split
    // differently over the day, then the nearest start time.
    fn key1(d: &RowData) -> (&str, &str, u8, &str) {
        (&d.office, &d.code, d.day, &d.line_code)
    }
    b.round(key1, same, |_, _| (0, 0, 0));
    b.split_days();
    b.round(
        key1,
        |_, _| true,
        |p, a| (start_distance(p, a), i32::from(p.end != a.end), 0),
    );
    // Round 2: same office, kind and day; another service code.
    b.round(
        |d| (d.office.as_str(), d.kind(), d.day),
        |_, _| true,
        |p, a| {
            (
                start_distance(p, a),
                -(common_prefix(&p.code, &a.code) as i32),
                0,
            )
        },
    );
    // Round 3: same kind and day at another office: a substitute.
    b.round(
        |d| (d.kind(), d.day),
        |p, a| p.office != a.office,
        |p, a| {
            (
                i32::from(p.code != a.code),
                start_distance(p, a),
                -(common_prefix(&p.code, &a.code) as i32),
            )
        },
    );
    // Round 4: same office, code and 明細判別コード on another day, within a week (a rental's
    // changed start day at any distance).
    b.round(
        |d| (d.office.as_str(), d.code.as_str(), d.line_code.as_str()),
        |p, a| {
            p.day.abs_diff(a.day) <= MOVED_WITHIN_DAYS || !p.mask.is_empty() || !a.mask.is_empty()
        },
        |p, a| (i32::from(p.day.abs_diff(a.day)), start_distance(p, a), 0),
    );
    let Board {
        free_p,
        free_a,
        mut pairs,
        ..
    } = b;
    for (i, _) in free_p.iter().enumerate().filter(|(_, f)| **f) {
        pairs.push(Pairing {
            planned: vec![i],
            actual: vec![],
        });
    }
    for (i, _) in free_a.iter().enumerate().filter(|(_, f)| **f) {
        pairs.push(Pairing {
            planned: vec![],
            actual: vec![i],
        });
    }

    let mut offices: BTreeMap<String, UserOffice> = BTreeMap::new();
    let entry = |offices: &mut BTreeMap<String, UserOffice>, office: &str| {
        if !offices.contains_key(office) {
            offices.insert(
                office.to_string(),
                UserOffice {
                    office: office.to_string(),
                    office_name: office_names.get(office).cloned().unwrap_or_default(),
                    status: Status::Match,
                    matched: 0,
                    planned_units: 0,
                    actual_units: 0,
                    planned_count: 0,
                    actual_count: 0,
                    units_missing: false,
                    differences: Vec::new(),
                },
            );
        }
    };
    for r in &plan {
        entry(&mut offices, &r.data.office);
        if let Some(o) = offices.get_mut(&r.data.office) {
            o.planned_units += r.data.units.unwrap_or(0) * i64::from(r.data.count);
            o.planned_count += r.data.count;
            o.units_missing |= r.data.units.is_none();
        }
    }
    for r in &actual {
        entry(&mut offices, &r.data.office);
        if let Some(o) = offices.get_mut(&r.data.office) {
            o.actual_units += r.data.units.unwrap_or(0) * i64::from(r.data.count);
            o.actual_count += r.data.count;
            o.units_missing |= r.data.units.is_none();
        }
    }
    for pairing in pairs {
        let p = side_of(&plan, &pairing.planned);
        let a = side_of(&actual, &pairing.actual);
        let Some(office) = p.as_deref().or(a.as_deref()).map(|d| d.office.as_str()) else {
            continue;
        };
        let Some(o) = offices.get_mut(office) else {
            continue;
        };
        let (kind, changes) = match (&p, &a) {
            (Some(p), Some(a)) => {
                // Rows split differently over a day are paired only when they agree merged.
                let changes = if pairing.planned.len() == pairing.actual.len() {
                    changes_between(p, a)
                } else {
                    Vec::new()
                };
                if changes.is_empty() {
                    o.matched += pairing.planned.len().max(pairing.actual.len()) as u32;
                    continue;
                }
                (DifferenceKind::Changed, changes)
            }
            (Some(_), None) => (DifferenceKind::NotPerformed, Vec::new()),
            (None, Some(_)) => (DifferenceKind::NotPlanned, Vec::new()),
            (None, None) => continue,
        };
        let planned = p.as_deref().map(|d| {
            view(
                d,
                &plan[pairing.planned[0]],
                pairing.planned.len() as u32,
                files,
            )
        });
        let actual_view = a.as_deref().map(|d| {
            view(
                d,
                &actual[pairing.actual[0]],
                pairing.actual.len() as u32,
                files,
            )
        });
        let diff = Difference {
            kind,
            changes,
            planned,
            actual: actual_view,
        };
        o.differences.push(diff);
    }
    for o in offices.values_mut() {
        o.differences.sort_by(|a, b| {
            let key = |d: &Difference| {
                let r = d.planned.as_ref().or(d.actual.as_ref());
                (
                    d.day(),
                    r.map(|r| r.start.clone()).unwrap_or_default(),
                    r.map(|r| r.service_code.clone()).unwrap_or_default(),
                )
            };
            key(a).cmp(&key(b))
        });
        let only = |k: DifferenceKind| o.differences.iter().all(|d| d.kind == k);
        o.status = if o.differences.is_empty() && o.planned_units == o.actual_units {
            Status::Match
        } else if o.matched == 0 && o.actual_count == 0 && only(DifferenceKind::NotPerformed) {
            Status::NoActuals
        } else if o.matched == 0 && o.planned_count == 0 && only(DifferenceKind::NotPlanned) {
            Status::NoPlan
        } else {
            Status::Differ
        };
    }
    offices.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fields_read_are_found_in_every_layout() {
        for v in [
            CsvVersion::V202208,
            CsvVersion::V202407,
            CsvVersion::V202504,
        ] {
            let t = Table6::of(v);
            let found = [
                t.units,
                t.date,
                t.mask,
                t.start,
                t.end,
                t.count,
                t.code,
                t.line_code,
                t.office,
                t.office_name,
            ];
            assert!(found.iter().all(|p| *p > 0), "{v:?}");
            assert_eq!((t.date, t.code), (10, 15));
            // V3 has no TAIS code; V4 moves the office from 17 to 20.
            assert_eq!(
                (t.tais, t.office),
                if v.is_v4() { (16, 20) } else { (0, 17) }
            );
            for name in ["サービス事業所コード", "サービスコード", "単位数"] {
                assert!(position(FileKind::UpSikyu, v, name) > 0);
            }
            assert_eq!(position(FileKind::UpHosoku, v, "利用者氏名"), 6);
        }
    }

    fn row(office: &str, code: &str, tais: &str) -> RowData {
        RowData {
            office: office.into(),
            code: code.into(),
            day: 1,
            mask: String::new(),
            start: "9999".into(),
            end: "9999".into(),
            count: 1,
            units: None,
            line_code: String::new(),
            tais: tais.into(),
        }
    }

    #[test]
    fn the_seventh_table_gives_units_only_where_it_gives_one_figure() {
        let mut t = Table7::default();
        let mut put = |o: &str, c: &str, tais: &str, u| {
            t.units.insert((o.into(), c.into(), tais.into()), u);
        };
        put("1310000031", "171004", "A", 150);
        put("1310000031", "171004", "B", 50);
        put("1310000011", "111111", "", 244);
        assert_eq!(t.lookup(&row("1310000031", "171004", "A")), Some(150));
        assert_eq!(t.lookup(&row("1310000031", "171004", "B")), Some(50));
        // Which of the two? Not guessed.
        assert_eq!(t.lookup(&row("1310000031", "171004", "")), None);
        // Another office's row of the same code (a substitute): the code's one figure.
        assert_eq!(t.lookup(&row("1310000012", "111111", "")), Some(244));
        assert_eq!(t.lookup(&row("1310000011", "111211", "")), None);
    }

    #[test]
    fn times_compare_in_minutes() {
        assert_eq!(time_minutes("0930"), Some(570));
        assert_eq!(time_minutes("9999"), None);
        assert_eq!(time_minutes("12a4"), None);
        let (a, b) = (row("1", "111111", ""), row("1", "111111", ""));
        assert_eq!(start_distance(&a, &b), 0);
    }
}
