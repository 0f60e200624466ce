//! The rules that are logbelt's own, not serde's: `${VAR}` expansion, `~`, database URLs, glob
//! patterns, names — checked as each value is read, so an error names that value — and the
//! rules across keys, checked once the whole file is read.

use std::cell::RefCell;
use std::ffi::OsString;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de;
use toml::de::DeTable;
use toml::Spanned;

mod globs;
mod source_format;

pub(super) use globs::{exclude, IncludePattern};
pub(super) use source_format::{
    default_format, DefaultLevel, FormatName, Pattern, TimestampFormatList,
};

use super::error::{span_of, ConfigError, File, Step};
use super::kinds::{wrong, Found, Item, Kind, Table};
use super::{Config, DatabaseUrl, SourceConfig, StartAt, DEFAULT_DATABASE_URL};
use crate::parse::{Format, Multiline, MultilineRule, SourceFormat};

// ---------------------------------------------------------------------------------------------
// Context: the config file's folder and the environment
// ---------------------------------------------------------------------------------------------

/// Looks up an environment variable; injected so tests need not change the process environment.
pub(super) type Env = Box<dyn Fn(&str) -> Option<OsString>>;

/// What reading a value needs besides the value: the folder relative paths are anchored to,
/// and the environment `${VAR}` reads.
///
/// serde's derive cannot hand a context to a field's `Deserialize`, so [`within`] sets it for
/// the thread while one file is read. Without it (a `Config` deserialised some other way),
/// relative paths are taken from the current directory and variables from the process.
pub(super) struct Context {
    pub base_dir: PathBuf,
    pub env: Env,
}

thread_local! {
    static CONTEXT: RefCell<Option<Context>> = const { RefCell::new(None) };
}

/// Runs `read` with `context` set for this thread.
pub(super) fn within<R>(context: Context, read: impl FnOnce() -> R) -> R {
    struct Restore(Option<Context>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            CONTEXT.with(|c| *c.borrow_mut() = previous);
        }
    }
    let _restore = Restore(CONTEXT.with(|c| c.replace(Some(context))));
    read()
}

fn with_context<R>(f: impl FnOnce(&Context) -> R) -> R {
    CONTEXT.with(|c| match &*c.borrow() {
        Some(context) => f(context),
        None => f(&Context {
            base_dir: std::env::current_dir().unwrap_or_default(),
            env: Box::new(|name| std::env::var_os(name)),
        }),
    })
}

/// A string value with `${VAR}` expanded; anything else is the wrong type for `K`.
fn text<K: Kind, E: de::Error>(found: Found) -> Result<String, E> {
    match found {
        Found::Str(raw) => with_context(|cx| expand_env(&raw, &cx.env)).map_err(E::custom),
        found => Err(wrong::<K, E>(found)),
    }
}

/// [`text`] that must not be empty: `expected a non-empty <what>, found ""`.
fn non_empty<K: Kind, E: de::Error>(found: Found, what: &str) -> Result<String, E> {
    match text::<K, E>(found)? {
        s if s.is_empty() => Err(E::custom(format_args!(
            "expected a non-empty {what}, found \"\""
        ))),
        s => Ok(s),
    }
}

