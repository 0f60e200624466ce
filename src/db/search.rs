//! PostgreSQL's optional search indexes (README, "Searching"); the default index, the search
//! blocks of both backends, is [`crate::search`].
//!
//! Two GIN indexes on the partitioned `log_events` (each partition gets its own, also the ones
//! retention creates later), made by [`prepare_pg`] when the writer side opens the database,
//! not by a migration: `CREATE EXTENSION pg_trgm` and `CREATE INDEX` need rights (CREATE on the
//! database, owning the table) that a least-privilege role lacks, and logbelt must run without
//! them.
//! - [`PG_SEARCH_INDEX`]: `pg_trgm` over [`PG_SEARCH_EXPR`] (message and object text), used by
//!   `--grep` (`ILIKE` on the same expression);
//! - [`PG_FIELDS_INDEX`]: `jsonb_path_ops` over `fields`, used by `--field` (`@>`).
//!
//! Without them `query` scans; logbelt says once, in one line, what a DBA must run. They are
//! made only when asked for ([`INDEX_ENV`]): they cost most of the ingest rate.

use std::sync::atomic::{AtomicBool, Ordering};

use diesel::connection::{CacheSize, SimpleConnection};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::Bool;

use crate::redact::redact;

/// The trigram index of `--grep` on PostgreSQL.
pub const PG_SEARCH_INDEX: &str = "log_events_search";
/// The text `--grep` searches on PostgreSQL through [`PG_SEARCH_INDEX`]: a query must spell
/// the expression the same way for the planner to use the index.
pub const PG_SEARCH_EXPR: &str = "(coalesce(message, '') || ' ' || fields::text)";
/// The `jsonb_path_ops` index of `--field` on PostgreSQL.
pub const PG_FIELDS_INDEX: &str = "log_events_fields";

/// Serialises index creation between logbelt processes sharing a database (a transaction-level
/// lock: safe through PgBouncer's transaction pooling). Any constant unlikely to be used by
/// anyone else: "lbsearch" in ASCII.
const LOCK_KEY: i64 = 0x6c62_7365_6172_6368;

/// The statements, in order; each runs in a transaction of its own.
fn statements() -> [(&'static str, String); 3] {
    [
        (
            "field index",
            format!(
                "CREATE INDEX IF NOT EXISTS {PG_FIELDS_INDEX} ON log_events \
                 USING gin (fields jsonb_path_ops)"
            ),
        ),
        (
            "pg_trgm",
            "CREATE EXTENSION IF NOT EXISTS pg_trgm".to_owned(),
        ),
        (
            "search index",
            format!(
                "CREATE INDEX IF NOT EXISTS {PG_SEARCH_INDEX} ON log_events \
                 USING gin ({PG_SEARCH_EXPR} gin_trgm_ops)"
            ),
        ),
    ]
}

/// What a DBA runs to create the indexes by hand (one line).
pub fn pg_dba_sql() -> String {
    statements()
        .iter()
        .map(|(_, sql)| format!("{sql};"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Set once the missing-index warning has been given by this process.
static WARNED: AtomicBool = AtomicBool::new(false);

#[derive(QueryableByName)]
struct Present {
    #[diesel(sql_type = Bool)]
    present: bool,
}

/// Whether both PostgreSQL search indexes exist.
///
/// # Errors
/// When the catalog cannot be read.
pub fn pg_indexes_present(conn: &mut PgConnection) -> QueryResult<bool> {
    let row: Present = diesel::sql_query(format!(
        "SELECT (to_regclass('{PG_SEARCH_INDEX}') IS NOT NULL \
         AND to_regclass('{PG_FIELDS_INDEX}') IS NOT NULL) AS present"
    ))
    .get_result(conn)?;
    Ok(row.present)
}

/// `LOGBELT_SEARCH_INDEX=on` (or `1`, `true`, `yes`) in `logbelt run`'s environment: create
/// PostgreSQL's search indexes. Off by default (until a `[search] index` config key exists):
/// measured, the trigram index costs most of the ingest rate (README, "Searching"). A database
/// owner may also create them by hand ([`pg_dba_sql`]); `query` uses them whenever they exist.
pub const INDEX_ENV: &str = "LOGBELT_SEARCH_INDEX";

/// Whether [`INDEX_ENV`] asks for the indexes.
pub fn index_enabled() -> bool {
    std::env::var(INDEX_ENV).is_ok_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "on" | "1" | "true" | "yes"
        )
    })
}

/// What [`prepare_pg`] found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prepared {
    /// Not asked for ([`INDEX_ENV`]).
    Disabled,
    /// Both indexes were there already.
    Present,
    /// This call created what was missing.
    Created,
    /// Something could not be created (the reason, redacted): queries scan instead.
    Missing(String),
    /// The database could not be asked (no connection slot, a restart): the next open tries
    /// again; nothing is said (the store's own errors speak for the database).
    Unknown(String),
}

/// Creates the PostgreSQL search indexes when they are missing: cheap when they exist (one
/// catalog lookup). On a table with rows the build locks out writes until it ends
/// (`CREATE INDEX` on a partitioned table cannot be `CONCURRENTLY`): README, "Search". Never
/// fails: without the rights it warns once per process, naming the SQL a DBA must run, and
/// logbelt goes on (queries scan).
pub fn prepare_pg(url: &str) -> Prepared {
    if !index_enabled() {
        return Prepared::Disabled;
    }
    let outcome = try_prepare_pg(url);
    if let Prepared::Unknown(why) = &outcome {
        tracing::debug!("Search index not checked ({why}); the next open tries again.");
    }
    if let Prepared::Missing(why) = &outcome {
        if !WARNED.swap(true, Ordering::SeqCst) {
            tracing::warn!(
                "Search index missing ({why}); `query --grep` and `--field` scan instead. \
                 A database owner can create it: {}",
                pg_dba_sql()
            );
        }
    }
    outcome
}

fn try_prepare_pg(url: &str) -> Prepared {
    let line =
        |what: &str, e: &dyn std::fmt::Display| redact(&format!("{what}: {e}")).replace('\n', " ");
    let mut conn = match PgConnection::establish(url) {
        Ok(c) => c,
        Err(e) => return Prepared::Unknown(line("cannot connect", &e)),
    };
    conn.set_prepared_statement_cache_size(CacheSize::Disabled);
    match pg_indexes_present(&mut conn) {
        Ok(true) => return Prepared::Present,
        Ok(false) => {}
        Err(e) => return Prepared::Unknown(line("cannot read the catalog", &e)),
    }
    for (what, sql) in statements() {
        // The build may take minutes on a big table: no statement timeout; the lock waits for
        // another logbelt building the same index.
        let result = conn.transaction(|c| {
            c.batch_execute(&format!(
                "SET LOCAL statement_timeout = 0; SELECT pg_advisory_xact_lock({LOCK_KEY}); {sql}"
            ))
        });
        if let Err(e) = result {
            return Prepared::Missing(line(&format!("cannot create the {what}"), &e));
        }
    }
    Prepared::Created
}
