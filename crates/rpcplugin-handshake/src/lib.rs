//! The go-plugin start-up handshake, sans-IO.
//!
//! A go-plugin host starts the plugin as a child process, tells it who it is and
//! what it speaks through environment variables (a magic cookie, the app protocol
//! versions, AutoMTLS and port settings), and reads back one line on the plugin's
//! stdout: `CORE|APP|NETWORK|ADDRESS|PROTOCOL|CERT`, saying where the plugin's gRPC
//! server listens. This crate holds every rule of that exchange and nothing else:
//!
//! - [`HandshakeLine`]: the line, with a strict [`encode`](HandshakeLine::encode)
//!   and a tolerant [`parse`](HandshakeLine::parse) (strict in what we send,
//!   tolerant in what we accept, as go-plugin's hosts are);
//! - [`MagicCookie`] and [`NOT_A_TERMINAL_PROGRAM`]: how a plugin tells that a host,
//!   and not a person, started it;
//! - [`parse_versions`], [`negotiate`], [`check_app_version`], [`check_line`]: app
//!   protocol version negotiation on both sides;
//! - [`PluginEnv`] (host side) and [`ReceivedEnv`] (plugin side): the environment
//!   contract, with the variable names in [`mod@env`].
//!
//! Like rustls, which "does not take care of network IO", this crate does no IO at
//! all: no sockets, no processes, no async runtime, and it never reads the process
//! environment. Callers pass strings in (a line they read, a lookup function over an
//! environment they own) and get typed values or an [`Error`] back. That keeps every
//! rule unit-testable and fuzzable, and leaves spawning, reading and listening to the
//! server and client crates.
//!
//! Every error is an [`rpcplugin_core::Error`] of kind [`ErrorKind::Handshake`] (or
//! [`ErrorKind::Config`] for a malformed configuration value) with a stable
//! `handshake.*` [`code`](Error::code) and, when the user can act on it, a
//! [`hint`](Error::hint). Messages quote what was received, cut to about 200
//! characters.
//!
//! # Example
//!
//! ```
//! use std::collections::HashMap;
//! use rpcplugin_handshake::{
//!     check_line, negotiate, Endpoint, HandshakeLine, MagicCookie, Negotiated, PluginEnv,
//!     ReceivedEnv,
//! };
//!
//! // Host: the environment to start the plugin with.
//! let cookie = MagicCookie::new("BASIC_PLUGIN", "hello")?;
//! let mut plugin_env = PluginEnv::new(cookie.clone());
//! plugin_env.protocol_versions = vec![3, 1];
//! let vars: HashMap<String, String> = plugin_env.to_vars().into_iter().collect();
//!
//! // Plugin: check the cookie, read the rest, pick a version, announce where it listens.
//! let received = ReceivedEnv::from_lookup(&cookie, |name| vars.get(name).cloned())?;
//! let chosen = received.negotiate(&[1, 2, 3]);
//! assert_eq!(chosen, Negotiated::Agreed(3));
//! let endpoint = Endpoint::Tcp("127.0.0.1:10000".parse()?);
//! let announced = HandshakeLine::new(chosen.version(), endpoint).encode();
//! assert_eq!(announced, "1|3|tcp|127.0.0.1:10000|grpc|\n");
//!
//! // Host: parse the first stdout line and check it against what it speaks.
//! let line = HandshakeLine::parse(&announced)?;
//! check_line(&line, &plugin_env.protocol_versions)?;
//!
//! // A line captured from a real go-plugin 1.0.1 plugin parses too.
//! let go = HandshakeLine::parse("1|1|unix|/tmp/plugin2363759283|grpc|\n")?;
//! assert_eq!(go.endpoint, Endpoint::Unix("/tmp/plugin2363759283".into()));
//! assert_eq!(go.server_cert, None);
//!
//! // Other plugin versions are not agreed, and the host says why.
//! assert_eq!(negotiate(&[2], Some(&[1])), Negotiated::NoneInCommon { fallback: 2 });
//! let err = check_line(&HandshakeLine::parse("1|2|unix|/tmp/p|grpc|")?, &[1]).unwrap_err();
//! assert_eq!(err.code(), rpcplugin_core::Code::HandshakeIncompatibleAppVersion);
//! assert_eq!(err.code().as_str(), "handshake.incompatible_app_version");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! This crate has no feature flags.

