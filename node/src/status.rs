//! A node's status, built from its shared state: written to `H/state/status.json` for `renkei
//! status`, and the same function serves anything else that asks a running node.

use std::sync::Arc;

use renkei_directory::Freshness;
use serde::{Deserialize, Serialize};

use crate::files::write_atomic;
use crate::state::{Shared, lock};

/// The status file `renkei status` reads (`H/state/status.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
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
}

/// One region's freshness in the status.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
            .freshness(now, shared.config.expiry_warning_hours * 3600)
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
    let queued = lock(&shared.queue).items.len();
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
    }
}

/// Writes the status file.
pub(crate) async fn write_status(shared: &Arc<Shared>) -> anyhow::Result<Status> {
    let status = status(shared).await;
    let bytes = serde_json::to_vec_pretty(&status)?;
    let path = shared.home.status();
    tokio::task::spawn_blocking(move || write_atomic(&path, &bytes, false)).await??;
    Ok(status)
}
