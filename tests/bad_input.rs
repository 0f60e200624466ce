//! Bad input, line by line: one table of (name, bytes written, what each line must become),
//! run through the real binary on both backends. Every non-empty line becomes exactly one row:
//! a record (level, message, ts checked, `fields` the line itself) or a dead letter (reason
//! prefix, raw bytes, full length). Then the live cases (a long line written in pieces), and
//! the real-world corpus with exact per-file counts.
//!
//! Regression tests for bugs these tests found (fixed since): a BOM-prefixed first line at the
//! limit that spans reads (`a_bom_first_line_at_the_limit_written_in_two_pieces_is_a_record`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::util::{append_bytes, Backend, Count, TestEnv};

/// `[parse] max_line_bytes` for the table: big enough for the 10,000-bracket line.
const MAX: usize = 65_536;
/// `[pipeline] read_buffer_bytes` for the table: the smallest allowed, so that lines span reads.
const READ_BUFFER: usize = 4096;

// ---------------------------------------------------------------------------------------------
// The table
// ---------------------------------------------------------------------------------------------

/// What one non-empty line must become.
#[derive(Debug, Clone)]
enum Want {
    Record {
        level: Option<&'static str>,
        message: Option<String>,
        /// RFC 3339 UTC with 6 fractional digits.
        ts: Option<&'static str>,
    },
    Dead {
        /// The reason starts with this.
        reason: String,
        /// `None`: the line's bytes (cut to `MAX`).
        raw: Option<Vec<u8>>,
    },
    /// The backends disagree (e.g. PostgreSQL refuses `\u0000`).
    PerBackend {
        sqlite: Box<Want>,
        postgres: Box<Want>,
    },
}

struct Row {
    name: &'static str,
    bytes: Vec<u8>,
    /// One per non-empty line, in file order.
    want: Vec<Want>,
}

fn rec(level: Option<&'static str>, message: Option<&str>, ts: Option<&'static str>) -> Want {
    Want::Record {
        level,
        message: message.map(str::to_owned),
        ts,
    }
}

/// A record with just a message.
fn msg(m: &str) -> Want {
    rec(None, Some(m), None)
}

/// A record with just a timestamp.
fn ts(t: Option<&'static str>) -> Want {
    rec(None, None, t)
}

/// A record with just a level.
fn level(l: &'static str) -> Want {
    rec(Some(l), None, None)
}

fn dead(reason: &str) -> Want {
    Want::Dead {
        reason: reason.to_owned(),
        raw: None,
    }
}

/// A record in SQLite, a dead letter "refused by the database: …" in PostgreSQL.
fn pg_refuses(sqlite: Want) -> Want {
    Want::PerBackend {
        sqlite: Box::new(sqlite),
        postgres: Box::new(dead("refused by the database: ")),
    }
}

fn row(name: &'static str, bytes: impl Into<Vec<u8>>, want: Vec<Want>) -> Row {
    Row {
        name,
        bytes: bytes.into(),
        want,
    }
}

