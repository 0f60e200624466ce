//! Lines to rows: every complete line becomes exactly one row at its byte offset; bad lines
//! become dead letters with their reason; live following; partial lines; `start_at`.

use crate::util::{
    append_bytes, json_lines, same_json, Backend, ConfigBuilder, SourceSpec, TestEnv, Written,
    HOST, SOURCE,
};

// ---------------------------------------------------------------------------------------------
// N lines across files
// ---------------------------------------------------------------------------------------------

both_backends!(lines_across_files_are_stored_once_at_their_offsets);
fn lines_across_files_are_stored_once_at_their_offsets(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    std::fs::create_dir(env.path("web")).unwrap();
    std::fs::create_dir(env.path("logs/sub")).unwrap();
    let mut cfg = env.config();
    cfg.sources[0].exclude = vec!["skip-*.jsonl".into()];
    cfg.sources.push(SourceSpec {
        name: "web".into(),
        include: vec!["web/*.log".into()],
        exclude: vec![],
        start_at: None,
    });
    cfg.write(&env);

    let mut w = Written::new();
    w.append(&env.log("a.jsonl"), &json_lines("a", 0, 60));
    w.append(&env.log("b.jsonl"), &json_lines("b", 0, 35));
    w.append(&env.log("c.jsonl"), &json_lines("c", 0, 1));
    let web = env.path("web/access.log");
    w.append(&web, &json_lines("web", 0, 17));
    w.set_source(&web, "web");
    // Not matched: excluded, another extension, a subfolder (`*` does not cross `/`).
    append_bytes(&env.log("skip-me.jsonl"), b"{\"excluded\":true}\n");
    append_bytes(&env.log("notes.txt"), b"{\"other\":true}\n");
    append_bytes(&env.log("sub/deep.jsonl"), b"{\"deep\":true}\n");

    env.run_once();

    let db = &env.db;
    assert_eq!(db.rows(), 60 + 35 + 1 + 17, "rows");
    w.assert_stored(db);
    w.assert_positions_at_end(db);
    assert_eq!(db.files().len(), 4, "files rows: {:?}", db.files());
    // Levels are lower-cased; the message comes from `msg`.
    for e in db.events() {
        assert_eq!(e.level.as_deref(), Some("info"), "level of {e:?}");
        let fields: serde_json::Value = serde_json::from_str(&e.fields).unwrap();
        assert_eq!(
            e.message.as_deref(),
            fields["msg"].as_str(),
            "message of {e:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Level and message extraction
// ---------------------------------------------------------------------------------------------

both_backends!(level_is_lowercased_and_message_comes_from_message_msg_or_log);
fn level_is_lowercased_and_message_comes_from_message_msg_or_log(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    env.config().write(&env);
    let lines: Vec<String> = [
        r#"{"level":"WARN","message":"from message"}"#,
        r#"{"level":"Error","msg":"from msg"}"#,
        r#"{"level":"debug","log":"from log"}"#,
        r#"{"message":"first wins","msg":"not this","log":"nor this"}"#,
        r#"{"severity":"INFO","text":"no message field"}"#,
        r#"{"k":1}"#,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let expected: &[(Option<&str>, Option<&str>)] = &[
        (Some("warn"), Some("from message")),
        (Some("error"), Some("from msg")),
        (Some("debug"), Some("from log")),
        (None, Some("first wins")),
        (Some("info"), None),
        (None, None),
    ];
    let mut w = Written::new();
    w.append(&env.log("a.jsonl"), &lines);
    env.run_once();
    w.assert_stored(&env.db);
    let events = env.db.events();
    for (e, (level, message)) in events.iter().zip(expected) {
        assert_eq!(
            (e.level.as_deref(), e.message.as_deref()),
            (*level, *message),
            "level and message of {}",
            e.fields
        );
    }
}

both_backends!(ts_comes_from_the_first_timestamp_field_as_rfc3339_utc);
fn ts_comes_from_the_first_timestamp_field_as_rfc3339_utc(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    env.config().write(&env);
    let cases: &[(&str, Option<&str>)] = &[
        (
            r#"{"timestamp":"2024-05-26T11:42:52.123456Z"}"#,
            Some("2024-05-26T11:42:52.123456Z"),
        ),
        (
            r#"{"ts":"2017-01-30T16:12:26.985026+01:00"}"#,
            Some("2017-01-30T15:12:26.985026Z"),
        ),
        (
            r#"{"@timestamp":"2024-05-26T11:42:52Z"}"#,
            Some("2024-05-26T11:42:52.000000Z"),
        ),
        (
            r#"{"time":1716723772}"#,
            Some("2024-05-26T11:42:52.000000Z"),
        ),
        (
            r#"{"time":1745532517537}"#,
            Some("2025-04-24T22:08:37.537000Z"),
        ),
        (
            r#"{"ts":1716723772.5}"#,
            Some("2024-05-26T11:42:52.500000Z"),
        ),
        // The first field present wins, in the configured order.
        (
            r#"{"time":"2000-01-01T00:00:00Z","timestamp":"2024-05-26T11:42:52Z"}"#,
            Some("2024-05-26T11:42:52.000000Z"),
        ),
        (r#"{"timestamp":"yesterday"}"#, None),
        (r#"{"msg":"no time"}"#, None),
    ];
    let lines: Vec<String> = cases.iter().map(|(l, _)| l.to_string()).collect();
    let mut w = Written::new();
    w.append(&env.log("a.jsonl"), &lines);
    env.run_once();
    w.assert_stored(&env.db);
    for (e, (line, ts)) in env.db.events().iter().zip(cases) {
        assert_eq!(e.ts.as_deref(), *ts, "ts of {line}");
    }
}

// ---------------------------------------------------------------------------------------------
// Dead letters, BOM, CRLF, empty lines, long lines
// ---------------------------------------------------------------------------------------------

/// What one written line must become.
enum Want {
    /// A record whose `fields` is this text.
    Record(String),
    /// A dead letter.
    Dead {
        raw: Vec<u8>,
        line_bytes: i64,
        /// The error starts with this.
        error: String,
        /// For "not a JSON object": the JSON type, if the message names one.
        found: Option<&'static str>,
    },
    /// No row (an empty line).
    Skip,
}

fn record(s: &str) -> Want {
    Want::Record(s.to_string())
}

fn dead(raw: &[u8], error: &str) -> Want {
    Want::Dead {
        raw: raw.to_vec(),
        line_bytes: raw.len() as i64,
        error: error.to_string(),
        found: None,
    }
}

fn not_object(raw: &str, found: &'static str) -> Want {
    Want::Dead {
        raw: raw.as_bytes().to_vec(),
        line_bytes: raw.len() as i64,
        error: "not a JSON object".into(),
        found: Some(found),
    }
}

/// A JSON object of exactly `len` bytes.
fn object_of_len(k: u32, len: usize) -> String {
    let head = format!(r#"{{"k":{k},"pad":""#);
    let s = format!("{head}{}\"}}", "x".repeat(len - head.len() - 2));
    assert_eq!(s.len(), len);
    s
}

const MAX_LINE: usize = 64;

both_backends!(bad_lines_become_dead_letters_and_good_ones_records);
fn bad_lines_become_dead_letters_and_good_ones_records(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    let mut cfg = env.config();
    cfg.max_line_bytes = MAX_LINE as u64;
    cfg.write(&env);

    let long = object_of_len(14, 217);
    let exact = object_of_len(16, MAX_LINE);
    let over = object_of_len(17, MAX_LINE + 1);
    let exact_crlf = object_of_len(18, MAX_LINE);
    // (bytes of the line including its terminator, what it must become, offset of its row
    // relative to the line's first byte)
    let pieces: Vec<(Vec<u8>, Want, i64)> = vec![
        // A BOM at the start of the file is skipped: the record starts after it.
        (
            b"\xEF\xBB\xBF{\"k\":0,\"msg\":\"bom\"}\n".to_vec(),
            record(r#"{"k":0,"msg":"bom"}"#),
            3,
        ),
        (
            b"{\"k\":1,\"msg\":\"crlf\"}\r\n".to_vec(),
            record(r#"{"k":1,"msg":"crlf"}"#),
            0,
        ),
        (b"\n".to_vec(), Want::Skip, 0),
        (b"\r\n".to_vec(), Want::Skip, 0),
        (
            b"{\"k\":\"\xff\xfe\"}\n".to_vec(),
            dead(b"{\"k\":\"\xff\xfe\"}", "invalid UTF-8 at byte 6"),
            0,
        ),
        (
            b"\xc3(\n".to_vec(),
            dead(b"\xc3(", "invalid UTF-8 at byte 0"),
            0,
        ),
        (
            b"{\"k\":7,\n".to_vec(),
            dead(b"{\"k\":7,", "invalid JSON at column "),
            0,
        ),
        (
            b"not json at all\n".to_vec(),
            dead(b"not json at all", "invalid JSON at column "),
            0,
        ),
        (b"[1,2,3]\n".to_vec(), not_object("[1,2,3]", "array"), 0),
        (
            b"\"just a string\"\n".to_vec(),
            not_object("\"just a string\"", "string"),
            0,
        ),
        (b"42\n".to_vec(), not_object("42", "number"), 0),
        (b"true\n".to_vec(), not_object("true", "boolean"), 0),
        (b"null\n".to_vec(), not_object("null", "null"), 0),
        (
            format!("{long}\n").into_bytes(),
            Want::Dead {
                raw: long.as_bytes()[..MAX_LINE].to_vec(),
                line_bytes: long.len() as i64,
                error: format!(
                    "line of {} bytes over the limit of {MAX_LINE} bytes",
                    long.len()
                ),
                found: None,
            },
            0,
        ),
        // The line after a long one is intact.
        (
            b"{\"k\":15,\"msg\":\"after long\"}\n".to_vec(),
            record(r#"{"k":15,"msg":"after long"}"#),
            0,
        ),
        (
            format!("{exact}\n").into_bytes(),
            Want::Record(exact.clone()),
            0,
        ),
        (
            format!("{over}\n").into_bytes(),
            Want::Dead {
                raw: over.as_bytes()[..MAX_LINE].to_vec(),
                line_bytes: over.len() as i64,
                error: format!(
                    "line of {} bytes over the limit of {MAX_LINE} bytes",
                    over.len()
                ),
                found: None,
            },
            0,
        ),
        // Over the limit with CRLF: the `\r` is not counted in the length.
        (
            format!("{long}\r\n").into_bytes(),
            Want::Dead {
                raw: long.as_bytes()[..MAX_LINE].to_vec(),
                line_bytes: long.len() as i64,
                error: format!(
                    "line of {} bytes over the limit of {MAX_LINE} bytes",
                    long.len()
                ),
                found: None,
            },
            0,
        ),
        // Exactly at the limit, with CRLF: the `\r` is not part of the line.
        (
            format!("{exact_crlf}\r\n").into_bytes(),
            Want::Record(exact_crlf.clone()),
            0,
        ),
        (b"  {\"k\":19}  \n".to_vec(), record(r#"  {"k":19}  "#), 0),
        (
            b"{\"k\":20,\"msg\":\"last\"}\n".to_vec(),
            record(r#"{"k":20,"msg":"last"}"#),
            0,
        ),
    ];

    let path = env.log("mixed.jsonl");
    let mut content = Vec::new();
    let mut wants = Vec::new();
    for (bytes, want, delta) in pieces {
        wants.push((content.len() as i64 + delta, want));
        content.extend_from_slice(&bytes);
    }
    append_bytes(&path, &content);

    env.run_once();

    let db = &env.db;
    db.assert_no_duplicates();
    let events = db.events();
    let dead = db.dead_letters();
    let want_records: Vec<(i64, &String)> = wants
        .iter()
        .filter_map(|(o, w)| match w {
            Want::Record(s) => Some((*o, s)),
            _ => None,
        })
        .collect();
    let want_dead: Vec<(i64, &Want)> = wants
        .iter()
        .filter(|(_, w)| matches!(w, Want::Dead { .. }))
        .map(|(o, w)| (*o, w))
        .collect();
    let skipped = wants
        .iter()
        .filter(|(_, w)| matches!(w, Want::Skip))
        .count();
    assert_eq!(skipped, 2);

    let got_offsets: Vec<i64> = events.iter().map(|e| e.file_offset).collect();
    let want_offsets: Vec<i64> = want_records.iter().map(|(o, _)| *o).collect();
    assert_eq!(got_offsets, want_offsets, "offsets of the records");
    for (e, (off, text)) in events.iter().zip(&want_records) {
        assert!(
            same_json(b, &e.fields, text),
            "record at {off}: stored {:?}, expected {text:?}",
            e.fields
        );
        assert_eq!((e.host.as_str(), e.source.as_str()), (HOST, SOURCE));
        assert_eq!(e.path.as_deref(), Some(path.to_str().unwrap()));
    }

    let got_offsets: Vec<i64> = dead.iter().map(|d| d.file_offset).collect();
    let want_offsets: Vec<i64> = want_dead.iter().map(|(o, _)| *o).collect();
    assert_eq!(got_offsets, want_offsets, "offsets of the dead letters");
    for (d, (off, want)) in dead.iter().zip(&want_dead) {
        let Want::Dead {
            raw,
            line_bytes,
            error,
            found,
        } = want
        else {
            unreachable!()
        };
        assert_eq!(
            &d.raw, raw,
            "raw bytes of the dead letter at {off} ({})",
            d.error
        );
        assert_eq!(
            d.line_bytes, *line_bytes,
            "line_bytes of the dead letter at {off}"
        );
        assert!(
            d.error.starts_with(error.as_str()),
            "error of the dead letter at {off}: {:?}, expected it to start with {error:?}",
            d.error
        );
        if let Some(kind) = found {
            if d.error.contains("found") {
                assert!(
                    d.error.contains(&format!("found {kind}")),
                    "dead letter at {off}: {:?} should say found {kind}",
                    d.error
                );
            }
        }
        assert_eq!((d.host.as_str(), d.source.as_str()), (HOST, SOURCE));
        assert_eq!(d.path.as_deref(), Some(path.to_str().unwrap()));
    }

    let files = db.files();
    assert_eq!(files.len(), 1);
    assert_eq!(
        files[0].committed_offset,
        content.len() as i64,
        "committed_offset"
    );
}

both_backends!(json_objects_the_database_may_refuse_are_not_lost);
/// `\u0000` and a lone surrogate are valid JSON escapes to some parsers and not to PostgreSQL's
/// `jsonb`. Whatever logbelt decides (record or dead letter), each line must be stored exactly
/// once and the lines around it too: one odd line must not wedge the file.
fn json_objects_the_database_may_refuse_are_not_lost(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    env.config().write(&env);
    let path = env.log("odd.jsonl");
    let lines = [
        r#"{"k":0,"msg":"before"}"#,
        r#"{"k":1,"msg":"nul \u0000 inside"}"#,
        r#"{"k":2,"msg":"lone surrogate \ud800"}"#,
        r#"{"k":3,"big":1e400}"#,
        r#"{"k":4,"msg":"after"}"#,
    ];
    let mut content = String::new();
    let mut offsets = Vec::new();
    for l in lines {
        offsets.push(content.len() as i64);
        content += l;
        content += "\n";
    }
    append_bytes(&path, content.as_bytes());

    env.run_once();

    let db = &env.db;
    db.assert_no_duplicates();
    let mut stored: Vec<i64> = db.events().iter().map(|e| e.file_offset).collect();
    stored.extend(db.dead_letters().iter().map(|d| d.file_offset));
    stored.sort();
    assert_eq!(
        stored, offsets,
        "every line exactly once (record or dead letter)"
    );
    let events = db.events();
    assert!(
        events.iter().any(|e| e.file_offset == 0),
        "the first line is a record"
    );
    assert!(
        events.iter().any(|e| e.file_offset == offsets[4]),
        "the last line is a record"
    );
    assert_eq!(db.files()[0].committed_offset, content.len() as i64);
}

// ---------------------------------------------------------------------------------------------
// Live following
// ---------------------------------------------------------------------------------------------

both_backends!(live_run_follows_appends_and_new_files_then_sigint_exits_0);
fn live_run_follows_appends_and_new_files_then_sigint_exits_0(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    env.config().write(&env);
    let a = env.log("a.jsonl");
    let mut w = Written::new();
    w.append(&a, &json_lines("a", 0, 10));

    let mut d = env.start();
    d.wait_started();
    env.db.wait_rows(10, Some(&mut d));

    // Appends in several writes, and a new file that matches the glob.
    w.append(&a, &json_lines("a", 10, 5));
    w.append(&env.log("b.jsonl"), &json_lines("b", 0, 15));
    w.append(&a, &json_lines("a", 15, 15));
    // One line written in two pieces: logbelt may read the first piece alone, and must not
    // store it until its newline arrives.
    let split = json_lines("a", 30, 1).remove(0);
    let offset = std::fs::metadata(&a).unwrap().len() as i64;
    let (first, rest) = split.split_at(split.len() / 2);
    append_bytes(&a, first.as_bytes());
    // Time for the tailer to see the incomplete line (inotify wakes it at once; the poll
    // interval is 200 ms). Nothing to wait for: what must happen is that nothing happens.
    std::thread::sleep(std::time::Duration::from_millis(400));
    append_bytes(&a, format!("{rest}\n").as_bytes());
    w.record(&a, offset, &split);
    w.append(&a, &json_lines("a", 31, 4));
    w.append(&env.log("c.jsonl"), &json_lines("c", 0, 3));

    env.db.wait_rows(w.total(), Some(&mut d));
    w.assert_stored(&env.db);

    d.sigint();
    d.assert_exit_ok();
    w.assert_stored(&env.db);
    w.assert_positions_at_end(&env.db);
}

// ---------------------------------------------------------------------------------------------
// Partial last line
// ---------------------------------------------------------------------------------------------

both_backends!(partial_last_line_is_stored_whole_once_completed);
fn partial_last_line_is_stored_whole_once_completed(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    env.config().write(&env);
    let a = env.log("a.jsonl");
    let mut w = Written::new();
    w.append(&a, &json_lines("a", 0, 3));
    let line = json_lines("a", 3, 1).remove(0);
    let offset = std::fs::metadata(&a).unwrap().len() as i64;
    let (first, rest) = line.split_at(line.len() / 2);
    append_bytes(&a, first.as_bytes());

    env.run_once();
    w.assert_stored(&env.db);
    let files = env.db.files();
    assert_eq!(files.len(), 1);
    assert_eq!(
        files[0].committed_offset, offset,
        "the position stops at the start of the incomplete line"
    );

    append_bytes(&a, format!("{rest}\n").as_bytes());
    w.record(&a, offset, &line);
    env.run_once();
    w.assert_stored(&env.db);
    w.assert_positions_at_end(&env.db);

    // The same while running: an incomplete line is held, then stored whole.
    let mut d = env.start();
    d.wait_started();
    let line = json_lines("a", 4, 1).remove(0);
    let offset = std::fs::metadata(&a).unwrap().len() as i64;
    let (first, rest) = line.split_at(10);
    append_bytes(&a, first.as_bytes());
    // A complete line in another file, written after the fragment: once its row is there,
    // logbelt has had its chance to (wrongly) store the fragment.
    w.append(&env.log("b.jsonl"), &json_lines("b", 0, 1));
    env.db.wait_rows(w.total(), Some(&mut d));
    w.assert_stored(&env.db);
    append_bytes(&a, format!("{rest}\n").as_bytes());
    w.record(&a, offset, &line);
    env.db.wait_rows(w.total(), Some(&mut d));
    d.sigint();
    d.assert_exit_ok();
    w.assert_stored(&env.db);
    w.assert_positions_at_end(&env.db);
}

// ---------------------------------------------------------------------------------------------
// start_at = "end"
// ---------------------------------------------------------------------------------------------

both_backends!(start_at_end_skips_existing_content_and_stores_appended_lines);
fn start_at_end_skips_existing_content_and_stores_appended_lines(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    let mut cfg: ConfigBuilder = env.config();
    cfg.sources[0].start_at = Some("end".into());
    cfg.write(&env);
    let a = env.log("a.jsonl");
    // Existing content: not expected in the tables.
    crate::util::append_lines(&a, &json_lines("old", 0, 10));
    let mut w = Written::new();

    let mut d = env.start();
    d.wait_started();
    // Once the file is tailed its start position is fixed (the end): later lines are new.
    d.wait_for_log("Tailing file.");
    w.append(&a, &json_lines("a", 0, 5));
    env.db.wait_rows(5, Some(&mut d));
    w.assert_stored(&env.db);

    // A file that appears after the start is read from its beginning.
    w.append(&env.log("b.jsonl"), &json_lines("b", 0, 4));
    env.db.wait_rows(9, Some(&mut d));
    w.assert_stored(&env.db);

    d.sigint();
    d.assert_exit_ok();

    // A committed position beats start_at: lines written while stopped are stored.
    w.append(&a, &json_lines("a", 5, 3));
    w.append(&env.log("b.jsonl"), &json_lines("b", 4, 2));
    env.run_once();
    w.assert_stored(&env.db);
    w.assert_positions_at_end(&env.db);
}

// ---------------------------------------------------------------------------------------------
// Long lines under the limit, compressed files, default host
// ---------------------------------------------------------------------------------------------

both_backends!(a_line_longer_than_the_read_buffer_is_stored_whole);
fn a_line_longer_than_the_read_buffer_is_stored_whole(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    env.config().write(&env);
    // The read buffer is 64 KiB by default: this line takes several reads.
    let big = format!(r#"{{"k":1,"msg":"big","pad":"{}"}}"#, "y".repeat(300_000));
    let lines = vec![
        r#"{"k":0,"msg":"before"}"#.to_string(),
        big,
        r#"{"k":2,"msg":"after"}"#.to_string(),
    ];
    let mut w = Written::new();
    w.append(&env.log("a.jsonl"), &lines);
    env.run_once();
    w.assert_stored(&env.db);
    w.assert_positions_at_end(&env.db);
}

both_backends!(compressed_files_are_skipped_not_read_as_text);
fn compressed_files_are_skipped_not_read_as_text(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    env.config().write(&env);
    let mut w = Written::new();
    w.append(&env.log("plain.jsonl"), &json_lines("p", 0, 5));
    // gzip and zstd magic numbers under names the glob matches.
    append_bytes(
        &env.log("gz.jsonl"),
        b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\n{\"a\":1}\n",
    );
    append_bytes(
        &env.log("zst.jsonl"),
        b"\x28\xb5\x2f\xfd\x00\x58\n{\"a\":1}\n",
    );
    env.run_once();
    w.assert_stored(&env.db);
    assert_eq!(env.db.dead_count(), 0, "dead letters from compressed files");
    assert_eq!(env.db.files().len(), 1, "files rows: {:?}", env.db.files());
}

/// The machine's hostname, as gethostname(2) gives it.
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that many bytes.
    let r = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    assert_eq!(r, 0, "gethostname");
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

#[test]
fn host_defaults_to_the_machine_hostname() {
    let env = TestEnv::new(Backend::Sqlite).unwrap();
    let mut cfg = env.config();
    cfg.host = String::new(); // no [agent] table
    cfg.write(&env);
    crate::util::append_lines(&env.log("a.jsonl"), &json_lines("a", 0, 3));
    env.run_once();
    let host = hostname();
    let events = env.db.events();
    assert_eq!(events.len(), 3);
    for e in &events {
        assert_eq!(e.host, host, "host of {e:?}");
    }
    for f in env.db.files() {
        assert_eq!(f.host, host, "host of {f:?}");
    }
}
