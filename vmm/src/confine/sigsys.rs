//! The report of a forbidden syscall. Filters answer one with SECCOMP_RET_TRAP: the
//! kernel sends the thread SIGSYS, and this handler writes one line to stderr (the
//! machine's vm.log) naming the syscall and the thread, then ends the process with
//! [`EXIT_STATUS`]. Only async-signal-safe steps: a raw write(2) of a line formatted
//! on the stack, then _exit(2) — both allowed in every thread's list.

use std::cell::Cell;

/// 128 + SIGSYS, as a shell reports a process SIGSYS killed.
pub const EXIT_STATUS: i32 = 128 + libc::SIGSYS;

thread_local! {
    /// The thread's kind, set with its filter: the handler cannot ask the kernel
    /// (prctl is not in every list), and reading a const-initialized thread-local is
    /// a plain load.
    static THREAD: Cell<&'static str> = const { Cell::new("unknown") };
}

pub(super) fn set_thread_name(name: &'static str) {
    THREAD.with(|t| t.set(name));
}

/// Installs the handler for the whole process (a signal disposition is per process).
pub(super) fn install_handler() -> std::io::Result<()> {
    // SAFETY: a zeroed sigaction is valid; the handler has the SA_SIGINFO signature
    // and only makes async-signal-safe calls.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(libc::SIGSYS, &action, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

extern "C" fn handler(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo; for SIGSYS from seccomp its union
    // holds (call address, syscall number, arch), the number 24 bytes in on x86_64.
    let nr = unsafe { *info.cast::<u8>().add(24).cast::<i32>() };
    let thread = THREAD.with(Cell::get);
    let mut line = Line::default();
    line.push(b"vmm: seccomp: thread ");
    line.push(thread.as_bytes());
    line.push(b" made syscall ");
    line.push_number(nr.into());
    if let Some(name) = syscall_name(nr.into()) {
        line.push(b" (");
        line.push(name.as_bytes());
        line.push(b")");
    }
    line.push(b", which its allow-list forbids; stopping the VMM\n");
    // SAFETY: write(2) and _exit(2) are async-signal-safe; the buffer is on the stack.
    unsafe {
        libc::write(2, line.buf.as_ptr().cast(), line.len);
        libc::_exit(EXIT_STATUS);
    }
}

/// A fixed buffer: no allocation in a signal handler.
struct Line {
    buf: [u8; 256],
    len: usize,
}

impl Default for Line {
    fn default() -> Line {
        Line {
            buf: [0; 256],
            len: 0,
        }
    }
}

impl Line {
    fn push(&mut self, bytes: &[u8]) {
        let n = bytes.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
    }

    fn push_number(&mut self, n: i64) {
        if n < 0 {
            self.push(b"-");
        }
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        let mut rest = n.unsigned_abs();
        loop {
            i -= 1;
            digits[i] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        self.push(&digits[i..]);
    }
}

/// Names of the syscalls a confused or hijacked VMM thread would most likely make.
pub fn syscall_name(nr: i64) -> Option<&'static str> {
    Some(match nr {
        libc::SYS_read => "read",
        libc::SYS_write => "write",
        libc::SYS_open => "open",
        libc::SYS_openat => "openat",
        libc::SYS_openat2 => "openat2",
        libc::SYS_close => "close",
        libc::SYS_stat => "stat",
        libc::SYS_fstat => "fstat",
        libc::SYS_newfstatat => "newfstatat",
        libc::SYS_statx => "statx",
        libc::SYS_lseek => "lseek",
        libc::SYS_mmap => "mmap",
        libc::SYS_mprotect => "mprotect",
        libc::SYS_ioctl => "ioctl",
        libc::SYS_pread64 => "pread64",
        libc::SYS_pwrite64 => "pwrite64",
        libc::SYS_readv => "readv",
        libc::SYS_writev => "writev",
        libc::SYS_access => "access",
        libc::SYS_pipe => "pipe",
        libc::SYS_pipe2 => "pipe2",
        libc::SYS_dup => "dup",
        libc::SYS_dup2 => "dup2",
        libc::SYS_dup3 => "dup3",
        libc::SYS_socket => "socket",
        libc::SYS_socketpair => "socketpair",
        libc::SYS_connect => "connect",
        libc::SYS_accept => "accept",
        libc::SYS_accept4 => "accept4",
        libc::SYS_bind => "bind",
        libc::SYS_listen => "listen",
        libc::SYS_sendto => "sendto",
        libc::SYS_recvfrom => "recvfrom",
        libc::SYS_sendmsg => "sendmsg",
        libc::SYS_recvmsg => "recvmsg",
        libc::SYS_shutdown => "shutdown",
        libc::SYS_setsockopt => "setsockopt",
        libc::SYS_clone => "clone",
        libc::SYS_clone3 => "clone3",
        libc::SYS_fork => "fork",
        libc::SYS_vfork => "vfork",
        libc::SYS_execve => "execve",
        libc::SYS_execveat => "execveat",
        libc::SYS_kill => "kill",
        libc::SYS_tgkill => "tgkill",
        libc::SYS_ptrace => "ptrace",
        libc::SYS_prctl => "prctl",
        libc::SYS_seccomp => "seccomp",
        libc::SYS_mount => "mount",
        libc::SYS_umount2 => "umount2",
        libc::SYS_chroot => "chroot",
        libc::SYS_pivot_root => "pivot_root",
        libc::SYS_unshare => "unshare",
        libc::SYS_setns => "setns",
        libc::SYS_setuid => "setuid",
        libc::SYS_setgid => "setgid",
        libc::SYS_setresuid => "setresuid",
        libc::SYS_setresgid => "setresgid",
        libc::SYS_setgroups => "setgroups",
        libc::SYS_capset => "capset",
        libc::SYS_chmod => "chmod",
        libc::SYS_fchmod => "fchmod",
        libc::SYS_chown => "chown",
        libc::SYS_fchown => "fchown",
        libc::SYS_unlink => "unlink",
        libc::SYS_unlinkat => "unlinkat",
        libc::SYS_rename => "rename",
        libc::SYS_renameat2 => "renameat2",
        libc::SYS_mkdir => "mkdir",
        libc::SYS_mkdirat => "mkdirat",
        libc::SYS_symlink => "symlink",
        libc::SYS_link => "link",
        libc::SYS_truncate => "truncate",
        libc::SYS_ftruncate => "ftruncate",
        libc::SYS_memfd_create => "memfd_create",
        libc::SYS_eventfd2 => "eventfd2",
        libc::SYS_getdents64 => "getdents64",
        libc::SYS_bpf => "bpf",
        libc::SYS_perf_event_open => "perf_event_open",
        libc::SYS_process_vm_readv => "process_vm_readv",
        libc::SYS_process_vm_writev => "process_vm_writev",
        libc::SYS_init_module => "init_module",
        libc::SYS_finit_module => "finit_module",
        libc::SYS_reboot => "reboot",
        libc::SYS_io_uring_setup => "io_uring_setup",
        libc::SYS_userfaultfd => "userfaultfd",
        libc::SYS_wait4 => "wait4",
        libc::SYS_uname => "uname",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_written_in_decimal() {
        let mut line = Line::default();
        line.push_number(41);
        line.push(b" ");
        line.push_number(0);
        line.push(b" ");
        line.push_number(-7);
        assert_eq!(&line.buf[..line.len], b"41 0 -7");
        assert_eq!(syscall_name(libc::SYS_socket), Some("socket"));
        assert_eq!(syscall_name(100_000), None);
    }

    #[test]
    fn a_long_line_is_cut_not_overflowed() {
        let mut line = Line::default();
        for _ in 0..100 {
            line.push(b"abcdef");
        }
        assert_eq!(line.len, 256);
    }
}