/// `text` padded with a `pad` string to exactly `len` bytes: `{"msg":"…","pad":"xxx"}`.
fn object_of_len(message: &str, len: usize) -> String {
    let head = format!(r#"{{"msg":"{message}","pad":""#);
    let s = format!("{head}{}\"}}", "x".repeat(len - head.len() - 2));
    assert_eq!(s.len(), len);
    s
}

fn table() -> Vec<Row> {
    let long = object_of_len("too long", 100_000);
    let nested_ok = format!("{{\"a\":{}{}}}", "[".repeat(126), "]".repeat(126));
    let nested_too_deep = format!("{{\"a\":{}{}}}", "[".repeat(127), "]".repeat(127));
    let crlf_line = object_of_len("crlf at the read boundary", READ_BUFFER - 1);
    let crlf_line2 = object_of_len("crlf at the second boundary", READ_BUFFER - 2);
    vec![
        // ----- not JSON ------------------------------------------------------------------------
        row(
            "invalid_json_missing_comma",
            "{\"level\":\"info\" \"msg\":\"x\"}\n",
            vec![dead("invalid JSON at column 17: expected `,` or `}`")],
        ),
        row(
            "invalid_json_trailing_comma",
            "{\"a\":1,}\n",
            vec![dead("invalid JSON at column 8: trailing comma")],
        ),
        row(
            "invalid_json_cut_short",
            "{\"level\":\"info\",\"msg\":\"cut\n",
            vec![dead("invalid JSON at column 26: EOF while parsing a string")],
        ),
        row(
            "invalid_json_plain_text",
            "not a JSON line\n# a comment\n",
            vec![
                dead("invalid JSON at column 2: expected ident"),
                dead("invalid JSON at column 1: expected value"),
            ],
        ),
        row(
            "invalid_json_trailing_text",
            "{\"msg\":\"a\"} trailing\n{\"msg\":\"a\"}{\"msg\":\"b\"}\n",
            vec![
                dead("invalid JSON at column 13: trailing characters"),
                dead("invalid JSON at column 12: trailing characters"),
            ],
        ),
        row(
            "invalid_json_single_quotes_and_nan",
            "{'msg':'x'}\n{\"n\":NaN}\n{\"n\":Infinity}\n",
            vec![
                dead("invalid JSON at column 2: key must be a string"),
                dead("invalid JSON at column 6: expected value"),
                dead("invalid JSON at column 6: expected value"),
            ],
        ),
        row(
            "whitespace_only_line",
            " \t \n",
            vec![dead("invalid JSON at column 3: EOF while parsing a value")],
        ),
        // ----- JSON that is not an object ------------------------------------------------------
        row(
            "not_an_object",
            "[1,2]\n\"s\"\n42\n-1.5e3\ntrue\nnull\n",
            vec![
                dead("not a JSON object (found array)"),
                dead("not a JSON object (found string)"),
                dead("not a JSON object (found number)"),
                dead("not a JSON object (found number)"),
                dead("not a JSON object (found boolean)"),
                dead("not a JSON object (found null)"),
            ],
        ),
        // ----- invalid UTF-8: the offset in the reason, the raw bytes kept exactly -------------
        row(
            "invalid_utf8_latin1",
            b"{\"msg\":\"caf\xe9\"}\n".to_vec(),
            vec![dead("invalid UTF-8 at byte 11")],
        ),
        row(
            "invalid_utf8_variants",
            [
                &b"\xff\xfe{\"msg\":\"utf-16 bom\"}\n"[..],
                b"{\"msg\":\"overlong \xc0\xaf\"}\n",
                b"{\"msg\":\"cesu \xed\xa0\x80\"}\n",
                b"{\"k\xe9y\":1}\n",
                b"{\"msg\":\"ok\"}\xe2\x82\n",
            ]
            .concat(),
            vec![
                dead("invalid UTF-8 at byte 0"),
                dead("invalid UTF-8 at byte 17"),
                dead("invalid UTF-8 at byte 13"),
                dead("invalid UTF-8 at byte 3"),
                dead("invalid UTF-8 at byte 12"),
            ],
        ),
        // ----- NUL bytes ----------------------------------------------------------------------
        row(
            "nul_inside_a_string",
            b"{\"msg\":\"a\0b\"}\n".to_vec(),
            vec![dead(
                "invalid JSON at column 9: control character (\\u0000-\\u001F) found while parsing a string",
            )],
        ),
        // NUL bytes at the start of a line are dropped (counted in
        // logbelt_nul_bytes_dropped_total): a line of NULs only is an empty line.
        row("nul_only_line", b"\0\n".to_vec(), vec![]),
        // What a copytruncate leaves when the writer keeps its old offset: a hole of zeros, then
        // the next line. The zeros are dropped; the line after them is read as usual.
        row(
            "nul_run_then_a_valid_line",
            [vec![0u8; 300], b"{\"level\":\"info\",\"msg\":\"after the hole\"}\n{\"msg\":\"next\"}\n".to_vec()].concat(),
            vec![rec(Some("info"), Some("after the hole"), None), msg("next")],
        ),
        // The same with a hole longer than max_line_bytes: dropped whatever its length.
        row(
            "nul_run_over_the_limit_then_a_valid_line",
            [vec![0u8; MAX + 10], b"{\"msg\":\"after a big hole\"}\n{\"msg\":\"next\"}\n".to_vec()].concat(),
            vec![msg("after a big hole"), msg("next")],
        ),
        // ----- over max_line_bytes ------------------------------------------------------------
        row(
            "line_over_max_line_bytes",
            format!("{long}\n{{\"msg\":\"after the long line\"}}\n"),
            vec![
                Want::Dead {
                    reason: format!("line of 100000 bytes over the limit of {MAX} bytes"),
                    raw: Some(long.as_bytes()[..MAX].to_vec()),
                },
                msg("after the long line"),
            ],
        ),
        row(
            "line_of_exactly_max_line_bytes",
            format!("{}\n", object_of_len("exactly at the limit", MAX)),
            vec![msg("exactly at the limit")],
        ),
        // ----- nesting ------------------------------------------------------------------------
        row(
            "ten_thousand_brackets",
            format!("{}\n{{\"msg\":\"after\"}}\n", "[".repeat(10_000)),
            vec![
                dead("invalid JSON at column 128: recursion limit exceeded"),
                msg("after"),
            ],
        ),
        row(
            "ten_thousand_balanced_brackets_in_an_object",
            format!("{{\"a\":{}{}}}\n", "[".repeat(10_000), "]".repeat(10_000)),
            vec![dead("invalid JSON at column 132: recursion limit exceeded")],
        ),
        row(
            "nesting_at_the_limit_and_one_over",
            format!("{nested_ok}\n{nested_too_deep}\n"),
            vec![
                rec(None, None, None),
                dead("invalid JSON at column 132: recursion limit exceeded"),
            ],
        ),
        // ----- numbers ------------------------------------------------------------------------
        row(
            "huge_numbers",
            concat!(
                "{\"n\":1e400,\"msg\":\"big exponent\"}\n",
                "{\"n\":-1e400,\"msg\":\"negative\"}\n",
                "{\"n\":18446744073709551617,\"msg\":\"u64 max + 2\"}\n",
                "{\"n\":123456789012345678901234567890.123456789,\"msg\":\"long decimal\"}\n",
                "{\"n\":1e-400,\"msg\":\"tiny\"}\n",
                "{\"time\":1e400,\"level\":1e400,\"msg\":\"huge ts and level\"}\n",
                "{\"time\":-99999999999999999999999,\"msg\":\"huge negative ts\"}\n",
            ),
            vec![
                msg("big exponent"),
                msg("negative"),
                msg("u64 max + 2"),
                msg("long decimal"),
                msg("tiny"),
                rec(Some("1e400"), Some("huge ts and level"), None),
                msg("huge negative ts"),
            ],
        ),
        // ----- duplicate keys: the first usable value wins ------------------------------------
        row(
            "duplicate_keys",
            concat!(
                "{\"level\":\"warn\",\"level\":\"error\",\"msg\":\"first\",\"msg\":\"second\"}\n",
                "{\"level\":\"\",\"level\":\"error\",\"msg\":null,\"msg\":\"usable\"}\n",
                "{\"ts\":\"bad\",\"ts\":\"2024-05-26T11:42:52Z\"}\n",
            ),
            vec![
                rec(Some("warn"), Some("first"), None),
                rec(Some("error"), Some("usable"), None),
                ts(Some("2024-05-26T11:42:52.000000Z")),
            ],
        ),
        // ----- escapes ------------------------------------------------------------------------
        row(
            "escaped_newlines_inside_strings",
            "{\"msg\":\"line 1\\nline 2\\r\\n\\ttabbed \\\"quoted\\\" \\\\ \\/ \\u2028\"}\n",
            vec![msg("line 1\nline 2\r\n\ttabbed \"quoted\" \\ / \u{2028}")],
        ),
        row(
            "valid_surrogate_pair",
            "{\"msg\":\"smile \\ud83d\\ude00\"}\n",
            vec![msg("smile \u{1F600}")],
        ),
        row(
            "lone_surrogates_in_values",
            concat!(
                "{\"msg\":\"high \\ud800 alone\"}\n",
                "{\"msg\":\"low \\udc00 alone\"}\n",
                "{\"msg\":\"reversed \\udc00\\ud800\"}\n",
                "{\"msg\":\"ok\",\"nested\":{\"x\":[\"\\ud800\"]}}\n",
            ),
            vec![
                pg_refuses(msg("high \u{FFFD} alone")),
                pg_refuses(msg("low \u{FFFD} alone")),
                pg_refuses(msg("reversed \u{FFFD}\u{FFFD}")),
                pg_refuses(msg("ok")),
            ],
        ),
        row(
            "lone_surrogate_in_a_top_level_key",
            "{\"k\\ud800\":1}\n{\"k\\ud800\\u0041\":1}\n",
            vec![
                dead("invalid JSON at column 10: unexpected end of hex escape"),
                dead("invalid JSON at column 15: lone leading surrogate in hex escape"),
            ],
        ),
        row(
            "escaped_nul",
            concat!(
                "{\"msg\":\"nul \\u0000 inside\"}\n",
                "{\"msg\":\"ok\",\"other\":\"\\u0000\"}\n",
                // An escaped backslash, then `u0000`: six characters of text, no NUL.
                "{\"msg\":\"text \\\\u0000\"}\n",
            ),
            vec![
                pg_refuses(msg("nul \0 inside")),
                pg_refuses(msg("ok")),
                msg("text \\u0000"),
            ],
        ),
        // ----- BOM, CRLF, empty lines ---------------------------------------------------------
        row(
            "bom_at_file_start",
            b"\xEF\xBB\xBF{\"msg\":\"after the bom\"}\r\n\xEF\xBB\xBF{\"msg\":\"bom in the middle\"}\n"
                .to_vec(),
            vec![
                msg("after the bom"),
                dead("invalid JSON at column 1: expected value"),
            ],
        ),
        row(
            "crlf_across_read_boundaries",
            format!("{crlf_line}\r\n{crlf_line2}\r\n{{\"msg\":\"after\"}}\r\n"),
            vec![
                msg("crlf at the read boundary"),
                msg("crlf at the second boundary"),
                msg("after"),
            ],
        ),
        row(
            "empty_and_cr_only_lines",
            "\n\r\n\n{\"msg\":\"between\"}\n\r\n\n",
            vec![msg("between")],
        ),
        row(
            "cr_inside_a_line",
            "{\"msg\":\"a\"}\r\r\n{\"msg\":\"raw\rcr\"}\n",
            vec![
                // The last `\r` goes with the line ending; the other is JSON whitespace.
                msg("a"),
                dead("invalid JSON at column 11: control character (\\u0000-\\u001F) found while parsing a string"),
            ],
        ),
        row(
            "no_final_newline",
            "{\"msg\":\"complete\"}\n{\"msg\":\"not a line yet\"}",
            vec![msg("complete")],
        ),
        // ----- SQL-looking text is data -------------------------------------------------------
        row(
            "sql_looking_text",
            concat!(
                "{\"msg\":\"'); DROP TABLE log_events; --\",\"level\":\"info'); DROP TABLE files; --\"}\n",
                "{\"msg\":\"Robert\\\"); DELETE FROM dead_letters;--\"}\n",
                "{\"msg\":\"$$; DROP TABLE log_events; $$ %_ \\\\'\"}\n",
                "{\"'); DROP TABLE log_events; --\":\"key\",\"msg\":\"sql in a key\"}\n",
            ),
            vec![
                rec(
                    Some("info'); drop table files; --"),
                    Some("'); DROP TABLE log_events; --"),
                    None,
                ),
                msg("Robert\"); DELETE FROM dead_letters;--"),
                msg("$$; DROP TABLE log_events; $$ %_ \\'"),
                msg("sql in a key"),
            ],
        ),
        // ----- timestamps found in tests/data/corpus ------------------------------------------
        row(
            "timestamps_from_the_corpus",
            concat!(
                // suricata: +0100 without a colon
                "{\"timestamp\":\"2017-01-30T16:12:26.985026+0100\"}\n",
                // serilog CLEF: 7 fractional digits (rounded down to the microsecond)
                "{\"@t\":\"2017-04-20T04:24:47.0251719Z\"}\n",
                // caddy: float epoch seconds
                "{\"ts\":1716723772.6014807}\n",
                // pino: epoch milliseconds
                "{\"time\":1745532517537}\n",
                // journald: epoch microseconds as a string
                "{\"__REALTIME_TIMESTAMP\" : \"1534860261221373\"}\n",
                // MongoDB: nested t.$date with an offset
                "{\"t\":{\"$date\":\"2022-07-05T13:13:20.632+03:00\"}}\n",
                // MongoDB canonical extended JSON: $date.$numberLong
                "{\"t\":{\"$date\":{\"$numberLong\":\"1656993200632\"}}}\n",
                // Elasticsearch audit: comma decimal separator and +0100
                "{\"timestamp\":\"2022-01-27T14:16:25,271+0100\"}\n",
                // docker json-file: nanoseconds
                "{\"time\":\"2018-09-21T02:56:06.978292233Z\"}\n",
            ),
            vec![
                ts(Some("2017-01-30T15:12:26.985026Z")),
                ts(Some("2017-04-20T04:24:47.025171Z")),
                ts(Some("2024-05-26T11:42:52.601480Z")),
                ts(Some("2025-04-24T22:08:37.537000Z")),
                ts(Some("2018-08-21T14:04:21.221373Z")),
                ts(Some("2022-07-05T10:13:20.632000Z")),
                ts(Some("2022-07-05T03:53:20.632000Z")),
                ts(Some("2022-01-27T13:16:25.271000Z")),
                ts(Some("2018-09-21T02:56:06.978292Z")),
            ],
        ),
        row(
            "unparseable_timestamps_are_null_and_the_line_is_stored",
            concat!(
                // suricata-eve-broken: junk after the offset
                "{\"timestamp\":\"2017-01-30T16:12:26.985026+0100asloefbnjhowebfg\",\"msg\":\"junk\"}\n",
                "{\"ts\":\"yesterday\",\"msg\":\"words\"}\n",
                "{\"ts\":\"2024-02-30T00:00:00Z\",\"msg\":\"no such day\"}\n",
                "{\"ts\":\"2024-05-26T25:00:00Z\",\"msg\":\"no such hour\"}\n",
                "{\"ts\":true,\"msg\":\"boolean\"}\n",
                "{\"ts\":{\"$date\":null},\"msg\":\"null date\"}\n",
                "{\"ts\":\"\",\"msg\":\"empty\"}\n",
            ),
            vec![
                msg("junk"),
                msg("words"),
                msg("no such day"),
                msg("no such hour"),
                msg("boolean"),
                msg("null date"),
                msg("empty"),
            ],
        ),
        // ----- levels: bunyan/pino numbers, journald PRIORITY ---------------------------------
        row(
            "numeric_levels",
            concat!(
                "{\"level\":10}\n{\"level\":20}\n{\"level\":30}\n{\"level\":40}\n",
                "{\"level\":50}\n{\"level\":55}\n{\"level\":60}\n{\"level\":\"30\"}\n",
                "{\"level\":5}\n",
                "{\"PRIORITY\":\"0\"}\n{\"PRIORITY\":\"1\"}\n{\"PRIORITY\":\"2\"}\n{\"PRIORITY\":\"3\"}\n",
                "{\"PRIORITY\":\"4\"}\n{\"PRIORITY\":\"5\"}\n{\"PRIORITY\":\"6\"}\n{\"PRIORITY\":\"7\"}\n",
                "{\"PRIORITY\":3}\n{\"severity\":4}\n",
                "{\"level\":\" WARNING \"}\n{\"level\":\"CRITICAL\"}\n{\"level\":\"Custom\"}\n",
            ),
            vec![
                level("trace"),
                level("debug"),
                level("info"),
                level("warn"),
                level("error"),
                level("error"),
                level("fatal"),
                level("info"),
                level("5"),
                level("fatal"),
                level("fatal"),
                level("fatal"),
                level("error"),
                level("warn"),
                level("info"),
                level("info"),
                level("debug"),
                level("error"),
                level("warn"),
                level("warn"),
                level("fatal"),
                level("custom"),
            ],
        ),
    ]
}

// ---------------------------------------------------------------------------------------------
// Running a table
// ---------------------------------------------------------------------------------------------

/// (offset, bytes) of each non-empty complete line, README's rules: `\n` ends a line, a final
/// `\r` is dropped, a BOM at offset 0 is skipped.
fn lines_of(bytes: &[u8]) -> Vec<(i64, Vec<u8>)> {
    let mut out = vec![];
    let mut pos = 0;
    // NUL bytes at the start of a line are dropped: the line starts after them.
    let skip_nul = |pos: &mut usize| *pos += bytes[*pos..].iter().take_while(|&&b| b == 0).count();
    skip_nul(&mut pos);
    while let Some(i) = bytes[pos..].iter().position(|&b| b == b'\n') {
        let mut line = &bytes[pos..pos + i];
        let mut offset = pos;
        if pos == 0 && line.starts_with(b"\xEF\xBB\xBF") {
            line = &line[3..];
            offset = 3;
        }
        if let Some(l) = line.strip_suffix(b"\r") {
            line = l;
        }
        if !line.is_empty() {
            out.push((offset as i64, line.to_vec()));
        }
        pos += i + 1;
        skip_nul(&mut pos);
    }
    out
}

/// The end of the last complete line.
fn complete_len(bytes: &[u8]) -> i64 {
    bytes
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i as i64 + 1)
}

