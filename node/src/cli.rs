//! Every command and flag of `renkei`, and their `--help` texts (the doc comments). What each
//! command does lives in the library, next to the thing it works on; `main.rs` calls it.
//!
//! No doc comment on `Cli`: clap would take it for the long help text.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "renkei",
    version,
    about = "renkei (連携): peer-to-peer exchange of care-plan files between care offices"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) cmd: Cmd,
}

#[derive(Subcommand)]
pub(crate) enum Cmd {
    /// Check files against the ケアプラン標準仕様 (exit 0: all valid, 1: some invalid, 2: usage).
    Check {
        /// Print a JSON array instead of text.
        #[arg(long)]
        json: bool,
        /// Files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Compare a month's 予定 (UPPLAN) with its 実績 (UPJSK), user by user and office by office,
    /// and mark every difference with ☆ (予定・実績の突合). Reads the home's sent/ and inbox/,
    /// or the files and folders given (exit 0: all match, 1: differences found, 2: usage error or
    /// a file that could not be read).
    Reconcile {
        /// The office's home folder: its sent/ and inbox/ are read.
        #[arg(long)]
        home: Option<PathBuf>,
        /// 対象年月 YYYYMM (needed when the files hold several months), e.g. 202610.
        #[arg(long)]
        month: Option<String>,
        /// Print JSON instead of the table.
        #[arg(long)]
        json: bool,
        /// Also write the result as CSV for Excel to this file (CP932 unless --utf8).
        #[arg(long, value_name = "OUT")]
        csv: Option<PathBuf>,
        /// Write the CSV in UTF-8 with a byte-order mark instead of CP932.
        #[arg(long, requires = "csv")]
        utf8: bool,
        /// Print (and write the CSV) in English instead of Japanese.
        #[arg(long)]
        english: bool,
        /// List the matching users and offices and the replaced files too.
        #[arg(long)]
        all: bool,
        /// Plan and actual files, or folders holding them (besides the home's).
        paths: Vec<PathBuf>,
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
    /// Write the systemd unit that runs this office's node as a dedicated user, sandboxed
    /// (examples/systemd/renkei.service with the user, home and binary filled in), and print the
    /// steps left (useradd, systemctl daemon-reload, enable --now), which need root and are not
    /// run. A different unit file already there is kept unless --force.
    InstallService {
        /// Folder to write renkei.service into.
        #[arg(long, default_value = "/etc/systemd/system")]
        unit_dir: PathBuf,
        /// The system user (and group) the node runs as.
        #[arg(long, default_value = "renkei")]
        user: String,
        /// The office's home folder (the only folder the node may write).
        #[arg(long, default_value = "/srv/renkei")]
        home: PathBuf,
        /// The renkei binary the service runs.
        #[arg(long, default_value = "/usr/local/bin/renkei")]
        binary: PathBuf,
        /// Replace a different renkei.service already in the folder.
        #[arg(long)]
        force: bool,
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
    /// The resilience lab for researchers: a region's month under scripted faults, run by the
    /// production node code in one process on a virtual clock (README: "For researchers").
    #[command(subcommand)]
    Lab(LabCmd),
}

#[derive(Subcommand)]
pub(crate) enum LabCmd {
    /// Run a scenario and write its report (exit 0: nothing lost or duplicated and nothing
    /// left behind, 1: some were, 2: the scenario or a file could not be used).
    Run {
        /// The scenario file (TOML; examples in examples/lab/).
        scenario: PathBuf,
        /// Where to write the report (JSON).
        #[arg(long)]
        report: PathBuf,
        /// Also write the report as an HTML page with charts.
        #[arg(long)]
        html: Option<PathBuf>,
        /// Run with this seed instead of the scenario's.
        #[arg(long)]
        seed: Option<u64>,
        /// Build the federation in this (empty) folder and keep it, to look at afterwards.
        #[arg(long)]
        keep: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
pub(crate) enum DirCmd {
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
    /// Name the directory nodes that keep an office's mail while it is off (effective from the
    /// next publish). With no --node, the office uses its region's directory nodes again.
    SetMailboxes {
        /// The region folder.
        #[arg(long)]
        region: PathBuf,
        /// 事業所番号.
        #[arg(long)]
        office: String,
        /// A mailbox node's public key (hex), in the order senders try them (repeat, at most 4).
        #[arg(long = "node")]
        nodes: Vec<String>,
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
    Serve(renkei_node::dirserve::ServeOptions),
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
