//! The `logbelt` command: parses the command line, sets up logging, loads the config and hands
//! over to the library. Exit codes: [`logbelt::exit::Exit`].

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use logbelt::config::Config;
use logbelt::exit::Exit;

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
    /// Show each file's committed position, its size on disk and the lag (read-only).
    ///
    /// Lists every row of `files` (all hosts; this host's marked `*`) and the row totals.
    /// Size and lag are `-` for another host's file, a file that is gone, or a path that now
    /// holds another file.
    Status {
        /// The config file: its [database] is read, never written.
        #[arg(long, short)]
        config: PathBuf,
        /// Print one JSON document instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Print stored events, oldest first (read-only).
    ///
    /// Of the matching events, the --limit most recent are printed, oldest first (like
    /// `tail`). Filters combine with AND. An event without a timestamp counts as the oldest.
    Query(Box<QueryArgs>),
    /// Serve the web console and its JSON API over the database (read-only).
    ///
    /// Listens on 127.0.0.1:8080 unless --listen says otherwise; an address that is not
    /// loopback needs a token (--token-file, or LOGBELT_WEB_TOKEN), sent by clients as
    /// `Authorization: Bearer TOKEN`.
    Serve {
        /// The config file: its [database] is read, never written.
        #[arg(long, short)]
        config: PathBuf,
        /// HOST:PORT to listen on.
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// A file holding the access token (at least 16 characters).
        #[arg(long, value_name = "PATH")]
        token_file: Option<PathBuf>,
    },
}

/// The arguments of `logbelt query`.
#[derive(clap::Args)]
struct QueryArgs {
    /// The config file: its [database] is read, never written.
    #[arg(long, short)]
    config: PathBuf,
    /// Only events at or after this time: a duration ago (30s, 15m, 1h, 2d, 1w, 1h30m) or
    /// an RFC 3339 time (2025-01-31T12:00:00Z).
    #[arg(long, value_name = "TIME", value_parser = logbelt::inspect::parse_time)]
    since: Option<chrono::DateTime<chrono::Utc>>,
    /// Only events before this time (same forms as --since).
    #[arg(long, value_name = "TIME", value_parser = logbelt::inspect::parse_time)]
    until: Option<chrono::DateTime<chrono::Utc>>,
    /// Only these levels, e.g. `error` or `warn,error` (case-insensitive).
    #[arg(long, value_name = "LEVEL[,LEVEL...]", value_delimiter = ',')]
    level: Vec<String>,
    /// Only events whose message or JSON text contains TEXT (case-insensitive, literal).
    /// TEXT with 4 or more ASCII letters and digits reads only the search blocks that may
    /// hold it; shorter TEXT (and, on PostgreSQL, TEXT with `,`, `{` or `}`) is found by
    /// scanning the events the other filters leave (give --since, --level… to bound it).
    #[arg(long, value_name = "TEXT")]
    grep: Option<String>,
    /// Only events whose object has VALUE at KEY (repeatable). KEY is a dotted path
    /// (http.status, user.id); VALUE a JSON number (matches that number), true, false,
    /// null, or a string (any other text, or JSON-quoted: "500" is the string).
    #[arg(long = "field", value_name = "KEY=VALUE", value_parser = logbelt::inspect::filter::parse_field)]
    fields: Vec<logbelt::inspect::filter::FieldFilter>,
    /// Only events of this source.
    #[arg(long, value_name = "NAME")]
    source: Option<String>,
    /// Only events from this host.
    #[arg(long, value_name = "HOST")]
    host: Option<String>,
    /// Print the N most recent matching events (still oldest first).
    #[arg(long, value_name = "N", default_value_t = logbelt::inspect::query::DEFAULT_LIMIT,
          value_parser = clap::value_parser!(u32).range(1..))]
    limit: u32,
    /// Only events before this cursor TS,ID (the page before: the --limit most recent of
    /// them). The notes on stderr print the cursor of the next page; JSON lines hold `ts`
    /// and `id`; an event without a timestamp is `-,ID`.
    #[arg(long, value_name = "TS,ID", allow_hyphen_values = true,
          value_parser = logbelt::inspect::filter::parse_cursor)]
    before: Option<logbelt::inspect::filter::Cursor>,
    /// Only events after this cursor TS,ID (without --before: the --limit oldest of them,
    /// the next page forward).
    #[arg(long, value_name = "TS,ID", allow_hyphen_values = true,
          value_parser = logbelt::inspect::filter::parse_cursor)]
    after: Option<logbelt::inspect::filter::Cursor>,
    /// Count the matching events instead of printing them (by --by and --bucket).
    #[arg(long)]
    count: bool,
    /// With --count: one count per level, source or host.
    #[arg(long, value_enum, requires = "count")]
    by: Option<logbelt::inspect::count::GroupBy>,
    /// With --count: one count per time bucket of the event's timestamp (UTC); events
    /// without one are counted under `-`.
    #[arg(long, value_enum, requires = "count")]
    bucket: Option<logbelt::inspect::count::Bucket>,
    /// Do not use the search blocks: scan (same results; for comparison).
    #[arg(long)]
    scan: bool,
    /// Print JSON lines: {"ts", "level", "message", "source", "host", "file_id",
    /// "file_offset", "id", "fields"} with `fields` the stored object (with --count:
    /// {"bucket", "level"|"source"|"host", "count"}).
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let exit = command(cli.command);
    logbelt::logging::flush(logbelt::logging::EXIT_FLUSH);
    exit.into()
}

