//! Building rustls server and client configs, pinned (AutoMTLS) or CA-based.

use rpcplugin_core::Code;
use std::sync::Arc;

use rpcplugin_core::{Error, Result};
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::identity::Identity;
use crate::pinned::{PinnedClientCertVerifier, PinnedServerCertVerifier};

/// The ALPN protocols offered and accepted: gRPC runs over HTTP/2.
pub const ALPN_H2: &[u8] = b"h2";

/// The aws-lc-rs provider used by every config here, never the process default.
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn tls_error(code: Code, message: &str, e: rustls::Error) -> Error {
    Error::new(code, message.to_owned())
        .with_source(e)
        .with_hint("check that the key belongs to the certificate and uses a supported algorithm")
}

fn roots(certs: &[CertificateDer<'static>]) -> Result<Arc<RootCertStore>> {
    let mut store = RootCertStore::empty();
    for cert in certs {
        store.add(cert.clone()).map_err(|e| {
            Error::new(
                Code::CryptoBadCaCertificate,
                "ca certificate cannot be used as a trust anchor",
            )
            .with_source(e)
            .with_hint("pass certificate authority certificates as roots")
        })?;
    }
    if store.is_empty() {
        return Err(
            Error::new(Code::CryptoNoRoots, "no trusted root certificates")
                .with_hint("give at least one ca certificate"),
        );
    }
    Ok(Arc::new(store))
}

/// A TLS 1.2+ server config for AutoMTLS: presents `identity`, requires a client
/// certificate and accepts only `client_cert` (DER), ALPN `h2`.
pub fn server_config_pinned(
    identity: &Identity,
    client_cert: CertificateDer<'static>,
) -> Result<Arc<ServerConfig>> {
    let provider = provider();
    let verifier = Arc::new(PinnedClientCertVerifier::new(client_cert, &provider)?);
    let builder = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(Code::CryptoTlsConfig, "cannot build tls server config", e))?
        .with_client_cert_verifier(verifier);
    finish_server(builder, identity)
}

/// A TLS 1.2+ client config for AutoMTLS: presents `identity` and accepts only the
/// server certificate `server_cert` (DER, as read from handshake field 6), ALPN `h2`.
/// Any server name works; go-plugin hosts use `localhost`.
pub fn client_config_pinned(
    identity: &Identity,
    server_cert: CertificateDer<'static>,
) -> Result<Arc<ClientConfig>> {
    let provider = provider();
    let verifier = Arc::new(PinnedServerCertVerifier::new(server_cert, &provider)?);
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(Code::CryptoTlsConfig, "cannot build tls client config", e))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    finish_client(builder, identity)
}

/// A TLS 1.2+ server config that presents `identity` and requires a client certificate
/// chaining to one of `client_roots` (webpki verification), ALPN `h2`.
pub fn server_config_ca(
    identity: &Identity,
    client_roots: &[CertificateDer<'static>],
) -> Result<Arc<ServerConfig>> {
    let provider = provider();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        roots(client_roots)?,
        provider.clone(),
    )
    .build()
    .map_err(|e| {
        Error::new(
            Code::CryptoTlsConfig,
            "cannot build client certificate verifier",
        )
        .with_source(e)
        .with_hint("pass certificate authority certificates as client roots")
    })?;
    let builder = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(Code::CryptoTlsConfig, "cannot build tls server config", e))?
        .with_client_cert_verifier(verifier);
    finish_server(builder, identity)
}

/// A TLS 1.2+ client config that presents `identity` and accepts a server certificate
/// chaining to one of `server_roots` and naming the requested server, ALPN `h2`.
pub fn client_config_ca(
    identity: &Identity,
    server_roots: &[CertificateDer<'static>],
) -> Result<Arc<ClientConfig>> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(Code::CryptoTlsConfig, "cannot build tls client config", e))?
        .with_root_certificates(roots(server_roots)?);
    finish_client(builder, identity)
}

