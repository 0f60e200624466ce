//! `parse_line` on arbitrary bytes with the default settings: it must never panic, and its
//! answers must be consistent (a record only for a JSON object; offsets within the line).
#![no_main]

use libfuzzer_sys::fuzz_target;
use logbelt::parse::{parse_line, ParseError, ParseSettings};

fuzz_target!(|data: &[u8]| {
    thread_local! {
        static SETTINGS: ParseSettings = ParseSettings::default();
    }
    SETTINGS.with(|s| match parse_line(data, s) {
        Ok(p) => {
            // A record: the line is UTF-8 and starts (after whitespace) with `{`.
            let text = std::str::from_utf8(data).expect("a record from invalid UTF-8");
            assert!(text
                .trim_start_matches([' ', '\t', '\n', '\r'])
                .starts_with('{'));
            if let Some(ts) = p.ts_micros {
                assert!(
                    (logbelt::parse::MIN_TS_MICROS..=logbelt::parse::MAX_TS_MICROS).contains(&ts)
                );
                let _ = logbelt::parse::format_timestamp_micros(ts);
            }
            if let Some(level) = &p.level {
                assert!(!level.is_empty());
            }
        }
        Err(ParseError::InvalidUtf8 { at }) => {
            assert!(at < data.len());
            assert!(std::str::from_utf8(&data[..at]).is_ok());
        }
        Err(ParseError::InvalidJson { column, .. }) => {
            assert!(
                column <= data.len() + 1,
                "column {column} of {} bytes",
                data.len()
            );
        }
        Err(ParseError::NotObject { .. }) => {
            let text = std::str::from_utf8(data).expect("\"not an object\" from invalid UTF-8");
            assert!(!text.trim_matches([' ', '\t', '\n', '\r']).is_empty());
        }
    });
    // Also the timestamp parser, on the same bytes as text.
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = logbelt::parse::parse_timestamp_str(text);
    }
});
