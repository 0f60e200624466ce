//! The SQLite database's disk fills up while logbelt ingests (issue 13, point 4: disk full is a
//! pause, not a loss). The database lives on a small tmpfs mounted by the test, the log files
//! outside it; a filler file takes the tmpfs's last free pages, so SQLite meets `SQLITE_FULL`.
//! logbelt must keep running, hold the batch, say why on `/health`, count it in the metrics and
//! make no dead letter of it; once the filler is deleted, every line arrives exactly once.
//!
//! Mounting needs root: without it the test is skipped with the reason, or fails when
//! `LOGBELT_REQUIRE_TMPFS=1` (as in `.ci/run`).

use std::ffi::CString;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::util::{
    free_addr, http_get, json_lines, scrape, test_name, toml_str, wait_endpoint, wait_until,
    write_config_with, Backend, Daemon, Scrape, TestEnv, Written, DEADLINE,
};

/// When `1`, a test that cannot mount its tmpfs fails instead of being skipped.
const REQUIRE_VAR: &str = "LOGBELT_REQUIRE_TMPFS";

/// The tmpfs's size: room for the database of the whole test, with the filler deleted.
const TMPFS_SIZE: &str = "12m";

/// A tmpfs mounted on a folder; unmounted (lazily: files may still be open) when dropped, also
/// when the test fails.
struct Tmpfs {
    at: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` on `at` (an existing folder).
    fn mount(at: &Path, size: &str) -> Result<Tmpfs, String> {
        // SAFETY: geteuid(2) cannot fail and touches no memory.
        if unsafe { libc::geteuid() } != 0 {
            return Err("mounting a tmpfs needs root".to_string());
        }
        let c = |s: &[u8]| CString::new(s).expect("no NUL");
        let target = c(at.as_os_str().as_bytes());
        let (fstype, data) = (c(b"tmpfs"), c(format!("size={size},mode=0755").as_bytes()));
        // SAFETY: every pointer is a NUL-terminated string that outlives the call.
        let r = unsafe {
            libc::mount(
                fstype.as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                0,
                data.as_ptr().cast(),
            )
        };
        if r != 0 {
            return Err(format!(
                "mount -t tmpfs -o size={size} on {}: {}",
                at.display(),
                std::io::Error::last_os_error()
            ));
        }
        Ok(Tmpfs {
            at: at.to_path_buf(),
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let target = CString::new(self.at.as_os_str().as_bytes()).expect("no NUL");
        // SAFETY: a NUL-terminated path that outlives the call.
        if unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) } != 0 {
            eprintln!(
                "warning: cannot unmount the tmpfs on {}: {}",
                self.at.display(),
                std::io::Error::last_os_error()
            );
        }
    }
}

/// A tmpfs on `at`, or `None` (the test then returns, having said why) when it cannot be
/// mounted and [`REQUIRE_VAR`] is not `1`.
fn tmpfs_or_skip(at: &Path) -> Option<Tmpfs> {
    match Tmpfs::mount(at, TMPFS_SIZE) {
        Ok(fs) => Some(fs),
        Err(why) if std::env::var(REQUIRE_VAR).as_deref() == Ok("1") => {
            panic!("{}: {why}, and {REQUIRE_VAR}=1", test_name())
        }
        Err(why) => {
            eprintln!(
                "skipping {}: {why} (set {REQUIRE_VAR}=1 to fail instead)",
                test_name()
            );
            None
        }
    }
}

/// Fills the file system of `path` with one file there, until no page is left. Returns its size.
fn fill(path: &Path) -> u64 {
    let mut f =
        std::fs::File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    let mut size = 0;
    for chunk in [1 << 20, 4096, 1] {
        let bytes = vec![0xA5u8; chunk];
        loop {
            match f.write(&bytes) {
                Ok(n) if n == chunk => size += n as u64,
                Ok(n) => {
                    size += n as u64;
                    break;
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => panic!("write {}: {e}", path.display()),
            }
        }
    }
    f.sync_all().expect("sync the filler");
    size
}

/// Scrapes until `cond` holds; fails at the deadline with the last page. `daemon` must stay
/// alive meanwhile.
fn wait_scrape(
    addr: SocketAddr,
    daemon: &mut Daemon,
    what: &str,
    mut cond: impl FnMut(&Scrape) -> bool,
) -> Scrape {
    let mut last = None;
    wait_until(what, DEADLINE, || {
        daemon.assert_running();
        let m = scrape(addr);
        let done = cond(&m);
        last = Some(m);
        done
    });
    last.expect("scraped")
}

const DISK_FULL: &[(&str, &str)] = &[("kind", "disk_full")];

#[test]
fn a_full_disk_pauses_ingestion_and_every_line_arrives_once_when_space_returns() {
    let Some(env) = TestEnv::new(Backend::Sqlite) else {
        return;
    };
    let dbfs = env.path("dbfs");
    std::fs::create_dir(&dbfs).expect("create dbfs/");
    let Some(_tmpfs) = tmpfs_or_skip(&dbfs) else {
        return;
    };
    // logbelt writes dbfs/logbelt.db; the test's queries open it through a symlink at the
    // usual place (SQLite follows it, so the -wal and -shm files are the same).
    std::os::unix::fs::symlink("dbfs/logbelt.db", env.path("logbelt.db")).expect("symlink");

    let addr = free_addr();
    let mut cfg = env.config();
    cfg.url = "sqlite://dbfs/logbelt.db".to_string();
    // Short backoffs: several retries while the disk is full, and a quick resumption.
    cfg.database_extra
        .push(("retry_initial_backoff_ms".into(), "10".into()));
    cfg.database_extra
        .push(("retry_max_backoff_ms".into(), "200".into()));
    write_config_with(
        &env,
        &cfg,
        &[
            ("metrics", "listen", toml_str(&addr.to_string())),
            // Any commit held up at all shows on /health: the reason is what is checked.
            ("metrics", "unhealthy_after_ms", "1".to_string()),
        ],
    );

    let mut w = Written::new();
    w.append(&env.log("a.jsonl"), &json_lines("a", 0, 100));
    let mut d = env.start();
    d.wait_started();
    wait_endpoint(addr, &mut d);
    env.db.wait_rows(100, Some(&mut d));
    let m = scrape(addr);
    assert_eq!(m.get("logbelt_database_errors_total", DISK_FULL), Some(0.0));
    assert_eq!(m.get("logbelt_database_disk_full", &[]), Some(0.0));

    // The symlink really leads the test's connection to logbelt's file.
    #[derive(diesel::QueryableByName)]
    struct Db {
        #[diesel(sql_type = diesel::sql_types::Text)]
        file: String,
    }
    let dbs: Vec<Db> = env
        .db
        .load("SELECT file FROM pragma_database_list WHERE name = 'main'");
    assert_eq!(
        Path::new(&dbs[0].file),
        std::fs::canonicalize(dbfs.join("logbelt.db")).expect("canonicalize"),
        "the test's connection opened another file"
    );

    // The disk fills up, then more lines come.
    let filler = dbfs.join("filler");
    let filled = fill(&filler);
    w.append(&env.log("a.jsonl"), &json_lines("a", 100, 3000));
    w.append(&env.log("b.jsonl"), &json_lines("b", 0, 2000));

    // logbelt holds the batch and retries: counted, and named on /health.
    let m = wait_scrape(addr, &mut d, "several disk-full retries", |m| {
        m.counter("logbelt_database_errors_total", DISK_FULL) >= 3.0
    });
    assert_eq!(
        m.get("logbelt_database_disk_full", &[]),
        Some(1.0),
        "{}",
        m.text
    );
    let mut reason = String::new();
    wait_until("/health to name the full disk", DEADLINE, || {
        d.assert_running();
        match http_get(addr, "/health") {
            Some((503, body)) => {
                reason = body;
                reason.contains("database disk full since")
            }
            _ => false,
        }
    });
    assert!(reason.contains("database or disk is full"), "{reason}");
    d.assert_running();
    assert_eq!(env.db.dead_count(), 0, "a line became a dead letter");
    assert!(env.db.rows() < w.total(), "everything fit on a full disk?");
    // Warned at once, then at growing intervals: fewer warnings than failed attempts.
    d.wait_for_log("Database disk full");
    let failures = scrape(addr).counter("logbelt_database_errors_total", DISK_FULL);
    let warnings = d.stderr().matches("Database disk full").count();
    assert!(
        warnings >= 1 && (warnings as f64) < failures,
        "{warnings} warnings for {failures} failed attempts\n{}",
        d.stderr()
    );

    // Space returns: everything arrives, once.
    std::fs::remove_file(&filler).expect("delete the filler");
    env.db.wait_rows(w.total(), Some(&mut d));
    w.assert_stored(&env.db);
    wait_scrape(addr, &mut d, "the disk-full gauge back at 0", |m| {
        m.get("logbelt_database_disk_full", &[]) == Some(0.0)
    });
    wait_until("/health ok again", DEADLINE, || {
        d.assert_running();
        http_get(addr, "/health").is_some_and(|(status, _)| status == 200)
    });
    d.wait_for_log("Database disk has space again");
    assert_eq!(env.db.dead_count(), 0);

    d.sigint();
    d.assert_exit_ok();
    w.assert_stored(&env.db);
    w.assert_positions_at_end(&env.db);
    eprintln!(
        "{}: filler {filled} bytes; {failures} disk-full retries, {warnings} warnings",
        test_name()
    );
}
