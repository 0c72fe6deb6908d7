//! Directory files on disk, and pulling them from directory nodes (SPEC.md §6.6).
//!
//! A folder of published files — `<region>-<seq>.snapshot` and `<region>-<from>-<to>.delta` —
//! is both what a directory node serves and what an office caches. Whatever the source, every
//! file is verified against the anchor before it is used or stored: a lying mirror can only
//! withhold updates, never forge or roll back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use futures::AsyncWriteExt;
use libp2p::PeerId;
use renkei_directory::{Applied, Directory, DirectoryError, Snapshot};
use serde::{Deserialize, Serialize};

use crate::frames::{self, Kind};
use crate::home::write_atomic;
use crate::net::{DIRECTORY, Net};

/// One region as a directory node offers it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionSummary {
    /// Region id.
    pub region: String,
    /// Sequence number of the newest snapshot file.
    pub snapshot_seq: u64,
    /// Sequence number reached by applying the deltas after it.
    pub seq: u64,
}

/// A request on the directory protocol.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Request {
    /// List the regions.
    List,
    /// The newest snapshot of a region.
    Snapshot {
        /// Region id.
        region: String,
    },
    /// The delta of a region that starts at `from`.
    Delta {
        /// Region id.
        region: String,
        /// Its starting sequence number.
        from: u64,
    },
    /// The node's clock now ([`TimeAnswer`]), so an office can tell whether its own clock is
    /// wrong.
    Time,
}

/// The answer to a [`Request::Time`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeAnswer {
    /// Unix milliseconds by the directory node's clock when it answered.
    pub time_ms: u64,
}

fn file_region_ok(region: &str) -> bool {
    !region.is_empty()
        && region.len() <= 64
        && region
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-')
}

/// A folder of directory files.
#[derive(Clone, Debug)]
pub struct DirFolder {
    /// The folder.
    pub path: PathBuf,
}

/// The files of one region in a folder.
#[derive(Debug, Default)]
struct RegionFiles {
    snapshots: BTreeMap<u64, PathBuf>,
    deltas: BTreeMap<u64, (u64, PathBuf)>,
}

impl DirFolder {
    /// A folder at `path` (created if missing).
    pub fn new(path: impl Into<PathBuf>) -> anyhow::Result<DirFolder> {
        let path = path.into();
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(DirFolder { path })
    }

    /// What the folder holds, as names, sizes and modification times: unchanged, a load
    /// would give the same directory. `None` when the folder cannot be read.
    pub fn stamp(&self) -> Option<Vec<(std::ffi::OsString, u64, Option<std::time::SystemTime>)>> {
        let mut out: Vec<_> = std::fs::read_dir(&self.path)
            .ok()?
            .flatten()
            .map(|e| {
                let meta = e.metadata().ok();
                (
                    e.file_name(),
                    meta.as_ref().map_or(0, |m| m.len()),
                    meta.and_then(|m| m.modified().ok()),
                )
            })
            .collect();
        out.sort();
        Some(out)
    }

    fn scan(&self) -> BTreeMap<String, RegionFiles> {
        let mut out: BTreeMap<String, RegionFiles> = BTreeMap::new();
        let Ok(rd) = std::fs::read_dir(&self.path) else {
            return out;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if let Some(stem) = name.strip_suffix(".snapshot") {
                if let Some((region, seq)) = stem.rsplit_once('-')
                    && let Ok(seq) = seq.parse()
                {
                    out.entry(region.to_string())
                        .or_default()
                        .snapshots
                        .insert(seq, e.path());
                }
            } else if let Some(stem) = name.strip_suffix(".delta") {
                let mut it = stem.rsplitn(3, '-');
                if let (Some(to), Some(from), Some(region)) = (it.next(), it.next(), it.next())
                    && let (Ok(to), Ok(from)) = (to.parse(), from.parse())
                {
                    out.entry(region.to_string())
                        .or_default()
                        .deltas
                        .insert(from, (to, e.path()));
                }
            }
        }
        out
    }

