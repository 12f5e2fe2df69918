//! The benchmark's ceiling: plain tonic over a Unix socket, no rpcplugin at all.
//!
//! ```text
//! cargo run --release --example raw_tonic -- --seconds 5 --concurrency 32
//! ```
//!
//! Starts itself as a child process serving `bench.v1.Bench` on a Unix socket (a
//! multi-thread runtime with one worker, as an rpcplugin plugin runs), connects from a
//! current-thread runtime (as `rpcplugin bench` runs), with rpcplugin's tuning (1 MiB
//! HTTP/2 frames, glibc's allocator thresholds) but none of its code, drives `Echo` with 1 KiB
//! payloads from C concurrent tasks on one connection (or, with `--mode download`,
//! reads `Download` streams of about 1 MiB of `--size` chunks), and prints the same
//! `RESULT` line as `rpcplugin bench` (figures it does not measure are null). `cargo xtask
//! bench` runs it beside rpcplugin so the framework's own cost shows as a ratio.

use rpcplugin::proto::examples::bench::bench_client::BenchClient;
use rpcplugin::proto::examples::bench::bench_server::{Bench, BenchServer};
use rpcplugin::proto::examples::bench::{DownloadRequest, Payload};
use rpcplugin::tonic::transport::{Endpoint, Server, Uri};
use rpcplugin::tonic::{self, Request, Response, Status};
use std::path::PathBuf;
use std::pin::Pin;
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

struct Echo;

type PayloadStream = Pin<Box<dyn tokio_stream::Stream<Item = Result<Payload, Status>> + Send>>;

#[tonic::async_trait]
impl Bench for Echo {
    async fn echo(&self, request: Request<Payload>) -> Result<Response<Payload>, Status> {
        Ok(Response::new(request.into_inner()))
    }

    type DownloadStream = PayloadStream;

    async fn download(
        &self,
        request: Request<DownloadRequest>,
    ) -> Result<Response<Self::DownloadStream>, Status> {
        let DownloadRequest { chunk_size, count } = request.into_inner();
        let chunk = Payload {
            data: vec![0xAB; chunk_size as usize].into(),
        };
        let stream = tokio_stream::iter((0..count).map(move |_| Ok(chunk.clone())));
        Ok(Response::new(Box::pin(stream)))
    }
}

fn serve(socket: PathBuf) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let listener = tokio::net::UnixListener::bind(&socket).expect("bind");
        // Ready: the parent connects once it reads this line.
        println!("ready");
        let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
        Server::builder()
            .max_frame_size(MAX_FRAME_SIZE)
            .add_service(BenchServer::new(Echo))
            .serve_with_incoming(incoming)
            .await
            .expect("serve");
    });
    ExitCode::SUCCESS
}

struct Options {
    seconds: f64,
    concurrency: usize,
    size: usize,
    download: bool,
    /// A socket something else serves `bench.v1.Bench` on (an rpcplugin plugin in
    /// debug mode, say), instead of a raw tonic child: separates the framework's
    /// cost on the host side from its cost on the plugin side.
    connect: Option<PathBuf>,
}

