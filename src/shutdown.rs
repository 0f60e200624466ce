//! Turns Ctrl-C and SIGTERM into one [`Shutdown`] message to the supervisor; a second signal
//! during the drain exits at once (safe: positions only move with commits, so whatever was not
//! committed is read again at the next start).

use std::sync::atomic::{AtomicUsize, Ordering};

use actix::prelude::*;

use crate::messages::Shutdown;

/// Installs the handler for SIGINT, SIGTERM and SIGHUP.
///
/// # Errors
/// When a handler is already installed or the signals cannot be caught.
pub fn install(supervisor: Recipient<Shutdown>) -> Result<(), ctrlc::Error> {
    static SIGNALS: AtomicUsize = AtomicUsize::new(0);
    ctrlc::set_handler(move || {
        if SIGNALS.fetch_add(1, Ordering::SeqCst) == 0 {
            // The handler runs on its own thread; an Addr is Send, so it posts straight into the
            // supervisor's mailbox. A control message: do_send is fine.
            supervisor.do_send(Shutdown);
        } else {
            // Through the log queue, never a write that can fail or block: this path must end
            // the process whatever state stderr is in.
            tracing::warn!("Second signal, exiting now; uncommitted lines will be read again at the next start.");
            crate::logging::flush(crate::logging::EXIT_FLUSH);
            crate::exit::Exit::SecondSignal.now();
        }
    })
}
