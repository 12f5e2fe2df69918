//! The host's side of mutual TLS: which certificate it presents, how it checks the
//! plugin's, and what it says when either side refuses.
//!
//! The rule that matters most: a host that asked for TLS never falls back to
//! plaintext. A plugin that answers without a certificate, with one that does not
//! parse, or that presents another certificate than it announced, is refused with a
//! [`Security`](ErrorKind::Security) error.

use rpcplugin_core::Code;
use std::sync::Arc;

use rpcplugin_config::Settings;
use rpcplugin_core::{Endpoint, Error, Result};
use rpcplugin_crypto::{
    CertOptions, CertificateDer, CertificateInfo, Identity, Role, TlsConfig, client_config_ca,
    client_config_pinned, server_config_ca, server_config_pinned,
};
use rpcplugin_transport::TlsFailure;
use rpcplugin_transport::rustls::pki_types::ServerName;
use rpcplugin_transport::rustls::{ClientConfig, ServerConfig};

/// The host's TLS for one launch.
#[derive(Debug)]
pub(crate) enum HostTls {
    /// Plaintext, chosen explicitly (AutoMTLS off, no certificate configured).
    Plain,
    /// Mutual TLS: this identity is presented; the plugin's certificate is checked
    /// against `roots` when given, else pinned to the one it announces.
    Mutual {
        identity: Identity,
        roots: Option<Vec<CertificateDer<'static>>>,
    },
}

/// A ready client config and the name to ask for.
pub(crate) struct Dial {
    pub(crate) config: Arc<ClientConfig>,
    pub(crate) server_name: ServerName<'static>,
    pub(crate) pinned: bool,
}

/// Decides the host's TLS for one launch or attach: what `config` sets, else the
/// settings; a generated certificate when AutoMTLS is on and none is configured.
pub(crate) fn resolve(config: &TlsConfig, settings: &Settings) -> Result<HostTls> {
    // A configured certificate is refused here, before anything starts, rather
    // than by the peer.
    let identity = config.identity_or("the host's certificate (given to .identity())", || {
        identity_from_settings(settings)
    })?;
    let (roots, name) = settings
        .plugin_roots()
        .map_or((None, "PLUGIN_SERVER_ROOT_CERTS"), |(v, n)| (Some(v), n));
    let roots = config.ca_roots_or(roots, name)?;
    let auto_mtls = config.configured_auto_mtls().unwrap_or(settings.auto_mtls);
    let identity = match identity {
        Some(identity) => identity,
        None if auto_mtls => {
            let identity = Identity::self_signed_with(
                Role::Client,
                &CertOptions::new(config.auto_mtls_key_algorithm())
                    .validity(settings.cert_validity()),
            )?;
            // Where the host's author looks: a slow first key costs every start.
            if let Some(advice) = rpcplugin_crypto::slow_entropy_start_advice() {
                rpcplugin_config::warn(&advice);
            }
            identity
        }
        None if roots.is_some() => {
            return Err(Error::new(
                Code::ConfigIncompleteIdentity,
                "PLUGIN_SERVER_ROOT_CERTS is set but this host has no certificate to present",
            )
            .with_hint(
                "set PLUGIN_CLIENT_CERT and PLUGIN_CLIENT_KEY for the host, or leave AutoMTLS on",
            ));
        }
        None => return Ok(HostTls::Plain),
    };
    Ok(HostTls::Mutual { identity, roots })
}

/// The host's own configured certificate. `PLUGIN_CLIENT_CERT` alone is not one: a
/// host that is itself a plugin finds its own host's certificate there.
fn identity_from_settings(settings: &Settings) -> Result<Option<Identity>> {
    match (&settings.client_cert, &settings.client_key) {
        (Some(cert), Some(key)) => Ok(Some(Identity::load(
            cert,
            key,
            "PLUGIN_CLIENT_CERT",
            "PLUGIN_CLIENT_KEY",
        )?)),
        (None, Some(_)) => Err(Error::new(
            Code::ConfigIncompleteIdentity,
            "PLUGIN_CLIENT_KEY is set without PLUGIN_CLIENT_CERT",
        )
        .with_hint("set both (the host's certificate and its key), or neither to generate one")),
        (Some(_), None) => {
            tracing::debug!(
                "PLUGIN_CLIENT_CERT without PLUGIN_CLIENT_KEY is not a host identity (it is what \
                 a plugin receives from its own host); generating one"
            );
            Ok(None)
        }
        (None, None) => Ok(None),
    }
}

