//! The plugin's sandbox: the policy a host chooses ([`Sandbox`]), what the kernel
//! offers, the confinement prepared before the fork, and what was applied
//! ([`EffectiveSandbox`]).
//!
//! Everything that allocates, opens files or can fail in an interesting way
//! happens in the host before the fork ([`prepare`]): the Landlock ruleset is
//! created and filled, the seccomp program is built. The child, between fork and
//! exec, only makes system calls on what was prepared (`child.rs`), because a
//! forked child of a multithreaded host must not allocate or take locks.
//!
//! The layers, and what each stops (docs/security.md has the whole story):
//!
//! - `no_new_privs`: set-user-id programs and file capabilities give the plugin
//!   nothing; it is also what lets an unprivileged process use the two below.
//! - Landlock file-system rules: the plugin opens, creates, removes and runs only
//!   what the policy names, plus its executable, the system libraries and its
//!   socket directory.
//! - Landlock TCP rules: it binds only its own listener's ports and connects only
//!   to the ports the policy names.
//! - Landlock scoping: it cannot signal processes outside its sandbox (the host
//!   still signals it) nor connect to abstract Unix sockets made outside it.
//! - seccomp: system calls a plugin never needs (ptrace, mount, kexec, modules,
//!   bpf, ...) fail with `EPERM`.

mod child;
mod elf;
mod kernel;
mod rules;
mod seccomp;

use std::fmt;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use rpcplugin_config::{SandboxMode, Settings};
use rpcplugin_core::{Code, Error, Result};

pub(crate) use child::install;
pub(crate) use kernel::Kernel;

/// What a host lets a plugin do: the sandbox policy of
/// [`Builder::sandbox`](crate::Builder::sandbox).
///
/// A policy that names nothing still lets a normal plugin start, serve and be
/// stopped: its executable, the dynamic loader and system libraries, `/dev/null`,
/// `/dev/urandom`, its own `/proc/self` and its socket directory are always
/// allowed, and so is binding its own TCP listener when the host accepts TCP.
/// Everything else is named here: files to read, to write, programs to run, TCP
/// ports to connect to.
///
/// ```no_run
/// use rpcplugin_client::{PluginClient, Sandbox};
///
/// # async fn example() -> rpcplugin_client::Result<()> {
/// let plugin = PluginClient::builder("./kv_plugin")
///     .handshake("BASIC_PLUGIN", "hello")
///     .sandbox(Sandbox::new().write_path("/srv/kv-data").tcp_connect(5432))
///     .start()
///     .await?;
/// println!("{}", plugin.sandbox().expect("a sandboxed plugin"));
/// # Ok(()) }
/// ```
///
/// Linux only (Landlock and seccomp); elsewhere a policy that refuses on
/// unsupported kernels refuses to start the plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Sandbox {
    read: Vec<PathBuf>,
    write: Vec<PathBuf>,
    exec: Vec<PathBuf>,
    tcp_connect: Vec<u16>,
    seccomp: bool,
    if_unsupported: IfUnsupported,
}

