//! Serving, as phases after `prepare`: bind, build the routes (the caller's
//! services and the built-in ones), start the gRPC server, announce it, wait for a
//! stop, drain. From the bind on, the listener owns the socket: any failure drops
//! it, which removes the socket (and its private directory).

use rpcplugin_core::Code;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use rpcplugin_core::{Error, Result};
use rpcplugin_proto::health::v1::health_server::HealthServer;
use rpcplugin_proto::plugin::grpc_controller_server::GrpcControllerServer;
use rpcplugin_proto::plugin::grpc_stdio_server::GrpcStdioServer;
use rpcplugin_transport::rustls::ServerConfig;
use rpcplugin_transport::{Listener, MuxRouter};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::StreamExt;
use tonic::service::RoutesBuilder;

#[cfg(feature = "otel")]
use crate::TraceContextLayer;
use crate::prepare::Prepared;
use crate::stop::spawn_stop_sources;
use crate::{PluginHandle, ServingInfo, StopReason, controller, health, mux, stdio};

/// The running gRPC server. Boxed, not stack-pinned, so that dropping it really
/// ends it.
type ServerFuture =
    Pin<Box<dyn Future<Output = std::result::Result<(), tonic::transport::Error>> + Send>>;

impl Prepared {
    /// Serves until a stop, then drains; returns why it stopped.
    pub(crate) async fn run(
        mut self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> Result<StopReason> {
        let in_process = self.in_process.is_some();
        let listener = Arc::new(self.transport.bind().await?);
        let endpoint = listener.endpoint().clone();
        self.broker.set_endpoint(endpoint.clone());
        tracing::debug!(%endpoint, network = %endpoint.network(), "plugin address");

        let (stop_tx, mut stop_rx) = mpsc::channel::<StopReason>(4);
        let stdio_hub = stdio::Hub::new();
        let routes = self.routes(stop_tx.clone(), stdio_hub.clone())?;
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let mut server = grpc_server(
            routes,
            listener.clone(),
            self.tls.as_ref().map(|t| t.config.clone()),
            self.multiplex.clone(),
            self.server_settings,
            (&self.handle, &self.metrics),
            shutdown_rx,
        );

        // The socket is listening, so the host's connect succeeds from now on; poll
        // the server once so it is accepting before the host reads the line.
        let line = self.handshake_line(endpoint.clone());
        let info = ServingInfo {
            network: endpoint.network(),
            endpoint,
            protocol_version: self.app_version,
            tls: self.tls.is_some(),
            multiplexed: self.multiplex.is_some(),
        };
        tokio::select! {
            biased;
            result = &mut server => return server_result(result).map(|_| StopReason::Requested),
            _ = std::future::ready(()) => {}
        }
        // In-process, the host's program owns stdout, stderr and the signals.
        let stop_sources = if let Some(announce) = self.in_process.take() {
            announce(line);
            stop_on(stop_tx, signal)
        } else {
            // The handlers go in before the handshake line goes out: a host may
            // send SIGTERM the moment it has read the line, and a signal with no
            // handler yet would kill the plugin by its default action, leaving
            // its socket behind.
            // A person runs a debug-mode plugin: Ctrl-C is for it, and its parent
            // is a shell whose exit means nothing.
            let sources = spawn_stop_sources(
                stop_tx,
                self.ignore_sigint && !self.debug,
                !self.debug,
                self.shutdown_file.clone(),
                signal,
            )?;
            if let Err(e) = self.announce(&line) {
                sources.abort();
                return Err(e);
            }
            sources
        };
        self.handle.serving(info);
        // Nothing but the handshake may reach the host's stdout pipe. A debug-mode
        // plugin runs in a person's terminal: its output stays there; so does an
        // in-process plugin's, in its host's.
        let capture = (!self.debug && !in_process)
            .then(|| stdio::Capture::start(stdio_hub, self.capture_stderr));
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
        self.drain(capture, shutdown_tx, server, listener).await;
        Ok(reason)
    }

    /// The caller's services (with their limits) and the built-in ones: health,
    /// controller, stdio, broker, reflection.
    fn routes(
        &mut self,
        stop: mpsc::Sender<StopReason>,
        stdio_hub: Arc<stdio::Hub>,
    ) -> Result<RoutesBuilder> {
        let mut routes = RoutesBuilder::default();
        for add in std::mem::take(&mut self.services) {
            add(self.limits, &self.layers, &mut routes);
        }
        let names = std::mem::take(&mut self.service_names);
        if self.health_service {
            routes.add_service(
                HealthServer::new(health::HealthService::new(names, &self.handle))
                    .max_decoding_message_size(self.limits.max_receive_message_size),
            );
        }
        routes.add_service(GrpcControllerServer::new(controller::Controller { stop }));
        routes.add_service(GrpcStdioServer::new(stdio::StdioService { hub: stdio_hub }));
        routes.add_service(self.broker.service());
        add_reflection(&mut routes, &self.reflection)?;
        Ok(routes)
    }

    /// Drain: ends the stdio streams, reports NOT_SERVING, closes the broker, lets
    /// in-flight calls finish within the drain timeout, then closes connections
    /// and removes the socket.
    // By value: a `&self` held across its awaits would make the serve future
    // need `Prepared: Sync`, which the boxed services are not; owned, it stays
    // `Send`, so a caller can spawn it (rpcplugin::testing does).
    async fn drain(
        self,
        capture: Option<stdio::Capture>,
        shutdown: oneshot::Sender<()>,
        mut server: ServerFuture,
        listener: Arc<Listener>,
    ) {
        // Ends the StreamStdio calls, which would otherwise hold up the drain.
        if let Some(capture) = capture {
            capture.stop().await;
        }
        self.handle.stopping();
        self.broker.close();
        let _ = shutdown.send(());
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
    }
}

/// In-process: only the caller's signal stops the plugin (besides Shutdown).
fn stop_on(
    stop: mpsc::Sender<StopReason>,
    signal: impl Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        signal.await;
        let _ = stop.send(StopReason::Requested).await;
    })
}

