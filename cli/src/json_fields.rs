//! What the listing commands' `--json` prints, field by field: shown after their
//! `--help` and in their man pages. cli/tests/generated.rs checks each output has
//! exactly the fields listed here.

/// One machine, as `status --json` and `list --json` print it.
macro_rules! machine_fields {
    () => {
        "  name         the machine's name in hvbox.yaml
  state        \"not created\", \"stopped\", \"suspended\" or \"running\"
  orphaned     true for a machine folder hvbox.yaml no longer names
  hostname     the guest's hostname (null before it is created)
  user         the login user (null before it is created)
  box          the box it was made from
  engine       \"builtin\" or \"qemu\" while it runs, else null
  ssh_port     the host port of its ssh on 127.0.0.1 while it runs, else null
  pid          the engine's process id while it runs, else null
  mounts       the shared folders while it runs ({host, guest}), else null
  lost_mounts  shared folders whose virtiofsd ended, while it runs
  paused       disks on which the guest's I/O is paused (a full host disk)
  forwards     declared port forwards: {address, host, guest, protocol}
  saved_state  a suspended machine's state: {engine, bytes, saved_unix}, else null"
    };
}

pub const STATUS: &str = concat!(
    "JSON fields (--json): an array, one object per machine:\n",
    machine_fields!()
);

pub const LIST: &str = concat!(
    "JSON fields (--json): an array, one object per machine:\n",
    "  project      the project's folder\n",
    machine_fields!()
);

pub const BOX_LIST: &str = "JSON fields (--json): an array, one object per cached box:
  name           the catalog name (null for a box added by URL)
  version        the box's version, if known
  digest         the digest of the disk as downloaded
  url            where it came from
  format         the downloaded format (raw, qcow2, tar, …, and compression)
  download_size  bytes downloaded
  size           bytes of the disk image
  on_disk        bytes the cache entry takes on disk
  kind           \"disk\", or \"file\" for a kernel or initrd
  path           the cached file
  used_by        the projects whose machines were made from it";

pub const KERNELS: &str = "JSON fields (--json): an object:
  pinned   the kernel release the machine is pinned to, or null
  kernels  the kernels booted, oldest first, each an object:
    version            the release (`uname -r`)
    kernel_sha256      the kernel file's SHA-256
    initrd_sha256      the initrd's SHA-256, or null
    cmdline            the command line it booted with
    guest_path         where it was found in the guest's disk
    first_booted_unix  when it first booted (seconds since 1970)
    last_booted_unix   when it last booted
    current            true for the kernel of the last boot";

pub const SNAPSHOT_LIST: &str = "JSON fields (--json): an array, one object per snapshot:
  name          the snapshot's name
  created_unix  when it was saved (seconds since 1970)
  with_state    true if it holds a running or suspended machine's state
  on_disk       bytes it takes on disk";
