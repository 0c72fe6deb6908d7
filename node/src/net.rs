//! The libp2p transport: TCP and QUIC (noise, yamux), or the in-memory transport for tests
//! (same noise and yamux); identify, ping, raw streams, connection limits, and a gate that
//! drops every connection from a peer that is not a directory member before any protocol runs.
//! SPEC.md §7.4.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::StreamExt;
use libp2p::Transport as _;
use libp2p::core::Endpoint;
use libp2p::core::transport::{MemoryTransport, PortUse};
use libp2p::core::upgrade::Version;
use libp2p::swarm::{
    CloseConnection, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, SwarmEvent,
    THandler, THandlerInEvent, THandlerOutEvent, ToSwarm, dummy,
};
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, connection_limits, identify, identity, noise, ping, tcp,
    yamux,
};
use tokio::sync::{mpsc, oneshot};

/// The delivery protocol (SPEC.md §7).
pub const DELIVER: StreamProtocol = StreamProtocol::new(renkei_protocol::frames::DELIVER_PROTOCOL);
/// The directory sync protocol (SPEC.md §6.6).
pub const DIRECTORY: StreamProtocol =
    StreamProtocol::new(renkei_protocol::frames::DIRECTORY_PROTOCOL);
/// The mailbox protocol (SPEC.md §7.6).
pub const MAILBOX: StreamProtocol = StreamProtocol::new(renkei_protocol::frames::MAILBOX_PROTOCOL);
/// A mailbox's "mail arrived" to an office (SPEC.md §7.6).
pub const MAIL_NOTIFY: StreamProtocol =
    StreamProtocol::new(renkei_protocol::frames::MAIL_NOTIFY_PROTOCOL);

/// Decides which peers may connect. Shared with whoever updates the directory.
pub type Membership = Arc<dyn Fn(&PeerId) -> bool + Send + Sync>;

/// Admits a peer whose key is an active office's valid identity key, or a directory node's, in
/// the verified directory as it is when the peer connects (by `clock`).
pub fn directory_members(
    view: Arc<RwLock<renkei_directory::Directory>>,
    clock: Arc<dyn crate::env::Clock>,
) -> Membership {
    Arc::new(move |peer| {
        let Some(key) = key_of(peer) else {
            return false;
        };
        let d = view.read().unwrap_or_else(|p| p.into_inner());
        // A directory that cannot be read admits no office until it can (logged).
        let office = d
            .active_office_by_key(&key, clock.now_ms() / 1000)
            .unwrap_or_else(|e| {
                tracing::warn!("connection gate: {e}");
                None
            });
        office.is_some() || d.is_directory_node(&key)
    })
}

/// Which transport a swarm runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    /// TCP and QUIC v1 on real sockets: what nodes run.
    #[default]
    Sockets,
    /// libp2p's in-process memory transport (`/memory/<n>` addresses), with the same noise and
    /// yamux upgrade, behaviours and gate: many nodes in one process, for tests and the lab.
    Memory,
}

/// Connection limits. A connection over any of them is refused (libp2p connection-limits);
/// configured directory nodes are exempt from the established limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Inbound connections still in their transport handshake.
    pub pending_incoming: u32,
    /// Outbound connections still in their transport handshake.
    pub pending_outgoing: u32,
    /// Established inbound connections.
    pub established_incoming: u32,
    /// Established connections with one peer.
    pub established_per_peer: u32,
    /// Established connections in all.
    pub established_total: u32,
}

impl Limits {
    /// An office: tens of partners and a few directory nodes.
    pub const OFFICE: Limits = Limits {
        pending_incoming: 64,
        pending_outgoing: 64,
        established_incoming: 256,
        established_per_peer: 8,
        established_total: 512,
    };
    /// A directory node: thousands of offices sync from it.
    pub const DIRECTORY_NODE: Limits = Limits {
        pending_incoming: 512,
        pending_outgoing: 64,
        established_incoming: 10_000,
        established_per_peer: 8,
        established_total: 10_240,
    };

