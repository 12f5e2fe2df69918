//! The typed settings and how they are merged.

use crate::{Environment, de};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use rpcplugin_core::{Error, ErrorKind, Network, Result};
use serde::{Deserialize, Serialize};
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
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
}

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
        }
    }
}

impl Settings {
    /// Defaults < the process's `PLUGIN_*` environment variables.
    pub fn load() -> Result<Self> {
        Self::from_environment(&Environment::capture())
    }

    /// Defaults < the `PLUGIN_*` variables of `env`.
    pub fn from_environment(env: &Environment) -> Result<Self> {
        let figment = Figment::from(figment::providers::Serialized::defaults(Self::default()))
            .merge(EnvProvider::new(env));
        figment.extract().map_err(config_error)
    }

    /// The magic cookie as `(key, value)`: the one set in code if any, else
    /// `PLUGIN_MAGIC_COOKIE_KEY` and `PLUGIN_MAGIC_COOKIE_VALUE` when both are set.
    pub fn magic_cookie(&self, in_code: Option<(String, String)>) -> Option<(String, String)> {
        in_code.or_else(|| {
            Some((
                self.magic_cookie_key.clone()?,
                self.magic_cookie_value.clone()?,
            ))
        })
    }

    /// Defaults < the given variables (a convenience for tests and examples).
    pub fn from_vars<'a>(vars: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self> {
        Self::from_environment(&Environment::from_pairs(vars))
    }
}

/// Turns figment's error into ours: it names the key, the variable and what was expected.
fn config_error(err: figment::Error) -> Error {
    let first = err.clone().into_iter().next();
    let (variable, detail) = match &first {
        Some(e) => {
            let var = e
                .path
                .first()
                .map(|key| format!("{ENV_PREFIX}{}", key.to_ascii_uppercase()));
            (var, e.kind.to_string())
        }
        None => (None, err.to_string()),
    };
    let message = match &variable {
        Some(var) => format!("invalid value for {var}: {detail}"),
        None => format!("invalid configuration: {detail}"),
    };
    let hint = match &variable {
        Some(var) => {
            format!("fix or unset {var}; see docs/configuration.md for the accepted values")
        }
        None => "see docs/configuration.md for the accepted values".to_owned(),
    };
    Error::new(ErrorKind::Config, "config.invalid_value", message)
        .with_hint(hint)
        .with_source(err)
}

/// Serves the `PLUGIN_*` variables of an [`Environment`] to figment as raw strings
/// (each field's deserializer knows how to read its own type from a string), so a
/// cookie value of `123` stays the string `"123"`.
struct EnvProvider {
    dict: Dict,
}

impl EnvProvider {
    fn new(env: &Environment) -> Self {
        let dict = env
            .with_prefix(ENV_PREFIX)
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| {
                (
                    k[ENV_PREFIX.len()..].to_ascii_lowercase(),
                    Value::from(v.to_owned()),
                )
            })
            .collect();
        Self { dict }
    }
}

impl Provider for EnvProvider {
    fn metadata(&self) -> Metadata {
        Metadata::named("environment variable").interpolater(|_profile, keys| {
            format!("{ENV_PREFIX}{}", keys.join("_").to_ascii_uppercase())
        })
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

fn opt_size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    #[derive(Deserialize)]
    struct Size(#[serde(deserialize_with = "de::size")] usize);
    Ok(Option::<Size>::deserialize(d)?.map(|s| s.0))
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
            // host-to-plugin contract variables are not settings and are ignored here
            ("PLUGIN_MIN_PORT", "10000"),
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
        assert_eq!(err.kind(), ErrorKind::Config);
        assert_eq!(err.code(), "config.invalid_value");
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
    }

    #[test]
    fn empty_values_count_as_unset() {
        let s = Settings::from_vars([("PLUGIN_HANDSHAKE_TIMEOUT", "")]).unwrap();
        assert_eq!(s.handshake_timeout, Settings::default().handshake_timeout);
    }
}
