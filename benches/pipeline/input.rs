//! The input: deterministic, realistic JSON lines.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use chrono::{NaiveDate, SecondsFormat};

use crate::rng::SplitMix64;
use crate::util::format_rfc3339;

const SERVICES: &[&str] = &[
    "checkout",
    "orders",
    "payments",
    "search",
    "auth",
    "inventory",
    "gateway",
    "notifications",
];
const PATHS: &[&str] = &[
    "/api/v1/orders",
    "/api/v1/users",
    "/api/v1/cart/items",
    "/api/v1/search",
    "/api/v2/payments",
    "/api/v1/inventory/sku",
];
const TAGS: &[&str] = &[
    "retry",
    "cache-miss",
    "canary",
    "eu-west-1",
    "slow",
    "batch",
];

/// Generates log lines: `timestamp` (RFC 3339, ms), `level`, `message`, `service`, `host`,
/// `request_id`, `latency_ms`, a nested `http` object, sometimes a `tags` array or an
/// `error` object with an array, rarely an escaped quote or non-ASCII text in the message.
pub struct LineGen {
    rng: SplitMix64,
    ts_micros: i64,
}

impl LineGen {
    pub fn new(seed: u64) -> LineGen {
        LineGen {
            rng: SplitMix64(seed),
            ts_micros: NaiveDate::from_ymd_opt(2026, 11, 25)
                .and_then(|d| d.and_hms_opt(8, 0, 0))
                .expect("a valid date")
                .and_utc()
                .timestamp_micros(),
        }
    }

    /// One line, with its final newline. `written_at_us`, when given, is added as a field.
    pub fn line(&mut self, written_at_us: Option<i64>) -> String {
        let r = &mut self.rng;
        self.ts_micros += 1_000 + r.below(2_000) as i64;
        let level = match r.below(100) {
            0..=9 => "debug",
            10..=84 => "info",
            85..=94 => "warn",
            _ => "error",
        };
        let service = r.pick(SERVICES);
        let upstream = r.pick(SERVICES);
        let method = match r.below(20) {
            0..=13 => "GET",
            14..=17 => "POST",
            18 => "PUT",
            _ => "DELETE",
        };
        let path = r.pick(PATHS);
        let id = 10_000 + r.below(90_000);
        let status = match level {
            "warn" => [404, 409, 429][r.below(3) as usize],
            "error" => [500, 502, 503, 504][r.below(4) as usize],
            _ => [200, 200, 200, 201, 204, 304][r.below(6) as usize],
        };
        let latency = r.below(2_500_000) as f64 / 1000.0;
        let mut message = match level {
            "debug" => format!(
                "cache {} for key user:{id}",
                if r.chance(50) { "hit" } else { "miss" }
            ),
            "info" => format!("{method} request completed"),
            "warn" => format!("slow response from upstream \\\"{upstream}\\\" ({latency:.0} ms)"),
            _ => format!("upstream {upstream} timed out after {latency:.0} ms"),
        };
        if r.chance(1) {
            message.push_str(" — Zahlung für Bestellung abgelehnt");
        }
        let mut s = String::with_capacity(400);
        let _ = write!(
            s,
            "{{\"timestamp\":\"{}\",\"level\":\"{level}\",\"message\":\"{message}\",\
             \"service\":\"{service}\",\"host\":\"{service}-{:02}\",\"request_id\":\"{:016x}\",\
             \"latency_ms\":{latency:.1},\"http\":{{\"method\":\"{method}\",\"path\":\"{path}/{id}\",\
             \"status\":{status},\"bytes\":{}}}",
            format_rfc3339(self.ts_micros, SecondsFormat::Millis),
            r.below(16),
            r.next(),
            r.below(200_000),
        );
        if r.chance(20) {
            let _ = write!(s, ",\"tags\":[\"{}\",\"{}\"]", r.pick(TAGS), r.pick(TAGS));
        }
        if level == "error" {
            let _ = write!(
                s,
                ",\"error\":{{\"kind\":\"timeout\",\"retries\":[100,200,400]}}"
            );
        }
        if let Some(w) = written_at_us {
            let _ = write!(s, ",\"written_at_us\":{w}");
        }
        s.push_str("}\n");
        s
    }
}

/// The generated input file.
pub struct Input {
    /// The folder holding only `bench.jsonl`.
    pub logs: PathBuf,
    pub path: PathBuf,
    pub lines: usize,
    pub bytes: u64,
    /// The first line, to show what the input looks like.
    pub sample: String,
}

impl Input {
    pub fn generate(dir: &Path, lines: usize) -> Input {
        let logs = dir.join("logs");
        fs::create_dir_all(&logs).expect("create the input folder");
        let path = logs.join("bench.jsonl");
        let file = File::create(&path).expect("create the input file");
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let mut gen = LineGen::new(0x6c6f_6762_656c_7400);
        let mut bytes = 0u64;
        let mut sample = String::new();
        for i in 0..lines {
            let line = gen.line(None);
            if i == 0 {
                sample = line.trim_end().to_string();
            }
            bytes += line.len() as u64;
            out.write_all(line.as_bytes())
                .expect("write the input file");
        }
        out.flush().expect("write the input file");
        Input {
            logs,
            path,
            lines,
            bytes,
            sample,
        }
    }

    /// The include pattern for a config.
    pub fn include(&self) -> String {
        format!("{}/*.jsonl", self.logs.display())
    }
}

// =============================================================================================
// Databases: where each measurement writes, and the bench's own connections
// =============================================================================================
