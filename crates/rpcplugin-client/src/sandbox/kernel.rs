//! What the running kernel offers a sandbox: which Landlock ABI, and seccomp
//! filters. Asked once per start, in the host (two cheap system calls).

/// Why there is no Landlock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Landlock {
    /// The ABI version the kernel answers.
    Abi(u32),
    /// Built in but not enabled at boot (`EOPNOTSUPP`).
    Disabled,
    /// Not built in, or not Linux (`ENOSYS`).
    Absent,
}

/// The kernel's sandboxing features.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Kernel {
    landlock: Landlock,
    /// Whether seccomp filters can be loaded.
    pub(crate) seccomp: bool,
}

impl Kernel {
    /// Asks the running kernel.
    pub(crate) fn detect() -> Self {
        Self {
            landlock: detect_landlock(),
            // Without a deny-list for this architecture there is nothing to load.
            seccomp: super::seccomp::SUPPORTED && detect_seccomp(),
        }
    }

    /// The Landlock ABI version, if Landlock is there and enabled.
    pub(crate) fn landlock_abi(&self) -> Option<u32> {
        match self.landlock {
            Landlock::Abi(abi) => Some(abi),
            Landlock::Disabled | Landlock::Absent => None,
        }
    }

    /// What this kernel offers, for hints: "this kernel offers Landlock ABI 3
    /// and seccomp filters".
    pub(crate) fn describe(&self) -> String {
        let seccomp = if self.seccomp {
            "seccomp filters"
        } else {
            "no seccomp filters"
        };
        match self.landlock {
            Landlock::Abi(abi) => format!("this kernel offers Landlock ABI {abi} and {seccomp}"),
            Landlock::Disabled => format!(
                "this kernel has Landlock but it is not enabled (add landlock to the lsm= \
                 boot parameter, e.g. lsm=landlock,lockdown,yama,integrity,apparmor), and \
                 {seccomp}"
            ),
            Landlock::Absent => format!(
                "this kernel has no Landlock (Linux 5.13 or later built with \
                 CONFIG_SECURITY_LANDLOCK), and {seccomp}"
            ),
        }
    }

    #[cfg(test)]
    pub(crate) fn fake(abi: Option<u32>, seccomp: bool) -> Self {
        Self {
            landlock: abi.map_or(Landlock::Absent, Landlock::Abi),
            seccomp,
        }
    }

    #[cfg(test)]
    pub(crate) fn fake_disabled() -> Self {
        Self {
            landlock: Landlock::Disabled,
            seccomp: true,
        }
    }
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn detect_landlock() -> Landlock {
    use nix::libc;
    // landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION) answers
    // the ABI version instead of making a ruleset. The landlock crate keeps its own
    // answer private (it wants rules to depend on a vetted ABI, not on the
    // kernel), but messages and the effective policy need the number.
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_long = 1;
    // SAFETY: a null attribute pointer with size 0 is what the version query takes;
    // the call reads and writes no memory of ours.
    let answer = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if answer > 0 {
        return Landlock::Abi(u32::try_from(answer).unwrap_or(u32::MAX));
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::EOPNOTSUPP) => Landlock::Disabled,
        _ => Landlock::Absent,
    }
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn detect_seccomp() -> bool {
    use nix::libc;
    let action: u32 = libc::SECCOMP_RET_ERRNO;
    // SAFETY: SECCOMP_GET_ACTION_AVAIL reads one u32 through the pointer, which
    // lives across the call. It answers 0 when filters with that action can be
    // loaded (Linux 4.14+; older kernels answer EINVAL and are treated as lacking).
    let answer = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_GET_ACTION_AVAIL,
            0u32,
            &action as *const u32,
        )
    };
    answer == 0
}

#[cfg(not(target_os = "linux"))]
fn detect_landlock() -> Landlock {
    Landlock::Absent
}

#[cfg(not(target_os = "linux"))]
fn detect_seccomp() -> bool {
    false
}
