//! Offices behind routers (SPEC.md §7.4): an office whose node no partner can dial is reached
//! through its region's directory nodes (circuit relays), with nothing set up at the office,
//! and the relayed connection is made direct when the routers allow it.
//!
//! The first test runs everywhere: a federation in this process on the memory transport, with
//! offices that listen nowhere. The others build a small internet out of Linux network
//! namespaces — a directory node on a public address, and two offices each behind its own
//! router doing nftables masquerade NAT — and run the real `renkei` binary inside them. They
//! need root (ip netns, veth, nftables); without it they say so loudly and pass, unless
//! `RENKEI_REQUIRE_NETNS=1` (CI sets it), when they fail.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use renkei_directory::NodeInfo;
use renkei_node::admin::{self, OfficeSetup};
use renkei_node::demo::{CARE_MANAGER, drop_into_outbox};
use renkei_node::federation::{
    Federation as Plan, StartOptions, StoreChoice, Transport, tune_for_loopback,
};
use renkei_node::home::{Config, Home};
use renkei_node::net::Reachability;
use renkei_node::samples::SAMPLES;
use renkei_node::status::Status;
use renkei_protocol::{FileKind, OfficeNumber, ServiceKind};

const SERVICE: &str = "1310000011";

/// Two offices whose nodes listen nowhere (their directory entries name addresses nobody
/// listens on) deliver through their directory node's relay; each says so in its status. A
/// revoked office loses its relay slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offices_that_listen_nowhere_deliver_through_their_directory_node() {
    let dir = tempfile::tempdir().unwrap();
    let plan = Plan::builder(dir.path())
        .transport(Transport::Memory)
        .office(CARE_MANAGER, "ひかり居宅介護支援事業所", &["43"])
        .office(SERVICE, "さくら訪問介護ステーション", &["11"])
        .tune(|c| {
            tune_for_loopback(c);
            c.reachability = Reachability::Private;
            c.listen = Vec::new();
        })
        .create()
        .unwrap();
    let fed = plan
        .start(StartOptions {
            store: StoreChoice::Memory,
            ..Default::default()
        })
        .await
        .unwrap();
    let status = |i: usize| fed.node(i).status();
    for i in 0..2 {
        poll(
            Duration::from_secs(20),
            "a relay slot and the directory",
            || async {
                let s = status(i).await;
                s.relay_slots == 1 && s.directory_entries == 2
            },
        )
        .await;
    }
    let files: Vec<(&str, &[u8])> = SAMPLES
        .iter()
        .filter(|(n, _)| n.contains(&format!("_{CARE_MANAGER}_43_{SERVICE}_11_")))
        .copied()
        .collect();
    assert!(files.len() >= 5);
    for (name, bytes) in &files {
        drop_into_outbox(plan.home(0), name, bytes).unwrap();
    }
    poll(
        Duration::from_secs(60),
        "every file acknowledged",
        || async { fed.node(0).delivered() == files.len() as u64 },
    )
    .await;
    for (name, bytes) in &files {
        assert_eq!(
            std::fs::read(plan.home(1).inbox().join(name)).unwrap(),
            *bytes,
            "{name}"
        );
    }
    let (sender, recipient) = (status(0).await, status(1).await);
    assert_eq!(
        sender.routes.get(SERVICE).map(String::as_str),
        Some("relayed")
    );
    assert_eq!(recipient.reachability, "private");
    assert!(
        recipient
            .listening
            .iter()
            .any(|a| a.contains("/p2p-circuit")),
        "{:?}",
        recipient.listening
    );
    // Revoked, the recipient loses its relay slot: the directory node drops its connection
    // when it rereads its folder, and refuses it from then on.
    fed.plan.revoke(1).unwrap();
    poll(
        Duration::from_secs(20),
        "the revoked office's slot to go",
        || async { status(1).await.relay_slots == 0 },
    )
    .await;
    fed.shutdown().await;
}

async fn poll<F: Future<Output = bool>>(limit: Duration, what: &str, mut f: impl FnMut() -> F) {
    let end = Instant::now() + limit;
    while !f().await {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---- Network namespaces -------------------------------------------------------------------

/// What the routers do to traffic.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Nat {
    /// Masquerade keeping the office's source port when it can (most home and office
    /// routers): hole punching works.
    PortPreserving,
    /// Masquerade with a random port for every connection (`fully-random`, a symmetric NAT):
    /// hole punching cannot work, the relay carries everything.
    Symmetric,
}

/// The small internet a test runs on, removed when dropped (also when the test fails).
struct Lab {
    prefix: String,
    namespaces: Vec<String>,
}

const DN_IP: &str = "198.51.100.10";
const DN_PORT: u16 = 4710;
/// Each office's router's public address.
const ROUTER_IPS: [&str; 2] = ["192.0.2.2", "203.0.113.2"];

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    run(Command::new("ip").args(args))
}

