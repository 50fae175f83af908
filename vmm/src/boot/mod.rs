//! Kernel loaders: put a Linux kernel, its initrd, command line and boot information into
//! guest memory, for either of the two direct-boot protocols the VMM supports.
//!
//! - [`BootProtocol::LinuxBoot64`]: a bzImage, entered in 64-bit mode at the protected-mode
//!   kernel's 64-bit entry with `boot_params` (the zero page) in RSI.
//! - [`BootProtocol::Pvh`]: an uncompressed ELF vmlinux carrying a Xen PVH entry note, entered
//!   in 32-bit protected mode with `hvm_start_info` in EBX. [`extract_vmlinux`] turns a
//!   distribution bzImage into such a vmlinux; [`vmlinux_beside`] keeps it on disk.
//!
//! Every address comes from [`crate::layout`].

mod linux;
mod pvh;
mod vmlinux;
mod vmlinux_cache;

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryRegion};

use crate::layout::{EBDA_START, HIMEM_START, PAGE_SIZE, PCI_ECAM_SIZE, PCI_ECAM_START};
use crate::memory::GuestMemory;

pub use linux::bzimage_version;
pub use vmlinux::{extract_vmlinux, extract_vmlinux_within};
pub use vmlinux_cache::vmlinux_beside;

/// e820 type of usable RAM.
pub const E820_RAM: u32 = 1;
/// e820 type of reserved memory.
pub const E820_RESERVED: u32 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootProtocol {
    /// Linux x86 boot protocol, 64-bit entry (bzImage).
    LinuxBoot64,
    /// Xen PVH direct boot (ELF vmlinux with a PVH note).
    Pvh,
}

/// Where and how the boot vCPU starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootSetup {
    pub protocol: BootProtocol,
    /// 64-bit entry (LinuxBoot64: kernel's 64-bit entry = load address + 0x200) or the PVH
    /// 32-bit entry from the ELF note.
    pub entry: GuestAddress,
    /// LinuxBoot64: address of boot_params (goes in RSI). Pvh: address of hvm_start_info
    /// (goes in EBX).
    pub boot_info: GuestAddress,
}

#[derive(Debug, Clone, Copy)]
pub struct BootConfig<'a> {
    pub kernel: &'a Path,
    pub initrd: Option<&'a Path>,
    pub cmdline: &'a str,
    /// Guest address of the ACPI RSDP, reported to the kernel.
    pub rsdp: GuestAddress,
}

/// One memory map entry, as both boot protocols report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct E820Entry {
    pub addr: u64,
    pub size: u64,
    /// [`E820_RAM`] or [`E820_RESERVED`].
    pub kind: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a bzImage (no \"HdrS\" setup header) nor an ELF vmlinux", path.display())]
    UnknownFormat { path: PathBuf },
    #[error("{}: ELF kernel has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY); build it with CONFIG_PVH=y or boot the bzImage", path.display())]
    NoPvhEntry { path: PathBuf },
    #[error("{}: boot protocol {}.{:02} is too old, 2.12 or newer is required", path.display(), version >> 8, version & 0xff)]
    OldBootProtocol { path: PathBuf, version: u16 },
    #[error("{}: bzImage has no 64-bit entry point (XLF_KERNEL_64 not set in xloadflags)", path.display())]
    Not64Bit { path: PathBuf },
    #[error("{}: {source}", path.display())]
    Loader {
        path: PathBuf,
        source: linux_loader::loader::Error,
    },
    #[error("kernel command line is {len} bytes, the limit is {max}")]
    CmdlineTooLong { len: usize, max: usize },
    #[error("invalid kernel command line: {0}")]
    Cmdline(String),
    #[error("{}: initrd of {size} bytes does not fit in guest RAM between the kernel end {kernel_end:#x} and {limit:#x}", path.display())]
    InitrdTooLarge {
        path: PathBuf,
        size: u64,
        kernel_end: u64,
        limit: u64,
    },
    #[error("writing {what} to guest memory at {addr:#x} failed: {reason}")]
    GuestMemory {
        what: &'static str,
        addr: u64,
        reason: String,
    },
    #[error("invalid bzImage: {0}")]
    BadBzImage(String),
    #[error("bzImage payload is {0}-compressed, which hvbox cannot decompress")]
    UnsupportedCompression(&'static str),
    #[error("bzImage payload: {format} decompression failed: {reason}")]
    Decompress {
        format: &'static str,
        reason: String,
    },
    #[error("decompressed bzImage payload is not an ELF image")]
    NotElf,
}

/// Ranges the memory map reports reserved whether RAM backs them or not: the BIOS area
/// below 1 MiB (which holds the ACPI tables) and the PCI ECAM window.
const RESERVED: [(u64, u64); 2] = [
    (EBDA_START.0, HIMEM_START.0 - EBDA_START.0),
    (PCI_ECAM_START.0, PCI_ECAM_SIZE),
];

