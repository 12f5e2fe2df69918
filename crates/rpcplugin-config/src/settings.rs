//! The typed settings and how they are merged.

use crate::{ConfigValue, Environment, Loaded, NoticeKind, Origin, Overlay, SandboxMode, de};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use rpcplugin_core::Code;
use rpcplugin_core::{Error, Network, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Every setting's environment variable is this prefix plus its name in capitals.
pub const ENV_PREFIX: &str = "PLUGIN_";

/// A plugin server's default message limit in each direction: 256 MiB, the limit
/// terraform-plugin-go and pyvider-rpcplugin use (grpc-go's server default of 4 MiB
/// is too small for real Terraform states).
pub const DEFAULT_PLUGIN_MAX_MESSAGE_SIZE: usize = 256 << 20;

/// A host's default message limit in each direction: `i32::MAX`, what go-plugin
/// hosts use, so a host never refuses a reply its plugin was allowed to send.
pub const DEFAULT_HOST_MAX_MESSAGE_SIZE: usize = i32::MAX as usize;

/// The tunables of a host or a plugin.
///
/// Merged from, lowest first: [`Settings::default`], then `PLUGIN_*` environment
/// variables (the field name in capitals: `handshake_timeout` is
/// `PLUGIN_HANDSHAKE_TIMEOUT`); the builders of the server and client crates then
/// apply values set in code on top.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Settings {
    /// Overrides the magic cookie's variable name set in code
    /// (`PLUGIN_MAGIC_COOKIE_KEY`, as pyvider-rpcplugin names it).
    pub magic_cookie_key: Option<String>,
    /// Overrides the magic cookie's value (`PLUGIN_MAGIC_COOKIE_VALUE`).
    pub magic_cookie_value: Option<String>,
    /// Plugin side: the transports it may serve on, preferred first
    /// (`PLUGIN_SERVER_TRANSPORTS`). Unset means automatic: Unix, except for hosts
    /// that send no `PLUGIN_PROTOCOL_VERSIONS` (see the server crate's docs).
    #[serde(deserialize_with = "opt_networks", serialize_with = "ser_opt_networks")]
    pub server_transports: Option<Vec<Network>>,
    /// Host side: the transports it accepts (`PLUGIN_CLIENT_TRANSPORTS`, default `unix,tcp`).
    #[serde(deserialize_with = "de::networks", serialize_with = "ser_networks")]
    pub client_transports: Vec<Network>,
    /// Host side: how long to wait for the handshake line (`PLUGIN_HANDSHAKE_TIMEOUT`,
    /// seconds or with a unit; default 30 s).
    #[serde(with = "duration_serde")]
    pub handshake_timeout: Duration,
    /// Host side: how long to wait for a plugin to exit after each step of the stop
    /// sequence (Shutdown RPC, then SIGTERM) before the next (`PLUGIN_SHUTDOWN_GRACE`,
    /// default 2 s, go-plugin's fixed value).
    #[serde(with = "duration_serde")]
    pub shutdown_grace: Duration,
    /// Largest message accepted (`PLUGIN_GRPC_MAX_RECEIVE_MESSAGE_SIZE`); `None` means the
    /// side's default ([`DEFAULT_PLUGIN_MAX_MESSAGE_SIZE`] or [`DEFAULT_HOST_MAX_MESSAGE_SIZE`]).
    /// On a host it applies to clients made with `rpcplugin::client::new_client!`.
    #[serde(deserialize_with = "opt_size")]
    pub grpc_max_receive_message_size: Option<usize>,
    /// Largest message sent (`PLUGIN_GRPC_MAX_SEND_MESSAGE_SIZE`); `None` as above.
    #[serde(deserialize_with = "opt_size")]
    pub grpc_max_send_message_size: Option<usize>,
    /// Plugin side: ignore SIGINT (`PLUGIN_IGNORE_SIGINT`, default true). A terminal's
    /// Ctrl-C reaches every process in the foreground group, and a go-plugin host
    /// (Terraform) decides itself how its plugins stop, as go-plugin does.
    #[serde(deserialize_with = "de::boolean")]
    pub ignore_sigint: bool,
    /// AutoMTLS (`PLUGIN_AUTO_MTLS`, default true). Host side: make a throw-away
    /// certificate, send it in `PLUGIN_CLIENT_CERT` and require TLS with the
    /// certificate the plugin announces. Plugin side: serve mutual TLS when the host
    /// sends `PLUGIN_CLIENT_CERT`; false serves plaintext (an rpcplugin host then
    /// refuses to connect rather than downgrade).
    #[serde(deserialize_with = "de::boolean")]
    pub auto_mtls: bool,
    /// Plugin side: its own certificate (chain) instead of a generated one
    /// (`PLUGIN_SERVER_CERT`: a path, a `file://` URI or inline PEM). Needs
    /// `server_key`, and a way to check hosts: `client_root_certs`, or AutoMTLS.
    pub server_cert: Option<String>,
    /// Plugin side: the private key of `server_cert` (`PLUGIN_SERVER_KEY`).
    pub server_key: Option<String>,
    /// Plugin side: the CA certificates a host's certificate must chain to
    /// (`PLUGIN_CLIENT_ROOT_CERTS`). Without it a plugin with TLS trusts exactly the
    /// certificate its host sent in `PLUGIN_CLIENT_CERT`.
    pub client_root_certs: Option<String>,
    /// Host side: its own certificate instead of a generated one
    /// (`PLUGIN_CLIENT_CERT` in the host's environment, used only together with
    /// `PLUGIN_CLIENT_KEY`: a plugin's `PLUGIN_CLIENT_CERT` is its host's certificate).
    pub client_cert: Option<String>,
    /// Host side: the private key of `client_cert` (`PLUGIN_CLIENT_KEY`; never passed
    /// on to plugins).
    pub client_key: Option<String>,
    /// Host side: the CA certificates a plugin's certificate must chain to
    /// (`PLUGIN_SERVER_ROOT_CERTS`). Without it the host trusts exactly the
    /// certificate the plugin announced in its handshake line.
    pub server_root_certs: Option<String>,
    /// Host side: the directory in which the host makes each plugin's private
    /// socket directory (`PLUGIN_UNIX_SOCKET_DIR`, default the temp dir). Must exist.
    pub unix_socket_dir: Option<std::path::PathBuf>,
    /// Host side: a group (name or gid) that may use the plugins' sockets
    /// (`PLUGIN_UNIX_SOCKET_GROUP`): their directories become 0770 and the sockets 0660.
    pub unix_socket_group: Option<String>,
    /// Host side: the lowest TCP port a plugin may listen on (`PLUGIN_MIN_PORT`;
    /// with `max_port`; unset lets the OS choose, go-plugin hosts send 10000).
    #[serde(deserialize_with = "opt_port")]
    pub min_port: Option<u16>,
    /// Host side: the highest TCP port a plugin may listen on (`PLUGIN_MAX_PORT`;
    /// go-plugin hosts send 25000).
    #[serde(deserialize_with = "opt_port")]
    pub max_port: Option<u16>,
    // The sandbox (issue 18): one block, parsed in crate::sandbox.
    /// Host side: confine the plugins it starts (`PLUGIN_SANDBOX`: `off`, `on` or
    /// `best-effort`; default off): Landlock file-system and TCP rules, no new
    /// privileges and a seccomp deny-list, applied before the plugin runs. With `on`
    /// a kernel that lacks a feature makes the start fail; `best-effort` warns and
    /// runs the plugin with what the kernel offers. A builder's `.sandbox(..)` wins.
    pub sandbox: SandboxMode,
    /// Host side: what a confined plugin may read besides its executable, the system
    /// libraries and its socket directory (`PLUGIN_SANDBOX_READ_PATHS`, paths
    /// separated by `:` like `PATH`; a directory covers everything beneath it).
    #[serde(deserialize_with = "crate::sandbox::path_list")]
    pub sandbox_read_paths: Vec<PathBuf>,
    /// Host side: what a confined plugin may read, write, create and remove
    /// (`PLUGIN_SANDBOX_WRITE_PATHS`, separated by `:`).
    #[serde(deserialize_with = "crate::sandbox::path_list")]
    pub sandbox_write_paths: Vec<PathBuf>,
    /// Host side: programs (or directories of them) a confined plugin may run
    /// besides itself (`PLUGIN_SANDBOX_EXEC_PATHS`, separated by `:`).
    #[serde(deserialize_with = "crate::sandbox::path_list")]
    pub sandbox_exec_paths: Vec<PathBuf>,
    /// Host side: TCP ports a confined plugin may connect to
    /// (`PLUGIN_SANDBOX_TCP_CONNECT`, separated by `,`; default none).
    #[serde(deserialize_with = "crate::sandbox::port_list")]
    pub sandbox_tcp_connect: Vec<u16>,
    /// Host side: with the sandbox on, also deny system calls a plugin never needs
    /// (ptrace, mount, kexec, module loading, bpf...) with a seccomp filter
    /// (`PLUGIN_SANDBOX_SECCOMP`, default true).
    #[serde(deserialize_with = "de::boolean")]
    pub sandbox_seccomp: bool,
    /// Host side: how long connecting to the announced address may take, TLS
    /// included (`PLUGIN_CONNECTION_TIMEOUT`, default 5 s).
    #[serde(with = "duration_serde")]
    pub connection_timeout: Duration,
    /// Host side: send an HTTP/2 keepalive PING after this much idle time
    /// (`PLUGIN_GRPC_KEEPALIVE_TIME`; unset: no keepalive, the connection is local).
    #[serde(with = "opt_duration_serde")]
    pub grpc_keepalive_time: Option<Duration>,
    /// Host side: how long a keepalive PING may go unanswered before the connection
    /// counts as dead (`PLUGIN_GRPC_KEEPALIVE_TIMEOUT`, default 20 s).
    #[serde(with = "duration_serde")]
    pub grpc_keepalive_timeout: Duration,
    /// Plugin side: the log filter of `rpcplugin_server::logging::init` when
    /// `RUST_LOG` is unset (`PLUGIN_LOG_LEVEL`: `info`, `debug`, or a tracing
    /// filter such as `info,my_plugin=debug`; default `info`).
    pub log_level: Option<String>,
    /// Plugin side: limit the rate of calls to the plugin's own services with a token
    /// bucket (`PLUGIN_RATE_LIMIT_ENABLED`, default false, as pyvider-rpcplugin); a
    /// call over the limit fails at once with `RESOURCE_EXHAUSTED`. Health,
    /// controller, stdio and broker calls are never limited.
    #[serde(deserialize_with = "de::boolean")]
    pub rate_limit_enabled: bool,
    /// Plugin side: the rate limit's sustained calls per second
    /// (`PLUGIN_RATE_LIMIT_REQUESTS_PER_SECOND`, default 100).
    #[serde(deserialize_with = "de::positive_number")]
    pub rate_limit_requests_per_second: f64,
    /// Plugin side: how many calls the rate limit lets through at once after a quiet
    /// period (`PLUGIN_RATE_LIMIT_BURST_CAPACITY`, default 200).
    #[serde(deserialize_with = "de::positive_count")]
    pub rate_limit_burst_capacity: u32,
    /// Both sides: the go-plugin core protocol version (`PLUGIN_CORE_VERSION`). There
    /// is only one, 1, which go-plugin hard-codes; any other value is refused.
    #[serde(deserialize_with = "de::core_version")]
    pub core_version: u32,
    /// Plugin side: the app protocol versions it may serve
    /// (`SUPPORTED_PROTOCOL_VERSIONS`, pyvider-rpcplugin's name, without the prefix;
    /// `PLUGIN_SUPPORTED_PROTOCOL_VERSIONS` works too): of the versions given in code,
    /// only these are served. Unset serves them all.
    #[serde(deserialize_with = "opt_versions")]
    pub supported_protocol_versions: Option<Vec<u32>>,
    /// Host side: how long a started plugin may take to answer its first health
    /// check once connected (`PLUGIN_CHANNEL_READY_TIMEOUT`, default 10 s).
    #[serde(with = "duration_serde")]
    pub channel_ready_timeout: Duration,
    /// Both sides: how many days a generated (AutoMTLS) certificate is valid
    /// (`PLUGIN_CERT_VALIDITY_DAYS`, default 30; go-plugin's never expire, but each
    /// lives for one start).
    #[serde(deserialize_with = "de::positive_count")]
    pub cert_validity_days: u32,
    /// Both sides: CA certificates the peer's certificate must chain to
    /// (`PLUGIN_CA_CERT`): `client_root_certs` on a plugin and `server_root_certs` on
    /// a host, where those are unset.
    pub ca_cert: Option<String>,
    /// Plugin side: the address its TCP listener binds (`PLUGIN_SERVER_HOST`;
    /// loopback only: `127.0.0.1`, `::1`, `localhost`; default `127.0.0.1`).
    pub server_host: Option<String>,
    /// Plugin side: a fixed TCP port (`PLUGIN_SERVER_PORT`; unset or 0 takes one in
    /// the host's range, or any).
    #[serde(deserialize_with = "opt_port_or_zero")]
    pub server_port: Option<u16>,
    /// Plugin side: a fixed Unix socket path (`PLUGIN_SERVER_UNIX_SOCKET_PATH`)
    /// instead of one in a private directory; a stale socket there is replaced, a
    /// live one is an error.
    pub server_unix_socket_path: Option<PathBuf>,
    /// Plugin side: a file whose appearance stops the plugin
    /// (`PLUGIN_SHUTDOWN_FILE_PATH`): looked for every second, removed, and the
    /// plugin stops as on SIGTERM.
    pub shutdown_file_path: Option<PathBuf>,
    /// Plugin side: serve `grpc.health.v1.Health` (`PLUGIN_HEALTH_SERVICE_ENABLED`,
    /// default true). Without it an rpcplugin host skips its start-up health check,
    /// as it does for old go-plugin plugins.
    #[serde(deserialize_with = "de::boolean")]
    pub health_service_enabled: bool,
    /// Host side: launch a plugin again when its start fails
    /// (`PLUGIN_CLIENT_RETRY_ENABLED`, default false: go-plugin never relaunches, and
    /// most start failures repeat). Refusals a retry cannot fix (wrong cookie,
    /// checksum, TLS, no common version) are never retried.
    #[serde(deserialize_with = "de::boolean")]
    pub client_retry_enabled: bool,
    /// Host side: how many times a failed start is retried
    /// (`PLUGIN_CLIENT_MAX_RETRIES`, default 3: four attempts, as pyvider-rpcplugin).
    #[serde(deserialize_with = "de::count")]
    pub client_max_retries: u32,
    /// Host side: the wait before the first retry (`PLUGIN_CLIENT_INITIAL_BACKOFF`,
    /// or `PLUGIN_CLIENT_INITIAL_BACKOFF_MS` in milliseconds; default 100 ms).
    #[serde(with = "duration_serde")]
    pub client_initial_backoff: Duration,
    /// Host side: each wait is the last one times this
    /// (`PLUGIN_CLIENT_BACKOFF_MULTIPLIER`, default 2).
    #[serde(deserialize_with = "de::positive_number")]
    pub client_backoff_multiplier: f64,
    /// Host side: the longest wait between attempts (`PLUGIN_CLIENT_MAX_BACKOFF`, or
    /// `PLUGIN_CLIENT_MAX_BACKOFF_MS`; default 5 s).
    #[serde(with = "duration_serde")]
    pub client_max_backoff: Duration,
    /// Host side: up to this much is added at random to each wait, so that hosts
    /// started together do not retry together (`PLUGIN_CLIENT_RETRY_JITTER`, or
    /// `PLUGIN_CLIENT_RETRY_JITTER_MS`; default 50 ms).
    #[serde(with = "duration_serde")]
    pub client_retry_jitter: Duration,
    /// Host side: no attempt starts after this long since the first
    /// (`PLUGIN_CLIENT_RETRY_TOTAL_TIMEOUT`, or `PLUGIN_CLIENT_RETRY_TOTAL_TIMEOUT_S`;
    /// default 30 s).
    #[serde(with = "duration_serde")]
    pub client_retry_total_timeout: Duration,
}

