//! Plan against actual (予定・実績の突合) on the bundled sample month and on edited copies of it:
//! an exact match, a cancelled visit, an extra visit, a changed time, date, count and service
//! code, a substitute office, a mid-month plan change, deletes of 予定 and 実績, the V3 layout,
//! a broken record, and the CSV for Excel.

use std::collections::BTreeMap;
use std::path::Path;

use renkei_protocol::YearMonth;
use renkei_protocol::reconcile::{
    CsvEncoding, DifferenceKind, Lang, Reconciler, Reconciliation, Status, Taken, UserOffice,
};

// Field positions (0-based) of the V4 第6表 (UPPLAN / UPJSK), SPEC.md §3.9.
const INSURER: usize = 1;
const INSURED: usize = 2;
const UNITS: usize = 7;
const DATE: usize = 9;
const START: usize = 11;
const END: usize = 12;
const COUNT: usize = 13;
const CODE: usize = 14;
const OFFICE: usize = 19;
const UPDATER: usize = 23;

const PLAN_11: &str = "UPPLAN_202610_1310000001_43_1310000011_11_20260928103000.CSV";
const PLAN_15: &str = "UPPLAN_202610_1310000001_43_1310000021_15_20260928103000.CSV";
const PLAN_17: &str = "UPPLAN_202610_1310000001_43_1310000031_17_20260928103000.CSV";
const JSK_11: &str = "UPJSK_202610_1310000011_11_1310000001_43_20261102090000.CSV";
const JSK_15: &str = "UPJSK_202610_1310000021_15_1310000001_43_20261102091500.CSV";
const JSK_17: &str = "UPJSK_202610_1310000031_17_1310000001_43_20261102093000.CSV";

const YAMADA: &str = "0000123451";
const SUZUKI: &str = "0000123469";
const SATO: &str = "0000123477";
const TAKAHASHI: &str = "0000567891";
const TANAKA: &str = "H000000521";

const HOUMON: &str = "1310000011";
const TSUSHO: &str = "1310000021";
const YOUGU: &str = "1310000031";
/// Another 訪問介護 office, standing in for さくら.
const SUBSTITUTE: &str = "1310000012";

/// A month of files, by name, that a test edits before reconciling.
#[derive(Clone)]
struct Month {
    files: BTreeMap<String, Vec<u8>>,
}

type Rows = Vec<Vec<String>>;

impl Month {
    /// The bundled sample month (examples/month-202610).
    fn sample() -> Month {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/month-202610");
        let files = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "CSV"))
            .map(|e| {
                (
                    e.file_name().into_string().unwrap(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        Month { files }
    }

    /// The records of a 第6表 or 第7表 file, as raw fields (quotes kept). These files hold no
    /// comma or line break inside quotes.
    fn rows(&self, name: &str) -> Rows {
        let (text, _, bad) = encoding_rs::SHIFT_JIS.decode(&self.files[name]);
        assert!(!bad);
        text.split_terminator("\r\n")
            .map(|l| l.split(',').map(String::from).collect())
            .collect()
    }

    fn set_rows(&mut self, name: &str, rows: &Rows) {
        let mut text = String::new();
        for r in rows {
            text.push_str(&r.join(","));
            text.push_str("\r\n");
        }
        let (bytes, _, bad) = encoding_rs::SHIFT_JIS.encode(&text);
        assert!(!bad);
        self.files.insert(name.to_string(), bytes.into_owned());
    }

    fn edit(&mut self, name: &str, f: impl FnOnce(&mut Rows)) {
        let mut rows = self.rows(name);
        f(&mut rows);
        self.set_rows(name, &rows);
    }

    fn remove(&mut self, name: &str) {
        assert!(self.files.remove(name).is_some(), "{name}");
    }

    fn reconcile(&self) -> Reconciliation {
        let mut r = Reconciler::new(YearMonth::parse("202610", false).unwrap());
        for (name, bytes) in &self.files {
            let taken = r.add_file(name, bytes).unwrap();
            assert_ne!(taken, Taken::Duplicate);
        }
        r.finish()
    }
}

/// Rows of one user on one day.
fn on(user: &str, day: u32) -> impl Fn(&Vec<String>) -> bool {
    let user = user.to_string();
    move |r: &Vec<String>| r[INSURED] == user && r[DATE] == format!("202610{day:02}")
}

fn office<'a>(r: &'a Reconciliation, insured: &str, office: &str) -> &'a UserOffice {
    r.users
        .iter()
        .find(|u| u.insured == insured)
        .unwrap_or_else(|| panic!("no user {insured}"))
        .offices
        .iter()
        .find(|o| o.office == office)
        .unwrap_or_else(|| panic!("no office {office} for {insured}"))
}

