//! CRI container logs (Kubernetes, containerd, CRI-O): `<RFC 3339 time> <stream> <tag> <text>`,
//! the tag `F` (a full line, or the last piece of one) or `P` (a piece of a longer line: the
//! next lines of the same stream up to its `F` line continue it). Other tags may follow after a
//! `:` (`F:x`); only the first letter is read.
//!
//! This module reads one line; joining pieces into one event, with exactly-once positions, is
//! the Parser actor's (`actors/parser.rs`, ARCHITECTURE.md "Parsing").

use super::format::Obj;
use super::parse_timestamp_str;

/// One CRI line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CriLine<'a> {
    /// The time as written.
    pub time: &'a str,
    pub ts_micros: i64,
    /// `stdout` or `stderr` (any word is accepted).
    pub stream: &'a str,
    /// The tag is `P`: the text continues on the stream's next line.
    pub partial: bool,
    /// The text after the tag (may be empty).
    pub text: &'a str,
}

/// The parts of `line`, or `None` when it is not a CRI line.
pub fn cri_line(line: &str) -> Option<CriLine<'_>> {
    let mut parts = line.splitn(4, ' ');
    let time = parts.next()?;
    let stream = parts.next().filter(|s| !s.is_empty())?;
    let tag = parts.next()?;
    let text = parts.next().unwrap_or("");
    let partial = match tag.split(':').next()? {
        "P" => true,
        "F" => false,
        _ => return None,
    };
    let ts_micros = parse_timestamp_str(time)?;
    Some(CriLine {
        time,
        ts_micros,
        stream,
        partial,
        text,
    })
}

/// Writes the event `{"time": …, "stream": …, "message": …}` (and `"partial": true` when it
/// was cut before its `F` line).
pub fn write_cri_event(out: &mut Vec<u8>, time: &str, stream: &str, message: &str, cut: bool) {
    let mut obj = Obj::new(out);
    obj.str("time", time);
    obj.str("stream", stream);
    obj.str("message", message);
    if cut {
        obj.bool("partial", true);
    }
    obj.finish();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cri_lines() {
        let l = cri_line("2016-10-06T00:17:09.669794202Z stdout P log content 1").unwrap();
        assert_eq!(
            (l.time, l.stream, l.partial, l.text),
            (
                "2016-10-06T00:17:09.669794202Z",
                "stdout",
                true,
                "log content 1"
            )
        );
        assert_eq!(
            Some(l.ts_micros),
            parse_timestamp_str("2016-10-06T00:17:09.669794Z")
        );
        let l = cri_line("2016-10-06T00:17:10.113242941+02:00 stderr F").unwrap();
        assert_eq!((l.partial, l.text), (false, ""));
        let l = cri_line("2016-10-06T00:17:10Z stderr F:x  two spaces").unwrap();
        assert_eq!(l.text, " two spaces");
        for bad in [
            "plain text",
            "2016-10-06T00:17:10Z stdout X text",
            "yesterday stdout F text",
            "2016-10-06T00:17:10Z  F text",
        ] {
            assert_eq!(cri_line(bad), None, "{bad}");
        }
        let mut out = Vec::new();
        write_cri_event(&mut out, "t", "stdout", "a\"b", true);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"time":"t","stream":"stdout","message":"a\"b","partial":true}"#
        );
    }
}
