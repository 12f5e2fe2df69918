//! Reattach information: what a plugin running on its own (debug mode) prints so
//! that a host can attach to it instead of starting it.
//!
//! The JSON is Terraform's `TF_REATTACH_PROVIDERS` entry (go-plugin's
//! `ReattachConfig` as Terraform serialises it), plus the server certificate that
//! go-plugin's lacks:
//!
//! ```json
//! {"Protocol":"grpc","ProtocolVersion":1,"Pid":4242,"Test":true,
//!  "Addr":{"Network":"unix","String":"/tmp/rpcplugin-1/plugin.sock"},
//!  "ServerCert":"MIIB..."}
//! ```
//!
//! `ServerCert` is the DER of the certificate the plugin serves, base64 without
//! padding as in the handshake line, and absent (or empty) for plaintext.

use base64::Engine as _;
use rpcplugin_core::Code;
use rpcplugin_core::{Endpoint, Error, Network, Result};
use serde::{Deserialize, Serialize};

use crate::line::{CERT_READER, CERT_WRITER, parse_address};
use crate::{CORE_PROTOCOL_VERSION, Protocol};

/// Where and how to reach a plugin that is already running.
///
/// ```
/// use rpcplugin_handshake::{Endpoint, ReattachConfig};
///
/// let config = ReattachConfig::new(1, Endpoint::Unix("/tmp/p/plugin.sock".into()), 4242);
/// let json = config.to_json();
/// assert_eq!(ReattachConfig::from_json(&json).unwrap(), config);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReattachConfig {
    /// The wire protocol (gRPC).
    pub protocol: Protocol,
    /// The app protocol version the plugin serves.
    pub app_version: u32,
    /// Where it serves.
    pub endpoint: Endpoint,
    /// Its process id (the host never signals it: it did not start it).
    pub pid: u32,
    /// The DER of the certificate it serves, when it serves TLS.
    pub server_cert: Option<Vec<u8>>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Wire {
    protocol: String,
    protocol_version: u32,
    pid: u32,
    #[serde(default)]
    test: bool,
    addr: WireAddr,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    server_cert: String,
}

#[derive(Serialize, Deserialize)]
struct WireAddr {
    #[serde(rename = "Network")]
    network: String,
    #[serde(rename = "String")]
    address: String,
}

impl ReattachConfig {
    /// A gRPC plugin serving `app_version` at `endpoint`, plaintext.
    pub fn new(app_version: u32, endpoint: Endpoint, pid: u32) -> Self {
        Self {
            protocol: Protocol::Grpc,
            app_version,
            endpoint,
            pid,
            server_cert: None,
        }
    }

    /// The same, serving TLS with the certificate `der`.
    #[must_use]
    pub fn with_server_cert(mut self, der: Vec<u8>) -> Self {
        self.server_cert = Some(der);
        self
    }

    /// One line of JSON (no newline), in Terraform's `TF_REATTACH_PROVIDERS` entry
    /// shape with `ServerCert` added.
    pub fn to_json(&self) -> String {
        let wire = Wire {
            protocol: self.protocol.as_str().to_owned(),
            protocol_version: self.app_version,
            pid: self.pid,
            // Terraform's name for "started outside the host, do not kill it".
            test: true,
            addr: WireAddr {
                network: self.endpoint.network().as_str().to_owned(),
                address: self.endpoint.to_string(),
            },
            server_cert: self
                .server_cert
                .as_deref()
                .map(|der| CERT_WRITER.encode(der))
                .unwrap_or_default(),
        };
        serde_json::to_string(&wire).expect("plain strings and numbers serialise")
    }

