use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::error::line_column;
use super::*;

const PATH: &str = "/tmp/x/logbelt.toml";

const MINIMAL: &str = r#"
[database]
url = "sqlite://logbelt.db"

[[sources]]
name = "app"
include = ["logs/*.jsonl"]
"#;

fn no_env() -> rules::Env {
    Box::new(|_| None)
}

fn load(text: &str) -> Result<Config, ConfigError> {
    parse(text, PathBuf::from(PATH), no_env())
}

fn load_with_env(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let vars: Vec<(String, OsString)> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), OsString::from(v)))
        .collect();
    let lookup = move |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    parse(text, PathBuf::from(PATH), Box::new(lookup))
}

fn error(text: &str) -> String {
    match load(text) {
        Ok(config) => panic!("expected an error, got {config:?}"),
        Err(e) => e.to_string(),
    }
}

/// MINIMAL plus `extra` appended (new tables).
fn error_with(extra: &str) -> String {
    error(&format!("{MINIMAL}{extra}"))
}

// --- every error class, exact message -------------------------------------------------

#[test]
fn syntax_error_has_line_and_column() {
    let text = "[database]\nurl = \"sqlite://x.db\n";
    assert_eq!(
        error(text),
        "/tmp/x/logbelt.toml:2:21: TOML syntax error: invalid basic string, expected `\"`"
    );
}

#[test]
fn syntax_error_duplicate_key_names_the_key() {
    let text = "[database]\nurl = \"sqlite://a.db\"\nurl = \"sqlite://b.db\"\n";
    assert_eq!(
        error(text),
        "/tmp/x/logbelt.toml:3:1: TOML syntax error: duplicate key `url`"
    );
}

#[test]
fn unknown_key_in_source_lists_the_expected_keys() {
    let text =
        "[[sources]]\nname = \"app\"\ninclde = [\"a\"]\n\n[database]\nurl = \"sqlite://x.db\"\n";
    let e = parse(text, PathBuf::from("/etc/logbelt.toml"), no_env()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "/etc/logbelt.toml:3:1: sources[0]: unknown key `inclde`, expected one of `name`, `include`, `exclude`, `start_at`, `follow_symlinks`"
    );
}

#[test]
fn unknown_key_at_top_level() {
    assert_eq!(
        error(&format!("foo = 1\n{MINIMAL}")),
        "/tmp/x/logbelt.toml:1:1: unknown key `foo`, expected one of `database`, `agent`, `sources`, `pipeline`, `parse`, `shutdown`, `supervisor`, `metrics`"
    );
}

#[test]
fn unknown_key_in_agent_and_subtable() {
    assert_eq!(
        error_with("[agent]\nhots = \"a\"\n"),
        "/tmp/x/logbelt.toml:9:1: agent: unknown key `hots`, expected `host`"
    );
    assert_eq!(
        error_with("[pipeline.extra]\nx = 1\n"),
        "/tmp/x/logbelt.toml:8:11: pipeline: unknown key `extra`, expected one of `batch_rows`, `flush_interval_ms`, `channel_capacity`, `mailbox_capacity`, `read_buffer_bytes`, `poll_interval_ms`"
    );
}

