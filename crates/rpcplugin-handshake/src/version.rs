//! App protocol version negotiation: the plugin picks a version from the host's
//! `PLUGIN_PROTOCOL_VERSIONS`, the host checks the one announced in the line.

use crate::{CORE_PROTOCOL_VERSION, Error, HandshakeLine, Protocol, Result};
use rpcplugin_core::Code;

/// The app protocol versions a host offered, as parsed from
/// `PLUGIN_PROTOCOL_VERSIONS`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VersionList {
    /// The versions that parsed, in the order the host listed them.
    pub versions: Vec<u32>,
    /// Entries that are not versions, trimmed, for the plugin to warn about.
    pub rejected: Vec<String>,
}

/// Parses a comma-separated version list such as `"3,1"`.
///
/// As go-plugin's server does, entries that do not parse are skipped, not fatal
/// (go-plugin prints `server sent invalid plugin version "x"` on stderr); here they
/// are kept in [`VersionList::rejected`] so the caller can log them. Entries are
/// trimmed and empty ones ignored, so `" 1, 2,"` is `[1, 2]`. The order is kept:
/// a Go host lists its versions in map order, which means no order at all.
pub fn parse_versions(s: &str) -> VersionList {
    let mut list = VersionList::default();
    for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        match entry.parse::<u32>() {
            Ok(v) => list.versions.push(v),
            Err(_) => list.rejected.push(entry.to_owned()),
        }
    }
    list
}

/// The outcome of the plugin's version negotiation.
///
/// The plugin serves [`version`](Self::version) in every case: like go-plugin and
/// pyvider, it does not fail when nothing matches, but announces a fallback and
/// lets the host, which knows what it speaks, report the mismatch
/// ([`check_app_version`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Negotiated {
    /// The highest served version that the host offered.
    Agreed(u32),
    /// The host offered versions, none of them served; `fallback` is the lowest
    /// served version.
    NoneInCommon {
        /// The version announced anyway.
        fallback: u32,
    },
    /// The host offered no list at all; `fallback` is the lowest served version.
    NotOffered {
        /// The version announced anyway.
        fallback: u32,
    },
}

impl Negotiated {
    /// The version to serve and announce.
    pub fn version(self) -> u32 {
        match self {
            Self::Agreed(v)
            | Self::NoneInCommon { fallback: v }
            | Self::NotOffered { fallback: v } => v,
        }
    }

    /// True when host and plugin agreed on a version.
    pub fn is_agreed(self) -> bool {
        matches!(self, Self::Agreed(_))
    }
}

/// Plugin side: picks the app protocol version to serve.
///
/// Of the `served` versions, the highest one the host `offered` wins (go-plugin's
/// server walks its versions from newest to oldest and takes the first the host
/// listed). With no version in common, or no list (`None`), the fallback is the
/// lowest served version, as go-plugin does. An offered list that is empty (every
/// entry rejected) counts as offered, with nothing in common.
///
/// `served` should not be empty; if it is, the result is a fallback to version 1
/// rather than a panic, since a plugin has to announce something for the host to
/// report.
pub fn negotiate(served: &[u32], offered: Option<&[u32]>) -> Negotiated {
    let fallback = served.iter().copied().min().unwrap_or(1);
    let Some(offered) = offered else {
        return Negotiated::NotOffered { fallback };
    };
    served
        .iter()
        .copied()
        .filter(|v| offered.contains(v))
        .max()
        .map_or(Negotiated::NoneInCommon { fallback }, Negotiated::Agreed)
}

/// Host side: checks that the plugin announced an app protocol version the host
/// speaks (`handshake.incompatible_app_version` otherwise).
pub fn check_app_version(host_versions: &[u32], line: &HandshakeLine) -> Result<()> {
    if host_versions.contains(&line.app_version) {
        return Ok(());
    }
    let mut speaks = host_versions.to_vec();
    speaks.sort_unstable();
    speaks.dedup();
    Err(Error::new(
        Code::HandshakeIncompatibleAppVersion,
        format!(
            "plugin speaks app protocol version {}, host speaks {speaks:?}",
            line.app_version
        ),
    )
    .with_hint(
        "the plugin and the host application were built for different plugin API \
         versions; install a plugin release made for this version of the host (or \
         upgrade the host)",
    ))
}

