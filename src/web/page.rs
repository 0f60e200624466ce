//! The page: `index.html`, `app.js` and `app.css`, embedded in the binary (no build step, no
//! Node.js), and the headers every answer carries: a Content-Security-Policy that allows only
//! this server's own script and style (no inline script, no `eval`, no other origin), and no
//! framing, sniffing or referrer.
//!
//! Log text is hostile input: the script puts it into the page only as text (`textContent`),
//! never as HTML.

use actix_web::middleware::DefaultHeaders;
use actix_web::{web, HttpResponse};

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/app.css");

/// The Content-Security-Policy of every answer.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                       img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
                       form-action 'none'; frame-ancestors 'none'";

pub fn headers() -> DefaultHeaders {
    DefaultHeaders::new()
        .add(("Content-Security-Policy", CSP))
        .add(("X-Content-Type-Options", "nosniff"))
        .add(("X-Frame-Options", "DENY"))
        .add(("Referrer-Policy", "no-referrer"))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(index))
        .route("/files", web::get().to(index))
        .route("/dead", web::get().to(index))
        .route("/app.js", web::get().to(script))
        .route("/app.css", web::get().to(style));
}

fn asset(content_type: &str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header(("Cache-Control", "no-cache"))
        .body(body)
}

async fn index() -> HttpResponse {
    asset("text/html; charset=utf-8", INDEX)
}

async fn script() -> HttpResponse {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

async fn style() -> HttpResponse {
    asset("text/css; charset=utf-8", STYLE)
}

/// The size of the page's script in bytes (README: under 100 KB).
pub fn script_bytes() -> usize {
    SCRIPT.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_stays_small_and_never_writes_html() {
        assert!(script_bytes() < 100 * 1024, "{} bytes", script_bytes());
        for banned in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!SCRIPT.contains(banned), "app.js uses {banned}");
        }
        // No inline script or handler in the page: the CSP would block it anyway.
        assert!(!INDEX.contains("<script>"), "inline script in index.html");
        let handler = INDEX.split(" on").skip(1).any(|rest| {
            let name: String = rest.chars().take_while(char::is_ascii_lowercase).collect();
            !name.is_empty() && rest[name.len()..].starts_with('=')
        });
        assert!(!handler, "an inline event handler in index.html");
    }
}
