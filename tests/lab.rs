//! `renkei lab run` on every example scenario (examples/lab/), through the real binary: each
//! month ends with nothing lost, nothing duplicated and no file content left anywhere it
//! should not be, and the same seed gives the same report.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/lab")
        .join(format!("{name}.toml"))
}

/// Runs a scenario; returns its report and the process's exit status.
fn run(name: &str, out: &Path, html: bool) -> (Value, Option<i32>) {
    let report = out.join(format!("{name}.json"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_renkei"));
    cmd.args(["lab", "run"])
        .arg(example(name))
        .arg("--report")
        .arg(&report);
    if html {
        cmd.arg("--html").arg(out.join(format!("{name}.html")));
    }
    let o = cmd.output().unwrap();
    assert!(
        report.exists(),
        "{name}: no report; stderr:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    (v, o.status.code())
}

fn n(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}"))
}

fn effect<'a>(v: &'a Value, kind: &str) -> &'a Value {
    &v["faults"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} fault"))["effects"]
}

/// The report without its `run` part (wall-clock time, memory, the temporary folder).
fn reproducible(mut v: Value) -> Value {
    v.as_object_mut().unwrap().remove("run");
    v
}

const ALL: [&str; 7] = [
    "calm",
    "month-end-30pct-off",
    "directory-outage-day",
    "loss-and-partitions",
    "revocation-mid-month",
    "mailbox-lost",
    "crash-and-skew",
];

#[test]
fn every_example_month_ends_with_nothing_lost_duplicated_or_left_behind() {
    let out = tempfile::tempdir().unwrap();
    // Two at a time (each run is one process on one thread).
    let mut reports = std::collections::BTreeMap::new();
    for pair in ALL.chunks(2) {
        let runs: Vec<_> = pair
            .iter()
            .map(|name| {
                let dir = out.path().to_path_buf();
                let name = name.to_string();
                std::thread::spawn(move || (name.clone(), run(&name, &dir, true)))
            })
            .collect();
        for r in runs {
            let (name, (v, code)) = r.join().unwrap();
            reports.insert(name, (v, code));
        }
    }
    for (name, (v, code)) in &reports {
        assert_eq!(n(v, "lost"), 0, "{name}: lost");
        assert_eq!(n(v, "duplicates"), 0, "{name}: duplicates");
        assert_eq!(
            n(v, "residual_bytes"),
            0,
            "{name}: residual {}",
            v["residual_files"]
        );
        assert!(n(v, "sent") > 40, "{name}: a month's files were sent");
        assert_eq!(
            n(v, "sent"),
            n(v, "delivered") + n(v, "rejected") + n(v, "expired") + n(v, "pending"),
            "{name}: every file is accounted for"
        );
        assert_eq!(*code, Some(0), "{name}: exit code");
        let html = std::fs::read_to_string(out.path().join(format!("{name}.html"))).unwrap();
        assert!(html.starts_with("<!DOCTYPE html>") && html.matches("<svg").count() == 4);
        assert!(
            !html.contains("http://")
                || html.matches("http://").count()
                    == html.matches("http://www.w3.org/2000/svg").count(),
            "{name}: no network asset"
        );
    }
    let r = |name: &str| &reports[name].0;
    // Faultless months deliver everything, directly.
    assert_eq!(r("calm")["by_path"]["mailbox"], 0);
    for name in ["calm", "crash-and-skew"] {
        assert_eq!(n(r(name), "delivered"), n(r(name), "sent"), "{name}");
    }
    for name in [
        "month-end-30pct-off",
        "directory-outage-day",
        "loss-and-partitions",
    ] {
        assert_eq!(n(r(name), "delivered"), n(r(name), "sent"), "{name}");
        // Offices off, or cut off, got their files through the mailbox.
        assert!(
            r(name)["by_path"]["mailbox"].as_u64().unwrap() > 0,
            "{name}"
        );
    }
    // Offices off for days leave envelopes in the mailbox across samples; a partitioned
    // office's partners may take theirs within one move of the clock (not sampled).
    for name in ["month-end-30pct-off", "directory-outage-day"] {
        assert!(n(r(name), "peak_mailbox_bytes") > 0, "{name}");
    }
    assert!(
        effect(r("loss-and-partitions"), "partition")["dials_cut"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert_eq!(effect(r("crash-and-skew"), "crash")["restarts"], 1);
    // Files to the revoked office come back to their senders; its own stay in its outbox.
    let rev = r("revocation-mid-month");
    let revoke = effect(rev, "revoke");
    assert!(n(rev, "rejected") > 0);
    assert_eq!(revoke["rejected_of_hit"], rev["rejected"]);
    assert_eq!(revoke["pending_of_hit"], rev["pending"]);
    // The lost mailbox: every file that was in it was delivered again or reported expired.
    let lost = effect(r("mailbox-lost"), "mailbox-lost");
    let affected = lost["files_affected"].as_u64().unwrap();
    assert!(affected > 0, "{lost}");
    assert_eq!(
        lost["resent"].as_u64().unwrap() + lost["expired"].as_u64().unwrap(),
        affected,
        "{lost}"
    );
    assert_eq!(lost["lost"], 0);
    assert_eq!(lost["pending"], 0);
}

#[test]
fn the_same_seed_gives_the_same_report() {
    // Every example twice, both runs at once (so the two also compete for the computer, as
    // runs on a busy machine do): every figure, series and fault effect the same.
    for name in ALL {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let (x, y) = (a.path().to_path_buf(), b.path().to_path_buf());
        let first = std::thread::spawn(move || run(name, &x, false).0);
        let second = run(name, &y, false).0;
        let first = first.join().unwrap();
        assert!(n(&first, "delivered") > 0, "{name}");
        let (first, second) = (reproducible(first), reproducible(second));
        if first != second {
            let (f, s) = (first.as_object().unwrap(), second.as_object().unwrap());
            let differ: Vec<&String> = f.keys().filter(|k| f.get(*k) != s.get(*k)).collect();
            panic!("{name}: two runs of one seed differ in {differ:?}");
        }
    }
}

#[test]
fn a_bad_scenario_is_refused_with_a_message_in_both_languages() {
    let dir = tempfile::tempdir().unwrap();
    let s = dir.path().join("bad.toml");
    std::fs::write(
        &s,
        "[federation]\ncare_management = 1\nservice = 2\n[[fault]]\nkind = \"meteor\"\nat = \"day 2 10:00\"\n",
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_renkei"))
        .args(["lab", "run"])
        .arg(&s)
        .arg("--report")
        .arg(dir.path().join("r.json"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("シナリオ") && err.contains("scenario") && err.contains("meteor"),
        "{err}"
    );
    assert!(!dir.path().join("r.json").exists());
}