/// The config for this env with `read_buffer_bytes` and `max_line_bytes` set.
fn write_config(env: &TestEnv, max_line_bytes: usize, read_buffer_bytes: usize) {
    let mut cfg = env.config();
    cfg.max_line_bytes = max_line_bytes as u64;
    let toml = cfg.to_toml().replacen(
        "[pipeline]\n",
        &format!("[pipeline]\nread_buffer_bytes = {read_buffer_bytes}\n"),
        1,
    );
    std::fs::write(env.config_path(), toml).unwrap();
}

/// A SQL string literal (standard_conforming_strings: only `'` is special).
fn sql_str(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Writes each row to its own file, runs `logbelt run --once`, and checks every line's row.
/// Returns the problems found (empty: all good).
fn check_table(b: Backend, rows: &[Row]) -> Vec<String> {
    let Some(env) = TestEnv::new(b) else {
        return vec![];
    };
    write_config(&env, MAX, READ_BUFFER);
    let mut paths = vec![];
    for (i, r) in rows.iter().enumerate() {
        let path = env.log(&format!("{i:02}-{}.jsonl", r.name));
        append_bytes(&path, &r.bytes);
        paths.push(path);
    }
    let stderr = env.run_once();
    assert!(!stderr.contains("panicked"), "logbelt panicked:\n{stderr}");

    let db = &env.db;
    db.assert_no_duplicates();
    let events = db.events();
    let dead = db.dead_letters();
    let files = db.files();
    let mut problems = vec![];
    for (r, path) in rows.iter().zip(&paths) {
        let p = path.to_str().unwrap();
        let mut bad = |what: String| problems.push(format!("{}: {what}", r.name));
        let lines = lines_of(&r.bytes);
        if lines.len() != r.want.len() {
            bad(format!(
                "the table is wrong: {} lines, {} expectations",
                lines.len(),
                r.want.len()
            ));
            continue;
        }
        let my_events: BTreeMap<i64, _> = events
            .iter()
            .filter(|e| e.path.as_deref() == Some(p))
            .map(|e| (e.file_offset, e))
            .collect();
        let my_dead: BTreeMap<i64, _> = dead
            .iter()
            .filter(|d| d.path.as_deref() == Some(p))
            .map(|d| (d.file_offset, d))
            .collect();
        if my_events.len() + my_dead.len() != lines.len() {
            bad(format!(
                "{} records + {} dead letters for {} lines (records at {:?}, dead letters at {:?})",
                my_events.len(),
                my_dead.len(),
                lines.len(),
                my_events.keys().collect::<Vec<_>>(),
                my_dead.keys().collect::<Vec<_>>(),
            ));
        }
        for ((offset, line), want) in lines.iter().zip(&r.want) {
            let mut want = want;
            if let Want::PerBackend { sqlite, postgres } = want {
                want = match b {
                    Backend::Sqlite => sqlite,
                    Backend::Postgres => postgres,
                };
            }
            match want {
                Want::Record { level, message, ts } => {
                    let Some(e) = my_events.get(offset) else {
                        bad(format!(
                            "line at {offset}: no record; dead letter: {:?}",
                            my_dead.get(offset).map(|d| &d.error)
                        ));
                        continue;
                    };
                    if (e.level.as_deref(), e.message.as_deref(), e.ts.as_deref())
                        != (*level, message.as_deref(), *ts)
                    {
                        bad(format!(
                            "line at {offset}: (level, message, ts) = {:?}, expected {:?}",
                            (&e.level, &e.message, &e.ts),
                            (level, message, ts)
                        ));
                    }
                    let text = String::from_utf8(line.clone()).unwrap();
                    let same = match b {
                        Backend::Sqlite => e.fields == text,
                        Backend::Postgres => {
                            let n: Vec<Count> = db.load(&format!(
                                "SELECT count(*) AS n FROM log_events WHERE file_id = {} \
                                 AND file_offset = {offset} AND fields = {}::jsonb",
                                e.file_id,
                                sql_str(&text)
                            ));
                            n[0].n == 1
                        }
                    };
                    if !same {
                        bad(format!(
                            "line at {offset}: fields {:?} is not the line {:?}",
                            trim(&e.fields),
                            trim(&text)
                        ));
                    }
                }
                Want::Dead { reason, raw } => {
                    let Some(d) = my_dead.get(offset) else {
                        bad(format!(
                            "line at {offset}: no dead letter; record: {:?}",
                            my_events.get(offset).map(|e| trim(&e.fields))
                        ));
                        continue;
                    };
                    if !d.error.starts_with(reason.as_str()) {
                        bad(format!(
                            "line at {offset}: reason {:?}, expected it to start with {reason:?}",
                            d.error
                        ));
                    }
                    let want_raw = raw
                        .clone()
                        .unwrap_or_else(|| line[..line.len().min(MAX)].to_vec());
                    if d.raw != want_raw {
                        bad(format!(
                            "line at {offset}: raw {:?} ({} bytes), expected {:?} ({} bytes)",
                            trim(&String::from_utf8_lossy(&d.raw)),
                            d.raw.len(),
                            trim(&String::from_utf8_lossy(&want_raw)),
                            want_raw.len()
                        ));
                    }
                    if d.line_bytes != line.len() as i64 {
                        bad(format!(
                            "line at {offset}: line_bytes {}, expected {}",
                            d.line_bytes,
                            line.len()
                        ));
                    }
                }
                Want::PerBackend { .. } => unreachable!(),
            }
        }
        let committed: Vec<i64> = files
            .iter()
            .filter(|f| f.path == p)
            .map(|f| f.committed_offset)
            .collect();
        let end = complete_len(&r.bytes);
        let ok = committed == [end] || (end == 0 && committed.is_empty());
        if !ok {
            bad(format!("committed_offset {committed:?}, expected {end}"));
        }
    }
    // The SQL-looking lines did nothing: the three tables are there, with the right counts.
    let total: usize = rows.iter().map(|r| lines_of(&r.bytes).len()).sum();
    assert_eq!(db.rows(), total as i64, "rows in both tables");
    problems
}

/// The first 200 characters, for messages.
fn trim(s: &str) -> String {
    if s.chars().count() > 200 {
        format!("{}…", s.chars().take(200).collect::<String>())
    } else {
        s.to_owned()
    }
}

both_backends!(every_bad_input_class_becomes_the_expected_row);
fn every_bad_input_class_becomes_the_expected_row(b: Backend) {
    let problems = check_table(b, &table());
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn table_offsets_are_what_the_rules_say() {
    // The helper that decides where each row must be, checked on its own.
    assert_eq!(
        lines_of(b"\xEF\xBB\xBF{}\r\n\n\r\n x\npartial"),
        vec![(3, b"{}".to_vec()), (10, b" x".to_vec())]
    );
    assert_eq!(complete_len(b"a\nb"), 2);
    assert_eq!(complete_len(b"ab"), 0);
    // The CRLF rows put `\r` where the brief says.
    let t = table();
    let crlf = t
        .iter()
        .find(|r| r.name == "crlf_across_read_boundaries")
        .unwrap();
    assert_eq!(crlf.bytes[READ_BUFFER - 1], b'\r');
    assert_eq!(crlf.bytes[READ_BUFFER], b'\n');
    assert_eq!(crlf.bytes[2 * READ_BUFFER - 1], b'\r');
    assert_eq!(crlf.bytes[2 * READ_BUFFER], b'\n');
    let names: std::collections::BTreeSet<_> = t.iter().map(|r| r.name).collect();
    assert_eq!(names.len(), t.len(), "row names are unique");
}

// ---------------------------------------------------------------------------------------------
// Live: a long line written in pieces
// ---------------------------------------------------------------------------------------------

both_backends!(a_long_line_written_in_pieces_while_running_is_one_dead_letter);
/// A line over `max_line_bytes` written in 40 pieces with pauses while logbelt follows the file:
/// one dead letter with the first bytes and the full length, nothing stored before its newline,
/// and the next line stored.
fn a_long_line_written_in_pieces_while_running_is_one_dead_letter(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    let max = 4096;
    write_config(&env, max, READ_BUFFER);
    let path = env.log("pieces.jsonl");
    append_bytes(&path, b"{\"msg\":\"before\"}\n");
    let mut d = env.start();
    d.wait_started();
    env.db.wait_rows(1, Some(&mut d));

    let long = object_of_len("long", 40 * 2500);
    let start = std::fs::metadata(&path).unwrap().len() as i64;
    for piece in long.as_bytes().chunks(2500) {
        append_bytes(&path, piece);
        std::thread::sleep(Duration::from_millis(25));
    }
    // Time for logbelt to read the pieces; the line has no newline yet: nothing new is stored.
    std::thread::sleep(Duration::from_millis(500));
    d.assert_running();
    assert_eq!(env.db.rows(), 1, "a row before the long line ended");
    append_bytes(&path, b"\n{\"msg\":\"after\"}\n");
    env.db.wait_rows(3, Some(&mut d));

    let dead = env.db.dead_letters();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].file_offset, start);
    assert_eq!(dead[0].line_bytes, long.len() as i64);
    assert_eq!(
        dead[0].raw,
        long.as_bytes()[..max].to_vec(),
        "first bytes kept"
    );
    assert_eq!(
        dead[0].error,
        format!("line of {} bytes over the limit of {max} bytes", long.len())
    );
    let events = env.db.events();
    let messages: Vec<_> = events.iter().map(|e| e.message.as_deref()).collect();
    assert_eq!(messages, [Some("before"), Some("after")]);
    assert_eq!(events[1].file_offset, start + long.len() as i64 + 1);
    d.sigint();
    d.assert_exit_ok();
    let files = env.db.files();
    assert_eq!(files.len(), 1);
    assert_eq!(
        files[0].committed_offset,
        std::fs::metadata(&path).unwrap().len() as i64
    );
}

