//! A plugin's OpenTelemetry metrics (feature `otel`): its own calls, by method and
//! status, the calls in flight, and the host's connections. Without the feature,
//! or without [`Builder::meter`](crate::Builder::meter), every method here does
//! nothing and nothing is added to the call path.

/// The plugin's instruments, if a meter was given.
#[derive(Debug, Clone, Default)]
pub(crate) struct Metrics {
    #[cfg(feature = "otel")]
    inner: Option<std::sync::Arc<Instruments>>,
}

#[cfg(feature = "otel")]
#[derive(Debug)]
struct Instruments {
    rpc: rpcplugin_layers::RpcMetrics,
    open: opentelemetry::metrics::UpDownCounter<i64>,
    accepted: opentelemetry::metrics::Counter<u64>,
}

impl Metrics {
    /// The instruments, from `meter`. The built-in services (health, controller,
    /// stdio, broker, reflection) are not measured: they are the protocol's, not
    /// the plugin's.
    #[cfg(feature = "otel")]
    pub(crate) fn new(meter: &opentelemetry::metrics::Meter) -> Self {
        Self {
            inner: Some(std::sync::Arc::new(Instruments {
                rpc: rpcplugin_layers::RpcMetrics::server_skipping(
                    meter,
                    crate::serve::BUILT_IN_SERVICES,
                ),
                open: meter
                    .i64_up_down_counter("rpcplugin.server.connections")
                    .with_unit("{connection}")
                    .with_description("Open connections from the host")
                    .build(),
                accepted: meter
                    .u64_counter("rpcplugin.server.connections.accepted")
                    .with_unit("{connection}")
                    .with_description("Connections accepted from the host")
                    .build(),
            })),
        }
    }

    /// The layer measuring calls, when measuring.
    #[cfg(feature = "otel")]
    pub(crate) fn layer(&self) -> Option<rpcplugin_layers::RpcMetricsLayer> {
        self.inner.as_ref().map(|m| m.rpc.layer())
    }

    /// No metrics without the feature: a layer that is never there.
    #[cfg(not(feature = "otel"))]
    pub(crate) fn layer(&self) -> Option<tower_layer::Identity> {
        None
    }

    /// A connection from the host was accepted.
    pub(crate) fn opened(&self) {
        #[cfg(feature = "otel")]
        if let Some(m) = &self.inner {
            m.open.add(1, &[]);
            m.accepted.add(1, &[]);
        }
    }

    /// A connection from the host closed.
    pub(crate) fn closed(&self) {
        #[cfg(feature = "otel")]
        if let Some(m) = &self.inner {
            m.open.add(-1, &[]);
        }
    }
}
