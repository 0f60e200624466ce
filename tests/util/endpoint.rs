//! The `[metrics]` endpoint seen from outside: a free port to serve it on, a plain HTTP/1.1 GET
//! over a `TcpStream`, and a parsed `/metrics` page. Also the config tables that
//! [`ConfigBuilder`] does not write (`[metrics]`, `[supervisor]`, more `[pipeline]` keys), and
//! `logbelt` children started with extra environment variables (`LOGBELT_FAULTS`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::{logbelt_command, wait_until, ConfigBuilder, Daemon, TestEnv, DEADLINE};

/// A loopback address with a port that was free a moment ago (bound to port 0, then released).
pub fn free_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr")
}

/// `GET path` on `addr`: `(status code, body)`, or `None` when nothing answers (not listening
/// yet, or gone).
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let timeout = Duration::from_secs(5);
    let mut stream = TcpStream::connect_timeout(&addr, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.set_write_timeout(Some(timeout)).ok()?;
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: */*\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// `GET /health`: the status code; panics when nothing answers.
pub fn health(addr: SocketAddr) -> u16 {
    http_get(addr, "/health")
        .unwrap_or_else(|| panic!("no answer from http://{addr}/health"))
        .0
}

/// `GET /metrics`, parsed; panics when nothing answers or the status is not 200.
pub fn scrape(addr: SocketAddr) -> Scrape {
    let (status, body) = http_get(addr, "/metrics")
        .unwrap_or_else(|| panic!("no answer from http://{addr}/metrics"));
    assert_eq!(status, 200, "GET /metrics: {status}\n{body}");
    Scrape::parse(&body)
}

/// Waits until the endpoint answers `/health` (whatever the status); `daemon` must stay alive.
pub fn wait_endpoint(addr: SocketAddr, daemon: &mut Daemon) {
    wait_until(&format!("http://{addr}/health to answer"), DEADLINE, || {
        daemon.assert_running();
        http_get(addr, "/health").is_some()
    });
}

/// One sample of a Prometheus text page: name, labels, value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// A `/metrics` page (Prometheus text format 0.0.4), parsed into samples.
#[derive(Debug, Clone)]
pub struct Scrape {
    pub samples: Vec<Sample>,
    /// The page as served (for failure messages).
    pub text: String,
}

impl Scrape {
    pub fn parse(text: &str) -> Scrape {
        let mut samples = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            samples.push(
                parse_sample(line).unwrap_or_else(|| panic!("unparseable metrics line {line:?}")),
            );
        }
        Scrape {
            samples,
            text: text.to_string(),
        }
    }

    /// The value of the sample named `name` whose labels are exactly `labels` (in any order).
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| {
                s.name == name
                    && s.labels.len() == labels.len()
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.iter().any(|(sk, sv)| sk == k && sv == v))
            })
            .map(|s| s.value)
    }

    /// Like [`Scrape::get`], 0 when absent: a counter that was never incremented may not be
    /// rendered at all.
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or(0.0)
    }

    /// The sum over every sample named `name`, whatever its labels.
    pub fn sum(&self, name: &str) -> f64 {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .map(|s| s.value)
            .sum()
    }

    /// Every sample named `name`.
    pub fn all(&self, name: &str) -> Vec<&Sample> {
        self.samples.iter().filter(|s| s.name == name).collect()
    }
}

/// `name{k="v",…} value [timestamp]` or `name value`.
fn parse_sample(line: &str) -> Option<Sample> {
    let (name, rest, labels) = match line.find('{') {
        Some(open) => {
            let name = &line[..open];
            let mut labels = Vec::new();
            let mut chars = line[open + 1..].char_indices();
            let mut key = String::new();
            let end;
            loop {
                let (i, c) = chars.next()?;
                match c {
                    '}' => {
                        end = open + 1 + i + 1;
                        break;
                    }
                    ',' | ' ' => {}
                    '=' => {
                        if chars.next()?.1 != '"' {
                            return None;
                        }
                        let mut value = String::new();
                        loop {
                            match chars.next()?.1 {
                                '"' => break,
                                '\\' => match chars.next()?.1 {
                                    'n' => value.push('\n'),
                                    other => value.push(other),
                                },
                                other => value.push(other),
                            }
                        }
                        labels.push((std::mem::take(&mut key), value));
                    }
                    other => key.push(other),
                }
            }
            (name, &line[end..], labels)
        }
        None => {
            let sp = line.find(' ')?;
            (&line[..sp], &line[sp..], Vec::new())
        }
    };
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name: name.trim().to_string(),
        labels,
        value,
    })
}

/// `cfg`'s TOML with more keys: each `(table, key, TOML value)` goes into `[table]`, which is
/// added at the end if `cfg` does not write it. Lets a test set keys that [`ConfigBuilder`]
/// has no field for (`[metrics] listen`, `[supervisor] …`, `[pipeline] read_buffer_bytes`).
pub fn config_with(cfg: &ConfigBuilder, extra: &[(&str, &str, String)]) -> String {
    let mut toml = cfg.to_toml();
    for (table, key, value) in extra {
        let header = format!("[{table}]\n");
        let line = format!("{key} = {value}\n");
        match toml.find(&header) {
            Some(at) => toml.insert_str(at + header.len(), &line),
            None => {
                if !toml.ends_with('\n') {
                    toml.push('\n');
                }
                toml += &format!("\n{header}{line}");
            }
        }
    }
    toml
}

/// Writes `cfg` with `extra` keys (see [`config_with`]) to `env`'s `logbelt.toml`.
pub fn write_config_with(env: &TestEnv, cfg: &ConfigBuilder, extra: &[(&str, &str, String)]) {
    std::fs::write(env.config_path(), config_with(cfg, extra)).expect("write logbelt.toml");
}

/// A TOML string value.
pub fn toml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

#[cfg_attr(not(feature = "fault-injection"), allow(dead_code))]
static ENV_RUN_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// `logbelt ARGS --config <env's config>` with extra environment variables (e.g.
/// `LOGBELT_FAULTS`), its stderr in a new file in the test's folder.
#[cfg_attr(not(feature = "fault-injection"), allow(dead_code))]
pub fn spawn_with_env(env: &TestEnv, args: &[&str], vars: &[(&str, &str)]) -> Daemon {
    let n = ENV_RUN_COUNTER.fetch_add(1, Ordering::SeqCst);
    let stderr_path = env.path(&format!("logbelt-env-{n}.stderr"));
    let mut cmd = logbelt_command(env.dir.path(), &stderr_path);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.args(args).arg("--config").arg(env.config_path());
    Daemon::from_command(cmd, &stderr_path)
}
