//! PostgreSQL: `log_events` and `dead_letters` are range-partitioned by `ingested_at`
//! (`migrations/postgres/2026-11-28-000000_retention`). Partitions are created ahead of time,
//! one per `partition_interval` (aligned to multiples of it since 1970-01-01 UTC), and expiry
//! drops whole partitions: detached first under a short `lock_timeout`, so that a commit never
//! waits behind it for longer than that, then dropped. No bulk `DELETE`, no bloat. Only the
//! default partition, which takes rows no partition covers and is normally empty, is deleted
//! from, in chunks.
//!
//! A partition's bounds are in its name, `<table>_p<lower>_<upper>` (UTC, `%Y%m%dt%H%M%S`; a
//! lower bound of `00000000t000000` is `MINVALUE`), so they are read without parsing SQL.
//! Several hosts may run this against one database: each step takes a transaction-level
//! advisory lock (it holds through PgBouncer's transaction pooling), and what another host has
//! already dropped or created is no error.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use diesel::connection::{CacheSize, Connection};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Nullable, Text, Timestamptz};

use super::{failed, Expired, FileRow, FileRowSql, Lifecycle, Limits};
use super::{forget_blocks, FILES_BEFORE_SQL, RECORD_SQL};
use crate::db::DbError;

/// The partitioned tables.
const TABLES: [&str; 2] = ["log_events", "dead_letters"];
/// How long a detach or a create may wait for the table's lock before giving up until the
/// next check: the longest a commit can be held up behind it.
const DDL_LOCK_TIMEOUT: &str = "100ms";
/// Key of the transaction-level advisory lock that one maintenance step holds.
const MAINTENANCE_LOCK_KEY: i64 = 0x6c6f_6762_656c_7402;
/// How many intervals ahead of now partitions exist.
const AHEAD: i64 = 2;
/// Rows one delete from the default partition takes.
const DEFAULT_CHUNK: i64 = 10_000;
const NAME_TIME: &str = "%Y%m%dt%H%M%S";
const MIN_NAME: &str = "00000000t000000";

pub struct PgLifecycle {
    conn: PgConnection,
    interval: i64,
    /// The last partition that could not be dropped and why, warned about once (a held lock is
    /// tried again at the next check; a missing right stays until an owner acts).
    skipped: Option<String>,
}

/// One partition, from its name.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Partition {
    table: &'static str,
    name: String,
    /// `None`: `MINVALUE`.
    lower: Option<DateTime<Utc>>,
    upper: DateTime<Utc>,
    bytes: u64,
}

#[derive(QueryableByName)]
struct Child {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = BigInt)]
    bytes: i64,
    #[diesel(sql_type = Bool)]
    attached: bool,
}

impl PgLifecycle {
    pub fn open(url: &str, interval: Duration) -> Result<Self, DbError> {
        let mut conn = PgConnection::establish(url)
            .map_err(|e| failed("cannot connect to PostgreSQL for retention", e))?;
        // Unnamed statements only: they survive PgBouncer's transaction pooling.
        conn.set_prepared_statement_cache_size(CacheSize::Disabled);
        Ok(PgLifecycle {
            conn,
            interval: interval.as_secs().max(60) as i64,
            skipped: None,
        })
    }

    /// Every table named like a partition of `table`, attached or left detached by a run that
    /// stopped between detaching and dropping.
    fn children(&mut self, table: &'static str) -> Result<(Vec<Partition>, Vec<String>), DbError> {
        let rows: Vec<Child> = diesel::sql_query(
            "SELECT c.relname::text AS name, pg_total_relation_size(c.oid) AS bytes, \
             c.relispartition AS attached FROM pg_class c \
             WHERE c.relkind = 'r' AND c.relnamespace = (SELECT relnamespace FROM pg_class \
             WHERE oid = to_regclass($1)) AND c.relname LIKE $2",
        )
        .bind::<Text, _>(table)
        .bind::<Text, _>(format!("{table}\\_p%"))
        .load(&mut self.conn)
        .map_err(|e| failed(&format!("cannot list the partitions of {table}"), e))?;
        let mut attached = Vec::new();
        let mut detached = Vec::new();
        for row in rows {
            match (row.attached, parse_name(table, &row.name)) {
                (true, Some((lower, upper))) => attached.push(Partition {
                    table,
                    name: row.name,
                    lower,
                    upper,
                    bytes: row.bytes.max(0) as u64,
                }),
                (false, Some(_)) => detached.push(row.name),
                _ => {}
            }
        }
        attached.sort_by_key(|p| p.upper);
        Ok((attached, detached))
    }