/// Every difference, one line each: user, office, day, code, kind, changes.
fn differences(r: &Reconciliation) -> Vec<String> {
    let mut out = Vec::new();
    for u in &r.users {
        for o in &u.offices {
            for d in &o.differences {
                let row = d.planned.as_ref().or(d.actual.as_ref()).unwrap();
                out.push(format!(
                    "{} {} d{} {} {:?} {:?}",
                    u.insured,
                    o.office,
                    d.day(),
                    row.service_code,
                    d.kind,
                    d.changes
                ));
            }
        }
    }
    out
}

/// 実績 equal to the plan: each office's lines of the plan it received, as its own 実績.
fn actuals_as_planned(m: &mut Month) {
    for (plan, jsk, no) in [
        (PLAN_11, JSK_11, HOUMON),
        (PLAN_15, JSK_15, TSUSHO),
        (PLAN_17, JSK_17, YOUGU),
    ] {
        let mut rows = m.rows(plan);
        rows.retain(|r| r[OFFICE] == no);
        for r in &mut rows {
            r[3] = "20261102".into();
            r[UPDATER] = no.into();
        }
        m.set_rows(jsk, &rows);
    }
}

#[test]
fn the_sample_month_differs_where_its_readme_says() {
    let r = Month::sample().reconcile();
    assert_eq!(
        differences(&r),
        [
            "0000123451 1310000011 d16 117311 NotPerformed []",
            "0000123469 1310000011 d7 111111 Changed [Time]",
            "0000123469 1310000021 d14 152443 NotPerformed []",
            "0000123469 1310000021 d14 155301 NotPerformed []",
            "0000123477 1310000021 d22 152441 Changed [Time]",
            "0000123477 1310000021 d22 155051 Changed [Time]",
            "H000000521 1310000011 d21 111211 Changed [Time]",
        ]
    );
    assert!(!r.all_match());
    let d = &office(&r, SUZUKI, HOUMON).differences[0];
    let (p, a) = (d.planned.as_ref().unwrap(), d.actual.as_ref().unwrap());
    assert_eq!((p.start.as_str(), p.end.as_str()), ("0800", "0825"));
    assert_eq!((a.start.as_str(), a.end.as_str()), ("0810", "0835"));
    assert_eq!(a.file, JSK_11);

    // Unit totals: the cancelled 生活援助３ (220) and the cancelled day service (900 + 40).
    let y = office(&r, YAMADA, HOUMON);
    assert_eq!((y.planned_units, y.actual_units), (3528, 3308));
    assert_eq!(y.matched, 12);
    let s = office(&r, SUZUKI, TSUSHO);
    assert_eq!(s.planned_units - s.actual_units, 940);
    assert_eq!(office(&r, TAKAHASHI, HOUMON).status, Status::Match);
    assert_eq!(office(&r, SATO, YOUGU).status, Status::Match);

    // Per partner office.
    let summary: Vec<(&str, u32, u32, u32)> = r
        .offices
        .iter()
        .map(|o| (o.office.as_str(), o.users, o.matching, o.differing))
        .collect();
    assert_eq!(
        summary,
        [(HOUMON, 4, 1, 3), (TSUSHO, 3, 1, 2), (YOUGU, 4, 4, 0)]
    );
    assert_eq!(r.offices[0].office_name, "さくら訪問介護ステーション");
    // Names from the month's 利用者補足情報.
    assert_eq!(r.users[0].name, "山田　花子");
    // The three copies of the plan (one per office) are one plan: nothing counted twice.
    assert_eq!(office(&r, YAMADA, TSUSHO).planned_count, 18);
    assert!(r.inputs.iter().all(|f| f.in_force && f.problems.is_empty()));
}

