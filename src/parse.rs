//! TEMPORARY stub, replaced by the real parser.
use std::borrow::Cow;

pub struct FieldPath(String);
impl FieldPath {
    pub fn new(name: &str) -> FieldPath {
        FieldPath(name.to_string())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
pub struct ParseSettings {
    pub timestamp_fields: Vec<FieldPath>,
    pub level_fields: Vec<FieldPath>,
    pub message_fields: Vec<FieldPath>,
}
pub struct Parsed<'a> {
    pub ts_micros: Option<i64>,
    pub level: Option<Cow<'a, str>>,
    pub message: Option<Cow<'a, str>>,
}
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseError {
    #[error("invalid UTF-8 at byte {at}")]
    InvalidUtf8 { at: usize },
    #[error("invalid JSON at column {column}: {msg}")]
    InvalidJson { column: usize, msg: String },
    #[error("not a JSON object")]
    NotAnObject,
}
pub fn parse_line<'a>(line: &'a [u8], _settings: &ParseSettings) -> Result<Parsed<'a>, ParseError> {
    let s = std::str::from_utf8(line).map_err(|e| ParseError::InvalidUtf8 {
        at: e.valid_up_to(),
    })?;
    let v: serde_json::Value = serde_json::from_str(s).map_err(|e| ParseError::InvalidJson {
        column: e.column(),
        msg: e.to_string(),
    })?;
    let o = v.as_object().ok_or(ParseError::NotAnObject)?;
    Ok(Parsed {
        ts_micros: None,
        level: o
            .get("level")
            .and_then(|l| l.as_str())
            .map(|s| Cow::Owned(s.to_lowercase())),
        message: o
            .get("msg")
            .and_then(|l| l.as_str())
            .map(|s| Cow::Owned(s.to_string())),
    })
}
pub fn format_timestamp_micros(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
        .unwrap_or_default()
}
impl ParseSettings {
    /// The settings of a `[parse]` config table.
    pub fn from_config(c: &crate::config::ParseConfig) -> Self {
        let paths = |names: &[String]| names.iter().map(|n| FieldPath::new(n)).collect();
        ParseSettings {
            timestamp_fields: paths(&c.timestamp_fields),
            level_fields: paths(&c.level_fields),
            message_fields: paths(&c.message_fields),
        }
    }
}
