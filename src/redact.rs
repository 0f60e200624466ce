//! Password redaction for any text that may hold a database URL or connection string: config
//! errors, database errors, `status` and `query` output.

/// Hides passwords in any text that may contain a database URL or connection string: the
/// password of `scheme://user:password@host` and the value of `password=...` (libpq key/value
/// strings and URL query parameters) become `***`.
///
/// Meant for error messages from the database layer, which can echo the URL. It errs on the
/// side of hiding too much: the userinfo ends at the last `@` before the next whitespace or
/// quote.
pub fn redact(text: &str) -> String {
    redact_password_params(&redact_userinfo(text))
}

fn redact_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '<' | '>'))
            .unwrap_or(tail.len());
        let token = &tail[..end];
        match token
            .rfind('@')
            .and_then(|at| Some((at, token[..at].find(':')?)))
        {
            Some((at, colon)) if colon + 1 < at => {
                out.push_str(&token[..=colon]);
                out.push_str("***");
                out.push_str(&token[at..]);
            }
            _ => out.push_str(token),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

fn redact_password_params(text: &str) -> String {
    const KEY: &str = "password";
    // ASCII lower-casing keeps byte offsets.
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut done = 0;
    let mut from = 0;
    while let Some(found) = lower[from..].find(KEY) {
        let key_end = from + found + KEY.len();
        from = key_end;
        let after_key = &text[key_end..];
        let trimmed = after_key.trim_start_matches([' ', '\t']);
        let Some(after_eq) = trimmed.strip_prefix('=') else {
            continue;
        };
        let value = after_eq.trim_start_matches([' ', '\t']);
        let value_start = text.len() - value.len();
        let value_len = if let Some(quoted) = value.strip_prefix('\'') {
            // libpq quoting: 'it''s' is not a thing, but \' is.
            let mut escaped = false;
            let close = quoted.char_indices().find(|&(_, c)| {
                let is_close = c == '\'' && !escaped;
                escaped = c == '\\' && !escaped;
                is_close
            });
            close.map_or(value.len(), |(i, _)| i + 2)
        } else {
            value
                .find(|c: char| c.is_whitespace() || matches!(c, '&' | '"' | '\'' | '`' | ')'))
                .unwrap_or(value.len())
        };
        if value_len == 0 || value.get(..value_len) == Some("***") {
            continue;
        }
        out.push_str(&text[done..value_start]);
        out.push_str("***");
        done = value_start + value_len;
        from = done;
    }
    out.push_str(&text[done..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_handles_urls_and_keyword_strings() {
        let cases = [
            (
                "postgres://user:pass@host:5432/db",
                "postgres://user:***@host:5432/db",
            ),
            ("postgres://user@host/db", "postgres://user@host/db"),
            ("postgres://host/db", "postgres://host/db"),
            ("postgres://user:@host/db", "postgres://user:@host/db"),
            ("postgres://[::1]:5432/db", "postgres://[::1]:5432/db"),
            ("postgres://u:p@ss/w@rd@host/db", "postgres://u:***@host/db"),
            (
                "connection to \"postgres://a:b@h/d\" failed; retry postgres://c:d@h2/e now",
                "connection to \"postgres://a:***@h/d\" failed; retry postgres://c:***@h2/e now",
            ),
            (
                "postgres://h/db?user=u&password=secret&sslmode=require",
                "postgres://h/db?user=u&password=***&sslmode=require",
            ),
            (
                "host=h user=u password=secret dbname=d",
                "host=h user=u password=*** dbname=d",
            ),
            (
                "host=h PASSWORD = 'sec ret\\' x' dbname=d",
                "host=h PASSWORD = *** dbname=d",
            ),
            ("no password here", "no password here"),
            ("password=", "password="),
            ("", ""),
        ];
        for (input, expected) in cases {
            assert_eq!(redact(input), expected, "{input}");
        }
    }
}
