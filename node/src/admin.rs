//! Setting up offices and running a region authority: what `renkei init` and
//! `renkei directory ...` do, as functions the demo and the tests call too.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use ed25519_dalek::SigningKey;
use renkei_directory::{
    ANCHOR_FORMAT, Anchor, EnrollmentRequest, NodeInfo, RegionCert, RegionWorkspace,
};
use renkei_protocol::{OfficeNumber, ServiceKind};

use crate::home::{Config, Home, KeyPair, create_private_dir, write_atomic};

/// Unix seconds by the system clock (an operator's command, not a node).
fn now_secs() -> u64 {
    crate::env::wall_clock_ms() / 1000
}

thread_local! {
    /// The lab's seeded source of keys on this thread while a [`SeededKeys`] lives; the
    /// operating system's random numbers otherwise.
    static SEEDED_KEYS: std::cell::RefCell<Option<rand_chacha::ChaCha20Rng>> =
        const { std::cell::RefCell::new(None) };
}

/// While this lives, keys generated on this thread come from a seeded stream, so a lab run's
/// federation (root, directory nodes, offices) has the same keys for the same seed — and the
/// same order wherever nodes are sorted by key. Only the lab makes one: such keys are as
/// secret as the seed, which a scenario file prints.
#[derive(Debug)]
pub struct SeededKeys(());

impl SeededKeys {
    /// Keys on this thread come from `seed` until the value is dropped.
    pub fn new(seed: u64) -> SeededKeys {
        use rand::SeedableRng;
        SEEDED_KEYS.with(|k| {
            *k.borrow_mut() = Some(rand_chacha::ChaCha20Rng::seed_from_u64(seed));
        });
        SeededKeys(())
    }
}

impl Drop for SeededKeys {
    fn drop(&mut self) {
        SEEDED_KEYS.with(|k| *k.borrow_mut() = None);
    }
}

/// Generates a fresh Ed25519 key.
pub fn generate_signing_key() -> SigningKey {
    let mut seed = [0u8; 32];
    SEEDED_KEYS.with(|k| match &mut *k.borrow_mut() {
        Some(rng) => rand::Rng::fill_bytes(rng, &mut seed),
        None => rand::Rng::fill_bytes(&mut rand::rng(), &mut seed),
    });
    SigningKey::from_bytes(&seed)
}

/// Writes a secret key file (hex, 0600).
pub fn write_secret(path: &Path, key: &SigningKey) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    write_atomic(
        path,
        format!("{}\n", hex::encode(key.to_bytes())).as_bytes(),
        true,
    )
}

/// Reads a secret key file.
pub fn read_secret(path: &Path) -> anyhow::Result<SigningKey> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "鍵ファイル {} を読めません / cannot read key file {}",
            path.display(),
            path.display()
        )
    })?;
    let mut b = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut b)
        .with_context(|| format!("key file {} is damaged", path.display()))?;
    Ok(SigningKey::from_bytes(&b))
}

/// What `renkei init` sets up.
#[derive(Debug, Clone)]
pub struct OfficeSetup {
    /// 事業所番号.
    pub office: OfficeNumber,
    /// 事業所名.
    pub name: String,
    /// Service kinds.
    pub kinds: Vec<ServiceKind>,
    /// libp2p listen addresses (also published in the directory unless `advertise` is set).
    pub listen: Vec<String>,
    /// Addresses to publish in the directory (defaults to `listen`).
    pub advertise: Vec<String>,
    /// Directory nodes to sync from.
    pub directory_nodes: Vec<String>,
    /// A trust anchor file to copy into the home.
    pub anchor: Option<PathBuf>,
}

