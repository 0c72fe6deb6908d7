//! The verified directory an office (or a directory node) keeps.

use std::collections::{BTreeMap, HashMap};

use renkei_protocol::OfficeNumber;

use crate::DirectoryError;
use crate::model::{
    Anchor, Delta, Entry, NodeInfo, RegionCert, Snapshot, check_entries, entries_digest,
};

/// One region as last verified.
#[derive(Clone, Debug)]
pub struct RegionState {
    /// The region's certificate.
    pub cert: RegionCert,
    /// Sequence number.
    pub seq: u64,
    /// Unix seconds.
    pub issued_at: u64,
    /// Unix seconds.
    pub expires_at: u64,
    /// The region's directory nodes.
    pub nodes: Vec<NodeInfo>,
    /// [`entries_digest`] of `entries`.
    pub digest: [u8; 32],
    /// Entries by office number.
    pub entries: BTreeMap<OfficeNumber, Entry>,
}

/// What applying a snapshot or delta did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The region moved to this sequence number.
    Updated {
        /// Region id.
        region: String,
        /// New sequence number.
        seq: u64,
    },
    /// We already had exactly this.
    Unchanged,
}

/// How fresh a region's data is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freshness {
    /// Before expiry, with more than the warning window left.
    Fresh,
    /// Expires within the warning window: fetch a newer snapshot.
    ExpiringSoon,
    /// Past expiry: still used, with a visible warning (SPEC.md §6.5).
    Expired,
}

/// The verified national directory: every region's latest verified state.
#[derive(Clone, Debug)]
pub struct Directory {
    anchor: Anchor,
    regions: BTreeMap<String, RegionState>,
    /// Highest sequence number ever accepted per region (kept across restarts by the caller).
    floors: BTreeMap<String, u64>,
    /// Identity key → office, for the connection gate.
    by_key: HashMap<[u8; 32], OfficeNumber>,
    /// Whether two offices list the same identity key; then the index is rebuilt whole on each
    /// change (the last region in id order wins), else kept up to date region by region.
    shared_keys: bool,
}

impl Directory {
    /// An empty directory trusting `anchor`.
    pub fn new(anchor: Anchor) -> Directory {
        Directory {
            anchor,
            regions: BTreeMap::new(),
            floors: BTreeMap::new(),
            by_key: HashMap::new(),
            shared_keys: false,
        }
    }

    /// The anchor.
    pub fn anchor(&self) -> &Anchor {
        &self.anchor
    }

    /// Sets the rollback floor of a region: snapshots below `seq` are refused from now on.
    pub fn set_floor(&mut self, region: &str, seq: u64) {
        let f = self.floors.entry(region.to_string()).or_default();
        *f = (*f).max(seq);
    }

    /// The rollback floors (region → highest sequence number accepted).
    pub fn floors(&self) -> &BTreeMap<String, u64> {
        &self.floors
    }

    /// The verified regions.
    pub fn regions(&self) -> impl Iterator<Item = &RegionState> {
        self.regions.values()
    }

    /// One verified region.
    pub fn region(&self, id: &str) -> Option<&RegionState> {
        self.regions.get(id)
    }

    /// Verifies a snapshot against the anchor without applying it. Returns it parsed.
    pub fn verify_snapshot(anchor: &Anchor, bytes: &[u8]) -> Result<Snapshot, DirectoryError> {
        let snap = Snapshot::parse(bytes)?;
        let key = snap.header.cert.verify(anchor, snap.header.issued_at)?;
        snap.verify_body(&key)?;
        if snap.header.expires_at < snap.header.issued_at {
            return Err(DirectoryError::Malformed("expiry before issue time"));
        }
        Ok(snap)
    }

    /// Verifies and applies a region snapshot. Refuses rollback and equivocation.
    pub fn apply_snapshot(&mut self, bytes: &[u8]) -> Result<Applied, DirectoryError> {
        let snap = Self::verify_snapshot(&self.anchor, bytes)?;
        let h = &snap.header;
        let region = h.cert.region.clone();
        let floor = self.floors.get(&region).copied().unwrap_or(0);
        let have = self.regions.get(&region).map(|r| (r.seq, r.digest));
        match have {
            Some((seq, digest)) if seq == h.seq && digest == h.entries_digest => {
                return Ok(Applied::Unchanged);
            }
            Some((seq, _)) if seq == h.seq => {
                return Err(DirectoryError::Equivocation { region, seq });
            }
            _ => {}
        }
        let have_seq = have.map(|h| h.0).unwrap_or(0).max(floor);
        if h.seq < have_seq {
            return Err(DirectoryError::Rollback {
                region,
                have: have_seq,
                got: h.seq,
            });
        }
        let entries: BTreeMap<_, _> = snap.entries.into_iter().map(|e| (e.office, e)).collect();
        let state = RegionState {
            cert: h.cert.clone(),
            seq: h.seq,
            issued_at: h.issued_at,
            expires_at: h.expires_at,
            nodes: h.nodes.clone(),
            digest: h.entries_digest,
            entries,
        };
        self.install(state)
    }