    /// Builds the verified directory from the folder: per region the newest snapshot that
    /// verifies, then every delta that applies after it. Files that fail are reported and
    /// skipped.
    pub fn load(&self, dir: &mut Directory) -> Vec<String> {
        let mut problems = Vec::new();
        for (region, files) in self.scan() {
            let mut applied = false;
            for (_, p) in files.snapshots.iter().rev() {
                match std::fs::read(p)
                    .map_err(|e| e.to_string())
                    .and_then(|b| dir.apply_snapshot(&b).map_err(|e| e.to_string()))
                {
                    Ok(_) => {
                        applied = true;
                        break;
                    }
                    Err(e) => problems.push(format!("{}: {e}", p.display())),
                }
            }
            if !applied {
                continue;
            }
            while let Some(seq) = dir.region(&region).map(|r| r.seq) {
                let Some((_, p)) = files.deltas.get(&seq) else {
                    break;
                };
                if let Err(e) = std::fs::read(p)
                    .map_err(|e| e.to_string())
                    .and_then(|b| dir.apply_delta(&b).map_err(|e| e.to_string()))
                {
                    problems.push(format!("{}: {e}", p.display()));
                    break;
                }
            }
        }
        problems
    }

    /// What the folder offers (for serving).
    pub fn list(&self) -> Vec<RegionSummary> {
        self.scan()
            .into_iter()
            .filter_map(|(region, f)| {
                let (&snapshot_seq, _) = f.snapshots.iter().next_back()?;
                let mut seq = snapshot_seq;
                while let Some((to, _)) = f.deltas.get(&seq) {
                    seq = *to;
                }
                Some(RegionSummary {
                    region,
                    snapshot_seq,
                    seq,
                })
            })
            .collect()
    }

    /// The newest snapshot file of a region.
    pub fn snapshot(&self, region: &str) -> Option<Vec<u8>> {
        let files = self.scan().remove(region)?;
        std::fs::read(files.snapshots.iter().next_back()?.1).ok()
    }

    /// The delta file of a region starting at `from`.
    pub fn delta(&self, region: &str, from: u64) -> Option<Vec<u8>> {
        let files = self.scan().remove(region)?;
        std::fs::read(&files.deltas.get(&from)?.1).ok()
    }

    /// Stores a verified snapshot, removing older files of its region.
    pub fn store_snapshot(&self, region: &str, seq: u64, bytes: &[u8]) -> anyhow::Result<()> {
        anyhow::ensure!(file_region_ok(region), "bad region id");
        write_atomic(
            &self.path.join(format!("{region}-{seq:010}.snapshot")),
            bytes,
            false,
        )?;
        if let Some(files) = self.scan().remove(region) {
            for (s, p) in files.snapshots {
                if s < seq {
                    let _ = std::fs::remove_file(p);
                }
            }
            for (from, (_, p)) in files.deltas {
                if from < seq {
                    let _ = std::fs::remove_file(p);
                }
            }
        }
        Ok(())
    }

    /// Stores a verified delta.
    pub fn store_delta(
        &self,
        region: &str,
        from: u64,
        to: u64,
        bytes: &[u8],
    ) -> anyhow::Result<()> {
        anyhow::ensure!(file_region_ok(region), "bad region id");
        write_atomic(
            &self
                .path
                .join(format!("{region}-{from:010}-{to:010}.delta")),
            bytes,
            false,
        )
    }
}

/// A source of directory files: a directory node over libp2p or HTTP, or a test double.
pub trait Source {
    /// The regions it offers.
    fn list(
        &mut self,
    ) -> impl std::future::Future<Output = anyhow::Result<Vec<RegionSummary>>> + Send;
    /// The newest snapshot of a region.
    fn snapshot(
        &mut self,
        region: &str,
    ) -> impl std::future::Future<Output = anyhow::Result<Vec<u8>>> + Send;
    /// The delta of a region starting at `from`.
    fn delta(
        &mut self,
        region: &str,
        from: u64,
    ) -> impl std::future::Future<Output = anyhow::Result<Vec<u8>>> + Send;
}

/// What one pull did.
#[derive(Debug, Default, Clone)]
pub struct PullReport {
    /// Regions that moved forward: (region, new seq).
    pub updated: Vec<(String, u64)>,
    /// Files refused, with the reason.
    pub refused: Vec<String>,
}

/// Pulls every region newer than ours from `source`, verifying each file before applying and
/// storing it in `cache`.
pub async fn pull<S: Source>(
    source: &mut S,
    dir: &mut Directory,
    cache: &DirFolder,
) -> anyhow::Result<PullReport> {
    let offers = source.list().await?;
    pull_offers(source, offers, dir, cache).await
}

