//! A directory node: serves a folder of region snapshots and deltas over libp2p (for offices)
//! and plain HTTP (for mirrors, other members, and anyone when `--public-read`), and mirrors
//! other directory nodes' regions so any one of them can serve the whole country. Everything it
//! takes from a mirror is verified against the anchor before it is stored or served.
//!
//! The HTTP server answers only requests signed by a directory node's or an active member
//! office's key (SPEC.md §6.6), bounds how long a connection may take to send its headers and
//! to live, and how many connections it serves at once.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use axum::extract::{Path as UrlPath, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::{AsyncWriteExt, StreamExt};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use libp2p::Multiaddr;
use renkei_directory::{Anchor, Directory};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::dirsync::{self, DirFolder, HTTP_AUTH_WINDOW_SECS, HttpSignature, HttpSource, Request};
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
    /// Limits and access of the HTTP server.
    pub http_options: HttpOptions,
    /// The node's clock (signed requests and its directory's validity windows).
    pub clock: Clock,
    /// Its mailbox for the offices of its regions (SPEC.md §7.6); `None`: no mailbox.
    pub mailbox: Option<crate::mailbox::MailboxConfig>,
    /// Its circuit relay for member offices, with these limits (SPEC.md §7.4); `None`: no
    /// relay.
    pub relay: Option<net::RelayLimits>,
}

/// The clock a directory node runs on.
pub type Clock = Arc<dyn crate::env::Clock>;

/// Limits and access of a directory node's HTTP server (SPEC.md §6.6).
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// A client must send a request's complete headers within this time of the server starting
    /// to wait for them; an idle keep-alive connection is closed after it too. Default 10 s.
    pub header_read_timeout: Duration,
    /// A connection is closed this long after it was accepted, after finishing the response in
    /// progress if that takes at most [`CLOSE_GRACE`] more. Default 60 s.
    pub connection_timeout: Duration,
    /// Connections served at once. A connection beyond it gets a 503 answer and is closed at
    /// once (it does not wait). Default 64.
    pub max_connections: usize,
    /// Serve GET and HEAD without a signature, for an association that wants its directory
    /// public (`renkei directory serve --public-read`). Default false: members only.
    pub public_read: bool,
}

impl Default for HttpOptions {
    fn default() -> HttpOptions {
        HttpOptions {
            header_read_timeout: Duration::from_secs(10),
            connection_timeout: Duration::from_secs(60),
            max_connections: 64,
            public_read: false,
        }
    }
}

