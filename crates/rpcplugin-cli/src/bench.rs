//! The load generator: launches the plugin, times launch to first call, drives
//! `bench.v1.Bench` from concurrent tasks over the one channel, samples CPU and memory
//! of both processes around the measured window, and stops the plugin.

use crate::args::{BenchOptions, Mode};
use crate::procstat::{self, Sample, Target};
use crate::report::{Report, Usage};
use hdrhistogram::Histogram;
use rpcplugin_client::{Builder, Channel, PluginClient, StopMethod, Stopped};
use rpcplugin_proto::examples::bench::bench_client::BenchClient;
use rpcplugin_proto::examples::bench::{DownloadRequest, Payload};
use std::collections::BTreeMap;
use std::io::{IsTerminal as _, Write as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The app protocol version of `bench.v1.Bench` plugins (INTEROP.md).
const APP_PROTOCOL_VERSION: u32 = 1;

/// About how many bytes one Download call moves.
const BYTES_PER_DOWNLOAD: usize = 1024 * 1024;

/// How long the first Echo may take once the plugin is up.
const FIRST_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// How long after the window a task may still wait for its last call before it is
/// abandoned (a hung plugin must not hang the benchmark).
const STRAGGLER_GRACE: Duration = Duration::from_secs(10);

/// Why a run produced no report.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The plugin did not start; the error explains why.
    Start(rpcplugin_client::Error),
    /// The plugin started but its first Echo failed (why).
    FirstCall(String),
}

impl Failure {
    /// The text for stderr: what happened and what to do.
    pub(crate) fn render(&self) -> String {
        match self {
            Failure::Start(err) => rpcplugin_core::render(err),
            Failure::FirstCall(why) => format!(
                "error: the plugin started but its first bench.v1.Bench/Echo call failed: {why}\n  \
                 hint: rpcplugin bench measures plugins serving bench.v1.Bench (proto/bench.proto); \
                 check that this plugin registers that service"
            ),
        }
    }
}

/// Applies the options to the client builder: everything the command line says
/// about how to launch. Plaintext unless `--automtls`, whatever the library's
/// default (the INTEROP.md contract), so peers without TLS can be measured.
fn configure(builder: Builder, opts: &BenchOptions) -> Builder {
    builder
        .args(&opts.args)
        .handshake(&opts.cookie.0, &opts.cookie.1)
        .protocol_versions([APP_PROTOCOL_VERSION])
        .auto_mtls(opts.automtls)
}

/// Messages per Download call: about 1 MiB per call, at least one message.
pub(crate) fn messages_per_call(size: usize) -> u32 {
    if size == 0 {
        return 1;
    }
    u32::try_from((BYTES_PER_DOWNLOAD / size).max(1)).unwrap_or(u32::MAX)
}

/// Runs the whole benchmark: launch and a first call, the load over the window,
/// then the figures.
pub(crate) async fn run(opts: &BenchOptions) -> Result<Report, Failure> {
    let builder = configure(PluginClient::builder(&opts.program), opts);

    let launched = Instant::now();
    let plugin = builder.start().await.map_err(Failure::Start)?;
    let workload = Workload::new(opts);
    if let Err(why) = first_call(&plugin, &workload).await {
        let _ = plugin.stop().await;
        return Err(Failure::FirstCall(why));
    }
    let launch_to_first_call = launched.elapsed();
    // Progress only for a person watching: a pipe or a file gets the table alone.
    let progress = std::io::stderr()
        .is_terminal()
        .then(|| Arc::new(AtomicU64::new(0)));
    let workload = Workload {
        progress: progress.clone(),
        ..workload
    };

    let pid = plugin.pid();
    let label = format!(
        "{} (pid {pid}), protocol {} at {}, {}",
        plugin.name(),
        plugin.protocol_version(),
        plugin.endpoint(),
        if plugin.is_tls() {
            "mutual TLS"
        } else {
            "plaintext"
        }
    );

    let window_start = Instant::now() + opts.warmup;
    let deadline = window_start + opts.duration;
    let tasks: Vec<_> = (0..opts.concurrency)
        .map(|_| {
            tokio::spawn(drive(
                rpcplugin_client::new_client!(BenchClient, plugin),
                workload.clone(),
                window_start,
                deadline,
            ))
        })
        .collect();

    tokio::time::sleep_until(window_start.into()).await;
    let start = Snapshot::take(pid);
    let ticker =
        progress.map(|calls| tokio::spawn(show_progress(calls, window_start, opts.duration)));
    let total = collect(tasks, deadline + STRAGGLER_GRACE).await;
    if let Some(ticker) = ticker {
        ticker.abort();
        // Clear the progress line so the table starts on a clean one.
        eprint!("\r\x1b[2K");
    }
    let end = Snapshot::take(pid);
    let stop = plugin.stop().await;
    let stop_failed = stop.is_err();
    let stopped = describe_stop(stop);
    let (host, plugin_usage, others_cpu_pct) = usage(&start, &end);
    Ok(Report {
        mode: opts.mode,
        size: opts.size,
        messages_per_call: workload.download.count,
        concurrency: opts.concurrency,
        threads: opts.threads,
        plugin: label,
        launch_to_first_call,
        warmup: opts.warmup,
        window: total.last_done.map_or(Duration::ZERO, |t| {
            t.saturating_duration_since(window_start)
        }),
        calls: total.calls,
        errors: total.errors,
        error_codes: total.error_codes,
        error_latency: total.error_latency,
        first_error: total.first_error,
        latency: total.latency,
        bytes: total.bytes,
        messages: total.messages,
        host,
        plugin_usage,
        others_cpu_pct,
        stopped,
        stop_failed,
    })
}