    /// Runs `sql` in its own transaction under the maintenance lock and the DDL lock timeout.
    /// `Ok(false)`: another host holds the lock; this step is theirs.
    fn step(&mut self, what: &str, sql: &str) -> Result<bool, DbError> {
        self.conn
            .transaction(|c| {
                diesel::sql_query(format!("SET LOCAL lock_timeout = '{DDL_LOCK_TIMEOUT}'"))
                    .execute(c)?;
                #[derive(QueryableByName)]
                struct Locked {
                    #[diesel(sql_type = Bool)]
                    locked: bool,
                }
                let locked: Vec<Locked> = diesel::sql_query(format!(
                    "SELECT pg_try_advisory_xact_lock({MAINTENANCE_LOCK_KEY}) AS locked"
                ))
                .load(c)?;
                if !locked.first().is_some_and(|l| l.locked) {
                    return Ok(false);
                }
                diesel::sql_query(sql).execute(c)?;
                Ok(true)
            })
            .map_err(|e: diesel::result::Error| failed(what, e))
    }

    /// Before rows ingested before `t` go: their search blocks are counted by reading their
    /// rows from now on (`query --count`), not by their stored counts.
    fn uncount_before(&mut self, t: DateTime<Utc>) -> Result<(), DbError> {
        diesel::sql_query(
            "UPDATE search_blocks SET counts = NULL WHERE counts IS NOT NULL AND ingested_at < $1",
        )
        .bind::<Timestamptz, _>(t)
        .execute(&mut self.conn)
        .map_err(|e| failed("cannot mark search blocks as expiring", e))?;
        Ok(())
    }

    /// Detaches and drops `p`; its rows are gone.
    fn drop_partition(&mut self, p: &Partition) -> Result<bool, DbError> {
        if p.table == "log_events" {
            self.uncount_before(p.upper)?;
        }
        let detached = self.step(
            &format!("cannot detach partition {}", p.name),
            &format!(
                "ALTER TABLE {} DETACH PARTITION {}",
                p.table,
                quoted(&p.name)
            ),
        )?;
        if detached {
            self.drop_detached(&p.name)?;
        }
        Ok(detached)
    }

    fn drop_detached(&mut self, name: &str) -> Result<(), DbError> {
        diesel::sql_query(format!("DROP TABLE IF EXISTS {}", quoted(name)))
            .execute(&mut self.conn)
            .map_err(|e| failed(&format!("cannot drop detached partition {name}"), e))?;
        Ok(())
    }

    /// Deletes the rows of `table`'s default partition ingested before `cutoff`, a chunk per
    /// transaction.
    fn delete_default(
        &mut self,
        table: &str,
        cutoff: DateTime<Utc>,
        stop: &AtomicBool,
    ) -> Result<u64, DbError> {
        if table == "log_events" {
            self.uncount_before(cutoff)?;
        }
        let mut deleted = 0;
        while !stop.load(Ordering::Relaxed) {
            let n = diesel::sql_query(format!(
                "DELETE FROM {table}_default WHERE ctid IN (SELECT ctid FROM {table}_default \
                 WHERE ingested_at < $1 LIMIT {DEFAULT_CHUNK})"
            ))
            .bind::<Timestamptz, _>(cutoff)
            .execute(&mut self.conn)
            .map_err(|e| failed(&format!("cannot expire rows of {table}_default"), e))?
                as u64;
            deleted += n;
            if n < DEFAULT_CHUNK as u64 {
                break;
            }
        }
        Ok(deleted)
    }

