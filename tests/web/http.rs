//! A plain HTTP/1.1 client over a `TcpStream` (one request per connection), enough for the API,
//! an SSE stream and WebDriver: no HTTP crate in the tests.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// A response: status, headers (names lower-cased) and body.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| {
            panic!("not JSON ({e}): {}", &self.body[..self.body.len().min(500)])
        })
    }
}

fn connect(addr: SocketAddr, timeout: Duration) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    stream
        .set_read_timeout(Some(timeout))
        .expect("read timeout");
    stream
        .set_write_timeout(Some(timeout))
        .expect("write timeout");
    stream
}

fn head(
    method: &str,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> String {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        req += "Content-Type: application/json\r\n";
    }
    for (k, v) in headers {
        req += &format!("{k}: {v}\r\n");
    }
    req + "\r\n" + body
}

/// `METHOD path` with `headers` and `body`; reads the whole response.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Response {
    // WebDriver calls that start a browser or take a screenshot can be slow on a busy machine.
    let mut stream = connect(addr, Duration::from_secs(120));
    stream
        .write_all(head(method, addr, path, headers, body).as_bytes())
        .expect("send the request");
    // Read until the body is complete: by Content-Length, the last chunk, or the close (a
    // server may keep the connection open whatever the request said).
    let mut raw = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    let split = loop {
        let n = stream
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("{method} {path}: read the response: {e}"));
        raw.extend_from_slice(&buf[..n]);
        if let Some(split) = complete(&raw) {
            break split;
        }
        if n == 0 {
            break raw
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .unwrap_or_else(|| panic!("{method} {path}: closed before the head ended"));
        }
    };
    let head_text = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head_text.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{method} {path}: bad status line"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Response {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// Where the head ends, once the whole response is in `raw`.
fn complete(raw: &[u8]) -> Option<usize> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..split]).to_lowercase();
    let body = &raw[split + 4..];
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    let done = match length {
        Some(n) => body.len() >= n,
        None if head.contains("transfer-encoding: chunked") => body.ends_with(b"0\r\n\r\n"),
        None => false,
    };
    done.then_some(split)
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size_text = String::from_utf8_lossy(&data[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or(0);
        if size == 0 || data.len() < eol + 2 + size {
            return out;
        }
        out.extend_from_slice(&data[eol + 2..eol + 2 + size]);
        data = &data[(eol + 4 + size).min(data.len())..];
    }
}

pub fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Response {
    request(addr, "GET", path, headers, "")
}

/// An open Server-Sent Events stream.
pub struct Sse {
    reader: BufReader<TcpStream>,
    pub status: u16,
    /// The server closed the stream.
    ended: bool,
}

impl Sse {
    /// `GET path` and reads the response head.
    pub fn open(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Sse {
        let mut stream = connect(addr, Duration::from_millis(250));
        stream
            .write_all(head("GET", addr, path, headers, "").as_bytes())
            .expect("send the request");
        let mut reader = BufReader::new(stream);
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut status = 0;
        let mut first = true;
        loop {
            let Line::Text(line) = read_line(&mut reader, deadline) else {
                panic!("no response head");
            };
            if first {
                status = line
                    .split_whitespace()
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                first = false;
            } else if line.trim().is_empty() {
                break;
            }
        }
        Sse {
            reader,
            status,
            ended: false,
        }
    }

    /// The `data:` payloads of the messages read until `done` holds for what was read, or the
    /// deadline (then None). Chunk-size lines of the chunked body are skipped (they never start
    /// with `data: `).
    pub fn read_until(
        &mut self,
        deadline: Duration,
        mut done: impl FnMut(&[String]) -> bool,
    ) -> Option<Vec<String>> {
        let end = Instant::now() + deadline;
        let mut data = Vec::new();
        while Instant::now() < end {
            let line = match read_line(&mut self.reader, end) {
                Line::Text(l) => l,
                Line::End => {
                    self.ended = true;
                    break;
                }
                Line::Deadline => break,
            };
            if let Some(d) = line.trim_end().strip_prefix("data: ") {
                data.push(d.to_owned());
                if done(&data) {
                    return Some(data);
                }
            }
        }
        None
    }

    /// Whether the server has closed the stream (seen by a read).
    pub fn ended(&self) -> bool {
        self.ended
    }
}

enum Line {
    Text(String),
    /// The connection closed.
    End,
    Deadline,
}

/// One line (with the read timeout retried until `deadline`).
fn read_line(reader: &mut BufReader<TcpStream>, deadline: Instant) -> Line {
    let mut line = Vec::new();
    while Instant::now() < deadline {
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => return Line::End,
            Ok(_) if line.ends_with(b"\n") => {
                return Line::Text(String::from_utf8_lossy(&line).into_owned())
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("read the stream: {e}"),
        }
    }
    Line::Deadline
}
