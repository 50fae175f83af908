//! Load the host's Debian cloud kernel (package linux-image-cloud-amd64) both ways: as a
//! bzImage (64-bit Linux boot) and as the vmlinux extracted from it (PVH).

use std::io::Write;
use std::path::{Path, PathBuf};

use hvbox_vmm::boot::{bzimage_version, extract_vmlinux, load_kernel, BootConfig, BootProtocol};
use hvbox_vmm::layout::{CMDLINE_START, HIMEM_START, PVH_INFO_START, ZERO_PAGE_START};
use hvbox_vmm::memory::{create_guest_memory, GuestMemory};
use linux_loader::loader::bootparam::boot_params;
use linux_loader::loader::elf::PvhBootCapability;
use linux_loader::loader::{Elf, KernelLoader};
use vm_memory::{Bytes, GuestAddress};

const RAM: u64 = 512 << 20;
const CMDLINE: &str = "console=ttyS0 root=/dev/vda1 ro panic=-1";

/// The newest /boot/vmlinuz-*-cloud-amd64 and its version suffix.
fn newest_cloud_kernel() -> Option<(PathBuf, String)> {
    let mut found: Vec<(PathBuf, String)> = std::fs::read_dir("/boot")
        .ok()?
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let version = name.strip_prefix("vmlinuz-")?;
            version
                .ends_with("-cloud-amd64")
                .then(|| (Path::new("/boot").join(&name), version.to_owned()))
        })
        .collect();
    found.sort_by_key(|(_, version)| version_key(version));
    found.pop()
}

/// "6.1.0-28-cloud-amd64" → [6, 1, 0, 28], so 6.1.0-100 sorts after 6.1.0-28.
fn version_key(v: &str) -> Vec<u64> {
    v.split(['.', '-']).map_while(|p| p.parse().ok()).collect()
}

fn read_guest(mem: &GuestMemory, addr: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    mem.read_slice(&mut buf, GuestAddress(addr)).unwrap();
    buf
}

fn check_cmdline(mem: &GuestMemory) {
    let bytes = read_guest(mem, CMDLINE_START.0, CMDLINE.len() + 1);
    assert_eq!(&bytes[..CMDLINE.len()], CMDLINE.as_bytes());
    assert_eq!(bytes[CMDLINE.len()], 0);
}

#[test]
fn debian_cloud_kernel_boots_both_ways() {
    let Some((kernel, version)) = newest_cloud_kernel() else {
        return hvbox_test_support::skip(
            "no /boot/vmlinuz-*-cloud-amd64 (apt-get install linux-image-cloud-amd64)",
        );
    };
    let initrd = PathBuf::from(format!("/boot/initrd.img-{version}"));
    let initrd = initrd.exists().then_some(initrd);
    if initrd.is_none() {
        eprintln!("note: no initrd for {version}, loading without one");
    }
    let initrd_bytes = initrd.as_ref().map(|p| std::fs::read(p).unwrap());

    let image = std::fs::read(&kernel).unwrap();
    assert_eq!(bzimage_version(&image).as_deref(), Some(version.as_str()));

    // bzImage, 64-bit Linux boot protocol.
    let mem = create_guest_memory(RAM).unwrap();
    let cfg = BootConfig {
        kernel: &kernel,
        initrd: initrd.as_deref(),
        cmdline: CMDLINE,
        rsdp: GuestAddress(0xe0000),
    };
    let setup = load_kernel(&mem, &cfg).unwrap();
    assert_eq!(setup.protocol, BootProtocol::LinuxBoot64);
    assert_eq!(setup.entry, GuestAddress(HIMEM_START.0 + 0x200));
    assert_eq!(setup.boot_info, ZERO_PAGE_START);
    check_cmdline(&mem);
    let params: boot_params = mem.read_obj(ZERO_PAGE_START).unwrap();
    let hdr = params.hdr;
    assert_eq!({ hdr.cmd_line_ptr } as u64, CMDLINE_START.0);
    assert_eq!({ params.acpi_rsdp_addr }, 0xe0000);
    if let Some(bytes) = &initrd_bytes {
        assert_eq!({ hdr.ramdisk_size } as usize, bytes.len());
        let addr = { hdr.ramdisk_image } as u64;
        assert!(addr + bytes.len() as u64 <= u64::from(hdr.initrd_addr_max) + 1);
        assert!(
            read_guest(&mem, addr, bytes.len()) == *bytes,
            "initrd differs"
        );
    }

    // Extracted vmlinux: an ELF with a PVH entry note.
    let vmlinux = extract_vmlinux(&image).unwrap();
    assert_eq!(&vmlinux[..4], b"\x7fELF");
    let mut vmlinux_file = tempfile::NamedTempFile::new().unwrap();
    vmlinux_file.write_all(&vmlinux).unwrap();
    vmlinux_file.flush().unwrap();
    let probe = create_guest_memory(RAM).unwrap();
    let loaded = Elf::load(
        &probe,
        None,
        &mut std::io::Cursor::new(&vmlinux),
        Some(HIMEM_START),
    )
    .unwrap();
    let PvhBootCapability::PvhEntryPresent(pvh_entry) = loaded.pvh_boot_cap else {
        panic!(
            "no PVH note in the vmlinux of {version}: {}",
            loaded.pvh_boot_cap
        );
    };
    drop(probe);

    // PVH boot of the extracted vmlinux.
    let mem = create_guest_memory(RAM).unwrap();
    let cfg = BootConfig {
        kernel: vmlinux_file.path(),
        ..cfg
    };
    let setup = load_kernel(&mem, &cfg).unwrap();
    assert_eq!(setup.protocol, BootProtocol::Pvh);
    assert_eq!(setup.entry, pvh_entry);
    assert_eq!(setup.boot_info, PVH_INFO_START);
    check_cmdline(&mem);
    let word = |off: u64| {
        let b = read_guest(&mem, PVH_INFO_START.0 + off, 8);
        u64::from_le_bytes(b.try_into().unwrap())
    };
    assert_eq!(word(0) as u32, 0x336e_c578);
    assert_eq!(word(24), CMDLINE_START.0); // cmdline_paddr
    assert_eq!(word(32), 0xe0000); // rsdp_paddr
    if let Some(bytes) = &initrd_bytes {
        assert_eq!(word(12) as u32, 1); // nr_modules
        let modlist = word(16);
        let (addr, size) = (
            word(modlist - PVH_INFO_START.0),
            word(modlist + 8 - PVH_INFO_START.0),
        );
        assert_eq!(size as usize, bytes.len());
        assert!(
            read_guest(&mem, addr, bytes.len()) == *bytes,
            "initrd differs"
        );
    }
    eprintln!(
        "{version}: bzImage {} bytes, vmlinux {} bytes, PVH entry {:#x}",
        image.len(),
        vmlinux.len(),
        pvh_entry.0
    );
}
