//! What each kind of VMM thread may ask of the kernel, found by running the VMM under
//! `strace -f` on the tiny guests, the virtio guests (disk, passt, virtiofsd) and a
//! Debian boot, then grouping the calls by thread. Anything else is a bug or an
//! attack, and ends the VMM (see [`super::sigsys`]).

use super::ThreadKind;
use seccompiler::{SeccompCmpArgLen as Len, SeccompCmpOp as Op, SeccompCondition, SeccompRule};
use std::collections::BTreeMap;

/// One syscall and the argument patterns it may be made with (none: any arguments).
pub type Rules = BTreeMap<i64, Vec<SeccompRule>>;

/// Every Rust thread of the VMM: memory, locks, signals (the vCPU kick, the SIGSYS
/// report), logging to stderr, sleeping, and ending.
const COMMON: &[i64] = &[
    libc::SYS_brk,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mprotect,
    libc::SYS_madvise,
    libc::SYS_mremap,
    libc::SYS_futex,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_sigaltstack,
    libc::SYS_sched_getaffinity,
    libc::SYS_sched_yield,
    libc::SYS_gettid,
    libc::SYS_getpid,
    libc::SYS_clock_gettime,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_restart_syscall,
    libc::SYS_getrandom,
    libc::SYS_fcntl,
    libc::SYS_close,
    libc::SYS_write,
    libc::SYS_exit,
    libc::SYS_exit_group,
];

/// A thread that starts threads: the new thread's first calls (its robust futex list,
/// rseq, its name) are made under its parent's list. clone3 passes its flags in
/// memory, where a filter cannot see them, so [`no_clone3`] makes it fail with ENOSYS
/// and glibc falls back to clone, allowed only with the flags of a new thread
/// ([`THREAD_CLONE_FLAGS`]): no thread can fork.
const SPAWNS: &[i64] = &[libc::SYS_clone3, libc::SYS_set_robust_list, libc::SYS_rseq];

/// What glibc's pthread_create passes to clone.
pub const THREAD_CLONE_FLAGS: u64 = (libc::CLONE_VM
    | libc::CLONE_FS
    | libc::CLONE_FILES
    | libc::CLONE_SIGHAND
    | libc::CLONE_THREAD
    | libc::CLONE_SYSVSEM
    | libc::CLONE_SETTLS
    | libc::CLONE_PARENT_SETTID
    | libc::CLONE_CHILD_CLEARTID) as u64;

/// A device worker's loop: the stop and kick eventfds in an epoll set.
const EPOLL: &[i64] = &[
    libc::SYS_epoll_create1,
    libc::SYS_epoll_ctl,
    libc::SYS_epoll_wait,
    libc::SYS_epoll_pwait,
    libc::SYS_read,
];

/// virtio-blk: the image file, and the free space of its file system when a write
/// finds it full.
const BLOCK: &[i64] = &[
    libc::SYS_fstatfs,
    libc::SYS_pread64,
    libc::SYS_pwrite64,
    libc::SYS_preadv,
    libc::SYS_pwritev,
    libc::SYS_fdatasync,
    libc::SYS_fsync,
    libc::SYS_fallocate,
];

/// The serial log's rotation in place (`crate::log_rotation`), on the vCPU that
/// writes the guest's output: its reads and writes are pread/pwrite.
const SERIAL_LOG: &[i64] = &[libc::SYS_ftruncate];

/// virtio-net: a TAP device (read/write) or passt's stream socket.
const NET: &[i64] = &[
    libc::SYS_readv,
    libc::SYS_writev,
    libc::SYS_recvfrom,
    libc::SYS_sendto,
];

/// The vhost-user conversation with virtiofsd (file descriptors travel in
/// SCM_RIGHTS), and the watchdog that shuts a hung one down.
const VHOST_USER: &[i64] = &[libc::SYS_sendmsg, libc::SYS_recvmsg, libc::SYS_shutdown];

/// The socket servers: accept, read a line (with a descriptor, for `save`), answer,
/// time out idle clients.
const SERVER: &[i64] = &[
    libc::SYS_accept4,
    libc::SYS_recvfrom,
    libc::SYS_recvmsg,
    libc::SYS_sendto,
    libc::SYS_setsockopt,
];

