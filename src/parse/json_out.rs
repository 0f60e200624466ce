//! Writing an event's JSON object: straight into a buffer, strings escaped eight plain bytes
//! at a time.

/// A JSON object written straight into a buffer.
pub(super) struct Obj<'o> {
    out: &'o mut Vec<u8>,
    empty: bool,
}

impl<'o> Obj<'o> {
    pub fn new(out: &'o mut Vec<u8>) -> Obj<'o> {
        out.push(b'{');
        Obj { out, empty: true }
    }

    fn key(&mut self, key: &str) {
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        write_json_str(self.out, key);
        self.out.push(b':');
    }

    pub fn str(&mut self, key: &str, value: &str) {
        self.key(key);
        write_json_str(self.out, value);
    }

    pub fn uint(&mut self, key: &str, value: u64) {
        self.key(key);
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        let mut v = value;
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.out.extend_from_slice(&digits[i..]);
    }

    pub fn bool(&mut self, key: &str, value: bool) {
        self.key(key);
        self.out
            .extend_from_slice(if value { b"true" } else { b"false" });
    }

    /// A nested object, written by `f`.
    pub fn object(&mut self, key: &str, f: impl FnOnce(&mut Obj<'_>)) {
        self.key(key);
        let mut inner = Obj::new(self.out);
        f(&mut inner);
        inner.finish();
    }

    pub fn finish(self) {
        self.out.push(b'}');
    }
}

/// Whether any byte of `chunk` needs escaping in a JSON string (`"`, `\\`, or below 0x20):
/// eight bytes at a time (the classic "has a zero byte" bit trick).
fn needs_escape(chunk: [u8; 8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let x = u64::from_le_bytes(chunk);
    let zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    // Bytes below 0x20: (x - 0x20 per byte) borrows into the high bit; bytes >= 0x80 are
    // excluded by `!x`, and they never need escaping.
    let below = x.wrapping_sub(ONES * 0x20) & !x & HIGH;
    (below | zero(x ^ (ONES * u64::from(b'"'))) | zero(x ^ (ONES * u64::from(b'\\')))) != 0
}

/// `s` as a JSON string.
pub(super) fn write_json_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(s.len() + 2);
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut from = 0;
    let mut i = 0;
    while i < bytes.len() {
        // Runs of eight plain bytes are skipped whole.
        if let Some(chunk) = bytes.get(i..i + 8) {
            let mut eight = [0u8; 8];
            eight.copy_from_slice(chunk);
            if !needs_escape(eight) {
                i += 8;
                continue;
            }
        }
        let b = bytes[i];
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => b"",
            _ => {
                i += 1;
                continue;
            }
        };
        out.extend_from_slice(&bytes[from..i]);
        if escape.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(escape);
        }
        i += 1;
        from = i;
    }
    out.extend_from_slice(&bytes[from..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped() {
        let mut out = Vec::new();
        write_json_str(&mut out, "a\"b\\c\nd\te\u{1}f\u{7f}ü");
        let s = std::str::from_utf8(&out).unwrap();
        assert_eq!(s, "\"a\\\"b\\\\c\\nd\\te\\u0001f\u{7f}ü\"");
        let back: String = serde_json::from_str(s).unwrap();
        assert_eq!(back, "a\"b\\c\nd\te\u{1}f\u{7f}ü");
    }

    #[test]
    fn json_strings_agree_with_serde_json_for_every_ascii_byte_at_every_position() {
        for b in 0u8..0x80 {
            for pos in 0..17 {
                let mut text = "abcdefghijklmnopq".to_owned();
                text.replace_range(pos..=pos, &char::from(b).to_string());
                let text = format!("{text}ü✓");
                let mut out = Vec::new();
                write_json_str(&mut out, &text);
                let back: String = serde_json::from_slice(&out).unwrap();
                assert_eq!(back, text);
                assert_eq!(out, serde_json::to_vec(&text).unwrap(), "{b} at {pos}");
            }
        }
    }
}
