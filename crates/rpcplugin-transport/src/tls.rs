//! TLS over any [`Stream`]: the server side accepts, the host side connects, and
//! failures are classified so that callers can say which side refused what.
//!
//! The rustls configurations come from the caller (rpcplugin-crypto builds them);
//! this module only runs handshakes, bounded in time, and reads their errors.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{AlertDescription, CertificateError, ClientConfig, ServerConfig};

use crate::Stream;

/// How long a TLS handshake may take before the connection is dropped. Local
/// handshakes take about a millisecond; the bound is for peers that connect and
/// then send nothing.
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

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
        match tokio::time::timeout(timeout, accept).await {
            Ok(stream) => Ok(Self::Tls(Box::new(stream?.into()))),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the peer did not complete the TLS handshake in time",
            )),
        }
    }

    /// Runs the client side of a TLS handshake on this stream, within `timeout`.
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
        match tokio::time::timeout(timeout, connect).await {
            Ok(stream) => Ok(Self::Tls(Box::new(stream?.into()))),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the peer did not complete the TLS handshake in time",
            )),
        }
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
                if let Some(inner) = io_err.get_ref()
                    && let Some(rustls_err) = inner.downcast_ref::<rustls::Error>()
                {
                    return Some(Self::from_rustls(rustls_err));
                }
                saw_eof |= io_err.kind() == io::ErrorKind::UnexpectedEof;
                saw_timeout |= io_err.kind() == io::ErrorKind::TimedOut;
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
            Self::PeerCertificateRefused(_) | Self::NoPeerCertificate => true,
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
