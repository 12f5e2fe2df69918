//! `rpcplugin certs`: the files of a configured-mTLS deployment (a CA, plugin and
//! host certificates), and reading and checking certificates, with
//! rpcplugin-crypto doing the cryptography. What it writes is what the
//! `PLUGIN_SERVER_CERT`/`_KEY`, `PLUGIN_CLIENT_ROOT_CERTS` (plugin side) and
//! `PLUGIN_CLIENT_CERT`/`_KEY`, `PLUGIN_SERVER_ROOT_CERTS` (host side) variables take.

use crate::args::{CertsCommand, KeyArg};
use crate::probe::{key_type_name, rfc3339};
use rpcplugin_crypto::{
    CertOptions, CertificateAuthority, CertificateDer, CertificateInfo, DEFAULT_CA_VALIDITY,
    DEFAULT_VALIDITY, Identity, KeyAlgorithm, Role, load_certificates, verify_chain_with,
};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// A command that failed: the text for stderr (message and hint).
pub(crate) type Failed = String;

/// `error: MESSAGE\n  hint: HINT`, as every rpcplugin error reads.
fn failed(message: impl std::fmt::Display, hint: impl std::fmt::Display) -> Failed {
    format!("error: {message}\n  hint: {hint}")
}

/// Runs a `certs` command; what it prints for a person goes to stdout.
pub(crate) fn run(command: &CertsCommand) -> Result<String, Failed> {
    match command {
        CertsCommand::Ca(args) => make_ca(&args.out, &args.name, args.key, args.days),
        CertsCommand::Issue(args) => issue(
            &args.ca,
            &args.name,
            if args.server {
                Role::Server
            } else {
                Role::Client
            },
            &args.out,
            args.key,
            args.days,
        ),
        CertsCommand::Inspect(args) => inspect(&args.file, args.json),
        CertsCommand::Verify(args) => verify(&args.ca, &args.cert),
    }
}

fn algorithm(key: KeyArg) -> KeyAlgorithm {
    match key {
        KeyArg::P256 => KeyAlgorithm::EcdsaP256,
        KeyArg::P384 => KeyAlgorithm::EcdsaP384,
        KeyArg::P521 => KeyAlgorithm::EcdsaP521,
        KeyArg::Ed25519 => KeyAlgorithm::Ed25519,
    }
}

fn options(key: KeyArg, days: Option<u32>, default: Duration) -> CertOptions {
    let validity = days.map_or(default, |d| Duration::from_secs(u64::from(d) * 86_400));
    CertOptions::new(algorithm(key)).validity(validity)
}

/// The CA's files in `dir`.
fn ca_files(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join("ca.pem"), dir.join("ca-key.pem"))
}

fn make_ca(out: &Path, name: &str, key: KeyArg, days: Option<u32>) -> Result<String, Failed> {
    let ca = CertificateAuthority::generate_with(name, &options(key, days, DEFAULT_CA_VALIDITY))
        .map_err(|e| rpcplugin_core::render(&e))?;
    let out = prepare_dir(out)?;
    let (cert, key_file) = ca_files(&out);
    write_pair(ca.identity(), &cert, &key_file)?;
    let info = CertificateInfo::parse(ca.certificate()).map_err(|e| rpcplugin_core::render(&e))?;
    Ok(format!(
        "wrote {cert}: the CA certificate ({subject}, valid until {until})\n\
         wrote {key}: its private key (mode 0600; keep it for `rpcplugin certs issue --ca {dir}`)\n\
         \n\
         Plugins trust hosts it issued with PLUGIN_CLIENT_ROOT_CERTS={cert}\n\
         Hosts trust plugins it issued with PLUGIN_SERVER_ROOT_CERTS={cert}\n",
        cert = cert.display(),
        key = key_file.display(),
        dir = out.display(),
        subject = info.subject,
        until = rfc3339(info.not_after),
    ))
}

