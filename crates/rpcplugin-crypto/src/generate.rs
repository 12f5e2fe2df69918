//! Generating key pairs and certificates: self-signed AutoMTLS pairs, CAs and their leaves.

use rpcplugin_core::Code;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rpcplugin_core::{Error, Result};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::identity::Identity;

/// How far in the past a new certificate's not-before is put, to tolerate clock skew.
pub const CLOCK_SKEW_ALLOWANCE: Duration = Duration::from_secs(60);

/// Default lifetime of a generated leaf or self-signed certificate (30 days).
pub const DEFAULT_VALIDITY: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// Default lifetime of a generated certificate authority (1 year).
pub const DEFAULT_CA_VALIDITY: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// The key type of a generated key pair.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyAlgorithm {
    /// ECDSA on P-256, signing with SHA-256: small, fast, accepted by every go-plugin host.
    #[default]
    EcdsaP256,
    /// ECDSA on P-384, signing with SHA-384.
    EcdsaP384,
    /// ECDSA on P-521, signing with SHA-512: what go-plugin's AutoMTLS generates.
    EcdsaP521,
    /// Ed25519. Go's crypto/tls accepts it; some older TLS stacks do not.
    Ed25519,
}

impl KeyAlgorithm {
    fn rcgen_alg(self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            Self::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            Self::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            Self::EcdsaP521 => &rcgen::PKCS_ECDSA_P521_SHA512,
            Self::Ed25519 => &rcgen::PKCS_ED25519,
        }
    }
}

/// Which end of a TLS connection a certificate is for; decides its subject
/// alternative names, and the extended key usage of CA-issued leaves (self-signed
/// AutoMTLS certificates carry both usages: see [`Identity::self_signed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// A TLS server (the plugin): EKU serverAuth, SANs `localhost`, `127.0.0.1`, `::1`.
    Server,
    /// A TLS client (the host): EKU clientAuth, SAN `localhost`.
    Client,
}

/// Options for a generated certificate: key algorithm and validity window.
///
/// ```
/// use std::time::Duration;
/// use rpcplugin_crypto::{CertOptions, KeyAlgorithm};
/// let opts = CertOptions::new(KeyAlgorithm::EcdsaP384).validity(Duration::from_secs(3600));
/// assert_eq!(opts.algorithm(), KeyAlgorithm::EcdsaP384);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CertOptions {
    algorithm: KeyAlgorithm,
    validity: Duration,
    not_before: Option<SystemTime>,
}

impl Default for CertOptions {
    fn default() -> Self {
        Self::new(KeyAlgorithm::default())
    }
}

impl CertOptions {
    /// Options for `algorithm`, valid from a minute ago for [`DEFAULT_VALIDITY`].
    pub fn new(algorithm: KeyAlgorithm) -> Self {
        Self {
            algorithm,
            validity: DEFAULT_VALIDITY,
            not_before: None,
        }
    }

    /// Sets how long the certificate is valid, counted from its not-before.
    #[must_use]
    pub fn validity(mut self, validity: Duration) -> Self {
        self.validity = validity;
        self
    }

    /// Sets an explicit not-before instead of "one minute ago" (mostly for tests of
    /// expired or not-yet-valid certificates).
    #[must_use]
    pub fn not_before(mut self, not_before: SystemTime) -> Self {
        self.not_before = Some(not_before);
        self
    }

    /// The key algorithm.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    fn window(&self) -> Result<(time::OffsetDateTime, time::OffsetDateTime)> {
        let start = self
            .not_before
            .unwrap_or_else(|| SystemTime::now() - CLOCK_SKEW_ALLOWANCE);
        let end = start + self.validity;
        Ok((to_offset(start)?, to_offset(end)?))
    }
}

fn to_offset(t: SystemTime) -> Result<time::OffsetDateTime> {
    let secs = match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).ok(),
        Err(e) => i64::try_from(e.duration().as_secs()).ok().map(|s| -s),
    };
    secs.and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .ok_or_else(|| {
            Error::new(
                Code::CryptoBadValidity,
                "certificate validity is out of range",
            )
            .with_hint("use a validity window between the years 1950 and 9999")
        })
}

