//! A directory node: serves a folder of region snapshots and deltas over libp2p (for offices)
//! and plain HTTP (for mirrors and anyone else), and mirrors other directory nodes' regions so
//! any one of them can serve the whole country. Everything it takes from a mirror is verified
//! against the anchor before it is stored or served.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use futures::{AsyncWriteExt, StreamExt};
use libp2p::Multiaddr;
use renkei_directory::{Anchor, Directory};

use crate::dirsync::{self, DirFolder, HttpSource, Request};
use crate::frames::{self, Kind};
use crate::net::{self, DIRECTORY, Net};

/// How a directory node runs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The folder of published files.
    pub data: PathBuf,
    /// The trust anchor.
    pub anchor: Anchor,
    /// The node's identity key (its PeerId).
    pub identity: ed25519_dalek::SigningKey,
    /// libp2p listen addresses.
    pub listen: Vec<Multiaddr>,
    /// HTTP listen address, e.g. `127.0.0.1:4780`.
    pub http: Option<std::net::SocketAddr>,
    /// Other directory nodes' HTTP base URLs to mirror.
    pub mirrors: Vec<String>,
    /// Seconds between mirror pulls.
    pub refresh_secs: u64,
}

/// A running directory node.
#[derive(Debug)]
pub struct DirectoryNode {
    /// Its swarm.
    pub net: net::Net,
    /// The HTTP address it bound.
    pub http: Option<std::net::SocketAddr>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl DirectoryNode {
    /// Stops it.
    pub fn stop(self) {
        for t in self.tasks {
            t.abort();
        }
    }
}

fn load(folder: &DirFolder, anchor: &Anchor) -> anyhow::Result<Directory> {
    // Its entries (used to admit offices) stay in unnamed scratch files next to the files it
    // serves (not in /tmp, which may be memory); the node serves the snapshot files themselves.
    let mut d = Directory::on_disk(anchor.clone(), crate::scratch_folder(&folder.path)?);
    for p in folder.load(&mut d) {
        tracing::warn!("refusing a file in the directory folder: {p}");
    }
    Ok(d)
}

/// Starts a directory node.
pub async fn start(cfg: ServeConfig) -> anyhow::Result<DirectoryNode> {
    let folder = DirFolder::new(&cfg.data)?;
    let view = Arc::new(RwLock::new(load(&folder, &cfg.anchor)?));
    let gate_view = view.clone();
    let members = net::directory_members(gate_view);
    let net = net::start(&cfg.identity, &cfg.listen, members, Duration::from_secs(30))?;
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn({
        let (net, folder) = (net.clone(), folder.clone());
        async move {
            if let Err(e) = serve_p2p(net, folder, Duration::from_secs(30)).await {
                tracing::warn!("directory protocol: {e:#}");
            }
        }
    }));
    let mut http = None;
    if let Some(addr) = cfg.http {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        http = Some(listener.local_addr()?);
        let app = axum::Router::new()
            .route("/v1/regions", get(list))
            .route("/v1/regions/{region}/snapshot", get(snapshot))
            .route("/v1/regions/{region}/delta/{from}", get(delta))
            .with_state(folder.clone());
        tasks.push(tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!("directory HTTP: {e}");
            }
        }));
    }
    // Mirror the other nodes, and pick up files an operator publishes into the folder.
    tasks.push(tokio::spawn({
        let (folder, anchor, view) = (folder.clone(), cfg.anchor.clone(), view.clone());
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?;
        let mirrors = cfg.mirrors.clone();
        let every = Duration::from_secs(cfg.refresh_secs.max(1));
        async move {
            loop {
                let mut d = match load(&folder, &anchor) {
                    Ok(d) => d,
                    Err(e) => {
                        // Keep serving and admitting with the view we have.
                        tracing::error!("{e:#}");
                        tokio::time::sleep(every).await;
                        continue;
                    }
                };
                for m in &mirrors {
                    let mut src = HttpSource {
                        base: m.clone(),
                        client: client.clone(),
                    };
                    match dirsync::pull(&mut src, &mut d, &folder).await {
                        Ok(r) => {
                            for x in r.refused {
                                tracing::warn!(mirror = %m, "refused: {x}");
                            }
                            if !r.updated.is_empty() {
                                tracing::info!(mirror = %m, updated = ?r.updated, "mirrored");
                            }
                        }
                        Err(e) => tracing::debug!(mirror = %m, "unreachable: {e:#}"),
                    }
                }
                *view.write().unwrap_or_else(|p| p.into_inner()) = d;
                tokio::time::sleep(every).await;
            }
        }
    }));
    Ok(DirectoryNode { net, http, tasks })
}

/// Answers directory requests on incoming libp2p streams from `folder`.
pub async fn serve_p2p(net: Net, folder: DirFolder, timeout: Duration) -> anyhow::Result<()> {
    let mut incoming = net
        .control
        .clone()
        .accept(DIRECTORY)
        .map_err(|_| anyhow::anyhow!("directory protocol already served"))?;
    while let Some((peer, mut s)) = incoming.next().await {
        let folder = folder.clone();
        tokio::spawn(async move {
            let mut buf = Vec::new();
            let Ok(Some(Kind::Request)) = frames::read(&mut s, &mut buf, timeout).await else {
                return;
            };
            let answer = match serde_json::from_slice::<Request>(&buf) {
                Ok(Request::List) => serde_json::to_vec(&folder.list()).ok(),
                Ok(Request::Snapshot { region }) => folder.snapshot(&region),
                Ok(Request::Delta { region, from }) => folder.delta(&region, from),
                Err(_) => None,
            };
            let r = match answer {
                Some(b) => frames::write(&mut s, Kind::Blob, &b).await,
                None => frames::write(&mut s, Kind::NotFound, b"no such file").await,
            };
            if r.is_ok() {
                let _ = s.close().await;
            }
            tracing::debug!(%peer, "answered a directory request");
        });
    }
    Ok(())
}

async fn list(State(folder): State<DirFolder>) -> impl IntoResponse {
    axum::Json(folder.list())
}

async fn snapshot(
    State(folder): State<DirFolder>,
    UrlPath(region): UrlPath<String>,
) -> impl IntoResponse {
    match folder.snapshot(&region) {
        Some(b) => (StatusCode::OK, b).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn delta(
    State(folder): State<DirFolder>,
    UrlPath((region, from)): UrlPath<(String, u64)>,
) -> impl IntoResponse {
    match folder.delta(&region, from) {
        Some(b) => (StatusCode::OK, b).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