/// Whether `offers` (a source's listing) holds anything newer than `dir`.
pub fn offers_news(offers: &[RegionSummary], dir: &Directory) -> bool {
    offers
        .iter()
        .any(|o| dir.region(&o.region).is_none_or(|r| r.seq < o.seq))
}

/// [`pull`] with the source's listing already in hand.
pub async fn pull_offers<S: Source>(
    source: &mut S,
    offers: Vec<RegionSummary>,
    dir: &mut Directory,
    cache: &DirFolder,
) -> anyhow::Result<PullReport> {
    let mut report = PullReport::default();
    for offer in offers {
        if !file_region_ok(&offer.region) {
            report.refused.push(format!(
                "{}: bad region id",
                crate::files::shown(&offer.region)
            ));
            continue;
        }
        let have = dir.region(&offer.region).map(|r| r.seq);
        if have.is_some_and(|h| h >= offer.seq) {
            continue;
        }
        // Start from a snapshot unless our copy is a valid base for the deltas.
        if have.is_none_or(|h| h < offer.snapshot_seq) {
            let bytes = match source.snapshot(&offer.region).await {
                Ok(b) => b,
                Err(e) => {
                    report.refused.push(format!("{}: {e}", offer.region));
                    continue;
                }
            };
            match dir.apply_snapshot(&bytes) {
                Ok(Applied::Updated { region, seq }) => {
                    if region != offer.region {
                        report.refused.push(format!(
                            "{}: the mirror served region {region}",
                            offer.region
                        ));
                    }
                    cache.store_snapshot(&region, seq, &bytes)?;
                    report.updated.push((region, seq));
                }
                Ok(Applied::Unchanged) => {}
                Err(e) => {
                    report
                        .refused
                        .push(format!("{} snapshot: {e}", offer.region));
                    continue;
                }
            }
        }
        while let Some(seq) = dir.region(&offer.region).map(|r| r.seq) {
            if seq >= offer.seq {
                break;
            }
            let bytes = match source.delta(&offer.region, seq).await {
                Ok(b) => b,
                Err(e) => {
                    report
                        .refused
                        .push(format!("{} delta from {seq}: {e}", offer.region));
                    break;
                }
            };
            match dir.apply_delta(&bytes) {
                Ok(Applied::Updated { region, seq: to }) if region == offer.region => {
                    cache.store_delta(&region, seq, to, &bytes)?;
                    report.updated.push((region, to));
                }
                Ok(_) => break,
                Err(e) => {
                    report
                        .refused
                        .push(format!("{} delta from {seq}: {e}", offer.region));
                    break;
                }
            }
        }
    }
    Ok(report)
}