mod cookie;
mod environment;
mod line;
mod reattach;
mod version;

pub use rpcplugin_core::{Endpoint, Error, ErrorKind, Network, Result};

pub use cookie::{MagicCookie, NOT_A_TERMINAL_PROGRAM};
pub use environment::{PluginEnv, ReceivedEnv};
pub use line::{CORE_PROTOCOL_VERSION, HandshakeLine, Protocol};
pub use reattach::ReattachConfig;
pub use version::{
    Negotiated, VersionList, check_app_version, check_line, negotiate, parse_versions,
};

/// Names of the environment variables a go-plugin host sets for its plugin.
///
/// The magic cookie's name is not here: each application chooses its own
/// ([`MagicCookie::key`]).
pub mod env {
    /// The app protocol versions the host speaks, comma-separated, in any order
    /// (go-plugin joins the keys of a Go map, so the order is random).
    pub const PLUGIN_PROTOCOL_VERSIONS: &str = "PLUGIN_PROTOCOL_VERSIONS";
    /// AutoMTLS: the host's client certificate as a whole, multi-line PEM.
    pub const PLUGIN_CLIENT_CERT: &str = "PLUGIN_CLIENT_CERT";
    /// The lowest TCP port the plugin may listen on (go-plugin hosts send 10000).
    pub const PLUGIN_MIN_PORT: &str = "PLUGIN_MIN_PORT";
    /// The highest TCP port the plugin may listen on (go-plugin hosts send 25000).
    pub const PLUGIN_MAX_PORT: &str = "PLUGIN_MAX_PORT";
    /// The directory to create Unix sockets in (go-plugin 1.5 and later).
    pub const PLUGIN_UNIX_SOCKET_DIR: &str = "PLUGIN_UNIX_SOCKET_DIR";
    /// The group that may use the plugin's Unix sockets (go-plugin 1.5 and later).
    pub const PLUGIN_UNIX_SOCKET_GROUP: &str = "PLUGIN_UNIX_SOCKET_GROUP";
    /// `true` when the host wants the gRPC broker multiplexed over the one plugin
    /// connection (go-plugin 1.6 and later).
    pub const PLUGIN_MULTIPLEX_GRPC: &str = "PLUGIN_MULTIPLEX_GRPC";
}

/// How many characters of received input an error message quotes.
const QUOTE_LIMIT: usize = 200;

/// Quotes received input for an error message: Debug-escaped (so control
/// characters and line breaks stay visible on one line) and cut to
/// [`QUOTE_LIMIT`] characters, because a misbehaving plugin can print a 64 KiB line.
fn quote(s: &str) -> String {
    match s.char_indices().nth(QUOTE_LIMIT) {
        None => format!("{s:?}"),
        Some((cut, _)) => format!("{:?}... ({} bytes in all)", &s[..cut], s.len()),
    }
}

/// The true spellings of Go's `strconv.ParseBool` (`1`, `t`, `true`), in any ASCII
/// case and ignoring surrounding whitespace: go-plugin 1.6+ reads both the
/// handshake's multiplexing field and `PLUGIN_MULTIPLEX_GRPC` with it.
fn parse_go_true(s: &str) -> bool {
    let s = s.trim();
    s.eq_ignore_ascii_case("true") || s.eq_ignore_ascii_case("t") || s == "1"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_escapes_and_truncates() {
        assert_eq!(quote("a\r\nb"), r#""a\r\nb""#);
        let long = "é".repeat(500);
        let q = quote(&long);
        assert!(q.starts_with(&format!("\"{}\"...", "é".repeat(QUOTE_LIMIT))));
        assert!(q.ends_with("(1000 bytes in all)"));
    }
}