fn options() -> Result<Options, String> {
    let mut opts = Options {
        seconds: 5.0,
        concurrency: 1,
        size: 1024,
        download: false,
        connect: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--seconds" => {
                opts.seconds = value()?.parse().map_err(|e| format!("--seconds: {e}"))?
            }
            "--concurrency" => {
                opts.concurrency = value()?
                    .parse()
                    .map_err(|e| format!("--concurrency: {e}"))?
            }
            "--size" => opts.size = value()?.parse().map_err(|e| format!("--size: {e}"))?,
            "--connect" => opts.connect = Some(PathBuf::from(value()?)),
            "--mode" => {
                opts.download = match value()?.as_str() {
                    "echo" => false,
                    "download" => true,
                    other => return Err(format!("--mode: {other:?} is not echo or download")),
                }
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(opts)
}

async fn drive(opts: Options) -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let launched = Instant::now();
    let (socket, mut child) = match &opts.connect {
        Some(socket) => (socket.clone(), None),
        None => {
            let socket = dir.path().join("raw.sock");
            let mut child = tokio::process::Command::new(std::env::current_exe()?)
                .arg("serve")
                .arg(&socket)
                .stdout(Stdio::piped())
                .kill_on_drop(true)
                .spawn()?;
            let mut stdout = tokio::io::BufReader::new(child.stdout.take().expect("piped"));
            let mut line = String::new();
            tokio::io::AsyncBufReadExt::read_line(&mut stdout, &mut line).await?;
            (socket, Some(child))
        }
    };
    let path = socket.clone();
    let channel = Endpoint::from_static("http://localhost")
        .max_frame_size(MAX_FRAME_SIZE)
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                tokio::net::UnixStream::connect(path)
                    .await
                    .map(hyper_util::rt::TokioIo::new)
            }
        }))
        .await?;
    let payload = Payload {
        data: vec![7; opts.size].into(),
    };
    BenchClient::new(channel.clone())
        .echo(payload.clone())
        .await?;
    let launch_ms = launched.elapsed().as_secs_f64() * 1e3;

    let warmup = Duration::from_millis(500);
    let window = Duration::from_secs_f64(opts.seconds);
    let start = Instant::now() + warmup;
    let end = start + window;
    let download = DownloadRequest {
        chunk_size: opts.size as u32,
        count: (MIB / opts.size.max(1)).max(1) as u32,
    };
    let mut tasks = Vec::new();
    for _ in 0..opts.concurrency {
        let mut client = BenchClient::new(channel.clone());
        let payload = payload.clone();
        let download = opts.download.then_some(download);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            let mut bytes = 0usize;
            loop {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                let received = match download {
                    None => client.echo(payload.clone()).await.map(|_| 0),
                    Some(request) => read_all(&mut client, request).await,
                };
                if now >= start {
                    match received {
                        Ok(n) => {
                            latencies.push(now.elapsed().as_micros() as u64);
                            bytes += n;
                        }
                        Err(_) => errors += 1,
                    }
                }
            }
            (latencies, errors, bytes)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    let mut bytes = 0;
    for task in tasks {
        let (latencies, e, n) = task.await?;
        all.extend(latencies);
        errors += e;
        bytes += n;
    }
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    let seconds = window.as_secs_f64();
    let mib = if opts.download {
        format!(", \"mib_per_s\":{:.1}", bytes as f64 / MIB as f64 / seconds)
    } else {
        String::new()
    };
    println!(
        "RESULT {{\"req_per_s\":{:.1}{mib}, \"p50_us\":{}, \"p99_us\":{}, \"p999_us\":{}, \"launch_to_first_call_ms\":{launch_ms:.3}, \"host_rss_kb\":null, \"plugin_rss_kb\":null, \"host_cpu_pct\":null, \"plugin_cpu_pct\":null, \"errors\":{errors}}}",
        all.len() as f64 / seconds,
        pct(0.5),
        pct(0.99),
        pct(0.999),
    );
    if let Some(child) = &mut child {
        child.kill().await?;
    }
    Ok(())
}

/// About how many bytes one Download call moves (as `rpcplugin bench`).
const MIB: usize = 1024 * 1024;

/// One Download call read to its end: the payload bytes received.
async fn read_all(
    client: &mut BenchClient<rpcplugin::tonic::transport::Channel>,
    request: DownloadRequest,
) -> Result<usize, Status> {
    let mut stream = client.download(request).await?.into_inner();
    let mut bytes = 0;
    while let Some(payload) = stream.message().await? {
        bytes += payload.data.len();
    }
    Ok(bytes)
}

/// The same HTTP/2 frame size limit rpcplugin sets on both sides.
const MAX_FRAME_SIZE: u32 = 1 << 20;

fn main() -> ExitCode {
    // The same allocator thresholds an rpcplugin plugin and `rpcplugin bench` set,
    // so this ceiling differs from them only by the framework.
    rpcplugin::transport::tune_allocator();
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some("serve") {
        return serve(args.next().map(PathBuf::from).expect("a socket path"));
    }
    let opts = match options() {
        Ok(opts) => opts,
        Err(err) => {
            eprintln!(
                "error: {err}\nusage: raw_tonic [--seconds N] [--concurrency C] [--size BYTES] [--mode echo|download] [--connect SOCKET]"
            );
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    match runtime.block_on(drive(opts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}
