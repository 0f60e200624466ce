//! `[search]`: the search index of `query --grep` (README, "Searching").

use serde::Deserialize;

use super::kinds::{defaults, read, Flag};

/// `[search]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchConfig {
    /// `index`: write a filter of each commit's text beside its rows (default `true`), so that
    /// `query --grep` reads only the blocks of rows that may hold the needle. `false` saves its
    /// cost at ingest (README gives it); `--grep` then scans this host's rows.
    #[serde(default = "yes", deserialize_with = "read::<Flag, _>")]
    pub index: bool,
}

impl Default for SearchConfig {
    fn default() -> Self {
        defaults()
    }
}

fn yes() -> bool {
    true
}
