//! The vocabulary every rpcplugin layer shares.
//!
//! rpcplugin runs plugins as child processes that speak HashiCorp go-plugin's gRPC
//! protocol. This crate holds the few types that all of its layers agree on and
//! nothing else: the [`Error`] type (with a [`kind`](Error::kind), a stable
//! [`code`](Error::code) and an actionable [`hint`](Error::hint)), and the
//! [`Endpoint`] / [`Network`] a plugin listens on.
//!
//! ```
//! use rpcplugin_core::{Code, Error, ErrorKind};
//!
//! let err = Error::new(Code::HandshakeBadCookie, "magic cookie mismatch")
//!     .with_hint("this binary is a plugin; start it from its host application");
//! assert_eq!(err.kind(), ErrorKind::Handshake);
//! assert_eq!(err.code(), Code::HandshakeBadCookie);
//! assert_eq!(err.code().as_str(), "handshake.bad_cookie");
//! assert_eq!(err.to_string(), "magic cookie mismatch");
//! assert!(rpcplugin_core::render(&err).contains("hint: this binary is a plugin"));
//! ```

mod code;
mod endpoint;
mod error;

pub use code::{Code, ParseCodeError};
pub use endpoint::{BadEndpoint, Endpoint, Network, NetworkName, ParseNetworkError};
pub use error::{Error, ErrorKind, Result, render};