fn issue(
    ca_dir: &Path,
    name: &str,
    role: Role,
    out: &Path,
    key: KeyArg,
    days: Option<u32>,
) -> Result<String, Failed> {
    let ca_dir = absolute(ca_dir)?;
    let (ca_cert, ca_key) = ca_files(&ca_dir);
    for file in [&ca_cert, &ca_key] {
        if !file.is_file() {
            return Err(failed(
                format!(
                    "no CA in {}: {} is missing",
                    ca_dir.display(),
                    file.display()
                ),
                "make one with `rpcplugin certs ca --out DIR`, then pass that DIR to --ca",
            ));
        }
    }
    let ca = Identity::load(
        &ca_cert.to_string_lossy(),
        &ca_key.to_string_lossy(),
        "--ca certificate",
        "--ca key",
    )
    .and_then(CertificateAuthority::from_identity)
    .map_err(|e| rpcplugin_core::render(&e))?;
    let leaf = ca
        .issue_named(role, name, &options(key, days, DEFAULT_VALIDITY))
        .map_err(|e| rpcplugin_core::render(&e))?;
    let out = prepare_dir(out)?;
    let cert = out.join(format!("{name}.pem"));
    let key_file = out.join(format!("{name}-key.pem"));
    write_pair(&leaf, &cert, &key_file)?;
    let info = CertificateInfo::parse(leaf.cert_der()).map_err(|e| rpcplugin_core::render(&e))?;
    let mut text = format!(
        "wrote {}: a {} certificate for {} (SANs {}; valid until {})\n\
         wrote {}: its private key (mode 0600)\n\n",
        cert.display(),
        if role == Role::Server {
            "server (plugin)"
        } else {
            "client (host)"
        },
        info.subject,
        info.sans.join(", "),
        rfc3339(info.not_after),
        key_file.display(),
    );
    let (side, vars) = match role {
        Role::Server => (
            "the plugin's",
            [
                ("PLUGIN_SERVER_CERT", &cert),
                ("PLUGIN_SERVER_KEY", &key_file),
                ("PLUGIN_CLIENT_ROOT_CERTS", &ca_cert),
            ],
        ),
        Role::Client => (
            "the host's",
            [
                ("PLUGIN_CLIENT_CERT", &cert),
                ("PLUGIN_CLIENT_KEY", &key_file),
                ("PLUGIN_SERVER_ROOT_CERTS", &ca_cert),
            ],
        ),
    };
    let _ = writeln!(text, "For {side} environment:");
    for (var, path) in vars {
        let _ = writeln!(text, "  {var}={}", path.display());
    }
    Ok(text)
}

/// What `certs inspect --json` prints for each certificate.
#[derive(Debug, Serialize)]
struct Inspected {
    subject: String,
    sans: Vec<String>,
    key_type: String,
    is_ca: bool,
    not_before: String,
    not_after: String,
    /// Whole days until it expires; negative once it has.
    days_left: i64,
    sha256: String,
}

fn inspect(file: &Path, json: bool) -> Result<String, Failed> {
    let certs = read_certs(file, "the certificate file")?;
    let now = SystemTime::now();
    let mut all = Vec::new();
    for cert in &certs {
        let info = CertificateInfo::parse(cert).map_err(|e| rpcplugin_core::render(&e))?;
        let days_left = match info.not_after.duration_since(now) {
            Ok(left) => (left.as_secs() / 86_400) as i64,
            Err(past) => -(past.duration().as_secs().div_ceil(86_400) as i64),
        };
        all.push(Inspected {
            key_type: key_type_name(&info.key_type),
            not_before: rfc3339(info.not_before),
            not_after: rfc3339(info.not_after),
            subject: info.subject,
            sans: info.sans,
            is_ca: info.is_ca,
            days_left,
            sha256: info.sha256,
        });
    }
    if json {
        return Ok(format!(
            "{}\n",
            serde_json::to_string(&all).expect("plain data serializes")
        ));
    }
    let mut text = String::new();
    for (i, c) in all.iter().enumerate() {
        let _ = writeln!(
            text,
            "certificate {} of {} in {}",
            i + 1,
            all.len(),
            file.display()
        );
        let sans = if c.sans.is_empty() {
            "(none)".to_owned()
        } else {
            c.sans.join(", ")
        };
        let left = if c.days_left >= 0 {
            format!("{} days left", c.days_left)
        } else {
            format!("EXPIRED {} days ago", -c.days_left)
        };
        for (key, value) in [
            ("subject", c.subject.clone()),
            ("SANs", sans),
            ("key type", c.key_type.clone()),
            ("CA", if c.is_ca { "yes" } else { "no" }.to_owned()),
            ("not before", c.not_before.clone()),
            ("not after", format!("{} ({left})", c.not_after)),
            ("SHA-256", c.sha256.clone()),
        ] {
            let _ = writeln!(text, "  {key:<11} {value}");
        }
    }
    Ok(text)
}