both_backends!(a_copytruncate_hole_of_zeros_is_dropped_and_the_line_after_it_stored);
/// copytruncate with a writer that does not use O_APPEND: the file is truncated to 0, then the
/// writer writes its next line at its old offset, leaving a hole of zeros before it. logbelt
/// notices the truncation (the first bytes changed), reads the file again from 0, drops the
/// zeros (NUL bytes at the start of a line) and stores that line as a record at the offset of
/// its first byte; the lines after it are records too.
fn a_copytruncate_hole_of_zeros_is_dropped_and_the_line_after_it_stored(b: Backend) {
    use std::os::unix::fs::FileExt;
    let Some(env) = TestEnv::new(b) else { return };
    env.config().write(&env);
    let path = env.log("app.jsonl");
    let before: Vec<String> = (0..10)
        .map(|k| format!("{{\"k\":{k},\"msg\":\"before the rotation\"}}"))
        .collect();
    crate::util::append_lines(&path, &before);
    let mut d = env.start();
    d.wait_started();
    env.db.wait_rows(10, Some(&mut d));

    let old_len = std::fs::metadata(&path).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(0).unwrap();
    let line = b"{\"k\":10,\"msg\":\"after the hole\"}\n";
    file.write_all_at(line, old_len).unwrap();
    drop(file);
    append_bytes(&path, b"{\"k\":11,\"msg\":\"next\"}\n");
    env.db.wait_rows(12, Some(&mut d));
    d.sigint();
    d.assert_exit_ok();

    let dead = env.db.dead_letters();
    assert!(dead.is_empty(), "{dead:?}");
    let events = env.db.events();
    assert_eq!(events.len(), 12);
    let after: Vec<(i64, Option<&str>)> = events[10..]
        .iter()
        .map(|e| (e.file_offset, e.message.as_deref()))
        .collect();
    assert_eq!(
        after,
        [
            (old_len as i64, Some("after the hole")),
            (old_len as i64 + line.len() as i64, Some("next"))
        ]
    );
    env.db.assert_no_duplicates();
}

