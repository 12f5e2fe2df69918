//! Checking what a launched plugin announced in its handshake line, before anything
//! connects to it: the line itself, the version, the transport, multiplexing.
//! Pure functions of the line and the host's settings.

use rpcplugin_core::Code;
use std::sync::Arc;

use rpcplugin_core::{Error, Network, Result};
use rpcplugin_handshake::HandshakeLine;
use rpcplugin_transport::{Connectors, MuxRouter};

/// Parses the plugin's handshake line and checks it against what this host speaks
/// (`versions`) and accepts (`networks`). Errors quote the line and the plugin's
/// last stderr lines (`tail`).
pub(crate) fn check(
    name: &str,
    line: &str,
    versions: &[u32],
    networks: &[Network],
    connectors: &Connectors,
    tail: &[String],
) -> Result<HandshakeLine> {
    let with_context = |err: Error, what: &str| {
        let mut hint = format!(
            "the plugin's first stdout line was {:?}",
            truncate(line, 300)
        );
        if !tail.is_empty() {
            hint.push_str(&format!(
                "; its stderr ended with:\n    {}",
                tail.join("\n    ")
            ));
        }
        Error::new(err.code(), format!("plugin {name} {what}"))
            .with_hint(hint)
            .with_source(err)
    };
    let parsed =
        HandshakeLine::parse(line).map_err(|e| with_context(e, "sent an invalid handshake"))?;
    rpcplugin_handshake::check_line(&parsed, versions).map_err(|e| {
        let what = if e.code() == Code::HandshakeIncompatibleAppVersion {
            "has no app protocol version in common with this host"
        } else {
            "cannot be used by this host"
        };
        with_context(e, what)
    })?;
    let network = parsed.endpoint.network();
    if let Network::Custom(_) = network {
        // A custom network is accepted by registering its connector.
        connectors.require(&parsed.endpoint).map_err(|e| {
            let hint = e.hint().unwrap_or_default().to_owned();
            Error::new(
                e.code(),
                format!("plugin {name} serves over {network}, which this host cannot dial"),
            )
            .with_hint(hint)
            .with_source(e)
        })?;
    } else if !networks.contains(&network) {
        return Err(Error::new(
            Code::ConfigTransportNotAllowed,
            format!("plugin {name} serves over {network}, which this host does not accept"),
        )
        .with_hint(format!(
            "PLUGIN_CLIENT_TRANSPORTS allows {networks:?}; add {network} there, or set PLUGIN_SERVER_TRANSPORTS for the plugin"
        )));
    }
    Ok(parsed)
}

/// Adds the handshake line to a security refusal's hint, for the user to see
/// what the plugin announced.
pub(crate) fn with_line_context(err: Error, line: &str) -> Error {
    let hint = format!(
        "{}; the plugin's handshake line was {:?}",
        err.hint().unwrap_or_default(),
        truncate(line.trim(), 120)
    );
    err.with_hint(hint)
}

