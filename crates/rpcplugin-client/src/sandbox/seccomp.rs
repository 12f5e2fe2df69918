//! The seccomp deny-list: a classic BPF program, built in the host, that makes
//! system calls a plugin never needs fail with `EPERM`.
//!
//! Hand-written rather than taken from a seccomp crate: the program is a
//! straight list of comparisons (about fifty instructions), and the crates that
//! compile richer policies (libseccomp's bindings need the C library) would be the
//! largest dependency of the client for it.
//!
//! The program first checks the architecture: a system call made through another
//! ABI (32-bit `int 0x80` on x86-64, or x32) has other numbers, so every such call
//! is denied rather than compared against the wrong list.

#[cfg(target_os = "linux")]
use nix::libc;

/// Whether this architecture has a deny-list here (its system call numbers and
/// audit architecture are known).
pub(crate) const SUPPORTED: bool = cfg!(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
));

/// A built program, for the child to load.
#[derive(Debug)]
pub(crate) struct Program {
    #[cfg(target_os = "linux")]
    pub(crate) filter: Box<[libc::sock_filter]>,
}

#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
mod table {
    use super::libc;

    /// `AUDIT_ARCH_X86_64` / `AUDIT_ARCH_AARCH64` (linux/audit.h).
    #[cfg(target_arch = "x86_64")]
    pub(super) const AUDIT_ARCH: u32 = 0xC000_003E;
    #[cfg(target_arch = "aarch64")]
    pub(super) const AUDIT_ARCH: u32 = 0xC000_00B7;

    /// x32 system calls share x86-64's audit architecture and set this bit.
    #[cfg(target_arch = "x86_64")]
    pub(super) const X32_SYSCALL_BIT: Option<u32> = Some(0x4000_0000);
    #[cfg(target_arch = "aarch64")]
    pub(super) const X32_SYSCALL_BIT: Option<u32> = None;

    /// What no plugin needs, on both architectures: debugging and reading other
    /// processes, mounts, the machine's state (clock, host name, swap, reboot,
    /// kexec, modules), kernel attack surface rarely used by services (bpf,
    /// perf, keyrings, userfaultfd, io_uring), and new namespaces.
    pub(super) const COMMON: &[libc::c_long] = &[
        libc::SYS_ptrace,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
        libc::SYS_chroot,
        libc::SYS_fsopen,
        libc::SYS_fsconfig,
        libc::SYS_fsmount,
        libc::SYS_fspick,
        libc::SYS_move_mount,
        libc::SYS_open_tree,
        libc::SYS_mount_setattr,
        libc::SYS_swapon,
        libc::SYS_swapoff,
        libc::SYS_reboot,
        libc::SYS_kexec_load,
        libc::SYS_kexec_file_load,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
        libc::SYS_bpf,
        libc::SYS_perf_event_open,
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        libc::SYS_userfaultfd,
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
        libc::SYS_acct,
        libc::SYS_settimeofday,
        libc::SYS_clock_settime,
        libc::SYS_clock_adjtime,
        libc::SYS_adjtimex,
        libc::SYS_sethostname,
        libc::SYS_setdomainname,
        libc::SYS_quotactl,
        libc::SYS_open_by_handle_at,
        libc::SYS_lookup_dcookie,
        libc::SYS_vhangup,
        libc::SYS_unshare,
        libc::SYS_setns,
    ];

    /// x86-64's own: port I/O, `uselib` and the old sysctl interface.
    #[cfg(target_arch = "x86_64")]
    pub(super) const ARCH: &[libc::c_long] = &[
        libc::SYS_iopl,
        libc::SYS_ioperm,
        libc::SYS_uselib,
        libc::SYS__sysctl,
        libc::SYS_nfsservctl,
    ];
    #[cfg(target_arch = "aarch64")]
    pub(super) const ARCH: &[libc::c_long] = &[libc::SYS_nfsservctl];
}

