//! [`Identity`]: one certificate with its private key, and PEM encoding.

use std::fmt;

use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A certificate and its private key: what one side presents in a TLS handshake.
///
/// Debug never shows the key.
pub struct Identity {
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fingerprint = crate::inspect::sha256_fingerprint(&self.cert);
        f.debug_struct("Identity")
            .field("cert_sha256", &fingerprint)
            .finish_non_exhaustive()
    }
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Self {
            cert: self.cert.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl Identity {
    /// Pairs a certificate with its key without checking that they match
    /// (use [`Identity::load`] for untrusted input).
    pub fn from_parts(cert: CertificateDer<'static>, key: PrivateKeyDer<'static>) -> Self {
        Self { cert, key }
    }

    /// Checks that the certificate is within its validity dates now; `what` names
    /// it in the error (a variable, or "the host's certificate").
    ///
    /// Error codes: `crypto.cert_expired`, `crypto.cert_not_yet_valid`,
    /// `crypto.bad_certificate`.
    pub fn check_dates(&self, what: &str) -> rpcplugin_core::Result<()> {
        crate::load::check_certificate_dates(&self.cert, what)
    }

    /// The certificate, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    /// The private key, DER (PKCS#8 for generated keys; loaded keys keep their format).
    pub fn key_der(&self) -> &PrivateKeyDer<'static> {
        &self.key
    }

    /// The certificate as PEM (`-----BEGIN CERTIFICATE-----`, LF line endings, trailing
    /// newline), the form go-plugin puts in `PLUGIN_CLIENT_CERT`.
    pub fn cert_pem(&self) -> String {
        pem_encode("CERTIFICATE", self.cert.as_ref())
    }

    /// The private key as PEM (`PRIVATE KEY` for PKCS#8, `RSA PRIVATE KEY` for PKCS#1,
    /// `EC PRIVATE KEY` for SEC1).
    pub fn key_pem(&self) -> String {
        let tag = match &self.key {
            PrivateKeyDer::Pkcs1(_) => "RSA PRIVATE KEY",
            PrivateKeyDer::Sec1(_) => "EC PRIVATE KEY",
            _ => "PRIVATE KEY",
        };
        pem_encode(tag, self.key.secret_der())
    }

    /// Splits into certificate and key.
    pub fn into_parts(self) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        (self.cert, self.key)
    }
}

pub(crate) fn pem_encode(tag: &str, der: &[u8]) -> String {
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    pem::encode_config(&pem::Pem::new(tag, der), config)
}