/// The guest memory map both protocols report (e820 types: 1 RAM, 2 reserved), sorted and
/// non-overlapping: every region of `mem` as RAM, less the [`RESERVED`] ranges, which are
/// listed as reserved. Where RAM lies (and so the 32-bit hole) is decided once, by
/// [`crate::memory::ram_regions`]; this only reports what is mapped.
pub fn memory_map(mem: &GuestMemory) -> Vec<E820Entry> {
    let mut map: Vec<E820Entry> = RESERVED
        .iter()
        .map(|&(addr, size)| E820Entry {
            addr,
            size,
            kind: E820_RESERVED,
        })
        .collect();
    for region in mem.iter() {
        let start = region.start_addr().0;
        let mut ram = vec![(start, start + region.len())];
        for &(addr, size) in &RESERVED {
            ram = ram
                .into_iter()
                .flat_map(|(from, to)| [(from, to.min(addr)), (from.max(addr + size), to)])
                .filter(|(from, to)| from < to)
                .collect();
        }
        map.extend(ram.into_iter().map(|(from, to)| E820Entry {
            addr: from,
            size: to - from,
            kind: E820_RAM,
        }));
    }
    map.sort_by_key(|e| e.addr);
    map
}

/// Detect the kernel format (ELF with a PVH note → Pvh; bzImage → LinuxBoot64) and load it,
/// the initrd, the command line and the boot info with the memory map into guest memory.
pub fn load_kernel(mem: &GuestMemory, cfg: &BootConfig) -> Result<BootSetup, BootError> {
    let io_err = |source| BootError::Io {
        path: cfg.kernel.to_owned(),
        source,
    };
    let mut file = File::open(cfg.kernel).map_err(io_err)?;
    // Enough for the ELF identification and the whole bzImage setup header.
    let mut head = Vec::with_capacity(0x1000);
    (&mut file)
        .take(0x1000)
        .read_to_end(&mut head)
        .map_err(io_err)?;

    if head.starts_with(vmlinux::ELF_MAGIC) {
        pvh::load(mem, cfg, file)
    } else if linux::has_setup_header(&head) {
        linux::load(mem, cfg, &head, file)
    } else {
        Err(BootError::UnknownFormat {
            path: cfg.kernel.to_owned(),
        })
    }
}

/// End of the RAM the initrd may use: the region the kernel is loaded in (from 1 MiB),
/// and below 4 GiB, since both protocols' 32-bit fields (ramdisk_image, and what a PVH
/// kernel maps early) need it there.
fn low_ram_end(mem: &GuestMemory) -> u64 {
    mem.find_region(HIMEM_START)
        .map_or(0, |r| r.start_addr().0 + r.len())
        .min(1 << 32)
}

/// Copy the initrd into guest memory, page-aligned and as high as possible below `limit`
/// but above `kernel_end`. Returns its address and size.
fn load_initrd(
    mem: &GuestMemory,
    path: &Path,
    kernel_end: u64,
    limit: u64,
) -> Result<(GuestAddress, u64), BootError> {
    let io_err = |source| BootError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = File::open(path).map_err(io_err)?;
    let size = file.metadata().map_err(io_err)?.len();
    let too_large = || BootError::InitrdTooLarge {
        path: path.to_owned(),
        size,
        kernel_end,
        limit,
    };
    let addr = limit.checked_sub(size).ok_or_else(too_large)? & !(PAGE_SIZE - 1);
    if addr < kernel_end {
        return Err(too_large());
    }
    mem.read_exact_volatile_from(GuestAddress(addr), &mut file, size as usize)
        .map_err(|e| match e {
            vm_memory::GuestMemoryError::IOError(source) => io_err(source),
            e => BootError::GuestMemory {
                what: "initrd",
                addr,
                reason: e.to_string(),
            },
        })?;
    Ok((GuestAddress(addr), size))
}

/// Validate the command line against `max_len` (bytes, without the NUL) and write it,
/// NUL-terminated, at `addr`.
fn write_cmdline(
    mem: &GuestMemory,
    addr: GuestAddress,
    cmdline: &str,
    max_len: usize,
) -> Result<(), BootError> {
    if cmdline.len() > max_len {
        return Err(BootError::CmdlineTooLong {
            len: cmdline.len(),
            max: max_len,
        });
    }
    let cl = linux_loader::cmdline::Cmdline::try_from(cmdline, max_len + 1)
        .map_err(|e| BootError::Cmdline(e.to_string()))?;
    linux_loader::loader::load_cmdline(mem, addr, &cl).map_err(|e| BootError::GuestMemory {
        what: "command line",
        addr: addr.0,
        reason: e.to_string(),
    })
}