#[test]
fn out_of_range_integer() {
    let text = "[database]\nurl = \"sqlite://x.db\"\n[[sources]]\nname = \"app\"\ninclude = [\"a\"]\n[pipeline]\nbatch_rows = 0\n";
    let e = parse(text, PathBuf::from("/etc/logbelt.toml"), no_env()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "/etc/logbelt.toml:7:14: pipeline.batch_rows: expected an integer from 1 to 100000, found 0"
    );
    match e {
        ConfigError::Invalid { location, key, .. } => {
            assert_eq!((location.line, location.column), (7, 14));
            assert_eq!(key.as_deref(), Some("pipeline.batch_rows"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn wrong_type_uses_the_same_expectation_as_the_range_check() {
    assert_eq!(
        error_with("[pipeline]\nbatch_rows = \"5\"\n"),
        "/tmp/x/logbelt.toml:9:14: pipeline.batch_rows: expected an integer from 1 to 100000, found \"5\""
    );
    assert_eq!(
        error_with("[pipeline]\nbatch_rows = 5.0\n"),
        "/tmp/x/logbelt.toml:9:14: pipeline.batch_rows: expected an integer from 1 to 100000, found a float 5.0"
    );
    assert_eq!(
        error_with("[shutdown]\ndrain_timeout_ms = 99999999999999999999\n"),
        "/tmp/x/logbelt.toml:9:20: shutdown.drain_timeout_ms: expected an integer from 1 to 86400000, found 99999999999999999999"
    );
}

#[test]
fn wrong_type_of_tables_strings_and_lists() {
    assert_eq!(
        error(&format!("pipeline = 5\n{MINIMAL}")),
        "/tmp/x/logbelt.toml:1:12: pipeline: expected a table, found 5"
    );
    assert_eq!(
        error("[database]\nurl = 5\n"),
        "/tmp/x/logbelt.toml:2:7: database.url: expected a database URL string, found 5"
    );
    assert_eq!(
        error("[database]\nurl = \"sqlite://x.db\"\n[[sources]]\nname = \"a\"\ninclude = \"logs/*.jsonl\"\n"),
        "/tmp/x/logbelt.toml:5:11: sources[0].include: expected an array of glob pattern strings, found \"logs/*.jsonl\""
    );
    assert_eq!(
        error("[database]\nurl = \"sqlite://x.db\"\n[[sources]]\nname = \"a\"\ninclude = [\"x\"]\n[[sources]]\nname = \"b\"\ninclude = [\"y\", 3]\n"),
        "/tmp/x/logbelt.toml:8:17: sources[1].include[1]: expected a glob pattern string, found 3"
    );
    assert_eq!(
        error("[database]\nurl = \"sqlite://x.db\"\n[sources]\nname = \"a\"\n"),
        "/tmp/x/logbelt.toml:3:1: sources: expected an array of tables ([[sources]]), found a table"
    );
    assert_eq!(
        error_with("[[pipeline]]\nbatch_rows = 1\n"),
        "/tmp/x/logbelt.toml:8:1: pipeline: expected a table, found an array of tables"
    );
    assert_eq!(
        error_with("[parse]\nlevel_fields = [\"level\", true]\n"),
        "/tmp/x/logbelt.toml:9:26: parse.level_fields[1]: expected a field name string, found true"
    );
    assert_eq!(
        error_with("[agent]\nhost = 1979-05-27\n"),
        "/tmp/x/logbelt.toml:9:8: agent.host: expected a string, found a date-time 1979-05-27"
    );
}

#[test]
fn every_type_error_path_has_an_expectation() {
    // A type error at any key must not fall back to serde's own wording.
    let cases = [
        "[database]\nurl = \"sqlite://x.db\"\nwriters = \"2\"\n[[sources]]\nname = \"a\"\ninclude = [\"x\"]\n",
        "[database]\nurl = \"sqlite://x.db\"\n[[sources]]\nname = 1\ninclude = [\"x\"]\n",
        "[database]\nurl = \"sqlite://x.db\"\n[[sources]]\nname = \"a\"\ninclude = [\"x\"]\nexclude = \"y\"\n",
        "[database]\nurl = \"sqlite://x.db\"\n[[sources]]\nname = \"a\"\ninclude = [\"x\"]\nstart_at = 1\n",
        "sources = [1]\n[database]\nurl = \"sqlite://x.db\"\n",
        "sources = 1\n[database]\nurl = \"sqlite://x.db\"\n",
        "database = 1\n",
        "[database]\nurl = \"sqlite://x.db\"\n[[sources]]\nname = \"a\"\ninclude = [\"x\"]\n[parse]\nmessage_fields = \"msg\"\n",
        "[database]\nurl = \"sqlite://x.db\"\n[[sources]]\nname = \"a\"\ninclude = [\"x\"]\n[supervisor]\nmax_restarts = false\n",
    ];
    for text in cases {
        let message = error(text);
        assert!(!message.contains("invalid type"), "{message}");
        assert!(message.contains(": expected "), "{message}");
    }
}

#[test]
fn missing_required_keys() {
    assert_eq!(
        error("[database]\nurl = \"sqlite://x.db\"\n\n[[sources]]\nname = \"app\"\n"),
        "/tmp/x/logbelt.toml:4:1: sources[0].include is required"
    );
    assert_eq!(
        error("[database]\nurl = \"sqlite://x.db\"\n\n[[sources]]\ninclude = [\"x\"]\n"),
        "/tmp/x/logbelt.toml:4:1: sources[0].name is required"
    );
    assert_eq!(
        error("[database]\nurl = \"sqlite://x.db\"\n"),
        "/tmp/x/logbelt.toml:1:1: at least one [[sources]] table is required"
    );
    assert_eq!(
        error("sources = []\n[database]\nurl = \"sqlite://x.db\"\n"),
        "/tmp/x/logbelt.toml:1:11: sources: at least one [[sources]] table is required"
    );
}

#[test]
fn without_a_database_url_sqlite_next_to_the_config_file() {
    for text in [
        "[[sources]]\nname = \"a\"\ninclude = [\"x\"]\n",
        "\n[database]\nbusy_timeout_ms = 100\n[[sources]]\nname = \"a\"\ninclude = [\"x\"]\n",
    ] {
        let config = load(text).unwrap();
        assert_eq!(
            config.database.url,
            DatabaseUrl::Sqlite {
                path: PathBuf::from("/tmp/x/logbelt.db")
            },
            "{text}"
        );
    }
}

#[test]
fn empty_include_list_and_empty_pattern() {
    assert_eq!(
        error("[database]\nurl = \"sqlite://x.db\"\n[[sources]]\nname = \"a\"\ninclude = []\n"),
        "/tmp/x/logbelt.toml:5:11: sources[0].include: expected a non-empty array of glob patterns, found []"
    );
    assert_eq!(
        error("[database]\nurl = \"sqlite://x.db\"\n[[sources]]\nname = \"a\"\ninclude = [\"\"]\n"),
        "/tmp/x/logbelt.toml:5:12: sources[0].include[0]: expected a non-empty glob pattern, found \"\""
    );
}

#[test]
fn duplicate_and_invalid_source_names() {
    assert_eq!(
        error_with("\n[[sources]]\nname = \"app\"\ninclude = [\"other/*.jsonl\"]\n"),
        "/tmp/x/logbelt.toml:10:8: sources[1].name: duplicate source name \"app\" (already used by sources[0] at line 6)"
    );
    assert_eq!(
        error("[database]\nurl = \"sqlite://x.db\"\n[[sources]]\nname = \"my app\"\ninclude = [\"x\"]\n"),
        "/tmp/x/logbelt.toml:4:8: sources[0].name: expected a name of letters, digits, '_', '.' or '-', found \"my app\""
    );
    assert_eq!(
        error("[database]\nurl = \"sqlite://x.db\"\n[[sources]]\nname = \"\"\ninclude = [\"x\"]\n"),
        "/tmp/x/logbelt.toml:4:8: sources[0].name: expected a name of letters, digits, '_', '.' or '-', found \"\""
    );
}

#[test]
fn unknown_url_scheme_is_rejected_without_showing_the_password() {
    let e = error("[database]\nurl = \"mysql://root:hunter2@db:3306/logs\"\n[[sources]]\nname = \"a\"\ninclude = [\"x\"]\n");
    assert_eq!(
        e,
        "/tmp/x/logbelt.toml:2:7: database.url: expected a URL starting with sqlite:// or postgres:// (or postgresql://), found \"mysql://root:***@db:3306/logs\""
    );
    assert!(!e.contains("hunter2"));
    assert_eq!(
        error("[database]\nurl = \"sqlite://\"\n[[sources]]\nname = \"a\"\ninclude = [\"x\"]\n"),
        "/tmp/x/logbelt.toml:2:7: database.url: expected a file path after sqlite://, found \"sqlite://\""
    );
}

#[test]
fn writers_out_of_range() {
    let text = |n: i64| {
        format!("[database]\nurl = \"postgres://u:p@h/db\"\nwriters = {n}\n[[sources]]\nname = \"a\"\ninclude = [\"x\"]\n")
    };
    assert_eq!(
        error(&text(0)),
        "/tmp/x/logbelt.toml:3:11: database.writers: expected an integer from 1 to 64, found 0"
    );
    assert_eq!(
        error(&text(-3)),
        "/tmp/x/logbelt.toml:3:11: database.writers: expected an integer from 1 to 64, found -3"
    );
    assert_eq!(
        error(&text(65)),
        "/tmp/x/logbelt.toml:3:11: database.writers: expected an integer from 1 to 64, found 65"
    );
    assert_eq!(load(&text(64)).unwrap().database.writers, 64);
}

#[test]
fn backoff_bounds_must_be_ordered() {
    assert_eq!(
        error("[database]\nurl = \"sqlite://x.db\"\nretry_initial_backoff_ms = 50000\n[[sources]]\nname = \"a\"\ninclude = [\"x\"]\n"),
        "/tmp/x/logbelt.toml:3:28: database.retry_initial_backoff_ms: expected at most database.retry_max_backoff_ms (30000), found 50000"
    );
    assert_eq!(
        error_with("[supervisor]\nrestart_backoff_max_ms = 50\n"),
        "/tmp/x/logbelt.toml:9:26: supervisor.restart_backoff_max_ms: expected at least supervisor.restart_backoff_initial_ms (100), found 50"
    );
}

#[test]
fn missing_environment_variable() {
    let text = "[database]\nurl = \"${DB_URL}\"\n[[sources]]\nname = \"a\"\ninclude = [\"x\"]\n";
    let e = parse(text, PathBuf::from("/etc/logbelt.toml"), no_env()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "/etc/logbelt.toml:2:7: database.url: environment variable `DB_URL` is not set (in \"${DB_URL}\")"
    );
}

#[test]
fn malformed_dollar_signs() {
    let text = |url: &str| {
        format!("[database]\nurl = \"{url}\"\n[[sources]]\nname = \"a\"\ninclude = [\"x\"]\n")
    };
    assert_eq!(
        error(&text("postgres://u:pa$word@h/db")),
        "/tmp/x/logbelt.toml:2:7: database.url: `$` must start `${NAME}` or be doubled as `$$` (in \"postgres://u:***@h/db\")"
    );
    assert_eq!(
        error(&text("sqlite://${DIR")),
        "/tmp/x/logbelt.toml:2:7: database.url: unclosed `${` (in \"sqlite://${DIR\")"
    );
    assert_eq!(
        error(&text("sqlite://${1X}/a.db")),
        "/tmp/x/logbelt.toml:2:7: database.url: invalid environment variable name \"1X\" (in \"sqlite://${1X}/a.db\")"
    );
}

#[test]
fn invalid_glob() {
    let text = "[database]\nurl = \"sqlite://x.db\"\n\n[[sources]]\nname = \"a\"\ninclude = [\"x\"]\n\n\n[[sources]]\nname = \"b\"\n\ninclude = [\"logs/[a\"]\n";
    let e = parse(text, PathBuf::from("/etc/logbelt.toml"), no_env()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "/etc/logbelt.toml:12:12: sources[1].include[0]: invalid glob \"logs/[a\": unclosed character class; missing ']'"
    );
    assert_eq!(
        error_with("exclude = [\"*.{gz\"]\n"),
        "/tmp/x/logbelt.toml:8:12: sources[0].exclude[0]: invalid glob \"*.{gz\": unclosed alternate group; missing '}' (maybe escape '{' with '[{]'?)"
    );
}

#[test]
fn include_syntax() {
    let text = |pattern: &str| {
        format!("[database]\nurl = \"sqlite://x.db\"\n[[sources]]\nname = \"a\"\ninclude = [\"{pattern}\"]\n")
    };
    let alternatives = load(&text("logs/*.{jsonl,log}")).unwrap();
    assert_eq!(
        alternatives.sources[0].include,
        ["/tmp/x/logs/*.{jsonl,log}"]
    );
    assert_eq!(
        error(&text("logs/a**/x.log")),
        "/tmp/x/logbelt.toml:5:12: sources[0].include[0]: invalid glob \"logs/a**/x.log\": `**` must be a whole path component, as in \"logs/**/*.jsonl\""
    );
    let ok = load(&text("logs/**/[{]x[]]*.log")).unwrap();
    assert_eq!(ok.sources[0].include, ["/tmp/x/logs/**/[{]x[]]*.log"]);
}

/// `{a,b}` in `include` (once refused for a glob crate logbelt does not use): the scan finds
/// every alternative, and the folder watched for new files is the literal part before it.
#[test]
fn include_alternatives_are_found_by_the_scan() {
    let dir = tempfile::tempdir().unwrap();
    for folder in ["logs", "a", "b", "c"] {
        std::fs::create_dir(dir.path().join(folder)).unwrap();
    }
    let files = [
        "logs/x.jsonl",
        "logs/y.log",
        "logs/z.txt",
        "a/app.log",
        "b/app.log",
        "c/app.log",
    ];
    for file in files {
        std::fs::write(dir.path().join(file), "{}\n").unwrap();
    }
    let path = dir.path().join("logbelt.toml");
    let text = "[[sources]]\nname = \"a\"\ninclude = [\"logs/*.{jsonl,log}\", \"{a,b}/app.log\"]\n";
    std::fs::write(&path, text).unwrap();
    let config = Config::load(&path).unwrap();

    let globs = crate::tail::discover::Globs::new(&config.sources);
    let mut found: Vec<PathBuf> = globs.expand().into_iter().map(|(_, p, _)| p).collect();
    found.sort();
    let want: Vec<PathBuf> = ["a/app.log", "b/app.log", "logs/x.jsonl", "logs/y.log"]
        .iter()
        .map(|f| dir.path().join(f))
        .collect();
    assert_eq!(found, want);

    let roots: Vec<&Path> = globs.patterns().map(|p| p.root()).collect();
    assert_eq!(roots, [dir.path().join("logs").as_path(), dir.path()]);
}

#[test]
fn tilde_is_not_expanded() {
    assert_eq!(
        error("[database]\nurl = \"sqlite://x.db\"\n[[sources]]\nname = \"a\"\ninclude = [\"~/logs/*.log\"]\n"),
        "/tmp/x/logbelt.toml:5:12: sources[0].include[0]: `~` is not expanded; write \"${HOME}/...\" or an absolute path, found \"~/logs/*.log\""
    );
    assert_eq!(
        error("[database]\nurl = \"sqlite://~/x.db\"\n[[sources]]\nname = \"a\"\ninclude = [\"x\"]\n"),
        "/tmp/x/logbelt.toml:2:7: database.url: `~` is not expanded; write \"${HOME}/...\" or an absolute path, found \"sqlite://~/x.db\""
    );
    // A file *name* pattern may start with `~` (Office lock files).
    let config = load(&format!("{MINIMAL}exclude = [\"~$$*\"]\n")).unwrap();
    assert!(config.sources[0].is_excluded(Path::new("/tmp/x/logs/~$report.jsonl")));
}

#[test]
fn bad_start_at_and_field_lists() {
    assert_eq!(
        error_with("start_at = \"middle\"\n"),
        "/tmp/x/logbelt.toml:8:12: sources[0].start_at: expected \"beginning\" or \"end\", found \"middle\""
    );
    assert_eq!(
        error_with("[parse]\ntimestamp_fields = []\n"),
        "/tmp/x/logbelt.toml:9:20: parse.timestamp_fields: expected a non-empty array of field names, found []"
    );
    assert_eq!(
        error_with("[parse]\nmessage_fields = [\"msg\", \"\"]\n"),
        "/tmp/x/logbelt.toml:9:26: parse.message_fields[1]: expected a non-empty field name, found \"\""
    );
    assert_eq!(
        error_with("[agent]\nhost = \"\"\n"),
        "/tmp/x/logbelt.toml:9:8: agent.host: expected a non-empty string, found \"\""
    );
}

#[test]
fn unreadable_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("y.toml");
    let e = Config::load(&path).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "cannot read config file {}: No such file or directory (os error 2)",
            path.display()
        )
    );
    assert!(matches!(e, ConfigError::Read { .. }));
    let e = Config::load(dir.path()).unwrap_err();
    assert!(e.to_string().starts_with("cannot read config file "), "{e}");
}

#[test]
fn file_that_is_not_utf8() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logbelt.toml");
    std::fs::write(&path, b"[database]\nurl = \"sqlite://\xff.db\"\n").unwrap();
    assert_eq!(
        Config::load(&path).unwrap_err().to_string(),
        format!("{}:2:17: the file is not valid UTF-8", path.display())
    );
}

#[test]
fn line_and_column_count_characters_and_skip_a_bom() {
    let text = format!(
        "\u{feff}# é ü\nparse = {{ timestamp_fields = [\"ä\"], max_line_bytes = 0 }}\n{MINIMAL}"
    );
    assert_eq!(
        error(&text),
        "/tmp/x/logbelt.toml:2:54: parse.max_line_bytes: expected an integer from 16 to 1073741824, found 0"
    );
    assert_eq!(line_column("ab\ncé", 6), (2, 3));
    assert_eq!(line_column("ab\ncé", 5), (2, 2)); // inside `é`: its start
    assert_eq!(line_column("ab\ncé", 4), (2, 2));
    assert_eq!(line_column("", 10), (1, 1));
}

// --- defaults, paths, environment ------------------------------------------------------

#[test]
fn defaults_apply_when_tables_are_omitted() {
    let config = load(MINIMAL).unwrap();
    assert_eq!(config.path, Path::new(PATH));
    assert_eq!(config.base_dir, Path::new("/tmp/x"));
    let db = &config.database;
    assert_eq!(
        db.url,
        DatabaseUrl::Sqlite {
            path: PathBuf::from("/tmp/x/logbelt.db")
        }
    );
    assert_eq!(db.writers, 1, "SQLite always has one writer");
    assert_eq!(db.busy_timeout, Duration::from_millis(5_000));
    assert_eq!(db.retry_initial_backoff, Duration::from_millis(100));
    assert_eq!(db.retry_max_backoff, Duration::from_millis(30_000));
    let host = gethostname::gethostname().into_string().unwrap();
    assert_eq!(config.agent.host, host);
    assert_eq!(config.sources.len(), 1);
    let source = &config.sources[0];
    assert_eq!(source.name, "app");
    assert_eq!(source.include, ["/tmp/x/logs/*.jsonl"]);
    assert!(source.exclude.patterns().is_empty());
    assert_eq!(source.start_at, StartAt::Beginning);
    assert!(!source.follow_symlinks);
    assert_eq!(config.metrics, MetricsConfig::default());
    assert_eq!(config.metrics.listen, None);
    assert_eq!(config.metrics.unhealthy_after, Duration::from_secs(60));
    assert_eq!(
        config.pipeline,
        PipelineConfig {
            batch_rows: 5_000,
            flush_interval: Duration::from_millis(200),
            channel_capacity: 64,
            mailbox_capacity: 16,
            read_buffer_bytes: 65_536,
            poll_interval: Duration::from_millis(1_000),
        }
    );
    assert_eq!(
        config.parse,
        ParseConfig {
            max_line_bytes: 1_048_576,
            timestamp_fields: strings(crate::parse::DEFAULT_TIMESTAMP_FIELDS),
            level_fields: strings(crate::parse::DEFAULT_LEVEL_FIELDS),
            message_fields: strings(crate::parse::DEFAULT_MESSAGE_FIELDS),
        }
    );
    assert_eq!(config.shutdown.drain_timeout, Duration::from_millis(30_000));
    assert_eq!(
        config.supervisor,
        SupervisorConfig {
            max_restarts: 5,
            restart_window: Duration::from_millis(60_000),
            restart_backoff_initial: Duration::from_millis(100),
            restart_backoff_max: Duration::from_millis(10_000),
        }
    );
    // Empty tables are the same as absent ones.
    let with_empty_tables = load(&format!(
        "{MINIMAL}[agent]\n[pipeline]\n[parse]\n[shutdown]\n[supervisor]\n"
    ))
    .unwrap();
    assert_eq!(with_empty_tables.pipeline, config.pipeline);
    assert_eq!(with_empty_tables.supervisor, config.supervisor);
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// The README's example config writes every key at its default: read through the ranges, it
/// gives the same config as a file that writes none of them.
#[test]
fn the_readme_example_holds_every_default_within_its_range() {
    let readme = include_str!("../../README.md");
    let section = &readme[readme
        .find("## Configuration")
        .expect("README has a Configuration section")..];
    let start = section.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let example = &section[start..start + section[start..].find("```").unwrap()];
    let written = load(example).unwrap();
    let defaults = load(MINIMAL).unwrap();
    assert_eq!(written.database.writers, defaults.database.writers);
    assert_eq!(
        written.database.busy_timeout,
        defaults.database.busy_timeout
    );
    assert_eq!(
        written.database.retry_initial_backoff,
        defaults.database.retry_initial_backoff
    );
    assert_eq!(
        written.database.retry_max_backoff,
        defaults.database.retry_max_backoff
    );
    assert_eq!(written.pipeline, defaults.pipeline);
    assert_eq!(
        written.parse, defaults.parse,
        "the [parse] example is the defaults"
    );
    assert_eq!(written.shutdown, defaults.shutdown);
    assert_eq!(written.supervisor, defaults.supervisor);
    assert_eq!(
        written.metrics.unhealthy_after,
        defaults.metrics.unhealthy_after
    );
    assert_eq!(written.sources[0].start_at, defaults.sources[0].start_at);
    assert_eq!(
        written.sources[0].follow_symlinks,
        defaults.sources[0].follow_symlinks
    );
    // And the pairs the rules order are ordered at their defaults.
    assert!(defaults.database.retry_initial_backoff <= defaults.database.retry_max_backoff);
    assert!(defaults.supervisor.restart_backoff_initial <= defaults.supervisor.restart_backoff_max);
    // A PostgreSQL URL keeps the writers it is given (SQLite always has one).
    let postgres = example.replace("sqlite://logbelt.db", "postgres://h/db");
    assert_eq!(load(&postgres).unwrap().database.writers, 2);
}

#[test]
fn relative_paths_are_relative_to_the_config_folder() {
    let text = r#"
[database]
url = "sqlite://./data/../logbelt.db"

[[sources]]
name = "app"
include = ["logs/*.jsonl", "./other/**/*.log", "/var/log/app/*.jsonl"]
exclude = ["*.gz", "logs/old/*", "/var/log/app/skip.jsonl"]
"#;
    let config = parse(text, PathBuf::from("/srv/[prod]/logbelt.toml"), no_env()).unwrap();
    assert_eq!(config.base_dir, Path::new("/srv/[prod]"));
    assert_eq!(
        config.database.url,
        DatabaseUrl::Sqlite {
            path: PathBuf::from("/srv/[prod]/data/../logbelt.db")
        }
    );
    let source = &config.sources[0];
    assert_eq!(
        source.include,
        [
            "/srv/[[]prod[]]/logs/*.jsonl",
            "/srv/[[]prod[]]/other/**/*.log",
            "/var/log/app/*.jsonl"
        ]
    );
    assert_eq!(
        source.exclude.patterns(),
        [
            "*.gz",
            "/srv/[[]prod[]]/logs/old/*",
            "/var/log/app/skip.jsonl"
        ]
    );
    assert!(source.is_excluded(Path::new("/srv/[prod]/logs/old/a.jsonl")));
    assert!(!source.is_excluded(Path::new("/srv/p/logs/old/a.jsonl")));

    let absolute = load("[database]\nurl = \"sqlite:///var/lib/logbelt/db.sqlite\"\n[[sources]]\nname = \"a\"\ninclude = [\"x\"]\n").unwrap();
    assert_eq!(
        absolute.database.url,
        DatabaseUrl::Sqlite {
            path: PathBuf::from("/var/lib/logbelt/db.sqlite")
        }
    );
}

#[test]
fn load_reads_a_real_file_and_anchors_paths_to_its_folder() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logbelt.toml");
    std::fs::write(&path, MINIMAL).unwrap();
    let config = Config::load(&path).unwrap();
    assert_eq!(config.path, path);
    assert_eq!(config.base_dir, dir.path());
    let base = globset::escape(dir.path().to_str().unwrap());
    assert_eq!(config.sources[0].include, [format!("{base}/logs/*.jsonl")]);
    assert_eq!(
        config.database.url,
        DatabaseUrl::Sqlite {
            path: dir.path().join("logbelt.db")
        }
    );
}

#[test]
fn environment_variables_expand_in_every_string() {
    let text = r#"
[database]
url = "postgres://${PGUSER}:${PGPASS}@db:5432/logs"
[agent]
host = "${HOST_NAME}"
[[sources]]
name = "${NAME}"
include = ["${LOG_DIR}/*.jsonl", "price$$/*.log"]
exclude = ["*.${EXT}"]
start_at = "${START}"
[parse]
level_fields = ["${LEVEL}"]
"#;
    let vars = [
        ("PGUSER", "logbelt"),
        ("PGPASS", "s3cr$t"),
        ("HOST_NAME", "web-1"),
        ("NAME", "api"),
        ("LOG_DIR", "/var/log/api"),
        ("EXT", "gz"),
        ("START", "end"),
        ("LEVEL", "lvl"),
    ];
    let config = load_with_env(text, &vars).unwrap();
    assert_eq!(
        config.database.url,
        DatabaseUrl::Postgres {
            url: "postgres://logbelt:s3cr$t@db:5432/logs".to_owned()
        }
    );
    assert_eq!(config.database.writers, 2, "the default for PostgreSQL");
    assert_eq!(config.agent.host, "web-1");
    let source = &config.sources[0];
    assert_eq!(source.name, "api");
    assert_eq!(
        source.include,
        ["/var/log/api/*.jsonl", "/tmp/x/price$/*.log"]
    );
    assert_eq!(source.exclude.patterns(), ["*.gz"]);
    assert_eq!(source.start_at, StartAt::End);
    assert_eq!(config.parse.level_fields, ["lvl"]);
}

#[test]
fn environment_variables_come_from_the_process_environment() {
    // The name is unique to this test; no other test reads or writes it.
    let name = "LOGBELT_CONFIG_RS_TEST_SOURCE_NAME_91D2";
    std::env::set_var(name, "from-env");
    let text = MINIMAL.replace("name = \"app\"", &format!("name = \"${{{name}}}\""));
    let config = Config::from_toml_str(&text, Path::new(PATH)).unwrap();
    assert_eq!(config.sources[0].name, "from-env");
    std::env::remove_var(name);
}

#[test]
fn sqlite_path_from_environment_variable() {
    let text = "[database]\nurl = \"sqlite://${DATA}/logbelt.db\"\n[[sources]]\nname = \"a\"\ninclude = [\"x\"]\n";
    let config = load_with_env(text, &[("DATA", "state")]).unwrap();
    assert_eq!(
        config.database.url,
        DatabaseUrl::Sqlite {
            path: PathBuf::from("/tmp/x/state/logbelt.db")
        }
    );
    let config = load_with_env(text, &[("DATA", "/var/lib")]).unwrap();
    assert_eq!(
        config.database.url,
        DatabaseUrl::Sqlite {
            path: PathBuf::from("/var/lib/logbelt.db")
        }
    );
}

// --- redaction -------------------------------------------------------------------------

#[test]
fn password_is_redacted_in_display_and_debug() {
    let text = "[database]\nurl = \"postgresql://logbelt:hunter2@db.internal:5432/logs?sslmode=require\"\n[[sources]]\nname = \"a\"\ninclude = [\"x\"]\n";
    let config = load(text).unwrap();
    assert_eq!(
        config.database.url.to_string(),
        "postgresql://logbelt:***@db.internal:5432/logs?sslmode=require"
    );
    for shown in [
        format!("{:?}", config.database.url),
        format!("{:?}", config.database),
        format!("{config:?}"),
        format!("{config:#?}"),
    ] {
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("logbelt:***@db.internal"), "{shown}");
    }
    // The real URL is still there to connect with.
    assert!(
        matches!(&config.database.url, DatabaseUrl::Postgres { url } if url.contains("hunter2"))
    );
    let sqlite = DatabaseUrl::Sqlite {
        path: PathBuf::from("/var/lib/l.db"),
    };
    assert_eq!(sqlite.to_string(), "sqlite:///var/lib/l.db");
}