    /// The rows of a partition about to be dropped, for the report: the planner's estimate
    /// once the table has been analysed (counting would read all of it), else a count (a
    /// table never analysed is small or new).
    fn rows_of(&mut self, name: &str) -> u64 {
        #[derive(QueryableByName)]
        struct Rows {
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        let mut read = |sql: String| {
            diesel::sql_query(sql)
                .load::<Rows>(&mut self.conn)
                .ok()
                .and_then(|r| r.first().map(|r| r.n))
        };
        match read(format!(
            "SELECT reltuples::bigint AS n FROM pg_class WHERE oid = to_regclass('{}')",
            quoted(name)
        )) {
            Some(n) if n >= 0 => n as u64,
            _ => read(format!("SELECT count(*) AS n FROM {}", quoted(name)))
                .map_or(0, |n| n.max(0) as u64),
        }
    }

    /// Detaches and drops `p` if it can, and counts it (with its rows, estimated before). One
    /// that cannot be dropped now (a lock held past the timeout, no right to) is left for the
    /// next check, and the rest of the run goes on: the default partition is still cleaned.
    fn expire_partition(&mut self, p: &Partition, run: &mut Expired) -> Result<bool, DbError> {
        let rows = self.rows_of(&p.name);
        match self.drop_partition(p) {
            Ok(true) => {}
            Ok(false) => return Ok(false),
            Err(e) => {
                if self.skipped.as_deref() == Some(e.message.as_str()) {
                    tracing::debug!(error = %e, "Partition not dropped again; trying at the next check.");
                } else {
                    tracing::warn!(error = %e, "Partition not dropped; trying at the next check.");
                    self.skipped = Some(e.message);
                }
                return Ok(false);
            }
        }
        match p.table {
            "log_events" => run.log_events += rows,
            _ => run.dead_letters += rows,
        }
        run.partitions += 1;
        run.before = run.before.max(Some(p.upper));
        Ok(true)
    }

    fn default_bytes(&mut self) -> Result<u64, DbError> {
        #[derive(QueryableByName)]
        struct Bytes {
            #[diesel(sql_type = Nullable<BigInt>)]
            n: Option<i64>,
        }
        let rows: Vec<Bytes> = diesel::sql_query(
            "SELECT (COALESCE(pg_total_relation_size(to_regclass('log_events_default')), 0) \
             + COALESCE(pg_total_relation_size(to_regclass('dead_letters_default')), 0))::bigint AS n",
        )
        .load(&mut self.conn)
        .map_err(|e| failed("cannot measure the default partitions", e))?;
        Ok(rows.first().and_then(|r| r.n).unwrap_or(0).max(0) as u64)
    }
}

impl Lifecycle for PgLifecycle {
    fn prepare(&mut self, now: DateTime<Utc>) -> Result<(), DbError> {
        for table in TABLES {
            let (existing, detached) = self.children(table)?;
            for name in detached {
                self.drop_detached(&name)?;
            }
            for (lower, upper) in missing(&existing, now, self.interval) {
                let name = partition_name(table, Some(lower), upper);
                let created = self.step(
                    &format!("cannot create partition {name}"),
                    &format!(
                        "CREATE TABLE IF NOT EXISTS {} PARTITION OF {table} \
                         FOR VALUES FROM ('{}') TO ('{}')",
                        quoted(&name),
                        sql_time(lower),
                        sql_time(upper)
                    ),
                );
                if let Err(e) = created {
                    // Another host with another interval made an overlapping one: that range
                    // is covered.
                    if !e.message.contains("would overlap") {
                        return Err(e);
                    }
                }
            }
        }
        Ok(())
    }

    fn expire(
        &mut self,
        limits: &Limits,
        now: DateTime<Utc>,
        stop: &AtomicBool,
    ) -> Result<Expired, DbError> {
        let mut run = Expired::default();
        let mut partitions = Vec::new();
        for table in TABLES {
            partitions.extend(self.children(table)?.0);
        }
        partitions.sort_by_key(|p| p.upper);
        if let Some(age) = limits
            .max_age
            .and_then(|a| chrono::Duration::from_std(a).ok())
        {
            let cutoff = now - age;
            let mut kept = Vec::with_capacity(partitions.len());
            for p in partitions {
                let dropped = p.upper <= cutoff
                    && !stop.load(Ordering::Relaxed)
                    && self.expire_partition(&p, &mut run)?;
                if !dropped {
                    kept.push(p);
                }
            }
            partitions = kept;
            for table in TABLES {
                let n = self.delete_default(table, cutoff, stop)?;
                match table {
                    "log_events" => run.log_events += n,
                    _ => run.dead_letters += n,
                }
            }
            run.before = run.before.max(Some(cutoff));
        }
        let default_bytes = self.default_bytes()?;
        let mut total: u64 = partitions.iter().map(|p| p.bytes).sum::<u64>() + default_bytes;
        if let Some(cap) = limits.max_bytes {
            // Whole partitions, oldest first; never the one rows are going into now.
            for p in &partitions {
                if total <= cap || p.upper > now || stop.load(Ordering::Relaxed) {
                    break;
                }
                if self.expire_partition(p, &mut run)? {
                    total = total.saturating_sub(p.bytes);
                }
            }
        }
        run.stored_bytes = total;
        Ok(run)
    }