/// A BOM-prefixed first line of exactly `max_line_bytes` bytes, written in two pieces while
/// logbelt runs: it must be a record at offset 3.
#[test]
fn a_bom_first_line_at_the_limit_written_in_two_pieces_is_a_record() {
    let env = TestEnv::new(Backend::Sqlite).unwrap();
    let max = 64;
    write_config(&env, max, READ_BUFFER);
    let path = env.log("bom.jsonl");
    let line = object_of_len("bom", max);
    let mut d = env.start();
    d.wait_started();
    append_bytes(&path, b"\xEF\xBB\xBF");
    append_bytes(&path, &line.as_bytes()[..20]);
    // logbelt reads the first piece (inotify wakes it; the poll interval is 200 ms).
    d.wait_for_log("Tailing file.");
    std::thread::sleep(Duration::from_millis(600));
    append_bytes(&path, &line.as_bytes()[20..]);
    append_bytes(&path, b"\n");
    env.db.wait_rows(1, Some(&mut d));
    let dead = env.db.dead_letters();
    assert!(
        dead.is_empty(),
        "dead letter {:?} raw {:?}",
        dead[0].error,
        String::from_utf8_lossy(&dead[0].raw)
    );
    let events = env.db.events();
    assert_eq!(events[0].file_offset, 3);
    assert_eq!(events[0].fields, line);
    d.sigint();
    d.assert_exit_ok();
}

