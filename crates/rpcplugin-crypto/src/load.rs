//! Loading certificates and keys from a path, a `file://` URI, or inline PEM, the three
//! forms pyvider accepts in `PLUGIN_*` variables.

use rpcplugin_core::Code;
use std::borrow::Cow;
use std::path::Path;
use std::time::SystemTime;

use rpcplugin_core::{Error, Result};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::identity::Identity;
use crate::inspect::CertificateInfo;

/// Resolves `value` to PEM text: inline when it contains a PEM header, otherwise a
/// `file://` URI or a plain path that is read.
fn pem_text<'a>(value: &'a str, variable: &str) -> Result<Cow<'a, [u8]>> {
    if value.contains("-----BEGIN") {
        return Ok(Cow::Borrowed(value.as_bytes()));
    }
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(
            Error::new(Code::CryptoEmptyValue, format!("{variable} is empty")).with_hint(format!(
                "set {variable} to a file path, a file:// URI, or PEM text"
            )),
        );
    }
    let path = match trimmed.strip_prefix("file://") {
        // file:///abs and file://localhost/abs both name /abs.
        Some(rest) => rest.strip_prefix("localhost").unwrap_or(rest),
        None => trimmed,
    };
    match std::fs::read(Path::new(path)) {
        Ok(bytes) => Ok(Cow::Owned(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::new(
            Code::CryptoFileNotFound,
            format!("{variable}: no such file {path}"),
        )
        .with_source(e)
        .with_hint(format!(
            "check the path in {variable}, or put the PEM text itself in it"
        ))),
        Err(e) => Err(Error::new(
            Code::CryptoFileUnreadable,
            format!("{variable}: cannot read {path}"),
        )
        .with_source(e)
        .with_hint("check the file's permissions")),
    }
}

fn not_pem(variable: &str, source: Option<pem::Error>) -> Error {
    let err = Error::new(
        Code::CryptoNotPem,
        format!("{variable} is not pem"),
    )
    .with_hint(format!(
        "{variable} must hold PEM text (-----BEGIN ...-----), or a path or file:// URI of a PEM file"
    ));
    match source {
        Some(e) => err.with_source(e),
        None => err,
    }
}

fn looks_like_pem(text: &[u8]) -> bool {
    text.windows(10).any(|w| w == b"-----BEGIN")
}

/// Loads every certificate in `value` (a path, a `file://` URI, or inline PEM) and
/// checks each is parseable and valid now. `variable` names the setting in errors.
///
/// Error codes: `crypto.file_not_found`, `crypto.file_unreadable`, `crypto.empty_value`,
/// `crypto.not_pem`, `crypto.no_certificate`, `crypto.bad_certificate`,
/// `crypto.cert_expired`, `crypto.cert_not_yet_valid`.
pub fn load_certificates(value: &str, variable: &str) -> Result<Vec<CertificateDer<'static>>> {
    let text = pem_text(value, variable)?;
    if !looks_like_pem(&text) {
        return Err(not_pem(variable, None));
    }
    let certs = CertificateDer::pem_slice_iter(&text)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| not_pem(variable, Some(e)))?;
    if certs.is_empty() {
        return Err(Error::new(
            Code::CryptoNoCertificate,
            format!("{variable} holds no certificate"),
        )
        .with_hint(format!(
            "{variable} must contain a -----BEGIN CERTIFICATE----- block; is it a key?"
        )));
    }
    for cert in &certs {
        check_certificate_dates(cert, variable)?;
    }
    Ok(certs)
}

/// Parses `cert` and checks its dates against now; `variable` names it in errors.
pub(crate) fn check_certificate_dates(cert: &CertificateDer<'_>, variable: &str) -> Result<()> {
    let info = CertificateInfo::parse(cert).map_err(|e| {
        Error::new(
            Code::CryptoBadCertificate,
            format!("{variable} holds a certificate that cannot be parsed"),
        )
        .with_source(e)
        .with_hint(format!("regenerate the certificate in {variable}"))
    })?;
    check_dates(&info, SystemTime::now(), variable)
}