/// A directory node reached over libp2p.
#[derive(Debug)]
pub struct P2pSource {
    /// Our swarm.
    pub net: Net,
    /// The directory node.
    pub peer: PeerId,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Seeds the spread of retries (from the node's random source, so a lab run repeats).
    pub jitter_seed: u64,
}

impl P2pSource {
    async fn ask(&mut self, req: &Request) -> anyhow::Result<Vec<u8>> {
        use rand::{RngExt, SeedableRng};
        // A directory node drops requests that arrive while its queue of new streams is full
        // (thousands of offices starting at once after a power cut): retry at spread times,
        // not all together again.
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(self.jitter_seed);
        let mut last = None;
        for attempt in 0..4u64 {
            if attempt > 0 {
                let spread = 50 + rng.random_range(0..1000 * attempt);
                tokio::time::sleep(Duration::from_millis(spread)).await;
            }
            match self.ask_once(req).await {
                Ok(b) => return Ok(b),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no answer")))
    }

    async fn ask_once(&mut self, req: &Request) -> anyhow::Result<Vec<u8>> {
        let mut s = self.net.open(self.peer, DIRECTORY, self.timeout).await?;
        frames::write(&mut s, Kind::Request, &serde_json::to_vec(req)?).await?;
        s.flush().await?;
        let mut buf = Vec::new();
        // A large snapshot (the first sync of a national directory) shows a bar on a terminal.
        let mut bar = None;
        let label = download_label(req);
        let kind = frames::read_progress(
            &mut s,
            &mut buf,
            self.timeout,
            &[Kind::Blob, Kind::NotFound],
            &mut |got, total| {
                bar.get_or_insert_with(|| crate::progress::download(total, &label))
                    .set_position(got)
            },
        )
        .await;
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        let kind = kind?;
        let _ = s.close().await;
        match kind {
            Some(Kind::Blob) => Ok(buf),
            Some(Kind::NotFound) => anyhow::bail!("not found: {}", String::from_utf8_lossy(&buf)),
            _ => anyhow::bail!("unexpected answer from the directory node"),
        }
    }
}

/// What a download bar says it fetches.
fn download_label(req: &Request) -> String {
    match req {
        Request::Snapshot { region } => format!(
            "名簿 {} の取得 / fetching the directory of {}",
            crate::files::shown(region),
            crate::files::shown(region)
        ),
        _ => "名簿の取得 / fetching the directory".into(),
    }
}

impl P2pSource {
    /// The directory node's clock (Unix milliseconds), asked once: a node that does not
    /// answer time requests (an older version) answers "not found".
    pub async fn time(&mut self) -> anyhow::Result<u64> {
        let answer: TimeAnswer = serde_json::from_slice(&self.ask_once(&Request::Time).await?)?;
        Ok(answer.time_ms)
    }
}

impl Source for P2pSource {
    async fn list(&mut self) -> anyhow::Result<Vec<RegionSummary>> {
        Ok(serde_json::from_slice(&self.ask(&Request::List).await?)?)
    }
    async fn snapshot(&mut self, region: &str) -> anyhow::Result<Vec<u8>> {
        self.ask(&Request::Snapshot {
            region: region.into(),
        })
        .await
    }
    async fn delta(&mut self, region: &str, from: u64) -> anyhow::Result<Vec<u8>> {
        self.ask(&Request::Delta {
            region: region.into(),
            from,
        })
        .await
    }
}

/// The `Authorization` scheme of a signed directory HTTP request (SPEC.md §6.6).
pub const HTTP_AUTH_SCHEME: &str = "Renkei-Ed25519";

/// How far (seconds) a signed request's time may be from the server's clock, either way: a
/// day, the clock error renkei tolerates everywhere (SPEC.md §4.6, §6.6), so a directory node
/// or office whose clock is hours off still syncs.
pub const HTTP_AUTH_WINDOW_SECS: u64 = 86400;

/// The bytes an HTTP request signature covers: a domain-separation line, then the method, the
/// path and query, and the time in decimal, each after a newline.
pub fn http_signed_bytes(method: &str, path_and_query: &str, time: u64) -> Vec<u8> {
    format!("renkei/1 directory-http\n{method}\n{path_and_query}\n{time}").into_bytes()
}

/// The `Authorization` header value that signs `method path_and_query` at `time` with `key`.
pub fn http_authorization(
    key: &ed25519_dalek::SigningKey,
    method: &str,
    path_and_query: &str,
    time: u64,
) -> String {
    use ed25519_dalek::Signer;
    let sig = key.sign(&http_signed_bytes(method, path_and_query, time));
    format!(
        "{HTTP_AUTH_SCHEME} key={}, time={time}, sig={}",
        hex::encode(key.verifying_key().to_bytes()),
        hex::encode(sig.to_bytes())
    )
}

/// A parsed `Authorization: Renkei-Ed25519 …` header (not yet verified).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSignature {
    /// The signer's Ed25519 key.
    pub key: [u8; 32],
    /// When the client signed, Unix seconds.
    pub time: u64,
    /// The signature.
    pub sig: [u8; 64],
}

impl HttpSignature {
    /// Parses exactly `Renkei-Ed25519 key=<64 hex>, time=<decimal>, sig=<128 hex>` (lowercase
    /// hex); anything else is `None`.
    pub fn parse(value: &str) -> Option<HttpSignature> {
        let rest = value
            .strip_prefix(HTTP_AUTH_SCHEME)?
            .strip_prefix(" key=")?;
        let (key, rest) = rest.split_once(", time=")?;
        let (time, sig) = rest.split_once(", sig=")?;
        let lower_hex = |h: &str, n: usize| {
            h.len() == n && h.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
        };
        if !lower_hex(key, 64)
            || !lower_hex(sig, 128)
            || time.is_empty()
            || time.len() > 20
            || !time.bytes().all(|c| c.is_ascii_digit())
        {
            return None;
        }
        Some(HttpSignature {
            key: hex::decode(key).ok()?.try_into().ok()?,
            time: time.parse().ok()?,
            sig: hex::decode(sig).ok()?.try_into().ok()?,
        })
    }

