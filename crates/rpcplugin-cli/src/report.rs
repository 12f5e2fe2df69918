//! What a benchmark run found, and its two renderings: the table a person reads and
//! the `RESULT {json}` line that scripts compare across implementations (INTEROP.md,
//! "The load generator"). Pure functions of the numbers.

use crate::args::Mode;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::time::Duration;

/// CPU and memory of one process over the measured window; `None` where it could not
/// be read (the process was gone, or `/proc` is missing).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Usage {
    /// Resident memory at the end of the window, kB.
    pub(crate) rss_kb: Option<u64>,
    /// CPU time over the window divided by its wall time, percent of one core.
    pub(crate) cpu_pct: Option<f64>,
}

/// Everything a run measured.
#[derive(Debug, Clone)]
pub(crate) struct Report {
    /// The method driven.
    pub(crate) mode: Mode,
    /// Payload or chunk size, bytes.
    pub(crate) size: usize,
    /// Messages per Download call (1 in echo mode).
    pub(crate) messages_per_call: u32,
    /// Concurrent tasks.
    pub(crate) concurrency: usize,
    /// Host runtime worker threads (0: current-thread runtime).
    pub(crate) threads: usize,
    /// Which plugin, for the table (name, pid, endpoint).
    pub(crate) plugin: String,
    /// From just before the launch to the first successful Echo reply.
    pub(crate) launch_to_first_call: Duration,
    /// The warm-up before the window.
    pub(crate) warmup: Duration,
    /// The measured window: from its start until the last counted call returned.
    pub(crate) window: Duration,
    /// Successful calls started inside the window.
    pub(crate) calls: u64,
    /// Failed calls, warm-up included.
    pub(crate) errors: u64,
    /// Failed calls by gRPC code name (`resource_exhausted`, ...; `other` when the
    /// failure was not a gRPC status), warm-up included.
    pub(crate) error_codes: BTreeMap<&'static str, u64>,
    /// How long the failed calls took to fail, microseconds.
    pub(crate) error_latency: Histogram<u64>,
    /// The first failure, to show what went wrong.
    pub(crate) first_error: Option<String>,
    /// Latency of the counted calls, microseconds.
    pub(crate) latency: Histogram<u64>,
    /// Payload bytes received by the counted calls.
    pub(crate) bytes: u64,
    /// Messages received by the counted calls.
    pub(crate) messages: u64,
    /// The host (this process).
    pub(crate) host: Usage,
    /// The plugin process.
    pub(crate) plugin_usage: Usage,
    /// CPU used by everything else on the machine during the window (other
    /// processes, steal), percent of one core.
    pub(crate) others_cpu_pct: Option<f64>,
    /// How the plugin ended, e.g. `graceful, exit status: 0`.
    pub(crate) stopped: String,
    /// The plugin could not be stopped cleanly (it may still be running).
    pub(crate) stop_failed: bool,
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Percentiles {
    /// Median.
    pub(crate) p50: u64,
    /// 90th percentile.
    pub(crate) p90: u64,
    /// 99th percentile.
    pub(crate) p99: u64,
    /// 99.9th percentile.
    pub(crate) p999: u64,
    /// Slowest call.
    pub(crate) max: u64,
    /// Mean.
    pub(crate) mean: f64,
}

impl Percentiles {
    /// Reads the percentiles of `histogram` (all zero when it is empty).
    pub(crate) fn of(histogram: &Histogram<u64>) -> Self {
        // `highest_equivalent`: a percentile is reported as the top of its bucket,
        // as HdrHistogram's own tools do, so it never under-states a latency.
        let at = |q: f64| histogram.value_at_quantile(q);
        Self {
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            p999: at(0.999),
            max: histogram.max(),
            mean: histogram.mean(),
        }
    }
}

/// CPU taken by other processes above which the table warns that the figures are
/// not comparable (percent of one core).
pub(crate) const DISTURBED_PCT: f64 = 10.0;

const MIB: f64 = 1024.0 * 1024.0;

impl Report {
    fn seconds(&self) -> f64 {
        self.window.as_secs_f64()
    }

    /// Successful calls per second over the window.
    pub(crate) fn req_per_s(&self) -> f64 {
        rate(self.calls as f64, self.seconds())
    }

    /// Payload MiB per second over the window.
    pub(crate) fn mib_per_s(&self) -> f64 {
        rate(self.bytes as f64 / MIB, self.seconds())
    }

    /// Messages per second over the window.
    pub(crate) fn messages_per_s(&self) -> f64 {
        rate(self.messages as f64, self.seconds())
    }

