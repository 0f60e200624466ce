//! The `logbelt` command: parses the command line, sets up logging, loads the config and hands
//! over to the library. Exit codes: 0 success, 1 runtime failure, 2 bad usage or bad config.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use logbelt::config::Config;

#[derive(Parser)]
#[command(
    name = "logbelt",
    version,
    about = "Tails JSON-lines log files into SQLite or PostgreSQL, exactly once."
)]
struct Cli {
    /// Log format of logbelt's own messages (filter them with RUST_LOG, e.g. RUST_LOG=logbelt=debug).
    #[arg(long, value_enum, default_value_t = LogFormat::Human, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon. Ctrl-C or SIGTERM drains and exits 0; a second signal exits at once.
    Run {
        #[arg(long, short)]
        config: PathBuf,
        /// Read every matched file to its end, commit, and exit 0.
        #[arg(long)]
        once: bool,
    },
    /// Check the config (and that the database is reachable); exit 0 or 2.
    Validate {
        #[arg(long, short)]
        config: PathBuf,
    },
}

const EXIT_BAD_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command {
        Command::Run { config, once } => {
            let config = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("logbelt: {e}");
                    return ExitCode::from(EXIT_BAD_CONFIG);
                }
            };
            let code = logbelt::run::run(config, once);
            // Exit now: a commit still retrying against a dead database must not hold the process.
            std::process::exit(code);
        }
        Command::Validate { config } => {
            let config = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("logbelt: {e}");
                    return ExitCode::from(EXIT_BAD_CONFIG);
                }
            };
            if let Err(e) = logbelt::db::check_reachable(&config.database) {
                eprintln!("logbelt: {}: database.url: {e}", config.path.display());
                return ExitCode::from(EXIT_BAD_CONFIG);
            }
            println!(
                "{}: OK ({} source(s), database {})",
                config.path.display(),
                config.sources.len(),
                config.database.url
            );
            ExitCode::SUCCESS
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
