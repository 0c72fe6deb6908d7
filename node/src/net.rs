//! The libp2p transport: TCP and QUIC (noise, yamux), identify, ping, raw streams, and a gate
//! that drops every connection from a peer that is not a directory member before any
//! protocol runs.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::StreamExt;
use libp2p::core::Endpoint;
use libp2p::core::transport::PortUse;
use libp2p::swarm::{
    CloseConnection, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, SwarmEvent,
    THandler, THandlerInEvent, THandlerOutEvent, ToSwarm, dummy,
};
use libp2p::{Multiaddr, PeerId, StreamProtocol, identify, identity, noise, ping, tcp, yamux};
use tokio::sync::mpsc;

/// The delivery protocol (SPEC.md §7).
pub const DELIVER: StreamProtocol = StreamProtocol::new(renkei_protocol::frames::DELIVER_PROTOCOL);
/// The directory sync protocol (SPEC.md §6.6).
pub const DIRECTORY: StreamProtocol =
    StreamProtocol::new(renkei_protocol::frames::DIRECTORY_PROTOCOL);

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

/// The membership gate as a behaviour: denies connections at establishment (after the noise
/// handshake proves the PeerId, before any of our protocols can open a stream).
pub struct Gate {
    members: Membership,
    /// Peers always allowed (configured directory nodes).
    pinned: Arc<RwLock<HashSet<PeerId>>>,
    close: std::collections::VecDeque<PeerId>,
    waker: Option<std::task::Waker>,
    /// Where peers listen (from the directory), offered when we dial them.
    addresses: std::collections::HashMap<PeerId, Vec<Multiaddr>>,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate").finish_non_exhaustive()
    }
}

impl Gate {
    fn check(&self, peer: &PeerId) -> Result<(), ConnectionDenied> {
        let pinned = self
            .pinned
            .read()
            .map(|p| p.contains(peer))
            .unwrap_or(false);
        if pinned || (self.members)(peer) {
            Ok(())
        } else {
            tracing::warn!(%peer, "refused a connection from a peer that is not a directory member");
            Err(ConnectionDenied::new(NotAMember(*peer)))
        }
    }