    fn connection_limits(&self) -> connection_limits::ConnectionLimits {
        connection_limits::ConnectionLimits::default()
            .with_max_pending_incoming(Some(self.pending_incoming))
            .with_max_pending_outgoing(Some(self.pending_outgoing))
            .with_max_established_incoming(Some(self.established_incoming))
            .with_max_established_per_peer(Some(self.established_per_peer))
            .with_max_established(Some(self.established_total))
    }
}

/// How long a connection may take to finish its transport handshake (and a dial to one
/// address to connect) before it is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// How a node's swarm runs (SPEC.md §7.4).
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Sockets or memory.
    pub transport: Transport,
    /// How long a connection without open streams is kept.
    pub idle_timeout: Duration,
    /// See [`HANDSHAKE_TIMEOUT`].
    pub handshake_timeout: Duration,
    /// Connection limits.
    pub limits: Limits,
}

impl NetConfig {
    /// An office node on sockets.
    pub fn office() -> Self {
        NetConfig {
            transport: Transport::Sockets,
            idle_timeout: Duration::from_secs(60),
            handshake_timeout: HANDSHAKE_TIMEOUT,
            limits: Limits::OFFICE,
        }
    }

    /// A directory node on sockets.
    pub fn directory_node() -> Self {
        NetConfig {
            idle_timeout: Duration::from_secs(30),
            limits: Limits::DIRECTORY_NODE,
            ..Self::office()
        }
    }

    /// The transport the listen addresses call for: memory for `/memory/…` addresses,
    /// sockets otherwise.
    pub fn on(self, listen: &[Multiaddr]) -> Self {
        let memory = listen.iter().any(|a| {
            a.iter()
                .any(|p| matches!(p, libp2p::multiaddr::Protocol::Memory(_)))
        });
        if memory { self.in_memory() } else { self }
    }

    /// The same, on the in-memory transport.
    pub fn in_memory(self) -> Self {
        NetConfig {
            transport: Transport::Memory,
            ..self
        }
    }
}

/// Why no connection or stream could be had. The text is a technical English detail: a
/// message to staff wraps it in a bilingual sentence that says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    /// No connection: no known address, every dial failed, or the peer refused us.
    #[error("cannot connect: {0}")]
    Unreachable(String),
    /// No connection within the caller's timeout.
    #[error("timed out connecting")]
    Timeout,
    /// The network task has stopped (the node is shutting down).
    #[error("the network task stopped")]
    Stopped,
    /// Connected, but the stream was not taken (protocol not served, connection lost).
    #[error("cannot open a stream: {0}")]
    StreamRefused(String),
    /// Connected, but the stream did not open within the timeout.
    #[error("timed out opening a stream")]
    StreamTimeout,
}

impl NetError {
    /// The peer could not be reached at all: trying again at once will not help.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, NetError::Unreachable(_) | NetError::Timeout)
    }
}

/// Refused: the peer is not an active member of the directory.
#[derive(Debug)]
pub struct NotAMember(pub PeerId);

impl std::fmt::Display for NotAMember {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "peer {} is not an active member of the directory",
            self.0
        )
    }
}

impl std::error::Error for NotAMember {}

/// Addresses kept per peer: a directory entry lists a few.
pub const ADDRESSES_PER_PEER: usize = 8;
/// Peers whose addresses are kept; the least recently given is forgotten first. The callers
/// give a peer's addresses again before each dial, so forgetting costs nothing but memory.
const PEERS_WITH_ADDRESSES: usize = 4096;

/// Where peers listen, as our directory says: offered when we dial them. Bounded per peer
/// and in peers; only [`Command::AddAddress`] fills it (never what peers say about
/// themselves).
#[derive(Debug, Default)]
struct AddressBook {
    /// Each peer's addresses, the least recently given first, and when it was last given one.
    peers: HashMap<PeerId, (u64, VecDeque<Multiaddr>)>,
    /// Peers by when they were last given an address.
    by_age: BTreeMap<u64, PeerId>,
    clock: u64,
}

impl AddressBook {
    fn add(&mut self, peer: PeerId, addr: Multiaddr) {
        self.clock += 1;
        let (stamp, list) = self.peers.entry(peer).or_default();
        self.by_age.remove(stamp);
        *stamp = self.clock;
        self.by_age.insert(self.clock, peer);
        if let Some(i) = list.iter().position(|a| *a == addr) {
            list.remove(i);
        }
        list.push_back(addr);
        if list.len() > ADDRESSES_PER_PEER {
            list.pop_front();
        }
        while self.peers.len() > PEERS_WITH_ADDRESSES {
            let Some((_, oldest)) = self.by_age.pop_first() else {
                break;
            };
            self.peers.remove(&oldest);
        }
    }

