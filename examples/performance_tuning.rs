//! Performance tuning (pyvider-rpcplugin's example 10): the choices that change a
//! host's and a plugin's figures, measured here, next to the release figures
//! recorded on the project's 2-core machine (docs/performance.md).
//!
//! ```text
//! cargo run --release --example performance_tuning
//! ```
//!
//! What to notice in the output:
//! - `message size:` bytes per second grow with the message until the copy
//!   dominates: batch small items into fewer, larger messages;
//! - `concurrency:` calls at once on the one connection multiply calls per
//!   second (HTTP/2 multiplexing); no second connection is needed;
//! - `chunk size:` a download in 256 KiB chunks moves more bytes per second than
//!   the same download in 4 KiB chunks (about twice, here): each message costs
//!   its framing, a poll and an allocation, whatever its size;
//! - `recorded:` what the release profile, the allocator setting and the runtime
//!   shape changed, as measured with `cargo xtask bench`.
//!
//! A debug build (`cargo run --example performance_tuning`) shows the same
//! directions with smaller numbers; compare its lines with each other, not with
//! the recorded ones. Each measurement runs for 300 ms.
//!
//! As in `quick_start.rs`, this program is both halves: run plainly it is the host,
//! and it starts itself with the argument `plugin` as the plugin.

use rpcplugin::proto::examples::bench::bench_client::BenchClient;
use rpcplugin::proto::examples::bench::bench_server::{Bench, BenchServer};
use rpcplugin::proto::examples::bench::{DownloadRequest, Payload};
use rpcplugin::tonic::{self, Request, Response, Status};
use std::pin::Pin;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tokio_stream::{Stream, StreamExt as _};

const COOKIE: (&str, &str) = ("BASIC_PLUGIN", "hello");
const WINDOW: Duration = Duration::from_millis(300);
const KIB: usize = 1024;

// ---- the plugin -------------------------------------------------------------

struct Service;

#[tonic::async_trait]
impl Bench for Service {
    async fn echo(&self, req: Request<Payload>) -> Result<Response<Payload>, Status> {
        Ok(Response::new(req.into_inner()))
    }

    type DownloadStream = Pin<Box<dyn Stream<Item = Result<Payload, Status>> + Send>>;

    async fn download(
        &self,
        req: Request<DownloadRequest>,
    ) -> Result<Response<Self::DownloadStream>, Status> {
        let DownloadRequest { chunk_size, count } = req.into_inner();
        // One buffer sent `count` times: `Bytes` clones share it.
        let data = bytes_of(chunk_size as usize);
        let chunks = tokio_stream::iter(0..count).map(move |_| Ok(Payload { data: data.clone() }));
        Ok(Response::new(Box::pin(chunks)))
    }
}

fn bytes_of(size: usize) -> rpcplugin::prost::bytes::Bytes {
    vec![0x5a; size].into()
}

fn plugin_main() -> ExitCode {
    // `run()` picks the runtime shape that measured best for a plugin (a
    // multi-thread runtime with one worker) and sets glibc's allocator thresholds
    // for streaming; both are recorded below.
    rpcplugin::plugin_server()
        .handshake(COOKIE.0, COOKIE.1)
        .add_service(BenchServer::new(Service))
        .run()
}

// ---- the host ---------------------------------------------------------------

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Client = BenchClient<rpcplugin::client::Channel>;

async fn host_main() -> Result<(), BoxError> {
    let plugin = rpcplugin::plugin_client(std::env::current_exe()?)
        .arg("plugin")
        .handshake(COOKIE.0, COOKIE.1)
        .start()
        .await?;
    let bench = rpcplugin::client::new_client!(BenchClient, plugin);
    println!(
        "build: {}",
        if cfg!(debug_assertions) {
            "debug (compare lines with each other)"
        } else {
            "release"
        }
    );

    for size in [KIB, 64 * KIB, 1024 * KIB] {
        let (calls, seconds) = echo_for(&bench, size, 1).await?;
        println!(
            "message size: echo {:>4} KiB: {:>8.1} MiB/s ({:.0} calls/s)",
            size / KIB,
            mib(calls * size, seconds),
            calls as f64 / seconds
        );
    }

    for concurrency in [1, 16] {
        let (calls, seconds) = echo_for(&bench, KIB, concurrency).await?;
        println!(
            "concurrency: echo 1 KiB, {concurrency:>2} at once: {:>8.0} calls/s",
            calls as f64 / seconds
        );
    }

    for chunk in [4 * KIB, 256 * KIB] {
        let total = 16 * 1024 * KIB;
        let seconds = download(&bench, chunk, total).await?;
        println!(
            "chunk size: download 16 MiB in {:>3} KiB chunks: {:>8.1} MiB/s",
            chunk / KIB,
            mib(total, seconds)
        );
    }

    // Figures from docs/performance.md (cargo xtask bench, release, 2 cores).
    for line in [
        "recorded: lto = \"fat\" and codegen-units = 1 in the release profile: echo c=32 49.7k -> 59.7k calls/s, launch to first call 4.7 -> 4.1 ms",
        "recorded: glibc allocator thresholds (the plugin's run(), the host's tune_allocator()): 64 KiB downloads 590 -> 1780-2020 MiB/s",
        "recorded: plugin on a multi-thread runtime with one worker, host on a current-thread one: the shapes run() and the examples use",
        "recorded: AWS_LC_SYS_NO_JITTER_ENTROPY=1 in .cargo/config.toml: AutoMTLS launch 120 -> 8 ms",
        "recorded: two or four connections instead of one, echo c=32: 45k-51k -> 31k-42k calls/s (slower)",
    ] {
        println!("{line}");
    }

    plugin.stop().await?;
    Ok(())
}

/// Echo calls of `size` bytes, `concurrency` at a time, for [`WINDOW`]: how many
/// finished, and in how many seconds.
async fn echo_for(
    bench: &Client,
    size: usize,
    concurrency: usize,
) -> Result<(usize, f64), BoxError> {
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let mut bench = bench.clone();
            let data = bytes_of(size);
            tokio::spawn(async move {
                let mut calls = 0;
                while started.elapsed() < WINDOW {
                    bench.echo(Payload { data: data.clone() }).await?;
                    calls += 1;
                }
                Ok::<_, Status>(calls)
            })
        })
        .collect();
    let mut calls = 0;
    for task in tasks {
        calls += task.await??;
    }
    Ok((calls, started.elapsed().as_secs_f64()))
}

/// Seconds to download `total` bytes in chunks of `chunk` bytes.
async fn download(bench: &Client, chunk: usize, total: usize) -> Result<f64, BoxError> {
    let started = Instant::now();
    let mut stream = bench
        .clone()
        .download(DownloadRequest {
            chunk_size: chunk as u32,
            count: (total / chunk) as u32,
        })
        .await?
        .into_inner();
    let mut received = 0;
    while let Some(payload) = stream.next().await {
        received += payload?.data.len();
    }
    if received != total {
        return Err(format!("received {received} bytes of {total}").into());
    }
    Ok(started.elapsed().as_secs_f64())
}

fn mib(bytes: usize, seconds: f64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / seconds
}

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("plugin") {
        return plugin_main();
    }
    // glibc's allocator set for streaming messages, as plugins have it.
    rpcplugin::client::tune_allocator();
    // A current-thread runtime: the host shape that measured best.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    match runtime.block_on(host_main()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{}", rpcplugin::render(&*err));
            ExitCode::FAILURE
        }
    }
}
