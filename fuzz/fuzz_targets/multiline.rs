//! The multiline joiner (`parse_multiline_batch`) on arbitrary lines cut into arbitrary
//! batches: no panic, and any cut gives the same rows (offset, stored bytes, reason) as one
//! batch; every line is in exactly one row (its offset is the first of an event, or between
//! two); each batch's position never falls inside an open event.
//!
//! Input layout: byte 0 picks the rule (`start = '^E '` or `continue = '^\s'`) and `max_lines`
//! (1..=8); byte 1 `max_bytes` (16..=271); byte 2 seeds the batch sizes (1..=8 lines); the
//! rest is the file, split into lines by the tailer's splitter (empty lines kept, as for a
//! multiline source).
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use logbelt::actors::parser::{parse_multiline_batch, MultiPending};
use logbelt::parse::{
    Format, Multiline, MultilineRule, ParseSettings, SourceFormat, SourceParser,
};
use logbelt::record::{FileIdentity, FileMeta, FilePosition, LineBatch, LineRef, RecordBatch};
use logbelt::tail::lines::{LineSplitter, LinesOut};

const MAX_LINE: usize = 64;

/// (offset, the row's JSON object or dead letter's bytes, the dead letter's reason).
type Row = (u64, Vec<u8>, Option<String>);

fn source(data0: u8, data1: u8) -> SourceParser {
    let rule = if data0 % 2 == 0 {
        MultilineRule::Start(regex::Regex::new("^E ").expect("a valid pattern"))
    } else {
        MultilineRule::Continue(regex::Regex::new(r"^\s").expect("a valid pattern"))
    };
    let spec = SourceFormat {
        source: "fuzz".to_owned(),
        format: Format::Text,
        timestamp_formats: Default::default(),
        on_mismatch: Default::default(),
        multiline: Some(Multiline {
            rule,
            max_lines: 1 + usize::from(data0 / 2 % 8),
            max_bytes: 16 + usize::from(data1),
            timeout: std::time::Duration::from_secs(1),
        }),
        default_level: None,
    };
    SourceParser::new(&ParseSettings::default(), &spec)
}

fn batch(lines: &[(u64, Vec<u8>, Option<u64>)], end: u64, forget: bool) -> LineBatch {
    let mut buf = Vec::new();
    let mut refs = Vec::new();
    for (offset, bytes, too_long) in lines {
        let start = buf.len() as u32;
        buf.extend_from_slice(bytes);
        refs.push(LineRef {
            offset: *offset,
            range: start..buf.len() as u32,
            too_long: *too_long,
        });
    }
    LineBatch {
        buf,
        lines: refs,
        empty_lines: 0,
        bytes: 0,
        position: FilePosition {
            file: Arc::new(FileMeta {
                id: 1,
                source: Arc::from("fuzz"),
            }),
            path: Arc::from("/fuzz.log"),
            identity: FileIdentity {
                dev: 1,
                inode: 1,
                fingerprint_len: 0,
                fingerprint: 0,
            },
            offset: end,
            forget,
        },
    }
}

fn rows(out: &RecordBatch, into: &mut Vec<Row>) {
    for r in &out.records {
        into.push((r.offset, out.bytes(&r.line).to_vec(), None));
    }
    for d in &out.dead_letters {
        into.push((d.offset, out.bytes(&d.raw).to_vec(), Some(d.reason.to_string())));
    }
}

/// Runs the joiner over `lines` in batches of the given sizes; the last batch forgets the
/// file (so the open event is stored).
fn run(
    p: &SourceParser,
    lines: &[(u64, Vec<u8>, Option<u64>)],
    end: u64,
    sizes: &[usize],
) -> Vec<Row> {
    let mut pending = MultiPending::default();
    let mut got = Vec::new();
    let mut rest = lines;
    let mut i = 0;
    loop {
        let n = sizes[i % sizes.len()].min(rest.len());
        let (now, later) = rest.split_at(n);
        let last = later.is_empty();
        let batch_end = later.first().map_or(end, |l| l.0);
        let out = parse_multiline_batch(batch(now, batch_end, last), p, &mut pending, MAX_LINE);
        // The position is never past the first line of a row not stored yet.
        assert!(out.position.offset <= batch_end);
        rows(&out, &mut got);
        if last {
            break;
        }
        rest = later;
        i += 1;
    }
    got.sort();
    got
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let p = source(data[0], data[1]);
    let mut state = u32::from(data[2]) | 0x100;
    let mut splitter = LineSplitter::new(0, MAX_LINE).keep_empty_lines(true);
    let mut out = LinesOut::default();
    splitter.feed(&data[3..], &mut out);
    let end = splitter.boundary();
    let lines: Vec<(u64, Vec<u8>, Option<u64>)> = out
        .lines
        .iter()
        .map(|l| {
            let bytes = out.buf[l.range.start as usize..l.range.end as usize].to_vec();
            (l.offset, bytes, l.too_long)
        })
        .collect();
    let mut sizes = Vec::new();
    for _ in 0..16 {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        sizes.push(1 + (state % 8) as usize);
    }
    let whole = run(&p, &lines, end, &[usize::MAX]);
    let cut = run(&p, &lines, end, &sizes);
    assert_eq!(cut, whole);
    // Every row starts at a line, no two rows at one line, and every non-empty line is in
    // one: the lines before a row's first are in the row before.
    let starts: Vec<u64> = whole.iter().map(|r| r.0).collect();
    let mut unique = starts.clone();
    unique.dedup();
    assert_eq!(unique, starts, "two rows at one offset");
    for s in &starts {
        assert!(lines.iter().any(|l| l.0 == *s), "a row at {s}, not a line");
    }
    if let Some(first) = lines.iter().find(|l| !l.1.is_empty() || l.2.is_some()) {
        assert_eq!(starts.first(), Some(&first.0), "the first line starts a row");
    }
});
