//! Shared harness of the integration tests: a federation on disk, `renkei` processes on
//! loopback, and checks an office would make.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use renkei_node::federation::tune_for_loopback;
use renkei_node::home::Home;
use renkei_protocol::FileKind;
use renkei_protocol::check::{CsvVersion, Format, layout};

/// The `renkei` binary under test.
pub(crate) fn renkei() -> Command {
    Command::new(env!("CARGO_BIN_EXE_renkei"))
}

/// Runs a `renkei` command to its end and asserts it succeeded (showing its stderr if not).
pub(crate) fn run_ok(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{:?}: {}",
        cmd.get_args().collect::<Vec<_>>(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A child process killed when dropped.
pub(crate) struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub(crate) fn spawn(mut cmd: Command, log: &Path) -> Proc {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let err = out.try_clone().unwrap();
        // RENKEI_TEST_LOG overrides the nodes' log filter, e.g. to see libp2p's debug lines.
        let filter =
            std::env::var("RENKEI_TEST_LOG").unwrap_or_else(|_| "renkei_node=debug,warn".into());
        cmd.env("RENKEI_LOG", filter)
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        Proc {
            child: cmd.spawn().expect("start renkei"),
            log: log.to_path_buf(),
        }
    }

    /// SIGKILL: no clean shutdown.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a clean exit.
    pub(crate) fn terminate(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
    }

    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `f` until it holds or `timeout` passes.
pub(crate) fn wait_for(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    assert!(f(), "timed out waiting for: {what}");
}

pub(crate) use renkei_node::federation::Office;

/// A region with a directory node, and offices enrolled in it, built by the one federation
/// builder (`renkei_node::federation`); the nodes run as `renkei` processes.
pub(crate) struct Federation {
    pub plan: renkei_node::federation::Federation,
    pub dir: PathBuf,
    /// The region's authority folder.
    pub region: PathBuf,
    /// Where the region publishes (what the directory node serves).
    pub published: PathBuf,
    pub anchor: PathBuf,
    pub dn_key: PathBuf,
    pub dn_addr: String,
    pub dn_multiaddr: String,
    pub offices: Vec<Office>,
    _tmp: Option<tempfile::TempDir>,
}

/// Builds a federation: root, region 13-tokyo, a directory node, and the given offices
/// (number, kinds joined by `+`); `enrolled` says which are approved.
pub(crate) fn federation(offices: &[(&str, &str, bool)]) -> Federation {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    // RENKEI_TEST_KEEP=1 keeps the folders (and the nodes' logs) for a look after a failure.
    let tmp = if std::env::var_os("RENKEI_TEST_KEEP").is_some() {
        eprintln!("test federation in {}", dir.display());
        let _ = tmp.keep();
        None
    } else {
        Some(tmp)
    };
    let mut b = renkei_node::federation::Federation::builder(&dir).tune(|c| {
        tune_for_loopback(c);
        c.directory_refresh_secs = 1;
    });
    for (number, kind, enrolled) in offices {
        let kinds: Vec<&str> = kind.split('+').collect();
        b = b.office_enrolled(number, &format!("テスト事業所 {number}"), &kinds, *enrolled);
    }
    let plan = b.create().unwrap();
    let dn = &plan.directory_nodes[0];
    Federation {
        dir,
        region: plan.regions[0].folder.clone(),
        published: plan.regions[0].published.clone(),
        anchor: plan.anchor.clone(),
        dn_key: dn.key_file.clone(),
        dn_addr: dn.addr.clone(),
        dn_multiaddr: dn.multiaddr.clone(),
        offices: plan.offices.clone(),
        plan,
        _tmp: tmp,
    }
}

impl Federation {
    pub(crate) fn directory_node(&self) -> Proc {
        let mut c = renkei();
        c.args([
            "directory",
            "serve",
            "--refresh-secs",
            "1",
            "--listen",
            &self.dn_addr,
        ])
        .arg("--data")
        .arg(&self.published)
        .arg("--anchor")
        .arg(&self.anchor)
        .arg("--identity")
        .arg(&self.dn_key);
        Proc::spawn(c, &self.dir.join("directory-node.log"))
    }

    pub(crate) fn node(&self, i: usize) -> Proc {
        self.node_with_env(i, &[])
    }

    pub(crate) fn node_with_env(&self, i: usize, env: &[(&str, &str)]) -> Proc {
        let home = &self.offices[i].home;
        let mut c = renkei();
        c.arg("run").arg("--home").arg(&home.root);
        for (k, v) in env {
            c.env(k, v);
        }
        Proc::spawn(c, &home.root.join("node.log"))
    }

    pub(crate) fn home(&self, i: usize) -> &Home {
        &self.offices[i].home
    }

    /// Drops a file of `kind` from office `from` to office `to` into `from`'s outbox, named
    /// with send-unit stamp `n`; returns its name.
    pub(crate) fn drop(
        &self,
        kind: FileKind,
        from: usize,
        to: usize,
        n: u32,
        bytes: &[u8],
    ) -> String {
        let name = name_for(kind, &self.offices[from], &self.offices[to], &stamp(n));
        drop_file(self.home(from), &name, bytes);
        name
    }

    /// Waits until office `i`'s node has verified the region at `seq` or later.
    pub(crate) fn wait_directory(&self, i: usize, min_seq: u64) {
        let status = self.home(i).status();
        wait_for(
            Duration::from_secs(30),
            "the office to sync the directory",
            || {
                std::fs::read_to_string(&status)
                    .ok()
                    .and_then(|t| serde_json::from_str::<renkei_node::status::Status>(&t).ok())
                    .is_some_and(|s| s.directory.iter().any(|r| r.seq >= min_seq))
            },
        );
    }

    /// Revokes an office and publishes.
    pub(crate) fn revoke(&self, i: usize) {
        self.plan.revoke(i).unwrap();
    }
}

/// A valid value for a field format (for building files of every kind).
fn value(format: Format, month: &str) -> String {
    match format {
        Format::Text => "\"テスト、記入例\"".into(),
        Format::Version => "202407".into(),
        Format::Date { .. } => format!("{month}01"),
        Format::Month { .. } => month.into(),
        Format::Time => "0900".into(),
        Format::Insurer => "131016".into(),
        Format::Insured => "0000123451".into(),
        Format::Office => "1310000011".into(),
        Format::Kind => "11".into(),
        Format::ServiceCode => "111111".into(),
        Format::Integer { .. } => "1".into(),
        Format::Decimal => "11.40".into(),
        Format::Code(t) => t.values[0].into(),
        Format::DayMask => "0".repeat(31),
        Format::Postal => "100-0001".into(),
    }
}

/// A valid CP932 file of `kind` (one record per `n`), built from the layout tables, with a
/// distinctive marker in its first free-text field.
pub(crate) fn valid_file(kind: FileKind, records: usize, marker: &str) -> Vec<u8> {
    if kind.is_image() {
        let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xE0];
        jpeg.extend_from_slice(marker.as_bytes());
        jpeg.extend_from_slice(&[0xFF, 0xD9]);
        return jpeg;
    }
    let fields = layout(kind, CsvVersion::V202407).unwrap();
    let mut text = String::new();
    for r in 0..records {
        let mut marked = false;
        let row: Vec<String> = fields
            .iter()
            .enumerate()
            .map(|(i, f)| {
                if matches!(f.format, Format::Text) && !marked {
                    marked = true;
                    return format!("\"{marker}\"");
                }
                // Keep 第2表 numbers unique per row.
                if kind == FileKind::Up2Kyo && i == 12 {
                    return ((r % 99) + 1).to_string();
                }
                if kind == FileKind::Up2Kyo && i == 7 {
                    return ((r / 99) % 99 + 1).to_string();
                }
                value(f.format, "202610")
            })
            .collect();
        text.push_str(&row.join(","));
        text.push_str("\r\n");
    }
    let (bytes, _, bad) = encoding_rs::SHIFT_JIS.encode(&text);
    assert!(!bad);
    bytes.into_owned()
}

/// The standard name of a file of `kind` from `from` to `to` with send-unit `stamp`.
pub(crate) fn name_for(kind: FileKind, from: &Office, to: &Office, stamp: &str) -> String {
    let month = if kind.has_month() { "_202610" } else { "" };
    let branch = if kind.is_image() { "_0001" } else { "" };
    let ext = if kind.is_image() { "jpg" } else { "CSV" };
    format!(
        "{}{month}_{}_{}_{}_{}_{stamp}{branch}.{ext}",
        kind.prefix(),
        from.number,
        from.kind,
        to.number,
        to.kind
    )
}

/// Drops a file into an office's outbox (written under a hidden name, then renamed).
pub(crate) fn drop_file(home: &Home, name: &str, bytes: &[u8]) {
    renkei_node::demo::drop_into_outbox(home, name, bytes).unwrap();
}

/// Waits until `name` is in `rejected/` with its report (written first, then the file is
/// moved), and returns the report.
pub(crate) fn wait_rejected(home: &Home, name: &str) -> String {
    let report = home.rejected().join(format!("{name}.error.txt"));
    wait_for(Duration::from_secs(20), "the rejection report", || {
        report.exists() && home.rejected().join(name).exists()
    });
    std::fs::read_to_string(&report).unwrap()
}

/// How many entries of a folder (not counting dotfiles).
pub(crate) fn count(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .count()
        })
        .unwrap_or(0)
}