    /// The machine line: `RESULT ` and a JSON object on one line, `null` for a
    /// figure that could not be measured.
    pub(crate) fn result_line(&self) -> String {
        let p = Percentiles::of(&self.latency);
        let line = ResultLine {
            req_per_s: rounded(self.req_per_s(), 1),
            mib_per_s: (self.mode == Mode::Download).then(|| rounded(self.mib_per_s(), 1)),
            p50_us: p.p50,
            p99_us: p.p99,
            p999_us: p.p999,
            launch_to_first_call_ms: rounded(self.launch_to_first_call.as_secs_f64() * 1000.0, 3),
            host_rss_kb: self.host.rss_kb,
            plugin_rss_kb: self.plugin_usage.rss_kb,
            host_cpu_pct: self.host.cpu_pct.map(|v| rounded(v, 1)),
            plugin_cpu_pct: self.plugin_usage.cpu_pct.map(|v| rounded(v, 1)),
            errors: self.errors,
            error_codes: (self.errors > 0).then(|| self.error_codes.clone()),
            error_p50_us: (self.errors > 0).then(|| self.error_latency.value_at_quantile(0.5)),
            error_p99_us: (self.errors > 0).then(|| self.error_latency.value_at_quantile(0.99)),
        };
        let mut out = b"RESULT ".to_vec();
        line.serialize(&mut serde_json::Serializer::with_formatter(
            &mut out,
            SpacedFields,
        ))
        .expect("numbers and options always serialize");
        String::from_utf8(out).expect("serde_json writes UTF-8")
    }

    /// The table for a person.
    pub(crate) fn table(&self) -> String {
        let p = Percentiles::of(&self.latency);
        let mut out = String::new();
        let runtime = match self.threads {
            0 => "current-thread host".to_owned(),
            1 => "1 host worker thread".to_owned(),
            n => format!("{n} host worker threads"),
        };
        let what = match self.mode {
            Mode::Echo => format!("Echo of {} B", self.size),
            Mode::Download => format!(
                "Download of {} x {} B per call",
                self.messages_per_call, self.size
            ),
        };
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "rpcplugin bench: {what}, concurrency {}, {runtime}",
            self.concurrency
        );
        let mut row = |label: &str, value: String| {
            let _ = writeln!(out, "  {label:<22}{value}");
        };
        row("plugin", self.plugin.clone());
        row(
            "launch to first call",
            format!("{:.2} ms", self.launch_to_first_call.as_secs_f64() * 1000.0),
        );
        row(
            "window",
            format!(
                "{:.2} s after {:.2} s warm-up",
                self.seconds(),
                self.warmup.as_secs_f64()
            ),
        );
        row(
            "calls",
            format!("{} ok, {} failed", self.calls, self.errors),
        );
        if self.errors > 0 {
            let codes = self
                .error_codes
                .iter()
                .map(|(code, n)| format!("{n} {code}"))
                .collect::<Vec<_>>()
                .join(", ");
            let f = Percentiles::of(&self.error_latency);
            row("failures", codes);
            row(
                "time to fail",
                format!("p50 {} µs, p99 {} µs, max {} µs", f.p50, f.p99, f.max),
            );
        }
        row("throughput", format!("{:.0} calls/s", self.req_per_s()));
        if self.mode == Mode::Download {
            row(
                "streamed",
                format!(
                    "{:.1} MiB/s, {:.0} messages/s",
                    self.mib_per_s(),
                    self.messages_per_s()
                ),
            );
        }
        row(
            "latency per call",
            format!(
                "p50 {} µs, p90 {} µs, p99 {} µs, p99.9 {} µs, max {} µs, mean {:.1} µs",
                p.p50, p.p90, p.p99, p.p999, p.max, p.mean
            ),
        );
        let usage = |u: Usage| {
            let cpu = u.cpu_pct.map_or("?".into(), |v| format!("{v:.1} % CPU"));
            let rss = u.rss_kb.map_or("?".into(), |v| format!("{v} kB RSS"));
            format!("{cpu}, {rss}")
        };
        row("host", usage(self.host));
        row("plugin process", usage(self.plugin_usage));
        if let Some(others) = self.others_cpu_pct {
            let note = if others >= DISTURBED_PCT {
                " (the figures are disturbed: measure on a quiet machine)"
            } else {
                ""
            };
            row("everything else", format!("{others:.1} % CPU{note}"));
        }
        row("plugin stopped", self.stopped.clone());
        if let Some(err) = &self.first_error {
            row("first error", err.clone());
        }
        out
    }
}

