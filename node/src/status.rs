//! A node's status, built from its shared state: written to `H/state/status.json` for `renkei
//! status`, and the same function serves anything else that asks a running node.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use renkei_directory::Freshness;
use serde::{Deserialize, Serialize};

use crate::clock::ClockStatus;
use crate::env::{jst, wall_clock_ms};
use crate::files::write_atomic;
use crate::home::Home;
use crate::state::{Shared, lock};

/// The status file `renkei status` reads (`H/state/status.json`).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Status {
    /// Our office.
    pub office: String,
    /// Our PeerId.
    pub peer_id: String,
    /// Where we listen.
    pub listening: Vec<String>,
    /// Directory regions: freshness.
    pub directory: Vec<RegionStatus>,
    /// Offices in the directory.
    pub directory_entries: usize,
    /// Connected peers.
    pub peers: Vec<String>,
    /// Files waiting for delivery.
    pub queued: usize,
    /// Files delivered and acknowledged.
    pub delivered: u64,
    /// Files received.
    pub received: u64,
    /// Files refused (ours, by checks or by partners).
    pub rejected: u64,
    /// Files from partners we refused.
    pub rejected_incoming: u64,
    /// Recent errors, oldest first.
    pub last_errors: Vec<String>,
    /// Unix seconds of this status.
    pub updated_at: u64,
    /// Whether the node is running (false after a clean shutdown).
    pub running: bool,
    /// This computer's clock against its directory nodes' and partners' (SPEC.md §7.5).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub clock: ClockStatus,
    /// Of the queued files, those left in a partner's mailbox, waiting for its node.
    #[serde(default)]
    pub deposited: usize,
    /// Whether partners can dial this office: `public`, `private` (they come through its
    /// region's directory nodes' relays) or `unknown` (being found out; relayed meanwhile).
    #[serde(default)]
    pub reachability: String,
    /// Relays holding a slot for this office now.
    #[serde(default)]
    pub relay_slots: usize,
    /// How the last file to or from each partner went: `direct`, `relayed` or `mailbox`.
    #[serde(default)]
    pub routes: BTreeMap<String, String>,
    /// The status page and local API (`http://127.0.0.1:PORT/`), empty when off.
    #[serde(default)]
    pub page: String,
}

/// One region's freshness in the status.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RegionStatus {
    /// Region id.
    pub region: String,
    /// Sequence number.
    pub seq: u64,
    /// Unix seconds.
    pub expires_at: u64,
    /// `fresh`, `expiring-soon` or `expired`.
    pub state: String,
}

/// The node's status now.
pub async fn status(shared: &Arc<Shared>) -> Status {
    let peers = shared.net.peers().await;
    let listening = shared.net.listen_addrs().await;
    let now = shared.env.now_secs();
    let (directory, directory_entries) = {
        let d = shared.dir();
        let f = d
            .freshness(now, shared.config.expiry_warning_hours.saturating_mul(3600))
            .into_iter()
            .map(|(region, seq, expires_at, f)| RegionStatus {
                region,
                seq,
                expires_at,
                state: match f {
                    Freshness::Fresh => "fresh",
                    Freshness::ExpiringSoon => "expiring-soon",
                    Freshness::Expired => "expired",
                }
                .into(),
            })
            .collect();
        (f, d.entry_count())
    };
    let (queued, deposited) = {
        let q = lock(&shared.queue);
        let deposited = q.items.values().filter(|i| i.deposited_ms != 0).count();
        (q.items.len(), deposited)
    };
    let clock = crate::clock::status(shared);
    let net = shared.net.state().await;
    let routes = lock(&shared.mail)
        .routes
        .iter()
        .map(|(k, v)| (k.clone(), v.to_string()))
        .collect();
    let s = lock(&shared.stats);
    Status {
        office: shared.office.to_string(),
        peer_id: shared.net.peer_id.to_string(),
        listening: listening.iter().map(|a| a.to_string()).collect(),
        directory,
        directory_entries,
        peers: peers.iter().map(|p| p.to_string()).collect(),
        queued,
        delivered: s.delivered,
        received: s.received,
        rejected: s.rejected_outgoing,
        rejected_incoming: s.rejected_incoming,
        last_errors: s
            .last_errors
            .iter()
            .map(|(_, times, line)| match times {
                1 => line.clone(),
                n => format!("{line} [{n}回目 / {n} times]"),
            })
            .collect(),
        updated_at: now,
        running: !shared.stopping(),
        clock,
        deposited,
        reachability: net.reach.as_str().into(),
        relay_slots: net.reservations,
        routes,
        page: shared
            .ui_addr
            .get()
            .map_or(String::new(), |a| format!("http://{a}/")),
    }
}