/// Every setting's key: the field names of [`Settings`], in order. Their
/// environment variables are [`ENV_PREFIX`] plus the key in capitals.
pub const KEYS: &[&str] = &[
    "magic_cookie_key",
    "magic_cookie_value",
    "server_transports",
    "client_transports",
    "handshake_timeout",
    "shutdown_grace",
    "grpc_max_receive_message_size",
    "grpc_max_send_message_size",
    "ignore_sigint",
    "auto_mtls",
    "server_cert",
    "server_key",
    "client_root_certs",
    "client_cert",
    "client_key",
    "server_root_certs",
    "unix_socket_dir",
    "unix_socket_group",
    "min_port",
    "max_port",
    "sandbox",
    "sandbox_read_paths",
    "sandbox_write_paths",
    "sandbox_exec_paths",
    "sandbox_tcp_connect",
    "sandbox_seccomp",
    "connection_timeout",
    "grpc_keepalive_time",
    "grpc_keepalive_timeout",
    "log_level",
    "rate_limit_enabled",
    "rate_limit_requests_per_second",
    "rate_limit_burst_capacity",
    "core_version",
    "supported_protocol_versions",
    "channel_ready_timeout",
    "cert_validity_days",
    "ca_cert",
    "server_host",
    "server_port",
    "server_unix_socket_path",
    "shutdown_file_path",
    "health_service_enabled",
    "client_retry_enabled",
    "client_max_retries",
    "client_initial_backoff",
    "client_backoff_multiplier",
    "client_max_backoff",
    "client_retry_jitter",
    "client_retry_total_timeout",
];

