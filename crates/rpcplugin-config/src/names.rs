//! Every name a setting may be given, besides its key: pyvider-rpcplugin's
//! variables that mean one of rpcplugin's settings under another name or unit
//! ([`ALIASES`]), and those that mean nothing here ([`UNSUPPORTED`]), each with the
//! reason and what to do instead. A pyvider user's environment therefore works as
//! it is, and nothing in it is silently ignored.

/// The unit of a bare number in an aliased variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// The value is taken as it is (the key's own parser reads it).
    AsIs,
    /// A bare number is milliseconds (`PLUGIN_GRPC_KEEPALIVE_TIME_MS=30000` is 30 s);
    /// a value with a unit (`30s`) keeps it.
    Milliseconds,
}

/// Another name for a setting: the variable (or config dict key) pyvider-rpcplugin
/// reads, the key it sets here, and the unit of a bare number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Alias {
    /// The variable, `PLUGIN_` included.
    pub variable: &'static str,
    /// The setting's key ([`KEYS`](crate::KEYS)).
    pub key: &'static str,
    /// How a bare number reads.
    pub unit: Unit,
}

/// pyvider-rpcplugin's names for rpcplugin's settings. When a setting is given
/// under its own variable and an alias, or under two aliases, the first in this
/// order wins: its own variable, then the aliases as listed; the others are named
/// as ignored.
pub const ALIASES: &[Alias] = &[
    Alias {
        variable: "PLUGIN_GRPC_KEEPALIVE_TIME_MS",
        key: "grpc_keepalive_time",
        unit: Unit::Milliseconds,
    },
    Alias {
        variable: "PLUGIN_GRPC_KEEPALIVE_TIMEOUT_MS",
        key: "grpc_keepalive_timeout",
        unit: Unit::Milliseconds,
    },
    Alias {
        variable: "PLUGIN_CLIENT_INITIAL_BACKOFF_MS",
        key: "client_initial_backoff",
        unit: Unit::Milliseconds,
    },
    Alias {
        variable: "PLUGIN_CLIENT_MAX_BACKOFF_MS",
        key: "client_max_backoff",
        unit: Unit::Milliseconds,
    },
    Alias {
        variable: "PLUGIN_CLIENT_RETRY_JITTER_MS",
        key: "client_retry_jitter",
        unit: Unit::Milliseconds,
    },
    Alias {
        variable: "PLUGIN_CLIENT_RETRY_TOTAL_TIMEOUT_S",
        key: "client_retry_total_timeout",
        unit: Unit::AsIs,
    },
    Alias {
        variable: "PLUGIN_GRPC_GRACE_PERIOD",
        key: "shutdown_grace",
        unit: Unit::AsIs,
    },
    Alias {
        variable: "PLUGIN_TIMEOUT_GRACEFUL_SHUTDOWN",
        key: "shutdown_grace",
        unit: Unit::AsIs,
    },
    Alias {
        variable: "PLUGIN_CLIENT_CERT_FILE",
        key: "client_cert",
        unit: Unit::AsIs,
    },
    Alias {
        variable: "PLUGIN_CLIENT_KEY_FILE",
        key: "client_key",
        unit: Unit::AsIs,
    },
    // pyvider-rpcplugin's name has no prefix.
    Alias {
        variable: "SUPPORTED_PROTOCOL_VERSIONS",
        key: "supported_protocol_versions",
        unit: Unit::AsIs,
    },
];

/// A pyvider-rpcplugin variable with no meaning in rpcplugin: why, and what to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsupported {
    /// The variable, `PLUGIN_` included.
    pub variable: &'static str,
    /// Why rpcplugin does not read it, and what to use instead.
    pub reason: &'static str,
}

