//! Entry points of the subcommands, as the binary calls them.

use actix::prelude::*;

use crate::config::Config;
use crate::supervisor::{Faults, Supervisor, EXIT_FAILURE};

/// Runs the pipeline until a signal drains it (or, with `once`, until every file is read and
/// committed). Returns the process exit code.
pub fn run(config: Config, once: bool) -> i32 {
    if let Some(addr) = config.metrics.listen {
        if let Err(e) = crate::metrics::serve(addr) {
            tracing::error!(error = %e, "Cannot serve metrics.");
            return EXIT_FAILURE;
        }
    }
    let system = System::new();
    let installed = system.block_on(async move {
        let supervisor = Supervisor::new(config, once, Faults::from_env()).start();
        crate::shutdown::install(supervisor.recipient())
    });
    if let Err(e) = installed {
        tracing::error!(error = %e, "Cannot install the signal handler.");
        return EXIT_FAILURE;
    }
    match system.run_with_code() {
        Ok(code) => code,
        Err(e) => {
            tracing::error!(error = %e, "The actor system failed.");
            EXIT_FAILURE
        }
    }
}