/// What a start does when the kernel lacks a feature the sandbox uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IfUnsupported {
    /// The start fails (`security.sandbox_unsupported`) with a hint naming what
    /// the kernel lacks: a plugin never runs less confined than asked.
    #[default]
    Refuse,
    /// A warning names what is missing, and the plugin runs with what the
    /// kernel offers.
    Warn,
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Sandbox {
    /// The smallest policy: only what every plugin needs to start and serve, with
    /// the seccomp deny-list, refusing to start on a kernel that cannot enforce it.
    pub fn new() -> Self {
        Self {
            read: Vec::new(),
            write: Vec::new(),
            exec: Vec::new(),
            tcp_connect: Vec::new(),
            seccomp: true,
            if_unsupported: IfUnsupported::Refuse,
        }
    }

    /// The policy `PLUGIN_SANDBOX` and its sibling settings describe, or `None`
    /// when it is `off`.
    pub(crate) fn from_settings(settings: &Settings) -> Option<Self> {
        let if_unsupported = match settings.sandbox {
            SandboxMode::On => IfUnsupported::Refuse,
            SandboxMode::BestEffort => IfUnsupported::Warn,
            // Off, and any mode a newer config crate adds that this one does not
            // know: unconfined, as before the sandbox existed.
            _ => return None,
        };
        Some(
            Self::new()
                .read_paths(settings.sandbox_read_paths.iter())
                .write_paths(settings.sandbox_write_paths.iter())
                .exec_paths(settings.sandbox_exec_paths.iter())
                .tcp_connect_ports(settings.sandbox_tcp_connect.iter().copied())
                .seccomp(settings.sandbox_seccomp)
                .if_unsupported(if_unsupported),
        )
    }

    /// Lets the plugin read `path`: a file, or a directory and everything beneath it.
    pub fn read_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.read.push(path.into());
        self
    }

    /// [`read_path`](Self::read_path) for each path.
    pub fn read_paths<I: IntoIterator<Item = P>, P: Into<PathBuf>>(mut self, paths: I) -> Self {
        self.read.extend(paths.into_iter().map(Into::into));
        self
    }

    /// Lets the plugin read, write, create, rename and remove `path` (a directory
    /// and everything beneath it, or one file). Running programs there is not
    /// allowed: name them with [`exec_path`](Self::exec_path).
    pub fn write_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.write.push(path.into());
        self
    }

    /// [`write_path`](Self::write_path) for each path.
    pub fn write_paths<I: IntoIterator<Item = P>, P: Into<PathBuf>>(mut self, paths: I) -> Self {
        self.write.extend(paths.into_iter().map(Into::into));
        self
    }

    /// Lets the plugin run (and read) the program `path`, or any program beneath
    /// a directory. A plugin that is a script needs its interpreter here.
    pub fn exec_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.exec.push(path.into());
        self
    }

    /// [`exec_path`](Self::exec_path) for each path.
    pub fn exec_paths<I: IntoIterator<Item = P>, P: Into<PathBuf>>(mut self, paths: I) -> Self {
        self.exec.extend(paths.into_iter().map(Into::into));
        self
    }

    /// Lets the plugin connect to TCP `port` (on any address: Landlock rules name
    /// ports, not hosts).
    pub fn tcp_connect(mut self, port: u16) -> Self {
        self.tcp_connect.push(port);
        self
    }

    /// [`tcp_connect`](Self::tcp_connect) for each port.
    pub fn tcp_connect_ports(mut self, ports: impl IntoIterator<Item = u16>) -> Self {
        self.tcp_connect.extend(ports);
        self
    }

    /// Whether system calls a plugin never needs are denied with a seccomp filter
    /// (default true): ptrace and process_vm_*, mount and the new mount API,
    /// pivot_root, chroot, swapon/off, reboot, kexec, kernel modules, bpf,
    /// perf_event_open, the kernel keyring, userfaultfd, io_uring, setting the
    /// clock or the host name, unshare and setns. They fail with `EPERM`.
    pub fn seccomp(mut self, enabled: bool) -> Self {
        self.seccomp = enabled;
        self
    }

    /// What to do on a kernel that lacks a feature (default
    /// [`IfUnsupported::Refuse`]).
    pub fn if_unsupported(mut self, action: IfUnsupported) -> Self {
        self.if_unsupported = action;
        self
    }
}

/// A part of the sandbox that needs the kernel's support.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SandboxFeature {
    /// Landlock file-system rules with truncation covered: Landlock ABI 3, Linux 6.2.
    Filesystem,
    /// Landlock TCP bind and connect rules: ABI 4, Linux 6.7.
    Network,
    /// Landlock scoping of signals and abstract Unix sockets: ABI 6, Linux 6.12.
    Scoping,
    /// seccomp filters (`CONFIG_SECCOMP_FILTER`, Linux 3.5).
    Seccomp,
}

impl SandboxFeature {
    /// What the feature is, and the kernel it needs, for messages.
    pub const fn describe(self) -> &'static str {
        match self {
            Self::Filesystem => "Landlock file-system rules (Landlock ABI 3, Linux 6.2)",
            Self::Network => "Landlock TCP rules (Landlock ABI 4, Linux 6.7)",
            Self::Scoping => {
                "Landlock scoping of signals and abstract Unix sockets (Landlock ABI 6, Linux 6.12)"
            }
            Self::Seccomp => "seccomp filters (CONFIG_SECCOMP_FILTER)",
        }
    }

    /// The Landlock ABI the feature needs, if it is a Landlock feature.
    const fn landlock_abi(self) -> Option<u32> {
        match self {
            Self::Filesystem => Some(3),
            Self::Network => Some(4),
            Self::Scoping => Some(6),
            Self::Seccomp => None,
        }
    }
}

impl fmt::Display for SandboxFeature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// What a rule lets the plugin do with a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PathAccess {
    /// Read files and list directories.
    Read,
    /// Read, write, create, rename and remove; not execute.
    ReadWrite,
    /// Read and execute.
    Execute,
}