/// pyvider-rpcplugin's variables that rpcplugin does not read, each named once
/// with its reason when set.
pub const UNSUPPORTED: &[Unsupported] = &[
    Unsupported {
        variable: "PLUGIN_PROTOCOL_VERSION",
        reason: "pyvider-rpcplugin does not read it either; a host offers versions in code (.protocol_versions) and a plugin serves those given in code, limited by SUPPORTED_PROTOCOL_VERSIONS",
    },
    Unsupported {
        variable: "PLUGIN_SERVER_READY_TIMEOUT",
        reason: "an rpcplugin plugin announces its address only once it listens, so nothing waits for it to become ready; a host bounds the start with PLUGIN_HANDSHAKE_TIMEOUT",
    },
    Unsupported {
        variable: "PLUGIN_SUPPORTED_TRANSPORTS",
        reason: "pyvider-rpcplugin does not read it either; use PLUGIN_SERVER_TRANSPORTS (plugin) or PLUGIN_CLIENT_TRANSPORTS (host)",
    },
    Unsupported {
        variable: "PLUGIN_TRANSPORT_BUFFER_SIZE",
        reason: "tonic and hyper size their own I/O buffers and expose no setting; message sizes are PLUGIN_GRPC_MAX_RECEIVE_MESSAGE_SIZE and PLUGIN_GRPC_MAX_SEND_MESSAGE_SIZE",
    },
    Unsupported {
        variable: "PLUGIN_BUFFER_SIZE",
        reason: "tonic and hyper size their own I/O buffers and expose no setting; message sizes are PLUGIN_GRPC_MAX_RECEIVE_MESSAGE_SIZE and PLUGIN_GRPC_MAX_SEND_MESSAGE_SIZE",
    },
    Unsupported {
        variable: "PLUGIN_CHUNK_SIZE",
        reason: "the handshake line is read whole, whatever its length; there is no chunk to size",
    },
    Unsupported {
        variable: "PLUGIN_MTLS_CERT_DIR",
        reason: "rpcplugin never writes certificates to disk: AutoMTLS certificates live in memory for one start; fixed ones are PLUGIN_SERVER_CERT/_KEY (plugin) and PLUGIN_CLIENT_CERT/_KEY (host)",
    },
    Unsupported {
        variable: "PLUGIN_INSECURE",
        reason: "rpcplugin never skips certificate verification; for plaintext set PLUGIN_AUTO_MTLS=false on the host",
    },
    Unsupported {
        variable: "PLUGIN_CLIENT_RETRY_DELAY",
        reason: "pyvider-rpcplugin does not read it either; the first retry waits PLUGIN_CLIENT_INITIAL_BACKOFF_MS",
    },
    Unsupported {
        variable: "PLUGIN_CLIENT_MAX_RETRY_DELAY",
        reason: "pyvider-rpcplugin does not read it either; the longest wait between retries is PLUGIN_CLIENT_MAX_BACKOFF_MS",
    },
    Unsupported {
        variable: "PLUGIN_UI_ENABLED",
        reason: "a pyvider-rpcplugin terminal UI switch; rpcplugin logs through tracing (PLUGIN_LOG_LEVEL or RUST_LOG)",
    },
    Unsupported {
        variable: "PLUGIN_SHOW_EMOJI_MATRIX",
        reason: "a pyvider-rpcplugin terminal UI switch; rpcplugin logs through tracing (PLUGIN_LOG_LEVEL or RUST_LOG)",
    },
    Unsupported {
        variable: "PLUGIN_EXIT_ON_STOP",
        reason: "an rpcplugin plugin's run() always ends the process when it stops (main returns its ExitCode); serve() returns instead, for a program that goes on",
    },
];

/// The alias named `variable`, if any.
pub(crate) fn alias(variable: &str) -> Option<&'static Alias> {
    ALIASES.iter().find(|a| a.variable == variable)
}

/// The unsupported variable named `variable`, if any.
pub(crate) fn unsupported(variable: &str) -> Option<&'static Unsupported> {
    UNSUPPORTED.iter().find(|u| u.variable == variable)
}

/// The value an alias gives its key: a bare number in milliseconds gets its unit.
pub(crate) fn convert(unit: Unit, value: &str) -> String {
    let trimmed = value.trim();
    match unit {
        Unit::Milliseconds
            if !trimmed.is_empty() && trimmed.chars().all(|c| c.is_ascii_digit() || c == '.') =>
        {
            format!("{trimmed}ms")
        }
        _ => value.to_owned(),
    }
}
