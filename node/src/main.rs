//! `renkei`: the one command of renkei. See `renkei --help` and README.md.
//!
//! A table of commands: the flags are defined in `cli.rs`, and each command's work lives in
//! the library next to what it works on.

#![forbid(unsafe_code)]

mod cli;

use std::process::ExitCode;

use clap::Parser;
use renkei_node::{admin, demo, dirserve, dirsync, node, receipts, reconcile, service, status};

use crate::cli::{Cli, Cmd, DirCmd, LabCmd};

/// A faster allocator than the system's for many small, short-lived allocations (the lab's
/// thousands of nodes in one process; BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The lab's thousands of nodes meet its faults on purpose: only errors by default.
    let default_log = match cli.cmd {
        Cmd::Lab(_) => "error",
        _ => "renkei_node=info,warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RENKEI_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_log)),
        )
        .with_writer(std::io::stderr)
        // Colours only on a terminal: a service manager's log file gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(cli.cmd) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("renkei: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cmd: Cmd) -> anyhow::Result<ExitCode> {
    match cmd {
        Cmd::Check { json, files } => renkei_node::check_files(json, &files),
        Cmd::Reconcile {
            home,
            month,
            json,
            csv,
            utf8,
            english,
            all,
            paths,
        } => reconcile::command(reconcile::Options {
            home,
            month,
            json,
            csv,
            csv_utf8: utf8,
            english,
            all,
            paths,
        }),
        Cmd::Init {
            home,
            office,
            name,
            kinds,
            listen,
            advertise,
            directory_nodes,
            anchor,
        } => admin::init_command(
            home,
            &admin::OfficeSetup::from_args(
                &office,
                name,
                &kinds,
                listen,
                advertise,
                directory_nodes,
                anchor,
            )?,
        ),
        Cmd::Run { home } => node::run_command(home),
        Cmd::Status { home, json } => status::show(&home, json),
        Cmd::Receipts { home, json } => receipts::show(&home, json),
        Cmd::RotateKeys {
            home,
            starts_in_hours,
        } => admin::rotate_keys_command(home, starts_in_hours),
        Cmd::InstallService {
            unit_dir,
            user,
            home,
            binary,
            force,
        } => service::install_command(&service::ServiceSetup {
            unit_dir,
            user,
            home,
            binary,
            force,
        }),
        Cmd::Demo {
            dir,
            exit_after_delivery,
            timeout,
        } => demo::run_command(dir, exit_after_delivery, timeout),
        Cmd::Directory(d) => directory(d),
        Cmd::Lab(LabCmd::Run {
            scenario,
            report,
            html,
            seed,
            keep,
        }) => renkei_node::lab::run_command(scenario, report, html, seed, keep),
    }
}

fn directory(cmd: DirCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        DirCmd::RootInit { out, federation } => admin::root_init_command(&out, &federation),
        DirCmd::RegionInit {
            root_key,
            out,
            region,
            name,
            prefectures,
            years,
        } => admin::region_init_command(&root_key, &out, &region, &name, prefectures, years),
        DirCmd::Approve { region, requests } => admin::approve_command(&region, &requests),
        DirCmd::Revoke { region, office } => admin::revoke_command(&region, &office),
        DirCmd::Rotate { region, request } => admin::rotate_command(&region, &request),
        DirCmd::SetMailboxes {
            region,
            office,
            nodes,
        } => admin::set_mailboxes_command(&region, &office, &nodes),
        DirCmd::AddNode {
            region,
            key,
            addrs,
            http,
        } => admin::add_node_command(&region, &key, addrs, http),
        DirCmd::Publish { region, out } => admin::publish_command(&region, &out),
        DirCmd::NodeInit { out } => admin::node_init_command(&out),
        DirCmd::Serve(options) => dirserve::serve_command(options),
        DirCmd::Verify { anchor, snapshots } => dirsync::verify_command(&anchor, &snapshots),
    }
}
