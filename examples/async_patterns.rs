//! Async patterns (pyvider-rpcplugin's example 06): the four gRPC call shapes,
//! cancellation and deadlines, back-pressure, and many calls at once on one
//! connection.
//!
//! ```text
//! cargo run --example async_patterns
//! ```
//!
//! What to notice in the output:
//! - `unary`, `server stream`, `client stream`, `bidi`: the four shapes of
//!   `streams.v1.Streams`, each a plain `async fn` on the plugin's side (streams
//!   are `Stream`s in and out);
//! - `cancel:` dropping a stream on the host ends the plugin's producer at its next
//!   send: the plugin counts what it produced, far fewer than the 1,000 asked;
//! - `deadline:` `Request::set_timeout` sends the deadline with the call, but
//!   tonic bounds a streaming call with it only until its stream begins; the host
//!   bounds a whole stream with `tokio::time::timeout_at`, and dropping the
//!   stream at the deadline stops the plugin's producer as a cancel does;
//! - `back-pressure:` the plugin produces 64 KiB numbers through a channel of 4;
//!   a host that reads slowly holds the producer back (it stays a bounded number
//!   of messages ahead: the channel plus HTTP/2's flow-control window), so
//!   neither side buffers without bound;
//! - `concurrent:` 200 calls at once multiplex over the plugin's one HTTP/2
//!   connection.
//!
//! As in `quick_start.rs`, this program is both halves: run plainly it is the host,
//! and it starts itself with the argument `plugin` as the plugin.

use rpcplugin::proto::examples::streams::streams_client::StreamsClient;
use rpcplugin::proto::examples::streams::streams_server::{Streams, StreamsServer};
use rpcplugin::proto::examples::streams::{AddRequest, CountRequest, Number};
use rpcplugin::tonic::{self, Request, Response, Status, Streaming};
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt as _};

const COOKIE: (&str, &str) = ("BASIC_PLUGIN", "hello");

// ---- the plugin -------------------------------------------------------------

/// `produced` counts the numbers every `Count` has handed to its stream; a
/// `Count` to 0 reports that count instead of counting (how the host sees inside).
#[derive(Default)]
struct Service {
    produced: Arc<AtomicI64>,
}

type NumberStream = Pin<Box<dyn Stream<Item = Result<Number, Status>> + Send>>;

#[tonic::async_trait]
impl Streams for Service {
    async fn add(&self, req: Request<AddRequest>) -> Result<Response<Number>, Status> {
        let AddRequest { a, b } = req.into_inner();
        Ok(Response::new(Number {
            value: a + b,
            data: Vec::new(),
        }))
    }

    type CountStream = NumberStream;

