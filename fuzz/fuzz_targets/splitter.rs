//! `LineSplitter` fed arbitrary chunks: it must never panic, and any chunking must give what
//! feeding the bytes whole gives (lines, offsets, too-long flags, empty lines, NUL bytes
//! dropped, boundary).
//!
//! Input layout: byte 0 picks `max_line_bytes` (16..=79), byte 1 the start offset (0 or not),
//! byte 2 seeds the chunk sizes (1..=64, from a small xorshift generator); the rest is the
//! byte stream itself, so that the fuzzer's insertions grow lines directly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use logbelt::tail::lines::{LineSplitter, LinesOut};

type Split = (Vec<(u64, Vec<u8>, Option<u64>)>, u32, u64, u64, u64);

fn run(chunks: &[&[u8]], start: u64, max: usize, take_every: usize) -> Split {
    let mut s = LineSplitter::new(start, max);
    let mut out = LinesOut::default();
    let mut lines = Vec::new();
    let mut empty = 0;
    let mut nul = 0;
    let mut take = |out: &mut LinesOut| {
        let o = std::mem::take(out);
        for l in &o.lines {
            lines.push((
                l.offset,
                o.buf[l.range.start as usize..l.range.end as usize].to_vec(),
                l.too_long,
            ));
        }
        empty += o.empty_lines;
        nul += o.nul_bytes;
    };
    for (i, c) in chunks.iter().enumerate() {
        s.feed(c, &mut out);
        if take_every > 0 && i % take_every == 0 {
            take(&mut out);
        }
    }
    take(&mut out);
    (lines, empty, nul, s.boundary(), s.pending_bytes())
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let max = 16 + usize::from(data[0] % 64);
    let start = if data[1] % 2 == 0 {
        0
    } else {
        u64::from(data[1]) * 1000
    };
    let mut state = u32::from(data[2]) | 0x100;
    let mut chunks: Vec<&[u8]> = Vec::new();
    let mut rest = &data[3..];
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let n = (1 + (state % 64) as usize).min(rest.len());
        chunks.push(&rest[..n]);
        rest = &rest[n..];
    }
    let whole: Vec<u8> = chunks.concat();
    let chunked = run(&chunks, start, max, 3);
    let at_once = run(&[&whole], start, max, 0);
    // The boundary is just past the last newline (and the NUL bytes after it, dropped at the
    // start of a line); pending bytes are the rest.
    let last_nl = whole.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let covered = last_nl + whole[last_nl..].iter().take_while(|&&b| b == 0).count();
    assert_eq!(at_once.3, start + covered as u64);
    assert_eq!(at_once.4, (whole.len() - covered) as u64);
    assert_eq!(chunked, at_once);
});