    /// Reads the JSON [`to_json`](Self::to_json) writes (and go-plugin's and
    /// Terraform's, which lack `ServerCert`).
    ///
    /// # Errors
    ///
    /// `handshake.bad_reattach` (Config) naming what is wrong: not JSON, a missing
    /// field, a protocol other than gRPC, an unknown network or address, or a
    /// certificate that is not base64.
    pub fn from_json(json: &str) -> Result<Self> {
        let bad = |what: String| {
            Error::new(
                Code::HandshakeBadReattach,
                format!("bad reattach information: {what}"),
            )
            .with_hint(
                "pass the JSON line the plugin printed in debug mode, unchanged, e.g. \
                 {\"Protocol\":\"grpc\",\"ProtocolVersion\":1,\"Pid\":42,\"Addr\":\
                 {\"Network\":\"unix\",\"String\":\"/tmp/x/plugin.sock\"}}",
            )
        };
        let wire: Wire = serde_json::from_str(json.trim()).map_err(|e| bad(e.to_string()))?;
        let protocol = match wire.protocol.to_ascii_lowercase().as_str() {
            "grpc" => Protocol::Grpc,
            other => {
                return Err(bad(format!(
                    "protocol {other:?}: rpcplugin speaks grpc only"
                )));
            }
        };
        let network = wire
            .addr
            .network
            .parse::<Network>()
            .map_err(|e| bad(e.to_string()))?;
        let endpoint = parse_address(network, &wire.addr.address)
            .map_err(|_| bad(format!("{network} address {:?}", wire.addr.address)))?;
        let server_cert = match wire.server_cert.trim() {
            "" => None,
            text => Some(
                CERT_READER
                    .decode(text)
                    .map_err(|e| bad(format!("ServerCert is not base64: {e}")))?,
            ),
        };
        if wire.pid == 0 {
            return Err(bad("Pid is missing or 0".to_owned()));
        }
        Ok(Self {
            protocol,
            app_version: wire.protocol_version,
            endpoint,
            pid: wire.pid,
            server_cert,
        })
    }

    /// The core protocol version (always go-plugin's 1).
    pub fn core_version(&self) -> u32 {
        CORE_PROTOCOL_VERSION
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_a_certificate_over_tcp() {
        let config = ReattachConfig::new(5, Endpoint::Tcp("127.0.0.1:10001".parse().unwrap()), 7)
            .with_server_cert(vec![0x30, 0x82, 1, 2, 3, 4, 5]);
        let json = config.to_json();
        assert!(!json.contains('\n'));
        assert!(
            json.contains(r#""Addr":{"Network":"tcp","String":"127.0.0.1:10001"}"#),
            "{json}"
        );
        assert!(!json.contains('='), "unpadded base64: {json}");
        assert_eq!(ReattachConfig::from_json(&json).unwrap(), config);
    }

    #[test]
    fn reads_terraforms_shape_without_a_certificate() {
        let json = r#"{"Protocol":"grpc","ProtocolVersion":5,"Pid":123,"Test":true,
                       "Addr":{"Network":"unix","String":"/tmp/plugin42"}}"#;
        let config = ReattachConfig::from_json(json).unwrap();
        assert_eq!(config.app_version, 5);
        assert_eq!(config.endpoint, Endpoint::Unix("/tmp/plugin42".into()));
        assert_eq!(config.server_cert, None);
    }

    #[test]
    fn bad_input_is_explained() {
        for (json, needle) in [
            ("not json", "expected"),
            (
                r#"{"Protocol":"netrpc","ProtocolVersion":1,"Pid":1,"Addr":{"Network":"unix","String":"/x"}}"#,
                "grpc only",
            ),
            (
                r#"{"Protocol":"grpc","ProtocolVersion":1,"Pid":1,"Addr":{"Network":"no net","String":"/x"}}"#,
                "no net",
            ),
            (
                r#"{"Protocol":"grpc","ProtocolVersion":1,"Pid":1,"Addr":{"Network":"tcp","String":"nowhere"}}"#,
                "nowhere",
            ),
            (
                r#"{"Protocol":"grpc","ProtocolVersion":1,"Addr":{"Network":"unix","String":"/x"}}"#,
                "Pid",
            ),
        ] {
            let err = ReattachConfig::from_json(json).unwrap_err();
            assert_eq!(err.code(), Code::HandshakeBadReattach);
            assert!(err.to_string().contains(needle), "{json}: {err}");
            assert!(err.hint().is_some());
        }
    }
}
