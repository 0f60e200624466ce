//! Entry points of the subcommands, as the binary calls them.

use actix::prelude::*;

use crate::config::Config;
use crate::exit::Exit;
use crate::supervisor::{Faults, Supervisor};

/// Runs the pipeline until a signal drains it (or, with `once`, until every file is read and
/// committed). Returns how the process exits.
pub fn run(config: Config, once: bool) -> Exit {
    if let Some(addr) = config.metrics.listen {
        if let Err(e) = crate::metrics::serve(addr, config.metrics.unhealthy_after) {
            tracing::error!(error = %e, "Cannot serve metrics.");
            return Exit::Runtime;
        }
    }
    if let Err((code, e)) = crate::web::serve_beside(&config) {
        crate::logging::report(&format!("logbelt: {e}"));
        return code;
    }
    if once {
        show_progress();
    }
    let system = System::new();
    let installed = system.block_on(async move {
        let supervisor = Supervisor::new(config, once, Faults::from_env()).start();
        crate::shutdown::install(supervisor.recipient())
    });
    if let Err(e) = installed {
        tracing::error!(error = %e, "Cannot install the signal handler.");
        return Exit::Runtime;
    }
    match system.run_with_code() {
        Ok(code) => Exit::from_code(code),
        Err(e) => {
            tracing::error!(error = %e, "The actor system failed.");
            Exit::Runtime
        }
    }
}

/// How often the progress of `run --once` is shown when stderr is not a terminal.
const PROGRESS_LOG_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// Shows the progress of `run --once` until the process exits: a progress bar on a terminal
/// (bytes committed of the bytes to read, rows/s, ETA), a periodic log line otherwise.
fn show_progress() {
    use std::io::IsTerminal;
    use std::sync::atomic::Ordering::Relaxed;

    use crate::metrics::{BYTES_COMMITTED, BYTES_TO_READ, ROWS_COMMITTED};

    let started = std::time::Instant::now();
    let terminal = std::io::stderr().is_terminal();
    let spawned = std::thread::Builder::new()
        .name("logbelt-progress".into())
        .spawn(move || {
            if terminal {
                let bar = indicatif::ProgressBar::new(0);
                let style = indicatif::ProgressStyle::with_template(
                    "{bar:40} {bytes}/{total_bytes} {msg} ETA {eta}",
                );
                if let Ok(style) = style {
                    bar.set_style(style);
                }
                loop {
                    std::thread::sleep(std::time::Duration::from_millis(200));
                    bar.set_length(BYTES_TO_READ.load(Relaxed));
                    bar.set_position(BYTES_COMMITTED.load(Relaxed));
                    let rate = ROWS_COMMITTED.load(Relaxed) as f64
                        / started.elapsed().as_secs_f64().max(0.001);
                    bar.set_message(format!("{rate:.0} rows/s"));
                }
            } else {
                loop {
                    std::thread::sleep(PROGRESS_LOG_INTERVAL);
                    let rows = ROWS_COMMITTED.load(Relaxed);
                    tracing::info!(
                        bytes_committed = BYTES_COMMITTED.load(Relaxed),
                        bytes_to_read = BYTES_TO_READ.load(Relaxed),
                        rows,
                        rows_per_s = (rows as f64 / started.elapsed().as_secs_f64()) as u64,
                        "Progress."
                    );
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "No progress display.");
    }
}