fn gen_error(e: rcgen::Error) -> Error {
    Error::new(Code::CryptoGenerate, "cannot generate certificate")
        .with_source(e)
        .with_hint("this is a bug or an unsupported key algorithm; try KeyAlgorithm::EcdsaP256")
}

fn random_serial() -> Result<SerialNumber> {
    use aws_lc_rs::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::new(Code::CryptoRandom, "system random number generator failed"))?;
    // Positive and non-zero leading byte keeps the DER INTEGER exactly 16 bytes.
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

/// `both_usages`: EKU clientAuth and serverAuth whatever the role (AutoMTLS).
fn leaf_params(role: Role, opts: &CertOptions, both_usages: bool) -> Result<CertificateParams> {
    let mut params = CertificateParams::default();
    let (nb, na) = opts.window()?;
    params.not_before = nb;
    params.not_after = na;
    params.serial_number = Some(random_serial()?);
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "localhost");
    params.distinguished_name = dn;
    let localhost = "localhost".try_into().map_err(gen_error)?;
    params.subject_alt_names = vec![SanType::DnsName(localhost)];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    match role {
        Role::Server => {
            params.subject_alt_names.extend([
                SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            ]);
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            // RSA key exchange is not offered by rustls; keyEncipherment is harmless for
            // the ECDSA/Ed25519 keys generated here and matches what Go generates.
            params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
        }
        Role::Client => {
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        }
    }
    if both_usages {
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ClientAuth,
            ExtendedKeyUsagePurpose::ServerAuth,
        ];
    }
    Ok(params)
}

