//! [`TlsConfig`]: one side's TLS choices, as given in code, for any builder.

use rpcplugin_core::Result;
use rustls_pki_types::CertificateDer;

use crate::generate::KeyAlgorithm;
use crate::identity::Identity;
use crate::load::load_certificates;

/// One side's TLS configuration: what it presents, what it trusts, and whether
/// AutoMTLS may make a throw-away certificate.
///
/// Every builder takes it the same way, with `.tls(config)`: the host's
/// (`PluginClient::builder`), the attach builder (`PluginClient::attach`) and the
/// plugin's (`PluginServer::builder`), as tonic's endpoints take a
/// `ClientTlsConfig` and its server a `ServerTlsConfig`. What is left unset falls
/// back to the settings (`PLUGIN_AUTO_MTLS`, `PLUGIN_CLIENT_CERT`/`_KEY` for a host,
/// `PLUGIN_SERVER_CERT`/`_KEY` for a plugin, and the `*_ROOT_CERTS` variables), so
/// `TlsConfig::new()` changes nothing. Which TLS a side then uses, and what it
/// refuses, is the same with or without this value: docs/security.md has the rules.
///
/// ```
/// use rpcplugin_crypto::{CertificateAuthority, KeyAlgorithm, Role, TlsConfig};
///
/// # fn main() -> rpcplugin_core::Result<()> {
/// // Certificates issued by one CA instead of AutoMTLS: each side presents its
/// // own and trusts the other's because the CA issued it.
/// let ca = CertificateAuthority::generate(KeyAlgorithm::default(), "plugins ca")?;
/// let host = TlsConfig::new()
///     .identity(ca.issue(Role::Client, KeyAlgorithm::default())?)
///     .ca_roots([ca.certificate().clone()]);
/// let plugin = TlsConfig::new()
///     .identity(ca.issue(Role::Server, KeyAlgorithm::default())?)
///     .ca_roots([ca.certificate().clone()]);
/// assert!(host.configured_identity().is_some());
/// assert_eq!(plugin.configured_ca_roots().map(<[_]>::len), Some(1));
///
/// // AutoMTLS with go-plugin's own key type, or turned off (plaintext, for
/// // peers that cannot serve TLS).
/// let p521 = TlsConfig::new().auto_mtls_key(KeyAlgorithm::EcdsaP521);
/// let plaintext = TlsConfig::new().auto_mtls(false);
/// assert_eq!(p521.configured_auto_mtls(), None, "the settings decide");
/// assert_eq!(plaintext.configured_auto_mtls(), Some(false));
/// # Ok(()) }
/// ```
///
/// `rpcplugin_client::Builder::tls` shows one given to a host.
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct TlsConfig {
    auto_mtls: Option<bool>,
    identity: Option<Identity>,
    ca_roots: Option<Vec<CertificateDer<'static>>>,
    key_algorithm: KeyAlgorithm,
}

impl TlsConfig {
    /// Nothing set: every choice falls back to the settings.
    pub fn new() -> Self {
        Self::default()
    }

    /// AutoMTLS on or off (default: `PLUGIN_AUTO_MTLS`, else on).
    ///
    /// On, a host makes a throw-away certificate, sends it to the plugin in
    /// `PLUGIN_CLIENT_CERT` and trusts exactly the certificate the plugin announces;
    /// a plugin answers such a host with a throw-away certificate of its own. Off
    /// is plaintext when no certificate is configured: a host then refuses a plugin
    /// that serves TLS, and a plugin serves plaintext to a host that asked for TLS
    /// (which that host refuses).
    pub fn auto_mtls(mut self, enabled: bool) -> Self {
        self.auto_mtls = Some(enabled);
        self
    }

    /// The key type of a throw-away AutoMTLS certificate (default ECDSA P-256, which
    /// every peer's TLS stack accepts; go-plugin uses P-521).
    pub fn auto_mtls_key(mut self, algorithm: KeyAlgorithm) -> Self {
        self.key_algorithm = algorithm;
        self
    }

    /// Presents this certificate instead of a generated one (default: the side's
    /// `*_CERT` and `*_KEY` settings). Its dates are checked before anything starts.
    pub fn identity(mut self, identity: Identity) -> Self {
        self.identity = Some(identity);
        self
    }

    /// Trusts a peer certificate issued by one of these CAs instead of pinning the
    /// one exchanged in the handshake: for a host, the plugin's certificate, which
    /// must also name `localhost` (its IP address over non-loopback TCP); for a
    /// plugin, the host's, and TLS is then served even to a host that sent none.
    /// Default: `PLUGIN_SERVER_ROOT_CERTS` for a host, `PLUGIN_CLIENT_ROOT_CERTS`
    /// for a plugin.
    pub fn ca_roots(mut self, roots: impl IntoIterator<Item = CertificateDer<'static>>) -> Self {
        self.ca_roots = Some(roots.into_iter().collect());
        self
    }

    /// What [`auto_mtls`](Self::auto_mtls) set; `None` leaves it to the settings.
    pub fn configured_auto_mtls(&self) -> Option<bool> {
        self.auto_mtls
    }

    /// What [`auto_mtls_key`](Self::auto_mtls_key) set (or the default).
    pub fn auto_mtls_key_algorithm(&self) -> KeyAlgorithm {
        self.key_algorithm
    }

