//! Properties of the line splitter (`logbelt::tail::lines`), checked with proptest over random
//! byte streams cut into random reads:
//!
//! - any chunking gives the same lines, offsets, too-long flags, empty-line count, boundary and
//!   pending byte count as feeding the stream whole (also when the tail task takes the gathered
//!   lines out between reads, as it does when it sends a batch);
//! - the result is the one a plain reference model of README's "What happens to each line"
//!   gives;
//! - the boundary never covers a partial line, and the pending bytes are exactly the bytes after
//!   it (a partial line's leading NUL bytes are dropped, so covered);
//! - a run of NUL bytes at the start of a line is dropped, counted, and the line starts after it;
//! - each line's offset and bytes are found in the input, followed by `\n` or `\r\n`
//!   (lines within the limit), so offsets + lengths reconstruct the input.
//!
//! 256 cases per property by default (a few seconds); `PROPTEST_CASES=N` changes it.

use logbelt::tail::lines::{LineSplitter, LinesOut};
use proptest::prelude::*;
use proptest::test_runner::Config;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Lines (offset, bytes, too_long), empty lines, boundary, pending bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Split {
    lines: Vec<(u64, Vec<u8>, Option<u64>)>,
    empty: u64,
    /// NUL bytes dropped at the start of lines.
    nul: u64,
    boundary: u64,
    pending: u64,
}

/// Moves the lines gathered in `out` into `acc` (as the tail task does when it sends a batch).
fn drain(out: &mut LinesOut, acc: &mut Split) {
    let out = std::mem::take(out);
    let mut prev_end = 0u32;
    for l in &out.lines {
        assert!(
            l.range.start == prev_end && l.range.end as usize <= out.buf.len(),
            "line ranges tile the batch buffer: {:?} after {prev_end}, buffer {}",
            l.range,
            out.buf.len()
        );
        prev_end = l.range.end;
        acc.lines.push((
            l.offset,
            out.buf[l.range.start as usize..l.range.end as usize].to_vec(),
            l.too_long,
        ));
    }
    assert_eq!(
        prev_end as usize,
        out.buf.len(),
        "no stray bytes in the batch buffer"
    );
    acc.empty += u64::from(out.empty_lines);
    acc.nul += out.nul_bytes;
}

/// Feeds `data` (starting at file offset `start`) in chunks of the given sizes (used in turn),
/// taking the lines out after chunk `i` when `flushes[i % len]`.
fn split(data: &[u8], start: u64, max: usize, chunks: &[usize], flushes: &[bool]) -> Split {
    let mut s = LineSplitter::new(start, max);
    let mut out = LinesOut::default();
    let mut acc = Split {
        lines: vec![],
        empty: 0,
        nul: 0,
        boundary: 0,
        pending: 0,
    };
    let mut rest = data;
    let mut i = 0;
    while !rest.is_empty() {
        let n = chunks[i % chunks.len()].clamp(1, rest.len());
        let (chunk, tail) = rest.split_at(n);
        s.feed(chunk, &mut out);
        if flushes.is_empty() || flushes[i % flushes.len()] {
            drain(&mut out, &mut acc);
        }
        rest = tail;
        i += 1;
    }
    // Feeding nothing changes nothing.
    s.feed(&[], &mut out);
    drain(&mut out, &mut acc);
    acc.boundary = s.boundary();
    acc.pending = s.pending_bytes();
    acc
}

/// The reference: README's rules written the plain way, over the whole input.
fn model(data: &[u8], start: u64, max: usize) -> Split {
    let mut lines = vec![];
    let mut empty = 0;
    let mut nul = 0;
    let mut pos = 0usize;
    let skip_nul = |pos: &mut usize, nul: &mut u64| {
        let n = data[*pos..].iter().take_while(|&&b| b == 0).count();
        *pos += n;
        *nul += n as u64;
    };
    skip_nul(&mut pos, &mut nul);
    while let Some(i) = data[pos..].iter().position(|&b| b == b'\n') {
        let mut seg = &data[pos..pos + i];
        let mut offset = start + pos as u64;
        if offset == 0 && seg.starts_with(BOM) {
            seg = &seg[BOM.len()..];
            offset = BOM.len() as u64;
        }
        if let Some(s) = seg.strip_suffix(b"\r") {
            seg = s;
        }
        if seg.is_empty() {
            empty += 1;
        } else if seg.len() > max {
            lines.push((offset, seg[..max].to_vec(), Some(seg.len() as u64)));
        } else {
            lines.push((offset, seg.to_vec(), None));
        }
        pos += i + 1;
        skip_nul(&mut pos, &mut nul);
    }
    Split {
        lines,
        empty,
        nul,
        boundary: start + pos as u64,
        pending: (data.len() - pos) as u64,
    }
}