    fn files_before(&mut self, host: &str, before: DateTime<Utc>) -> Result<Vec<FileRow>, DbError> {
        let rows: Vec<FileRowSql> = diesel::sql_query(numbered(FILES_BEFORE_SQL))
            .bind::<Text, _>(host)
            .bind::<Timestamptz, _>(before)
            .load(&mut self.conn)
            .map_err(|e| failed("cannot read file rows", e))?;
        Ok(rows.into_iter().map(FileRow::from).collect())
    }

    fn delete_files(
        &mut self,
        host: &str,
        ids: &[i64],
        before: DateTime<Utc>,
    ) -> Result<u64, DbError> {
        let n = diesel::sql_query(
            "DELETE FROM files WHERE id = ANY($1) AND host = $2 AND updated_at < $3",
        )
        .bind::<diesel::sql_types::Array<BigInt>, _>(ids)
        .bind::<Text, _>(host)
        .bind::<Timestamptz, _>(before)
        .execute(&mut self.conn)
        .map_err(|e| failed("cannot prune file rows", e))?;
        Ok(n as u64)
    }

    fn record(&mut self, host: &str, now: DateTime<Utc>, run: &Expired) -> Result<(), DbError> {
        let mut query = diesel::sql_query(numbered(RECORD_SQL))
            .into_boxed::<diesel::pg::Pg>()
            .bind::<Text, _>(host.to_owned())
            .bind::<Timestamptz, _>(now)
            .bind::<Nullable<Timestamptz>, _>(run.removed_anything().then_some(now))
            .bind::<Nullable<Timestamptz>, _>(run.before);
        for n in run.counts() {
            query = query.bind::<BigInt, _>(n);
        }
        query
            .execute(&mut self.conn)
            .map_err(|e| failed("cannot record the expiry", e))?;
        forget_blocks(&mut self.conn, run)
    }
}

/// `sql` with its `?` parameters numbered as PostgreSQL wants them: `$1`, `$2`, …
fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push_str(&format!("${n}"));
        } else {
            out.push(c);
        }
    }
    out
}

/// The ranges to create so that partitions cover now and [`AHEAD`] intervals after it: each
/// aligned slot minus what existing partitions already cover at its start.
fn missing(
    existing: &[Partition],
    now: DateTime<Utc>,
    interval: i64,
) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let first = now.timestamp().div_euclid(interval) * interval;
    let mut out = Vec::new();
    for k in 0..=AHEAD {
        let (Some(mut lo), Some(hi)) = (
            Utc.timestamp_opt(first + k * interval, 0).single(),
            Utc.timestamp_opt(first + (k + 1) * interval, 0).single(),
        ) else {
            continue;
        };
        // Skip what a partition holding the slot's start already covers.
        while let Some(p) = existing
            .iter()
            .find(|p| p.lower.is_none_or(|l| l <= lo) && lo < p.upper)
        {
            lo = p.upper;
        }
        let overlaps = existing
            .iter()
            .any(|p| p.lower.is_none_or(|l| l < hi) && lo < p.upper);
        if lo < hi && !overlaps {
            out.push((lo, hi));
        }
    }
    out
}

/// `<table>_p<lower>_<upper>`.
fn partition_name(table: &str, lower: Option<DateTime<Utc>>, upper: DateTime<Utc>) -> String {
    let lower = lower.map_or_else(|| MIN_NAME.to_owned(), |t| t.format(NAME_TIME).to_string());
    format!("{table}_p{lower}_{}", upper.format(NAME_TIME))
}