/// `PLUGIN_*` variables that are not settings but part of the protocol (what a
/// host tells its plugin, or the config file's path): never "unknown".
pub const PROTOCOL_VARIABLES: &[&str] = &[
    "PLUGIN_PROTOCOL_VERSIONS",
    "PLUGIN_MULTIPLEX_GRPC",
    "PLUGIN_CONFIG_FILE",
];

impl Default for Settings {
    fn default() -> Self {
        Self {
            magic_cookie_key: None,
            magic_cookie_value: None,
            server_transports: None,
            client_transports: vec![Network::Unix, Network::Tcp],
            handshake_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(2),
            grpc_max_receive_message_size: None,
            grpc_max_send_message_size: None,
            ignore_sigint: true,
            auto_mtls: true,
            server_cert: None,
            server_key: None,
            client_root_certs: None,
            client_cert: None,
            client_key: None,
            server_root_certs: None,
            unix_socket_dir: None,
            unix_socket_group: None,
            min_port: None,
            max_port: None,
            sandbox: SandboxMode::Off,
            sandbox_read_paths: Vec::new(),
            sandbox_write_paths: Vec::new(),
            sandbox_exec_paths: Vec::new(),
            sandbox_tcp_connect: Vec::new(),
            sandbox_seccomp: true,
            connection_timeout: Duration::from_secs(5),
            grpc_keepalive_time: None,
            grpc_keepalive_timeout: Duration::from_secs(20),
            log_level: None,
            rate_limit_enabled: false,
            rate_limit_requests_per_second: 100.0,
            rate_limit_burst_capacity: 200,
            core_version: 1,
            supported_protocol_versions: None,
            channel_ready_timeout: Duration::from_secs(10),
            cert_validity_days: 30,
            ca_cert: None,
            server_host: None,
            server_port: None,
            server_unix_socket_path: None,
            shutdown_file_path: None,
            health_service_enabled: true,
            client_retry_enabled: false,
            client_max_retries: 3,
            client_initial_backoff: Duration::from_millis(100),
            client_backoff_multiplier: 2.0,
            client_max_backoff: Duration::from_secs(5),
            client_retry_jitter: Duration::from_millis(50),
            client_retry_total_timeout: Duration::from_secs(30),
        }
    }
}

