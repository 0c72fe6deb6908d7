//! The month's files of a scenario: every one a valid standard file, made from the bundled
//! sample month (`examples/month-202610`) by putting the scenario's office numbers where the
//! sample's are and repeating users' rows (each copy a user of its own) up to the office's
//! number of users.

use std::collections::BTreeMap;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha20Rng;

use super::scenario::Scenario;
use crate::samples::SAMPLES;

/// The care-management office of the sample month.
const SAMPLE_CM: &[u8; 10] = b"1310000001";
/// The sample month's service offices and their kinds.
const SAMPLE_SERVICES: [(&[u8; 10], &str); 3] = [
    (b"1310000011", "11"),
    (b"1310000021", "15"),
    (b"1310000031", "17"),
];

/// Kinds a scenario may send at month end.
pub(crate) const PLAN_KINDS: [&str; 6] = [
    "UPHOSOKU", "UP1KYO", "UP2KYO", "UP3KYO", "UPPLAN", "UPSIKYU",
];

/// The service kinds given to service offices, in turn.
pub(crate) const SERVICE_KINDS: [&str; 3] = ["11", "15", "17"];

/// Users in each sample file; rows are repeated for more users.
const SAMPLE_USERS: usize = 3;

/// One office of the run.
#[derive(Debug, Clone)]
pub(crate) struct LabOffice {
    /// `cm<i>` or `sv<i>`.
    pub(crate) name: String,
    /// 事業所番号.
    pub(crate) number: String,
    /// Service kind (43 for care management).
    pub(crate) kind: &'static str,
    /// Region index.
    pub(crate) region: usize,
    /// Care management?
    pub(crate) cm: bool,
}

/// The offices of a scenario, care-management first, and the partner graph: for each
/// care-management office (by index into the offices), its service partners.
#[derive(Debug, Clone)]
pub(crate) struct Population {
    /// Every office; index = the federation's office index.
    pub(crate) offices: Vec<LabOffice>,
    /// Care-management office index → partner office indexes (sorted).
    pub(crate) partners: BTreeMap<usize, Vec<usize>>,
}

/// The prefecture of region `r` (13 東京 first, then on from 01).
pub(crate) fn prefecture(r: usize) -> u8 {
    let p = ((12 + r) % 47) as u8 + 1;
    debug_assert!((1..=47).contains(&p));
    p
}

impl Population {
    /// The offices and partner graph of `s`, chosen by its seed.
    pub(crate) fn of(s: &Scenario) -> Population {
        let f = &s.federation;
        let mut offices = Vec::new();
        for i in 0..f.care_management {
            let region = i % f.regions;
            offices.push(LabOffice {
                name: format!("cm{i}"),
                number: format!("{:02}1{:07}", prefecture(region), i),
                kind: "43",
                region,
                cm: true,
            });
        }
        for i in 0..f.service {
            let region = i % f.regions;
            offices.push(LabOffice {
                name: format!("sv{i}"),
                number: format!("{:02}2{:07}", prefecture(region), i),
                kind: SERVICE_KINDS[i % SERVICE_KINDS.len()],
                region,
                cm: false,
            });
        }
        let mut rng = ChaCha20Rng::seed_from_u64(s.seed ^ 0x7061_7274);
        let mut partners = BTreeMap::new();
        for cm in 0..f.care_management {
            let region = offices[cm].region;
            let pool: Vec<usize> = (f.care_management..offices.len())
                .filter(|j| offices[*j].region == region)
                .collect();
            let want = f.partners_per_cm.min(pool.len());
            let mut chosen = rand::seq::index::sample(&mut rng, pool.len(), want)
                .into_iter()
                .map(|k| pool[k])
                .collect::<Vec<_>>();
            chosen.sort_unstable();
            partners.insert(cm, chosen);
        }
        Population { offices, partners }
    }

    /// The index of a named office (`cm3`, `sv12`).
    pub(crate) fn index_of(&self, name: &str, care_management: usize) -> Option<usize> {
        match super::scenario::parse_office_name(name)? {
            (true, i) => Some(i),
            (false, i) => Some(care_management + i),
        }
    }
}

/// A file the lab drops into an outbox.
#[derive(Debug, Clone)]
pub(crate) struct Drop {
    /// Milliseconds from the run's start.
    pub(crate) at_ms: u64,
    /// The sending office's index.
    pub(crate) from: usize,
    /// The receiving office's index.
    pub(crate) to: usize,
    /// Its standard name.
    pub(crate) name: String,
    /// Its bytes.
    pub(crate) bytes: Vec<u8>,
    /// `plan`, `change`, `delete` or `actual`.
    pub(crate) phase: &'static str,
}

