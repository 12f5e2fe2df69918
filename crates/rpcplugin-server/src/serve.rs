//! Serving: binding, the built-in services, the handshake line, and the stop
//! sequence.

use std::future::Future;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use rpcplugin_core::{Error, ErrorKind, Result};
use rpcplugin_handshake::HandshakeLine;
use rpcplugin_proto::health::v1::health_server::HealthServer;
use rpcplugin_proto::plugin::grpc_controller_server::GrpcControllerServer;
use rpcplugin_proto::plugin::grpc_stdio_server::GrpcStdioServer;
use tokio::sync::{mpsc, watch};
use tonic::service::RoutesBuilder;

#[cfg(feature = "otel")]
use crate::TraceContextLayer;
use crate::prepare::Prepared;
use crate::{controller, health, incoming, mux, stdio};

/// Why the server stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StopReason {
    /// The host called `plugin.GRPCController/Shutdown`.
    ShutdownRpc,
    /// SIGTERM (or SIGINT when not ignored).
    Signal,
    /// The host process is gone (this process was re-parented).
    HostGone,
    /// The future given to [`Builder::serve_with_shutdown`](crate::Builder::serve_with_shutdown) completed.
    Requested,
}

impl Prepared {
    pub(crate) async fn run(
        self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> Result<StopReason> {
        let listener = Arc::new(self.transport.bind().await?);
        let endpoint = listener.endpoint().clone();
        self.broker.set_endpoint(endpoint.clone());
        tracing::debug!(%endpoint, network = %endpoint.network(), "plugin address");

        let (stop_tx, mut stop_rx) = mpsc::channel::<StopReason>(4);
        let (serving_tx, serving_rx) = watch::channel(true);

        let mut routes = RoutesBuilder::default();
        for add in self.services {
            add(self.limits, &mut routes);
        }
        routes.add_service(
            HealthServer::new(health::HealthService::new(self.service_names, serving_rx))
                .max_decoding_message_size(self.limits.max_receive_message_size),
        );
        routes.add_service(GrpcControllerServer::new(controller::Controller {
            stop: stop_tx.clone(),
        }));
        let stdio_hub = stdio::Hub::new();
        routes.add_service(GrpcStdioServer::new(stdio::StdioService {
            hub: stdio_hub.clone(),
        }));
        routes.add_service(self.broker.service());
        add_reflection(&mut routes, &self.reflection)?;

        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let server = http2_tuned(tonic::transport::Server::builder())
            .layer(request_layer())
            .add_routes(routes.routes())
            .serve_with_incoming_shutdown(
                match &self.multiplex {
                    None => futures_util::future::Either::Left(incoming::Incoming::new(
                        listener.clone(),
                        self.tls.as_ref().map(|t| t.config.clone()),
                    )),
                    Some(router) => futures_util::future::Either::Right(mux::main_incoming(
                        listener.clone(),
                        self.tls.as_ref().map(|t| t.config.clone()),
                        router.clone(),
                    )),
                },
                async {
                    let _ = shutdown_rx.await;
                },
            );
        // Boxed, not stack-pinned, so that dropping it below really ends it.
        let mut server = Box::pin(server);

        // The socket is listening, so the host's connect succeeds from now on; poll
        // the server once so it is accepting before the host reads the line.
        let mut line =
            HandshakeLine::new(self.app_version, endpoint).with_multiplex(self.multiplex.is_some());
        if let Some(tls) = &self.tls {
            line = line.with_server_cert(tls.announced.to_vec());
        }
        tokio::select! {
            biased;
            result = &mut server => return server_result(result).map(|_| StopReason::Requested),
            _ = std::future::ready(()) => {}
        }
        if self.debug {
            print_reattach(&line)?;
        } else {
            print_handshake(&line)?;
        }
        // Nothing but the handshake may reach the host's stdout pipe. A debug-mode
        // plugin runs in a person's terminal: its output stays there.
        let capture = (!self.debug).then(|| stdio::Capture::start(stdio_hub, self.capture_stderr));

        // A person runs a debug-mode plugin: Ctrl-C is for it, and its parent is a
        // shell whose exit means nothing.
        let stop_sources = spawn_stop_sources(
            stop_tx,
            self.ignore_sigint && !self.debug,
            !self.debug,
            signal,
        )?;
        let reason = tokio::select! {
            result = &mut server => {
                server_result(result)?;
                StopReason::Requested
            }
            reason = stop_rx.recv() => reason.unwrap_or(StopReason::Requested),
        };
        // Inside a caller's runtime the watcher would otherwise poll forever.
        stop_sources.abort();
        tracing::debug!(?reason, "plugin stopping");
        // Ends the StreamStdio calls, which would otherwise hold up the drain.
        if let Some(capture) = capture {
            capture.stop().await;
        }
        let _ = serving_tx.send(false);
        self.broker.close();
        let _ = shutdown_tx.send(());
        if tokio::time::timeout(self.drain_timeout, &mut server)
            .await
            .is_err()
        {
            tracing::warn!(
                timeout = ?self.drain_timeout,
                "in-flight calls did not finish in time; closing connections"
            );
        }
        drop(server);
        if let Some(router) = &self.multiplex {
            router.close();
        }
        // The last reference removes the socket (and its private directory).
        if let Ok(listener) = Arc::try_unwrap(listener)
            && let Err(err) = listener.close()
        {
            tracing::warn!(error = %err, "cannot remove the plugin socket");
        }
        Ok(reason)
    }
}

/// What every request goes through: the host's trace context (feature `otel`).
#[cfg(feature = "otel")]
fn request_layer() -> TraceContextLayer {
    TraceContextLayer
}

#[cfg(not(feature = "otel"))]
fn request_layer() -> tower_layer::Identity {
    tower_layer::Identity::new()
}

/// The largest HTTP/2 frame the host may send: 1 MiB instead of 16 KiB cuts the
/// per-frame work of large messages by 64; small messages fit one frame either way.
/// (What the plugin sends is sized by the host's setting, rpcplugin's is 1 MiB too.)
const HTTP2_MAX_FRAME_SIZE: u32 = 1 << 20;

/// The HTTP/2 settings every server of this crate advertises (main and brokered).
pub(crate) fn http2_tuned(builder: tonic::transport::Server) -> tonic::transport::Server {
    builder.max_frame_size(HTTP2_MAX_FRAME_SIZE)
}

fn server_result(result: std::result::Result<(), tonic::transport::Error>) -> Result<()> {
    result.map_err(|err| {
        Error::new(
            ErrorKind::Transport,
            "transport.serve",
            "the gRPC server failed",
        )
        .with_source(err)
    })
}

/// Debug mode: the reattach JSON on stdout (one line, flushed), and for the person
/// who started the plugin, how to use it on stderr.
fn print_reattach(line: &HandshakeLine) -> Result<()> {
    let mut config = rpcplugin_handshake::ReattachConfig::new(
        line.app_version,
        line.endpoint.clone(),
        std::process::id(),
    );
    if let Some(der) = &line.server_cert {
        config = config.with_server_cert(der.clone());
    }
    let json = config.to_json();
    eprintln!(
        "plugin serving in debug mode at {} (app protocol version {}); a host attaches with \
         this reattach information (printed on stdout):\n  {json}\nStop it with Ctrl-C or SIGTERM.",
        line.endpoint, line.app_version
    );
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{json}")
        .and_then(|()| stdout.flush())
        .map_err(|err| {
            Error::new(
                ErrorKind::Handshake,
                "handshake.write",
                "cannot write the reattach information to stdout",
            )
            .with_source(err)
        })
}

/// Writes the handshake line and flushes: go-plugin hosts read exactly one line.
fn print_handshake(line: &HandshakeLine) -> Result<()> {
    let text = line.encode();
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|err| {
            Error::new(
                ErrorKind::Handshake,
                "handshake.write",
                "cannot write the handshake line to stdout",
            )
            .with_source(err)
            .with_hint("the host closed the plugin's stdout; it probably gave up on the plugin")
        })
}