// ---------------------------------------------------------------------------------------------
// The corpus: exact counts per file
// ---------------------------------------------------------------------------------------------

/// (file, records, dead letters, 1-based line numbers of the dead letters), counted by reading
/// the files: the dead letters are the comment/header/garbage lines and the hand-corrupted
/// suricata lines; every other line is a JSON object.
const CORPUS: &[(&str, usize, usize, &[usize])] = &[
    ("bunyan-corpus-all.jsonl", 14, 4, &[1, 10, 18, 19]),
    ("bunyan-express-crasher-144.jsonl", 1, 0, &[]),
    ("bunyan-renovate.jsonl", 10, 0, &[]),
    ("bunyan-restify-withreq.jsonl", 3, 0, &[]),
    ("caddy-access.jsonl", 4, 0, &[]),
    ("docker-json-file-istio-proxy.jsonl", 1, 0, &[]),
    ("ecs-logging-python.jsonl", 5, 0, &[]),
    ("elasticsearch-audit-8.0.jsonl", 3, 0, &[]),
    ("journald-export.jsonl", 2, 0, &[]),
    ("mongodb-4.4-json.jsonl", 10, 0, &[]),
    ("pino-otel-demo-payment.jsonl", 1, 0, &[]),
    ("rust-tracing-json.jsonl", 5, 0, &[]),
    ("serilog-clef-bom.jsonl", 15, 0, &[]),
    (
        "suricata-eve-broken.jsonl",
        263,
        6,
        &[1, 4, 5, 104, 160, 270],
    ),
    ("suricata-eve.jsonl", 266, 0, &[]),
    ("suricata-verify-fileinfo.jsonl", 1, 0, &[]),
    ("zeek-json-doubles.jsonl", 22, 1, &[1]),
    ("zeek-json-utf8-escaping.jsonl", 49, 1, &[1]),
];

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/corpus")
}

