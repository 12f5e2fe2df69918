//! Starting the plugin a command names, the same way for every command: the shared
//! launch flags ([`LaunchArgs`]) applied to rpcplugin's own host
//! ([`PluginClient::builder`], or [`PluginClient::attach`] with `--reattach`), so the
//! CLI sees a plugin exactly as an rpcplugin host would.

use crate::args::{LaunchArgs, Target};
use rpcplugin_client::{PluginClient, Result, TlsConfig};

/// Starts (or attaches to) the plugin; returns once it is connected and healthy,
/// or with the host's error (and its hint) when it is not.
pub(crate) async fn start(launch: &LaunchArgs, target: &Target) -> Result<PluginClient> {
    let versions = launch.versions();
    match target {
        Target::Reattach(config) => {
            PluginClient::attach(config.clone())
                .protocol_versions(versions)
                .tls(TlsConfig::new().auto_mtls(launch.automtls))
                .start()
                .await
        }
        Target::Command(program, args) => {
            let (key, value) = launch.cookie();
            let mut builder = PluginClient::builder(program)
                .args(args)
                .handshake(key, value)
                .protocol_versions(versions)
                // Plaintext unless --automtls, whatever PLUGIN_AUTO_MTLS says, so
                // that the flags alone say what was checked.
                .auto_mtls(launch.automtls)
                .handshake_timeout(launch.timeout);
            for (key, value) in &launch.env {
                builder = builder.env(key, value);
            }
            builder.start().await
        }
    }
}

/// The command line of the plugin, for reports: `./kv_plugin -v`, or `reattach pid 42`.
pub(crate) fn describe(target: &Target) -> String {
    match target {
        Target::Command(program, args) => std::iter::once(program)
            .chain(args)
            .map(|part| part.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" "),
        Target::Reattach(config) => {
            format!("reattach to pid {} at {}", config.pid, config.endpoint)
        }
    }
}