#[test]
fn actuals_equal_to_the_plan_match() {
    let mut m = Month::sample();
    actuals_as_planned(&mut m);
    let r = m.reconcile();
    assert_eq!(differences(&r), Vec::<String>::new());
    assert!(r.all_match());
    assert!(r.offices.iter().all(|o| o.matching == o.users));
    assert_eq!(r.difference_count(), 0);
}

#[test]
fn a_cancelled_visit_is_planned_only() {
    let mut m = Month::sample();
    actuals_as_planned(&mut m);
    // 高橋's Wednesday 身体介護 of 10/14 did not take place.
    m.edit(JSK_11, |rows| rows.retain(|r| !on(TAKAHASHI, 14)(r)));
    let r = m.reconcile();
    assert_eq!(
        differences(&r),
        ["0000567891 1310000011 d14 111111 NotPerformed []"]
    );
    let o = office(&r, TAKAHASHI, HOUMON);
    assert_eq!(o.status, Status::Differ);
    assert_eq!(o.planned_units - o.actual_units, 244);
}

#[test]
fn an_extra_visit_is_actual_only() {
    let mut m = Month::sample();
    actuals_as_planned(&mut m);
    // An extra 生活援助２ on Saturday 10/10.
    m.edit(JSK_11, |rows| {
        let mut extra = rows.iter().find(|r| on(TAKAHASHI, 9)(r)).unwrap().clone();
        extra[DATE] = "20261010".into();
        rows.push(extra);
    });
    let r = m.reconcile();
    assert_eq!(
        differences(&r),
        ["0000567891 1310000011 d10 117211 NotPlanned []"]
    );
    let d = &office(&r, TAKAHASHI, HOUMON).differences[0];
    assert!(d.planned.is_none());
    assert_eq!(d.label_ja(), "実績のみ（予定なし）");
}

#[test]
fn a_changed_time_date_count_and_service_code_are_told_apart() {
    let mut m = Month::sample();
    actuals_as_planned(&mut m);
    m.edit(JSK_11, |rows| {
        for r in rows.iter_mut() {
            if on(TAKAHASHI, 2)(r) {
                r[START] = "1500".into();
                r[END] = "1540".into();
            }
            if on(TAKAHASHI, 13)(r) {
                // Tuesday's visit done on Thursday.
                r[DATE] = "20261015".into();
            }
            if on(TAKAHASHI, 16)(r) {
                r[COUNT] = "2".into();
            }
            if on(TAKAHASHI, 21)(r) {
                // 身体介護１ became 身体介護２ (a longer visit).
                r[CODE] = "111211".into();
                r[UNITS] = "387".into();
            }
        }
    });
    let r = m.reconcile();
    assert_eq!(
        differences(&r),
        [
            "0000567891 1310000011 d2 117211 Changed [Time]",
            "0000567891 1310000011 d13 117211 Changed [Date]",
            "0000567891 1310000011 d16 117211 Changed [Count]",
            "0000567891 1310000011 d21 111111 Changed [ServiceCode]",
        ]
    );
    let o = office(&r, TAKAHASHI, HOUMON);
    assert_eq!(o.actual_units - o.planned_units, 179 + (387 - 244));
    assert_eq!(o.differences[1].actual.as_ref().unwrap().day, 15);
    assert_eq!(o.differences[3].label_ja(), "サービスコード変更");
}

#[test]
fn a_visit_moved_far_is_a_cancel_and_an_extra() {
    let mut m = Month::sample();
    actuals_as_planned(&mut m);
    m.edit(JSK_11, |rows| {
        for r in rows.iter_mut().filter(|r| on(TAKAHASHI, 2)(r)) {
            r[DATE] = "20261031".into();
        }
    });
    let r = m.reconcile();
    assert_eq!(
        differences(&r),
        [
            "0000567891 1310000011 d2 117211 NotPerformed []",
            "0000567891 1310000011 d31 117211 NotPlanned []",
        ]
    );
}

