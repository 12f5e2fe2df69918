//! `cargo xtask interop`: placeholder, filled in below.
use anyhow::Result;
use std::path::Path;

pub(crate) fn run(_root: &Path, _args: &[String]) -> Result<()> {
    Ok(())
}
