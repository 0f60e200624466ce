//! Just enough W3C WebDriver over [`super::http`] to drive a headless Chromium through
//! `chromedriver`: a session, navigation, elements, clicks, keys, pointer drags, scripts and a
//! screenshot.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::http::request;
use crate::util::free_addr;

/// The key W3C WebDriver names an element reference with.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// When `1`, the browser test fails instead of being skipped without chromedriver.
pub const REQUIRE_VAR: &str = "LOGBELT_REQUIRE_CHROMIUM";

/// A running chromedriver and one browser session on it; both end on drop.
pub struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium, or says why not (None: skip).
    pub fn start() -> Option<Browser> {
        if !Path::new(CHROMEDRIVER).exists() || !Path::new(CHROMIUM).exists() {
            let why = format!("{CHROMEDRIVER} or {CHROMIUM} is missing (apt-get install chromium chromium-driver)");
            if std::env::var(REQUIRE_VAR).as_deref() == Ok("1") {
                panic!("{why}, and {REQUIRE_VAR}=1");
            }
            eprintln!("skipped: {why}");
            return None;
        }
        let addr = free_addr();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={}", addr.port()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let mut browser = Browser {
            driver,
            addr,
            session: String::new(),
        };
        let start = Instant::now();
        loop {
            let ready = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200))
                .is_ok()
                && request(addr, "GET", "/status", &[], "").json()["value"]["ready"] == json!(true);
            if ready {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "chromedriver did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,900"],
            },
        }}});
        let r = browser.call("POST", "/session", caps);
        browser.session = r["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {r}"))
            .to_owned();
        Some(browser)
    }

    /// A WebDriver command (`path` below the session unless it starts with `/session`):
    /// its `value`; panics on a WebDriver error.
    pub fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let full = if path.starts_with("/session") || path.starts_with("/status") {
            path.to_owned()
        } else {
            format!("/session/{}{path}", self.session)
        };
        let body = if method == "GET" {
            String::new()
        } else {
            body.to_string()
        };
        let r = request(self.addr, method, &full, &[], &body);
        let v = r.json();
        if r.status != 200 {
            panic!("WebDriver {method} {full}: {} {}", r.status, v["value"]);
        }
        if full == "/session" {
            return v["value"].clone();
        }
        v["value"].clone()
    }

    pub fn goto(&self, url: &str) {
        self.call("POST", "/url", json!({ "url": url }));
    }

    /// Runs `script` (a function body; `arguments` are `args`) and returns its value.
    pub fn js(&self, script: &str, args: Value) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            json!({ "script": script, "args": args }),
        )
    }

    /// The element `css` selects (panics when none does).
    pub fn find(&self, css: &str) -> String {
        let v = self.call(
            "POST",
            "/element",
            json!({"using": "css selector", "value": css}),
        );
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_owned()
    }

    pub fn click(&self, css: &str) {
        let id = self.find(css);
        self.call("POST", &format!("/element/{id}/click"), json!({}));
    }

    pub fn clear(&self, css: &str) {
        let id = self.find(css);
        self.call("POST", &format!("/element/{id}/clear"), json!({}));
    }

    /// Types `text` into the element (`\u{E007}` is Enter).
    pub fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css);
        self.call(
            "POST",
            &format!("/element/{id}/value"),
            json!({ "text": text }),
        );
    }

    /// Presses and releases `key` with the focus where it is.
    pub fn press(&self, key: &str) {
        self.call(
            "POST",
            "/actions",
            json!({"actions": [{
                "type": "key", "id": "keyboard",
                "actions": [{"type": "keyDown", "value": key}, {"type": "keyUp", "value": key}],
            }]}),
        );
    }

    /// Drags the mouse across the element from `x0` to `x1` (pixels from its centre).
    pub fn drag(&self, css: &str, x0: i64, x1: i64) {
        let id = self.find(css);
        let origin = json!({ ELEMENT: id });
        let mut steps = vec![
            json!({"type": "pointerMove", "origin": origin, "x": x0, "y": 0, "duration": 0}),
            json!({"type": "pointerDown", "button": 0}),
        ];
        for i in 1..=5 {
            let x = x0 + (x1 - x0) * i / 5;
            steps.push(
                json!({"type": "pointerMove", "origin": origin, "x": x, "y": 0, "duration": 20}),
            );
        }
        steps.push(json!({"type": "pointerUp", "button": 0}));
        self.call(
            "POST",
            "/actions",
            json!({"actions": [{
                "type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"},
                "actions": steps,
            }]}),
        );
    }

    /// Polls `script` until it returns something other than `false`/`null`, under `deadline`;
    /// returns that value.
    pub fn wait_for(&self, what: &str, deadline: Duration, script: &str) -> Value {
        let start = Instant::now();
        loop {
            let v = self.js(script, json!([]));
            if !(v.is_null() || v == json!(false)) {
                return v;
            }
            if start.elapsed() > deadline {
                let state = self.js(
                    "return document.getElementById('summary').textContent + ' | ' + location.href",
                    json!([]),
                );
                panic!("the page never showed {what} within {deadline:?} (page: {state})");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The page as a PNG.
    pub fn screenshot(&self) -> Vec<u8> {
        let v = self.call("GET", "/screenshot", Value::Null);
        base64(v.as_str().expect("base64 PNG"))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                request(
                    self.addr,
                    "DELETE",
                    &format!("/session/{}", self.session),
                    &[],
                    "",
                )
            }));
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn base64(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for v in text.bytes().filter_map(value) {
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}
