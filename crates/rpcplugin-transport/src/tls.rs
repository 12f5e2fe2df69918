//! TLS over any [`Stream`]: the server side accepts, the host side connects, and
//! failures are classified so that callers can say which side refused what.
//!
//! The rustls configurations come from the caller (rpcplugin-crypto builds them);
//! this module only runs handshakes, bounded in time, and reads their errors.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

use rustls::pki_types::ServerName;
use rustls::{AlertDescription, CertificateError, ClientConfig, ServerConfig};

use crate::Stream;

/// How long a TLS handshake may take before the connection is dropped. Local
/// handshakes take about a millisecond; the bound is for peers that connect and
/// then send nothing.
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a TLS client waits after its handshake for the server's first bytes.
///
/// With TLS 1.3 a server judges the client's certificate only after the client has
/// finished its side of the handshake, so a refusal arrives as an alert on the
/// first read. Every HTTP/2 server speaks first (its SETTINGS frame), so waiting
/// for that read turns "the plugin refused our certificate" into a handshake error
/// instead of a broken pipe on the first call. A server that says nothing within
/// this time is accepted as it is.
pub const TLS_CONFIRM_WAIT: Duration = Duration::from_secs(1);

/// A TLS connection over a [`Stream`], as returned by [`Stream::accept_tls`] and
/// [`Stream::connect_tls`].
#[derive(Debug)]
pub struct TlsStream {
    inner: tokio_rustls::TlsStream<Stream>,
    /// Bytes read while confirming the handshake, handed out before anything else.
    head: Vec<u8>,
    pos: usize,
}

impl TlsStream {
    /// The underlying stream and the TLS session's state (protocol version, ALPN,
    /// the peer's certificates).
    pub fn get_ref(&self) -> (&Stream, &rustls::CommonState) {
        self.inner.get_ref()
    }
}

impl AsyncRead for TlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos < this.head.len() {
            let n = buf.remaining().min(this.head.len() - this.pos);
            buf.put_slice(&this.head[this.pos..this.pos + n]);
            this.pos += n;
            if this.pos == this.head.len() {
                this.head = Vec::new();
                this.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The error of a server that closed the connection right after the handshake,
/// before saying anything: what a TLS 1.3 server that refuses the client's
/// certificate without an alert looks like.
#[derive(Debug)]
struct ClosedAfterHandshake;

impl std::fmt::Display for ClosedAfterHandshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the peer closed the connection right after the tls handshake")
    }
}

impl std::error::Error for ClosedAfterHandshake {}

fn timed_out() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "the peer did not complete the TLS handshake in time",
    )
}

impl Stream {
    /// Runs the server side of a TLS handshake on this stream, within `timeout`.
    ///
    /// # Errors
    ///
    /// The io error of the handshake (see [`TlsFailure::find`] to classify it), or
    /// [`io::ErrorKind::TimedOut`].
    pub async fn accept_tls(
        self,
        config: Arc<ServerConfig>,
        timeout: Duration,
    ) -> io::Result<Self> {
        let accept = tokio_rustls::TlsAcceptor::from(config).accept(self);
        let stream = tokio::time::timeout(timeout, accept)
            .await
            .map_err(|_| timed_out())??;
        Ok(Self::Tls(Box::new(TlsStream {
            inner: stream.into(),
            head: Vec::new(),
            pos: 0,
        })))
    }

    /// Runs the client side of a TLS handshake on this stream, within `timeout`,
    /// then waits up to [`TLS_CONFIRM_WAIT`] for the server's first bytes so that a
    /// server refusing this client's certificate fails here, with its alert.
    ///
    /// # Errors
    ///
    /// As [`Stream::accept_tls`].
    pub async fn connect_tls(
        self,
        config: Arc<ClientConfig>,
        server_name: ServerName<'static>,
        timeout: Duration,
    ) -> io::Result<Self> {
        let connect = tokio_rustls::TlsConnector::from(config).connect(server_name, self);
        let mut stream = tokio::time::timeout(timeout, connect)
            .await
            .map_err(|_| timed_out())??;
        let mut head = vec![0; 16 * 1024];
        // A pending TLS read keeps what it has buffered, so giving up on it loses
        // nothing.
        let read = tokio::time::timeout(TLS_CONFIRM_WAIT.min(timeout), stream.read(&mut head));
        let n = match read.await {
            Ok(Ok(0)) => {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    ClosedAfterHandshake,
                ));
            }
            Ok(Ok(n)) => n,
            Ok(Err(err)) => return Err(err),
            Err(_) => 0,
        };
        head.truncate(n);
        Ok(Self::Tls(Box::new(TlsStream {
            inner: stream.into(),
            head,
            pos: 0,
        })))
    }

    /// Whether this stream runs TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self, Self::Tls(_))
    }
}

