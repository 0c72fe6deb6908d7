//! `renkei demo`: a whole month on loopback with no set-up. A trust anchor, one region, one
//! directory node, a care-management office and three service offices; the care plans and
//! vouchers go out, the actuals come back, and every file is checked against what was sent.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use renkei_directory::NodeInfo;
use renkei_protocol::{FileName, OfficeNumber, ServiceKind};

use crate::admin::{self, OfficeSetup};
use crate::dirserve::{self, ServeConfig};
use crate::home::{Config, Home, write_atomic};
use crate::node::{self, NodeHandle, lock, wait_until};
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

/// A free loopback port (TCP or UDP), never one this process handed out before.
pub fn free_port(udp: bool) -> anyhow::Result<u16> {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = if udp {
            std::net::UdpSocket::bind("127.0.0.1:0")?
                .local_addr()?
                .port()
        } else {
            std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port()
        };
        let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
        if !given.contains(&port) {
            given.push(port);
            return Ok(port);
        }
    }
}

/// Drops a file into an outbox the way care software should: write under a hidden name,
/// then rename, so the node never sees it half-written.
pub fn drop_into_outbox(home: &Home, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = home.outbox().join(format!(".{name}.writing"));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, home.outbox().join(name))?;
    Ok(())
}

/// A running demo federation.
pub struct Federation {
    /// The demo folder.
    pub dir: PathBuf,
    /// The office nodes, in [`OFFICES`] order.
    pub nodes: Vec<NodeHandle>,
    /// The homes, in [`OFFICES`] order.
    pub homes: Vec<Home>,
    /// The directory node.
    pub directory: dirserve::DirectoryNode,
}

impl std::fmt::Debug for Federation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Federation")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// Sets up and starts the demo federation in `dir`.
pub async fn start_federation(dir: &Path) -> anyhow::Result<Federation> {
    std::fs::create_dir_all(dir)?;
    let assoc = dir.join("association");
    let anchor = admin::root_init(&assoc, "renkei demo federation")?;
    write_atomic(
        &dir.join("anchor.json"),
        serde_json::to_string_pretty(&anchor)?.as_bytes(),
        false,
    )?;
    let region = assoc.join("13-tokyo");
    admin::region_init(
        &assoc.join("root.key"),
        &region,
        "13-tokyo",
        "東京都 ケアプラン連携協議会（デモ）",
        vec![13],
        5,
    )?;

    let dn_key = admin::generate_signing_key();
    admin::write_secret(&dir.join("directory-node").join("identity.key"), &dn_key)?;
    let dn_pub = dn_key.verifying_key().to_bytes();
    let dn_peer = crate::net::peer_id_of(&dn_pub).context("directory node key")?;
    let dn_port = free_port(false)?;
    let dn_addr = format!("/ip4/127.0.0.1/tcp/{dn_port}");
    admin::add_node(
        &region,
        NodeInfo {
            key: dn_pub,
            addresses: vec![dn_addr.clone()],
            http: None,
        },
    )?;

    let mut homes = Vec::new();
    let mut requests = Vec::new();
    for (number, name, kind) in OFFICES {
        let home = Home::new(dir.join("offices").join(number));
        let listen = vec![
            format!("/ip4/127.0.0.1/tcp/{}", free_port(false)?),
            format!("/ip4/127.0.0.1/udp/{}/quic-v1", free_port(true)?),
        ];
        let req = admin::init_office(
            &home,
            &OfficeSetup {
                office: OfficeNumber::parse(number).context("office")?,
                name: name.into(),
                kinds: vec![ServiceKind::parse(kind).context("kind")?],
                listen,
                advertise: Vec::new(),
                directory_nodes: vec![format!("{dn_addr}/p2p/{dn_peer}")],
                anchor: Some(dir.join("anchor.json")),
            },
        )?;
        let mut c = home.config()?;
        tune_for_loopback(&mut c);
        home.write_config(&c)?;
        requests.push(req);
        homes.push(home);
    }
    admin::approve(&region, &requests)?;
    admin::publish(&region, &dir.join("directory"))?;

    let directory = dirserve::start(ServeConfig {
        data: dir.join("directory"),
        anchor: anchor.clone(),
        identity: dn_key,
        listen: vec![dn_addr.parse()?],
        http: None,
        mirrors: Vec::new(),
        refresh_secs: 2,
        http_options: Default::default(),
    })
    .await?;
    let mut nodes = Vec::new();
    for h in &homes {
        nodes.push(node::start(h.clone()).await?);
    }
    Ok(Federation {
        dir: dir.to_path_buf(),
        nodes,
        homes,
        directory,
    })
}

/// Short intervals for a loopback federation.
pub fn tune_for_loopback(c: &mut Config) {
    c.settle_ms = 0;
    c.rescan_secs = 1;
    c.directory_refresh_secs = 2;
    c.retry_initial_ms = 200;
    c.retry_max_secs = 2;
    c.io_timeout_secs = 20;
}

impl Federation {
    /// Stops everything.
    pub async fn shutdown(self) {
        for n in self.nodes {
            n.shutdown().await;
        }
        self.directory.stop();
    }
}

fn delivered(n: &NodeHandle) -> u64 {
    lock(&n.shared.stats).delivered
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
        None => std::env::temp_dir().join(format!("renkei-demo-{}", node::now_ms())),
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
        fed.nodes
            .iter()
            .all(|n| n.shared.dir().entry_count() == OFFICES.len())
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
        drop_into_outbox(&fed.homes[0], name, bytes)?;
    }
    let cm = &fed.nodes[0];
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
        drop_into_outbox(&fed.homes[i], name, bytes)?;
    }
    let ok_back = wait_until(timeout, || fed.nodes[1..].iter().all(|n| delivered(n) >= 1)).await;
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
        let got = std::fs::read(fed.homes[i].inbox().join(name)).ok();
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
    for (n, h) in fed.nodes.iter().zip(&fed.homes) {
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
    for h in &fed.homes {
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
            fed.homes[0].root.display()
        );
        let _ = tokio::signal::ctrl_c().await;
    }
    fed.shutdown().await;
    Ok(intact)
}
