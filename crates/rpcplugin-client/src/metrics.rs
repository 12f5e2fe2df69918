//! A host's OpenTelemetry metrics (feature `otel`): plugin starts, restarts and
//! exits by reason, and the calls made through
//! [`PluginClient::call_metrics`](crate::PluginClient::call_metrics). Without the
//! feature, or without [`Builder::meter`](crate::Builder::meter), every method here
//! does nothing and nothing is allocated.

/// The host's instruments, if a meter was given.
#[derive(Debug, Clone, Default)]
pub(crate) struct Metrics {
    #[cfg(feature = "otel")]
    pub(crate) inner: Option<std::sync::Arc<Instruments>>,
}

#[cfg(feature = "otel")]
#[derive(Debug)]
pub(crate) struct Instruments {
    starts: opentelemetry::metrics::Counter<u64>,
    restarts: opentelemetry::metrics::Counter<u64>,
    exits: opentelemetry::metrics::Counter<u64>,
    pub(crate) rpc: rpcplugin_layers::RpcMetrics,
}

impl Metrics {
    /// The instruments, from `meter`.
    #[cfg(feature = "otel")]
    pub(crate) fn new(meter: &opentelemetry::metrics::Meter) -> Self {
        let counter = |name: &'static str, description: &'static str| {
            meter
                .u64_counter(name)
                .with_unit("{plugin}")
                .with_description(description)
                .build()
        };
        Self {
            inner: Some(std::sync::Arc::new(Instruments {
                starts: counter(
                    "rpcplugin.plugin.starts",
                    "Plugin launches, by outcome (ok, or the error code)",
                ),
                restarts: counter("rpcplugin.plugin.restarts", "Restarts by a supervisor"),
                exits: counter(
                    "rpcplugin.plugin.exits",
                    "Plugin processes that ended, by how (shutdown_rpc, sigterm, sigkill, exited, failed)",
                ),
                rpc: rpcplugin_layers::RpcMetrics::client(meter),
            })),
        }
    }

    /// One launch ended: `outcome` is `ok` or the error's code.
    pub(crate) fn start(&self, plugin: &str, outcome: &str) {
        #[cfg(feature = "otel")]
        if let Some(m) = &self.inner {
            use opentelemetry::KeyValue;
            m.starts.add(
                1,
                &[
                    KeyValue::new("plugin", plugin.to_owned()),
                    KeyValue::new("outcome", outcome.to_owned()),
                ],
            );
        }
        #[cfg(not(feature = "otel"))]
        let _ = (plugin, outcome);
    }

    /// A supervisor restarts the plugin.
    pub(crate) fn restart(&self, plugin: &str) {
        #[cfg(feature = "otel")]
        if let Some(m) = &self.inner {
            m.restarts.add(
                1,
                &[opentelemetry::KeyValue::new("plugin", plugin.to_owned())],
            );
        }
        #[cfg(not(feature = "otel"))]
        let _ = plugin;
    }

    /// The plugin's process ended, `reason` saying how.
    pub(crate) fn exit(&self, plugin: &str, reason: &'static str) {
        #[cfg(feature = "otel")]
        if let Some(m) = &self.inner {
            use opentelemetry::KeyValue;
            m.exits.add(
                1,
                &[
                    KeyValue::new("plugin", plugin.to_owned()),
                    KeyValue::new("reason", reason),
                ],
            );
        }
        #[cfg(not(feature = "otel"))]
        let _ = (plugin, reason);
    }
}