#[test]
fn password_is_redacted_in_errors() {
    // A password that came from the environment, in a URL rejected after expansion.
    let text = "[database]\nurl = \"${URL}\"\n[[sources]]\nname = \"a\"\ninclude = [\"x\"]\n";
    let e = load_with_env(text, &[("URL", "pg://u:topsecret@h/db")])
        .unwrap_err()
        .to_string();
    assert!(!e.contains("topsecret"), "{e}");
    assert!(e.ends_with("found \"pg://u:***@h/db\""), "{e}");
    // A URL in the wrong place, shown as "found ...".
    let e = error_with("[agent]\nhost = [\"postgres://u:topsecret@h/db\"]\n");
    assert!(!e.contains("topsecret"), "{e}");
}

// --- exclude ---------------------------------------------------------------------------

#[test]
fn exclude_matches_names_without_slash_and_paths_with_slash() {
    let text = format!(
        "{MINIMAL}exclude = [\"*.gz\", \"x*\", \"archive/*.jsonl\", \"/var/log/**/debug.jsonl\"]\n"
    );
    let config = load(&text).unwrap();
    let source = &config.sources[0];
    let excluded = |p: &str| source.is_excluded(Path::new(p));
    // Name patterns: any folder.
    assert!(excluded("/tmp/x/logs/app.jsonl.gz"));
    assert!(excluded("/elsewhere/deep/a.gz"));
    assert!(excluded("/tmp/x/logs/xyz.jsonl"));
    // ... but only the name: `x*` does not match through the folder `/x/`.
    assert!(!excluded("/tmp/x/logs/app.jsonl"));
    // Path patterns: relative ones are anchored at the config folder; `*` stops at `/`.
    assert!(excluded("/tmp/x/archive/a.jsonl"));
    assert!(!excluded("/tmp/x/archive/2024/a.jsonl"));
    assert!(!excluded("/other/archive/a.jsonl"));
    assert!(excluded("/var/log/a/b/debug.jsonl"));
    assert!(excluded("/var/log/debug.jsonl"));
    assert!(!excluded("/var/log/a/info.jsonl"));

    let none = load(MINIMAL).unwrap();
    assert!(!none.sources[0].is_excluded(Path::new("/tmp/x/logs/a.gz")));
}