    fn get(&self, peer: &PeerId) -> Vec<Multiaddr> {
        self.peers
            .get(peer)
            .map(|(_, l)| l.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn remove(&mut self, peer: &PeerId) {
        if let Some((stamp, _)) = self.peers.remove(peer) {
            self.by_age.remove(&stamp);
        }
    }
}

/// The membership gate as a behaviour: denies connections at establishment (after the noise
/// handshake proves the PeerId, before any of our protocols can open a stream).
pub struct Gate {
    members: Membership,
    /// Peers always allowed (configured directory nodes).
    pinned: Arc<RwLock<HashSet<PeerId>>>,
    close: VecDeque<PeerId>,
    waker: Option<std::task::Waker>,
    addresses: AddressBook,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate").finish_non_exhaustive()
    }
}

impl Gate {
    fn new(members: Membership, pinned: Arc<RwLock<HashSet<PeerId>>>) -> Self {
        Gate {
            members,
            pinned,
            close: VecDeque::new(),
            waker: None,
            addresses: AddressBook::default(),
        }
    }

    fn admitted(&self, peer: &PeerId) -> bool {
        let pinned = self
            .pinned
            .read()
            .map(|p| p.contains(peer))
            .unwrap_or(false);
        pinned || (self.members)(peer)
    }

    fn check(&self, peer: &PeerId) -> Result<(), ConnectionDenied> {
        if self.admitted(peer) {
            Ok(())
        } else {
            tracing::warn!(%peer, "refused a connection from a peer that is not a directory member");
            Err(ConnectionDenied::new(NotAMember(*peer)))
        }
    }

    /// Closes every connection to `peer` (after a revocation) and forgets its addresses.
    pub fn expel(&mut self, peer: PeerId) {
        self.addresses.remove(&peer);
        self.close.push_back(peer);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
}

impl NetworkBehaviour for Gate {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = std::convert::Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.check(&peer)?;
        Ok(dummy::ConnectionHandler)
    }

    fn handle_pending_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: Option<PeerId>,
        _: &[Multiaddr],
        _: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        if let Some(peer) = peer {
            self.check(&peer)?;
            return Ok(self.addresses.get(&peer));
        }
        Ok(vec![])
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.check(&peer)?;
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        // A peer that left the directory is not dialled again: forget where it listens.
        if let FromSwarm::ConnectionClosed(c) = event
            && c.remaining_established == 0
            && !self.admitted(&c.peer_id)
        {
            self.addresses.remove(&c.peer_id);
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        e: THandlerOutEvent<Self>,
    ) {
        match e {}
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        if let Some(peer_id) = self.close.pop_front() {
            return Poll::Ready(ToSwarm::CloseConnection {
                peer_id,
                connection: CloseConnection::All,
            });
        }
        self.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// Our libp2p behaviours. Crate-private: nothing outside drives the swarm, and the event enum
/// the derive generates beside it has no documentation to give.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    gate: Gate,
    limits: connection_limits::Behaviour,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    stream: libp2p_stream::Behaviour,
}

/// Requests to the swarm task.
#[derive(Debug)]
pub enum Command {
    /// Remember where a peer listens (from the directory); answers once the swarm has it.
    AddAddress(PeerId, Multiaddr, Option<oneshot::Sender<()>>),
    /// Always allow this peer (a configured directory node).
    Pin(PeerId),
    /// Drop every connection to a peer (revoked).
    Expel(PeerId),
    /// Connect to a peer (dialing its known addresses) and answer once connected.
    Connect(PeerId, oneshot::Sender<Result<(), NetError>>),
    /// Report connected peers.
    Peers(oneshot::Sender<Vec<PeerId>>),
    /// Report the addresses we listen on.
    ListenAddrs(oneshot::Sender<Vec<Multiaddr>>),
    /// Report the addresses we would dial a peer at.
    Addresses(PeerId, oneshot::Sender<Vec<Multiaddr>>),
    /// Stop the swarm: every connection closes and the listeners go; answers once they have.
    Shutdown(Option<oneshot::Sender<()>>),
}

/// A handle to the running swarm.
#[derive(Clone)]
pub struct Net {
    /// Our PeerId.
    pub peer_id: PeerId,
    /// Opens and accepts raw streams.
    pub control: libp2p_stream::Control,
    commands: mpsc::UnboundedSender<Command>,
}

impl std::fmt::Debug for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Net")
            .field("peer_id", &self.peer_id)
            .finish_non_exhaustive()
    }
}