impl Lab {
    /// Whether this machine can build one; `Err` says why not.
    fn available() -> Result<(), String> {
        let uid = Command::new("id")
            .arg("-u")
            .output()
            .map_err(|e| e.to_string())?;
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            return Err("not running as root (ip netns needs it)".into());
        }
        for tool in ["ip", "nft"] {
            run(Command::new(tool).arg("-V").stdout(Stdio::null())).map_err(|e| {
                format!("`{tool}` is not usable ({e}); install iproute2 and nftables")
            })?;
        }
        Ok(())
    }

    fn ns(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    fn add_ns(&mut self, name: &str) -> Result<String, String> {
        let ns = self.ns(name);
        ip(&["netns", "add", &ns])?;
        self.namespaces.push(ns.clone());
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// A veth pair between two namespaces, addressed and up.
    fn link(
        &self,
        (a, a_if, a_ip): (&str, &str, &str),
        (b, b_if, b_ip): (&str, &str, &str),
    ) -> Result<(), String> {
        ip(&[
            "link", "add", a_if, "netns", a, "type", "veth", "peer", "name", b_if, "netns", b,
        ])?;
        for (ns, dev, addr) in [(a, a_if, a_ip), (b, b_if, b_ip)] {
            ip(&["-n", ns, "addr", "add", addr, "dev", dev])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
        }
        Ok(())
    }

    fn sysctl(ns: &str, setting: &str) -> Result<(), String> {
        run(Command::new("ip").args(["netns", "exec", ns, "sysctl", "-qw", setting]))
    }

    fn nft(ns: &str, rules: &str) -> Result<(), String> {
        let path = std::env::temp_dir().join(format!("{ns}.nft"));
        std::fs::write(&path, rules).map_err(|e| e.to_string())?;
        let r = run(Command::new("ip")
            .args(["netns", "exec", ns, "nft", "-f"])
            .arg(&path));
        let _ = std::fs::remove_file(&path);
        r
    }

    /// The internet namespace routing between the directory node and two routers, each with
    /// an office behind it on 192.168.1.0/24; `loss_percent` of all packets crossing the
    /// internet are dropped.
    fn build(tag: &str, nat: Nat, loss_percent: u8) -> Result<Lab, String> {
        Self::available()?;
        remove_stale_namespaces();
        let mut lab = Lab {
            prefix: format!("rk-{}-{tag}", std::process::id()),
            namespaces: Vec::new(),
        };
        let net = lab.add_ns("net")?;
        let dn = lab.add_ns("dn")?;
        lab.link(
            (&net, "dn0", "198.51.100.1/24"),
            (&dn, "eth0", &format!("{DN_IP}/24")),
        )?;
        ip(&["-n", &dn, "route", "add", "default", "via", "198.51.100.1"])?;
        Self::sysctl(&net, "net.ipv4.ip_forward=1")?;
        if loss_percent > 0 {
            Self::nft(
                &net,
                &format!(
                    "table inet lab {{\n  chain forward_hook {{\n    type filter hook forward priority 0;\n    numgen random mod 100 < {loss_percent} counter drop\n  }}\n}}\n"
                ),
            )?;
        }
        for (i, side) in ["a", "b"].iter().enumerate() {
            let router = lab.add_ns(&format!("r{side}"))?;
            let office = lab.add_ns(side)?;
            let public = ROUTER_IPS[i];
            let gateway = if i == 0 { "192.0.2.1" } else { "203.0.113.1" };
            lab.link(
                (&net, &format!("{side}0"), &format!("{gateway}/24")),
                (&router, "wan", &format!("{public}/24")),
            )?;
            lab.link(
                (&router, "lan", "192.168.1.1/24"),
                (&office, "eth0", "192.168.1.2/24"),
            )?;
            ip(&["-n", &router, "route", "add", "default", "via", gateway])?;
            ip(&[
                "-n",
                &office,
                "route",
                "add",
                "default",
                "via",
                "192.168.1.1",
            ])?;
            Self::sysctl(&router, "net.ipv4.ip_forward=1")?;
            let masquerade = match nat {
                Nat::PortPreserving => "masquerade",
                Nat::Symmetric => "masquerade fully-random",
            };
            // Like an office router: out through NAT, nothing in that was not asked for, and
            // no answer (not even a reset) to what was not.
            Self::nft(
                &router,
                &format!(
                    "table ip nat {{\n  chain post {{\n    type nat hook postrouting priority srcnat;\n    oifname \"wan\" {masquerade}\n  }}\n}}\n\
                     table inet filter {{\n  chain input_hook {{\n    type filter hook input priority 0;\n    iifname \"wan\" ct state != {{ established, related }} drop\n  }}\n  chain forward_hook {{\n    type filter hook forward priority 0;\n    iifname \"wan\" ct state != {{ established, related }} drop\n  }}\n}}\n"
                ),
            )?;
        }
        Ok(lab)
    }

    /// How many packets the internet has dropped so far (the loss rule's counter).
    fn dropped(&self) -> u64 {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns("net"),
                "nft",
                "list",
                "chain",
                "inet",
                "lab",
                "forward_hook",
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        text.split_whitespace()
            .skip_while(|w| *w != "packets")
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// `renkei ARGS` inside namespace `name`.
    fn renkei(&self, name: &str) -> Command {
        let mut c = Command::new("ip");
        c.args([
            "netns",
            "exec",
            &self.ns(name),
            env!("CARGO_BIN_EXE_renkei"),
        ]);
        c
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in self.namespaces.iter().rev() {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

/// Removes namespaces left by test processes that were killed before their guard ran.
fn remove_stale_namespaces() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(pid) = name
            .strip_prefix("rk-")
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

/// Builds the lab, or says loudly why this machine cannot (and fails when it must).
fn lab_or_skip(test: &str, tag: &str, nat: Nat, loss: u8) -> Option<Lab> {
    match Lab::build(tag, nat, loss) {
        Ok(lab) => Some(lab),
        Err(why) => {
            let required = std::env::var("RENKEI_REQUIRE_NETNS").is_ok_and(|v| v == "1");
            // Written to the process's stderr, not through `eprintln!`, which the test harness
            // captures and hides for a test that passes.
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                format!(
                    "\n==================== SKIPPED {test} ====================\n\
                     cannot build network namespaces here: {why}\n\
                     (run as root with iproute2 and nftables; RENKEI_REQUIRE_NETNS=1 makes this a failure)\n\
                     ==========================================================\n"
                )
                .as_bytes(),
            );
            assert!(!required, "RENKEI_REQUIRE_NETNS=1 but {why}");
            None
        }
    }
}

/// A federation for the lab: one region whose directory node is at [`DN_IP`], and two
/// offices set up as `renkei init` does without `--advertise` (listening on every interface,
/// their entries listing no address) — what an office behind a router does.
struct LabFederation {
    dir: PathBuf,
    anchor: PathBuf,
    published: PathBuf,
    dn_key: PathBuf,
    offices: Vec<Office>,
    _tmp: Option<tempfile::TempDir>,
}

fn lab_federation(reachability: Reachability) -> LabFederation {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let tmp = if std::env::var_os("RENKEI_TEST_KEEP").is_some() {
        eprintln!("test federation in {}", dir.display());
        let _ = tmp.keep();
        None
    } else {
        Some(tmp)
    };
    let assoc = dir.join("association");
    let anchor = admin::root_init(&assoc, "renkei lab").unwrap();
    let anchor_file = dir.join("anchor.json");
    std::fs::write(&anchor_file, serde_json::to_string_pretty(&anchor).unwrap()).unwrap();
    let region = assoc.join("13-tokyo");
    admin::region_init(
        &assoc.join("root.key"),
        &region,
        "13-tokyo",
        "東京都",
        vec![13],
        5,
    )
    .unwrap();
    let dn_key = dir.join("dn.key");
    let key = admin::generate_signing_key();
    admin::write_secret(&dn_key, &key).unwrap();
    let dn_peer = renkei_node::net::peer_id_of(&key.verifying_key().to_bytes()).unwrap();
    admin::add_node(
        &region,
        NodeInfo {
            key: key.verifying_key().to_bytes(),
            addresses: vec![
                format!("/ip4/{DN_IP}/tcp/{DN_PORT}"),
                format!("/ip4/{DN_IP}/udp/{DN_PORT}/quic-v1"),
            ],
            http: None,
        },
    )
    .unwrap();
    let mut requests = Vec::new();
    let mut offices = Vec::new();
    for (number, kind) in [(CARE_MANAGER, "43"), (SERVICE, "11")] {
        let home = Home::new(dir.join(number));
        let office = OfficeNumber::parse(number).unwrap();
        let kind = ServiceKind::parse(kind).unwrap();
        requests.push(
            admin::init_office(
                &home,
                &OfficeSetup {
                    office,
                    name: format!("テスト事業所 {number}"),
                    kinds: vec![kind],
                    listen: Vec::new(),
                    advertise: Vec::new(),
                    directory_nodes: vec![format!("/ip4/{DN_IP}/tcp/{DN_PORT}/p2p/{dn_peer}")],
                    anchor: Some(anchor_file.clone()),
                },
            )
            .unwrap(),
        );
        let mut c: Config = home.config().unwrap();
        assert_eq!(
            c.listen,
            Config::default().listen,
            "the defaults, as at an office"
        );
        c.settle_ms = 0;
        c.rescan_secs = 1;
        c.directory_refresh_secs = 1;
        c.retry_initial_ms = 200;
        c.retry_max_secs = 2;
        c.io_timeout_secs = 20;
        c.reachability = reachability;
        home.write_config(&c).unwrap();
        offices.push(Office {
            number: office,
            kind,
            home,
            enrolled: true,
        });
    }
    assert!(
        requests.iter().all(|r| r.addresses.is_empty()),
        "entries list no address"
    );
    let published = dir.join("published");
    admin::approve(&region, &requests).unwrap();
    admin::publish(&region, &published).unwrap();
    LabFederation {
        dir,
        anchor: anchor_file,
        published,
        dn_key,
        offices,
        _tmp: tmp,
    }
}

/// The directory node and both offices' nodes, running in their namespaces.
struct Running {
    dn: Proc,
    a: Proc,
    b: Proc,
}

impl LabFederation {
    fn start(&self, lab: &Lab) -> Running {
        let mut c = lab.renkei("dn");
        c.args(["directory", "serve", "--refresh-secs", "1"])
            .args(["--listen", &format!("/ip4/{DN_IP}/tcp/{DN_PORT}")])
            .args(["--listen", &format!("/ip4/{DN_IP}/udp/{DN_PORT}/quic-v1")])
            .arg("--data")
            .arg(&self.published)
            .arg("--anchor")
            .arg(&self.anchor)
            .arg("--identity")
            .arg(&self.dn_key);
        let dn = Proc::spawn(c, &self.dir.join("directory-node.log"));
        let node = |i: usize, ns: &str| {
            let home = &self.offices[i].home;
            let mut c = lab.renkei(ns);
            c.arg("run").arg("--home").arg(&home.root);
            Proc::spawn(c, &home.root.join("node.log"))
        };
        Running {
            dn,
            a: node(0, "a"),
            b: node(1, "b"),
        }
    }

    fn status(&self, i: usize) -> Option<Status> {
        let text = std::fs::read_to_string(self.offices[i].home.status()).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Files from office 0 to office 1: `n` plans of growing size, each with its marker.
    fn drop_plans(&self, n: u32) -> Vec<(String, Vec<u8>)> {
        (0..n)
            .map(|i| {
                let bytes = valid_file(
                    FileKind::UpPlan,
                    10 + 40 * i as usize,
                    &format!("中継試験{i:03}"),
                );
                let name = name_for(
                    FileKind::UpPlan,
                    &self.offices[0],
                    &self.offices[1],
                    &stamp(i),
                );
                drop_file(&self.offices[0].home, &name, &bytes);
                (name, bytes)
            })
            .collect()
    }

    /// Waits for every file to be acknowledged, showing the nodes' logs if they are not.
    fn wait_delivered(&self, running: &Running, files: &[(String, Vec<u8>)], limit: Duration) {
        let end = Instant::now() + limit;
        while count(&self.offices[0].home.sent()) < files.len() {
            if Instant::now() > end {
                for (who, p) in [
                    ("directory node", &running.dn),
                    ("sender", &running.a),
                    ("recipient", &running.b),
                ] {
                    let log = p.log_text();
                    let tail: Vec<&str> = log.lines().rev().take(40).collect();
                    eprintln!(
                        "---- {who} ----\n{}",
                        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                    );
                }
                panic!(
                    "{} of {} files acknowledged; statuses: {:?} / {:?}",
                    count(&self.offices[0].home.sent()),
                    files.len(),
                    self.status(0).map(|s| (
                        s.reachability,
                        s.relay_slots,
                        s.routes,
                        s.last_errors
                    )),
                    self.status(1).map(|s| (
                        s.reachability,
                        s.relay_slots,
                        s.routes,
                        s.last_errors
                    )),
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every file is in the recipient's inbox once, byte for byte, with one receipt on each
    /// side.
    fn assert_exactly_once(&self, files: &[(String, Vec<u8>)]) {
        let (from, to) = (&self.offices[0].home, &self.offices[1].home);
        assert_eq!(count(&to.inbox()), files.len());
        for (name, bytes) in files {
            assert_eq!(
                &std::fs::read(to.inbox().join(name)).unwrap(),
                bytes,
                "{name}"
            );
        }
        for (home, direction) in [(from, "sent"), (to, "received")] {
            let mut per_file: BTreeMap<String, usize> = BTreeMap::new();
            for r in receipts(home) {
                assert_eq!(
                    (r.direction.as_str(), r.verdict.as_str()),
                    (direction, "accepted")
                );
                *per_file.entry(r.file_name).or_default() += 1;
            }
            assert_eq!(per_file.len(), files.len(), "{direction}");
            assert!(
                per_file.values().all(|n| *n == 1),
                "{direction}: {per_file:?}"
            );
        }
        assert_eq!(count(&from.outbox()), 0);
        assert_eq!(count(&from.rejected()), 0);
    }
}

/// Behind two routers that give every connection a random port (no hole can be punched), a
/// sender and a recipient that set nothing up exchange files through the directory node's
/// relay; AutoNAT finds both private, and the sender's status says the files went relayed.
#[test]
fn behind_symmetric_nats_files_go_through_the_relay() {
    let Some(lab) = lab_or_skip(
        "behind_symmetric_nats_files_go_through_the_relay",
        "sym",
        Nat::Symmetric,
        0,
    ) else {
        return;
    };
    let fed = lab_federation(Reachability::Auto);
    let running = fed.start(&lab);
    let files = fed.drop_plans(5);
    fed.wait_delivered(&running, &files, Duration::from_secs(60));
    fed.assert_exactly_once(&files);
    wait_for(
        Duration::from_secs(20),
        "the sender's status to show the route",
        || {
            fed.status(0)
                .is_some_and(|s| s.routes.get(SERVICE).map(String::as_str) == Some("relayed"))
        },
    );
    // Both learn that partners cannot dial them (the directory node's dial-back failed).
    for i in 0..2 {
        wait_for(
            Duration::from_secs(30),
            "AutoNAT to find the office private",
            || {
                fed.status(i)
                    .is_some_and(|s| s.reachability == "private" && s.relay_slots == 1)
            },
        );
    }
    let shown = run_ok(
        renkei()
            .args(["status", "--home"])
            .arg(&fed.offices[0].home.root),
    );
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(
        text.contains(&format!("route       {SERVICE} 中継経由 / relayed")),
        "{text}"
    );
    assert!(text.contains("nothing to set up"), "{text}");
    drop(running);
}

/// Behind two routers that keep the office's port (most office routers), the relayed
/// connection is made direct by hole punching before the files go.
#[test]
fn behind_port_preserving_nats_the_relayed_connection_is_made_direct() {
    let Some(lab) = lab_or_skip(
        "behind_port_preserving_nats_the_relayed_connection_is_made_direct",
        "pp",
        Nat::PortPreserving,
        0,
    ) else {
        return;
    };
    let fed = lab_federation(Reachability::Private);
    let running = fed.start(&lab);
    let files = fed.drop_plans(5);
    fed.wait_delivered(&running, &files, Duration::from_secs(60));
    fed.assert_exactly_once(&files);
    wait_for(
        Duration::from_secs(20),
        "the sender's status to show the route",
        || {
            fed.status(0)
                .is_some_and(|s| s.routes.contains_key(SERVICE))
        },
    );
    let route = fed.status(0).unwrap().routes[SERVICE].clone();
    assert_eq!(route, "direct", "sender log:\n{}", running.a.log_text());
    assert!(
        running
            .a
            .log_text()
            .contains("relayed connection made direct")
    );
    drop(running);
}

/// With 5% of all packets between the sites lost, every file still arrives exactly once
/// (offices on the defaults, behind port-keeping routers).
#[test]
fn with_five_percent_packet_loss_every_file_arrives_exactly_once() {
    let Some(lab) = lab_or_skip(
        "with_five_percent_packet_loss_every_file_arrives_exactly_once",
        "loss",
        Nat::PortPreserving,
        5,
    ) else {
        return;
    };
    let fed = lab_federation(Reachability::Auto);
    let running = fed.start(&lab);
    let files = fed.drop_plans(20);
    fed.wait_delivered(&running, &files, Duration::from_secs(90));
    fed.assert_exactly_once(&files);
    let dropped = lab.dropped();
    assert!(dropped > 0, "the internet lost no packet");
    eprintln!("{dropped} packets lost on the way");
    drop(running);
}
