//! The PostgreSQL schema: migrations applied under a transaction-level advisory lock (so that
//! many agents, also through PgBouncer's transaction pooling, can start at once), and the grants
//! logbelt's writes need, checked so that a missing one is named with the `GRANT` that fixes it.

use diesel::migration::MigrationSource;
use diesel::pg::{Pg, PgConnection};
use diesel::prelude::*;
use diesel::result::Error as DieselError;
use diesel::sql_types::{Bool, Nullable, Text};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use super::postgres::classify;
use super::DbError;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// Key of the transaction-level advisory lock the migration transaction takes first (any
/// constant unlikely to collide).
const MIGRATION_LOCK_KEY: i64 = 0x6c6f_6762_656c_7401;

/// Applies pending migrations, unless the schema is current: then nothing is created or locked,
/// so that a role without CREATE (the schema owned by someone else) can run logbelt.
pub(super) fn migrate(conn: &mut PgConnection) -> Result<(), DbError> {
    if schema_is_current(conn)? {
        return Ok(());
    }
    let migrated = migrate_locked(conn);
    match migrated {
        Err(e) if !may_create(conn) => Err(DbError::fatal(format!(
            "{}: the schema is not current and role {} may not create tables in it: let the \
             schema's owner run logbelt once (or apply migrations/postgres), then grant this \
             role what the README's \"Least-privilege role\" lists",
            e.message,
            current_role(conn).unwrap_or_else(|| "?".into()),
        ))),
        other => other,
    }
}

#[derive(QueryableByName)]
struct VersionRow {
    #[diesel(sql_type = Text)]
    version: String,
}

/// Whether every embedded migration is recorded as applied (read-only: no CREATE needed).
fn schema_is_current(conn: &mut PgConnection) -> Result<bool, DbError> {
    #[derive(QueryableByName)]
    struct Exists {
        #[diesel(sql_type = Bool)]
        exists: bool,
    }
    let exists: Vec<Exists> =
        diesel::sql_query("SELECT to_regclass('__diesel_schema_migrations') IS NOT NULL AS exists")
            .load(conn)
            .map_err(|e| classify("cannot read the schema version", e))?;
    if !exists.first().is_some_and(|e| e.exists) {
        return Ok(false);
    }
    let applied: Vec<VersionRow> =
        diesel::sql_query("SELECT version FROM __diesel_schema_migrations")
            .load(conn)
            .map_err(|e| {
                let err = classify("cannot read the schema version", e);
                match missing_grants(conn) {
                    Some(grants) => grants,
                    None => err,
                }
            })?;
    let applied: std::collections::HashSet<String> =
        applied.into_iter().map(|r| r.version).collect();
    let wanted = MigrationSource::<Pg>::migrations(&MIGRATIONS)
        .map_err(|e| DbError::fatal(format!("embedded migrations: {e}")))?;
    Ok(wanted
        .iter()
        .all(|m| applied.contains(&m.name().version().to_string())))
}

/// Whether the role may create tables in the current schema.
fn may_create(conn: &mut PgConnection) -> bool {
    #[derive(QueryableByName)]
    struct May {
        #[diesel(sql_type = Nullable<Bool>)]
        may: Option<bool>,
    }
    diesel::sql_query("SELECT has_schema_privilege(current_schema(), 'CREATE') AS may")
        .load::<May>(conn)
        .ok()
        .and_then(|r| r.first().and_then(|m| m.may))
        .unwrap_or(false)
}

fn current_role(conn: &mut PgConnection) -> Option<String> {
    #[derive(QueryableByName)]
    struct Role {
        #[diesel(sql_type = Text)]
        role: String,
    }
    diesel::sql_query("SELECT current_user::text AS role")
        .load::<Role>(conn)
        .ok()
        .and_then(|r| r.into_iter().next().map(|r| r.role))
}

/// What logbelt's writes need, table by table: `(table, privilege, on its id sequence)`.
/// `files` is upserted (`INSERT … ON CONFLICT DO UPDATE`: SELECT, INSERT, UPDATE), read at
/// start and deleted from when a file is gone; rows get their `id` from the sequences (a
/// commit also reads `log_events_id_seq`: the range of its search block).
const NEEDED_GRANTS: &[(&str, &str, bool)] = &[
    ("log_events", "INSERT", false),
    ("log_events", "USAGE", true),
    ("dead_letters", "INSERT", false),
    ("dead_letters", "USAGE", true),
    ("search_blocks", "INSERT", false),
    ("search_blocks", "USAGE", true),
    ("files", "SELECT", false),
    ("files", "INSERT", false),
    ("files", "UPDATE", false),
    ("files", "DELETE", false),
    ("__diesel_schema_migrations", "SELECT", false),
];

