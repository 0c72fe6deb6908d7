//! The renkei office node and the one `renkei` command.
//!
//! An office runs [`node::run`] in the background. It watches `outbox/`, checks each file
//! against the standard (`renkei-protocol`), seals it for the recipient found in the signed
//! directory (`renkei-directory`), delivers it directly over libp2p, and keeps only a receipt
//! once the recipient's signed ack is in. Received files are checked again and written
//! durably to `inbox/` before the ack goes back. See SPEC.md §7–§8 and README.md.
//!
//! What it does not do: hold care data for anyone else, or keep plaintext or sealed copies
//! in its state after acknowledgement.

#![forbid(unsafe_code)]

pub mod admin;
pub mod demo;
pub mod dirserve;
pub mod dirsync;
pub mod frames;
pub mod home;
pub mod net;
pub mod node;
mod outbox;
pub mod receipts;
mod receive;
pub mod samples;
mod send;
pub mod store;

pub use outbox::check_path;