/// Host side: checks a parsed handshake line before dialling.
///
/// The core protocol must be [`CORE_PROTOCOL_VERSION`]
/// (`handshake.incompatible_core_version`), the protocol gRPC
/// (`handshake.unsupported_protocol`: rpcplugin cannot speak Go's net/rpc), and the
/// app version one the host speaks ([`check_app_version`]). These are go-plugin's
/// host checks, in go-plugin's order.
pub fn check_line(line: &HandshakeLine, host_versions: &[u32]) -> Result<()> {
    if line.core_version != CORE_PROTOCOL_VERSION {
        return Err(Error::new(
            Code::HandshakeIncompatibleCoreVersion,
            format!(
                "plugin speaks core protocol version {}, host speaks {CORE_PROTOCOL_VERSION}",
                line.core_version
            ),
        )
        .with_hint(
            "the plugin was built with an incompatible go-plugin framework; it usually only \
             needs to be recompiled: report this to the plugin's author",
        ));
    }
    check_app_version(host_versions, line)?;
    if line.protocol != Protocol::Grpc {
        return Err(Error::new(
            Code::HandshakeUnsupportedProtocol,
            format!("plugin speaks {}, host speaks only grpc", line.protocol),
        )
        .with_hint(
            "netrpc is go-plugin's Go-only net/rpc protocol (also what a handshake line \
             without a protocol field means); use a build of the plugin that serves gRPC \
             (go-plugin: set GRPCServer in its ServeConfig)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Endpoint;

    const SERVED: &[u32] = &[1, 2, 3];

    /// What a plugin serving [1, 2, 3] announces for a host's env value
    /// (`None`: variable unset).
    fn from_env(value: Option<&str>) -> Negotiated {
        // go-plugin: `if vs := os.Getenv(...); vs != ""`, so empty is unset.
        let list = value.filter(|v| !v.trim().is_empty()).map(parse_versions);
        negotiate(SERVED, list.as_ref().map(|l| &l.versions[..]))
    }

    #[test]
    fn negotiation_table() {
        let table: &[(Option<&str>, Negotiated)] = &[
            (Some("3,1"), Negotiated::Agreed(3)),
            (Some("1,3"), Negotiated::Agreed(3)),
            (Some("2"), Negotiated::Agreed(2)),
            (Some("9"), Negotiated::NoneInCommon { fallback: 1 }),
            (Some(""), Negotiated::NotOffered { fallback: 1 }),
            (None, Negotiated::NotOffered { fallback: 1 }),
            (Some("x,2"), Negotiated::Agreed(2)),
            (Some("x"), Negotiated::NoneInCommon { fallback: 1 }),
            (Some(" 1 , ,9"), Negotiated::Agreed(1)),
        ];
        for (offered, expected) in table {
            assert_eq!(from_env(*offered), *expected, "offered {offered:?}");
        }
    }

    #[test]
    fn fallback_is_the_lowest_served_whatever_the_order() {
        assert_eq!(
            negotiate(&[3, 1, 2], Some(&[7])),
            Negotiated::NoneInCommon { fallback: 1 }
        );
        assert_eq!(negotiate(&[3, 1, 2], Some(&[7])).version(), 1);
        assert_eq!(negotiate(&[2, 3], Some(&[3, 2])).version(), 3);
    }

    #[test]
    fn empty_served_falls_back_to_one() {
        assert_eq!(negotiate(&[], None), Negotiated::NotOffered { fallback: 1 });
        assert_eq!(
            negotiate(&[], Some(&[1])),
            Negotiated::NoneInCommon { fallback: 1 }
        );
    }

    #[test]
    fn is_agreed_only_for_agreed() {
        assert!(Negotiated::Agreed(2).is_agreed());
        assert!(!Negotiated::NotOffered { fallback: 2 }.is_agreed());
    }

    #[test]
    fn parse_versions_keeps_order_and_rejects_junk() {
        let list = parse_versions("x, 2,,3 ,-1,4294967296,+5");
        assert_eq!(list.versions, [2, 3, 5]);
        assert_eq!(list.rejected, ["x", "-1", "4294967296"]);
        assert_eq!(parse_versions(""), VersionList::default());
    }

    fn line(app: u32) -> HandshakeLine {
        HandshakeLine::new(app, Endpoint::Unix("/tmp/p".into()))
    }

    #[test]
    fn host_rejects_an_app_version_it_does_not_speak() {
        assert!(check_app_version(&[1, 2], &line(2)).is_ok());
        let err = check_app_version(&[1], &line(2)).unwrap_err();
        assert_eq!(err.code(), Code::HandshakeIncompatibleAppVersion);
        assert_eq!(
            err.to_string(),
            "plugin speaks app protocol version 2, host speaks [1]"
        );
        assert!(err.hint().is_some());
        let err = check_app_version(&[5, 3, 5], &line(2)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "plugin speaks app protocol version 2, host speaks [3, 5]"
        );
    }

    #[test]
    fn host_rejects_other_core_versions() {
        let mut l = line(1);
        l.core_version = 2;
        let err = check_line(&l, &[1]).unwrap_err();
        assert_eq!(err.code(), Code::HandshakeIncompatibleCoreVersion);
        assert_eq!(
            err.to_string(),
            "plugin speaks core protocol version 2, host speaks 1"
        );
    }

    #[test]
    fn host_rejects_netrpc_with_a_hint() {
        let l = HandshakeLine::parse("1|1|unix|/tmp/p").unwrap();
        let err = check_line(&l, &[1]).unwrap_err();
        assert_eq!(err.code(), Code::HandshakeUnsupportedProtocol);
        assert_eq!(
            err.to_string(),
            "plugin speaks netrpc, host speaks only grpc"
        );
        assert!(err.hint().unwrap().contains("GRPCServer"));
    }

    #[test]
    fn host_accepts_a_good_line() {
        let l = HandshakeLine::parse("1|1|unix|/tmp/plugin2363759283|grpc|\n").unwrap();
        assert!(check_line(&l, &[1]).is_ok());
        assert_eq!(
            check_line(&l, &[2]).unwrap_err().code(),
            Code::HandshakeIncompatibleAppVersion
        );
    }
}

#[cfg(test)]
mod proptests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn parse_versions_never_panics_and_accounts_for_every_entry(s in any::<String>()) {
            let list = parse_versions(&s);
            let entries = s.split(',').filter(|e| !e.trim().is_empty()).count();
            prop_assert_eq!(list.versions.len() + list.rejected.len(), entries);
        }

        #[test]
        fn parse_versions_reads_what_a_host_writes(versions in proptest::collection::vec(any::<u32>(), 0..10)) {
            let joined = versions.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
            prop_assert_eq!(parse_versions(&joined).versions, versions);
        }

        #[test]
        fn negotiation_picks_a_served_version(
            served in proptest::collection::vec(0u32..10, 1..5),
            offered in proptest::option::of(proptest::collection::vec(0u32..10, 0..5)),
        ) {
            let got = negotiate(&served, offered.as_deref());
            prop_assert!(served.contains(&got.version()));
            match got {
                Negotiated::Agreed(v) => {
                    let offered = offered.unwrap();
                    prop_assert!(offered.contains(&v));
                    prop_assert!(served.iter().all(|s| !offered.contains(s) || *s <= v));
                }
                Negotiated::NoneInCommon { fallback } => {
                    prop_assert!(served.iter().all(|s| !offered.as_ref().unwrap().contains(s)));
                    prop_assert_eq!(Some(&fallback), served.iter().min());
                }
                Negotiated::NotOffered { fallback } => {
                    prop_assert!(offered.is_none());
                    prop_assert_eq!(Some(&fallback), served.iter().min());
                }
            }
        }
    }
}
