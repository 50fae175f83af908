//! Registers, MSRs, FPU, boot GDT and page tables for the two entry protocols.
//!
//! 64-bit Linux boot enters in long mode with identity-mapped paging; PVH enters in
//! 32-bit protected mode with paging off. Both get a flat GDT in low memory.

use crate::layout::{
    BOOT_GDT_START, BOOT_IDT_START, BOOT_STACK_POINTER, PDE_START, PDPTE_START, PML4_START,
};
use crate::memory::GuestMemory;
use kvm_bindings::{kvm_fpu, kvm_msr_entry, kvm_regs, kvm_segment, Msrs};
use kvm_ioctls::VcpuFd;
use vm_memory::{Address, Bytes, GuestAddress};

#[derive(Debug, thiserror::Error)]
pub enum RegsError {
    #[error("writing boot {what} into guest memory: {source}")]
    Memory {
        what: &'static str,
        source: vm_memory::GuestMemoryError,
    },
    #[error("KVM refused to set MSR {index:#x}")]
    MsrRefused { index: u32 },
    #[error("{what}: {source}")]
    Kvm {
        what: &'static str,
        source: kvm_ioctls::Error,
    },
}

fn kvm(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> RegsError {
    move |source| RegsError::Kvm { what, source }
}

/// Which mode the vCPU starts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryMode {
    /// Long mode, paging on: `rsi` holds boot_params (Linux 64-bit boot protocol).
    Long64 { boot_params: u64 },
    /// 32-bit protected mode, paging off: `ebx` holds hvm_start_info (PVH).
    Protected32 { start_info: u64 },
}

const X86_CR0_PE: u64 = 1 << 0;
const X86_CR0_ET: u64 = 1 << 4;
const X86_CR0_PG: u64 = 1 << 31;
const X86_CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;

// GDT slots: null, 64-bit code, 32-bit code, data, TSS.
const GDT_CODE64: u16 = 1;
const GDT_CODE32: u16 = 2;
const GDT_DATA: u16 = 3;
const GDT_TSS: u16 = 4;

/// A GDT descriptor from flags (type, S, DPL, P, AVL, L, D/B, G), base and limit.
fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    ((u64::from(base) & 0xff00_0000) << 32)
        | ((u64::from(flags) & 0xf0ff) << 40)
        | ((u64::from(limit) & 0x000f_0000) << 32)
        | ((u64::from(base) & 0x00ff_ffff) << 16)
        | (u64::from(limit) & 0x0000_ffff)
}

/// The hidden part of a segment register, as the CPU would cache it from `entry`.
fn segment(index: u16, entry: u64) -> kvm_segment {
    let flag = |shift: u32, bits: u64| ((entry >> shift) & bits) as u8;
    kvm_segment {
        base: ((entry >> 16) & 0xff_ffff) | (((entry >> 56) & 0xff) << 24),
        limit: {
            let raw = ((entry & 0xffff) | (((entry >> 48) & 0xf) << 16)) as u32;
            if flag(55, 1) == 1 {
                (raw << 12) | 0xfff
            } else {
                raw
            }
        },
        selector: index * 8,
        type_: flag(40, 0xf),
        present: flag(47, 1),
        dpl: flag(45, 3),
        db: flag(54, 1),
        s: flag(44, 1),
        l: flag(53, 1),
        g: flag(55, 1),
        avl: flag(52, 1),
        unusable: 0,
        padding: 0,
    }
}

fn boot_gdt() -> [u64; 5] {
    [
        0,
        gdt_entry(0xa09b, 0, 0xfffff), // 64-bit code: L=1
        gdt_entry(0xc09b, 0, 0xfffff), // 32-bit code: D=1
        gdt_entry(0xc093, 0, 0xfffff), // data
        gdt_entry(0x808b, 0, 0xfffff), // TSS (KVM wants a usable TR)
    ]
}

