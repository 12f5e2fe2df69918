//! SHA-256 digests of plugin executables (go-plugin's `SecureConfig`).

use rpcplugin_core::Code;
use std::fmt;
use std::io::Read;
use std::path::Path;
use std::str::FromStr;

use rpcplugin_core::{Error, Result};

/// A SHA-256 digest, written and parsed as 64 lowercase hex digits (what `sha256sum`
/// prints).
///
/// ```
/// use rpcplugin_crypto::Sha256;
///
/// let digest = Sha256::of_bytes(b"abc");
/// assert_eq!(
///     digest.to_string(),
///     "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
/// );
/// assert_eq!(digest.to_string().parse::<Sha256>().unwrap(), digest);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha256([u8; 32]);

impl Sha256 {
    /// The digest with these bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The digest's bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The digest of `data`.
    pub fn of_bytes(data: &[u8]) -> Self {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
        Self(
            digest
                .as_ref()
                .try_into()
                .expect("SHA-256 is 32 bytes long"),
        )
    }

    /// The digest of the file at `path`, read in chunks (executables can be large).
    pub fn of_file(path: &Path) -> Result<Self> {
        let read_error = |err: std::io::Error| {
            Error::new(
                Code::SecurityChecksumRead,
                format!("cannot read {} to check its checksum", path.display()),
            )
            .with_source(err)
            .with_hint("check the path to the plugin executable and that it is readable")
        };
        let mut file = std::fs::File::open(path).map_err(read_error)?;
        let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = file.read(&mut buf).map_err(read_error)?;
            if n == 0 {
                break;
            }
            context.update(&buf[..n]);
        }
        Ok(Self(
            context
                .finish()
                .as_ref()
                .try_into()
                .expect("SHA-256 is 32 bytes long"),
        ))
    }
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256({self})")
    }
}

impl FromStr for Sha256 {
    type Err = Error;

    /// Parses 64 hex digits, either case; surrounding whitespace and a `sha256:`
    /// prefix are accepted, so `sha256sum` output and OCI-style digests paste in.
    fn from_str(s: &str) -> Result<Self> {
        let trimmed = s.trim();
        let hex = trimmed.strip_prefix("sha256:").unwrap_or(trimmed);
        let invalid = || {
            Error::new(
                Code::ConfigInvalidChecksum,
                format!("{s:?} is not a SHA-256 digest"),
            )
            .with_hint("give 64 hexadecimal digits, as printed by `sha256sum PLUGIN`")
        };
        let mut bytes = [0u8; 32];
        // Any length but 64 digits, or any byte that is not a hex digit, is an error.
        hex::decode_to_slice(hex, &mut bytes).map_err(|_| invalid())?;
        Ok(Self(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_digest_matches_bytes_digest() {
        let dir = std::env::temp_dir().join(format!("rpcplugin-digest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("data");
        // Larger than one read chunk, so the streaming path is exercised.
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        assert_eq!(Sha256::of_file(&path).unwrap(), Sha256::of_bytes(&data));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_file_is_a_security_error_with_a_hint() {
        let err = Sha256::of_file(Path::new("/nonexistent/plugin")).unwrap_err();
        assert_eq!(err.kind(), rpcplugin_core::ErrorKind::Security);
        assert_eq!(err.code(), Code::SecurityChecksumRead);
        assert!(err.hint().is_some());
    }

    #[test]
    fn parses_sha256sum_output_forms() {
        let digest = Sha256::of_bytes(b"");
        let hex = digest.to_string();
        assert_eq!(
            hex,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        for form in [
            hex.clone(),
            hex.to_uppercase(),
            format!("sha256:{hex}"),
            format!("  {hex}\n"),
        ] {
            assert_eq!(form.parse::<Sha256>().unwrap(), digest, "{form:?}");
        }
    }

    #[test]
    fn rejects_malformed_digests() {
        // `+f` is what `u8::from_str_radix` would take for 0x0f: not a digest.
        for bad in [
            "",
            "abc",
            &"g".repeat(64),
            &"a".repeat(63),
            &"a".repeat(65),
            &"é".repeat(32),
            &"+f".repeat(32),
        ] {
            let err = bad.parse::<Sha256>().unwrap_err();
            assert_eq!(err.code(), Code::ConfigInvalidChecksum, "{bad:?}");
            assert!(err.hint().unwrap().contains("sha256sum"));
        }
    }
}
