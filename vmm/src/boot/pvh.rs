//! Xen PVH direct boot: load an ELF vmlinux at its physical addresses and describe the machine
//! to it with `hvm_start_info` (see xen/include/public/arch-x86/hvm/start_info.h).

use std::fs::File;
use std::mem::size_of;

use linux_loader::loader::elf::start_info::{
    hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info,
};
use linux_loader::loader::elf::PvhBootCapability;
use linux_loader::loader::{Elf, KernelLoader};
use vm_memory::{ByteValued, Bytes, GuestAddress};

use super::{
    load_initrd, low_ram_end, memory_map, write_bytes, write_cmdline, BootConfig, BootError,
    BootProtocol, BootSetup,
};
use crate::layout::{
    CMDLINE_MAX_SIZE, CMDLINE_START, HIMEM_START, PVH_INFO_START, ZERO_PAGE_START,
};
use crate::memory::GuestMemory;

/// "xEn3" with the high bit of 'E' set, as the ABI defines.
pub(super) const HVM_START_MAGIC: u32 = 0x336e_c578;
/// Version 1 adds the memory map fields.
const HVM_START_VERSION: u32 = 1;

// linux-loader's start_info structs don't implement ByteValued and the orphan rule keeps us
// from adding it, so wrap them.
#[repr(transparent)]
#[derive(Clone, Copy, Default)]
struct StartInfo(hvm_start_info);
#[repr(transparent)]
#[derive(Clone, Copy, Default)]
struct ModlistEntry(hvm_modlist_entry);
#[repr(transparent)]
#[derive(Clone, Copy, Default)]
struct MemmapEntry(hvm_memmap_table_entry);

// No padding anywhere: the sizes equal the sums of the integer fields.
const _: () = assert!(size_of::<StartInfo>() == 4 * 4 + 4 * 8 + 2 * 4);
const _: () = assert!(size_of::<ModlistEntry>() == 4 * 8);
const _: () = assert!(size_of::<MemmapEntry>() == 2 * 8 + 2 * 4);

// SAFETY: repr(transparent) over a repr(C) struct of plain integers with no padding (asserted
// above), so every byte pattern is a valid value.
unsafe impl ByteValued for StartInfo {}
// SAFETY: as for StartInfo.
unsafe impl ByteValued for ModlistEntry {}
// SAFETY: as for StartInfo.
unsafe impl ByteValued for MemmapEntry {}

/// The module list follows hvm_start_info, 8-byte aligned (it is 56 bytes, already aligned).
const MODLIST_START: GuestAddress = GuestAddress(PVH_INFO_START.0 + size_of::<StartInfo>() as u64);
/// The memory map follows the (single-entry) module list.
const MEMMAP_START: GuestAddress = GuestAddress(MODLIST_START.0 + size_of::<ModlistEntry>() as u64);
// Everything must fit in the page before the zero page, with room for a generous memory map.
const _: () = assert!(MEMMAP_START.0 + 16 * size_of::<MemmapEntry>() as u64 <= ZERO_PAGE_START.0);

