//! `renkei reconcile` as a care-management office runs it: on the bundled sample month, on an
//! office's home (`sent/` and `inbox/`), with the CSV for Excel, and with the mistakes a clerk
//! makes (exit 2 with a message in Japanese and English).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn renkei() -> Command {
    Command::new(env!("CARGO_BIN_EXE_renkei"))
}

fn sample_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/month-202610")
}

fn sample_names() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(sample_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".CSV"))
        .collect();
    v.sort();
    v
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).unwrap()
}

/// The lines that carry a ☆, without their leading spaces.
fn starred(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.contains('☆'))
        .map(|l| l.trim_start().to_string())
        .collect()
}

/// The differences of the sample month, as `renkei reconcile` prints them (examples/month-202610
/// README: 山田's cancelled visit, 鈴木's changed time and cancelled day service, 佐藤's and
/// 田中's changed times).
const SAMPLE_DIFFERENCES: [&str; 7] = [
    "☆ 予定のみ（実績なし）   予定 16日 10:00-10:50 117311 ×1 220単位",
    "☆ 時刻変更               予定 7日 08:00-08:25 111111 ×1 244単位 → 実績 7日 08:10-08:35 111111 ×1 244単位",
    "☆ 予定のみ（実績なし）   予定 14日 09:15-16:30 152443 ×1 900単位",
    "☆ 予定のみ（実績なし）   予定 14日 09:15-16:30 155301 ×1 40単位",
    "☆ 時刻変更               予定 22日 09:30-16:45 152441 ×1 658単位 → 実績 22日 09:40-16:45 152441 ×1 658単位",
    "☆ 時刻変更               予定 22日 09:30-16:45 155051 ×1 56単位 → 実績 22日 09:40-16:45 155051 ×1 56単位",
    "☆ 時刻変更               予定 21日 11:30-12:15 111211 ×1 387単位 → 実績 21日 11:40-12:25 111211 ×1 387単位",
];

#[test]
fn the_sample_month_prints_its_differences() {
    let out = renkei()
        .arg("reconcile")
        .arg(sample_dir())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("予定・実績の突合 2026年10月（対象年月 202610）\n"),
        "{text}"
    );
    let differences: Vec<String> = starred(&text)
        .into_iter()
        .filter(|l| l.starts_with("☆ 予定") || l.starts_with("☆ 時刻"))
        .collect();
    assert_eq!(differences, SAMPLE_DIFFERENCES, "{text}");
    let headings: Vec<String> = starred(&text)
        .into_iter()
        .filter(|l| l.starts_with("☆ 131"))
        .collect();
    assert_eq!(
        headings,
        [
            "☆ 131016 0000123451 山田　花子 — 1310000011 さくら訪問介護ステーション: 相違あり（予定 3,528 単位 / 実績 3,308 単位 ☆）",
            "☆ 131016 0000123469 鈴木　一郎 — 1310000011 さくら訪問介護ステーション: 相違あり（予定 5,368 単位 / 実績 5,368 単位）",
            "☆ 131016 0000123469 鈴木　一郎 — 1310000021 けやきデイサービスセンター: 相違あり（予定 8,460 単位 / 実績 7,520 単位 ☆）",
            "☆ 131016 0000123477 佐藤　トメ — 1310000021 けやきデイサービスセンター: 相違あり（予定 6,426 単位 / 実績 6,426 単位）",
            "☆ 131016 H000000521 田中　ヨシ子 — 1310000011 さくら訪問介護ステーション: 相違あり（予定 5,911 単位 / 実績 5,911 単位）",
        ]
    );
    assert!(text.contains("  1310000031  あおば福祉用具"), "{text}");
    assert!(
        text.ends_with(
            "結果: 相違あり ☆ — 利用者・事業所 5 組に相違 7 件、一致 6 組（--all で一覧）\n"
        ),
        "{text}"
    );

    // The same in English, and with the matching pairs listed.
    let out = renkei()
        .args(["reconcile", "--english", "--all"])
        .arg(sample_dir())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains(
        "☆ changed: time            plan day 7 08:00-08:25 111111 ×1 244 units → actual day 7 08:10-08:35 111111 ×1 244 units"
    ), "{text}");
    assert!(text.contains(
        "  131042 0000567891 高橋　正男 — 1310000011 さくら訪問介護ステーション: match (planned 2,587 units / actual 2,587 units)"
    ), "{text}");
    assert!(text.ends_with("Result: differences ☆ — 7 in 5 user-office pairs; 6 pairs match\n"));
}

/// An office home as `renkei init` leaves it, with the month's files where the node keeps them:
/// what it sent in `sent/`, what it received in `inbox/`.
fn care_management_home(dir: &Path) -> PathBuf {
    let home = dir.join("home");
    for sub in ["sent", "inbox"] {
        std::fs::create_dir_all(home.join(sub)).unwrap();
    }
    std::fs::write(home.join("renkei.toml"), "office = \"1310000001\"\n").unwrap();
    for name in sample_names() {
        let to = if name.starts_with("UPJSK") {
            "inbox"
        } else {
            "sent"
        };
        std::fs::copy(sample_dir().join(&name), home.join(to).join(&name)).unwrap();
    }
    // Not a care-plan file: passed over.
    std::fs::write(home.join("inbox").join("readme.txt"), "x").unwrap();
    home
}

