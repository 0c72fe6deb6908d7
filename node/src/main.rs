//! `renkei`: the one command of renkei. See `renkei --help` and README.md.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use renkei_directory::{Anchor, NodeInfo};
use renkei_node::home::Home;
use renkei_node::{admin, demo, dirserve, dirsync, node, receipts};
use renkei_protocol::{OfficeNumber, ServiceKind};

#[derive(Parser)]
#[command(
    name = "renkei",
    version,
    about = "renkei (連携): peer-to-peer exchange of care-plan files between care offices"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Check files against the ケアプラン標準仕様 (exit 0: all valid, 1: some invalid, 2: usage).
    Check {
        /// Print a JSON array instead of text.
        #[arg(long)]
        json: bool,
        /// Files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Create an office's home folder: keys, renkei.toml and enrollment.json.
    Init {
        /// The home folder to create.
        #[arg(long)]
        home: PathBuf,
        /// 事業所番号 (10 digits).
        #[arg(long)]
        office: String,
        /// 事業所名.
        #[arg(long)]
        name: String,
        /// サービス種類コード the office acts as (repeat for several), e.g. 43.
        #[arg(long = "kind")]
        kinds: Vec<String>,
        /// libp2p listen address (repeat), e.g. /ip4/0.0.0.0/tcp/4701.
        #[arg(long)]
        listen: Vec<String>,
        /// Address to publish in the directory (repeat); defaults to the listen addresses that
        /// name a host (not 0.0.0.0).
        #[arg(long)]
        advertise: Vec<String>,
        /// Directory node to sync from (repeat): a multiaddr ending in /p2p/ and the node's peer id.
        #[arg(long = "directory-node")]
        directory_nodes: Vec<String>,
        /// The trust anchor file from your association.
        #[arg(long)]
        anchor: Option<PathBuf>,
    },
    /// Run the office node in the foreground (stop with Ctrl-C or SIGTERM).
    Run {
        /// The office's home folder.
        #[arg(long)]
        home: PathBuf,
    },
    /// Show the node's identity, directory freshness, peers, counts and recent errors.
    Status {
        /// The office's home folder.
        #[arg(long)]
        home: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the receipts and verify them: the hash chain, each receipt against its signed ack,
    /// and each ack's key against the cached directory (exit 0: all verified, 1: a receipt
    /// fails, 3: some could not be verified here).
    Receipts {
        /// The office's home folder.
        #[arg(long)]
        home: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Make a new key generation and a rotation request for the association (keys are
    /// pre-announced: partners switch at the start time, the old key stays valid for the
    /// association's overlap window).
    RotateKeys {
        /// The office's home folder.
        #[arg(long)]
        home: PathBuf,
        /// Hours from now until partners start using the new key.
        #[arg(long, default_value_t = 24)]
        starts_in_hours: u64,
    },
    /// Run a whole month on loopback: a region, a directory node, a care-management office and
    /// three service offices exchanging the bundled sample files.
    Demo {
        /// Where to put everything (default: a new temporary folder).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Exit once every file is acknowledged (0), or fail after the timeout.
        #[arg(long)]
        exit_after_delivery: bool,
        /// Seconds to wait for delivery.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
    /// Directory operations for associations (regions) and directory nodes.
    #[command(subcommand)]
    Directory(DirCmd),
}

#[derive(Subcommand)]
enum DirCmd {
    /// Create the federation's root key and trust anchor.
    RootInit {
        /// Folder for root.key and anchor.json.
        #[arg(long)]
        out: PathBuf,
        /// The federation's name.
        #[arg(long, default_value = "renkei")]
        federation: String,
    },
    /// Create a region authority certified by the root.
    RegionInit {
        /// The root key file.
        #[arg(long)]
        root_key: PathBuf,
        /// Folder for region.key and region.json.
        #[arg(long)]
        out: PathBuf,
        /// Region id, e.g. 13-tokyo.
        #[arg(long)]
        region: String,
        /// Display name.
        #[arg(long)]
        name: String,
        /// Prefecture codes it vouches for, e.g. 13,14.
        #[arg(long, value_delimiter = ',', required = true)]
        prefectures: Vec<u8>,
        /// Years the certificate is valid.
        #[arg(long, default_value_t = 5)]
        years: u64,
    },
    /// Approve offices' enrollment requests.
    Approve {
        /// The region folder.
        #[arg(long)]
        region: PathBuf,
        /// enrollment.json files.
        #[arg(required = true)]
        requests: Vec<PathBuf>,
    },
    /// Revoke an office (effective from the next publish).
    Revoke {
        /// The region folder.
        #[arg(long)]
        region: PathBuf,
        /// 事業所番号.
        #[arg(long)]
        office: String,
    },
    /// Apply an office's key rotation request (effective from the next publish).
    Rotate {
        /// The region folder.
        #[arg(long)]
        region: PathBuf,
        /// The rotation.json file.
        request: PathBuf,
    },
    /// List a directory node in the region's snapshots.
    AddNode {
        /// The region folder.
        #[arg(long)]
        region: PathBuf,
        /// The node's public key (hex), as printed by node-init.
        #[arg(long)]
        key: String,
        /// Its libp2p addresses (repeat).
        #[arg(long = "addr")]
        addrs: Vec<String>,
        /// Its HTTP base URL.
        #[arg(long)]
        http: Option<String>,
    },
    /// Publish the next signed snapshot (and delta) into a folder.
    Publish {
        /// The region folder.
        #[arg(long)]
        region: PathBuf,
        /// The folder a directory node serves.
        #[arg(long)]
        out: PathBuf,
    },
    /// Create a directory node's identity key.
    NodeInit {
        /// The key file to create.
        #[arg(long)]
        out: PathBuf,
    },
    /// Run a directory node.
    Serve {
        /// The folder of published files.
        #[arg(long)]
        data: PathBuf,
        /// The trust anchor.
        #[arg(long)]
        anchor: PathBuf,
        /// The node's key file (from node-init).
        #[arg(long)]
        identity: PathBuf,
        /// libp2p listen address (repeat).
        #[arg(long)]
        listen: Vec<String>,
        /// HTTP listen address, e.g. 127.0.0.1:4780.
        #[arg(long)]
        http: Option<std::net::SocketAddr>,
        /// Another directory node's HTTP base URL to mirror (repeat).
        #[arg(long = "mirror")]
        mirrors: Vec<String>,
        /// Seconds between rereading the data folder (newly published files) and mirror pulls.
        #[arg(long, default_value_t = 10)]
        refresh_secs: u64,
        /// Serve the directory over HTTP to anyone, unsigned (default: only requests signed by
        /// a directory node or a member office; SPEC.md §6.6).
        #[arg(long)]
        public_read: bool,
    },
    /// Verify snapshot files against an anchor (exit 0: all good, 1: a file failed).
    Verify {
        /// The trust anchor.
        #[arg(long)]
        anchor: PathBuf,
        /// .snapshot files, oldest first.
        #[arg(required = true)]
        snapshots: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RENKEI_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("renkei_node=info,warn")),
        )
        .with_writer(std::io::stderr)
        // Colours only on a terminal: a service manager's log file gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("renkei: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.cmd {
        Cmd::Check { json, files } => check(json, &files),
        Cmd::Init {
            home,
            office,
            name,
            kinds,
            listen,
            advertise,
            directory_nodes,
            anchor,
        } => {
            let office = OfficeNumber::parse(&office).context(
                "--office は10桁の事業所番号です / --office must be the 10-digit office number",
            )?;
            let kinds = kinds
                .iter()
                .map(|k| ServiceKind::parse(k).with_context(|| format!("--kind {k}: 2桁のサービス種類コードです / must be a 2-character service kind code")))
                .collect::<anyhow::Result<Vec<_>>>()?;
            anyhow::ensure!(
                !kinds.is_empty(),
                "--kind を1つ以上指定してください（例: 43）/ give at least one --kind (e.g. 43)"
            );
            let home = Home::new(home);
            let req = admin::init_office(
                &home,
                &admin::OfficeSetup {
                    office,
                    name,
                    kinds,
                    listen,
                    advertise,
                    directory_nodes,
                    anchor,
                },
            )?;
            println!(
                "事業所 {} の設定を {} に作成しました / created {} for office {}",
                req.office,
                home.root.display(),
                home.root.display(),
                req.office
            );
            if req.addresses.is_empty() {
                eprintln!(
                    "注意: 相手先が接続できるアドレスが名簿に載りません。外部から届くアドレスを --advertise で指定して init し直してください / warning: the directory will list no address partners can dial; init again with --advertise and an address reachable from outside"
                );
            }
            println!(
                "identity (PeerId): {}",
                renkei_node::net::peer_id_of(&req.identity)
                    .map(|p| p.to_string())
                    .unwrap_or_default()
            );
            let enrollment = home.root.join("enrollment.json");
            println!(
                "{} を協会に送り、承認を受けてください / send {} to your association to be approved",
                enrollment.display(),
                enrollment.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Run { home } => {
            let env = renkei_node::env::Env::system();
            // A fault point armed for tests of a whole process (e.g. crash-after-inbox-write).
            if let Ok(name) = std::env::var("RENKEI_FAULT") {
                let point = renkei_node::env::FaultPoint::parse(&name)
                    .with_context(|| format!("RENKEI_FAULT={name}: unknown fault point"))?;
                env.faults.arm(point, 0);
            }
            let rt = runtime()?;
            let ended = rt.block_on(node::run(Home::new(home), env));
            // A blocking task stuck in the operating system (a hung disk, say) must not keep
            // the process from ending once the node has stopped.
            rt.shutdown_timeout(std::time::Duration::from_secs(2));
            let ended = ended?;
            if ended == node::Ended::Restart {
                restart_self()?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Status { home, json } => status(&existing_home(home)?, json),
        Cmd::Receipts { home, json } => receipts_cmd(&existing_home(home)?, json),
        Cmd::RotateKeys {
            home,
            starts_in_hours,
        } => {
            let home = Home::new(home);
            let req = admin::rotate_keys(&home, starts_in_hours * 3600)?;
            let rotation = home.root.join("rotation.json");
            let starts = renkei_node::env::jst(req.new_key.valid_from * 1000);
            println!(
                "新しい鍵を {} に作成しました / new keys written to {}",
                home.keys().display(),
                home.keys().display()
            );
            println!(
                "{} を協会に送ってください。新しい鍵は {starts} から使われます / send {} to your association; the new key is used from {starts}",
                rotation.display(),
                rotation.display()
            );
            println!(
                "起動中のノードは新しい鍵での受信をすぐ始め、協会の承認後、開始時刻を過ぎた最初の名簿更新で自動的に新しい鍵へ切り替わります / the running node opens files sealed to the new key at once, and switches to it as its identity by itself at the first directory update after the association's approval and the start time (switch_keys in renkei.toml)"
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Demo {
            dir,
            exit_after_delivery,
            timeout,
        } => {
            let ok = runtime()?.block_on(demo::run(
                dir,
                exit_after_delivery,
                std::time::Duration::from_secs(timeout),
            ))?;
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Cmd::Directory(d) => directory(d),
    }
}

/// A home made by `renkei init`: a mistyped path must not read as "no receipts".
fn existing_home(path: PathBuf) -> anyhow::Result<Home> {
    let home = Home::new(path);
    anyhow::ensure!(
        home.root.join("renkei.toml").is_file(),
        "{} は renkei のホームフォルダではありません（renkei.toml がありません）。--home を確かめてください / {} is not a renkei home (no renkei.toml): check --home",
        home.root.display(),
        home.root.display()
    );
    Ok(home)
}

fn check(json: bool, files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let mut reports = Vec::new();
    let mut unreadable = false;
    for f in files {
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        match renkei_node::check_path(name, f, false) {
            Ok((mut r, _, _)) => {
                r.file = f.display().to_string();
                reports.push(r);
            }
            // The other files are still checked; the exit status says something was missed.
            Err(e) => {
                unreadable = true;
                eprintln!(
                    "ファイル {} を読めません / cannot read {}: {e}",
                    f.display(),
                    f.display()
                );
            }
        }
    }
    let all_ok = reports.iter().all(|r| r.valid);
    if json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        for r in &reports {
            if r.valid {
                println!("ok  {}", r.file);
                continue;
            }
            let n = r.errors.len();
            println!(
                "NG  {} ({n} error{})",
                r.file,
                if n == 1 { "" } else { "s" }
            );
            for e in &r.errors {
                if e.line == 0 {
                    println!("    whole file [{}]", e.code);
                } else {
                    println!("    line {} field {} [{}]", e.line, e.field, e.code);
                }
                println!("      {}", e.message_ja);
                println!("      {}", e.message_en);
            }
        }
    }
    Ok(if unreadable {
        ExitCode::from(2)
    } else if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn status(home: &Home, json: bool) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(home.status()).with_context(|| {
        format!("状態ファイル {} がありません。ノードを一度起動してください（renkei run）。/ No status file {}: start the node once (renkei run).", home.status().display(), home.status().display())
    })?;
    let s: node::Status = serde_json::from_str(&text)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(ExitCode::SUCCESS);
    }
    let age = (renkei_node::env::wall_clock_ms() / 1000).saturating_sub(s.updated_at);
    println!("office      {}", s.office);
    println!("peer id     {}", s.peer_id);
    println!(
        "node        {}",
        if s.running && age < 10 {
            "running".to_string()
        } else {
            format!("not running (status is {age} s old)")
        }
    );
    for a in &s.listening {
        println!("listening   {a}");
    }
    for r in &s.directory {
        println!(
            "directory   region {} seq {} expires {} [{}]",
            r.region,
            r.seq,
            renkei_node::env::jst(r.expires_at.saturating_mul(1000)),
            r.state
        );
        if r.state != "fresh" {
            println!(
                "            警告: 名簿の有効期限が近いか切れています。名簿サーバーへの接続を確認してください。/ warning: the directory is expiring or expired; check the connection to the directory nodes."
            );
        }
    }
    println!("entries     {}", s.directory_entries);
    println!("peers       {}", s.peers.len());
    println!("queued      {}", s.queued);
    println!("delivered   {}", s.delivered);
    println!("received    {}", s.received);
    // What still needs the clerk: the refused files in rejected/ (not their reports, not the
    // ones resolved by a later delivery).
    let waiting = std::fs::read_dir(home.rejected())
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .filter(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    !name.ends_with(".error.txt") && !name.starts_with('.')
                })
                .count()
        })
        .unwrap_or(0);
    println!(
        "rejected    {waiting} waiting in rejected/; refused so far: {} of ours, {} of partners'",
        s.rejected, s.rejected_incoming
    );
    for e in &s.last_errors {
        println!("error       {e}");
    }
    Ok(ExitCode::SUCCESS)
}

fn receipts_cmd(home: &Home, json: bool) -> anyhow::Result<ExitCode> {
    let audit = match receipts::audit(home) {
        Ok(a) => a,
        Err(receipts::ChainError::Io(e)) => {
            eprintln!(
                "受領記録 {} を読めません。権限を確かめてください / cannot read the receipt log {}: check its permissions ({e})",
                home.receipts().display(),
                home.receipts().display()
            );
            return Ok(ExitCode::from(1));
        }
        Err(e) => {
            eprintln!(
                "受領記録の検証に失敗しました。書かれた後に変更されています。この写しを残し、管理者に連絡してください / the receipt log does not verify: it was changed after it was written; keep this copy and contact your administrator\n{e}"
            );
            return Ok(ExitCode::from(1));
        }
    };
    for p in &audit.directory_problems {
        eprintln!("名簿のキャッシュ / directory cache: {p}");
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&audit.receipts)?);
        // The receipts on stdout stay a plain array; what is not verified goes to stderr.
        for line in audit.notes() {
            eprintln!("{line}");
        }
        eprintln!("{}", audit.summary());
    } else {
        for line in audit.lines() {
            println!("{line}");
        }
        println!("{}", audit.summary());
    }
    Ok(ExitCode::from(audit.exit_code()))
}

fn directory(cmd: DirCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        DirCmd::RootInit { out, federation } => {
            admin::root_init(&out, &federation)?;
            println!(
                "created {} and {}",
                out.join("root.key").display(),
                out.join("anchor.json").display()
            );
        }
        DirCmd::RegionInit {
            root_key,
            out,
            region,
            name,
            prefectures,
            years,
        } => {
            admin::region_init(&root_key, &out, &region, &name, prefectures, years)?;
            println!("created region {region} in {}", out.display());
        }
        DirCmd::Approve { region, requests } => {
            let reqs = requests
                .iter()
                .map(|p| admin::read_request(p))
                .collect::<anyhow::Result<Vec<_>>>()?;
            admin::approve(&region, &reqs)?;
            for r in reqs {
                println!("approved {} {}", r.office, r.name);
            }
        }
        DirCmd::Revoke { region, office } => {
            let office = OfficeNumber::parse(&office).context("--office must be 10 digits")?;
            admin::revoke(&region, &office)?;
            println!("revoked {office}; publish to make it effective");
        }
        DirCmd::Rotate { region, request } => {
            let text = std::fs::read_to_string(&request)
                .with_context(|| format!("reading {}", request.display()))?;
            let req: renkei_directory::RotationRequest = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a rotation request", request.display()))?;
            admin::rotate(&region, &req)?;
            println!(
                "rotation for {} recorded; publish to announce it",
                req.office
            );
        }
        DirCmd::AddNode {
            region,
            key,
            addrs,
            http,
        } => {
            let mut k = [0u8; 32];
            hex::decode_to_slice(&key, &mut k).context("--key must be 64 hex digits")?;
            admin::add_node(
                &region,
                NodeInfo {
                    key: k,
                    addresses: addrs,
                    http,
                },
            )?;
            println!(
                "added directory node {}",
                renkei_node::net::peer_id_of(&k)
                    .map(|p| p.to_string())
                    .unwrap_or_default()
            );
        }
        DirCmd::Publish { region, out } => {
            for p in admin::publish(&region, &out)? {
                println!("wrote {}", p.display());
            }
            println!(
                "directory nodes serving {} pick these up within their --refresh-secs (10 s by default); offices within their directory_refresh_secs (300 s)",
                out.display()
            );
        }
        DirCmd::NodeInit { out } => {
            admin::refuse_existing(&out)?;
            let k = admin::generate_signing_key();
            admin::write_secret(&out, &k)?;
            let pk = k.verifying_key().to_bytes();
            println!("key     {}", hex::encode(pk));
            println!(
                "peer id {}",
                renkei_node::net::peer_id_of(&pk)
                    .map(|p| p.to_string())
                    .unwrap_or_default()
            );
        }
        DirCmd::Serve {
            data,
            anchor,
            identity,
            listen,
            http,
            mirrors,
            refresh_secs,
            public_read,
        } => {
            let anchor = read_anchor(&anchor)?;
            let identity = admin::read_secret(&identity)?;
            let addrs = listen.clone();
            let listen = listen
                .iter()
                .map(|a| a.parse().with_context(|| format!("bad address {a}")))
                .collect::<anyhow::Result<Vec<_>>>()?;
            runtime()?.block_on(async move {
                let n = dirserve::start(dirserve::ServeConfig {
                    data,
                    anchor,
                    identity,
                    listen,
                    http,
                    mirrors,
                    refresh_secs,
                    http_options: dirserve::HttpOptions {
                        public_read,
                        ..Default::default()
                    },
                    clock: std::sync::Arc::new(renkei_node::env::SystemClock),
                })
                .await?;
                println!("directory node {} serving", n.net.peer_id);
                // What offices give to `renkei init --directory-node` (0.0.0.0 is not dialable:
                // the operator puts the host's own address there).
                for a in &addrs {
                    let note = if admin::is_unspecified(a) {
                        "   (0.0.0.0: offices use this host's own address)"
                    } else {
                        ""
                    };
                    println!("  libp2p  {a}/p2p/{}{note}", n.net.peer_id);
                }
                if let Some(h) = n.http {
                    println!("  HTTP    http://{h}");
                }
                tokio::signal::ctrl_c().await?;
                n.stop();
                anyhow::Ok(())
            })?;
        }
        DirCmd::Verify { anchor, snapshots } => return verify(&anchor, &snapshots),
    }
    Ok(ExitCode::SUCCESS)
}

fn read_anchor(p: &Path) -> anyhow::Result<Anchor> {
    let text = std::fs::read_to_string(p)
        .with_context(|| format!("cannot read anchor {}", p.display()))?;
    Anchor::from_json(&text).map_err(|e| anyhow::anyhow!("anchor {}: {e}", p.display()))
}

fn verify(anchor: &Path, files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let anchor = read_anchor(anchor)?;
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    let mut ok = true;
    let now = renkei_node::env::wall_clock_ms() / 1000;
    for f in files {
        let bytes = std::fs::read(f).with_context(|| format!("cannot read {}", f.display()))?;
        match dirsync::verify_file(&anchor, &bytes, now) {
            Ok(s) => {
                let region = s.header.cert.region.clone();
                if let Some(&have) = seen.get(&region)
                    && s.header.seq <= have
                {
                    println!(
                        "FAIL {}: rollback: region {region} already at sequence {have}, this file has {}",
                        f.display(),
                        s.header.seq
                    );
                    ok = false;
                    continue;
                }
                seen.insert(region.clone(), s.header.seq);
                println!(
                    "ok   {}: region {region} seq {} with {} offices ({} revoked), expires {}",
                    f.display(),
                    s.header.seq,
                    s.entries.len(),
                    s.entries.iter().filter(|e| !e.is_active()).count(),
                    renkei_node::env::jst(s.header.expires_at.saturating_mul(1000))
                );
            }
            Err(e) => {
                println!("FAIL {}: {e}", f.display());
                ok = false;
            }
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Runs this program again in this process (same arguments, same process id, so a service
/// manager sees no change) once the node has shut down cleanly: every socket, file lock and
/// key of the old run is released by the exec.
#[cfg(unix)]
fn restart_self() -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    // On Linux the running program itself, even if a package upgrade replaced its file.
    let exe = if cfg!(target_os = "linux") {
        std::path::PathBuf::from("/proc/self/exe")
    } else {
        std::env::current_exe().context("finding this program to restart it")?
    };
    let err = std::process::Command::new(&exe)
        .args(std::env::args_os().skip(1))
        .exec();
    Err(anyhow::anyhow!(
        "再起動できません。ノードを手動で起動してください / cannot restart ({}): start the node again by hand: {err}",
        exe.display()
    ))
}

#[cfg(not(unix))]
fn restart_self() -> anyhow::Result<()> {
    anyhow::bail!(
        "新しい鍵で使うためにノードを再起動してください / restart the node to use the new key"
    )
}

#[cfg(test)]
mod tests {}
