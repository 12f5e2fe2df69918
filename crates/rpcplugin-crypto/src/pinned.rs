//! rustls verifiers that trust exactly one certificate, for go-plugin's AutoMTLS.
//!
//! go-plugin's AutoMTLS certificates are self-signed CA:TRUE certificates used as
//! end-entity certificates; webpki rejects those, so these verifiers do not build a
//! chain at all. They accept a peer iff its end-entity DER equals the pinned DER, the
//! pinned certificate is within its validity dates, and the handshake signature verifies
//! with the pinned certificate's key.
//!
//! Validity dates: Go's crypto/tls on both sides of go-plugin runs `x509.Verify` against a
//! pool holding only the peer's certificate, and that checks not-before/not-after. We do
//! the same, so an expired pinned certificate fails here as it would in Go. Host names,
//! EKU and basic constraints are not checked: the exact certificate is trusted, and
//! go-plugin's own certificates would fail a strict EKU/CA check.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, SignatureScheme,
};

/// The error a pinned verifier returns for a certificate other than the pinned one.
#[derive(Debug)]
struct NotPinned;

impl std::fmt::Display for NotPinned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("peer certificate is not the pinned certificate")
    }
}

impl std::error::Error for NotPinned {}

/// The checks shared by both directions.
#[derive(Debug)]
struct Pin {
    cert: CertificateDer<'static>,
    /// Validity window in unix seconds, read once from the pinned certificate.
    not_before: u64,
    not_after: u64,
    algs: WebPkiSupportedAlgorithms,
}

impl Pin {
    fn new(
        cert: CertificateDer<'static>,
        algs: WebPkiSupportedAlgorithms,
    ) -> rpcplugin_core::Result<Self> {
        let info = crate::CertificateInfo::parse(&cert)?;
        let secs = |t: std::time::SystemTime| {
            t.duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        };
        Ok(Self {
            not_before: secs(info.not_before),
            not_after: secs(info.not_after),
            cert,
            algs,
        })
    }

    fn check(&self, end_entity: &CertificateDer<'_>, now: UnixTime) -> Result<(), rustls::Error> {
        if end_entity.as_ref() != self.cert.as_ref() {
            return Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(NotPinned)),
            )));
        }
        let now = now.as_secs();
        if now > self.not_after {
            return Err(rustls::Error::InvalidCertificate(CertificateError::Expired));
        }
        if now < self.not_before {
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidYet,
            ));
        }
        Ok(())
    }
}

/// Server side of AutoMTLS: requires a client certificate and accepts only the pinned one.
#[derive(Debug)]
pub struct PinnedClientCertVerifier {
    pin: Pin,
}

impl PinnedClientCertVerifier {
    /// Trusts exactly `client_cert`, verifying handshake signatures with `provider`'s
    /// algorithms (the aws-lc-rs provider covers ECDSA P-521/SHA-512, which Go sends).
    pub fn new(
        client_cert: CertificateDer<'static>,
        provider: &rustls::crypto::CryptoProvider,
    ) -> rpcplugin_core::Result<Self> {
        Ok(Self {
            pin: Pin::new(client_cert, provider.signature_verification_algorithms)?,
        })
    }
}

impl ClientCertVerifier for PinnedClientCertVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    // No CA names are sent: Go's client then offers its only certificate regardless
    // of issuer, and a hint naming the pinned subject would add nothing.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.pin.check(end_entity, now)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.pin.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.pin.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.pin.algs.supported_schemes()
    }
}

/// Client side of AutoMTLS: accepts only the pinned server certificate, whatever
/// server name was requested.
#[derive(Debug)]
pub struct PinnedServerCertVerifier {
    pin: Pin,
}

impl PinnedServerCertVerifier {
    /// Trusts exactly `server_cert`, verifying handshake signatures with `provider`'s
    /// algorithms.
    pub fn new(
        server_cert: CertificateDer<'static>,
        provider: &rustls::crypto::CryptoProvider,
    ) -> rpcplugin_core::Result<Self> {
        Ok(Self {
            pin: Pin::new(server_cert, provider.signature_verification_algorithms)?,
        })
    }
}

impl ServerCertVerifier for PinnedServerCertVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.pin.check(end_entity, now)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.pin.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.pin.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.pin.algs.supported_schemes()
    }
}