    async fn count(
        &self,
        req: Request<CountRequest>,
    ) -> Result<Response<Self::CountStream>, Status> {
        let CountRequest {
            to,
            interval_ms,
            size,
        } = req.into_inner();
        if to == 0 {
            let value = self.produced.load(Ordering::SeqCst);
            let once = tokio_stream::once(Ok(Number {
                value,
                data: Vec::new(),
            }));
            return Ok(Response::new(Box::pin(once)));
        }
        // A small channel is the back-pressure: `send` waits while 4 numbers are
        // unread, and fails once the host has gone (cancelled or past its deadline),
        // which ends the producer.
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let produced = self.produced.clone();
        tokio::spawn(async move {
            for value in 1..=to {
                let data = vec![0; size as usize];
                if tx.send(Ok(Number { value, data })).await.is_err() {
                    return;
                }
                produced.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(u64::from(interval_ms))).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn total(&self, req: Request<Streaming<Number>>) -> Result<Response<Number>, Status> {
        let mut numbers = req.into_inner();
        let mut sum = 0;
        while let Some(number) = numbers.next().await {
            sum += number?.value;
        }
        Ok(Response::new(Number {
            value: sum,
            data: Vec::new(),
        }))
    }

    type RunningStream = NumberStream;

    async fn running(
        &self,
        req: Request<Streaming<Number>>,
    ) -> Result<Response<Self::RunningStream>, Status> {
        let mut sum = 0;
        let sums = req.into_inner().map(move |number| {
            sum += number?.value;
            Ok(Number {
                value: sum,
                data: Vec::new(),
            })
        });
        Ok(Response::new(Box::pin(sums)))
    }
}

fn plugin_main() -> ExitCode {
    rpcplugin::plugin_server()
        .handshake(COOKIE.0, COOKIE.1)
        .add_service(StreamsServer::new(Service::default()))
        .run()
}

// ---- the host ---------------------------------------------------------------

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn host_main() -> Result<(), BoxError> {
    let me = std::env::current_exe()?;
    let plugin = rpcplugin::plugin_client(me)
        .arg("plugin")
        .handshake(COOKIE.0, COOKIE.1)
        .start()
        .await?;
    let mut streams = rpcplugin::client::new_client!(StreamsClient, plugin);

    let sum = streams.add(AddRequest { a: 40, b: 2 }).await?.into_inner();
    println!("unary: 40 + 2 = {}", sum.value);

    let counted: Vec<i64> = streams
        .count(CountRequest {
            to: 5,
            interval_ms: 0,
            size: 0,
        })
        .await?
        .into_inner()
        .map(|n| n.map(|n| n.value))
        .collect::<Result<_, _>>()
        .await?;
    println!("server stream: {counted:?}");

    let numbers = tokio_stream::iter((1..=10).map(|value| Number {
        value,
        data: Vec::new(),
    }));
    let total = streams.total(numbers).await?.into_inner();
    println!("client stream: 1 + ... + 10 = {}", total.value);

    let numbers = tokio_stream::iter([5, 10, 20].map(|value| Number {
        value,
        data: Vec::new(),
    }));
    let running: Vec<i64> = streams
        .running(numbers)
        .await?
        .into_inner()
        .map(|n| n.map(|n| n.value))
        .collect::<Result<_, _>>()
        .await?;
    println!("bidi: running sums of 5, 10, 20: {running:?}");

    // Cancellation: read three numbers of a thousand, then drop the stream.
    let before = produced(&mut streams).await?;
    let mut stream = streams
        .count(CountRequest {
            to: 1000,
            interval_ms: 10,
            size: 0,
        })
        .await?
        .into_inner();
    for _ in 0..3 {
        stream.next().await.ok_or("three numbers")??;
    }
    drop(stream);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let made = produced(&mut streams).await? - before;
    println!("cancel: read 3 of 1000, dropped the stream; the plugin produced {made} and stopped");

    // A deadline on a whole stream, kept by the host: numbers 50 ms apart for
    // 300 ms, then the stream is dropped.
    let before = produced(&mut streams).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(300);
    let mut stream = streams
        .count(CountRequest {
            to: 1000,
            interval_ms: 50,
            size: 0,
        })
        .await?
        .into_inner();
    let mut received = 0;
    let ended = loop {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Err(_) => break "the host's deadline dropped it".to_owned(),
            Ok(Some(Ok(_))) => received += 1,
            Ok(Some(Err(status))) => break format!("{:?}", status.code()),
            Ok(None) => break "the stream ended".to_owned(),
        }
    };
    drop(stream);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let made = produced(&mut streams).await? - before;
    println!(
        "deadline: {received} numbers within 300 ms, then {ended}; the plugin produced {made} of 1000"
    );

    // Back-pressure: read 20 numbers slowly; see how far ahead the plugin got.
    let before = produced(&mut streams).await?;
    let mut stream = streams
        .count(CountRequest {
            to: 1000,
            interval_ms: 0,
            size: 64 * 1024,
        })
        .await?
        .into_inner();
    let mut ahead = 0;
    for read in 1..=20 {
        stream.next().await.ok_or("a number")??;
        tokio::time::sleep(Duration::from_millis(10)).await;
        ahead = ahead.max(produced(&mut streams).await? - before - read);
    }
    drop(stream);
    println!(
        "back-pressure: read 20 numbers of 64 KiB slowly; the producer was at most {ahead} ahead of 1000"
    );

    // Many calls at once: each a clone of the client, all on one connection.
    let started = Instant::now();
    let calls: Vec<_> = (0..200)
        .map(|i| {
            let mut streams = streams.clone();
            tokio::spawn(async move { streams.add(AddRequest { a: i, b: 1 }).await })
        })
        .collect();
    let mut ok = 0;
    for call in calls {
        call.await??;
        ok += 1;
    }
    println!(
        "concurrent: {ok} calls at once, all answered, in {} ms",
        started.elapsed().as_millis()
    );

    plugin.stop().await?;
    Ok(())
}

type Client = StreamsClient<rpcplugin::client::Channel>;

/// How many numbers the plugin's `Count` calls have produced so far.
async fn produced(streams: &mut Client) -> Result<i64, BoxError> {
    let mut reply = streams
        .count(CountRequest {
            to: 0,
            interval_ms: 0,
            size: 0,
        })
        .await?
        .into_inner();
    Ok(reply.next().await.ok_or("a count")??.value)
}

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("plugin") {
        return plugin_main();
    }
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
