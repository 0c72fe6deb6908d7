//! `renkei reconcile`: a month's 予定 against its 実績 (予定・実績の突合), from an office's `sent/`
//! and `inbox/` or from files and folders named on the command line.
//!
//! The comparison itself is `renkei_protocol::reconcile`; this module finds and reads the
//! files, prints the table (Japanese, or English with `--english`), writes the CSV for Excel
//! and gives the exit status: 0 all match, 1 differences found, 2 a usage error or a file that
//! could not be read.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use renkei_protocol::reconcile::{
    CsvEncoding, Difference, DifferenceKind, Lang, Reconciler, Reconciliation, RowView, Status,
    UserOffice, reads_kind,
};
use renkei_protocol::{FileKind, FileName, YearMonth, shown};

use crate::files::open_regular;
use crate::home::Home;

/// What `renkei reconcile` was asked to do.
#[derive(Debug, Default)]
pub struct Options {
    /// The office's home: its `sent/` and `inbox/` are read.
    pub home: Option<PathBuf>,
    /// 対象年月 `YYYYMM`; found from the files when they hold one month only.
    pub month: Option<String>,
    /// Print the result as JSON.
    pub json: bool,
    /// Write the result as CSV here.
    pub csv: Option<PathBuf>,
    /// Write the CSV in UTF-8 with a byte-order mark instead of CP932.
    pub csv_utf8: bool,
    /// English instead of Japanese.
    pub english: bool,
    /// List the matching users and offices too.
    pub all: bool,
    /// Files and folders to read (besides the home's).
    pub paths: Vec<PathBuf>,
}

/// A file found for the reconciliation: where it is and its parsed name.
struct Found {
    path: PathBuf,
    name: String,
    parsed: FileName,
}

/// Runs `renkei reconcile`.
pub fn command(opts: Options) -> anyhow::Result<ExitCode> {
    let result = reconcile(opts.home.as_deref(), opts.month.as_deref(), &opts.paths)?;
    let lang = if opts.english { Lang::En } else { Lang::Ja };
    if let Some(out) = &opts.csv {
        let encoding = if opts.csv_utf8 {
            CsvEncoding::Utf8Bom
        } else {
            CsvEncoding::Cp932
        };
        crate::files::write_atomic(out, &result.to_csv(lang, encoding), false).map_err(
            |e| {
                anyhow::anyhow!(
                    "CSV ファイル {} を書けません。フォルダと権限を確かめてください。/ Cannot write the CSV file {}: check the folder and permissions. ({e:#})",
                    out.display(),
                    out.display()
                )
            },
        )?;
    }
    if opts.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        print!("{}", render(&result, lang, opts.all));
    }
    Ok(if result.all_match() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Reconciles a month from an office's home (its `sent/` and `inbox/`) and the files and folders
/// in `paths`: what `renkei reconcile` prints, and what a status page would show. `month`
/// (`YYYYMM`) may be left out when the files hold one month only. An error (in Japanese and
/// English, saying what to do) when there is nothing to read, the month is not clear or a file
/// cannot be read.
pub fn reconcile(
    home: Option<&Path>,
    month: Option<&str>,
    paths: &[PathBuf],
) -> anyhow::Result<Reconciliation> {
    let found = find_files(home, paths)?;
    let month = choose_month(month, &found)?;
    let mut r = Reconciler::new(month);
    let mut wanted = 0;
    for f in &found {
        if !r.wants(&f.parsed) {
            continue;
        }
        let bytes = read_file(&f.path)?;
        r.add_file(&f.name, &bytes)
            .with_context(|| format!("{}", f.path.display()))?;
        if f.parsed.kind != FileKind::UpHosoku {
            wanted += 1;
        }
    }
    if wanted == 0 {
        bail!(
            "{month} の予定・実績ファイル（UPPLAN・UPJSK）が見つかりません。対象年月を確かめてください。介護ソフトが取り込んだファイルを inbox/ から移している場合は、そのフォルダも指定してください（renkei reconcile --home H --month {month} フォルダ）。/ No plan or actual files (UPPLAN, UPJSK) for {month} were found: check the month. If your care software moves imported files out of inbox/, name that folder too (renkei reconcile --home H --month {month} FOLDER)."
        );
    }
    Ok(r.finish())
}

/// The files of the home's `sent/` and `inbox/` and of the paths given, by name (a name seen
/// twice is read once).
fn find_files(home: Option<&Path>, paths: &[PathBuf]) -> anyhow::Result<Vec<Found>> {
    if home.is_none() && paths.is_empty() {
        bail!(
            "読むファイルがありません。--home でホームフォルダを、または予定・実績のファイルかフォルダを指定してください（renkei reconcile --help）。/ Nothing to read: give the home folder with --home, or plan and actual files or folders (renkei reconcile --help)."
        );
    }
    let mut found = Vec::new();
    if let Some(home) = home {
        let home = Home::existing(home)?;
        for dir in [home.sent(), home.inbox()] {
            if dir.is_dir() {
                scan_folder(&dir, &mut found)?;
            }
        }
    }
    for p in paths {
        if p.is_dir() {
            scan_folder(p, &mut found)?;
            continue;
        }
        if std::fs::symlink_metadata(p).is_err() {
            bail!(
                "{} がありません。ファイルやフォルダの名前を確かめてください。/ {} does not exist: check the file or folder name.",
                shown(&p.display().to_string()),
                shown(&p.display().to_string())
            );
        }
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        match FileName::parse(name) {
            Ok(parsed) => found.push(Found {
                path: p.clone(),
                name: name.to_string(),
                parsed,
            }),
            Err(e) => bail!(
                "{} は標準仕様のファイル名ではありません（{e}）。UPPLAN_… や UPJSK_… の名前のまま指定してください。/ {} is not a standard-spec file name ({e}): give the files under their UPPLAN_… / UPJSK_… names.",
                shown(&p.display().to_string()),
                shown(&p.display().to_string())
            ),
        }
    }
    let mut seen = BTreeSet::new();
    found.retain(|f| seen.insert(f.name.clone()));
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

/// The files of one folder with standard-spec names; anything else is passed over.
fn scan_folder(dir: &Path, found: &mut Vec<Found>) -> anyhow::Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        anyhow::anyhow!(
            "フォルダ {} を読めません。パスと権限を確かめてください。/ Cannot read the folder {}: check the path and permissions. ({e})",
            dir.display(),
            dir.display()
        )
    })?;
    for entry in entries.flatten() {
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if let Ok(parsed) = FileName::parse(&name) {
            found.push(Found {
                path: entry.path(),
                name,
                parsed,
            });
        }
    }
    Ok(())
}

