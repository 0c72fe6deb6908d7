//! `renkei lab`: a region's month under scripted faults, run by the production node code —
//! thousands of offices in one process on libp2p's in-memory transport and one virtual clock
//! — with a report (JSON) and charts (HTML). For researchers: see README.md, "For
//! researchers", and `examples/lab/`.
//!
//! ```no_run
//! use renkei_node::lab::{RunOptions, Scenario, run};
//! let s = Scenario::load(std::path::Path::new("examples/lab/calm.toml"))?;
//! let report = run(&s, &RunOptions::default())?;
//! assert_eq!(report.lost, 0);
//! # Ok::<(), anyhow::Error>(())
//! ```
//!
//! What it does not do: model anything. Files are checked, sealed, delivered, acknowledged,
//! deposited in mailboxes and drained by the same code as in an office; only the network
//! (in-memory, with the lab's partitions, loss and latency) and the clock are the lab's.

mod html;
mod report;
mod run;
mod scenario;
mod workload;

use std::path::PathBuf;
use std::process::ExitCode;

pub use html::render as render_html;
pub use report::{Counts, FaultReport, FileOutcome, Report, RunInfo, Sample, Scale};
pub use run::{RunOptions, run};
pub use scenario::{
    Fault, FederationSpec, OfficeConfig, Offices, Role, Scenario, ScenarioError, Workload,
};

/// `renkei lab run`: runs a scenario, writes its report (and HTML), and prints a summary.
/// Exit 0 when nothing was lost or duplicated and no content is left behind, 1 otherwise.
pub fn run_command(
    scenario: PathBuf,
    report: PathBuf,
    html: Option<PathBuf>,
    seed: Option<u64>,
    keep: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let s = Scenario::load(&scenario)?;
    let opts = RunOptions {
        seed,
        keep: keep.is_some(),
        dir: keep,
        interruptible: true,
    };
    let r = run(&s, &opts)?;
    let json = serde_json::to_string_pretty(&r)?;
    crate::files::write_atomic(&report, json.as_bytes(), false).map_err(|e| {
        anyhow::anyhow!(
            "報告 {} を書けません: {e} / cannot write the report {}: {e}",
            report.display(),
            report.display()
        )
    })?;
    if let Some(h) = &html {
        crate::files::write_atomic(h, render_html(&r).as_bytes(), false).map_err(|e| {
            anyhow::anyhow!(
                "HTML {} を書けません: {e} / cannot write the HTML report {}: {e}",
                h.display(),
                h.display()
            )
        })?;
    }
    println!(
        "{}: seed {} · {} offices · sent {} delivered {} duplicates {} lost {} rejected {} expired {} pending {} · residual {} bytes · p50 {} ms p99 {} ms max {} ms · {:.1} s",
        if r.scenario.is_empty() {
            scenario.display().to_string()
        } else {
            r.scenario.clone()
        },
        r.seed,
        r.scale.offices,
        r.sent,
        r.delivered,
        r.duplicates,
        r.lost,
        r.rejected,
        r.expired,
        r.pending,
        r.residual_bytes,
        r.p50_ms,
        r.p99_ms,
        r.max_ms,
        r.run.wall_secs
    );
    Ok(
        if r.lost == 0 && r.duplicates == 0 && r.residual_bytes == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        },
    )
}