/// Checks the invariants that do not need the model.
fn check_invariants(data: &[u8], start: u64, max: usize, got: &Split) -> Result<(), TestCaseError> {
    // The boundary is just past the last `\n`: it never covers a partial line.
    let covered = (got.boundary - start) as usize;
    let last_nl = data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let leading_nul = data[last_nl..].iter().take_while(|&&b| b == 0).count();
    prop_assert_eq!(covered, last_nl + leading_nul, "boundary");
    prop_assert_eq!(got.pending, (data.len() - covered) as u64, "pending bytes");
    // Every `\n` in the covered part ends exactly one line or one empty line.
    let newlines = data[..covered].iter().filter(|&&b| b == b'\n').count() as u64;
    // Every NUL byte dropped starts a line (the file's, or one after a `\n`).
    let mut line_start = true;
    let mut nul = 0u64;
    for &b in data {
        if line_start && b == 0 {
            nul += 1;
        } else {
            line_start = b == b'\n';
        }
    }
    prop_assert_eq!(got.nul, nul, "NUL bytes dropped");
    prop_assert_eq!(
        got.lines.len() as u64 + got.empty,
        newlines,
        "lines + empty"
    );
    let mut prev_end = start;
    for (offset, bytes, too_long) in &got.lines {
        prop_assert!(
            *offset >= prev_end,
            "offsets increase: {} after {}",
            offset,
            prev_end
        );
        let at = (offset - start) as usize;
        prop_assert!(!bytes.is_empty(), "no empty line is emitted");
        match too_long {
            None => {
                prop_assert!(bytes.len() <= max);
                // Offset + length reconstruct the line, and a line ending follows.
                prop_assert_eq!(
                    &data[at..at + bytes.len()],
                    &bytes[..],
                    "bytes at {}",
                    offset
                );
                let after = &data[at + bytes.len()..];
                prop_assert!(
                    after.starts_with(b"\n") || after.starts_with(b"\r\n"),
                    "a line ending follows the line at {}",
                    offset
                );
                prev_end = offset + bytes.len() as u64;
            }
            Some(len) => {
                prop_assert!(*len > max as u64, "too long: {} > {}", len, max);
                prop_assert_eq!(
                    bytes.len(),
                    max,
                    "a too-long line keeps max_line_bytes bytes"
                );
                prop_assert_eq!(&data[at..at + max], &bytes[..], "first bytes at {}", offset);
                let end = at + *len as usize;
                let after = &data[end..];
                prop_assert!(
                    after.starts_with(b"\n") || after.starts_with(b"\r\n"),
                    "the full length {} of the line at {} ends at a line ending",
                    len,
                    offset
                );
                prev_end = offset + len;
            }
        }
    }
    prop_assert!(prev_end <= got.boundary);
    Ok(())
}

/// Byte streams rich in line endings, `\r`, BOMs and runs around the limit.
fn stream() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        3 => Just(b"\n".to_vec()),
        2 => Just(b"\r\n".to_vec()),
        1 => Just(b"\r".to_vec()),
        1 => Just(BOM.to_vec()),
        1 => Just(b"\0\0\0".to_vec()),
        3 => any::<u8>().prop_map(|b| vec![b]),
        3 => (0usize..40).prop_map(|n| vec![b'x'; n]),
    ];
    proptest::collection::vec(token, 0..40).prop_map(|t| t.concat())
}

fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(config())]

    /// Not at file offset 0 (a BOM there is data): any chunking matches the whole feed and the
    /// model.
    #[test]
    fn any_chunking_matches_the_whole_feed_and_the_model(
        data in stream(),
        start in 1u64..1_000_000,
        max in 1usize..48,
        chunks in proptest::collection::vec(1usize..64, 1..8),
        flushes in proptest::collection::vec(any::<bool>(), 0..5),
    ) {
        let whole = split(&data, start, max, &[data.len().max(1)], &[]);
        let chunked = split(&data, start, max, &chunks, &flushes);
        prop_assert_eq!(&chunked, &whole, "chunked vs whole");
        prop_assert_eq!(&whole, &model(&data, start, max), "whole vs model");
        check_invariants(&data, start, max, &whole)?;
    }

    /// At file offset 0 without a BOM at the start.
    #[test]
    fn any_chunking_matches_at_offset_0_without_a_leading_bom(
        data in stream().prop_filter("no leading BOM", |d| !d.starts_with(BOM)),
        max in 1usize..48,
        chunks in proptest::collection::vec(1usize..64, 1..8),
        flushes in proptest::collection::vec(any::<bool>(), 0..5),
    ) {
        let whole = split(&data, 0, max, &[data.len().max(1)], &[]);
        let chunked = split(&data, 0, max, &chunks, &flushes);
        prop_assert_eq!(&chunked, &whole, "chunked vs whole");
        prop_assert_eq!(&whole, &model(&data, 0, max), "whole vs model");
        check_invariants(&data, 0, max, &whole)?;
    }

    /// At file offset 0 with a leading BOM, with the first line short enough to stay well
    /// within the limit (max_line_bytes ≥ 16, as the config requires, and a first line of at
    /// most 12 bytes): the BOM is skipped whatever the chunking.
    #[test]
    fn a_leading_bom_is_skipped_whatever_the_chunking(
        first in proptest::collection::vec(any::<u8>().prop_filter("not a newline", |b| *b != b'\n'), 0..12),
        rest in stream(),
        max in 16usize..48,
        chunks in proptest::collection::vec(1usize..64, 1..8),
        flushes in proptest::collection::vec(any::<bool>(), 0..5),
    ) {
        let data = [BOM, &first, b"\n", &rest].concat();
        let whole = split(&data, 0, max, &[data.len()], &[]);
        let chunked = split(&data, 0, max, &chunks, &flushes);
        prop_assert_eq!(&chunked, &whole, "chunked vs whole");
        prop_assert_eq!(&whole, &model(&data, 0, max), "whole vs model");
    }

    /// At file offset 0 with a leading BOM and a first line of any length.
    #[test]
    fn a_leading_bom_with_a_long_first_line_whatever_the_chunking(
        first in proptest::collection::vec(any::<u8>().prop_filter("not a newline", |b| *b != b'\n'), 0..80),
        rest in stream(),
        max in 16usize..48,
        chunks in proptest::collection::vec(1usize..64, 1..8),
        flushes in proptest::collection::vec(any::<bool>(), 0..5),
    ) {
        let data = [BOM, &first, b"\n", &rest].concat();
        let whole = split(&data, 0, max, &[data.len()], &[]);
        let chunked = split(&data, 0, max, &chunks, &flushes);
        prop_assert_eq!(&chunked, &whole, "chunked vs whole");
        prop_assert_eq!(&whole, &model(&data, 0, max), "whole vs model");
        check_invariants(&data, 0, max, &whole)?;
    }
}