impl Settings {
    /// Defaults < the config file named by `PLUGIN_CONFIG_FILE`, if any < the
    /// process's `PLUGIN_*` environment variables.
    pub fn load() -> Result<Self> {
        Self::from_environment(&Environment::capture())
    }

    /// Defaults < the config file named by `PLUGIN_CONFIG_FILE` in `env`, if any <
    /// the `PLUGIN_*` variables of `env`.
    pub fn from_environment(env: &Environment) -> Result<Self> {
        Self::from_sources(env, None)
    }

    /// Defaults < a config file < the `PLUGIN_*` variables of `env`. The file is
    /// `file` when given (a path set in code), else `PLUGIN_CONFIG_FILE`; TOML, YAML
    /// or JSON by its extension, with the settings' keys (`handshake_timeout = "5s"`).
    ///
    /// Unknown `PLUGIN_*` variables (with the setting they were probably meant to
    /// be) and pyvider-rpcplugin variables rpcplugin does not use (with the reason)
    /// are said once each by [`report`](crate::report); unknown keys in a file are
    /// errors.
    ///
    /// # Errors
    ///
    /// `config.invalid_value` naming the key and where it came from (the variable,
    /// or the file and line) with what was expected; `config.file_not_found`,
    /// `config.file_format`, `config.unknown_key`, `config.port_range`.
    pub fn from_sources(env: &Environment, file: Option<&Path>) -> Result<Self> {
        let loaded = Self::resolve(env, file, &Overlay::new())?;
        crate::report(loaded.notices());
        Ok(loaded.into_settings())
    }

    /// Defaults < a config file < the variables of `env` < `overlay` (values set
    /// in code), with where each value came from and what was set but not used.
    /// The file is `file` when given, else `PLUGIN_CONFIG_FILE`.
    ///
    /// Nothing is reported here: the caller decides where the
    /// [`notices`](Loaded::notices) go ([`report`](crate::report) says them once,
    /// where the user looks).
    ///
    /// # Errors
    ///
    /// As [`from_sources`](Self::from_sources); a bad value set in code is named
    /// as "set in code", and an unknown key in `overlay` is `config.unknown_key`.
    pub fn resolve(env: &Environment, file: Option<&Path>, overlay: &Overlay) -> Result<Loaded> {
        let mut notices = crate::resolve::variable_notices(env);
        let code = CodeProvider::new(overlay, &mut notices)?;
        let (file, file_origin) = match file {
            Some(path) => (Some(path.to_owned()), "given in code"),
            None => (
                env.get("PLUGIN_CONFIG_FILE")
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from),
                "named by PLUGIN_CONFIG_FILE",
            ),
        };
        let mut figment = Figment::from(figment::providers::Serialized::defaults(Self::default()));
        let mut file_keys = Vec::new();
        if let Some(path) = &file {
            let provider = file_provider(path, file_origin)?;
            if let Ok(data) = provider.data() {
                file_keys = data
                    .values()
                    .flat_map(|dict| dict.keys().cloned())
                    .collect();
            }
            figment = figment.merge(provider);
        }
        let env_provider = EnvProvider::new(env);
        let settings: Self = figment
            .merge(env_provider.clone())
            .merge(code.clone())
            .extract()
            .map_err(|e| config_error(e, file.as_deref(), &env_provider.names, &code.names))?;
        settings.validate()?;
        let origins = KEYS
            .iter()
            .map(|key| {
                let origin = if let Some(name) = code.names.get(*key) {
                    Origin::Code { name: name.clone() }
                } else if let Some(var) = env_provider.names.get(*key) {
                    Origin::Variable(var.clone())
                } else if let (Some(path), true) = (&file, file_keys.iter().any(|k| k == key)) {
                    Origin::File {
                        path: path.clone(),
                        line: line_of(path, key),
                    }
                } else {
                    Origin::Default
                };
                (*key, origin)
            })
            .collect();
        Ok(Loaded {
            settings,
            origins,
            notices,
        })
    }

    /// Checks what no single value can: the port range.
    fn validate(&self) -> Result<()> {
        match (self.min_port, self.max_port) {
            (Some(min), Some(max)) if min > max => Err(Error::new(
                Code::ConfigPortRange,
                format!("PLUGIN_MIN_PORT ({min}) is above PLUGIN_MAX_PORT ({max})"),
            )
            .with_hint("swap them, or unset both to let the system choose a port")),
            (Some(_), None) | (None, Some(_)) => Err(Error::new(
                Code::ConfigPortRange,
                "only one of PLUGIN_MIN_PORT and PLUGIN_MAX_PORT is set",
            )
            .with_hint("set both (go-plugin hosts use 10000 and 25000), or neither")),
            _ => Ok(()),
        }?;
        if let Some(host) = &self.server_host
            && !self.server_ip().is_some_and(|ip| ip.is_loopback())
        {
            return Err(Error::new(
                Code::ConfigInvalidValue,
                format!("PLUGIN_SERVER_HOST ({host}) is not a loopback address"),
            )
            .with_hint(
                "plugins serve their host on the same machine: use 127.0.0.1, ::1 or localhost (the loopback address keeps the port off the network)",
            ));
        }
        Ok(())
    }

    /// The address of `server_host`: `localhost` is 127.0.0.1, an IPv6 address may
    /// be in brackets. `None` when unset (or not an address, which
    /// [`resolve`](Self::resolve) refuses).
    pub fn server_ip(&self) -> Option<std::net::IpAddr> {
        let host = self.server_host.as_deref()?;
        if host.eq_ignore_ascii_case("localhost") {
            return Some(std::net::IpAddr::from([127, 0, 0, 1]));
        }
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .ok()
    }

    /// The CA certificates a plugin checks its host's certificate against, with the
    /// variable that named them: `client_root_certs`, else `ca_cert`.
    pub fn host_roots(&self) -> Option<(&str, &'static str)> {
        match (&self.client_root_certs, &self.ca_cert) {
            (Some(roots), _) => Some((roots, "PLUGIN_CLIENT_ROOT_CERTS")),
            (None, ca) => ca.as_deref().map(|ca| (ca, "PLUGIN_CA_CERT")),
        }
    }

    /// The CA certificates a host checks its plugin's certificate against, with the
    /// variable that named them: `server_root_certs`, else `ca_cert`.
    pub fn plugin_roots(&self) -> Option<(&str, &'static str)> {
        match (&self.server_root_certs, &self.ca_cert) {
            (Some(roots), _) => Some((roots, "PLUGIN_SERVER_ROOT_CERTS")),
            (None, ca) => ca.as_deref().map(|ca| (ca, "PLUGIN_CA_CERT")),
        }
    }

    /// How long a generated certificate is valid: `cert_validity_days` days.
    pub fn cert_validity(&self) -> Duration {
        Duration::from_secs(u64::from(self.cert_validity_days) * 86_400)
    }

    /// The magic cookie as `(key, value)`: the one set in code if any, else
    /// `PLUGIN_MAGIC_COOKIE_VALUE` under the variable `PLUGIN_MAGIC_COOKIE_KEY`
    /// names, or under `PLUGIN_MAGIC_COOKIE` (pyvider-rpcplugin's default key)
    /// when no key is set.
    pub fn magic_cookie(&self, in_code: Option<(String, String)>) -> Option<(String, String)> {
        in_code.or_else(|| {
            Some((
                self.magic_cookie_key
                    .clone()
                    .unwrap_or_else(|| DEFAULT_COOKIE_KEY.to_owned()),
                self.magic_cookie_value.clone()?,
            ))
        })
    }

    /// Defaults < the given variables (a convenience for tests and examples).
    pub fn from_vars<'a>(vars: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self> {
        Self::from_environment(&Environment::from_pairs(vars))
    }
}

