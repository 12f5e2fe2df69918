//! Announcing where the plugin serves: the handshake line a host reads on stdout,
//! or in debug mode the reattach information a person passes to a host.

use rpcplugin_core::Code;
use std::io::Write;

use rpcplugin_core::{Endpoint, Error, Result};
use rpcplugin_handshake::HandshakeLine;

use crate::prepare::Prepared;

impl Prepared {
    /// The line that announces `endpoint`: the agreed version, the certificate
    /// served (AutoMTLS or configured), and whether the broker is multiplexed.
    pub(crate) fn handshake_line(&self, endpoint: Endpoint) -> HandshakeLine {
        let mut line =
            HandshakeLine::new(self.app_version, endpoint).with_multiplex(self.multiplex.is_some());
        if let Some(tls) = &self.tls {
            line = line.with_server_cert(tls.announced.to_vec());
        }
        line
    }

    /// Announce: the handshake line, or the reattach information in debug mode.
    pub(crate) fn announce(&self, line: &HandshakeLine) -> Result<()> {
        if self.debug {
            print_reattach(line)
        } else {
            print_handshake(line)
        }
    }
}

/// Debug mode: the reattach JSON on stdout (one line, flushed), and for the person
/// who started the plugin, how to use it on stderr.
fn print_reattach(line: &HandshakeLine) -> Result<()> {
    let mut config = rpcplugin_handshake::ReattachConfig::new(
        line.app_version,
        line.endpoint.clone(),
        std::process::id(),
    );
    if let Some(der) = &line.server_cert {
        config = config.with_server_cert(der.clone());
    }
    let json = config.to_json();
    eprintln!(
        "plugin serving in debug mode at {} (app protocol version {}); a host attaches with \
         this reattach information (printed on stdout):\n  {json}\nStop it with Ctrl-C or SIGTERM.",
        line.endpoint, line.app_version
    );
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{json}")
        .and_then(|()| stdout.flush())
        .map_err(|err| {
            Error::new(
                Code::HandshakeWrite,
                "cannot write the reattach information to stdout",
            )
            .with_source(err)
        })
}

/// Writes the handshake line and flushes: go-plugin hosts read exactly one line.
fn print_handshake(line: &HandshakeLine) -> Result<()> {
    let text = line.encode();
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|err| {
            Error::new(
                Code::HandshakeWrite,
                "cannot write the handshake line to stdout",
            )
            .with_source(err)
            .with_hint("the host closed the plugin's stdout; it probably gave up on the plugin")
        })
}