/// Regression test, the smallest case of a bug the property above found: a file that starts with
/// a BOM and a line of exactly `max_line_bytes` bytes. Fed whole, the line was kept; fed in two
/// reads, the splitter kept only `max_line_bytes + 1` bytes *including the BOM*, stripped the
/// BOM, and emitted the first `max_line_bytes - 2` bytes as a complete line that was not too
/// long: 2 bytes lost silently (the record became invalid JSON).
#[test]
fn bom_first_line_at_the_limit_split_across_reads() {
    let max = 16;
    let line = br#"{"k":"abcdefghi"}"#[..max].to_vec(); // 16 bytes
    let line = [&line[..max - 1], b"}"].concat();
    assert_eq!(line.len(), max);
    let data = [BOM, &line, b"\n"].concat();
    let whole = split(&data, 0, max, &[data.len()], &[]);
    assert_eq!(whole.lines, vec![(3, line.clone(), None)], "fed whole");
    let in_two = split(&data, 0, max, &[8, 100], &[]);
    assert_eq!(
        in_two.lines,
        vec![(3, line.clone(), None)],
        "fed in two reads"
    );
}

/// Also over the limit: the kept prefix was 2 bytes short of `max_line_bytes` when the line
/// spans reads.
#[test]
fn bom_first_line_over_the_limit_split_across_reads() {
    let max = 16;
    let line = vec![b'y'; 40];
    let data = [BOM, &line, b"\n"].concat();
    let want = vec![(3, line[..max].to_vec(), Some(40))];
    assert_eq!(
        split(&data, 0, max, &[data.len()], &[]).lines,
        want,
        "fed whole"
    );
    assert_eq!(
        split(&data, 0, max, &[10, 100], &[]).lines,
        want,
        "fed in two reads"
    );
}

/// Hand-picked streams the random ones may miss.
#[test]
fn fixed_examples_match_the_model() {
    let cases: &[(&[u8], u64, usize)] = &[
        (b"", 0, 16),
        (b"\n", 0, 16),
        (b"\r\n\r\n", 0, 16),
        (b"\r", 0, 16),
        (b"\r\r\n", 0, 16),
        (b"\xEF\xBB\xBF\n", 0, 16),
        (b"\xEF\xBB\xBF\r\n{}\n", 0, 16),
        (b"\xEF\xBB\xBF", 0, 16),
        (b"\xEF\xBB\n", 0, 16),
        (b"\xEF\xBB\xBF\xEF\xBB\xBF{}\n", 0, 16),
        (b"{}\n\xEF\xBB\xBF{}\n", 0, 16),
        (b"0123456789abcdef\r\n", 0, 16),
        (b"0123456789abcdefg\r\n", 0, 16),
        (b"0123456789abcdef\r\r\n", 0, 16),
        (b"\0\0\0\0\0\0\0\0{\"a\":1}\n", 0, 16),
        (b"partial", 7, 16),
        (b"\n\n\n\nx", 100, 16),
    ];
    for &(data, start, max) in cases {
        let want = model(data, start, max);
        for chunk in 1..=data.len().max(1) {
            let got = split(data, start, max, &[chunk], &[true]);
            assert_eq!(
                got,
                want,
                "{:?} in chunks of {chunk}",
                String::from_utf8_lossy(data)
            );
        }
        check_invariants(data, start, max, &want).unwrap();
    }
}
