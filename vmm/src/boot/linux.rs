//! Linux x86 boot protocol, 64-bit entry: load a bzImage and build its `boot_params`.
//! See Documentation/arch/x86/boot.rst in the kernel tree.

use std::fs::File;
use std::mem::size_of;

use linux_loader::loader::bootparam::{
    boot_e820_entry, boot_params, setup_header, CAN_USE_HEAP, E820_MAX_ENTRIES_ZEROPAGE,
    LOADED_HIGH, XLF_KERNEL_64,
};
use linux_loader::loader::{BzImage, KernelLoader};
use vm_memory::{ByteValued, Bytes, GuestAddress};

use super::{
    load_initrd, low_ram_end, memory_map, write_cmdline, BootConfig, BootError, BootProtocol,
    BootSetup,
};
use crate::layout::{CMDLINE_MAX_SIZE, CMDLINE_START, HIMEM_START, ZERO_PAGE_START};
use crate::memory::GuestMemory;

/// Offset of the setup header in the image (and in `boot_params`).
pub(super) const SETUP_HEADER_OFFSET: usize = 0x1f1;
/// "HdrS" at 0x202.
const HDRS_MAGIC: u32 = 0x5372_6448;
/// Boot protocol 2.12: `xloadflags`, 64-bit entry, `ext_*` fields the kernel honours.
const MIN_BOOT_PROTOCOL: u16 = 0x020c;
/// The 64-bit entry point sits this far into the protected-mode kernel.
const ENTRY_64_OFFSET: u64 = 0x200;
/// Loader type "undefined": we have no boot loader ID assigned.
const LOADER_TYPE_UNDEFINED: u8 = 0xff;
/// "normal" VGA mode: don't ask the kernel to switch video modes.
const VID_MODE_NORMAL: u16 = 0xffff;
/// End of the real-mode setup heap, relative to the real-mode code, minus 0x200. Only the
/// real-mode setup uses the heap and it never runs with a 64-bit entry; the protocol still asks
/// loaders to set it, so use what a loader putting setup in one 64 KiB segment would.
const HEAP_END_PTR: u16 = 0xfe00;

/// The setup header parsed from the start of a bzImage, if it has one.
pub(super) fn setup_header_of(image: &[u8]) -> Option<setup_header> {
    let bytes = image.get(SETUP_HEADER_OFFSET..SETUP_HEADER_OFFSET + size_of::<setup_header>())?;
    // setup_header is packed (alignment 1), so from_slice cannot fail on alignment.
    let hdr = *setup_header::from_slice(bytes)?;
    (hdr.header == HDRS_MAGIC).then_some(hdr)
}

pub(super) fn has_setup_header(image: &[u8]) -> bool {
    setup_header_of(image).is_some()
}

/// The kernel version string from the bzImage header (kernel_version field → "6.1.0-28-cloud-amd64
/// (debian-kernel@lists.debian.org) #1 SMP ...": return its first word).
pub fn bzimage_version(bzimage: &[u8]) -> Option<String> {
    let hdr = setup_header_of(bzimage)?;
    let ptr = hdr.kernel_version;
    if hdr.version < 0x0200 || ptr == 0 {
        return None;
    }
    // kernel_version is relative to the start of the real-mode code, which follows the
    // 512-byte boot sector.
    let start = ptr as usize + 0x200;
    let rest = bzimage.get(start..)?;
    let text = &rest[..rest
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(rest.len())
        .min(256)];
    let word = std::str::from_utf8(text).ok()?.split_whitespace().next()?;
    Some(word.to_owned())
}

