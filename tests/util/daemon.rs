//! The `logbelt` child process: spawned with its stderr in a file, watched through that file,
//! signalled, killed, and waited for under a deadline.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::{wait_until, TestEnv, BIN, DEADLINE, POLL};

static RUN_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A `logbelt` child with its stderr in a file. Killed on drop if still running.
pub struct Daemon {
    child: Child,
    stderr_path: PathBuf,
    status: Option<ExitStatus>,
}

impl Daemon {
    pub(super) fn spawn(env: &TestEnv, args: &[&str]) -> Daemon {
        let config = env.config_path();
        let mut args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_ref()).collect();
        args.push(config.as_os_str());
        Daemon::spawn_in(env.dir.path(), &args)
    }

    /// Runs `logbelt ARGS` in `dir`, its stderr going to a new file in `dir`.
    pub fn spawn_in<S: AsRef<std::ffi::OsStr>>(dir: &Path, args: &[S]) -> Daemon {
        Daemon::spawn_with_cwd(dir, dir, args)
    }

    /// Runs `logbelt ARGS` in `cwd`, its stderr going to a new file in `stderr_dir`.
    pub fn spawn_with_cwd<S: AsRef<std::ffi::OsStr>>(
        cwd: &Path,
        stderr_dir: &Path,
        args: &[S],
    ) -> Daemon {
        let n = RUN_COUNTER.fetch_add(1, Ordering::SeqCst);
        let stderr_path = stderr_dir.join(format!("logbelt-{n}.stderr"));
        let child = logbelt_command(cwd, &stderr_path)
            .args(args)
            .spawn()
            .expect("spawn logbelt");
        Daemon {
            child,
            stderr_path,
            status: None,
        }
    }

    /// Spawns `cmd` (made by [`logbelt_command`] with `stderr_path`).
    pub fn from_command(mut cmd: Command, stderr_path: &Path) -> Daemon {
        Daemon {
            child: cmd.spawn().expect("spawn logbelt"),
            stderr_path: stderr_path.to_path_buf(),
            status: None,
        }
    }

    /// The child's stderr, when it was spawned with `Stdio::piped()` (taken once).
    pub fn take_stderr_pipe(&mut self) -> Option<std::process::ChildStderr> {
        self.child.stderr.take()
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// What the child wrote to stderr so far, without ANSI colours.
    pub fn stderr(&self) -> String {
        strip_ansi(&std::fs::read_to_string(&self.stderr_path).unwrap_or_default())
    }

    /// Panics (with the stderr) if the child has exited.
    pub fn assert_running(&mut self) {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("try_wait");
        }
        if let Some(status) = self.status {
            panic!(
                "logbelt exited unexpectedly: {status}\n--- stderr ---\n{}",
                self.stderr()
            );
        }
    }

    /// Whether the child has exited (without waiting; its status is kept for [`Daemon::wait_exit`]).
    pub fn exited(&mut self) -> bool {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("try_wait");
        }
        self.status.is_some()
    }

    /// Polls stderr until it contains `needle` `times` times.
    pub fn wait_for_log_n(&mut self, needle: &str, times: usize) {
        wait_until(
            &format!("{needle:?} ×{times} in logbelt's stderr"),
            DEADLINE,
            || {
                if self.stderr().matches(needle).count() >= times {
                    return true;
                }
                self.assert_running();
                false
            },
        );
    }

    /// Polls stderr until it contains `needle`.
    pub fn wait_for_log(&mut self, needle: &str) {
        self.wait_for_log_n(needle, 1);
    }

    /// Waits until the pipeline runs (its tail tasks are started).
    pub fn wait_started(&mut self) {
        self.wait_for_log("Pipeline started.");
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        let r = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(r, 0, "kill({}, {sig}) failed", self.pid());
    }

    pub fn sigint(&self) {
        self.signal(libc::SIGINT);
    }

    pub fn sigterm(&self) {
        self.signal(libc::SIGTERM);
    }

    /// SIGKILL, then reap.
    pub fn kill9(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.status = Some(self.child.wait().expect("wait"));
    }

    /// Waits for the child to exit; fails the test (and kills the child) after `deadline`.
    pub fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        if let Some(s) = self.status {
            return s;
        }
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                self.status = Some(s);
                return s;
            }
            if start.elapsed() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "logbelt did not exit within {deadline:?}\n--- stderr ---\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits for the exit and asserts code 0.
    pub fn assert_exit_ok(&mut self) {
        let status = self.wait_exit(DEADLINE);
        assert_eq!(
            status.code(),
            Some(0),
            "logbelt exited with {status}\n--- stderr ---\n{}",
            self.stderr()
        );
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.status.is_none() && matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `logbelt` with a clean environment for tests: plain-text logs at info level, stderr to
/// `stderr_path`, run in `cwd`.
pub fn logbelt_command(cwd: &Path, stderr_path: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(cwd)
        .env("NO_COLOR", "1")
        .env(
            "RUST_LOG",
            std::env::var("LOGBELT_TEST_RUST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .env_remove("LOGBELT_FAULTS")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(stderr_path).expect("create the stderr file"));
    cmd
}

/// Removes ANSI escape sequences (`ESC [ … letter`).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `logbelt ARGS` with `ulimit -n` set to `limit` (soft and hard).
pub fn spawn_with_fd_limit(env: &TestEnv, limit: u64, args: &[&str]) -> Daemon {
    use std::os::unix::process::CommandExt;
    let stderr = env.path(&format!("logbelt-nofile-{}.stderr", args.len()));
    let mut cmd = logbelt_command(env.dir.path(), &stderr);
    cmd.args(args).arg(env.config_path());
    // SAFETY: only setrlimit between fork and exec (async-signal-safe).
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Daemon::from_command(cmd, &stderr)
}
