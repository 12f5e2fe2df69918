//! Reading certificates: [`CertificateInfo`] and CA-based [`verify_chain`].

use rpcplugin_core::Code;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, SystemTime};

use rpcplugin_core::{Error, Result};
use rustls_pki_types::{CertificateDer, UnixTime};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// The public key type of a certificate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyType {
    /// ECDSA on P-256.
    EcdsaP256,
    /// ECDSA on P-384.
    EcdsaP384,
    /// ECDSA on P-521.
    EcdsaP521,
    /// Ed25519.
    Ed25519,
    /// RSA with a modulus of `bits` bits.
    Rsa {
        /// Modulus size in bits.
        bits: usize,
    },
    /// Anything else, by algorithm OID (and curve OID for other EC curves).
    Other(String),
}

impl From<crate::KeyAlgorithm> for KeyType {
    fn from(alg: crate::KeyAlgorithm) -> Self {
        match alg {
            crate::KeyAlgorithm::EcdsaP256 => Self::EcdsaP256,
            crate::KeyAlgorithm::EcdsaP384 => Self::EcdsaP384,
            crate::KeyAlgorithm::EcdsaP521 => Self::EcdsaP521,
            crate::KeyAlgorithm::Ed25519 => Self::Ed25519,
        }
    }
}

/// What a certificate says, for logs, diagnostics and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    /// Subject distinguished name, e.g. `CN=localhost`.
    pub subject: String,
    /// Subject alternative names: DNS names and IP addresses as text, URIs and e-mail
    /// addresses as they are; other kinds are left out.
    pub sans: Vec<String>,
    /// The public key type.
    pub key_type: KeyType,
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
    /// True when basic constraints say CA:TRUE (go-plugin's AutoMTLS certificates do).
    pub is_ca: bool,
    /// SHA-256 of the DER, uppercase hex pairs joined by colons (as `openssl x509
    /// -fingerprint -sha256` prints it).
    pub sha256: String,
}

pub(crate) fn parse_error(e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::new(Code::CryptoBadCertificate, "certificate is not valid X.509")
        .with_source(e)
        .with_hint("check that the value holds an X.509 certificate, not a key or a request")
}

fn to_system_time(secs: i64) -> SystemTime {
    if secs >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

impl CertificateInfo {
    /// Parses a DER certificate.
    pub fn parse(der: &CertificateDer<'_>) -> Result<Self> {
        let (_, cert) = X509Certificate::from_der(der.as_ref()).map_err(parse_error)?;
        let mut sans = Vec::new();
        if let Ok(Some(ext)) = cert.subject_alternative_name() {
            for name in &ext.value.general_names {
                match name {
                    GeneralName::DNSName(n) => sans.push((*n).to_owned()),
                    GeneralName::URI(u) => sans.push((*u).to_owned()),
                    GeneralName::RFC822Name(m) => sans.push((*m).to_owned()),
                    GeneralName::IPAddress(bytes) => {
                        if let Some(ip) = ip_from_bytes(bytes) {
                            sans.push(ip.to_string());
                        }
                    }
                    _ => {}
                }
            }
        }
        let is_ca = matches!(cert.basic_constraints(), Ok(Some(bc)) if bc.value.ca);
        Ok(Self {
            subject: cert.subject().to_string(),
            sans,
            key_type: key_type(&cert),
            not_before: to_system_time(cert.validity().not_before.timestamp()),
            not_after: to_system_time(cert.validity().not_after.timestamp()),
            is_ca,
            sha256: sha256_fingerprint(der),
        })
    }
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        Some(IpAddr::V4(Ipv4Addr::from(v4)))
    } else if let Ok(v6) = <[u8; 16]>::try_from(bytes) {
        Some(IpAddr::V6(Ipv6Addr::from(v6)))
    } else {
        None
    }
}

