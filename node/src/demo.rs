//! `renkei demo`: a whole month on loopback with no set-up. A trust anchor, one region, one
//! directory node, a care-management office and three service offices; the care plans and
//! vouchers go out, the actuals come back, and every file is checked against what was sent.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use renkei_protocol::FileName;

use crate::federation::{Federation, RunningFederation, StartOptions, wait_until};
use crate::home::Home;
use crate::node::NodeHandle;
use crate::samples::SAMPLES;

/// The demo's care-management office.
pub const CARE_MANAGER: &str = "1310000001";

/// The offices of the demo: (number, name, kind).
pub const OFFICES: [(&str, &str, &str); 4] = [
    (CARE_MANAGER, "ひかり居宅介護支援事業所", "43"),
    ("1310000011", "さくら訪問介護ステーション", "11"),
    ("1310000021", "けやきデイサービスセンター", "15"),
    ("1310000031", "あおば福祉用具", "17"),
];

/// Drops a file into an outbox the way care software should: write under a hidden name,
/// then rename, so the node never sees it half-written.
pub fn drop_into_outbox(home: &Home, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
    // A dot name of its own (short, so any name that fits the file system fits here too).
    let tmp = crate::files::temp_path(&home.outbox());
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, home.outbox().join(name))?;
    Ok(())
}

/// Sets up the demo federation in `dir` and starts it in this process on loopback.
pub async fn start_federation(dir: &Path) -> anyhow::Result<RunningFederation> {
    let mut b =
        Federation::builder(dir).region("13-tokyo", "東京都 ケアプラン連携協議会（デモ）", &[13]);
    for (number, name, kind) in OFFICES {
        b = b.office(number, name, &[kind]);
    }
    b.create()?.start(StartOptions::default()).await
}

fn delivered(n: &NodeHandle) -> u64 {
    n.delivered()
}

/// How many files under `dir` hold a sealed envelope (there must be none once everything is
/// acknowledged).
fn sealed_copies(dir: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if std::fs::read(&p).is_ok_and(|b| b.windows(7).any(|w| w == b"RENKEIE")) {
                n += 1;
            }
        }
    }
    n
}

/// Runs the demo. Returns whether every file arrived intact and was acknowledged.
pub async fn run(
    dir: Option<PathBuf>,
    exit_after: bool,
    timeout: Duration,
) -> anyhow::Result<bool> {
    let dir = match dir {
        Some(d) => d,
        None => std::env::temp_dir().join(format!("renkei-demo-{}", crate::env::wall_clock_ms())),
    };
    anyhow::ensure!(
        !dir.join("anchor.json").exists(),
        "{} already holds a demo; choose an empty folder",
        dir.display()
    );
    println!("renkei demo in {}", dir.display());
    let t0 = Instant::now();
    let fed = start_federation(&dir).await?;
    let ready = wait_until(timeout, || {
        (0..OFFICES.len()).all(|i| fed.node(i).directory_entries() == OFFICES.len())
    })
    .await;
    anyhow::ensure!(ready, "the offices did not get the directory in time");
    println!(
        "directory: 1 region, {} offices, verified by every office ({:.2} s)",
        OFFICES.len(),
        t0.elapsed().as_secs_f64()
    );

    // The care-management office sends the month's plans and vouchers.
    let t1 = Instant::now();
    let outgoing: Vec<&(&str, &[u8])> = SAMPLES
        .iter()
        .filter(|(n, _)| n.contains(&format!("_{CARE_MANAGER}_43_1")))
        .collect();
    for (name, bytes) in &outgoing {
        drop_into_outbox(fed.plan.home(0), name, bytes)?;
    }
    let cm = fed.node(0);
    let ok_out = wait_until(timeout, || delivered(cm) >= outgoing.len() as u64).await;
    let out_secs = t1.elapsed().as_secs_f64();
    println!(
        "care plans: {} files from {CARE_MANAGER} to 3 service offices, delivered and acknowledged in {out_secs:.2} s",
        outgoing.len()
    );

    // The service offices send the actuals back.
    let t2 = Instant::now();
    let actuals: Vec<&(&str, &[u8])> = SAMPLES
        .iter()
        .filter(|(n, _)| n.starts_with("UPJSK_"))
        .collect();
    for (name, bytes) in &actuals {
        let from = FileName::parse(name)
            .map_err(|e| anyhow::anyhow!("{name}: {e}"))?
            .from
            .office;
        let i = OFFICES
            .iter()
            .position(|o| o.0 == from.as_str())
            .context("sender office")?;
        drop_into_outbox(fed.plan.home(i), name, bytes)?;
    }
    let ok_back = wait_until(timeout, || {
        (1..OFFICES.len()).all(|i| delivered(fed.node(i)) >= 1)
    })
    .await;
    println!(
        "actuals: {} UPJSK files back to {CARE_MANAGER} in {:.2} s",
        actuals.len(),
        t2.elapsed().as_secs_f64()
    );

    // Every file must be in its recipient's inbox, byte for byte, and nothing left queued.
    let mut intact = ok_out && ok_back;
    println!();
    println!("{:<62} {:<12} {:>8}  result", "file", "to", "bytes");
    for (name, bytes) in outgoing.iter().chain(actuals.iter()) {
        let to = FileName::parse(name)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .to
            .office;
        let i = OFFICES
            .iter()
            .position(|o| o.0 == to.as_str())
            .context("recipient")?;
        let got = std::fs::read(fed.plan.home(i).inbox().join(name)).ok();
        let same = got.as_deref() == Some(*bytes);
        intact &= same;
        println!(
            "{name:<62} {to:<12} {:>8}  {}",
            bytes.len(),
            if same {
                "ok (identical, acked)"
            } else {
                "MISSING OR DIFFERENT"
            }
        );
    }
    for (i, o) in fed.plan.offices.iter().enumerate() {
        let (n, h) = (fed.node(i), &o.home);
        let queued = n.queued();
        let partial = std::fs::read_dir(h.partial())
            .map(|d| d.count())
            .unwrap_or(0);
        let sealed = sealed_copies(&h.state());
        if queued > 0 || partial > 0 || sealed > 0 {
            intact = false;
            println!(
                "{}: {queued} still queued, {partial} partial files, {sealed} state files with sealed content",
                n.shared.office
            );
        }
    }
    println!();
    println!(
        "total {:.2} s. Receipts (hash-chained, with the partner's signed ack):",
        t0.elapsed().as_secs_f64()
    );
    for h in fed.plan.offices.iter().map(|o| &o.home) {
        println!("  renkei receipts --home {}", h.root.display());
    }
    println!("Inboxes: {}/offices/<office>/inbox", dir.display());
    println!(
        "{}",
        if intact {
            "demo: every file delivered intact and acknowledged; no sealed copy left in any node's state"
        } else {
            "demo: FAILED"
        }
    );

    if !exit_after {
        println!(
            "nodes keep running; try `renkei status --home {}` — Ctrl-C to stop",
            fed.plan.home(0).root.display()
        );
        let _ = tokio::signal::ctrl_c().await;
    }
    fed.shutdown().await;
    Ok(intact)
}

/// `renkei demo`: runs [`run`] in the foreground. Exit status 0 when every file arrived
/// intact and was acknowledged, 1 otherwise.
pub fn run_command(
    dir: Option<PathBuf>,
    exit_after: bool,
    timeout_secs: u64,
) -> anyhow::Result<std::process::ExitCode> {
    let ok = crate::runtime()?.block_on(run(dir, exit_after, Duration::from_secs(timeout_secs)))?;
    Ok(if ok {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(1)
    })
}