impl Net {
    /// Sends a command to the swarm task (ignored once it has stopped).
    pub fn command(&self, c: Command) {
        let _ = self.commands.send(c);
    }

    /// Remembers where a peer listens, and waits until the swarm has it (so a dial right
    /// after finds it).
    pub async fn add_address(&self, peer: PeerId, addr: Multiaddr) {
        let (tx, rx) = oneshot::channel();
        self.command(Command::AddAddress(peer, addr, Some(tx)));
        let _ = rx.await;
    }

    /// Makes sure we hold a connection to `peer`, dialing it if needed.
    pub async fn connect(&self, peer: PeerId, timeout: Duration) -> Result<(), NetError> {
        let (tx, rx) = oneshot::channel();
        self.command(Command::Connect(peer, tx));
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(NetError::Stopped),
            Err(_) => Err(NetError::Timeout),
        }
    }

    /// Opens a stream to `peer`, connecting first. libp2p-stream (alpha) drops an inbound
    /// stream when the peer's accept queue is momentarily full, so a stream that fails right
    /// away is opened again a few times.
    pub async fn open(
        &self,
        peer: PeerId,
        protocol: StreamProtocol,
        timeout: Duration,
    ) -> Result<libp2p::Stream, NetError> {
        let mut last = None;
        for attempt in 0..4u64 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(
                    20 * attempt + rand::random_range(0..30u64),
                ))
                .await;
            }
            // A peer that cannot be reached is not retried here: the caller backs off.
            self.connect(peer, timeout).await?;
            let mut control = self.control.clone();
            match tokio::time::timeout(timeout, control.open_stream(peer, protocol.clone())).await {
                Ok(Ok(s)) => return Ok(s),
                Ok(Err(e)) => last = Some(NetError::StreamRefused(e.to_string())),
                Err(_) => last = Some(NetError::StreamTimeout),
            }
        }
        Err(last.unwrap_or(NetError::StreamTimeout))
    }

    /// Stops the swarm and waits until its connections and listeners are gone.
    pub async fn shutdown(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.command(Command::Shutdown(Some(tx)));
        let _ = rx.await;
    }

    /// The peers we are connected to.
    pub async fn peers(&self) -> Vec<PeerId> {
        let (tx, rx) = oneshot::channel();
        self.command(Command::Peers(tx));
        rx.await.unwrap_or_default()
    }

    /// The addresses we listen on.
    pub async fn listen_addrs(&self) -> Vec<Multiaddr> {
        let (tx, rx) = oneshot::channel();
        self.command(Command::ListenAddrs(tx));
        rx.await.unwrap_or_default()
    }

    /// The addresses we would dial `peer` at (at most [`ADDRESSES_PER_PEER`]).
    pub async fn addresses(&self, peer: PeerId) -> Vec<Multiaddr> {
        let (tx, rx) = oneshot::channel();
        self.command(Command::Addresses(peer, tx));
        rx.await.unwrap_or_default()
    }
}

/// The libp2p keypair for an Ed25519 secret key.
pub fn keypair(secret: &ed25519_dalek::SigningKey) -> identity::Keypair {
    let sk = identity::ed25519::SecretKey::try_from_bytes(secret.to_bytes())
        .expect("a 32-byte Ed25519 secret is always valid");
    identity::ed25519::Keypair::from(sk).into()
}

/// The PeerId of an Ed25519 public key.
pub fn peer_id_of(key: &[u8; 32]) -> Option<PeerId> {
    let pk = identity::ed25519::PublicKey::try_from_bytes(key).ok()?;
    Some(identity::PublicKey::from(pk).to_peer_id())
}

