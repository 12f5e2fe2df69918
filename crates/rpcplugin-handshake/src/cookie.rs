//! The magic cookie: the environment variable a host sets so that its plugin knows
//! it was started by a host and not by a person at a terminal.

use rpcplugin_core::Code;
use std::fmt;

use crate::{Error, Result, quote};

/// What a plugin prints on stderr when it was run directly, before exiting with
/// status 1 (go-plugin prints a text like it when the cookie does not match). It has
/// no trailing newline: print it with `eprintln!`.
pub const NOT_A_TERMINAL_PROGRAM: &str = "This binary is a plugin. It is not meant to be \
executed directly.\nPlease run the program that uses this plugin; that program starts \
the plugin automatically.";

/// Said with every cookie error: the usual cause is a person running the plugin.
const COOKIE_HINT: &str =
    "this binary is a plugin: it is started by its host application, not run directly";

/// A magic cookie: an environment variable name and the value the host sets it to.
///
/// go-plugin calls this "a very basic verification that a plugin is intended to be
/// launched. This is not a security measure, just a UX feature." The value is
/// still kept out of error messages and of `Debug`, since applications treat it as
/// a shared secret.
#[derive(Clone, PartialEq, Eq)]
pub struct MagicCookie {
    key: String,
    value: String,
}

impl MagicCookie {
    /// A cookie named `key` with the expected `value`.
    ///
    /// Both must be non-empty (otherwise a config error,
    /// [`Code::HandshakeInvalidCookie`](rpcplugin_core::Code::HandshakeInvalidCookie)): an empty value cannot tell "set by a
    /// host" from "not set", and go-plugin refuses an empty key or value too. The
    /// key must also be usable as an environment variable name: no `=` and no NUL.
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Result<Self> {
        let (key, value) = (key.into(), value.into());
        let invalid = |message: String| {
            Err(Error::new(Code::HandshakeInvalidCookie, message).with_hint(
                "set both the magic cookie key and value to the non-empty strings the host \
                     and plugin agree on",
            ))
        };
        if key.is_empty() {
            return invalid("magic cookie key is empty".to_owned());
        }
        if key.contains(['=', '\0']) {
            return invalid(format!(
                "magic cookie key {} is not an environment variable name",
                quote(&key)
            ));
        }
        if value.is_empty() {
            return invalid(format!("magic cookie {key} has an empty value"));
        }
        if value.contains('\0') {
            return invalid(format!("magic cookie {key} has a NUL in its value"));
        }
        Ok(Self { key, value })
    }

    /// The environment variable's name, e.g. `BASIC_PLUGIN`.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The value the host sets, e.g. `hello`.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// Plugin side: checks the value received in the [`key`](Self::key) variable.
    ///
    /// `None` or an empty value is `handshake.missing_cookie` (go-plugin reads the
    /// variable with `os.Getenv`, for which empty and unset are the same); any other
    /// value but the expected one is `handshake.bad_cookie`. The message quotes
    /// what was received but never the expected value. On either error a plugin
    /// prints [`NOT_A_TERMINAL_PROGRAM`] on stderr and exits with status 1.
    pub fn check(&self, received: Option<&str>) -> Result<()> {
        match received {
            Some(value) if value == self.value => Ok(()),
            None | Some("") => Err(Error::new(
                Code::HandshakeMissingCookie,
                format!("magic cookie {} is not set", self.key),
            )
            .with_hint(COOKIE_HINT)),
            Some(value) => Err(Error::new(
                Code::HandshakeBadCookie,
                format!(
                    "magic cookie {} has the wrong value {}",
                    self.key,
                    quote(value)
                ),
            )
            .with_hint(COOKIE_HINT)),
        }
    }
}

impl fmt::Debug for MagicCookie {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MagicCookie")
            .field("key", &self.key)
            .field("value", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cookie() -> MagicCookie {
        MagicCookie::new("BASIC_PLUGIN", "hello").unwrap()
    }

    #[test]
    fn empty_key_or_value_is_a_config_error() {
        for (k, v) in [
            ("", "hello"),
            ("BASIC_PLUGIN", ""),
            ("A=B", "x"),
            ("K", "a\0b"),
        ] {
            let err = MagicCookie::new(k, v).unwrap_err();
            assert_eq!(err.kind(), rpcplugin_core::ErrorKind::Config);
            assert_eq!(err.code(), Code::HandshakeInvalidCookie);
        }
        let c = cookie();
        assert_eq!((c.key(), c.value()), ("BASIC_PLUGIN", "hello"));
    }

    #[test]
    fn matching_value_passes() {
        assert!(cookie().check(Some("hello")).is_ok());
    }

    #[test]
    fn missing_and_wrong_have_different_codes_and_the_same_hint() {
        let missing = cookie().check(None).unwrap_err();
        assert_eq!(missing.code(), Code::HandshakeMissingCookie);
        assert_eq!(
            cookie().check(Some("")).unwrap_err().code(),
            Code::HandshakeMissingCookie
        );
        let wrong = cookie().check(Some("bogus")).unwrap_err();
        assert_eq!(wrong.code(), Code::HandshakeBadCookie);
        assert_eq!(
            wrong.to_string(),
            "magic cookie BASIC_PLUGIN has the wrong value \"bogus\""
        );
        for err in [missing, wrong] {
            assert_eq!(err.kind(), rpcplugin_core::ErrorKind::Handshake);
            assert_eq!(err.hint(), Some(COOKIE_HINT));
        }
    }

    #[test]
    fn expected_value_never_appears_in_errors_or_debug() {
        let c = MagicCookie::new("K", "s3cret-value").unwrap();
        for err in [
            c.check(None).unwrap_err(),
            c.check(Some("s3cret-valu")).unwrap_err(),
        ] {
            let text = rpcplugin_core::render(&err);
            assert!(!text.contains("s3cret-value"), "{text}");
        }
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn the_terminal_text_tells_a_person_what_to_do() {
        assert!(NOT_A_TERMINAL_PROGRAM.starts_with("This binary is a plugin."));
        assert!(NOT_A_TERMINAL_PROGRAM.contains("not meant to be executed directly"));
    }
}
