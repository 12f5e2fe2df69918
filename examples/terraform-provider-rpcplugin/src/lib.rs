//! `terraform-provider-rpcplugin`: a Terraform provider written with rpcplugin,
//! managing files on the local disk. It shows what a provider author writes: the
//! protocol's messages (generated from `proto/tfplugin6.proto`), a schema, a codec
//! for Terraform's msgpack values, diagnostics, and the plugin server that serves
//! it all to Terraform with AutoMTLS.
//!
//! ```hcl
//! provider "rpcplugin" { root = "/srv/files" }   # optional
//!
//! resource "rpcplugin_file" "greeting" {
//!   path        = "hello.txt"      # changing it replaces the file
//!   content     = "hello\n"
//!   permissions = "0600"           # optional, default "0644"
//! }                                # computed: id (absolute path), sha256
//!
//! data "rpcplugin_file" "motd" { path = "motd" }   # computed: content, sha256
//! ```
//!
//! `docs/terraform.md` in the repository walks through it, and through running it
//! under Terraform offline (`dev_overrides`, no `terraform init`).

pub mod diag;
pub mod file;
mod provider;
pub mod schema;
pub mod value;

pub use provider::FileProvider;

// Generated code documents only what the .proto file comments.
// The empty structs the messages nest in (`GetProviderSchema` for
// `get_provider_schema::Request`) are never built.
#[allow(missing_docs, unreachable_pub, dead_code, clippy::all)]
mod generated {
    include!("generated/tfplugin6.rs");

    pub(crate) const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!("generated/descriptor.bin");
}

/// Terraform's provider protocol 6 (package `tfplugin6`), as generated from
/// `proto/tfplugin6.proto`: the messages, the `Provider` service's server (what a
/// provider implements) and client (what Terraform, or a test, calls).
pub mod pb {
    pub use crate::generated::{
        AttributePath, ClientCapabilities, Deferred, Diagnostic, DynamicValue, RawState, Schema,
        ServerCapabilities, StringKind, apply_resource_change, attribute_path, configure_provider,
        deferred, diagnostic, get_metadata, get_provider_schema, import_resource_state,
        move_resource_state, plan_resource_change, provider_client, provider_server,
        read_data_source, read_resource, schema, stop_provider, upgrade_resource_state,
        validate_data_resource_config, validate_provider_config, validate_resource_config,
    };
}

rpcplugin::server::impl_limited_service!(pb::provider_server::ProviderServer<T>);

/// The magic cookie every Terraform release sets for its providers.
pub const MAGIC_COOKIE_KEY: &str = "TF_PLUGIN_MAGIC_COOKIE";

/// The cookie's value (go-plugin's `HandshakeConfig` in Terraform's plugin package).
pub const MAGIC_COOKIE_VALUE: &str =
    "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2";

/// The app protocol version: Terraform offers 5 and 6, this provider speaks 6.
pub const PROTOCOL_VERSION: u32 = 6;

/// The plugin server with `provider` behind it, ready to serve Terraform.
pub fn server(provider: FileProvider) -> rpcplugin::server::Builder {
    rpcplugin::plugin_server()
        .handshake(MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE)
        .protocol_version(PROTOCOL_VERSION)
        .reflection_descriptors(generated::FILE_DESCRIPTOR_SET)
        .add_service_with(move |limits| {
            limits.apply(pb::provider_server::ProviderServer::new(provider))
        })
}