#[test]
fn a_substitute_office_is_reported_against_the_planned_one() {
    let mut m = Month::sample();
    actuals_as_planned(&mut m);
    // 田中's visit of 10/21 was made by another 訪問介護 office, which sends its own 実績.
    let mut moved = Vec::new();
    m.edit(JSK_11, |rows| {
        moved = rows.iter().filter(|r| on(TANAKA, 21)(r)).cloned().collect();
        rows.retain(|r| !on(TANAKA, 21)(r));
    });
    assert_eq!(moved.len(), 1);
    for r in &mut moved {
        r[OFFICE] = SUBSTITUTE.into();
        r[20] = "\"つばき訪問介護\"".into();
        r[UPDATER] = SUBSTITUTE.into();
    }
    m.set_rows(
        "UPJSK_202610_1310000012_11_1310000001_43_20261102100000.CSV",
        &moved,
    );
    let r = m.reconcile();
    assert_eq!(
        differences(&r),
        ["H000000521 1310000011 d21 111211 Changed [Office]"]
    );
    let d = &office(&r, TANAKA, HOUMON).differences[0];
    assert_eq!(d.actual.as_ref().unwrap().office, SUBSTITUTE);
    assert_eq!(d.label_en(), "changed: office");
    // The substitute's own totals: performed, not planned there.
    let sub = office(&r, TANAKA, SUBSTITUTE);
    assert_eq!(sub.status, Status::NoPlan);
    assert_eq!((sub.planned_units, sub.actual_units), (0, 387));
    assert_eq!(sub.office_name, "つばき訪問介護");
}

/// 高橋's plan changed on 10/15: from 10/19 the Wednesday 身体介護 moves to Thursday. The new
/// 利用票 goes to さくら with a newer stamp and replaces the first.
fn plan_change(m: &mut Month) -> &'static str {
    const NEW_PLAN: &str = "UPPLAN_202610_1310000001_43_1310000011_11_20261015100000.CSV";
    let mut rows = m.rows(PLAN_11);
    rows.retain(|r| r[INSURED] == TAKAHASHI);
    for r in &mut rows {
        r[3] = "20261015".into();
        for (from, to) in [("20261021", "20261022"), ("20261028", "20261029")] {
            if r[DATE] == from {
                r[DATE] = to.into();
            }
        }
    }
    m.set_rows(NEW_PLAN, &rows);
    NEW_PLAN
}

#[test]
fn a_mid_month_plan_change_supersedes_the_first_plan() {
    let mut m = Month::sample();
    actuals_as_planned(&mut m);
    // The 実績 follows the changed plan.
    m.edit(JSK_11, |rows| {
        for r in rows.iter_mut().filter(|r| r[INSURED] == TAKAHASHI) {
            for (from, to) in [("20261021", "20261022"), ("20261028", "20261029")] {
                if r[DATE] == from {
                    r[DATE] = to.into();
                }
            }
        }
    });
    // Against the first plan alone, two visits moved.
    assert_eq!(
        differences(&m.reconcile()),
        [
            "0000567891 1310000011 d21 111111 Changed [Date]",
            "0000567891 1310000011 d28 111111 Changed [Date]",
        ]
    );
    let new_plan = plan_change(&mut m);
    let r = m.reconcile();
    assert_eq!(differences(&r), Vec::<String>::new());
    assert!(r.all_match());
    // The first plan is still in force for the other users it holds.
    assert!(r.inputs.iter().all(|f| f.in_force), "{:?}", r.inputs);

    // A plan that only 高橋 had: replaced entirely, so no longer in force.
    let mut m2 = m.clone();
    m2.edit(PLAN_11, |rows| rows.retain(|r| r[INSURED] == TAKAHASHI));
    let r = m2.reconcile();
    assert!(differences(&r).is_empty());
    let in_force: BTreeMap<&str, bool> = r
        .inputs
        .iter()
        .map(|f| (f.name.as_str(), f.in_force))
        .collect();
    assert!(!in_force[PLAN_11]);
    assert!(in_force[new_plan]);
}

