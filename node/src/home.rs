//! An office's home folder: configuration, keys, and the folders office staff see.
//!
//! ```text
//! H/renkei.toml      configuration
//! H/anchor.json      the federation's trust anchor
//! H/keys/            identity.key, encryption.key (0600), older generations after rotation
//! H/outbox/          files to send (the care software writes here)
//! H/inbox/           files received (the care software imports from here)
//! H/sent/            our own copy of what was delivered
//! H/rejected/        files that could not be sent, each with <name>.error.txt
//! H/receipts.jsonl   the hash-chained receipt log
//! H/state/           node state (sled), directory cache, status.json, api-token (0600)
//! H/imported.jsonl   signed "imported" statements, ours and partners' (SPEC.md §8.2)
//! ```

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use ed25519_dalek::SigningKey;
use renkei_protocol::{OfficeNumber, ServiceKind};
use serde::{Deserialize, Serialize};
use x25519_dalek::StaticSecret;

/// The node's configuration (`H/renkei.toml`). Every field has a default but `office`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Our 事業所番号.
    pub office: String,
    /// Our 事業所名.
    pub name: String,
    /// The service kinds we act as.
    pub kinds: Vec<String>,
    /// libp2p listen addresses.
    pub listen: Vec<String>,
    /// The trust anchor, relative to the home folder.
    pub anchor: String,
    /// Directory nodes to sync from: libp2p multiaddrs ending in `/p2p/<PeerId>`.
    pub directory_nodes: Vec<String>,
    /// Seconds between directory syncs.
    pub directory_refresh_secs: u64,
    /// Seconds between outbox rescans (on top of file-system notifications).
    pub rescan_secs: u64,
    /// A new outbox file is taken only once it is this many milliseconds old, so a file the
    /// care software is still writing is not sent half-written.
    pub settle_ms: u64,
    /// First retry delay after a failed delivery, milliseconds.
    pub retry_initial_ms: u64,
    /// Longest retry delay, seconds.
    pub retry_max_secs: u64,
    /// Oldest envelope accepted, days.
    pub max_age_days: u64,
    /// How far another office's clock may be from ours, seconds: an envelope created up to
    /// this far in our future is accepted (SPEC.md §4.6). A day by default, so that an office
    /// PC whose clock is minutes or hours off still delivers.
    pub max_clock_skew_secs: u64,
    /// Largest file sent or received, MiB: a larger one is not sent (`FILE_TOO_LARGE` in
    /// `rejected/`), and a partner's larger envelope is refused (refusal code 13).
    pub max_file_mb: u64,
    /// Seconds to wait for a peer before giving up on a stream.
    pub io_timeout_secs: u64,
    /// Most bytes of unfinished files one partner may leave in `inbox/.partial/` at a time,
    /// MiB (one file is always taken, up to `max_file_mb`); more is refused as busy for now.
    pub max_partial_mb: u64,
    /// Days a delivered file's copy is kept in `sent/` (0: none is kept; the receipt with the
    /// partner's signed ack is kept always).
    pub sent_keep_days: u64,
    /// Warn this many hours before the directory snapshot expires.
    pub expiry_warning_hours: u64,
    /// When a newer key of ours has started (after `renkei rotate-keys` and the association's
    /// approval), switch to it by restarting: on Unix the process runs itself again with the
    /// same arguments and process id. `false`: only say so in the status, for a restart by hand.
    pub switch_keys: bool,
    /// A partner unreachable this many seconds gets its files through its association's
    /// mailbox: sealed for it, kept there until its node starts (SPEC.md §7.6).
    pub mailbox_after_secs: u64,
    /// Seconds between looks at the mailboxes: for this office's own mail, and for what became
    /// of files it left in partners' mailboxes.
    pub mailbox_poll_secs: u64,
    /// Whether partners can dial this office (SPEC.md §7.4): `auto` (the default) asks the
    /// directory nodes to dial back and holds a relay slot on its region's directory nodes
    /// until they succeed; `private` always holds one (behind a router that forwards
    /// nothing); `public` never does (a forwarded port, listed with `--advertise`).
    pub reachability: crate::net::Reachability,
    /// The port of the office's status page and local API, on 127.0.0.1 only
    /// (`http://127.0.0.1:4780/`); 0: no page and no API.
    pub ui_port: u16,
    /// Seconds between writes of `state/status.json` (what `renkei status` shows).
    pub status_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            office: String::new(),
            name: String::new(),
            kinds: Vec::new(),
            listen: vec![
                "/ip4/0.0.0.0/tcp/4701".into(),
                "/ip4/0.0.0.0/udp/4701/quic-v1".into(),
            ],
            anchor: "anchor.json".into(),
            directory_nodes: Vec::new(),
            directory_refresh_secs: 300,
            rescan_secs: 5,
            settle_ms: 1000,
            retry_initial_ms: 500,
            retry_max_secs: 300,
            max_age_days: 60,
            max_clock_skew_secs: 86400,
            max_file_mb: 256,
            io_timeout_secs: 30,
            max_partial_mb: 512,
            sent_keep_days: 90,
            expiry_warning_hours: 48,
            switch_keys: true,
            mailbox_after_secs: 120,
            mailbox_poll_secs: 60,
            reachability: crate::net::Reachability::Auto,
            ui_port: 4780,
            status_secs: 2,
        }
    }
}

