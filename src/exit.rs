//! The exit codes of every command (README, "Commands"), and their one conversion to what the
//! process returns.

use std::process::ExitCode;

/// How a command ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Success, including a graceful drain after Ctrl-C or SIGTERM.
    Ok = 0,
    /// A runtime failure: the database cannot be opened, read or written, a drain timed out, the
    /// restart budget is exhausted, stdout cannot be written.
    Runtime = 1,
    /// Bad usage or a bad config (also a database `validate` cannot reach).
    Usage = 2,
    /// A second signal during the drain: exit at once (128 + SIGINT, as shells report it).
    SecondSignal = 130,
}

impl Exit {
    /// The process exit code.
    pub fn code(self) -> i32 {
        self as i32
    }

    /// The `Exit` whose [`code`](Exit::code) this is: the way back from the integer the actor
    /// system ends with. A code no `Exit` has is a runtime failure.
    pub fn from_code(code: i32) -> Exit {
        [Exit::Ok, Exit::Usage, Exit::SecondSignal]
            .into_iter()
            .find(|e| e.code() == code)
            .unwrap_or(Exit::Runtime)
    }

    /// Ends the process now with this code, whatever still runs (a commit retrying against a
    /// dead database must not hold the process).
    ///
    /// `_exit`, not `exit`: `exit` runs the C library's exit handlers (libpq's and OpenSSL's
    /// clean-up among them) while other threads may still be closing a PostgreSQL connection,
    /// and that race ended a finished `run --once` with SIGSEGV (seen once in CI, after
    /// "Exiting. code=0"). Nothing of logbelt's needs those handlers: the log is flushed by the
    /// caller and stdout here; every commit is already durable or will be read again.
    pub fn now(self) -> ! {
        use std::io::Write;
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().flush();
        // SAFETY: `_exit` ends the process without running exit handlers or destructors; it
        // takes no pointers and cannot fail.
        unsafe { libc::_exit(self.code()) }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit as u8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_the_documented_ones() {
        let all = [Exit::Ok, Exit::Runtime, Exit::Usage, Exit::SecondSignal];
        assert_eq!(all.map(Exit::code), [0, 1, 2, 130]);
        for e in all {
            assert_eq!(Exit::from_code(e.code()), e);
        }
        assert_eq!(Exit::from_code(7), Exit::Runtime);
    }
}