#[test]
fn an_older_plan_does_not_replace_a_newer_one_whatever_the_order_given() {
    let mut m = Month::sample();
    actuals_as_planned(&mut m);
    plan_change(&mut m);
    // Files given newest first (BTreeMap order puts 2026101… after 2026092…; reverse it).
    let mut r = Reconciler::new(YearMonth::parse("202610", false).unwrap());
    for (name, bytes) in m.files.iter().rev() {
        r.add_file(name, bytes).unwrap();
    }
    let forward = m.reconcile();
    let backward = r.finish();
    assert_eq!(differences(&forward), differences(&backward));
    assert_eq!(
        differences(&forward),
        [
            "0000567891 1310000011 d22 111111 Changed [Date]",
            "0000567891 1310000011 d29 111111 Changed [Date]",
        ]
    );
}

#[test]
fn a_jisseki_delete_removes_the_actuals_and_a_resend_restores_them() {
    let mut m = Month::sample();
    // けやき withdraws 佐藤's 実績 for October.
    let delete = "DLTJSK_202610_1310000021_15_1310000001_43_20261103090000.CSV";
    m.set_rows(
        delete,
        &vec![
            "202407,131016,0000123477,202610,1310000021,15"
                .split(',')
                .map(String::from)
                .collect(),
        ],
    );
    let r = m.reconcile();
    let o = office(&r, SATO, TSUSHO);
    assert_eq!(o.status, Status::NoActuals);
    assert_eq!((o.actual_units, o.differences.len()), (0, 18));
    assert!(
        o.differences
            .iter()
            .all(|d| d.kind == DifferenceKind::NotPerformed)
    );
    // Other users of the same 実績 file are untouched.
    assert_eq!(office(&r, SUZUKI, TSUSHO).actual_units, 7520);
    assert_eq!(r.offices[1].without_actuals, 1);

    // In one send unit with the delete, a corrected 実績 (10/22 at 09:30 as planned): the delete
    // applies first, the new 実績 stands.
    let mut rows = m.rows(JSK_15);
    rows.retain(|r| r[INSURED] == SATO);
    for r in rows.iter_mut().filter(|r| on(SATO, 22)(r)) {
        r[START] = "0930".into();
    }
    m.set_rows(
        "UPJSK_202610_1310000021_15_1310000001_43_20261103090000.CSV",
        &rows,
    );
    let r = m.reconcile();
    assert_eq!(office(&r, SATO, TSUSHO).status, Status::Match);
    let in_force: BTreeMap<&str, bool> = r
        .inputs
        .iter()
        .map(|f| (f.name.as_str(), f.in_force))
        .collect();
    assert!(in_force[delete]);
    // The first 実績 file still holds 山田 and 鈴木.
    assert!(in_force[JSK_15]);
}

#[test]
fn an_older_jisseki_delete_does_not_remove_newer_actuals() {
    let mut m = Month::sample();
    m.set_rows(
        "DLTJSK_202610_1310000021_15_1310000001_43_20261101090000.CSV",
        &vec![
            "202407,131016,0000123477,202610,1310000021,15"
                .split(',')
                .map(String::from)
                .collect(),
        ],
    );
    let r = m.reconcile();
    assert_eq!(office(&r, SATO, TSUSHO).status, Status::Differ);
    assert_eq!(office(&r, SATO, TSUSHO).differences.len(), 2);
}

#[test]
fn a_plan_delete_removes_the_plan_lines_of_the_office_it_was_sent_to() {
    let mut m = Month::sample();
    // 田中 no longer rents from あおば this month: DLTPLAN to あおば, after the plan.
    m.set_rows(
        "DLTPLAN_202610_1310000001_43_1310000031_17_20261001090000.CSV",
        &vec![
            "202407,131016,H000000521,202610"
                .split(',')
                .map(String::from)
                .collect(),
        ],
    );
    let r = m.reconcile();
    let o = office(&r, TANAKA, YOUGU);
    assert_eq!(o.status, Status::NoPlan);
    assert_eq!(o.planned_units, 0);
    // 田中's plan at さくら stays.
    assert_eq!(office(&r, TANAKA, HOUMON).planned_units, 5911);
}

