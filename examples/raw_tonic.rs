//! The benchmark's ceiling: plain tonic over a Unix socket, no rpcplugin at all.
//!
//! ```text
//! cargo run --release --example raw_tonic -- --seconds 5 --concurrency 32
//! ```
//!
//! Starts itself as a child process serving `bench.v1.Bench` on a Unix socket (a
//! multi-thread runtime with one worker, as an rpcplugin plugin runs), connects from a
//! current-thread runtime (as `rpcplugin bench` runs), drives `Echo` with 1 KiB
//! payloads from C concurrent tasks on one connection, and prints the same `RESULT`
//! line as `rpcplugin bench` (figures it does not measure are null). `cargo xtask
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
            data: vec![0xAB; chunk_size as usize],
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
}

fn options() -> Result<Options, String> {
    let mut opts = Options {
        seconds: 5.0,
        concurrency: 1,
        size: 1024,
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
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(opts)
}

async fn drive(opts: Options) -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let socket = dir.path().join("raw.sock");
    let launched = Instant::now();
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .arg("serve")
        .arg(&socket)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().expect("piped"));
    let mut line = String::new();
    tokio::io::AsyncBufReadExt::read_line(&mut stdout, &mut line).await?;
    let path = socket.clone();
    let channel = Endpoint::from_static("http://localhost")
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
        data: vec![7; opts.size],
    };
    BenchClient::new(channel.clone())
        .echo(payload.clone())
        .await?;
    let launch_ms = launched.elapsed().as_secs_f64() * 1e3;

    let warmup = Duration::from_millis(500);
    let window = Duration::from_secs_f64(opts.seconds);
    let start = Instant::now() + warmup;
    let end = start + window;
    let mut tasks = Vec::new();
    for _ in 0..opts.concurrency {
        let mut client = BenchClient::new(channel.clone());
        let payload = payload.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            loop {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                let ok = client.echo(payload.clone()).await.is_ok();
                if now >= start {
                    if ok {
                        latencies.push(now.elapsed().as_micros() as u64);
                    } else {
                        errors += 1;
                    }
                }
            }
            (latencies, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (latencies, e) = task.await?;
        all.extend(latencies);
        errors += e;
    }
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    println!(
        "RESULT {{\"req_per_s\":{:.1}, \"p50_us\":{}, \"p99_us\":{}, \"p999_us\":{}, \"launch_to_first_call_ms\":{launch_ms:.3}, \"host_rss_kb\":null, \"plugin_rss_kb\":null, \"host_cpu_pct\":null, \"plugin_cpu_pct\":null, \"errors\":{errors}}}",
        all.len() as f64 / window.as_secs_f64(),
        pct(0.5),
        pct(0.99),
        pct(0.999),
    );
    child.kill().await?;
    Ok(())
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some("serve") {
        return serve(args.next().map(PathBuf::from).expect("a socket path"));
    }
    let opts = match options() {
        Ok(opts) => opts,
        Err(err) => {
            eprintln!(
                "error: {err}\nusage: raw_tonic [--seconds N] [--concurrency C] [--size BYTES]"
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