/// Creates an office home: keys (0600), `renkei.toml`, the folders, and `enrollment.json`
/// (the request the association approves). Refuses to overwrite existing keys.
pub fn init_office(home: &Home, setup: &OfficeSetup) -> anyhow::Result<EnrollmentRequest> {
    if home.keys().join("identity.key").exists() {
        bail!(
            "{} には既に鍵があります。別のフォルダを指定してください。/ {} already has keys; choose another folder.",
            home.root.display(),
            home.root.display()
        );
    }
    // Everything is checked before anything is written, so a mistake leaves no half-made home.
    let anchor_text = match &setup.anchor {
        Some(a) => {
            let text = std::fs::read_to_string(a).with_context(|| {
                format!(
                    "信頼アンカー {} を読めません。協会から受け取った anchor.json を --anchor で指定してください / cannot read the anchor {}: give the anchor.json from your association with --anchor",
                    a.display(),
                    a.display()
                )
            })?;
            Anchor::from_json(&text).map_err(|e| {
                anyhow::anyhow!(
                    "{} は信頼アンカーではありません / {} is not a trust anchor: {e}",
                    a.display(),
                    a.display()
                )
            })?;
            Some(text)
        }
        None if home.root.join("anchor.json").exists() => None,
        None => bail!(
            "--anchor で協会から受け取った anchor.json を指定してください / give the anchor.json from your association with --anchor"
        ),
    };
    anyhow::ensure!(
        !setup.directory_nodes.is_empty(),
        "--directory-node で名簿サーバーのアドレス（/p2p/ で終わるもの）を指定してください / give a directory node's address (ending in /p2p/ and its peer id) with --directory-node"
    );
    for a in &setup.directory_nodes {
        let ok = a
            .parse::<libp2p::Multiaddr>()
            .is_ok_and(|m| matches!(m.iter().last(), Some(libp2p::multiaddr::Protocol::P2p(_))));
        anyhow::ensure!(
            ok,
            "名簿サーバーのアドレス {a} は /ip4/…/tcp/…/p2p/… の形ではありません / the directory node address {a} is not of the form /ip4/…/tcp/…/p2p/<peer id>"
        );
        anyhow::ensure!(
            !is_unspecified(a),
            "名簿サーバーのアドレス {a} の 0.0.0.0 には接続できません。名簿サーバーの実際のアドレスを指定してください / the directory node address {a} cannot be dialled (0.0.0.0): give the directory node's real address"
        );
    }
    for a in setup.listen.iter().chain(&setup.advertise) {
        anyhow::ensure!(
            a.parse::<libp2p::Multiaddr>().is_ok(),
            "アドレス {a} は /ip4/…/tcp/… の形ではありません / the address {a} is not a multiaddr such as /ip4/192.0.2.10/tcp/4701"
        );
    }
    home.create_dirs()?;
    let keys = KeyPair {
        identity: generate_signing_key(),
        encryption: x25519_dalek::StaticSecret::from(generate_signing_key().to_bytes()),
    };
    home.write_new_keys(&keys)?;
    let config = Config {
        office: setup.office.to_string(),
        name: setup.name.clone(),
        kinds: setup.kinds.iter().map(|k| k.to_string()).collect(),
        listen: if !setup.listen.is_empty() {
            setup.listen.clone()
        } else if let Some(derived) = listen_for(&setup.advertise) {
            // Listen where partners are told to dial (the ports of --advertise).
            derived
        } else {
            Config::default().listen
        },
        directory_nodes: setup.directory_nodes.clone(),
        ..Config::default()
    };
    home.write_config(&config)?;
    let listening: Vec<(bool, u16)> = config.listen.iter().filter_map(|a| port_of(a)).collect();
    for a in &setup.advertise {
        if let Some(p) = port_of(a)
            && !listening.contains(&p)
        {
            eprintln!(
                "注意: 名簿に載せるアドレス {a} のポートでは待ち受けません（{}）。ルーターの転送設定がない限り、相手先は接続できません / warning: the node does not listen on the port of {a} (it listens on {}); unless a router forwards that port, partners cannot reach it",
                config.listen.join(", "),
                config.listen.join(", ")
            );
        }
    }
    if let Some(text) = anchor_text {
        write_atomic(&home.root.join("anchor.json"), text.as_bytes(), false)?;
    }
    // Partners dial what the directory lists: never an unspecified address such as 0.0.0.0.
    let advertise = if setup.advertise.is_empty() {
        config
            .listen
            .iter()
            .filter(|a| !is_unspecified(a))
            .cloned()
            .collect()
    } else {
        setup.advertise.clone()
    };
    let req = EnrollmentRequest::new(
        setup.office,
        &setup.name,
        setup.kinds.clone(),
        &keys.identity,
        x25519_dalek::PublicKey::from(&keys.encryption).to_bytes(),
        advertise,
        now_secs(),
    );
    write_atomic(
        &home.root.join("enrollment.json"),
        serde_json::to_string_pretty(&req)?.as_bytes(),
        false,
    )?;
    Ok(req)
}