    /// What [`identity`](Self::identity) set; `None` leaves it to the settings.
    pub fn configured_identity(&self) -> Option<&Identity> {
        self.identity.as_ref()
    }

    /// What [`ca_roots`](Self::ca_roots) set; `None` leaves them to the settings.
    pub fn configured_ca_roots(&self) -> Option<&[CertificateDer<'static>]> {
        self.ca_roots.as_deref()
    }
    /// The identity a side presents: the one set here, its dates checked now so
    /// that a bad certificate is refused before anything starts (`whose` names it
    /// in the error), else what `from_settings` loads.
    ///
    /// # Errors
    ///
    /// `crypto.cert_expired`, `crypto.cert_not_yet_valid`, or `from_settings`'s.
    pub fn identity_or(
        &self,
        whose: &str,
        from_settings: impl FnOnce() -> Result<Option<Identity>>,
    ) -> Result<Option<Identity>> {
        match &self.identity {
            Some(identity) => {
                identity.check_dates(whose)?;
                Ok(Some(identity.clone()))
            }
            None => from_settings(),
        }
    }

    /// The CA roots a side trusts: those set here, else the certificates of
    /// `setting` (a path, `file://` URI or inline PEM, as the `*_ROOT_CERTS`
    /// variables take), loaded with errors naming `variable`.
    ///
    /// # Errors
    ///
    /// What [`load_certificates`] says of `setting`.
    pub fn ca_roots_or(
        &self,
        setting: Option<&str>,
        variable: &str,
    ) -> Result<Option<Vec<CertificateDer<'static>>>> {
        match &self.ca_roots {
            Some(roots) => Ok(Some(roots.clone())),
            None => setting
                .map(|value| load_certificates(value, variable))
                .transpose(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::Role;
    use rpcplugin_core::Code;

    #[test]
    fn a_new_config_leaves_everything_to_the_settings() {
        let config = TlsConfig::new();
        assert_eq!(config.configured_auto_mtls(), None);
        assert!(config.configured_identity().is_none());
        assert!(config.configured_ca_roots().is_none());
        assert_eq!(config.auto_mtls_key_algorithm(), KeyAlgorithm::default());
    }

    #[test]
    fn each_setter_sets_its_part_only() {
        let identity = Identity::self_signed(KeyAlgorithm::default(), Role::Client).unwrap();
        let config = TlsConfig::new()
            .identity(identity.clone())
            .ca_roots([identity.cert_der().clone()])
            .auto_mtls(false)
            .auto_mtls_key(KeyAlgorithm::EcdsaP521);
        assert_eq!(config.configured_auto_mtls(), Some(false));
        assert_eq!(
            config.configured_identity().map(Identity::cert_der),
            Some(identity.cert_der())
        );
        assert_eq!(
            config.configured_ca_roots(),
            Some(&[identity.cert_der().clone()][..])
        );
        assert_eq!(config.auto_mtls_key_algorithm(), KeyAlgorithm::EcdsaP521);
    }

    #[test]
    fn empty_roots_are_kept_as_given() {
        // An empty list is the caller's choice, refused when a config is built
        // from it (crypto.no_roots), not silently read as "use the settings".
        let config = TlsConfig::new().ca_roots([]);
        assert_eq!(config.configured_ca_roots(), Some(&[][..]));
    }

    #[test]
    fn a_configured_identity_is_checked_and_wins_over_the_settings() {
        use crate::generate::CertOptions;
        let day = std::time::Duration::from_secs(86_400);
        let expired = CertOptions::new(KeyAlgorithm::default())
            .not_before(std::time::SystemTime::now() - 30 * day)
            .validity(day);
        let expired = Identity::self_signed_with(Role::Server, &expired).unwrap();
        let config = TlsConfig::new().identity(expired);
        let err = config
            .identity_or("the plugin's certificate", || unreachable!("not consulted"))
            .unwrap_err();
        assert_eq!(err.code(), Code::CryptoCertExpired);
        assert!(
            err.to_string().contains("the plugin's certificate"),
            "{err}"
        );

        let from_settings = Identity::self_signed(KeyAlgorithm::default(), Role::Server).unwrap();
        let unset = TlsConfig::new()
            .identity_or("x", || Ok(Some(from_settings.clone())))
            .unwrap();
        assert_eq!(unset.unwrap().cert_der(), from_settings.cert_der());
    }

    #[test]
    fn roots_set_here_win_over_the_setting_which_is_loaded_otherwise() {
        let ca = Identity::self_signed(KeyAlgorithm::default(), Role::Server).unwrap();
        let pem = ca.cert_pem();
        let loaded = TlsConfig::new()
            .ca_roots_or(Some(&pem), "PLUGIN_CLIENT_ROOT_CERTS")
            .unwrap();
        assert_eq!(loaded, Some(vec![ca.cert_der().clone()]));
        let err = TlsConfig::new()
            .ca_roots_or(Some("not pem"), "PLUGIN_CLIENT_ROOT_CERTS")
            .unwrap_err();
        assert!(
            err.to_string().contains("PLUGIN_CLIENT_ROOT_CERTS"),
            "{err}"
        );
        let set = TlsConfig::new().ca_roots([]);
        assert_eq!(set.ca_roots_or(Some("not pem"), "X").unwrap(), Some(vec![]));
        assert_eq!(TlsConfig::new().ca_roots_or(None, "X").unwrap(), None);
    }
}