impl PathAccess {
    const fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::ReadWrite => "read-write",
            Self::Execute => "exec",
        }
    }
}

/// One path rule of an [`EffectiveSandbox`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SandboxPath {
    /// The path as named (rules follow symbolic links to what they name).
    pub path: PathBuf,
    /// What the plugin may do beneath it.
    pub access: PathAccess,
    /// Whether the host added it by itself (the executable, system libraries, the
    /// socket directory) rather than the policy naming it.
    pub implicit: bool,
}

/// The confinement a plugin was started with, from
/// [`PluginClient::sandbox`](crate::PluginClient::sandbox); its `Display` is the
/// one line the host logs at start.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EffectiveSandbox {
    /// The Landlock ABI the kernel offers (`None`: no Landlock).
    pub landlock_abi: Option<u32>,
    /// Whether Landlock file-system rules are enforced.
    pub filesystem: bool,
    /// Whether Landlock TCP rules are enforced.
    pub network: bool,
    /// Whether the plugin is scoped: no signals to, and no abstract-socket
    /// connections into, processes outside its sandbox.
    pub scoped: bool,
    /// Whether connecting to a Unix socket by path needs a rule too (Landlock ABI
    /// 9); before it, any socket file the user can reach can be connected to.
    pub unix_connect_restricted: bool,
    /// Whether the seccomp deny-list is loaded.
    pub seccomp: bool,
    /// Whether `no_new_privs` is set: always, on Linux.
    pub no_new_privs: bool,
    /// Every path rule, the implicit ones included; `/proc/self` (read) is added in
    /// the child, where it names the plugin.
    pub paths: Vec<SandboxPath>,
    /// TCP ports the plugin may bind (`0..=0`: a port the system chooses), when
    /// the host accepts TCP.
    pub tcp_bind: Option<RangeInclusive<u16>>,
    /// TCP ports the plugin may connect to.
    pub tcp_connect: Vec<u16>,
    /// What the kernel lacked, when the policy allowed running without it.
    pub missing: Vec<SandboxFeature>,
}

impl fmt::Display for EffectiveSandbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.landlock_abi {
            Some(abi) => write!(f, "landlock abi {abi}")?,
            None => f.write_str("no landlock")?,
        }
        if self.filesystem {
            for access in [PathAccess::Read, PathAccess::ReadWrite, PathAccess::Execute] {
                let paths: Vec<String> = self
                    .paths
                    .iter()
                    .filter(|p| p.access == access)
                    .map(|p| p.path.display().to_string())
                    .collect();
                if !paths.is_empty() {
                    write!(f, "; {}: {}", access.as_str(), paths.join(" "))?;
                }
            }
        }
        if self.network {
            match &self.tcp_bind {
                Some(range) if *range == (0..=0) => f.write_str("; tcp bind: any free port")?,
                Some(range) => write!(f, "; tcp bind: {}-{}", range.start(), range.end())?,
                None => f.write_str("; tcp bind: none")?,
            }
            if self.tcp_connect.is_empty() {
                f.write_str("; tcp connect: none")?;
            } else {
                let ports: Vec<String> = self.tcp_connect.iter().map(u16::to_string).collect();
                write!(f, "; tcp connect: {}", ports.join(","))?;
            }
        }
        if self.scoped {
            f.write_str("; scoped signals and abstract sockets")?;
        }
        if self.seccomp {
            f.write_str("; seccomp deny-list")?;
        }
        if self.no_new_privs {
            f.write_str("; no_new_privs")?;
        }
        if !self.missing.is_empty() {
            let missing: Vec<&str> = self.missing.iter().map(|m| m.describe()).collect();
            write!(f, "; missing: {}", missing.join(", "))?;
        }
        Ok(())
    }
}

/// What the sandbox of one start needs to know about the plugin.
#[derive(Debug)]
pub(crate) struct Target<'a> {
    pub(crate) name: &'a str,
    /// The executable, absolute.
    pub(crate) program: &'a Path,
    /// The plugin's private socket directory.
    pub(crate) socket_dir: &'a Path,
    /// The ports its own TCP listener may bind, when the host accepts TCP.
    pub(crate) tcp_bind: Option<RangeInclusive<u16>>,
}

/// The sandbox of one start, prepared in the host.
#[derive(Debug)]
pub(crate) struct Prepared {
    /// What the child applies to itself ([`install`]).
    pub(crate) confinement: Confinement,
    /// What the client reports.
    pub(crate) effective: EffectiveSandbox,
}

