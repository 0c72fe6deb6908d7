//! The renkei office node and the one `renkei` command.
//!
//! An office runs [`node::run`] in the background. It watches `outbox/`, checks each file
//! against the standard (`renkei-protocol`), seals it for the recipient found in the signed
//! directory (`renkei-directory`), delivers it directly over libp2p, and once the recipient's
//! signed ack is in keeps its receipt (and, for `sent_keep_days`, a copy in `sent/`). Received files are checked again and written
//! durably to `inbox/` before the ack goes back. See SPEC.md §7–§8 and README.md.
//!
//! What it does not do: hold care data for anyone else, or keep plaintext or sealed copies
//! in its state after acknowledgement.
//!
//! How it is put together, one way down:
//! - the delivery logic itself is `renkei_protocol::session` (no I/O, no clock);
//! - [`env`] gives a node its clock, random source and fault points (the only module that reads
//!   the wall clock), [`files`] the file discipline (regular files only, atomic and durable
//!   writes, owner-only permissions), [`net`] the libp2p transport (sockets or memory, one gate);
//! - `state` is what a node's tasks share; the outbox scan, the sender, the receiver and
//!   [`status`] work on it and never import start-up code;
//! - [`node`] starts a node and runs its task loops; [`dirserve`] is the directory node,
//!   [`dirsync`] the directory client;
//! - [`federation`] builds whole federations (anchor, regions, directory nodes, offices) for the
//!   demo, the tests, the benches and the lab, on loopback or in memory, on any clock.

#![forbid(unsafe_code)]

pub mod admin;
pub mod clock;
pub mod demo;
pub mod dirserve;
pub mod dirsync;
pub mod env;
pub mod federation;
pub mod files;
pub mod frames;
pub mod home;
pub mod imported;
pub mod inbox;
pub mod lab;
pub mod mailbox;
mod mailclient;
pub mod net;
pub mod node;
mod outbox;
pub mod progress;
pub mod receipts;
mod receive;
pub mod reconcile;
pub mod samples;
mod send;
pub mod service;
mod state;
pub mod status;
pub mod store;
pub mod web;

pub use outbox::{check_files, check_path, report_name};

/// The tokio runtime a command runs on in the foreground (`run`, `demo`, `directory serve`).
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// `<parent>/.scratch`, where a directory keeps its entries in unnamed files, made and checked
/// to be writable (a node that cannot keep its directory must not start: it would admit no
/// one).
pub fn scratch_folder(parent: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    let dir = parent.join(".scratch");
    std::fs::create_dir_all(&dir)
        .and_then(|()| tempfile::tempfile_in(&dir).map(drop))
        .map_err(|e| {
            anyhow::anyhow!(
                "作業用フォルダ {} に書き込めません。ディスクの空きと権限を確認してください。/ Cannot write to the scratch folder {}: check free disk space and permissions. ({e})",
                dir.display(),
                dir.display()
            )
        })?;
    Ok(dir)
}
