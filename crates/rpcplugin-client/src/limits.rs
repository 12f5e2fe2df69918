//! Message size limits on the host: [`new_client!`](crate::new_client), which makes
//! a tonic-generated client with the plugin's limits.
//!
//! tonic enforces message limits in each generated client's codec (its
//! `max_decoding_message_size`, 4 MiB by default), not in the channel, so no value a
//! channel carries can raise them: the client has to be told. go-plugin's hosts
//! allow `i32::MAX` both ways, and plugins send up to their own limit (256 MiB for
//! rpcplugin and terraform-plugin-go), so a host with tonic's default refuses a
//! Terraform provider's large schema.

/// Makes a tonic-generated client on a [`PluginClient`](crate::PluginClient)'s
/// channel with the host's message limits, so that replies up to
/// [`max_receive_message_size`](crate::PluginClient::max_receive_message_size)
/// (default `i32::MAX`, as go-plugin) decode:
///
/// ```no_run
/// use rpcplugin_client::{PluginClient, new_client};
/// use rpcplugin_proto::examples::kv::{kv_client::KvClient, GetRequest};
///
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let plugin = PluginClient::builder("./kv_plugin")
///     .handshake("BASIC_PLUGIN", "hello")
///     .start()
///     .await?;
/// // The same as KvClient::new(plugin.channel()), with the plugin's limits instead
/// // of tonic's 4 MiB.
/// let mut kv = new_client!(KvClient, plugin);
/// let value = kv.get(GetRequest { key: "big".into() }).await?.into_inner().value;
/// # Ok(()) }
/// ```
///
/// It works with every client `tonic-prost-build` generates (they all have
/// `max_decoding_message_size` and `max_encoding_message_size`). A client made with
/// `KvClient::new(plugin.channel())` keeps tonic's defaults.
#[macro_export]
macro_rules! new_client {
    ($($client:ident)::+, $plugin:expr) => {{
        let plugin: &$crate::PluginClient = &$plugin;
        $($client)::+::new(plugin.channel())
            .max_decoding_message_size(plugin.max_receive_message_size())
            .max_encoding_message_size(plugin.max_send_message_size())
    }};
}
