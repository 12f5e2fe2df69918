//! `cargo xtask package`: `cargo package` for every crate published to crates.io, so
//! that each one builds from its own `.crate` file alone (its protos' generated
//! code, README and everything its build reads are inside it) and carries the
//! metadata crates.io and docs.rs show.
//!
//! One `cargo package` run packages them all: cargo orders them by their
//! dependencies and verifies each one against the others' freshly made `.crate`
//! files (a local registry overlay), not against crates.io, where none is yet.

use anyhow::Result;
use std::path::Path;

/// The published crates, lowest layer first (the order cargo also finds). The CLI,
/// xtask and the example Terraform provider are not libraries users depend on.
pub(crate) const PUBLISHED: &[&str] = &[
    "rpcplugin-core",
    "rpcplugin-handshake",
    "rpcplugin-config",
    "rpcplugin-transport",
    "rpcplugin-crypto",
    "rpcplugin-proto",
    "rpcplugin-broker",
    "rpcplugin-layers",
    "rpcplugin-server",
    "rpcplugin-client",
    "rpcplugin",
];

/// The fields crates.io and docs.rs need, present in every published manifest.
const REQUIRED: &[&str] = &[
    "description",
    "repository",
    "documentation",
    "readme",
    "keywords",
    "categories",
    "[package.metadata.docs.rs]",
];

/// Checks each published manifest's metadata, then packages and verifies all.
pub(crate) fn run(root: &Path) -> Result<()> {
    check_metadata(root)?;
    let mut args = vec!["package", "--allow-dirty"];
    for name in PUBLISHED {
        args.extend(["-p", name]);
    }
    crate::run_cmd(root, "cargo", &args, &[])
}

fn check_metadata(root: &Path) -> Result<()> {
    let mut missing = Vec::new();
    for name in PUBLISHED {
        let dir = match name.strip_prefix("rpcplugin-") {
            Some(_) => root.join("crates").join(name),
            None => root.to_path_buf(),
        };
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml"))?;
        // Fields start a line, inside [package]; the table header stands alone.
        let package = manifest
            .split("\n[")
            .find(|table| table.starts_with("package]") || table.starts_with("[package]"))
            .unwrap_or_default();
        for field in REQUIRED {
            let present = if field.starts_with('[') {
                manifest.contains(field)
            } else {
                package.lines().any(|line| {
                    line.starts_with(&format!("{field} ")) || line.starts_with(&format!("{field}."))
                })
            };
            if !present {
                missing.push(format!("{name}: {field}"));
            }
        }
        if !dir.join("README.md").exists() {
            missing.push(format!("{name}: README.md"));
        }
    }
    if !missing.is_empty() {
        anyhow::bail!(
            "publishing metadata missing: {}\nhint: add them to the crate's Cargo.toml (see crates/rpcplugin-core/Cargo.toml)",
            missing.join(", ")
        );
    }
    eprintln!("package: metadata present in {} manifests", PUBLISHED.len());
    Ok(())
}