/// Expands `${NAME}` from `env` and `$$` to `$`; the error is the detail after the key.
fn expand_env(raw: &str, env: &Env) -> Result<String, String> {
    if !raw.contains('$') {
        return Ok(raw.to_owned());
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(after) = after.strip_prefix('$') {
            out.push('$');
            rest = after;
            continue;
        }
        let Some(body) = after.strip_prefix('{') else {
            return Err(format!(
                "`$` must start `${{NAME}}` or be doubled as `$$` (in {raw:?})"
            ));
        };
        let Some(end) = body.find('}') else {
            return Err(format!("unclosed `${{` (in {raw:?})"));
        };
        let name = &body[..end];
        let valid_name = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_name {
            return Err(format!(
                "invalid environment variable name {name:?} (in {raw:?})"
            ));
        }
        match env(name).map(OsString::into_string) {
            Some(Ok(value)) => out.push_str(&value),
            Some(Err(_)) => {
                return Err(format!(
                    "environment variable `{name}` is not valid UTF-8 (in {raw:?})"
                ))
            }
            None => {
                return Err(format!(
                    "environment variable `{name}` is not set (in {raw:?})"
                ))
            }
        }
        rest = &body[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `~` is not expanded (the shell does that, logbelt does not): `~` and `~/...` are rejected
/// rather than silently meaning a folder named `~` next to the config file.
fn starts_with_tilde(path: &str) -> bool {
    path == "~" || path.starts_with("~/")
}

fn tilde_message(found: &str) -> String {
    format!("`~` is not expanded; write \"${{HOME}}/...\" or an absolute path, found {found:?}")
}

// ---------------------------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------------------------

impl Kind for DatabaseUrl {
    type Value = DatabaseUrl;

    fn expected(f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a database URL string")
    }

    fn scalar<E: de::Error>(found: Found) -> Result<DatabaseUrl, E> {
        let url = text::<Self, E>(found)?;
        with_context(|cx| database_url(&url, &cx.base_dir)).map_err(E::custom)
    }
}

/// `database.url` when it is not written: [`DEFAULT_DATABASE_URL`], next to the config file.
pub(super) fn default_database_url() -> DatabaseUrl {
    // ok: the default is a relative `sqlite://` URL, which joins any config folder.
    with_context(|cx| database_url(DEFAULT_DATABASE_URL, &cx.base_dir))
        .expect("the default database URL is valid")
}

/// Parses an expanded `database.url`; the error is the detail after `database.url: `.
fn database_url(url: &str, base_dir: &Path) -> Result<DatabaseUrl, String> {
    if let Some(rest) = strip_prefix_ignore_case(url, "sqlite://") {
        if rest.is_empty() {
            return Err(format!(
                "expected a file path after sqlite://, found {url:?}"
            ));
        }
        if starts_with_tilde(rest) {
            return Err(tilde_message(url));
        }
        // `join` keeps an absolute `rest` (from `sqlite:///abs`) as it is; collecting the
        // components drops `.` segments.
        let path = base_dir.join(rest).components().collect();
        return Ok(DatabaseUrl::Sqlite { path });
    }
    if let Some(rest) = strip_prefix_ignore_case(url, "postgres://")
        .or_else(|| strip_prefix_ignore_case(url, "postgresql://"))
    {
        // libpq ends the user and password at the first '@', so in `u:sec@ret@host` the host
        // is `ret@host`, and its error messages would show that piece of the password.
        let authority = rest.split(['/', '?']).next().unwrap_or("");
        if authority.matches('@').count() > 1 {
            return Err(
                "more than one '@' before the host: write an '@' in the user name \
                 or password as %40"
                    .to_owned(),
            );
        }
        return Ok(DatabaseUrl::Postgres {
            url: url.to_owned(),
        });
    }
    Err(format!(
        "expected a URL starting with sqlite:// or postgres:// (or postgresql://), found {url:?}"
    ))
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

impl Kind for StartAt {
    type Value = StartAt;

    fn expected(f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"beginning\" or \"end\"")
    }

    fn scalar<E: de::Error>(found: Found) -> Result<StartAt, E> {
        match text::<Self, E>(found)?.as_str() {
            "beginning" => Ok(StartAt::Beginning),
            "end" => Ok(StartAt::End),
            other => Err(wrong::<Self, E>(format_args!("{other:?}"))),
        }
    }
}

/// `metrics.listen`: an IP address and port.
pub(super) struct Listen;

impl Kind for Listen {
    type Value = Option<SocketAddr>;

    fn expected(f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an address string such as \"127.0.0.1:9464\"")
    }

    fn scalar<E: de::Error>(found: Found) -> Result<Option<SocketAddr>, E> {
        let text = text::<Self, E>(found)?;
        text.parse().map(Some).map_err(|_| {
            E::custom(format_args!(
                "expected an IP address and port such as \"127.0.0.1:9464\", found {text:?}"
            ))
        })
    }
}

/// `agent.host`: any non-empty string.
pub(super) struct Host;

impl Kind for Host {
    type Value = String;

    fn expected(f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn scalar<E: de::Error>(found: Found) -> Result<String, E> {
        non_empty::<Self, E>(found, "string")
    }
}

/// `agent.host` when it is not written: the machine's hostname, or "" if it has none that
/// is UTF-8 ([`across`] reports that).
pub(super) fn hostname() -> String {
    gethostname::gethostname().into_string().unwrap_or_default()
}

/// `sources[].name`: letters, digits, `_`, `.`, `-`.
pub(super) struct SourceName;

impl Kind for SourceName {
    type Value = String;

    fn expected(f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn scalar<E: de::Error>(found: Found) -> Result<String, E> {
        let name = text::<Self, E>(found)?;
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !valid {
            return Err(E::custom(format_args!(
                "expected a name of letters, digits, '_', '.' or '-', found {name:?}"
            )));
        }
        Ok(name)
    }
}

impl Item for Table<SourceConfig> {
    const ARRAY: &'static str = "an array of tables ([[sources]])";
    const EMPTY: Option<&'static str> = Some("at least one [[sources]] table is required");
}

/// One `parse.*_fields` entry: a non-empty field name.
pub(super) struct FieldName;

impl Kind for FieldName {
    type Value = String;

    fn expected(f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name string")
    }

    fn scalar<E: de::Error>(found: Found) -> Result<String, E> {
        non_empty::<Self, E>(found, "field name")
    }
}

impl Item for FieldName {
    const ARRAY: &'static str = "an array of field name strings";
    const EMPTY: Option<&'static str> = Some("expected a non-empty array of field names, found []");
}

/// `names` as owned strings: the default of a `parse.*_fields` key.
pub(super) fn owned(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

// ---------------------------------------------------------------------------------------------
// Rules across keys
// ---------------------------------------------------------------------------------------------

/// The rules that involve more than one value, once `config` is read from `tree`.
pub(super) fn across(
    config: &mut Config,
    tree: &Spanned<DeTable<'_>>,
    file: &File<'_>,
) -> Result<(), ConfigError> {
    use Step::{Index, Key};
    let at = |path: &[Step<'_>]| span_of(tree, path);

    if config.sources.is_empty() {
        let message = "at least one [[sources]] table is required";
        return Err(file.at(0, Some("sources"), message));
    }
    if config.agent.host.is_empty() {
        let offset = at(&[Key("agent")]).map_or(0, |span| span.start);
        let message = "agent.host: the machine's hostname is empty or not UTF-8; set agent.host";
        return Err(file.at(offset, Some("agent.host"), message));
    }
    for (i, source) in config.sources.iter().enumerate() {
        let Some(first) = config.sources[..i]
            .iter()
            .position(|s| s.name == source.name)
        else {
            continue;
        };
        let name_at = |i| at(&[Key("sources"), Index(i), Key("name")]).unwrap_or(0..0);
        let first_line = super::error::line_column(file.text, name_at(first).start).0;
        return Err(file.about(
            name_at(i),
            &format!("sources[{i}].name"),
            format_args!(
                "duplicate source name {:?} (already used by sources[{first}] at line {first_line})",
                source.name
            ),
        ));
    }

    for (i, source) in config.sources.iter_mut().enumerate() {
        let key = |k| at(&[Key("sources"), Index(i), Key(k)]);
        let regex = source.format_name == "regex";
        match (&source.pattern, regex) {
            (None, true) => {
                return Err(file.about(
                    key("format").unwrap_or(0..0),
                    &format!("sources[{i}].format"),
                    "format = \"regex\" needs a `pattern` in the same [[sources]] table",
                ));
            }
            (Some(_), false) => {
                return Err(file.about(
                    key("pattern").unwrap_or(0..0),
                    &format!("sources[{i}].pattern"),
                    format_args!(
                        "a pattern is only used with format = \"regex\", found format = {:?}",
                        source.format_name
                    ),
                ));
            }
            _ => {}
        }
        let pattern = source.pattern.clone();
        source.format = Format::from_name(&source.format_name, pattern).unwrap_or_default();
        if let Some(m) = &source.multiline {
            if m.start.is_some() == m.continue_.is_some() {
                return Err(file.about(
                    key("multiline").unwrap_or(0..0),
                    &format!("sources[{i}].multiline"),
                    "expected either `start` or `continue` (a regular expression), not both or neither",
                ));
            }
            if source.format_name == "cri" {
                return Err(file.about(
                    key("multiline").unwrap_or(0..0),
                    &format!("sources[{i}].multiline"),
                    "format = \"cri\" joins its lines itself; multiline is for other formats",
                ));
            }
        }
    }
    config.parse.sources = config
        .sources
        .iter()
        .map(|s| SourceFormat {
            source: s.name.clone(),
            format: s.format.clone(),
            timestamp_formats: s.timestamp_format.clone(),
            on_mismatch: s.on_mismatch,
            default_level: s.default_level.clone(),
            multiline: s.multiline.as_ref().and_then(|m| {
                let rule = match (&m.start, &m.continue_) {
                    (Some(re), _) => MultilineRule::Start(re.clone()),
                    (None, Some(re)) => MultilineRule::Continue(re.clone()),
                    (None, None) => return None,
                };
                Some(Multiline {
                    rule,
                    max_lines: m.max_lines,
                    max_bytes: m.max_bytes,
                    timeout: m.timeout,
                })
            }),
        })
        .collect();

    let db = &config.database;
    ordered(
        (file, tree, "database"),
        ("retry_initial_backoff_ms", db.retry_initial_backoff),
        ("retry_max_backoff_ms", db.retry_max_backoff),
    )?;
    let sv = &config.supervisor;
    ordered(
        (file, tree, "supervisor"),
        ("restart_backoff_initial_ms", sv.restart_backoff_initial),
        ("restart_backoff_max_ms", sv.restart_backoff_max),
    )?;

    // One writer at a time is all SQLite allows.
    if let DatabaseUrl::Sqlite { .. } = config.database.url {
        config.database.writers = 1;
    }
    Ok(())
}

/// Checks `low <= high` for two keys of `table`, blaming the one the user wrote (`low` if
/// both). Both at their defaults are ordered (a test checks).
fn ordered(
    (file, tree, table): (&File<'_>, &Spanned<DeTable<'_>>, &str),
    (low_key, low): (&str, Duration),
    (high_key, high): (&str, Duration),
) -> Result<(), ConfigError> {
    if low <= high {
        return Ok(());
    }
    let written = |key| span_of(tree, &[Step::Key(table), Step::Key(key)]);
    let (low_name, high_name) = (format!("{table}.{low_key}"), format!("{table}.{high_key}"));
    let (low, high) = (low.as_millis(), high.as_millis());
    if let Some(span) = written(low_key) {
        let detail = format_args!("expected at most {high_name} ({high}), found {low}");
        return Err(file.about(span, &low_name, detail));
    }
    if let Some(span) = written(high_key) {
        let detail = format_args!("expected at least {low_name} ({low}), found {high}");
        return Err(file.about(span, &high_name, detail));
    }
    Ok(())
}
