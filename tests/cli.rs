//! `renkei check` and `renkei directory verify` as a clerk or an operator runs them.

mod common;

use std::path::{Path, PathBuf};

use common::*;

fn samples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/month-202610");
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "CSV"))
        .collect();
    v.sort();
    v
}

#[test]
fn check_says_ok_for_the_samples() {
    let out = renkei().arg("check").args(samples()).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().filter(|l| l.starts_with("ok  ")).count(), 24);
}

#[test]
fn check_reports_line_field_code_and_both_messages() {
    let tmp = tempfile::tempdir().unwrap();
    let src = samples()
        .into_iter()
        .find(|p| {
            p.to_string_lossy()
                .contains("UPPLAN_202610_1310000001_43_1310000011")
        })
        .unwrap();
    let text = encoding_rs::SHIFT_JIS
        .decode(&std::fs::read(&src).unwrap())
        .0
        .into_owned();
    // Break the service date (field 10) of the third record.
    let mut lines: Vec<String> = text.split("\r\n").map(String::from).collect();
    let mut f: Vec<String> = lines[2].split(',').map(String::from).collect();
    f[9] = "20261032".into();
    lines[2] = f.join(",");
    let broken = tmp.path().join(src.file_name().unwrap());
    std::fs::write(
        &broken,
        encoding_rs::SHIFT_JIS.encode(&lines.join("\r\n")).0,
    )
    .unwrap();

    let out = renkei()
        .args(["check", "--json"])
        .arg(&broken)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let reports: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let r = &reports[0];
    assert_eq!(r["kind"], "UPPLAN");
    assert_eq!(r["valid"], false);
    let e = &r["errors"][0];
    assert_eq!(
        (e["line"].as_u64(), e["field"].as_u64(), e["code"].as_str()),
        (Some(3), Some(10), Some("DATE"))
    );
    assert!(e["message_ja"].as_str().unwrap().contains("サービス利用日"));
    assert!(e["message_en"].as_str().unwrap().contains("20261032"));

    let out = renkei().arg("check").arg(&broken).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("line 3 field 10 [DATE]"), "{text}");
}

#[test]
fn check_usage_errors_exit_2() {
    assert_eq!(
        renkei().arg("check").output().unwrap().status.code(),
        Some(2)
    );
    assert_eq!(
        renkei()
            .args(["check", "/nonexistent/UPPLAN.CSV"])
            .output()
            .unwrap()
            .status
            .code(),
        Some(2)
    );
    // A missing file among good ones: the others are still checked and shown.
    let good = &samples()[0];
    let out = renkei()
        .arg("check")
        .arg(good)
        .arg("/nonexistent/UPPLAN.CSV")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("ok  {}", good.display())));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent/UPPLAN.CSV"));
}

