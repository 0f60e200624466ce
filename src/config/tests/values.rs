//! Defaults, paths, the environment, redaction, exclusion, every key set.

use super::*;

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
            sources: config.parse.sources.clone(),
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

/// The README's example config writes every key at its default: read through the ranges, it
/// gives the same config as a file that writes none of them.
#[test]
fn the_readme_example_holds_every_default_within_its_range() {
    let readme = include_str!("../../../README.md");
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
    assert_eq!(
        written.database.partition_interval,
        defaults.database.partition_interval
    );
    assert_eq!(
        written.retention, defaults.retention,
        "the [retention] example is the defaults"
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
            sources: config.parse.sources.clone(),
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

#[test]
fn retention_limits_are_spans_and_sizes() {
    let none = load(MINIMAL).unwrap();
    assert_eq!(none.retention, RetentionConfig::default());
    assert!(!none.retention.limits_anything());
    assert_eq!(none.retention.check_interval, Duration::from_secs(60));
    assert_eq!(
        none.database.partition_interval,
        Duration::from_secs(86_400)
    );

    let text = format!(
        "{MINIMAL}[retention]\nmax_age = \"30d\"\nmax_bytes = \"20GiB\"\ncheck_interval = \"10s\"\n"
    );
    let set = load(&text).unwrap();
    assert_eq!(
        set.retention.max_age,
        Some(Duration::from_secs(30 * 86_400))
    );
    assert_eq!(set.retention.max_bytes, Some(20 << 30));
    assert_eq!(set.retention.check_interval, Duration::from_secs(10));
    assert!(set.retention.limits_anything());
}

#[test]
fn retention_errors_say_what_a_span_or_size_looks_like() {
    assert_eq!(
        error_with("[retention]\nmax_age = \"30\"\n"),
        "/tmp/x/logbelt.toml:9:11: retention.max_age: expected a duration from 1s to 400d such as \"30s\", \"15m\", \"12h\" or \"30d\", found \"30\""
    );
    assert_eq!(
        error_with("[retention]\nmax_bytes = \"1KiB\"\n"),
        "/tmp/x/logbelt.toml:9:13: retention.max_bytes: expected a size from 1MiB to 1PiB such as \"500MiB\" or \"20GiB\", found \"1KiB\""
    );
    assert_eq!(
        error_with("[retention]\ncheck_interval = 5\n"),
        "/tmp/x/logbelt.toml:9:18: retention.check_interval: expected a duration from 1s to 1d such as \"30s\", \"15m\", \"12h\" or \"30d\", found 5"
    );
    assert_eq!(
        error(&MINIMAL.replace(
            "[database]\n",
            "[database]\npartition_interval = \"30s\"\n"
        )),
        "/tmp/x/logbelt.toml:3:22: database.partition_interval: expected a duration from 1m to 400d such as \"30s\", \"15m\", \"12h\" or \"30d\", found \"30s\""
    );
}

#[test]
fn source_formats_reach_the_parse_settings() {
    use crate::parse::{Format, OnMismatch};
    let config = load(&format!(
        "{MINIMAL}format = \"regex\"\npattern = '^(?P<ts>\\S+) (?P<msg>.*)$'\n\
         timestamp_format = [\"%d/%b/%Y:%H:%M:%S %z\", \"%b %d %H:%M:%S\"]\non_mismatch = \"text\"\n\
         [[sources]]\nname = \"web\"\ninclude = [\"/var/log/nginx/access.log\"]\n\
         format = \"nginx_combined\"\n"
    ))
    .unwrap();
    let app = &config.sources[0];
    assert_eq!(app.format.name(), "regex");
    match &app.format {
        Format::Regex(re) => assert_eq!(re.as_str(), r"^(?P<ts>\S+) (?P<msg>.*)$"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        app.timestamp_format.texts(),
        ["%d/%b/%Y:%H:%M:%S %z", "%b %d %H:%M:%S"]
    );
    assert_eq!(app.on_mismatch, OnMismatch::Text);
    assert_eq!(config.sources[1].format, Format::NginxCombined);
    assert_eq!(config.sources[1].on_mismatch, OnMismatch::DeadLetter);
    assert_eq!(app.default_level, None);
    // default_level is normalised as a line's level is.
    for (written, level) in [
        ("Information", "info"),
        ("WARNING", "warn"),
        ("Audit", "audit"),
    ] {
        let config = load(&format!("{MINIMAL}default_level = \"{written}\"\n")).unwrap();
        assert_eq!(config.sources[0].default_level.as_deref(), Some(level));
        assert_eq!(
            config.parse.sources[0].default_level.as_deref(),
            Some(level)
        );
    }
    let names: Vec<(&str, &str)> = config
        .parse
        .sources
        .iter()
        .map(|s| (s.source.as_str(), s.format.name()))
        .collect();
    assert_eq!(names, [("app", "regex"), ("web", "nginx_combined")]);
    let settings = crate::parse::ParseSettings::from_config(&config.parse);
    assert_eq!(settings.sources, config.parse.sources);
    // The default: JSON, as before.
    let plain = load(MINIMAL).unwrap();
    assert_eq!(plain.sources[0].format, Format::Json);
    assert!(plain.sources[0].timestamp_format.is_empty());
}

#[test]
fn the_readme_text_format_examples_load_and_read_their_logs() {
    use crate::parse::{Formats, ParseSettings, Scratch};
    let readme = include_str!("../../../README.md");
    let section = &readme[readme
        .find("## Text formats")
        .expect("README has a Text formats section")..];
    let start = section.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let example = &section[start..start + section[start..].find("```").unwrap()];
    let config = load(example).unwrap();
    let names: Vec<(&str, &str)> = config
        .sources
        .iter()
        .map(|s| (s.name.as_str(), s.format.name()))
        .collect();
    assert_eq!(
        names,
        [
            ("nginx", "nginx_combined"),
            ("nginx-errors", "nginx_error"),
            ("syslog", "syslog"),
            ("app", "logfmt"),
            ("java", "text"),
            ("pods", "cri"),
            ("postgres", "regex")
        ]
    );
    // The PostgreSQL example reads a line of a real server log.
    let formats = Formats::new(&ParseSettings::from_config(&config.parse));
    let pg = formats.get("postgres");
    let line = "2026-11-27 13:38:47.909 UTC [17451] LOG:  listening on IPv4 address \"127.0.0.1\"";
    let mut out = Vec::new();
    let event = crate::parse::parse_text(line, pg, &mut Scratch::new(pg), &mut out).unwrap();
    assert_eq!(
        event.ts_micros.map(crate::parse::format_timestamp_micros),
        Some("2026-11-27T13:38:47.909000Z".to_owned())
    );
    assert_eq!(event.level.as_deref(), Some("log"));
    assert_eq!(
        event.message.as_deref(),
        Some("listening on IPv4 address \"127.0.0.1\"")
    );
}