/// Rewrites one stderr line four times a second: time into the window and calls so
/// far. Aborted when the tasks are collected.
async fn show_progress(calls: Arc<AtomicU64>, window_start: Instant, window: Duration) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        let elapsed = window_start.elapsed().min(window);
        let mut stderr = std::io::stderr().lock();
        let _ = write!(
            stderr,
            "\r\x1b[2Kmeasuring: {:.1} s of {:.1} s, {} calls",
            elapsed.as_secs_f64(),
            window.as_secs_f64(),
            calls.load(Ordering::Relaxed)
        );
        let _ = stderr.flush();
    }
}

/// One call of the measured kind before the measurement: a plugin that cannot
/// answer it is reported as such rather than as a run full of errors. (A Download,
/// not an Echo of the chunk, in download mode: a go-plugin plugin accepts 4 MiB at
/// most, and a large chunk is about what it sends.)
async fn first_call(plugin: &PluginClient, workload: &Workload) -> Result<(), String> {
    let mut first = rpcplugin_client::new_client!(BenchClient, plugin);
    match tokio::time::timeout(FIRST_CALL_TIMEOUT, workload.call(&mut first)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(failed)) => Err(failed.message),
        Err(_) => Err(format!("no reply within {FIRST_CALL_TIMEOUT:?}")),
    }
}

/// The load tasks' counts, merged; a task still running at `give_up` is abandoned
/// and fails the run.
async fn collect(tasks: Vec<tokio::task::JoinHandle<Tally>>, give_up: Instant) -> Tally {
    let mut total = Tally::new();
    for mut task in tasks {
        match tokio::time::timeout_at(give_up.into(), &mut task).await {
            Ok(Ok(tally)) => total.merge(tally),
            Ok(Err(err)) => total.fail(CallFailure::other(format!(
                "a load task ended abnormally: {err}"
            ))),
            Err(_) => {
                // Its counts are lost with it; the run is failed anyway.
                task.abort();
                total.fail(CallFailure::other(format!(
                    "a call got no reply within {STRAGGLER_GRACE:?} after the window ended; \
                     its task was abandoned"
                )));
            }
        }
    }
    total
}

/// The host's and the plugin's CPU and memory over the window, and the CPU that
/// everything else took on the machine.
fn usage(start: &Snapshot, end: &Snapshot) -> (Usage, Usage, Option<f64>) {
    let ticks = procstat::ticks_per_second();
    let wall = end.at.duration_since(start.at);
    let usage = |start: Option<Sample>, end: Option<Sample>| Usage {
        rss_kb: end.map(|s| s.rss_kb),
        cpu_pct: start
            .zip(end)
            .map(|(s, e)| procstat::cpu_percent(s, e, ticks, wall)),
    };
    let host = usage(start.host, end.host);
    let plugin = usage(start.plugin, end.plugin);
    // Whatever else ran (other processes, the hypervisor's steal) competed for the
    // same cores and disturbed the figures.
    let others_cpu_pct = start.machine.zip(end.machine).map(|(s, e)| {
        let machine = procstat::ticks_percent(s, e, ticks, wall);
        let ours = host.cpu_pct.unwrap_or(0.0) + plugin.cpu_pct.unwrap_or(0.0);
        (machine - ours).max(0.0)
    });
    (host, plugin, others_cpu_pct)
}