/// How long a connection past its `connection_timeout` may take to finish its response.
pub const CLOSE_GRACE: Duration = Duration::from_secs(5);

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
    let members = net::directory_members(gate_view, cfg.clock.clone());
    let net = net::start(
        &cfg.identity,
        &cfg.listen,
        members,
        &net::NetConfig {
            relay: cfg.relay,
            ..net::NetConfig::directory_node().on(&cfg.listen)
        },
    )?;
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn({
        let (net, folder, clock) = (net.clone(), folder.clone(), cfg.clock.clone());
        async move {
            if let Err(e) = serve_p2p(net, folder, Duration::from_secs(30), clock).await {
                tracing::warn!("directory protocol: {e:#}");
            }
        }
    }));
    if let Some(mcfg) = cfg.mailbox.clone() {
        let mailbox = crate::mailbox::Mailbox::new(
            &cfg.data,
            view.clone(),
            cfg.clock.clone(),
            cfg.identity.clone(),
            mcfg,
        )?;
        let net = net.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = crate::mailbox::serve(mailbox, net, Duration::from_secs(30)).await {
                tracing::warn!("mailbox: {e:#}");
            }
        }));
    }
    // Signed HTTP requests, ours and theirs, are dated by the node's clock.
    let clock: Clock = cfg.clock.clone();
    let mut http = None;
    if let Some(addr) = cfg.http {
        let listener = TcpListener::bind(addr).await?;
        http = Some(listener.local_addr()?);
        let access = Access {
            view: view.clone(),
            clock: clock.clone(),
            public_read: cfg.http_options.public_read,
        };
        if access.public_read {
            tracing::info!("directory HTTP: public read (GET without a signature)");
        }
        let app = http_app(folder.clone(), access);
        tasks.push(tokio::spawn(serve_http(
            listener,
            app,
            cfg.http_options.clone(),
        )));
    }
    // Mirror the other nodes, and pick up files an operator publishes into the folder.
    tasks.push(tokio::spawn({
        let (folder, anchor, view) = (folder.clone(), cfg.anchor.clone(), view.clone());
        // Pooled connections idle for less than the serving side's header-read timeout (10 s
        // by default), so a pull does not start on a connection the other node is closing.
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_idle_timeout(Duration::from_secs(5))
            .build()?;
        let (identity, clock, net) = (cfg.identity.clone(), clock.clone(), net.clone());
        let mirrors = cfg.mirrors.clone();
        let every = Duration::from_secs(cfg.refresh_secs.max(1));
        async move {
            let mut seen = None;
            loop {
                // Nothing published and nothing to mirror: the directory is the one served.
                let stamp = folder.stamp();
                if mirrors.is_empty() && stamp.is_some() && stamp == seen {
                    tokio::time::sleep(every).await;
                    continue;
                }
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
                        identity: identity.clone(),
                        clock: clock.clone(),
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
                        Err(e) => match e.downcast_ref::<dirsync::HttpRefused>() {
                            // Not a network blip: the other node does not count us as a member.
                            Some(r) => tracing::warn!(
                                mirror = %m,
                                "ミラー元がこのノードの要求を拒否しました。このノードの鍵を、ミラー元が持つ地域に add-node で登録してください。 / The mirrored node refused this node's requests: list this node's key with add-node in a region it holds. ({r})"
                            ),
                            None => tracing::debug!(mirror = %m, "unreachable: {e:#}"),
                        },
                    }
                }
                let versions = |d: &Directory| -> Vec<(u64, [u8; 32])> {
                    d.regions().map(|r| (r.seq, r.digest)).collect()
                };
                let changed = {
                    let mut v = view.write().unwrap_or_else(|p| p.into_inner());
                    let changed = versions(&v) != versions(&d);
                    *v = d;
                    changed
                };
                if changed {
                    // A revoked office loses its relay slot and its circuits with its
                    // connection.
                    net.command(net::Command::ExpelNonMembers);
                }
                seen = stamp;
                tokio::time::sleep(every).await;
            }
        }
    }));
    Ok(DirectoryNode { net, http, tasks })
}

/// A directory node as `renkei directory serve` is told to run it: files and addresses as
/// the operator typed them (the command's flags; their doc comments are its `--help`).
#[derive(Debug, Clone, clap::Args)]
pub struct ServeOptions {
    /// The folder of published files.
    #[arg(long)]
    pub data: PathBuf,
    /// The trust anchor.
    #[arg(long)]
    pub anchor: PathBuf,
    /// The node's key file (from node-init).
    #[arg(long)]
    pub identity: PathBuf,
    /// libp2p listen address (repeat).
    #[arg(long)]
    pub listen: Vec<String>,
    /// HTTP listen address, e.g. 127.0.0.1:4780.
    #[arg(long)]
    pub http: Option<std::net::SocketAddr>,
    /// Another directory node's HTTP base URL to mirror (repeat).
    #[arg(long = "mirror")]
    pub mirrors: Vec<String>,
    /// Seconds between rereading the data folder (newly published files) and mirror pulls.
    #[arg(long, default_value_t = 10)]
    pub refresh_secs: u64,
    /// Serve the directory over HTTP to anyone, unsigned (default: only requests signed by
    /// a directory node or a member office; SPEC.md §6.6).
    #[arg(long)]
    pub public_read: bool,
    /// Run no mailbox (by default a directory node keeps sealed files for the offices of its
    /// regions while they are off; SPEC.md §7.6).
    #[arg(long)]
    pub no_mailbox: bool,
    /// Days the mailbox keeps a sealed file at most.
    #[arg(long, default_value_t = 14)]
    pub mailbox_ttl_days: u64,
    /// Files the mailbox keeps for one office at most.
    #[arg(long, default_value_t = 10_000)]
    pub mailbox_max_files: usize,
    /// MiB the mailbox keeps for one office at most.
    #[arg(long, default_value_t = 2048)]
    pub mailbox_max_mb: u64,
    /// Relay no circuits (by default a directory node relays between member offices that
    /// cannot dial each other; SPEC.md §7.4).
    #[arg(long)]
    pub no_relay: bool,
    /// Offices holding a relay slot at once, at most.
    #[arg(long, default_value_t = net::RelayLimits::default().max_reservations)]
    pub relay_max_reservations: usize,
    /// Relayed circuits open at once, at most.
    #[arg(long, default_value_t = net::RelayLimits::default().max_circuits)]
    pub relay_max_circuits: usize,
    /// Seconds one relayed circuit may stay open.
    #[arg(long, default_value_t = net::RelayLimits::default().max_circuit_duration.as_secs())]
    pub relay_max_circuit_secs: u64,
    /// MiB one relayed circuit may carry (both directions); keep it above the federation's
    /// largest file (`max_file_mb`, 256 by default), or such a file is never relayed.
    #[arg(long, default_value_t = net::RelayLimits::default().max_circuit_bytes >> 20)]
    pub relay_max_circuit_mb: u64,
}

