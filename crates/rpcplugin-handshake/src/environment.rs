//! The environment contract, host to plugin: what the host sets ([`PluginEnv`]) and
//! what the plugin reads back ([`ReceivedEnv`]). Neither touches the process
//! environment: the host passes the pairs to its spawner, the plugin passes a lookup.

use rpcplugin_core::Code;
use std::path::PathBuf;

use crate::env::{
    PLUGIN_CLIENT_CERT, PLUGIN_MAX_PORT, PLUGIN_MIN_PORT, PLUGIN_MULTIPLEX_GRPC,
    PLUGIN_PROTOCOL_VERSIONS, PLUGIN_UNIX_SOCKET_DIR, PLUGIN_UNIX_SOCKET_GROUP,
};
use crate::{
    Error, MagicCookie, Negotiated, Result, VersionList, negotiate, parse_go_true, parse_versions,
    quote,
};

/// Host side: the variables to start a plugin with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginEnv {
    /// The magic cookie, always set.
    pub cookie: MagicCookie,
    /// The app protocol versions the host speaks (`PLUGIN_PROTOCOL_VERSIONS`).
    pub protocol_versions: Vec<u32>,
    /// AutoMTLS: the host's client certificate, PEM (`PLUGIN_CLIENT_CERT`).
    pub client_cert_pem: Option<String>,
    /// The TCP port range, inclusive (`PLUGIN_MIN_PORT`, `PLUGIN_MAX_PORT`).
    pub port_range: Option<(u16, u16)>,
    /// Where the plugin should create its Unix sockets (`PLUGIN_UNIX_SOCKET_DIR`).
    pub unix_socket_dir: Option<PathBuf>,
    /// The group that may use those sockets (`PLUGIN_UNIX_SOCKET_GROUP`).
    pub unix_socket_group: Option<String>,
    /// Whether the host wants the gRPC broker multiplexed (`PLUGIN_MULTIPLEX_GRPC`).
    pub multiplex_grpc: bool,
}

impl PluginEnv {
    /// Just the cookie: no versions, no TLS, no port range, no socket settings, no
    /// multiplexing. Set [`protocol_versions`](Self::protocol_versions) before use.
    pub fn new(cookie: MagicCookie) -> Self {
        Self {
            cookie,
            protocol_versions: Vec::new(),
            client_cert_pem: None,
            port_range: None,
            unix_socket_dir: None,
            unix_socket_group: None,
            multiplex_grpc: false,
        }
    }

    /// The `(name, value)` pairs to add to the plugin's environment, in go-plugin's
    /// order: the cookie first, then `PLUGIN_MIN_PORT`/`PLUGIN_MAX_PORT` when a
    /// range is set, `PLUGIN_PROTOCOL_VERSIONS` (always, comma-joined, as go-plugin
    /// does), `PLUGIN_CLIENT_CERT` when set, the socket directory and group when set,
    /// and `PLUGIN_MULTIPLEX_GRPC=true` only when multiplexing is on (as go-plugin's
    /// host does; an unset variable means off to every plugin).
    ///
    /// Add them after the host's own environment so that they win over same-named
    /// inherited variables, as Go's `exec` does. A socket directory that is not UTF-8
    /// is written lossily: choose one that is.
    pub fn to_vars(&self) -> Vec<(String, String)> {
        let mut vars = vec![(self.cookie.key().to_owned(), self.cookie.value().to_owned())];
        if let Some((min, max)) = self.port_range {
            vars.push((PLUGIN_MIN_PORT.to_owned(), min.to_string()));
            vars.push((PLUGIN_MAX_PORT.to_owned(), max.to_string()));
        }
        let versions: Vec<String> = self.protocol_versions.iter().map(u32::to_string).collect();
        vars.push((PLUGIN_PROTOCOL_VERSIONS.to_owned(), versions.join(",")));
        if let Some(pem) = &self.client_cert_pem {
            vars.push((PLUGIN_CLIENT_CERT.to_owned(), pem.clone()));
        }
        if let Some(dir) = &self.unix_socket_dir {
            vars.push((
                PLUGIN_UNIX_SOCKET_DIR.to_owned(),
                dir.to_string_lossy().into_owned(),
            ));
        }
        if let Some(group) = &self.unix_socket_group {
            vars.push((PLUGIN_UNIX_SOCKET_GROUP.to_owned(), group.clone()));
        }
        if self.multiplex_grpc {
            vars.push((PLUGIN_MULTIPLEX_GRPC.to_owned(), "true".to_owned()));
        }
        vars
    }
}

