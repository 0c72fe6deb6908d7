//! The region authority's working state: what an association operator edits before publishing.

use std::collections::BTreeMap;

use ed25519_dalek::SigningKey;
use renkei_protocol::OfficeNumber;
use serde::{Deserialize, Serialize};

use crate::DirectoryError;
use crate::enroll::{EnrollmentRequest, RotationRequest};
use crate::entry::{Entry, MAX_MAILBOXES, NodeInfo, OfficeKey, Status};
use crate::snapshot::{Delta, Snapshot, entries_digest};
use crate::trust::RegionCert;

/// Why an operator action was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkspaceError {
    /// The request itself is invalid.
    #[error(transparent)]
    Invalid(#[from] DirectoryError),
    /// The office is outside the region's prefectures.
    #[error("office {0} is outside this region's prefectures")]
    OutOfScope(OfficeNumber),
    /// No such office in the region.
    #[error("office {0} is not in this region")]
    NotFound(OfficeNumber),
    /// The office is enrolled already with other keys.
    #[error("office {0} is enrolled already with another key; use key rotation")]
    AlreadyEnrolled(OfficeNumber),
    /// A rotation request signed by a key that is not the office's current key.
    #[error("rotation is not signed by the office's current key")]
    NotCurrentKey,
}

/// The authority's editable copy of its region, saved as JSON next to its key.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RegionWorkspace {
    /// The region's certificate from the root.
    pub cert: RegionCert,
    /// The last published sequence number (0 before the first).
    pub seq: u64,
    /// How long a snapshot stays fresh, in seconds.
    pub validity_secs: u64,
    /// How long a rotated-out key stays valid after the new one starts, in seconds.
    pub overlap_secs: u64,
    /// The region's directory nodes.
    pub nodes: Vec<NodeInfo>,
    /// The entries being edited.
    pub entries: BTreeMap<OfficeNumber, Entry>,
    /// The entries as last published (the base of the next delta).
    pub published: BTreeMap<OfficeNumber, Entry>,
}

/// How long an office key is valid when enrolled: ten years; rotation shortens it.
const KEY_LIFETIME: u64 = 10 * 365 * 86400;

/// An approved office's first key is valid from this long before the approval (or its
/// request), so that partners whose clocks run up to a day slow — the clock error renkei
/// tolerates (SPEC.md §4.6) — accept it from the start.
const ENROLLED_KEY_BACKDATE: u64 = 86400;

impl RegionWorkspace {
    /// A new, empty region.
    pub fn new(cert: RegionCert) -> RegionWorkspace {
        RegionWorkspace {
            cert,
            seq: 0,
            validity_secs: 7 * 86400,
            overlap_secs: 14 * 86400,
            nodes: Vec::new(),
            entries: BTreeMap::new(),
            published: BTreeMap::new(),
        }
    }

    /// Approves an enrollment request: the office becomes an active member at the next publish.
    pub fn approve(&mut self, req: &EnrollmentRequest, now: u64) -> Result<(), WorkspaceError> {
        req.verify()?;
        if !self.cert.covers(&req.office) {
            return Err(WorkspaceError::OutOfScope(req.office));
        }
        if let Some(e) = self.entries.get(&req.office)
            && e.is_active()
            && !e.keys.iter().any(|k| k.identity == req.identity)
        {
            return Err(WorkspaceError::AlreadyEnrolled(req.office));
        }
        // Re-enrolling keeps the mailboxes the operator named.
        let mailboxes = self
            .entries
            .get(&req.office)
            .map(|e| e.mailboxes.clone())
            .unwrap_or_default();
        self.entries.insert(
            req.office,
            Entry {
                office: req.office,
                name: req.name.clone(),
                kinds: req.kinds.clone(),
                keys: vec![OfficeKey {
                    identity: req.identity,
                    encryption: req.encryption,
                    valid_from: now
                        .min(req.created_at)
                        .saturating_sub(ENROLLED_KEY_BACKDATE),
                    valid_until: now + KEY_LIFETIME,
                }],
                addresses: req.addresses.clone(),
                status: Status::Active,
                mailboxes,
            },
        );
        Ok(())
    }

    /// Revokes an office: from the next snapshot on it can neither send nor receive.
    pub fn revoke(&mut self, office: &OfficeNumber) -> Result<(), WorkspaceError> {
        let e = self
            .entries
            .get_mut(office)
            .ok_or(WorkspaceError::NotFound(*office))?;
        e.status = Status::Revoked;
        Ok(())
    }