/// An unknown `PLUGIN_*` variable, and the setting it most likely meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownVariable {
    /// The variable as set.
    pub name: String,
    /// The closest setting's variable, when one is close (a typo).
    pub suggestion: Option<String>,
}

/// The `PLUGIN_*` variables of `env` that are neither settings nor part of the
/// protocol (the host-to-plugin variables), with a suggestion for typos.
pub fn unknown_variables(env: &Environment) -> Vec<UnknownVariable> {
    crate::resolve::variable_notices(env)
        .into_iter()
        .filter_map(|n| match n.kind {
            NoticeKind::Unknown { suggestion } => Some(UnknownVariable {
                name: n.name,
                suggestion,
            }),
            _ => None,
        })
        .collect()
}

/// pyvider-rpcplugin's default magic cookie variable, used when only the value is
/// configured.
pub const DEFAULT_COOKIE_KEY: &str = "PLUGIN_MAGIC_COOKIE";

/// Variables a host passes to its plugin that are not settings of the plugin: the
/// host's certificate, and the cookie under pyvider-rpcplugin's default key.
pub(crate) const HOST_TO_PLUGIN_VARIABLES: &[&str] = &["PLUGIN_CLIENT_CERT", DEFAULT_COOKIE_KEY];

/// The file's provider, by extension; a missing file or an unknown extension is
/// an error rather than silently no settings.
fn file_provider(path: &Path, origin: &str) -> Result<AnyFormat> {
    use figment::providers::{Format as _, Json, Toml, Yaml};
    if !path.is_file() {
        return Err(Error::new(
            Code::ConfigFileNotFound,
            format!("config file {} ({origin}) does not exist", path.display()),
        )
        .with_hint("check the path, or unset PLUGIN_CONFIG_FILE"));
    }
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match extension.as_deref() {
        Some("toml") => Ok(AnyFormat::Toml(Toml::file_exact(path))),
        Some("yaml" | "yml") => Ok(AnyFormat::Yaml(Yaml::file_exact(path))),
        Some("json") => Ok(AnyFormat::Json(Json::file_exact(path))),
        _ => Err(Error::new(
            Code::ConfigFileFormat,
            format!(
                "config file {} ({origin}) is not .toml, .yaml, .yml or .json",
                path.display()
            ),
        )
        .with_hint("name the file after its format: plugin.toml, plugin.yaml or plugin.json")),
    }
}

/// Turns figment's error into ours: the key, where its value came from (the
/// variable, or the file and line), and what was expected.
fn config_error(
    err: figment::Error,
    file: Option<&Path>,
    env_names: &HashMap<String, String>,
    code_names: &HashMap<String, String>,
) -> Error {
    let first = err.clone().into_iter().next();
    let Some(first) = first else {
        return Error::new(
            Code::ConfigInvalidValue,
            format!("invalid configuration: {err}"),
        )
        .with_hint("see docs/configuration.md for the accepted values")
        .with_source(err);
    };
    let from_file = first
        .metadata
        .as_ref()
        .and_then(|m| m.source.as_ref())
        .and_then(|s| s.file_path())
        .map(Path::to_owned)
        .or_else(|| {
            // Unknown keys are reported without metadata; only a file can have them.
            matches!(first.kind, figment::error::Kind::UnknownField(..))
                .then(|| file.map(Path::to_owned))
                .flatten()
        });
    let key = match &first.kind {
        figment::error::Kind::UnknownField(name, _) => name.clone(),
        _ => first.path.first().cloned().unwrap_or_default(),
    };
    let (code, detail) = match &first.kind {
        figment::error::Kind::UnknownField(name, _) => {
            let suggestion = crate::resolve::closest(name, KEYS.iter().copied())
                .map(|k| format!("; did you mean `{k}`?"))
                .unwrap_or_default();
            (
                Code::ConfigUnknownKey,
                format!("unknown setting `{name}`{suggestion}"),
            )
        }
        kind => (Code::ConfigInvalidValue, kind.to_string()),
    };
    let (message, hint) = match &from_file {
        Some(path) => {
            let line = line_of(path, &key)
                .map(|n| format!(" line {n}"))
                .unwrap_or_default();
            (
                format!("{}{line}: `{key}`: {detail}", path.display()),
                format!(
                    "fix `{key}` in {}; see docs/configuration.md for the keys and their values",
                    path.display()
                ),
            )
        }
        None if first.metadata.as_ref().is_some_and(|m| m.name == CODE) => {
            let name = code_names.get(&key).cloned().unwrap_or_else(|| key.clone());
            (
                format!("invalid value for `{key}` (set in code as {name}): {detail}"),
                format!(
                    "fix the value given for {name} in code; see docs/configuration.md for the accepted values"
                ),
            )
        }
        None => {
            let var = env_names
                .get(&key)
                .cloned()
                .unwrap_or_else(|| crate::variable_of(&key));
            (
                format!("invalid value for {var} (environment variable): {detail}"),
                format!("fix or unset {var}; see docs/configuration.md for the accepted values"),
            )
        }
    };
    Error::new(code, message).with_hint(hint).with_source(err)
}

