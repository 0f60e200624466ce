//! `[web]`: `logbelt run` serves the web console too (README, "Web console"). Off unless
//! `listen` is set; `logbelt serve` does not read this table (it has `--listen`).

use std::net::SocketAddr;

use serde::Deserialize;

use super::kinds::{defaults, read};
use super::rules::{Host, Listen};

/// `[web]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebConfig {
    /// `listen`: the address `run` serves the console and its API on, e.g. `127.0.0.1:8080`.
    /// An address that is not loopback needs a token (`token_file` or `LOGBELT_WEB_TOKEN`).
    #[serde(default, deserialize_with = "read::<Listen, _>")]
    pub listen: Option<SocketAddr>,
    /// `token_file`: a file holding the access token; a relative path is relative to the config
    /// file's folder ([`WebConfig::token_path`]).
    #[serde(default, deserialize_with = "read::<Option<Host>, _>")]
    pub token_file: Option<String>,
}

impl Default for WebConfig {
    fn default() -> Self {
        defaults()
    }
}

impl WebConfig {
    /// `token_file` joined to the config file's folder.
    pub fn token_path(&self, base_dir: &std::path::Path) -> Option<std::path::PathBuf> {
        self.token_file.as_ref().map(|f| base_dir.join(f))
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    const MINIMAL: &str =
        "[database]\nurl = \"sqlite://logbelt.db\"\n\n[[sources]]\nname = \"app\"\n\
                           include = [\"logs/*.jsonl\"]\n";

    fn load(extra: &str) -> Result<super::super::Config, String> {
        super::super::parse(
            &format!("{MINIMAL}{extra}"),
            PathBuf::from("/tmp/x/logbelt.toml"),
            Box::new(|_| None),
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn web_keys() {
        let c = load("").unwrap();
        assert_eq!(c.web.listen, None);
        let c = load("[web]\nlisten = \"127.0.0.1:8080\"\ntoken_file = \"web-token\"\n").unwrap();
        assert_eq!(c.web.listen.map(|a| a.port()), Some(8080));
        assert_eq!(
            c.web.token_path(Path::new("/tmp/x")),
            Some(PathBuf::from("/tmp/x/web-token"))
        );
        let e = load("[web]\nport = 8080\n").unwrap_err();
        assert!(
            e.contains("web: unknown key `port`, expected `listen` or `token_file`"),
            "{e}"
        );
        let e = load("[web]\nlisten = \"localhost\"\n").unwrap_err();
        assert!(
            e.contains("web.listen: expected an IP address and port"),
            "{e}"
        );
    }
}