/// What the child applies to itself: `no_new_privs` always, then these.
#[derive(Debug)]
pub(crate) struct Confinement {
    pub(crate) landlock: Option<rules::Ruleset>,
    pub(crate) seccomp: Option<seccomp::Program>,
}

/// Which features one start uses: those the policy asks for that the kernel has.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Plan {
    filesystem: bool,
    network: bool,
    scoped: bool,
    seccomp: bool,
    missing: Vec<SandboxFeature>,
}

/// Decides what to use on `kernel`: refuses (the policy's default) or warns about
/// each missing feature. Pure, so every kernel can be tested here.
fn plan(policy: &Sandbox, kernel: &Kernel, name: &str) -> Result<Plan> {
    let mut wanted = vec![
        SandboxFeature::Filesystem,
        SandboxFeature::Network,
        SandboxFeature::Scoping,
    ];
    if policy.seccomp {
        wanted.push(SandboxFeature::Seccomp);
    }
    let has = |feature: SandboxFeature| match feature.landlock_abi() {
        Some(abi) => kernel.landlock_abi().is_some_and(|have| have >= abi),
        None => kernel.seccomp,
    };
    let missing: Vec<SandboxFeature> = wanted.iter().copied().filter(|f| !has(*f)).collect();
    if let Some(first) = missing.first()
        && policy.if_unsupported == IfUnsupported::Refuse
    {
        let lacks: Vec<&str> = missing.iter().map(|m| m.describe()).collect();
        return Err(Error::new(
            Code::SecuritySandboxUnsupported,
            format!(
                "cannot sandbox plugin {name}: the kernel lacks {}",
                lacks.join(", ")
            ),
        )
        .with_hint(format!(
            "{}; upgrade the kernel, or run the plugin with what this kernel offers \
             (PLUGIN_SANDBOX=best-effort, or .if_unsupported(IfUnsupported::Warn) on the \
             Sandbox){}",
            kernel.describe(),
            if *first == SandboxFeature::Seccomp {
                ", or leave seccomp out (PLUGIN_SANDBOX_SECCOMP=false, .seccomp(false))"
            } else {
                ""
            }
        )));
    }
    for feature in &missing {
        tracing::warn!(
            plugin = %name,
            "the plugin runs without {feature}: {}",
            kernel.describe()
        );
    }
    // What the kernel has below the required level is still used: Landlock ABI 1
    // or 2 confines files, only truncation stays open.
    let abi = kernel.landlock_abi().unwrap_or(0);
    Ok(Plan {
        filesystem: abi >= 1,
        network: abi >= 4,
        scoped: abi >= 6,
        seccomp: policy.seccomp && kernel.seccomp,
        missing,
    })
}

/// Prepares `policy` for `target` in the host: detects the kernel, plans, opens
/// every path, builds the Landlock ruleset and the seccomp program.
///
/// # Errors
///
/// `security.sandbox_unsupported` when the kernel lacks a feature and the policy
/// refuses; `security.sandbox_path` for a path that cannot be opened;
/// `security.sandbox_apply` when the kernel refuses the ruleset.
pub(crate) fn prepare(policy: &Sandbox, target: &Target<'_>) -> Result<Prepared> {
    let kernel = Kernel::detect();
    let plan = plan(policy, &kernel, target.name)?;
    let paths = path_rules(policy, target)?;
    let tcp_bind = target.tcp_bind.clone();
    let mut tcp_connect = policy.tcp_connect.clone();
    tcp_connect.sort_unstable();
    tcp_connect.dedup();
    let landlock = if plan.filesystem {
        Some(rules::build(
            &plan,
            &paths,
            tcp_bind.as_ref(),
            &tcp_connect,
        )?)
    } else {
        None
    };
    let seccomp = plan.seccomp.then(seccomp::Program::deny_list);
    let effective = EffectiveSandbox {
        landlock_abi: kernel.landlock_abi(),
        filesystem: plan.filesystem,
        network: plan.network,
        scoped: plan.scoped,
        unix_connect_restricted: kernel.landlock_abi().is_some_and(|abi| abi >= 9),
        seccomp: plan.seccomp,
        no_new_privs: cfg!(target_os = "linux"),
        paths,
        tcp_bind,
        tcp_connect,
        missing: plan.missing,
    };
    Ok(Prepared {
        confinement: Confinement { landlock, seccomp },
        effective,
    })
}

