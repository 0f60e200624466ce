//! The logfmt parser on arbitrary lines: no panic; a line that fits gives a JSON object, its
//! time within years 0000–9999, a mismatch leaves the output buffer as it was.
#![no_main]

use libfuzzer_sys::fuzz_target;
use logbelt::parse::{Format, SourceParser};

#[path = "text_formats.rs"]
mod text_formats;

fuzz_target!(|data: &[u8]| {
    thread_local! {
        static PARSER: SourceParser = text_formats::parser(Format::Logfmt);
    }
    PARSER.with(|p| text_formats::check(p, data));
});