/// Set up every register of a vCPU for its entry. Only the boot vCPU (index 0) gets
/// an entry point; secondary vCPUs wait for INIT/SIPI from the guest.
pub fn setup_boot_vcpu(
    vcpu: &VcpuFd,
    mem: &GuestMemory,
    entry: GuestAddress,
    mode: EntryMode,
) -> Result<(), RegsError> {
    let gdt = boot_gdt();
    for (i, e) in gdt.iter().enumerate() {
        mem.write_obj(*e, BOOT_GDT_START.unchecked_add(i as u64 * 8))
            .map_err(|source| RegsError::Memory {
                what: "GDT",
                source,
            })?;
    }
    mem.write_obj(0u64, BOOT_IDT_START)
        .map_err(|source| RegsError::Memory {
            what: "IDT",
            source,
        })?;

    let mut sregs = vcpu.get_sregs().map_err(kvm("KVM_GET_SREGS"))?;
    sregs.gdt.base = BOOT_GDT_START.0;
    sregs.gdt.limit = (std::mem::size_of_val(&gdt) - 1) as u16;
    sregs.idt.base = BOOT_IDT_START.0;
    sregs.idt.limit = 7;
    let data = segment(GDT_DATA, gdt[GDT_DATA as usize]);
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = segment(GDT_TSS, gdt[GDT_TSS as usize]);

    let mut regs = kvm_regs {
        rflags: 0x2,
        rip: entry.0,
        rsp: BOOT_STACK_POINTER.0,
        rbp: BOOT_STACK_POINTER.0,
        ..Default::default()
    };
    match mode {
        EntryMode::Long64 { boot_params } => {
            write_identity_page_tables(mem)?;
            sregs.cs = segment(GDT_CODE64, gdt[GDT_CODE64 as usize]);
            sregs.cr3 = PML4_START.0;
            sregs.cr4 |= X86_CR4_PAE;
            sregs.cr0 |= X86_CR0_PE | X86_CR0_PG;
            sregs.efer |= EFER_LME | EFER_LMA;
            regs.rsi = boot_params;
        }
        EntryMode::Protected32 { start_info } => {
            sregs.cs = segment(GDT_CODE32, gdt[GDT_CODE32 as usize]);
            sregs.cr0 = X86_CR0_PE | X86_CR0_ET;
            sregs.cr4 = 0;
            sregs.efer = 0;
            regs.rbx = start_info;
        }
    }
    vcpu.set_sregs(&sregs).map_err(kvm("KVM_SET_SREGS"))?;
    vcpu.set_regs(&regs).map_err(kvm("KVM_SET_REGS"))?;
    Ok(())
}

/// Identity map of the first 1 GiB with 2 MiB pages: enough for the kernel, its boot
/// data and stack until it builds its own tables.
fn write_identity_page_tables(mem: &GuestMemory) -> Result<(), RegsError> {
    let err = |source| RegsError::Memory {
        what: "page tables",
        source,
    };
    mem.write_obj(PDPTE_START.0 | 0x03, PML4_START)
        .map_err(err)?;
    mem.write_obj(PDE_START.0 | 0x03, PDPTE_START)
        .map_err(err)?;
    for i in 0..512u64 {
        mem.write_obj((i << 21) | 0x83, PDE_START.unchecked_add(i * 8))
            .map_err(err)?;
    }
    Ok(())
}

/// FPU control word and MXCSR as after a reset (x87 and SSE exceptions masked).
pub fn setup_fpu(vcpu: &VcpuFd) -> Result<(), RegsError> {
    let fpu = kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    };
    vcpu.set_fpu(&fpu).map_err(kvm("KVM_SET_FPU"))
}

const MSR_IA32_SYSENTER_CS: u32 = 0x174;
const MSR_IA32_SYSENTER_ESP: u32 = 0x175;
const MSR_IA32_SYSENTER_EIP: u32 = 0x176;
const MSR_STAR: u32 = 0xc000_0081;
const MSR_LSTAR: u32 = 0xc000_0082;
const MSR_CSTAR: u32 = 0xc000_0083;
const MSR_SYSCALL_MASK: u32 = 0xc000_0084;
const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;
const MSR_IA32_TSC: u32 = 0x10;
const MSR_IA32_MISC_ENABLE: u32 = 0x1a0;
const MSR_MTRR_DEF_TYPE: u32 = 0x2ff;
const MISC_ENABLE_FAST_STRING: u64 = 1;
/// MTRRs enabled, default memory type write-back.
const MTRR_ENABLE_WRITEBACK: u64 = (1 << 11) | 6;

pub fn setup_msrs(vcpu: &VcpuFd) -> Result<(), RegsError> {
    let entry = |index, data| kvm_msr_entry {
        index,
        data,
        ..Default::default()
    };
    let entries = [
        entry(MSR_IA32_SYSENTER_CS, 0),
        entry(MSR_IA32_SYSENTER_ESP, 0),
        entry(MSR_IA32_SYSENTER_EIP, 0),
        entry(MSR_STAR, 0),
        entry(MSR_CSTAR, 0),
        entry(MSR_KERNEL_GS_BASE, 0),
        entry(MSR_SYSCALL_MASK, 0),
        entry(MSR_LSTAR, 0),
        entry(MSR_IA32_TSC, 0),
        entry(MSR_IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING),
        entry(MSR_MTRR_DEF_TYPE, MTRR_ENABLE_WRITEBACK),
    ];
    let msrs = Msrs::from_entries(&entries).expect("fewer MSRs than the FAM limit");
    let set = vcpu.set_msrs(&msrs).map_err(kvm("KVM_SET_MSRS"))?;
    match entries.get(set) {
        Some(refused) => Err(RegsError::MsrRefused {
            index: refused.index,
        }),
        None => Ok(()),
    }
}