/// How the files just delivered to `partner` went: `relayed` when the connection to its node
/// goes through a relay, `direct` when not (SPEC.md §7.4); `None` when not connected to it
/// (nothing was sent).
pub(crate) async fn route_to(
    shared: &Shared,
    partner: &renkei_protocol::OfficeNumber,
) -> Option<&'static str> {
    let now = shared.env.now_secs();
    let peers: Vec<libp2p::PeerId> = match shared.dir().lookup(partner) {
        Ok(Some(e)) => e
            .keys_at(now)
            .filter_map(|k| crate::net::peer_id_of(&k.identity))
            .collect(),
        _ => Vec::new(),
    };
    for p in peers {
        if let Some(via) = shared.net.via(p).await {
            return Some(via.as_str());
        }
    }
    None
}

/// Writes the status file.
pub(crate) async fn write_status(shared: &Arc<Shared>) -> anyhow::Result<Status> {
    let status = status(shared).await;
    let bytes = serde_json::to_vec_pretty(&status)?;
    let path = shared.home.status();
    crate::env::file_work(move || write_atomic(&path, &bytes, false)).await??;
    Ok(status)
}

/// The status file of `home`, as the node last wrote it.
pub fn read(home: &Home) -> anyhow::Result<Status> {
    let text = std::fs::read_to_string(home.status()).with_context(|| {
        format!("状態ファイル {} がありません。ノードを一度起動してください（renkei run）。/ No status file {}: start the node once (renkei run).", home.status().display(), home.status().display())
    })?;
    Ok(serde_json::from_str(&text)?)
}

/// `renkei status`: prints the status file of the home at `home` (as text, or as JSON), with
/// the files in `rejected/` still waiting for the clerk.
pub fn show(home: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let home = Home::existing(home)?;
    let s = read(&home)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(ExitCode::SUCCESS);
    }
    let age = (wall_clock_ms() / 1000).saturating_sub(s.updated_at);
    // A wrong clock first: it is the office's to fix, and it explains other trouble below.
    if let Some(w) = &s.clock.warning {
        println!("clock       {w}");
    }
    println!("office      {}", s.office);
    println!("peer id     {}", s.peer_id);
    println!(
        "node        {}",
        if s.running && age < 10 {
            "running".to_string()
        } else {
            format!("停止中（状態は {age} 秒前のもの）/ not running (status is {age} s old)")
        }
    );
    for a in &s.listening {
        println!("listening   {a}");
    }
    if !s.page.is_empty() {
        println!(
            "page        {} （状態ページと API。トークンは {} / status page and API; token in that file）",
            s.page,
            home.api_token().display()
        );
    }
    for r in &s.directory {
        println!(
            "directory   region {} seq {} expires {} [{}]",
            r.region,
            r.seq,
            jst(r.expires_at.saturating_mul(1000)),
            r.state
        );
        if r.state != "fresh" {
            println!(
                "            警告: 名簿の有効期限が近いか切れています。名簿サーバーへの接続を確認してください。/ warning: the directory is expiring or expired; check the connection to the directory nodes."
            );
        }
    }
    match (s.reachability.as_str(), s.relay_slots) {
        ("public", _) => println!("reachable   直接届きます / partners dial this office directly"),
        ("unknown", 0) => println!(
            "reachable   確認中です（名簿サーバーに問い合わせ、中継枠を求めています）/ being found out (asking the directory nodes, and for a relay slot)"
        ),
        (_, 0) if !s.reachability.is_empty() => println!(
            "reachable   中継枠をまだ取得できていません。相手先からは届きません。名簿サーバーへの接続を確認してください（自動で再試行します）/ no relay slot yet: partners cannot reach this office; check the connection to the directory nodes (renkei retries by itself)"
        ),
        (_, n) if n > 0 => println!(
            "reachable   ルーターの内側です。名簿サーバー {n} 台の中継で届きます（設定は不要です）/ behind a router: partners reach this office through {n} directory node relay(s) (nothing to set up)"
        ),
        _ => {}
    }
    for (partner, route) in &s.routes {
        let ja = match route.as_str() {
            "direct" => "直接",
            "relayed" => "中継経由",
            "mailbox" => "メールボックス経由",
            _ => "",
        };
        println!("route       {partner} {ja} / {route}");
    }
    println!("entries     {}", s.directory_entries);
    println!("peers       {}", s.peers.len());
    if s.deposited > 0 {
        println!(
            "queued      {} （うち {} 件は相手先のメールボックスに預け中 / {} of them left in partners' mailboxes）",
            s.queued, s.deposited, s.deposited
        );
    } else {
        println!("queued      {}", s.queued);
    }
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
        "rejected    rejected フォルダで対応待ち {waiting} 件（これまでの拒否: 当方 {ours} 件、相手先から {theirs} 件）/ {waiting} waiting in rejected/; refused so far: {ours} of ours, {theirs} of partners'",
        ours = s.rejected,
        theirs = s.rejected_incoming
    );
    for e in &s.last_errors {
        println!("error       {e}");
    }
    if let Some(note) = s.clock.times_note() {
        println!("            （{note}）");
    }
    Ok(ExitCode::SUCCESS)
}