/// The dynamic loader's and the C library's files, and what language runtimes read
/// at start (CPU counts, cgroup limits, huge-page sizes, time zones): read only.
/// Paths missing on this machine are skipped.
const SYSTEM_READ: &[&str] = &[
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/usr/lib",
    "/usr/lib32",
    "/usr/lib64",
    "/usr/libx32",
    "/usr/local/lib",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/ld.so.preload",
    "/etc/localtime",
    "/usr/share/zoneinfo",
    "/dev/urandom",
    "/dev/random",
    "/sys/devices/system/cpu",
    "/sys/fs/cgroup",
    "/sys/kernel/mm/transparent_hugepage",
];

/// Read and written by every runtime: `/dev/null`.
const SYSTEM_READ_WRITE: &[&str] = &["/dev/null"];

/// Every path rule: the implicit ones first (the executable and its ELF
/// interpreter to run, system files to read, the socket directory and /dev/null
/// to write), then the policy's, each made absolute.
fn path_rules(policy: &Sandbox, target: &Target<'_>) -> Result<Vec<SandboxPath>> {
    let implicit = |path: &Path, access| SandboxPath {
        path: path.to_owned(),
        access,
        implicit: true,
    };
    let mut paths = vec![implicit(target.program, PathAccess::Execute)];
    // Libraries need only read access (Landlock does not check mmap), but the
    // loader is executed by the kernel: it gets exec, nothing else in /usr/lib does.
    if let Some(interpreter) = elf::interpreter(target.program) {
        paths.push(implicit(&interpreter, PathAccess::Execute));
    }
    for path in SYSTEM_READ.iter().map(Path::new).filter(|p| p.exists()) {
        paths.push(implicit(path, PathAccess::Read));
    }
    for path in SYSTEM_READ_WRITE
        .iter()
        .map(Path::new)
        .filter(|p| p.exists())
    {
        paths.push(implicit(path, PathAccess::ReadWrite));
    }
    paths.push(implicit(target.socket_dir, PathAccess::ReadWrite));
    for (list, access) in [
        (&policy.read, PathAccess::Read),
        (&policy.write, PathAccess::ReadWrite),
        (&policy.exec, PathAccess::Execute),
    ] {
        for path in list {
            let absolute = std::path::absolute(path).map_err(|e| path_error(path, e))?;
            paths.push(SandboxPath {
                path: absolute,
                access,
                implicit: false,
            });
        }
    }
    Ok(paths)
}

