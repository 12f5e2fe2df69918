//! Which TLS the plugin serves, decided once before binding.
//!
//! | plugin has its own cert | `PLUGIN_CLIENT_ROOT_CERTS` | host sent `PLUGIN_CLIENT_CERT` | serves |
//! | --- | --- | --- | --- |
//! | yes | yes | any | its cert; hosts verified against the roots |
//! | yes | no | yes | its cert; exactly the host's cert trusted |
//! | yes | no | no | refuses to start: nothing to verify hosts with |
//! | no | yes | any | a generated cert; hosts verified against the roots |
//! | no | no | yes | AutoMTLS: a generated cert, exactly the host's trusted |
//! | no | no | no | plaintext |
//!
//! AutoMTLS turned off (`PLUGIN_AUTO_MTLS=false`) only changes the AutoMTLS row: the
//! plugin then serves plaintext and warns, and a host that asked for TLS refuses it.

use rpcplugin_core::Code;
use std::sync::Arc;

use rpcplugin_config::Settings;
use rpcplugin_core::{Error, Result};
use rpcplugin_crypto::{
    CertificateDer, Identity, Role, TlsConfig, client_config_ca, client_config_pinned,
    load_certificates, server_config_ca, server_config_pinned,
};
use rpcplugin_transport::rustls::{ClientConfig, ServerConfig};

/// TLS as served: the rustls config and the certificate announced in the handshake.
pub(crate) struct ServerTls {
    pub(crate) config: Arc<ServerConfig>,
    pub(crate) announced: CertificateDer<'static>,
    /// For brokered connections the plugin dials to its host: the plugin's
    /// certificate presented, exactly the host's trusted (else the client roots),
    /// as go-plugin since 1.4.4 (go-plugin#193).
    pub(crate) dial: Arc<ClientConfig>,
}

/// Decides what to serve, per the table in this module's docs.
pub(crate) fn resolve(
    config: &TlsConfig,
    settings: &Settings,
    host_cert_pem: Option<&str>,
) -> Result<Option<ServerTls>> {
    // A configured certificate is refused here, before anything starts, rather
    // than by the peer.
    let identity = config.identity_or("the plugin's certificate (given to .identity())", || {
        identity_from_settings(settings)
    })?;
    let (roots, name) = settings
        .host_roots()
        .map_or((None, "PLUGIN_CLIENT_ROOT_CERTS"), |(v, n)| (Some(v), n));
    let roots = config.ca_roots_or(roots, name)?;
    let auto_mtls = config.configured_auto_mtls().unwrap_or(settings.auto_mtls);
    let host_cert = match host_cert_pem {
        // The host's certificate is checked as strictly as a configured one:
        // PEM, parseable, within its dates.
        Some(pem) => Some(first(load_certificates(pem, "PLUGIN_CLIENT_CERT")?)),
        None => None,
    };
    if identity.is_none() && roots.is_none() && host_cert.is_some() && !auto_mtls {
        tracing::warn!(
            "the host asked for AutoMTLS (PLUGIN_CLIENT_CERT) but AutoMTLS is turned off \
             here (PLUGIN_AUTO_MTLS=false): serving plaintext, which a host that asked for \
             TLS should refuse"
        );
        return Ok(None);
    }
    let identity = match identity {
        Some(identity) => identity,
        None if roots.is_some() || host_cert.is_some() => {
            let identity = Identity::self_signed_with(
                Role::Server,
                &rpcplugin_crypto::CertOptions::new(config.auto_mtls_key_algorithm())
                    .validity(settings.cert_validity()),
            )?;
            // On stderr (as hclog with logging::init), which the host shows.
            if let Some(advice) = rpcplugin_crypto::slow_entropy_start_advice() {
                rpcplugin_config::warn(&advice);
            }
            identity
        }
        None => return Ok(None),
    };
    let (config, dial) = rustls_configs(&identity, roots.as_deref(), host_cert)?;
    Ok(Some(ServerTls {
        config,
        announced: identity.cert_der().clone(),
        dial,
    }))
}

