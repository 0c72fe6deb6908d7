//! `renkei demo`: a whole month on loopback with no set-up. A trust anchor, one region, one
//! directory node (also the region's mailbox), a care-management office and three service
//! offices, one of them switched off at first; the care plans and vouchers go out — the off
//! office's into its mailbox, sealed, collected when it starts — the actuals come back, and
//! every file is checked against what was sent.

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

/// The demo's office that is switched off when the month's plans go out.
pub const OFF_AT_FIRST: usize = 3;

/// Sets up the demo federation in `dir` and starts it in this process on loopback, with
/// office [`OFF_AT_FIRST`] off. Offices use the mailbox after 2 s without reaching a partner.
pub async fn start_federation(dir: &Path) -> anyhow::Result<RunningFederation> {
    let mut b = Federation::builder(dir)
        .region("13-tokyo", "東京都 ケアプラン連携協議会（デモ）", &[13])
        .tune(|c| {
            crate::federation::tune_for_loopback(c);
            c.mailbox_after_secs = 2;
            c.mailbox_poll_secs = 2;
        });
    for (number, name, kind) in OFFICES {
        b = b.office(number, name, &[kind]);
    }
    b.create()?
        .start(StartOptions {
            off: vec![OFF_AT_FIRST],
            ..Default::default()
        })
        .await
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

/// Each running office's status page line (number, name, login link) and its plain address.
/// The login link carries the API token in its fragment, which the browser never sends.
pub fn page_links(fed: &RunningFederation) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (i, (number, name, _)) in OFFICES.iter().enumerate() {
        let Some(n) = fed.nodes.get(i).and_then(Option::as_ref) else {
            continue;
        };
        let Some(addr) = n.ui_addr() else { continue };
        let token = std::fs::read_to_string(fed.plan.home(i).api_token()).unwrap_or_default();
        out.push((
            format!(
                "{number} {name}: {}",
                crate::web::login_url(addr, token.trim())
            ),
            format!("http://{addr}/"),
        ));
    }
    out
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
    let mut fed = start_federation(&dir).await?;
    let running: Vec<usize> = (0..OFFICES.len()).filter(|i| *i != OFF_AT_FIRST).collect();
    let ready = wait_until(timeout, || {
        running
            .iter()
            .all(|i| fed.node(*i).directory_entries() == OFFICES.len())
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
    let off = OFFICES[OFF_AT_FIRST].0;
    let to_off = outgoing
        .iter()
        .filter(|(n, _)| n.contains(&format!("_{off}_")))
        .count();
    // The running offices get theirs directly; the off office's wait in its mailbox, sealed.
    let ok_direct = wait_until(timeout, || {
        delivered(fed.node(0)) >= (outgoing.len() - to_off) as u64
    })
    .await;
    let deposited = || async {
        let s = fed.node(0).status().await;
        s.deposited
    };
    let mut ok_deposit = false;
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if deposited().await >= to_off {
            ok_deposit = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "care plans: {} files from {CARE_MANAGER}: {} delivered directly and acknowledged, {to_off} for {off} (switched off) left sealed in the association's mailbox ({:.2} s)",
        outgoing.len(),
        outgoing.len() - to_off,
        t1.elapsed().as_secs_f64()
    );
    // The off office starts: it takes its mail, and the care-management office gets the acks.
    let t_on = Instant::now();
    fed.start_node(OFF_AT_FIRST).await?;
    let mailbox_empty = || {
        fed.plan
            .directory_nodes
            .iter()
            .all(|d| sealed_copies(&d.data.join("mailbox")) == 0)
    };
    let ok_out = ok_direct
        && ok_deposit
        && wait_until(timeout, || {
            delivered(fed.node(0)) >= outgoing.len() as u64
                && fed.node(0).queued() == 0
                && mailbox_empty()
        })
        .await;
    let out_secs = t1.elapsed().as_secs_f64();
    println!(
        "{off} started: its {to_off} files taken from the mailbox, written to its inbox and acknowledged in {:.2} s",
        t_on.elapsed().as_secs_f64()
    );
    // How each file travelled, as its recipient saw it.
    let mut routes = std::collections::BTreeMap::new();
    for (i, (number, _, _)) in OFFICES.iter().enumerate().skip(1) {
        let s = fed.node(i).status().await;
        routes.insert(
            number.to_string(),
            s.routes.get(CARE_MANAGER).cloned().unwrap_or_default(),
        );
    }
    println!(
        "care plans: all {} acknowledged in {out_secs:.2} s",
        outgoing.len()
    );
    // The mailbox's signed statements that it deleted those envelopes reach the sender too.
    let statements = || {
        std::fs::read_to_string(fed.plan.home(0).statements())
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    let ok_statements = wait_until(timeout, || statements() >= to_off).await;
    println!(
        "{CARE_MANAGER} holds {} signed deletion statements from the mailbox (statements.jsonl; `renkei receipts` verifies them)",
        statements()
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
        // Acknowledged and taken off the queue (the count moves a moment before the queue).
        (1..OFFICES.len()).all(|i| delivered(fed.node(i)) >= 1 && fed.node(i).queued() == 0)
    })
    .await;
    let back_routes = fed.node(0).status().await.routes;
    println!(
        "actuals: {} UPJSK files back to {CARE_MANAGER} in {:.2} s",
        actuals.len(),
        t2.elapsed().as_secs_f64()
    );

    // Every file must be in its recipient's inbox, byte for byte, and nothing left queued.
    let mut intact = ok_out && ok_back && ok_statements;
    println!();
    println!(
        "{:<62} {:<12} {:>8}  {:<8} result",
        "file", "to", "bytes", "route"
    );
    for (name, bytes) in outgoing.iter().chain(actuals.iter()) {
        let parsed = FileName::parse(name).map_err(|e| anyhow::anyhow!("{e}"))?;
        let to = parsed.to.office;
        let route = if to.as_str() == CARE_MANAGER {
            back_routes.get(parsed.from.office.as_str())
        } else {
            routes.get(to.as_str())
        }
        .map(String::as_str)
        .unwrap_or("-");
        let i = OFFICES
            .iter()
            .position(|o| o.0 == to.as_str())
            .context("recipient")?;
        let got = std::fs::read(fed.plan.home(i).inbox().join(name)).ok();
        let same = got.as_deref() == Some(*bytes);
        intact &= same;
        println!(
            "{name:<62} {to:<12} {:>8}  {route:<8} {}",
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
    // The mailbox dropped every envelope once it was acknowledged.
    for d in &fed.plan.directory_nodes {
        let left = sealed_copies(&d.data.join("mailbox"));
        if left > 0 {
            intact = false;
            println!("directory node: {left} sealed envelopes still in its mailbox");
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

    println!();
    println!("Status pages (open in a browser on this computer; the link logs you in):");
    for (line, _) in page_links(&fed) {
        println!("  {line}");
    }
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