// --- everything set --------------------------------------------------------------------

#[test]
fn every_key_set() {
    let text = r#"
[database]
url = "postgres://logbelt:pw@db:5432/logs"
writers = 4
busy_timeout_ms = 2500
retry_initial_backoff_ms = 50
retry_max_backoff_ms = 10000

[agent]
host = "web-7"

[[sources]]
name = "app"
include = ["logs/*.jsonl"]
exclude = ["*.gz"]
start_at = "beginning"

[[sources]]
name = "nginx.access-1"
include = ["/var/log/nginx/*.json", "/var/log/nginx/*.json.1"]
start_at = "end"

[pipeline]
batch_rows = 10_000
flush_interval_ms = 500
channel_capacity = 8
mailbox_capacity = 4
read_buffer_bytes = 0x2_0000
poll_interval_ms = 250

[parse]
max_line_bytes = 65536
timestamp_fields = ["ts"]
level_fields = ["level", "lvl"]
message_fields = ["msg"]

[shutdown]
drain_timeout_ms = 5000

[supervisor]
max_restarts = 0
restart_window_ms = 1000
restart_backoff_initial_ms = 10
restart_backoff_max_ms = 10
"#;
    let config = load(text).unwrap();
    let db = &config.database;
    assert_eq!(
        db.url,
        DatabaseUrl::Postgres {
            url: "postgres://logbelt:pw@db:5432/logs".to_owned()
        }
    );
    assert_eq!(db.writers, 4);
    assert_eq!(db.busy_timeout, Duration::from_millis(2500));
    assert_eq!(db.retry_initial_backoff, Duration::from_millis(50));
    assert_eq!(db.retry_max_backoff, Duration::from_secs(10));
    assert_eq!(
        config.agent,
        AgentConfig {
            host: "web-7".to_owned()
        }
    );
    assert_eq!(config.sources.len(), 2);
    assert_eq!(config.sources[0].include, ["/tmp/x/logs/*.jsonl"]);
    assert_eq!(config.sources[0].exclude.patterns(), ["*.gz"]);
    assert_eq!(config.sources[0].start_at, StartAt::Beginning);
    assert_eq!(config.sources[1].name, "nginx.access-1");
    assert_eq!(
        config.sources[1].include,
        ["/var/log/nginx/*.json", "/var/log/nginx/*.json.1"]
    );
    assert_eq!(config.sources[1].start_at, StartAt::End);
    assert_eq!(
        config.pipeline,
        PipelineConfig {
            batch_rows: 10_000,
            flush_interval: Duration::from_millis(500),
            channel_capacity: 8,
            mailbox_capacity: 4,
            read_buffer_bytes: 131_072,
            poll_interval: Duration::from_millis(250),
        }
    );
    assert_eq!(
        config.parse,
        ParseConfig {
            max_line_bytes: 65_536,
            timestamp_fields: strings(&["ts"]),
            level_fields: strings(&["level", "lvl"]),
            message_fields: strings(&["msg"]),
        }
    );
    assert_eq!(
        config.shutdown,
        ShutdownConfig {
            drain_timeout: Duration::from_secs(5)
        }
    );
    assert_eq!(
        config.supervisor,
        SupervisorConfig {
            max_restarts: 0,
            restart_window: Duration::from_secs(1),
            restart_backoff_initial: Duration::from_millis(10),
            restart_backoff_max: Duration::from_millis(10),
        }
    );
}
