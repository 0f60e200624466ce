//! The real `logrotate` (Debian's package) for the tests that rotate with it: found on the
//! machine, or the test is skipped with the reason on stderr (it fails instead when
//! `LOGBELT_REQUIRE_LOGROTATE=1`, which CI sets); a config file and a state file of the test's
//! own; `logrotate -f` run to completion.
//!
//! logrotate is particular about what it reads: it ignores a config file that is group- or
//! world-writable or owned by another user than root or the one running it, so the config is
//! written with mode 0644; and it refuses to rotate in a directory that is world-writable (or
//! group-writable by a group other than root) unless the config names a `su` user, so the log's
//! directory is set to 0755 rather than relying on the umask.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::test_name;

/// When `1`, a logrotate test on a machine without logrotate fails instead of being skipped.
pub const LOGROTATE_REQUIRE_VAR: &str = "LOGBELT_REQUIRE_LOGROTATE";

/// Where Debian and most distributions install logrotate (often not on a non-root `PATH`).
const LOGROTATE_PATHS: &[&str] = &[
    "/usr/sbin/logrotate",
    "/sbin/logrotate",
    "/usr/bin/logrotate",
];

/// The logrotate binary: the usual places, then `PATH`.
pub fn find_logrotate() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("logrotate"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    LOGROTATE_PATHS
        .iter()
        .map(PathBuf::from)
        .chain(on_path)
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Log files under logrotate's control, all in one block: its config and state file, in `dir`.
pub struct Logrotate {
    bin: PathBuf,
    pub conf: PathBuf,
    pub state: PathBuf,
}

impl Logrotate {
    /// Writes `dir/logrotate.conf` rotating `logs` together with `directives` (one per line;
    /// `postrotate` scripts included as written). `None` when logrotate is not installed (the
    /// test then returns and passes, having said so on stderr); panics instead when
    /// [`LOGROTATE_REQUIRE_VAR`] is `1`.
    pub fn new(dir: &Path, logs: &[PathBuf], directives: &[String]) -> Option<Logrotate> {
        let Some(bin) = find_logrotate() else {
            if std::env::var(LOGROTATE_REQUIRE_VAR).as_deref() == Ok("1") {
                panic!(
                    "{}: logrotate is not installed and {LOGROTATE_REQUIRE_VAR}=1 \
                     (apt-get install logrotate)",
                    test_name()
                );
            }
            eprintln!(
                "skipping {}: logrotate is not installed (looked in {LOGROTATE_PATHS:?} and \
                 PATH; apt-get install logrotate)",
                test_name()
            );
            return None;
        };
        for log in logs {
            let log_dir = log.parent().expect("a log has a folder");
            std::fs::set_permissions(log_dir, std::fs::Permissions::from_mode(0o755))
                .expect("chmod 0755 the log folder");
        }
        let conf = dir.join("logrotate.conf");
        let state = dir.join("logrotate.state");
        let names: Vec<String> = logs.iter().map(|l| quote(l)).collect();
        let mut text = format!("{} {{\n", names.join(" "));
        for d in directives {
            text += &format!("    {d}\n");
        }
        text += "}\n";
        std::fs::write(&conf, text).expect("write logrotate.conf");
        std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o644))
            .expect("chmod 0644 logrotate.conf");
        Some(Logrotate { bin, conf, state })
    }

    /// `logrotate -v -f -s STATE CONF`: rotates now, whatever the state file says; returns its
    /// verbose output. Panics (with that output) unless it exits 0.
    pub fn force(&self) -> String {
        let out = Command::new(&self.bin)
            .arg("-v")
            .arg("-f")
            .arg("-s")
            .arg(&self.state)
            .arg(&self.conf)
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", self.bin.display()));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let config = std::fs::read_to_string(&self.conf).unwrap_or_default();
        assert!(
            out.status.success(),
            "logrotate failed: {}\n--- output ---\n{text}--- {} ---\n{config}",
            out.status,
            self.conf.display()
        );
        // logrotate exits 0 after skipping a log it found unsafe; it must have rotated.
        assert!(
            !text.contains("skipping") && !text.contains("error:"),
            "logrotate did not rotate:\n{text}--- {} ---\n{config}",
            self.conf.display()
        );
        text
    }
}

/// A path as a double-quoted logrotate word.
fn quote(path: &Path) -> String {
    let s = path.to_str().expect("a UTF-8 path");
    assert!(
        !s.contains('"') && !s.contains('\\'),
        "a path logrotate can quote: {s}"
    );
    format!("\"{s}\"")
}

/// A path as a single-quoted `sh` word (for `postrotate` scripts).
pub fn sh_quote(path: &Path) -> String {
    let s = path.to_str().expect("a UTF-8 path");
    format!("'{}'", s.replace('\'', r"'\''"))
}
