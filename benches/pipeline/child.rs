//! The child process: spawn, reap (with its CPU time), /proc sampling, signals.

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::resource::{getrusage, Usage, UsageWho};
use nix::sys::signal::{kill, Signal};
use nix::sys::time::TimeVal;
use nix::unistd::{sysconf, Pid, SysconfVar};

use crate::{EXIT_DEADLINE, LOGBELT};

/// A running `logbelt` child. Killed (SIGKILL) and reaped on drop if still running.
pub struct Logbelt {
    child: Child,
    log: PathBuf,
    reaped: bool,
    /// The largest `VmHWM` read so far (KiB); see [`Exit::peak_rss_kib`].
    hwm_kib: u64,
    last_sample: Option<Instant>,
}

/// Period of the `VmHWM` reads while waiting for a child.
const HWM_SAMPLE_EVERY: Duration = Duration::from_millis(10);

/// How a child ended, with its resource usage.
#[derive(Debug, Clone, Copy)]
pub struct Exit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// Peak RSS of the child (KiB): its `VmHWM`, read every 10 ms while the bench waits and
    /// last read just before the exit. Not `ru_maxrss`: Linux carries the pre-`exec` high-water
    /// mark over `exec`, and the child starts as a copy of the bench's address space (hundreds of
    /// MiB of input and extracted rows), so `ru_maxrss` reports the bench, not logbelt.
    pub peak_rss_kib: u64,
    /// User + system CPU time.
    pub cpu: Duration,
}

impl Exit {
    pub fn describe(&self) -> String {
        match (self.code, self.signal) {
            (Some(c), _) => format!("exited with {c}"),
            (_, Some(s)) => format!("was killed by signal {s}"),
            _ => "ended".into(),
        }
    }
}

