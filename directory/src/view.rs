//! The verified directory an office (or a directory node) keeps.

use std::collections::BTreeMap;
use std::path::PathBuf;

use renkei_protocol::OfficeNumber;

use crate::DirectoryError;
use crate::entry::{Entry, NodeInfo};
use crate::snapshot::{Delta, Snapshot, check_format_needed};
use crate::table::{EntryTable, TableBuilder};
use crate::trust::{Anchor, RegionCert};

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
    /// [`entries_digest`](crate::entries_digest) of `entries`.
    pub digest: [u8; 32],
    /// Entries by office number.
    pub entries: EntryTable,
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
    /// Where entries are kept: `None` in memory, else scratch files in this folder.
    spill: Option<PathBuf>,
}

impl Directory {
    /// An empty directory trusting `anchor`, holding its entries in memory (about 200 bytes
    /// per office).
    pub fn new(anchor: Anchor) -> Directory {
        Directory {
            anchor,
            regions: BTreeMap::new(),
            floors: BTreeMap::new(),
            spill: None,
        }
    }

    /// An empty directory trusting `anchor`, keeping its verified entries in unnamed scratch
    /// files in `folder` (removed by the system when no longer used, also after a crash) and
    /// only their indexes in memory (about 22 bytes per office). What an office node uses.
    pub fn on_disk(anchor: Anchor, folder: impl Into<PathBuf>) -> Directory {
        Directory {
            spill: Some(folder.into()),
            ..Directory::new(anchor)
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
        // The same checks as `verify_snapshot`, made while the entries stream into a table.
        let (header, mut r) = Snapshot::parse_header(bytes)?;
        let h = &header;
        // An entry takes at least 100 bytes: the claimed count reserves no more than the bytes hold.
        let rest = r.rest().len();
        let expect = (h.entry_count as usize).min(rest / 100);
        let mut table = TableBuilder::new(&h.cert, self.spill.as_deref(), expect, rest)?;
        for _ in 0..h.entry_count {
            table.push(&Entry::decode(&mut r, h.format)?)?;
        }
        if !r.rest().is_empty() {
            return Err(DirectoryError::Malformed("trailing bytes"));
        }
        let key = h.cert.verify(&self.anchor, h.issued_at)?;
        h.verify_signature(&key)?;
        let built = table.finish()?;
        check_format_needed(h.format, built.names_mailboxes)?;
        if built.digest != h.entries_digest {
            return Err(DirectoryError::DigestMismatch);
        }
        if let Some(problem) = built.problem {
            return Err(problem);
        }
        if h.expires_at < h.issued_at {
            return Err(DirectoryError::Malformed("expiry before issue time"));
        }
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
        let state = RegionState {
            cert: h.cert.clone(),
            seq: h.seq,
            issued_at: h.issued_at,
            expires_at: h.expires_at,
            nodes: h.nodes.clone(),
            digest: h.entries_digest,
            entries: built.table,
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
        // One way to write a change: upserts and removals each in strictly ascending office
        // order, no office in both, and only offices the region holds removed. Then a delta
        // has one result, whatever the reader (SPEC.md §6.4).
        let ascending = |v: &[OfficeNumber]| v.windows(2).all(|w| w[0] < w[1]);
        let upserted: Vec<OfficeNumber> = delta.upserts.iter().map(|e| e.office).collect();
        if !ascending(&upserted) {
            return Err(DirectoryError::Malformed(
                "delta upserts not in ascending office order",
            ));
        }
        if !ascending(&delta.removals) {
            return Err(DirectoryError::Malformed(
                "delta removals not in ascending office order",
            ));
        }
        for o in &delta.removals {
            if upserted.binary_search(o).is_ok() {
                return Err(DirectoryError::Malformed(
                    "delta upserts and removes the same office",
                ));
            }
            if !current.entries.contains(o) {
                return Err(DirectoryError::Malformed(
                    "delta removes an office the region does not hold",
                ));
            }
        }
        // The region after the delta: the current entries, less the removals, with the
        // upserts (an upsert adds an office or replaces its entry). Both lists are ordered.
        let mut upserts = delta.upserts.iter().peekable();
        let mut removals = delta.removals.iter().peekable();
        let mut table = TableBuilder::new(
            &delta.cert,
            self.spill.as_deref(),
            current.entries.len(),
            current.entries.encoded_len(),
        )?;
        current.entries.for_each(|e| {
            while let Some(u) = upserts.next_if(|u| u.office < e.office) {
                table.push(u)?;
            }
            if let Some(u) = upserts.next_if(|u| u.office == e.office) {
                return table.push(u);
            }
            if removals.next_if(|o| **o == e.office).is_some() {
                return Ok(());
            }
            table.push(&e)
        })?;
        for u in upserts {
            table.push(u)?;
        }
        let built = table.finish()?;
        if let Some(problem) = built.problem {
            return Err(problem);
        }
        if built.digest != delta.result_digest {
            return Err(DirectoryError::DigestMismatch);
        }
        let entries = built.table;
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
            if let Some(o) = few.offices().iter().find(|o| many.contains(o)) {
                return Err(DirectoryError::Conflict(*o));
            }
        }
        let seq = state.seq;
        self.regions.insert(region.clone(), state);
        self.set_floor(&region, seq);
        Ok(Applied::Updated { region, seq })
    }

    /// Looks an office up (any status).
    ///
    /// An error only when entries kept on disk cannot be read: try again later.
    pub fn lookup(&self, office: &OfficeNumber) -> Result<Option<Entry>, DirectoryError> {
        for r in self.regions.values() {
            if let Some(e) = r.entries.get(office)? {
                return Ok(Some(e));
            }
        }
        Ok(None)
    }

    /// The office whose identity key this is, if it is an active member with the key valid at
    /// `now`.
    /// (Should two offices list one key, the first active one with the key valid at `now`, in
    /// region and office order.)
    ///
    /// An error only when entries kept on disk cannot be read: refuse for now.
    pub fn active_office_by_key(
        &self,
        key: &[u8; 32],
        now: u64,
    ) -> Result<Option<Entry>, DirectoryError> {
        for r in self.regions.values() {
            let found = r
                .entries
                .with_key(key)?
                .into_iter()
                .find(|e| e.is_active() && e.keys_at(now).any(|k| &k.identity == key));
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
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