/// The Ed25519 public key inside a PeerId, when it has one.
pub fn key_of(peer: &PeerId) -> Option<[u8; 32]> {
    let pk = identity::PublicKey::try_decode_protobuf(&peer.to_bytes()[2..]).ok()?;
    Some(pk.try_into_ed25519().ok()?.to_bytes())
}

/// Starts the swarm on the current tokio runtime, listening on `listen`.
pub fn start(
    secret: &ed25519_dalek::SigningKey,
    listen: &[Multiaddr],
    members: Membership,
    cfg: &NetConfig,
) -> anyhow::Result<Net> {
    let pinned = Arc::new(RwLock::new(HashSet::new()));
    let behaviour = {
        let (pinned, limits) = (pinned.clone(), cfg.limits.connection_limits());
        move |key: &identity::Keypair| Behaviour {
            gate: Gate::new(members, pinned),
            limits: connection_limits::Behaviour::new(limits),
            // Peers are dialled only at their directory addresses: identify keeps no
            // addresses peers tell about themselves, and tells none of ours.
            identify: identify::Behaviour::new(
                identify::Config::new("/renkei/1".into(), key.public())
                    .with_cache_size(0)
                    .with_hide_listen_addrs(true),
            ),
            ping: ping::Behaviour::default(),
            stream: libp2p_stream::Behaviour::new(),
        }
    };
    let idle_timeout = cfg.idle_timeout;
    // One address at a time: concurrent TCP and QUIC dials race, and a stream opened on the
    // losing connection would wait for its timeout.
    let swarm_config = move |c: libp2p::swarm::Config| {
        c.with_idle_connection_timeout(idle_timeout)
            .with_dial_concurrency_factor(std::num::NonZeroU8::MIN)
    };
    let builder = libp2p::SwarmBuilder::with_existing_identity(keypair(secret)).with_tokio();
    let mut swarm = match cfg.transport {
        Transport::Sockets => builder
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )?
            .with_quic_config(|mut c| {
                c.max_idle_timeout = 60_000;
                c
            })
            .with_behaviour(behaviour)?
            .with_swarm_config(swarm_config)
            .with_connection_timeout(cfg.handshake_timeout)
            .build(),
        Transport::Memory => builder
            .with_other_transport(|key| {
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
                    MemoryTransport::default()
                        .upgrade(Version::V1)
                        .authenticate(noise::Config::new(key)?)
                        .multiplex(yamux::Config::default()),
                )
            })?
            .with_behaviour(behaviour)?
            .with_swarm_config(swarm_config)
            .with_connection_timeout(cfg.handshake_timeout)
            .build(),
    };
    let mut listeners = Vec::new();
    for a in listen {
        listeners.push(swarm.listen_on(a.clone())?);
    }
    let control = swarm.behaviour().stream.new_control();
    let peer_id = *swarm.local_peer_id();
    let (tx, mut rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut connecting: HashMap<PeerId, Vec<oneshot::Sender<Result<(), NetError>>>> =
            HashMap::new();
        loop {
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    None => break,
                    Some(Command::Shutdown(done)) => {
                        // Removed, not only dropped: libp2p's memory transport frees a port
                        // only when its listener is removed.
                        for id in listeners.drain(..) {
                            swarm.remove_listener(id);
                        }
                        drop(swarm);
                        if let Some(d) = done { let _ = d.send(()); }
                        break;
                    }
                    Some(Command::AddAddress(p, a, done)) => {
                        swarm.behaviour_mut().gate.addresses.add(p, a);
                        if let Some(d) = done { let _ = d.send(()); }
                    }
                    Some(Command::Pin(p)) => {
                        if let Ok(mut s) = pinned.write() { s.insert(p); }
                        swarm.behaviour_mut().limits.bypass_peer_id(&p);
                    }
                    Some(Command::Expel(p)) => swarm.behaviour_mut().gate.expel(p),
                    Some(Command::Connect(p, done)) => {
                        if swarm.is_connected(&p) {
                            let _ = done.send(Ok(()));
                        } else {
                            let first = !connecting.contains_key(&p);
                            let waiting = connecting.entry(p).or_default();
                            // Callers that gave up are not kept (the dial is still running).
                            waiting.retain(|d| !d.is_closed());
                            waiting.push(done);
                            if first {
                                let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(p)
                                    .condition(libp2p::swarm::dial_opts::PeerCondition::DisconnectedAndNotDialing)
                                    .build();
                                if let Err(e) = swarm.dial(opts) {
                                    let e = NetError::Unreachable(e.to_string());
                                    for d in connecting.remove(&p).unwrap_or_default() {
                                        let _ = d.send(Err(e.clone()));
                                    }
                                }
                            }
                        }
                    }
                    Some(Command::Peers(tx)) => { let _ = tx.send(swarm.connected_peers().copied().collect()); }
                    Some(Command::ListenAddrs(tx)) => { let _ = tx.send(swarm.listeners().cloned().collect()); }
                    Some(Command::Addresses(p, tx)) => { let _ = tx.send(swarm.behaviour().gate.addresses.get(&p)); }
                },
                ev = swarm.select_next_some() => match ev {
                    SwarmEvent::NewListenAddr { address, .. } => tracing::info!(%address, "listening"),
                    SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                        tracing::debug!(%peer_id, "connected");
                        for d in connecting.remove(&peer_id).unwrap_or_default() {
                            let _ = d.send(Ok(()));
                        }
                    }
                    SwarmEvent::ConnectionClosed { peer_id, cause, endpoint, .. } => {
                        tracing::debug!(%peer_id, ?cause, dialer = endpoint.is_dialer(), "connection closed");
                    }
                    SwarmEvent::IncomingConnectionError { error, .. } => tracing::debug!(%error, "incoming connection refused"),
                    SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                        tracing::debug!(?peer_id, %error, "dial failed");
                        if let Some(p) = peer_id {
                            let e = NetError::Unreachable(error.to_string());
                            for d in connecting.remove(&p).unwrap_or_default() {
                                let _ = d.send(Err(e.clone()));
                            }
                        }
                    }
                    _ => {}
                },
            }
        }
    });
    Ok(Net {
        peer_id,
        control,
        commands: tx,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use futures::{AsyncReadExt, AsyncWriteExt};
    use libp2p::swarm::Swarm;

    use super::*;

    fn secret(n: u8) -> ed25519_dalek::SigningKey {
        ed25519_dalek::SigningKey::from_bytes(&[n; 32])
    }

    fn peer(n: u8) -> PeerId {
        peer_id_of(&secret(n).verifying_key().to_bytes()).unwrap()
    }

    fn admit_all() -> Membership {
        Arc::new(|_: &PeerId| true)
    }

    /// Polls `f` every 20 ms until it returns `Some`, for at most `limit`.
    async fn poll_for<T, F: Future<Output = Option<T>>>(
        limit: Duration,
        what: &str,
        mut f: impl FnMut() -> F,
    ) -> T {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(v) = f().await {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn listen_addr(net: &Net) -> Multiaddr {
        poll_for(Duration::from_secs(5), "a listen address", || async {
            net.listen_addrs().await.into_iter().next()
        })
        .await
    }

    /// Answers every delivery stream by sending back what it reads.
    fn echo(net: &Net) {
        let mut incoming = net.control.clone().accept(DELIVER).unwrap();
        tokio::spawn(async move {
            while let Some((_, mut s)) = incoming.next().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    while let Ok(n @ 1..) = s.read(&mut buf).await {
                        if s.write_all(&buf[..n]).await.is_err() || s.flush().await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
    }

    /// Opens a delivery stream to `to` and checks that bytes come back.
    async fn round_trip(net: &Net, to: PeerId) -> Result<bool, String> {
        let mut s = net
            .open(to, DELIVER, Duration::from_secs(5))
            .await
            .map_err(|e| e.to_string())?;
        let io = async {
            s.write_all(b"renkei").await?;
            s.flush().await?;
            let mut back = [0u8; 6];
            s.read_exact(&mut back).await?;
            Ok::<_, std::io::Error>(&back == b"renkei")
        };
        match tokio::time::timeout(Duration::from_secs(5), io).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err("no answer".into()),
        }
    }

    #[test]
    fn the_address_book_is_bounded_and_keeps_the_latest() {
        let mut book = AddressBook::default();
        let p = peer(1);
        let addr = |i: u32| -> Multiaddr { format!("/ip4/10.0.0.1/tcp/{i}").parse().unwrap() };
        for i in 0..60_000 {
            book.add(p, addr(i));
        }
        let kept: Vec<_> = (60_000 - ADDRESSES_PER_PEER as u32..60_000)
            .map(addr)
            .collect();
        assert_eq!(book.get(&p), kept);
        // Given again, an address moves to the back and is not repeated.
        book.add(p, kept[0].clone());
        assert_eq!(book.get(&p).len(), ADDRESSES_PER_PEER);
        assert_eq!(book.get(&p).last(), Some(&kept[0]));
        // Peers beyond the bound: the least recently given are forgotten.
        for _ in 0..PEERS_WITH_ADDRESSES + 100 {
            book.add(PeerId::random(), addr(1));
            book.add(p, addr(2));
        }
        assert_eq!(book.peers.len(), PEERS_WITH_ADDRESSES);
        assert_eq!(book.by_age.len(), PEERS_WITH_ADDRESSES);
        assert!(!book.get(&p).is_empty(), "a peer in use is kept");
        book.remove(&p);
        assert!(book.get(&p).is_empty());
        assert_eq!(book.by_age.len(), book.peers.len());
    }

    /// Defect 9: an admitted peer pushed identify updates with ever new addresses, and the
    /// gate kept every one of them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn identify_pushes_do_not_grow_what_the_node_keeps() {
        let node = start(
            &secret(1),
            &["/memory/0".parse().unwrap()],
            admit_all(),
            &NetConfig::office().in_memory(),
        )
        .unwrap();
        let at = listen_addr(&node).await;
        let mut attacker: Swarm<identify::Behaviour> =
            libp2p::SwarmBuilder::with_existing_identity(keypair(&secret(2)))
                .with_tokio()
                .with_other_transport(|key| {
                    Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
                        MemoryTransport::default()
                            .upgrade(Version::V1)
                            .authenticate(noise::Config::new(key)?)
                            .multiplex(yamux::Config::default()),
                    )
                })
                .unwrap()
                .with_behaviour(|key| {
                    identify::Behaviour::new(identify::Config::new(
                        "/renkei/1".into(),
                        key.public(),
                    ))
                })
                .unwrap()
                .build();
        attacker.dial(at).unwrap();
        let flood = async {
            loop {
                if let SwarmEvent::ConnectionEstablished { .. } = attacker.select_next_some().await
                {
                    break;
                }
            }
            // 30 pushes of 20 new addresses each (libp2p keeps 20 of our own at a time).
            for round in 0..30u8 {
                for i in 0..20u8 {
                    attacker.add_external_address(
                        format!("/ip4/10.{round}.{i}.1/tcp/4701").parse().unwrap(),
                    );
                }
                attacker.behaviour_mut().push([node.peer_id]);
                loop {
                    match attacker.select_next_some().await {
                        SwarmEvent::Behaviour(identify::Event::Pushed { .. }) => break,
                        SwarmEvent::ConnectionClosed { .. } => panic!("the node hung up"),
                        _ => {}
                    }
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(20), flood)
            .await
            .expect("the pushes went through");
        // The node reads the last pushes a moment after they were sent; keep the swarm
        // polled while watching what it holds.
        let attacker_peer = *attacker.local_peer_id();
        let watch = async {
            for _ in 0..25 {
                let held = node.addresses(attacker_peer).await.len();
                assert!(
                    held <= ADDRESSES_PER_PEER,
                    "the node holds {held} addresses"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::select! {
            () = watch => {}
            _ = async { loop { attacker.select_next_some().await; } } => {}
        }
        assert!(node.peers().await.contains(&attacker_peer));
    }

    /// Defect 9: plain TCP connections that never finish the handshake held a node's
    /// resources, 10 s each, without limit.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn half_open_connections_are_limited_and_dropped() {
        let cfg = NetConfig {
            handshake_timeout: Duration::from_secs(2),
            limits: Limits {
                pending_incoming: 4,
                ..Limits::OFFICE
            },
            ..NetConfig::office()
        };
        let node = start(
            &secret(1),
            &["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            admit_all(),
            &cfg,
        )
        .unwrap();
        echo(&node);
        let at = listen_addr(&node).await;
        let member = start(&secret(2), &[], admit_all(), &NetConfig::office()).unwrap();
        member.add_address(node.peer_id, at.clone()).await;
        assert_eq!(round_trip(&member, node.peer_id).await, Ok(true));

        let port = at
            .iter()
            .find_map(|p| match p {
                libp2p::multiaddr::Protocol::Tcp(port) => Some(port),
                _ => None,
            })
            .unwrap();
        let closed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut flood = Vec::new();
        for _ in 0..24 {
            let s = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap();
            let closed = closed.clone();
            flood.push(tokio::spawn(async move {
                use tokio::io::AsyncReadExt as _;
                let mut s = s;
                let mut buf = [0u8; 256];
                while let Ok(1..) = s.read(&mut buf).await {}
                closed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }));
        }
        let count = || closed.load(std::sync::atomic::Ordering::SeqCst);
        // Over the pending limit: closed at once, long before the handshake timeout.
        poll_for(Duration::from_secs(1), "20 refused connections", || async {
            (count() >= 20).then_some(())
        })
        .await;
        // Meanwhile a member's connection still carries streams.
        assert_eq!(round_trip(&member, node.peer_id).await, Ok(true));
        // The rest are dropped when the handshake times out, and new members get in.
        poll_for(
            Duration::from_secs(6),
            "the half-open connections to close",
            || async { (count() == 24).then_some(()) },
        )
        .await;
        let another = start(&secret(3), &[], admit_all(), &NetConfig::office()).unwrap();
        another.add_address(node.peer_id, at).await;
        assert_eq!(round_trip(&another, node.peer_id).await, Ok(true));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_memory_transport_carries_streams_through_the_same_gate() {
        let member = peer(2);
        let node = start(
            &secret(1),
            &["/memory/0".parse().unwrap()],
            Arc::new(move |p: &PeerId| *p == member),
            &NetConfig::office().in_memory(),
        )
        .unwrap();
        echo(&node);
        let at = listen_addr(&node).await;
        assert!(at.to_string().starts_with("/memory/"), "{at}");

        let a = start(
            &secret(2),
            &[],
            admit_all(),
            &NetConfig::office().in_memory(),
        )
        .unwrap();
        a.add_address(node.peer_id, at.clone()).await;
        assert_eq!(round_trip(&a, node.peer_id).await, Ok(true));

        let outsider = start(
            &secret(3),
            &[],
            admit_all(),
            &NetConfig::office().in_memory(),
        )
        .unwrap();
        outsider.add_address(node.peer_id, at).await;
        assert_ne!(round_trip(&outsider, node.peer_id).await, Ok(true));
        let peers = node.peers().await;
        assert!(peers.contains(&a.peer_id) && !peers.contains(&outsider.peer_id));
    }

    #[tokio::test]
    async fn connection_failures_are_typed() {
        let net = start(
            &secret(1),
            &[],
            admit_all(),
            &NetConfig::office().in_memory(),
        )
        .unwrap();
        // No known address.
        let e = net.connect(peer(2), Duration::from_secs(5)).await;
        assert!(matches!(e, Err(NetError::Unreachable(_))), "{e:?}");
        // Nobody listens there.
        net.add_address(peer(2), "/memory/1".parse().unwrap()).await;
        let e = net.open(peer(2), DELIVER, Duration::from_secs(5)).await;
        assert!(matches!(&e, Err(x) if x.is_unreachable()), "{e:?}");
        // A listener that never answers the handshake.
        let mute = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = mute.local_addr().unwrap().port();
        let net = start(&secret(1), &[], admit_all(), &NetConfig::office()).unwrap();
        net.add_address(
            peer(3),
            format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap(),
        )
        .await;
        let e = net.connect(peer(3), Duration::from_millis(300)).await;
        assert_eq!(e, Err(NetError::Timeout));
        drop(mute);
        // Expelled: its addresses are forgotten.
        assert!(!net.addresses(peer(3)).await.is_empty());
        net.command(Command::Expel(peer(3)));
        poll_for(Duration::from_secs(5), "the addresses to go", || async {
            net.addresses(peer(3)).await.is_empty().then_some(())
        })
        .await;
    }
}
