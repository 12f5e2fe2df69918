//! The Landlock ruleset of one start, built in the host with the `landlock` crate:
//! what is handled (denied unless a rule allows it), and the rules.
//!
//! The crate creates and fills the ruleset; it is not asked to enforce it
//! (`restrict_self` would run in the host). Its file descriptor goes to the child,
//! which adds the one rule only it can name (its own `/proc/self`) and restricts
//! itself with raw system calls (`child.rs`).

use std::ops::RangeInclusive;
use std::os::fd::OwnedFd;

use rpcplugin_core::{Code, Error, Result};

use super::{Plan, SandboxPath};

/// A created and filled ruleset, for the child.
#[derive(Debug)]
pub(crate) struct Ruleset {
    /// The ruleset (close-on-exec: the plugin never holds it).
    pub(crate) fd: OwnedFd,
    /// The rights of the child's `/proc/self` rule (read).
    pub(crate) proc_self_access: u64,
}

#[cfg(target_os = "linux")]
pub(crate) fn build(
    plan: &Plan,
    paths: &[SandboxPath],
    tcp_bind: Option<&RangeInclusive<u16>>,
    tcp_connect: &[u16],
) -> Result<Ruleset> {
    use super::PathAccess;
    use landlock::{
        ABI, Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, NetPort, PathBeneath,
        PathFd, RulesetAttr, RulesetCreatedAttr, Scope,
    };

    // Rights are asked for by the ABI that defines them, and the crate leaves out
    // what the running kernel does not know (best effort): `plan` has already
    // refused, or warned, where that matters. ABI 9 adds connecting to Unix
    // sockets by path; kernels that have it confine that too.
    let all = AccessFs::from_all(ABI::V9);
    let read: BitFlags<AccessFs> = AccessFs::ReadFile | AccessFs::ReadDir;
    let rights = |access: PathAccess| match access {
        PathAccess::Read => read,
        PathAccess::ReadWrite => all & !AccessFs::Execute,
        PathAccess::Execute => read | AccessFs::Execute,
    };
    let apply_error = |err: landlock::RulesetError| {
        Error::new(
            Code::SecuritySandboxApply,
            "the kernel refused the plugin's Landlock ruleset",
        )
        .with_hint(
            "this is unexpected on a kernel that offers Landlock; report it with the \
             kernel version (uname -r), or start the plugin without a sandbox",
        )
        .with_source(err)
    };

    let mut ruleset = landlock::Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(all)
        .map_err(apply_error)?;
    if plan.network {
        ruleset = ruleset
            .handle_access(AccessNet::from_all(ABI::V4))
            .map_err(apply_error)?;
    }
    if plan.scoped {
        ruleset = ruleset
            .scope(Scope::from_all(ABI::V6))
            .map_err(apply_error)?;
    }
    let mut created = ruleset.create().map_err(apply_error)?;
    for rule in paths {
        let fd = PathFd::new(&rule.path).map_err(|e| super::path_error(&rule.path, e))?;
        created = created
            .add_rule(PathBeneath::new(fd, rights(rule.access)))
            .map_err(apply_error)?;
    }
    if plan.network {
        // A range of N ports is N rules: Landlock has no port ranges. Bounded by
        // the host's PLUGIN_MIN_PORT..PLUGIN_MAX_PORT (go-plugin hosts: 15001).
        for port in tcp_bind.cloned().into_iter().flatten() {
            created = created
                .add_rule(NetPort::new(port, AccessNet::BindTcp))
                .map_err(apply_error)?;
        }
        for port in tcp_connect {
            created = created
                .add_rule(NetPort::new(*port, AccessNet::ConnectTcp))
                .map_err(apply_error)?;
        }
    }
    let fd: Option<OwnedFd> = created.into();
    let fd = fd.ok_or_else(|| {
        Error::new(
            Code::SecuritySandboxApply,
            "the kernel made no Landlock ruleset for the plugin",
        )
        .with_hint("Landlock went away since it was detected; start the plugin again")
    })?;
    Ok(Ruleset {
        fd,
        proc_self_access: read.bits(),
    })
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn build(
    _plan: &Plan,
    _paths: &[SandboxPath],
    _tcp_bind: Option<&RangeInclusive<u16>>,
    _tcp_connect: &[u16],
) -> Result<Ruleset> {
    // `plan` never asks for Landlock where the kernel has none.
    Err(Error::new(
        Code::SecuritySandboxUnsupported,
        "Landlock exists on Linux only",
    ))
}