fn rate(amount: f64, seconds: f64) -> f64 {
    if seconds > 0.0 { amount / seconds } else { 0.0 }
}

/// The object of the `RESULT` line. Its fields serialize in this order, which is the
/// contract's (INTEROP.md) and what the Go and Python twins print; `None`, NaN and
/// infinity are written as `null`.
#[derive(Serialize)]
struct ResultLine {
    req_per_s: f64,
    /// Download runs only.
    #[serde(skip_serializing_if = "Option::is_none")]
    mib_per_s: Option<f64>,
    p50_us: u64,
    p99_us: u64,
    p999_us: u64,
    launch_to_first_call_ms: f64,
    host_rss_kb: Option<u64>,
    plugin_rss_kb: Option<u64>,
    host_cpu_pct: Option<f64>,
    plugin_cpu_pct: Option<f64>,
    errors: u64,
    /// Failed calls per gRPC code name; only when some failed, so the line of a
    /// clean run stays the contract's (and the Go and Python twins') exactly.
    #[serde(skip_serializing_if = "Option::is_none")]
    error_codes: Option<BTreeMap<&'static str, u64>>,
    /// Median time to fail, microseconds; only when some failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    error_p50_us: Option<u64>,
    /// 99th percentile time to fail, microseconds; only when some failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    error_p99_us: Option<u64>,
}

/// serde_json's compact layout with `, ` between fields, as the Go and Python twins
/// write the line.
struct SpacedFields;

impl serde_json::ser::Formatter for SpacedFields {
    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }
}

