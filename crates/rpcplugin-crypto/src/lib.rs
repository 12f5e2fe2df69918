//! Certificates, keys and rustls configurations for rpcplugin.
//!
//! go-plugin's AutoMTLS has each side make a throw-away key pair and certificate and
//! trust exactly the peer's certificate. This crate does the cryptographic half of that
//! and of the CA-based alternative; it does no IO besides reading certificate files.
//!
//! - [`Identity`]: a certificate and its private key; [`Identity::self_signed`] makes an
//!   AutoMTLS pair, [`CertificateAuthority`] issues CA-signed leaves, and
//!   [`Identity::load`], [`load_certificates`] and [`load_private_key`] read a path, a
//!   `file://` URI, or inline PEM (the forms accepted in `PLUGIN_*` variables).
//! - [`CertificateInfo`] and [`verify_chain`] inspect certificates; [`Sha256`] checks
//!   plugin executables before they run (go-plugin's `SecureConfig`).
//! - [`server_config_pinned`] / [`client_config_pinned`] build rustls configs that
//!   trust one exact peer certificate (see [`PinnedClientCertVerifier`] for why webpki
//!   is not used there); [`server_config_ca`] / [`client_config_ca`] verify against
//!   CA roots. All are TLS 1.2+ with ALPN `h2`, on the aws-lc-rs provider (which, unlike
//!   ring, verifies the ECDSA P-521/SHA-512 certificates Go hosts send).
//! - [`TlsConfig`]: one side's TLS choices (what it presents, what it trusts,
//!   AutoMTLS or not), the value every rpcplugin builder takes with `.tls(..)`.
//!
//! ```
//! use rpcplugin_crypto::{
//!     CertificateInfo, Identity, KeyAlgorithm, Role, client_config_pinned, server_config_pinned,
//! };
//!
//! # fn main() -> rpcplugin_core::Result<()> {
//! // The host (client) makes its pair, as Terraform does with P-521...
//! let host = Identity::self_signed(KeyAlgorithm::EcdsaP521, Role::Client)?;
//! // ...and the plugin (server) its own.
//! let plugin = Identity::self_signed(KeyAlgorithm::default(), Role::Server)?;
//!
//! // Each side trusts exactly the other's certificate.
//! let server = server_config_pinned(&plugin, host.cert_der().clone())?;
//! let client = client_config_pinned(&host, plugin.cert_der().clone())?;
//! assert_eq!(server.alpn_protocols, [b"h2".to_vec()]);
//! assert_eq!(client.alpn_protocols, [b"h2".to_vec()]);
//!
//! let info = CertificateInfo::parse(plugin.cert_der())?;
//! assert!(info.sans.contains(&"localhost".to_owned()));
//! assert!(host.cert_pem().starts_with("-----BEGIN CERTIFICATE-----\n"));
//! # Ok(())
//! # }
//! ```
//!
//! This crate has no feature flags.

mod config;
mod digest;
mod entropy;
mod generate;
mod identity;
mod inspect;
mod load;
mod pinned;
mod tls_config;

pub(crate) use config::provider;
pub use config::{
    ALPN_H2, client_config_ca, client_config_pinned, server_config_ca, server_config_pinned,
};
pub use digest::Sha256;
pub use entropy::{SLOW_ENTROPY_START, slow_entropy_start_advice};
pub use generate::{
    CLOCK_SKEW_ALLOWANCE, CertOptions, CertificateAuthority, DEFAULT_CA_VALIDITY, DEFAULT_VALIDITY,
    KeyAlgorithm, Role,
};
pub use identity::Identity;
pub use inspect::{CertificateInfo, KeyType, verify_chain, verify_chain_with};
pub use load::{load_certificates, load_private_key};
pub use pinned::{PinnedClientCertVerifier, PinnedServerCertVerifier};
/// Re-exported so callers name the same DER types as this crate's signatures.
pub use rustls_pki_types::{CertificateDer, PrivateKeyDer};
pub use tls_config::TlsConfig;
