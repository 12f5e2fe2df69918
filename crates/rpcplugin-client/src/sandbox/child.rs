//! Applying a prepared sandbox in the child, between fork and exec.
//!
//! The child of a multithreaded host may only make async-signal-safe calls there:
//! no allocation, no lock (another thread may have held the allocator's lock at the
//! fork). So everything was prepared in the host, and this is system calls on it:
//! `prctl(PR_SET_NO_NEW_PRIVS)`, one `landlock_add_rule` for the child's own
//! `/proc/self` (its pid does not exist before the fork), `landlock_restrict_self`
//! with the prepared ruleset, and `prctl(PR_SET_SECCOMP)` with the prepared program.
//! A failure returns the `errno` as an `io::Error` (which holds the number without
//! allocating); the spawn then fails with it.

use tokio::process::Command;

use super::Confinement;

/// Makes `command`'s child confine itself before it executes the plugin. Runs
/// after the parent-death signal and the resource limits (installed first).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub(crate) fn install(command: &mut Command, confinement: Confinement) {
    use nix::libc;
    use std::io;
    use std::os::fd::AsRawFd;

    /// `struct landlock_path_beneath_attr` (linux/landlock.h): packed.
    #[repr(C, packed)]
    struct PathBeneathAttr {
        allowed_access: u64,
        parent_fd: i32,
    }
    const LANDLOCK_RULE_PATH_BENEATH: libc::c_long = 1;

    let Confinement { landlock, seccomp } = confinement;
    // SAFETY: the closure runs between fork and exec in the child. It makes only
    // system calls (prctl, open, close, syscall), all async-signal-safe; the
    // ruleset descriptor and the filter were made in the host and are only read;
    // the attribute and the `sock_fprog` live on this stack frame across the calls
    // that read them; `io::Error::last_os_error` holds the errno without
    // allocating.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            if let Some(ruleset) = &landlock {
                let ruleset_fd = ruleset.fd.as_raw_fd();
                // /proc/self names this process only from here on. Without procfs
                // the plugin simply gets no /proc (runtimes cope).
                let proc_self = libc::open(
                    c"/proc/self".as_ptr(),
                    libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
                );
                if proc_self >= 0 {
                    let attr = PathBeneathAttr {
                        allowed_access: ruleset.proc_self_access,
                        parent_fd: proc_self,
                    };
                    let added = libc::syscall(
                        libc::SYS_landlock_add_rule,
                        ruleset_fd,
                        LANDLOCK_RULE_PATH_BENEATH,
                        &attr as *const PathBeneathAttr,
                        0u32,
                    );
                    let err = io::Error::last_os_error();
                    libc::close(proc_self);
                    if added != 0 {
                        return Err(err);
                    }
                }
                if libc::syscall(libc::SYS_landlock_restrict_self, ruleset_fd, 0u32) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            if let Some(program) = &seccomp {
                let prog = libc::sock_fprog {
                    // At most a few dozen instructions (checked where it is built).
                    len: program.filter.len() as libc::c_ushort,
                    filter: program.filter.as_ptr().cast_mut(),
                };
                if libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &prog as *const libc::sock_fprog,
                ) != 0
                {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// No sandbox outside Linux: `plan` refuses or warns before anything is prepared.
#[cfg(not(target_os = "linux"))]
pub(crate) fn install(_command: &mut Command, _confinement: Confinement) {
    // Only no_new_privs would apply, and it is Linux's too.
}