fn write_bytes(
    mem: &GuestMemory,
    what: &'static str,
    addr: GuestAddress,
    bytes: &[u8],
) -> Result<(), BootError> {
    mem.write_slice(bytes, addr)
        .map_err(|e| BootError::GuestMemory {
            what,
            addr: addr.0,
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::create_guest_memory;
    use vm_memory::GuestMemoryMmap;

    fn map_of(ram: u64) -> Vec<E820Entry> {
        memory_map(&create_guest_memory(ram).unwrap())
    }

    fn check_sorted(map: &[E820Entry]) {
        for w in map.windows(2) {
            assert!(w[0].addr + w[0].size <= w[1].addr, "{map:#x?}");
        }
        assert!(map.iter().all(|e| e.size > 0), "{map:#x?}");
    }

    fn covers(map: &[E820Entry], addr: u64, size: u64, kind: u32) -> bool {
        map.iter()
            .any(|e| e.kind == kind && e.addr <= addr && addr + size <= e.addr + e.size)
    }

    #[test]
    fn memory_map_small_guest() {
        let map = map_of(256 << 20);
        check_sorted(&map);
        assert_eq!(
            map,
            vec![
                E820Entry {
                    addr: 0,
                    size: 0x9fc00,
                    kind: E820_RAM
                },
                E820Entry {
                    addr: 0x9fc00,
                    size: 0x100000 - 0x9fc00,
                    kind: E820_RESERVED
                },
                E820Entry {
                    addr: 0x100000,
                    size: (256 << 20) - 0x100000,
                    kind: E820_RAM
                },
                E820Entry {
                    addr: PCI_ECAM_START.0,
                    size: PCI_ECAM_SIZE,
                    kind: E820_RESERVED
                },
            ]
        );
        // The ACPI tables at 0xe0000 must not be handed out as RAM.
        assert!(covers(
            &map,
            crate::layout::ACPI_START.0,
            crate::layout::ACPI_MAX_SIZE,
            E820_RESERVED
        ));
    }

    #[test]
    fn memory_map_large_guest() {
        let ram = 5u64 << 30;
        let map = map_of(ram);
        check_sorted(&map);
        assert_eq!(map.len(), 5);
        assert!(covers(
            &map,
            EBDA_START.0,
            0x100000 - EBDA_START.0,
            E820_RESERVED
        ));
        assert!(covers(&map, PCI_ECAM_START.0, PCI_ECAM_SIZE, E820_RESERVED));
        assert!(covers(
            &map,
            HIMEM_START.0,
            0xc000_0000 - 0x100000,
            E820_RAM
        ));
        assert!(covers(&map, 1 << 32, 2 << 30, E820_RAM));
        // All the RAM is reported, minus the reserved BIOS area.
        let total: u64 = map
            .iter()
            .filter(|e| e.kind == E820_RAM)
            .map(|e| e.size)
            .sum();
        assert_eq!(total, ram - (0x100000 - EBDA_START.0));
        // Nothing of the hole other than ECAM is claimed.
        assert!(!map
            .iter()
            .any(|e| e.kind == E820_RAM && e.addr < 1 << 32 && e.addr + e.size > 0xc000_0000));
    }

    #[test]
    fn memory_map_exactly_3g() {
        let map = map_of(3 << 30);
        check_sorted(&map);
        assert_eq!(map.len(), 4);
        assert_eq!(map[2].addr + map[2].size, 0xc000_0000);
    }

    #[test]
    fn memory_map_ends_where_odd_sized_ram_ends() {
        let ram = (64 << 20) + (1536 << 10);
        let map = map_of(ram);
        check_sorted(&map);
        let last_ram = map.iter().rfind(|e| e.kind == E820_RAM).unwrap();
        assert_eq!(
            (last_ram.addr, last_ram.addr + last_ram.size),
            (0x10_0000, ram)
        );
    }

    /// The map reports the regions that are mapped, whatever they are, and never a
    /// reserved range as RAM even where a region covers it.
    #[test]
    fn memory_map_follows_the_regions() {
        let regions = [
            (GuestAddress(0), 0xe800_0000),
            (GuestAddress(1 << 32), 16 << 20),
        ];
        let mem: GuestMemory = GuestMemoryMmap::from_ranges(&regions).unwrap();
        let map = memory_map(&mem);
        check_sorted(&map);
        let entry = |addr: u64, end: u64, kind| E820Entry {
            addr,
            size: end - addr,
            kind,
        };
        let ecam_end = PCI_ECAM_START.0 + PCI_ECAM_SIZE;
        assert_eq!(
            map,
            vec![
                entry(0, EBDA_START.0, E820_RAM),
                entry(EBDA_START.0, HIMEM_START.0, E820_RESERVED),
                entry(HIMEM_START.0, PCI_ECAM_START.0, E820_RAM),
                entry(PCI_ECAM_START.0, ecam_end, E820_RESERVED),
                entry(ecam_end, 0xe800_0000, E820_RAM),
                entry(1 << 32, (1 << 32) + (16 << 20), E820_RAM),
            ]
        );
    }
}