#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
impl Program {
    /// The deny-list for this architecture.
    pub(crate) fn deny_list() -> Self {
        // Classic BPF opcodes (linux/filter.h, linux/bpf_common.h): BPF_LD | BPF_W
        // | BPF_ABS, where BPF_LD and BPF_W are 0.
        const LD_W_ABS: u16 = 0x20;
        const JEQ_K: u16 = 0x05 | 0x10;
        const JGE_K: u16 = 0x05 | 0x30;
        const RET_K: u16 = 0x06;
        // struct seccomp_data: int nr; __u32 arch; ...
        const NR: u32 = 0;
        const ARCH: u32 = 4;
        let deny = libc::SECCOMP_RET_ERRNO | (libc::EPERM as u32 & libc::SECCOMP_RET_DATA);
        let stmt = |code, k| libc::sock_filter {
            code,
            jt: 0,
            jf: 0,
            k,
        };
        let jump = |code, k, jt, jf| libc::sock_filter { code, jt, jf, k };

        let denied: Vec<u32> = table::COMMON
            .iter()
            .chain(table::ARCH)
            .map(|nr| u32::try_from(*nr).expect("system call numbers are small"))
            .collect();
        let count = u8::try_from(denied.len()).expect("a jump reaches at most 255 instructions");
        let mut filter = vec![
            stmt(LD_W_ABS, ARCH),
            // The right architecture skips the next instruction; another is denied.
            jump(JEQ_K, table::AUDIT_ARCH, 1, 0),
            stmt(RET_K, deny),
            stmt(LD_W_ABS, NR),
        ];
        if let Some(bit) = table::X32_SYSCALL_BIT {
            // Over the comparisons and the allow, to the deny at the end.
            filter.push(jump(JGE_K, bit, count + 1, 0));
        }
        for (i, nr) in denied.iter().enumerate() {
            // From comparison i, the deny is after the (count - 1 - i) comparisons
            // left and the allow.
            let to_deny = count - u8::try_from(i).expect("fewer than 256");
            filter.push(jump(JEQ_K, *nr, to_deny, 0));
        }
        filter.push(stmt(RET_K, libc::SECCOMP_RET_ALLOW));
        filter.push(stmt(RET_K, deny));
        Self {
            filter: filter.into_boxed_slice(),
        }
    }
}

#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
impl Program {
    /// Never called: [`SUPPORTED`] is false here, so no plan asks for seccomp.
    pub(crate) fn deny_list() -> Self {
        Self {
            #[cfg(target_os = "linux")]
            filter: Box::new([]),
        }
    }
}

#[cfg(all(
    test,
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
mod tests {
    use super::*;

    /// Runs the program over one `seccomp_data` the way the kernel would, for
    /// the instructions it uses.
    fn run(program: &Program, nr: u32, arch: u32) -> u32 {
        let mut acc = 0u32;
        let mut pc = 0usize;
        loop {
            let insn = program.filter[pc];
            match insn.code {
                0x20 => acc = if insn.k == 0 { nr } else { arch },
                0x15 => {
                    pc += usize::from(if acc == insn.k { insn.jt } else { insn.jf });
                }
                0x35 => {
                    pc += usize::from(if acc >= insn.k { insn.jt } else { insn.jf });
                }
                0x06 => return insn.k,
                other => panic!("unexpected opcode {other:#x}"),
            }
            pc += 1;
        }
    }

    #[test]
    fn listed_calls_fail_with_eperm_and_the_rest_pass() {
        let program = Program::deny_list();
        let deny = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
        let arch = table::AUDIT_ARCH;
        for nr in table::COMMON.iter().chain(table::ARCH) {
            assert_eq!(run(&program, *nr as u32, arch), deny, "syscall {nr}");
        }
        for allowed in [
            libc::SYS_read,
            libc::SYS_write,
            libc::SYS_openat,
            libc::SYS_clone,
            libc::SYS_execve,
            libc::SYS_landlock_restrict_self,
            libc::SYS_seccomp,
        ] {
            assert_eq!(
                run(&program, allowed as u32, arch),
                libc::SECCOMP_RET_ALLOW,
                "syscall {allowed}"
            );
        }
    }

    #[test]
    fn another_architecture_is_denied_whatever_the_number() {
        let program = Program::deny_list();
        let i386 = 0x4000_0003;
        assert_eq!(
            run(&program, libc::SYS_read as u32, i386) & 0xffff_0000,
            libc::SECCOMP_RET_ERRNO
        );
        if let Some(bit) = table::X32_SYSCALL_BIT {
            let x32_read = bit | libc::SYS_read as u32;
            assert_eq!(
                run(&program, x32_read, table::AUDIT_ARCH) & 0xffff_0000,
                libc::SECCOMP_RET_ERRNO
            );
        }
    }
}
