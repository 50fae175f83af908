//! Confinement of the VMM process: a seccomp allow-list per kind of thread, built
//! before any guest code runs and installed by each thread as it starts; a report of
//! any forbidden syscall in the machine log ([`sigsys`]); landlock limits on the file
//! system ([`landlock`]); and, started as root, a drop to the machine owner's
//! uid/gid ([`privileges`]).
//!
//! The filters are per thread rather than one for the process (no TSYNC): a virtio
//! worker needs neither KVM nor new threads, a vCPU needs no socket server. A thread
//! inherits its parent's filter and adds its own, so it is held to both.

pub mod landlock;
pub mod privileges;
pub mod rules;
pub mod sigsys;

use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// The kinds of thread the VMM runs, each with its own allow-list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ThreadKind {
    Vcpu,
    VirtioBlk,
    VirtioNet,
    VirtioRng,
    /// Passes a vhost-user backend's interrupts to the guest.
    VhostUserRelay,
    /// The console socket's accept loop and its clients' input.
    Console,
    /// The control socket's accept loop and its clients.
    Control,
    /// The thread that built the machine, once it runs: waits for its end.
    Main,
}

impl ThreadKind {
    pub const ALL: [ThreadKind; 8] = [
        ThreadKind::Vcpu,
        ThreadKind::VirtioBlk,
        ThreadKind::VirtioNet,
        ThreadKind::VirtioRng,
        ThreadKind::VhostUserRelay,
        ThreadKind::Console,
        ThreadKind::Control,
        ThreadKind::Main,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ThreadKind::Vcpu => "vcpu",
            ThreadKind::VirtioBlk => "virtio-blk",
            ThreadKind::VirtioNet => "virtio-net",
            ThreadKind::VirtioRng => "virtio-rng",
            ThreadKind::VhostUserRelay => "vhost-user",
            ThreadKind::Console => "console",
            ThreadKind::Control => "control",
            ThreadKind::Main => "main",
        }
    }
}

/// How much of the process a run confines with seccomp.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Seccomp {
    /// Every thread the VMM starts (vCPUs, workers, socket servers) installs its
    /// list; the calling thread is left alone. For a VMM run inside another program,
    /// such as a test.
    #[default]
    VmmThreads,
    /// Those, and the calling thread too once it has started them: for a process that
    /// is nothing but the VMM (`hvbox vmm run`).
    WholeProcess,
    /// No filters: for debugging only (`hvbox vmm run --no-seccomp`).
    Off,
}

/// The compiled filters, one per kind. Set once, before the first vCPU starts; the
/// spawn sites look here, so a thread started outside a confined run (a device's unit
/// test) runs unfiltered.
static FILTERS: OnceLock<BTreeMap<ThreadKind, BpfProgram>> = OnceLock::new();

#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    #[error("building the {kind} thread's seccomp filter: {detail}")]
    Build { kind: &'static str, detail: String },
    #[error("installing the SIGSYS handler: {0}")]
    Handler(std::io::Error),
    #[error("installing the {kind} thread's seccomp filter: {detail}")]
    Install { kind: &'static str, detail: String },
}

/// Compiles every kind's filter and installs the SIGSYS report, once per process.
pub fn prepare() -> Result<(), ConfineError> {
    if FILTERS.get().is_some() {
        return Ok(());
    }
    limit_malloc_arenas();
    sigsys::install_handler().map_err(ConfineError::Handler)?;
    // On the calling thread, and so on every thread it starts from now on.
    let no_clone3 = SeccompFilter::new(
        rules::no_clone3(),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        TargetArch::x86_64,
    )
    .and_then(BpfProgram::try_from)
    .map_err(|e| ConfineError::Build {
        kind: "clone3",
        detail: e.to_string(),
    })?;
    seccompiler::apply_filter(&no_clone3).map_err(|e| ConfineError::Install {
        kind: "clone3",
        detail: e.to_string(),
    })?;
    let mut filters = BTreeMap::new();
    for kind in ThreadKind::ALL {
        filters.insert(kind, compile(kind)?);
    }
    let _ = FILTERS.set(filters);
    Ok(())
}

fn compile(kind: ThreadKind) -> Result<BpfProgram, ConfineError> {
    let build = |detail: String| ConfineError::Build {
        kind: kind.name(),
        detail,
    };
    let filter = SeccompFilter::new(
        rules::rules(kind),
        SeccompAction::Trap,
        SeccompAction::Allow,
        TargetArch::x86_64,
    )
    .map_err(|e| build(e.to_string()))?;
    filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| build(e.to_string()))
}

/// Installs `kind`'s filter on the calling thread, if this run confines its threads.
/// A thread that cannot be confined must not run guest-facing code unconfined: the
/// caller treats an error as fatal.
pub fn enter(kind: ThreadKind) -> Result<(), ConfineError> {
    let Some(filters) = FILTERS.get() else {
        return Ok(());
    };
    install(kind, &filters[&kind])
}

/// [`enter`] for a thread with nothing to give an error back to: a thread that
/// cannot install its filter ends the VMM rather than run unconfined.
pub fn enter_or_exit(kind: ThreadKind) {
    if let Err(e) = enter(kind) {
        eprintln!("vmm: {e}");
        std::process::exit(sigsys::EXIT_STATUS);
    }
}

/// Names the calling thread for the SIGSYS report, for a thread that inherits its
/// parent's list of the same kind rather than installing it again.
pub fn name_thread(kind: ThreadKind) {
    sigsys::set_thread_name(kind.name());
}

fn install(kind: ThreadKind, filter: &BpfProgram) -> Result<(), ConfineError> {
    sigsys::set_thread_name(kind.name());
    // Also sets PR_SET_NO_NEW_PRIVS on the thread, which an unprivileged filter needs.
    seccompiler::apply_filter(filter).map_err(|e| ConfineError::Install {
        kind: kind.name(),
        detail: e.to_string(),
    })
}

/// Compiles `kind`'s filter and installs it, with the SIGSYS report, on the calling
/// thread, whatever the run: for tests that show a filter at work in a child process.
pub fn install_now(kind: ThreadKind) -> Result<(), ConfineError> {
    limit_malloc_arenas();
    sigsys::install_handler().map_err(ConfineError::Handler)?;
    install(kind, &compile(kind)?)
}

/// Sets PR_SET_NO_NEW_PRIVS on the calling thread (and so on every thread it starts):
/// no exec can gain privileges, and seccomp filters may be installed without
/// CAP_SYS_ADMIN.
pub fn no_new_privs() -> std::io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    match unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// glibc sizes its malloc arenas from the online CPUs, read from
/// /sys/devices/system/cpu/online the first time a thread needs a new arena — under a
/// filter that forbids opening files. Fixing the limit up front (at glibc's own
/// default, 8 per CPU) means it never looks.
fn limit_malloc_arenas() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let arenas = i32::try_from(8 * cpus).unwrap_or(i32::MAX);
    // SAFETY: mallopt only sets a malloc parameter.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, arenas);
    }
}

/// How many syscalls `kind`'s list allows (for the README's figures and tests).
pub fn allowed_count(kind: ThreadKind) -> usize {
    rules::rules(kind).len()
}