impl Logbelt {
    /// `logbelt run --config CONFIG [--once]`, stdout and stderr into `log`.
    pub fn spawn(config: &Path, once: bool, log: &Path) -> Result<Logbelt, String> {
        let out = File::create(log).map_err(|e| format!("create {}: {e}", log.display()))?;
        let err = out
            .try_clone()
            .map_err(|e| format!("clone {}: {e}", log.display()))?;
        let mut cmd = Command::new(LOGBELT);
        cmd.arg("run").arg("--config").arg(config);
        if once {
            cmd.arg("--once");
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("start {LOGBELT}: {e}"))?;
        Ok(Logbelt {
            child,
            log: log.to_path_buf(),
            reaped: false,
            hwm_kib: 0,
            last_sample: None,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Reads `VmHWM` if the last read is older than [`HWM_SAMPLE_EVERY`] (a zombie has none:
    /// the last read before the exit stays).
    fn sample_hwm(&mut self) {
        if self
            .last_sample
            .is_some_and(|t| t.elapsed() < HWM_SAMPLE_EVERY)
        {
            return;
        }
        self.last_sample = Some(Instant::now());
        if let Some(hwm) = self.status_kib("VmHWM:") {
            self.hwm_kib = self.hwm_kib.max(hwm);
        }
    }

    /// Reaps the child if it has exited. Its CPU time is what reaping it added to the bench's
    /// `RUSAGE_CHILDREN` (the bench reaps one child at a time, on this thread): the same figure
    /// as `wait4`'s.
    fn try_wait(&mut self) -> Result<Option<Exit>, String> {
        if self.reaped {
            return Err("logbelt was already reaped".into());
        }
        self.sample_hwm();
        let before = children_cpu()?;
        let status = match self.child.try_wait() {
            Ok(None) => return Ok(None),
            Ok(Some(status)) => status,
            Err(e) => return Err(format!("wait for logbelt: {e}")),
        };
        self.reaped = true;
        let after = children_cpu()?;
        Ok(Some(Exit {
            code: status.code(),
            signal: status.signal(),
            peak_rss_kib: self.hwm_kib,
            cpu: after.saturating_sub(before),
        }))
    }

    /// Waits for the child to exit (polling every millisecond, reading `VmHWM` every 10), up to
    /// `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> Result<Exit, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(exit) = self.try_wait()? {
                return Ok(exit);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "logbelt (pid {}) did not exit within {timeout:?}\n{}",
                    self.pid(),
                    self.log_tail()
                ));
            }
            thread::sleep(Duration::from_millis(1));
        }
    }

    /// Fails if the child has exited (it should be running).
    pub fn assert_running(&mut self) -> Result<(), String> {
        match self.try_wait()? {
            None => Ok(()),
            Some(exit) => Err(format!(
                "logbelt {} unexpectedly\n{}",
                exit.describe(),
                self.log_tail()
            )),
        }
    }

    /// SIGINT, then waits for the graceful exit; returns it and how long it took.
    pub fn interrupt(&mut self) -> Result<(Exit, Duration), String> {
        self.last_sample = None;
        self.sample_hwm();
        let start = Instant::now();
        if !self.reaped {
            // Our own child, not reaped yet: the pid is still its.
            let pid = Pid::from_raw(self.pid() as i32);
            kill(pid, Signal::SIGINT).map_err(|e| format!("SIGINT to logbelt: {e}"))?;
        }
        let exit = self.wait(EXIT_DEADLINE)?;
        Ok((exit, start.elapsed()))
    }

    /// [`Logbelt::interrupt`], and an error (with the log's tail) unless it exited 0.
    pub fn interrupt_ok(&mut self) -> Result<Exit, String> {
        let (exit, _) = self.interrupt()?;
        if exit.code != Some(0) {
            return Err(format!(
                "logbelt {} after SIGINT\n{}",
                exit.describe(),
                self.log_tail()
            ));
        }
        Ok(exit)
    }

    /// A `VmRSS:`-style field of `/proc/<pid>/status`, in KiB.
    pub fn status_kib(&self, key: &str) -> Option<u64> {
        proc_field_kib(&format!("/proc/{}/status", self.pid()), key)
    }

    /// utime + stime of `/proc/<pid>/stat`, in clock ticks (all threads).
    pub fn cpu_ticks(&self) -> Result<u64, String> {
        let path = format!("/proc/{}/stat", self.pid());
        let stat = fs::read_to_string(&path).map_err(|e| format!("read {path}: {e}"))?;
        // Fields after the `(comm)`: state is field 3, utime 14, stime 15.
        let after = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest)
            .ok_or_else(|| format!("{path}: unexpected format"))?;
        let fields: Vec<&str> = after.split_whitespace().collect();
        let get = |i: usize| -> Result<u64, String> {
            fields
                .get(i)
                .and_then(|f| f.parse().ok())
                .ok_or_else(|| format!("{path}: no field {}", i + 3))
        };
        Ok(get(11)? + get(12)?)
    }

    pub fn open_fds(&self) -> Option<usize> {
        fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .ok()
            .map(|d| d.count())
    }

    /// The last lines of the child's output, for error messages.
    pub fn log_tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = File::open(&self.log) {
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            let _ = f.seek(SeekFrom::Start(len.saturating_sub(4000)));
            let _ = f.read_to_string(&mut text);
        }
        format!("--- tail of {} ---\n{text}", self.log.display())
    }
}

impl Drop for Logbelt {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// User + system CPU time of the bench's reaped children so far.
fn children_cpu() -> Result<Duration, String> {
    let usage: Usage =
        getrusage(UsageWho::RUSAGE_CHILDREN).map_err(|e| format!("getrusage: {e}"))?;
    let tv = |t: TimeVal| Duration::new(t.tv_sec() as u64, t.tv_usec() as u32 * 1000);
    Ok(tv(usage.user_time()) + tv(usage.system_time()))
}

/// A `Key:  123 kB` field of a /proc file, in KiB.
pub fn proc_field_kib(path: &str, key: &str) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

pub fn clock_ticks_per_sec() -> u64 {
    match sysconf(SysconfVar::CLK_TCK) {
        Ok(Some(t)) if t > 0 => t as u64,
        _ => 100,
    }
}