/// Why a TLS connection failed, as far as the error says.
///
/// Found anywhere in an error's source chain (tonic, hyper and io errors wrap the
/// rustls error) by [`TlsFailure::find`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum TlsFailure {
    /// This side refused the certificate the peer presented (not the pinned one,
    /// expired, not yet valid, not issued by a trusted CA, wrong name...).
    PeerCertificateRefused(CertificateError),
    /// The peer presented no certificate although one is required.
    NoPeerCertificate,
    /// The peer refused this side: it sent this alert (typically
    /// `CertificateRequired`, `BadCertificate` or `UnknownCA` when it does not trust
    /// this side's certificate).
    RefusedByPeer(AlertDescription),
    /// What arrived is not TLS: the peer speaks plaintext.
    NotTls,
    /// The peer closed the connection in the middle of the handshake (a plaintext
    /// server typically does this when it receives a TLS hello).
    ClosedDuringHandshake,
    /// The server closed the connection right after the handshake without a word:
    /// it most likely refused this client's certificate without saying so.
    ClosedAfterHandshake,
    /// The handshake did not finish in time.
    TimedOut,
    /// Another TLS error.
    Other(rustls::Error),
}

impl TlsFailure {
    /// Looks for a TLS failure in `err` and its sources.
    pub fn find(err: &(dyn std::error::Error + 'static)) -> Option<Self> {
        let mut current = Some(err);
        let mut saw_eof = false;
        let mut saw_timeout = false;
        while let Some(err) = current {
            if let Some(rustls_err) = err.downcast_ref::<rustls::Error>() {
                return Some(Self::from_rustls(rustls_err));
            }
            if let Some(io_err) = err.downcast_ref::<io::Error>() {
                // io::Error::source() skips the wrapped error itself.
                if let Some(inner) = io_err.get_ref() {
                    if let Some(rustls_err) = inner.downcast_ref::<rustls::Error>() {
                        return Some(Self::from_rustls(rustls_err));
                    }
                    if inner.is::<ClosedAfterHandshake>() {
                        return Some(Self::ClosedAfterHandshake);
                    }
                }
                saw_eof |= io_err.kind() == io::ErrorKind::UnexpectedEof;
                saw_timeout |= io_err.kind() == io::ErrorKind::TimedOut;
            }
            // h2 keeps an io error as its kind and message only, so an alert that
            // arrives after the handshake (TLS 1.3 client certificate refusals) is
            // only text by the time it reaches a gRPC status.
            if let Some(alert) = alert_in_text(&err.to_string()) {
                return Some(Self::RefusedByPeer(alert));
            }
            current = err.source();
        }
        if saw_timeout {
            Some(Self::TimedOut)
        } else if saw_eof {
            Some(Self::ClosedDuringHandshake)
        } else {
            None
        }
    }

    fn from_rustls(err: &rustls::Error) -> Self {
        match err {
            rustls::Error::InvalidCertificate(cert) => Self::PeerCertificateRefused(cert.clone()),
            rustls::Error::NoCertificatesPresented => Self::NoPeerCertificate,
            rustls::Error::AlertReceived(alert) => Self::RefusedByPeer(*alert),
            rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
                Self::NotTls
            }
            other => Self::Other(other.clone()),
        }
    }

    /// Whether the failure is about a certificate (either side's).
    pub fn is_certificate_problem(&self) -> bool {
        match self {
            Self::PeerCertificateRefused(_)
            | Self::NoPeerCertificate
            | Self::ClosedAfterHandshake => true,
            Self::RefusedByPeer(alert) => matches!(
                alert,
                AlertDescription::BadCertificate
                    | AlertDescription::CertificateRequired
                    | AlertDescription::UnknownCA
                    | AlertDescription::CertificateUnknown
                    | AlertDescription::CertificateExpired
                    | AlertDescription::CertificateRevoked
                    | AlertDescription::UnsupportedCertificate
                    | AlertDescription::AccessDenied
                    | AlertDescription::DecryptError
            ),
            _ => false,
        }
    }
}