impl HostTls {
    /// The PEM sent to the plugin in `PLUGIN_CLIENT_CERT`.
    pub(crate) fn client_cert_pem(&self) -> Option<String> {
        match self {
            Self::Plain => None,
            Self::Mutual { identity, .. } => Some(identity.cert_pem()),
        }
    }

    /// How to dial the plugin, given the certificate it announced (if any).
    pub(crate) fn dial(
        &self,
        plugin: &str,
        announced: Option<&[u8]>,
        endpoint: &Endpoint,
    ) -> Result<Option<Dial>> {
        let (identity, roots) = match self {
            Self::Plain => {
                return match announced {
                    None => Ok(None),
                    Some(_) => Err(Error::new(
                        Code::SecurityUnexpectedCertificate,
                        format!("plugin {plugin} serves TLS but this host turned AutoMTLS off"),
                    )
                    .with_hint(
                        "leave AutoMTLS on in the host (it is on unless .auto_mtls(false) or \
                         PLUGIN_AUTO_MTLS=false), or give the host a certificate with \
                         PLUGIN_CLIENT_CERT and PLUGIN_CLIENT_KEY",
                    )),
                };
            }
            Self::Mutual { identity, roots } => (identity, roots),
        };
        if let Some(der) = announced {
            CertificateInfo::parse(&CertificateDer::from(der)).map_err(|err| {
                Error::new(
                    Code::SecurityBadServerCert,
                    format!("plugin {plugin} announced a server certificate that does not parse"),
                )
                .with_source(err)
                .with_hint(
                    "the handshake line's 6th field must be the base64 DER of an X.509 \
                     certificate; report this to the plugin's author",
                )
            })?;
        }
        match (roots, announced) {
            (Some(roots), _) => Ok(Some(Dial {
                config: client_config_ca(identity, roots)?,
                server_name: ca_server_name(endpoint),
                pinned: false,
            })),
            (None, Some(der)) => Ok(Some(Dial {
                config: client_config_pinned(identity, CertificateDer::from(der.to_vec()))?,
                server_name: ServerName::try_from("localhost").expect("a valid DNS name"),
                pinned: true,
            })),
            (None, None) => Err(Error::new(
                Code::SecurityPlaintextHandshake,
                format!(
                    "plugin {plugin} announced no certificate: it serves plaintext although this host asked for mutual TLS"
                ),
            )
            .with_hint(
                "the plugin does not support AutoMTLS or has it turned off (PLUGIN_AUTO_MTLS=false \
                 in its environment); this host does not fall back to plaintext. If plaintext is \
                 acceptable here, turn AutoMTLS off for this plugin (.auto_mtls(false) or \
                 PLUGIN_AUTO_MTLS=false); anyone who can reach its socket can then call it",
            )),
        }
    }
}

impl HostTls {
    /// How brokered servers of the host serve: the host's certificate presented,
    /// exactly the plugin's announced certificate required (else one from the
    /// configured roots), as go-plugin since 1.4.4 (go-plugin#193).
    pub(crate) fn broker_accept(
        &self,
        announced: Option<&[u8]>,
    ) -> Result<Option<Arc<ServerConfig>>> {
        match self {
            Self::Plain => Ok(None),
            Self::Mutual { identity, roots } => match (announced, roots) {
                (Some(der), _) => Ok(Some(server_config_pinned(
                    identity,
                    CertificateDer::from(der.to_vec()),
                )?)),
                (None, Some(roots)) => Ok(Some(server_config_ca(identity, roots)?)),
                // dial() refuses this case before any broker exists.
                (None, None) => Ok(None),
            },
        }
    }
}