/// The plugin's server config (hosts verified against `roots`, else exactly the
/// host's certificate) and its config for dialling back to the host.
fn rustls_configs(
    identity: &Identity,
    roots: Option<&[CertificateDer<'static>]>,
    host_cert: Option<CertificateDer<'static>>,
) -> Result<(Arc<ServerConfig>, Arc<ClientConfig>)> {
    match (roots, host_cert) {
        (Some(roots), host_cert) => Ok((
            server_config_ca(identity, roots)?,
            // The host sent its certificate: trust exactly it when dialling back.
            match host_cert {
                Some(host_cert) => client_config_pinned(identity, host_cert)?,
                None => client_config_ca(identity, roots)?,
            },
        )),
        (None, Some(host_cert)) => Ok((
            server_config_pinned(identity, host_cert.clone())?,
            client_config_pinned(identity, host_cert)?,
        )),
        (None, None) => Err(Error::new(
            Code::SecurityNoClientVerification,
            "the plugin has a certificate but no way to verify its hosts",
        )
        .with_hint(
            "set PLUGIN_CLIENT_ROOT_CERTS to the CA that issues host certificates, or \
             let the host send its certificate (AutoMTLS); a plugin never serves TLS \
             that any client may use",
        )),
    }
}

fn identity_from_settings(settings: &Settings) -> Result<Option<Identity>> {
    match (&settings.server_cert, &settings.server_key) {
        (Some(cert), Some(key)) => Ok(Some(Identity::load(
            cert,
            key,
            "PLUGIN_SERVER_CERT",
            "PLUGIN_SERVER_KEY",
        )?)),
        (None, None) => Ok(None),
        (Some(_), None) | (None, Some(_)) => Err(Error::new(
            Code::ConfigIncompleteIdentity,
            "only one of PLUGIN_SERVER_CERT and PLUGIN_SERVER_KEY is set",
        )
        .with_hint("set both (the certificate and its private key), or neither to generate one")),
    }
}

/// The leaf of a loaded chain (the loader refuses empty input).
fn first(mut certs: Vec<CertificateDer<'static>>) -> CertificateDer<'static> {
    certs.swap_remove(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rpcplugin_crypto::{CertificateAuthority, CertificateInfo, KeyAlgorithm};

    fn settings(vars: &[(&str, &str)]) -> Settings {
        Settings::from_vars(vars.iter().copied()).unwrap()
    }

    fn host_pem() -> String {
        Identity::self_signed(KeyAlgorithm::EcdsaP521, Role::Client)
            .unwrap()
            .cert_pem()
    }

    #[test]
    fn plaintext_without_any_tls_setting() {
        let tls = resolve(&TlsConfig::new(), &settings(&[]), None).unwrap();
        assert!(tls.is_none());
    }

    #[test]
    fn automtls_generates_a_p256_localhost_certificate() {
        let tls = resolve(&TlsConfig::new(), &settings(&[]), Some(&host_pem()))
            .unwrap()
            .expect("serves TLS");
        let info = CertificateInfo::parse(&tls.announced).unwrap();
        assert!(info.sans.contains(&"localhost".to_owned()), "{info:?}");
        assert_eq!(info.key_type, rpcplugin_crypto::KeyType::EcdsaP256);
        assert_eq!(tls.config.alpn_protocols, [b"h2".to_vec()]);
    }

    #[test]
    fn automtls_turned_off_serves_plaintext() {
        let tls = resolve(
            &TlsConfig::new(),
            &settings(&[("PLUGIN_AUTO_MTLS", "false")]),
            Some(&host_pem()),
        )
        .unwrap();
        assert!(tls.is_none());
    }

    #[test]
    fn a_host_certificate_that_is_not_pem_is_refused_naming_the_variable() {
        let err = resolve(&TlsConfig::new(), &settings(&[]), Some("not a pem"))
            .err()
            .unwrap();
        assert!(err.to_string().contains("PLUGIN_CLIENT_CERT"), "{err}");
        assert!(err.hint().is_some());
    }

    #[test]
    fn configured_certificate_is_announced() {
        let ca = CertificateAuthority::generate(KeyAlgorithm::default(), "test ca").unwrap();
        let leaf = ca.issue(Role::Server, KeyAlgorithm::default()).unwrap();
        let vars = [
            ("PLUGIN_SERVER_CERT", leaf.cert_pem()),
            ("PLUGIN_SERVER_KEY", leaf.key_pem()),
            ("PLUGIN_CLIENT_ROOT_CERTS", ca.identity().cert_pem()),
        ];
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let tls = resolve(&TlsConfig::new(), &settings(&vars), None)
            .unwrap()
            .expect("serves TLS");
        assert_eq!(&tls.announced, leaf.cert_der());
    }

    #[test]
    fn a_certificate_without_a_way_to_check_hosts_is_refused() {
        let leaf = Identity::self_signed(KeyAlgorithm::default(), Role::Server).unwrap();
        let (cert, key) = (leaf.cert_pem(), leaf.key_pem());
        let s = settings(&[("PLUGIN_SERVER_CERT", &cert), ("PLUGIN_SERVER_KEY", &key)]);
        let err = resolve(&TlsConfig::new(), &s, None).err().unwrap();
        assert_eq!(err.code(), Code::SecurityNoClientVerification);
        assert!(err.hint().unwrap().contains("PLUGIN_CLIENT_ROOT_CERTS"));

        let half = settings(&[("PLUGIN_SERVER_CERT", &cert)]);
        let err = resolve(&TlsConfig::new(), &half, None).err().unwrap();
        assert_eq!(err.code(), Code::ConfigIncompleteIdentity);
    }

    #[test]
    fn the_config_wins_over_the_settings() {
        let ca = CertificateAuthority::generate(KeyAlgorithm::default(), "test ca").unwrap();
        let leaf = ca.issue(Role::Server, KeyAlgorithm::default()).unwrap();
        let config = TlsConfig::new()
            .identity(leaf.clone())
            .ca_roots([ca.certificate().clone()]);
        // Configured TLS is served even to a host that sent no certificate.
        let tls = resolve(&config, &settings(&[("PLUGIN_AUTO_MTLS", "false")]), None)
            .unwrap()
            .expect("serves TLS");
        assert_eq!(&tls.announced, leaf.cert_der());

        let off = TlsConfig::new().auto_mtls(false);
        assert!(
            resolve(&off, &settings(&[]), Some(&host_pem()))
                .unwrap()
                .is_none()
        );
        let p521 = TlsConfig::new().auto_mtls_key(KeyAlgorithm::EcdsaP521);
        let tls = resolve(&p521, &settings(&[]), Some(&host_pem()))
            .unwrap()
            .expect("serves TLS");
        let info = CertificateInfo::parse(&tls.announced).unwrap();
        assert_eq!(info.key_type, rpcplugin_crypto::KeyType::EcdsaP521);
    }
}