    /// Verifies and applies a delta to the region it names.
    pub fn apply_delta(&mut self, bytes: &[u8]) -> Result<Applied, DirectoryError> {
        let delta = Delta::parse(bytes)?;
        let key = delta.cert.verify(&self.anchor, delta.issued_at)?;
        delta.verify_signature(&key)?;
        if delta.expires_at < delta.issued_at {
            return Err(DirectoryError::Malformed("expiry before issue time"));
        }
        let region = delta.cert.region.clone();
        let current = self
            .regions
            .get(&region)
            .ok_or_else(|| DirectoryError::UnknownRegion(region.clone()))?;
        // The floor matters here too: after a restart from an older cached snapshot, a delta
        // must not lead to a state older than one already accepted.
        let floor = self.floors.get(&region).copied().unwrap_or(0);
        if delta.to_seq <= current.seq || delta.to_seq < floor {
            if delta.to_seq == current.seq && delta.result_digest == current.digest {
                return Ok(Applied::Unchanged);
            }
            if delta.to_seq == current.seq {
                return Err(DirectoryError::Equivocation {
                    region,
                    seq: delta.to_seq,
                });
            }
            return Err(DirectoryError::Rollback {
                region,
                have: current.seq.max(floor),
                got: delta.to_seq,
            });
        }
        if delta.from_seq != current.seq || delta.base_digest != current.digest {
            return Err(DirectoryError::DeltaBase {
                have: current.seq,
                from: delta.from_seq,
            });
        }
        let mut entries = current.entries.clone();
        for o in &delta.removals {
            entries.remove(o);
        }
        for e in &delta.upserts {
            entries.insert(e.office, e.clone());
        }
        let list: Vec<Entry> = entries.values().cloned().collect();
        check_entries(&delta.cert, &list)?;
        if entries_digest(&list) != delta.result_digest {
            return Err(DirectoryError::DigestMismatch);
        }
        let state = RegionState {
            cert: delta.cert,
            seq: delta.to_seq,
            issued_at: delta.issued_at,
            expires_at: delta.expires_at,
            nodes: delta.nodes,
            digest: delta.result_digest,
            entries,
        };
        self.install(state)
    }

    fn install(&mut self, state: RegionState) -> Result<Applied, DirectoryError> {
        let region = state.cert.region.clone();
        // An office may be vouched for by one region only. Every entry lies in its region's
        // prefectures, so only regions whose certificates share a prefecture can overlap.
        for (id, other) in &self.regions {
            if *id == region
                || !other
                    .cert
                    .prefectures
                    .iter()
                    .any(|p| state.cert.prefectures.contains(p))
            {
                continue;
            }
            let (few, many) = if state.entries.len() <= other.entries.len() {
                (&state.entries, &other.entries)
            } else {
                (&other.entries, &state.entries)
            };
            if let Some(o) = few.keys().find(|o| many.contains_key(o)) {
                return Err(DirectoryError::Conflict(*o));
            }
        }
        let seq = state.seq;
        let old = self.regions.insert(region.clone(), state);
        self.set_floor(&region, seq);
        self.index(&region, old);
        Ok(Applied::Updated { region, seq })
    }

    /// Updates the key index for `region`, which replaced `old`.
    fn index(&mut self, region: &str, old: Option<RegionState>) {
        if !self.shared_keys {
            for e in old.iter().flat_map(|r| r.entries.values()) {
                for k in &e.keys {
                    if self.by_key.get(&k.identity) == Some(&e.office) {
                        self.by_key.remove(&k.identity);
                    }
                }
            }
            let new = &self.regions[region];
            self.by_key.reserve(new.entries.len());
            'entries: for e in new.entries.values() {
                for k in &e.keys {
                    if let Some(prev) = self.by_key.insert(k.identity, e.office)
                        && prev != e.office
                    {
                        self.shared_keys = true;
                        break 'entries;
                    }
                }
            }
            if !self.shared_keys {
                return;
            }
        }
        self.reindex();
    }

    fn reindex(&mut self) {
        self.by_key.clear();
        self.shared_keys = false;
        for r in self.regions.values() {
            for e in r.entries.values() {
                for k in &e.keys {
                    if let Some(prev) = self.by_key.insert(k.identity, e.office)
                        && prev != e.office
                    {
                        self.shared_keys = true;
                    }
                }
            }
        }
    }

    /// Looks an office up (any status).
    pub fn lookup(&self, office: &OfficeNumber) -> Option<&Entry> {
        self.regions.values().find_map(|r| r.entries.get(office))
    }

    /// The office whose identity key this is, if it is an active member with the key valid at
    /// `now`.
    pub fn active_office_by_key(&self, key: &[u8; 32], now: u64) -> Option<&Entry> {
        let office = self.by_key.get(key)?;
        let e = self.lookup(office)?;
        (e.is_active() && e.keys_at(now).any(|k| &k.identity == key)).then_some(e)
    }

    /// Whether `key` belongs to a directory node some region lists.
    pub fn is_directory_node(&self, key: &[u8; 32]) -> bool {
        self.regions
            .values()
            .any(|r| r.nodes.iter().any(|n| &n.key == key))
    }

    /// Every directory node listed by any region.
    pub fn directory_nodes(&self) -> Vec<&NodeInfo> {
        self.regions.values().flat_map(|r| r.nodes.iter()).collect()
    }

    /// How many entries all regions hold.
    pub fn entry_count(&self) -> usize {
        self.regions.values().map(|r| r.entries.len()).sum()
    }

    /// Freshness of each region at `now`; `warn_before` seconds before expiry counts as soon.
    pub fn freshness(&self, now: u64, warn_before: u64) -> Vec<(String, u64, u64, Freshness)> {
        self.regions
            .values()
            .map(|r| {
                let f = if now > r.expires_at {
                    Freshness::Expired
                } else if r.expires_at - now <= warn_before {
                    Freshness::ExpiringSoon
                } else {
                    Freshness::Fresh
                };
                (r.cert.region.clone(), r.seq, r.expires_at, f)
            })
            .collect()
    }
}