fn key_type(cert: &X509Certificate<'_>) -> KeyType {
    use x509_parser::public_key::PublicKey;
    let spki = cert.public_key();
    let alg = spki.algorithm.algorithm.to_id_string();
    match alg.as_str() {
        "1.3.101.112" => KeyType::Ed25519,
        "1.2.840.10045.2.1" => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|oid| oid.to_id_string())
                .unwrap_or_default();
            match curve.as_str() {
                "1.2.840.10045.3.1.7" => KeyType::EcdsaP256,
                "1.3.132.0.34" => KeyType::EcdsaP384,
                "1.3.132.0.35" => KeyType::EcdsaP521,
                _ => KeyType::Other(format!("{alg}/{curve}")),
            }
        }
        "1.2.840.113549.1.1.1" => match spki.parsed() {
            Ok(PublicKey::RSA(rsa)) => KeyType::Rsa {
                bits: rsa.key_size(),
            },
            _ => KeyType::Other(alg),
        },
        _ => KeyType::Other(alg),
    }
}

/// SHA-256 of `der` as uppercase hex pairs joined by colons.
pub(crate) fn sha256_fingerprint(der: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    let hex = hex::encode_upper(digest);
    let pairs: Vec<&str> = hex
        .as_bytes()
        .chunks(2)
        .map(|pair| std::str::from_utf8(pair).expect("hex digits are ASCII"))
        .collect();
    pairs.join(":")
}

/// Checks that `leaf` chains to the trust anchor `ca` (signature, validity dates now,
/// CA constraints, and extended key usage: serverAuth unless the leaf is client-only).
///
/// This is the CA path (webpki). Do not use it for go-plugin's AutoMTLS certificates:
/// they are self-signed CA:TRUE certificates used as end-entity certificates, which
/// webpki rejects; pin those with [`server_config_pinned`](crate::server_config_pinned)
/// and [`client_config_pinned`](crate::client_config_pinned) instead.
pub fn verify_chain(leaf: &CertificateDer<'_>, ca: &CertificateDer<'_>) -> Result<()> {
    verify_chain_with(leaf, &[], ca)
}

/// [`verify_chain`] through intermediate CAs: `leaf` was issued by one of
/// `intermediates`, which chain (in any order) to the trust anchor `ca`.
pub fn verify_chain_with(
    leaf: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    ca: &CertificateDer<'_>,
) -> Result<()> {
    let anchor = webpki::anchor_from_trusted_cert(ca).map_err(|e| {
        Error::new(
            Code::CryptoBadCaCertificate,
            "ca certificate cannot be used as a trust anchor",
        )
        .with_source(e)
        .with_hint("pass the certificate authority's own certificate, PEM or DER")
    })?;
    let ee = webpki::EndEntityCert::try_from(leaf).map_err(parse_error)?;
    let client_only = {
        let (_, cert) = X509Certificate::from_der(leaf.as_ref()).map_err(parse_error)?;
        matches!(cert.extended_key_usage(), Ok(Some(eku)) if eku.value.client_auth && !eku.value.server_auth)
    };
    let usage = if client_only {
        webpki::KeyUsage::client_auth()
    } else {
        webpki::KeyUsage::server_auth()
    };
    ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &[anchor],
        intermediates,
        UnixTime::now(),
        usage,
        None,
        None,
    )
    .map(|_| ())
    .map_err(|e| {
        Error::new(
            Code::CryptoChainInvalid,
            "certificate is not valid under this ca",
        )
        .with_source(e)
        .with_hint(
            "check that the certificate was issued by this ca and is within its validity dates",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::sha256_fingerprint;

    #[test]
    fn fingerprints_read_as_openssl_prints_them() {
        // `printf abc | openssl dgst -sha256 -c`, in uppercase.
        assert_eq!(
            sha256_fingerprint(b"abc"),
            "BA:78:16:BF:8F:01:CF:EA:41:41:40:DE:5D:AE:22:23:\
             B0:03:61:A3:96:17:7A:9C:B4:10:FF:61:F2:00:15:AD"
        );
    }
}