/// The first line of a config file that sets `key` (TOML `key =`, YAML `key:`,
/// JSON `"key":`), 1-based.
fn line_of(path: &Path, key: &str) -> Option<usize> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .position(|line| {
            let line = line.trim_start().trim_start_matches('"');
            line.strip_prefix(key).is_some_and(|rest| {
                let rest = rest.trim_start_matches('"').trim_start();
                rest.starts_with('=') || rest.starts_with(':')
            })
        })
        .map(|i| i + 1)
}

/// One of figment's file formats, chosen at run time.
enum AnyFormat {
    Toml(figment::providers::Data<figment::providers::Toml>),
    Yaml(figment::providers::Data<figment::providers::Yaml>),
    Json(figment::providers::Data<figment::providers::Json>),
}

impl Provider for AnyFormat {
    fn metadata(&self) -> Metadata {
        match self {
            Self::Toml(p) => p.metadata(),
            Self::Yaml(p) => p.metadata(),
            Self::Json(p) => p.metadata(),
        }
    }

    fn data(&self) -> figment::Result<Map<Profile, Dict>> {
        match self {
            Self::Toml(p) => p.data(),
            Self::Yaml(p) => p.data(),
            Self::Json(p) => p.data(),
        }
    }
}

/// Serves the settings' variables of an [`Environment`] to figment as raw strings
/// (each field's deserializer knows how to read its own type from a string), so a
/// cookie value of `123` stays the string `"123"`. A setting's own variable wins
/// over pyvider-rpcplugin's names for it, which are converted to its unit.
#[derive(Clone)]
struct EnvProvider {
    dict: Dict,
    /// Key to the variable that set it.
    names: HashMap<String, String>,
}

impl EnvProvider {
    fn new(env: &Environment) -> Self {
        let mut dict = Dict::new();
        let mut names = HashMap::new();
        for key in KEYS {
            let own = crate::variable_of(key);
            let value = env
                .get(&own)
                .filter(|v| !v.is_empty())
                .map(|v| (own.clone(), v.to_owned()))
                .or_else(|| {
                    crate::names::ALIASES
                        .iter()
                        .filter(|a| a.key == *key)
                        .find_map(|a| {
                            env.get(a.variable)
                                .filter(|v| !v.is_empty())
                                .map(|v| (a.variable.to_owned(), crate::names::convert(a.unit, v)))
                        })
                });
            if let Some((variable, value)) = value {
                dict.insert((*key).to_owned(), Value::from(value));
                names.insert((*key).to_owned(), variable);
            }
        }
        Self { dict, names }
    }
}

impl Provider for EnvProvider {
    fn metadata(&self) -> Metadata {
        Metadata::named("environment variable")
    }

    fn data(&self) -> figment::Result<Map<Profile, Dict>> {
        Ok(Profile::Default.collect(self.dict.clone()))
    }
}

/// figment's name for values set in code.
const CODE: &str = "code";

/// Serves an [`Overlay`] to figment: each name resolved to its key (a key, a
/// variable, or a pyvider-rpcplugin name converted to the key's unit).
#[derive(Clone)]
struct CodeProvider {
    dict: Dict,
    /// Key to the name it was set under.
    names: HashMap<String, String>,
}

impl CodeProvider {
    fn new(overlay: &Overlay, notices: &mut Vec<crate::Notice>) -> Result<Self> {
        let mut dict = Dict::new();
        let mut names = HashMap::new();
        for (name, value) in overlay.entries() {
            let lower = name.to_ascii_lowercase();
            let own = lower.strip_prefix("plugin_").unwrap_or(&lower);
            let (key, value) = if let Some(key) = KEYS.iter().find(|k| **k == lower || **k == own) {
                (*key, value.to_value())
            } else if let Some(alias) = crate::names::alias(name) {
                let value = match value {
                    ConfigValue::Text(t) => Value::from(crate::names::convert(alias.unit, t)),
                    ConfigValue::Int(n) if alias.unit == crate::names::Unit::Milliseconds => {
                        Value::from(format!("{n}ms"))
                    }
                    other => other.to_value(),
                };
                (alias.key, value)
            } else if let Some(unsupported) = crate::names::unsupported(name) {
                notices.push(crate::Notice {
                    name: name.to_owned(),
                    kind: NoticeKind::Unsupported {
                        reason: unsupported.reason,
                    },
                });
                continue;
            } else {
                let suggestion = crate::resolve::closest(own, KEYS.iter().copied())
                    .map(|k| format!("; did you mean `{k}`?"))
                    .unwrap_or_default();
                return Err(Error::new(
                    Code::ConfigUnknownKey,
                    format!("unknown setting `{name}` (set in code){suggestion}"),
                )
                .with_hint(
                    "name a setting by its key (handshake_timeout) or variable (PLUGIN_HANDSHAKE_TIMEOUT); docs/configuration.md lists them",
                ));
            };
            dict.insert(key.to_owned(), value);
            names.insert(key.to_owned(), name.to_owned());
        }
        Ok(Self { dict, names })
    }
}

impl Provider for CodeProvider {
    fn metadata(&self) -> Metadata {
        Metadata::named(CODE)
    }

    fn data(&self) -> figment::Result<Map<Profile, Dict>> {
        Ok(Profile::Default.collect(self.dict.clone()))
    }
}

fn ser_networks<S: serde::Serializer>(list: &[Network], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(list.iter().map(|n| n.as_str()))
}

fn ser_opt_networks<S: serde::Serializer>(
    list: &Option<Vec<Network>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match list {
        Some(list) => ser_networks(list, s),
        None => s.serialize_none(),
    }
}