/// The month asked for, or the only month the plan and actual files hold.
fn choose_month(month: Option<&str>, found: &[Found]) -> anyhow::Result<YearMonth> {
    if let Some(m) = month {
        return YearMonth::parse(m, false).ok_or_else(|| {
            anyhow::anyhow!(
                "--month {} は対象年月ではありません。YYYYMM の形で指定してください（例: 202610）。/ --month {} is not a month: write it as YYYYMM (e.g. 202610).",
                shown(m),
                shown(m)
            )
        });
    }
    let months: BTreeSet<YearMonth> = found
        .iter()
        .filter(|f| reads_kind(f.parsed.kind) && f.parsed.kind != FileKind::UpHosoku)
        .filter_map(|f| f.parsed.month)
        .filter(|m| !m.is_placeholder())
        .collect();
    match months.iter().collect::<Vec<_>>().as_slice() {
        [month] => Ok(**month),
        [] => bail!(
            "予定・実績ファイル（UPPLAN・UPJSK）が見つかりません。フォルダやファイルを確かめてください。/ No plan or actual files (UPPLAN, UPJSK) were found: check the folders and files given."
        ),
        several => {
            let list: Vec<String> = several.iter().map(|m| m.to_string()).collect();
            bail!(
                "複数の対象年月のファイルがあります（{}）。--month YYYYMM で一つ選んでください。/ The files are of several months ({}): choose one with --month YYYYMM.",
                list.join(", "),
                list.join(", ")
            )
        }
    }
}

fn read_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    open_regular(path)
        .map_err(anyhow::Error::from)
        .and_then(|mut f| f.read_to_end(&mut bytes).map_err(anyhow::Error::from))
        .map_err(|e| {
            anyhow::anyhow!(
                "ファイル {} を読めません。ファイルと権限を確かめてください。/ Cannot read {}: check the file and its permissions. ({e})",
                path.display(),
                path.display()
            )
        })?;
    Ok(bytes)
}

// ---------------------------------------------------------------------------------------------
// The table