// KVM's ioctl numbers (linux/kvm.h): _IO/_IOR/_IOW of type 0xAE with the argument's size.
const fn kvm_io(nr: u64) -> u64 {
    (0xAE << 8) | nr
}
const fn kvm_ior(nr: u64, size: usize) -> u64 {
    (2 << 30) | ((size as u64) << 16) | (0xAE << 8) | nr
}
const fn kvm_iow(nr: u64, size: usize) -> u64 {
    (1 << 30) | ((size as u64) << 16) | (0xAE << 8) | nr
}
use kvm_bindings as kb;
use std::mem::size_of;
pub const KVM_RUN: u64 = kvm_io(0x80);
pub const KVM_GET_REGS: u64 = kvm_ior(0x81, size_of::<kb::kvm_regs>());
pub const KVM_GET_SREGS: u64 = kvm_ior(0x83, size_of::<kb::kvm_sregs>());
pub const KVM_IRQ_LINE: u64 = kvm_iow(0x61, size_of::<kb::kvm_irq_level>());
pub const KVM_SET_GSI_ROUTING: u64 = kvm_iow(0x6a, size_of::<kb::kvm_irq_routing>());
pub const KVM_IRQFD: u64 = kvm_iow(0x76, size_of::<kb::kvm_irqfd>());
pub const KVM_IOEVENTFD: u64 = kvm_iow(0x79, size_of::<kb::kvm_ioeventfd>());
const fn kvm_iowr(nr: u64, size: usize) -> u64 {
    (3 << 30) | ((size as u64) << 16) | (0xAE << 8) | nr
}
// What a save reads of each vCPU (on its own thread) and of the VM (on the main one).
pub const KVM_GET_MSRS: u64 = kvm_iowr(0x88, size_of::<kb::kvm_msrs>());
pub const KVM_GET_MP_STATE: u64 = kvm_ior(0x98, size_of::<kb::kvm_mp_state>());
pub const KVM_GET_XSAVE: u64 = kvm_ior(0xa4, size_of::<kb::kvm_xsave>());
pub const KVM_GET_XCRS: u64 = kvm_ior(0xa6, size_of::<kb::kvm_xcrs>());
pub const KVM_GET_DEBUGREGS: u64 = kvm_ior(0xa1, size_of::<kb::kvm_debugregs>());
pub const KVM_GET_LAPIC: u64 = kvm_ior(0x8e, size_of::<kb::kvm_lapic_state>());
pub const KVM_GET_VCPU_EVENTS: u64 = kvm_ior(0x9f, size_of::<kb::kvm_vcpu_events>());
pub const KVM_GET_IRQCHIP: u64 = kvm_iowr(0x62, size_of::<kb::kvm_irqchip>());
pub const KVM_GET_PIT2: u64 = kvm_ior(0x9f, size_of::<kb::kvm_pit_state2>());
pub const KVM_GET_CLOCK: u64 = kvm_ior(0x7c, size_of::<kb::kvm_clock_data>());

/// A vCPU runs the guest, reads its registers for a fault report, and, when the guest
/// programs a device, routes its interrupts and doorbells, starts its worker and
/// talks to a vhost-user backend. A worker it starts inherits this list before
/// narrowing to its own, so the workers' calls are here too.
const VCPU_IOCTLS: &[u64] = &[
    KVM_RUN,
    KVM_GET_REGS,
    KVM_GET_SREGS,
    KVM_IOEVENTFD,
    KVM_IRQFD,
    KVM_SET_GSI_ROUTING,
    KVM_IRQ_LINE,
    KVM_GET_MSRS,
    KVM_GET_MP_STATE,
    KVM_GET_XSAVE,
    KVM_GET_XCRS,
    KVM_GET_DEBUGREGS,
    KVM_GET_LAPIC,
    KVM_GET_VCPU_EVENTS,
];

/// The main thread once the machine runs: the power button (an IRQ line), kicking
/// vCPUs out of KVM_RUN, stopping devices (a vhost-user backend's queues, doorbells),
/// the run's memory figures, removing its sockets, and a save: the VM's in-kernel
/// devices read, a snapshot's device state (virtiofsd's through a pipe, waited on
/// with poll), the state written into the file the client sent (descriptors from the
/// client are closed here too), and the workers started again after a live one (each
/// worker's stop eventfd).
const MAIN: &[i64] = &[
    libc::SYS_eventfd2,
    libc::SYS_pipe2,
    libc::SYS_read,
    libc::SYS_poll,
    libc::SYS_ppoll,
    libc::SYS_tgkill,
    libc::SYS_mincore,
    libc::SYS_getrusage,
    libc::SYS_unlink,
    libc::SYS_unlinkat,
    libc::SYS_pwrite64,
    libc::SYS_ftruncate,
];
const MAIN_IOCTLS: &[u64] = &[
    KVM_IRQ_LINE,
    KVM_IOEVENTFD,
    KVM_GET_IRQCHIP,
    KVM_GET_PIT2,
    KVM_GET_CLOCK,
];