    /// Whether the signature is `key`'s over this request (Ed25519, `verify_strict`).
    pub fn verifies(&self, method: &str, path_and_query: &str) -> bool {
        let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(&self.key) else {
            return false;
        };
        key.verify_strict(
            &http_signed_bytes(method, path_and_query, self.time),
            &ed25519_dalek::Signature::from_bytes(&self.sig),
        )
        .is_ok()
    }
}

/// A directory node (or mirror) reached over HTTP. Every request is signed with `identity`
/// (a directory node's or an office's key), as the serving node requires.
#[derive(Clone)]
pub struct HttpSource {
    /// Base URL, e.g. `http://127.0.0.1:4780`.
    pub base: String,
    /// The client.
    pub client: reqwest::Client,
    /// The key requests are signed with.
    pub identity: ed25519_dalek::SigningKey,
    /// The time put into each signature.
    pub clock: std::sync::Arc<dyn crate::env::Clock>,
}

impl std::fmt::Debug for HttpSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSource")
            .field("base", &self.base)
            .field(
                "identity",
                &hex::encode(self.identity.verifying_key().to_bytes()),
            )
            .finish_non_exhaustive()
    }
}

impl HttpSource {
    async fn get(&self, path: &str) -> anyhow::Result<Vec<u8>> {
        let url = reqwest::Url::parse(&format!("{}{path}", self.base.trim_end_matches('/')))
            .with_context(|| format!("bad directory node URL {}", self.base))?;
        // Sign the path and query exactly as they go on the wire.
        let target = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        let auth = http_authorization(&self.identity, "GET", &target, self.clock.now_ms() / 1000);
        let resp = self
            .client
            .get(url)
            .header(reqwest::header::AUTHORIZATION, auth)
            .send()
            .await?;
        let status = resp.status();
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            let why = resp.text().await.unwrap_or_default();
            return Err(HttpRefused {
                status: status.as_u16(),
                why: why.trim().chars().take(300).collect(),
            }
            .into());
        }
        anyhow::ensure!(status.is_success(), "HTTP {status}");
        // A large snapshot (the first mirror of a national directory) shows a bar on a
        // terminal; the body grows only as it comes.
        let bar = crate::progress::download(
            resp.content_length().unwrap_or(0),
            &format!("名簿の取得 / fetching {}", crate::files::shown(path)),
        );
        let mut resp = resp;
        let mut body = Vec::new();
        let got = async {
            while let Some(piece) = resp.chunk().await? {
                body.extend_from_slice(&piece);
                bar.set_position(body.len() as u64);
            }
            anyhow::Ok(())
        }
        .await;
        bar.finish_and_clear();
        got?;
        Ok(body)
    }
}

/// A directory node refused our signed request (401 or 403), with its explanation.
#[derive(Debug)]
pub struct HttpRefused {
    /// The HTTP status.
    pub status: u16,
    /// The body the node sent (at most 300 characters).
    pub why: String,
}

impl std::fmt::Display for HttpRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {}: {}", self.status, self.why)
    }
}

impl std::error::Error for HttpRefused {}

impl Source for HttpSource {
    async fn list(&mut self) -> anyhow::Result<Vec<RegionSummary>> {
        Ok(serde_json::from_slice(&self.get("/v1/regions").await?)?)
    }
    async fn snapshot(&mut self, region: &str) -> anyhow::Result<Vec<u8>> {
        self.get(&format!("/v1/regions/{region}/snapshot")).await
    }
    async fn delta(&mut self, region: &str, from: u64) -> anyhow::Result<Vec<u8>> {
        self.get(&format!("/v1/regions/{region}/delta/{from}"))
            .await
    }
}

/// Loads the rollback floors saved next to the cache.
pub fn load_floors(cache: &Path, dir: &mut Directory) {
    if let Ok(text) = std::fs::read_to_string(cache.join("floors.json"))
        && let Ok(floors) = serde_json::from_str::<BTreeMap<String, u64>>(&text)
    {
        for (r, s) in floors {
            dir.set_floor(&r, s);
        }
    }
}

/// Saves the rollback floors.
pub fn save_floors(cache: &Path, dir: &Directory) -> anyhow::Result<()> {
    write_atomic(
        &cache.join("floors.json"),
        &serde_json::to_vec(dir.floors())?,
        false,
    )
}