    /// Closes every connection to `peer` (after a revocation).
    pub fn expel(&mut self, peer: PeerId) {
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
            return Ok(self.addresses.get(&peer).cloned().unwrap_or_default());
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
        if let FromSwarm::NewExternalAddrOfPeer(e) = event {
            let list = self.addresses.entry(e.peer_id).or_default();
            if !list.contains(e.addr) {
                list.push(e.addr.clone());
            }
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

/// Our libp2p behaviours.
#[derive(NetworkBehaviour)]
#[allow(missing_debug_implementations)]
pub struct Behaviour {
    gate: Gate,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    stream: libp2p_stream::Behaviour,
}

/// Requests to the swarm task.
#[derive(Debug)]
pub enum Command {
    /// Remember where a peer listens; answers once the swarm has it.
    AddAddress(PeerId, Multiaddr, Option<tokio::sync::oneshot::Sender<()>>),
    /// Always allow this peer (a configured directory node).
    Pin(PeerId),
    /// Drop every connection to a peer (revoked).
    Expel(PeerId),
    /// Connect to a peer (dialing its known addresses) and answer once connected.
    Connect(PeerId, tokio::sync::oneshot::Sender<Result<(), String>>),
    /// Report connected peers.
    Peers(tokio::sync::oneshot::Sender<Vec<PeerId>>),
    /// Report the addresses we listen on.
    ListenAddrs(tokio::sync::oneshot::Sender<Vec<Multiaddr>>),
    /// Stop the swarm: every connection closes and the listeners go; answers once they have.
    Shutdown(Option<tokio::sync::oneshot::Sender<()>>),
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
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.command(Command::AddAddress(peer, addr, Some(tx)));
        let _ = rx.await;
    }

    /// Makes sure we hold a connection to `peer`, dialing it if needed.
    pub async fn connect(&self, peer: PeerId, timeout: Duration) -> anyhow::Result<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.command(Command::Connect(peer, tx));
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(anyhow::anyhow!("cannot connect: {e}")),
            Ok(Err(_)) => Err(anyhow::anyhow!("the network task stopped")),
            Err(_) => Err(anyhow::anyhow!("timed out connecting")),
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
    ) -> anyhow::Result<libp2p::Stream> {
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
                Ok(Err(e)) => last = Some(anyhow::anyhow!("cannot open a stream: {e}")),
                Err(_) => last = Some(anyhow::anyhow!("timed out opening a stream")),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("cannot open a stream")))
    }

    /// Stops the swarm and waits until its connections and listeners are gone.
    pub async fn shutdown(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.command(Command::Shutdown(Some(tx)));
        let _ = rx.await;
    }

    /// The peers we are connected to.
    pub async fn peers(&self) -> Vec<PeerId> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.command(Command::Peers(tx));
        rx.await.unwrap_or_default()
    }

    /// The addresses we listen on.
    pub async fn listen_addrs(&self) -> Vec<Multiaddr> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.command(Command::ListenAddrs(tx));
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
    idle_timeout: Duration,
) -> anyhow::Result<Net> {
    let pinned = Arc::new(RwLock::new(HashSet::new()));
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair(secret))
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_quic_config(|mut c| {
            c.max_idle_timeout = 60_000;
            c
        })
        .with_behaviour(|key| Behaviour {
            gate: Gate {
                members,
                pinned: pinned.clone(),
                close: Default::default(),
                waker: None,
                addresses: Default::default(),
            },
            identify: identify::Behaviour::new(identify::Config::new(
                "/renkei/1".into(),
                key.public(),
            )),
            ping: ping::Behaviour::default(),
            stream: libp2p_stream::Behaviour::new(),
        })?
        .with_swarm_config(|c| {
            // One address at a time: concurrent TCP and QUIC dials race, and a stream opened on
            // the losing connection would wait for its timeout.
            c.with_idle_connection_timeout(idle_timeout)
                .with_dial_concurrency_factor(std::num::NonZeroU8::MIN)
        })
        .build();
    for a in listen {
        swarm.listen_on(a.clone())?;
    }
    let control = swarm.behaviour().stream.new_control();
    let peer_id = *swarm.local_peer_id();
    let (tx, mut rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut connecting: std::collections::HashMap<
            PeerId,
            Vec<tokio::sync::oneshot::Sender<Result<(), String>>>,
        > = Default::default();
        loop {
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    None => break,
                    Some(Command::Shutdown(done)) => {
                        drop(swarm);
                        if let Some(d) = done { let _ = d.send(()); }
                        break;
                    }
                    Some(Command::AddAddress(p, a, done)) => {
                        swarm.add_peer_address(p, a);
                        if let Some(d) = done { let _ = d.send(()); }
                    }
                    Some(Command::Pin(p)) => { if let Ok(mut s) = pinned.write() { s.insert(p); } }
                    Some(Command::Expel(p)) => swarm.behaviour_mut().gate.expel(p),
                    Some(Command::Connect(p, done)) => {
                        if swarm.is_connected(&p) {
                            let _ = done.send(Ok(()));
                        } else {
                            let first = !connecting.contains_key(&p);
                            connecting.entry(p).or_default().push(done);
                            if first {
                                let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(p)
                                    .condition(libp2p::swarm::dial_opts::PeerCondition::DisconnectedAndNotDialing)
                                    .build();
                                if let Err(e) = swarm.dial(opts) {
                                    for d in connecting.remove(&p).unwrap_or_default() {
                                        let _ = d.send(Err(e.to_string()));
                                    }
                                }
                            }
                        }
                    }
                    Some(Command::Peers(tx)) => { let _ = tx.send(swarm.connected_peers().copied().collect()); }
                    Some(Command::ListenAddrs(tx)) => { let _ = tx.send(swarm.listeners().cloned().collect()); }
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
                            for d in connecting.remove(&p).unwrap_or_default() {
                                let _ = d.send(Err(error.to_string()));
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