/// The bounds in a partition's name; `None` for a table not named by [`partition_name`].
#[allow(clippy::type_complexity)]
fn parse_name(table: &str, name: &str) -> Option<(Option<DateTime<Utc>>, DateTime<Utc>)> {
    let rest = name.strip_prefix(table)?.strip_prefix("_p")?;
    let (lower, upper) = rest.split_once('_')?;
    let time = |s: &str| {
        NaiveDateTime::parse_from_str(s, NAME_TIME)
            .ok()
            .map(|t| t.and_utc())
    };
    let lower = if lower == MIN_NAME {
        None
    } else {
        Some(time(lower)?)
    };
    Some((lower, time(upper)?))
}

/// An instant as a `timestamptz` literal, in UTC whatever the session's time zone.
fn sql_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S+00").to_string()
}

/// A partition name as an SQL identifier (names are ours: letters, digits, `_`).
fn quoted(name: &str) -> String {
    format!("\"{name}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn part(lower: Option<&str>, upper: &str) -> Partition {
        Partition {
            table: "log_events",
            name: partition_name("log_events", lower.map(at), at(upper)),
            lower: lower.map(at),
            upper: at(upper),
            bytes: 0,
        }
    }

    #[test]
    fn names_hold_the_bounds() {
        let name = partition_name(
            "log_events",
            Some(at("2026-11-27T00:00:00Z")),
            at("2026-11-28T00:00:00Z"),
        );
        assert_eq!(name, "log_events_p20261127t000000_20261128t000000");
        assert_eq!(
            parse_name("log_events", &name),
            Some((Some(at("2026-11-27T00:00:00Z")), at("2026-11-28T00:00:00Z")))
        );
        assert_eq!(
            parse_name(
                "dead_letters",
                "dead_letters_p00000000t000000_20261127t185703"
            ),
            Some((None, at("2026-11-27T18:57:03Z")))
        );
        assert_eq!(parse_name("log_events", "log_events_default"), None);
        assert_eq!(parse_name("log_events", "log_events_pfoo_bar"), None);
        assert_eq!(
            parse_name(
                "log_events",
                "dead_letters_p20261127t000000_20261128t000000"
            ),
            None
        );
    }

    #[test]
    fn missing_slots_start_where_existing_partitions_end() {
        let day = 86_400;
        let now = at("2026-11-27T18:57:05Z");
        // A fresh conversion: the old rows up to 18:57:03, nothing after.
        let existing = vec![part(None, "2026-11-27T18:57:03Z")];
        assert_eq!(
            missing(&existing, now, day),
            vec![
                (at("2026-11-27T18:57:03Z"), at("2026-11-28T00:00:00Z")),
                (at("2026-11-28T00:00:00Z"), at("2026-11-29T00:00:00Z")),
                (at("2026-11-29T00:00:00Z"), at("2026-11-30T00:00:00Z")),
            ]
        );
        // Everything there: nothing to create.
        let all = vec![
            part(None, "2026-11-27T18:57:03Z"),
            part(Some("2026-11-27T18:57:03Z"), "2026-11-28T00:00:00Z"),
            part(Some("2026-11-28T00:00:00Z"), "2026-11-29T00:00:00Z"),
            part(Some("2026-11-29T00:00:00Z"), "2026-11-30T00:00:00Z"),
        ];
        assert_eq!(missing(&all, now, day), vec![]);
        // A partition of another interval in the middle of a slot: the slot is left alone.
        let odd = vec![
            part(None, "2026-11-27T18:57:03Z"),
            part(Some("2026-11-28T06:00:00Z"), "2026-11-28T12:00:00Z"),
        ];
        assert_eq!(
            missing(&odd, now, day),
            vec![
                (at("2026-11-27T18:57:03Z"), at("2026-11-28T00:00:00Z")),
                (at("2026-11-29T00:00:00Z"), at("2026-11-30T00:00:00Z")),
            ]
        );
        // Minute partitions.
        assert_eq!(
            missing(&existing, now, 60)[0],
            (at("2026-11-27T18:57:03Z"), at("2026-11-27T18:58:00Z"))
        );
    }
}