fn check_dates(info: &CertificateInfo, now: SystemTime, variable: &str) -> Result<()> {
    if now > info.not_after {
        return Err(Error::new(
            Code::CryptoCertExpired,
            format!(
                "{variable}: certificate {} expired at {}",
                info.subject,
                httpish(info.not_after)
            ),
        )
        .with_hint(format!("issue a new certificate for {variable}")));
    }
    if now < info.not_before {
        return Err(Error::new(
            Code::CryptoCertNotYetValid,
            format!(
                "{variable}: certificate {} is not valid until {}",
                info.subject,
                httpish(info.not_before)
            ),
        )
        .with_hint("check this machine's clock, or wait until the certificate's not-before"));
    }
    Ok(())
}

/// Formats a time as RFC 3339 in UTC, for messages.
fn httpish(t: SystemTime) -> String {
    let secs = match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    };
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|dt| {
            dt.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("unix time {secs}"))
}

/// Loads the first private key (PKCS#8, PKCS#1 RSA or SEC1 EC) in `value` (a path, a
/// `file://` URI, or inline PEM). `variable` names the setting in errors.
///
/// Error codes: `crypto.file_not_found`, `crypto.file_unreadable`, `crypto.empty_value`,
/// `crypto.not_pem`, `crypto.no_private_key`.
pub fn load_private_key(value: &str, variable: &str) -> Result<PrivateKeyDer<'static>> {
    let text = pem_text(value, variable)?;
    if !looks_like_pem(&text) {
        return Err(not_pem(variable, None));
    }
    match PrivateKeyDer::from_pem_slice(&text) {
        Ok(key) => Ok(key),
        Err(pem::Error::NoItemsFound) => Err(Error::new(
            Code::CryptoNoPrivateKey,
            format!("{variable} holds no private key"),
        )
        .with_hint(format!(
            "{variable} must contain a -----BEGIN PRIVATE KEY----- (or RSA/EC PRIVATE KEY) block; is it a certificate?"
        ))),
        Err(e) => Err(not_pem(variable, Some(e))),
    }
}

