//! The web console benchmark (issue 15): how long `logbelt serve` takes to answer what the page
//! asks first — the first page of "last 1 h" and its histogram — on an existing database,
//! against the issue's ceiling (300 ms each) and against `logbelt query` doing the same work as
//! a process in the same run (the API must not cost more than the command line does).
//!
//! ```sh
//! cargo bench --bench web -- --config PATH [--config PATH…] [--runs 5]
//! ```
//!
//! The database comes from elsewhere: `logbelt run --once` over your logs, or the search
//! benchmark's (`cargo bench --bench search -- --rows 1000000 --keep` prints where it kept
//! them). Times are wall times seen by a client on loopback (the server's time plus well under
//! a millisecond), the median of `--runs` after one warm-up. A request that `serve` stops at
//! its 10 s deadline is shown with its status (503). Markdown on stdout.

#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const LOGBELT: &str = env!("CARGO_BIN_EXE_logbelt");

/// The issue's target for each of the page's first requests.
const CEILING: Duration = Duration::from_millis(300);

struct Case {
    name: &'static str,
    api: &'static str,
    cli: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        name: "first page, last 1 h",
        api: "/api/events?since=1h&limit=100",
        cli: &["--since", "1h", "--limit", "100", "--json"],
    },
    Case {
        name: "histogram, last 1 h",
        api: "/api/histogram?since=1h&bucket=1m",
        cli: &[
            "--since", "1h", "--count", "--by", "level", "--bucket", "1m", "--json",
        ],
    },
    Case {
        name: "errors, last 1 h",
        api: "/api/events?since=1h&level=error&limit=100",
        cli: &[
            "--since", "1h", "--level", "error", "--limit", "100", "--json",
        ],
    },
    Case {
        name: "histogram, last 24 h",
        api: "/api/histogram?since=24h&bucket=1h",
        cli: &[
            "--since", "24h", "--count", "--by", "level", "--bucket", "1h", "--json",
        ],
    },
];

fn options() -> (Vec<PathBuf>, usize) {
    let mut configs = Vec::new();
    let mut runs = 5;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--config" => configs.push(PathBuf::from(args.next().expect("--config PATH"))),
            "--runs" => {
                runs = args
                    .next()
                    .and_then(|r| r.parse().ok())
                    .expect("--runs: a number")
            }
            // cargo bench passes --bench.
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    if configs.is_empty() {
        eprintln!("[web bench] nothing to measure: give --config PATH of a logbelt config whose database holds events");
    }
    (configs, runs.max(1))
}

/// `GET path`: the status and the time to the last byte.
fn get(addr: SocketAddr, path: &str) -> (u16, Duration) {
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).expect("connect to serve");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut body = Vec::new();
    s.read_to_end(&mut body).expect("read the answer");
    let elapsed = started.elapsed();
    let status = String::from_utf8_lossy(&body[..body.len().min(16)])
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, elapsed)
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// `serve` on a free loopback port, once `/health` answers; killed on drop.
struct Served(Child, SocketAddr);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(config: &PathBuf) -> Served {
    let addr = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let child = Command::new(LOGBELT)
        .args(["serve", "--config"])
        .arg(config)
        .args(["--listen", &addr.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start logbelt serve");
    let served = Served(child, addr);
    let started = Instant::now();
    while TcpStream::connect(addr).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "serve did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    served
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let (configs, runs) = options();
    for config in &configs {
        let served = serve(config);
        println!("\n### {}\n", config.display());
        println!("| request | API (serve) | API / 300 ms | `logbelt query` | API / query |");
        println!("|---|---:|---:|---:|---:|");
        for case in CASES {
            let mut api = Vec::new();
            let mut refused = None;
            for i in 0..=runs {
                let (status, t) = get(served.1, case.api);
                if status != 200 {
                    refused = Some((status, t));
                    break;
                }
                if i > 0 {
                    api.push(t);
                }
            }
            // 503: stopped at serve's query deadline (the command line has none: not run).
            if let Some((status, t)) = refused {
                println!(
                    "| {} (`{}`) | {status} after {} | - | - | - |",
                    case.name,
                    case.api,
                    ms(t)
                );
                continue;
            }
            let mut cli = Vec::new();
            for i in 0..=runs {
                let started = Instant::now();
                let ok = Command::new(LOGBELT)
                    .args(["query", "--config"])
                    .arg(config)
                    .args(case.cli)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .expect("run logbelt query")
                    .success();
                assert!(ok, "logbelt query {:?} failed", case.cli);
                if i > 0 {
                    cli.push(started.elapsed());
                }
            }
            let (api, cli) = (median(api), median(cli));
            println!(
                "| {} (`{}`) | {} | {:.2} | {} | {:.2} |",
                case.name,
                case.api,
                ms(api),
                api.as_secs_f64() / CEILING.as_secs_f64(),
                ms(cli),
                api.as_secs_f64() / cli.as_secs_f64(),
            );
        }
    }
}