#[test]
fn an_offices_home_is_read_from_sent_and_inbox_and_written_as_csv() {
    let tmp = tempfile::tempdir().unwrap();
    let home = care_management_home(tmp.path());
    let csv = tmp.path().join("突合.csv");
    let out = renkei()
        .args(["reconcile", "--month", "202610", "--home"])
        .arg(&home)
        .arg("--csv")
        .arg(&csv)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    let differences: Vec<String> = starred(&text)
        .into_iter()
        .filter(|l| l.starts_with("☆ 予定") || l.starts_with("☆ 時刻"))
        .collect();
    assert_eq!(differences, SAMPLE_DIFFERENCES);

    // CP932 by default: Excel on a Japanese Windows opens it as it is.
    let bytes = std::fs::read(&csv).unwrap();
    let (csv_text, _, bad) = encoding_rs::SHIFT_JIS.decode(&bytes);
    assert!(!bad);
    let lines: Vec<&str> = csv_text.split_terminator("\r\n").collect();
    assert_eq!(lines.len(), 1 + 11 + 7);
    assert!(lines[0].starts_with("対象年月,保険者番号,被保険者番号"));
    assert!(
        lines
            .iter()
            .any(|l| l.contains("山田　花子") && l.contains("予定のみ"))
    );

    // UTF-8 with a byte-order mark, in English, and JSON on stdout.
    let out = renkei()
        .args(["reconcile", "--json", "--english", "--utf8", "--home"])
        .arg(&home)
        .args(["--month", "202610", "--csv"])
        .arg(&csv)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let bytes = std::fs::read(&csv).unwrap();
    assert!(bytes.starts_with(&[0xEF, 0xBB, 0xBF]));
    assert!(
        std::str::from_utf8(&bytes[3..])
            .unwrap()
            .starts_with("month,insurer,")
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["month"], "202610");
    assert_eq!(json["users"].as_array().unwrap().len(), 5);
    assert_eq!(json["offices"][0]["office"], "1310000011");
    assert_eq!(json["offices"][0]["differing"], 3);
    assert_eq!(json["inputs"].as_array().unwrap().len(), 12);
}

#[test]
fn actuals_equal_to_the_plan_exit_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let home = care_management_home(tmp.path());
    // Each office's 実績 is its lines of the plan it received.
    for name in sample_names()
        .into_iter()
        .filter(|n| n.starts_with("UPJSK"))
    {
        let parts: Vec<&str> = name.split('_').collect();
        let (office, kind) = (parts[2], parts[3]);
        let plan = format!("UPPLAN_202610_1310000001_43_{office}_{kind}_20260928103000.CSV");
        let raw = std::fs::read(sample_dir().join(plan)).unwrap();
        let (text, _, _) = encoding_rs::SHIFT_JIS.decode(&raw);
        let mut out = String::new();
        for line in text.split_terminator("\r\n") {
            let f: Vec<&str> = line.split(',').collect();
            if f[19] == office {
                out.push_str(line);
                out.push_str("\r\n");
            }
        }
        let bytes = encoding_rs::SHIFT_JIS.encode(&out).0.into_owned();
        std::fs::write(home.join("inbox").join(&name), bytes).unwrap();
    }
    let out = renkei()
        .args(["reconcile", "--month", "202610", "--home"])
        .arg(&home)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(starred(&text).is_empty(), "{text}");
    assert!(
        text.ends_with("結果: すべて一致（利用者・事業所 11 組）\n"),
        "{text}"
    );
}

#[test]
fn mistakes_exit_2_with_a_message_in_both_languages() {
    let tmp = tempfile::tempdir().unwrap();
    let home = care_management_home(tmp.path());
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec![], "--home"),
        (
            vec![
                "--home".into(),
                home.display().to_string(),
                "--month".into(),
                "2026-10".into(),
            ],
            "YYYYMM",
        ),
        (
            vec![
                "--home".into(),
                home.display().to_string(),
                "--month".into(),
                "202611".into(),
            ],
            "202611",
        ),
        (
            vec!["--home".into(), tmp.path().display().to_string()],
            "renkei.toml",
        ),
        (
            vec![tmp.path().join("plan.csv").display().to_string()],
            "standard-spec",
        ),
        (
            vec![
                tmp.path()
                    .join("UPJSK_202610_1310000011_11_1310000001_43_20261102090000.CSV")
                    .display()
                    .to_string(),
            ],
            "Cannot read",
        ),
    ];
    // A file under another name, and one that cannot be read (a FIFO is never opened).
    std::fs::write(tmp.path().join("plan.csv"), "x").unwrap();
    let fifo = tmp
        .path()
        .join("UPJSK_202610_1310000011_11_1310000001_43_20261102090000.CSV");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let cases = cases.into_iter().chain([
        (
            vec![tmp.path().join("plan.csv").display().to_string()],
            "standard-spec",
        ),
        (vec![fifo.display().to_string()], "Cannot read"),
    ]);
    for (args, says) in cases {
        let out = renkei().arg("reconcile").args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stdout(&out));
        let err = stderr(&out);
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(
            err.contains("。") && err.contains("/ "),
            "{args:?}: Japanese and English: {err}"
        );
        assert!(stdout(&out).is_empty());
    }

    // Files of two months and no --month: the months are named.
    std::fs::copy(
        sample_dir().join("UPPLAN_202610_1310000001_43_1310000011_11_20260928103000.CSV"),
        tmp.path()
            .join("UPPLAN_202611_1310000001_43_1310000011_11_20261028103000.CSV"),
    )
    .unwrap();
    let out = renkei()
        .arg("reconcile")
        .arg(sample_dir())
        .arg(
            tmp.path()
                .join("UPPLAN_202611_1310000001_43_1310000011_11_20261028103000.CSV"),
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("202610, 202611"), "{}", stderr(&out));

    // --help says what the exit status means.
    let out = renkei().args(["reconcile", "--help"]).output().unwrap();
    assert!(stdout(&out).contains("exit 0: all match, 1: differences found, 2:"));
}