/// `renkei directory serve`: runs a directory node in the foreground until Ctrl-C, after
/// printing the addresses offices give to `renkei init --directory-node`.
pub fn serve_command(opts: ServeOptions) -> anyhow::Result<ExitCode> {
    let ServeOptions {
        data,
        anchor,
        identity,
        listen,
        http,
        mirrors,
        refresh_secs,
        public_read,
        no_mailbox,
        mailbox_ttl_days,
        mailbox_max_files,
        mailbox_max_mb,
        no_relay,
        relay_max_reservations,
        relay_max_circuits,
        relay_max_circuit_secs,
        relay_max_circuit_mb,
    } = opts;
    let anchor = dirsync::read_anchor(&anchor)?;
    let identity = crate::admin::read_secret(&identity)?;
    let addrs = listen.clone();
    let listen = listen
        .iter()
        .map(|a| a.parse().with_context(|| format!("bad address {a}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    crate::runtime()?.block_on(async move {
        let n = start(ServeConfig {
            data,
            anchor,
            identity,
            listen,
            http,
            mirrors,
            refresh_secs,
            http_options: HttpOptions {
                public_read,
                ..Default::default()
            },
            clock: Arc::new(crate::env::SystemClock),
            mailbox: (!no_mailbox).then(|| crate::mailbox::MailboxConfig {
                ttl_secs: mailbox_ttl_days.saturating_mul(86400),
                max_files: mailbox_max_files,
                max_bytes: mailbox_max_mb.saturating_mul(1 << 20),
            }),
            relay: (!no_relay).then(|| net::RelayLimits {
                max_reservations: relay_max_reservations,
                max_circuits: relay_max_circuits,
                max_circuit_duration: Duration::from_secs(
                    relay_max_circuit_secs.clamp(1, u64::from(u32::MAX)),
                ),
                max_circuit_bytes: relay_max_circuit_mb.saturating_mul(1 << 20),
                ..Default::default()
            }),
        })
        .await?;
        println!("directory node {} serving", n.net.peer_id);
        // What offices give to `renkei init --directory-node` (0.0.0.0 is not dialable:
        // the operator puts the host's own address there).
        for a in &addrs {
            let note = if crate::admin::is_unspecified(a) {
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
    Ok(ExitCode::SUCCESS)
}

/// Answers directory requests on incoming libp2p streams from `folder`, and time requests
/// from `clock`.
pub async fn serve_p2p(
    net: Net,
    folder: DirFolder,
    timeout: Duration,
    clock: Clock,
) -> anyhow::Result<()> {
    let mut incoming = net
        .control
        .clone()
        .accept(DIRECTORY)
        .map_err(|_| anyhow::anyhow!("directory protocol already served"))?;
    while let Some((peer, mut s)) = incoming.next().await {
        let (folder, clock) = (folder.clone(), clock.clone());
        tokio::spawn(async move {
            let mut buf = Vec::new();
            let Ok(Some(Kind::Request)) =
                frames::read(&mut s, &mut buf, timeout, &[Kind::Request]).await
            else {
                return;
            };
            let answer = match serde_json::from_slice::<Request>(&buf) {
                Ok(Request::List) => serde_json::to_vec(&folder.list()).ok(),
                Ok(Request::Snapshot { region }) => folder.snapshot(&region),
                Ok(Request::Delta { region, from }) => folder.delta(&region, from),
                Ok(Request::Time) => serde_json::to_vec(&dirsync::TimeAnswer {
                    time_ms: clock.now_ms(),
                })
                .ok(),
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

/// Who may read over HTTP.
#[derive(Clone)]
struct Access {
    view: Arc<RwLock<Directory>>,
    clock: Clock,
    public_read: bool,
}

/// The HTTP routes (SPEC.md §6.6) behind the access check.
fn http_app(folder: DirFolder, access: Access) -> axum::Router {
    axum::Router::new()
        .route("/v1/regions", get(list))
        .route("/v1/regions/{region}/snapshot", get(snapshot))
        .route("/v1/regions/{region}/delta/{from}", get(delta))
        .with_state(folder)
        .layer(axum::middleware::from_fn_with_state(access, check_access))
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Refusal {
    Unsigned,
    Malformed,
    /// Signed too far from this node's clock, which reads `now` (Unix seconds).
    OutsideWindow {
        now: u64,
    },
    BadSignature,
    NotAMember,
    DirectoryUnreadable,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let (status, text): (StatusCode, std::borrow::Cow<'static, str>) = match self {
            Refusal::Unsigned => (
                StatusCode::UNAUTHORIZED,
                "署名のない要求です。ディレクトリノードまたは会員事業所の鍵で署名してください（SPEC.md §6.6）。 / Unsigned request: sign it with a directory node's or member office's key (SPEC.md §6.6)."
                    .into(),
            ),
            Refusal::Malformed => (
                StatusCode::UNAUTHORIZED,
                "Authorization ヘッダーの形式が違います（SPEC.md §6.6 を参照してください）。 / Malformed Authorization header: see SPEC.md §6.6."
                    .into(),
            ),
            Refusal::OutsideWindow { now } => (
                StatusCode::UNAUTHORIZED,
                format!(
                    "要求の時刻がこのノードの時計（{t}）と1日以上ずれています。時刻を自動で合わせる設定にして、新しく署名してください。 / The request's time is more than a day from this node's clock ({t}): set the clock to update automatically and sign a new request.",
                    t = crate::env::jst(now.saturating_mul(1000))
                )
                .into(),
            ),
            Refusal::BadSignature => (
                StatusCode::UNAUTHORIZED,
                "署名がこの要求と一致しません。メソッドとパスをそのまま署名してください。 / The signature does not match this request: sign its exact method and path."
                    .into(),
            ),
            Refusal::NotAMember => (
                StatusCode::FORBIDDEN,
                "この鍵はディレクトリノードのものでも有効な会員事業所のものでもありません。協会に登録を確認してください。 / This key is neither a directory node's nor an active member office's: ask your association to check your registration."
                    .into(),
            ),
            Refusal::DirectoryUnreadable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "このノードはいまディレクトリを読めません。しばらくしてから再試行してください。 / This node cannot read its directory right now: try again shortly."
                    .into(),
            ),
        };
        let mut r = (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("{text}\n"),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static(dirsync::HTTP_AUTH_SCHEME),
            );
        }
        r
    }
}

/// Checks a request's `Authorization` header (SPEC.md §6.6): well formed, signed within
/// [`HTTP_AUTH_WINDOW_SECS`] of `now`, the signature verifies over this method and target,
/// and the key is a directory node's or an active office's in `view`. Returns the key.
fn authorize(
    authorization: Option<&[u8]>,
    method: &str,
    path_and_query: &str,
    view: &Directory,
    now: u64,
) -> Result<[u8; 32], Refusal> {
    let value = authorization.ok_or(Refusal::Unsigned)?;
    let sig = std::str::from_utf8(value)
        .ok()
        .and_then(HttpSignature::parse)
        .ok_or(Refusal::Malformed)?;
    if now.abs_diff(sig.time) > HTTP_AUTH_WINDOW_SECS {
        return Err(Refusal::OutsideWindow { now });
    }
    if !sig.verifies(method, path_and_query) {
        return Err(Refusal::BadSignature);
    }
    if view.is_directory_node(&sig.key) {
        return Ok(sig.key);
    }
    match view.active_office_by_key(&sig.key, now) {
        Ok(Some(_)) => Ok(sig.key),
        Ok(None) => Err(Refusal::NotAMember),
        Err(e) => {
            tracing::warn!("directory HTTP: cannot read the directory: {e}");
            Err(Refusal::DirectoryUnreadable)
        }
    }
}

async fn check_access(
    State(access): State<Access>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if access.public_read && (req.method() == Method::GET || req.method() == Method::HEAD) {
        return next.run(req).await;
    }
    let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let verdict = {
        let view = access.view.read().unwrap_or_else(|p| p.into_inner());
        authorize(
            req.headers()
                .get(header::AUTHORIZATION)
                .map(|v| v.as_bytes()),
            req.method().as_str(),
            target,
            &view,
            access.clock.now_ms() / 1000,
        )
    };
    match verdict {
        Ok(key) => {
            tracing::debug!(key = %hex::encode(key), %target, "directory HTTP request");
            next.run(req).await
        }
        Err(refusal) => {
            tracing::debug!(?refusal, %target, "refused a directory HTTP request");
            refusal.into_response()
        }
    }
}

/// Serves `app` on `listener`, at most `opts.max_connections` connections at once, each with
/// the header-read and connection timeouts of `opts`.
async fn serve_http(listener: TcpListener, app: axum::Router, opts: HttpOptions) {
    let slots = Arc::new(Semaphore::new(opts.max_connections.max(1)));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors, for instance: back off instead of spinning.
                tracing::warn!("directory HTTP: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "directory HTTP: at the connection limit, refused");
            // One non-blocking write straight to the socket (a fresh socket's send buffer is
            // empty, so it fits), then dropping closes it; nothing waits on this client.
            if let Ok(mut s) = stream.into_std() {
                let _ = std::io::Write::write(&mut s, &busy_answer());
            }
            continue;
        };
        let (app, opts) = (app.clone(), opts.clone());
        tokio::spawn(async move {
            serve_connection(stream, app, &opts).await;
            drop(slot);
        });
    }
}

/// The 503 answer to a connection beyond the limit.
fn busy_answer() -> Vec<u8> {
    let body = "接続が多すぎます。しばらくしてから再試行してください。 / Too many connections: try again shortly.\n";
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\nretry-after: 5\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

async fn serve_connection(stream: TcpStream, app: axum::Router, opts: &HttpOptions) {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(opts.header_read_timeout);
    let conn = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!("directory HTTP connection: {e}");
            }
        }
        _ = tokio::time::sleep(opts.connection_timeout) => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(CLOSE_GRACE, conn).await;
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    use dirsync::{RegionSummary, http_authorization};
    use ed25519_dalek::SigningKey;
    use renkei_directory::{Entry, NodeInfo, OfficeKey, Snapshot, Status};
    use renkei_protocol::{OfficeNumber, ServiceKind};
    use tokio::io::{AsyncReadExt, AsyncWriteExt as _};

    const NOW: u64 = 1_790_000_000;
    const LIST: &str = "/v1/regions";

    struct Fixture {
        _tmp: tempfile::TempDir,
        anchor: Anchor,
        folder: DirFolder,
        view: Arc<RwLock<Directory>>,
        /// A directory node listed by the region.
        node: SigningKey,
        /// An active office's identity key.
        office: SigningKey,
        /// A revoked office's identity key.
        revoked: SigningKey,
        /// A key the directory does not know.
        stranger: SigningKey,
    }

    fn entry(office: &str, key: &SigningKey, status: Status) -> Entry {
        Entry {
            office: OfficeNumber::parse(office).unwrap(),
            name: "事業所".into(),
            kinds: vec![ServiceKind::parse("43").unwrap()],
            keys: vec![OfficeKey {
                identity: key.verifying_key().to_bytes(),
                encryption: [8; 32],
                valid_from: 0,
                valid_until: u64::MAX,
            }],
            addresses: vec!["/ip4/192.0.2.1/tcp/4700".into()],
            status,
            mailboxes: Vec::new(),
        }
    }

    fn fixture() -> Fixture {
        let (anchor, cert, region) = crate::dirsync::tests::setup();
        let (node, office) = (
            SigningKey::from_bytes(&[3; 32]),
            SigningKey::from_bytes(&[4; 32]),
        );
        let revoked = SigningKey::from_bytes(&[5; 32]);
        let stranger = SigningKey::from_bytes(&[6; 32]);
        let nodes = [NodeInfo {
            key: node.verifying_key().to_bytes(),
            addresses: vec![],
            http: None,
        }];
        let entries = [
            entry("1310000001", &office, Status::Active),
            entry("1310000002", &revoked, Status::Revoked),
        ];
        let bytes = Snapshot::build(&cert, &region, 1, NOW, NOW + 86400, &nodes, &entries);
        let tmp = tempfile::tempdir().unwrap();
        let folder = DirFolder::new(tmp.path()).unwrap();
        folder.store_snapshot("13-tokyo", 1, &bytes).unwrap();
        let mut view = Directory::new(anchor.clone());
        view.apply_snapshot(&bytes).unwrap();
        Fixture {
            _tmp: tmp,
            anchor,
            folder,
            view: Arc::new(RwLock::new(view)),
            node,
            office,
            revoked,
            stranger,
        }
    }

    /// A clock the test sets (Unix seconds).
    fn settable_clock(at: u64) -> (crate::env::ManualClock, Clock) {
        let clock = crate::env::ManualClock::new(at * 1000);
        (clock.clone(), Arc::new(clock))
    }

    async fn serve(f: &Fixture, opts: HttpOptions, clock: Clock) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let access = Access {
            view: f.view.clone(),
            clock,
            public_read: opts.public_read,
        };
        tokio::spawn(serve_http(
            listener,
            http_app(f.folder.clone(), access),
            opts,
        ));
        addr
    }

    /// Reads one HTTP answer: (status, body); `None` if the connection closed or broke first.
    async fn read_answer(s: &mut TcpStream) -> Option<(u16, String)> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = s.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let status = head.split(' ').nth(1)?.parse().ok()?;
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))?
            .trim()
            .parse()
            .ok()?;
        while buf.len() < head_end + len {
            let n = s.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Some((
            status,
            String::from_utf8_lossy(&buf[head_end..head_end + len]).into(),
        ))
    }

    /// Sends one GET on `s` (keep-alive) and reads its answer, giving up after 5 s.
    async fn exchange(s: &mut TcpStream, path: &str, auth: Option<&str>) -> Option<(u16, String)> {
        let mut req = format!("GET {path} HTTP/1.1\r\nhost: test\r\n");
        if let Some(a) = auth {
            req.push_str(&format!("authorization: {a}\r\n"));
        }
        req.push_str("\r\n");
        tokio::time::timeout(Duration::from_secs(5), async {
            s.write_all(req.as_bytes()).await.ok()?;
            read_answer(s).await
        })
        .await
        .ok()?
    }

    /// One GET on a new connection.
    async fn get(addr: std::net::SocketAddr, path: &str, auth: Option<&str>) -> (u16, String) {
        let mut s = TcpStream::connect(addr).await.unwrap();
        exchange(&mut s, path, auth).await.expect("an answer")
    }

    /// Whether the server closes `s` within `limit` (whatever it sends first is read and dropped).
    async fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
        tokio::time::timeout(limit, async {
            let mut chunk = [0u8; 1024];
            while let Ok(n) = s.read(&mut chunk).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await
        .is_ok()
    }

    #[tokio::test]
    async fn a_silent_or_slow_client_is_cut_off_at_the_header_timeout() {
        let f = fixture();
        let opts = HttpOptions {
            header_read_timeout: Duration::from_secs(1),
            public_read: true,
            ..Default::default()
        };
        let addr = serve(&f, opts, settable_clock(NOW).1).await;
        let started = Instant::now();
        let mut silent = TcpStream::connect(addr).await.unwrap();
        let mut partial = TcpStream::connect(addr).await.unwrap();
        partial
            .write_all(b"GET /v1/regions HTTP/1.1\r\nhost: test\r\n")
            .await
            .unwrap();
        // A keep-alive connection that got its answer and then goes quiet.
        let mut idle = TcpStream::connect(addr).await.unwrap();
        assert_eq!(exchange(&mut idle, LIST, None).await.unwrap().0, 200);
        for (what, s) in [
            ("silent", &mut silent),
            ("partial header", &mut partial),
            ("idle", &mut idle),
        ] {
            assert!(
                closed_within(s, Duration::from_secs(5)).await,
                "{what}: still connected after {:?}",
                started.elapsed()
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn a_client_that_keeps_its_connection_busy_is_cut_off_at_the_connection_timeout() {
        let f = fixture();
        let opts = HttpOptions {
            header_read_timeout: Duration::from_secs(1),
            connection_timeout: Duration::from_secs(2),
            public_read: true,
            ..Default::default()
        };
        let addr = serve(&f, opts, settable_clock(NOW).1).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        let started = Instant::now();
        let mut answered = 0;
        // A request every 200 ms: each one well inside the header timeout.
        while started.elapsed() < Duration::from_secs(10) {
            match exchange(&mut s, LIST, None).await {
                Some((200, _)) => answered += 1,
                _ => break,
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let held = started.elapsed();
        assert!(answered >= 3, "served {answered} requests");
        // Closed at 2 s, or at the latest when the grace for a response in progress ends.
        assert!(
            held < Duration::from_secs(2) + CLOSE_GRACE,
            "the connection lasted {held:?}"
        );
    }

    #[tokio::test]
    async fn connections_beyond_the_limit_are_refused_while_it_is_held() {
        let f = fixture();
        let opts = HttpOptions {
            max_connections: 2,
            public_read: true,
            ..Default::default()
        };
        let addr = serve(&f, opts, settable_clock(NOW).1).await;
        // Two connections served and kept open (an answer proves the server holds them).
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut s = TcpStream::connect(addr).await.unwrap();
            assert_eq!(exchange(&mut s, LIST, None).await.unwrap().0, 200);
            held.push(s);
        }
        for _ in 0..3 {
            let mut third = TcpStream::connect(addr).await.unwrap();
            let answer = tokio::time::timeout(Duration::from_secs(5), read_answer(&mut third))
                .await
                .expect("an immediate answer");
            let (status, body) = answer.expect("a 503 answer");
            assert_eq!(status, 503, "{body}");
            assert!(body.contains("接続が多すぎます") && body.contains("Too many connections"));
            assert!(closed_within(&mut third, Duration::from_secs(1)).await);
        }
        // The held ones still work; once one closes, its slot is free again.
        assert_eq!(exchange(&mut held[1], LIST, None).await.unwrap().0, 200);
        drop(held.remove(0));
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let mut s = TcpStream::connect(addr).await.unwrap();
            match exchange(&mut s, LIST, None).await {
                Some((200, _)) => break,
                other => assert!(Instant::now() < deadline, "no slot came back: {other:?}"),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn only_directory_nodes_and_member_offices_may_read() {
        let f = fixture();
        let (now, clock) = settable_clock(NOW);
        let addr = serve(&f, HttpOptions::default(), clock).await;
        let sign = |k: &SigningKey, path: &str, t: u64| http_authorization(k, "GET", path, t);

        let (status, body) = get(addr, LIST, None).await;
        assert_eq!(status, 401);
        assert!(
            body.contains("署名のない要求") && body.contains("Unsigned request"),
            "{body}"
        );
        let (status, _) = get(addr, LIST, Some("Renkei-Ed25519 key=00, time=1, sig=00")).await;
        assert_eq!(status, 401);
        for (who, key) in [
            ("a stranger", &f.stranger),
            ("a revoked office", &f.revoked),
        ] {
            let (status, body) = get(addr, LIST, Some(&sign(key, LIST, NOW))).await;
            assert_eq!(status, 403, "{who}");
            assert!(body.contains("neither a directory node's"), "{who}: {body}");
        }
        // Signed for one path, sent for another.
        let snap = "/v1/regions/13-tokyo/snapshot";
        assert_eq!(
            get(addr, snap, Some(&sign(&f.office, LIST, NOW))).await.0,
            401
        );
        // Signed too far ahead.
        let ahead = sign(&f.node, LIST, NOW + HTTP_AUTH_WINDOW_SECS + 1);
        assert_eq!(get(addr, LIST, Some(&ahead)).await.0, 401);
        // Signed by a clock an hour fast, or three hours slow: still inside the window.
        for t in [NOW + 3600, NOW - 3 * 3600] {
            let (status, body) = get(addr, LIST, Some(&sign(&f.node, LIST, t))).await;
            assert_eq!(status, 200, "{body}");
        }

        for key in [&f.node, &f.office] {
            let (status, body) = get(addr, LIST, Some(&sign(key, LIST, NOW))).await;
            assert_eq!(status, 200, "{body}");
            let list: Vec<RegionSummary> = serde_json::from_str(&body).unwrap();
            assert_eq!(list[0].region, "13-tokyo");
            assert_eq!(get(addr, snap, Some(&sign(key, snap, NOW))).await.0, 200);
        }

        // The same signed request replayed later: accepted inside the window, refused after.
        let signed = sign(&f.office, LIST, NOW);
        now.set((NOW + HTTP_AUTH_WINDOW_SECS) * 1000);
        assert_eq!(get(addr, LIST, Some(&signed)).await.0, 200);
        now.set((NOW + HTTP_AUTH_WINDOW_SECS + 1) * 1000);
        let (status, body) = get(addr, LIST, Some(&signed)).await;
        assert_eq!(status, 401);
        assert!(
            body.contains("more than a day from this node's clock")
                && body.contains(&crate::env::jst((NOW + HTTP_AUTH_WINDOW_SECS + 1) * 1000)),
            "{body}"
        );
    }

    #[tokio::test]
    async fn with_public_read_an_unsigned_get_is_served() {
        let f = fixture();
        let opts = HttpOptions {
            public_read: true,
            ..Default::default()
        };
        let addr = serve(&f, opts, settable_clock(NOW).1).await;
        let (status, body) = get(addr, LIST, None).await;
        assert_eq!(status, 200, "{body}");
        let list: Vec<RegionSummary> = serde_json::from_str(&body).unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(
            get(addr, "/v1/regions/13-tokyo/snapshot", None).await.0,
            200
        );
    }

    #[tokio::test]
    async fn a_mirror_signs_its_pulls_with_its_node_key() {
        let f = fixture();
        let (_, clock) = settable_clock(NOW);
        let addr = serve(&f, HttpOptions::default(), clock.clone()).await;
        let tmp = tempfile::tempdir().unwrap();
        let cache = DirFolder::new(tmp.path()).unwrap();
        let mut mirror = HttpSource {
            base: format!("http://{addr}/"),
            client: reqwest::Client::new(),
            identity: f.node.clone(),
            clock,
        };
        let mut d = Directory::new(f.anchor.clone());
        let r = dirsync::pull(&mut mirror, &mut d, &cache).await.unwrap();
        assert_eq!(r.updated, vec![("13-tokyo".to_string(), 1)]);
        mirror.identity = f.stranger.clone();
        let e = dirsync::pull(&mut mirror, &mut Directory::new(f.anchor.clone()), &cache)
            .await
            .unwrap_err();
        let refused = e.downcast_ref::<dirsync::HttpRefused>().expect("a refusal");
        assert_eq!(refused.status, 403, "{e:#}");
        assert!(refused.why.contains("neither a directory node's"), "{e:#}");
    }
}
