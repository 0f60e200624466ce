//! SQLite: expiry deletes the oldest rows in chunks, each its own short transaction with a pause
//! after it so that the writer's commits go between, then gives the freed pages back to the file
//! system (`incremental_vacuum`, in a database created with `auto_vacuum = INCREMENTAL`).
//!
//! Rows are deleted in `id` order: `id` grows with every commit and `ingested_at` is the commit's
//! time, so the oldest ids are the oldest rows, and a chunk is found through the primary key
//! without an index on `ingested_at`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::sqlite::SqliteConnection;

use super::{failed, sql_instant, Expired, FileRow, FileRowSql, Lifecycle, Limits};
use super::{forget_blocks, FILES_BEFORE_SQL, RECORD_SQL};
use crate::db::sqlite::{connect, OpenMode};
use crate::db::DbError;

/// How long one delete transaction should hold the write lock: commits wait at most this.
const CHUNK_TARGET: Duration = Duration::from_millis(25);
/// Bounds of the rows one delete takes (the chunk adapts to [`CHUNK_TARGET`] between them).
const CHUNK_ROWS: (u64, u64) = (100, 50_000);
/// Pages one `incremental_vacuum` step frees (4 KiB pages: 1 MiB): a step moves pages, so it is
/// kept short for the writer waiting on it.
const VACUUM_PAGES: u64 = 256;
/// `max_bytes` removes rows until the size is this fraction of the cap, so that the next
/// check does not have to remove again at once.
const LOW_WATER: f64 = 0.9;

pub struct SqliteLifecycle {
    path: PathBuf,
    conn: SqliteConnection,
    chunk: u64,
    /// Whether the file can shrink (created with `auto_vacuum = INCREMENTAL`); said once.
    incremental: bool,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct InstantRow {
    #[diesel(sql_type = Nullable<Text>)]
    t: Option<String>,
}

impl SqliteLifecycle {
    pub fn open(path: &Path, busy_timeout: Duration) -> Result<Self, DbError> {
        let mut conn = connect(path, OpenMode::ReadWrite, busy_timeout)?;
        let incremental = pragma(&mut conn, "auto_vacuum")? == 2;
        if !incremental {
            tracing::warn!(
                path = %path.display(),
                "This SQLite database was created without auto_vacuum: expired rows make room for \
                 new ones, but the file does not shrink. To let it shrink, stop logbelt and run \
                 sqlite3 FILE 'PRAGMA auto_vacuum = INCREMENTAL; VACUUM;' once."
            );
        }
        Ok(SqliteLifecycle {
            path: path.to_owned(),
            conn,
            chunk: 1_000,
            incremental,
        })
    }

    /// Deletes the rows of `table` ingested before `cutoff`, oldest first, a chunk per
    /// transaction. Returns how many went.
    fn delete_before(
        &mut self,
        table: &str,
        cutoff: &str,
        stop: &AtomicBool,
    ) -> Result<u64, DbError> {
        let mut deleted = 0;
        while !stop.load(Ordering::Relaxed) {
            let chunk = self.chunk;
            let started = Instant::now();
            if table == "log_events" {
                // The blocks this chunk may touch are counted by reading their rows from now on.
                diesel::sql_query(format!(
                    "UPDATE search_blocks SET counts = NULL WHERE counts IS NOT NULL AND first_id <= \
                     (SELECT max(id) FROM (SELECT id FROM log_events ORDER BY id LIMIT {chunk}))"
                ))
                .execute(&mut self.conn)
                .map_err(|e| failed("cannot mark search blocks as expiring", e))?;
            }
            let sql = format!(
                "DELETE FROM {table} WHERE id IN (SELECT id FROM {table} ORDER BY id LIMIT {chunk}) \
                 AND ingested_at < ?"
            );
            let n = diesel::sql_query(sql)
                .bind::<Text, _>(cutoff)
                .execute(&mut self.conn)
                .map_err(|e| failed(&format!("cannot expire rows of {table}"), e))?
                as u64;
            let took = started.elapsed();
            deleted += n;
            if n < chunk {
                break;
            }
            self.adapt(took);
            // The writer's turn: it waits for the lock (busy_timeout) and gets it in this gap.
            std::thread::sleep(took.max(Duration::from_millis(1)));
        }
        Ok(deleted)
    }

