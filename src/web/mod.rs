//! `logbelt serve`: the web console (one page, its script and style embedded in the binary) and
//! the JSON API it runs on, over the same database `status` and `query` read.
//!
//! Read-only like them: every request opens the database through [`crate::inspect`] (SQLite
//! `mode=ro`, PostgreSQL `READ ONLY` transactions) and nothing migrates or writes, so it is safe
//! beside a running `logbelt run` and on a PostgreSQL replica.
//!
//! - [`api`]: `/api/events`, `/api/histogram`, `/api/files`, `/api/dead_letters`, `/health`.
//! - [`tail`]: `/api/tail`, Server-Sent Events from polling the database for newer rows.
//! - [`params`]: the query string → `query`'s filters; a bad value is a 400.
//! - [`rows`]: the queries of its own (newer events for the tail, dead letters).
//! - [`bounds`]: what bounds a request: a limit on concurrent queries, a deadline per query
//!   (SQLite progress handler, PostgreSQL `statement_timeout`).
//! - [`page`]: the page, its script and style, and the headers (a strict CSP) they go with.
//!
//! Access: on a loopback address anyone who can reach it may read; any other address needs a
//! token (`--token-file` or `LOGBELT_WEB_TOKEN`), sent as `Authorization: Bearer TOKEN` to every
//! `/api/` request, or `serve` refuses to start.

pub mod api;
pub mod bounds;
pub mod page;
pub mod params;
pub mod rows;
pub mod tail;

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use actix_web::{web, App, HttpServer};

use crate::config::Config;
use crate::exit::Exit;

/// Where `serve` listens without `--listen`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// The environment variable that may hold the access token.
pub const TOKEN_VAR: &str = "LOGBELT_WEB_TOKEN";

/// `logbelt serve`'s options.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// `--listen ADDR` (host:port); [`DEFAULT_LISTEN`] when None.
    pub listen: Option<String>,
    /// `--token-file PATH`.
    pub token_file: Option<PathBuf>,
    /// The token from [`TOKEN_VAR`] (read by the caller, so that tests need no environment).
    pub token_env: Option<String>,
}

/// What every request shares.
pub struct State {
    /// The config with the database URL [`bounds::bounded`] made (PostgreSQL: a statement
    /// timeout).
    pub config: Arc<Config>,
    /// The access token, if one is required.
    pub token: Option<String>,
    /// Permits for database work: at most this many queries at once.
    pub queries: Arc<tokio::sync::Semaphore>,
    /// Open `/api/tail` streams.
    pub tails: AtomicUsize,
}

/// The addresses to listen on and the token, checked: a non-loopback address without a token
/// is refused.
///
/// # Errors
/// A one-line message (exit 2).
pub fn access(options: &ServeOptions) -> Result<(Vec<SocketAddr>, Option<String>), String> {
    let listen = options.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
    let addrs: Vec<SocketAddr> = listen
        .to_socket_addrs()
        .map_err(|e| {
            format!("--listen {listen:?}: expected HOST:PORT (e.g. {DEFAULT_LISTEN}): {e}")
        })?
        .collect();
    if addrs.is_empty() {
        return Err(format!("--listen {listen:?}: no address to listen on"));
    }
    let token = match (&options.token_file, &options.token_env) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("--token-file {}: {e}", path.display()))?;
            Some(checked_token(
                text.trim(),
                &format!("--token-file {}", path.display()),
            )?)
        }
        (None, Some(t)) => Some(checked_token(t.trim(), TOKEN_VAR)?),
        (None, None) => None,
    };
    if token.is_none() {
        if let Some(open) = addrs.iter().find(|a| !a.ip().is_loopback()) {
            return Err(format!(
                "--listen {listen}: {} is not a loopback address; anyone who can reach it could \
                 read the logs: give a token (--token-file PATH or {TOKEN_VAR}) or listen on 127.0.0.1",
                open.ip()
            ));
        }
    }
    Ok((addrs, token))
}

fn checked_token(t: &str, from: &str) -> Result<String, String> {
    if t.len() < 16 {
        return Err(format!(
            "{from}: the token must be at least 16 characters (found {})",
            t.len()
        ));
    }
    if !t.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "{from}: the token must be printable ASCII without spaces"
        ));
    }
    Ok(t.to_owned())
}

