//! Progress bars for long command-line work (`renkei check` of many files, `renkei directory
//! publish` of a large region, the download of a large directory snapshot): drawn on stderr
//! only when it is a terminal, so a service's log, a pipe or a file never gets one.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// What a bar counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Files, steps: shown as `pos/len`.
    Items,
    /// Bytes of a download: shown as `12.5 MiB/150.0 MiB`.
    Bytes,
}

/// A snapshot download this large (bytes) or larger gets a bar.
pub const LARGE_DOWNLOAD: u64 = 4 << 20;

/// Whether a bar is drawn: the work is long enough to deserve one (`worth_it`), and stderr is
/// a terminal.
pub fn shown(worth_it: bool, terminal: bool) -> bool {
    worth_it && terminal
}

/// A bar of `len` for work labelled `label` (both languages), drawn when `worth_it` and stderr
/// is a terminal; otherwise a hidden bar, on which every call does nothing.
pub fn bar(worth_it: bool, len: u64, unit: Unit, label: &str) -> ProgressBar {
    bar_on(
        shown(worth_it, std::io::stderr().is_terminal()),
        len,
        unit,
        label,
    )
}

/// A bar for a download of `total` bytes, once its size is known: drawn for a large one.
pub fn download(total: u64, label: &str) -> ProgressBar {
    bar(total >= LARGE_DOWNLOAD, total, Unit::Bytes, label)
}

/// [`bar`], drawn or not as `shown` says.
pub fn bar_on(shown: bool, len: u64, unit: Unit, label: &str) -> ProgressBar {
    if !shown {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(len);
    // The label is text, never template syntax.
    let label = label.replace('{', "{{").replace('}', "}}");
    let template = match unit {
        Unit::Items => format!("{{spinner}} {{bar:40}} {{pos}}/{{len}} {label} {{wide_msg}}"),
        Unit::Bytes => {
            format!("{{spinner}} {{bar:40}} {{bytes}}/{{total_bytes}} {label} {{wide_msg}}")
        }
    };
    if let Ok(style) = ProgressStyle::with_template(&template) {
        b.set_style(style);
    }
    // The spinner moves during a long step that has no finer progress (signing a region).
    b.enable_steady_tick(Duration::from_millis(120));
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bar_is_drawn_only_for_long_work_on_a_terminal() {
        assert!(shown(true, true));
        assert!(!shown(true, false), "not on a terminal: quiet");
        assert!(!shown(false, true), "short work: no bar");
        // A quiet bar is indicatif's hidden one (no length); a drawn one counts to `len`
        // (indicatif itself draws nothing where stderr is not a terminal, as under a test).
        let quiet = bar_on(false, 10, Unit::Items, "x");
        assert!(quiet.is_hidden());
        assert_eq!(quiet.length(), None);
        let drawn = bar_on(true, 10, Unit::Bytes, "{not a template}");
        assert_eq!(drawn.length(), Some(10));
        drawn.finish_and_clear();
        // A small download never gets one, terminal or not.
        assert_eq!(download(LARGE_DOWNLOAD - 1, "x").length(), None);
        assert_eq!(bar(false, 10, Unit::Items, "x").length(), None);
    }
}