/// (is UDP, port) of a multiaddr's TCP or UDP part.
fn port_of(addr: &str) -> Option<(bool, u16)> {
    use libp2p::multiaddr::Protocol;
    addr.parse::<libp2p::Multiaddr>()
        .ok()?
        .iter()
        .find_map(|p| match p {
            Protocol::Tcp(port) => Some((false, port)),
            Protocol::Udp(port) => Some((true, port)),
            _ => None,
        })
}

/// Whether a multiaddr is IPv6 (`/ip6/…` or `/dns6/…`).
fn is_ipv6(addr: &str) -> bool {
    use libp2p::multiaddr::Protocol;
    addr.parse::<libp2p::Multiaddr>()
        .is_ok_and(|m| matches!(m.iter().next(), Some(Protocol::Ip6(_) | Protocol::Dns6(_))))
}

/// Whether a multiaddr is plain TCP or QUIC on an address or DNS name (no websocket, relay…).
fn is_plain(addr: &str) -> bool {
    use libp2p::multiaddr::Protocol;
    addr.parse::<libp2p::Multiaddr>().is_ok_and(|m| {
        m.iter().all(|p| {
            matches!(
                p,
                Protocol::Ip4(_)
                    | Protocol::Ip6(_)
                    | Protocol::Dns(_)
                    | Protocol::Dns4(_)
                    | Protocol::Dns6(_)
                    | Protocol::Tcp(_)
                    | Protocol::Udp(_)
                    | Protocol::QuicV1
            )
        })
    })
}