/// The yamux router when the host asked for a multiplexed broker (`requested`) and
/// the plugin announced support (`announced`); a plugin that did not is refused.
pub(crate) fn multiplex_router(
    name: &str,
    requested: bool,
    announced: bool,
) -> Result<Option<Arc<MuxRouter>>> {
    match (requested, announced) {
        (false, _) => Ok(None),
        (true, true) => Ok(Some(Arc::new(MuxRouter::new()))),
        (true, false) => Err(Error::new(
            Code::ConfigMultiplexUnsupported,
            format!("plugin {name} does not support a multiplexed broker"),
        )
        .with_hint(
            "its handshake line has no 7th field `true`: build it with rpcplugin or \
             go-plugin 1.6+, or leave .multiplex_grpc() off for it",
        )),
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let cut: String = s.chars().take(max).collect();
        format!("{cut}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rpcplugin_core::Endpoint;

    const BOTH: &[Network] = &[Network::Unix, Network::Tcp];
    static NONE: std::sync::LazyLock<Connectors> = std::sync::LazyLock::new(Connectors::new);

    #[test]
    fn a_good_line_gives_the_endpoint_and_version() {
        let line = check(
            "kv",
            "1|2|unix|/tmp/p/plugin.sock|grpc|\n",
            &[1, 2],
            BOTH,
            &NONE,
            &[],
        )
        .unwrap();
        assert_eq!(line.app_version, 2);
        assert_eq!(line.endpoint, Endpoint::Unix("/tmp/p/plugin.sock".into()));
    }

    #[test]
    fn a_line_that_is_no_handshake_is_quoted_with_the_stderr_tail() {
        let tail = ["starting".to_owned(), "listening".to_owned()];
        let err = check("kv", "hello from main()\n", &[1], BOTH, &NONE, &tail).unwrap_err();
        assert_eq!(err.kind(), rpcplugin_core::ErrorKind::Handshake);
        assert!(
            err.code().as_str().starts_with("handshake."),
            "{}",
            err.code()
        );
        assert_eq!(err.to_string(), "plugin kv sent an invalid handshake");
        let hint = err.hint().unwrap();
        assert!(hint.contains("hello from main()"), "{hint}");
        assert!(hint.contains("starting\n    listening"), "{hint}");
    }

    #[test]
    fn a_version_the_host_does_not_speak_is_refused_as_such() {
        let err = check(
            "kv",
            "1|3|unix|/tmp/p.sock|grpc|\n",
            &[1, 2],
            BOTH,
            &NONE,
            &[],
        )
        .unwrap_err();
        assert_eq!(err.code(), Code::HandshakeIncompatibleAppVersion);
        assert_eq!(
            err.to_string(),
            "plugin kv has no app protocol version in common with this host"
        );
    }

    #[test]
    fn a_transport_the_host_does_not_accept_is_refused() {
        let line = "1|1|tcp|127.0.0.1:1234|grpc|\n";
        let err = check("kv", line, &[1], &[Network::Unix], &NONE, &[]).unwrap_err();
        assert_eq!(err.code(), Code::ConfigTransportNotAllowed);
        assert!(err.hint().unwrap().contains("PLUGIN_CLIENT_TRANSPORTS"));
        assert!(check("kv", line, &[1], BOTH, &NONE, &[]).is_ok());
    }

    #[test]
    fn a_custom_network_needs_a_connector() {
        let line = "1|1|vsock|3:5000|grpc|\n";
        let err = check("kv", line, &[1], BOTH, &NONE, &[]).unwrap_err();
        assert_eq!(err.code(), Code::TransportNoConnector);
        assert_eq!(
            err.to_string(),
            "plugin kv serves over vsock, which this host cannot dial"
        );
        assert!(
            err.hint().unwrap().contains(".connector("),
            "{:?}",
            err.hint()
        );
        let vsock = Network::custom("vsock").unwrap();
        let dial = tower::service_fn(|_: Endpoint| async {
            Ok::<_, std::io::Error>(tokio::io::duplex(8).0)
        });
        let with = Connectors::new().with(vsock, dial);
        let announced = check("kv", line, &[1], BOTH, &with, &[]).unwrap();
        assert_eq!(announced.endpoint.network(), vsock);
    }

    #[test]
    fn a_long_line_is_cut_in_the_hint() {
        let line = "x".repeat(1000);
        let err = check("kv", &line, &[1], BOTH, &NONE, &[]).unwrap_err();
        let hint = err.hint().unwrap();
        assert!(hint.len() < 400, "{hint}");
        assert!(hint.contains('…'));
    }

    #[test]
    fn multiplexing_needs_both_sides() {
        assert!(multiplex_router("kv", false, true).unwrap().is_none());
        assert!(multiplex_router("kv", true, true).unwrap().is_some());
        let err = multiplex_router("kv", true, false).unwrap_err();
        assert_eq!(err.code(), Code::ConfigMultiplexUnsupported);
    }

    #[test]
    fn a_security_refusal_quotes_the_line() {
        let err = Error::new(Code::SecurityTls, "refused").with_hint("why");
        let err = with_line_context(err, "1|1|unix|/p|grpc|CERT\n");
        assert_eq!(
            err.hint(),
            Some("why; the plugin's handshake line was \"1|1|unix|/p|grpc|CERT\"")
        );
    }
}