impl Identity {
    /// Loads a certificate and its key, each from a path, a `file://` URI, or inline
    /// PEM, and checks that the key belongs to the certificate and that the certificate
    /// is valid now. The first certificate in `cert_value` is used.
    ///
    /// Error codes: those of [`load_certificates`] and [`load_private_key`], plus
    /// `crypto.bad_private_key` (unsupported or corrupt key) and `crypto.key_mismatch`.
    pub fn load(cert_value: &str, key_value: &str, cert_var: &str, key_var: &str) -> Result<Self> {
        let mut certs = load_certificates(cert_value, cert_var)?;
        let key = load_private_key(key_value, key_var)?;
        let cert = certs.swap_remove(0);
        let provider = crate::provider();
        let signing_key = provider
            .key_provider
            .load_private_key(key.clone_key())
            .map_err(|e| {
                Error::new(
                    Code::CryptoBadPrivateKey,
                    format!("{key_var} holds a private key that cannot be used"),
                )
                .with_source(e)
                .with_hint("use an ECDSA (P-256, P-384, P-521), Ed25519 or RSA key")
            })?;
        let certified = rustls::sign::CertifiedKey::new(vec![cert.clone()], signing_key);
        match certified.keys_match() {
            Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
            Err(e) => {
                return Err(Error::new(
                    Code::CryptoKeyMismatch,
                    format!("the key in {key_var} does not match the certificate in {cert_var}"),
                )
                .with_source(e)
                .with_hint(format!(
                    "{cert_var} and {key_var} must come from the same key pair"
                )));
            }
        }
        Ok(Self::from_parts(cert, key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CertOptions, KeyAlgorithm, Role};
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    fn temp_file(contents: &str) -> PathBuf {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "rpcplugin-crypto-test-{}-{}.pem",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, contents).unwrap();
        path
    }

    fn id() -> Identity {
        Identity::self_signed(KeyAlgorithm::EcdsaP256, Role::Server).unwrap()
    }

    #[test]
    fn loads_from_path_file_uri_and_inline_pem() {
        let id = id();
        let cert_path = temp_file(&id.cert_pem());
        let key_path = temp_file(&id.key_pem());
        let cert_uri = format!("file://{}", cert_path.display());
        let key_uri = format!("file://{}", key_path.display());
        let forms = [
            (
                cert_path.display().to_string(),
                key_path.display().to_string(),
            ),
            (cert_uri, key_uri),
            (id.cert_pem(), id.key_pem()),
        ];
        for (cert, key) in &forms {
            let certs = load_certificates(cert, "PLUGIN_SERVER_CERT").unwrap();
            assert_eq!(certs, [id.cert_der().clone()]);
            let loaded =
                Identity::load(cert, key, "PLUGIN_SERVER_CERT", "PLUGIN_SERVER_KEY").unwrap();
            assert_eq!(loaded.cert_der(), id.cert_der());
        }
        std::fs::remove_file(cert_path).unwrap();
        std::fs::remove_file(key_path).unwrap();
    }

    #[test]
    fn loads_every_certificate_of_a_bundle() {
        let a = id();
        let b = id();
        let bundle = format!("{}{}", a.cert_pem(), b.cert_pem());
        let certs = load_certificates(&bundle, "PLUGIN_CLIENT_ROOT_CERTS").unwrap();
        assert_eq!(certs, [a.cert_der().clone(), b.cert_der().clone()]);
    }

    fn assert_error(err: Error, code: Code, variable: &str) {
        assert_eq!(err.code(), code, "{err}");
        assert!(
            err.message().contains(variable),
            "{err} should name {variable}"
        );
        assert!(err.hint().is_some(), "{code} needs a hint");
    }

    #[test]
    fn missing_file_is_file_not_found() {
        let err =
            load_certificates("/nonexistent/rpcplugin/cert.pem", "PLUGIN_SERVER_CERT").unwrap_err();
        assert_error(err, Code::CryptoFileNotFound, "PLUGIN_SERVER_CERT");
        let err = load_private_key("file:///nonexistent/key.pem", "PLUGIN_SERVER_KEY").unwrap_err();
        assert_error(err, Code::CryptoFileNotFound, "PLUGIN_SERVER_KEY");
    }

    #[test]
    fn non_pem_is_not_pem() {
        let path = temp_file("just some text\n");
        let err = load_certificates(path.to_str().unwrap(), "PLUGIN_SERVER_CERT").unwrap_err();
        assert_error(err, Code::CryptoNotPem, "PLUGIN_SERVER_CERT");
        std::fs::remove_file(path).unwrap();
        let broken = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        let err = load_certificates(broken, "PLUGIN_SERVER_CERT").unwrap_err();
        assert_error(err, Code::CryptoNotPem, "PLUGIN_SERVER_CERT");
    }

    #[test]
    fn a_key_where_a_certificate_belongs_is_no_certificate() {
        let err = load_certificates(&id().key_pem(), "PLUGIN_SERVER_CERT").unwrap_err();
        assert_error(err, Code::CryptoNoCertificate, "PLUGIN_SERVER_CERT");
        let err = load_private_key(&id().cert_pem(), "PLUGIN_SERVER_KEY").unwrap_err();
        assert_error(err, Code::CryptoNoPrivateKey, "PLUGIN_SERVER_KEY");
    }

    #[test]
    fn another_identitys_key_is_key_mismatch() {
        let (a, b) = (id(), id());
        let err = Identity::load(
            &a.cert_pem(),
            &b.key_pem(),
            "PLUGIN_SERVER_CERT",
            "PLUGIN_SERVER_KEY",
        )
        .unwrap_err();
        assert_error(err, Code::CryptoKeyMismatch, "PLUGIN_SERVER_KEY");
    }

    #[test]
    fn expired_and_not_yet_valid_certificates_are_refused() {
        let day = Duration::from_secs(86_400);
        let past = CertOptions::new(KeyAlgorithm::EcdsaP256)
            .not_before(SystemTime::now() - 10 * day)
            .validity(day);
        let expired = Identity::self_signed_with(Role::Server, &past).unwrap();
        let err = load_certificates(&expired.cert_pem(), "PLUGIN_SERVER_CERT").unwrap_err();
        assert_error(err, Code::CryptoCertExpired, "PLUGIN_SERVER_CERT");

        let future = CertOptions::new(KeyAlgorithm::EcdsaP256)
            .not_before(SystemTime::now() + 10 * day)
            .validity(day);
        let early = Identity::self_signed_with(Role::Server, &future).unwrap();
        let err = Identity::load(
            &early.cert_pem(),
            &early.key_pem(),
            "PLUGIN_SERVER_CERT",
            "K",
        )
        .unwrap_err();
        assert_error(err, Code::CryptoCertNotYetValid, "PLUGIN_SERVER_CERT");
    }

    #[test]
    fn empty_value_is_explained() {
        let err = load_certificates("  ", "PLUGIN_SERVER_CERT").unwrap_err();
        assert_error(err, Code::CryptoEmptyValue, "PLUGIN_SERVER_CERT");
    }
}