/// Byte offset of each 1-based line.
fn line_offsets(bytes: &[u8]) -> Vec<i64> {
    let mut offsets = vec![0];
    offsets.extend(
        bytes
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .map(|(i, _)| i as i64 + 1),
    );
    offsets
}

both_backends!(corpus_files_give_the_exact_counts);
fn corpus_files_give_the_exact_counts(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    env.config().write(&env);
    let dir = corpus_dir();
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".jsonl"))
        .collect();
    names.sort();
    let listed: Vec<&str> = CORPUS.iter().map(|c| c.0).collect();
    assert_eq!(names, listed, "the corpus changed: update CORPUS");
    for name in &names {
        std::fs::copy(dir.join(name), env.log(name)).unwrap();
    }
    let stderr = env.run_once();
    assert!(!stderr.contains("panicked"), "{stderr}");
    let db = &env.db;
    db.assert_no_duplicates();
    let events = db.events();
    let dead = db.dead_letters();
    let mut problems = vec![];
    for &(name, records, dead_count, dead_lines) in CORPUS {
        let path = env.log(name);
        let p = path.to_str().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let got_records = events
            .iter()
            .filter(|e| e.path.as_deref() == Some(p))
            .count();
        let got_dead: Vec<i64> = dead
            .iter()
            .filter(|d| d.path.as_deref() == Some(p))
            .map(|d| d.file_offset)
            .collect();
        let offsets = line_offsets(&bytes);
        let want_dead: Vec<i64> = dead_lines.iter().map(|&n| offsets[n - 1]).collect();
        if (got_records, got_dead.len()) != (records, dead_count) || got_dead != want_dead {
            problems.push(format!(
                "{name}: {got_records} records + {} dead letters at {got_dead:?}, \
                 expected {records} + {dead_count} at {want_dead:?}",
                got_dead.len()
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // Values spot checks, both backends: the corpus's timestamp and level formats.
    let first = |name: &str| {
        let p = env.log(name);
        events
            .iter()
            .find(|e| e.path.as_deref() == p.to_str())
            .cloned()
            .unwrap()
    };
    let e = first("journald-export.jsonl");
    assert_eq!(
        (e.ts.as_deref(), e.level.as_deref()),
        (Some("2018-08-21T14:04:21.221373Z"), Some("fatal"))
    );
    let e = first("serilog-clef-bom.jsonl");
    assert_eq!(e.file_offset, 3, "the BOM is skipped");
    assert_eq!(e.ts.as_deref(), Some("2017-04-20T04:24:47.025171Z"));
    let e = first("elasticsearch-audit-8.0.jsonl");
    assert_eq!(e.ts.as_deref(), Some("2022-01-27T13:16:25.271000Z"));
    let e = first("suricata-eve.jsonl");
    assert_eq!(e.ts.as_deref(), Some("2017-01-30T15:12:26.985026Z"));
    let e = first("mongodb-4.4-json.jsonl");
    assert_eq!(e.ts.as_deref(), Some("2021-03-22T21:21:20.349000Z"));
    let levels: Vec<Option<String>> = events
        .iter()
        .filter(|e| e.path.as_deref() == env.log("bunyan-corpus-all.jsonl").to_str())
        .map(|e| e.level.clone())
        .collect();
    for l in ["trace", "debug", "info", "warn", "error", "fatal"] {
        assert!(
            levels.iter().any(|x| x.as_deref() == Some(l)),
            "bunyan-corpus-all: no {l} in {levels:?}"
        );
    }
    // Every file is committed to its end.
    for f in db.files() {
        let len = std::fs::metadata(&f.path).unwrap().len() as i64;
        assert_eq!(f.committed_offset, len, "{}", f.path);
    }
}