/// The allow-list of `kind`.
pub fn rules(kind: ThreadKind) -> Rules {
    let mut rules = Rules::new();
    let mut allow = |calls: &[i64]| {
        for &call in calls {
            rules.insert(call, Vec::new());
        }
    };
    allow(COMMON);
    let ioctls: &[u64] = match kind {
        ThreadKind::Vcpu => {
            allow(SPAWNS);
            allow(&[libc::SYS_eventfd2]);
            allow(VHOST_USER);
            allow(EPOLL);
            allow(BLOCK);
            allow(NET);
            allow(SERIAL_LOG);
            VCPU_IOCTLS
        }
        ThreadKind::VirtioBlk => {
            allow(EPOLL);
            allow(BLOCK);
            &[]
        }
        ThreadKind::VirtioNet => {
            allow(EPOLL);
            allow(NET);
            &[]
        }
        ThreadKind::VirtioRng => {
            allow(EPOLL);
            &[]
        }
        ThreadKind::VhostUserRelay => {
            allow(EPOLL);
            &[]
        }
        ThreadKind::Console | ThreadKind::Control => {
            allow(SPAWNS);
            allow(SERVER);
            &[]
        }
        ThreadKind::Main => {
            allow(SPAWNS);
            allow(VHOST_USER);
            allow(MAIN);
            // After a live save it starts the device workers again, and a thread
            // keeps its parent's list under its own: the workers' calls are here too.
            allow(EPOLL);
            allow(BLOCK);
            allow(NET);
            MAIN_IOCTLS
        }
    };
    if matches!(
        kind,
        ThreadKind::Vcpu | ThreadKind::Console | ThreadKind::Control | ThreadKind::Main
    ) {
        let thread = SeccompCondition::new(0, Len::Qword, Op::Eq, THREAD_CLONE_FLAGS)
            .expect("argument index < 6");
        rules.insert(
            libc::SYS_clone,
            vec![SeccompRule::new(vec![thread]).expect("one condition")],
        );
        // A new thread names itself (PR_SET_NAME) and installs its own, narrower list
        // (PR_SET_NO_NEW_PRIVS, then seccomp) under its parent's list. Another
        // filter can only take rights away.
        rules.insert(
            libc::SYS_prctl,
            vec![
                arg_is(0, libc::PR_SET_NAME as u64),
                arg_is(0, libc::PR_SET_NO_NEW_PRIVS as u64),
            ],
        );
        rules.insert(
            libc::SYS_seccomp,
            vec![arg_is(0, u64::from(libc::SECCOMP_SET_MODE_FILTER))],
        );
    }
    if !ioctls.is_empty() {
        let each = ioctls.iter().map(|&request| arg_is(1, request)).collect();
        rules.insert(libc::SYS_ioctl, each);
    }
    rules
}

/// The calls the process-wide filter [`super::prepare`] installs answers with ENOSYS.
pub fn no_clone3() -> Rules {
    Rules::from([(libc::SYS_clone3, Vec::new())])
}

/// A rule that holds when argument `index` equals `value` (as a 32-bit value: ioctl
/// request numbers and prctl options are ints).
fn arg_is(index: u8, value: u64) -> SeccompRule {
    let condition =
        SeccompCondition::new(index, Len::Dword, Op::Eq, value).expect("argument index < 6");
    SeccompRule::new(vec![condition]).expect("one condition")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kvm_ioctl_numbers_match_linux() {
        // The values strace and linux/kvm.h give on x86_64.
        assert_eq!(KVM_RUN, 0xae80);
        assert_eq!(KVM_GET_REGS, 0x8090_ae81);
        assert_eq!(KVM_GET_SREGS, 0x8138_ae83);
        assert_eq!(KVM_IRQ_LINE, 0x4008_ae61);
        assert_eq!(KVM_SET_GSI_ROUTING, 0x4008_ae6a);
        assert_eq!(KVM_IRQFD, 0x4020_ae76);
        assert_eq!(KVM_IOEVENTFD, 0x4040_ae79);
        assert_eq!(KVM_GET_MSRS, 0xc008_ae88);
        assert_eq!(KVM_GET_MP_STATE, 0x8004_ae98);
        assert_eq!(KVM_GET_XSAVE, 0x9000_aea4);
        assert_eq!(KVM_GET_XCRS, 0x8188_aea6);
        assert_eq!(KVM_GET_DEBUGREGS, 0x8080_aea1);
        assert_eq!(KVM_GET_LAPIC, 0x8400_ae8e);
        assert_eq!(KVM_GET_VCPU_EVENTS, 0x8040_ae9f);
        assert_eq!(KVM_GET_IRQCHIP, 0xc208_ae62);
        assert_eq!(KVM_GET_PIT2, 0x8070_ae9f);
        assert_eq!(KVM_GET_CLOCK, 0x8030_ae7c);
    }

    #[test]
    fn workers_cannot_open_files_make_sockets_or_touch_kvm() {
        for kind in [
            ThreadKind::VirtioBlk,
            ThreadKind::VirtioNet,
            ThreadKind::VirtioRng,
            ThreadKind::VhostUserRelay,
        ] {
            let rules = rules(kind);
            for call in [
                libc::SYS_openat,
                libc::SYS_socket,
                libc::SYS_ioctl,
                libc::SYS_execve,
                libc::SYS_clone3,
            ] {
                assert!(!rules.contains_key(&call), "{kind:?} allows {call}");
            }
        }
        // No thread opens files, makes sockets, execs or forks once the guest runs.
        for kind in ThreadKind::ALL {
            let rules = rules(kind);
            for call in [
                libc::SYS_openat,
                libc::SYS_socket,
                libc::SYS_execve,
                libc::SYS_fork,
                libc::SYS_vfork,
            ] {
                assert!(!rules.contains_key(&call), "{kind:?} allows {call}");
            }
            if let Some(clone) = rules.get(&libc::SYS_clone) {
                assert_eq!(clone.len(), 1, "{kind:?}: clone only for threads");
            }
        }
        assert_eq!(THREAD_CLONE_FLAGS, 0x3d0f00);
    }
}