fn command(command: Command) -> Exit {
    match command {
        Command::Run { config, once } => {
            let config = match load_config(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let exit = logbelt::run::run(config, once);
            logbelt::logging::flush(logbelt::logging::EXIT_FLUSH);
            // Exit now: a commit still retrying against a dead database must not hold the process.
            exit.now()
        }
        Command::Validate { config } => {
            let config = match load_config(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            if let Err(e) = logbelt::db::check_reachable(&config.database) {
                logbelt::logging::report(&format!(
                    "logbelt: {}: database.url: {e}",
                    config.path.display()
                ));
                return Exit::Usage;
            }
            let ok = format!(
                "{}: OK ({} source(s), database {})\n",
                config.path.display(),
                config.sources.len(),
                config.database.url
            );
            let mut stdout = std::io::stdout().lock();
            match stdout
                .write_all(ok.as_bytes())
                .and_then(|()| stdout.flush())
            {
                Ok(()) => Exit::Ok,
                Err(e) => {
                    logbelt::logging::report(&format!("logbelt: cannot write to stdout: {e}"));
                    Exit::Runtime
                }
            }
        }
        Command::Status { config, json } => {
            let config = match load_config(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            logbelt::inspect::exit_code(logbelt::inspect::status::status(&config, json))
        }
        Command::Serve {
            config,
            listen,
            token_file,
        } => {
            let config = match load_config(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let options = logbelt::web::ServeOptions {
                listen,
                token_file,
                token_env: std::env::var(logbelt::web::TOKEN_VAR).ok(),
            };
            logbelt::web::serve(config, &options)
        }
        Command::Query(q) => {
            let QueryArgs {
                config,
                since,
                until,
                level,
                grep,
                fields,
                source,
                host,
                limit,
                before,
                after,
                count,
                by,
                bucket,
                scan,
                json,
            } = *q;
            let config = match load_config(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let options = logbelt::inspect::query::QueryOptions {
                conditions: logbelt::inspect::filter::Conditions {
                    since,
                    until,
                    levels: level,
                    grep,
                    fields,
                    source,
                    host,
                    before,
                    after,
                    scan,
                },
                limit,
                count,
                by,
                bucket,
                json,
            };
            logbelt::inspect::exit_code(logbelt::inspect::query::query(&config, &options))
        }
    }
}

/// Loads the config, or prints its one-line error and gives the exit code for a bad config.
fn load_config(path: &std::path::Path) -> Result<Config, Exit> {
    Config::load(path).map_err(|e| {
        logbelt::logging::report(&format!("logbelt: {e}"));
        Exit::Usage
    })
}

/// logbelt's own log on stderr, through [`logbelt::logging`]: a stderr that fails or blocks
/// loses log lines (counted), never the process.
fn init_logging(format: LogFormat) {
    logbelt::logging::start();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(logbelt::logging::Stderr)
        .log_internal_errors(false);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