#[test]
fn units_come_from_the_seventh_table_when_the_sixth_leaves_them_empty() {
    let sample = Month::sample().reconcile();
    let mut m = Month::sample();
    for plan in [PLAN_11, PLAN_15, PLAN_17] {
        m.edit(plan, |rows| {
            for r in rows {
                r[UNITS] = String::new();
            }
        });
    }
    let r = m.reconcile();
    assert_eq!(differences(&r), differences(&sample));
    assert_eq!(r.offices, sample.offices);
    assert!(
        r.users
            .iter()
            .flat_map(|u| &u.offices)
            .all(|o| !o.units_missing)
    );

    // Without the 第7表 the plan's units are unknown, and said to be.
    for name in m.files.keys().cloned().collect::<Vec<_>>() {
        if name.starts_with("UPSIKYU") {
            m.remove(&name);
        }
    }
    let r = m.reconcile();
    assert!(office(&r, TAKAHASHI, HOUMON).units_missing);
    assert_eq!(office(&r, TAKAHASHI, HOUMON).planned_units, 0);
}

#[test]
fn two_visits_of_one_and_one_of_two_are_the_same_day() {
    let mut m = Month::sample();
    actuals_as_planned(&mut m);
    // Planned as one row of サービス回数 2; the 実績 gives each visit its own row.
    m.edit(PLAN_11, |rows| {
        for r in rows.iter_mut().filter(|r| on(TAKAHASHI, 20)(r)) {
            r[COUNT] = "2".into();
            r[END] = "1640".into();
        }
    });
    m.edit(JSK_11, |rows| {
        let i = rows.iter().position(|r| on(TAKAHASHI, 20)(r)).unwrap();
        let mut second = rows[i].clone();
        rows[i][END] = "1440".into();
        second[START] = "1600".into();
        second[END] = "1640".into();
        rows.insert(i + 1, second);
    });
    let r = m.reconcile();
    assert_eq!(differences(&r), Vec::<String>::new());
    assert_eq!(office(&r, TAKAHASHI, HOUMON).actual_count, 14);
}

#[test]
fn v3_files_reconcile_like_v4() {
    let v4 = Month::sample();
    let mut m = Month {
        files: BTreeMap::new(),
    };
    for name in v4.files.keys() {
        let v3_name = |n: &str| {
            // PREFIX_MONTH_FROM_FROMKIND_TO_TOKIND_STAMP.CSV → PREFIX_MONTH_FROM_TO_STAMP.CSV
            let p: Vec<&str> = n.split('_').collect();
            format!("{}_{}_{}_{}_{}", p[0], p[1], p[2], p[4], p[6])
        };
        if name.starts_with("UPPLAN") || name.starts_with("UPJSK") {
            let mut rows = v4.rows(name);
            for r in &mut rows {
                r[0] = "202208".into();
                // V3 has no TAIS code, 届出コード or 用具名称 (V4 fields 16–18).
                r.drain(15..18);
            }
            m.set_rows(&v3_name(name), &rows);
        }
    }
    let r = m.reconcile();
    assert_eq!(differences(&r), differences(&v4.reconcile()));
    assert!(
        r.inputs.iter().all(|f| f.problems.is_empty()),
        "{:?}",
        r.inputs
    );
}

#[test]
fn a_broken_record_is_left_out_and_its_file_listed() {
    let mut m = Month::sample();
    actuals_as_planned(&mut m);
    m.edit(JSK_11, |rows| {
        for r in rows.iter_mut().filter(|r| on(TAKAHASHI, 2)(r)) {
            r[DATE] = "20261032".into();
        }
    });
    let r = m.reconcile();
    assert_eq!(
        differences(&r),
        ["0000567891 1310000011 d2 117211 NotPerformed []"]
    );
    let f = r.inputs.iter().find(|f| f.name == JSK_11).unwrap();
    assert_eq!(f.problem_count, 1);
    assert_eq!(f.problems[0].code.as_str(), "DATE");
    assert!(!r.all_match());

    // A file that is not CP932 at all: no records, listed.
    let mut m = Month::sample();
    m.files
        .insert(JSK_17.into(), "202407,ｱ".as_bytes().to_vec());
    let r = m.reconcile();
    let f = r.inputs.iter().find(|f| f.name == JSK_17).unwrap();
    assert_eq!(
        (f.records, f.problems[0].code.as_str()),
        (0, "ENCODING_UTF8")
    );
    assert_eq!(office(&r, YAMADA, YOUGU).status, Status::NoActuals);
}