/// The name a CA-issued plugin certificate must carry: `localhost` over a Unix
/// socket, the IP address over TCP (generated server certificates carry both).
fn ca_server_name(endpoint: &Endpoint) -> ServerName<'static> {
    match endpoint {
        Endpoint::Tcp(addr) if !addr.ip().is_loopback() => ServerName::IpAddress(addr.ip().into()),
        _ => ServerName::try_from("localhost").expect("a valid DNS name"),
    }
}

/// Turns a TLS failure found in `err`'s chain into the error a user should see.
pub(crate) fn failure_error(
    plugin: &str,
    endpoint: &Endpoint,
    pinned: bool,
    err: &(dyn std::error::Error + 'static),
) -> Option<Error> {
    let failure = TlsFailure::find(err)?;
    let error = match &failure {
        TlsFailure::PeerCertificateRefused(_) => Error::new(
            Code::SecurityServerCertRejected,
            format!("plugin {plugin} presented a certificate this host does not trust: {failure}"),
        )
        .with_hint(if pinned {
            "the plugin must serve exactly the certificate it announced in its handshake line; \
             something else may be answering at its address, or the plugin's TLS setup is broken"
        } else {
            "the plugin's certificate must be issued by a CA in PLUGIN_SERVER_ROOT_CERTS, be \
             within its dates, and name localhost (or its IP address over TCP)"
        }),
        TlsFailure::RefusedByPeer(_)
        | TlsFailure::NoPeerCertificate
        | TlsFailure::ClosedAfterHandshake
            if failure.is_certificate_problem() =>
        {
            Error::new(
                Code::SecurityClientCertRejected,
                format!("plugin {plugin} refused this host's certificate: {failure}"),
            )
            .with_hint(
                "with AutoMTLS the plugin trusts exactly the certificate sent in \
                 PLUGIN_CLIENT_CERT; a plugin with PLUGIN_CLIENT_ROOT_CERTS needs a host \
                 certificate from that CA (PLUGIN_CLIENT_CERT and PLUGIN_CLIENT_KEY in the \
                 host's environment); the plugin's log says why",
            )
        }
        TlsFailure::NotTls | TlsFailure::ClosedDuringHandshake => Error::new(
            Code::SecurityNotTls,
            format!("plugin {plugin} does not speak TLS at {endpoint}"),
        )
        .with_hint(
            "it announced a certificate but answers in plaintext, or another program answers \
             at that address",
        ),
        _ => Error::new(
            Code::SecurityTls,
            format!("TLS with plugin {plugin} failed: {failure}"),
        )
        .with_hint("the plugin's log may say more; both sides need TLS 1.2 or later"),
    };
    Some(error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rpcplugin_crypto::{CertificateAuthority, KeyAlgorithm};

    fn settings(vars: &[(&str, &str)]) -> Settings {
        Settings::from_vars(vars.iter().copied()).unwrap()
    }

    fn unix() -> Endpoint {
        Endpoint::Unix("/tmp/plugin.sock".into())
    }

    #[test]
    fn automtls_is_the_default() {
        let tls = resolve(&TlsConfig::new(), &settings(&[])).unwrap();
        let pem = tls.client_cert_pem().expect("a certificate is sent");
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
    }

    #[test]
    fn turning_automtls_off_is_plaintext() {
        let off = settings(&[("PLUGIN_AUTO_MTLS", "false")]);
        let tls = resolve(&TlsConfig::new(), &off).unwrap();
        assert!(tls.client_cert_pem().is_none());
        assert!(tls.dial("p", None, &unix()).unwrap().is_none());
        let code = |e: Error| e.code();
        let cert = Identity::self_signed(KeyAlgorithm::default(), Role::Server).unwrap();
        assert_eq!(
            code(tls.dial("p", Some(cert.cert_der()), &unix()).err().unwrap()),
            Code::SecurityUnexpectedCertificate
        );
    }

    #[test]
    fn no_silent_downgrade_when_the_plugin_announces_no_certificate() {
        let tls = resolve(&TlsConfig::new(), &settings(&[])).unwrap();
        let err = tls.dial("kv", None, &unix()).err().unwrap();
        assert_eq!(err.kind(), rpcplugin_core::ErrorKind::Security);
        assert_eq!(err.code(), Code::SecurityPlaintextHandshake);
        assert!(
            err.hint()
                .unwrap()
                .contains("does not fall back to plaintext")
        );
    }

    #[test]
    fn an_announced_certificate_that_does_not_parse_is_refused() {
        let tls = resolve(&TlsConfig::new(), &settings(&[])).unwrap();
        let err = tls
            .dial("kv", Some(&[0x30, 0x03, 1, 2, 3]), &unix())
            .err()
            .unwrap();
        assert_eq!(err.code(), Code::SecurityBadServerCert);
        assert_eq!(err.kind(), rpcplugin_core::ErrorKind::Security);
    }

    #[test]
    fn an_announced_certificate_is_pinned() {
        let tls = resolve(&TlsConfig::new(), &settings(&[])).unwrap();
        let cert = Identity::self_signed(KeyAlgorithm::EcdsaP521, Role::Server).unwrap();
        let dial = tls
            .dial("kv", Some(cert.cert_der()), &unix())
            .unwrap()
            .unwrap();
        assert!(dial.pinned);
    }

    #[test]
    fn a_key_without_a_certificate_is_a_config_error() {
        let err = resolve(
            &TlsConfig::new(),
            &settings(&[("PLUGIN_CLIENT_KEY", "/k.pem")]),
        )
        .err()
        .unwrap();
        assert_eq!(err.code(), Code::ConfigIncompleteIdentity);
    }

    #[test]
    fn a_certificate_alone_is_the_hosts_own_hosts_and_is_ignored() {
        let parent = Identity::self_signed(KeyAlgorithm::default(), Role::Client).unwrap();
        let pem = parent.cert_pem();
        let tls = resolve(
            &TlsConfig::new(),
            &settings(&[("PLUGIN_CLIENT_CERT", &pem)]),
        )
        .unwrap();
        assert_ne!(tls.client_cert_pem().unwrap(), pem);
    }

    #[test]
    fn the_config_wins_over_the_settings() {
        let ca = CertificateAuthority::generate(KeyAlgorithm::default(), "test ca").unwrap();
        let host = ca.issue(Role::Client, KeyAlgorithm::default()).unwrap();
        let config = TlsConfig::new()
            .identity(host.clone())
            .ca_roots([ca.certificate().clone()]);
        let env = settings(&[("PLUGIN_AUTO_MTLS", "false")]);
        let tls = resolve(&config, &env).unwrap();
        assert_eq!(tls.client_cert_pem(), Some(host.cert_pem()));
        // CA roots: the plugin's certificate is verified, not pinned, and may be
        // announced or not.
        let dial = tls.dial("kv", None, &unix()).unwrap().unwrap();
        assert!(!dial.pinned);

        let off = resolve(&TlsConfig::new().auto_mtls(false), &settings(&[])).unwrap();
        assert!(off.client_cert_pem().is_none());
        let on = resolve(&TlsConfig::new().auto_mtls(true), &env).unwrap();
        assert!(on.client_cert_pem().is_some());
    }

    #[test]
    fn roots_without_a_certificate_to_present_are_refused() {
        let ca = CertificateAuthority::generate(KeyAlgorithm::default(), "test ca").unwrap();
        let config = TlsConfig::new()
            .auto_mtls(false)
            .ca_roots([ca.certificate().clone()]);
        let err = resolve(&config, &settings(&[])).err().unwrap();
        assert_eq!(err.code(), Code::ConfigIncompleteIdentity);
    }
}