    /// Sizes the next chunk so that a delete takes about [`CHUNK_TARGET`].
    fn adapt(&mut self, took: Duration) {
        let per_row = took.as_secs_f64() / self.chunk as f64;
        if per_row > 0.0 {
            let ideal = (CHUNK_TARGET.as_secs_f64() / per_row) as u64;
            self.chunk = ideal.clamp(CHUNK_ROWS.0, CHUNK_ROWS.1);
        }
    }

    /// The room the rows take: the pages in use plus the WAL.
    fn stored_bytes(&mut self) -> Result<u64, DbError> {
        let page = pragma(&mut self.conn, "page_size")?;
        let pages = pragma(&mut self.conn, "page_count")?;
        let free = pragma(&mut self.conn, "freelist_count")?;
        Ok(page.saturating_mul(pages.saturating_sub(free)) + self.wal_bytes())
    }

    /// Gives freed pages back to the file system, a step at a time with a pause after each (as
    /// for deletes), then checkpoints the WAL.
    fn shrink(&mut self, max_bytes: Option<u64>, stop: &AtomicBool) -> Result<(), DbError> {
        while self.incremental
            && !stop.load(Ordering::Relaxed)
            && pragma(&mut self.conn, "freelist_count")? > 0
        {
            let started = Instant::now();
            diesel::sql_query(format!("PRAGMA incremental_vacuum({VACUUM_PAGES})"))
                .execute(&mut self.conn)
                .map_err(|e| failed("cannot give freed pages back", e))?;
            std::thread::sleep(started.elapsed().max(Duration::from_millis(1)));
        }
        // TRUNCATE waits for the writer and holds it up while it runs: only when the WAL counts
        // against `max_bytes` and has grown past a quarter of it. Otherwise a passive checkpoint
        // (writers go on), and `journal_size_limit` cuts the WAL back at its next reset.
        let mode = match max_bytes {
            Some(cap) if self.wal_bytes() > cap / 4 => "TRUNCATE",
            _ => "PASSIVE",
        };
        // A checkpoint that cannot finish now (a reader holds an old snapshot) is not an error:
        // the WAL is checkpointed at a later check.
        let _ = diesel::sql_query(format!("PRAGMA wal_checkpoint({mode})")).execute(&mut self.conn);
        Ok(())
    }

    fn wal_bytes(&self) -> u64 {
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        std::fs::metadata(&wal).map_or(0, |m| m.len())
    }

    /// The instant before which the oldest `rows` of `log_events` lie: the `ingested_at` of the
    /// first row after them that was committed later. A commit's rows share one `ingested_at`, so
    /// the whole commit of the last of them goes too (else an excess smaller than one commit
    /// would remove nothing).
    fn instant_after(&mut self, rows: u64) -> Result<Option<String>, DbError> {
        let found: Vec<InstantRow> = diesel::sql_query(format!(
            "SELECT e.ingested_at AS t FROM log_events e, (SELECT id, ingested_at FROM log_events \
             ORDER BY id LIMIT 1 OFFSET {}) AS last WHERE e.id > last.id \
             AND e.ingested_at > last.ingested_at ORDER BY e.id LIMIT 1",
            rows.saturating_sub(1)
        ))
        .load(&mut self.conn)
        .map_err(|e| failed("cannot read the oldest rows", e))?;
        Ok(found.into_iter().next().and_then(|r| r.t))
    }

    /// About how many rows `log_events` holds (ids only grow; expiry removes the oldest).
    fn rows_estimate(&mut self) -> Result<u64, DbError> {
        let span: Vec<Count> =
            diesel::sql_query("SELECT COALESCE(MAX(id) - MIN(id) + 1, 0) AS n FROM log_events")
                .load(&mut self.conn)
                .map_err(|e| failed("cannot count rows", e))?;
        Ok(span.first().map_or(0, |c| c.n.max(0) as u64))
    }

    /// Removes both tables' rows ingested before `cutoff`.
    fn expire_before(
        &mut self,
        cutoff: &str,
        run: &mut Expired,
        stop: &AtomicBool,
    ) -> Result<(), DbError> {
        run.log_events += self.delete_before("log_events", cutoff, stop)?;
        run.dead_letters += self.delete_before("dead_letters", cutoff, stop)?;
        Ok(())
    }
}

impl Lifecycle for SqliteLifecycle {
    fn prepare(&mut self, _now: DateTime<Utc>) -> Result<(), DbError> {
        Ok(())
    }