    /// Applies a key rotation: the new key is added, and the current key stays valid until
    /// `overlap_secs` after the new one starts, so partners never see the office disappear.
    pub fn rotate(&mut self, req: &RotationRequest) -> Result<(), WorkspaceError> {
        req.verify()?;
        let overlap = self.overlap_secs;
        let e = self
            .entries
            .get_mut(&req.office)
            .ok_or(WorkspaceError::NotFound(req.office))?;
        // Only the newest key may hand over: a key already rotated out (perhaps because it
        // leaked) must not be able to rotate the office to a key of its choosing in the overlap.
        let old = e
            .keys
            .last_mut()
            .filter(|k| k.identity == req.old_identity)
            .ok_or(WorkspaceError::NotCurrentKey)?;
        old.valid_until = old
            .valid_until
            .min(req.new_key.valid_from.saturating_add(overlap));
        let mut new_key = req.new_key.clone();
        new_key.valid_until = new_key
            .valid_until
            .min(new_key.valid_from.saturating_add(KEY_LIFETIME));
        e.keys.push(new_key);
        Ok(())
    }

    /// Sets an office's addresses.
    pub fn set_addresses(
        &mut self,
        office: &OfficeNumber,
        addresses: Vec<String>,
    ) -> Result<(), WorkspaceError> {
        let e = self
            .entries
            .get_mut(office)
            .ok_or(WorkspaceError::NotFound(*office))?;
        e.addresses = addresses;
        Ok(())
    }

    /// Names the directory nodes that keep an office's mail (by their keys, in the order senders
    /// try them); an empty list means its region's directory nodes again. At most
    /// [`MAX_MAILBOXES`], each once. A node need not be this region's: an office near a region
    /// border may use a neighbour's. Naming any makes the next publish a format 2 file, which
    /// nodes older than format 2 cannot read (SPEC.md §6.3).
    pub fn set_mailboxes(
        &mut self,
        office: &OfficeNumber,
        mailboxes: Vec<[u8; 32]>,
    ) -> Result<(), WorkspaceError> {
        if mailboxes.len() > MAX_MAILBOXES {
            return Err(WorkspaceError::Invalid(DirectoryError::Malformed(
                "more than 4 mailbox nodes",
            )));
        }
        if mailboxes
            .iter()
            .enumerate()
            .any(|(i, m)| mailboxes[..i].contains(m))
        {
            return Err(WorkspaceError::Invalid(DirectoryError::Malformed(
                "a mailbox node named twice",
            )));
        }
        let e = self
            .entries
            .get_mut(office)
            .ok_or(WorkspaceError::NotFound(*office))?;
        e.mailboxes = mailboxes;
        Ok(())
    }

    /// Publishes the next sequence number: returns the snapshot file and, after the first
    /// publish, the delta from the previous one. Keys whose window ended are dropped.
    pub fn publish(&mut self, key: &SigningKey, now: u64) -> (u64, Vec<u8>, Option<Vec<u8>>) {
        // Keys past their window are dropped, but an entry always keeps its newest key.
        for e in self.entries.values_mut() {
            let newest = e.keys.iter().map(|k| k.valid_from).max();
            e.keys
                .retain(|k| k.valid_until >= now || Some(k.valid_from) == newest);
        }
        let from = self.seq;
        self.seq += 1;
        let entries: Vec<Entry> = self.entries.values().cloned().collect();
        let expires = now + self.validity_secs;
        let snapshot = Snapshot::build(
            &self.cert,
            key,
            self.seq,
            now,
            expires,
            &self.nodes,
            &entries,
        );
        let delta = (from > 0).then(|| {
            let upserts: Vec<Entry> = self
                .entries
                .values()
                .filter(|e| self.published.get(&e.office) != Some(e))
                .cloned()
                .collect();
            let removals: Vec<OfficeNumber> = self
                .published
                .keys()
                .filter(|o| !self.entries.contains_key(o))
                .copied()
                .collect();
            Delta {
                cert: self.cert.clone(),
                from_seq: from,
                to_seq: self.seq,
                issued_at: now,
                expires_at: expires,
                nodes: self.nodes.clone(),
                base_digest: entries_digest(self.published.values()),
                result_digest: entries_digest(&entries),
                upserts,
                removals,
                signature: [0; 64],
            }
            .sign(key)
        });
        self.published = self.entries.clone();
        (self.seq, snapshot, delta)
    }
}