fn add_reflection(routes: &mut RoutesBuilder, extra: &[&'static [u8]]) -> Result<()> {
    let mut v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(rpcplugin_proto::FILE_DESCRIPTOR_SET);
    let mut v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(rpcplugin_proto::FILE_DESCRIPTOR_SET);
    for set in extra {
        v1 = v1.register_encoded_file_descriptor_set(set);
        v1alpha = v1alpha.register_encoded_file_descriptor_set(set);
    }
    let reflection_error = |err: tonic_reflection::server::Error| {
        Error::new(
            ErrorKind::Config,
            "config.reflection",
            "cannot build the gRPC reflection service",
        )
        .with_source(err)
        .with_hint("check the descriptor sets given to reflection_descriptors()")
    };
    routes.add_service(v1.build_v1().map_err(reflection_error)?);
    routes.add_service(v1alpha.build_v1alpha().map_err(reflection_error)?);
    Ok(())
}

/// SIGTERM, SIGINT (unless ignored), the host going away, and the caller's signal
/// all end in the same stop channel.
fn spawn_stop_sources(
    stop: mpsc::Sender<StopReason>,
    ignore_sigint: bool,
    watch_parent: bool,
    signal: impl Future<Output = ()> + Send + 'static,
) -> Result<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{SignalKind, signal as unix_signal};
    let signal_error = |err: std::io::Error| {
        Error::new(
            ErrorKind::Process,
            "process.signal",
            "cannot install signal handlers",
        )
        .with_source(err)
    };
    let mut term = unix_signal(SignalKind::terminate()).map_err(signal_error)?;
    let mut int = unix_signal(SignalKind::interrupt()).map_err(signal_error)?;
    let parent = std::os::unix::process::parent_id();
    Ok(tokio::spawn(async move {
        let mut interrupts = 0u32;
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        let mut signal = std::pin::pin!(signal);
        let reason = loop {
            tokio::select! {
                _ = term.recv() => break StopReason::Signal,
                _ = int.recv() => {
                    if !ignore_sigint {
                        break StopReason::Signal;
                    }
                    // A terminal's Ctrl-C reaches the whole process group; the host
                    // decides how its plugins stop (as go-plugin does).
                    interrupts += 1;
                    tracing::debug!(count = interrupts, "plugin received interrupt signal, ignoring");
                }
                _ = tick.tick() => {
                    // Re-parented: the host died without stopping us. Never on PID 1
                    // parents (a container's init started us on purpose).
                    if watch_parent && parent != 1 && std::os::unix::process::parent_id() != parent {
                        break StopReason::HostGone;
                    }
                }
                () = &mut signal => break StopReason::Requested,
            }
        };
        let _ = stop.send(reason).await;
    }))
}