    fn expire(
        &mut self,
        limits: &Limits,
        now: DateTime<Utc>,
        stop: &AtomicBool,
    ) -> Result<Expired, DbError> {
        let mut run = Expired::default();
        if let Some(age) = limits
            .max_age
            .and_then(|a| chrono::Duration::from_std(a).ok())
        {
            let cutoff = now - age;
            self.expire_before(&sql_instant(cutoff), &mut run, stop)?;
            run.before = Some(cutoff);
        }
        if run.log_events + run.dead_letters > 0 {
            self.shrink(limits.max_bytes, stop)?;
        }
        run.stored_bytes = self.stored_bytes()?;
        if let Some(cap) = limits.max_bytes {
            // Oldest first, in rounds: estimate the rows that hold the excess, remove the rows
            // ingested before the oldest one left, give the pages back, measure again.
            for _ in 0..8 {
                if run.stored_bytes <= cap || stop.load(Ordering::Relaxed) {
                    break;
                }
                let rows = self.rows_estimate()?;
                if rows == 0 {
                    break;
                }
                let target = (cap as f64 * LOW_WATER) as u64;
                let per_row = (run.stored_bytes / rows).max(1);
                let excess_rows = (run.stored_bytes.saturating_sub(target) / per_row).max(1);
                let Some(cutoff) = self.instant_after(excess_rows.min(rows))? else {
                    // Fewer rows than the excess: all of them go.
                    let last = sql_instant(now + chrono::Duration::seconds(1));
                    self.expire_before(&last, &mut run, stop)?;
                    run.before = Some(now);
                    self.shrink(Some(cap), stop)?;
                    run.stored_bytes = self.stored_bytes()?;
                    break;
                };
                self.expire_before(&cutoff, &mut run, stop)?;
                if let Ok(t) = DateTime::parse_from_rfc3339(&cutoff) {
                    run.before = run.before.max(Some(t.with_timezone(&Utc)));
                }
                self.shrink(Some(cap), stop)?;
                run.stored_bytes = self.stored_bytes()?;
            }
        }
        Ok(run)
    }

    fn files_before(&mut self, host: &str, before: DateTime<Utc>) -> Result<Vec<FileRow>, DbError> {
        let rows: Vec<FileRowSql> = diesel::sql_query(FILES_BEFORE_SQL)
            .bind::<Text, _>(host)
            .bind::<Text, _>(sql_instant(before))
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
        let mut deleted = 0;
        for id in ids {
            deleted +=
                diesel::sql_query("DELETE FROM files WHERE id = ? AND host = ? AND updated_at < ?")
                    .bind::<BigInt, _>(id)
                    .bind::<Text, _>(host)
                    .bind::<Text, _>(sql_instant(before))
                    .execute(&mut self.conn)
                    .map_err(|e| failed("cannot prune file rows", e))? as u64;
        }
        Ok(deleted)
    }

    fn record(&mut self, host: &str, now: DateTime<Utc>, run: &Expired) -> Result<(), DbError> {
        let mut query = diesel::sql_query(RECORD_SQL)
            .into_boxed::<diesel::sqlite::Sqlite>()
            .bind::<Text, _>(host.to_owned())
            .bind::<Text, _>(sql_instant(now))
            .bind::<Nullable<Text>, _>(run.removed_anything().then(|| sql_instant(now)))
            .bind::<Nullable<Text>, _>(run.before.map(sql_instant));
        for n in run.counts() {
            query = query.bind::<BigInt, _>(n);
        }
        query
            .execute(&mut self.conn)
            .map_err(|e| failed("cannot record the expiry", e))?;
        forget_blocks(&mut self.conn, run)
    }
}

/// An integer pragma's value.
fn pragma(conn: &mut SqliteConnection, name: &str) -> Result<u64, DbError> {
    let rows: Vec<Count> = diesel::sql_query(format!("SELECT {name} AS n FROM pragma_{name}"))
        .load(conn)
        .map_err(|e| failed(&format!("cannot read PRAGMA {name}"), e))?;
    Ok(rows.first().map_or(0, |c| c.n.max(0) as u64))
}
