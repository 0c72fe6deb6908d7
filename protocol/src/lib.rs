//! renkei's wire formats and checks, with no I/O of their own.
//!
//! What this crate does:
//! - parses and builds standard-spec file names ([`name`], SPEC.md §2);
//! - checks care-plan CSV files against the ケアプラン標準仕様 ([`check`], SPEC.md §3);
//! - seals a file for one recipient office and opens it ([`envelope`], SPEC.md §4);
//! - builds and verifies the recipient's signed acknowledgement ([`ack`], SPEC.md §5);
//! - frames delivery streams and refusals ([`frames`], SPEC.md §7.1);
//! - builds and verifies the recipient's signed "imported" statement ([`imported`], SPEC.md §8.3);
//! - compares a month's 予定 with its 実績 ([`reconcile`], 予定・実績の突合);
//! - runs both ends of a delivery as state machines, and the sender's retry schedule
//!   ([`session`], SPEC.md §7.2–§7.3): frames and the time in, answers and actions out.
//!
//! What it deliberately does not do: open files or sockets, read clocks or draw randomness.
//! Bytes, times and random number generators are passed in, so the node, the tests, the
//! fuzzers and the lab all drive the same code.

#![forbid(unsafe_code)]

pub mod check;
pub mod name;

pub use check::{
    CheckReport, Checked, Checker, ErrorCode, Finding, ImageEnds, RecordChecker, check_bytes,
    check_image, finding,
};
pub use name::{
    Endpoint, FileKind, FileName, NameError, OfficeNumber, ServiceKind, Stamp, YearMonth, shown,
};
pub mod ack;
pub mod envelope;
pub mod frames;
pub mod imported;
pub mod reconcile;
pub mod session;
mod signed;
pub mod statement;
pub mod wire;

pub use wire::sha256;