/// What every task sends, built once.
#[derive(Debug, Clone)]
struct Workload {
    mode: Mode,
    payload: Payload,
    download: DownloadRequest,
    /// Counted calls, for the progress line (only when stderr is a terminal).
    progress: Option<Arc<AtomicU64>>,
}

impl Workload {
    fn new(opts: &BenchOptions) -> Self {
        let size = u32::try_from(opts.size).unwrap_or(u32::MAX);
        Self {
            mode: opts.mode,
            payload: Payload {
                data: vec![0x5A; opts.size].into(),
            },
            download: DownloadRequest {
                chunk_size: size,
                count: match opts.mode {
                    Mode::Echo => 1,
                    Mode::Download => messages_per_call(opts.size),
                },
            },
            progress: None,
        }
    }

    /// One call; returns the payload bytes and messages received.
    async fn call(&self, client: &mut BenchClient<Channel>) -> Result<(u64, u64), CallFailure> {
        match self.mode {
            Mode::Echo => {
                let reply = client.echo(self.payload.clone()).await?;
                let got = reply.get_ref().data.len();
                if got != self.payload.data.len() {
                    return Err(CallFailure::other(format!(
                        "Echo returned {got} bytes for {}",
                        self.payload.data.len()
                    )));
                }
                Ok((got as u64, 1))
            }
            Mode::Download => {
                let mut stream = client.download(self.download).await?.into_inner();
                let (mut bytes, mut messages) = (0u64, 0u64);
                while let Some(chunk) = stream.message().await? {
                    bytes += chunk.data.len() as u64;
                    messages += 1;
                }
                if messages != u64::from(self.download.count) {
                    return Err(CallFailure::other(format!(
                        "Download sent {messages} messages for {}",
                        self.download.count
                    )));
                }
                Ok((bytes, messages))
            }
        }
    }
}

/// One task's counts, merged into the total at the end (no shared state per call).
#[derive(Debug)]
struct Tally {
    latency: Histogram<u64>,
    calls: u64,
    errors: u64,
    /// Failures per gRPC code (`resource_exhausted`, ...; `other` for a failure
    /// that is not a gRPC status).
    error_codes: BTreeMap<&'static str, u64>,
    /// How long failed calls took to fail, microseconds.
    error_latency: Histogram<u64>,
    first_error: Option<String>,
    bytes: u64,
    messages: u64,
    last_done: Option<Instant>,
}

impl Tally {
    fn new() -> Self {
        Self {
            // Auto-resizing: it grows to the slowest call seen instead of allocating
            // for an hour up front, which would show in the host's RSS.
            latency: Histogram::new(3).expect("3 significant figures is a valid precision"),
            calls: 0,
            errors: 0,
            error_codes: BTreeMap::new(),
            error_latency: Histogram::new(3).expect("3 significant figures is a valid precision"),
            first_error: None,
            bytes: 0,
            messages: 0,
            last_done: None,
        }
    }

    fn record_latency(&mut self, micros: u64) {
        record(&mut self.latency, micros);
    }

    /// A failure with no call to time (a load task lost).
    fn fail(&mut self, failure: CallFailure) {
        self.errors += 1;
        *self.error_codes.entry(failure.code).or_default() += 1;
        self.first_error.get_or_insert(failure.message);
    }

    /// A failed call, and how long it took to fail.
    fn fail_after(&mut self, failure: CallFailure, micros: u64) {
        record(&mut self.error_latency, micros);
        self.fail(failure);
    }

    fn merge(&mut self, other: Tally) {
        // Both auto-resize, so adding cannot run out of range.
        let _ = self.latency.add(&other.latency);
        self.calls += other.calls;
        self.errors += other.errors;
        let _ = self.error_latency.add(&other.error_latency);
        for (code, n) in other.error_codes {
            *self.error_codes.entry(code).or_default() += n;
        }
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.bytes += other.bytes;
        self.messages += other.messages;
        self.last_done = self.last_done.max(other.last_done);
    }
}

fn record(histogram: &mut Histogram<u64>, micros: u64) {
    // `record` grows the histogram; `saturating_record` would clamp to its
    // current top instead, so it is only the fallback if growing fails.
    let micros = micros.max(1);
    if histogram.record(micros).is_err() {
        histogram.saturating_record(micros);
    }
}