/// `value` rounded to `decimals` digits after the point, as `{:.N}` rounds (ties to
/// even), so the line carries no more precision than was measured. serde_json then
/// writes the shortest form (`3.25`, not `3.250`; `500.0` stays `500.0`).
fn rounded(value: f64, decimals: usize) -> f64 {
    format!("{value:.decimals$}").parse().unwrap_or(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 1..=1000 µs, one call each: the percentiles are known exactly.
    fn uniform() -> Histogram<u64> {
        let mut h = Histogram::<u64>::new(3).unwrap();
        for v in 1..=1000 {
            h.record(v).unwrap();
        }
        h
    }

    fn report(mode: Mode) -> Report {
        Report {
            mode,
            size: 1024,
            messages_per_call: if mode == Mode::Download { 1024 } else { 1 },
            concurrency: 2,
            threads: 0,
            plugin: "kv_plugin (pid 42)".into(),
            launch_to_first_call: Duration::from_micros(3_250),
            warmup: Duration::from_secs(1),
            window: Duration::from_secs(2),
            calls: 1000,
            errors: 0,
            error_codes: BTreeMap::new(),
            error_latency: Histogram::new(3).unwrap(),
            first_error: None,
            latency: uniform(),
            bytes: 1000 * 1024 * 1024,
            messages: 1000 * 1024,
            host: Usage {
                rss_kb: Some(8_000),
                cpu_pct: Some(95.25),
            },
            plugin_usage: Usage {
                rss_kb: Some(6_000),
                cpu_pct: Some(101.0),
            },
            stopped: "graceful, exit status: 0".into(),
            stop_failed: false,
            others_cpu_pct: Some(0.5),
        }
    }

    const KEYS: [&str; 10] = [
        "req_per_s",
        "p50_us",
        "p99_us",
        "p999_us",
        "launch_to_first_call_ms",
        "host_rss_kb",
        "plugin_rss_kb",
        "host_cpu_pct",
        "plugin_cpu_pct",
        "errors",
    ];

    fn parse_result(line: &str) -> serde_json::Map<String, serde_json::Value> {
        let json = line.strip_prefix("RESULT ").expect("starts with RESULT");
        assert!(!json.contains('\n'));
        match serde_json::from_str(json).expect("valid JSON") {
            serde_json::Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    #[test]
    fn percentiles_of_a_known_histogram() {
        let p = Percentiles::of(&uniform());
        assert_eq!(p.p50, 500);
        assert_eq!(p.p90, 900);
        assert_eq!(p.p99, 990);
        assert_eq!(p.p999, 999);
        assert_eq!(p.max, 1000);
        assert!((p.mean - 500.5).abs() < 0.01, "{}", p.mean);
        let empty = Percentiles::of(&Histogram::<u64>::new(3).unwrap());
        assert_eq!((empty.p50, empty.max), (0, 0));
    }

    #[test]
    fn result_line_is_json_with_every_key() {
        let line = report(Mode::Echo).result_line();
        let map = parse_result(&line);
        let keys: Vec<&str> = map.keys().map(String::as_str).collect();
        let mut expected = KEYS.to_vec();
        expected.sort_unstable();
        assert_eq!(keys, expected, "{line}");
        assert_eq!(map["req_per_s"], 500.0);
        assert_eq!(map["p50_us"], 500);
        assert_eq!(map["p99_us"], 990);
        assert_eq!(map["p999_us"], 999);
        assert_eq!(map["launch_to_first_call_ms"], 3.25);
        assert_eq!(map["host_rss_kb"], 8000);
        assert_eq!(map["plugin_cpu_pct"], 101.0);
        assert_eq!(map["errors"], 0);
        // The contract's shape, field order and separators included: the line as the
        // Go twin prints it (tests/interop/go/src/benchhost/main_test.go), but for the
        // trailing zero of `3.250`, which JSON readers take as the same number.
        assert_eq!(
            line,
            r#"RESULT {"req_per_s":500.0, "p50_us":500, "p99_us":990, "p999_us":999, "launch_to_first_call_ms":3.25, "host_rss_kb":8000, "plugin_rss_kb":6000, "host_cpu_pct":95.2, "plugin_cpu_pct":101.0, "errors":0}"#
        );
    }

    #[test]
    fn download_adds_throughput() {
        let map = parse_result(&report(Mode::Download).result_line());
        assert_eq!(map.len(), KEYS.len() + 1);
        // 1000 MiB in 2 s.
        assert_eq!(map["mib_per_s"], 500.0);
    }

    #[test]
    fn unmeasured_figures_are_null() {
        let mut r = report(Mode::Echo);
        r.plugin_usage = Usage::default();
        r.window = Duration::ZERO;
        let map = parse_result(&r.result_line());
        assert!(map["plugin_rss_kb"].is_null());
        assert!(map["plugin_cpu_pct"].is_null());
        assert_eq!(map["req_per_s"], 0.0);
        r.host.cpu_pct = Some(f64::NAN);
        r.launch_to_first_call = Duration::MAX;
        let map = parse_result(&r.result_line());
        assert!(map["host_cpu_pct"].is_null());
        assert!(map["launch_to_first_call_ms"].is_f64());
    }

    /// Three failures: two refused by a rate limit in about 200 µs, one timed out.
    fn with_failures(mut r: Report) -> Report {
        r.errors = 3;
        r.error_codes = BTreeMap::from([("resource_exhausted", 2), ("deadline_exceeded", 1)]);
        for micros in [200, 200, 5_000] {
            r.error_latency.record(micros).unwrap();
        }
        r.first_error = Some("status: ResourceExhausted".into());
        r
    }

    #[test]
    fn failures_are_counted_by_code_and_timed() {
        let line = with_failures(report(Mode::Echo)).result_line();
        let map = parse_result(&line);
        assert_eq!(map.len(), KEYS.len() + 3, "{line}");
        for key in KEYS {
            assert!(map.contains_key(key), "{key} kept: {line}");
        }
        assert_eq!(map["errors"], 3);
        assert_eq!(map["error_codes"]["resource_exhausted"], 2, "{line}");
        assert_eq!(map["error_codes"]["deadline_exceeded"], 1, "{line}");
        assert_eq!(map["error_p50_us"], 200, "{line}");
        assert!(map["error_p99_us"].as_u64().unwrap() >= 5_000, "{line}");
        // Appended after the contract's fields, in the same layout.
        assert!(
            line.ends_with(r#""errors":3, "error_codes":{"deadline_exceeded":1, "resource_exhausted":2}, "error_p50_us":200, "error_p99_us":5003}"#),
            "{line}"
        );
        let table = with_failures(report(Mode::Echo)).table();
        assert!(
            table.contains("failures              1 deadline_exceeded, 2 resource_exhausted"),
            "{table}"
        );
        assert!(
            table.contains("time to fail          p50 200 µs"),
            "{table}"
        );
        assert!(!report(Mode::Echo).table().contains("time to fail"));
    }

    #[test]
    fn table_shows_errors_and_stop() {
        let mut r = report(Mode::Download);
        r.errors = 3;
        r.first_error = Some("status: Unavailable".into());
        let table = r.table();
        assert!(table.contains("1000 ok, 3 failed"), "{table}");
        assert!(table.contains("500.0 MiB/s"), "{table}");
        assert!(table.contains("first error"), "{table}");
        assert!(table.contains("graceful"), "{table}");
        assert!(table.contains("p50 500 µs"), "{table}");
        assert!(!table.contains("disturbed"), "{table}");
        r.others_cpu_pct = Some(45.0);
        assert!(r.table().contains("45.0 % CPU (the figures are disturbed"));
    }
}