/// One generation of an office's keys.
#[derive(Clone)]
pub struct KeyPair {
    /// Ed25519: identity, PeerId, signatures.
    pub identity: SigningKey,
    /// X25519: envelopes are sealed to it.
    pub encryption: StaticSecret,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "KeyPair({})",
            hex::encode(self.identity.verifying_key().as_bytes())
        )
    }
}

/// Paths inside a home folder.
#[derive(Clone, Debug)]
pub struct Home {
    /// The home folder.
    pub root: PathBuf,
}

impl Home {
    /// A home at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Home {
        Home { root: root.into() }
    }

    /// A home made by `renkei init`, for commands that read one: a mistyped path must not
    /// read as "no receipts".
    pub fn existing(root: impl Into<PathBuf>) -> anyhow::Result<Home> {
        let home = Home::new(root);
        anyhow::ensure!(
            home.root.join("renkei.toml").is_file(),
            "{} は renkei のホームフォルダではありません（renkei.toml がありません）。--home を確かめてください / {} is not a renkei home (no renkei.toml): check --home",
            home.root.display(),
            home.root.display()
        );
        Ok(home)
    }

    /// `H/renkei.toml`
    pub fn config_path(&self) -> PathBuf {
        self.root.join("renkei.toml")
    }
    /// `H/outbox`
    pub fn outbox(&self) -> PathBuf {
        self.root.join("outbox")
    }
    /// `H/inbox`
    pub fn inbox(&self) -> PathBuf {
        self.root.join("inbox")
    }
    /// `H/inbox/.partial` (files being received; never imported).
    pub fn partial(&self) -> PathBuf {
        self.root.join("inbox").join(".partial")
    }
    /// The partial file of `sender`'s message `id` (one per message: SPEC.md §7.3).
    pub fn partial_file(
        &self,
        sender: &renkei_protocol::OfficeNumber,
        id: &renkei_protocol::envelope::MessageId,
    ) -> PathBuf {
        self.partial().join(format!("{sender}-{id}.part"))
    }
    /// `H/sent`
    pub fn sent(&self) -> PathBuf {
        self.root.join("sent")
    }
    /// `H/rejected`
    pub fn rejected(&self) -> PathBuf {
        self.root.join("rejected")
    }
    /// `H/state`
    pub fn state(&self) -> PathBuf {
        self.root.join("state")
    }
    /// `H/keys`
    pub fn keys(&self) -> PathBuf {
        self.root.join("keys")
    }
    /// `H/receipts.jsonl`
    pub fn receipts(&self) -> PathBuf {
        self.root.join("receipts.jsonl")
    }
    /// `H/statements.jsonl`: the mailboxes' signed deletion statements (SPEC.md §7.6.4).
    pub fn statements(&self) -> PathBuf {
        self.root.join("statements.jsonl")
    }
    /// `H/imported.jsonl`: signed "imported" statements (SPEC.md §8.2).
    pub fn imported(&self) -> PathBuf {
        self.root.join("imported.jsonl")
    }
    /// `H/inbox/imported`: files moved here count as imported by the care software. Not made
    /// by the node (care software reading `inbox/` sees no new folder there): the office or its
    /// software makes it to use it.
    pub fn imported_folder(&self) -> PathBuf {
        self.inbox().join("imported")
    }
    /// `H/state/api-token`: the local API's bearer token (0600).
    pub fn api_token(&self) -> PathBuf {
        self.state().join("api-token")
    }
    /// `H/state/status.json`
    pub fn status(&self) -> PathBuf {
        self.state().join("status.json")
    }
    /// `H/state/directory`
    pub fn directory_cache(&self) -> PathBuf {
        self.state().join("directory")
    }

    /// Creates the folders.
    pub fn create_dirs(&self) -> anyhow::Result<()> {
        for d in [
            self.outbox(),
            self.inbox(),
            self.partial(),
            self.sent(),
            self.rejected(),
            self.state(),
            self.directory_cache(),
        ] {
            fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        }
        create_private_dir(&self.keys())?;
        // Unfinished received files: nobody but the node reads them.
        create_private_dir(&self.partial())?;
        Ok(())
    }

    /// Reads the configuration.
    pub fn config(&self) -> anyhow::Result<Config> {
        let p = self.config_path();
        let text = fs::read_to_string(&p).with_context(|| {
            format!("設定ファイル {} を読めません。renkei init で作成してください。/ Cannot read {}: create it with `renkei init`.", p.display(), p.display())
        })?;
        let c: Config = toml::from_str(&text).with_context(|| {
            format!(
                "設定ファイル {} の書式が正しくありません。/ {} is not valid configuration.",
                p.display(),
                p.display()
            )
        })?;
        if OfficeNumber::parse(&c.office).is_none() {
            bail!(
                "設定の office は10桁の事業所番号にしてください。/ `office` in {} must be the 10-digit office number.",
                p.display()
            );
        }
        Ok(c)
    }

    /// Writes the configuration atomically.
    pub fn write_config(&self, c: &Config) -> anyhow::Result<()> {
        write_atomic(
            &self.config_path(),
            toml::to_string_pretty(c)?.as_bytes(),
            false,
        )
    }

    /// Loads every key generation, newest first.
    pub fn load_keys(&self) -> anyhow::Result<Vec<KeyPair>> {
        let mut out = Vec::new();
        for generation in 0.. {
            let suffix = if generation == 0 {
                String::new()
            } else {
                format!(".{generation}")
            };
            let id = self.keys().join(format!("identity.key{suffix}"));
            if !id.exists() {
                break;
            }
            let identity = SigningKey::from_bytes(&read_key(&id)?);
            let encryption = StaticSecret::from(read_key(
                &self.keys().join(format!("encryption.key{suffix}")),
            )?);
            out.push(KeyPair {
                identity,
                encryption,
            });
        }
        if out.is_empty() && self.keys().join("identity.key.1").exists() {
            bail!(
                "{} に現在の鍵（identity.key）がなく、古い世代だけがあります。鍵の更新が途中で止まった可能性があります。新しい鍵は作らず、管理者に連絡してください（identity.key.N と encryption.key.N の番号をそろえて戻します）。/ {} holds older key generations but no current identity.key: a key rotation may have been interrupted. Do not make new keys; ask your administrator to rename the newest identity.key.N and encryption.key.N pair back.",
                self.keys().display(),
                self.keys().display()
            );
        }
        if out.is_empty() {
            bail!(
                "鍵ファイルがありません（{}）。renkei init で作成してください。/ No keys in {}: create them with `renkei init`.",
                self.keys().display(),
                self.keys().display()
            );
        }
        Ok(out)
    }

    /// Writes a new key generation (the current one moves to `.1`, and so on).
    pub fn write_new_keys(&self, keys: &KeyPair) -> anyhow::Result<()> {
        create_private_dir(&self.keys())?;
        let mut n = 0;
        while self
            .keys()
            .join(format!(
                "identity.key{}",
                if n == 0 {
                    String::new()
                } else {
                    format!(".{n}")
                }
            ))
            .exists()
        {
            n += 1;
        }
        for g in (0..n).rev() {
            for base in ["identity.key", "encryption.key"] {
                let from = self.keys().join(if g == 0 {
                    base.to_string()
                } else {
                    format!("{base}.{g}")
                });
                fs::rename(&from, self.keys().join(format!("{base}.{}", g + 1)))?;
            }
        }
        sync_dir(&self.keys())?;
        write_atomic(
            &self.keys().join("identity.key"),
            format!("{}\n", hex::encode(keys.identity.to_bytes())).as_bytes(),
            true,
        )?;
        write_atomic(
            &self.keys().join("encryption.key"),
            format!("{}\n", hex::encode(keys.encryption.to_bytes())).as_bytes(),
            true,
        )?;
        Ok(())
    }
}