/// Why one call failed: its gRPC code's name, for the per-code counts, and a
/// message for the `first error` row.
#[derive(Debug)]
struct CallFailure {
    code: &'static str,
    message: String,
}

impl CallFailure {
    /// A failure that is not a gRPC status (a short reply, a lost task).
    fn other(message: String) -> Self {
        Self {
            code: "other",
            message,
        }
    }
}

impl From<tonic::Status> for CallFailure {
    fn from(status: tonic::Status) -> Self {
        Self {
            code: code_name(status.code()),
            message: status.to_string(),
        }
    }
}

/// The gRPC code's canonical name in lower case (`RESOURCE_EXHAUSTED` is
/// `resource_exhausted`), as the RESULT line's `error_codes` keys it.
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

/// Calls until `deadline`; counts the calls that start inside the window.
async fn drive(
    mut client: BenchClient<Channel>,
    workload: Workload,
    window_start: Instant,
    deadline: Instant,
) -> Tally {
    let mut tally = Tally::new();
    loop {
        let started = Instant::now();
        if started >= deadline {
            break;
        }
        let result = workload.call(&mut client).await;
        let done = Instant::now();
        let micros = u64::try_from(done.duration_since(started).as_micros()).unwrap_or(u64::MAX);
        match result {
            Ok((bytes, messages)) if started >= window_start => {
                tally.record_latency(micros);
                tally.calls += 1;
                tally.bytes += bytes;
                tally.messages += messages;
                tally.last_done = Some(done);
                if let Some(progress) = &workload.progress {
                    progress.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(_) => {}
            // Failures count from the warm-up on, as `errors` always has.
            Err(failure) => tally.fail_after(failure, micros),
        }
    }
    tally
}

/// Both processes' counters at one moment.
#[derive(Debug, Clone, Copy)]
struct Snapshot {
    at: Instant,
    host: Option<Sample>,
    plugin: Option<Sample>,
    machine: Option<u64>,
}

impl Snapshot {
    fn take(plugin_pid: u32) -> Self {
        Self {
            at: Instant::now(),
            host: procstat::sample(Target::Me),
            plugin: procstat::sample(Target::Pid(plugin_pid)),
            machine: procstat::machine_sample(),
        }
    }
}

fn describe_stop(stopped: rpcplugin_client::Result<Stopped>) -> String {
    match stopped {
        Ok(Stopped { method, status }) => {
            let how = match method {
                StopMethod::Graceful => "graceful (Shutdown RPC)",
                StopMethod::Terminated => "needed SIGTERM",
                StopMethod::Killed => "needed SIGKILL",
                StopMethod::AlreadyExited => "had already exited",
                _ => "stopped",
            };
            format!("{how}, {status}")
        }
        Err(err) => format!("stop failed: {err}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_download_call_moves_about_a_mebibyte() {
        assert_eq!(messages_per_call(1024), 1024);
        assert_eq!(messages_per_call(64 * 1024), 16);
        assert_eq!(messages_per_call(1000), 1048);
        assert_eq!(messages_per_call(4 << 20), 1);
        assert_eq!(messages_per_call(0), 1);
    }

    #[test]
    fn latencies_beyond_the_initial_range_are_kept() {
        let mut tally = Tally::new();
        for micros in [0, 40, 6_000, 2_500_000] {
            tally.record_latency(micros);
        }
        let mut other = Tally::new();
        other.record_latency(90_000_000);
        other.fail_after(CallFailure::other("boom".into()), 700);
        other.fail_after(
            tonic::Status::resource_exhausted("over the limit").into(),
            300,
        );
        tally.merge(other);
        let p = crate::report::Percentiles::of(&tally.latency);
        // Three significant figures: within 0.1 %.
        assert!((6_000..=6_006).contains(&p.p50), "{}", p.p50);
        assert!((89_900_000..=90_100_000).contains(&p.max), "{}", p.max);
        assert_eq!(tally.latency.len(), 5);
        assert_eq!(tally.latency.min(), 1);
        assert_eq!(
            (tally.errors, tally.first_error.as_deref()),
            (2, Some("boom"))
        );
        assert_eq!(
            tally.error_codes.into_iter().collect::<Vec<_>>(),
            [("other", 1), ("resource_exhausted", 1)]
        );
        assert_eq!(tally.error_latency.len(), 2);
        assert!((299..=301).contains(&tally.error_latency.min()));
    }
}
