//! Shared by the logfmt and syslog targets: one text line through a source of `format`, which
//! must never panic, and whose event (when the line fits) is a JSON object whose message, if
//! any, is text of the line or unescaped from it.

use logbelt::parse::{parse_text, Format, ParseSettings, Scratch, SourceFormat, SourceParser};

/// A source named `fuzz` of `format`, with the default `[parse]` settings.
pub fn parser(format: Format) -> SourceParser {
    let spec = SourceFormat {
        source: "fuzz".to_owned(),
        format,
        timestamp_formats: Default::default(),
        on_mismatch: Default::default(),
        multiline: None,
        default_level: None,
    };
    SourceParser::new(&ParseSettings::default(), &spec)
}

/// Parses `data` (when UTF-8) with `parser` and checks the event.
pub fn check(parser: &SourceParser, data: &[u8]) {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    let mut scratch = Scratch::new(parser);
    let mut out = b"prefix".to_vec();
    match parse_text(line, parser, &mut scratch, &mut out) {
        None => assert_eq!(out, b"prefix", "a mismatch leaves the buffer as it was"),
        Some(event) => {
            let json = std::str::from_utf8(&out[6..]).expect("the event is UTF-8");
            let value: serde_json::Value =
                serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"));
            assert!(value.is_object(), "{json}");
            if let Some(ts) = event.ts_micros {
                assert!((logbelt::parse::MIN_TS_MICROS..=logbelt::parse::MAX_TS_MICROS).contains(&ts));
            }
            if let Some(level) = &event.level {
                assert!(!level.is_empty());
            }
        }
    }
}