/// `logbelt serve`: checks access and the database, then serves until SIGINT/SIGTERM.
pub fn serve(config: Config, options: &ServeOptions) -> Exit {
    let (addrs, token) = match access(options) {
        Ok(a) => a,
        Err(e) => {
            crate::logging::report(&format!("logbelt: {e}"));
            return Exit::Usage;
        }
    };
    let config = match bounds::bounded(config) {
        Ok(c) => c,
        Err(e) => {
            crate::logging::report(&format!("logbelt: {e}"));
            return Exit::Usage;
        }
    };
    // The database must be there and readable now, as for `status`.
    if let Err(e) = crate::inspect::status::collect(&config) {
        crate::logging::report(&format!("logbelt: {e}"));
        return e.code;
    }
    let state = state(config, token);
    let system = actix_web::rt::System::new();
    let result = system.block_on(async move {
        let server = HttpServer::new(move || app(state.clone()))
            .workers(2)
            // A tail stream never ends by itself: do not wait for it on shutdown.
            .shutdown_timeout(1)
            .bind(&addrs[..])?;
        for a in server.addrs() {
            tracing::info!("serving the web console on http://{a}/");
        }
        server.run().await
    });
    match result {
        Ok(()) => Exit::Ok,
        Err(e) => {
            crate::logging::report(&format!(
                "logbelt: cannot listen on {}: {e}",
                options.listen.as_deref().unwrap_or(DEFAULT_LISTEN)
            ));
            Exit::Runtime
        }
    }
}

fn state(config: Config, token: Option<String>) -> web::Data<State> {
    web::Data::new(State {
        config: Arc::new(config),
        token,
        queries: Arc::new(tokio::sync::Semaphore::new(bounds::MAX_QUERIES)),
        tails: AtomicUsize::new(0),
    })
}

/// The application: the page, the API, the tail, and the headers of every answer.
fn app(
    state: web::Data<State>,
) -> App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .app_data(state)
        .wrap(page::headers())
        .configure(page::routes)
        .configure(api::routes)
        .route("/api/tail", web::get().to(tail::tail))
}

/// `[web] listen` of `logbelt run`: checks access and binds now (a refusal or a taken port is
/// reported before the pipeline starts), then serves from a thread of its own until the process
/// ends. It leaves signals to `run` (no handler of its own).
///
/// # Errors
/// The exit code and a one-line message: access refused (2), or the address cannot be bound or
/// the thread started (1).
pub fn serve_beside(config: &Config) -> Result<(), (Exit, String)> {
    let Some(listen) = config.web.listen else {
        return Ok(());
    };
    let options = ServeOptions {
        listen: Some(listen.to_string()),
        token_file: config.web.token_path(&config.base_dir),
        token_env: std::env::var(TOKEN_VAR).ok(),
    };
    let usage = |e: String| (Exit::Usage, format!("web: {e}"));
    let (_, token) = access(&options).map_err(usage)?;
    let bounded = bounds::bounded(config.clone()).map_err(usage)?;
    let listener = std::net::TcpListener::bind(listen).map_err(|e| {
        (
            Exit::Runtime,
            format!("web.listen: cannot listen on {listen}: {e}"),
        )
    })?;
    let state = state(bounded, token);
    std::thread::Builder::new()
        .name("logbelt-web".into())
        .spawn(move || {
            let system = actix_web::rt::System::new();
            let served = system.block_on(async move {
                let server = HttpServer::new(move || app(state.clone()))
                    .workers(1)
                    .disable_signals()
                    .shutdown_timeout(1)
                    .listen(listener)?;
                tracing::info!("serving the web console on http://{listen}/");
                server.run().await
            });
            if let Err(e) = served {
                tracing::error!(error = %e, "The web console stopped.");
            }
        })
        .map_err(|e| {
            (
                Exit::Runtime,
                format!("cannot start the web console's thread: {e}"),
            )
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(listen: &str, token: Option<&str>) -> ServeOptions {
        ServeOptions {
            listen: Some(listen.to_owned()),
            token_file: None,
            token_env: token.map(str::to_owned),
        }
    }

    #[test]
    fn loopback_needs_no_token_others_do() {
        assert!(access(&opts("127.0.0.1:0", None)).is_ok());
        assert!(access(&opts("[::1]:0", None)).is_ok());
        let e = access(&opts("0.0.0.0:0", None)).unwrap_err();
        assert!(e.contains("not a loopback address"), "{e}");
        assert!(!e.contains('\n'));
        let (_, token) = access(&opts("0.0.0.0:0", Some("0123456789abcdef"))).unwrap();
        assert_eq!(token.as_deref(), Some("0123456789abcdef"));
        let e = access(&opts("0.0.0.0:0", Some("short"))).unwrap_err();
        assert!(e.contains("at least 16"), "{e}");
        let e = access(&opts("nonsense", None)).unwrap_err();
        assert!(e.contains("expected HOST:PORT"), "{e}");
    }
}
