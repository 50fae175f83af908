//! The command line, in one place.

use crate::vmm_flags;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "hvbox", version, about = "Declarative virtual machines with direct kernel boot", long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Act on the project in DIR (or DIR's nearest parent with an hvbox.yaml), as
    /// if started there; relative paths in other arguments start there too.
    #[arg(short = 'C', long = "project", value_name = "DIR", global = true)]
    pub project: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented starter hvbox.yaml in the current folder, or a template's
    /// project (`--template NAME`).
    Init {
        /// Box the spec uses (default: debian-12, or the template's own).
        #[arg(long = "box", value_name = "NAME")]
        box_name: Option<String>,
        /// Start from a template: one of hvbox's examples, its hvbox.yaml and the
        /// files that uses.
        #[arg(long, value_name = "NAME", value_parser = clap::builder::PossibleValuesParser::new(crate::templates::possible_values()))]
        template: Option<String>,
        /// List the templates, one line each, and write nothing.
        #[arg(long, conflicts_with_all = ["template", "box_name", "force"])]
        list_templates: bool,
        /// Overwrite an existing hvbox.yaml (and a template's other files).
        #[arg(long)]
        force: bool,
    },
    /// Check hvbox.yaml and report every problem with file:line:column.
    Validate {
        /// The spec to check (default: hvbox.yaml here or in the nearest parent).
        file: Option<PathBuf>,
    },
    /// Print the JSON Schema (draft 2020-12) of hvbox.yaml, for editors and other
    /// tools; `hvbox init`'s spec points editors to a copy in .hvbox/.
    Schema,
    /// Create and boot the machines (all, or those named), or start them again;
    /// returns once ssh answers.
    ///
    /// The spec's provision steps run once a machine answers ssh, until one run
    /// has completed them all.
    Up(UpArgs),
    /// Run the spec's provision steps again on running machines.
    Provision {
        /// Machines to provision (default: all, in the spec's order).
        #[arg(value_name = "NAME")]
        names: Vec<String>,
    },
    /// Open a shell in a machine, or run a command: `hvbox ssh [NAME] -- uname -a`.
    ///
    /// NAME may be left out when the project has one machine. Words after `--` that
    /// start with `-`, before the command, are ssh's options: `hvbox ssh -- -L
    /// 8080:localhost:80 -A`. A machine's sessions share one ssh connection.
    Ssh {
        /// The machine (required when the project has several).
        name: Option<String>,
        /// ssh options, then the command to run instead of a login shell.
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// Copy files and folders (recursively) between the host and a machine:
    /// `hvbox copy app.conf web:/tmp/`, `hvbox copy :logs ./logs`.
    ///
    /// MACHINE:PATH is a path in that machine, :PATH in the project's only machine;
    /// relative guest paths start in the login user's home.
    Copy {
        /// Sources, then the destination.
        #[arg(required = true, num_args = 2.., value_name = "[MACHINE:]PATH")]
        paths: Vec<String>,
    },
    /// Attach to a machine's serial console; Ctrl-] detaches.
    Console {
        /// The machine (required when the project has several).
        name: Option<String>,
    },
    /// Print a machine's serial console log (kept across boots).
    Logs {
        /// The machine (required when the project has several).
        name: Option<String>,
        /// Keep printing what the guest writes, across restarts, until Ctrl-C.
        #[arg(short, long)]
        follow: bool,
    },
    /// List every machine of every project of this user: project, state, engine,
    /// box, ssh port and forwarded ports.
    ///
    /// Projects are those `hvbox up` ran in; those whose folder is gone are forgotten,
    /// with a note.
    #[command(after_long_help = crate::json_fields::LIST)]
    List {
        #[arg(long)]
        json: bool,
    },
    /// List a machine's forwarded ports: those hvbox.yaml declares, and those
    /// forwarded automatically because the guest listens on them.
    Port {
        /// The machine (required when the project has several).
        name: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show whether the machines are created and running.
    #[command(after_long_help = crate::json_fields::STATUS)]
    Status {
        /// Machines to show (default: all, and orphaned machine folders).
        #[arg(value_name = "NAME")]
        names: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Power machines off (ACPI), hard-stopping them after a timeout; a suspended
    /// machine's saved state is discarded.
    Halt {
        /// Machines to halt (default: all, and orphaned machine folders).
        #[arg(value_name = "NAME")]
        names: Vec<String>,
        /// Seconds to wait for the guest to power off before a hard stop.
        #[arg(long, default_value_t = 90)]
        timeout: u64,
    },
    /// Save running machines' whole state (memory, devices) into their folders and
    /// stop them; `up` or `resume` continues them where they were.
    Suspend {
        /// Machines to suspend (default: all).
        #[arg(value_name = "NAME")]
        names: Vec<String>,
    },
    /// Continue suspended machines (as `up` does); returns once ssh answers.
    Resume(UpArgs),
    /// Keep a machine's disk and state under a name, and go back to it.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Stop machines and delete their state (disk, keys, logs, snapshots); the box
    /// cache stays.
    ///
    /// On a terminal it asks first, naming the machines; without a terminal it
    /// refuses unless given --force.
    Destroy {
        /// Machines to destroy (default: all, and orphaned machine folders).
        #[arg(value_name = "NAME")]
        names: Vec<String>,
        /// Do not ask: destroy at once (needed without a terminal).
        #[arg(short, long)]
        force: bool,
    },
    /// Halt machines that run, then `up` them again with the boot files read anew.
    Reload(UpArgs),
    /// Print Host blocks for ~/.ssh/config (scp, rsync, editors' remote SSH), or
    /// with --include the one line that reads every machine's own ssh_config.
    ///
    /// A block is valid while its machine runs: the port changes at every boot.
    /// Each boot rewrites `.hvbox/machines/NAME/ssh_config`, which the Include line
    /// reaches, so `ssh hvbox-PROJECT[-NAME]` keeps working across boots.
    SshConfig {
        /// Machines to print (default: every running one).
        #[arg(value_name = "NAME")]
        names: Vec<String>,
        /// Print the `Include` line for the top of ~/.ssh/config instead.
        #[arg(long, conflicts_with = "names")]
        include: bool,
    },
    /// Upgrade a guest's kernel and boot it; back to the previous one if it fails.
    ///
    /// Installs the kernel with the guest's package manager (apt or dnf), powers the
    /// guest off, boots the kernel its disk now defaults to and checks `uname -r`. If
    /// the guest does not answer ssh in time, the previous kernel is booted again and
    /// pinned.
    UpgradeKernel(UpgradeKernelArgs),
    /// List the kernels a machine has booted, oldest first.
    #[command(after_long_help = crate::json_fields::KERNELS)]
    Kernels {
        /// The machine (required when the project has several).
        name: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Manage boxes.
    #[command(subcommand, name = "box")]
    Box(BoxCommand),
    /// Write the machines as objects for another platform.
    #[command(subcommand)]
    Export(ExportCommand),
    /// Low-level access to hvbox's embedded VMM.
    #[command(subcommand)]
    Vmm(VmmCommand),
    /// Print a shell completion script: `hvbox completions bash > /etc/bash_completion.d/hvbox`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print a man page (roff): `hvbox man | man -l -`, `hvbox man box list`, `hvbox
    /// man hvbox.yaml` (the spec and the environment); or write them all with --dir.
    Man {
        /// The command whose page to print (default: hvbox itself), or `hvbox.yaml`.
        #[arg(value_name = "COMMAND")]
        page: Vec<String>,
        /// Write every page into DIR (hvbox.1, hvbox-COMMAND.1, hvbox.yaml.5).
        #[arg(long, value_name = "DIR", conflicts_with = "page")]
        dir: Option<PathBuf>,
    },
    /// The names a shell may complete after WORDS (used by the completion scripts).
    #[command(hide = true, name = "complete-names")]
    CompleteNames {
        #[arg(allow_hyphen_values = true, trailing_var_arg = true)]
        words: Vec<String>,
    },
    /// Runs a machine's engine and network processes (started by `hvbox up`).
    #[command(hide = true)]
    Supervise { machine_dir: PathBuf },
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Machines, in this order (default: all, in the spec's order).
    #[arg(value_name = "NAME")]
    pub names: Vec<String>,
    /// Seconds to wait for ssh to answer.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
    /// No download progress bars.
    #[arg(long)]
    pub quiet: bool,
    /// Run the provision steps even if they completed before.
    #[arg(long, conflicts_with = "no_provision")]
    pub provision: bool,
    /// Do not run the provision steps, even if they never completed.
    #[arg(long)]
    pub no_provision: bool,
    /// Boot a suspended machine fresh, discarding its saved state.
    #[arg(long)]
    pub cold: bool,
    /// How many machines to bring up at once (default: one per CPU core; 1 brings
    /// them up one after another).
    #[arg(long, short = 'j', value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: Option<u16>,
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Save a stopped or suspended machine's disk, seed and state (with `--live`, a
    /// running machine's, paused while its state and disk are copied).
    Save {
        name: String,
        /// The machine (required when the project has several).
        #[arg(long)]
        machine: Option<String>,
        /// Save a running machine with its running state, and leave it running.
        #[arg(long)]
        live: bool,
    },
    /// Put a snapshot back: the machine is then stopped, or suspended as it was.
    Restore {
        name: String,
        #[arg(long)]
        machine: Option<String>,
        /// Stop a running machine at once to restore over it.
        #[arg(long)]
        force: bool,
    },
    /// List a machine's snapshots with the space each takes on disk.
    #[command(after_long_help = crate::json_fields::SNAPSHOT_LIST)]
    List {
        #[arg(long)]
        machine: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Delete a snapshot.
    Delete {
        name: String,
        #[arg(long)]
        machine: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct UpgradeKernelArgs {
    /// The machine (required when the project has several).
    pub name: Option<String>,
    /// Install this kernel package file (.deb or .rpm) instead of upgrading from the
    /// guest's repositories.
    #[arg(long, conflicts_with_all = ["no_install", "rollback"])]
    pub package: Option<PathBuf>,
    /// Install nothing: boot the kernel the disk defaults to (one you installed).
    #[arg(long, conflicts_with = "rollback")]
    pub no_install: bool,
    /// Boot the kernel used before the current one again, and stay on it.
    #[arg(long)]
    pub rollback: bool,
    /// Seconds the new kernel gets to reach ssh before hvbox rolls back.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
}

#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// KubeVirt objects (VirtualMachine, DataVolume, Secret, Service) for
    /// `kubectl apply -f`; prints how to reach each machine with virtctl.
    ///
    /// The root disk is imported from the box's URL and checked against its pinned
    /// digest (a CDI DataVolume), or with --registry comes from a containerDisk image
    /// and the kernel from a kernel image, both written by `hvbox box export`.
    Kubevirt(ExportKubevirtArgs),
}

#[derive(Debug, Args)]
pub struct ExportKubevirtArgs {
    /// Machines to export (default: all, in the spec's order).
    #[arg(value_name = "NAME")]
    pub names: Vec<String>,
    /// A folder to write one file per object into, or `-` for stdout.
    #[arg(short, long, value_name = "DIR|-", default_value = "-")]
    pub output: PathBuf,
    /// The namespace of the objects (default: kubectl's current one).
    #[arg(short, long, value_name = "NS")]
    pub namespace: Option<String>,
    /// Image name prefix (registry.example.com/team): the root disk becomes a
    /// containerDisk and the kernel boots from a kernel image, both under it.
    #[arg(long, value_name = "PREFIX")]
    pub registry: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum BoxCommand {
    /// Build a Debian box from Debian's packages with mmdebstrap (as a normal user in a
    /// user namespace, or under sudo for the user who ran it).
    Build(BoxBuildArgs),
    /// List the boxes in the cache: name, version, digest, size and the projects
    /// that use each.
    #[command(after_long_help = crate::json_fields::BOX_LIST)]
    List {
        #[arg(long)]
        json: bool,
    },
    /// List the boxes a spec can name, with the versions known here, without the
    /// network: catalog files, boxes built here, the built-in boxes.
    Search {
        /// Show only boxes whose name or description contains this (any case).
        term: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Download a box into the cache: a catalog name, or a URL with its digest.
    Add(BoxAddArgs),
    /// Delete boxes from the cache (machines keep their own disks).
    Remove(BoxRemoveArgs),
    /// Delete the boxes no project uses, and abandoned partial downloads.
    Prune {
        /// Say what would be deleted, delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Write a cached box as OCI image archives (for `skopeo copy oci-archive:FILE
    /// docker://…`): its disk as a KubeVirt containerDisk, its kernel and initrd
    /// for KubeVirt's kernelBoot. The same box gives the same image digest.
    Export(BoxExportArgs),
    /// Resolve this project's boxes again (newest versions the spec allows),
    /// download them and rewrite hvbox.lock.
    Update {
        /// No download progress bars.
        #[arg(long)]
        quiet: bool,
    },
}

#[derive(Debug, Args)]
pub struct BoxAddArgs {
    /// A catalog box name (`debian-12`) or an image URL.
    pub source: String,
    /// The catalog version (build) to fetch; with a URL, the version to record.
    #[arg(long)]
    pub version: Option<String>,
    /// The digest the download must have (`sha256:…` or `sha512:…`).
    #[arg(long)]
    pub digest: Option<hvbox_boxes::Digest>,
    /// With a URL: a SHA256SUMS/SHA512SUMS file that lists it, instead of --digest.
    #[arg(long)]
    pub checksums: Option<String>,
    /// With a URL: the name to list it under (default: the file name).
    #[arg(long)]
    pub name: Option<String>,
    /// With a URL: the format it must be (default: what its bytes say).
    #[arg(long)]
    pub format: Option<hvbox_boxes::Format>,
    /// No download progress bars.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("images").required(true).multiple(true).args(["oci", "kernel_oci"]))]
pub struct BoxExportArgs {
    /// A box name, NAME@VERSION, or a digest (or its start, as `box list` shows it).
    pub what: String,
    /// Write the disk as a containerDisk image (/disk/disk.img, owned by uid 107).
    #[arg(long, value_name = "FILE.tar")]
    pub oci: Option<PathBuf>,
    /// Write the kernel and initrd the disk boots by default, as hvbox boots them
    /// (/boot/vmlinuz, /boot/initrd.img).
    #[arg(long, value_name = "FILE.tar")]
    pub kernel_oci: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BoxRemoveArgs {
    /// A box name, NAME@VERSION, or a digest (or its start, as `box list` shows it).
    pub what: String,
    /// Remove it even if a project uses it.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct BoxBuildArgs {
    /// Name the catalog knows the box by (`box: NAME` in a spec).
    pub name: String,
    /// Debian suite.
    #[arg(long, default_value = "bookworm")]
    pub suite: String,
    /// Output folder (default: hvbox's local boxes folder).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// apt sources file to build from (default: the host's entries for the suite).
    #[arg(long)]
    pub sources: Option<PathBuf>,
    /// Size of the box disk.
    #[arg(long, default_value = "2G")]
    pub size: String,
    /// More packages to install (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub packages: Vec<String>,
    /// Rebuild even when a box of the same recipe exists.
    #[arg(long)]
    pub force: bool,
    /// Boot as Debian's genericcloud images do (ifupdown with dhclient, cloud-init on
    /// every boot) instead of hvbox's faster setup: for comparisons, as in
    /// scripts/bench-boot.
    #[arg(long)]
    pub stock: bool,
}

#[derive(Debug, Subcommand)]
pub enum VmmCommand {
    /// Boot one VM in the foreground on hvbox's embedded VMM.
    ///
    /// The machine comes from --config FILE (JSON, as `hvbox up` writes it), or from
    /// the flags --kernel to --serial-log; not both.
    ///
    /// Exit status: 0 the guest powered off, 3 it rebooted, 4 it crashed (triple
    /// fault), 5 the --timeout passed, 6 the host stopped it, 1 a host or KVM error,
    /// 2 bad arguments.
    Run(VmmRunArgs),
}

/// The flags that describe the machine, which `--config` replaces.
const VMM_MACHINE_FLAGS: [&str; 11] = [
    "kernel",
    "initrd",
    "cmdline",
    "cpus",
    "memory",
    "disks",
    "nets",
    "macs",
    "filesystems",
    "nested_virtualization",
    "serial_log",
];

#[derive(Debug, Args)]
pub struct VmmRunArgs {
    /// The machine as JSON: the file `hvbox up` writes to .hvbox/machines/NAME/vm.json
    /// (the README lists its fields). Takes the place of the machine's flags.
    #[arg(long, value_name = "FILE", value_parser = vmm_flags::config_file,
          conflicts_with_all = VMM_MACHINE_FLAGS)]
    pub config: Option<Box<hvbox_vmm::MachineConfig>>,
    /// Linux bzImage, or an ELF (vmlinux) with a PVH entry note.
    #[arg(long, required_unless_present = "config")]
    pub kernel: Option<PathBuf>,
    #[arg(long)]
    pub initrd: Option<PathBuf>,
    #[arg(long, default_value = "console=ttyS0")]
    pub cmdline: String,
    /// vCPUs, 1 to 255.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=255))]
    pub cpus: u32,
    /// Guest RAM with its unit (`512M`, `1536K`), whole 4 KiB pages.
    #[arg(long, default_value = "512M", value_parser = vmm_flags::memory)]
    pub memory: u64,
    /// A disk image, `PATH` or `PATH,ro` (repeatable).
    #[arg(long = "disk", value_name = "PATH[,ro]", value_parser = vmm_flags::disk)]
    pub disks: Vec<hvbox_vmm::DiskConfig>,
    /// A virtio NIC (repeatable): `passt:SOCKET`, the UNIX socket of a running
    /// `passt --socket SOCKET`, or `tap:NAME`, an existing TAP interface.
    #[arg(long = "net", value_name = "passt:SOCKET|tap:NAME", value_parser = vmm_flags::net)]
    pub nets: Vec<hvbox_vmm::NetBackend>,
    /// MAC address of the NIC from the `--net` in the same position (default: a
    /// random locally administered address).
    #[arg(long = "mac")]
    pub macs: Vec<hvbox_vmm::MacAddr>,
    /// A virtio-fs device (repeatable): the guest mounts it with
    /// `mount -t virtiofs TAG DIR`; SOCKET is a running virtiofsd's `--socket-path`.
    #[arg(long = "fs", value_name = "TAG=SOCKET", value_parser = vmm_flags::fs)]
    pub filesystems: Vec<hvbox_vmm::FsConfig>,
    /// Offer the guest the host's SVM/VMX (where KVM supports nesting).
    #[arg(long)]
    pub nested_virtualization: bool,
    /// Where the guest's serial console goes (default: standard output).
    #[arg(long)]
    pub serial_log: Option<PathBuf>,
    /// Stop the guest after this many seconds (exit status 5).
    #[arg(long)]
    pub timeout: Option<u64>,
    /// Hide CPU features (CMPXCHG16B, XSAVE, AVX) that KVM's instruction emulator
    /// cannot run; for hosts whose KVM emulates guests instead of running them on
    /// hardware virtualization.
    #[arg(long)]
    pub mask_unemulated_cpuid: bool,
    /// Print the run's peak memory, how much of it was guest RAM, and the vCPUs'
    /// exits to the VMM by reason (serial, PCI configuration, virtio registers, ...).
    #[arg(long)]
    pub stats: bool,
    /// Serve `status`, `stats`, `stop [SECS]` and `kill` requests on this UNIX socket.
    #[arg(long)]
    pub control_socket: Option<PathBuf>,
    /// Serve the serial console on this UNIX socket (as `hvbox console` uses it).
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Run the VMM's threads without their seccomp allow-lists. For debugging the VMM
    /// only: a guest that takes over a device then has every syscall of the user.
    #[arg(long)]
    pub no_seccomp: bool,
    /// Continue the machine saved in this state file (a control socket `save`)
    /// instead of booting it. The machine must be the one saved: same vCPUs, RAM,
    /// disks, NICs and shares, on the same CPU, with the same hvbox. A state that does
    /// not fit is refused (exit status 2, `hvbox: cannot resume: WHY`).
    #[arg(long, value_name = "FILE")]
    pub restore: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Command {
        Cli::try_parse_from([&["hvbox"], args].concat())
            .expect("arguments parse")
            .command
    }

    /// `ssh NAME -- CMD` and `ssh -- CMD`: everything after `--` is the command.
    #[test]
    fn ssh_takes_an_optional_name_before_the_command() {
        let ssh = |args: &[&str]| match parse(args) {
            Command::Ssh { name, command } => (name, command),
            other => panic!("{other:?}"),
        };
        assert_eq!(ssh(&["ssh"]), (None, vec![]));
        assert_eq!(ssh(&["ssh", "web"]), (Some("web".into()), vec![]));
        assert_eq!(
            ssh(&["ssh", "--", "uname", "-a"]),
            (None, vec!["uname".into(), "-a".into()])
        );
        assert_eq!(
            ssh(&["ssh", "web", "--", "cat", "/etc/hostname"]),
            (
                Some("web".into()),
                vec!["cat".into(), "/etc/hostname".into()]
            )
        );
        // A name that looks like the command is refused rather than run.
        assert!(Cli::try_parse_from(["hvbox", "ssh", "web", "uname"]).is_err());
        assert_eq!(ssh(&["ssh", "--", "web"]), (None, vec!["web".into()]));
    }

    #[test]
    fn commands_on_several_machines_take_names() {
        match parse(&["up", "web", "db", "--quiet"]) {
            Command::Up(args) => {
                assert_eq!(args.names, ["web", "db"]);
                assert!(args.quiet);
            }
            other => panic!("{other:?}"),
        }
        match parse(&["halt", "--timeout", "5", "db"]) {
            Command::Halt { names, timeout } => {
                assert_eq!((names, timeout), (vec!["db".into()], 5))
            }
            other => panic!("{other:?}"),
        }
        match parse(&["status", "--json"]) {
            Command::Status { names, json } => assert!(names.is_empty() && json),
            other => panic!("{other:?}"),
        }
        match parse(&["upgrade-kernel", "db", "--no-install"]) {
            Command::UpgradeKernel(args) => {
                assert_eq!(args.name.as_deref(), Some("db"));
                assert!(args.no_install);
            }
            other => panic!("{other:?}"),
        }
        // One machine at most where one is meant.
        assert!(Cli::try_parse_from(["hvbox", "logs", "web", "db"]).is_err());
    }
}