/// Columns a string takes in a terminal: full-width characters take two.
fn width(s: &str) -> usize {
    s.chars()
        .map(|c| {
            let wide = ('\u{1100}'..='\u{115F}').contains(&c)
                || ('\u{2E80}'..='\u{A4CF}').contains(&c)
                || ('\u{AC00}'..='\u{D7A3}').contains(&c)
                || ('\u{F900}'..='\u{FAFF}').contains(&c)
                || ('\u{FE30}'..='\u{FE4F}').contains(&c)
                || ('\u{FF00}'..='\u{FF60}').contains(&c)
                || ('\u{FFE0}'..='\u{FFE6}').contains(&c)
                || c == '☆';
            if wide { 2 } else { 1 }
        })
        .sum()
}

fn pad(s: &str, cols: usize) -> String {
    let w = width(s);
    format!("{s}{}", " ".repeat(cols.saturating_sub(w)))
}

fn lpad(s: &str, cols: usize) -> String {
    let w = width(s);
    format!("{}{s}", " ".repeat(cols.saturating_sub(w)))
}

/// 1234567 → "1,234,567".
fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

fn time(t: &str, lang: Lang) -> String {
    if t == "9999" {
        return match lang {
            Lang::Ja => "時間なし".into(),
            Lang::En => "no time".into(),
        };
    }
    match (t.get(..2), t.get(2..)) {
        (Some(h), Some(m)) => format!("{h}:{m}"),
        _ => t.to_string(),
    }
}

/// The days a 日割対象日 marks, as ranges: "5-31", "1-3,7".
fn mask_days(mask: &str) -> String {
    let days: Vec<usize> = mask
        .bytes()
        .enumerate()
        .filter(|(_, b)| *b == b'1')
        .map(|(i, _)| i + 1)
        .collect();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < days.len() {
        let mut j = i;
        while j + 1 < days.len() && days[j + 1] == days[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            days[i].to_string()
        } else {
            format!("{}-{}", days[i], days[j])
        });
        i = j + 1;
    }
    parts.join(",")
}

/// One side of a difference: "16日 10:00-10:50 117311 ×1 220単位".
fn side(r: &RowView, show_office: bool, lang: Lang) -> String {
    let mut s = String::new();
    if show_office {
        s.push_str(&r.office);
        s.push(' ');
    }
    match lang {
        Lang::Ja => s.push_str(&format!("{}日 ", r.day)),
        Lang::En => s.push_str(&format!("day {} ", r.day)),
    }
    if r.start == "9999" && r.end == "9999" {
        s.push_str(&time(&r.start, lang));
    } else {
        s.push_str(&format!("{}-{}", time(&r.start, lang), time(&r.end, lang)));
    }
    s.push_str(&format!(" {} ×{}", r.service_code, r.count));
    if let Some(u) = r.units {
        match lang {
            Lang::Ja => s.push_str(&format!(" {}単位", thousands(u))),
            Lang::En => s.push_str(&format!(" {} units", thousands(u))),
        }
    }
    if let Some(m) = &r.day_mask {
        match lang {
            Lang::Ja => s.push_str(&format!(" 日割 {}日", mask_days(m))),
            Lang::En => s.push_str(&format!(" daily-rate days {}", mask_days(m))),
        }
    }
    if r.merged > 1 {
        match lang {
            Lang::Ja => s.push_str(&format!("（{} 行まとめ）", r.merged)),
            Lang::En => s.push_str(&format!(" ({} rows merged)", r.merged)),
        }
    }
    s
}

fn difference_line(d: &Difference, lang: Lang) -> String {
    let label = match lang {
        Lang::Ja => d.label_ja(),
        Lang::En => d.label_en(),
    };
    let (plan_word, actual_word) = match lang {
        Lang::Ja => ("予定", "実績"),
        Lang::En => ("plan", "actual"),
    };
    let other_office = match (&d.planned, &d.actual) {
        (Some(p), Some(a)) => p.office != a.office,
        _ => false,
    };
    let mut s = format!(
        "    ☆ {} ",
        pad(&label, if lang == Lang::Ja { 22 } else { 24 })
    );
    match (&d.planned, &d.actual) {
        (Some(p), Some(a)) => s.push_str(&format!(
            "{plan_word} {} → {actual_word} {}",
            side(p, false, lang),
            side(a, other_office, lang)
        )),
        (Some(p), None) => s.push_str(&format!("{plan_word} {}", side(p, false, lang))),
        (None, Some(a)) => s.push_str(&format!("{actual_word} {}", side(a, false, lang))),
        (None, None) => {}
    }
    s
}

