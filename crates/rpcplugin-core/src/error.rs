//! The one error type shared by the layers: what happened, why, and what to do.

use crate::Code;
use std::error::Error as StdError;
use std::fmt;

/// A `Result` whose error defaults to [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which part of the plugin system failed; lets callers branch without string matching.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Binding, connecting, or a broken connection (sockets, ports, HTTP/2).
    Transport,
    /// The start-up handshake: cookie, handshake line, version negotiation.
    Handshake,
    /// A peer broke the protocol after the handshake (unexpected reply, bad status).
    Protocol,
    /// TLS, certificates, checksums, permissions.
    Security,
    /// A configuration value that is missing, malformed or contradictory.
    Config,
    /// Launching, signalling or reaping the plugin process.
    Process,
    /// Something did not happen in the time allowed.
    Timeout,
}

impl ErrorKind {
    /// The lowercase name used in codes and logs (`"handshake"`, `"timeout"`...).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Transport => "transport",
            Self::Handshake => "handshake",
            Self::Protocol => "protocol",
            Self::Security => "security",
            Self::Config => "config",
            Self::Process => "process",
            Self::Timeout => "timeout",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An rpcplugin error.
///
/// Display is the terse, lowercase "what happened" and never repeats its
/// [`source`](StdError::source); [`hint`](Error::hint) says what the user should do;
/// [`code`](Error::code) is a stable dotted identifier (`"handshake.timeout"`) that
/// is safe to match on across releases (a [`Code`]; its kind is the error's kind). Use
/// [`render`] to show the whole chain.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    code: Code,
    message: String,
    hint: Option<String>,
    #[source]
    source: Option<Box<dyn StdError + Send + Sync + 'static>>,
}

impl Error {
    /// A new error with its stable `code` (which decides its kind) and a terse
    /// lowercase `message`.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            hint: None,
            source: None,
        }
    }

    /// Adds what the user should do about it.
    #[must_use]
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Records the lower-level error that caused this one.
    #[must_use]
    pub fn with_source(mut self, source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Which part of the system failed.
    pub fn kind(&self) -> ErrorKind {
        self.code.kind()
    }

    /// The stable code, e.g. [`Code::TransportSocketPathTooLong`]
    /// (`"transport.socket_path_too_long"` in logs).
    pub fn code(&self) -> Code {
        self.code
    }

    /// The terse description (the same text as Display).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// What the user should do, when there is something to do.
    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }

    /// True for [`ErrorKind::Timeout`].
    pub fn is_timeout(&self) -> bool {
        self.kind() == ErrorKind::Timeout
    }
}

/// Renders an error for a human: its message, each cause on its own line, then
/// every hint found along the chain.
///
/// ```
/// use rpcplugin_core::{Code, Error, render};
/// let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
/// let err = Error::new(Code::ProcessSpawn, "cannot start plugin ./kv")
///     .with_source(io)
///     .with_hint("check the plugin path");
/// assert_eq!(
///     render(&err),
///     "error: cannot start plugin ./kv\n  caused by: no such file\n  hint: check the plugin path"
/// );
/// ```
pub fn render(err: &(dyn StdError + 'static)) -> String {
    let mut out = format!("error: {err}");
    let mut hints = Vec::new();
    let mut current: Option<&(dyn StdError + 'static)> = Some(err);
    let mut previous: Option<String> = None;
    while let Some(e) = current {
        let text = e.to_string();
        // Wrappers that display their inner error (tonic's connect errors do) would
        // repeat the same line.
        if previous.is_some() && previous.as_deref() != Some(text.as_str()) {
            out.push_str(&format!("\n  caused by: {text}"));
        }
        previous = Some(text);
        if let Some(hint) = e.downcast_ref::<Error>().and_then(Error::hint) {
            hints.push(hint.to_owned());
        }
        current = e.source();
    }
    for hint in hints {
        out.push_str(&format!("\n  hint: {hint}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_skips_a_cause_that_repeats_the_line_above() {
        #[derive(Debug)]
        struct Echo(Error);
        impl fmt::Display for Echo {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
        impl StdError for Echo {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        let inner = Error::new(Code::SecurityTls, "tls handshake failed");
        let outer = Error::new(Code::TransportConnect, "cannot connect").with_source(Echo(inner));
        let text = render(&outer);
        assert_eq!(text.matches("tls handshake failed").count(), 1, "{text}");
    }

    #[test]
    fn display_is_the_message_only() {
        let err = Error::new(Code::HandshakeTimeout, "no handshake after 5s")
            .with_source(std::io::Error::other("inner"));
        assert_eq!(err.to_string(), "no handshake after 5s");
        assert_eq!(err.source().unwrap().to_string(), "inner");
        assert!(err.is_timeout());
    }

    #[test]
    fn render_collects_nested_hints() {
        let inner =
            Error::new(Code::TransportBind, "cannot bind").with_hint("use a shorter socket dir");
        let outer = Error::new(Code::ProcessStart, "plugin failed to start").with_source(inner);
        let text = render(&outer);
        assert!(text.starts_with("error: plugin failed to start\n  caused by: cannot bind"));
        assert!(text.ends_with("hint: use a shorter socket dir"));
    }

    #[test]
    fn kinds_have_lowercase_names() {
        assert_eq!(ErrorKind::Security.to_string(), "security");
        assert_eq!(ErrorKind::Config.as_str(), "config");
    }
}