pub(super) fn load(
    mem: &GuestMemory,
    cfg: &BootConfig,
    head: &[u8],
    mut file: File,
) -> Result<BootSetup, BootError> {
    let path = || cfg.kernel.to_owned();
    let image_hdr =
        setup_header_of(head).ok_or_else(|| BootError::UnknownFormat { path: path() })?;
    let version = image_hdr.version;
    if version < MIN_BOOT_PROTOCOL {
        return Err(BootError::OldBootProtocol {
            path: path(),
            version,
        });
    }
    if image_hdr.xloadflags & XLF_KERNEL_64 == 0 {
        return Err(BootError::Not64Bit { path: path() });
    }

    let loaded =
        BzImage::load(mem, Some(HIMEM_START), &mut file, Some(HIMEM_START)).map_err(|source| {
            BootError::Loader {
                path: path(),
                source,
            }
        })?;
    // The loader returns the image's header with code32_start set to where it loaded it.
    let mut hdr = loaded.setup_header.unwrap_or(image_hdr);

    // cmdline_size excludes the terminating NUL.
    let cmdline_max = (hdr.cmdline_size as usize).min(CMDLINE_MAX_SIZE - 1);
    write_cmdline(mem, CMDLINE_START, cfg.cmdline, cmdline_max)?;

    // The kernel decompresses itself in place and needs init_size bytes from its load address;
    // the initrd must stay clear of that as well as of the image itself.
    let kernel_end = loaded
        .kernel_end
        .max(loaded.kernel_load.0 + u64::from(hdr.init_size));
    let (ramdisk_image, ramdisk_size) = match cfg.initrd {
        Some(initrd) => {
            // initrd_addr_max is the highest address the initrd may occupy (inclusive).
            let limit = low_ram_end(mem).min(u64::from(hdr.initrd_addr_max) + 1);
            let (addr, size) = load_initrd(mem, initrd, kernel_end, limit)?;
            (addr.0 as u32, size as u32)
        }
        None => (0, 0),
    };

    hdr.type_of_loader = LOADER_TYPE_UNDEFINED;
    hdr.loadflags |= LOADED_HIGH | CAN_USE_HEAP;
    hdr.heap_end_ptr = HEAP_END_PTR;
    hdr.vid_mode = VID_MODE_NORMAL;
    hdr.cmd_line_ptr = CMDLINE_START.0 as u32;
    hdr.ramdisk_image = ramdisk_image;
    hdr.ramdisk_size = ramdisk_size;

    let mut params = boot_params {
        hdr,
        acpi_rsdp_addr: cfg.rsdp.0,
        ..Default::default()
    };
    let map = memory_map(mem);
    // memory_map() yields at most five entries; the zero page holds 128.
    debug_assert!(map.len() <= E820_MAX_ENTRIES_ZEROPAGE);
    for (slot, e) in params.e820_table.iter_mut().zip(&map) {
        *slot = boot_e820_entry {
            addr: e.addr,
            size: e.size,
            r#type: e.kind,
        };
    }
    params.e820_entries = map.len().min(E820_MAX_ENTRIES_ZEROPAGE) as u8;

    mem.write_obj(params, ZERO_PAGE_START)
        .map_err(|e| BootError::GuestMemory {
            what: "boot_params",
            addr: ZERO_PAGE_START.0,
            reason: e.to_string(),
        })?;

    Ok(BootSetup {
        protocol: BootProtocol::LinuxBoot64,
        entry: GuestAddress(loaded.kernel_load.0 + ENTRY_64_OFFSET),
        boot_info: ZERO_PAGE_START,
    })
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::boot::{load_kernel, E820_RAM, E820_RESERVED};
    use crate::layout::EBDA_START;
    use crate::memory::create_guest_memory;
    use std::io::Write;

    /// A minimal synthetic bzImage: boot sector + `setup_sects` of setup, then `payload` as the
    /// protected-mode part, with a valid 2.15 header and a kernel_version string.
    pub(crate) fn fake_bzimage(payload: &[u8], payload_offset: u32, payload_len: u32) -> Vec<u8> {
        let setup_sects = 3u8;
        let pm_start = (setup_sects as usize + 1) * 512;
        let mut img = vec![0u8; pm_start];
        let version_str = b"6.1.0-99-test-amd64 (someone@example.org) #1 SMP\0";
        let version_at = 0x400;
        img[version_at..version_at + version_str.len()].copy_from_slice(version_str);
        let hdr = setup_header {
            setup_sects,
            boot_flag: 0xaa55,
            header: HDRS_MAGIC,
            version: 0x020f,
            kernel_version: (version_at - 0x200) as u16,
            loadflags: LOADED_HIGH,
            code32_start: 0x10_0000,
            initrd_addr_max: 0x7fff_ffff,
            kernel_alignment: 0x20_0000,
            relocatable_kernel: 1,
            xloadflags: XLF_KERNEL_64 | 0x2,
            cmdline_size: 2047,
            payload_offset,
            payload_length: payload_len,
            init_size: 0x40_0000,
            ..Default::default()
        };
        img[SETUP_HEADER_OFFSET..SETUP_HEADER_OFFSET + size_of::<setup_header>()]
            .copy_from_slice(hdr.as_slice());
        img.extend_from_slice(payload);
        img
    }

    fn write_temp(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        f.flush().unwrap();
        f
    }

    #[test]
    fn version_from_header() {
        let img = fake_bzimage(&[0u8; 64], 0, 64);
        assert_eq!(
            bzimage_version(&img).as_deref(),
            Some("6.1.0-99-test-amd64")
        );
        assert_eq!(bzimage_version(&[0u8; 1024]), None);
    }

    #[test]
    fn boot_params_written() {
        let ram = 256u64 << 20;
        let mem = create_guest_memory(ram).unwrap();
        let pm: Vec<u8> = (0..8192u32).map(|i| i as u8).collect();
        let kernel = write_temp(&fake_bzimage(&pm, 0, 0));
        let initrd_bytes: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        let initrd = write_temp(&initrd_bytes);
        let rsdp = GuestAddress(0xe0000);
        let cmdline = "console=ttyS0 root=/dev/vda1 ro";
        let setup = load_kernel(
            &mem,
            &BootConfig {
                kernel: kernel.path(),
                initrd: Some(initrd.path()),
                cmdline,
                rsdp,
            },
        )
        .unwrap();
        assert_eq!(setup.protocol, BootProtocol::LinuxBoot64);
        assert_eq!(setup.entry, GuestAddress(0x10_0200));
        assert_eq!(setup.boot_info, ZERO_PAGE_START);

        // The protected-mode part lands at 1 MiB.
        let mut buf = vec![0u8; pm.len()];
        mem.read_slice(&mut buf, HIMEM_START).unwrap();
        assert_eq!(buf, pm);

        let p: boot_params = mem.read_obj(ZERO_PAGE_START).unwrap();
        let h = p.hdr;
        assert_eq!({ h.header }, HDRS_MAGIC);
        assert_eq!(h.type_of_loader, 0xff);
        assert_eq!(
            h.loadflags & (LOADED_HIGH | CAN_USE_HEAP),
            LOADED_HIGH | CAN_USE_HEAP
        );
        assert_eq!({ h.heap_end_ptr }, HEAP_END_PTR);
        assert_eq!({ h.vid_mode }, 0xffff);
        assert_eq!({ h.code32_start }, 0x10_0000);
        assert_eq!({ h.cmd_line_ptr } as u64, CMDLINE_START.0);
        assert_eq!({ p.acpi_rsdp_addr }, 0xe0000);

        let mut cl = vec![0u8; cmdline.len() + 1];
        mem.read_slice(&mut cl, CMDLINE_START).unwrap();
        assert_eq!(&cl[..cmdline.len()], cmdline.as_bytes());
        assert_eq!(cl[cmdline.len()], 0);

        // Initrd: page-aligned, at the top of RAM, bytes intact.
        let (rd, rd_size) = ({ h.ramdisk_image } as u64, { h.ramdisk_size } as u64);
        assert_eq!(rd_size, initrd_bytes.len() as u64);
        assert_eq!(rd % 4096, 0);
        assert!(rd + rd_size <= ram && ram - (rd + rd_size) < 4096);
        let mut buf = vec![0u8; rd_size as usize];
        mem.read_slice(&mut buf, GuestAddress(rd)).unwrap();
        assert_eq!(buf, initrd_bytes);

        let n = p.e820_entries as usize;
        assert_eq!(n, memory_map(&mem).len());
        let table = p.e820_table;
        for (i, e) in memory_map(&mem).iter().enumerate() {
            let t = table[i];
            assert_eq!(
                ({ t.addr }, { t.size }, { t.r#type }),
                (e.addr, e.size, e.kind)
            );
        }
        assert_eq!({ table[1].addr }, EBDA_START.0);
        assert_eq!({ table[1].r#type }, E820_RESERVED);
        assert_eq!({ table[2].r#type }, E820_RAM);
    }

    #[test]
    fn initrd_respects_initrd_addr_max() {
        let ram = 256u64 << 20;
        let mem = create_guest_memory(ram).unwrap();
        let mut img = fake_bzimage(&[0u8; 4096], 0, 0);
        // Lower initrd_addr_max (offset 0x22c) to 64 MiB - 1.
        img[0x22c..0x230].copy_from_slice(&(0x3ff_ffffu32).to_le_bytes());
        let kernel = write_temp(&img);
        let initrd = write_temp(&[1u8; 5000]);
        load_kernel(
            &mem,
            &BootConfig {
                kernel: kernel.path(),
                initrd: Some(initrd.path()),
                cmdline: "",
                rsdp: GuestAddress(0xe0000),
            },
        )
        .unwrap();
        let p: boot_params = mem.read_obj(ZERO_PAGE_START).unwrap();
        let rd = { p.hdr.ramdisk_image } as u64;
        assert_eq!(rd, (0x400_0000 - 5000) & !0xfff);
    }

    #[test]
    fn refuses_old_or_32bit_kernels() {
        let mem = create_guest_memory(64 << 20).unwrap();
        let cfg = |p| BootConfig {
            kernel: p,
            initrd: None,
            cmdline: "",
            rsdp: GuestAddress(0xe0000),
        };
        let mut old = fake_bzimage(&[0u8; 512], 0, 0);
        old[0x206..0x208].copy_from_slice(&0x020bu16.to_le_bytes());
        let f = write_temp(&old);
        let err = load_kernel(&mem, &cfg(f.path())).unwrap_err();
        assert!(matches!(
            err,
            BootError::OldBootProtocol {
                version: 0x020b,
                ..
            }
        ));
        assert!(err.to_string().contains("2.11"), "{err}");

        let mut no64 = fake_bzimage(&[0u8; 512], 0, 0);
        no64[0x236] &= !1;
        let f = write_temp(&no64);
        let err = load_kernel(&mem, &cfg(f.path())).unwrap_err();
        assert!(matches!(err, BootError::Not64Bit { .. }), "{err}");

        let f = write_temp(&[0u8; 4096]);
        let err = load_kernel(&mem, &cfg(f.path())).unwrap_err();
        assert!(matches!(err, BootError::UnknownFormat { .. }), "{err}");
    }

    #[test]
    fn cmdline_too_long() {
        let mem = create_guest_memory(64 << 20).unwrap();
        let f = write_temp(&fake_bzimage(&[0u8; 512], 0, 0));
        let long = "a".repeat(2048);
        let err = load_kernel(
            &mem,
            &BootConfig {
                kernel: f.path(),
                initrd: None,
                cmdline: &long,
                rsdp: GuestAddress(0xe0000),
            },
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                BootError::CmdlineTooLong {
                    len: 2048,
                    max: 2047
                }
            ),
            "{err}"
        );
    }
}