/// The gRPC server over the listener's connections (TLS when served; streams of
/// the yamux session when multiplexed), until `shutdown`.
fn grpc_server(
    routes: RoutesBuilder,
    listener: Arc<Listener>,
    tls: Option<Arc<ServerConfig>>,
    multiplex: Option<Arc<MuxRouter>>,
    settings: crate::layers::ServerSettings,
    // What watches the server: the handle's counters, and the metrics.
    (handle, metrics): (&PluginHandle, &crate::metrics::Metrics),
    shutdown: oneshot::Receiver<()>,
) -> ServerFuture {
    let incoming = match multiplex {
        None => rpcplugin_broker::Incoming::new(listener, tls, rpcplugin_broker::Role::Plugin),
        Some(router) => mux::main_incoming(listener, tls, router),
    };
    let tracker = handle.clone();
    let connections = metrics.clone();
    let incoming =
        incoming.map(move |accepted| accepted.map(|c| tracker.track(c, connections.clone())));
    // Only a plugin that took a handle counts its calls: nothing per call otherwise.
    let call_stats = handle
        .call_stats()
        .map(|stats| stats.layer_skipping(BUILT_IN_SERVICES));
    Box::pin(
        settings
            .apply(http2_tuned(tonic::transport::Server::builder()))
            .layer(request_layer())
            // Outside the panic layer: a panicking call counts as a failed one.
            .layer(tower::util::option_layer(call_stats))
            .layer(tower::util::option_layer(metrics.layer()))
            .layer(crate::panic::CatchPanicLayer)
            .add_routes(routes.routes())
            .serve_with_incoming_shutdown(incoming, async {
                let _ = shutdown.await;
            }),
    )
}

/// The paths of the services every plugin serves, which a status does not count
/// as the plugin's own calls.
pub(crate) const BUILT_IN_SERVICES: &[&str] = &[
    "/grpc.health.v1.Health/",
    "/plugin.GRPCController/",
    "/plugin.GRPCStdio/",
    "/plugin.GRPCBroker/",
    "/grpc.reflection.",
];

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
pub(crate) const HTTP2_MAX_FRAME_SIZE: u32 = 1 << 20;

/// The HTTP/2 settings every server of this crate advertises (main and brokered).
pub(crate) fn http2_tuned(builder: tonic::transport::Server) -> tonic::transport::Server {
    builder.max_frame_size(HTTP2_MAX_FRAME_SIZE)
}

fn server_result(result: std::result::Result<(), tonic::transport::Error>) -> Result<()> {
    result
        .map_err(|err| Error::new(Code::TransportServe, "the gRPC server failed").with_source(err))
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
            Code::ConfigReflection,
            "cannot build the gRPC reflection service",
        )
        .with_source(err)
        .with_hint("check the descriptor sets given to reflection_descriptors()")
    };
    routes.add_service(v1.build_v1().map_err(reflection_error)?);
    routes.add_service(v1alpha.build_v1alpha().map_err(reflection_error)?);
    Ok(())
}