/// Plugin side: what the host asked for, read from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedEnv {
    /// `PLUGIN_PROTOCOL_VERSIONS`, `None` when unset or blank.
    pub protocol_versions: Option<VersionList>,
    /// `PLUGIN_CLIENT_CERT` (AutoMTLS is on when set), `None` when unset or blank.
    pub client_cert_pem: Option<String>,
    /// `PLUGIN_MIN_PORT` and `PLUGIN_MAX_PORT`, inclusive; `None` when both are unset.
    pub port_range: Option<(u16, u16)>,
    /// `PLUGIN_UNIX_SOCKET_DIR`, `None` when unset or empty.
    pub unix_socket_dir: Option<PathBuf>,
    /// `PLUGIN_UNIX_SOCKET_GROUP`, `None` when unset or blank.
    pub unix_socket_group: Option<String>,
    /// `PLUGIN_MULTIPLEX_GRPC` is `true`, `t` or `1` in any case (Go's
    /// `strconv.ParseBool`, which go-plugin's own server uses); anything else is off.
    pub multiplex_grpc: bool,
}

impl ReceivedEnv {
    /// Reads the environment through `lookup` (for a real plugin,
    /// `|name| std::env::var(name).ok()`).
    ///
    /// The cookie is checked first ([`MagicCookie::check`]), so a person running the
    /// plugin at a terminal gets the cookie error and not a complaint about some
    /// other variable. Empty values count as unset, since go-plugin reads them with
    /// `os.Getenv`.
    ///
    /// The port range is a config error ([`rpcplugin_core::ErrorKind::Config`]) when only one bound is set
    /// (`handshake.incomplete_port_range`), a bound is not a port number
    /// (`handshake.bad_port`), or the minimum is above the maximum
    /// (`handshake.inverted_port_range`); each names the variable and the value.
    pub fn from_lookup(
        cookie: &MagicCookie,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self> {
        cookie.check(lookup(cookie.key()).as_deref())?;

        // Blank means unset for everything but the certificate, whose PEM is passed
        // on as given.
        let non_blank = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());

        Ok(Self {
            protocol_versions: non_blank(PLUGIN_PROTOCOL_VERSIONS).map(|v| parse_versions(&v)),
            client_cert_pem: non_blank(PLUGIN_CLIENT_CERT),
            port_range: port_range(non_blank(PLUGIN_MIN_PORT), non_blank(PLUGIN_MAX_PORT))?,
            unix_socket_dir: lookup(PLUGIN_UNIX_SOCKET_DIR)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            unix_socket_group: non_blank(PLUGIN_UNIX_SOCKET_GROUP).map(|g| g.trim().to_owned()),
            multiplex_grpc: lookup(PLUGIN_MULTIPLEX_GRPC).is_some_and(|v| parse_go_true(&v)),
        })
    }

    /// Negotiates the app protocol version to serve against what the host offered
    /// ([`negotiate`]); see there for the fallback when nothing matches.
    pub fn negotiate(&self, served: &[u32]) -> Negotiated {
        negotiate(
            served,
            self.protocol_versions.as_ref().map(|l| &l.versions[..]),
        )
    }
}

fn port_range(min: Option<String>, max: Option<String>) -> Result<Option<(u16, u16)>> {
    let (min, max) = match (min, max) {
        (None, None) => return Ok(None),
        (Some(min), Some(max)) => (min, max),
        (set, _) => {
            let (given, missing) = if set.is_some() {
                (PLUGIN_MIN_PORT, PLUGIN_MAX_PORT)
            } else {
                (PLUGIN_MAX_PORT, PLUGIN_MIN_PORT)
            };
            return Err(Error::new(
                Code::HandshakeIncompletePortRange,
                format!("{given} is set but {missing} is not"),
            )
            .with_hint(format!(
                "set both {PLUGIN_MIN_PORT} and {PLUGIN_MAX_PORT}, or neither"
            )));
        }
    };
    let (min, max) = (
        parse_port(PLUGIN_MIN_PORT, &min)?,
        parse_port(PLUGIN_MAX_PORT, &max)?,
    );
    if min > max {
        return Err(Error::new(
            Code::HandshakeInvertedPortRange,
            format!("{PLUGIN_MIN_PORT} {min} is above {PLUGIN_MAX_PORT} {max}"),
        )
        .with_hint(format!(
            "set {PLUGIN_MIN_PORT} to at most {PLUGIN_MAX_PORT}"
        )));
    }
    Ok(Some((min, max)))
}

