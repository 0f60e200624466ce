//! The syslog parser (RFC 5424 and RFC 3164 as files hold it) on arbitrary lines: no panic; a
//! line that fits gives a JSON object, its time within years 0000–9999.
#![no_main]

use libfuzzer_sys::fuzz_target;
use logbelt::parse::{Format, SourceParser};

#[path = "text_formats.rs"]
mod text_formats;

fuzz_target!(|data: &[u8]| {
    thread_local! {
        static PARSER: SourceParser = text_formats::parser(Format::Syslog);
    }
    PARSER.with(|p| text_formats::check(p, data));
});