/// A policy path that cannot be used.
fn path_error(path: &Path, err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Error {
    Error::new(
        Code::SecuritySandboxPath,
        format!("sandbox path {} cannot be opened", path.display()),
    )
    .with_hint(
        "every path of a sandbox policy must exist when the plugin starts: create it, \
         or remove it from the policy (PLUGIN_SANDBOX_*_PATHS or the Sandbox given in code)",
    )
    .with_source(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel(abi: Option<u32>, seccomp: bool) -> Kernel {
        Kernel::fake(abi, seccomp)
    }

    #[test]
    fn a_full_kernel_uses_everything() {
        let plan = plan(&Sandbox::new(), &kernel(Some(7), true), "p").unwrap();
        assert!(plan.filesystem && plan.network && plan.scoped && plan.seccomp);
        assert!(plan.missing.is_empty());
        let without = plan_of(Sandbox::new().seccomp(false), Some(7), true);
        assert!(!without.seccomp);
    }

    fn plan_of(policy: Sandbox, abi: Option<u32>, seccomp: bool) -> Plan {
        plan(&policy, &kernel(abi, seccomp), "p").unwrap()
    }

    #[test]
    fn a_kernel_without_tcp_rules_is_refused_by_default_with_a_hint() {
        let err = plan(&Sandbox::new(), &kernel(Some(3), true), "kv").unwrap_err();
        assert_eq!(err.code(), Code::SecuritySandboxUnsupported);
        let text = err.to_string();
        assert!(text.contains("plugin kv"), "{text}");
        assert!(
            text.contains("Landlock TCP rules (Landlock ABI 4, Linux 6.7)"),
            "{text}"
        );
        assert!(text.contains("Landlock ABI 6"), "{text}");
        let hint = err.hint().unwrap();
        assert!(hint.contains("offers Landlock ABI 3"), "{hint}");
        assert!(hint.contains("PLUGIN_SANDBOX=best-effort"), "{hint}");
    }

    #[test]
    fn best_effort_runs_with_what_the_kernel_offers_and_names_the_rest() {
        let warn = Sandbox::new().if_unsupported(IfUnsupported::Warn);
        let plan = plan_of(warn.clone(), Some(2), false);
        assert!(plan.filesystem, "ABI 2 still confines files");
        assert!(!plan.network && !plan.scoped && !plan.seccomp);
        assert_eq!(
            plan.missing,
            [
                SandboxFeature::Filesystem,
                SandboxFeature::Network,
                SandboxFeature::Scoping,
                SandboxFeature::Seccomp
            ]
        );
        let none = plan_of(warn, None, true);
        assert!(!none.filesystem && none.seccomp);
    }

    #[test]
    fn landlock_disabled_at_boot_and_missing_seccomp_have_their_own_hints() {
        let err = plan(&Sandbox::new(), &Kernel::fake_disabled(), "p").unwrap_err();
        assert!(err.hint().unwrap().contains("lsm="), "{:?}", err.hint());
        let err = plan(&Sandbox::new(), &kernel(Some(7), false), "p").unwrap_err();
        assert!(err.to_string().contains("seccomp filters"), "{err}");
        assert!(err.hint().unwrap().contains("PLUGIN_SANDBOX_SECCOMP=false"));
        assert!(plan(&Sandbox::new().seccomp(false), &kernel(Some(7), false), "p").is_ok());
    }

    #[test]
    fn settings_make_a_policy_only_when_on() {
        let off = Settings::from_vars([("PLUGIN_SANDBOX_WRITE_PATHS", "/srv")]).unwrap();
        assert_eq!(Sandbox::from_settings(&off), None);
        let on = Settings::from_vars([
            ("PLUGIN_SANDBOX", "best-effort"),
            ("PLUGIN_SANDBOX_WRITE_PATHS", "/srv/a:/srv/b"),
            ("PLUGIN_SANDBOX_TCP_CONNECT", "5432"),
            ("PLUGIN_SANDBOX_SECCOMP", "no"),
        ])
        .unwrap();
        assert_eq!(
            Sandbox::from_settings(&on),
            Some(
                Sandbox::new()
                    .write_paths(["/srv/a", "/srv/b"])
                    .tcp_connect(5432)
                    .seccomp(false)
                    .if_unsupported(IfUnsupported::Warn)
            )
        );
    }

    #[test]
    fn implicit_rules_cover_the_program_its_loader_the_libraries_and_the_socket_dir() {
        let program = std::env::current_exe().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let target = Target {
            name: "p",
            program: &program,
            socket_dir: dir.path(),
            tcp_bind: None,
        };
        let policy = Sandbox::new().read_path("relative/data");
        let paths = path_rules(&policy, &target).unwrap();
        let find = |path: &Path| paths.iter().find(|p| p.path == path);
        assert_eq!(find(&program).unwrap().access, PathAccess::Execute);
        assert_eq!(find(dir.path()).unwrap().access, PathAccess::ReadWrite);
        assert_eq!(
            find(Path::new("/usr/lib")).unwrap().access,
            PathAccess::Read
        );
        assert_eq!(
            find(Path::new("/dev/null")).unwrap().access,
            PathAccess::ReadWrite
        );
        let exec: Vec<_> = paths
            .iter()
            .filter(|p| p.access == PathAccess::Execute)
            .collect();
        assert_eq!(
            exec.len(),
            2,
            "the program and its ELF interpreter: {exec:?}"
        );
        let named = paths.last().unwrap();
        assert!(!named.implicit && named.path.is_absolute(), "{named:?}");
        assert!(named.path.ends_with("relative/data"));
    }

    #[test]
    fn the_effective_policy_reads_as_one_line() {
        let effective = EffectiveSandbox {
            landlock_abi: Some(7),
            filesystem: true,
            network: true,
            scoped: true,
            unix_connect_restricted: false,
            seccomp: true,
            no_new_privs: true,
            paths: vec![
                SandboxPath {
                    path: "/usr/lib".into(),
                    access: PathAccess::Read,
                    implicit: true,
                },
                SandboxPath {
                    path: "/srv/data".into(),
                    access: PathAccess::ReadWrite,
                    implicit: false,
                },
            ],
            tcp_bind: Some(0..=0),
            tcp_connect: vec![5432],
            missing: vec![],
        };
        assert_eq!(
            effective.to_string(),
            "landlock abi 7; read: /usr/lib; read-write: /srv/data; tcp bind: any free port; \
             tcp connect: 5432; scoped signals and abstract sockets; seccomp deny-list; no_new_privs"
        );
    }
}
