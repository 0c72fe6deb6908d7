//! renkei's signed office directory (SPEC.md §6).
//!
//! What this crate does:
//! - the trust chain: an [`Anchor`] (the federation's root keys) certifies region authorities
//!   ([`RegionCert`]), each scoped to the prefecture codes it may vouch for;
//! - region snapshots ([`Snapshot`]) signed once over a digest of all their entries, so a
//!   national directory verifies in one signature and one hash pass, and deltas ([`Delta`]);
//! - the verified view an office keeps ([`Directory`]): rollback and equivocation refused,
//!   expiry warned about but not fatal, revocation and key rotation applied;
//! - the authority's side ([`RegionWorkspace`]): approve enrollment requests, revoke, rotate
//!   keys, publish the next snapshot and delta.
//!
//! What it does not do: networking, or file I/O beyond the unnamed scratch files a
//! [`Directory::on_disk`] keeps its entries in. The node crate serves and fetches the bytes.
//!
//! ```
//! use renkei_directory::{Anchor, Directory};
//! let anchor = Anchor::from_json(r#"{"format":"renkei-anchor/1","federation":"demo",
//!   "roots":["d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"]}"#).unwrap();
//! let dir = Directory::new(anchor);
//! assert_eq!(dir.regions().count(), 0);
//! ```

#![forbid(unsafe_code)]

mod authority;
mod encoding;
mod enroll;
mod entry;
mod snapshot;
mod table;
mod trust;
mod view;

pub use authority::{RegionWorkspace, WorkspaceError};
pub use encoding::{hexbytes, hexlist};
pub use enroll::{ENROLL_FORMAT, EnrollmentRequest, RotationRequest};
pub use entry::{
    Entry, MAX_ADDRESS_BYTES, MAX_ADDRESSES, MAX_KINDS, MAX_MAILBOXES, MAX_NAME_BYTES, NodeInfo,
    OfficeKey, Status,
};
pub use snapshot::{Delta, Snapshot, SnapshotHeader, entries_digest, file_id};
pub use table::EntryTable;
pub use trust::{ANCHOR_FORMAT, Anchor, MAX_REGION_ID, RegionCert};
pub use view::{Applied, Directory, Freshness, RegionState};

use renkei_protocol::OfficeNumber;

/// Why directory data was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirectoryError {
    /// Not a renkei directory file of a known format version.
    #[error("unknown format (not a renkei directory file of a supported version)")]
    UnknownFormat,
    /// The bytes break the layout.
    #[error("malformed: {0}")]
    Malformed(&'static str),
    /// The region certificate is signed by a key the anchor does not list.
    #[error("region certificate is not signed by a root in the anchor")]
    UnknownRoot,
    /// The region certificate's signature does not verify.
    #[error("bad region certificate signature")]
    BadCertSignature,
    /// The region certificate did not cover the snapshot's issue time.
    #[error("region certificate not valid when the snapshot was issued")]
    CertNotValid,
    /// The snapshot or delta signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// The entries do not match the signed digest (a forged, dropped or altered entry).
    #[error("entries do not match the signed digest (forged or altered entry)")]
    DigestMismatch,
    /// An entry outside the region's prefectures.
    #[error("office {office} is outside the scope of region {region}")]
    OutOfScope {
        /// The office.
        office: OfficeNumber,
        /// The region that tried to vouch for it.
        region: String,
    },
    /// An older sequence number than one already seen.
    #[error("rollback: region {region} is at sequence {have}, got {got}")]
    Rollback {
        /// The region.
        region: String,
        /// The sequence number already seen.
        have: u64,
        /// The sequence number offered.
        got: u64,
    },
    /// The same sequence number with different content.
    #[error("equivocation: region {region} sequence {seq} seen with different content")]
    Equivocation {
        /// The region.
        region: String,
        /// The sequence number.
        seq: u64,
    },
    /// The snapshot is past its expiry.
    #[error("expired at {expires_at} (unix seconds)")]
    Expired {
        /// Unix seconds.
        expires_at: u64,
    },
    /// A delta that does not start where our copy of the region is.
    #[error("delta does not apply: region is at {have}, delta starts at {from}")]
    DeltaBase {
        /// Our sequence number.
        have: u64,
        /// The delta's starting sequence number.
        from: u64,
    },
    /// A delta for a region we hold no snapshot of.
    #[error("no snapshot of region {0} to apply the delta to")]
    UnknownRegion(String),
    /// Two regions claim the same office.
    #[error("office {0} is claimed by two regions")]
    Conflict(OfficeNumber),
    /// The scratch file that holds verified entries could not be written or read.
    #[error("cannot keep the directory's entries on disk: {0}")]
    Storage(String),
}