pub(super) fn load(
    mem: &GuestMemory,
    cfg: &BootConfig,
    mut file: File,
) -> Result<BootSetup, BootError> {
    let path = || cfg.kernel.to_owned();
    // No load offset: PVH requires the kernel at its link-time physical addresses, and the
    // loader only reports the PVH note in that case.
    let loaded =
        Elf::load(mem, None, &mut file, Some(HIMEM_START)).map_err(|source| BootError::Loader {
            path: path(),
            source,
        })?;
    let entry = match loaded.pvh_boot_cap {
        PvhBootCapability::PvhEntryPresent(entry) => entry,
        _ => return Err(BootError::NoPvhEntry { path: path() }),
    };

    write_cmdline(mem, CMDLINE_START, cfg.cmdline, CMDLINE_MAX_SIZE - 1)?;

    let mut info = hvm_start_info {
        magic: HVM_START_MAGIC,
        version: HVM_START_VERSION,
        cmdline_paddr: CMDLINE_START.0,
        rsdp_paddr: cfg.rsdp.0,
        ..Default::default()
    };

    if let Some(initrd) = cfg.initrd {
        let limit = low_ram_end(mem);
        let (addr, size) = load_initrd(mem, initrd, loaded.kernel_end, limit)?;
        let module = ModlistEntry(hvm_modlist_entry {
            paddr: addr.0,
            size,
            ..Default::default()
        });
        write_bytes(mem, "PVH module list", MODLIST_START, module.as_slice())?;
        info.nr_modules = 1;
        info.modlist_paddr = MODLIST_START.0;
    }

    let map = memory_map(mem);
    let mut table = Vec::with_capacity(map.len() * size_of::<MemmapEntry>());
    for e in &map {
        let entry = MemmapEntry(hvm_memmap_table_entry {
            addr: e.addr,
            size: e.size,
            type_: e.kind,
            reserved: 0,
        });
        table.extend_from_slice(entry.as_slice());
    }
    debug_assert!(MEMMAP_START.0 + table.len() as u64 <= ZERO_PAGE_START.0);
    write_bytes(mem, "PVH memory map", MEMMAP_START, &table)?;
    info.memmap_paddr = MEMMAP_START.0;
    info.memmap_entries = map.len() as u32;

    mem.write_obj(StartInfo(info), PVH_INFO_START)
        .map_err(|e| BootError::GuestMemory {
            what: "hvm_start_info",
            addr: PVH_INFO_START.0,
            reason: e.to_string(),
        })?;

    Ok(BootSetup {
        protocol: BootProtocol::Pvh,
        entry,
        boot_info: PVH_INFO_START,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::load_kernel;
    use crate::memory::create_guest_memory;
    use std::io::Write;

    /// A minimal ELF64 vmlinux: one PT_LOAD of `code` at physical `load`, and a PT_NOTE
    /// holding a Xen PHYS32_ENTRY note (preceded by another note, as in real kernels).
    fn fake_vmlinux(load: u64, code: &[u8], pvh_entry: Option<u32>) -> Vec<u8> {
        let mut notes = Vec::new();
        let mut note = |name: &[u8], ty: u32, desc: &[u8]| {
            notes.extend_from_slice(&(name.len() as u32).to_le_bytes());
            notes.extend_from_slice(&(desc.len() as u32).to_le_bytes());
            notes.extend_from_slice(&ty.to_le_bytes());
            notes.extend_from_slice(name);
            notes.resize(notes.len().next_multiple_of(4), 0);
            notes.extend_from_slice(desc);
            notes.resize(notes.len().next_multiple_of(4), 0);
        };
        note(b"GNU\0", 3, &[0xab; 20]);
        if let Some(e) = pvh_entry {
            note(b"Xen\0", 18, &u64::from(e).to_le_bytes());
        }

        let (ehdr_size, phdr_size) = (64u64, 56u64);
        let notes_off = ehdr_size + 2 * phdr_size;
        let code_off = (notes_off + notes.len() as u64).next_multiple_of(16);
        let mut elf = Vec::new();
        elf.extend_from_slice(b"\x7fELF\x02\x01\x01\0");
        elf.extend_from_slice(&[0; 8]);
        elf.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        elf.extend_from_slice(&0x3eu16.to_le_bytes()); // x86-64
        elf.extend_from_slice(&1u32.to_le_bytes());
        elf.extend_from_slice(&(0xffff_ffff_8000_0000 + load).to_le_bytes()); // e_entry
        elf.extend_from_slice(&ehdr_size.to_le_bytes()); // e_phoff
        elf.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
        elf.extend_from_slice(&0u32.to_le_bytes());
        elf.extend_from_slice(&(ehdr_size as u16).to_le_bytes());
        elf.extend_from_slice(&(phdr_size as u16).to_le_bytes());
        elf.extend_from_slice(&2u16.to_le_bytes()); // e_phnum
        elf.extend_from_slice(&[0; 6]); // shentsize, shnum, shstrndx
        let mut phdr = |ty: u32, off: u64, paddr: u64, size: u64| {
            elf.extend_from_slice(&ty.to_le_bytes());
            elf.extend_from_slice(&5u32.to_le_bytes());
            elf.extend_from_slice(&off.to_le_bytes());
            elf.extend_from_slice(&(0xffff_ffff_8000_0000 + paddr).to_le_bytes());
            elf.extend_from_slice(&paddr.to_le_bytes());
            elf.extend_from_slice(&size.to_le_bytes());
            elf.extend_from_slice(&size.to_le_bytes());
            elf.extend_from_slice(&4u64.to_le_bytes());
        };
        phdr(1, code_off, load, code.len() as u64);
        phdr(4, notes_off, 0, notes.len() as u64);
        elf.extend_from_slice(&notes);
        elf.resize(code_off as usize, 0);
        elf.extend_from_slice(code);
        elf
    }

    fn write_temp(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        f.flush().unwrap();
        f
    }

    fn read<T: ByteValued>(mem: &GuestMemory, addr: u64) -> T {
        mem.read_obj(GuestAddress(addr)).unwrap()
    }

    #[test]
    fn hvm_start_info_written() {
        let ram = 256u64 << 20;
        let mem = create_guest_memory(ram).unwrap();
        let code: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        let kernel = write_temp(&fake_vmlinux(0x100_0000, &code, Some(0x100_0123)));
        let initrd_bytes: Vec<u8> = (0..12_345u32).map(|i| (i * 3) as u8).collect();
        let initrd = write_temp(&initrd_bytes);
        let cmdline = "console=hvc0 quiet";
        let setup = load_kernel(
            &mem,
            &BootConfig {
                kernel: kernel.path(),
                initrd: Some(initrd.path()),
                cmdline,
                rsdp: GuestAddress(0xe0000),
            },
        )
        .unwrap();
        assert_eq!(setup.protocol, BootProtocol::Pvh);
        assert_eq!(setup.entry, GuestAddress(0x100_0123));
        assert_eq!(setup.boot_info, PVH_INFO_START);

        let mut buf = vec![0u8; code.len()];
        mem.read_slice(&mut buf, GuestAddress(0x100_0000)).unwrap();
        assert_eq!(buf, code);

        let info = read::<StartInfo>(&mem, PVH_INFO_START.0).0;
        assert_eq!(info.magic, 0x336e_c578);
        assert_eq!(info.version, 1);
        assert_eq!(info.flags, 0);
        assert_eq!(info.cmdline_paddr, CMDLINE_START.0);
        assert_eq!(info.rsdp_paddr, 0xe0000);
        assert_eq!(info.nr_modules, 1);

        let mut cl = vec![0u8; cmdline.len() + 1];
        mem.read_slice(&mut cl, CMDLINE_START).unwrap();
        assert_eq!(cl, b"console=hvc0 quiet\0");

        let module = read::<ModlistEntry>(&mem, info.modlist_paddr).0;
        assert_eq!(module.size, initrd_bytes.len() as u64);
        assert_eq!(module.paddr % 4096, 0);
        assert!(module.paddr + module.size <= ram);
        let mut buf = vec![0u8; initrd_bytes.len()];
        mem.read_slice(&mut buf, GuestAddress(module.paddr))
            .unwrap();
        assert_eq!(buf, initrd_bytes);

        let map = memory_map(&mem);
        assert_eq!(info.memmap_entries as usize, map.len());
        let end = info.memmap_paddr + map.len() as u64 * size_of::<MemmapEntry>() as u64;
        assert!(info.modlist_paddr >= PVH_INFO_START.0 + 56);
        assert!(end <= ZERO_PAGE_START.0);
        for (i, e) in map.iter().enumerate() {
            let m = read::<MemmapEntry>(&mem, info.memmap_paddr + 24 * i as u64).0;
            assert_eq!(
                (m.addr, m.size, m.type_, m.reserved),
                (e.addr, e.size, e.kind, 0)
            );
        }
    }

    #[test]
    fn no_initrd_means_no_modules() {
        let mem = create_guest_memory(64 << 20).unwrap();
        let kernel = write_temp(&fake_vmlinux(0x100_0000, &[0x90; 64], Some(0x100_0000)));
        load_kernel(
            &mem,
            &BootConfig {
                kernel: kernel.path(),
                initrd: None,
                cmdline: "",
                rsdp: GuestAddress(0xe0000),
            },
        )
        .unwrap();
        let info = read::<StartInfo>(&mem, PVH_INFO_START.0).0;
        assert_eq!((info.nr_modules, info.modlist_paddr), (0, 0));
    }

    #[test]
    fn elf_without_pvh_note_is_refused() {
        let mem = create_guest_memory(64 << 20).unwrap();
        let kernel = write_temp(&fake_vmlinux(0x100_0000, &[0x90; 64], None));
        let err = load_kernel(
            &mem,
            &BootConfig {
                kernel: kernel.path(),
                initrd: None,
                cmdline: "",
                rsdp: GuestAddress(0xe0000),
            },
        )
        .unwrap_err();
        assert!(matches!(err, BootError::NoPvhEntry { .. }), "{err}");
    }
}