/// Checks one `.snapshot` file against an anchor for `renkei directory verify`.
pub fn verify_file(
    anchor: &renkei_directory::Anchor,
    bytes: &[u8],
    now: u64,
) -> Result<Snapshot, DirectoryError> {
    let snap = Directory::verify_snapshot(anchor, bytes)?;
    if now > snap.header.expires_at {
        return Err(DirectoryError::Expired {
            expires_at: snap.header.expires_at,
        });
    }
    Ok(snap)
}

/// Reads a trust anchor file for an operator's command.
pub(crate) fn read_anchor(p: &Path) -> anyhow::Result<renkei_directory::Anchor> {
    let text = std::fs::read_to_string(p)
        .with_context(|| format!("cannot read anchor {}", p.display()))?;
    renkei_directory::Anchor::from_json(&text)
        .map_err(|e| anyhow::anyhow!("anchor {}: {e}", p.display()))
}

/// `renkei directory verify`: checks snapshot files, oldest first, against the anchor
/// ([`verify_file`]) and that no region goes back in sequence; prints one line per file.
/// Exit status 0 when all are good, 1 when one failed.
pub fn verify_command(anchor: &Path, files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let anchor = read_anchor(anchor)?;
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    let mut ok = true;
    let now = crate::env::wall_clock_ms() / 1000;
    for f in files {
        let bytes = std::fs::read(f).with_context(|| format!("cannot read {}", f.display()))?;
        match verify_file(&anchor, &bytes, now) {
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
                    crate::env::jst(s.header.expires_at.saturating_mul(1000))
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use renkei_directory::{ANCHOR_FORMAT, Anchor, Entry, OfficeKey, RegionCert, Snapshot, Status};
    use renkei_protocol::{OfficeNumber, ServiceKind};

    const NOW: u64 = 1_790_000_000;

    /// A mirror that serves whatever it was given, true or not.
    struct Mirror {
        region: String,
        seq: u64,
        snapshot: Vec<u8>,
    }

    impl Source for Mirror {
        async fn list(&mut self) -> anyhow::Result<Vec<RegionSummary>> {
            Ok(vec![RegionSummary {
                region: self.region.clone(),
                snapshot_seq: self.seq,
                seq: self.seq,
            }])
        }
        async fn snapshot(&mut self, _: &str) -> anyhow::Result<Vec<u8>> {
            Ok(self.snapshot.clone())
        }
        async fn delta(&mut self, _: &str, _: u64) -> anyhow::Result<Vec<u8>> {
            anyhow::bail!("no deltas")
        }
    }

    fn entry(office: &str) -> Entry {
        Entry {
            office: OfficeNumber::parse(office).unwrap(),
            name: "事業所".into(),
            kinds: vec![ServiceKind::parse("43").unwrap()],
            keys: vec![OfficeKey {
                identity: [9; 32],
                encryption: [8; 32],
                valid_from: 0,
                valid_until: u64::MAX,
            }],
            addresses: vec![],
            status: Status::Active,
            mailboxes: Vec::new(),
        }
    }

    /// An anchor (root key `[1; 32]`) and the region 13-tokyo it certifies (key `[2; 32]`),
    /// for the tests of the directory's client and server alike.
    pub(crate) fn setup() -> (Anchor, RegionCert, SigningKey) {
        let root = SigningKey::from_bytes(&[1; 32]);
        let region = SigningKey::from_bytes(&[2; 32]);
        let anchor = Anchor {
            format: ANCHOR_FORMAT.into(),
            federation: "test".into(),
            roots: vec![hex::encode(root.verifying_key().to_bytes())],
        };
        let cert = RegionCert::issue(
            &root,
            "13-tokyo",
            "東京",
            region.verifying_key().to_bytes(),
            vec![13],
            0,
            u64::MAX / 2,
        );
        (anchor, cert, region)
    }

    fn snapshot(cert: &RegionCert, key: &SigningKey, seq: u64, offices: &[&str]) -> Vec<u8> {
        let entries: Vec<Entry> = offices.iter().map(|o| entry(o)).collect();
        Snapshot::build(cert, key, seq, NOW, NOW + 86400, &[], &entries)
    }

    #[test]
    fn the_authorization_header_is_read_exactly_as_specified() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let value = http_authorization(&key, "GET", "/v1/regions", NOW);
        let pk = hex::encode(key.verifying_key().to_bytes());
        assert!(value.starts_with(&format!("Renkei-Ed25519 key={pk}, time={NOW}, sig=")));
        let sig = HttpSignature::parse(&value).unwrap();
        assert_eq!((sig.key, sig.time), (key.verifying_key().to_bytes(), NOW));
        assert!(sig.verifies("GET", "/v1/regions"));
        assert!(!sig.verifies("GET", "/v1/regions?x"));
        assert!(!sig.verifies("HEAD", "/v1/regions"));
        assert_eq!(
            http_signed_bytes("GET", "/v1/regions", 5),
            b"renkei/1 directory-http\nGET\n/v1/regions\n5"
        );
        let sig_hex = value.rsplit_once("sig=").unwrap().1;
        for bad in [
            value.to_uppercase(),
            value.replace(", ", ","),
            value.replace("Renkei-Ed25519", "renkei-ed25519"),
            format!("{value} "),
            format!("Renkei-Ed25519 key={pk}, time=+5, sig={sig_hex}"),
            format!("Renkei-Ed25519 key={pk}, time=, sig={sig_hex}"),
            format!("Renkei-Ed25519 time={NOW}, key={pk}, sig={sig_hex}"),
            format!("Renkei-Ed25519 key={pk}, time=99999999999999999999999, sig={sig_hex}"),
            "Bearer abc".to_string(),
        ] {
            assert_eq!(HttpSignature::parse(&bad), None, "{bad}");
        }
    }

    #[tokio::test]
    async fn a_lying_mirror_is_caught() {
        let (anchor, cert, key) = setup();
        let tmp = tempfile::tempdir().unwrap();
        let cache = DirFolder::new(tmp.path()).unwrap();
        let mut dir = Directory::new(anchor.clone());
        let good = snapshot(&cert, &key, 2, &["1310000001"]);
        let mut honest = Mirror {
            region: "13-tokyo".into(),
            seq: 2,
            snapshot: good.clone(),
        };
        let r = pull(&mut honest, &mut dir, &cache).await.unwrap();
        assert_eq!(r.updated, vec![("13-tokyo".to_string(), 2)]);
        let digest = dir.region("13-tokyo").unwrap().digest;
        let files = || std::fs::read_dir(tmp.path()).unwrap().count();
        assert_eq!(files(), 1);

        // Tampered: an entry's key swapped after signing.
        let mut tampered = snapshot(&cert, &key, 3, &["1310000001"]);
        let n = tampered.len();
        tampered[n - 40] ^= 0xFF;
        // Old: a genuine earlier snapshot offered as news.
        let old = snapshot(&cert, &key, 1, &["1310000001", "1310000002"]);
        // Wrongly scoped: the Tokyo authority vouching for an Osaka office.
        let scoped = snapshot(&cert, &key, 4, &["1310000001", "2710000001"]);
        // Signed by someone else: a key that is not the region's.
        let forged = snapshot(
            &cert,
            &SigningKey::from_bytes(&[66; 32]),
            5,
            &["1310000001"],
        );
        for (what, seq, bytes, expect) in [
            ("tampered", 3, tampered, "forged or altered"),
            ("old", 3, old, "rollback"),
            ("wrongly scoped", 4, scoped, "outside the scope"),
            ("forged", 5, forged, "bad signature"),
        ] {
            let mut liar = Mirror {
                region: "13-tokyo".into(),
                seq,
                snapshot: bytes,
            };
            let r = pull(&mut liar, &mut dir, &cache).await.unwrap();
            assert!(r.updated.is_empty(), "{what}: accepted");
            assert_eq!(r.refused.len(), 1, "{what}");
            assert!(r.refused[0].contains(expect), "{what}: {}", r.refused[0]);
            let region = dir.region("13-tokyo").unwrap();
            assert_eq!(
                (region.seq, region.digest),
                (2, digest),
                "{what}: the directory changed"
            );
            assert_eq!(files(), 1, "{what}: the cache changed");
        }
        // The cache still loads to the honest state.
        let mut again = Directory::new(anchor);
        assert!(cache.load(&mut again).is_empty());
        assert_eq!(again.region("13-tokyo").unwrap().digest, digest);
    }
}
