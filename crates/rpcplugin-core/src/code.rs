//! Every error code rpcplugin can return, as one enum.
//!
//! A code is the stable, dotted identifier of one failure (`"handshake.timeout"`): logs,
//! docs and users' `match`es rely on it across releases, so it is a type here, not a
//! string, and a typo does not compile. Each code has exactly one [`ErrorKind`], so the
//! kind follows from the code. `docs/troubleshooting.md` lists them all; `cargo xtask
//! codegen` writes that list from [`Code::ALL`] and CI fails when it is stale.

use crate::ErrorKind;
use std::fmt;
use std::str::FromStr;

/// Declares the enum, its strings, kinds and descriptions from one table, so that the
/// four can never disagree. The doc comment of each variant is its description.
macro_rules! codes {
    ($( $(#[doc = $doc:literal])+ $variant:ident = $code:literal, $kind:ident; )+) => {
        /// The stable code of an [`Error`](crate::Error): which failure it is.
        ///
        /// [`as_str`](Code::as_str) gives the dotted form used in logs and docs
        /// (`"transport.socket_path_too_long"`); [`kind`](Code::kind) the part of the
        /// system that failed. New codes are added in minor releases, so a `match`
        /// needs a wildcard arm.
        ///
        /// ```
        /// use rpcplugin_core::{Code, ErrorKind};
        ///
        /// let code: Code = "handshake.timeout".parse().unwrap();
        /// assert_eq!(code, Code::HandshakeTimeout);
        /// assert_eq!(code.kind(), ErrorKind::Timeout);
        /// assert_eq!(code.to_string(), "handshake.timeout");
        /// ```
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum Code {
            $( $(#[doc = $doc])+ $variant, )+
        }

        impl Code {
            /// Every code, in the order of the table (grouped by the part that fails).
            pub const ALL: &'static [Code] = &[$(Code::$variant),+];

            /// The dotted form, e.g. `"handshake.timeout"`: stable across releases.
            pub const fn as_str(self) -> &'static str {
                match self { $(Code::$variant => $code,)+ }
            }

            /// Which part of the system failed.
            pub const fn kind(self) -> ErrorKind {
                match self { $(Code::$variant => ErrorKind::$kind,)+ }
            }

            /// What the code means, in a sentence or two (its rustdoc).
            pub fn description(self) -> &'static str {
                match self { $(Code::$variant => concat!($($doc),+).trim_ascii(),)+ }
            }
        }
    };
}

codes! {
    /// A plugin's process could not be started: the executable is missing, not
    /// executable, or not runnable on this machine.
    ProcessSpawn = "process.spawn", Process;
    /// The plugin failed to start for a reason given by the error's cause.
    ProcessStart = "process.start", Process;
    /// The host could not wait for (reap) the plugin's process.
    ProcessWait = "process.wait", Process;
    /// The plugin's process did not exit even after SIGKILL (it is stuck in the kernel).
    ProcessUnkillable = "process.unkillable", Process;
    /// The host was asked to stop or reap a plugin it did not start (a reattached one).
    ProcessNotAChild = "process.not_a_child", Process;
    /// Reattach information names a process that no longer runs.
    ProcessReattachGone = "process.reattach_gone", Process;
    /// The supervisor's task failed; the supervised plugin is no longer managed.
    ProcessSupervisor = "process.supervisor", Process;
    /// The plugin could not install its signal handlers.
    ProcessSignal = "process.signal", Process;

    /// The plugin printed no handshake line within the handshake timeout.
    HandshakeTimeout = "handshake.timeout", Timeout;
    /// The plugin exited (or was killed) before it printed its handshake line.
    HandshakePluginExited = "handshake.plugin_exited", Handshake;
    /// The plugin's first line on stdout is not a go-plugin handshake line.
    HandshakeUnrecognizedLine = "handshake.unrecognized_line", Handshake;
    /// The handshake line's core protocol version is not a number.
    HandshakeBadCoreVersion = "handshake.bad_core_version", Handshake;
    /// The plugin speaks another core protocol version than go-plugin's 1.
    HandshakeIncompatibleCoreVersion = "handshake.incompatible_core_version", Handshake;
    /// The handshake line's app protocol version is not a number.
    HandshakeBadAppVersion = "handshake.bad_app_version", Handshake;
    /// Host and plugin have no app protocol version in common.
    HandshakeIncompatibleAppVersion = "handshake.incompatible_app_version", Handshake;
    /// The handshake line's network field is not a network name (`unix`, `tcp` or a custom name).
    HandshakeUnknownNetwork = "handshake.unknown_network", Handshake;
    /// The handshake line's address cannot be parsed for its network.
    HandshakeBadAddress = "handshake.bad_address", Handshake;
    /// The handshake line names a protocol other than `grpc` and `netrpc`.
    HandshakeUnknownProtocol = "handshake.unknown_protocol", Handshake;
    /// The plugin speaks go-plugin's net/rpc protocol; rpcplugin speaks gRPC only.
    HandshakeUnsupportedProtocol = "handshake.unsupported_protocol", Handshake;
    /// The handshake line's server certificate is not valid base64.
    HandshakeBadServerCert = "handshake.bad_server_cert", Security;
    /// A handshake line cannot be written: a field holds a `|` or a line break.
    HandshakeUnencodable = "handshake.unencodable", Handshake;
    /// The plugin could not write its handshake line (or reattach information) to stdout.
    HandshakeWrite = "handshake.write", Handshake;
    /// The plugin was started without its magic cookie: run by hand, not by its host.
    HandshakeMissingCookie = "handshake.missing_cookie", Handshake;
    /// The plugin's magic cookie has another value than the plugin expects.
    HandshakeBadCookie = "handshake.bad_cookie", Handshake;
    /// A magic cookie's key or value is empty or holds characters an environment
    /// variable cannot.
    HandshakeInvalidCookie = "handshake.invalid_cookie", Config;
    /// A port setting (`PLUGIN_MIN_PORT`, `PLUGIN_MAX_PORT`) is not a port number.
    HandshakeBadPort = "handshake.bad_port", Config;
    /// Only one of `PLUGIN_MIN_PORT` and `PLUGIN_MAX_PORT` was given to the plugin.
    HandshakeIncompletePortRange = "handshake.incomplete_port_range", Config;
    /// The plugin was given a `PLUGIN_MIN_PORT` above its `PLUGIN_MAX_PORT`.
    HandshakeInvertedPortRange = "handshake.inverted_port_range", Config;
    /// Reattach information (`PLUGIN_REATTACH` or JSON) is malformed.
    HandshakeBadReattach = "handshake.bad_reattach", Config;

    /// A configuration value is malformed or out of range; the message names the key
    /// and where it came from.
    ConfigInvalidValue = "config.invalid_value", Config;
    /// A configuration file holds a key that is no setting (the message suggests the
    /// closest one).
    ConfigUnknownKey = "config.unknown_key", Config;
    /// The configuration file does not exist.
    ConfigFileNotFound = "config.file_not_found", Config;
    /// The configuration file's extension is not `.toml`, `.yaml`, `.yml` or `.json`.
    ConfigFileFormat = "config.file_format", Config;
    /// No magic cookie is configured for this host or plugin.
    ConfigMissingCookie = "config.missing_cookie", Config;
    /// No app protocol version is configured.
    ConfigNoVersions = "config.no_versions", Config;
    /// `PLUGIN_MIN_PORT` is above `PLUGIN_MAX_PORT`, or only one of them is set.
    ConfigPortRange = "config.port_range", Config;
    /// Half of a certificate and key pair is configured.
    ConfigIncompleteIdentity = "config.incomplete_identity", Config;
    /// An executable checksum is not a SHA-256 digest in hex.
    ConfigInvalidChecksum = "config.invalid_checksum", Config;
    /// The plugin chose a network that this host's `PLUGIN_CLIENT_TRANSPORTS` excludes.
    ConfigTransportNotAllowed = "config.transport_not_allowed", Config;
    /// The host asked for a multiplexed broker and the plugin cannot serve one.
    ConfigMultiplexUnsupported = "config.multiplex_unsupported", Config;
    /// The reflection descriptors given to the plugin cannot be served.
    ConfigReflection = "config.reflection", Config;

    /// Nothing could be bound (a socket, a port).
    TransportBind = "transport.bind", Transport;
    /// A Unix socket name is taken by another process (the plugin tries the next name).
    TransportAddressInUse = "transport.address_in_use", Transport;
    /// The plugin announced an address where nothing answers.
    TransportConnect = "transport.connect", Transport;
    /// The plugin's gRPC server failed while serving.
    TransportServe = "transport.serve", Transport;
    /// A supervised plugin is restarting, or its supervisor gave up.
    TransportPluginDown = "transport.plugin_down", Transport;
    /// The plugin serves over a network this host has no connector for.
    TransportNoConnector = "transport.no_connector", Config;
    /// A custom network's name or address cannot be written in a handshake line.
    TransportBadEndpoint = "transport.bad_endpoint", Config;
    /// Host and plugin accept no network in common.
    TransportNoCommonNetwork = "transport.no_common_network", Config;
    /// Every TCP port in the allowed range is taken.
    TransportNoFreePort = "transport.no_free_port", Transport;
    /// The TCP port range is inverted.
    TransportPortRange = "transport.port_range", Config;
    /// A Unix socket path is longer than the operating system allows (108 bytes on Linux).
    TransportSocketPathTooLong = "transport.socket_path_too_long", Transport;
    /// The private socket directory could not be created or given its permissions.
    TransportSocketDir = "transport.socket_dir", Transport;
    /// The configured socket directory does not exist or is not usable.
    TransportSocketDirMissing = "transport.socket_dir_missing", Config;
    /// The socket directory could not be removed at stop.
    TransportSocketDirRemove = "transport.socket_dir_remove", Transport;
    /// A Unix socket could not be removed at stop.
    TransportSocketRemove = "transport.socket_remove", Transport;
    /// The socket could not be given to `PLUGIN_UNIX_SOCKET_GROUP`.
    TransportSocketGroup = "transport.socket_group", Security;
    /// `PLUGIN_UNIX_SOCKET_GROUP` names a group that does not exist.
    TransportUnknownGroup = "transport.unknown_group", Config;

    /// A TLS handshake failed for a reason the cause gives.
    SecurityTls = "security.tls", Security;
    /// The plugin refused this host's client certificate.
    SecurityClientCertRejected = "security.client_cert_rejected", Security;
    /// The plugin presented a certificate this host does not trust.
    SecurityServerCertRejected = "security.server_cert_rejected", Security;
    /// The certificate in the plugin's handshake line does not parse.
    SecurityBadServerCert = "security.bad_server_cert", Security;
    /// The host asked for mutual TLS and the plugin announced no certificate: a silent
    /// downgrade to plaintext, refused.
    SecurityPlaintextHandshake = "security.plaintext_handshake", Security;
    /// The plugin announced a certificate but does not speak TLS at its address.
    SecurityNotTls = "security.not_tls", Security;
    /// The plugin serves TLS but this host turned AutoMTLS off.
    SecurityUnexpectedCertificate = "security.unexpected_certificate", Security;
    /// The plugin executable's SHA-256 differs from the pinned checksum.
    SecurityChecksumMismatch = "security.checksum_mismatch", Security;
    /// The plugin executable could not be read to check its checksum.
    SecurityChecksumRead = "security.checksum_read", Security;
    /// The plugin has a certificate but no way to verify the host's.
    SecurityNoClientVerification = "security.no_client_verification", Security;
    /// A debug-mode plugin was asked to serve plaintext over TCP, which any local user
    /// could reach.
    SecurityDebugPlaintextTcp = "security.debug_plaintext_tcp", Security;
    /// The plugin's sandbox needs a kernel feature this kernel lacks (Landlock, its
    /// network rules, its scoping, or seccomp); the hint names it.
    SecuritySandboxUnsupported = "security.sandbox_unsupported", Security;
    /// A path named in the sandbox policy cannot be opened (missing, or not readable
    /// by the host).
    SecuritySandboxPath = "security.sandbox_path", Config;
    /// The sandbox could not be prepared or applied to the plugin's process.
    SecuritySandboxApply = "security.sandbox_apply", Security;

    /// A PEM value (file, `file://` URI or inline) is empty.
    CryptoEmptyValue = "crypto.empty_value", Config;
    /// A certificate or key file does not exist.
    CryptoFileNotFound = "crypto.file_not_found", Config;
    /// A certificate or key file cannot be read.
    CryptoFileUnreadable = "crypto.file_unreadable", Config;
    /// A certificate or key value is not PEM.
    CryptoNotPem = "crypto.not_pem", Config;
    /// A PEM value holds no certificate.
    CryptoNoCertificate = "crypto.no_certificate", Config;
    /// A PEM value holds no private key.
    CryptoNoPrivateKey = "crypto.no_private_key", Config;
    /// A certificate is not valid X.509.
    CryptoBadCertificate = "crypto.bad_certificate", Security;
    /// A private key cannot be used (unsupported algorithm or malformed).
    CryptoBadPrivateKey = "crypto.bad_private_key", Config;
    /// A certificate and key cannot serve for TLS together (the key's algorithm is not
    /// supported, or it does not belong to the certificate).
    CryptoBadIdentity = "crypto.bad_identity", Security;
    /// The private key does not match the certificate.
    CryptoKeyMismatch = "crypto.key_mismatch", Config;
    /// A certificate has expired.
    CryptoCertExpired = "crypto.cert_expired", Security;
    /// A certificate is not valid yet (check the clock).
    CryptoCertNotYetValid = "crypto.cert_not_yet_valid", Security;
    /// A certificate is not valid under the given CA.
    CryptoChainInvalid = "crypto.chain_invalid", Security;
    /// A CA certificate cannot be used as a trust anchor.
    CryptoBadCaCertificate = "crypto.bad_ca_certificate", Security;
    /// No trusted root certificates were given.
    CryptoNoRoots = "crypto.no_roots", Config;
    /// A requested certificate validity is out of range.
    CryptoBadValidity = "crypto.bad_validity", Config;
    /// A certificate could not be generated.
    CryptoGenerate = "crypto.generate", Security;
    /// The system's random number generator failed.
    CryptoRandom = "crypto.random", Security;
    /// A rustls configuration could not be built from the certificates given.
    CryptoTlsConfig = "crypto.tls_config", Security;

    /// The plugin's health check failed (the call itself failed).
    ProtocolHealth = "protocol.health", Protocol;
    /// The plugin answered its health check with a status other than SERVING.
    ProtocolNotServing = "protocol.not_serving", Protocol;
    /// The plugin did not answer its health check in time.
    ProtocolHealthTimeout = "protocol.health_timeout", Timeout;

    /// The broker was used before the plugin serves.
    BrokerNotServing = "broker.not_serving", Config;
    /// The broker is closed: its plugin or host is stopping.
    BrokerClosed = "broker.closed", Transport;
    /// A brokered id could not be connected to.
    BrokerConnect = "broker.connect", Transport;
    /// The peer announced no connection for a broker id in time.
    BrokerDialTimeout = "broker.dial_timeout", Timeout;
    /// A broker id could not be announced: the peer reads no announcements.
    BrokerAnnounceTimeout = "broker.announce_timeout", Timeout;
    /// A broker id was announced at an address that cannot be dialled.
    BrokerBadAddress = "broker.bad_address", Protocol;
    /// Another dial of the same broker id took its connection information.
    BrokerDialSuperseded = "broker.dial_superseded", Protocol;
    /// The peer refused a multiplexed broker stream.
    BrokerKnockRefused = "broker.knock_refused", Protocol;
    /// The peer answered a multiplexed broker knock with something else.
    BrokerBadAck = "broker.bad_ack", Protocol;
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing a [`Code`] from a string that names none.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown error code {0:?}")]
pub struct ParseCodeError(String);

impl FromStr for Code {
    type Err = ParseCodeError;

    /// Parses the dotted form (`"handshake.timeout"`), as logs and docs show it.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Code::ALL
            .iter()
            .copied()
            .find(|code| code.as_str() == s)
            .ok_or_else(|| ParseCodeError(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_code_is_unique_dotted_and_round_trips() {
        let mut seen = HashSet::new();
        for &code in Code::ALL {
            let s = code.as_str();
            assert!(seen.insert(s), "{s} is listed twice");
            let (area, name) = s.split_once('.').expect("dotted");
            assert!(!area.is_empty() && !name.is_empty(), "{s}");
            assert!(
                s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'.' || b == b'_'),
                "{s} is not lowercase snake case"
            );
            assert_eq!(s.parse::<Code>(), Ok(code));
            assert!(!code.description().is_empty(), "{s} has no description");
        }
        assert!("handshake.nope".parse::<Code>().is_err());
    }

    #[test]
    fn the_kind_follows_from_the_code() {
        assert_eq!(Code::HandshakeTimeout.kind(), ErrorKind::Timeout);
        assert_eq!(Code::HandshakeBadPort.kind(), ErrorKind::Config);
        assert_eq!(Code::SecurityTls.kind(), ErrorKind::Security);
    }
}