#[test]
fn directory_verify_accepts_good_and_names_the_reason_for_bad() {
    let fed = federation(&[("1310000001", "43", true)]);
    renkei_node::admin::publish(&fed.region, &fed.published).unwrap();
    let mut snaps: Vec<PathBuf> = std::fs::read_dir(&fed.published)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "snapshot"))
        .collect();
    snaps.sort();
    assert_eq!(snaps.len(), 2);
    let verify = |files: &[&Path]| {
        renkei()
            .args(["directory", "verify", "--anchor"])
            .arg(&fed.anchor)
            .args(files)
            .output()
            .unwrap()
    };

    let out = verify(&[&snaps[0], &snaps[1]]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // Rollback: the newer one first.
    let out = verify(&[&snaps[1], &snaps[0]]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("rollback"));

    // A tampered entry.
    let tmp = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(&snaps[1]).unwrap();
    let n = bytes.len();
    bytes[n - 5] ^= 1;
    let bad = tmp.path().join("bad.snapshot");
    std::fs::write(&bad, &bytes).unwrap();
    let out = verify(&[&bad]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("forged or altered"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // Not a snapshot at all.
    let junk = tmp.path().join("junk.snapshot");
    std::fs::write(&junk, b"hello").unwrap();
    let out = verify(&[&junk]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("unknown format"));

    // Signed under another federation's root.
    let other = federation(&[("1310000001", "43", true)]);
    let theirs = std::fs::read_dir(&other.published)
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let out = verify(&[&theirs]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("not signed by a root"));
}

/// A federation anchor and a directory node key made in `dir` with the CLI, as an association
/// does; returns the anchor's path and the directory node's multiaddr.
fn association(dir: &Path) -> (PathBuf, String) {
    run_ok(
        renkei()
            .args(["directory", "root-init", "--out", "federation"])
            .current_dir(dir),
    );
    // A bare file name, as the README writes it.
    let out = run_ok(
        renkei()
            .args(["directory", "node-init", "--out", "dn.key"])
            .current_dir(dir),
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let peer = text
        .lines()
        .find_map(|l| l.strip_prefix("peer id "))
        .expect("node-init prints the peer id")
        .trim()
        .to_string();
    // A second node-init would replace the key the region lists: refused.
    let again = renkei()
        .args(["directory", "node-init", "--out", "dn.key"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists already"));
    (
        dir.join("federation/anchor.json"),
        format!("/ip4/127.0.0.1/tcp/4700/p2p/{peer}"),
    )
}

fn init_office(home: &Path, extra: &[&str]) -> std::process::Output {
    renkei()
        .args([
            "init",
            "--office",
            "1310000001",
            "--name",
            "ひかり居宅介護支援事業所",
            "--kind",
            "43",
            "--home",
        ])
        .arg(home)
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn init_creates_owner_only_keys_and_a_signed_enrollment() {
    let tmp = tempfile::tempdir().unwrap();
    let (anchor, dn) = association(tmp.path());
    let anchor = anchor.to_str().unwrap();
    let home = tmp.path().join("office");
    let out = init_office(
        &home,
        &[
            "--anchor",
            anchor,
            "--directory-node",
            &dn,
            "--listen",
            "/ip4/127.0.0.1/tcp/4701",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    use std::os::unix::fs::PermissionsExt;
    for k in ["identity.key", "encryption.key"] {
        let mode = std::fs::metadata(home.join("keys").join(k))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{k}");
    }
    let req: renkei_directory::EnrollmentRequest =
        serde_json::from_str(&std::fs::read_to_string(home.join("enrollment.json")).unwrap())
            .unwrap();
    req.verify().unwrap();
    assert_eq!(req.addresses, vec!["/ip4/127.0.0.1/tcp/4701".to_string()]);
    // A second init into the same home is refused and changes nothing.
    let again = init_office(&home, &["--anchor", anchor, "--directory-node", &dn]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already has keys"));
    // Bad input gets a clear error in both languages.
    let bad = renkei()
        .args([
            "init", "--office", "13", "--name", "x", "--kind", "43", "--home",
        ])
        .arg(tmp.path().join("b"))
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("10桁") && err.contains("10-digit"), "{err}");
    // Mistakes found before anything is written: the home can then be made right away.
    let half = tmp.path().join("half");
    let everywhere = dn.replace("127.0.0.1", "0.0.0.0");
    for (extra, ja, en) in [
        (
            vec!["--anchor", anchor, "--directory-node", everywhere.as_str()],
            "0.0.0.0",
            "cannot be dialled",
        ),
        (
            vec!["--directory-node", dn.as_str()],
            "--anchor",
            "--anchor",
        ),
        (
            vec!["--anchor", "nope.json", "--directory-node", dn.as_str()],
            "読めません",
            "cannot read the anchor",
        ),
        (vec!["--anchor", anchor], "名簿サーバー", "directory node"),
        (
            vec![
                "--anchor",
                anchor,
                "--directory-node",
                "/ip4/127.0.0.1/tcp/4700",
            ],
            "/p2p/",
            "/p2p/",
        ),
        (
            vec![
                "--anchor",
                anchor,
                "--directory-node",
                &dn,
                "--listen",
                "127.0.0.1:4000",
            ],
            "アドレス",
            "not a multiaddr",
        ),
    ] {
        let out = init_office(&half, &extra);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {err}");
        assert!(err.contains(ja) && err.contains(en), "{extra:?}: {err}");
        assert!(!half.exists(), "{extra:?} left a half-made home");
    }
    // Listening on every interface with nothing to advertise: no address is signed into the
    // enrollment, and the office is told.
    let out = init_office(&half, &["--anchor", anchor, "--directory-node", &dn]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--advertise"));
    let req: renkei_directory::EnrollmentRequest =
        serde_json::from_str(&std::fs::read_to_string(half.join("enrollment.json")).unwrap())
            .unwrap();
    assert!(req.addresses.is_empty(), "{:?}", req.addresses);
    // --advertise names what partners dial.
    let adv = tmp.path().join("adv");
    let out = init_office(
        &adv,
        &[
            "--anchor",
            anchor,
            "--directory-node",
            &dn,
            "--advertise",
            "/ip4/192.0.2.10/tcp/4701",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let req: renkei_directory::EnrollmentRequest =
        serde_json::from_str(&std::fs::read_to_string(adv.join("enrollment.json")).unwrap())
            .unwrap();
    assert_eq!(req.addresses, vec!["/ip4/192.0.2.10/tcp/4701".to_string()]);
    // Without --listen the node listens at the advertised ports (TCP as TCP, UDP as QUIC).
    let other = tmp.path().join("other-port");
    let out = init_office(
        &other,
        &[
            "--anchor",
            anchor,
            "--directory-node",
            &dn,
            "--advertise",
            "/ip4/192.0.2.10/tcp/14799",
            "--advertise",
            "/ip4/192.0.2.10/udp/14799/quic-v1",
        ],
    );
    assert!(out.status.success());
    let config = renkei_node::home::Home::new(other).config().unwrap();
    assert_eq!(
        config.listen,
        ["/ip4/0.0.0.0/tcp/14799", "/ip4/0.0.0.0/udp/14799/quic-v1"]
    );
    // With --listen on another port, the office is warned that partners may not reach it.
    let out = init_office(
        &tmp.path().join("mismatch"),
        &[
            "--anchor",
            anchor,
            "--directory-node",
            &dn,
            "--listen",
            "/ip4/0.0.0.0/tcp/4701",
            "--advertise",
            "/ip4/192.0.2.10/tcp/14799",
        ],
    );
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("does not listen on the port") && err.contains("待ち受けません"),
        "{err}"
    );
}

#[test]
fn status_and_receipts_refuse_a_folder_that_is_not_a_home() {
    let tmp = tempfile::tempdir().unwrap();
    for cmd in ["status", "receipts"] {
        let out = renkei()
            .args([cmd, "--home"])
            .arg(tmp.path().join("typo"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{cmd}: {err}");
        assert!(
            err.contains("not a renkei home") && err.contains("ホームフォルダ"),
            "{err}"
        );
    }
}

/// `renkei directory set-mailboxes`: names an office's mailbox nodes, refuses what the
/// directory could not carry, and the next publish is a format 2 file (SPEC.md §6.3).
#[test]
fn set_mailboxes_names_nodes_and_makes_the_next_publish_format_2() {
    let fed = federation(&[("1310000001", "43", true)]);
    let node = hex::encode(
        renkei_node::admin::read_secret(&fed.dn_key)
            .unwrap()
            .verifying_key()
            .to_bytes(),
    );
    let set = |office: &str, nodes: &[&str]| {
        let mut c = renkei();
        c.args(["directory", "set-mailboxes", "--office", office])
            .arg("--region")
            .arg(&fed.region);
        for n in nodes {
            c.args(["--node", n]);
        }
        c.output().unwrap()
    };
    let refused = |out: std::process::Output, says: &str| {
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{err}");
    };
    refused(set("1310000001", &["zz"]), "64 hex digits");
    refused(set("1310000099", &[&node]), "not in this region");
    let others: Vec<String> = (1..=5u8).map(|i| hex::encode([i; 32])).collect();
    let five: Vec<&str> = others.iter().map(String::as_str).collect();
    refused(set("1310000001", &five), "more than 4");
    run_ok(
        renkei()
            .args([
                "directory",
                "set-mailboxes",
                "--office",
                "1310000001",
                "--node",
                &node,
            ])
            .arg("--region")
            .arg(&fed.region),
    );
    let publish = || {
        let out = run_ok(
            renkei()
                .args(["directory", "publish", "--region"])
                .arg(&fed.region)
                .arg("--out")
                .arg(&fed.published),
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let snapshot = text
            .split_whitespace()
            .find(|w| w.ends_with(".snapshot"))
            .expect("publish names the snapshot")
            .to_string();
        std::fs::read(snapshot).unwrap()
    };
    assert_eq!(publish()[7], 2);
    // No --node: the region's nodes again, and format 1.
    run_ok(
        renkei()
            .args(["directory", "set-mailboxes", "--office", "1310000001"])
            .arg("--region")
            .arg(&fed.region),
    );
    assert_eq!(publish()[7], 1);
}

/// Many files (more than 20) would get a progress bar on a terminal; with stderr going to a
/// program (as here, or in a service's log) nothing of it is written.
#[test]
fn check_of_many_files_writes_no_progress_when_stderr_is_not_a_terminal() {
    let files = samples();
    assert!(files.len() > 20, "enough files for a bar");
    let out = renkei().arg("check").args(&files).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `renkei install-service` writes the unit with the office's user and home, readable by all
/// (0644), says what is left to run as root, and never replaces a changed unit unless told.
#[test]
#[cfg(unix)]
fn install_service_writes_the_unit_and_keeps_a_changed_one_unless_forced() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let install = |extra: &[&str]| {
        renkei()
            .arg("install-service")
            .arg("--unit-dir")
            .arg(dir.path())
            .args(["--user", "kaigo", "--home", "/var/lib/kaigo"])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = install(&[]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{text}");
    let unit_path = dir.path().join("renkei.service");
    let unit = std::fs::read_to_string(&unit_path).unwrap();
    assert!(unit.contains("\nUser=kaigo\nGroup=kaigo\n"), "{unit}");
    assert!(unit.contains("\nExecStart=/usr/local/bin/renkei run --home /var/lib/kaigo\n"));
    assert!(unit.contains("\nReadWritePaths=/var/lib/kaigo\n"));
    assert!(!unit.contains("/srv/renkei"), "{unit}");
    let mode = std::fs::metadata(&unit_path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o644);
    // The steps left, in both languages, naming this user and home.
    for s in [
        "useradd --system --home-dir /var/lib/kaigo --shell /usr/sbin/nologin kaigo",
        "systemctl daemon-reload",
        "systemctl enable --now renkei",
        "残りの手順",
        "Remaining steps",
    ] {
        assert!(text.contains(s), "{s} in {text}");
    }
    // Again, the same: unchanged, fine.
    let out = install(&[]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("unchanged"));
    // Someone changed the unit: it is kept, and the office is told how to replace it.
    let changed = format!("{unit}# a local change\n");
    std::fs::write(&unit_path, &changed).unwrap();
    let out = install(&[]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("--force") && err.contains("別の内容"), "{err}");
    assert_eq!(std::fs::read_to_string(&unit_path).unwrap(), changed);
    // With --force it is replaced.
    let out = install(&["--force"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(std::fs::read_to_string(&unit_path).unwrap(), unit);
    // A folder it cannot write: a clear refusal, not a panic.
    let out = renkei()
        .args(["install-service", "--unit-dir", "/nonexistent/systemd"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--unit-dir"));
}