/// The alert in rustls's message for a received alert ("received fatal alert: X"),
/// for the alerts that say why a peer refused.
fn alert_in_text(text: &str) -> Option<AlertDescription> {
    let name = text
        .split("received fatal alert: ")
        .nth(1)?
        .split(|c: char| !c.is_ascii_alphanumeric())
        .next()?;
    let alert = match name {
        "BadCertificate" => AlertDescription::BadCertificate,
        "CertificateRequired" => AlertDescription::CertificateRequired,
        "UnknownCA" => AlertDescription::UnknownCA,
        "CertificateUnknown" => AlertDescription::CertificateUnknown,
        "CertificateExpired" => AlertDescription::CertificateExpired,
        "CertificateRevoked" => AlertDescription::CertificateRevoked,
        "UnsupportedCertificate" => AlertDescription::UnsupportedCertificate,
        "AccessDenied" => AlertDescription::AccessDenied,
        "DecryptError" => AlertDescription::DecryptError,
        "HandshakeFailure" => AlertDescription::HandshakeFailure,
        "ProtocolVersion" => AlertDescription::ProtocolVersion,
        "NoApplicationProtocol" => AlertDescription::NoApplicationProtocol,
        _ => return None,
    };
    Some(alert)
}

impl std::fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::PeerCertificateRefused(CertificateError::Expired) => {
                f.write_str("the peer's certificate has expired")
            }
            Self::PeerCertificateRefused(CertificateError::NotValidYet) => {
                f.write_str("the peer's certificate is not valid yet")
            }
            Self::PeerCertificateRefused(CertificateError::UnknownIssuer) => {
                f.write_str("the peer's certificate is not issued by a trusted ca")
            }
            Self::PeerCertificateRefused(CertificateError::NotValidForName) => {
                f.write_str("the peer's certificate does not name this server")
            }
            Self::PeerCertificateRefused(CertificateError::Other(other)) => {
                write!(f, "the peer's certificate was refused: {other}")
            }
            Self::PeerCertificateRefused(other) => {
                write!(f, "the peer's certificate was refused: {other:?}")
            }
            Self::NoPeerCertificate => f.write_str("the peer presented no certificate"),
            Self::RefusedByPeer(alert) => write!(f, "the peer refused the connection ({alert:?})"),
            Self::NotTls => f.write_str("the peer does not speak tls"),
            Self::ClosedDuringHandshake => {
                f.write_str("the peer closed the connection during the tls handshake")
            }
            Self::ClosedAfterHandshake => {
                f.write_str("the peer closed the connection right after the tls handshake")
            }
            Self::TimedOut => f.write_str("the tls handshake timed out"),
            Self::Other(err) => write!(f, "tls failed: {err}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_rustls_errors_inside_io_errors() {
        let io_err = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(AlertDescription::CertificateRequired),
        );
        assert_eq!(
            TlsFailure::find(&io_err),
            Some(TlsFailure::RefusedByPeer(
                AlertDescription::CertificateRequired
            ))
        );
        assert!(TlsFailure::find(&io_err).unwrap().is_certificate_problem());
    }

    #[test]
    fn finds_them_deeper_in_a_chain() {
        #[derive(Debug)]
        struct Outer(io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("outer")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let err = Outer(io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::Expired),
        ));
        let failure = TlsFailure::find(&err).unwrap();
        assert_eq!(
            failure,
            TlsFailure::PeerCertificateRefused(CertificateError::Expired)
        );
        assert_eq!(failure.to_string(), "the peer's certificate has expired");
    }

    #[test]
    fn alerts_flattened_to_text_are_still_recognised() {
        // What h2 leaves of a TLS alert: the io error's kind and message.
        let flattened = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(AlertDescription::UnknownCA).to_string(),
        );
        assert_eq!(
            TlsFailure::find(&flattened),
            Some(TlsFailure::RefusedByPeer(AlertDescription::UnknownCA))
        );
        let other = io::Error::other("received fatal alert: SomethingNew");
        assert_eq!(TlsFailure::find(&other), None);
    }

    #[test]
    fn eof_and_timeouts_are_recognised_and_other_errors_are_not() {
        let eof = io::Error::new(io::ErrorKind::UnexpectedEof, "tls handshake eof");
        assert_eq!(
            TlsFailure::find(&eof),
            Some(TlsFailure::ClosedDuringHandshake)
        );
        let slow = io::Error::new(io::ErrorKind::TimedOut, "slow");
        assert_eq!(TlsFailure::find(&slow), Some(TlsFailure::TimedOut));
        let refused = io::Error::new(io::ErrorKind::ConnectionRefused, "no");
        assert_eq!(TlsFailure::find(&refused), None);
    }
}