fn finish_server(
    builder: rustls::ConfigBuilder<ServerConfig, rustls::server::WantsServerCert>,
    identity: &Identity,
) -> Result<Arc<ServerConfig>> {
    let mut config = builder
        .with_single_cert(
            vec![identity.cert_der().clone()],
            identity.key_der().clone_key(),
        )
        .map_err(|e| {
            tls_error(
                Code::CryptoBadIdentity,
                "cannot use server certificate and key",
                e,
            )
        })?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

fn finish_client(
    builder: rustls::ConfigBuilder<ClientConfig, rustls::client::WantsClientCert>,
    identity: &Identity,
) -> Result<Arc<ClientConfig>> {
    let mut config = builder
        .with_client_auth_cert(
            vec![identity.cert_der().clone()],
            identity.key_der().clone_key(),
        )
        .map_err(|e| {
            tls_error(
                Code::CryptoBadIdentity,
                "cannot use client certificate and key",
                e,
            )
        })?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CertificateAuthority, KeyAlgorithm, Role};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A host certificate as go-plugin's AutoMTLS (and so Terraform) makes it: P-521,
    /// ecdsa-with-SHA512, self-signed, CA:TRUE, both EKUs, SAN localhost.
    fn go_plugin_host_identity() -> Identity {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
            KeyUsagePurpose,
        };
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P521_SHA512).unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.distinguished_name.remove(DnType::CommonName);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "HashiCorp");
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
            KeyUsagePurpose::KeyAgreement,
            KeyUsagePurpose::KeyCertSign,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ClientAuth,
            ExtendedKeyUsagePurpose::ServerAuth,
        ];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::seconds(30);
        params.not_after = now + time::Duration::hours(262_980);
        let cert = params.self_signed(&key).unwrap();
        Identity::from_parts(
            cert.der().clone(),
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
    }

    /// Runs a handshake over an in-memory pipe; on success sends "ping" and "pong" and
    /// returns the negotiated protocol version. Err carries either side's error text.
    async fn handshake(
        server: Arc<ServerConfig>,
        client: Arc<ClientConfig>,
    ) -> Result<rustls::ProtocolVersion, String> {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let acceptor = tokio_rustls::TlsAcceptor::from(server);
        let connector = tokio_rustls::TlsConnector::from(client);
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let server_side = async move {
            let mut tls = acceptor
                .accept(a)
                .await
                .map_err(|e| format!("server: {e}"))?;
            let mut buf = [0u8; 4];
            tls.read_exact(&mut buf)
                .await
                .map_err(|e| format!("server read: {e}"))?;
            assert_eq!(&buf, b"ping");
            tls.write_all(b"pong")
                .await
                .map_err(|e| format!("server write: {e}"))?;
            tls.flush().await.map_err(|e| e.to_string())?;
            assert_eq!(tls.get_ref().1.alpn_protocol(), Some(ALPN_H2));
            Ok::<_, String>(())
        };
        let client_side = async move {
            let mut tls = connector
                .connect(name, b)
                .await
                .map_err(|e| format!("client: {e}"))?;
            tls.write_all(b"ping")
                .await
                .map_err(|e| format!("client write: {e}"))?;
            tls.flush().await.map_err(|e| e.to_string())?;
            let mut buf = [0u8; 4];
            tls.read_exact(&mut buf)
                .await
                .map_err(|e| format!("client read: {e}"))?;
            assert_eq!(&buf, b"pong");
            assert_eq!(tls.get_ref().1.alpn_protocol(), Some(ALPN_H2));
            Ok::<_, String>(tls.get_ref().1.protocol_version().unwrap())
        };
        match tokio::join!(server_side, client_side) {
            (Ok(()), Ok(version)) => Ok(version),
            (s, c) => Err(format!("{:?}; {:?}", s.err(), c.err()).to_lowercase()),
        }
    }

    fn pinned_pair(server: &Identity, client: &Identity) -> (Arc<ServerConfig>, Arc<ClientConfig>) {
        (
            server_config_pinned(server, client.cert_der().clone()).unwrap(),
            client_config_pinned(client, server.cert_der().clone()).unwrap(),
        )
    }

    #[tokio::test]
    async fn pinned_tls13_p256_server_with_go_plugin_p521_client() {
        let server = Identity::self_signed(KeyAlgorithm::EcdsaP256, Role::Server).unwrap();
        let host = go_plugin_host_identity();
        let (s, c) = pinned_pair(&server, &host);
        assert_eq!(handshake(s, c).await, Ok(rustls::ProtocolVersion::TLSv1_3));
    }

    #[tokio::test]
    async fn pinned_tls13_p256_server_with_generated_p521_client() {
        let server = Identity::self_signed(KeyAlgorithm::EcdsaP256, Role::Server).unwrap();
        let client = Identity::self_signed(KeyAlgorithm::EcdsaP521, Role::Client).unwrap();
        let (s, c) = pinned_pair(&server, &client);
        assert_eq!(handshake(s, c).await, Ok(rustls::ProtocolVersion::TLSv1_3));
    }

    #[tokio::test]
    async fn pinned_tls13_p384_and_ed25519() {
        for alg in [KeyAlgorithm::EcdsaP384, KeyAlgorithm::Ed25519] {
            let server = Identity::self_signed(alg, Role::Server).unwrap();
            let client = Identity::self_signed(alg, Role::Client).unwrap();
            let (s, c) = pinned_pair(&server, &client);
            assert_eq!(
                handshake(s, c).await,
                Ok(rustls::ProtocolVersion::TLSv1_3),
                "{alg:?}"
            );
        }
    }

    #[tokio::test]
    async fn pinned_tls12_with_go_plugin_p521_server_cert() {
        // A go-plugin plugin serves a P-521 CA:TRUE cert; a TLS 1.2-only peer must still work.
        let server = go_plugin_host_identity();
        let client = Identity::self_signed(KeyAlgorithm::EcdsaP521, Role::Client).unwrap();
        let s = server_config_pinned(&server, client.cert_der().clone()).unwrap();
        let verifier = Arc::new(
            PinnedServerCertVerifier::new(server.cert_der().clone(), &provider()).unwrap(),
        );
        let mut c = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(
                vec![client.cert_der().clone()],
                client.key_der().clone_key(),
            )
            .unwrap();
        c.alpn_protocols = vec![ALPN_H2.to_vec()];
        assert_eq!(
            handshake(s, Arc::new(c)).await,
            Ok(rustls::ProtocolVersion::TLSv1_2)
        );
    }

    #[tokio::test]
    async fn server_refuses_a_client_other_than_the_pinned_one() {
        let server = Identity::self_signed(KeyAlgorithm::EcdsaP256, Role::Server).unwrap();
        let expected = Identity::self_signed(KeyAlgorithm::EcdsaP521, Role::Client).unwrap();
        let intruder = Identity::self_signed(KeyAlgorithm::EcdsaP521, Role::Client).unwrap();
        let s = server_config_pinned(&server, expected.cert_der().clone()).unwrap();
        let c = client_config_pinned(&intruder, server.cert_der().clone()).unwrap();
        let err = handshake(s, c).await.unwrap_err();
        assert!(
            err.contains("server: invalid peer certificate: other(othererror(notpinned))"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn client_refuses_a_server_other_than_the_pinned_one() {
        let expected = Identity::self_signed(KeyAlgorithm::EcdsaP256, Role::Server).unwrap();
        let impostor = Identity::self_signed(KeyAlgorithm::EcdsaP256, Role::Server).unwrap();
        let client = Identity::self_signed(KeyAlgorithm::EcdsaP521, Role::Client).unwrap();
        let s = server_config_pinned(&impostor, client.cert_der().clone()).unwrap();
        let c = client_config_pinned(&client, expected.cert_der().clone()).unwrap();
        let err = handshake(s, c).await.unwrap_err();
        assert!(
            err.contains("client: invalid peer certificate: other(othererror(notpinned))"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn server_refuses_a_client_without_a_certificate() {
        let server = Identity::self_signed(KeyAlgorithm::EcdsaP256, Role::Server).unwrap();
        let client = Identity::self_signed(KeyAlgorithm::EcdsaP521, Role::Client).unwrap();
        let s = server_config_pinned(&server, client.cert_der().clone()).unwrap();
        let verifier = Arc::new(
            PinnedServerCertVerifier::new(server.cert_der().clone(), &provider()).unwrap(),
        );
        let mut c = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        c.alpn_protocols = vec![ALPN_H2.to_vec()];
        let err = handshake(s, Arc::new(c)).await.unwrap_err();
        assert!(err.contains("server: peer sent no certificates"), "{err}");
    }

    #[tokio::test]
    async fn expired_pinned_certificate_is_refused() {
        let day = std::time::Duration::from_secs(86_400);
        let old = crate::CertOptions::new(KeyAlgorithm::EcdsaP256)
            .not_before(std::time::SystemTime::now() - 10 * day)
            .validity(day);
        let server = Identity::self_signed_with(Role::Server, &old).unwrap();
        let client = Identity::self_signed(KeyAlgorithm::EcdsaP256, Role::Client).unwrap();
        let (s, c) = pinned_pair(&server, &client);
        let err = handshake(s, c).await.unwrap_err();
        assert!(
            err.contains("client: invalid peer certificate: expired"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn ca_configs_handshake_and_refuse_a_foreign_ca() {
        let ca = CertificateAuthority::generate(KeyAlgorithm::EcdsaP256, "test ca").unwrap();
        let other = CertificateAuthority::generate(KeyAlgorithm::EcdsaP256, "other").unwrap();
        let server = ca.issue(Role::Server, KeyAlgorithm::EcdsaP384).unwrap();
        let client = ca.issue(Role::Client, KeyAlgorithm::EcdsaP521).unwrap();
        let roots = [ca.certificate().clone()];
        let s = server_config_ca(&server, &roots).unwrap();
        let c = client_config_ca(&client, &roots).unwrap();
        assert_eq!(
            handshake(s.clone(), c).await,
            Ok(rustls::ProtocolVersion::TLSv1_3)
        );

        let stranger = other.issue(Role::Client, KeyAlgorithm::EcdsaP256).unwrap();
        let c = client_config_ca(&stranger, &roots).unwrap();
        let err = handshake(s, c).await.unwrap_err();
        assert!(
            err.contains("server: invalid peer certificate: unknownissuer"),
            "{err}"
        );
    }
}