fn parse_port(name: &str, value: &str) -> Result<u16> {
    value.trim().parse::<u16>().map_err(|e| {
        Error::new(
            Code::HandshakeBadPort,
            format!("{name} {} is not a port number", quote(value)),
        )
        .with_source(e)
        .with_hint(format!("set {name} to a number from 0 to 65535"))
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn cookie() -> MagicCookie {
        MagicCookie::new("BASIC_PLUGIN", "hello").unwrap()
    }

    fn read(vars: &[(&str, &str)]) -> Result<ReceivedEnv> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ReceivedEnv::from_lookup(&cookie(), |name| map.get(name).cloned())
    }

    fn with_cookie<'a>(more: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut vars = vec![("BASIC_PLUGIN", "hello")];
        vars.extend_from_slice(more);
        vars
    }

    #[test]
    fn to_vars_matches_go_plugin_order() {
        let mut env = PluginEnv::new(cookie());
        env.protocol_versions = vec![1];
        env.port_range = Some((10000, 25000));
        env.client_cert_pem =
            Some("-----BEGIN CERTIFICATE-----\nMII\n-----END CERTIFICATE-----\n".into());
        let names: Vec<String> = env.to_vars().into_iter().map(|(k, _)| k).collect();
        // The order a go-plugin 1.0.1 host was observed to append.
        assert_eq!(
            names,
            [
                "BASIC_PLUGIN",
                "PLUGIN_MIN_PORT",
                "PLUGIN_MAX_PORT",
                "PLUGIN_PROTOCOL_VERSIONS",
                "PLUGIN_CLIENT_CERT"
            ]
        );
    }

    #[test]
    fn to_vars_minimal_and_full() {
        let minimal = PluginEnv::new(cookie());
        assert_eq!(
            minimal.to_vars(),
            [
                ("BASIC_PLUGIN".to_owned(), "hello".to_owned()),
                ("PLUGIN_PROTOCOL_VERSIONS".to_owned(), String::new())
            ]
        );
        let mut full = PluginEnv::new(cookie());
        full.protocol_versions = vec![3, 1];
        full.unix_socket_dir = Some("/run/p".into());
        full.unix_socket_group = Some("plugins".into());
        full.multiplex_grpc = true;
        let vars: HashMap<String, String> = full.to_vars().into_iter().collect();
        assert_eq!(vars["PLUGIN_PROTOCOL_VERSIONS"], "3,1");
        assert_eq!(vars["PLUGIN_UNIX_SOCKET_DIR"], "/run/p");
        assert_eq!(vars["PLUGIN_UNIX_SOCKET_GROUP"], "plugins");
        assert_eq!(vars["PLUGIN_MULTIPLEX_GRPC"], "true");
        assert!(!vars.contains_key("PLUGIN_MIN_PORT"));
        assert!(!vars.contains_key("PLUGIN_CLIENT_CERT"));
    }

    #[test]
    fn what_the_host_sets_the_plugin_reads_back() {
        let mut env = PluginEnv::new(cookie());
        env.protocol_versions = vec![2, 1];
        env.client_cert_pem = Some("-----BEGIN CERTIFICATE-----\nMII\n".into());
        env.port_range = Some((10000, 25000));
        env.unix_socket_dir = Some("/run/p".into());
        env.unix_socket_group = Some("plugins".into());
        env.multiplex_grpc = true;
        let map: HashMap<String, String> = env.to_vars().into_iter().collect();
        let got = ReceivedEnv::from_lookup(&cookie(), |n| map.get(n).cloned()).unwrap();
        assert_eq!(
            got,
            ReceivedEnv {
                protocol_versions: Some(VersionList {
                    versions: vec![2, 1],
                    rejected: vec![]
                }),
                client_cert_pem: env.client_cert_pem.clone(),
                port_range: Some((10000, 25000)),
                unix_socket_dir: Some("/run/p".into()),
                unix_socket_group: Some("plugins".into()),
                multiplex_grpc: true,
            }
        );
        assert_eq!(got.negotiate(&[1, 2, 3]), Negotiated::Agreed(2));
    }

    #[test]
    fn cookie_is_checked_before_anything_else() {
        // A person at a terminal: no cookie, and a broken port range in their shell.
        let err = read(&[("PLUGIN_MIN_PORT", "x")]).unwrap_err();
        assert_eq!(err.code(), Code::HandshakeMissingCookie);
        let err = read(&[("BASIC_PLUGIN", "nope"), ("PLUGIN_MIN_PORT", "x")]).unwrap_err();
        assert_eq!(err.code(), Code::HandshakeBadCookie);
    }

    #[test]
    fn only_the_cookie_means_nothing_else_was_asked() {
        let got = read(&with_cookie(&[])).unwrap();
        assert_eq!(got.protocol_versions, None);
        assert_eq!(got.port_range, None);
        assert!(!got.multiplex_grpc);
        assert_eq!(
            got.negotiate(&[1, 2]),
            Negotiated::NotOffered { fallback: 1 }
        );
    }

    #[test]
    fn empty_values_are_unset() {
        let got = read(&with_cookie(&[
            ("PLUGIN_PROTOCOL_VERSIONS", ""),
            ("PLUGIN_CLIENT_CERT", ""),
            ("PLUGIN_MIN_PORT", ""),
            ("PLUGIN_MAX_PORT", " "),
            ("PLUGIN_UNIX_SOCKET_DIR", ""),
            ("PLUGIN_UNIX_SOCKET_GROUP", ""),
        ]))
        .unwrap();
        assert_eq!(
            got,
            ReceivedEnv {
                protocol_versions: None,
                client_cert_pem: None,
                port_range: None,
                unix_socket_dir: None,
                unix_socket_group: None,
                multiplex_grpc: false,
            }
        );
    }

    #[test]
    fn rejected_versions_are_reported() {
        let got = read(&with_cookie(&[("PLUGIN_PROTOCOL_VERSIONS", "x,2")])).unwrap();
        let list = got.protocol_versions.as_ref().unwrap();
        assert_eq!(
            (list.versions.as_slice(), list.rejected.as_slice()),
            (&[2][..], &["x".to_owned()][..])
        );
        assert_eq!(got.negotiate(&[1, 2, 3]), Negotiated::Agreed(2));
    }

    #[test]
    fn port_range_parses_with_whitespace_and_zero() {
        let got = read(&with_cookie(&[
            ("PLUGIN_MIN_PORT", " 10000"),
            ("PLUGIN_MAX_PORT", "25000\n"),
        ]))
        .unwrap();
        assert_eq!(got.port_range, Some((10000, 25000)));
        // go-plugin: both 0 means "any port".
        let got = read(&with_cookie(&[
            ("PLUGIN_MIN_PORT", "0"),
            ("PLUGIN_MAX_PORT", "0"),
        ]))
        .unwrap();
        assert_eq!(got.port_range, Some((0, 0)));
    }

    #[test]
    fn half_a_port_range_names_the_missing_bound() {
        let err = read(&with_cookie(&[("PLUGIN_MIN_PORT", "10000")])).unwrap_err();
        assert_eq!(err.code(), Code::HandshakeIncompletePortRange);
        assert_eq!(err.kind(), rpcplugin_core::ErrorKind::Config);
        assert_eq!(
            err.to_string(),
            "PLUGIN_MIN_PORT is set but PLUGIN_MAX_PORT is not"
        );
        let err = read(&with_cookie(&[("PLUGIN_MAX_PORT", "10000")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "PLUGIN_MAX_PORT is set but PLUGIN_MIN_PORT is not"
        );
    }

    #[test]
    fn bad_port_names_variable_and_value() {
        for (min, max, bad) in [
            ("x", "2", "PLUGIN_MIN_PORT \"x\""),
            ("1", "70000", "PLUGIN_MAX_PORT \"70000\""),
        ] {
            let err = read(&with_cookie(&[
                ("PLUGIN_MIN_PORT", min),
                ("PLUGIN_MAX_PORT", max),
            ]))
            .unwrap_err();
            assert_eq!(err.code(), Code::HandshakeBadPort);
            assert_eq!(err.kind(), rpcplugin_core::ErrorKind::Config);
            assert!(err.to_string().starts_with(bad), "{err}");
            assert!(err.hint().unwrap().contains("0 to 65535"));
        }
    }

    #[test]
    fn inverted_port_range_is_an_error() {
        let err = read(&with_cookie(&[
            ("PLUGIN_MIN_PORT", "25000"),
            ("PLUGIN_MAX_PORT", "10000"),
        ]))
        .unwrap_err();
        assert_eq!(err.code(), Code::HandshakeInvertedPortRange);
        assert_eq!(
            err.to_string(),
            "PLUGIN_MIN_PORT 25000 is above PLUGIN_MAX_PORT 10000"
        );
        assert!(err.hint().is_some());
    }

    #[test]
    fn multiplex_spellings() {
        for on in ["true", "TRUE", "1", " True ", "t"] {
            assert!(
                read(&with_cookie(&[("PLUGIN_MULTIPLEX_GRPC", on)]))
                    .unwrap()
                    .multiplex_grpc,
                "{on:?}"
            );
        }
        for off in ["false", "0", "yes", "on", ""] {
            assert!(
                !read(&with_cookie(&[("PLUGIN_MULTIPLEX_GRPC", off)]))
                    .unwrap()
                    .multiplex_grpc,
                "{off:?}"
            );
        }
    }

    #[test]
    fn client_cert_pem_is_passed_on_as_given() {
        let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        let got = read(&with_cookie(&[("PLUGIN_CLIENT_CERT", pem)])).unwrap();
        assert_eq!(got.client_cert_pem.as_deref(), Some(pem));
    }
}