/// Checks the privileges in [`NEEDED_GRANTS`]: a fatal error naming what is missing and the
/// `GRANT` statements that fix it, or `None` when everything is granted (or the check itself
/// cannot run: the caller's own error stands then).
pub(super) fn missing_grants(conn: &mut PgConnection) -> Option<DbError> {
    #[derive(QueryableByName)]
    struct Grant {
        #[diesel(sql_type = Text)]
        role: String,
        #[diesel(sql_type = Text)]
        tbl: String,
        #[diesel(sql_type = Text)]
        privilege: String,
        #[diesel(sql_type = Bool)]
        is_sequence: bool,
        #[diesel(sql_type = Nullable<Text>)]
        object: Option<String>,
        #[diesel(sql_type = Nullable<Bool>)]
        granted: Option<bool>,
    }
    let values: Vec<String> = NEEDED_GRANTS
        .iter()
        .map(|(t, p, seq)| format!("('{t}', '{p}', {seq})"))
        .collect();
    let sql = format!(
        "SELECT quote_ident(current_user) AS role, n.tbl, n.privilege, n.is_sequence, \
           CASE WHEN to_regclass(n.tbl) IS NULL THEN NULL \
                WHEN n.is_sequence THEN pg_get_serial_sequence(n.tbl, 'id') \
                ELSE n.tbl END AS object, \
           CASE WHEN to_regclass(n.tbl) IS NULL THEN NULL \
                WHEN n.is_sequence THEN has_sequence_privilege(pg_get_serial_sequence(n.tbl, 'id'), n.privilege) \
                ELSE has_table_privilege(to_regclass(n.tbl)::oid, n.privilege) END AS granted \
         FROM (VALUES {}) AS n(tbl, privilege, is_sequence)",
        values.join(", ")
    );
    let rows: Vec<Grant> = diesel::sql_query(sql).load(conn).ok()?;
    let role = rows.first().map(|r| r.role.clone())?;
    let absent: Vec<&str> = rows
        .iter()
        .filter(|r| r.object.is_none() && r.tbl != "__diesel_schema_migrations")
        .map(|r| r.tbl.as_str())
        .collect();
    if !absent.is_empty() {
        let mut absent = absent;
        absent.dedup();
        return Some(DbError::fatal(format!(
            "PostgreSQL database has no table {} (dropped, or another schema is first in \
             search_path?): logbelt migrates an empty database itself, but will not recreate \
             tables of a database it has migrated before",
            absent.join(", ")
        )));
    }
    let missing: Vec<&Grant> = rows
        .iter()
        .filter(|r| r.object.is_some() && r.granted == Some(false))
        .collect();
    if missing.is_empty() {
        return None;
    }
    let what: Vec<String> = missing
        .iter()
        .map(|r| {
            let object = r.object.as_deref().unwrap_or(&r.tbl);
            if r.is_sequence {
                format!("{} on sequence {object}", r.privilege)
            } else {
                format!("{} on {object}", r.privilege)
            }
        })
        .collect();
    let grants: Vec<String> = missing
        .iter()
        .map(|r| {
            let object = r.object.as_deref().unwrap_or(&r.tbl);
            let kind = if r.is_sequence { "SEQUENCE " } else { "" };
            format!("GRANT {} ON {kind}{object} TO {role};", r.privilege)
        })
        .collect();
    Some(DbError::fatal(format!(
        "PostgreSQL role {role} lacks {}: as the tables' owner, run: {}",
        what.join(", "),
        grants.join(" ")
    )))
}

/// Why the migration transaction failed.
enum MigrateError {
    Diesel(DieselError),
    Logbelt(DbError),
}

impl From<DieselError> for MigrateError {
    fn from(e: DieselError) -> Self {
        MigrateError::Diesel(e)
    }
}

/// Applies the pending migrations in ONE transaction that first takes a transaction-level
/// advisory lock (`pg_advisory_xact_lock`): logbelt processes starting together migrate one
/// after the other, and the lock goes with the transaction's end whatever happens — a session
/// lock would stay with whichever server connection PgBouncer's transaction pooling gave the
/// `pg_advisory_lock`, and protect nothing. diesel runs each migration's own transaction as a
/// savepoint inside this one. Inside the lock the schema is checked again: whoever held the lock
/// before may have migrated it already.
fn migrate_locked(conn: &mut PgConnection) -> Result<(), DbError> {
    let migrated = conn.transaction::<(), MigrateError, _>(|conn| {
        diesel::sql_query(format!(
            "SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})"
        ))
        .execute(conn)?;
        if schema_is_current(conn).map_err(MigrateError::Logbelt)? {
            return Ok(());
        }
        conn.run_pending_migrations(MIGRATIONS)
            .map(|_| ())
            .map_err(|e| {
                MigrateError::Logbelt(DbError::transient(format!(
                    "cannot migrate PostgreSQL database: {e}"
                )))
            })
    });
    match migrated {
        Ok(()) => Ok(()),
        Err(MigrateError::Logbelt(e)) => Err(e),
        Err(MigrateError::Diesel(e)) => Err(classify("cannot migrate PostgreSQL database", e)),
    }
}