#[test]
fn an_insurer_number_corrected_by_the_service_office_still_pairs() {
    let mut m = Month::sample();
    actuals_as_planned(&mut m);
    m.edit(JSK_11, |rows| {
        for r in rows.iter_mut().filter(|r| r[INSURED] == TAKAHASHI) {
            r[INSURER] = "131016".into();
        }
    });
    let r = m.reconcile();
    assert_eq!(differences(&r), Vec::<String>::new());
    let u = r.users.iter().find(|u| u.insured == TAKAHASHI).unwrap();
    assert_eq!(
        (u.insurer.as_str(), u.actual_insurer.as_deref()),
        ("131042", Some("131016"))
    );
    assert_eq!(r.users.len(), 5);
}

#[test]
fn files_of_other_kinds_months_and_names_are_left_aside() {
    let mut r = Reconciler::new(YearMonth::parse("202610", false).unwrap());
    let m = Month::sample();
    let plan = &m.files[PLAN_11];
    assert_eq!(r.add_file(PLAN_11, plan), Ok(Taken::Used));
    assert_eq!(r.add_file(PLAN_11, plan), Ok(Taken::Duplicate));
    assert_eq!(
        r.add_file("UP1KYO_1310000001_43_1310000011_11_20260928100000.CSV", b""),
        Ok(Taken::OtherKind)
    );
    assert_eq!(
        r.add_file(
            "UPPLAN_202611_1310000001_43_1310000011_11_20261028103000.CSV",
            plan
        ),
        Ok(Taken::OtherMonth)
    );
    assert!(r.add_file("plan.csv", plan).is_err());
    let result = r.finish();
    // Only a plan: every user's offices are without actuals.
    assert!(
        result
            .users
            .iter()
            .flat_map(|u| &u.offices)
            .all(|o| o.status == Status::NoActuals)
    );
}

#[test]
fn the_csv_opens_in_excel_in_either_encoding() {
    let r = Month::sample().reconcile();
    let cp932 = r.to_csv(Lang::Ja, CsvEncoding::Cp932);
    let (text, _, bad) = encoding_rs::SHIFT_JIS.decode(&cp932);
    assert!(!bad);
    assert_eq!(text, r.to_csv_text(Lang::Ja));
    let lines: Vec<&str> = text.split_terminator("\r\n").collect();
    assert!(lines[0].starts_with("対象年月,保険者番号,被保険者番号,利用者氏名,事業所番号"));
    // One summary line per user and office (11) and one line per difference (7).
    assert_eq!(lines.len(), 1 + 11 + 7);
    assert_eq!(lines.iter().filter(|l| l.contains(",☆,")).count(), 5 + 7);
    let cancelled = lines
        .iter()
        .find(|l| l.contains("予定のみ") && l.contains("山田"))
        .unwrap();
    // Leading zeros kept for Excel: ="0000123451", ="1000".
    assert!(cancelled.contains(r#""=""0000123451""""#), "{cancelled}");
    assert!(
        cancelled.contains(r#"20261016,"=""1000""","=""1050""","=""117311""",1,220"#),
        "{cancelled}"
    );

    let utf8 = r.to_csv(Lang::En, CsvEncoding::Utf8Bom);
    assert!(utf8.starts_with(&[0xEF, 0xBB, 0xBF]));
    let text = std::str::from_utf8(&utf8[3..]).unwrap();
    assert!(text.starts_with("month,insurer,insured,name,office"));
    assert!(text.contains("planned, not performed") || text.contains("\"planned, not performed\""));
}