fn verify(ca: &Path, cert: &Path) -> Result<String, Failed> {
    let anchors = read_certs(ca, "--ca")?;
    let chain = read_certs(cert, "the certificate file")?;
    let (leaf, intermediates) = chain
        .split_first()
        .expect("read_certs returns at least one");
    let mut last = None;
    for anchor in &anchors {
        match verify_chain_with(leaf, intermediates, anchor) {
            Ok(()) => {
                let leaf_info =
                    CertificateInfo::parse(leaf).map_err(|e| rpcplugin_core::render(&e))?;
                let ca_info =
                    CertificateInfo::parse(anchor).map_err(|e| rpcplugin_core::render(&e))?;
                let through = match intermediates.len() {
                    0 => String::new(),
                    n => format!(" through {n} intermediate(s)"),
                };
                return Ok(format!(
                    "OK: {} chains to {}{through}, valid now\n",
                    leaf_info.subject, ca_info.subject
                ));
            }
            Err(err) => last = Some(err),
        }
    }
    Err(rpcplugin_core::render(
        &last.expect("read_certs returns at least one"),
    ))
}

/// Every certificate in a PEM (or DER) file; at least one.
fn read_certs(file: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, Failed> {
    if !file.is_file() {
        return Err(failed(
            format!("{what} {} does not exist", file.display()),
            "give the path of a PEM file (rpcplugin certs ca and issue write them)",
        ));
    }
    let certs =
        load_certificates(&file.to_string_lossy(), what).map_err(|e| rpcplugin_core::render(&e))?;
    if certs.is_empty() {
        return Err(failed(
            format!("{} holds no certificate", file.display()),
            "give a PEM file with -----BEGIN CERTIFICATE----- blocks",
        ));
    }
    Ok(certs)
}

fn absolute(dir: &Path) -> Result<PathBuf, Failed> {
    std::path::absolute(dir).map_err(|e| {
        failed(
            format!("cannot resolve {}: {e}", dir.display()),
            "give an existing directory",
        )
    })
}

/// `dir`, created if missing, as an absolute path (for the variables printed).
fn prepare_dir(dir: &Path) -> Result<PathBuf, Failed> {
    std::fs::create_dir_all(dir).map_err(|e| {
        failed(
            format!("cannot create {}: {e}", dir.display()),
            "choose a directory you can write with --out",
        )
    })?;
    absolute(dir)
}

/// The certificate (0644) and the key (0600), never over existing files: a key
/// overwritten by mistake cannot be had back.
fn write_pair(identity: &Identity, cert: &Path, key: &Path) -> Result<(), Failed> {
    for path in [cert, key] {
        if path.exists() {
            return Err(failed(
                format!("{} already exists", path.display()),
                "remove it first, or write to another directory with --out",
            ));
        }
    }
    write_new(key, &identity.key_pem(), 0o600)?;
    write_new(cert, &identity.cert_pem(), 0o644)
}

fn write_new(path: &Path, text: &str, mode: u32) -> Result<(), Failed> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .map_err(|e| {
            failed(
                format!("cannot write {}: {e}", path.display()),
                "choose a directory you can write with --out",
            )
        })
}
