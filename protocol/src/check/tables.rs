//! Field tables (to be filled).
use super::layout::{CsvVersion, Field};
use crate::name::FileKind;

/// The layout of `kind` at `version`, or `None` when that kind does not exist at that version.
pub fn layout(_kind: FileKind, _version: CsvVersion) -> Option<&'static [Field]> {
    None
}
