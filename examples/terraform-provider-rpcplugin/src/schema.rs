//! The provider's schema: what Terraform checks configurations against, and how it
//! reads the values this provider sends.

use crate::pb::{Schema, ServerCapabilities, get_provider_schema, schema};

/// The resource and data source type name.
pub const FILE: &str = "rpcplugin_file";

/// A string attribute in Terraform's JSON type syntax.
const STRING: &[u8] = br#""string""#;

#[derive(Clone, Copy)]
enum Kind {
    Required,
    Optional,
    /// Optional, and the provider fills it in when the configuration leaves it out.
    OptionalComputed,
    Computed,
}

fn attribute(name: &str, kind: Kind, description: &str) -> schema::Attribute {
    schema::Attribute {
        name: name.to_owned(),
        r#type: STRING.to_vec(),
        description: description.to_owned(),
        required: matches!(kind, Kind::Required),
        optional: matches!(kind, Kind::Optional | Kind::OptionalComputed),
        computed: matches!(kind, Kind::Computed | Kind::OptionalComputed),
        ..Default::default()
    }
}

fn block(description: &str, attributes: Vec<schema::Attribute>) -> Schema {
    Schema {
        version: 0,
        block: Some(schema::Block {
            attributes,
            description: description.to_owned(),
            ..Default::default()
        }),
    }
}

/// The provider's own configuration: `provider "rpcplugin" { root = "DIR" }`.
fn provider() -> Schema {
    block(
        "Files on the local disk.",
        vec![attribute(
            "root",
            Kind::Optional,
            "A directory every file path must resolve inside; relative paths are relative to it.",
        )],
    )
}

/// `resource "rpcplugin_file"`.
fn file_resource() -> Schema {
    block(
        "A file whose content Terraform manages.",
        vec![
            attribute("id", Kind::Computed, "The file's absolute path."),
            attribute(
                "path",
                Kind::Required,
                "Where the file is; changing it replaces the file.",
            ),
            attribute("content", Kind::Required, "The file's content (text)."),
            attribute(
                "permissions",
                Kind::OptionalComputed,
                "The file's mode in octal, such as \"0644\" (the default).",
            ),
            attribute(
                "sha256",
                Kind::Computed,
                "The SHA-256 digest of the content, in hex.",
            ),
        ],
    )
}

/// `data "rpcplugin_file"`.
fn file_data_source() -> Schema {
    block(
        "Reads a file.",
        vec![
            attribute("path", Kind::Required, "The file to read."),
            attribute("content", Kind::Computed, "The file's content (text)."),
            attribute(
                "sha256",
                Kind::Computed,
                "The SHA-256 digest of the content, in hex.",
            ),
        ],
    )
}

/// What the provider can do beyond protocol 6.0: nothing. Terraform then asks for the
/// schema in every provider process, and does not plan destroys with the provider.
pub fn capabilities() -> ServerCapabilities {
    ServerCapabilities::default()
}

/// The whole schema, as GetProviderSchema answers.
pub fn provider_schema() -> get_provider_schema::Response {
    get_provider_schema::Response {
        provider: Some(provider()),
        resource_schemas: [(FILE.to_owned(), file_resource())].into(),
        data_source_schemas: [(FILE.to_owned(), file_data_source())].into(),
        diagnostics: Vec::new(),
        provider_meta: None,
        server_capabilities: Some(capabilities()),
    }
}