const APIC_LVT0: usize = 0x350;
const APIC_LVT1: usize = 0x360;
const APIC_MODE_NMI: u32 = 0x4;
const APIC_MODE_EXTINT: u32 = 0x7;

/// LINT0 as ExtINT (the PIC's output) and LINT1 as NMI, as PC firmware sets them.
pub fn setup_lapic(vcpu: &VcpuFd) -> Result<(), RegsError> {
    let mut lapic = vcpu.get_lapic().map_err(kvm("KVM_GET_LAPIC"))?;
    let mut set_mode = |offset: usize, mode: u32| {
        let bytes: [u8; 4] = std::array::from_fn(|i| lapic.regs[offset + i] as u8);
        let value = (u32::from_le_bytes(bytes) & !0x700) | (mode << 8);
        for (i, b) in value.to_le_bytes().iter().enumerate() {
            lapic.regs[offset + i] = *b as _;
        }
    };
    set_mode(APIC_LVT0, APIC_MODE_EXTINT);
    set_mode(APIC_LVT1, APIC_MODE_NMI);
    vcpu.set_lapic(&lapic).map_err(kvm("KVM_SET_LAPIC"))
}

/// A one-line summary of the vCPU's registers for error reports.
pub fn describe(vcpu: &VcpuFd) -> String {
    match (vcpu.get_regs(), vcpu.get_sregs()) {
        (Ok(r), Ok(s)) => {
            let mut text = format!(
                "rip={:#x} rsp={:#x} rflags={:#x} rax={:#x} rbx={:#x} rcx={:#x} rdx={:#x} rsi={:#x} rdi={:#x} cr0={:#x} cr3={:#x} cr4={:#x} efer={:#x} cs={:#x}",
                r.rip, r.rsp, r.rflags, r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, s.cr0, s.cr3, s.cr4, s.efer, s.cs.selector
            );
            // KVM on AMD re-initializes a vCPU after a triple fault (the VMCB is
            // undefined after a shutdown intercept), so the faulting state is gone.
            if s.cs.selector == 0xf000 && r.rip == 0xfff0 {
                text.push_str(" (the vCPU's reset state: on AMD, KVM resets a vCPU after a triple fault, so where it faulted is not known)");
            }
            text
        }
        _ => "registers unavailable".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A vCPU that never ran is in its reset state, as KVM on AMD leaves one after a
    /// triple fault: the report says the registers do not show the fault.
    #[test]
    fn registers_in_reset_state_are_called_so() {
        let kvm = match kvm_ioctls::Kvm::new() {
            Ok(kvm) => kvm,
            Err(e) => return hvbox_test_support::skip(format!("no /dev/kvm: {e}")),
        };
        let vm = kvm.create_vm().unwrap();
        let vcpu = vm.create_vcpu(0).unwrap();
        let fresh = describe(&vcpu);
        assert!(
            fresh.contains("rip=0xfff0") && fresh.contains("cs=0xf000"),
            "{fresh}"
        );
        assert!(fresh.contains("where it faulted is not known"), "{fresh}");
        let mut r = vcpu.get_regs().unwrap();
        r.rip = 0x1000;
        vcpu.set_regs(&r).unwrap();
        let moved = describe(&vcpu);
        assert!(
            moved.contains("rip=0x1000") && !moved.contains("reset state"),
            "{moved}"
        );
    }

    #[test]
    fn gdt_entries_decode_to_flat_segments() {
        let code64 = segment(GDT_CODE64, gdt_entry(0xa09b, 0, 0xfffff));
        assert_eq!(
            (code64.l, code64.db, code64.g, code64.present),
            (1, 0, 1, 1)
        );
        assert_eq!(code64.limit, 0xffff_ffff);
        assert_eq!(code64.selector, 8);
        let code32 = segment(GDT_CODE32, gdt_entry(0xc09b, 0, 0xfffff));
        assert_eq!((code32.l, code32.db, code32.type_), (0, 1, 0xb));
        let data = segment(GDT_DATA, gdt_entry(0xc093, 0, 0xfffff));
        assert_eq!((data.type_, data.s, data.base), (3, 1, 0));
    }
}