/// Letters, digits and hyphens in dot-separated labels of 1 to 63 characters, not
/// starting or ending with a hyphen (RFC 1123); a leading `*.` for a wildcard.
fn is_dns_name(name: &str) -> bool {
    let labels = name.strip_prefix("*.").unwrap_or(name);
    name.len() <= 253
        && labels.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn key_pair(alg: KeyAlgorithm) -> Result<KeyPair> {
    crate::entropy::timed(|| KeyPair::generate_for(alg.rcgen_alg())).map_err(gen_error)
}

fn identity_from(cert: &rcgen::Certificate, key: &KeyPair) -> Identity {
    Identity::from_parts(
        cert.der().clone(),
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    )
}

impl Identity {
    /// A fresh key pair of `algorithm` and a self-signed certificate for `role`, valid
    /// from a minute ago for [`DEFAULT_VALIDITY`]: what AutoMTLS needs on either side.
    ///
    /// The certificate is an end-entity certificate (CA:FALSE), CN and SAN `localhost`
    /// (plus `127.0.0.1` and `::1` for servers), EKU clientAuth and serverAuth for
    /// either role, as go-plugin's: with the broker each side also serves the other
    /// (the host's brokered servers present the host's certificate, the plugin's
    /// brokered dials present the plugin's), and Go checks the EKU of the exact
    /// certificate it trusts. go-plugin hosts accept it.
    pub fn self_signed(algorithm: KeyAlgorithm, role: Role) -> Result<Self> {
        Self::self_signed_with(role, &CertOptions::new(algorithm))
    }

    /// Like [`Identity::self_signed`] with explicit options.
    pub fn self_signed_with(role: Role, opts: &CertOptions) -> Result<Self> {
        let key = key_pair(opts.algorithm)?;
        let params = leaf_params(role, opts, true)?;
        let cert = params.self_signed(&key).map_err(gen_error)?;
        Ok(identity_from(&cert, &key))
    }
}

/// A certificate authority that issues server and client leaf certificates, for
/// deployments that use a CA instead of AutoMTLS pinning.
pub struct CertificateAuthority {
    issuer: Issuer<'static, KeyPair>,
    identity: Identity,
}

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// A new self-signed CA named `common_name` with a fresh `algorithm` key, valid from
    /// a minute ago for [`DEFAULT_CA_VALIDITY`].
    pub fn generate(algorithm: KeyAlgorithm, common_name: &str) -> Result<Self> {
        Self::generate_with(
            common_name,
            &CertOptions::new(algorithm).validity(DEFAULT_CA_VALIDITY),
        )
    }

    /// Like [`CertificateAuthority::generate`] with explicit options.
    pub fn generate_with(common_name: &str, opts: &CertOptions) -> Result<Self> {
        let key = key_pair(opts.algorithm)?;
        let mut params = CertificateParams::default();
        let (nb, na) = opts.window()?;
        params.not_before = nb;
        params.not_after = na;
        params.serial_number = Some(random_serial()?);
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).map_err(gen_error)?;
        let identity = identity_from(&cert, &key);
        Ok(Self {
            issuer: Issuer::new(params, key),
            identity,
        })
    }

    /// An existing CA, from its certificate and key (as [`identity`](Self::identity)
    /// wrote them), to issue more leaves: `rpcplugin certs issue --ca DIR`.
    ///
    /// ```
    /// use rpcplugin_crypto::{CertificateAuthority, Identity, KeyAlgorithm, Role, verify_chain};
    /// # fn main() -> rpcplugin_core::Result<()> {
    /// let made = CertificateAuthority::generate(KeyAlgorithm::default(), "plugins CA")?;
    /// let (cert, key) = (made.identity().cert_pem(), made.identity().key_pem());
    /// // ... later, from the files ...
    /// let ca = CertificateAuthority::from_identity(Identity::load(&cert, &key, "CA", "CA key")?)?;
    /// let leaf = ca.issue(Role::Server, KeyAlgorithm::default())?;
    /// verify_chain(leaf.cert_der(), made.certificate())?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// `crypto.bad_ca_certificate` when the certificate is not a CA's (basic
    /// constraints CA:FALSE or absent) or its key cannot sign.
    pub fn from_identity(identity: Identity) -> Result<Self> {
        let info = crate::CertificateInfo::parse(identity.cert_der())?;
        let bad = |why: &str| {
            Error::new(
                Code::CryptoBadCaCertificate,
                format!("{} cannot issue certificates: {why}", info.subject),
            )
            .with_hint("pass the certificate and key of a CA (rpcplugin certs ca makes one)")
        };
        if !info.is_ca {
            return Err(bad(
                "it is not a CA certificate (basic constraints CA:FALSE)",
            ));
        }
        let key = KeyPair::try_from(identity.key_der())
            .map_err(|e| bad("its key is not a supported signing key").with_source(e))?;
        let issuer = Issuer::from_ca_cert_der(identity.cert_der(), key)
            .map_err(|e| bad("its certificate cannot be read").with_source(e))?;
        Ok(Self { issuer, identity })
    }

    /// The CA's certificate (what peers put in their trust roots).
    pub fn certificate(&self) -> &CertificateDer<'static> {
        self.identity.cert_der()
    }

    /// The CA's certificate and key, e.g. to write them to disk.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Issues a leaf for `role` with a fresh `algorithm` key, valid from a minute ago
    /// for [`DEFAULT_VALIDITY`].
    pub fn issue(&self, role: Role, algorithm: KeyAlgorithm) -> Result<Identity> {
        self.issue_with(role, &CertOptions::new(algorithm))
    }

    /// Like [`CertificateAuthority::issue`] with explicit options.
    pub fn issue_with(&self, role: Role, opts: &CertOptions) -> Result<Identity> {
        self.sign_leaf(leaf_params(role, opts, false)?, opts)
    }

    /// Issues a leaf for `role` named `name`: common name `name`, and `name` (a DNS
    /// name, or an IP address) among its SANs before the usual `localhost` ones, so
    /// the certificate serves both a named deployment and rpcplugin's loopback
    /// connections (hosts check the plugin's certificate for `localhost`).
    ///
    /// # Errors
    ///
    /// `crypto.generate` when `name` is neither a DNS name nor an IP address.
    pub fn issue_named(&self, role: Role, name: &str, opts: &CertOptions) -> Result<Identity> {
        let mut params = leaf_params(role, opts, false)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        let san = match name.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) if is_dns_name(name) => SanType::DnsName(name.try_into().map_err(gen_error)?),
            Err(_) => {
                return Err(Error::new(
                    Code::CryptoGenerate,
                    format!("{name:?} is neither a DNS name nor an IP address"),
                )
                .with_hint(
                    "name the certificate like a host: plugin.example, kv-plugin or 127.0.0.1",
                ));
            }
        };
        if !params.subject_alt_names.contains(&san) {
            params.subject_alt_names.insert(0, san);
        }
        self.sign_leaf(params, opts)
    }

    fn sign_leaf(&self, mut params: CertificateParams, opts: &CertOptions) -> Result<Identity> {
        let key = key_pair(opts.algorithm)?;
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer).map_err(gen_error)?;
        Ok(identity_from(&cert, &key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CertificateInfo, KeyType, verify_chain};

    const ALL: [KeyAlgorithm; 4] = [
        KeyAlgorithm::EcdsaP256,
        KeyAlgorithm::EcdsaP384,
        KeyAlgorithm::EcdsaP521,
        KeyAlgorithm::Ed25519,
    ];

    #[test]
    fn every_algorithm_generates_with_its_key_type_and_sans() {
        for alg in ALL {
            let server = Identity::self_signed(alg, Role::Server).unwrap();
            let info = CertificateInfo::parse(server.cert_der()).unwrap();
            assert_eq!(info.key_type, KeyType::from(alg), "{alg:?}");
            assert_eq!(info.sans, ["localhost", "127.0.0.1", "::1"], "{alg:?}");
            assert_eq!(info.subject, "CN=localhost");
            assert!(!info.is_ca);

            let client = Identity::self_signed(alg, Role::Client).unwrap();
            let info = CertificateInfo::parse(client.cert_der()).unwrap();
            assert_eq!(info.key_type, KeyType::from(alg), "{alg:?}");
            assert_eq!(info.sans, ["localhost"], "{alg:?}");
        }
    }

    fn usages(der: &CertificateDer<'_>) -> (bool, bool) {
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        (eku.client_auth, eku.server_auth)
    }

    #[test]
    fn self_signed_certificates_serve_both_ends_and_issued_ones_their_role() {
        // Go checks the EKU of a pinned certificate: a host's brokered server needs
        // serverAuth, a plugin's brokered dial clientAuth (go-plugin 1.4.4+).
        for role in [Role::Server, Role::Client] {
            let id = Identity::self_signed(KeyAlgorithm::default(), role).unwrap();
            assert_eq!(usages(id.cert_der()), (true, true), "{role:?}");
        }
        let ca = CertificateAuthority::generate(KeyAlgorithm::default(), "ca").unwrap();
        let server = ca.issue(Role::Server, KeyAlgorithm::default()).unwrap();
        assert_eq!(usages(server.cert_der()), (false, true));
        let client = ca.issue(Role::Client, KeyAlgorithm::default()).unwrap();
        assert_eq!(usages(client.cert_der()), (true, false));
    }

    #[test]
    fn default_validity_is_30_days_from_a_minute_ago() {
        let id = Identity::self_signed(KeyAlgorithm::default(), Role::Server).unwrap();
        let info = CertificateInfo::parse(id.cert_der()).unwrap();
        let now = SystemTime::now();
        let back = now.duration_since(info.not_before).unwrap();
        assert!(
            back >= Duration::from_secs(55) && back <= Duration::from_secs(70),
            "{back:?}"
        );
        assert_eq!(
            info.not_after.duration_since(info.not_before).unwrap(),
            DEFAULT_VALIDITY
        );
        assert_eq!(info.sha256.len(), 95);
        assert_eq!(info.sha256.matches(':').count(), 31);
    }

    #[test]
    fn ca_issues_leaves_that_verify_and_foreign_leaves_do_not() {
        let ca =
            CertificateAuthority::generate(KeyAlgorithm::EcdsaP384, "rpcplugin test ca").unwrap();
        let other = CertificateAuthority::generate(KeyAlgorithm::EcdsaP256, "other ca").unwrap();
        let ca_info = CertificateInfo::parse(ca.certificate()).unwrap();
        assert!(ca_info.is_ca);
        assert_eq!(ca_info.subject, "CN=rpcplugin test ca");
        for alg in ALL {
            for role in [Role::Server, Role::Client] {
                let leaf = ca.issue(role, alg).unwrap();
                verify_chain(leaf.cert_der(), ca.certificate()).unwrap();
                let err = verify_chain(leaf.cert_der(), other.certificate()).unwrap_err();
                assert_eq!(err.code(), Code::CryptoChainInvalid);
                assert!(err.hint().is_some());
            }
        }
    }

    #[test]
    fn pem_accessors_round_trip() {
        let id = Identity::self_signed(KeyAlgorithm::EcdsaP521, Role::Client).unwrap();
        let cert_pem = id.cert_pem();
        assert!(cert_pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert!(cert_pem.ends_with("-----END CERTIFICATE-----\n"));
        assert!(!cert_pem.contains('\r'));
        assert!(id.key_pem().starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let back = Identity::load(&cert_pem, &id.key_pem(), "C", "K").unwrap();
        assert_eq!(back.cert_der(), id.cert_der());
        assert_eq!(back.key_der().secret_der(), id.key_der().secret_der());
    }

    #[test]
    fn debug_does_not_show_the_key() {
        let id = Identity::self_signed(KeyAlgorithm::Ed25519, Role::Client).unwrap();
        let text = format!("{id:?}");
        assert!(text.contains("cert_sha256"));
        assert!(!text.contains("key"), "{text}");
    }

    #[test]
    fn a_ca_read_back_from_its_files_issues_named_leaves() {
        for alg in ALL {
            let made = CertificateAuthority::generate(alg, "plugins CA").unwrap();
            let id = Identity::load(
                &made.identity().cert_pem(),
                &made.identity().key_pem(),
                "C",
                "K",
            )
            .unwrap();
            let ca = CertificateAuthority::from_identity(id).unwrap();
            let leaf = ca
                .issue_named(Role::Server, "kv.plugins.example", &CertOptions::new(alg))
                .unwrap();
            verify_chain(leaf.cert_der(), made.certificate()).unwrap();
            let info = CertificateInfo::parse(leaf.cert_der()).unwrap();
            assert_eq!(info.subject, "CN=kv.plugins.example");
            assert_eq!(
                info.sans,
                ["kv.plugins.example", "localhost", "127.0.0.1", "::1"]
            );
        }
        let ca = CertificateAuthority::generate(KeyAlgorithm::default(), "CA").unwrap();
        let ip = ca
            .issue_named(Role::Client, "10.1.2.3", &CertOptions::default())
            .unwrap();
        let info = CertificateInfo::parse(ip.cert_der()).unwrap();
        assert_eq!(info.sans, ["10.1.2.3", "localhost"]);
        let err = ca
            .issue_named(Role::Client, "not a name!", &CertOptions::default())
            .unwrap_err();
        assert_eq!(err.code(), Code::CryptoGenerate);
    }

    #[test]
    fn a_leaf_is_no_ca() {
        let ca = CertificateAuthority::generate(KeyAlgorithm::default(), "CA").unwrap();
        let leaf = ca.issue(Role::Server, KeyAlgorithm::default()).unwrap();
        let err = CertificateAuthority::from_identity(leaf).unwrap_err();
        assert_eq!(err.code(), Code::CryptoBadCaCertificate);
        assert!(err.message().contains("not a CA"), "{}", err.message());
    }

    #[test]
    fn chains_verify_through_intermediates() {
        // rcgen directly: the generated CAs allow no intermediate below them.
        let root_key = key_pair(KeyAlgorithm::default()).unwrap();
        let mut root = CertificateParams::new(Vec::<String>::new()).unwrap();
        root.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        root.distinguished_name.push(DnType::CommonName, "root");
        let root_cert = root.self_signed(&root_key).unwrap();
        let root_issuer = Issuer::new(root, root_key);
        let mid_key = key_pair(KeyAlgorithm::default()).unwrap();
        let mut mid = CertificateParams::new(Vec::<String>::new()).unwrap();
        mid.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        mid.distinguished_name
            .push(DnType::CommonName, "intermediate");
        let mid_cert = mid.signed_by(&mid_key, &root_issuer).unwrap();
        let mid_ca =
            CertificateAuthority::from_identity(identity_from(&mid_cert, &mid_key)).unwrap();
        let leaf = mid_ca.issue(Role::Server, KeyAlgorithm::default()).unwrap();

        let intermediates = [mid_cert.der().clone()];
        crate::verify_chain_with(leaf.cert_der(), &intermediates, root_cert.der()).unwrap();
        let err = verify_chain(leaf.cert_der(), root_cert.der()).unwrap_err();
        assert_eq!(err.code(), Code::CryptoChainInvalid);
    }
}