/// The service kinds and office number of a config, parsed.
pub fn parse_office(c: &Config) -> anyhow::Result<(OfficeNumber, Vec<ServiceKind>)> {
    let office = OfficeNumber::parse(&c.office).context("office must be 10 digits")?;
    let kinds = c
        .kinds
        .iter()
        .map(|k| ServiceKind::parse(k).with_context(|| format!("bad service kind {k}")))
        .collect::<anyhow::Result<_>>()?;
    Ok((office, kinds))
}

fn read_key(p: &Path) -> anyhow::Result<[u8; 32]> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(p)?.permissions().mode();
        if mode & 0o077 != 0 {
            bail!(
                "鍵ファイル {} が他のユーザーから読めます。chmod 600 {} を実行してください。/ Key file {} is readable by others: run chmod 600 on it.",
                p.display(),
                p.display(),
                p.display()
            );
        }
    }
    let text = fs::read_to_string(p).with_context(|| format!("reading key {}", p.display()))?;
    let mut out = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut out)
        .with_context(|| format!("key file {} is damaged", p.display()))?;
    Ok(out)
}

/// Creates a folder readable by the owner only.
pub fn create_private_dir(p: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(p)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(p, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

pub use crate::files::{sync_dir, write_atomic};

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(n: u8) -> KeyPair {
        KeyPair {
            identity: SigningKey::from_bytes(&[n; 32]),
            encryption: StaticSecret::from([n; 32]),
        }
    }

    #[test]
    fn an_interrupted_key_rotation_is_named_and_no_new_keys_are_suggested() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path());
        home.write_new_keys(&pair(1)).unwrap();
        home.write_new_keys(&pair(2)).unwrap();
        assert_eq!(home.load_keys().unwrap().len(), 2);
        // The next rotation's renames, cut by a power loss before `encryption.key` moved.
        for (from, to) in [
            ("identity.key.1", "identity.key.2"),
            ("encryption.key.1", "encryption.key.2"),
            ("identity.key", "identity.key.1"),
        ] {
            fs::rename(home.keys().join(from), home.keys().join(to)).unwrap();
        }
        let e = home.load_keys().unwrap_err().to_string();
        assert!(
            e.contains("interrupted") && !e.contains("renkei init"),
            "{e}"
        );
    }
}