/// "相違あり（予定 … / 実績 …）": the status and the unit totals.
fn status_line(o: &UserOffice, lang: Lang) -> String {
    match lang {
        Lang::Ja => format!("{}（{}）", o.status.label_ja(), totals(o, lang)),
        Lang::En => format!("{} ({})", o.status.label_en(), totals(o, lang)),
    }
}

fn totals(o: &UserOffice, lang: Lang) -> String {
    let mark = if o.planned_units == o.actual_units {
        ""
    } else {
        " ☆"
    };
    match lang {
        Lang::Ja => format!(
            "予定 {} 単位 / 実績 {} 単位{mark}",
            thousands(o.planned_units),
            thousands(o.actual_units)
        ),
        Lang::En => format!(
            "planned {} units / actual {} units{mark}",
            thousands(o.planned_units),
            thousands(o.actual_units)
        ),
    }
}

/// The result as the table `renkei reconcile` prints.
pub fn render(r: &Reconciliation, lang: Lang, all: bool) -> String {
    let ja = lang == Lang::Ja;
    let mut out = String::new();
    let month = r.month.as_str();
    let (y, m) = (month.get(..4).unwrap_or(""), month.get(4..).unwrap_or(""));
    let count = |k: &str| r.inputs.iter().filter(|f| f.kind == k).count();
    let superseded = r.inputs.iter().filter(|f| !f.in_force).count();
    if ja {
        out.push_str(&format!(
            "予定・実績の突合 {y}年{}月（対象年月 {month}）\n",
            m.trim_start_matches('0')
        ));
        out.push_str(&format!(
            "読んだファイル: 予定 {}、第7表 {}、実績 {}、予定削除 {}、実績削除 {}（うち新しいファイルで置き換え済み {superseded}）\n\n",
            count("UPPLAN"),
            count("UPSIKYU"),
            count("UPJSK"),
            count("DLTPLAN"),
            count("DLTJSK"),
        ));
    } else {
        out.push_str(&format!("Plan against actual, {month}\n"));
        out.push_str(&format!(
            "Files read: {} plans, {} annexes (第7表), {} actuals, {} plan deletes, {} actual deletes ({superseded} replaced by newer files)\n\n",
            count("UPPLAN"),
            count("UPSIKYU"),
            count("UPJSK"),
            count("DLTPLAN"),
            count("DLTJSK"),
        ));
    }

    // Per partner office.
    let name_w = r
        .offices
        .iter()
        .map(|o| width(&o.office_name))
        .max()
        .unwrap_or(0)
        .max(8);
    let head: [&str; 7] = if ja {
        [
            "事業所",
            "利用者",
            "一致",
            "相違",
            "実績なし",
            "予定単位",
            "実績単位",
        ]
    } else {
        [
            "office",
            "users",
            "match",
            "differ",
            "no actuals",
            "planned",
            "actual",
        ]
    };
    // Number columns: as wide as their heading and two spaces, at least 8.
    let w: Vec<usize> = head.iter().map(|h| (width(h) + 2).max(8)).collect();
    out.push_str(&format!("  {}  {}", pad(head[0], 10), pad("", name_w)));
    for (h, cw) in head.iter().zip(&w).skip(1) {
        out.push_str(&lpad(h, *cw));
    }
    out.push('\n');
    for o in &r.offices {
        let mark = if o.differing + o.without_actuals > 0 || o.planned_units != o.actual_units {
            " ☆"
        } else {
            ""
        };
        let cells = [
            o.users.to_string(),
            o.matching.to_string(),
            o.differing.to_string(),
            o.without_actuals.to_string(),
            thousands(o.planned_units),
            thousands(o.actual_units),
        ];
        out.push_str(&format!(
            "  {}  {}",
            pad(&o.office, 10),
            pad(&o.office_name, name_w)
        ));
        for (c, cw) in cells.iter().zip(&w[1..]) {
            out.push_str(&lpad(c, *cw));
        }
        out.push_str(mark);
        out.push('\n');
    }
    out.push('\n');

    // Per user and office.
    let mut matching = 0;
    let mut marked = 0;
    for u in &r.users {
        let who = if u.name.is_empty() {
            format!("{} {}", u.insurer, u.insured)
        } else {
            format!("{} {} {}", u.insurer, u.insured, u.name)
        };
        for o in &u.offices {
            if o.status == Status::Match {
                matching += 1;
                if all {
                    out.push_str(&format!(
                        "  {who} — {} {}: {}\n",
                        o.office,
                        o.office_name,
                        status_line(o, lang)
                    ));
                }
                continue;
            }
            marked += 1;
            out.push_str(&format!(
                "☆ {who} — {} {}: {}\n",
                o.office,
                o.office_name,
                status_line(o, lang)
            ));
            if let Some(insurer) = &u.actual_insurer {
                out.push_str(&if ja {
                    format!(
                        "    ☆ 実績の保険者番号は {insurer} です（被保険者番号で突き合わせました）\n"
                    )
                } else {
                    format!(
                        "    ☆ the actuals carry insurer number {insurer} (paired by insured number)\n"
                    )
                });
            }
            match o.status {
                Status::NoActuals => out.push_str(&if ja {
                    format!(
                        "    ☆ この事業所からこの利用者の実績が届いていません（予定 {} 行）\n",
                        o.differences.len()
                    )
                } else {
                    format!(
                        "    ☆ no actuals for this user from this office ({} planned rows)\n",
                        o.differences.len()
                    )
                }),
                Status::NoPlan
                    if o.differences.len() > 3
                        && o.differences
                            .iter()
                            .all(|d| d.kind == DifferenceKind::NotPlanned) =>
                {
                    out.push_str(&if ja {
                        format!(
                            "    ☆ この事業所の予定がありません（実績 {} 行）\n",
                            o.differences.len()
                        )
                    } else {
                        format!(
                            "    ☆ nothing planned at this office ({} actual rows)\n",
                            o.differences.len()
                        )
                    })
                }
                _ => {
                    for d in &o.differences {
                        out.push_str(&difference_line(d, lang));
                        out.push('\n');
                    }
                }
            }
        }
    }
    if marked > 0 {
        out.push('\n');
    }

    // Files with problems.
    let problems: Vec<_> = r.inputs.iter().filter(|f| !f.problems.is_empty()).collect();
    for f in &problems {
        out.push_str(&if ja {
            format!(
                "☆ {}: 標準仕様に合わない箇所が {} 件あり、その記録は突合に使っていません（renkei check で確かめてください）\n",
                shown(&f.name),
                f.problem_count
            )
        } else {
            format!(
                "☆ {}: {} problem(s) against the standard; those records were left out (see renkei check)\n",
                shown(&f.name),
                f.problem_count
            )
        });
        for p in &f.problems {
            out.push_str(&format!(
                "    {} {}: {}\n",
                if ja { "行" } else { "line" },
                p.line,
                if ja { &p.message_ja } else { &p.message_en }
            ));
        }
    }
    let replaced: Vec<_> = r.inputs.iter().filter(|f| !f.in_force).collect();
    if all {
        for f in &replaced {
            out.push_str(&if ja {
                format!(
                    "  置き換え済み: {}（新しいファイルに置き換えられたか削除されました）\n",
                    shown(&f.name)
                )
            } else {
                format!(
                    "  replaced: {} (replaced by a newer file or deleted)\n",
                    shown(&f.name)
                )
            });
        }
    }
    if !problems.is_empty() || (all && !replaced.is_empty()) {
        out.push('\n');
    }

    let diffs = r.difference_count();
    out.push_str(&if ja {
        let more = if all || matching == 0 {
            String::new()
        } else {
            "（--all で一覧）".to_string()
        };
        if r.all_match() {
            format!("結果: すべて一致（利用者・事業所 {matching} 組）\n")
        } else {
            format!(
                "結果: 相違あり ☆ — 利用者・事業所 {marked} 組に相違 {diffs} 件、一致 {matching} 組{more}\n"
            )
        }
    } else {
        let more = if all || matching == 0 {
            String::new()
        } else {
            " (--all lists them)".to_string()
        };
        if r.all_match() {
            format!("Result: everything matches ({matching} user-office pairs)\n")
        } else {
            format!(
                "Result: differences ☆ — {diffs} in {marked} user-office pairs; {matching} pairs match{more}\n"
            )
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_helpers() {
        assert_eq!(thousands(17394), "17,394");
        assert_eq!(thousands(-940), "-940");
        assert_eq!(thousands(100), "100");
        assert_eq!(mask_days("0000111111111111111111111111111"), "5-31");
        assert_eq!(mask_days("1110001000000000000000000000000"), "1-3,7");
        assert_eq!(width("一致 ok"), 7);
        assert_eq!(pad("事業所", 8), "事業所  ");
        assert_eq!(time("0930", Lang::Ja), "09:30");
        assert_eq!(time("9999", Lang::En), "no time");
    }
}