fn opt_networks<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<Network>>, D::Error> {
    #[derive(Deserialize)]
    struct List(#[serde(deserialize_with = "de::networks")] Vec<Network>);
    Ok(Option::<List>::deserialize(d)?.map(|l| l.0))
}

fn opt_port<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    #[derive(Deserialize)]
    struct Port(#[serde(deserialize_with = "de::port")] u16);
    Ok(Option::<Port>::deserialize(d)?.map(|p| p.0))
}

fn opt_port_or_zero<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    #[derive(Deserialize)]
    struct Port(#[serde(deserialize_with = "de::port_or_zero")] u16);
    Ok(Option::<Port>::deserialize(d)?
        .map(|p| p.0)
        .filter(|p| *p != 0))
}

fn opt_versions<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<u32>>, D::Error> {
    #[derive(Deserialize)]
    struct List(#[serde(deserialize_with = "de::versions")] Vec<u32>);
    Ok(Option::<List>::deserialize(d)?.map(|l| l.0))
}

fn opt_size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    #[derive(Deserialize)]
    struct Size(#[serde(deserialize_with = "de::size")] usize);
    Ok(Option::<Size>::deserialize(d)?.map(|s| s.0))
}

/// Optional durations: absent, or as [`duration_serde`].
mod opt_duration_serde {
    use std::time::Duration;

    pub(crate) fn serialize<S: serde::Serializer>(
        d: &Option<Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        #[derive(serde::Deserialize)]
        struct Wrapped(#[serde(deserialize_with = "crate::de::duration")] Duration);
        Ok(Option::<Wrapped>::deserialize(d)?.map(|w| w.0))
    }

    use serde::Deserialize;
}

/// Durations serialize as fractional seconds and deserialize from seconds or units.
mod duration_serde {
    use std::time::Duration;

    pub(crate) fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub(crate) fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Duration, D::Error> {
        crate::de::duration(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_without_environment() {
        let s = Settings::from_vars([]).unwrap();
        assert_eq!(s, Settings::default());
        assert_eq!(s.server_transports, None);
        assert!(s.ignore_sigint);
    }

    #[test]
    fn environment_overrides_defaults() {
        let s = Settings::from_vars([
            ("PLUGIN_SERVER_TRANSPORTS", "tcp"),
            ("PLUGIN_HANDSHAKE_TIMEOUT", "500ms"),
            ("PLUGIN_SHUTDOWN_GRACE", "1"),
            ("PLUGIN_MAGIC_COOKIE_VALUE", "123"),
            ("PLUGIN_GRPC_MAX_RECEIVE_MESSAGE_SIZE", "8MiB"),
            ("PLUGIN_IGNORE_SIGINT", "false"),
            ("PLUGIN_MIN_PORT", "10000"),
            ("PLUGIN_MAX_PORT", "25000"),
            ("PLUGIN_AUTO_MTLS", "false"),
            ("PLUGIN_SERVER_CERT", "file:///etc/plugin/cert.pem"),
            ("PLUGIN_CLIENT_KEY", "/etc/host/key.pem"),
        ])
        .unwrap();
        assert_eq!(s.server_transports, Some(vec![Network::Tcp]));
        assert_eq!(s.handshake_timeout, Duration::from_millis(500));
        assert_eq!(s.shutdown_grace, Duration::from_secs(1));
        assert_eq!(s.magic_cookie_value.as_deref(), Some("123"));
        assert_eq!(s.grpc_max_receive_message_size, Some(8 << 20));
        assert!(!s.ignore_sigint);
        assert!(!s.auto_mtls);
        assert_eq!(
            s.server_cert.as_deref(),
            Some("file:///etc/plugin/cert.pem")
        );
        assert_eq!(s.client_key.as_deref(), Some("/etc/host/key.pem"));
        assert_eq!(s.client_cert, None);
    }

    #[test]
    fn automtls_is_on_by_default_and_a_bad_boolean_is_named() {
        assert!(Settings::default().auto_mtls);
        let err = Settings::from_vars([("PLUGIN_AUTO_MTLS", "maybe")]).unwrap_err();
        assert!(err.to_string().contains("PLUGIN_AUTO_MTLS"), "{err}");
    }

    #[test]
    fn bad_values_name_the_variable_and_the_expectation() {
        let err = Settings::from_vars([("PLUGIN_SERVER_TRANSPORTS", "udp")]).unwrap_err();
        assert_eq!(err.kind(), rpcplugin_core::ErrorKind::Config);
        assert_eq!(err.code(), Code::ConfigInvalidValue);
        let text = err.to_string();
        assert!(text.contains("PLUGIN_SERVER_TRANSPORTS"), "{text}");
        assert!(text.contains("\"unix\" and \"tcp\""), "{text}");
        assert!(err.hint().unwrap().contains("PLUGIN_SERVER_TRANSPORTS"));

        let err = Settings::from_vars([("PLUGIN_HANDSHAKE_TIMEOUT", "ten")]).unwrap_err();
        assert!(
            err.to_string().contains("PLUGIN_HANDSHAKE_TIMEOUT"),
            "{err}"
        );
        assert!(err.to_string().contains("duration"), "{err}");
    }

    #[test]
    fn cookie_in_code_wins_over_environment() {
        let s = Settings::from_vars([
            ("PLUGIN_MAGIC_COOKIE_KEY", "ENV_KEY"),
            ("PLUGIN_MAGIC_COOKIE_VALUE", "env"),
        ])
        .unwrap();
        let code = Some(("BASIC_PLUGIN".to_owned(), "hello".to_owned()));
        assert_eq!(s.magic_cookie(code.clone()), code);
        assert_eq!(
            s.magic_cookie(None),
            Some(("ENV_KEY".to_owned(), "env".to_owned()))
        );
        let half = Settings::from_vars([("PLUGIN_MAGIC_COOKIE_KEY", "K")]).unwrap();
        assert_eq!(half.magic_cookie(None), None);
        let value_only = Settings::from_vars([("PLUGIN_MAGIC_COOKIE_VALUE", "v")]).unwrap();
        assert_eq!(
            value_only.magic_cookie(None),
            Some(("PLUGIN_MAGIC_COOKIE".to_owned(), "v".to_owned()))
        );
    }

    #[test]
    fn keys_are_exactly_the_fields() {
        let value = figment::value::Value::serialize(Settings::default()).unwrap();
        let dict = value.into_dict().unwrap();
        let mut fields: Vec<&str> = dict.keys().map(String::as_str).collect();
        let mut keys = KEYS.to_vec();
        fields.sort_unstable();
        keys.sort_unstable();
        assert_eq!(fields, keys);
    }

    fn config_file(name: &str, text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn file_then_environment_then_code_in_that_order() {
        let (_dir, path) = config_file(
            "plugin.toml",
            "handshake_timeout = \"5s\"\nshutdown_grace = 3\nserver_transports = [\"tcp\"]\nmin_port = 10000\nmax_port = 25000\n",
        );
        let path_text = path.display().to_string();
        let env = Environment::from_pairs([
            ("PLUGIN_CONFIG_FILE", path_text.as_str()),
            ("PLUGIN_HANDSHAKE_TIMEOUT", "7s"),
        ]);
        let s = Settings::from_environment(&env).unwrap();
        assert_eq!(
            s.handshake_timeout,
            Duration::from_secs(7),
            "env beats file"
        );
        assert_eq!(
            s.shutdown_grace,
            Duration::from_secs(3),
            "file beats default"
        );
        assert_eq!(s.server_transports, Some(vec![Network::Tcp]));
        assert_eq!((s.min_port, s.max_port), (Some(10000), Some(25000)));
        assert_eq!(s.connection_timeout, Duration::from_secs(5), "default");
        // A file given in code replaces PLUGIN_CONFIG_FILE.
        let (_dir2, other) = config_file("other.json", r#"{"shutdown_grace": "250ms"}"#);
        let s = Settings::from_sources(&env, Some(&other)).unwrap();
        assert_eq!(s.shutdown_grace, Duration::from_millis(250));
        assert_eq!(s.handshake_timeout, Duration::from_secs(7));
    }

    #[test]
    fn yaml_and_json_files_work_too() {
        let (_d1, yaml) = config_file("p.yaml", "auto_mtls: false\nlog_level: debug\n");
        let s = Settings::from_sources(&Environment::default(), Some(&yaml)).unwrap();
        assert!(!s.auto_mtls);
        assert_eq!(s.log_level.as_deref(), Some("debug"));
        let (_d2, json) = config_file("p.json", r#"{"grpc_keepalive_time": 30}"#);
        let s = Settings::from_sources(&Environment::default(), Some(&json)).unwrap();
        assert_eq!(s.grpc_keepalive_time, Some(Duration::from_secs(30)));
    }

    #[test]
    fn a_bad_value_in_a_file_names_the_file_and_the_line() {
        let (_dir, path) = config_file(
            "plugin.toml",
            "# tuning\nshutdown_grace = 1\nhandshake_timeout = \"ten\"\n",
        );
        let err = Settings::from_sources(&Environment::default(), Some(&path)).unwrap_err();
        let text = err.to_string();
        assert_eq!(err.code(), Code::ConfigInvalidValue);
        assert!(
            text.contains(&format!("{} line 3", path.display())),
            "{text}"
        );
        assert!(text.contains("`handshake_timeout`"), "{text}");
        assert!(text.contains("duration"), "{text}");
        assert!(err.hint().unwrap().contains("handshake_timeout"));
    }

    #[test]
    fn an_unknown_key_in_a_file_is_an_error_with_a_suggestion() {
        let (_dir, path) = config_file("plugin.yaml", "handshake_timout: 5\n");
        let err = Settings::from_sources(&Environment::default(), Some(&path)).unwrap_err();
        assert_eq!(err.code(), Code::ConfigUnknownKey);
        let text = err.to_string();
        assert!(text.contains("did you mean `handshake_timeout`?"), "{text}");
        assert!(text.contains("line 1"), "{text}");
    }

    #[test]
    fn a_missing_or_unknown_format_file_is_explained() {
        let env = Environment::from_pairs([("PLUGIN_CONFIG_FILE", "/nonexistent/plugin.toml")]);
        let err = Settings::from_environment(&env).unwrap_err();
        assert_eq!(err.code(), Code::ConfigFileNotFound);
        assert!(err.to_string().contains("PLUGIN_CONFIG_FILE"), "{err}");
        let (_dir, path) = config_file("plugin.ini", "x=1");
        let err = Settings::from_sources(&Environment::default(), Some(&path)).unwrap_err();
        assert_eq!(err.code(), Code::ConfigFileFormat);
        assert!(err.hint().unwrap().contains("plugin.toml"));
    }

    #[test]
    fn an_inverted_or_half_port_range_is_refused() {
        let err = Settings::from_vars([("PLUGIN_MIN_PORT", "25000"), ("PLUGIN_MAX_PORT", "10000")])
            .unwrap_err();
        assert_eq!(err.code(), Code::ConfigPortRange);
        assert_eq!(
            err.to_string(),
            "PLUGIN_MIN_PORT (25000) is above PLUGIN_MAX_PORT (10000)"
        );
        assert!(err.hint().unwrap().contains("swap"));
        let err = Settings::from_vars([("PLUGIN_MIN_PORT", "10000")]).unwrap_err();
        assert!(err.to_string().contains("only one"), "{err}");
        let err = Settings::from_vars([("PLUGIN_MAX_PORT", "70000")]).unwrap_err();
        assert!(err.to_string().contains("PLUGIN_MAX_PORT"), "{err}");
    }

    #[test]
    fn unknown_variables_get_a_did_you_mean() {
        let env = Environment::from_pairs([
            ("PLUGIN_HANDSHAKE_TIMOUT", "5"),
            ("PLUGIN_AUTOMTLS", "false"),
            ("PLUGIN_WHATEVER_THIS_IS", "1"),
            ("PLUGIN_PROTOCOL_VERSIONS", "1"),
            ("PLUGIN_CLIENT_CERT", "pem"),
            ("PLUGIN_HANDSHAKE_TIMEOUT", "5"),
            ("HOME", "/root"),
        ]);
        let unknown = unknown_variables(&env);
        let find = |name: &str| unknown.iter().find(|u| u.name == name).cloned();
        assert_eq!(
            find("PLUGIN_HANDSHAKE_TIMOUT")
                .unwrap()
                .suggestion
                .as_deref(),
            Some("PLUGIN_HANDSHAKE_TIMEOUT")
        );
        assert_eq!(
            find("PLUGIN_AUTOMTLS").unwrap().suggestion.as_deref(),
            Some("PLUGIN_AUTO_MTLS")
        );
        assert_eq!(find("PLUGIN_WHATEVER_THIS_IS").unwrap().suggestion, None);
        assert_eq!(unknown.len(), 3, "{unknown:?}");
        // Unknown variables are warnings, not errors.
        assert!(Settings::from_environment(&env).is_ok());
    }

    #[test]
    fn empty_values_count_as_unset() {
        let s = Settings::from_vars([("PLUGIN_HANDSHAKE_TIMEOUT", "")]).unwrap();
        assert_eq!(s.handshake_timeout, Settings::default().handshake_timeout);
    }
}