/// The run's calendar: day 1 is 2026-09-27. `YYYYMMDDhhmmss` of `ms` from the start.
pub(crate) fn stamp(ms: u64) -> String {
    let secs = ms / 1000;
    let (mut day, rest) = (secs / 86400 + 26, secs % 86400);
    let mut y = 2026;
    let mut m = 9;
    let len = |y: u64, m: u64| match m {
        2 if y.is_multiple_of(4) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    while day >= len(y, m) {
        day -= len(y, m);
        m += 1;
        if m > 12 {
            m = 1;
            y += 1;
        }
    }
    format!(
        "{y:04}{m:02}{:02}{:02}{:02}{:02}",
        day + 1,
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// Puts `cm` and `sv` where the sample's care-management office and service office `from_sv`
/// stand, in one pass.
fn renumber(bytes: &[u8], cm: &str, from_sv: &[u8; 10], sv: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(SAMPLE_CM) {
            out.extend_from_slice(cm.as_bytes());
            i += 10;
        } else if bytes[i..].starts_with(from_sv) {
            out.extend_from_slice(sv.as_bytes());
            i += 10;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

/// Repeats the rows `copies` times, each copy's users with insured numbers of their own (the
/// first three characters of 被保険者番号 replaced by the copy's number).
fn repeat_users(bytes: &[u8], copies: usize) -> Vec<u8> {
    if copies <= 1 {
        return bytes.to_vec();
    }
    let lines: Vec<&[u8]> = bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty() && *l != b"\r")
        .collect();
    let mut out = Vec::with_capacity(bytes.len() * copies);
    for c in 0..copies {
        for line in &lines {
            let mut fields: Vec<Vec<u8>> = line.split(|b| *b == b',').map(<[u8]>::to_vec).collect();
            if c > 0 && fields.len() > 2 && fields[2].len() == 10 {
                let tag = format!("{:03}", c % 1000);
                fields[2][..3].copy_from_slice(tag.as_bytes());
            }
            out.extend_from_slice(&fields.join(&b","[..]));
            if !line.ends_with(b"\r") {
                out.extend_from_slice(b"\r");
            }
            out.push(b'\n');
        }
    }
    out
}

/// The sample file of `kind` between the sample offices (`month` in the name: `202610`, or
/// `000000` for the UPHOSOKU without a month), to or from the sample service office of
/// service kind `service_kind`.
fn template(
    prefix: &str,
    service_kind: &str,
) -> Option<(&'static str, &'static [u8], &'static [u8; 10])> {
    let (sv, _) = SAMPLE_SERVICES.iter().find(|(_, k)| *k == service_kind)?;
    let sv_s = std::str::from_utf8(*sv).ok()?;
    SAMPLES
        .iter()
        .find(|(n, _)| n.starts_with(prefix) && n.contains(sv_s))
        .map(|(n, b)| (*n, *b, *sv))
}

/// The name of a file from the sample's name: kind and month kept, offices and time set.
fn name_of(sample: &str, from: &LabOffice, to: &LabOffice, at_ms: u64) -> String {
    let parts: Vec<&str> = sample.split('_').collect();
    // KIND[_MONTH]_FROM_KFROM_TO_KTO_STAMP.CSV
    let head = parts[..parts.len() - 5].join("_");
    format!(
        "{head}_{}_{}_{}_{}_{}.CSV",
        from.number,
        from.kind,
        to.number,
        to.kind,
        stamp(at_ms)
    )
}

/// Every file of the scenario's month, in the order they are dropped.
pub(crate) fn month(s: &Scenario, pop: &Population) -> Vec<Drop> {
    let w = &s.workload;
    let mut rng = ChaCha20Rng::seed_from_u64(s.seed ^ 0x776f_726b);
    let pair_users = (s.federation.users_per_cm * 3)
        .div_ceil(s.federation.partners_per_cm.max(1))
        .max(1);
    let copies = pair_users.div_ceil(SAMPLE_USERS);
    let mut out = Vec::new();
    let office_minute = |rng: &mut ChaCha20Rng, day: u32| -> u64 {
        // Office hours, 09:00–17:59, one minute per office.
        (u64::from(day - 1) * 86400 + 9 * 3600 + rng.random_range(0..9 * 60) * 60) * 1000
    };
    for (&cm, partners) in &pop.partners {
        let c = &pop.offices[cm];
        let at = office_minute(&mut rng, w.plans_day);
        for &p in partners {
            let sv = &pop.offices[p];
            for kind in &w.plan_kinds {
                let prefixes: Vec<String> = if kind == "UPHOSOKU" {
                    vec!["UPHOSOKU_000000_".into(), "UPHOSOKU_202610_".into()]
                } else {
                    vec![format!("{kind}_")]
                };
                for prefix in prefixes {
                    let Some((sample, bytes, from_sv)) = template(&prefix, sv.kind) else {
                        continue;
                    };
                    let mut b = renumber(bytes, &c.number, from_sv, &sv.number);
                    if matches!(kind.as_str(), "UPPLAN" | "UPSIKYU") {
                        b = repeat_users(&b, copies);
                    }
                    out.push(Drop {
                        at_ms: at,
                        from: cm,
                        to: p,
                        name: name_of(sample, c, sv, at),
                        bytes: b,
                        phase: "plan",
                    });
                }
            }
        }
        if w.changes_day > 0 {
            let at = office_minute(&mut rng, w.changes_day);
            for &p in partners {
                let sv = &pop.offices[p];
                let change = rng.random_bool(w.changes);
                let delete = rng.random_bool(w.deletes);
                if change && let Some((sample, bytes, from_sv)) = template("UPPLAN_", sv.kind) {
                    let b = repeat_users(&renumber(bytes, &c.number, from_sv, &sv.number), copies);
                    out.push(Drop {
                        at_ms: at,
                        from: cm,
                        to: p,
                        name: name_of(sample, c, sv, at),
                        bytes: b,
                        phase: "change",
                    });
                }
                if delete && let Some((sample, bytes, _)) = template("UPPLAN_", sv.kind) {
                    // The first user of the plan is withdrawn from this office for the month.
                    let first = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
                    let f: Vec<&[u8]> = first.split(|b| *b == b',').collect();
                    if f.len() > 2 {
                        let row = [f[0], f[1], f[2], b"202610"].join(&b","[..]);
                        let name =
                            name_of(sample, c, sv, at + 60_000).replacen("UPPLAN_", "DLTPLAN_", 1);
                        out.push(Drop {
                            at_ms: at + 60_000,
                            from: cm,
                            to: p,
                            name,
                            bytes: [row, b"\r\n".to_vec()].concat(),
                            phase: "delete",
                        });
                    }
                }
            }
        }
    }
    if w.actuals_day > 0 {
        // Each service office sends its 実績 to every care-management office it works for.
        let mut by_service: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (&cm, partners) in &pop.partners {
            for &p in partners {
                by_service.entry(p).or_default().push(cm);
            }
        }
        for (sv, cms) in by_service {
            let at = office_minute(&mut rng, w.actuals_day);
            let s_office = &pop.offices[sv];
            for cm in cms {
                let c = &pop.offices[cm];
                if let Some((sample, bytes, from_sv)) = template("UPJSK_", s_office.kind) {
                    let b = repeat_users(
                        &renumber(bytes, &c.number, from_sv, &s_office.number),
                        copies,
                    );
                    out.push(Drop {
                        at_ms: at,
                        from: sv,
                        to: cm,
                        name: name_of(sample, s_office, c, at),
                        bytes: b,
                        phase: "actual",
                    });
                }
            }
        }
    }
    out.sort_by(|a, b| a.at_ms.cmp(&b.at_ms).then_with(|| a.name.cmp(&b.name)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_calendar_starts_on_27_september_2026() {
        assert_eq!(stamp(0), "20260927000000");
        assert_eq!(stamp((86400 + 9 * 3600 + 61) * 1000), "20260928090101");
        assert_eq!(stamp(4 * 86_400_000), "20261001000000");
        assert_eq!(stamp(36 * 86_400_000), "20261102000000");
    }

    #[test]
    fn every_file_of_a_month_is_a_valid_standard_file() {
        let s = super::super::scenario::Scenario::parse(
            "seed = 5\n[federation]\ncare_management = 3\nservice = 7\nregions = 2\npartners_per_cm = 3\nusers_per_cm = 40\n[workload]\nchanges = 1.0\ndeletes = 1.0\n",
            "t",
        )
        .unwrap();
        let pop = Population::of(&s);
        let files = month(&s, &pop);
        let mut phases = std::collections::BTreeSet::new();
        for d in &files {
            let report = renkei_protocol::check::check_bytes(&d.name, &d.bytes);
            assert!(report.is_valid(), "{}: {:?}", d.name, report.codes());
            let name = renkei_protocol::FileName::parse(&d.name).unwrap();
            assert_eq!(name.from.office.as_str(), pop.offices[d.from].number);
            assert_eq!(name.to.office.as_str(), pop.offices[d.to].number);
            assert_eq!(pop.offices[d.from].region, pop.offices[d.to].region);
            phases.insert(d.phase);
        }
        assert_eq!(phases.len(), 4, "{phases:?}");
        let names: std::collections::BTreeSet<_> = files.iter().map(|d| &d.name).collect();
        assert_eq!(names.len(), files.len(), "names are unique");
        // The same seed, the same month.
        let again = month(&s, &Population::of(&s));
        assert!(
            files
                .iter()
                .zip(&again)
                .all(|(a, b)| a.name == b.name && a.bytes == b.bytes)
        );
    }
}