/// Listen addresses on every interface at the ports partners are told to dial: TCP ports as
/// TCP, UDP ports as QUIC, IPv6 addresses on IPv6. `None` when there is none, or one names no
/// port or is more than plain TCP or QUIC (then the defaults apply; `--listen` says more).
fn listen_for(advertise: &[String]) -> Option<Vec<String>> {
    let mut out = Vec::new();
    for a in advertise {
        if !is_plain(a) {
            return None;
        }
        let any = if is_ipv6(a) {
            "/ip6/::"
        } else {
            "/ip4/0.0.0.0"
        };
        let listen = match port_of(a)? {
            (false, p) => format!("{any}/tcp/{p}"),
            (true, p) => format!("{any}/udp/{p}/quic-v1"),
        };
        if !out.contains(&listen) {
            out.push(listen);
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Whether a multiaddr listens on every interface (`0.0.0.0`, `::`): no partner can dial it.
pub fn is_unspecified(addr: &str) -> bool {
    addr.parse::<libp2p::Multiaddr>().is_ok_and(|m| {
        m.iter().any(|p| match p {
            libp2p::multiaddr::Protocol::Ip4(ip) => ip.is_unspecified(),
            libp2p::multiaddr::Protocol::Ip6(ip) => ip.is_unspecified(),
            _ => false,
        })
    })
}

/// Refuses to replace a key or workspace file that exists: it would orphan what it signed.
pub fn refuse_existing(path: &Path) -> anyhow::Result<()> {
    if path.exists() {
        bail!(
            "{} は既にあります。上書きすると署名済みのものが使えなくなるため、別の場所を指定してください / {} exists already; replacing it would orphan what it signed, so choose another place",
            path.display(),
            path.display()
        );
    }
    Ok(())
}

/// Creates the federation root: `DIR/root.key` (0600) and `DIR/anchor.json`.
pub fn root_init(dir: &Path, federation: &str) -> anyhow::Result<Anchor> {
    create_private_dir(dir)?;
    let key_path = dir.join("root.key");
    refuse_existing(&key_path)?;
    let key = generate_signing_key();
    write_secret(&key_path, &key)?;
    let anchor = Anchor {
        format: ANCHOR_FORMAT.into(),
        federation: federation.into(),
        roots: vec![hex::encode(key.verifying_key().to_bytes())],
    };
    write_atomic(
        &dir.join("anchor.json"),
        serde_json::to_string_pretty(&anchor)?.as_bytes(),
        false,
    )?;
    Ok(anchor)
}

/// Creates a region authority: its key (`DIR/region.key`, 0600) and workspace
/// (`DIR/region.json`) with a certificate signed by the root.
pub fn region_init(
    root_key: &Path,
    dir: &Path,
    region: &str,
    name: &str,
    prefectures: Vec<u8>,
    years: u64,
) -> anyhow::Result<RegionWorkspace> {
    let root = read_secret(root_key)?;
    refuse_existing(&dir.join("region.key"))?;
    refuse_existing(&dir.join("region.json"))?;
    create_private_dir(dir)?;
    let key = generate_signing_key();
    write_secret(&dir.join("region.key"), &key)?;
    let now = now_secs();
    let cert = RegionCert::issue(
        &root,
        region,
        name,
        key.verifying_key().to_bytes(),
        prefectures,
        now - 86400,
        now + years * 365 * 86400,
    );
    let ws = RegionWorkspace::new(cert);
    save_workspace(dir, &ws)?;
    Ok(ws)
}

/// Loads a region workspace.
pub fn load_workspace(dir: &Path) -> anyhow::Result<RegionWorkspace> {
    let p = dir.join("region.json");
    let text = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is damaged", p.display()))
}

/// Saves a region workspace atomically.
pub fn save_workspace(dir: &Path, ws: &RegionWorkspace) -> anyhow::Result<()> {
    write_atomic(
        &dir.join("region.json"),
        serde_json::to_string_pretty(ws)?.as_bytes(),
        false,
    )
}

/// Approves enrollment requests into a region workspace.
pub fn approve(dir: &Path, requests: &[EnrollmentRequest]) -> anyhow::Result<()> {
    let mut ws = load_workspace(dir)?;
    let now = now_secs();
    for r in requests {
        ws.approve(r, now)
            .with_context(|| format!("office {}", r.office))?;
    }
    save_workspace(dir, &ws)
}

/// Revokes an office.
pub fn revoke(dir: &Path, office: &OfficeNumber) -> anyhow::Result<()> {
    let mut ws = load_workspace(dir)?;
    ws.revoke(office)?;
    save_workspace(dir, &ws)
}

/// Adds (or replaces) a directory node in the region's snapshots.
pub fn add_node(dir: &Path, node: NodeInfo) -> anyhow::Result<()> {
    let mut ws = load_workspace(dir)?;
    ws.nodes.retain(|n| n.key != node.key);
    ws.nodes.push(node);
    save_workspace(dir, &ws)
}

/// Publishes the next snapshot (and delta) into `out`; returns the files written.
pub fn publish(dir: &Path, out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    publish_steps(dir, out, &mut |_| {})
}

/// The steps of a publish, for a progress bar.
pub const PUBLISH_STEPS: u64 = 4;

/// [`publish`], calling `step` as each of its [`PUBLISH_STEPS`] steps begins, with what it does
/// (both languages).
pub fn publish_steps(
    dir: &Path,
    out: &Path,
    step: &mut dyn FnMut(&str),
) -> anyhow::Result<Vec<PathBuf>> {
    step("地域の読み込み / reading the region");
    let mut ws = load_workspace(dir)?;
    let key = read_secret(&dir.join("region.key"))?;
    step(&format!(
        "{} 事業所の名簿に署名 / signing the snapshot of {} offices",
        ws.entries.len(),
        ws.entries.len()
    ));
    let (seq, snapshot, delta) = ws.publish(&key, now_secs());
    step("ファイルの書き込み / writing the files");
    std::fs::create_dir_all(out)?;
    let region = ws.cert.region.clone();
    let mut written = Vec::new();
    if let Some(d) = delta {
        let p = out.join(format!("{region}-{:010}-{seq:010}.delta", seq - 1));
        write_atomic(&p, &d, false)?;
        written.push(p);
    }
    let p = out.join(format!("{region}-{seq:010}.snapshot"));
    write_atomic(&p, &snapshot, false)?;
    written.push(p);
    step("地域の保存 / saving the region");
    // The workspace is saved last: a crash before this publishes the same seq again.
    save_workspace(dir, &ws)?;
    Ok(written)
}

/// A region workspace this large (bytes of `region.json`, about a thousand offices) gets a
/// progress bar when published.
const LARGE_REGION: u64 = 1 << 20;

/// Reads an enrollment request file.
pub fn read_request(path: &Path) -> anyhow::Result<EnrollmentRequest> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not an enrollment request", path.display()))
}

/// Makes a new key generation for an office (the current one stays on disk as `.1`) and a
/// rotation request (`H/rotation.json`) signed by both keys, with the new key starting
/// `starts_in` seconds from now.
pub fn rotate_keys(
    home: &Home,
    starts_in: u64,
) -> anyhow::Result<renkei_directory::RotationRequest> {
    let config = home.config()?;
    let office = OfficeNumber::parse(&config.office).context("office number")?;
    let old = home.load_keys()?.remove(0);
    let new = KeyPair {
        identity: generate_signing_key(),
        encryption: x25519_dalek::StaticSecret::from(generate_signing_key().to_bytes()),
    };
    let from = now_secs() + starts_in;
    let req = renkei_directory::RotationRequest::new(
        office,
        &old.identity,
        &new.identity,
        x25519_dalek::PublicKey::from(&new.encryption).to_bytes(),
        from,
        from + 10 * 365 * 86400,
    );
    home.write_new_keys(&new)?;
    write_atomic(
        &home.root.join("rotation.json"),
        serde_json::to_string_pretty(&req)?.as_bytes(),
        false,
    )?;
    Ok(req)
}

/// Applies a rotation request to a region workspace.
pub fn rotate(dir: &Path, req: &renkei_directory::RotationRequest) -> anyhow::Result<()> {
    let mut ws = load_workspace(dir)?;
    ws.rotate(req)?;
    save_workspace(dir, &ws)
}

impl OfficeSetup {
    /// The setup as typed on `renkei init`'s command line: the office number and the service
    /// kinds are checked here, with messages that name the flag.
    pub fn from_args(
        office: &str,
        name: String,
        kinds: &[String],
        listen: Vec<String>,
        advertise: Vec<String>,
        directory_nodes: Vec<String>,
        anchor: Option<PathBuf>,
    ) -> anyhow::Result<OfficeSetup> {
        let office = OfficeNumber::parse(office).context(
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
        Ok(OfficeSetup {
            office,
            name,
            kinds,
            listen,
            advertise,
            directory_nodes,
            anchor,
        })
    }
}

/// `renkei init`: creates the office's home ([`init_office`]) and tells the clerk what to
/// send to the association.
pub fn init_command(home: PathBuf, setup: &OfficeSetup) -> anyhow::Result<ExitCode> {
    let home = Home::new(home);
    let req = init_office(&home, setup)?;
    println!(
        "事業所 {} の設定を {} に作成しました / created {} for office {}",
        req.office,
        home.root.display(),
        home.root.display(),
        req.office
    );
    if req.addresses.is_empty() {
        eprintln!(
            "注意: 名簿にこの事業所のアドレスは載りません。ルーターの内側の事業所はこのままで構いません（相手先からは協会の名簿サーバーの中継で届きます）。外から直接届くアドレス（転送設定のあるポート）がある場合だけ --advertise で指定してください / note: the directory lists no address for this office. Behind a router that is fine: partners reach it through the association's directory nodes (relay). Give --advertise only for an address reachable from outside (a forwarded port)"
        );
    }
    println!(
        "identity (PeerId): {}",
        crate::net::peer_id_of(&req.identity)
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

/// `renkei rotate-keys`: makes the new key generation and rotation request ([`rotate_keys`])
/// and tells the clerk what happens next.
pub fn rotate_keys_command(home: PathBuf, starts_in_hours: u64) -> anyhow::Result<ExitCode> {
    let home = Home::new(home);
    let req = rotate_keys(&home, starts_in_hours * 3600)?;
    let rotation = home.root.join("rotation.json");
    let starts = crate::env::jst(req.new_key.valid_from * 1000);
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

/// `renkei directory root-init` ([`root_init`]).
pub fn root_init_command(out: &Path, federation: &str) -> anyhow::Result<ExitCode> {
    root_init(out, federation)?;
    println!(
        "created {} and {}",
        out.join("root.key").display(),
        out.join("anchor.json").display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `renkei directory region-init` ([`region_init`]).
pub fn region_init_command(
    root_key: &Path,
    out: &Path,
    region: &str,
    name: &str,
    prefectures: Vec<u8>,
    years: u64,
) -> anyhow::Result<ExitCode> {
    region_init(root_key, out, region, name, prefectures, years)?;
    println!("created region {region} in {}", out.display());
    Ok(ExitCode::SUCCESS)
}

/// `renkei directory approve`: reads the enrollment request files and [`approve`]s them.
pub fn approve_command(region: &Path, requests: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let reqs = requests
        .iter()
        .map(|p| read_request(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    approve(region, &reqs)?;
    for r in reqs {
        println!("approved {} {}", r.office, r.name);
    }
    Ok(ExitCode::SUCCESS)
}

/// `renkei directory revoke` ([`revoke`]), with the office number as typed.
pub fn revoke_command(region: &Path, office: &str) -> anyhow::Result<ExitCode> {
    let office = OfficeNumber::parse(office).context("--office must be 10 digits")?;
    revoke(region, &office)?;
    println!("revoked {office}; publish to make it effective");
    Ok(ExitCode::SUCCESS)
}

/// `renkei directory rotate`: reads an office's rotation request file and applies it
/// ([`rotate`]).
pub fn rotate_command(region: &Path, request: &Path) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(request)
        .with_context(|| format!("reading {}", request.display()))?;
    let req: renkei_directory::RotationRequest = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a rotation request", request.display()))?;
    rotate(region, &req)?;
    println!(
        "rotation for {} recorded; publish to announce it",
        req.office
    );
    Ok(ExitCode::SUCCESS)
}

/// `renkei directory set-mailboxes`: names the directory nodes that keep an office's mail
/// (keys as typed, hex); none named means its region's directory nodes. A node the region
/// does not list is accepted with a warning: it may be a neighbouring region's.
pub fn set_mailboxes_command(
    region: &Path,
    office: &str,
    nodes: &[String],
) -> anyhow::Result<ExitCode> {
    let office = OfficeNumber::parse(office).context("--office must be 10 digits")?;
    let mut keys = Vec::with_capacity(nodes.len());
    for n in nodes {
        let mut k = [0u8; 32];
        hex::decode_to_slice(n, &mut k)
            .with_context(|| format!("--node {n}: a node key is 64 hex digits"))?;
        keys.push(k);
    }
    let mut ws = load_workspace(region)?;
    for k in &keys {
        if !ws.nodes.iter().any(|n| &n.key == k) {
            eprintln!(
                "note: {} is not one of this region's directory nodes; offices find it only if \
                 a region they hold lists it",
                hex::encode(k)
            );
        }
    }
    ws.set_mailboxes(&office, keys)?;
    save_workspace(region, &ws)?;
    if nodes.is_empty() {
        println!("{office} uses its region's directory nodes as mailboxes; publish to announce it");
    } else {
        println!(
            "{office} names {} mailbox node(s); publish to announce it (the region's files become \
             format 2, which renkei before format 2 cannot read)",
            nodes.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `renkei directory add-node` ([`add_node`]), with the node's key as typed (hex).
pub fn add_node_command(
    region: &Path,
    key: &str,
    addrs: Vec<String>,
    http: Option<String>,
) -> anyhow::Result<ExitCode> {
    let mut k = [0u8; 32];
    hex::decode_to_slice(key, &mut k).context("--key must be 64 hex digits")?;
    add_node(
        region,
        NodeInfo {
            key: k,
            addresses: addrs,
            http,
        },
    )?;
    println!(
        "added directory node {}",
        crate::net::peer_id_of(&k)
            .map(|p| p.to_string())
            .unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}

/// `renkei directory publish` ([`publish`]): lists the files written and when they are
/// picked up.
pub fn publish_command(region: &Path, out: &Path) -> anyhow::Result<ExitCode> {
    let large =
        std::fs::metadata(region.join("region.json")).is_ok_and(|m| m.len() >= LARGE_REGION);
    let bar = crate::progress::bar(
        large,
        PUBLISH_STEPS,
        crate::progress::Unit::Items,
        "公開中 / publishing",
    );
    // The bar shows the steps done; the spinner moves during one.
    let mut done = 0;
    let written = publish_steps(region, out, &mut |what| {
        bar.set_position(done);
        bar.set_message(what.to_string());
        done += 1;
    });
    bar.finish_and_clear();
    for p in written? {
        println!("wrote {}", p.display());
    }
    println!(
        "directory nodes serving {} pick these up within their --refresh-secs (10 s by default); offices within their directory_refresh_secs (300 s)",
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `renkei directory node-init`: creates a directory node's identity key and prints its
/// public key and peer id (what the region's `add-node` and the offices need).
pub fn node_init_command(out: &Path) -> anyhow::Result<ExitCode> {
    refuse_existing(out)?;
    let k = generate_signing_key();
    write_secret(out, &k)?;
    let pk = k.verifying_key().to_bytes();
    println!("key     {}", hex::encode(pk));
    println!(
        "peer id {}",
        crate::net::peer_id_of(&pk)
            .map(|p| p.to_string())
            .unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod listen_tests {
    use super::listen_for;

    #[test]
    fn listen_addresses_follow_the_advertised_ones() {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            listen_for(&v(&[
                "/dns4/a.example.jp/tcp/4801",
                "/ip4/192.0.2.1/udp/4801/quic-v1"
            ])),
            Some(v(&[
                "/ip4/0.0.0.0/tcp/4801",
                "/ip4/0.0.0.0/udp/4801/quic-v1"
            ]))
        );
        assert_eq!(
            listen_for(&v(&[
                "/ip6/2001:db8::1/tcp/4801",
                "/dns6/a.example.jp/udp/4802/quic-v1"
            ])),
            Some(v(&["/ip6/::/tcp/4801", "/ip6/::/udp/4802/quic-v1"]))
        );
        assert_eq!(listen_for(&v(&["/ip4/192.0.2.1/tcp/4801/ws"])), None);
        assert_eq!(listen_for(&v(&["/dns4/a.example.jp"])), None);
        assert_eq!(listen_for(&[]), None);
    }
}

#[cfg(test)]
mod publish_tests {
    use super::*;

    /// The steps a publish reports (for its progress bar) are as many as it says, in order,
    /// and it writes the same files as a publish without a bar.
    #[test]
    fn a_publish_reports_each_of_its_steps() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        root_init(&root, "test federation").unwrap();
        let region = dir.path().join("region");
        region_init(
            &root.join("root.key"),
            &region,
            "tokyo",
            "東京都",
            vec![13],
            1,
        )
        .unwrap();
        let mut steps = Vec::new();
        let out = dir.path().join("published");
        let written = publish_steps(&region, &out, &mut |s| steps.push(s.to_string())).unwrap();
        assert_eq!(steps.len() as u64, PUBLISH_STEPS, "{steps:?}");
        assert!(steps[1].contains("0 offices"), "{steps:?}");
        assert_eq!(written, vec![out.join("tokyo-0000000001.snapshot")]);
        assert!(written[0].is_file());
        // The next one (no bar) writes a delta and the next snapshot.
        assert_eq!(publish(&region, &out).unwrap().len(), 2);
    }

    #[test]
    fn seeded_keys_repeat_while_held_and_only_then() {
        let first = {
            let _k = SeededKeys::new(5);
            (generate_signing_key(), generate_signing_key())
        };
        let again = {
            let _k = SeededKeys::new(5);
            (generate_signing_key(), generate_signing_key())
        };
        assert_eq!(first.0.to_bytes(), again.0.to_bytes());
        assert_eq!(first.1.to_bytes(), again.1.to_bytes());
        assert_ne!(first.0.to_bytes(), first.1.to_bytes());
        // Dropped: keys come from the operating system again.
        assert_ne!(generate_signing_key().to_bytes(), first.0.to_bytes());
        assert_ne!(
            generate_signing_key().to_bytes(),
            generate_signing_key().to_bytes()
        );
    }
}
