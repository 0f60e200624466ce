//! The command line, after `cargo bench --bench pipeline --` (clap).

use clap::error::ErrorKind;
use clap::{ArgAction, CommandFactory, Parser};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    }
}

/// The parts of the bench, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Part {
    Throughput,
    Stall,
    Latency,
    Idle,
    Retention,
    Formats,
}

/// The parts that run without `--only` (retention and formats are asked for by name: they
/// ingest the input several more times).
const ALL_PARTS: [Part; 4] = [Part::Throughput, Part::Stall, Part::Latency, Part::Idle];

/// `--backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum BackendArg {
    Sqlite,
    Postgres,
    Both,
}

/// Measures logbelt against each database's own bulk load of the same rows.
#[derive(Debug, Parser)]
#[command(
    bin_name = "cargo bench --bench pipeline --",
    args_override_self = true,
    after_help = "PostgreSQL: set LOGBELT_BENCH_POSTGRES_URL or LOGBELT_TEST_POSTGRES_URL to an \
                  admin URL."
)]
struct Args {
    /// Generated lines for the throughput and stall parts (`_` or `,` may separate digits)
    #[arg(long, value_name = "N", default_value = "1000000", value_parser = positive::<usize>)]
    lines: usize,
    /// Backends to measure [default: both when a PostgreSQL URL is set, else sqlite]
    #[arg(long, value_enum)]
    backend: Option<BackendArg>,
    /// Parts to run, comma-separated: throughput, stall, latency, idle, retention, formats
    /// [default: all but retention and formats]
    #[arg(long, value_name = "PARTS", value_delimiter = ',', value_parser = part)]
    only: Vec<Part>,
    /// Throughput runs per backend (the median is reported)
    #[arg(long, value_name = "N", default_value = "3", value_parser = positive::<usize>)]
    runs: usize,
    /// How long the database is stalled
    #[arg(long, value_name = "S", default_value = "10", value_parser = number::<u64>)]
    stall_secs: u64,
    /// How long lines are written in the latency part
    #[arg(long, value_name = "S", default_value = "30", value_parser = number::<u64>)]
    latency_secs: u64,
    /// Lines per second in the latency part
    #[arg(long, value_name = "LINES_PER_S", default_value = "100", value_parser = positive::<u64>)]
    latency_rate: u64,
    /// Tailed files in the idle part
    #[arg(long, value_name = "N", default_value = "1000", value_parser = positive::<usize>)]
    idle_files: usize,
    /// The idle part's CPU window
    #[arg(long, value_name = "S", default_value = "30", value_parser = number::<u64>)]
    idle_secs: u64,
    /// Keep every measurement's folder (configs, databases, logbelt's logs) for inspection
    #[arg(long)]
    keep: bool,
    /// Passed by `cargo bench` to every harness-less bench; ignored.
    #[arg(long = "bench", hide = true, action = ArgAction::Count)]
    _bench: u8,
}

/// The options every part reads.
#[derive(Debug)]
pub struct Options {
    pub lines: usize,
    pub backends: Vec<Backend>,
    /// Deduplicated, in the order they run.
    pub parts: Vec<Part>,
    pub runs: usize,
    pub stall_secs: u64,
    pub latency_secs: u64,
    pub latency_rate: u64,
    pub idle_files: usize,
    pub idle_secs: u64,
    /// Admin URL of the PostgreSQL server, when one is configured.
    pub pg_admin: Option<String>,
    /// Keep every measurement's folder (configs, databases, logbelt's logs) for inspection.
    pub keep: bool,
}

impl Options {
    /// Parses `std::env::args`; exits 2 with the usage on a bad argument (0 after `--help`).
    pub fn from_args() -> Options {
        let args = Args::parse();
        let pg_admin = ["LOGBELT_BENCH_POSTGRES_URL", "LOGBELT_TEST_POSTGRES_URL"]
            .iter()
            .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()));
        let backends = match (args.backend, pg_admin.is_some()) {
            (None, true) | (Some(BackendArg::Both), true) => {
                vec![Backend::Sqlite, Backend::Postgres]
            }
            (None, false) | (Some(BackendArg::Sqlite), _) => vec![Backend::Sqlite],
            (Some(BackendArg::Postgres), true) => vec![Backend::Postgres],
            (Some(BackendArg::Postgres | BackendArg::Both), false) => Args::command()
                .error(
                    ErrorKind::MissingRequiredArgument,
                    "PostgreSQL asked for, but neither LOGBELT_BENCH_POSTGRES_URL nor \
                     LOGBELT_TEST_POSTGRES_URL is set",
                )
                .exit(),
        };
        let mut parts = args.only;
        if parts.is_empty() {
            parts = ALL_PARTS.to_vec();
        }
        parts.sort_unstable();
        parts.dedup();
        Options {
            lines: args.lines,
            backends,
            parts,
            runs: args.runs,
            stall_secs: args.stall_secs,
            latency_secs: args.latency_secs,
            latency_rate: args.latency_rate,
            idle_files: args.idle_files,
            idle_secs: args.idle_secs,
            pg_admin,
            keep: args.keep,
        }
    }
}

/// A non-negative integer; `_` and `,` are allowed as digit separators (`1_000_000`).
fn number<T: std::str::FromStr>(text: &str) -> Result<T, String> {
    let digits: String = text.chars().filter(|c| *c != '_' && *c != ',').collect();
    digits
        .parse()
        .map_err(|_| format!("expected a non-negative integer, found `{text}`"))
}

/// A [`number`] above zero.
fn positive<T: std::str::FromStr + Default + PartialEq>(text: &str) -> Result<T, String> {
    let n = number::<T>(text)?;
    if n == T::default() {
        return Err("must be > 0".into());
    }
    Ok(n)
}

fn part(text: &str) -> Result<Part, String> {
    match text.trim() {
        "throughput" => Ok(Part::Throughput),
        "stall" => Ok(Part::Stall),
        "latency" => Ok(Part::Latency),
        "idle" => Ok(Part::Idle),
        "retention" => Ok(Part::Retention),
        "formats" => Ok(Part::Formats),
        other => Err(format!(
            "unknown part `{other}` (throughput, stall, latency, idle, retention, formats)"
        )),
    }
}