/// The receipts of an office (the chain verifies, or this panics).
pub(crate) fn receipts(home: &Home) -> Vec<renkei_node::receipts::Receipt> {
    renkei_node::receipts::read_log(&home.receipts()).expect("receipt chain verifies")
}

/// Asserts that no care data — plaintext markers, or sealed envelopes — remains anywhere
/// under an office's `state/` folder.
pub(crate) fn assert_state_clean(home: &Home, markers: &[&[u8]]) {
    // A short marker turns up by chance in the binary state (hashes, random ids): a 2-byte
    // marker did, once in CI. Eight bytes make a chance match in a few MB about 1 in 10^13.
    for m in markers {
        assert!(
            m.len() >= 8,
            "marker of {} bytes is too short to search for",
            m.len()
        );
    }
    let mut stack = vec![home.state()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let bytes = std::fs::read(&p).unwrap();
            assert!(
                !bytes.windows(7).any(|w| w == b"RENKEIE"),
                "a sealed envelope remains in {}",
                p.display()
            );
            for m in markers {
                assert!(
                    !bytes.windows(m.len()).any(|w| w == *m),
                    "plaintext care data remains in {}",
                    p.display()
                );
            }
        }
    }
}

/// The marker as it appears in the CP932 file.
pub(crate) fn marker_bytes(marker: &str) -> Vec<u8> {
    encoding_rs::SHIFT_JIS.encode(marker).0.into_owned()
}

/// Stamps 20261001000000 + n seconds (distinct send units).
pub(crate) fn stamp(n: u32) -> String {
    let (h, m, s) = (n / 3600 % 24, n / 60 % 60, n % 60);
    let day = 1 + n / 86400;
    format!("202610{day:02}{h:02}{m:02}{s:02}")
}
